//! GGML tensor types and their dequantization to `f32`, block by block, as llama.cpp's
//! `dequantize_row_*` functions compute them.

use half::{bf16, f16};

/// The tensor types this crate reads (GGML type ids in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    /// 32-bit float (0).
    F32,
    /// 16-bit IEEE float (1).
    F16,
    /// 4-bit, blocks of 32 with one f16 scale (2).
    Q4_0,
    /// 4-bit, blocks of 32 with an f16 scale and minimum (3).
    Q4_1,
    /// 8-bit, blocks of 32 with one f16 scale (8).
    Q8_0,
    /// 4-bit k-quant: super-blocks of 256 with 6-bit scales and minimums (12).
    Q4K,
    /// 5-bit k-quant (13).
    Q5K,
    /// 6-bit k-quant (14).
    Q6K,
    /// bfloat16 (30).
    Bf16,
}

/// The supported types, as listed in errors.
pub(crate) const SUPPORTED: &str = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K";

impl TensorType {
    /// The type of GGML id `id`, `None` for an unsupported one.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::Bf16,
            _ => return None,
        })
    }

    /// GGML's name of type id `id` (also for the ones not supported), for messages.
    pub fn name_of_id(id: u32) -> String {
        const NAMES: [&str; 31] = [
            "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
            "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
            "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
            "BF16",
        ];
        NAMES
            .get(id as usize)
            .map_or_else(|| format!("#{id}"), |name| (*name).to_string())
    }

    /// GGML's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q8_0 => "Q8_0",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::Bf16 => "BF16",
        }
    }

    /// Elements per block.
    pub fn block_elements(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::Bf16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q8_0 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Bytes taken by `elements` values, `None` when `elements` is not a whole number of blocks
    /// (or the size overflows).
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let block = self.block_elements() as u64;
        elements.is_multiple_of(block).then_some(())?;
        (elements / block).checked_mul(self.block_bytes() as u64)
    }
}

fn half_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// The 6-bit scale and minimum `j` of a Q4_K/Q5_K super-block (llama.cpp's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        (f32::from(q[j] & 63), f32::from(q[j + 4] & 63))
    } else {
        (
            f32::from((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)),
            f32::from((q[j + 4] >> 4) | ((q[j] >> 6) << 4)),
        )
    }
}

/// Dequantizes `bytes` holding whole blocks of type `ty` into `f32` values appended to `out`.
///
/// # Panics
/// Never: `bytes.len()` must be a multiple of the block size, and a trailing partial block is
/// ignored (callers check sizes with [`TensorType::bytes_for`]).
pub fn dequantize(ty: TensorType, bytes: &[u8], out: &mut Vec<f32>) {
    let blocks = bytes.chunks_exact(ty.block_bytes());
    out.reserve(blocks.len() * ty.block_elements());
    for b in blocks {
        match ty {
            TensorType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            TensorType::F16 => out.push(half_at(b, 0)),
            TensorType::Bf16 => out.push(bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            TensorType::Q8_0 => {
                let d = half_at(b, 0);
                out.extend(b[2..34].iter().map(|&q| f32::from(q as i8) * d));
            }
            TensorType::Q4_0 | TensorType::Q4_1 => {
                let d = half_at(b, 0);
                let (m, offset, qs) = if ty == TensorType::Q4_0 {
                    (0.0, 8.0, &b[2..18])
                } else {
                    (half_at(b, 2), 0.0, &b[4..20])
                };
                out.extend(qs.iter().map(|&q| (f32::from(q & 0xF) - offset) * d + m));
                out.extend(qs.iter().map(|&q| (f32::from(q >> 4) - offset) * d + m));
            }
            TensorType::Q4K | TensorType::Q5K => {
                let (d, dmin) = (half_at(b, 0), half_at(b, 2));
                let scales = &b[4..16];
                let (qh, qs) = if ty == TensorType::Q5K {
                    (Some(&b[16..48]), &b[48..176])
                } else {
                    (None, &b[16..144])
                };
                for (pair, q) in qs.chunks_exact(32).enumerate() {
                    let (sc1, m1) = scale_min_k4(2 * pair, scales);
                    let (sc2, m2) = scale_min_k4(2 * pair + 1, scales);
                    let high = |l: usize, bit: usize| {
                        qh.map_or(0.0, |qh| if qh[l] & (1 << bit) != 0 { 16.0 } else { 0.0 })
                    };
                    out.extend((0..32).map(|l| {
                        d * sc1 * (f32::from(q[l] & 0xF) + high(l, 2 * pair)) - dmin * m1
                    }));
                    out.extend((0..32).map(|l| {
                        d * sc2 * (f32::from(q[l] >> 4) + high(l, 2 * pair + 1)) - dmin * m2
                    }));
                }
            }
            TensorType::Q6K => {
                let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                let d = half_at(b, 208);
                for half in 0..2 {
                    let (ql, qh, sc) = (&ql[64 * half..], &qh[32 * half..], &sc[8 * half..]);
                    let mut y = [0.0f32; 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q = |low: u8, shift: u8| {
                            f32::from((low | (((qh[l] >> shift) & 3) << 4)) as i8 - 32)
                        };
                        let scale = |k: usize| d * f32::from(sc[is + k] as i8);
                        y[l] = scale(0) * q(ql[l] & 0xF, 0);
                        y[l + 32] = scale(2) * q(ql[l + 32] & 0xF, 2);
                        y[l + 64] = scale(4) * q(ql[l] >> 4, 4);
                        y[l + 96] = scale(6) * q(ql[l + 32] >> 4, 6);
                    }
                    out.extend_from_slice(&y);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_is_scale_times_quant() {
        let mut block = vec![0u8; 34];
        block[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        block[2] = 4;
        block[3] = (-6i8) as u8;
        let mut out = Vec::new();
        dequantize(TensorType::Q8_0, &block, &mut out);
        assert_eq!(out.len(), 32);
        assert_eq!(&out[..3], &[2.0, -3.0, 0.0]);
    }

    #[test]
    fn q4_1_puts_low_nibbles_first() {
        let mut block = vec![0u8; 20];
        block[..2].copy_from_slice(&f16::from_f32(2.0).to_le_bytes());
        block[2..4].copy_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        block[4] = 0x31; // low 1, high 3
        let mut out = Vec::new();
        dequantize(TensorType::Q4_1, &block, &mut out);
        assert_eq!((out[0], out[16], out[1]), (1.0, 5.0, -1.0));
    }

    #[test]
    fn sizes_are_whole_blocks() {
        assert_eq!(TensorType::Q4K.bytes_for(512), Some(288));
        assert_eq!(TensorType::Q4K.bytes_for(100), None);
        assert_eq!(TensorType::F16.bytes_for(3), Some(6));
        assert_eq!(TensorType::name_of_id(11), "Q3_K");
        assert_eq!(TensorType::name_of_id(99), "#99");
    }
}
