//! Conformance with reasoning-gym 0.1.19: every case of
//! `tests/data/reasoning_gym/cases.jsonl` (written by `scripts/reasoning_gym_fixtures.py` with
//! reasoning-gym itself) must get exactly reasoning-gym's reward, and the same extracted answer.
//!
//! Out of reach (not in the fixture; see docs/verifier.md): answers that Python's `eval`
//! (binary_matrix) or sympy's `parse_expr` (countdown) evaluate beyond literals and arithmetic,
//! such as list comprehensions, `[[0]*3]`, names (`pi`, `sqrt(4)`, `True`), factorials (`3!`),
//! hexadecimal or complex literals, non-integer powers (`4**(1/2)`), and float rounding at the
//! edge of numpy's tolerance.

use redraft_verifier::reasoning_gym::{ReasoningGymProblem, extract_answer};
use redraft_verifier::{Problem, Verifier, default_verifier};

const CASES: &str = include_str!("data/reasoning_gym/cases.jsonl");

#[test]
fn every_reasoning_gym_case_gets_reasoning_gyms_score() {
    let mut checked = 0;
    let mut families = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for (i, line) in CASES.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let p = ReasoningGymProblem::from_line(&v, None)
            .unwrap_or_else(|e| panic!("line {}: {e}", i + 1))
            .unwrap_or_else(|| panic!("line {}: not a reasoning-gym problem", i + 1));
        families.insert(p.dataset);
        let problem = Problem::ReasoningGym(p.clone());
        for case in v["cases"].as_array().unwrap() {
            let response = case["response"].as_str().unwrap();
            // A string: Python's repr, parsed back exactly.
            let want: f64 = case["score"].as_str().unwrap().parse().unwrap();
            let extracted = extract_answer(response);
            assert_eq!(
                extracted,
                case["extracted"].as_str(),
                "line {}: extraction of {response:?}",
                i + 1
            );
            let got = p.score_answer(extracted);
            let verdict = default_verifier().verify(&problem, response);
            if got != want || verdict.reward != want as f32 || verdict.correct != (want == 1.0) {
                failures.push(format!(
                    "line {} {}: {response:?} scored {got} (verdict {}), reasoning-gym {want}",
                    i + 1,
                    p.dataset,
                    verdict.reward
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(families.len(), 5, "{families:?}");
    assert!(checked > 2000, "{checked}");
}
