//! The learner: the policy on the autodiff device, its AdamW state, and one optimiser update
//! (forward, loss, backward, global gradient-norm clipping, non-finite guard, AdamW step).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use redraft_model::{CausalLm, entropy, next_token_logprobs, right_padded};

use crate::config::OptimizerConfig;
use crate::error::{Error, Result};
use crate::rows::Row;

/// Rows scored per forward pass when only log-probs are needed.
const SCORE_CHUNK: usize = 64;

/// A padded mini-batch of rows: ids and flat `[batch, time]` target-aligned inputs.
#[derive(Debug, Clone)]
pub(crate) struct Padded {
    pub(crate) batch: usize,
    pub(crate) time: usize,
    pub(crate) tokens: Tensor<2, Int>,
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

    /// Pads `rows` (right padding) onto `device`.
    pub(crate) fn pad_rows(&self, rows: &[&Row], device: &Device) -> Result<Padded> {
        let ids: Vec<Vec<u32>> = rows.iter().map(|r| r.ids.clone()).collect();
        let batch = right_padded(self.model().config(), &ids, self.pad, device)?;
        let [b, t] = batch.tokens.dims();
        Ok(Padded {
            batch: b,
            time: t - 1,
            tokens: batch.tokens,
        })
    }

    /// Per-target log-probs of `rows` under `model` (an inference copy: the policy before an
    /// update, or the reference model), each `ids.len() - 1` long.
    pub(crate) fn score(&self, model: &CausalLm, rows: &[&Row]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(SCORE_CHUNK) {
            let padded = self.pad_rows(chunk, &self.infer_device)?;
            let logits = model.forward(padded.tokens.clone(), &[])?;
            let lp = read(next_token_logprobs(logits, padded.tokens))?;
            for (i, r) in chunk.iter().enumerate() {
                let start = i * padded.time;
                out.push(lp[start..start + r.ids.len() - 1].to_vec());
            }
        }
        Ok(out)
    }

    /// One optimiser update on `rows`: `loss` maps the policy's `[batch, time]` log-probs (and
    /// entropies, when `with_entropy`) to a loss and its metrics.
    pub(crate) fn update<F>(
        &mut self,
        rows: &[&Row],
        lr: f64,
        grad_clip: f32,
        with_entropy: bool,
        loss: F,
    ) -> Result<UpdateOutcome>
    where
        F: FnOnce(
            &Padded,
            Tensor<2>,
            Option<Tensor<2>>,
        ) -> Result<(Tensor<1>, BTreeMap<String, f64>)>,
    {
        let padded = self.pad_rows(rows, &self.device)?;
        let model = self.model.take().expect("model present between updates");
        let result = (|| {
            let logits = model.forward(padded.tokens.clone(), &[])?;
            let ent = with_entropy.then(|| {
                let [b, t, _] = logits.dims();
                entropy(logits.clone()).slice([0..b, 0..t - 1])
            });
            let lp = next_token_logprobs(logits, padded.tokens.clone());
            loss(&padded, lp, ent)
        })();
        let (loss, metrics) = match result {
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
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = grad_norm(&model, &grads)?;
        if !norm.is_finite() {
            self.model = Some(model);
            return Ok(UpdateOutcome {
                metrics,
                grad_norm: norm,
                skipped: Some("non-finite gradient"),
            });
        }
        if grad_clip > 0.0 && norm > f64::from(grad_clip) {
            let factor = f64::from(grad_clip) / (norm + 1e-6);
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
}

/// AdamW with PyTorch's defaults where burn's differ (ε 1e-8), and the configured decay.
pub(crate) fn adamw(config: &OptimizerConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_1(config.betas[0])
        .with_beta_2(config.betas[1])
        .with_epsilon(config.eps)
        .with_weight_decay(config.weight_decay)
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
