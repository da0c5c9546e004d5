//! Per-token log-probabilities and entropies from logits: the quantities every RL objective and
//! the `score` command are built on.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// The log-probability of each target token under the logits at the same position.
///
/// # Shapes
/// - `logits`: `[batch, seq, vocab]`; `targets`: `[batch, seq]` -> `[batch, seq]`
pub fn token_logprobs(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    log_softmax(logits, 2)
        .gather(2, targets.unsqueeze_dim::<3>(2))
        .squeeze_dim::<2>(2)
}

/// The entropy of the next-token distribution at each position, in nats.
///
/// # Shapes
/// - `logits`: `[batch, seq, vocab]` -> `[batch, seq]`
pub fn entropy(logits: Tensor<3>) -> Tensor<2> {
    let logp = log_softmax(logits, 2);
    (logp.clone().exp() * logp)
        .sum_dim(2)
        .squeeze_dim::<2>(2)
        .neg()
}

/// Log-probabilities of `tokens[:, 1..]` given their prefixes, from the logits of a forward
/// pass over `tokens`.
///
/// # Shapes
/// - `logits`: `[batch, seq, vocab]`; `tokens`: `[batch, seq]` -> `[batch, seq - 1]`
pub fn next_token_logprobs(logits: Tensor<3>, tokens: Tensor<2, Int>) -> Tensor<2> {
    let [_, t, _] = logits.dims();
    token_logprobs(logits.narrow(1, 0, t - 1), tokens.narrow(1, 1, t - 1))
}
