//! The float type a frozen base is stored in. Activations, adapters, gradients and optimiser
//! state are always f32; a frozen base may be kept in bf16 or f16 to halve its memory, each
//! weight widened to f32 where it is used (one projection at a time, never the whole model).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, FloatDType, Tensor};

use crate::transformer::CausalLm;

/// The storage type of a model's frozen weights (`model.dtype` in a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseDType {
    /// 32-bit floats.
    #[default]
    F32,
    /// bfloat16: f32's range, 8 bits of mantissa.
    Bf16,
    /// IEEE half precision: 11 bits of mantissa, values beyond ±65 504 overflow.
    F16,
}

impl BaseDType {
    fn float(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::Bf16 => FloatDType::BF16,
            Self::F16 => FloatDType::F16,
        }
    }

    /// Bytes per stored value.
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Bf16 | Self::F16 => 2,
        }
    }
}

impl std::fmt::Display for BaseDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        })
    }
}

/// `t` in f32 (the compute type), converted only when it is stored otherwise.
pub(crate) fn widen<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(FloatDType::F32)
    }
}

impl CausalLm {
    /// The model with every weight matrix that does not require gradients (the frozen base of
    /// a LoRA model: embeddings, projections, head) stored as `dtype`; trainable parameters,
    /// norms and biases keep f32.
    pub fn with_base_dtype(self, dtype: BaseDType) -> Self {
        struct Cast(FloatDType);
        impl ModuleMapper for Cast {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                if D != 2 || param.val().is_require_grad() {
                    return param;
                }
                let dtype = self.0;
                param.map(|t| t.cast(dtype))
            }
        }
        self.map(&mut Cast(dtype.float()))
    }

    /// The storage type of the token embeddings (the base's largest frozen tensor).
    pub fn base_dtype(&self) -> BaseDType {
        match self.embed_tokens.weight.val().dtype() {
            DType::BF16 => BaseDType::Bf16,
            DType::F16 => BaseDType::F16,
            _ => BaseDType::F32,
        }
    }
}
