//! Property tests: references verify, mutations do not, nothing panics, verdicts are
//! deterministic, generation is seeded.

use proptest::prelude::*;
use redraft_verifier::dataset::OnError;
use redraft_verifier::jsonl::{VerifyOptions, verify_jsonl};
use redraft_verifier::math::{MathOptions, check_math};
use redraft_verifier::tasks::answer::AnswerFormat;
use redraft_verifier::{Difficulty, Problem, TaskFamily};

const GENERATED: [TaskFamily; 5] = [
    TaskFamily::Arithmetic,
    TaskFamily::Countdown,
    TaskFamily::KnightsKnaves,
    TaskFamily::ShortestPath,
    TaskFamily::BinaryMatrix,
];

fn family() -> impl Strategy<Value = TaskFamily> {
    prop::sample::select(GENERATED.to_vec())
}

fn difficulty() -> impl Strategy<Value = Difficulty> {
    (0u64..3, prop::bool::ANY).prop_map(|(level, boxed)| {
        let level = level.to_string();
        Difficulty::from_pairs([
            ("level", level.as_str()),
            ("format", if boxed { "boxed" } else { "tag" }),
        ])
    })
}

/// A wrong answer for `p`, marked in its format.
fn mutated(p: &Problem) -> String {
    match p {
        Problem::Arithmetic(a) => a.format.wrap(&(a.result() + 1u32).to_string()),
        Problem::Countdown(c) => c.format.wrap(&format!("({})*2", c.reference)),
        Problem::KnightsKnaves(k) => {
            let mut w = k.clone();
            w.knights[0] = !w.knights[0];
            k.format.wrap(&w.answer())
        }
        Problem::ShortestPath(s) => {
            let mut path = s.reference_path();
            path.pop();
            s.format.wrap(&path)
        }
        Problem::BinaryMatrix(b) => {
            let mut d = b.distances();
            d[0][0] += 1;
            let text: Vec<String> = d
                .iter()
                .map(|r| r.iter().map(usize::to_string).collect::<Vec<_>>().join(" "))
                .collect();
            b.format.wrap(&text.join("\n"))
        }
        Problem::Math(m) => AnswerFormat::Boxed.wrap(&format!("{}+1", m.answer)),
        Problem::ReasoningGym(r) => AnswerFormat::Tag.wrap(&format!("{} wrong", r.answer)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn reference_solutions_verify(f in family(), seed in any::<u64>(), index in 0u64..1000, d in difficulty()) {
        let p = f.generate_one(seed, index, &d).unwrap();
        let v = p.verify(&p.solution());
        prop_assert!(v.correct, "{f}: {v:?}\n{}", p.solution());
        prop_assert_eq!(v.reward, 1.0);
    }

    #[test]
    fn mutated_answers_do_not_verify(f in family(), seed in any::<u64>(), index in 0u64..1000, d in difficulty()) {
        let p = f.generate_one(seed, index, &d).unwrap();
        let v = p.verify(&mutated(&p));
        prop_assert!(!v.correct, "{f}: {v:?}");
        prop_assert!(v.reward < 1.0);
    }

    #[test]
    fn generation_is_seeded(f in family(), seed in any::<u64>(), index in 0u64..50) {
        let d = Difficulty::default();
        let a = f.generate_one(seed, index, &d).unwrap();
        let b = f.generate(seed, index as usize + 1, &d).unwrap().pop().unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn problems_round_trip_through_json(f in family(), seed in any::<u64>()) {
        let p = f.generate_one(seed, 0, &Difficulty::default()).unwrap();
        let back: Problem = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        prop_assert_eq!(p, back);
    }

    #[test]
    fn math_never_panics_and_is_deterministic(gold in "[-0-9a-z\\\\{}()\\[\\]$+*/^_=<>,. ]{0,40}", pred in any::<String>()) {
        let o = MathOptions::default();
        let a = check_math(&gold, &pred, &o);
        let b = check_math(&gold, &pred, &o);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn latex_soup_never_panics(pred in "(\\\\boxed\\{|\\\\frac|\\\\sqrt|\\\\left|\\\\right|\\\\text\\{|[-0-9xy{}()\\[\\]$+*/^_=<>,.!| ]|\\\\pm|\\\\begin\\{pmatrix\\}|&|\\\\\\\\){0,40}") {
        let o = MathOptions::default();
        let a = check_math("\\frac{1}{2}", &pred, &o);
        prop_assert_eq!(a.clone(), check_math("\\frac{1}{2}", &pred, &o));
        prop_assert!((0.0..=1.0).contains(&a.reward));
    }

    #[test]
    fn tasks_never_panic(f in family(), seed in any::<u64>(), response in any::<String>(), tagged in any::<String>()) {
        let p = f.generate_one(seed, 0, &Difficulty::default()).unwrap();
        for r in [response.clone(), format!("<answer>{tagged}</answer>"), format!("\\boxed{{{tagged}}}")] {
            let v = p.verify(&r);
            prop_assert!((0.0..=1.0).contains(&v.reward));
            prop_assert_eq!(v, p.verify(&r));
        }
    }

    #[test]
    fn verify_jsonl_never_panics(input in any::<String>(), resp in any::<String>(), a in any::<u64>(), b in any::<u64>()) {
        let opts = VerifyOptions { on_error: OnError::Skip, ..Default::default() };
        prop_assert!(verify_jsonl(input.as_bytes(), Vec::new(), &opts).is_ok());
        // Hand-written problems may be inconsistent: still one verdict per line.
        let lines = [
            serde_json::json!({"task": "arithmetic", "problem": {"a": a, "b": b, "op": "sub"}, "response": resp}),
            serde_json::json!({"task": "arithmetic", "problem": {"a": a, "b": b, "op": "mul"}, "response": resp}),
            serde_json::json!({"task": "countdown", "problem": {"numbers": [a, b], "target": a, "reference": ""}, "response": resp}),
            serde_json::json!({"task": "knights_knaves", "problem": {"names": ["A"], "statements": [], "knights": []}, "response": resp}),
            serde_json::json!({"task": "shortest_path", "problem": {"grid": ["S#", "", "..G..."], "shortest": 0}, "response": resp}),
            serde_json::json!({"task": "binary_matrix", "problem": {"matrix": [[1, 1], [1]]}, "response": resp}),
            serde_json::json!({"problem": "q", "answer": resp, "response": resp}),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let mut out = Vec::new();
        let summary = verify_jsonl(text.as_bytes(), &mut out, &opts).unwrap();
        prop_assert_eq!(summary.verified + summary.malformed, lines.len());
    }
}
