//! The output head over chunks of positions: per-token log-probabilities and entropies of
//! `softmax(hidden · W / T)`, and their gradients, without ever holding a
//! `[batch, time, vocab]` tensor.
//!
//! With a real vocabulary (49 152 for SmolLM2, 151 936 for Qwen2.5) the logits of a batch
//! dwarf the rest of the activations, and autodiff keeps several copies of them (the logits,
//! the log-softmax, their gradients). Here at most [`CHUNK_LOGITS`] logits exist at once: the
//! forward keeps only the per-position results, and the backward recomputes each chunk's
//! logits to form `∂L/∂logits` from the loss's gradients with respect to the log-probs and
//! entropies (the same recompute-instead-of-store trade as Liger-Kernel's fused linear
//! cross-entropy). For a target `y` and `p = softmax(z)`:
//!
//! ```text
//! ∂ log p_y / ∂z = onehot(y) − p          ∂H / ∂z = −p ⊙ (log p + H)
//! ```

use burn::tensor::activation::log_softmax;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};

use crate::dtype::widen;
use crate::error::{Error, Result};
use crate::transformer::CausalLm;

/// Logits computed at once (positions × vocabulary): 4 Mi values, 16 MiB in f32.
const CHUNK_LOGITS: usize = 1 << 22;

/// The factor the logits are multiplied by to sample or score at `temperature`: `1 / T`, and 1
/// for a temperature of 0 (greedy decoding, whose recorded log-probs are at temperature 1, as
/// the sampler records them) or below.
pub fn inverse_temperature(temperature: f32) -> f32 {
    if temperature > 0.0 {
        1.0 / temperature
    } else {
        1.0
    }
}

/// Per-position statistics of the next-token distribution.
#[derive(Debug, Clone)]
pub struct TokenStats {
    /// The log-probability of each target token.
    pub logprobs: Tensor<1>,
    /// The entropy of the distribution at each position, in nats, when asked for.
    pub entropy: Option<Tensor<1>>,
}

/// The gradient of a loss with respect to the head's inputs and weight.
pub(crate) struct HeadGrads {
    /// `∂L/∂hidden`, `[positions, hidden]`.
    pub(crate) hidden: Tensor<2>,
    /// `∂L/∂W` as `[hidden, vocab]`, when asked for.
    pub(crate) weight: Option<Tensor<2>>,
}

impl CausalLm {
    /// Positions per chunk of the head.
    fn head_chunk(&self) -> usize {
        (CHUNK_LOGITS / self.config().vocab_size.max(1)).max(1)
    }

    /// The head's weight as `[hidden, vocab]` in f32, without autodiff tracking.
    fn head_weight(&self) -> Tensor<2> {
        let w = match &self.lm_head {
            Some(head) => head.weight.val(),
            None => self.embed_tokens.weight.val().transpose(),
        };
        widen(w.inner())
    }

    /// Log-probs of `tokens[:, 1..]` given their prefixes at `temperature` (and the entropies
    /// at positions `0..t - 1`, when `with_entropy`), with the head run in chunks: what
    /// [`crate::next_token_logprobs`] gives from full logits, without the `[batch, t, vocab]`
    /// tensor. Rows are right padded (no left padding). With `needed` (`[batch, t - 1]`, row
    /// major) the head runs only where it is true, and the results elsewhere are 0: a prompt's
    /// positions then cost only the layers.
    ///
    /// # Shapes
    /// - `tokens`: `[batch, t]` -> `[batch, t - 1]`
    pub fn next_token_stats(
        &self,
        tokens: Tensor<2, Int>,
        needed: Option<&[bool]>,
        temperature: f32,
        with_entropy: bool,
    ) -> Result<(Tensor<2>, Option<Tensor<2>>)> {
        let [b, t] = tokens.dims();
        if t < 2 {
            return Err(Error::InvalidInput(format!(
                "scoring needs rows of at least 2 tokens, got {t}"
            )));
        }
        let hidden = self.hidden(tokens.clone(), &vec![0; b], 0, None)?;
        let inputs = HeadInputs::new(hidden, tokens, needed)?;
        Ok(self.stats_at(&inputs, temperature, with_entropy))
    }

    /// [`Self::head_stats`] of `inputs`, put back at their positions: `[batch, t - 1]` each, 0
    /// where the head did not run.
    pub(crate) fn stats_at(
        &self,
        inputs: &HeadInputs,
        temperature: f32,
        with_entropy: bool,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        let stats = self.head_stats(
            inputs.hidden.clone(),
            inputs.targets.clone(),
            temperature,
            with_entropy,
        );
        let back = |x: Tensor<1>| inputs.spread(x).reshape(inputs.shape);
        (back(stats.logprobs), stats.entropy.map(back))
    }

    /// Log-probs of `targets` (and entropies, when `with_entropy`) under
    /// `softmax(hidden · W / T)`, computed over chunks of positions.
    ///
    /// # Shapes
    /// - `hidden`: `[positions, hidden]` (final, normalised hidden states); `targets`: `[positions]`
    pub fn head_stats(
        &self,
        hidden: Tensor<2>,
        targets: Tensor<1, Int>,
        temperature: f32,
        with_entropy: bool,
    ) -> TokenStats {
        let w = self.head_weight();
        let scale = inverse_temperature(temperature);
        let [n, _] = hidden.dims();
        let (mut lps, mut ents) = (Vec::new(), Vec::new());
        for start in (0..n).step_by(self.head_chunk()) {
            let len = self.head_chunk().min(n - start);
            let logp = chunk_logprobs(hidden.clone().narrow(0, start, len), &w, scale);
            let y = targets.clone().narrow(0, start, len).unsqueeze_dim::<2>(1);
            lps.push(logp.clone().gather(1, y).squeeze_dim::<1>(1));
            if with_entropy {
                ents.push(entropy_of(logp).squeeze_dim::<1>(1));
            }
        }
        TokenStats {
            logprobs: cat_or_empty(lps, &hidden),
            entropy: with_entropy.then(|| cat_or_empty(ents, &hidden)),
        }
    }

    /// The gradient of a loss through the head, given its gradients with respect to the
    /// log-probs (`grad_logprobs`) and entropies (`grad_entropy`) that [`Self::head_stats`]
    /// computed from the same `hidden`, `targets` and `temperature`.
    ///
    /// # Shapes
    /// - `hidden`: `[positions, hidden]`; `targets`, `grad_*`: `[positions]`
    pub(crate) fn head_backward(
        &self,
        hidden: Tensor<2>,
        targets: Tensor<1, Int>,
        temperature: f32,
        grad_logprobs: Tensor<1>,
        grad_entropy: Option<Tensor<1>>,
        with_weight: bool,
    ) -> HeadGrads {
        let w = self.head_weight();
        let scale = inverse_temperature(temperature);
        let [n, _] = hidden.dims();
        let mut grad_hidden = Vec::new();
        let mut grad_weight: Option<Tensor<2>> = None;
        for start in (0..n).step_by(self.head_chunk()) {
            let len = self.head_chunk().min(n - start);
            let h = hidden.clone().narrow(0, start, len);
            let logp = chunk_logprobs(h.clone(), &w, scale);
            let g_lp = grad_logprobs
                .clone()
                .narrow(0, start, len)
                .unsqueeze_dim::<2>(1);
            // −p ⊙ (g_lp + g_H (log p + H)), then + g_lp at the target.
            let coefficient = match &grad_entropy {
                Some(g) => {
                    let g_h = g.clone().narrow(0, start, len).unsqueeze_dim::<2>(1);
                    let entropy = entropy_of(logp.clone());
                    (logp.clone() + entropy).mul(g_h) + g_lp.clone()
                }
                None => g_lp.clone(),
            };
            let y = targets.clone().narrow(0, start, len).unsqueeze_dim::<2>(1);
            let grad_z = (logp.exp() * coefficient)
                .neg()
                .scatter(1, y, g_lp, IndexingUpdateOp::Add)
                .mul_scalar(scale);
            grad_hidden.push(grad_z.clone().matmul(w.clone().transpose()));
            if with_weight {
                let g = h.transpose().matmul(grad_z);
                grad_weight = Some(match grad_weight {
                    Some(acc) => acc + g,
                    None => g,
                });
            }
        }
        HeadGrads {
            hidden: Tensor::cat(grad_hidden, 0),
            weight: grad_weight,
        }
    }
}

/// The output head's inputs in a right-padded pass of `[batch, t]` tokens: the final hidden
/// states of positions `0..t - 1` and the ids they predict, kept only at the positions the head
/// runs at.
pub(crate) struct HeadInputs {
    /// `[kept, hidden]`, untracked.
    pub(crate) hidden: Tensor<2>,
    /// `[kept]`.
    pub(crate) targets: Tensor<1, Int>,
    /// Which of the `batch × (t - 1)` positions are kept, when not all.
    kept: Option<Tensor<1, Int>>,
    /// `[batch, t - 1]`.
    pub(crate) shape: [usize; 2],
}

impl HeadInputs {
    /// The inputs at the positions where `needed` (`[batch, t - 1]`, row major) is true, or at
    /// every position when it is `None` or marks them all. A `needed` marking nothing keeps
    /// position 0 alone, so that no tensor has a zero-sized axis (its results are never read).
    ///
    /// # Shapes
    /// - `final_hidden`: `[batch, t, hidden]` (untracked); `tokens`: `[batch, t]`, same device
    pub(crate) fn new(
        final_hidden: Tensor<3>,
        tokens: Tensor<2, Int>,
        needed: Option<&[bool]>,
    ) -> Result<Self> {
        let [b, t, d] = final_hidden.dims();
        let n = b * (t - 1);
        let hidden = final_hidden.narrow(1, 0, t - 1).reshape([n, d]);
        let targets = tokens.narrow(1, 1, t - 1).reshape([n]);
        let kept = match needed {
            Some(needed) if needed.len() != n => {
                return Err(Error::InvalidInput(format!(
                    "{} needed positions given for a [{b}, {}] pass",
                    needed.len(),
                    t - 1
                )));
            }
            Some(needed) if needed.contains(&false) => {
                let mut at: Vec<i64> = (0..n).filter(|&i| needed[i]).map(|i| i as i64).collect();
                if at.is_empty() {
                    at.push(0);
                }
                let k = at.len();
                Some(Tensor::<1, Int>::from_data(
                    TensorData::new(at, [k]),
                    &hidden.device(),
                ))
            }
            _ => None,
        };
        let (hidden, targets) = match &kept {
            Some(at) => (hidden.select(0, at.clone()), targets.select(0, at.clone())),
            None => (hidden, targets),
        };
        Ok(Self {
            hidden,
            targets,
            kept,
            shape: [b, t - 1],
        })
    }

    /// Per-position values of the pass (`[batch × (t - 1), ...]`) at the kept positions.
    pub(crate) fn gather<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match &self.kept {
            Some(at) => x.select(0, at.clone()),
            None => x,
        }
    }

    /// Values at the kept positions (`[kept, ...]`) put back at their positions among the
    /// pass's `batch × (t - 1)`, with zeros elsewhere: the inverse of [`Self::gather`].
    pub(crate) fn spread<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match &self.kept {
            Some(at) => {
                let mut dims = x.dims();
                dims[0] = self.shape[0] * self.shape[1];
                Tensor::zeros(dims, &x.device()).select_assign(
                    0,
                    at.clone(),
                    x,
                    IndexingUpdateOp::Add,
                )
            }
            None => x,
        }
    }
}

/// The log-softmax of one chunk's logits `h · W · scale`, `[positions, vocab]`: the forward and
/// the backward compute it the same way.
fn chunk_logprobs(h: Tensor<2>, w: &Tensor<2>, scale: f32) -> Tensor<2> {
    log_softmax(h.matmul(w.clone()).mul_scalar(scale), 1)
}

/// `H = −Σ p log p` of each row of log-probs, `[rows, 1]`.
fn entropy_of(logp: Tensor<2>) -> Tensor<2> {
    (logp.clone().exp() * logp).sum_dim(1).neg()
}

fn cat_or_empty(parts: Vec<Tensor<1>>, like: &Tensor<2>) -> Tensor<1> {
    if parts.is_empty() {
        Tensor::zeros([0], &like.device())
    } else {
        Tensor::cat(parts, 0)
    }
}
