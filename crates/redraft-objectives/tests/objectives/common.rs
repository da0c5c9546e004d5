//! Shared helpers: devices, tensors, a tiny deterministic RNG and the gradient check.

use redraft_model::burn::tensor::{Device, Int, Tensor, TensorData};
use redraft_model::token_logprobs;
use redraft_objectives::{Objective, PolicyBatch};

/// The plain CPU device.
pub(crate) fn dev() -> Device {
    Device::flex()
}

/// The autodiff CPU device.
pub(crate) fn ad() -> Device {
    Device::flex().autodiff()
}

/// A `[b, t]` float tensor.
pub(crate) fn t2(values: Vec<f32>, [b, t]: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(TensorData::new(values, [b, t]), device)
}

/// The value of a `[1]` tensor.
pub(crate) fn scalar(t: Tensor<1>) -> f64 {
    f64::from(t.into_scalar::<f32>())
}

/// `|a − b| ≤ tol`, with a message.
#[track_caller]
pub(crate) fn assert_close(got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "got {got}, want {want} (|diff| = {:e} > {tol:e})",
        (got - want).abs()
    );
}

/// xorshift64*: deterministic pseudo-random numbers for test inputs.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    pub(crate) fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.range(lo, hi)).collect()
    }
}

/// Logits `[b, t, v]` and targets `[b, t]` for a gradient check.
pub(crate) struct Leaf {
    pub(crate) dims: [usize; 3],
    pub(crate) logits: Vec<f32>,
    pub(crate) targets: Vec<i32>,
}

impl Leaf {
    pub(crate) fn random(rng: &mut Rng, [b, t, v]: [usize; 3]) -> Self {
        let logits = rng.vec(b * t * v, -1.5, 1.5);
        let targets = (0..b * t)
            .map(|_| (rng.uniform() * v as f32) as i32 % v as i32)
            .collect();
        Self {
            dims: [b, t, v],
            logits,
            targets,
        }
    }

    pub(crate) fn logits(&self, values: &[f32], device: &Device) -> Tensor<3> {
        Tensor::<3>::from_data(TensorData::new(values.to_vec(), self.dims), device)
    }

    pub(crate) fn targets(&self, device: &Device) -> Tensor<2, Int> {
        let [b, t, _] = self.dims;
        Tensor::<2, Int>::from_data(TensorData::new(self.targets.clone(), [b, t]), device)
    }

    /// Host log-probs of the targets (for building old / reference log-probs near them).
    pub(crate) fn logprobs_host(&self) -> Vec<f32> {
        let d = dev();
        token_logprobs(self.logits(&self.logits, &d), self.targets(&d))
            .into_data()
            .try_to_vec_as::<f32>()
            .unwrap()
    }
}

/// The loss value for given logits (no gradient).
fn loss_at(
    obj: &dyn Objective,
    batch: &PolicyBatch,
    leaf: &Leaf,
    values: &[f32],
    with_entropy: bool,
) -> f64 {
    let d = ad();
    let logits = leaf.logits(values, &d);
    let lp = token_logprobs(logits.clone(), leaf.targets(&d));
    let h = with_entropy.then(|| redraft_model::entropy(logits));
    scalar(obj.loss(batch, lp, h).unwrap().loss)
}

/// Compares the autodiff gradient of the loss with respect to the logits with central finite
/// differences (step `h`), returning the largest absolute difference and the largest |grad|.
pub(crate) fn gradcheck(
    obj: &dyn Objective,
    batch: &PolicyBatch,
    leaf: &Leaf,
    with_entropy: bool,
    h: f32,
) -> (f64, f64) {
    let d = ad();
    let logits = leaf.logits(&leaf.logits, &d).require_grad();
    let lp = token_logprobs(logits.clone(), leaf.targets(&d));
    let ent = with_entropy.then(|| redraft_model::entropy(logits.clone()));
    let out = obj.loss(batch, lp, ent).unwrap();
    let grads = out.loss.backward();
    let g: Vec<f32> = logits
        .grad(&grads)
        .expect("logits have a gradient")
        .into_data()
        .try_to_vec_as::<f32>()
        .unwrap();
    let mut max_diff = 0.0f64;
    let mut max_grad = 0.0f64;
    for k in 0..leaf.logits.len() {
        let mut plus = leaf.logits.clone();
        plus[k] += h;
        let mut minus = leaf.logits.clone();
        minus[k] -= h;
        let num = (loss_at(obj, batch, leaf, &plus, with_entropy)
            - loss_at(obj, batch, leaf, &minus, with_entropy))
            / (2.0 * f64::from(h));
        max_diff = max_diff.max((num - f64::from(g[k])).abs());
        max_grad = max_grad.max(f64::from(g[k]).abs());
    }
    (max_diff, max_grad)
}
