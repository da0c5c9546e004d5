//! The worked examples of the algorithm pages (docs/algorithms/) that concern losses, end to
//! end from the credit-assignment functions to the loss value.

use redraft_credit_assignment::{
    AdvantageFn, PositiveAmplification, SdBaseline, SelfDistillation, broadcast_advantages,
    per_turn_advantages, pivot_masks,
};
use redraft_objectives::{
    MulFeRlConfig, MulFeRlObjective, Objective, PairRows, PolicyBatch, R3lConfig, R3lObjective,
    RltfObjective, RltfSdConfig, RowKind, metric,
};

use crate::common::{assert_close, dev, scalar, t2};

/// DPO / FCO: Δ = 0 → log 2 per pair.
#[test]
fn pair_loss_at_zero_margin_is_log_2() {
    let d = dev();
    for config in [MulFeRlConfig::v1_dpo(), MulFeRlConfig::v2_fco()] {
        // Two pairs over four rows; π_θ = π_ref everywhere, so Δ = 0.
        let lp = vec![-1.0, -2.0, -0.5, -0.7, -3.0, -1.0, -0.1, -0.2];
        let batch = PolicyBatch::new([4, 2], vec![true; 8], vec![0.0; 8], &d)
            .unwrap()
            .with_row_kinds(vec![RowKind::Pair; 4])
            .unwrap()
            .with_ref_logprobs(lp.clone())
            .unwrap()
            .with_pairs(vec![
                PairRows {
                    chosen: 0,
                    rejected: 1,
                },
                PairRows {
                    chosen: 2,
                    rejected: 3,
                },
            ]);
        let out = MulFeRlObjective::new(config)
            .unwrap()
            .loss(&batch, t2(lp, [4, 2], &d), None)
            .unwrap();
        assert_close(out.metrics.get(metric::PAIR_LOSS).unwrap(), 2f64.ln(), 1e-6);
        assert_close(scalar(out.loss), 0.01 * 2f64.ln(), 1e-7);
        assert_eq!(out.metrics.get(metric::PAIR_ACCURACY), Some(0.0));
    }
}

/// R^3L: rewards [0,0,1,0,1,0,1,0] → Â = [−.375, −.375, 1, −.375, 1, −.375, 1, −.375]; with
/// log π = −1 on every token the OPMD loss is mean(Â) / 2; pivot-masked tokens do not count.
#[test]
fn r3l_positive_amplification_and_pivot_mask() {
    let d = dev();
    let rewards = [0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
    let adv = PositiveAmplification::default()
        .group_advantages(&rewards)
        .unwrap();
    assert_eq!(
        adv,
        vec![-0.375, -0.375, 1.0, -0.375, 1.0, -0.375, 1.0, -0.375]
    );
    // Every trajectory: 9 positions with the §7 action mask; rows 0 (base) and 1 (its retry)
    // were retried from pivot k = 1, so their first assistant segment is masked.
    let action = [true, true, false, false, true, true, true, false, true];
    let (base, retry) = pivot_masks(&action, &action, 1);
    assert_eq!(
        base,
        [false, false, false, false, true, true, true, false, true]
    );
    let mut mask = Vec::new();
    mask.extend(&base);
    mask.extend(&retry);
    for _ in 2..8 {
        mask.extend(action);
    }
    let token_adv = broadcast_advantages(&adv, &mask, 8, 9).unwrap();
    // Masked positions hold a huge log-prob that must not matter.
    let lp: Vec<f32> = mask.iter().map(|&m| if m { -1.0 } else { -50.0 }).collect();
    let batch = PolicyBatch::new([8, 9], mask.clone(), token_adv, &d)
        .unwrap()
        .with_ref_logprobs(lp.clone())
        .unwrap();
    let out = R3lObjective::new(R3lConfig::default())
        .unwrap()
        .loss(&batch, t2(lp, [8, 9], &d), None)
        .unwrap();
    // Rows 0, 1 have 4 tokens, the others 6: Σ Â·n / N / 2 (−A · log π = A).
    let n: Vec<f64> = (0..8).map(|i| if i < 2 { 4.0 } else { 6.0 }).collect();
    let total: f64 = n.iter().sum();
    let want: f64 = adv
        .iter()
        .zip(&n)
        .map(|(&a, &k)| f64::from(a) * k)
        .sum::<f64>()
        / total
        / 2.0;
    assert_close(scalar(out.loss), want, 1e-6);
}

/// RLTF: r0 = [1, 0, 0], r1 = [−, 1, 0] → A0 = [.633, −.267, −.367], A1 = [.5, −.5], as the
/// multi-turn RL term of RLTF-SD (token sum, ratio 1).
#[test]
fn rltf_per_turn_returns_in_the_loss() {
    let d = dev();
    let episodes = vec![vec![1.0], vec![0.0, 1.0], vec![0.0, 0.0]];
    let a = per_turn_advantages(&episodes, 0.1).unwrap();
    // Rows: (x0, y0) of the 3 episodes (lengths 2, 1, 1), (x1, y1) of episodes 1, 2 (1, 3).
    let seq_adv = [a[0][0], a[1][0], a[2][0], a[1][1], a[2][1]];
    let lengths = [2usize, 1, 1, 1, 3];
    let mask: Vec<bool> = lengths
        .iter()
        .flat_map(|&n| (0..3).map(move |t| t < n))
        .collect();
    let token_adv = broadcast_advantages(&seq_adv, &mask, 5, 3).unwrap();
    let batch = PolicyBatch::new([5, 3], mask, token_adv, &d).unwrap();
    let out = RltfObjective::self_distillation(RltfSdConfig::default())
        .unwrap()
        .loss(&batch, t2(vec![-1.0; 15], [5, 3], &d), None)
        .unwrap();
    let want = -(2.0 * 0.633_333 - 0.266_667 - 0.366_667 + 0.5 - 3.0 * 0.5);
    assert_close(scalar(out.loss), want, 1e-5);
}

/// RLTF-SD first-turn baseline: r0 = [1, 0, …, 0] (8), r1 of the 7 failures =
/// [1, 1, 0, 1, 1, 1, 0] → A_SD = r1 − 0.125 = 0.875 / −0.125, × 0.1 on the kept tokens.
#[test]
fn rltf_sd_first_turn_baseline_in_the_loss() {
    let d = dev();
    let r1 = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0];
    let mut episodes = vec![vec![1.0]];
    episodes.extend(r1.iter().map(|&r| vec![0.0, r]));
    let sd = SelfDistillation {
        baseline: SdBaseline::FirstTurn,
        ..SelfDistillation::default()
    };
    let a_sd: Vec<f32> = sd
        .advantages(&episodes)
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(a_sd.len(), 7);
    // 7 SD rows of 2 tokens; log q = [−1, −6]: the second token is dropped by the −5 mask.
    let mask = vec![true; 14];
    let token_adv = broadcast_advantages(&a_sd, &mask, 7, 2).unwrap();
    let logq: Vec<f32> = (0..14)
        .map(|k| if k % 2 == 0 { -1.0 } else { -6.0 })
        .collect();
    let batch = PolicyBatch::new([7, 2], mask, token_adv, &d)
        .unwrap()
        .with_row_kinds(vec![RowKind::SelfDistillation; 7])
        .unwrap()
        .with_old_logprobs(logq.clone())
        .unwrap();
    let out = RltfObjective::self_distillation(RltfSdConfig::default())
        .unwrap()
        .loss(&batch, t2(logq, [7, 2], &d), None)
        .unwrap();
    // −0.1 · (5 · 0.875 − 2 · 0.125) = −0.4125
    assert_close(scalar(out.loss), -0.4125, 1e-6);
    assert_close(
        out.metrics.get(metric::SD_KEEP_FRACTION).unwrap(),
        0.5,
        1e-7,
    );
}
