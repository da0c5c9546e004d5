//! `redraft verify` on reasoning-gym lines `{"question", "answer", "metadata", "response"}`
//! (issue #13 item 6): each gets the reward reasoning-gym gives, and a dataset redraft does not
//! score by reasoning-gym's rules is refused by name.

use crate::common::{fails_with, ok, redraft};

use serde_json::Value;

const CASES: &str =
    include_str!("../../crates/redraft-verifier/tests/data/reasoning_gym/cases.jsonl");

#[test]
fn verify_prints_reasoning_gyms_reward_for_each_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("rg.jsonl");
    let mut text = String::new();
    let mut want = Vec::new();
    for line in CASES.lines().step_by(4) {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let cases = v.as_object_mut().unwrap().remove("cases").unwrap();
        for case in cases.as_array().unwrap().iter().step_by(3) {
            let mut l = v.clone();
            l["response"] = case["response"].clone();
            text.push_str(&format!("{l}\n"));
            let score: f64 = case["score"].as_str().unwrap().parse().unwrap();
            want.push(score as f32);
        }
    }
    std::fs::write(&input, text).unwrap();
    let out = ok(redraft(&["verify", "--input", input.to_str().unwrap()]));
    let got: Vec<f32> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["reward"]
                .as_f64()
                .unwrap() as f32
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "line {}", i + 1);
    }
    assert!(
        want.iter().any(|w| *w > 0.0 && *w < 1.0),
        "partial credit covered"
    );
}

#[test]
fn verify_refuses_a_reasoning_gym_dataset_it_does_not_score() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("rg.jsonl");
    let line = serde_json::json!({"question": "Sort 3 1 2", "answer": "1 2 3",
        "metadata": {"source_dataset": "word_sorting"}, "response": "<answer>1 2 3</answer>"});
    std::fs::write(&input, format!("{line}\n")).unwrap();
    fails_with(
        redraft(&["verify", "--input", input.to_str().unwrap()]),
        "rg.jsonl:1: invalid reasoning_gym problem: reasoning-gym dataset \"word_sorting\" is not supported",
    );
}
