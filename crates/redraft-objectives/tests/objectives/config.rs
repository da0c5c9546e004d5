//! `ObjectiveConfig`: deserialisation (JSON here; TOML and YAML go through the same serde
//! derive), round trips and the papers' defaults.

use redraft_credit_assignment::LossAggregation;
use redraft_objectives::{
    CoefSchedule, KlEstimator, MulFeRlConfig, ObjectiveConfig, OpmdConfig, PairLoss, R3lBase,
    R3lConfig, RltfFmConfig, RltfSdConfig, RlvrConfig, SftMode,
};

fn json(s: &str) -> ObjectiveConfig {
    serde_json::from_str(s).unwrap()
}

fn method(m: &str) -> ObjectiveConfig {
    json(&format!(r#"{{"type": "{m}"}}"#))
}

#[test]
fn presets_have_the_papers_defaults() {
    let grpo = method("grpo").rlvr_config().unwrap();
    assert_eq!(grpo, RlvrConfig::grpo());
    assert_eq!((grpo.clip_low, grpo.clip_high), (0.2, 0.2));
    assert!(grpo.dual_clip);
    assert_eq!(grpo.clip_ratio_c, 3.0);
    assert_eq!(grpo.aggregation, LossAggregation::TokenMean);
    assert_eq!((grpo.kl_coef, grpo.kl_estimator), (0.001, KlEstimator::K3));

    let dr = method("dr_grpo").rlvr_config().unwrap();
    assert_eq!(
        dr.aggregation,
        LossAggregation::SeqMeanTokenSumNorm { constant: None }
    );
    assert_eq!(dr.kl_coef, 0.0);

    let dapo = method("dapo").rlvr_config().unwrap();
    assert_eq!((dapo.clip_low, dapo.clip_high), (0.2, 0.28));
    assert_eq!((dapo.kl_coef, dapo.clip_ratio_c), (0.0, 10.0));
    assert_eq!(dapo.aggregation, LossAggregation::TokenMean);

    assert_eq!(method("rlvr").rlvr_config(), Some(RlvrConfig::ppo()));

    let ObjectiveConfig::Opmd(opmd) = method("opmd") else {
        panic!()
    };
    assert_eq!(opmd, OpmdConfig::default());
    assert_eq!(opmd.tau, 1.0);

    let ObjectiveConfig::R3l(r3l) = method("r3l") else {
        panic!()
    };
    assert_eq!(r3l.base, R3lBase::Opmd);
    assert_eq!((r3l.kl_coef, r3l.kl_estimator), (0.001, KlEstimator::K2));
    assert_eq!(r3l.sft_mode, SftMode::InRl);

    let ObjectiveConfig::RltfSd(sd) = method("rltf_sd") else {
        panic!()
    };
    assert_eq!(sd, RltfSdConfig::default());
    assert_eq!(sd.rl_coef, CoefSchedule::Constant { value: 0.1 });
    assert_eq!(sd.logprob_threshold, -5.0);
    assert_eq!(sd.aggregation, LossAggregation::TokenSum);

    let ObjectiveConfig::RltfFm(fm) = method("rltf_fm") else {
        panic!()
    };
    assert_eq!(fm, RltfFmConfig::default());
    assert_eq!(fm.fm_coef, 0.1);

    let ObjectiveConfig::Mulferl(m) = method("mulferl") else {
        panic!()
    };
    assert_eq!(m, MulFeRlConfig::v2_fco());
    assert_eq!(m.lambda, 0.01);
    assert_eq!(
        m.pair_loss,
        PairLoss::Fco {
            tau: 0.005,
            margin: 0.0
        }
    );
    assert_eq!(m.grpo_config(), RlvrConfig::grpo());
}

#[test]
fn overrides_and_round_trips() {
    let c = json(
        r#"{
            "type": "grpo",
            "clip_high": 0.28,
            "kl_estimator": "low_var_kl",
            "kl_coef": 0.04,
            "aggregation": {"kind": "seq-mean-token-mean"}
        }"#,
    );
    let r = c.rlvr_config().unwrap();
    assert_eq!(r.clip_high, 0.28);
    assert_eq!(r.kl_coef, 0.04);
    assert_eq!(r.aggregation, LossAggregation::SeqMeanTokenMean);

    let c = json(
        r#"{
            "type": "mulferl",
            "lambda": 0.02,
            "pair_loss": {"kind": "dpo"},
            "grpo": {"kl_coef": 0.0}
        }"#,
    );
    let ObjectiveConfig::Mulferl(m) = &c else {
        panic!()
    };
    assert_eq!(m.pair_loss, PairLoss::Dpo { beta: 0.005 });
    assert_eq!(m.grpo_config().kl_coef, 0.0);
    assert_eq!(c.build().unwrap().name(), "mulferl");

    let c: ObjectiveConfig = serde_json::from_str(
        r#"{"type": "rltf_sd", "rl_coef": {"kind": "linear", "start": 0.0, "end": 0.1, "steps": 500}}"#,
    )
    .unwrap();
    let ObjectiveConfig::RltfSd(sd) = &c else {
        panic!()
    };
    assert_eq!(sd.rl_coef.at(250), 0.05);
    assert_eq!(sd.rl_coef.at(10_000), 0.1);

    let c: ObjectiveConfig =
        serde_json::from_str(r#"{"type": "r3l", "base": "grpo", "sft_mode": "separate"}"#).unwrap();
    let ObjectiveConfig::R3l(r) = &c else {
        panic!()
    };
    assert_eq!(
        *r,
        R3lConfig {
            base: R3lBase::Grpo,
            sft_mode: SftMode::Separate,
            ..R3lConfig::default()
        }
    );

    // Round trip through JSON.
    for c in [
        ObjectiveConfig::default(),
        c,
        method("dapo"),
        method("rltf_fm"),
    ] {
        let s = serde_json::to_string(&c).unwrap();
        let back: ObjectiveConfig = serde_json::from_str(&s).unwrap();
        assert_eq!(back, c, "{s}");
    }
}

#[test]
fn unknown_fields_and_bad_values_are_rejected() {
    let parse = serde_json::from_str::<ObjectiveConfig>;
    assert!(parse(r#"{"type": "grpo", "clip": 0.2}"#).is_err());
    assert!(parse(r#"{"type": "ppo2"}"#).is_err());
    assert!(parse(r#"{"type": "r3l", "base": "opmd", "alpha": 3}"#).is_err());
    assert!(
        json(r#"{"type": "grpo", "clip_low": 1.5}"#)
            .build()
            .is_err()
    );
    assert!(
        json(r#"{"type": "mulferl", "pair_loss": {"kind": "fco", "tau": 0.0}}"#)
            .build()
            .is_err()
    );
    for method in [
        "grpo", "dr_grpo", "dapo", "ppo_clip", "opmd", "r3l", "rltf_sd", "rltf_fm", "mulferl",
    ] {
        let c = self::method(method);
        assert_eq!(c.method(), method);
        assert_eq!(c.build().unwrap().name(), method);
    }
}
