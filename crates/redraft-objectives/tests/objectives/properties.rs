//! Properties: on-policy (ratio 1) the clipped loss equals the unclipped surrogate; zero
//! advantages give zero policy gradient; masked tokens get zero gradient.

use proptest::prelude::*;
use redraft_credit_assignment::LossAggregation;
use redraft_model::token_logprobs;
use redraft_objectives::{KlEstimator, Objective, PolicyBatch, RlvrConfig, RlvrObjective};

use crate::common::{Leaf, Rng, ad, dev, scalar, t2};

fn aggregation() -> impl Strategy<Value = LossAggregation> {
    prop_oneof![
        Just(LossAggregation::TokenMean),
        Just(LossAggregation::SeqMeanTokenMean),
        Just(LossAggregation::SeqMeanTokenSum),
        Just(LossAggregation::SeqMeanTokenSumNorm { constant: None }),
        Just(LossAggregation::TokenSum),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn on_policy_clipped_equals_unclipped(
        (b, t) in (1usize..4, 1usize..6),
        seed in any::<u64>(),
        clip_low in 0.0f64..0.9,
        clip_high in 0.0f64..2.0,
        dual_clip in any::<bool>(),
        agg in aggregation(),
    ) {
        let mut rng = Rng::new(seed);
        let mask: Vec<bool> = (0..b * t).map(|_| rng.uniform() < 0.7).collect();
        let adv = rng.vec(b * t, -2.0, 2.0);
        let lp = rng.vec(b * t, -4.0, -0.01);
        let batch = PolicyBatch::new([b, t], mask.clone(), adv.clone(), &dev())
            .unwrap()
            .with_old_logprobs(lp.clone())
            .unwrap();
        let config = RlvrConfig {
            clip_low,
            clip_high,
            dual_clip,
            aggregation: agg,
            ..RlvrConfig::ppo()
        };
        let got = scalar(
            RlvrObjective::new("p", config)
                .unwrap()
                .loss(&batch, t2(lp, [b, t], &dev()), None)
                .unwrap()
                .loss,
        );
        let unclipped: Vec<f32> = adv.iter().map(|a| -a).collect();
        let want = f64::from(agg.aggregate(&unclipped, &mask, b, t).unwrap());
        prop_assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{got} vs {want}");
    }

    #[test]
    fn zero_advantages_give_zero_policy_gradient(seed in any::<u64>(), dapo in any::<bool>()) {
        let mut rng = Rng::new(seed);
        let leaf = Leaf::random(&mut rng, [2, 3, 4]);
        let d = ad();
        let old: Vec<f32> = leaf
            .logprobs_host()
            .iter()
            .map(|l| l - rng.range(-0.5, 0.5))
            .collect();
        let mask: Vec<bool> = (0..6).map(|_| rng.uniform() < 0.8).collect();
        let batch = PolicyBatch::new([2, 3], mask, vec![0.0; 6], &d)
            .unwrap()
            .with_old_logprobs(old)
            .unwrap();
        let config = if dapo { RlvrConfig::dapo() } else { RlvrConfig::ppo() };
        let logits = leaf.logits(&leaf.logits, &d).require_grad();
        let lp = token_logprobs(logits.clone(), leaf.targets(&d));
        let loss = RlvrObjective::new("p", config).unwrap().loss(&batch, lp, None).unwrap().loss;
        let g = logits.grad(&loss.backward()).unwrap().into_data().try_to_vec_as::<f32>().unwrap();
        prop_assert!(g.iter().all(|x| x.abs() < 1e-12), "{g:?}");
    }

    #[test]
    fn masked_tokens_get_zero_gradient(seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let [b, t, v] = [2, 3, 4];
        let leaf = Leaf::random(&mut rng, [b, t, v]);
        let d = ad();
        let mut mask: Vec<bool> = (0..b * t).map(|_| rng.uniform() < 0.5).collect();
        mask[0] = true;
        let batch = PolicyBatch::new([b, t], mask.clone(), rng.vec(b * t, -1.0, 1.0), &d)
            .unwrap()
            .with_ref_logprobs(rng.vec(b * t, -3.0, -0.5))
            .unwrap();
        let logits = leaf.logits(&leaf.logits, &d).require_grad();
        let lp = token_logprobs(logits.clone(), leaf.targets(&d));
        let loss = RlvrObjective::new("p", RlvrConfig::grpo()).unwrap().loss(&batch, lp, None).unwrap().loss;
        let g = logits.grad(&loss.backward()).unwrap().into_data().try_to_vec_as::<f32>().unwrap();
        for (k, &m) in mask.iter().enumerate() {
            if !m {
                prop_assert!(g[k * v..(k + 1) * v].iter().all(|&x| x == 0.0));
            }
        }
    }

    #[test]
    fn kl_tokens_match_the_host_formula(
        pairs in proptest::collection::vec((-30.0f32..0.0, -30.0f32..0.0), 1..12),
        est in prop_oneof![
            Just(KlEstimator::K1),
            Just(KlEstimator::K2),
            Just(KlEstimator::K3),
            Just(KlEstimator::Abs),
        ],
    ) {
        let n = pairs.len();
        let lp: Vec<f32> = pairs.iter().map(|p| p.0).collect();
        let rf: Vec<f32> = pairs.iter().map(|p| p.1).collect();
        let got = est
            .tokens(t2(lp.clone(), [1, n], &dev()), t2(rf.clone(), [1, n], &dev()))
            .into_data()
            .try_to_vec_as::<f32>()
            .unwrap();
        for k in 0..n {
            let want = est.value(f64::from(lp[k]), f64::from(rf[k]));
            prop_assert!(
                (f64::from(got[k]) - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{est:?} {} {}: {} vs {want}", lp[k], rf[k], got[k]
            );
            if est != KlEstimator::K1 {
                prop_assert!(got[k] >= 0.0);
            }
        }
    }
}
