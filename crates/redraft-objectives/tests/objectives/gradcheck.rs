//! Gradient checks: the autodiff gradient of every objective with respect to leaf logits
//! `[batch, time, vocab]` (log-probs = `token_logprobs(logits, targets)`) against central
//! finite differences, in f32 on the flex autodiff device.

use redraft_credit_assignment::LossAggregation;
use redraft_objectives::{
    KlEstimator, MulFeRlConfig, MulFeRlObjective, Objective, ObjectiveConfig, OpmdConfig,
    OpmdObjective, PairLoss, PairRows, PolicyBatch, R3lBase, R3lConfig, R3lObjective, RltfFmConfig,
    RltfObjective, RltfRlLoss, RltfSdConfig, RlvrConfig, RlvrObjective, RowKind, SftMode,
};

use crate::common::{Leaf, Rng, ad, gradcheck};

const DIMS: [usize; 3] = [3, 4, 5];
const H: f32 = 5e-3;

/// Log-ratios away from every kink of the surrogates (1 ± 0.2, 1.28, 3, 10), with jitter.
fn log_ratios(rng: &mut Rng, n: usize) -> Vec<f32> {
    const LEVELS: [f32; 7] = [-0.5, -0.3, -0.1, 0.05, 0.1, 0.3, 0.5];
    (0..n)
        .map(|_| LEVELS[(rng.uniform() * 7.0) as usize % 7] + rng.range(-0.02, 0.02))
        .collect()
}

/// A random batch around `leaf`: ~75% trainable tokens (at least one per row), advantages in
/// [−1, 1], sampling and reference log-probs at the log-ratios above.
fn random_batch(rng: &mut Rng, leaf: &Leaf, kinds: Vec<RowKind>) -> PolicyBatch {
    let [b, t, _] = leaf.dims;
    let mut mask: Vec<bool> = (0..b * t).map(|_| rng.uniform() < 0.75).collect();
    for i in 0..b {
        mask[i * t] = true;
    }
    let adv = rng.vec(b * t, -1.0, 1.0);
    let lp = leaf.logprobs_host();
    let old: Vec<f32> = lp
        .iter()
        .zip(log_ratios(rng, b * t))
        .map(|(l, r)| l - r)
        .collect();
    let reference: Vec<f32> = lp
        .iter()
        .zip(log_ratios(rng, b * t))
        .map(|(l, r)| l - r)
        .collect();
    PolicyBatch::new([b, t], mask, adv, &ad())
        .unwrap()
        .with_old_logprobs(old)
        .unwrap()
        .with_ref_logprobs(reference)
        .unwrap()
        .with_row_kinds(kinds)
        .unwrap()
}

#[track_caller]
fn check(obj: &dyn Objective, batch: &PolicyBatch, leaf: &Leaf, entropy: bool) {
    let (diff, grad) = gradcheck(obj, batch, leaf, entropy, H);
    assert!(grad > 1e-4, "{}: gradient is ~0 ({grad:e})", obj.name());
    assert!(
        diff <= 1e-4 + 1e-3 * grad,
        "{}: max |autodiff − numeric| = {diff:e} (max |grad| {grad:e})",
        obj.name()
    );
}

/// The share of trainable tokens where the clipped term is active (to make sure a check
/// exercises the clip).
fn clip_fraction(obj: &dyn Objective, batch: &PolicyBatch, leaf: &Leaf) -> f64 {
    let d = ad();
    let lp = redraft_model::token_logprobs(leaf.logits(&leaf.logits, &d), leaf.targets(&d));
    let out = obj.loss(batch, lp, None).unwrap();
    out.metrics
        .get(redraft_objectives::metric::CLIP_FRACTION)
        .unwrap()
}

fn policy_rows() -> Vec<RowKind> {
    vec![RowKind::Policy; DIMS[0]]
}

#[test]
fn rlvr_presets_with_kl_and_entropy() {
    let mut rng = Rng::new(1);
    let leaf = Leaf::random(&mut rng, DIMS);
    let batch = random_batch(&mut rng, &leaf, policy_rows());
    let grpo = RlvrConfig {
        kl_coef: 0.1,
        entropy_coef: 0.05,
        ..RlvrConfig::grpo()
    };
    check(
        &RlvrObjective::new("grpo", grpo).unwrap(),
        &batch,
        &leaf,
        true,
    );
    let dr = RlvrConfig {
        kl_coef: 0.1,
        kl_estimator: KlEstimator::K1,
        ..RlvrConfig::dr_grpo()
    };
    check(
        &RlvrObjective::new("dr_grpo", dr).unwrap(),
        &batch,
        &leaf,
        false,
    );
    let dapo = RlvrConfig {
        kl_coef: 0.1,
        kl_estimator: KlEstimator::K2,
        aggregation: LossAggregation::SeqMeanTokenMean,
        ..RlvrConfig::dapo()
    };
    check(
        &RlvrObjective::new("dapo", dapo).unwrap(),
        &batch,
        &leaf,
        false,
    );
    let no_dual = RlvrConfig {
        dual_clip: false,
        aggregation: LossAggregation::SeqMeanTokenSum,
        ..RlvrConfig::ppo()
    };
    check(
        &RlvrObjective::new("ppo", no_dual).unwrap(),
        &batch,
        &leaf,
        false,
    );
    // Every config-file preset builds and passes.
    for method in ["grpo", "dr_grpo", "dapo", "ppo_clip"] {
        let c: ObjectiveConfig =
            serde_json::from_str(&format!(r#"{{"type": "{method}"}}"#)).unwrap();
        check(c.build().unwrap().as_ref(), &batch, &leaf, false);
    }
}

#[test]
fn opmd() {
    let mut rng = Rng::new(2);
    let leaf = Leaf::random(&mut rng, DIMS);
    let batch = random_batch(&mut rng, &leaf, policy_rows());
    let config = OpmdConfig {
        kl_coef: 0.1,
        ..OpmdConfig::default()
    };
    check(&OpmdObjective::new(config).unwrap(), &batch, &leaf, false);
}

#[test]
fn r3l_all_modes() {
    let mut rng = Rng::new(3);
    let leaf = Leaf::random(&mut rng, DIMS);
    let kinds = vec![RowKind::Policy, RowKind::Auxiliary, RowKind::Policy];
    let batch = random_batch(&mut rng, &leaf, kinds);
    let code = R3lConfig {
        kl_coef: 0.1,
        ..R3lConfig::default()
    };
    check(&R3lObjective::new(code).unwrap(), &batch, &leaf, false);
    check(
        &R3lObjective::new(R3lConfig::paper()).unwrap(),
        &batch,
        &leaf,
        false,
    );
    let grpo = R3lConfig {
        base: R3lBase::Grpo,
        sft_mode: SftMode::InRl,
        ..R3lConfig::default()
    };
    check(&R3lObjective::new(grpo).unwrap(), &batch, &leaf, false);
}

#[test]
fn rltf_sd_and_fm() {
    let mut rng = Rng::new(4);
    let leaf = Leaf::random(&mut rng, DIMS);
    let kinds = vec![
        RowKind::Policy,
        RowKind::SelfDistillation,
        RowKind::SelfDistillation,
    ];
    let batch = random_batch(&mut rng, &leaf, kinds);
    // A threshold inside the range of log q, so some SD tokens are dropped.
    let sd = RltfSdConfig {
        logprob_threshold: -1.6,
        ..RltfSdConfig::default()
    };
    check(
        &RltfObjective::self_distillation(sd).unwrap(),
        &batch,
        &leaf,
        false,
    );
    let sd_ppo = RltfObjective::self_distillation(RltfSdConfig {
        rl_loss: RltfRlLoss::Ppo,
        ..sd
    })
    .unwrap();
    // A batch where the clip of the PPO variant is active.
    let kinds = vec![RowKind::Policy, RowKind::Policy, RowKind::SelfDistillation];
    let batch = random_batch(&mut rng, &leaf, kinds);
    assert!(clip_fraction(&sd_ppo, &batch, &leaf) > 0.0);
    check(&sd_ppo, &batch, &leaf, false);
    let kinds = vec![RowKind::Policy, RowKind::Auxiliary, RowKind::Policy];
    let batch = random_batch(&mut rng, &leaf, kinds);
    check(
        &RltfObjective::feedback_modeling(RltfFmConfig::default()).unwrap(),
        &batch,
        &leaf,
        false,
    );
}

#[test]
fn mulferl_dpo_and_fco() {
    let mut rng = Rng::new(5);
    let leaf = Leaf::random(&mut rng, [4, 4, 5]);
    let kinds = vec![RowKind::Policy, RowKind::Pair, RowKind::Pair, RowKind::Pair];
    let batch = random_batch(&mut rng, &leaf, kinds).with_pairs(vec![
        PairRows {
            chosen: 1,
            rejected: 2,
        },
        PairRows {
            chosen: 3,
            rejected: 2,
        },
    ]);
    for pair_loss in [
        PairLoss::Dpo { beta: 0.5 },
        PairLoss::Fco {
            tau: 0.5,
            margin: 0.1,
        },
    ] {
        let config = MulFeRlConfig {
            pair_loss,
            lambda: 1.0,
            ..MulFeRlConfig::default()
        };
        check(
            &MulFeRlObjective::new(config).unwrap(),
            &batch,
            &leaf,
            false,
        );
    }
}
