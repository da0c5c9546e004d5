//! Serialisation of the protocol types, configuration, and the critique parsers.

use redraft_feedback_protocol::{
    CriticConfig, Feedback, FeedbackKind, FeedbackProvider, FeedbackRequest, FeedbackSource,
    JudgeConfig, Pivot, ProviderConfig, ProviderStats, extract_feedback_block,
    extract_rltf_critique, parse_reflection,
};
use redraft_verifier::{Difficulty, TaskFamily};

#[test]
fn feedback_and_requests_round_trip_through_json() {
    let problem = TaskFamily::Countdown
        .generate_one(1, 2, &Difficulty::default())
        .unwrap();
    let verdict = problem.verify("<answer>1+1</answer>");
    let req =
        FeedbackRequest::new(problem, "<answer>1+1</answer>", verdict.clone()).with_reference(true);
    let json = serde_json::to_string(&req).unwrap();
    assert!(json.contains("\"version\":1"));
    assert_eq!(serde_json::from_str::<FeedbackRequest>(&json).unwrap(), req);

    let mut fb = Feedback::new(
        FeedbackKind::SelfReflection,
        "guidance",
        FeedbackSource::new("self_reflection").with_model("policy"),
    );
    fb.verdict = Some(verdict);
    fb.pivot = Some(Pivot::turn(2));
    fb.hints = vec!["hint".into()];
    fb.latency_ms = 1.5;
    fb.reflection = Some(parse_reflection("nothing", 1));
    let json = serde_json::to_string(&fb).unwrap();
    assert!(json.contains(r#""kind":"self_reflection""#), "{json}");
    assert!(json.contains(r#""status":"invalid""#), "{json}");
    assert_eq!(serde_json::from_str::<Feedback>(&json).unwrap(), fb);
    // Older writers without a version field read as the current version.
    let v: Feedback = serde_json::from_str(
        r#"{"kind":"critique","text":"t","source":{"provider":"x"},"latency_ms":0}"#,
    )
    .unwrap();
    assert_eq!(v.version, 1);
}

#[test]
fn provider_configs_parse_from_toml() {
    let c: ProviderConfig = toml::from_str("type = \"correctness_only\"").unwrap();
    assert_eq!(c, ProviderConfig::CorrectnessOnly {});
    let c: ProviderConfig =
        toml::from_str("type = \"verifier_critic\"\n[critic]\nreveal_answer = true").unwrap();
    assert_eq!(
        c,
        ProviderConfig::VerifierCritic {
            critic: CriticConfig {
                reveal_answer: true,
                closing_sentence: false
            }
        }
    );
    assert_eq!(c.build(None).unwrap().name(), "verifier_critic");
    let c: ProviderConfig = toml::from_str(
        "type = \"group_judge\"\n[endpoint]\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"gpt-4o\"\n[group]\ngroup_size = 4\n[templates]\nmulferl_forced_prefix = \"<f>{{ feedback }}</f>\"",
    )
    .unwrap();
    assert_eq!(c.build(None).unwrap().name(), "group_judge");
    // Typos are rejected, not ignored.
    assert!(
        toml::from_str::<ProviderConfig>("type = \"verifier_critic\"\n[critic]\nreveal = true")
            .is_err()
    );
    assert!(toml::from_str::<ProviderConfig>("type = \"llm_judges\"").is_err());
    assert!(toml::from_str::<ProviderConfig>("type = \"verifier_critic\"\n[critics]").is_err());
    assert!(toml::from_str::<ProviderConfig>("type = \"correctness_only\"\nextra = 1").is_err());
    let c: ProviderConfig = toml::from_str(
        "type = \"llm_judge\"\n[endpoint]\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\n[templates]\nno_such = \"x\"",
    )
    .unwrap();
    assert!(c.build(None).is_err());
    assert_eq!(JudgeConfig::default().temperature, Some(1.0));
}

#[test]
fn stats_merge_and_means() {
    let mut a = ProviderStats {
        requests: 2,
        successes: 2,
        total_latency_ms: 10.0,
        max_latency_ms: 6.0,
        ..ProviderStats::default()
    };
    let b = ProviderStats {
        requests: 1,
        max_latency_ms: 1.0,
        ..ProviderStats::default()
    };
    a.merge(&b);
    assert_eq!(a.requests, 3);
    assert_eq!(a.mean_latency_ms(), 5.0);
    assert_eq!(a.max_latency_ms, 6.0);
    assert_eq!(ProviderStats::default().mean_latency_ms(), 0.0);
}

#[test]
fn rltf_critique_extraction() {
    assert_eq!(
        extract_rltf_critique("Thinking: a\nCritique: first\nCritique: Second one.<|im_end|>"),
        "Second one."
    );
    assert_eq!(
        extract_rltf_critique("no marker\nlast line here\n"),
        "last line here"
    );
    assert_eq!(extract_rltf_critique(""), "");
}

#[test]
fn mulferl_feedback_extraction() {
    assert_eq!(
        extract_feedback_block("<feedback>\nIssue: x\n</feedback>"),
        "Issue: x"
    );
    // The stop string "</feedback>" cuts the closing tag.
    assert_eq!(extract_feedback_block("<feedback>\nIssue: y\n"), "Issue: y");
    assert_eq!(
        extract_feedback_block("Issue: z</feedback> trailing"),
        "Issue: z"
    );
    assert_eq!(
        extract_feedback_block("<think>hmm</think><thinking><FEEDBACK>w</FEEDBACK></thinking>"),
        "w"
    );
    assert_eq!(extract_feedback_block("  plain text  "), "plain text");
    assert_eq!(
        extract_feedback_block("<think>only thoughts"),
        "only thoughts"
    );
}

#[test]
fn the_request_question_and_reference() {
    let problem = TaskFamily::KnightsKnaves
        .generate_one(3, 0, &Difficulty::default())
        .unwrap();
    let req = FeedbackRequest::new(problem.clone(), "x", problem.verify("x"));
    assert!(req.reference().is_none());
    assert_eq!(
        req.clone().with_reference(true).reference(),
        Some(problem.solution())
    );
    assert!(req.question().contains("knight"));
    let traj = req.trajectory();
    assert_eq!(traj.last().unwrap().role, "assistant");
    let _ = redraft_feedback_protocol::CorrectnessOnly::new().feedback(&[req]);
}
