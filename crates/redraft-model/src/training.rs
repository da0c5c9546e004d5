//! A training pass whose backward the caller drives: the forward gives per-token log-probs and
//! entropies as plain numbers, the caller's loss is differentiated with respect to them alone,
//! and [`TrainPass::backward`] carries those gradients through the head and the layers.
//!
//! Splitting the backward at the log-probs is what keeps memory flat: the head runs in chunks of
//! positions ([`crate::head`]), so no `[batch, time, vocab]` tensor is ever kept, and with
//! gradient checkpointing ([`TrainPass::new`]'s `checkpoint`) only each layer's input is kept
//! and the layers are recomputed one at a time during the backward (one more forward, as
//! `gradient_checkpointing` costs in transformers). The gradients equal those of one
//! autodiff graph over the whole model (tests/training.rs compares them).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor};

use crate::error::{Error, Result};
use crate::head::HeadInputs;
use crate::transformer::{CausalLm, Positions};

/// What a training pass keeps for its backward.
enum Trunk {
    /// The autodiff graph of the whole trunk, ending at the tracked final hidden states.
    Kept(Box<Tensor<3>>),
    /// The input of every layer and of the final norm (untracked); the layers are recomputed in
    /// the backward.
    Checkpointed {
        inputs: Vec<Tensor<3>>,
        positions: Box<Positions>,
    },
}

/// One forward pass of a right-padded batch on the autodiff device, ready for its backward.
pub struct TrainPass {
    tokens: Tensor<2, Int>,
    /// The head's inputs at the positions it ran at.
    head: HeadInputs,
    temperature: f32,
    trunk: Trunk,
}

impl std::fmt::Debug for TrainPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainPass")
            .field("tokens", &self.tokens.dims())
            .finish_non_exhaustive()
    }
}

impl TrainPass {
    /// Runs `model` (on the autodiff device) over `tokens` (right padded, no left padding) and
    /// returns the pass with the log-probs of `tokens[:, 1..]` and, when `with_entropy`, the
    /// entropies at positions `0..t - 1`, both `[batch, t - 1]` and untracked, at `temperature`
    /// (see [`crate::inverse_temperature`]). With `checkpoint`, only the layers' inputs are
    /// kept.
    pub fn new(
        model: &CausalLm,
        tokens: Tensor<2, Int>,
        temperature: f32,
        with_entropy: bool,
        checkpoint: bool,
    ) -> Result<(Self, Tensor<2>, Option<Tensor<2>>)> {
        Self::run(model, tokens, None, temperature, with_entropy, checkpoint)
    }

    /// [`Self::new`] with the head (and its softmax over the vocabulary) run only at the
    /// positions where `needed` (`[batch, t - 1]`, row major) is true: a loss that reads only
    /// those (trained tokens) gets the same values and gradients, and a prompt's positions
    /// cost only the layers. Log-probs and entropies elsewhere are 0.
    pub fn at(
        model: &CausalLm,
        tokens: Tensor<2, Int>,
        needed: &[bool],
        temperature: f32,
        with_entropy: bool,
        checkpoint: bool,
    ) -> Result<(Self, Tensor<2>, Option<Tensor<2>>)> {
        Self::run(
            model,
            tokens,
            Some(needed),
            temperature,
            with_entropy,
            checkpoint,
        )
    }

    fn run(
        model: &CausalLm,
        tokens: Tensor<2, Int>,
        needed: Option<&[bool]>,
        temperature: f32,
        with_entropy: bool,
        checkpoint: bool,
    ) -> Result<(Self, Tensor<2>, Option<Tensor<2>>)> {
        let [b, t] = tokens.dims();
        if t < 2 {
            return Err(Error::InvalidInput(format!(
                "a training pass needs rows of at least 2 tokens, got {t}"
            )));
        }
        if t > model.config().max_position_embeddings {
            return Err(Error::ContextOverflow {
                len: t,
                max: model.config().max_position_embeddings,
            });
        }
        let (final_hidden, trunk) = if checkpoint {
            let positions = model.positions(&vec![0; b], 0, t, &tokens.device());
            let plain = model.valid();
            let mut inputs = Vec::with_capacity(model.layers.len() + 1);
            let mut x = plain.embed(tokens.clone().inner());
            let p = plain_positions(&positions);
            for layer in &plain.layers {
                inputs.push(x.clone());
                x = layer.forward(x, &p.cos, &p.sin, p.mask.as_ref(), None);
            }
            inputs.push(x.clone());
            let hidden = plain.norm.forward(x);
            (
                hidden,
                Trunk::Checkpointed {
                    inputs,
                    positions: Box::new(positions),
                },
            )
        } else {
            let hidden = model.hidden(tokens.clone(), &vec![0; b], 0, None)?;
            (hidden.clone().inner(), Trunk::Kept(Box::new(hidden)))
        };
        let head = HeadInputs::new(final_hidden, tokens.clone().inner(), needed)?;
        let (logprobs, entropy) = model.stats_at(&head, temperature, with_entropy);
        let pass = Self {
            tokens,
            head,
            temperature,
            trunk,
        };
        Ok((pass, logprobs, entropy))
    }

    /// The gradients of `model`'s parameters for a loss whose gradients with respect to this
    /// pass's log-probs and entropies are `grad_logprobs` and `grad_entropy` (`[batch, t - 1]`).
    /// `model` must be the one the pass ran.
    pub fn backward(
        self,
        model: &CausalLm,
        grad_logprobs: Tensor<2>,
        grad_entropy: Option<Tensor<2>>,
    ) -> GradientsParams {
        let [b, t] = self.tokens.dims();
        let d = model.config().hidden_size;
        let n = b * (t - 1);
        let head_weight = head_weight(model);
        let inputs = &self.head;
        let head = model.head_backward(
            inputs.hidden.clone(),
            inputs.targets.clone(),
            self.temperature,
            inputs.gather(grad_logprobs.inner().reshape([n])),
            grad_entropy.map(|g| inputs.gather(g.inner().reshape([n]))),
            head_weight.is_require_grad(),
        );
        let plain = head.hidden.device();
        let head_hidden = inputs.spread(head.hidden);
        // The last position predicts nothing.
        let grad_hidden = Tensor::cat(
            vec![
                head_hidden.reshape([b, t - 1, d]),
                Tensor::zeros([b, 1, d], &plain),
            ],
            1,
        );
        let head_term = |w: Tensor<2>| -> Option<Tensor<1>> {
            let g = head.weight.clone()?;
            // ∂L/∂W for the stored layout: `[hidden, vocab]` for a head, `[vocab, hidden]` for
            // a tied embedding.
            let g = if model.lm_head.is_some() {
                g
            } else {
                g.transpose()
            };
            Some((w * g.autodiff()).sum())
        };
        let mut grads = GradientsParams::new();
        match self.trunk {
            Trunk::Kept(hidden) => {
                let mut loss = (*hidden * grad_hidden.autodiff()).sum();
                if let Some(term) = head_term(head_weight) {
                    loss = loss + term;
                }
                // Untracked when nothing in the model is trained.
                if loss.is_tracked() {
                    add_grads(
                        &mut grads,
                        GradientsParams::from_grads(loss.backward(), model),
                        model,
                    );
                }
            }
            Trunk::Checkpointed { inputs, positions } => {
                let mut inputs = inputs;
                let last = inputs.pop().expect("the final norm's input");
                let x = last.autodiff().require_grad();
                let mut loss = (model.norm.forward(x.clone()) * grad_hidden.autodiff()).sum();
                if let Some(term) = head_term(head_weight) {
                    loss = loss + term;
                }
                let mut g = step_back(&mut grads, model, loss, &x);
                for (layer, input) in model.layers.iter().zip(inputs).rev() {
                    let x = input.autodiff().require_grad();
                    let y = layer.forward(
                        x.clone(),
                        &positions.cos,
                        &positions.sin,
                        positions.mask.as_ref(),
                        None,
                    );
                    g = step_back(&mut grads, model, (y * g.autodiff()).sum(), &x);
                }
                if model.embed_tokens.weight.val().is_require_grad() {
                    let x = model.embed(self.tokens.clone());
                    let loss = (x * g.autodiff()).sum();
                    add_grads(
                        &mut grads,
                        GradientsParams::from_grads(loss.backward(), model),
                        model,
                    );
                }
            }
        }
        grads
    }
}

/// Backpropagates `loss`, adds the parameters' gradients to `grads` and returns `∂loss/∂x`.
fn step_back(
    grads: &mut GradientsParams,
    model: &CausalLm,
    loss: Tensor<1>,
    x: &Tensor<3>,
) -> Tensor<3> {
    // `x` requires its gradient, so the loss is tracked.
    let all = loss.backward();
    let gx = x
        .grad(&all)
        .unwrap_or_else(|| Tensor::zeros(x.dims(), &x.device().inner()));
    add_grads(grads, GradientsParams::from_grads(all, model), model);
    gx
}

/// The output head's stored weight, tracked (the embedding table when tied).
fn head_weight(model: &CausalLm) -> Tensor<2> {
    match &model.lm_head {
        Some(head) => head.weight.val(),
        None => model.embed_tokens.weight.val(),
    }
}

/// `positions` on the plain device.
fn plain_positions(p: &Positions) -> Positions {
    Positions {
        cos: p.cos.clone().inner(),
        sin: p.sin.clone().inner(),
        mask: p.mask.clone().map(Tensor::inner),
    }
}

/// Adds every gradient of `new` to `acc`, parameter by parameter.
pub fn add_grads(acc: &mut GradientsParams, mut new: GradientsParams, model: &CausalLm) {
    struct Add<'a> {
        acc: &'a mut GradientsParams,
        new: &'a mut GradientsParams,
    }
    impl ModuleVisitor for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.new.remove::<D>(param.id) {
                let sum = match self.acc.remove::<D>(param.id) {
                    Some(a) => a + g,
                    None => g,
                };
                self.acc.register::<D>(param.id, sum);
            }
        }
    }
    model.visit(&mut Add { acc, new: &mut new });
}
