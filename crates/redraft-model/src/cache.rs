//! The key/value cache for incremental decoding, kept outside the model and passed as `&mut`.
//!
//! Rows are left-padded: row `b` starts with `left_pad[b]` padding slots that every query of that
//! row ignores, and its real tokens take positions `0, 1, 2, ...` from the first real slot on.
//! Slots are shared by all rows, so one decode step appends one slot to every row.
//!
//! The storage is written in place: each layer's keys and values live in tensors preallocated to
//! a capacity of slots (a hint given at creation, else the first write's length), each step's new
//! keys and values are written into the next free slots with a slice assignment, and attention
//! reads a view of the filled slots. When a write does not fit, the storage grows to at least
//! twice its capacity (one copy), so a decode of `N` steps reallocates `O(log N)` times instead
//! of concatenating a new copy of the whole cache at every step. A clone shares the storage until
//! one side writes (burn copies a tensor on write while another handle holds it), so a clone
//! truncated and continued never alters the original.

use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Error, Result};

/// Keys and values of every layer for a batch of left-padded sequences.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer: keys and values `[batch, kv_heads, capacity, head_dim]` (keys after RoPE), of
    /// which the first `slots` slots are filled.
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    left_pad: Vec<usize>,
    /// Slots filled.
    slots: usize,
    /// Slots the storage holds (the hint before the first write).
    capacity: usize,
    /// Times the storage was allocated (all layers at once count as one).
    reallocations: usize,
    /// Most slots a growth allocates beyond what a write needs (the model's context).
    max_slots: usize,
}

impl KvCache {
    /// An empty cache for `num_layers` layers and rows with the given left padding; the storage
    /// is sized by the first write and doubles when full.
    pub fn new(num_layers: usize, left_pad: Vec<usize>) -> Self {
        Self::with_capacity(num_layers, left_pad, 0)
    }

    /// An empty cache whose storage, once written, holds at least `capacity` slots (padding
    /// included) without growing: the rows' budget, prompt plus new tokens, when it is known.
    pub fn with_capacity(num_layers: usize, left_pad: Vec<usize>, capacity: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            left_pad,
            slots: 0,
            capacity,
            reallocations: 0,
            max_slots: usize::MAX,
        }
    }

    /// Caps the doubling at `max_slots` slots (a write needing more still gets them).
    pub(crate) fn with_max_slots(mut self, max_slots: usize) -> Self {
        self.max_slots = max_slots;
        self
    }

    /// Number of slots filled so far (padding included).
    pub fn len(&self) -> usize {
        self.slots
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// Slots the storage holds before it must grow.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many times the storage was allocated: once at the first write, then once per growth
    /// (a fork from [`select_rows`](Self::select_rows) starts at one, its own copy).
    pub fn reallocations(&self) -> usize {
        self.reallocations
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
    /// prompt into the samples of a group without recomputing it. The fork keeps the capacity.
    pub fn select_rows(&self, rows: &[usize]) -> Self {
        let ids: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let layers: Vec<_> = self
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
        let allocated = usize::from(layers.iter().any(Option::is_some));
        Self {
            layers,
            left_pad: rows.iter().map(|&r| self.left_pad[r]).collect(),
            slots: self.slots,
            capacity: self.capacity,
            reallocations: allocated,
            max_slots: self.max_slots,
        }
    }

    /// Keeps only the first `slots` slots (to retry from an earlier point of a conversation); the
    /// storage stays, and later writes overwrite the dropped slots.
    pub fn truncate(&mut self, slots: usize) {
        self.slots = self.slots.min(slots);
    }

    /// Gives every row `extra` more padding slots at the front (one copy of the filled slots):
    /// room to place a prompt longer than the slots filled so far ([`place_row`](Self::place_row)).
    pub fn pad_left(&mut self, extra: usize) {
        if extra == 0 {
            return;
        }
        let (filled, capacity) = (self.slots + extra, self.capacity.max(self.slots) + extra);
        for layer in self.layers.iter_mut() {
            if let Some((k, v)) = layer.take() {
                let shift = |t: Tensor<4>| {
                    let [b, heads, _, hd] = t.dims();
                    let grown = Tensor::zeros([b, heads, capacity, hd], (&t.device(), t.dtype()));
                    if self.slots == 0 {
                        return grown;
                    }
                    let filled_part = t.narrow(2, 0, self.slots);
                    grown.slice_assign([0..b, 0..heads, extra..filled, 0..hd], filled_part)
                };
                *layer = Some((shift(k), shift(v)));
            }
        }
        for pad in &mut self.left_pad {
            *pad += extra;
        }
        self.slots = filled;
        self.capacity = capacity;
    }

    /// Puts row `from_row` of `from` (its real tokens only) into row `row` of this cache, ending
    /// at the last filled slot, in place: a finished row's slot taken by a new sequence. Its
    /// real tokens must fit in the slots filled here (else [`pad_left`](Self::pad_left) first);
    /// both caches hold the same layers.
    pub fn place_row(&mut self, row: usize, from: &KvCache, from_row: usize) -> Result<()> {
        let (Some(&real), true) = (from.real_lengths().get(from_row), row < self.batch_size())
        else {
            return Err(Error::InvalidInput(format!(
                "row {from_row} of a cache of {} rows placed at row {row} of one of {}",
                from.batch_size(),
                self.batch_size()
            )));
        };
        if real > self.slots || from.layers.len() != self.layers.len() {
            return Err(Error::InvalidInput(format!(
                "a row of {real} tokens and {} layers placed in {} filled slots of {} layers",
                from.layers.len(),
                self.slots,
                self.layers.len()
            )));
        }
        let (start, end) = (self.slots - real, self.slots);
        let src = from.slots - real..from.slots;
        for (layer, source) in self.layers.iter_mut().zip(&from.layers) {
            if let (Some((k, v)), Some((fk, fv))) = (layer.take(), source.as_ref()) {
                let [_, heads, _, hd] = k.dims();
                let take = |t: &Tensor<4>| {
                    t.clone()
                        .slice([from_row..from_row + 1, 0..heads, src.clone(), 0..hd])
                };
                let at = [row..row + 1, 0..heads, start..end, 0..hd];
                *layer = Some((
                    k.slice_assign(at.clone(), take(fk)),
                    v.slice_assign(at, take(fv)),
                ));
            }
        }
        self.left_pad[row] = start;
        Ok(())
    }

    /// Appends the rows of `other`, which has as many filled slots and layers, after this
    /// cache's rows (one copy of both).
    pub fn append_rows(&mut self, other: &KvCache) -> Result<()> {
        if self.slots != other.slots || self.layers.len() != other.layers.len() {
            return Err(Error::InvalidInput(format!(
                "a cache of {} slots and {} layers appended to one of {} slots and {} layers",
                other.slots,
                other.layers.len(),
                self.slots,
                self.layers.len()
            )));
        }
        let (capacity, filled) = (
            self.capacity.max(other.capacity).max(self.slots),
            self.slots,
        );
        // Each side's storage at the joint capacity: as it is, or its filled slots copied over.
        let fit = |t: &Tensor<4>| {
            let [b, heads, have, hd] = t.dims();
            if have == capacity {
                return t.clone();
            }
            let grown = Tensor::zeros([b, heads, capacity, hd], (&t.device(), t.dtype()));
            if filled == 0 {
                return grown;
            }
            grown.slice_assign(
                [0..b, 0..heads, 0..filled, 0..hd],
                t.clone().narrow(2, 0, filled),
            )
        };
        for (layer, source) in self.layers.iter_mut().zip(&other.layers) {
            if let (Some((k, v)), Some((ok, ov))) = (layer.take(), source.as_ref()) {
                *layer = Some((
                    Tensor::cat(vec![fit(&k), fit(ok)], 0),
                    Tensor::cat(vec![fit(&v), fit(ov)], 0),
                ));
            }
        }
        self.left_pad.extend_from_slice(&other.left_pad);
        self.capacity = capacity;
        Ok(())
    }

    /// A cache of the given rows (as [`select_rows`](Self::select_rows)) without the leading
    /// slots that all of them pad: what stays of a batch once some rows have finished.
    pub fn compact(&self, rows: &[usize]) -> Self {
        let mut kept = self.select_rows(rows);
        let drop = kept.left_pad.iter().copied().min().unwrap_or(0);
        if drop > 0 {
            let len = kept.capacity.max(kept.slots) - drop;
            for layer in kept.layers.iter_mut() {
                if let Some((k, v)) = layer.take() {
                    *layer = Some((k.narrow(2, drop, len), v.narrow(2, drop, len)));
                }
            }
            for pad in &mut kept.left_pad {
                *pad -= drop;
            }
            kept.slots -= drop;
            kept.capacity = len;
        }
        kept
    }

    /// Writes this step's keys and values `[batch, kv_heads, new, head_dim]` into the free
    /// slots of `layer` and returns views of all filled slots, the new ones included.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>) {
        let [b, heads, new, hd] = k.dims();
        let (start, end) = (self.slots, self.slots + new);
        let first = self.reallocations == 0;
        if first || end > self.capacity {
            let grown = if first {
                self.capacity
            } else {
                (2 * self.capacity).min(self.max_slots)
            };
            self.capacity = end.max(grown);
            self.reallocations += 1;
        }
        let (keys, values) = match self.layers[layer].take() {
            Some(kv) if kv.0.dims()[2] == self.capacity => kv,
            old => {
                // First write or growth: one copy of the filled slots into a larger storage.
                let options = (&k.device(), k.dtype());
                let mut keys = Tensor::zeros([b, heads, self.capacity, hd], options);
                let mut values = Tensor::zeros([b, heads, self.capacity, hd], options);
                // (`narrow` rejects an empty range: after `truncate(0)` there is nothing to copy.)
                if let Some((ok, ov)) = old.filter(|_| start > 0) {
                    keys = keys
                        .slice_assign([0..b, 0..heads, 0..start, 0..hd], ok.narrow(2, 0, start));
                    values = values
                        .slice_assign([0..b, 0..heads, 0..start, 0..hd], ov.narrow(2, 0, start));
                }
                (keys, values)
            }
        };
        let at = [0..b, 0..heads, start..end, 0..hd];
        let keys = keys.slice_assign(at.clone(), k);
        let values = values.slice_assign(at, v);
        self.layers[layer] = Some((keys.clone(), values.clone()));
        (keys.narrow(2, 0, end), values.narrow(2, 0, end))
    }

    /// Records that `steps` slots were appended to every layer.
    pub(crate) fn advance(&mut self, steps: usize) {
        self.slots += steps;
    }
}
