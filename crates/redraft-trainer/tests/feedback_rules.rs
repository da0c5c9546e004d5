//! Every method gets the same feedback rules by default: no critique reveals the reference
//! answer, whether the request lets the provider see it (RLTF's requests and the held-out
//! "with feedback" evaluation) or not (MulFeRL, R^3L with a critic). Revealing is the explicit
//! `reveal_answer = true`.

use redraft_feedback_protocol::{FeedbackRequest, ProviderConfig};
use redraft_rollout_engine::StrategyConfig;
use redraft_trainer::config::RolloutConfig;
use redraft_trainer::{Method, MethodConfig, TrainConfig};
use redraft_verifier::tasks::MathProblem;
use redraft_verifier::{Difficulty, Problem, TaskFamily};

const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../configs/models/test-byte-llama.json"
);

/// Wrong but well-formed answers, each with the reference value a revealing critique states.
fn wrong_answers() -> Vec<(Problem, String, String)> {
    let mut out = Vec::new();
    let math = Problem::Math(MathProblem {
        problem: "What is 4000 + 217?".into(),
        answer: "4217".into(),
        solution: None,
    });
    out.push((math, "so the answer is \\boxed{17}".to_string()));
    let digits: Difficulty = "digits=5,op=add".parse().unwrap();
    for i in 0..4 {
        let p = TaskFamily::Arithmetic.generate_one(3, i, &digits).unwrap();
        out.push((p, "<answer>1</answer>".to_string()));
    }
    for i in 0..4 {
        let p = TaskFamily::KnightsKnaves
            .generate_one(5, i, &Difficulty::default())
            .unwrap();
        let Problem::KnightsKnaves(k) = &p else {
            unreachable!()
        };
        // Everyone a knave: wrong for every puzzle with a knight.
        let wrong = k
            .names
            .iter()
            .map(|n| format!("{n} is a knave"))
            .collect::<Vec<_>>()
            .join(", ");
        if k.knights.iter().any(|&b| b) {
            out.push((p, format!("<answer>{wrong}</answer>")));
        }
    }
    out.into_iter()
        .map(|(p, r)| {
            let v = p.verify(&r);
            assert!(!v.correct && v.format_ok, "{r}: {v:?}");
            let expected = v
                .diagnosis
                .first_error
                .as_ref()
                .map(|e| e.expected.clone())
                .unwrap_or_default();
            assert!(expected.len() >= 3, "{r}: a checkable reference: {v:?}");
            (p, r, expected)
        })
        .collect()
}

/// The critic each method uses by default during rollouts and in its held-out evaluation
/// (the run's provider, or the verifier's critique where the run's is a self-reflection), and
/// R^3L with the verifier critic.
fn default_critics() -> Vec<(String, ProviderConfig)> {
    let mut out = Vec::new();
    for m in Method::ALL {
        let text = format!(
            "method = \"{m}\"\n[model]\ninit = \"{TINY}\"\n[task]\nfamily = \"arithmetic\"\n"
        );
        let config = TrainConfig::parse(&text, &[]).unwrap();
        let critic = match config.feedback() {
            Some(ProviderConfig::SelfReflection { .. }) | None => ProviderConfig::VerifierCritic {
                critic: Default::default(),
            },
            Some(p) => p,
        };
        out.push((m.to_string(), critic));
    }
    out
}

#[test]
fn no_default_critique_reveals_the_reference() {
    let answers = wrong_answers();
    // RLTF's requests allow the reference by default; the others do not.
    let rltf_allows = match MethodConfig::defaults(Method::RltfSd)
        .method()
        .strategy_config(&RolloutConfig::default())
    {
        StrategyConfig::Rltf(c) => c.allow_reference,
        other => panic!("{other:?}"),
    };
    for (method, config) in default_critics() {
        let provider = config.build(None).unwrap();
        for allow in [false, true, rltf_allows] {
            let requests: Vec<FeedbackRequest> = answers
                .iter()
                .map(|(p, r, _)| {
                    FeedbackRequest::new(p.clone(), r.clone(), p.verify(r)).with_reference(allow)
                })
                .collect();
            for (fb, (_, r, expected)) in provider.feedback(&requests).into_iter().zip(&answers) {
                let text = fb.unwrap().text;
                assert!(
                    !text.contains(expected.as_str()),
                    "{method} (allow_reference = {allow}) reveals {expected:?} for {r:?}: {text}"
                );
            }
        }
    }
}

#[test]
fn revealing_is_explicit() {
    let answers = wrong_answers();
    let config: ProviderConfig =
        toml::from_str("type = \"verifier_critic\"\n[critic]\nreveal_answer = true").unwrap();
    let provider = config.build(None).unwrap();
    let (p, r, expected) = &answers[0];
    let request = FeedbackRequest::new(p.clone(), r.clone(), p.verify(r)).with_reference(true);
    let text = provider.feedback(&[request]).pop().unwrap().unwrap().text;
    assert!(text.contains(expected.as_str()), "{text}");
}
