//! Property tests (proptest) for the credit-assignment functions.
//!
//! Rewards are drawn as multiples of 1/8 so that shifts and sums are exact in f32 and the
//! invariances can be checked tightly.

use proptest::prelude::*;
use redraft_credit_assignment::*;

fn cfg() -> ProptestConfig {
    ProptestConfig::with_cases(64)
}

/// A group of 2..=12 rewards in [-8, 8], multiples of 1/8.
fn group() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((-64i32..=64).prop_map(|k| k as f32 / 8.0), 2..=12)
}

/// A group of 1..=12 rewards in [0, 1], multiples of 1/8 (R^3L's reward range).
fn unit_group() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((0i32..=8).prop_map(|k| k as f32 / 8.0), 1..=12)
}

fn mean_baselines() -> [AdvantageEstimator; 4] {
    [
        AdvantageEstimator::grpo(),
        AdvantageEstimator::DrGrpo,
        AdvantageEstimator::Rloo,
        AdvantageEstimator::OpmdMean,
    ]
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())))
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn mean_baseline_advantages_sum_to_zero(g in group()) {
        for e in mean_baselines() {
            let a = e.group_advantages(&g).unwrap();
            let s: f64 = a.iter().map(|&x| f64::from(x)).sum();
            prop_assert!(s.abs() < 1e-4, "{e:?}: sum {s}");
        }
    }

    #[test]
    fn shifting_a_group_changes_no_advantage(g in group(), k in -64i32..=64) {
        let c = k as f32 / 8.0;
        let shifted: Vec<f32> = g.iter().map(|r| r + c).collect();
        for e in mean_baselines() {
            let a = e.group_advantages(&g).unwrap();
            let b = e.group_advantages(&shifted).unwrap();
            prop_assert!(close(&a, &b, 1e-5), "{e:?}: {a:?} vs {b:?}");
        }
    }

    #[test]
    fn scaling_scales_dr_grpo_and_leaves_grpo(g in group(), k in 1i32..=16) {
        let s = k as f32 / 4.0;
        let scaled: Vec<f32> = g.iter().map(|r| r * s).collect();
        let dr = AdvantageEstimator::DrGrpo;
        let a = dr.group_advantages(&g).unwrap();
        let b = dr.group_advantages(&scaled).unwrap();
        let a_s: Vec<f32> = a.iter().map(|x| x * s).collect();
        prop_assert!(close(&a_s, &b, 1e-5));
        // GRPO is scale-invariant exactly with eps = 0, and up to eps otherwise.
        for (eps, tol) in [(0.0, 1e-5), (1e-6, 1e-4)] {
            let grpo = AdvantageEstimator::Grpo { eps, unbiased_std: true };
            let a = grpo.group_advantages(&g).unwrap();
            let b = grpo.group_advantages(&scaled).unwrap();
            prop_assert!(close(&a, &b, tol), "eps {eps}: {a:?} vs {b:?}");
        }
    }

    #[test]
    fn grouped_apis_agree_and_are_order_free(
        groups in prop::collection::vec(group(), 1..5),
        seed in any::<u64>(),
    ) {
        let ids: Vec<usize> = groups.iter().enumerate().flat_map(|(g, r)| vec![g; r.len()]).collect();
        let flat: Vec<f32> = groups.iter().flatten().copied().collect();
        // A seeded shuffle of the samples.
        let mut order: Vec<usize> = (0..flat.len()).collect();
        let mut x = seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let sh_r: Vec<f32> = order.iter().map(|&i| flat[i]).collect();
        let sh_id: Vec<usize> = order.iter().map(|&i| ids[i]).collect();
        for e in mean_baselines().into_iter().chain([AdvantageEstimator::group_mean_batch_std()]) {
            let nested: Vec<f32> = e.advantages_nested(&groups).unwrap().concat();
            let by_id = e.advantages_by_id(&flat, &ids).unwrap();
            prop_assert!(close(&nested, &by_id, 1e-6));
            let sh = e.advantages_by_id(&sh_r, &sh_id).unwrap();
            let back: Vec<f32> = order.iter().map(|&i| by_id[i]).collect();
            prop_assert!(close(&back, &sh, 1e-5), "{e:?}");
        }
    }

    #[test]
    fn positive_amplification_never_flips_a_sign(g in unit_group(), alpha in 1i32..=8) {
        let alpha = alpha as f32;
        // Code form against the OPMD mean baseline.
        let code = PositiveAmplification::Code { alpha, success_threshold: 1.0 };
        let s = AdvantageEstimator::OpmdMean.group_advantages(&g).unwrap();
        let a = code.group_advantages(&g).unwrap();
        for (x, y) in s.iter().zip(&a) {
            prop_assert!(x * y >= 0.0, "code: {x} -> {y}");
            prop_assert!(y >= x, "code never lowers an advantage: {x} -> {y}");
        }
        // Paper form against GRPO.
        let paper = PositiveAmplification::Paper { alpha, eps: 1e-6, unbiased_std: true };
        let s = grpo_advantages(&g).unwrap();
        let a = paper.group_advantages(&g).unwrap();
        for (x, y) in s.iter().zip(&a) {
            prop_assert!(x * y >= 0.0 && (*x != 0.0) == (*y != 0.0), "paper: {x} -> {y}");
        }
    }

    #[test]
    fn masks_only_remove_tokens(
        mask in prop::collection::vec(any::<bool>(), 0..40),
        k in 0usize..6,
        n in 0usize..45,
        lp in prop::collection::vec(-10.0f32..0.0, 40),
    ) {
        let lp = &lp[..mask.len()];
        let subset = |m: &[bool]| m.iter().zip(&mask).all(|(&a, &b)| !a || b);
        let p = pivot_mask(&mask, k);
        prop_assert!(subset(&p));
        prop_assert!(pivot_mask(&mask, k + 1).iter().zip(&p).all(|(&a, &b)| !a || b));
        let segs = assistant_segments(&mask);
        prop_assert_eq!(assistant_segments(&p).len(), segs.len().saturating_sub(k));
        prop_assert!(subset(&mask_prefix(&mask, n)));
        let r = restrict_by_logprob(&mask, lp, RLTF_SD_LOGPROB_THRESHOLD).unwrap();
        prop_assert!(subset(&r));
        for ((&keep, &m), &l) in r.iter().zip(&mask).zip(lp) {
            prop_assert_eq!(keep, m && l >= -5.0);
        }
        let w = LossAggregation::TokenMean.token_weights(&mask, 1, mask.len()).unwrap();
        prop_assert!(w.iter().zip(&mask).all(|(&w, &m)| m || w == 0.0));
    }

    #[test]
    fn aggregation_weights(
        batch in 1usize..6,
        time in 1usize..10,
        bits in prop::collection::vec(any::<bool>(), 60),
        loss in prop::collection::vec(-5.0f32..5.0, 60),
    ) {
        let mask = &bits[..batch * time];
        let loss = &loss[..batch * time];
        let n: usize = mask.iter().filter(|&&m| m).count();
        let rows: Vec<usize> = (0..batch)
            .map(|i| mask[i * time..(i + 1) * time].iter().filter(|&&m| m).count())
            .collect();
        let s = rows.iter().filter(|&&c| c > 0).count();
        let sum = |m: LossAggregation| -> f64 {
            m.token_weights(mask, batch, time).unwrap().iter().map(|&w| f64::from(w)).sum()
        };
        let one = if n > 0 { 1.0 } else { 0.0 };
        prop_assert!((sum(LossAggregation::TokenMean) - one).abs() < 1e-5);
        prop_assert!((sum(LossAggregation::SeqMeanTokenMean) - one).abs() < 1e-5);
        if s > 0 {
            prop_assert!((sum(LossAggregation::SeqMeanTokenSum) - n as f64 / s as f64).abs() < 1e-4);
        }
        let norm = LossAggregation::SeqMeanTokenSumNorm { constant: None };
        prop_assert!((sum(norm) - n as f64 / time as f64).abs() < 1e-4);
        prop_assert!((sum(LossAggregation::TokenSum) - n as f64).abs() < 1e-4);
        // seq-mean-token-mean is the mean over non-empty rows of per-row token means (verl).
        if s > 0 {
            let mut acc = 0.0f64;
            for i in 0..batch {
                if rows[i] > 0 {
                    let row: f64 = (0..time)
                        .filter(|&t| mask[i * time + t])
                        .map(|t| f64::from(loss[i * time + t]))
                        .sum();
                    acc += row / rows[i] as f64;
                }
            }
            let got = LossAggregation::SeqMeanTokenMean.aggregate(loss, mask, batch, time).unwrap();
            prop_assert!((f64::from(got) - acc / s as f64).abs() < 1e-4);
        }
    }

    #[test]
    fn rltf_turn_advantages_are_centred(
        eps in prop::collection::vec(prop::collection::vec((-1i32..=8).prop_map(|k| k as f32 / 8.0), 1..=3), 1..10),
    ) {
        let a = per_turn_advantages(&eps, RLTF_GAMMA).unwrap();
        for h in 0..3 {
            let at: Vec<f64> = a.iter().filter_map(|e| e.get(h).map(|&x| f64::from(x))).collect();
            prop_assert!(at.iter().sum::<f64>().abs() < 1e-4);
        }
        for (e, ae) in eps.iter().zip(&a) {
            prop_assert_eq!(e.len(), ae.len());
        }
        let sd = SelfDistillation { baseline: SdBaseline::FirstTurn, ..SelfDistillation::default() };
        let b0 = first_turn_baseline(&eps).unwrap();
        for (e, x) in eps.iter().zip(sd.advantages(&eps).unwrap()) {
            prop_assert_eq!(x.is_some(), e.len() > 1);
            if let Some(x) = x { prop_assert!((x - (e[1] - b0)).abs() < 1e-6); }
        }
    }

    #[test]
    fn dynamic_sampling_keeps_exactly_the_informative_groups(
        groups in prop::collection::vec(prop::collection::vec((0i32..=2).prop_map(|k| k as f32 / 2.0), 1..6), 1..8),
    ) {
        let keep = dynamic_sampling_filter(&groups).unwrap();
        let adv = AdvantageEstimator::grpo().advantages_nested(&groups).unwrap();
        for ((g, k), a) in groups.iter().zip(keep).zip(adv) {
            // Kept iff its GRPO advantages are not all zero (singletons keep their raw reward).
            let informative = a.iter().any(|&x| x != 0.0) || g.len() == 1;
            prop_assert_eq!(k, informative, "{:?}", g);
        }
    }

    #[test]
    fn overlong_penalty_is_a_ramp(max_len in 1usize..5000, frac in 0.01f64..1.0, len in 0usize..6000) {
        let cache = ((max_len as f64 * frac) as usize).max(1);
        let p = overlong_penalty(len, max_len, cache, 1.0).unwrap();
        let q = overlong_penalty(len + 1, max_len, cache, 1.0).unwrap();
        prop_assert!(q <= p && p <= 0.0);
        if len <= max_len - cache { prop_assert_eq!(p, 0.0); }
        if len <= max_len { prop_assert!(p >= -1.0 - 1e-6); }
    }
}
