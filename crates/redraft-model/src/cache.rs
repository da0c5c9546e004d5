//! The key/value cache for incremental decoding, kept outside the model and passed as `&mut`.
//!
//! Rows are left-padded: row `b` starts with `left_pad[b]` padding slots that every query of that
//! row ignores, and its real tokens take positions `0, 1, 2, ...` from the first real slot on.
//! Slots are shared by all rows, so one decode step appends one slot to every row.

use burn::tensor::{Int, Tensor, TensorData};

/// Keys and values of every layer for a batch of left-padded sequences.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer: keys and values `[batch, kv_heads, slots, head_dim]` (keys after RoPE).
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    left_pad: Vec<usize>,
    slots: usize,
}

impl KvCache {
    /// An empty cache for `num_layers` layers and rows with the given left padding.
    pub fn new(num_layers: usize, left_pad: Vec<usize>) -> Self {
        Self {
            layers: vec![None; num_layers],
            left_pad,
            slots: 0,
        }
    }

    /// Number of slots filled so far (padding included).
    pub fn len(&self) -> usize {
        self.slots
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// Number of rows.
    pub fn batch_size(&self) -> usize {
        self.left_pad.len()
    }

    /// Padding slots at the start of each row.
    pub fn left_pad(&self) -> &[usize] {
        &self.left_pad
    }

    /// Number of real (non-padding) tokens cached for each row.
    pub fn real_lengths(&self) -> Vec<usize> {
        self.left_pad
            .iter()
            .map(|p| self.slots.saturating_sub(*p))
            .collect()
    }

    /// A cache holding the given rows, in that order (a row may repeat): forks one prefilled
    /// prompt into the samples of a group without recomputing it.
    pub fn select_rows(&self, rows: &[usize]) -> Self {
        let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let layers = self
            .layers
            .iter()
            .map(|layer| {
                layer.as_ref().map(|(k, v)| {
                    let index = Tensor::<1, Int>::from_data(
                        TensorData::new(ids.clone(), [ids.len()]),
                        &k.device(),
                    );
                    (
                        k.clone().select(0, index.clone()),
                        v.clone().select(0, index),
                    )
                })
            })
            .collect();
        Self {
            layers,
            left_pad: rows.iter().map(|&r| self.left_pad[r]).collect(),
            slots: self.slots,
        }
    }

    /// Keeps only the first `slots` slots (to retry from an earlier point of a conversation).
    pub fn truncate(&mut self, slots: usize) {
        if slots >= self.slots {
            return;
        }
        for layer in self.layers.iter_mut().flatten() {
            layer.0 = layer.0.clone().narrow(2, 0, slots);
            layer.1 = layer.1.clone().narrow(2, 0, slots);
        }
        self.slots = slots;
    }

    /// Appends this step's keys and values to `layer` and returns all of them.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>) {
        let (k, v) = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        (k, v)
    }

    /// Records that `steps` slots were appended to every layer.
    pub(crate) fn advance(&mut self, steps: usize) {
        self.slots += steps;
    }
}
