//! Loss values equal to hand-computed references on small fixed inputs.

use redraft_credit_assignment::LossAggregation;
use redraft_objectives::{
    CoefSchedule, KlEstimator, MulFeRlConfig, MulFeRlObjective, Objective, OpmdConfig,
    OpmdObjective, PairLoss, PairRows, PolicyBatch, R3lConfig, R3lObjective, RltfFmConfig,
    RltfObjective, RltfSdConfig, RlvrConfig, RlvrObjective, RowKind, metric,
};

use crate::common::{assert_close, dev, scalar, t2};

const T: bool = true;
const F: bool = false;

fn rlvr(config: RlvrConfig) -> RlvrObjective {
    RlvrObjective::new("test", config).unwrap()
}

/// Five tokens of one row with chosen ratios ρ = exp(logp − old) and advantages.
fn clip_case() -> (PolicyBatch, Vec<f32>) {
    let d = dev();
    let rho = [1.5f32, 0.5, 5.0, 0.5, 1.1];
    let adv = vec![1.0, -1.0, -1.0, 1.0, 1.0];
    let logp = vec![-1.0f32, -2.0, -0.5, -3.0, -1.2];
    let old: Vec<f32> = logp.iter().zip(rho).map(|(l, r)| l - r.ln()).collect();
    let batch = PolicyBatch::new([1, 5], vec![T; 5], adv, &d)
        .unwrap()
        .with_old_logprobs(old)
        .unwrap();
    (batch, logp)
}

#[test]
fn on_policy_ratio_is_one_and_loss_is_minus_mean_advantage() {
    let d = dev();
    // Row 0: A = 1 on 2 tokens (one padding); row 1: A = −0.5 on 3 tokens.
    let mask = vec![T, T, F, T, T, T];
    let adv = vec![1.0, 1.0, 7.0, -0.5, -0.5, -0.5];
    let batch = PolicyBatch::new([2, 3], mask, adv, &d).unwrap();
    let lp = t2(vec![-1.0, -2.0, -9.0, -0.3, -0.2, -0.1], [2, 3], &d);
    let out = rlvr(RlvrConfig::ppo()).loss(&batch, lp, None).unwrap();
    // −(2·1 + 3·(−0.5)) / 5 = −0.1
    assert_close(scalar(out.loss), -0.1, 1e-6);
    assert_close(out.metrics.get(metric::RATIO_MEAN).unwrap(), 1.0, 1e-7);
    assert_close(out.metrics.get(metric::RATIO_MIN).unwrap(), 1.0, 1e-7);
    assert_close(out.metrics.get(metric::RATIO_MAX).unwrap(), 1.0, 1e-7);
    assert_eq!(out.metrics.get(metric::CLIP_FRACTION), Some(0.0));
    assert_eq!(out.metrics.get(metric::POLICY_TOKENS), Some(5.0));
}

#[test]
fn clipping_active_and_inactive_with_dual_clip() {
    // Token losses: max(−Aρ, −A clip(ρ)):
    //   A=1 ρ=1.5 → max(−1.5, −1.2) = −1.2 (clipped)
    //   A=−1 ρ=0.5 → max(0.5, 0.8) = 0.8 (clipped)
    //   A=−1 ρ=5 → max(5, 1.2) = 5 → dual clip min(5, 3) = 3
    //   A=1 ρ=0.5 → max(−0.5, −0.8) = −0.5
    //   A=1 ρ=1.1 → −1.1 (inside the range)
    let (batch, logp) = clip_case();
    let d = dev();
    let out = rlvr(RlvrConfig::ppo())
        .loss(&batch, t2(logp.clone(), [1, 5], &d), None)
        .unwrap();
    assert_close(scalar(out.loss), (-1.2 + 0.8 + 3.0 - 0.5 - 1.1) / 5.0, 2e-6);
    assert_close(out.metrics.get(metric::CLIP_FRACTION).unwrap(), 0.4, 1e-7);
    assert_close(
        out.metrics.get(metric::CLIP_FRACTION_LOWER).unwrap(),
        0.2,
        1e-7,
    );
    assert_close(out.metrics.get(metric::RATIO_MEAN).unwrap(), 1.72, 2e-6);
    assert_close(out.metrics.get(metric::RATIO_MIN).unwrap(), 0.5, 1e-6);
    assert_close(out.metrics.get(metric::RATIO_MAX).unwrap(), 5.0, 5e-6);
    let ln: f64 = [1.5f64, 0.5, 5.0, 0.5, 1.1].iter().map(|r| r.ln()).sum();
    assert_close(out.metrics.get(metric::APPROX_KL).unwrap(), -ln / 5.0, 1e-6);

    // Without dual clip the third token keeps 5.
    let no_dual = RlvrConfig {
        dual_clip: false,
        ..RlvrConfig::ppo()
    };
    let out = rlvr(no_dual)
        .loss(&batch, t2(logp.clone(), [1, 5], &d), None)
        .unwrap();
    assert_close(scalar(out.loss), (-1.2 + 0.8 + 5.0 - 0.5 - 1.1) / 5.0, 2e-6);
    assert_eq!(out.metrics.get(metric::CLIP_FRACTION_LOWER), None);

    // DAPO: clip-higher 0.28 (first token −1.28), dual clip c = 10 (third token keeps 5).
    let out = rlvr(RlvrConfig::dapo())
        .loss(&batch, t2(logp, [1, 5], &d), None)
        .unwrap();
    assert_close(
        scalar(out.loss),
        (-1.28 + 0.8 + 5.0 - 0.5 - 1.1) / 5.0,
        2e-6,
    );
}

#[test]
fn every_aggregation_mode() {
    // On-policy, so the token loss is −A: losses [1, 2, ·; 4, ·, ·] (verl agg_loss example).
    let d = dev();
    let mask = vec![T, T, F, T, F, F];
    let adv = vec![-1.0, -2.0, 0.0, -4.0, 0.0, 0.0];
    let batch = PolicyBatch::new([2, 3], mask, adv, &d).unwrap();
    let cases = [
        (LossAggregation::TokenMean, 7.0 / 3.0),
        (LossAggregation::SeqMeanTokenMean, (1.5 + 4.0) / 2.0),
        (LossAggregation::SeqMeanTokenSum, 7.0 / 2.0),
        (
            LossAggregation::SeqMeanTokenSumNorm { constant: None },
            7.0 / 3.0,
        ),
        (
            LossAggregation::SeqMeanTokenSumNorm {
                constant: Some(10.0),
            },
            0.7,
        ),
        (LossAggregation::TokenSum, 7.0),
    ];
    for (aggregation, want) in cases {
        let config = RlvrConfig {
            aggregation,
            ..RlvrConfig::ppo()
        };
        let lp = t2(vec![-0.5; 6], [2, 3], &d);
        let got = scalar(rlvr(config).loss(&batch, lp, None).unwrap().loss);
        assert_close(got, want, 2e-6);
    }
    // Dr.GRPO's preset is seq-mean-token-sum-norm: 7 / time.
    let lp = t2(vec![-0.5; 6], [2, 3], &d);
    let got = scalar(
        rlvr(RlvrConfig::dr_grpo())
            .loss(&batch, lp, None)
            .unwrap()
            .loss,
    );
    assert_close(got, 7.0 / 3.0, 2e-6);
}

#[test]
fn kl_estimators_and_penalty() {
    // d = log π − log π_ref = 0.5 on both tokens; zero advantages: loss = β · mean k.
    let d = dev();
    let k3 = (-0.5f64).exp() + 0.5 - 1.0;
    for (est, k) in [
        (KlEstimator::K1, 0.5),
        (KlEstimator::K2, 0.125),
        (KlEstimator::K3, k3),
        (KlEstimator::Abs, 0.5),
    ] {
        assert_close(est.value(-1.0, -1.5), k, 1e-12);
        let batch = PolicyBatch::new([1, 2], vec![T, T], vec![0.0, 0.0], &d)
            .unwrap()
            .with_ref_logprobs(vec![-1.5, -2.5])
            .unwrap();
        let config = RlvrConfig {
            kl_coef: 0.1,
            kl_estimator: est,
            ..RlvrConfig::ppo()
        };
        let out = rlvr(config)
            .loss(&batch, t2(vec![-1.0, -2.0], [1, 2], &d), None)
            .unwrap();
        assert_close(scalar(out.loss), 0.1 * k, 1e-6);
        assert_close(out.metrics.get(metric::KL).unwrap(), k, 1e-6);
    }
    // verl's clamps: log-ratio to ±20 (exp(30) would be 1e13), then k3 to [−10, 10]; below the
    // clamp the value is exact.
    assert_eq!(KlEstimator::K3.value(-31.0, -1.0), 10.0);
    assert_eq!(KlEstimator::K3.value(-1.0, -31.0), 10.0); // exp(−20) + 20 − 1 = 19 → 10
    assert_close(
        KlEstimator::K3.value(0.0, -3.0),
        (-3.0f64).exp() + 2.0,
        1e-12,
    );
    let est = KlEstimator::K3.tokens(
        t2(vec![-31.0, -1.0, 0.0], [1, 3], &d),
        t2(vec![-1.0, -31.0, -3.0], [1, 3], &d),
    );
    let v = est.into_data().try_to_vec_as::<f32>().unwrap();
    assert_eq!(&v[..2], &[10.0, 10.0]);
    assert_close(f64::from(v[2]), (-3.0f64).exp() + 2.0, 1e-6);
}

#[test]
fn missing_reference_and_entropy_are_errors() {
    let d = dev();
    let batch = PolicyBatch::new([1, 2], vec![T, T], vec![1.0, 1.0], &d).unwrap();
    let lp = || t2(vec![-1.0, -1.0], [1, 2], &d);
    let grpo = rlvr(RlvrConfig::grpo());
    assert!(grpo.needs_reference());
    assert!(matches!(
        grpo.loss(&batch, lp(), None),
        Err(redraft_objectives::Error::MissingInput { .. })
    ));
    let ent = rlvr(RlvrConfig {
        entropy_coef: 0.01,
        ..RlvrConfig::ppo()
    });
    assert!(ent.needs_entropy());
    assert!(matches!(
        ent.loss(&batch, lp(), None),
        Err(redraft_objectives::Error::MissingInput { .. })
    ));
    // Entropy bonus: loss = −mean(A) − η · mean(H) = −1 − 0.01 · 2.
    let out = ent
        .loss(&batch, lp(), Some(t2(vec![1.0, 3.0], [1, 2], &d)))
        .unwrap();
    assert_close(scalar(out.loss), -1.0 - 0.01 * 2.0, 1e-6);
    assert_close(out.metrics.get(metric::ENTROPY).unwrap(), 2.0, 1e-6);
}

#[test]
fn shape_and_row_errors() {
    use redraft_objectives::Error;
    let d = dev();
    assert!(matches!(
        PolicyBatch::new([0, 3], vec![], vec![], &d),
        Err(Error::EmptyBatch { .. })
    ));
    assert!(matches!(
        PolicyBatch::new([1, 3], vec![T; 2], vec![0.0; 3], &d),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        PolicyBatch::new([1, 2], vec![T, T], vec![0.0, f32::NAN], &d),
        Err(Error::NonFinite { index: 1, .. })
    ));
    // NaN on padding is fine.
    let batch = PolicyBatch::new([1, 2], vec![T, F], vec![0.0, f32::NAN], &d).unwrap();
    let err = rlvr(RlvrConfig::ppo())
        .loss(&batch, t2(vec![-1.0; 3], [1, 3], &d), None)
        .unwrap_err();
    assert_eq!(
        err,
        Error::ShapeMismatch {
            what: "logprobs ([batch, time])",
            expected: vec![1, 2],
            found: vec![1, 3]
        }
    );
    let batch = batch.with_row_kinds(vec![RowKind::Auxiliary]).unwrap();
    assert!(matches!(
        rlvr(RlvrConfig::ppo()).loss(&batch, t2(vec![-1.0; 2], [1, 2], &d), None),
        Err(Error::UnsupportedRow { row: 0, .. })
    ));
    assert!(
        RlvrObjective::new(
            "x",
            RlvrConfig {
                clip_ratio_c: 1.0,
                ..RlvrConfig::ppo()
            }
        )
        .is_err()
    );
}

#[test]
fn opmd_hand_computed() {
    // ℓ = −A log π / (1 + τ): tokens −A·logp = [1, −2] → mean −0.5 → ½ → −0.25.
    let d = dev();
    let batch = PolicyBatch::new([1, 2], vec![T, T], vec![1.0, -1.0], &d)
        .unwrap()
        .with_old_logprobs(vec![-5.0, -5.0]) // not used by the loss
        .unwrap();
    let obj = OpmdObjective::new(OpmdConfig::default()).unwrap();
    let out = obj
        .loss(&batch, t2(vec![-1.0, -2.0], [1, 2], &d), None)
        .unwrap();
    assert_close(scalar(out.loss), -0.25, 1e-7);
    let tau3 = OpmdObjective::new(OpmdConfig {
        tau: 3.0,
        ..OpmdConfig::default()
    })
    .unwrap();
    let out = tau3
        .loss(&batch, t2(vec![-1.0, -2.0], [1, 2], &d), None)
        .unwrap();
    assert_close(scalar(out.loss), -0.125, 1e-7);
}

fn pair_batch(chosen: [f32; 2], rejected: f32, reference: f32) -> (PolicyBatch, Vec<f32>) {
    // Row 0: a GRPO row (A = 0); rows 1, 2: chosen (2 tokens), rejected (1 token + padding).
    let d = dev();
    let mask = vec![T, T, T, T, T, F];
    let batch = PolicyBatch::new([3, 2], mask, vec![0.0; 6], &d)
        .unwrap()
        .with_row_kinds(vec![RowKind::Policy, RowKind::Pair, RowKind::Pair])
        .unwrap()
        .with_ref_logprobs(vec![-1.0, -1.0, reference, reference, reference, 0.0])
        .unwrap()
        .with_pairs(vec![PairRows {
            chosen: 1,
            rejected: 2,
        }]);
    (batch, vec![-1.0, -1.0, chosen[0], chosen[1], rejected, 0.0])
}

#[test]
fn dpo_and_fco_hand_computed() {
    let d = dev();
    let nls = |z: f64| (1.0 + (-z).exp()).ln(); // −log σ(z)
    // Chosen log-ratios [0.5, 0.5] (Σ 1, mean 0.5); rejected [−0.5] (Σ = mean = −0.5).
    let (batch, lp) = pair_batch([-0.5, -0.5], -1.5, -1.0);
    let dpo = MulFeRlObjective::new(MulFeRlConfig {
        pair_loss: PairLoss::Dpo { beta: 0.5 },
        lambda: 1.0,
        ..MulFeRlConfig::default()
    })
    .unwrap();
    let out = dpo.loss(&batch, t2(lp.clone(), [3, 2], &d), None).unwrap();
    // Δ = 1 − (−0.5) = 1.5; the GRPO row has A = 0 and π = π_ref: no policy or KL loss.
    assert_close(scalar(out.loss), nls(0.5 * 1.5), 1e-6);
    assert_close(out.metrics.get(metric::PAIR_MARGIN).unwrap(), 1.5, 1e-6);
    assert_eq!(out.metrics.get(metric::PAIR_ACCURACY), Some(1.0));

    let fco = MulFeRlObjective::new(MulFeRlConfig {
        pair_loss: PairLoss::Fco {
            tau: 0.5,
            margin: 0.25,
        },
        lambda: 2.0,
        ..MulFeRlConfig::default()
    })
    .unwrap();
    let out = fco.loss(&batch, t2(lp, [3, 2], &d), None).unwrap();
    // Δ = 0.5 − (−0.5) = 1; −log σ(0.5 · (1 − 0.25)), × λ = 2.
    assert_close(scalar(out.loss), 2.0 * nls(0.5 * 0.75), 1e-6);
    assert_close(
        out.metrics.get(metric::PAIR_LOSS).unwrap(),
        nls(0.375),
        1e-6,
    );
}

#[test]
fn pair_errors() {
    use redraft_objectives::Error;
    let d = dev();
    let (batch, lp) = pair_batch([-0.5, -0.5], -1.5, -1.0);
    let obj = MulFeRlObjective::new(MulFeRlConfig::default()).unwrap();
    let bad = batch.clone().with_pairs(vec![PairRows {
        chosen: 0,
        rejected: 2,
    }]);
    assert!(matches!(
        obj.loss(&bad, t2(lp.clone(), [3, 2], &d), None),
        Err(Error::InvalidPair { index: 0, .. })
    ));
    let bad = batch.with_pairs(vec![PairRows {
        chosen: 1,
        rejected: 7,
    }]);
    assert!(matches!(
        obj.loss(&bad, t2(lp, [3, 2], &d), None),
        Err(Error::InvalidPair { .. })
    ));
}

#[test]
fn mulferl_grpo_part_and_kl_only_on_policy_rows() {
    // Policy row: A = 1 on 2 tokens, log π − log π_ref = 0.5 there; the pair rows have large
    // log-ratios that must not enter the KL.
    let d = dev();
    let mask = vec![T, T, T, T, T, F];
    let batch = PolicyBatch::new([3, 2], mask, vec![1.0, 1.0, 0.0, 0.0, 0.0, 0.0], &d)
        .unwrap()
        .with_row_kinds(vec![RowKind::Policy, RowKind::Pair, RowKind::Pair])
        .unwrap()
        .with_ref_logprobs(vec![-1.5, -1.5, -3.0, -3.0, -3.0, 0.0])
        .unwrap()
        .with_pairs(vec![PairRows {
            chosen: 1,
            rejected: 2,
        }]);
    let lp = t2(vec![-1.0, -1.0, -1.0, -1.0, -1.0, 0.0], [3, 2], &d);
    let out = MulFeRlObjective::new(MulFeRlConfig::v1_dpo())
        .unwrap()
        .loss(&batch, lp, None)
        .unwrap();
    let k3 = (-0.5f64).exp() + 0.5 - 1.0;
    // Δ = Σ_c (2 + 2) − Σ_r 2 = 2; pair = −log σ(0.005 · 2).
    let pair = (1.0 + (-0.01f64).exp()).ln();
    assert_close(scalar(out.loss), -1.0 + 0.001 * k3 + 0.01 * pair, 1e-6);
    assert_close(out.metrics.get(metric::KL).unwrap(), k3, 1e-6);
    assert_eq!(out.metrics.get(metric::POLICY_TOKENS), Some(2.0));
}

#[test]
fn rltf_sd_and_fm_hand_computed() {
    let d = dev();
    // Row 0: policy row (x1, y1) with A_1 = 0.5 on 2 tokens; row 1: SD row with A_SD = 0.875
    // and log q = [−0.1, −6, −5] (the middle token is dropped by the −5 mask).
    let mask = vec![T, T, F, T, T, T];
    let adv = vec![0.5, 0.5, 0.0, 0.875, 0.875, 0.875];
    let logq = vec![-0.2, -0.3, 0.0, -0.1, -6.0, -5.0];
    let batch = PolicyBatch::new([2, 3], mask, adv, &d)
        .unwrap()
        .with_row_kinds(vec![RowKind::Policy, RowKind::SelfDistillation])
        .unwrap()
        .with_old_logprobs(logq.clone())
        .unwrap();
    let sd = RltfObjective::self_distillation(RltfSdConfig::default()).unwrap();
    let out = sd.loss(&batch, t2(logq.clone(), [2, 3], &d), None).unwrap();
    // Σ over tokens of −ρA, ρ = 1: −(0.5 + 0.5) − 0.1 · 0.875 · 2.
    assert_close(scalar(out.loss), -1.0 - 0.175, 1e-6);
    assert_close(out.metrics.get(metric::SD_LOSS).unwrap(), -0.175, 1e-6);
    assert_close(
        out.metrics.get(metric::SD_KEEP_FRACTION).unwrap(),
        2.0 / 3.0,
        1e-6,
    );
    // Linear schedule at the middle of the ramp: rl_coef 0.05.
    let ramp = RltfObjective::self_distillation(RltfSdConfig {
        rl_coef: CoefSchedule::Linear {
            start: 0.0,
            end: 0.1,
            steps: 100,
        },
        ..RltfSdConfig::default()
    })
    .unwrap();
    let out = ramp
        .loss(
            &batch.clone().with_step(50),
            t2(logq.clone(), [2, 3], &d),
            None,
        )
        .unwrap();
    assert_close(scalar(out.loss), -1.0 - 0.0875, 1e-6);
    assert_eq!(out.metrics.get(metric::SD_COEF), Some(0.05));

    // RLTF-FM: the same policy row plus a critique row (auxiliary) of 3 tokens.
    let batch = PolicyBatch::new(
        [2, 3],
        vec![T, T, F, T, T, T],
        vec![0.5, 0.5, 0.0, 0.0, 0.0, 0.0],
        &d,
    )
    .unwrap()
    .with_row_kinds(vec![RowKind::Policy, RowKind::Auxiliary])
    .unwrap();
    let fm = RltfObjective::feedback_modeling(RltfFmConfig::default()).unwrap();
    let lp = t2(vec![-0.2, -0.3, 0.0, -1.0, -2.0, -3.0], [2, 3], &d);
    let out = fm.loss(&batch, lp, None).unwrap();
    assert_close(scalar(out.loss), -1.0 + 0.1 * 6.0, 1e-6);
    assert_close(out.metrics.get(metric::FM_LOSS).unwrap(), 6.0, 1e-6);
    // SD rows are refused by FM.
    let sd_batch = batch
        .with_row_kinds(vec![RowKind::Policy, RowKind::SelfDistillation])
        .unwrap();
    assert!(
        fm.loss(&sd_batch, t2(vec![-1.0; 6], [2, 3], &d), None)
            .is_err()
    );
}

#[test]
fn r3l_code_and_paper_modes() {
    let d = dev();
    // Row 0: explore row, Â = −0.375 on 2 tokens; row 1: SFT row (3 tokens, advantage ignored).
    let mask = vec![T, T, F, T, T, T];
    let adv = vec![-0.375, -0.375, 0.0, 9.0, 9.0, 9.0];
    let lp_v = vec![-1.0, -2.0, 0.0, -0.5, -0.5, -2.0];
    let batch = PolicyBatch::new([2, 3], mask, adv, &d)
        .unwrap()
        .with_row_kinds(vec![RowKind::Policy, RowKind::Auxiliary])
        .unwrap()
        .with_ref_logprobs(vec![-1.0, -1.0, 0.0, -0.5, -0.5, -1.0])
        .unwrap();
    let code = R3lObjective::new(R3lConfig::default()).unwrap();
    let out = code
        .loss(&batch, t2(lp_v.clone(), [2, 3], &d), None)
        .unwrap();
    // Tokens −A' log π: row 0: −0.375, −0.75; row 1 (A' = 1): 0.5, 0.5, 2 → Σ 1.875 / 5 / 2.
    // k2: ½ d² = [0, 0.5, ·, 0, 0, 0.5] → mean 0.2.
    let want = 1.875 / 5.0 / 2.0 + 0.001 * 0.2;
    assert_close(scalar(out.loss), want, 1e-6);
    assert_close(out.metrics.get(metric::SFT_LOSS).unwrap(), 1.0, 1e-6);

    let paper = R3lObjective::new(R3lConfig::paper()).unwrap();
    let out = paper.loss(&batch, t2(lp_v, [2, 3], &d), None).unwrap();
    // RL: (−0.375 − 0.75) / 2 / 2; SFT: mean(0.5, 0.5, 2) = 1.
    assert_close(scalar(out.loss), -1.125 / 4.0 + 1.0, 1e-6);
}

#[test]
fn item_weights_scale_rows() {
    let d = dev();
    let batch = PolicyBatch::new([2, 1], vec![T, T], vec![1.0, 1.0], &d)
        .unwrap()
        .with_item_weights(vec![1.0, 0.0])
        .unwrap();
    let out = rlvr(RlvrConfig::ppo())
        .loss(&batch, t2(vec![-1.0, -1.0], [2, 1], &d), None)
        .unwrap();
    assert_close(scalar(out.loss), -0.5, 1e-7);
}

#[test]
fn tensor_inputs_match_host_inputs() {
    let d = dev();
    let (host, logp) = clip_case();
    let rho = [1.5f32, 0.5, 5.0, 0.5, 1.1];
    let old: Vec<f32> = logp.iter().zip(rho).map(|(l, r)| l - r.ln()).collect();
    let dev_batch = PolicyBatch::new([1, 5], vec![T; 5], vec![1.0, -1.0, -1.0, 1.0, 1.0], &d)
        .unwrap()
        .with_old_logprobs_tensor(t2(old, [1, 5], &d))
        .unwrap()
        .with_ref_logprobs_tensor(t2(vec![-1.0; 5], [1, 5], &d))
        .unwrap();
    let obj = rlvr(RlvrConfig::grpo());
    let a = obj
        .loss(&dev_batch, t2(logp.clone(), [1, 5], &d), None)
        .unwrap();
    let host = host.with_ref_logprobs(vec![-1.0; 5]).unwrap();
    let b = obj.loss(&host, t2(logp, [1, 5], &d), None).unwrap();
    assert_close(scalar(a.loss), scalar(b.loss), 1e-7);
    assert!(matches!(
        PolicyBatch::new([1, 5], vec![T; 5], vec![0.0; 5], &d)
            .unwrap()
            .with_ref_logprobs_tensor(t2(vec![0.0; 4], [1, 4], &d)),
        Err(redraft_objectives::Error::ShapeMismatch { .. })
    ));
}

#[test]
fn non_finite_log_probs_on_padding_are_ignored() {
    let d = dev();
    let batch = PolicyBatch::new([1, 3], vec![T, T, F], vec![1.0, 1.0, 0.0], &d)
        .unwrap()
        .with_ref_logprobs(vec![-1.0, -1.0, f32::NAN])
        .unwrap();
    let lp = t2(vec![-1.0, -1.0, f32::NEG_INFINITY], [1, 3], &d);
    let h = t2(vec![1.0, 1.0, f32::NAN], [1, 3], &d);
    let obj = rlvr(RlvrConfig {
        entropy_coef: 0.1,
        ..RlvrConfig::grpo()
    });
    let out = obj.loss(&batch, lp, Some(h)).unwrap();
    assert_close(scalar(out.loss), -1.0 - 0.1, 1e-6);
    let opmd = OpmdObjective::new(OpmdConfig::default()).unwrap();
    let lp = t2(vec![-1.0, -1.0, f32::NEG_INFINITY], [1, 3], &d);
    assert_close(scalar(opmd.loss(&batch, lp, None).unwrap().loss), 0.5, 1e-6);
}
