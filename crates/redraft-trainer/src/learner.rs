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
    /// Positions the update's forward passes ran, padding included (rows read from a longer
    /// row's pass cost none; see [`prefix_hosts`]).
    pub(crate) forwarded_tokens: usize,
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
    /// `ids.len() - 1` long. A row whose ids begin a longer row (or repeat one) reads that
    /// row's pass ([`prefix_hosts`]); the others run in length buckets of at most
    /// `SCORE_CHUNK` rows. The head runs in chunks of positions
    /// ([`CausalLm::next_token_stats`]): no `[rows, time, vocab]` tensor; and only at trained
    /// targets (the rows' masks), the only ones losses and the sampler correction read: the
    /// log-probs elsewhere are 0.
    pub(crate) fn score(
        &self,
        model: &CausalLm,
        rows: &[&Row],
        temperature: f32,
    ) -> Result<Vec<Vec<f32>>> {
        let hosts = prefix_hosts(rows);
        let trained = targets_read(rows, &hosts);
        let mut scored: Vec<Option<Vec<f32>>> = vec![None; rows.len()];
        for bucket in host_buckets(rows, &hosts) {
            for chunk in bucket.chunks(SCORE_CHUNK) {
                let chunk_rows: Vec<&Row> = chunk.iter().map(|&i| rows[i]).collect();
                let (tokens, padded) = self.pad_rows(model, &chunk_rows, &self.infer_device)?;
                let needed = needed_in(&trained, chunk, padded.time);
                let (lp, _) = model.next_token_stats(tokens, Some(&needed), temperature, false)?;
                let lp = read(lp)?;
                for (k, &i) in chunk.iter().enumerate() {
                    let start = k * padded.time;
                    scored[i] = Some(lp[start..start + rows[i].ids.len() - 1].to_vec());
                }
            }
        }
        Ok(rows
            .iter()
            .zip(&hosts)
            .map(|(r, &h)| {
                let host = scored[h].as_ref().expect("every host is scored");
                host[..r.ids.len() - 1].to_vec()
            })
            .collect())
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
    /// no longer pays attention over the longest row for every row. A row whose ids begin a
    /// longer row or repeat one (a first turn inside its conversation, a group's identical
    /// samples) is not forwarded: it reads its host's log-probs ([`prefix_hosts`]), and its
    /// gradient flows back through the host's pass. The head runs only at trained targets
    /// ([`TrainPass::at`]): log-probs and entropies elsewhere are 0, and losses must read only
    /// trained targets (as `PolicyBatch` objectives do: they zero the rest on entry).
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
        let hosts = prefix_hosts(rows);
        let buckets = host_buckets(rows, &hosts);
        if buckets.is_empty() {
            return Err(redraft_model::Error::InvalidInput(
                "an update needs at least one row".into(),
            )
            .into());
        }
        let model = self.model.take().expect("model present between updates");
        let forward = self.forward(&model, rows, &hosts, &buckets, temperature, with_entropy);
        let result = forward.and_then(|f| {
            let (loss, metrics) = loss(&f.padded, f.row_logprobs.clone(), f.row_entropy.clone())?;
            Ok((f, loss, metrics))
        });
        let (forward, loss, metrics) = match result {
            Ok(x) => x,
            Err(e) => {
                self.model = Some(model);
                return Err(e);
            }
        };
        let forwarded_tokens = forward.tokens;
        let value = metrics.get("loss").copied().unwrap_or(f64::NAN);
        if !value.is_finite() {
            self.model = Some(model);
            return Ok(UpdateOutcome {
                metrics,
                grad_norm: f64::NAN,
                skipped: Some("non-finite loss"),
                forwarded_tokens,
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
                forwarded_tokens,
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
            forwarded_tokens,
        })
    }

    /// The forward half of [`Self::update`]: a training pass per bucket of host rows, their
    /// log-probs (and entropies) as leaves on the autodiff device, and every row's view of its
    /// host's values in the rows' order.
    fn forward(
        &self,
        model: &CausalLm,
        rows: &[&Row],
        hosts: &[usize],
        buckets: &[Vec<usize>],
        temperature: f32,
        with_entropy: bool,
    ) -> Result<Forward> {
        let trained = targets_read(rows, hosts);
        let mut passes = Vec::with_capacity(buckets.len());
        let (mut lps, mut ents) = (Vec::new(), Vec::new());
        let (mut time, mut tokens_forwarded) = (0, 0);
        for b in buckets {
            let chunk: Vec<&Row> = b.iter().map(|&i| rows[i]).collect();
            let (tokens, layout) = self.pad_rows(model, &chunk, &self.device)?;
            time = time.max(layout.time);
            tokens_forwarded += layout.batch * (layout.time + 1);
            let needed = needed_in(&trained, b, layout.time);
            let (pass, lp, ent) = TrainPass::at(
                model,
                tokens,
                &needed,
                temperature,
                with_entropy,
                self.checkpoint,
            )?;
            passes.push((pass, layout.time, b.len()));
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
        // Each row reads its host's values (in bucket order), cut to its own length.
        let mut position = vec![0usize; rows.len()];
        for (k, &i) in buckets.iter().flatten().enumerate() {
            position[i] = k;
        }
        let source: Vec<usize> = hosts.iter().map(|&h| position[h]).collect();
        let source = ids_tensor(&source, &self.device);
        let mut within = Vec::with_capacity(rows.len() * time);
        for r in rows {
            let n = r.ids.len() - 1;
            within.extend((0..time).map(|t| if t < n { 1.0 } else { 0.0 }));
        }
        let within = upload(within, [rows.len(), time], &self.device);
        let leaf = |parts: Vec<Tensor<2>>| {
            let parts = parts.into_iter().map(widen).collect();
            Tensor::cat(parts, 0).autodiff().require_grad()
        };
        let view = |leaf: &Tensor<2>| leaf.clone().select(0, source.clone()) * within.clone();
        let logprobs = leaf(lps);
        let entropy = with_entropy.then(|| leaf(ents));
        Ok(Forward {
            padded: Padded {
                batch: rows.len(),
                time,
            },
            row_logprobs: view(&logprobs),
            row_entropy: entropy.as_ref().map(view),
            logprobs,
            entropy,
            passes,
            tokens: tokens_forwarded,
        })
    }
}

/// What a loss closure returns: the loss and its metrics.
pub(crate) type LossOutput = (Tensor<1>, BTreeMap<String, f64>);

/// The forward half of an update, kept for its backward.
struct Forward {
    /// The rows' layout.
    padded: Padded,
    /// `[hosts, time]` leaves (bucket order) the rows' values are read from.
    logprobs: Tensor<2>,
    entropy: Option<Tensor<2>>,
    /// `[batch, time]`: what the loss is computed from, tracked back to the leaves.
    row_logprobs: Tensor<2>,
    row_entropy: Option<Tensor<2>>,
    /// Each bucket's pass, its width (targets per row) and its number of rows.
    passes: Vec<(TrainPass, usize, usize)>,
    /// Positions forwarded, padding included.
    tokens: usize,
}

impl Forward {
    /// The gradients of `model`'s parameters for `loss`: `∂loss/∂log-probs` (and entropies)
    /// at the hosts (a host sums its own and the rows it carries), then through each bucket's
    /// pass.
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
        let mut offset = 0;
        for (pass, width, count) in self.passes {
            let rows_of = |g: &Tensor<2>| g.clone().narrow(0, offset, count).narrow(1, 0, width);
            let bucket = pass.backward(model, rows_of(&g_lp), g_ent.as_ref().map(rows_of));
            add_grads(&mut grads, bucket, model);
            offset += count;
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

/// For every row, the row whose forward pass it reads: itself, or a row its ids are a prefix of
/// (a longer row, or an identical one listed earlier). A causal model's outputs at a prefix's
/// positions do not depend on what follows them, so such a row needs no pass of its own.
/// Hosts are rows that read their own pass.
pub(crate) fn prefix_hosts(rows: &[&Row]) -> Vec<usize> {
    let mut by_len: Vec<usize> = (0..rows.len()).collect();
    by_len.sort_by_key(|&i| std::cmp::Reverse(rows[i].ids.len()));
    let mut hosts = vec![0; rows.len()];
    let mut own: Vec<usize> = Vec::new();
    for i in by_len {
        let ids = &rows[i].ids;
        hosts[i] = match own.iter().find(|&&h| rows[h].ids.starts_with(ids)) {
            Some(&h) => h,
            None => {
                own.push(i);
                i
            }
        };
    }
    hosts
}

/// Per host row ([`prefix_hosts`]), the targets its pass must give: its own trained ones and
/// those of the rows that read it (losses read nothing else, so the head can skip prompts and
/// padding). Rows that are not hosts get an empty list.
fn targets_read(rows: &[&Row], hosts: &[usize]) -> Vec<Vec<bool>> {
    let mut trained: Vec<Vec<bool>> = vec![Vec::new(); rows.len()];
    for (r, &h) in rows.iter().zip(hosts) {
        let host = &mut trained[h];
        host.resize(rows[h].mask.len(), false);
        for (t, &m) in r.mask.iter().enumerate() {
            host[t] |= m;
        }
    }
    trained
}

/// The `[rows, time]` needed positions (row major) of a padded pass over host rows `pass`.
fn needed_in(trained: &[Vec<bool>], pass: &[usize], time: usize) -> Vec<bool> {
    let mut needed = Vec::with_capacity(pass.len() * time);
    for &i in pass {
        needed.extend(&trained[i]);
        needed.resize(needed.len() + time - trained[i].len(), false);
    }
    needed
}

/// The host rows ([`prefix_hosts`]) in length buckets ([`length_buckets`]), as row indices.
fn host_buckets(rows: &[&Row], hosts: &[usize]) -> Vec<Vec<usize>> {
    let own: Vec<usize> = (0..rows.len()).filter(|&i| hosts[i] == i).collect();
    let lens: Vec<usize> = own.iter().map(|&i| rows[i].ids.len()).collect();
    length_buckets(&lens)
        .into_iter()
        .map(|b| b.into_iter().map(|k| own[k]).collect())
        .collect()
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

    /// Per-target loss weights of `rows` laid out as `padded`: row `i`'s trained targets weigh
    /// `i + 1` (so rows mixed up would show), padding 0.
    fn row_weights(rows: &[Row], padded: &Padded) -> Vec<f32> {
        let mut w = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            w.extend(r.mask.iter().map(|&m| if m { (i + 1) as f32 } else { 0.0 }));
            w.extend(std::iter::repeat_n(0.0, padded.time - r.mask.len()));
        }
        w
    }

    /// `−Σ w · lp` over a `padded` batch, with its value as the metric `loss`.
    fn weighted_loss(lp: Tensor<2>, weights: Vec<f32>, padded: &Padded) -> Result<LossOutput> {
        let w = upload(weights, [padded.batch, padded.time], &lp.device());
        let loss = (lp * w).sum().neg();
        let mut m = BTreeMap::new();
        m.insert("loss".to_string(), f64::from(read(loss.clone())?[0]));
        Ok((loss, m))
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

    /// Scoring runs the head only at the targets a row trains, those of the rows reading its
    /// pass included: there the log-probs equal the row scored alone at every position, and
    /// elsewhere they are 0.
    #[test]
    fn scores_are_given_at_trained_targets_only() {
        let spec = DeviceSpec::Cpu;
        let (device, infer) = (spec.train_device().unwrap(), spec.device().unwrap());
        let config = ModelConfig::from_json_str(TINY).unwrap();
        let model = CausalLm::init(&config, 5, &device).unwrap();
        let learner = Learner::new(model, &OptimizerConfig::default(), device, infer.clone(), 0);
        let policy = learner.policy();
        let long = row(14, 2);
        let mut first_turn = long.clone();
        first_turn.ids.truncate(8);
        // Trained where the long row is not: its host's pass must give both.
        first_turn.mask = long.mask[..7].iter().map(|&m| !m).collect();
        let rows = [first_turn, row(9, 4), long];
        let refs: Vec<&Row> = rows.iter().collect();
        let scored = learner.score(&policy, &refs, 1.0).unwrap();
        // The targets read from the long row's pass: its own and the first turn's.
        let shared: Vec<bool> = (0..13)
            .map(|t| rows[2].mask[t] || rows[0].mask.get(t).copied().unwrap_or(false))
            .collect();
        let read_at = [&shared[..7], &rows[1].mask[..], &shared[..]];
        for ((r, s), read_at) in rows.iter().zip(&scored).zip(read_at) {
            let ids: Vec<i64> = r.ids.iter().map(|&i| i64::from(i)).collect();
            let tokens =
                Tensor::<2, Int>::from_data(TensorData::new(ids, [1, r.ids.len()]), &infer);
            let alone = read(policy.next_token_stats(tokens, None, 1.0, false).unwrap().0).unwrap();
            assert_eq!(s.len(), alone.len());
            for t in 0..s.len() {
                if read_at[t] {
                    let (got, want) = (s[t], alone[t]);
                    assert!((got - want).abs() < 1e-5, "target {t}: {got} vs {want}");
                } else {
                    assert_eq!(s[t], 0.0, "target {t}, read by no row, was scored");
                }
            }
            assert!(r.mask.iter().zip(read_at).all(|(&m, &at)| !m || at));
        }
        assert!(shared.contains(&false), "some targets are skipped");
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
        let weights = |padded: &Padded| row_weights(&rows, padded);
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
        let expected = weighted_loss(lp, weights(&padded), &padded).unwrap().1["loss"];
        let out = learner
            .update(&refs, 1e-2, 1.0, 1.0, true, |layout, lp, ent| {
                assert_eq!(*layout, padded);
                let padded = layout;
                assert_eq!(lp.dims(), [padded.batch, padded.time]);
                assert_eq!(ent.unwrap().dims(), [padded.batch, padded.time]);
                weighted_loss(lp, weights(padded), padded)
            })
            .unwrap();
        assert!(out.skipped.is_none());
        let got = out.metrics["loss"];
        assert!(
            (got - expected).abs() < 1e-4 * expected.abs(),
            "{got} vs {expected}"
        );
    }

    #[test]
    fn prefix_hosts_send_prefixes_and_repeats_to_one_pass() {
        let long = row(12, 1);
        let mut first_turn = long.clone();
        first_turn.ids.truncate(7);
        let other = row(9, 2);
        let rows = [first_turn, other.clone(), long, other];
        let refs: Vec<&Row> = rows.iter().collect();
        assert_eq!(prefix_hosts(&refs), [2, 1, 2, 1]);
        assert_eq!(host_buckets(&refs, &prefix_hosts(&refs)), [vec![1, 2]]);
    }

    /// A first turn inside its conversation and a repeated sample are not forwarded again, and
    /// the update still sees, and differentiates, what one padded forward of every row gives:
    /// the same loss and the same gradient norm (each row weighted differently, so a row read
    /// from the wrong place or a gradient lost on the way back would show).
    #[test]
    fn rows_read_from_their_host_train_as_if_forwarded() {
        let spec = DeviceSpec::Cpu;
        let (device, infer) = (spec.train_device().unwrap(), spec.device().unwrap());
        let config = ModelConfig::from_json_str(TINY).unwrap();
        let long = row(20, 3);
        let mut first_turn = long.clone();
        first_turn.ids.truncate(9);
        first_turn.mask.truncate(8);
        first_turn.advantages.truncate(8);
        let rows = [first_turn, row(6, 2), long, row(6, 2), row(14, 5)];
        let refs: Vec<&Row> = rows.iter().collect();
        let weights = |padded: &Padded| row_weights(&rows, padded);
        let model = CausalLm::init(&config, 5, &device).unwrap();
        // One autodiff graph over one padded forward pass of every row.
        let learner = Learner::new(
            model.clone(),
            &OptimizerConfig::default(),
            device.clone(),
            infer.clone(),
            0,
        );
        let (tokens, padded) = learner.pad_rows(&model, &refs, &device).unwrap();
        let lp = next_token_logprobs(model.forward(tokens.clone(), &[]).unwrap(), tokens);
        let (loss, metrics) = weighted_loss(lp, weights(&padded), &padded).unwrap();
        let expected = metrics["loss"];
        let expected_norm = grad_norm(
            &model,
            &GradientsParams::from_grads(loss.backward(), &model),
        )
        .unwrap();
        let mut learner = Learner::new(model, &OptimizerConfig::default(), device, infer, 0);
        let out = learner
            .update(&refs, 1e-2, 0.0, 1.0, false, |layout, lp, _| {
                assert_eq!(*layout, padded);
                weighted_loss(lp, weights(layout), layout)
            })
            .unwrap();
        assert!(out.skipped.is_none());
        // Only the long row and one copy of the repeated one (a bucket each with the 14-id
        // row's) ran: 20 + 14 positions in one bucket, 6 in the other.
        assert_eq!(out.forwarded_tokens, 2 * 20 + 6);
        let got = out.metrics["loss"];
        assert!(
            (got - expected).abs() < 1e-4 * expected.abs(),
            "{got} vs {expected}"
        );
        assert!(
            (out.grad_norm - expected_norm).abs() < 1e-4 * expected_norm,
            "gradient norm {} vs {expected_norm}",
            out.grad_norm
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
