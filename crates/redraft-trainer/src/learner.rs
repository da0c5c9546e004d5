//! The learner: the policy on the autodiff device, its AdamW state, and one optimiser update
//! (forward, loss, backward, global gradient-norm clipping, non-finite guard, AdamW step).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
#[cfg(doc)]
use redraft_model::inverse_temperature;
use redraft_model::{BaseDType, CausalLm, TrainPass, add_grads, right_padded};

use crate::config::OptimizerConfig;
use crate::error::{Error, Result};
use crate::rows::Row;

/// Rows scored per forward pass when only log-probs are needed.
const SCORE_CHUNK: usize = 64;

/// The `[batch, time]` layout of a right-padded mini-batch's per-target values (target `t`
/// of a row predicts its id `t + 1`): what an objective's loss sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Padded {
    pub(crate) batch: usize,
    pub(crate) time: usize,
}

/// What one update did.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpdateOutcome {
    /// The loss's metrics (empty when skipped).
    pub(crate) metrics: BTreeMap<String, f64>,
    /// The global gradient norm before clipping (NaN when skipped before backward).
    pub(crate) grad_norm: f64,
    /// Why the update was skipped, if it was.
    pub(crate) skipped: Option<&'static str>,
}

/// The policy being trained and its optimiser.
pub struct Learner {
    model: Option<CausalLm>,
    optim: ModuleOptimizer,
    /// The autodiff device the model lives on.
    device: Device,
    /// The plain device of inference copies.
    infer_device: Device,
    pad: u32,
    /// Recompute the layers in the backward instead of keeping their activations.
    checkpoint: bool,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Learner {
    /// A learner for `model` (on the autodiff `device`) with AdamW as configured.
    pub fn new(
        model: CausalLm,
        config: &OptimizerConfig,
        device: Device,
        infer_device: Device,
        pad: u32,
    ) -> Self {
        Self {
            model: Some(model),
            optim: adamw(config),
            device,
            infer_device,
            pad,
            checkpoint: config.gradient_checkpointing,
        }
    }

    /// The policy (on the autodiff device).
    pub fn model(&self) -> &CausalLm {
        self.model
            .as_ref()
            .expect("the model is only taken during an update")
    }

    /// An inference copy of the policy on the plain device (no autograd graph).
    pub fn policy(&self) -> CausalLm {
        self.model().valid()
    }

    /// The inference copy to sample from: the policy with its LoRA adapters merged into the
    /// weights (one dense add per projection, then each token costs what the base costs), which
    /// measured faster than the unmerged path in every case tried (docs/PERFORMANCE.md). A base
    /// stored in bf16 or f16 is not merged: the merged weights would be a second, f32 copy of
    /// the model, and rounding them back would lose the adapters' small updates.
    pub fn sampler(&self) -> CausalLm {
        let policy = self.policy();
        if policy.base_dtype() == BaseDType::F32 {
            policy.merge_lora()
        } else {
            policy
        }
    }

    /// The KL reference of a LoRA policy: an inference copy with its adapters switched off (the
    /// frozen base; no second copy of the weights). `None` without adapters.
    pub fn lora_reference(&self) -> Option<CausalLm> {
        self.model().lora()?;
        let mut base = self.policy();
        base.set_lora_enabled(false);
        Some(base)
    }

    /// The autodiff device the policy trains on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The plain device.
    pub fn infer_device(&self) -> &Device {
        &self.infer_device
    }

    /// Replaces the optimiser state (on resume).
    pub(crate) fn set_optimizer(&mut self, optim: ModuleOptimizer) {
        self.optim = optim;
    }

    /// The optimiser state.
    pub(crate) fn optimizer(&self) -> &ModuleOptimizer {
        &self.optim
    }

    /// Replaces the model (on resume), keeping its parameter ids.
    pub(crate) fn set_model(&mut self, model: CausalLm) {
        self.model = Some(model);
    }

    /// Pads `rows` (right padding, checked against `model`'s context) onto `device`: the ids
    /// and their targets' layout.
    pub(crate) fn pad_rows(
        &self,
        model: &CausalLm,
        rows: &[&Row],
        device: &Device,
    ) -> Result<(Tensor<2, Int>, Padded)> {
        let ids: Vec<Vec<u32>> = rows.iter().map(|r| r.ids.clone()).collect();
        let tokens = right_padded(model.config(), &ids, self.pad, device)?.tokens;
        let [batch, t] = tokens.dims();
        Ok((tokens, Padded { batch, time: t - 1 }))
    }

    /// Per-target log-probs of `rows` under `model` (an inference copy: the policy before an
    /// update, or the reference model) at `temperature` (see [`inverse_temperature`]), each
    /// `ids.len() - 1` long. The head runs in chunks of positions
    /// ([`CausalLm::next_token_stats`]): no `[rows, time, vocab]` tensor.
    pub(crate) fn score(
        &self,
        model: &CausalLm,
        rows: &[&Row],
        temperature: f32,
    ) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(SCORE_CHUNK) {
            let (tokens, padded) = self.pad_rows(model, chunk, &self.infer_device)?;
            let lp = read(model.next_token_stats(tokens, temperature, false)?.0)?;
            for (i, r) in chunk.iter().enumerate() {
                let start = i * padded.time;
                out.push(lp[start..start + r.ids.len() - 1].to_vec());
            }
        }
        Ok(out)
    }

    /// One optimiser update on `rows`: `loss` maps the policy's `[batch, time]` log-probs (and
    /// entropies, when `with_entropy`) of `softmax(logits / temperature)` to a loss and its
    /// metrics. The temperature is the rollout's (1 for SFT; see [`inverse_temperature`]): the
    /// distribution the sampler draws from and records the log-probs of, so importance
    /// ratios, the KL to the reference, OPMD, RLTF-SD's re-scored revisions and pair losses
    /// compare like with like (verl divides the logits by the rollout temperature the same
    /// way).
    ///
    /// Rows are forwarded in length buckets ([`length_buckets`]), each padded to its own
    /// longest row, and their log-probs are laid back out as one right-padded batch in the
    /// original order: `loss` sees exactly what one padded forward pass would give (padding
    /// positions are zero), while a batch mixing short first attempts with long feedback turns
    /// no longer pays attention over the longest row for every row.
    ///
    /// The loss is differentiated with respect to the log-probs and entropies alone (leaves
    /// here), and [`TrainPass::backward`] carries those gradients through the model: the head
    /// in chunks of positions, the layers whole or, with gradient checkpointing, recomputed one
    /// at a time.
    pub(crate) fn update<F>(
        &mut self,
        rows: &[&Row],
        lr: f64,
        grad_clip: f64,
        temperature: f32,
        with_entropy: bool,
        loss: F,
    ) -> Result<UpdateOutcome>
    where
        F: FnOnce(&Padded, Tensor<2>, Option<Tensor<2>>) -> Result<LossOutput>,
    {
        let lens: Vec<usize> = rows.iter().map(|r| r.ids.len()).collect();
        let buckets = length_buckets(&lens);
        if buckets.is_empty() {
            return Err(redraft_model::Error::InvalidInput(
                "an update needs at least one row".into(),
            )
            .into());
        }
        let model = self.model.take().expect("model present between updates");
        let forward = self.forward(&model, rows, &buckets, temperature, with_entropy);
        let result = forward.and_then(|f| {
            let (loss, metrics) = loss(&f.padded, f.logprobs.clone(), f.entropy.clone())?;
            Ok((f, loss, metrics))
        });
        let (forward, loss, metrics) = match result {
            Ok(x) => x,
            Err(e) => {
                self.model = Some(model);
                return Err(e);
            }
        };
        let value = metrics.get("loss").copied().unwrap_or(f64::NAN);
        if !value.is_finite() {
            self.model = Some(model);
            return Ok(UpdateOutcome {
                metrics,
                grad_norm: f64::NAN,
                skipped: Some("non-finite loss"),
            });
        }
        let mut grads = forward.backward(&model, loss, &self.infer_device);
        let norm = grad_norm(&model, &grads)?;
        if !norm.is_finite() {
            self.model = Some(model);
            return Ok(UpdateOutcome {
                metrics,
                grad_norm: norm,
                skipped: Some("non-finite gradient"),
            });
        }
        if grad_clip > 0.0 && norm > grad_clip {
            let factor = grad_clip / (norm + 1e-6);
            model.visit(&mut ScaleGrads {
                grads: &mut grads,
                factor,
            });
        }
        self.model = Some(self.optim.step(lr, model, grads));
        Ok(UpdateOutcome {
            metrics,
            grad_norm: norm,
            skipped: None,
        })
    }

    /// The forward half of [`Self::update`]: a training pass per bucket, and the log-probs (and
    /// entropies) laid out in the rows' order as leaves on the autodiff device.
    fn forward(
        &self,
        model: &CausalLm,
        rows: &[&Row],
        buckets: &[Vec<usize>],
        temperature: f32,
        with_entropy: bool,
    ) -> Result<Forward> {
        let mut passes = Vec::with_capacity(buckets.len());
        let (mut lps, mut ents) = (Vec::new(), Vec::new());
        let mut time = 0;
        for b in buckets {
            let chunk: Vec<&Row> = b.iter().map(|&i| rows[i]).collect();
            let (tokens, layout) = self.pad_rows(model, &chunk, &self.device)?;
            time = time.max(layout.time);
            let (pass, lp, ent) =
                TrainPass::new(model, tokens, temperature, with_entropy, self.checkpoint)?;
            passes.push((pass, layout.time, ids_tensor(b, &self.infer_device)));
            lps.push(lp);
            ents.extend(ent);
        }
        let widen = |t: Tensor<2>| {
            let [n, w] = t.dims();
            if w == time {
                t
            } else {
                let zeros = Tensor::zeros([n, time - w], &t.device());
                Tensor::cat(vec![t, zeros], 1)
            }
        };
        // Bucket order → original order.
        let mut position = vec![0usize; rows.len()];
        for (k, &i) in buckets.iter().flatten().enumerate() {
            position[i] = k;
        }
        let order = ids_tensor(&position, &self.infer_device);
        let leaf = |parts: Vec<Tensor<2>>| {
            let parts = parts.into_iter().map(widen).collect();
            Tensor::cat(parts, 0)
                .select(0, order.clone())
                .autodiff()
                .require_grad()
        };
        Ok(Forward {
            padded: Padded {
                batch: rows.len(),
                time,
            },
            logprobs: leaf(lps),
            entropy: with_entropy.then(|| leaf(ents)),
            passes,
        })
    }
}

/// What a loss closure returns: the loss and its metrics.
pub(crate) type LossOutput = (Tensor<1>, BTreeMap<String, f64>);

/// The forward half of an update, kept for its backward.
struct Forward {
    padded: Padded,
    /// `[batch, time]` leaves the loss is computed from.
    logprobs: Tensor<2>,
    entropy: Option<Tensor<2>>,
    /// Each bucket's pass, its width (targets per row) and its rows' indices.
    passes: Vec<(TrainPass, usize, Tensor<1, Int>)>,
}

impl Forward {
    /// The gradients of `model`'s parameters for `loss`: `∂loss/∂log-probs` (and entropies),
    /// then through each bucket's pass.
    fn backward(self, model: &CausalLm, loss: Tensor<1>, device: &Device) -> GradientsParams {
        let zeros = |t: &Tensor<2>| Tensor::zeros(t.dims(), device);
        // A loss that does not depend on the policy has no gradient.
        let (g_lp, g_ent) = if loss.is_tracked() {
            let all = loss.backward();
            let grad = |leaf: &Tensor<2>| leaf.grad(&all).unwrap_or_else(|| zeros(leaf));
            (grad(&self.logprobs), self.entropy.as_ref().map(grad))
        } else {
            (zeros(&self.logprobs), None)
        };
        let mut grads = GradientsParams::new();
        for (pass, width, index) in self.passes {
            let rows_of = |g: &Tensor<2>| g.clone().select(0, index.clone()).narrow(1, 0, width);
            let bucket = pass.backward(model, rows_of(&g_lp), g_ent.as_ref().map(rows_of));
            add_grads(&mut grads, bucket, model);
        }
        grads
    }
}

/// Row indices as an index tensor.
fn ids_tensor(ids: &[usize], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(values, [ids.len()]), device)
}

/// Row indices sorted by length (`lens`) and cut into buckets whose longest row is at most 1.5
/// times their shortest.
pub(crate) fn length_buckets(lens: &[usize]) -> Vec<Vec<usize>> {
    let mut sorted: Vec<usize> = (0..lens.len()).collect();
    sorted.sort_by_key(|&i| lens[i]);
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    for i in sorted {
        match buckets.last_mut() {
            Some(b) if lens[i] * 2 <= lens[b[0]] * 3 => b.push(i),
            _ => buckets.push(vec![i]),
        }
    }
    buckets
}

/// AdamW with PyTorch's defaults where burn's differ (ε 1e-8), and the configured decay.
pub(crate) fn adamw(config: &OptimizerConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_1(config.betas[0] as f32)
        .with_beta_2(config.betas[1] as f32)
        .with_epsilon(config.eps as f32)
        .with_weight_decay(config.weight_decay as f32)
        .init()
}

/// Reads a float tensor back to the host.
pub(crate) fn read<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::TensorRead(format!("{e:?}")))
}

/// A flat `[batch, time]` host vector as a tensor.
pub(crate) fn upload(values: Vec<f32>, [b, t]: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [b, t]), device)
}

/// The global L2 norm of the gradients of `model`'s parameters.
fn grad_norm(model: &CausalLm, grads: &GradientsParams) -> Result<f64> {
    let mut squares = SquaredNorms {
        grads,
        sums: Vec::new(),
    };
    model.visit(&mut squares);
    if squares.sums.is_empty() {
        return Ok(0.0);
    }
    let total = read(Tensor::cat(squares.sums, 0).sum())?;
    Ok(f64::from(total[0]).sqrt())
}

struct SquaredNorms<'a> {
    grads: &'a GradientsParams,
    sums: Vec<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorms<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.sums.push(g.powi_scalar(2).sum());
        }
    }
}

struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads
                .register::<D>(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// The parameter ids of `model`, in visiting order (stable for one architecture).
pub(crate) fn param_ids(model: &CausalLm) -> Vec<u64> {
    struct Ids(Vec<u64>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.id.val());
        }
    }
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    ids.0
}

/// `model` with its parameter ids replaced by `ids` (visiting order), so that an optimiser
/// state saved against the original ids applies to a reloaded model.
pub(crate) fn with_param_ids(model: CausalLm, ids: &[u64]) -> Result<CausalLm> {
    struct SetIds<'a> {
        ids: &'a [u64],
        next: usize,
    }
    impl ModuleMapper for SetIds<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let id = self.ids.get(self.next).copied();
            self.next += 1;
            match id {
                Some(id) => {
                    let (_, value, mapper) = param.consume();
                    Param::from_mapped_value(ParamId::from(id), value, mapper)
                }
                None => param,
            }
        }
    }
    let expected = param_ids(&model).len();
    if expected != ids.len() {
        return Err(Error::TensorRead(format!(
            "the checkpoint lists {} parameters, the model has {expected}",
            ids.len()
        )));
    }
    let mut mapper = SetIds { ids, next: 0 };
    Ok(model.map(&mut mapper))
}

#[cfg(test)]
mod tests {
    use redraft_model::{DeviceSpec, ModelConfig, next_token_logprobs};
    use redraft_objectives::RowKind;

    use super::*;

    const TINY: &str = r#"{"model_type": "llama", "vocab_size": 16, "hidden_size": 16,
        "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "max_position_embeddings": 64, "tie_word_embeddings": true}"#;

    fn row(len: usize, seed: u32) -> Row {
        Row {
            ids: (0..len as u32).map(|i| (i * 7 + seed) % 16).collect(),
            mask: (0..len - 1).map(|t| t % 3 != 0).collect(),
            advantages: vec![0.0; len - 1],
            old_logprobs: None,
            kind: RowKind::Auxiliary,
            problem: 0,
        }
    }

    /// On-policy ratios are 1 at a rollout temperature other than 1: the learner scores the
    /// rollout engine's samples at T = 0.7 to their recorded log-probs (at T = 1 it does not).
    #[test]
    fn scores_at_the_rollout_temperature() {
        use redraft_rollout_engine::{SamplingParams, generate};
        let spec = DeviceSpec::Cpu;
        let (device, infer) = (spec.train_device().unwrap(), spec.device().unwrap());
        let config = ModelConfig::from_json_str(TINY).unwrap();
        let model = CausalLm::init(&config, 11, &device).unwrap();
        let learner = Learner::new(model, &OptimizerConfig::default(), device, infer.clone(), 0);
        let policy = learner.policy();
        let params = SamplingParams {
            temperature: 0.7,
            max_new_tokens: 10,
            seed: 7,
            ..SamplingParams::default()
        };
        let prompts = vec![vec![1, 2, 3], vec![4, 5]];
        let completions = generate(&policy, &prompts, &params, 0, &infer).unwrap();
        let rows: Vec<Row> = prompts
            .iter()
            .zip(&completions)
            .map(|(p, c)| {
                let ids: Vec<u32> = p.iter().chain(&c.tokens).copied().collect();
                Row {
                    mask: vec![true; ids.len() - 1],
                    advantages: vec![0.0; ids.len() - 1],
                    ids,
                    old_logprobs: None,
                    kind: RowKind::Policy,
                    problem: 0,
                }
            })
            .collect();
        let refs: Vec<&Row> = rows.iter().collect();
        let gap = |temperature: f32| {
            let scored = learner.score(&policy, &refs, temperature).unwrap();
            let mut worst = 0.0f32;
            for ((p, c), s) in prompts.iter().zip(&completions).zip(&scored) {
                assert_eq!(c.logprobs.len(), c.tokens.len());
                for (k, &recorded) in c.logprobs.iter().enumerate() {
                    worst = worst.max((s[p.len() - 1 + k] - recorded).abs());
                }
            }
            worst
        };
        let at_rollout = gap(0.7);
        assert!(at_rollout <= 1e-4, "ratio off 1 at T = 0.7: {at_rollout}");
        let at_one = gap(1.0);
        assert!(
            at_one > 1e-3,
            "T = 1 should not match the T = 0.7 samples: {at_one}"
        );
    }

    #[test]
    fn length_buckets_keep_every_row_and_bound_the_padding() {
        let lens = [30, 5, 6, 31, 9, 40, 7, 61];
        let buckets = length_buckets(&lens);
        let mut all: Vec<usize> = buckets.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..lens.len()).collect::<Vec<_>>());
        let by_len: Vec<Vec<usize>> = buckets
            .iter()
            .map(|b| b.iter().map(|&i| lens[i]).collect())
            .collect();
        assert_eq!(by_len, [vec![5, 6, 7], vec![9], vec![30, 31, 40], vec![61]]);
    }

    /// The bucketed forward passes give the loss `loss` would compute from one padded forward
    /// pass, row for row (rows are weighted differently, so a mix-up would show).
    #[test]
    fn bucketed_update_sees_one_padded_batch() {
        let spec = DeviceSpec::Cpu;
        let (device, infer) = (spec.train_device().unwrap(), spec.device().unwrap());
        let config = ModelConfig::from_json_str(TINY).unwrap();
        let rows = [row(20, 3), row(5, 1), row(24, 4), row(6, 2)];
        let refs: Vec<&Row> = rows.iter().collect();
        let lens: Vec<usize> = rows.iter().map(|r| r.ids.len()).collect();
        assert_eq!(length_buckets(&lens).len(), 2);
        let weights = |padded: &Padded| {
            let mut w = Vec::new();
            for (i, r) in rows.iter().enumerate() {
                w.extend(r.mask.iter().map(|&m| if m { (i + 1) as f32 } else { 0.0 }));
                w.extend(std::iter::repeat_n(0.0, padded.time - r.mask.len()));
            }
            w
        };
        let model = CausalLm::init(&config, 3, &device).unwrap();
        let mut learner = Learner::new(
            model.clone(),
            &OptimizerConfig::default(),
            device.clone(),
            infer,
            0,
        );
        // One padded forward pass of the same weights.
        let (tokens, padded) = learner.pad_rows(&model, &refs, &device).unwrap();
        let lp = next_token_logprobs(model.forward(tokens.clone(), &[]).unwrap(), tokens);
        let w = upload(weights(&padded), [padded.batch, padded.time], &device);
        let expected = f64::from(read((lp * w).sum().neg()).unwrap()[0]);
        let out = learner
            .update(&refs, 1e-2, 1.0, 1.0, true, |layout, lp, ent| {
                assert_eq!(*layout, padded);
                let padded = layout;
                assert_eq!(lp.dims(), [padded.batch, padded.time]);
                assert_eq!(ent.unwrap().dims(), [padded.batch, padded.time]);
                let w = upload(weights(padded), [padded.batch, padded.time], &lp.device());
                let loss = (lp * w).sum().neg();
                let mut m = BTreeMap::new();
                m.insert("loss".to_string(), f64::from(read(loss.clone())?[0]));
                Ok((loss, m))
            })
            .unwrap();
        assert!(out.skipped.is_none());
        let got = out.metrics["loss"];
        assert!(
            (got - expected).abs() < 1e-4 * expected.abs(),
            "{got} vs {expected}"
        );
    }

    /// Rank-2 adapters on three of the tiny model's projections, without dropout.
    fn tiny_lora() -> redraft_model::LoraConfig {
        redraft_model::LoraConfig {
            rank: 2,
            alpha: 4.0,
            dropout: 0.0,
            target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
            use_rslora: false,
        }
    }

    /// With LoRA, an update moves the adapters alone: the base gets no gradient (and so no
    /// optimiser state), and the base with adapters off (the KL reference) still scores what
    /// the model scored before any update.
    #[test]
    fn lora_updates_train_only_the_adapters() {
        let spec = DeviceSpec::Cpu;
        let (device, infer) = (spec.train_device().unwrap(), spec.device().unwrap());
        let config = ModelConfig::from_json_str(TINY).unwrap();
        let lora = tiny_lora();
        let model = CausalLm::init(&config, 3, &device)
            .unwrap()
            .with_new_lora(&lora, "[lora]", 1, &device)
            .unwrap();
        let before = model.export();
        let rows = [row(12, 3), row(7, 1)];
        let refs: Vec<&Row> = rows.iter().collect();
        let mut learner = Learner::new(model, &OptimizerConfig::default(), device, infer, 0);
        let base_scores = learner.score(&learner.policy(), &refs, 1.0).unwrap();
        let trainable = |m: &CausalLm| {
            struct Count(usize, usize);
            impl ModuleVisitor for Count {
                fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                    if param.val().is_require_grad() {
                        self.0 += 1;
                    } else {
                        self.1 += 1;
                    }
                }
            }
            let mut c = Count(0, 0);
            m.visit(&mut c);
            (c.0, c.1)
        };
        // 3 targets × (A, B) in 1 layer; the tied embedding, 3 norms and 7 projections frozen.
        assert_eq!(trainable(learner.model()), (6, 11));
        for _ in 0..3 {
            let out = learner
                .update(&refs, 1e-2, 1.0, 1.0, false, |_, lp, _| {
                    let loss = lp.sum().neg();
                    let mut m = BTreeMap::new();
                    m.insert("loss".to_string(), f64::from(read(loss.clone())?[0]));
                    Ok((loss, m))
                })
                .unwrap();
            assert!(out.skipped.is_none() && out.grad_norm > 0.0);
        }
        assert_eq!(trainable(learner.model()), (6, 11));
        let after = learner.model().export();
        for (a, b) in before.iter().zip(&after) {
            assert_eq!(a.values, b.values, "{} moved", a.name);
        }
        let adapters = learner.model().export_lora();
        assert!(adapters[1].values.iter().any(|v| *v != 0.0), "B moved");
        let trained = learner.score(&learner.policy(), &refs, 1.0).unwrap();
        assert_ne!(trained, base_scores);
        let reference = learner.lora_reference().expect("a LoRA learner has one");
        let again = learner.score(&reference, &refs, 1.0).unwrap();
        for (x, y) in again.iter().flatten().zip(base_scores.iter().flatten()) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }

    /// Gradient checkpointing and a bf16 base change how an update is computed, not what it
    /// does: checkpointing gives the same adapters (to float rounding), and a bf16 base stays
    /// bf16 and frozen while its f32 adapters train, scoring within bf16's rounding of f32.
    #[test]
    fn checkpointing_and_a_bf16_base_train_the_same_adapters() {
        let spec = DeviceSpec::Cpu;
        let (device, infer) = (spec.train_device().unwrap(), spec.device().unwrap());
        let config = ModelConfig::from_json_str(TINY).unwrap();
        let lora = tiny_lora();
        let rows = [row(12, 3), row(7, 1), row(30, 2)];
        let refs: Vec<&Row> = rows.iter().collect();
        let train = |checkpointing: bool, dtype: BaseDType| {
            let model = CausalLm::init(&config, 3, &device)
                .unwrap()
                .with_new_lora(&lora, "[lora]", 1, &device)
                .unwrap()
                .with_base_dtype(dtype);
            let optimizer = OptimizerConfig {
                gradient_checkpointing: checkpointing,
                ..OptimizerConfig::default()
            };
            let mut learner = Learner::new(model, &optimizer, device.clone(), infer.clone(), 0);
            for _ in 0..3 {
                let out = learner
                    .update(&refs, 1e-2, 1.0, 0.7, true, |_, lp, ent| {
                        let loss = lp.sum().neg() - ent.unwrap().sum().mul_scalar(0.1);
                        let mut m = BTreeMap::new();
                        m.insert("loss".to_string(), f64::from(read(loss.clone())?[0]));
                        Ok((loss, m))
                    })
                    .unwrap();
                assert!(out.skipped.is_none() && out.grad_norm > 0.0);
            }
            assert_eq!(learner.model().base_dtype(), dtype);
            let scores = learner.score(&learner.sampler(), &refs, 1.0).unwrap();
            let adapters: Vec<f32> = learner
                .model()
                .export_lora()
                .into_iter()
                .flat_map(|t| t.values)
                .collect();
            (adapters, scores)
        };
        let worst = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        };
        let (plain, plain_scores) = train(false, BaseDType::F32);
        let (checkpointed, _) = train(true, BaseDType::F32);
        assert!(
            worst(&plain, &checkpointed) < 1e-5,
            "checkpointing changed the adapters"
        );
        let (half, half_scores) = train(true, BaseDType::Bf16);
        assert!(worst(&plain, &half) > 0.0, "bf16 rounding shows");
        let diff = worst(&plain_scores.concat(), &half_scores.concat());
        assert!(diff < 0.05, "a bf16 base scores {diff} away from f32");
    }
}
