//! Each rollout strategy on a tiny model: masks, rewards, feedback records, provenance and
//! reproducibility.
//!
//! A random model almost never solves a task, so the success paths use a hand-built *bigram*
//! model: attention and MLP outputs are zero, so the logits depend only on the last token, and
//! the embedding / LM head encode chosen transitions with a large margin. Its answer is then a
//! known string (e.g. `\boxed{2}` after the generation prompt's `\n`), whatever the prompt.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use redraft_feedback_protocol::{
    CORRECT_TEXT, ChatModel, ChatRequest, ChatResponse, CorrectnessOnly, CriticConfig,
    FeedbackProvider, FnChatModel, INCORRECT_TEXT, SelfReflection, SelfReflectionConfig, Templates,
    VerifierCritic,
};
use redraft_model::burn::tensor::{Device, Int, Tensor, TensorData};
use redraft_model::{
    CausalLm, DeviceSpec, Init, ModelConfig, RandomInit, WeightSource, next_token_logprobs,
};
use redraft_rollout_engine::{
    Completion, GroupUse, LocalPolicy, MeteredPolicy, MulFeRlConfig, Policy, PolicyChat, R3lConfig,
    RltfConfig, RolloutBatch, RolloutContext, RowRequest, SamplingParams, Sequence,
    SingleTurnConfig, StrategyConfig, StrategyKind, TokenKind,
};
use redraft_tokenizer::{ByteTokenizer, Conversation, Message, Tokenizer};
use redraft_verifier::Problem;
use redraft_verifier::tasks::MathProblem;

const IM_END: u32 = 260;

fn config() -> ModelConfig {
    ModelConfig::from_json_str(
        r#"{"model_type": "llama", "vocab_size": 261, "hidden_size": 32,
            "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 2, "max_position_embeddings": 4096,
            "tie_word_embeddings": false}"#,
    )
    .unwrap()
}

fn device() -> Device {
    DeviceSpec::Cpu.device().unwrap()
}

fn params() -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        max_new_tokens: 12,
        ..SamplingParams::default()
    }
}

/// Weights of a bigram model: `edges[from] = [(to, logit)]`.
struct Bigram {
    random: RandomInit,
    dims: HashMap<u32, usize>,
    edges: Vec<(u32, Vec<(u32, f32)>)>,
}

impl WeightSource for Bigram {
    fn tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
    ) -> redraft_model::Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        if name == "model.embed_tokens.weight" {
            let d = shape[1];
            let mut w = vec![0.0; n];
            for (&t, &k) in &self.dims {
                w[t as usize * d + k] = 1.0;
            }
            return Ok(w);
        }
        if name == "lm_head.weight" {
            let d = shape[1];
            let mut w = vec![0.0; n];
            for (from, tos) in &self.edges {
                for (to, logit) in tos {
                    // RMSNorm turns the one-hot embedding into sqrt(d) on its dimension.
                    w[*to as usize * d + self.dims[from]] = logit / (d as f32).sqrt();
                }
            }
            return Ok(w);
        }
        if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") {
            return Ok(vec![0.0; n]);
        }
        self.random.tensor(name, shape, init)
    }
}

/// A bigram model following `chains`: each string's bytes follow one another, the last one is
/// followed by `<|im_end|>`; `start` bytes lead into a chain's first byte.
fn bigram_model(chains: &[(u8, &str)]) -> CausalLm {
    let mut edges: Vec<(u32, Vec<(u32, f32)>)> = Vec::new();
    let mut add = |from: u32, to: u32| match edges.iter_mut().find(|(f, _)| *f == from) {
        Some((_, tos)) => tos.push((to, 40.0)),
        None => edges.push((from, vec![(to, 40.0)])),
    };
    for (start, chain) in chains {
        let bytes: Vec<u32> = chain.bytes().map(u32::from).collect();
        add(u32::from(*start), bytes[0]);
        for w in bytes.windows(2) {
            add(w[0], w[1]);
        }
        add(*bytes.last().unwrap(), IM_END);
    }
    let mut dims = HashMap::new();
    for (from, _) in &edges {
        let next = dims.len();
        dims.entry(*from).or_insert(next);
    }
    assert!(dims.len() <= 32);
    let mut source = Bigram {
        random: RandomInit::new(3, 0.02),
        dims,
        edges,
    };
    CausalLm::build(&config(), &mut source, &device()).unwrap()
}

fn math(answer: &str) -> Problem {
    Problem::Math(MathProblem {
        problem: format!("What is 1 + {}?", answer.parse::<i32>().unwrap() - 1),
        answer: answer.into(),
        solution: None,
    })
}

/// Every sequence of every episode is well formed: kinds and mask agree, the mask is exactly
/// the sampled ids, log-probs are finite and non-positive exactly there, the turns' sampled
/// ranges are trainable, and nothing else is.
fn check_well_formed(batch: &RolloutBatch) {
    for (i, e) in batch.episodes.iter().enumerate() {
        assert_eq!(batch.groups[e.group].episodes[e.sample], i);
        for s in &e.sequences {
            assert_eq!(s.ids.len(), s.kinds.len());
            assert_eq!(s.ids.len(), s.logprobs.len());
            for (k, (kind, m)) in s.kinds.iter().zip(&s.trainable_mask).enumerate() {
                assert_eq!(*m, *kind == TokenKind::Sampled, "token {k}");
                if *m {
                    assert!(s.logprobs[k].is_finite() && s.logprobs[k] <= 0.0);
                } else if *kind != TokenKind::Replayed {
                    assert_eq!(s.logprobs[k], 0.0);
                }
            }
            // Spans cover the ids without gaps.
            let mut at = 0;
            for span in &s.spans {
                assert_eq!(span.start, at);
                at = span.end;
            }
            assert_eq!(at, s.ids.len());
        }
        let mut sampled = 0;
        for t in &e.turns {
            let s = &e.sequences[t.sequence];
            assert!(s.trainable_mask[t.sampled.clone()].iter().all(|m| *m));
            assert!(
                s.kinds[t.sampled.clone()]
                    .iter()
                    .all(|k| *k == TokenKind::Sampled)
            );
            sampled += t.sampled.len();
        }
        let masked: usize = e
            .sequences
            .iter()
            .map(|s| s.trainable_mask.iter().filter(|m| **m).count())
            .sum();
        assert_eq!(
            masked, sampled,
            "episode {i}: only turn tokens are trainable"
        );
        assert_eq!(e.reward, e.turns.last().unwrap().reward);
    }
}

fn decode(s: &Sequence, kind: TokenKind) -> String {
    let ids: Vec<u32> = s
        .ids
        .iter()
        .zip(&s.kinds)
        .filter(|(_, k)| **k == kind)
        .map(|(id, _)| *id)
        .collect();
    ByteTokenizer::new().decode(&ids, false).unwrap()
}

/// The model as a policy.
fn local(model: &CausalLm) -> LocalPolicy {
    LocalPolicy::for_tokenizer(model.clone(), device(), &ByteTokenizer::new())
}

fn rollout(
    config: &StrategyConfig,
    model: &CausalLm,
    provider: Option<&dyn FeedbackProvider>,
    problems: &[Problem],
    seed: u64,
) -> RolloutBatch {
    let tok = ByteTokenizer::new();
    let policy = local(model);
    let mut ctx = RolloutContext::new(&policy, &tok, params());
    if let Some(p) = provider {
        ctx = ctx.with_feedback(p);
    }
    config
        .build()
        .unwrap()
        .rollout(&ctx, problems, seed)
        .unwrap()
}

#[test]
fn single_turn_groups_are_well_formed_and_reproducible() {
    let model = CausalLm::init(&config(), 11, &device()).unwrap();
    let problems = [math("2"), math("5")];
    let config = StrategyConfig::SingleTurn(SingleTurnConfig { group_size: 3 });
    let batch = rollout(&config, &model, None, &problems, 7);
    check_well_formed(&batch);
    assert_eq!(batch.groups.len(), 2);
    assert_eq!(batch.episodes.len(), 6);
    let tok = ByteTokenizer::new();
    for e in &batch.episodes {
        assert_eq!(e.provenance.strategy, StrategyKind::SingleTurn);
        assert_eq!(batch.groups[e.group].usage, GroupUse::Rl);
        assert_eq!(e.turns.len(), 1);
        // The prompt is the chat template's rendering of the problem, token for token.
        let msgs: Vec<Message> = problems[e.problem]
            .chat()
            .into_iter()
            .map(|m| Message::new(m.role, m.content))
            .collect();
        let prompt = Conversation::from_messages(&tok, &msgs, true).unwrap();
        let s = &e.sequences[0];
        assert_eq!(&s.ids[..prompt.len()], prompt.ids());
        assert_eq!(s.prompt_len(), prompt.len());
        assert!(
            s.kinds[..prompt.len()]
                .iter()
                .all(|k| *k != TokenKind::Sampled)
        );
        // A random model fails: reward is the verdict's.
        assert_eq!(e.reward, e.turns[0].verdict.reward);
        check_logprobs(&model, s);
    }
    assert_eq!(
        timeless(batch.clone()),
        timeless(rollout(&config, &model, None, &problems, 7))
    );
    assert_ne!(batch, rollout(&config, &model, None, &problems, 8));
    // Serialisable.
    let json = serde_json::to_string(&batch).unwrap();
    let back: RolloutBatch = serde_json::from_str(&json).unwrap();
    assert_eq!(back, batch);
}

#[test]
fn rltf_terminates_on_success_and_revises_failures() {
    // After `\n` (the generation prompt) the model answers `\boxed{2}`.
    let model = bigram_model(&[(b'\n', "\\boxed{2}")]);
    let critic = VerifierCritic::new(CriticConfig::default());
    let problems = [math("2"), math("3")];
    let config = StrategyConfig::Rltf(RltfConfig {
        group_size: 2,
        ..RltfConfig::default()
    });
    let batch = rollout(&config, &model, Some(&critic), &problems, 1);
    check_well_formed(&batch);
    assert_eq!(batch.stats.feedback_requests, 2);
    for e in &batch.episodes {
        assert_eq!(e.turns[0].text, "\\boxed{2}");
        if e.problem == 0 {
            // Correct first attempt: early termination.
            assert_eq!(e.turns.len(), 1);
            assert!(e.feedback.is_empty());
            assert_eq!(e.turn_rewards(), vec![1.0]);
        } else {
            assert_eq!(e.turns.len(), 2);
            assert_eq!(e.sequences.len(), 2);
            assert_eq!(e.turn_rewards(), vec![0.0, 0.0]);
            let fb = e.feedback[0].feedback.as_ref().unwrap();
            assert_eq!(e.feedback[0].turn, Some(0));
            // The revision is a fresh prompt made by the template, all of it feedback context.
            let revision = &e.sequences[1];
            let expected = Templates::new()
                .rltf_revision("What is 1 + 2?", "\\boxed{2}", &fb.text)
                .unwrap();
            assert_eq!(
                decode(revision, TokenKind::Feedback),
                format!("<|im_start|>user\n{expected}<|im_end|>\n")
            );
            assert_eq!(decode(revision, TokenKind::Sampled), "\\boxed{2}<|im_end|>");
            assert_eq!(revision.sampled_ids().len(), 10);
        }
    }
    assert_eq!(
        timeless(batch.clone()),
        timeless(rollout(&config, &model, Some(&critic), &problems, 1))
    );
}

#[test]
fn rltf_without_early_termination_critiques_every_attempt() {
    let model = bigram_model(&[(b'\n', "\\boxed{2}")]);
    let provider = CorrectnessOnly::new();
    let config = StrategyConfig::Rltf(RltfConfig {
        group_size: 1,
        early_termination: false,
        ..RltfConfig::default()
    });
    let batch = rollout(&config, &model, Some(&provider), &[math("2")], 0);
    check_well_formed(&batch);
    let e = &batch.episodes[0];
    assert_eq!(e.turns.len(), 2);
    assert_eq!(e.feedback[0].feedback.as_ref().unwrap().text, CORRECT_TEXT);
    // No provider is an error, not a panic.
    let tok = ByteTokenizer::new();
    let policy = local(&model);
    let ctx = RolloutContext::new(&policy, &tok, params());
    assert!(
        config
            .build()
            .unwrap()
            .rollout(&ctx, &[math("2")], 0)
            .is_err()
    );
}

#[test]
fn mulferl_regenerates_all_failed_groups_and_routes_them() {
    // Base answers (after `\n`) are `N`: badly formatted, reward 0. A regeneration starts with
    // the forced prefix ending in `>`, after which the model answers `\boxed{2}`.
    let model = bigram_model(&[(b'\n', "N"), (b'>', "\\boxed{2}")]);
    let provider = CorrectnessOnly::new();
    let problems = [math("2"), math("3")];
    let config = StrategyConfig::Mulferl(MulFeRlConfig {
        group_size: 3,
        ..MulFeRlConfig::default()
    });
    let batch = rollout(&config, &model, Some(&provider), &problems, 5);
    check_well_formed(&batch);
    // Groups: two base groups, round 1 for both, round 2 for problem 1 only.
    let summary: Vec<(usize, usize, GroupUse)> = batch
        .groups
        .iter()
        .map(|g| (g.problem, g.round, g.usage))
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, 0, GroupUse::Regenerated),
            (1, 0, GroupUse::Regenerated),
            (0, 1, GroupUse::Preference),
            (1, 1, GroupUse::Regenerated),
            (1, 2, GroupUse::Dropped),
        ]
    );
    let prefix = format!("<thinking><feedback>{INCORRECT_TEXT}</feedback>");
    for e in &batch.episodes {
        let g = &batch.groups[e.group];
        if g.round == 0 {
            assert_eq!(e.provenance.round, None);
            assert_eq!(e.turns[0].text, "N");
            continue;
        }
        assert_eq!(e.provenance.round, Some(g.round));
        let parent = e.provenance.parent_group.unwrap();
        assert_eq!(batch.groups[parent].problem, e.problem);
        assert_eq!(batch.groups[parent].round + 1, g.round);
        let s = &e.sequences[0];
        assert_eq!(decode(s, TokenKind::ForcedPrefix), prefix);
        assert_eq!(decode(s, TokenKind::Sampled), "\\boxed{2}<|im_end|>");
        let regen = Templates::new()
            .mulferl_regen(&format!("What is 1 + {}?", e.problem + 1), INCORRECT_TEXT)
            .unwrap();
        assert_eq!(
            decode(s, TokenKind::Feedback),
            format!("<|im_start|>user\n{regen}<|im_end|>\n")
        );
        assert_eq!(e.turns[0].text, format!("{prefix}\\boxed{{2}}"));
        assert_eq!(e.reward, if e.problem == 0 { 1.0 } else { 0.0 });
        let record = e.feedback[0].feedback.as_ref().unwrap();
        assert_eq!(record.text, INCORRECT_TEXT);
    }
    // Preference pairs: each regeneration of problem 0 against a distinct base response.
    assert_eq!(batch.pairs.len(), 3);
    let mut rejected: Vec<usize> = batch.pairs.iter().map(|p| p.rejected).collect();
    rejected.sort_unstable();
    assert_eq!(rejected, batch.groups[0].episodes);
    for p in &batch.pairs {
        assert_eq!(batch.episodes[p.chosen].group, 2);
    }
    assert_eq!(batch.stats.feedback_requests, 3 + 3 + 3);
    assert_eq!(
        timeless(batch.clone()),
        timeless(rollout(&config, &model, Some(&provider), &problems, 5))
    );
}

#[test]
fn mulferl_keeps_solved_base_groups_without_feedback() {
    let model = bigram_model(&[(b'\n', "\\boxed{2}")]);
    let provider = CorrectnessOnly::new();
    let config = StrategyConfig::Mulferl(MulFeRlConfig {
        group_size: 2,
        ..MulFeRlConfig::default()
    });
    let batch = rollout(&config, &model, Some(&provider), &[math("2")], 5);
    assert_eq!(batch.groups.len(), 1);
    assert_eq!(batch.groups[0].usage, GroupUse::Rl);
    assert_eq!(batch.stats.feedback_requests, 0);
}

#[test]
fn strategy_configs_are_tagged_and_checked() {
    let c: StrategyConfig = serde_json::from_str(r#"{"type": "rltf", "group_size": 4}"#).unwrap();
    assert_eq!(
        c,
        StrategyConfig::Rltf(RltfConfig {
            group_size: 4,
            ..RltfConfig::default()
        })
    );
    let c: StrategyConfig = serde_json::from_str(r#"{"type": "mulferl"}"#).unwrap();
    assert_eq!(c, StrategyConfig::Mulferl(MulFeRlConfig::default()));
    assert_eq!(
        StrategyConfig::default(),
        StrategyConfig::SingleTurn(SingleTurnConfig::default())
    );
    assert!(StrategyConfig::default().build().is_ok());
    let bad: StrategyConfig =
        serde_json::from_str(r#"{"type": "single_turn", "group_size": 0}"#).unwrap();
    assert!(bad.build().is_err());
    assert!(serde_json::from_str::<StrategyConfig>(r#"{"type": "rltf", "groupsize": 4}"#).is_err());
}

#[test]
fn policy_chat_answers_reproducibly_and_serves_self_reflection() {
    let model = CausalLm::init(&config(), 11, &device()).unwrap();
    let tok: Arc<dyn Tokenizer> = Arc::new(ByteTokenizer::new());
    let chat = || PolicyChat::new(Arc::new(local(&model)), tok.clone(), params());
    let requests = [
        ChatRequest::new(vec![Message::user("hi")]),
        ChatRequest::new(vec![Message::user("hello")]).max_tokens(3),
    ];
    let a = chat().complete(&requests);
    let b = chat().complete(&requests);
    assert_eq!(texts(&a), texts(&b));
    assert_eq!(a.len(), 2);
    let usage = a[1].as_ref().unwrap().usage.unwrap();
    assert!(usage.completion_tokens <= 3);
    // The policy as a self-reflection model: a random policy writes no valid report; that is
    // counted, not an error.
    let reflection = SelfReflection::new(
        Arc::new(chat()),
        Arc::new(Templates::new()),
        SelfReflectionConfig::default(),
    );
    let problem = math("2");
    let verdict = problem.verify("no");
    let out = reflection.feedback(&[redraft_feedback_protocol::FeedbackRequest::new(
        problem, "no", verdict,
    )]);
    let fb = out[0].as_ref().unwrap();
    assert!(!fb.triggers_retry());
    assert_eq!(reflection.stats().invalid_reflections, 1);
    // FnChatModel is a ChatModel too (used by the R^3L tests).
    let fixed = FnChatModel::new("fixed", |_: &ChatRequest| Ok("{}".to_string()));
    assert_eq!(fixed.complete(&requests).len(), 2);
}

const REPORT: &str = r#"{"trajectory_summary": "tried", "root_cause_analysis": "why",
    "trajectory_outcome": "failure", "improvement_suggestion": "box the sum",
    "retry_from_step": 1}"#;

fn fixed_reflection() -> SelfReflection {
    let model = FnChatModel::new("fixed", |_: &ChatRequest| Ok(REPORT.to_string()));
    SelfReflection::new(
        Arc::new(model),
        Arc::new(Templates::new()),
        SelfReflectionConfig::default(),
    )
}

const GUIDANCE_MARK: &str = "# Previous Attempt Analysis & Guidance";

#[test]
fn r3l_retries_from_the_pivot_replaying_the_prefix_and_distills() {
    let model = CausalLm::init(&config(), 11, &device()).unwrap();
    let reflection = fixed_reflection();
    let config = StrategyConfig::R3l(R3lConfig {
        base_per_problem: 2,
        max_attempts: 3,
        replay_to_pivot: true,
        ..R3lConfig::default()
    });
    let problems = [math("2")];
    let batch = rollout(&config, &model, Some(&reflection), &problems, 3);
    check_well_formed(&batch);
    assert_eq!(batch.stats.feedback_requests, 2);
    assert_eq!(batch.stats.invalid_reflections, 0);
    let explore = &batch.groups[0];
    assert_eq!(explore.usage, GroupUse::Rl);
    assert_eq!(explore.episodes.len(), 4, "2 bases + 2 distilled copies");
    // The random policy fails: the guided retries are kept without gradient.
    assert_eq!(batch.groups[1].usage, GroupUse::Unused);
    let guided: Vec<_> = batch.groups[1]
        .episodes
        .iter()
        .map(|&i| &batch.episodes[i])
        .collect();
    for (k, &d) in explore.episodes[2..].iter().enumerate() {
        let distilled = &batch.episodes[d];
        let retry = guided[k];
        assert!(distilled.provenance.distilled && !retry.provenance.distilled);
        let b = distilled.provenance.base.unwrap();
        assert_eq!(retry.provenance.base, Some(b));
        assert_eq!(distilled.provenance.pivot, Some(1));
        let base = &batch.episodes[b];
        assert_eq!(base.turns.len(), 3, "three failed attempts");
        // The base's reflection is recorded on it.
        let fb = base.feedback.last().unwrap().feedback.as_ref().unwrap();
        assert!(fb.triggers_retry());
        // Retry from turn 1: the base's first attempt and its feedback are replayed verbatim.
        let (bs, rs, ds) = (
            &base.sequences[0],
            &retry.sequences[0],
            &distilled.sequences[0],
        );
        let shared = |s: &Sequence| {
            s.ids
                .iter()
                .zip(&bs.ids)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let replayed = shared(rs);
        assert!(replayed > base.turns[0].sampled.end);
        assert_eq!(&ds.ids[..replayed], &bs.ids[..replayed]);
        let first = base.turns[0].sampled.clone();
        assert!(
            rs.kinds[first.clone()]
                .iter()
                .all(|k| *k == TokenKind::Replayed)
        );
        assert_eq!(&rs.logprobs[first.clone()], &bs.logprobs[first]);
        // Guidance only in the guided copy; same sampled ids in both copies.
        assert!(decode(rs, TokenKind::Feedback).contains(GUIDANCE_MARK));
        let all = ByteTokenizer::new().decode(&ds.ids, false).unwrap();
        assert!(!all.contains(GUIDANCE_MARK));
        assert_eq!(ds.sampled_ids(), rs.sampled_ids());
        assert!(ds.ids.len() < rs.ids.len());
        assert_eq!(distilled.turn_rewards(), retry.turn_rewards());
        assert_eq!(retry.turns.len(), 2, "attempts 1 and 2");
        check_logprobs(&model, bs);
        check_logprobs(&model, rs);
    }
    assert_eq!(
        timeless(batch.clone()),
        timeless(rollout(&config, &model, Some(&reflection), &problems, 3))
    );
}

#[test]
fn r3l_math_retries_restart_with_guidance_in_the_system_prompt() {
    let model = CausalLm::init(&config(), 11, &device()).unwrap();
    let reflection = fixed_reflection();
    let config = StrategyConfig::R3l(R3lConfig {
        base_per_problem: 1,
        max_attempts: 2,
        replay_to_pivot: false,
        ..R3lConfig::default()
    });
    let batch = rollout(&config, &model, Some(&reflection), &[math("2")], 4);
    check_well_formed(&batch);
    let retry = &batch.episodes[batch.groups[1].episodes[0]];
    assert_eq!(retry.provenance.pivot, Some(0));
    assert_eq!(retry.provenance.reused_prefix_tokens, 0);
    assert_eq!(retry.sequences[0].spans[0].role, "system");
    assert!(decode(&retry.sequences[0], TokenKind::Feedback).contains(GUIDANCE_MARK));
    let base = &batch.episodes[0];
    assert!(
        base.feedback
            .iter()
            .any(|r| r.feedback.as_ref().is_some_and(|f| {
                f.text.starts_with("Invalid response format") || f.text.starts_with("Feedback")
            }))
    );
}

#[test]
fn r3l_with_the_policy_reflecting_counts_invalid_reports() {
    let model = CausalLm::init(&config(), 11, &device()).unwrap();
    let tok: Arc<dyn Tokenizer> = Arc::new(ByteTokenizer::new());
    let reflection = SelfReflection::new(
        Arc::new(PolicyChat::new(Arc::new(local(&model)), tok, params())),
        Arc::new(Templates::new()),
        SelfReflectionConfig::default(),
    );
    let config = StrategyConfig::R3l(R3lConfig {
        base_per_problem: 2,
        max_attempts: 1,
        replay_to_pivot: false,
        ..R3lConfig::default()
    });
    let batch = rollout(&config, &model, Some(&reflection), &[math("2")], 4);
    check_well_formed(&batch);
    assert_eq!(batch.stats.invalid_reflections, 2);
    assert_eq!(batch.groups.len(), 1, "no retries");
    assert_eq!(batch.episodes.len(), 2);
}

/// The recorded sampling log-probs of `seq` equal the model's log-probs in a full forward pass
/// over the whole sequence (temperature 1, no truncation): KV-cached decoding, including a
/// cache reused from another episode, matches a recomputation.
fn check_logprobs(model: &CausalLm, seq: &Sequence) {
    let ids: Vec<i64> = seq.ids.iter().map(|t| i64::from(*t)).collect();
    let n = ids.len();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device());
    let logits = model.forward(tokens.clone(), &[]).unwrap();
    let lp: Vec<f32> = next_token_logprobs(logits, tokens)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    for (i, m) in seq.trainable_mask.iter().enumerate() {
        if *m {
            let diff = (lp[i - 1] - seq.logprobs[i]).abs();
            assert!(
                diff < 1e-3,
                "token {i}: {} vs {}",
                lp[i - 1],
                seq.logprobs[i]
            );
        }
    }
}

/// The batch without wall-clock feedback latencies (the only non-reproducible field).
fn timeless(mut batch: RolloutBatch) -> RolloutBatch {
    for e in &mut batch.episodes {
        for r in &mut e.feedback {
            if let Some(f) = &mut r.feedback {
                f.latency_ms = 0.0;
            }
        }
    }
    batch
}

fn texts(responses: &[redraft_feedback_protocol::Result<ChatResponse>]) -> Vec<String> {
    responses
        .iter()
        .map(|r| r.as_ref().unwrap().text.clone())
        .collect()
}

#[test]
fn mulferl_drops_a_group_whose_regeneration_prompt_overflows_the_context() {
    // Both base answers fail; one is critiqued; the regeneration prompt (over 5000 bytes) does
    // not fit the 4096-token context: the group is dropped and counted, the rollout goes on.
    let model = bigram_model(&[(b'\n', "N"), (b'>', "\\boxed{2}")]);
    let provider = CorrectnessOnly::new();
    let tok = ByteTokenizer::new();
    let policy = local(&model);
    let long = format!("{}{{{{ question }}}}\n{{{{ feedback }}}}", "x".repeat(5000));
    let templates =
        Templates::with_overrides(&[("mulferl_regen".to_string(), long)].into()).unwrap();
    let ctx = RolloutContext::new(&policy, &tok, params())
        .with_feedback(&provider)
        .with_templates(templates);
    let config = StrategyConfig::Mulferl(MulFeRlConfig {
        group_size: 2,
        feedback_per_group: Some(1),
        ..MulFeRlConfig::default()
    });
    let batch = config
        .build()
        .unwrap()
        .rollout(&ctx, &[math("2")], 5)
        .unwrap();
    assert_eq!(batch.stats.feedback_requests, 1);
    assert_eq!(batch.stats.feedback_failures, 1);
    assert_eq!(batch.groups.len(), 1);
    assert_eq!(batch.groups[0].usage, GroupUse::Dropped);
    let first = &batch.episodes[batch.groups[0].episodes[0]];
    let error = first.feedback[0].error.as_deref().unwrap();
    assert!(
        error.contains("does not fit the 4096-token context"),
        "{error}"
    );
    let zero = StrategyConfig::Mulferl(MulFeRlConfig {
        feedback_per_group: Some(0),
        ..MulFeRlConfig::default()
    });
    assert!(zero.build().is_err());
}

/// A policy that records the completion tokens of every generate call it serves.
struct Recording {
    inner: LocalPolicy,
    tokens: AtomicUsize,
}

impl Policy for Recording {
    fn generate(
        &self,
        rows: Vec<RowRequest>,
        stop: &dyn Fn(usize, &[u32]) -> bool,
    ) -> redraft_rollout_engine::Result<Vec<Completion>> {
        let out = self.inner.generate(rows, stop)?;
        let n: usize = out.iter().map(|c| c.tokens.len()).sum();
        self.tokens.fetch_add(n, Ordering::Relaxed);
        Ok(out)
    }

    fn max_context(&self) -> usize {
        self.inner.max_context()
    }
}

/// Makes a feedback provider, possibly sampling from the given policy.
type Reflect = Box<dyn Fn(Arc<dyn Policy>) -> Option<Box<dyn FeedbackProvider>>>;

fn reflect(f: impl Fn(Arc<dyn Policy>) -> Option<Box<dyn FeedbackProvider>> + 'static) -> Reflect {
    Box::new(f)
}

/// A rollout through a meter over a recording policy; `reflect` gives the feedback provider,
/// which may sample from the same meter. Returns the batch and the recorded tokens.
fn recorded_rollout(
    config: &StrategyConfig,
    model: &CausalLm,
    reflect: impl FnOnce(Arc<dyn Policy>) -> Option<Box<dyn FeedbackProvider>>,
) -> (RolloutBatch, usize) {
    let tok = ByteTokenizer::new();
    let meter = Arc::new(MeteredPolicy::new(Recording {
        inner: local(model),
        tokens: AtomicUsize::new(0),
    }));
    let provider = reflect(meter.clone());
    let mut ctx = RolloutContext::new(meter.as_ref(), &tok, params());
    if let Some(p) = provider.as_deref() {
        ctx = ctx.with_feedback(p);
    }
    let batch = config
        .build()
        .unwrap()
        .rollout(&ctx, &[math("2"), math("3")], 9)
        .unwrap();
    (batch, meter.inner().tokens.load(Ordering::Relaxed))
}

#[test]
fn sampled_tokens_are_every_decoded_token_exactly_once() {
    let random = CausalLm::init(&config(), 11, &device()).unwrap();
    let answering = bigram_model(&[(b'\n', "N"), (b'>', "\\boxed{2}")]);
    let none = reflect(|_| None);
    let critic = reflect(|_| Some(Box::new(VerifierCritic::new(CriticConfig::default()))));
    let correctness = reflect(|_| Some(Box::new(CorrectnessOnly::new())));
    let fixed = reflect(|_| Some(Box::new(fixed_reflection())));
    let by_policy = reflect(|policy| {
        let chat = PolicyChat::new(policy, Arc::new(ByteTokenizer::new()), params());
        Some(Box::new(SelfReflection::new(
            Arc::new(chat),
            Arc::new(Templates::new()),
            SelfReflectionConfig::default(),
        )))
    });
    let r3l = StrategyConfig::R3l(R3lConfig {
        base_per_problem: 2,
        max_attempts: 2,
        ..R3lConfig::default()
    });
    let cases: Vec<(&str, StrategyConfig, &CausalLm, &Reflect)> = vec![
        (
            "single_turn",
            StrategyConfig::SingleTurn(SingleTurnConfig { group_size: 3 }),
            &random,
            &none,
        ),
        (
            "rltf",
            StrategyConfig::Rltf(RltfConfig {
                group_size: 2,
                ..RltfConfig::default()
            }),
            &random,
            &critic,
        ),
        (
            "mulferl",
            StrategyConfig::Mulferl(MulFeRlConfig {
                group_size: 2,
                ..MulFeRlConfig::default()
            }),
            &answering,
            &correctness,
        ),
        ("r3l, retries", r3l.clone(), &random, &fixed),
        ("r3l, reflection by the policy", r3l, &random, &by_policy),
    ];
    for (name, config, model, provider) in cases {
        let (batch, recorded) = recorded_rollout(&config, model, provider);
        assert!(recorded > 0, "{name}");
        assert_eq!(batch.stats.sampled_tokens, recorded, "{name}");
    }
}

#[test]
fn r3l_retries_only_what_failed() {
    // The model answers `\boxed{2}`: right for 1 + 1, wrong for 1 + 2. With a critic, only the
    // failed bases are retried.
    let model = bigram_model(&[(b'\n', "\\boxed{2}")]);
    let critic = VerifierCritic::new(CriticConfig::default());
    let config = StrategyConfig::R3l(R3lConfig {
        base_per_problem: 2,
        max_attempts: 1,
        ..R3lConfig::default()
    });
    let batch = rollout(&config, &model, Some(&critic), &[math("2"), math("3")], 2);
    check_well_formed(&batch);
    let retried: Vec<usize> = batch
        .episodes
        .iter()
        .filter_map(|e| e.provenance.base)
        .map(|b| batch.episodes[b].problem)
        .collect();
    assert!(!retried.is_empty());
    assert!(retried.iter().all(|p| *p == 1), "{retried:?}");
}

/// A byte tokenizer that counts the ids it is asked to decode.
#[derive(Debug, Default)]
struct CountingDecodes {
    inner: ByteTokenizer,
    decoded: AtomicUsize,
}

impl Tokenizer for CountingDecodes {
    fn encode(&self, text: &str) -> redraft_tokenizer::Result<Vec<u32>> {
        self.inner.encode(text)
    }
    fn decode(&self, ids: &[u32], skip_special: bool) -> redraft_tokenizer::Result<String> {
        self.decoded.fetch_add(ids.len(), Ordering::Relaxed);
        self.inner.decode(ids, skip_special)
    }
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
    fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
    fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        self.inner.token_bytes(id)
    }
    fn special_tokens(&self) -> &redraft_tokenizer::SpecialTokens {
        self.inner.special_tokens()
    }
    fn chat_template(&self) -> Option<&redraft_tokenizer::ChatTemplate> {
        self.inner.chat_template()
    }
}

#[test]
fn policy_chat_checks_stop_strings_without_decoding_the_answer_again_per_token() {
    let model = CausalLm::init(&config(), 11, &device()).unwrap();
    let tok = Arc::new(CountingDecodes::default());
    let params = SamplingParams {
        max_new_tokens: 120,
        ..params()
    };
    let chat = PolicyChat::new(Arc::new(local(&model)), tok.clone(), params);
    // A stop string the random model never writes: every token is checked against it.
    let request =
        ChatRequest::new(vec![Message::user("hi")]).stop(vec!["\u{7f}\u{7f}\u{7f}".into()]);
    let before = tok.decoded.load(Ordering::Relaxed);
    let answer = chat.complete(&[request]).remove(0).unwrap();
    let n = answer.usage.unwrap().completion_tokens as usize;
    assert!(n >= 20, "the check needs a long answer; got {n} tokens");
    let decoded = tok.decoded.load(Ordering::Relaxed) - before;
    // Decoding the whole answer after each token costs n(n+1)/2 ids; incrementally, a few ids
    // per token and the answer once at the end.
    assert!(
        decoded <= 8 * n,
        "{decoded} ids decoded for an answer of {n} tokens"
    );
}

#[test]
fn policy_chat_cuts_its_answer_at_the_first_stop_string() {
    // The model answers `\boxed{2}` after the generation prompt's `\n`.
    let model = bigram_model(&[(b'\n', "\\boxed{2}")]);
    let chat = PolicyChat::new(
        Arc::new(local(&model)),
        Arc::new(ByteTokenizer::new()),
        params(),
    );
    let ask = |stop: &[&str]| {
        let request = ChatRequest::new(vec![Message::user("2?")])
            .stop(stop.iter().map(|s| s.to_string()).collect());
        chat.complete(&[request]).remove(0).unwrap()
    };
    let whole = ask(&[]);
    assert_eq!(whole.text, "\\boxed{2}");
    let cut = ask(&["{2", "}"]);
    assert_eq!(
        cut.text, "\\boxed",
        "cut before the first stop string, which is not kept"
    );
    assert_eq!(cut.finish_reason.as_deref(), Some("stop"));
    // Sampling ended at the token that completed the stop string.
    assert_eq!(
        cut.usage.unwrap().completion_tokens,
        "\\boxed{2".len() as u64
    );
}
