//! Dr.GRPO's divisor: the response length budget (`max_new_tokens`), not the time dimension
//! of a batch whose rows hold the prompt as well (docs/algorithms/dr-grpo.md).

use redraft_objectives::{Objective, ObjectiveConfig, PolicyBatch};

use crate::common::{assert_close, dev, scalar, t2};

/// On-policy token losses −A = [1, 2, ·; 4, ·, ·] (Σ = 7) in rows of 3 targets, response
/// budget 10: Dr.GRPO's loss is 7 / 10 (7 / 3 when it divides by the time dimension).
#[test]
fn dr_grpo_divides_by_the_response_budget() {
    let d = dev();
    let mask = vec![true, true, false, true, false, false];
    let adv = vec![-1.0, -2.0, 0.0, -4.0, 0.0, 0.0];
    let batch = PolicyBatch::new([2, 3], mask, adv, &d)
        .unwrap()
        .with_response_budget(10);
    assert_eq!(batch.response_budget(), Some(10));
    let config: ObjectiveConfig = serde_json::from_str(r#"{"type": "dr_grpo"}"#).unwrap();
    let objective = config.build().unwrap();
    let out = objective
        .loss(&batch, t2(vec![-0.5; 6], [2, 3], &d), None)
        .unwrap();
    assert_close(scalar(out.loss), 0.7, 2e-6);
}
