//! Downstream use: GRPO advantages and loss weights with this crate alone (no tensor library).

use redraft_credit_assignment::{
    AdvantageEstimator, AdvantageFn, LossAggregation, broadcast_advantage,
};

#[test]
fn grpo_advantages_in_a_few_lines() -> Result<(), redraft_credit_assignment::Error> {
    // Four responses to each of two prompts, rewards from a verifier; verl-style uids.
    let rewards = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0];
    let uids = [0, 0, 0, 0, 1, 1, 1, 1];
    let estimator: AdvantageEstimator = serde_json::from_str(r#"{"kind": "grpo"}"#).unwrap();
    let adv = estimator.advantages_by_id(&rewards, &uids)?;

    // Group 0: mean .25, unbiased std .5 → (1 − .25)/.5 = 1.5 and −.5.
    assert!((adv[0] - 1.5).abs() < 1e-5 && (adv[1] + 0.5).abs() < 1e-5);
    assert!((adv[6] + 1.5).abs() < 1e-5);

    // Broadcast over response tokens and weight for token-mean aggregation.
    let masks = vec![vec![true, true, false], vec![true, false, false]];
    let per_token: Vec<Vec<f32>> = masks
        .iter()
        .zip(&adv)
        .map(|(m, &a)| broadcast_advantage(a, m))
        .collect();
    let weights = LossAggregation::TokenMean.token_weights_ragged(&masks)?;
    assert_eq!(
        weights,
        vec![vec![1.0 / 3.0, 1.0 / 3.0, 0.0], vec![1.0 / 3.0, 0.0, 0.0]]
    );
    assert_eq!(per_token[0], vec![adv[0], adv[0], 0.0]);
    Ok(())
}
