//! The trainer's R^3L rows from real rollouts on a tiny model: pivotal credit, replayed
//! retries, auxiliary SFT items and re-scored distilled copies.

use std::collections::HashMap;
use std::sync::Arc;

use redraft_feedback_protocol::{
    ChatRequest, FeedbackProvider, FnChatModel, SelfReflection, SelfReflectionConfig, Templates,
};
use redraft_model::burn::tensor::Device;
use redraft_model::{CausalLm, DeviceSpec, Init, ModelConfig, RandomInit, WeightSource};
use redraft_objectives::RowKind;
use redraft_rollout_engine::{
    Episode, GroupUse, LocalPolicy, R3lConfig, RolloutBatch, RolloutContext, SamplingParams,
    StrategyConfig, TokenKind,
};
use redraft_tokenizer::{ByteTokenizer, Tokenizer};
use redraft_trainer::TrainMethod;
use redraft_trainer::methods::{R3lMethod, RowContext};
use redraft_trainer::rows::{Row, TrainRows};
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

/// Weights of a bigram model: the logits depend only on the last token.
struct Bigram {
    random: RandomInit,
    dims: HashMap<u32, usize>,
    edges: Vec<(u32, Vec<u32>)>,
}

impl WeightSource for Bigram {
    fn tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
    ) -> redraft_model::Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        let d = shape.get(1).copied().unwrap_or(1);
        if name == "model.embed_tokens.weight" {
            let mut w = vec![0.0; n];
            for (&t, &k) in &self.dims {
                w[t as usize * d + k] = 1.0;
            }
            return Ok(w);
        }
        if name == "lm_head.weight" {
            let mut w = vec![0.0; n];
            for (from, tos) in &self.edges {
                for to in tos {
                    w[*to as usize * d + self.dims[from]] = 40.0 / (d as f32).sqrt();
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

/// After the generation prompt's `\n` the model writes `\boxed{` and then `2` or `3` with equal
/// probability, then `}<|im_end|>`: each attempt at "1 + 1" is right with probability 1/2.
fn coin_model() -> CausalLm {
    let chain: Vec<u32> = "\n\\boxed{".bytes().map(u32::from).collect();
    let mut edges: Vec<(u32, Vec<u32>)> = chain.windows(2).map(|w| (w[0], vec![w[1]])).collect();
    edges.push((u32::from(b'{'), vec![u32::from(b'2'), u32::from(b'3')]));
    edges.push((u32::from(b'2'), vec![u32::from(b'}')]));
    edges.push((u32::from(b'3'), vec![u32::from(b'}')]));
    edges.push((u32::from(b'}'), vec![IM_END]));
    let mut dims = HashMap::new();
    for (from, _) in &edges {
        let next = dims.len();
        dims.entry(*from).or_insert(next);
    }
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

fn reflection(report: &'static str) -> SelfReflection {
    let model = FnChatModel::new("fixed", move |_: &ChatRequest| Ok(report.to_string()));
    SelfReflection::new(
        Arc::new(model),
        Arc::new(Templates::new()),
        SelfReflectionConfig::default(),
    )
}

fn report(retry_from_step: usize) -> &'static str {
    Box::leak(
        format!(
            r#"{{"trajectory_summary": "tried", "root_cause_analysis": "why",
            "trajectory_outcome": "failure", "improvement_suggestion": "box the sum",
            "retry_from_step": {retry_from_step}}}"#
        )
        .into_boxed_str(),
    )
}

fn rollout(
    model: &CausalLm,
    r3l: R3lConfig,
    provider: &dyn FeedbackProvider,
    problems: &[Problem],
    seed: u64,
) -> RolloutBatch {
    let tok = ByteTokenizer::new();
    let policy = LocalPolicy::for_tokenizer(model.clone(), device(), &tok);
    let params = SamplingParams {
        max_new_tokens: 12,
        ..SamplingParams::default()
    };
    let ctx = RolloutContext::new(&policy, &tok, params).with_feedback(provider);
    StrategyConfig::R3l(r3l)
        .build()
        .unwrap()
        .rollout(&ctx, problems, seed)
        .unwrap()
}

fn rows(batch: &RolloutBatch, problems: &[Problem]) -> TrainRows {
    let templates = Templates::new();
    let tok = ByteTokenizer::new();
    let ctx = RowContext {
        tokenizer: &tok,
        templates: &templates,
        problems,
    };
    R3lMethod::default().rows(batch, &ctx).unwrap()
}

/// The policy row of episode `e` (rows keep the episode's ids).
fn row_of<'a>(rows: &'a TrainRows, e: &Episode) -> &'a Row {
    rows.rows
        .iter()
        .find(|r| r.kind == RowKind::Policy && r.ids == e.sequences[0].ids)
        .expect("a policy row per explore episode")
}

/// Whether target positions predicting the ids in `range` are trained (`t` predicts `t + 1`).
fn trained(row: &Row, range: std::ops::Range<usize>) -> Vec<bool> {
    range.map(|i| row.mask[i - 1]).collect()
}

#[test]
fn a_replayed_retry_trains_its_own_first_attempt_and_the_base_its_suffix() {
    let model = CausalLm::init(&config(), 11, &device()).unwrap();
    let problems = [math("2")];
    let r3l = R3lConfig {
        base_per_problem: 2,
        max_attempts: 3,
        replay_to_pivot: true,
        ..R3lConfig::default()
    };
    let batch = rollout(&model, r3l, &reflection(report(1)), &problems, 3);
    let rows = rows(&batch, &problems);
    let explore = &batch.groups[0];
    let distilled: Vec<&Episode> = explore
        .episodes
        .iter()
        .map(|&i| &batch.episodes[i])
        .filter(|e| e.provenance.distilled)
        .collect();
    assert_eq!(distilled.len(), 2);
    for d in distilled {
        assert_eq!(d.provenance.pivot, Some(1));
        let row = row_of(&rows, d);
        // Attempt 0 is replayed (context); the retry's own attempts 1 and 2 are trained.
        let seq = &d.sequences[0];
        assert!(seq.kinds.contains(&TokenKind::Replayed));
        for t in &d.turns {
            assert!(trained(row, t.sampled.clone()).iter().all(|m| *m));
        }
        assert_eq!(
            row.trained(),
            d.turns.iter().map(|t| t.sampled.len()).sum::<usize>()
        );
        // Its log-probs were sampled under the guided context: re-scored by the trainer.
        assert!(row.old_logprobs.is_none());
        // The base: attempt 0 (before the pivot) is not trained, attempts 1 and 2 are.
        let base = &batch.episodes[d.provenance.base.unwrap()];
        let brow = row_of(&rows, base);
        assert!(brow.old_logprobs.is_some());
        assert!(
            trained(brow, base.turns[0].sampled.clone())
                .iter()
                .all(|m| !*m)
        );
        for t in &base.turns[1..] {
            assert!(trained(brow, t.sampled.clone()).iter().all(|m| *m));
        }
    }
}

#[test]
fn pivotal_credit_is_on_by_default() {
    // Default configuration (no replay, math's restart from attempt 0): the reflection's pivot
    // still keeps the retried base's attempts before it out of training.
    let model = CausalLm::init(&config(), 11, &device()).unwrap();
    let problems = [math("2")];
    let r3l = R3lConfig {
        base_per_problem: 2,
        ..R3lConfig::default()
    };
    let batch = rollout(&model, r3l, &reflection(report(2)), &problems, 3);
    let rows = rows(&batch, &problems);
    let mut checked = 0;
    for &i in &batch.groups[0].episodes {
        let e = &batch.episodes[i];
        let row = row_of(&rows, e);
        if e.provenance.distilled {
            // A restart shares nothing with its base: all of it is the retry's own.
            assert_eq!(
                row.trained(),
                e.turns.iter().map(|t| t.sampled.len()).sum::<usize>()
            );
            continue;
        }
        assert_eq!(e.turns.len(), 3);
        for (k, t) in e.turns.iter().enumerate() {
            let mask = trained(row, t.sampled.clone());
            assert!(mask.iter().all(|m| *m == (k >= 2)), "attempt {k}");
        }
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn successful_reflections_become_auxiliary_rows() {
    let model = coin_model();
    let problems = [math("2"), math("2"), math("2")];
    let r3l = R3lConfig {
        base_per_problem: 4,
        max_attempts: 1,
        ..R3lConfig::default()
    };
    let text = report(0);
    let batch = rollout(&model, r3l, &reflection(text), &problems, 5);
    let rows = rows(&batch, &problems);
    // Retried bases that failed and whose retry succeeded.
    let improved: Vec<&Episode> = batch
        .groups
        .iter()
        .filter(|g| g.usage == GroupUse::Rl)
        .flat_map(|g| g.episodes.iter().map(|&i| &batch.episodes[i]))
        .filter(|e| e.provenance.distilled && e.reward >= 1.0)
        .filter(|e| batch.episodes[e.provenance.base.unwrap()].reward < 1.0)
        .collect();
    assert!(!improved.is_empty(), "the seed gives an improved retry");
    let aux: Vec<&Row> = rows
        .rows
        .iter()
        .filter(|r| r.kind == RowKind::Auxiliary)
        .collect();
    // Each improved retry yields its guided retry and its reflection.
    assert_eq!(aux.len(), 2 * improved.len());
    let tok = ByteTokenizer::new();
    let reports = aux
        .iter()
        .filter(|r| {
            let ids: Vec<u32> = r
                .ids
                .iter()
                .skip(1)
                .zip(&r.mask)
                .filter(|(_, m)| **m)
                .map(|(id, _)| *id)
                .collect();
            tok.decode(&ids, true).unwrap() == text
        })
        .count();
    assert_eq!(reports, improved.len());
}
