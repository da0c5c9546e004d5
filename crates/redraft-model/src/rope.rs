//! Rotary position embeddings in transformers' "rotate half" layout.
//!
//! Each head vector `x = [x1, x2]` (halves) at position `p` becomes
//! `x * cos(p f) + [-x2, x1] * sin(p f)` with the frequencies `f` repeated over both halves.
//! The `cos` and `sin` of every position up to the longest seen so far are computed once (in f64
//! on the host) and kept on each device the model runs on, growing by doubling. A forward pass
//! then only slices them (rows without padding share their positions) or gathers its rows'
//! positions: `batch × new` integers cross to the device, never the tables.

use std::sync::{Arc, Mutex, PoisonError};

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::{ModelConfig, RopeScaling};

/// The inverse frequencies of a model, one per pair of head dimensions, and the tables built
/// from them on each device.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f64>,
    /// Shared by clones of the model (its plain copy for sampling, its trained copies).
    tables: Arc<Mutex<Vec<DeviceTables>>>,
}

/// `cos` and `sin` of positions `0..len` on one device, each `[len, head_dim]`.
#[derive(Debug)]
struct DeviceTables {
    device: Device,
    len: usize,
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl PartialEq for Rope {
    fn eq(&self, other: &Self) -> bool {
        self.inv_freq == other.inv_freq
    }
}

impl Rope {
    /// Frequencies for `config`, with its RoPE scaling applied.
    pub fn new(config: &ModelConfig) -> Self {
        let dim = config.head_dim;
        let base: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / config.rope_theta.powf((2 * i) as f64 / dim as f64))
            .collect();
        let inv_freq = match config.rope_scaling {
            RopeScaling::Default => base,
            RopeScaling::Linear { factor } => base.into_iter().map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = original_max_position_embeddings as f64;
                let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
                base.into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        Self {
            inv_freq,
            tables: Arc::default(),
        }
    }

    /// The position of slot `slot` in a row left-padded by `pad`: slots count from the row's
    /// first real token; padding slots take position 0 (their outputs are never read).
    pub fn position(slot: usize, pad: usize) -> usize {
        slot.saturating_sub(pad)
    }

    /// `cos` and `sin` for `new` tokens written from slot `start` of rows with the given left
    /// padding (see [`Rope::position`]).
    ///
    /// # Shapes
    /// - returns two tensors `[batch, 1, new, head_dim]`, broadcast over heads, or
    ///   `[1, 1, new, head_dim]` (broadcast over rows too) when no row is padded.
    pub fn tables(
        &self,
        left_pad: &[usize],
        start: usize,
        new: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<4>) {
        let dim = 2 * self.inv_freq.len();
        // Positions never exceed slots, so tables of `start + new` positions cover every row.
        let (cos, sin) = self.on_device(start + new, device);
        if left_pad.iter().all(|&p| p == 0) {
            let view = |t: Tensor<2>| t.narrow(0, start, new).reshape([1, 1, new, dim]);
            return (view(cos), view(sin));
        }
        let b = left_pad.len();
        let positions: Vec<i64> = left_pad
            .iter()
            .flat_map(|&pad| (start..start + new).map(move |s| Self::position(s, pad) as i64))
            .collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(positions, [b * new]), device);
        let gather = |t: Tensor<2>| t.select(0, index.clone()).reshape([b, 1, new, dim]);
        (gather(cos), gather(sin))
    }

    /// The tables of positions `0..len` (at least) on `device`, built or grown when needed.
    fn on_device(&self, len: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        // Devices compare by hardware; a table made for autodiff is kept apart from a plain one.
        let on = |t: &DeviceTables| {
            &t.device == device && t.device.is_autodiff() == device.is_autodiff()
        };
        let index = match tables.iter().position(on) {
            Some(i) if tables[i].len >= len => i,
            found => {
                let built = self.build(len.next_power_of_two().max(64), device);
                match found {
                    Some(i) => {
                        tables[i] = built;
                        i
                    }
                    None => {
                        tables.push(built);
                        tables.len() - 1
                    }
                }
            }
        };
        (tables[index].cos.clone(), tables[index].sin.clone())
    }

    /// `cos` and `sin` of positions `0..len`, computed in f64.
    fn build(&self, len: usize, device: &Device) -> DeviceTables {
        let dim = 2 * self.inv_freq.len();
        let mut cos = Vec::with_capacity(len * dim);
        let mut sin = Vec::with_capacity(len * dim);
        for p in 0..len {
            for _ in 0..2 {
                for f in &self.inv_freq {
                    let angle = p as f64 * f;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        DeviceTables {
            device: device.clone(),
            len,
            cos: Tensor::from_data(TensorData::new(cos, [len, dim]), device),
            sin: Tensor::from_data(TensorData::new(sin, [len, dim]), device),
        }
    }
}

/// Applies the rotation to queries or keys.
///
/// # Shapes
/// - `x`: `[batch, heads, seq, head_dim]`
/// - `cos`, `sin`: `[batch, 1, seq, head_dim]` or `[1, 1, seq, head_dim]`
pub fn apply_rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [_, _, _, dim] = x.dims();
    let x1 = x.clone().narrow(3, 0, dim / 2);
    let x2 = x.clone().narrow(3, dim / 2, dim / 2);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceSpec;

    fn rope() -> Rope {
        let config = ModelConfig::from_json_str(
            r#"{"model_type": "llama", "vocab_size": 16, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "max_position_embeddings": 4096}"#,
        )
        .unwrap();
        Rope::new(&config)
    }

    /// `cos` and `sin` of every row's slots, computed directly in f64.
    fn direct(rope: &Rope, left_pad: &[usize], start: usize, new: usize) -> (Vec<f32>, Vec<f32>) {
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for &pad in left_pad {
            for slot in start..start + new {
                let p = Rope::position(slot, pad) as f64;
                for _ in 0..2 {
                    for f in &rope.inv_freq {
                        cos.push((p * f).cos() as f32);
                        sin.push((p * f).sin() as f32);
                    }
                }
            }
        }
        (cos, sin)
    }

    /// The tables kept on the device give each slot its position's rotation, for padded rows
    /// (gathered) and unpadded ones (sliced, shared by the rows), after growing, and on the
    /// training device beside the plain one.
    #[test]
    fn tables_give_every_slot_its_positions_rotation() {
        let rope = rope();
        let plain = DeviceSpec::Cpu.device().unwrap();
        let train = DeviceSpec::Cpu.train_device().unwrap();
        let cases: [(&[usize], usize, usize); 5] = [
            (&[0, 0], 0, 7),
            (&[2, 0, 5], 0, 9),
            (&[0, 0], 9, 1),
            (&[3, 1], 300, 2),
            (&[0], 1000, 40),
        ];
        for device in [&plain, &train] {
            for (pad, start, new) in cases {
                let (cos, sin) = rope.tables(pad, start, new, device);
                let rows = if pad.iter().all(|&p| p == 0) {
                    1
                } else {
                    pad.len()
                };
                assert_eq!(cos.dims(), [rows, 1, new, 8]);
                let (want_cos, want_sin) = direct(&rope, &pad[..rows], start, new);
                let got = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
                assert_eq!(got(cos), want_cos, "cos of {pad:?} from {start}");
                assert_eq!(got(sin), want_sin, "sin of {pad:?} from {start}");
            }
        }
        let kept = rope.tables.lock().unwrap();
        assert_eq!(kept.len(), 2, "one set of tables per device");
        assert!(
            kept.iter().all(|t| t.len == 2048),
            "grown by powers of two to cover 1040"
        );
    }
}
