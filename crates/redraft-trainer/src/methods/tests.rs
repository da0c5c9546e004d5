//! The method table's parsing, and helpers for the methods' rows tests.

use redraft_feedback_protocol::Templates;
use redraft_tokenizer::ByteTokenizer;
use redraft_verifier::{Difficulty, TaskFamily};

use super::*;
use crate::TrainConfig;

/// Runs `f` with a context of the byte tokenizer, the default templates and two arithmetic
/// problems.
pub(crate) fn with_ctx<T>(f: impl FnOnce(&RowContext<'_>) -> Result<T>) -> T {
    let problems: Vec<Problem> = (0..2)
        .map(|i| {
            TaskFamily::Arithmetic
                .generate_one(0, i, &Difficulty::default())
                .unwrap()
        })
        .collect();
    let tokenizer = ByteTokenizer::new();
    let templates = Templates::new();
    let ctx = RowContext {
        tokenizer: &tokenizer,
        templates: &templates,
        problems: &problems,
    };
    f(&ctx).unwrap()
}

/// [`with_ctx`] for methods whose rows read nothing from it.
pub(crate) fn no_ctx<T>(f: impl FnOnce(&RowContext<'_>) -> Result<T>) -> T {
    with_ctx(f)
}

const MINIMAL: &str = r#"
    [model]
    init = "configs/models/tiny-byte-llama.json"
    [task]
    family = "arithmetic"
    difficulty = { digits = 2 }
"#;

fn parse(method: &str, overrides: &[&str]) -> Result<TrainConfig> {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    TrainConfig::parse(&format!("{method}\n{MINIMAL}"), &overrides)
}

fn err(method: &str, overrides: &[&str]) -> String {
    parse(method, overrides).unwrap_err().to_string()
}

#[test]
fn a_bare_name_and_a_table_give_the_same_method() {
    for m in Method::ALL {
        let bare = parse(&format!("method = \"{m}\""), &[]).unwrap();
        let table = parse(&format!("[method]\ntype = \"{m}\""), &[]).unwrap();
        let set = parse("", &[&format!("method={m}")]).unwrap();
        assert_eq!(bare.method, table.method, "{m}");
        assert_eq!(bare.method, set.method, "{m}");
        assert_eq!(bare.method, MethodConfig::defaults(m));
        assert_eq!(bare.method.kind(), m);
    }
    // No method: GRPO.
    assert_eq!(parse("", &[]).unwrap().method, MethodConfig::default());
}

#[test]
fn options_are_read_from_the_table_and_from_overrides() {
    let c = parse(
        "[method]\ntype = \"rltf_sd\"\n[method.objective]\nlogprob_threshold = -3.0",
        &["method.self_distillation.baseline=\"first_turn\""],
    )
    .unwrap();
    let MethodConfig::RltfSd(m) = &c.method else {
        panic!("{:?}", c.method)
    };
    assert_eq!(m.objective.logprob_threshold, -3.0);
    assert_eq!(
        m.self_distillation.baseline,
        redraft_credit_assignment::SdBaseline::FirstTurn
    );
    // `--set method.x=...` on a bare name keeps the method.
    let c = parse("method = \"grpo\"", &["method.objective.kl_coef=0.0"]).unwrap();
    let MethodConfig::Grpo(m) = &c.method else {
        panic!("{:?}", c.method)
    };
    assert_eq!(m.objective.kl_coef, Some(0.0));
}

#[test]
fn keys_a_method_does_not_read_are_refused_with_their_path() {
    // GRPO's KL coefficient under R^3L's objective: never read.
    let e = err("method = \"r3l\"", &["method.objective.grpo.kl_coef=0.1"]);
    assert!(
        e.starts_with("config: method.objective.grpo.kl_coef"),
        "{e}"
    );
    // GRPO-base clip settings while the base is OPMD: ignored, so refused.
    let e = err("method = \"r3l\"", &["method.objective.grpo.clip_high=0.3"]);
    assert!(e.starts_with("config: method.objective.grpo"), "{e}");
    let ok = parse(
        "method = \"r3l\"",
        &[
            "method.objective.base=\"grpo\"",
            "method.objective.grpo.clip_high=0.3",
        ],
    );
    assert!(ok.is_ok(), "{ok:?}");
    // A key no method has.
    let e = err("method = \"opmd\"", &["method.objective.clip_ratio_c=3.0"]);
    assert!(e.starts_with("config: method.objective"), "{e}");
    assert!(e.contains("clip_ratio_c"), "{e}");
    // The objective's settings under the credit table.
    let e = err(
        "method = \"rltf_sd\"",
        &["method.self_distillation.rl_coef=1.0"],
    );
    assert!(e.starts_with("config: method.self_distillation"), "{e}");
    assert!(e.contains("rl_coef"), "{e}");
    // Feedback for a method that takes none; overlong shaping outside DAPO.
    let e = err(
        "method = \"grpo\"",
        &["method.feedback.type=\"verifier_critic\""],
    );
    assert!(
        e.starts_with("config: method") && e.contains("feedback"),
        "{e}"
    );
    let e = err("method = \"grpo\"", &["method.overlong.max_len=8"]);
    assert!(e.contains("overlong"), "{e}");
    // The old top-level tables are gone.
    for key in [
        "strategy.kind=\"r3l\"",
        "objective.method=\"grpo\"",
        "credit.overlong.max_len=8",
        "feedback.type=\"verifier_critic\"",
    ] {
        let e = err("method = \"grpo\"", &[key]);
        assert!(e.contains("unknown field"), "{key}: {e}");
    }
    // Unknown methods and a table without `type`.
    let e = err("method = \"ppo\"", &[]);
    assert!(
        e.starts_with("config: method") && e.contains("unknown method"),
        "{e}"
    );
    let e = err("[method]\nobjective = {}", &[]);
    assert!(e.starts_with("config: method.type"), "{e}");
    // A strategy group size other than the rollout's.
    let e = err("method = \"rltf_fm\"", &["method.strategy.group_size=3"]);
    assert!(e.starts_with("config: method.strategy.group_size"), "{e}");
    // Overlong shaping no response can reach.
    let e = err(
        "method = \"dapo\"",
        &["method.overlong={ max_len = 4096, cache_len = 16, factor = 1.0 }"],
    );
    assert!(e.starts_with("config: method.overlong.max_len"), "{e}");
}

#[test]
fn method_tables_round_trip_through_toml() {
    let tables = [
        "method = \"r3l\"\n",
        "[method]\ntype = \"r3l\"\npositive_amplification = { form = \"paper\" }\nstrategy = { base_per_problem = 2, max_attempts = 1 }\nfeedback = { type = \"verifier_critic\" }",
        "[method]\ntype = \"dapo\"\noverlong = { max_len = 100, cache_len = 20, factor = 0.5 }\ndynamic_sampling = { max_tries = 3 }\n[method.objective]\nclip_high = 0.3",
        "[method]\ntype = \"mulferl\"\nstrategy = { feedback_per_group = 1 }",
        "[method]\ntype = \"rltf_fm\"\n[method.objective]\nfm_coef = 0.5",
    ];
    for t in tables {
        let c = parse(t, &[]).unwrap();
        let again = TrainConfig::parse(&c.to_toml().unwrap(), &[]).unwrap();
        assert_eq!(c, again, "{t}");
    }
}
