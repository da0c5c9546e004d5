//! Snapshots of every rendered prompt, and the template machinery.

use std::collections::BTreeMap;

use redraft_feedback_protocol::templates::{
    self, MULFERL_GROUP_SYSTEM, MULFERL_GROUP_USER, MULFERL_MERGE_SYSTEM, MULFERL_MERGE_USER,
    R3L_REFLECTION_SYSTEM, RLTF_JUDGE_KNIGHTS_KNAVES, RLTF_JUDGE_MATH, TrajectoryStep,
};
use redraft_feedback_protocol::{ReflectionReport, Templates, TrajectoryOutcome, forced_prefix};

fn t() -> Templates {
    Templates::new()
}

#[test]
fn rltf_revision_prompt() {
    let s = t()
        .rltf_revision(
            "What is 6*7?",
            "6*7 = 41, so \\boxed{41}.",
            "The product is off by one.",
        )
        .unwrap();
    insta::assert_snapshot!("rltf_revision", s);
}

/// The released code builds the FM prompt from the turn-1 prompt: its instruction, the prompt up
/// to "Expert Critique:", then "Critique: ". The default template is that text.
#[test]
fn rltf_critique_prompt_is_the_revision_prompt_up_to_the_critique() {
    let (question, previous) = ("What is 6*7?", "6*7 = 41, so \\boxed{41}.");
    let s = t().rltf_critique(question, previous).unwrap();
    insta::assert_snapshot!("rltf_critique", s);
    let revision = t().rltf_revision(question, previous, "unused").unwrap();
    let head = revision.split("Expert Critique:").next().unwrap();
    let instruction = "You are given a question and your previous attempt below. \
        Your task is provide a critique of the attempt.\n\n";
    assert_eq!(s, format!("{instruction}{head}Critique: "));
}

#[test]
fn rltf_judge_prompts() {
    let t = t();
    let with = t
        .render(
            RLTF_JUDGE_MATH,
            minijinja::context! { question => "What is 6*7?", reference => "42", response => "\\boxed{41}" },
        )
        .unwrap();
    let without = t
        .render(
            RLTF_JUDGE_MATH,
            minijinja::context! { question => "What is 6*7?", reference => None::<String>, response => "\\boxed{41}" },
        )
        .unwrap();
    assert!(with.contains("Correct Final Answer"));
    assert!(!without.contains("Correct Final Answer"));
    assert!(!without.contains("42"));
    insta::assert_snapshot!("rltf_judge_math", with);
    insta::assert_snapshot!("rltf_judge_math_no_reference", without);
    let kk = t
        .render(
            RLTF_JUDGE_KNIGHTS_KNAVES,
            minijinja::context! { question => "A says B is a knave. ...", response => "A is a knight" },
        )
        .unwrap();
    insta::assert_snapshot!("rltf_judge_knights_knaves", kk);
}

#[test]
fn mulferl_prompts() {
    let t = t();
    let fb = "Issue:\n1. Earliest/root mistake: 6*7 is not 41.";
    let regen = t.mulferl_regen("What is 6*7?", fb).unwrap();
    let prefix = t.forced_prefix(fb).unwrap();
    assert_eq!(prefix, forced_prefix(fb));
    assert!(
        regen.ends_with(&prefix),
        "the prompt ends with the prefix to continue"
    );
    insta::assert_snapshot!("mulferl_regen", regen);
    insta::assert_snapshot!("mulferl_forced_prefix", prefix);
    let group_user = t
        .render(
            MULFERL_GROUP_USER,
            minijinja::context! { question => "What is 6*7?", solutions => ["\\boxed{41}", "\\boxed{43}"] },
        )
        .unwrap();
    let merge_user = t
        .render(
            MULFERL_MERGE_USER,
            minijinja::context! { question => "What is 6*7?", feedbacks => ["Issue: A", "Issue: B"] },
        )
        .unwrap();
    insta::assert_snapshot!("mulferl_group_user", group_user);
    insta::assert_snapshot!("mulferl_merge_user", merge_user);
    insta::assert_snapshot!(
        "mulferl_group_system",
        t.render(MULFERL_GROUP_SYSTEM, minijinja::context! {})
            .unwrap()
    );
    insta::assert_snapshot!(
        "mulferl_merge_system",
        t.render(MULFERL_MERGE_SYSTEM, minijinja::context! {})
            .unwrap()
    );
}

fn report() -> ReflectionReport {
    ReflectionReport {
        trajectory_summary: "Computed 6*7 as 41 and answered 41.".into(),
        root_cause_analysis: "Why wrong? Multiplication slip. Why? No check — ünchecked.".into(),
        trajectory_outcome: TrajectoryOutcome::Failure,
        improvement_suggestion: "Verify the product by repeated addition.".into(),
        retry_from_step: Some(0),
    }
}

#[test]
fn r3l_prompts() {
    let t = t();
    let guidance = t.r3l_guidance(&report().to_guidance_json()).unwrap();
    insta::assert_snapshot!("r3l_guidance", guidance);
    insta::assert_snapshot!(
        "r3l_guidance_system_appended",
        t.r3l_guidance_system("You are a helpful assistant.", "GUIDANCE")
            .unwrap()
    );
    insta::assert_snapshot!(
        "r3l_guidance_system_separate",
        t.r3l_guidance_system("", "GUIDANCE").unwrap()
    );
    insta::assert_snapshot!("r3l_math_retry", t.r3l_math_retry("41").unwrap());
    insta::assert_snapshot!("r3l_invalid_format", t.r3l_invalid_format().unwrap());
    let steps = vec![
        TrajectoryStep {
            index: 0,
            user: "What is 6*7?".into(),
            assistant: Some("<think>6*7=41</think><answer>41</answer>".into()),
        },
        TrajectoryStep {
            index: 1,
            user: "Feedback: Incorrect.".into(),
            assistant: None,
        },
    ];
    let log = t.r3l_trajectory("Solve it.", &steps).unwrap();
    insta::assert_snapshot!("r3l_reflection_user", t.r3l_reflection_user(&log).unwrap());
    insta::assert_snapshot!(
        "r3l_reflection_system",
        t.render(R3L_REFLECTION_SYSTEM, minijinja::context! {})
            .unwrap()
    );
}

#[test]
fn guidance_json_is_pythons_indent_2_with_ascii_escapes() {
    let json = report().to_guidance_json();
    assert!(json.starts_with("{\n  \"trajectory_summary\": "));
    assert!(
        json.contains("\\u2014") && json.contains("\\u00fc"),
        "{json}"
    );
    assert!(json.is_ascii());
    let back: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(back["retry_from_step"], 0);
    assert_eq!(back["root_cause_analysis"], report().root_cause_analysis);
}

#[test]
fn overrides_replace_templates_by_name_and_reject_unknown_names() {
    let mut o = BTreeMap::new();
    o.insert(
        templates::MULFERL_FORCED_PREFIX.to_string(),
        "<fb>{{ feedback }}</fb>".to_string(),
    );
    let t = Templates::with_overrides(&o).unwrap();
    assert_eq!(t.forced_prefix("x").unwrap(), "<fb>x</fb>");
    o.insert("no_such_template".into(), "x".into());
    assert!(Templates::with_overrides(&o).is_err());
    let mut bad = BTreeMap::new();
    bad.insert(templates::RLTF_REVISION.to_string(), "{% if %}".to_string());
    assert!(Templates::with_overrides(&bad).is_err());
}

#[test]
fn missing_variables_are_errors_not_blanks() {
    let err = t()
        .render(
            templates::RLTF_REVISION,
            minijinja::context! { question => "q" },
        )
        .unwrap_err();
    assert_eq!(err.kind(), redraft_feedback_protocol::ErrorKind::Template);
}

#[test]
fn r3l_math_feedback_follows_the_verdict() {
    use redraft_verifier::Problem;
    use redraft_verifier::tasks::MathProblem;
    let p = Problem::Math(MathProblem {
        problem: "What is 6*7?".into(),
        answer: "42".into(),
        solution: None,
    });
    let t = t();
    assert_eq!(
        t.r3l_math_feedback(&p.verify("<answer>42</answer>"))
            .unwrap(),
        None
    );
    let wrong = t
        .r3l_math_feedback(&p.verify("<answer>41</answer>"))
        .unwrap()
        .unwrap();
    assert!(
        wrong.starts_with("Feedback: Incorrect. Your answer 41 does not match."),
        "{wrong}"
    );
    let bad = t
        .r3l_math_feedback(&p.verify("no answer at all"))
        .unwrap()
        .unwrap();
    assert!(bad.starts_with("Invalid response format."), "{bad}");
}
