//! The model configuration, read from and written to Hugging Face `config.json`.
//!
//! Two layouts of the RoPE settings are accepted: the legacy one (`rope_theta` and
//! `rope_scaling` at the top level, as most published checkpoints have) and transformers 5's
//! `rope_parameters`. Unknown keys are ignored, as transformers does; options that would change
//! the computation and that redraft does not implement are rejected by name.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The decoder families redraft implements. They share one code path; Qwen2 adds q/k/v biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// `LlamaForCausalLM` (also Llama 2/3, TinyLlama, SmolLM and other Llama-layout models).
    Llama,
    /// `Qwen2ForCausalLM` (Qwen2, Qwen2.5).
    Qwen2,
}

impl Architecture {
    /// The `model_type` transformers writes for this family.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
        }
    }

    /// The class name transformers writes in `architectures`.
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
        }
    }
}

/// How RoPE frequencies are rescaled for long contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Positions divided by `factor` (transformers' "linear").
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3's band-wise frequency scaling.
    Llama3 {
        /// How much the low frequencies are divided by.
        factor: f64,
        /// Wavelengths above `original / low_freq_factor` are fully scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
    },
}

/// Everything that determines the computation of a decoder, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The model family.
    pub architecture: Architecture,
    /// Number of token ids.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE frequency scaling.
    pub rope_scaling: RopeScaling,
    /// Longest sequence the model accepts.
    pub max_position_embeddings: usize,
    /// Whether the output head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Biases on the q, k and v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection.
    pub o_bias: bool,
    /// Biases on the MLP projections.
    pub mlp_bias: bool,
    /// Standard deviation of the normal initialisation of weight matrices.
    pub initializer_range: f64,
    /// Beginning-of-sequence token, if the model has one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens (transformers allows one or a list).
    pub eos_token_ids: Vec<u32>,
    /// Padding token, if any.
    pub pad_token_id: Option<u32>,
}

/// The subset of transformers' config.json that redraft reads; everything optional so that
/// missing keys get transformers' defaults and errors name the key.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    hidden_act: Option<String>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    initializer_range: Option<f64>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
    pad_token_id: Option<Value>,
    use_sliding_window: Option<bool>,
    pretraining_tp: Option<usize>,
}

fn required(value: Option<usize>, field: &'static str) -> Result<usize> {
    match value {
        Some(0) => Err(Error::InvalidConfig {
            field,
            reason: "must be positive".into(),
        }),
        Some(v) => Ok(v),
        None => Err(Error::InvalidConfig {
            field,
            reason: "missing".into(),
        }),
    }
}

fn token_ids(value: Option<Value>, field: &'static str) -> Result<Vec<u32>> {
    let bad = || Error::InvalidConfig {
        field,
        reason: "expected a token id, a list of ids or null".into(),
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Number(n)) => Ok(vec![
            n.as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(bad)?,
        ]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(bad)
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

fn f64_field(map: &serde_json::Map<String, Value>, key: &'static str) -> Result<f64> {
    map.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| Error::InvalidConfig {
            field: "rope_scaling",
            reason: format!("`{key}` missing or not a number"),
        })
}

fn parse_rope(
    theta: Option<f64>,
    scaling: Option<Value>,
    parameters: Option<Value>,
) -> Result<(f64, RopeScaling)> {
    // transformers 5 keeps theta inside rope_parameters; older files keep it at the top level.
    let spec = match (parameters, scaling) {
        (Some(Value::Object(p)), _) => Some(p),
        (_, Some(Value::Object(s))) => Some(s),
        (Some(Value::Null) | None, Some(Value::Null) | None) => None,
        _ => {
            return Err(Error::InvalidConfig {
                field: "rope_scaling",
                reason: "expected an object or null".into(),
            });
        }
    };
    let theta = spec
        .as_ref()
        .and_then(|p| p.get("rope_theta").and_then(Value::as_f64))
        .or(theta)
        .unwrap_or(10_000.0);
    if theta <= 0.0 {
        return Err(Error::InvalidConfig {
            field: "rope_theta",
            reason: format!("must be positive, got {theta}"),
        });
    }
    let Some(spec) = spec else {
        return Ok((theta, RopeScaling::Default));
    };
    let kind = spec
        .get("rope_type")
        .or_else(|| spec.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let scaling = match kind {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear {
            factor: f64_field(&spec, "factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: f64_field(&spec, "factor")?,
            low_freq_factor: f64_field(&spec, "low_freq_factor")?,
            high_freq_factor: f64_field(&spec, "high_freq_factor")?,
            original_max_position_embeddings: f64_field(&spec, "original_max_position_embeddings")?
                as usize,
        },
        other => {
            return Err(Error::Unsupported(format!(
                "rope scaling type `{other}` (supported: default, linear, llama3)"
            )));
        }
    };
    Ok((theta, scaling))
}

impl ModelConfig {
    /// Reads and validates a Hugging Face `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        let raw: HfConfig = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.into(),
            source,
        })?;
        Self::from_hf(raw)
    }

    /// Parses and validates the text of a Hugging Face `config.json`.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let raw: HfConfig = serde_json::from_str(text).map_err(|source| Error::Json {
            path: "config.json".into(),
            source,
        })?;
        Self::from_hf(raw)
    }

    /// Validates a `config.json` given as a JSON value.
    pub fn from_hf_json(value: Value) -> Result<Self> {
        let raw: HfConfig = serde_json::from_value(value).map_err(|source| Error::Json {
            path: "config.json".into(),
            source,
        })?;
        Self::from_hf(raw)
    }

    fn from_hf(raw: HfConfig) -> Result<Self> {
        let architecture = match raw.model_type.as_deref() {
            Some("llama") => Architecture::Llama,
            Some("qwen2") => Architecture::Qwen2,
            Some(other) => {
                return Err(Error::Unsupported(format!(
                    "model_type `{other}` (supported: llama, qwen2)"
                )));
            }
            None => match raw
                .architectures
                .as_deref()
                .and_then(|a| a.first())
                .map(String::as_str)
            {
                Some("LlamaForCausalLM") => Architecture::Llama,
                Some("Qwen2ForCausalLM") => Architecture::Qwen2,
                Some(other) => return Err(Error::Unsupported(format!("architecture `{other}`"))),
                None => {
                    return Err(Error::InvalidConfig {
                        field: "model_type",
                        reason: "missing (and no `architectures`)".into(),
                    });
                }
            },
        };
        if let Some(act) = raw.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(Error::Unsupported(format!(
                "hidden_act `{act}` (only `silu` is supported)"
            )));
        }
        if raw.use_sliding_window == Some(true) {
            return Err(Error::Unsupported(
                "use_sliding_window = true (sliding-window attention)".into(),
            ));
        }
        if raw.pretraining_tp.is_some_and(|tp| tp != 1) {
            return Err(Error::Unsupported("pretraining_tp other than 1".into()));
        }
        let hidden_size = required(raw.hidden_size, "hidden_size")?;
        let num_heads = required(raw.num_attention_heads, "num_attention_heads")?;
        let num_kv_heads = required(
            raw.num_key_value_heads.or(Some(num_heads)),
            "num_key_value_heads",
        )?;
        if num_heads % num_kv_heads != 0 {
            return Err(Error::InvalidConfig {
                field: "num_key_value_heads",
                reason: format!("{num_kv_heads} does not divide num_attention_heads = {num_heads}"),
            });
        }
        let head_dim = match raw.head_dim {
            Some(d) => required(Some(d), "head_dim")?,
            None if hidden_size % num_heads == 0 => hidden_size / num_heads,
            None => {
                return Err(Error::InvalidConfig {
                    field: "num_attention_heads",
                    reason: format!("{num_heads} does not divide hidden_size = {hidden_size}"),
                });
            }
        };
        if head_dim % 2 != 0 {
            return Err(Error::InvalidConfig {
                field: "head_dim",
                reason: format!("RoPE needs an even head_dim, got {head_dim}"),
            });
        }
        let (rope_theta, rope_scaling) =
            parse_rope(raw.rope_theta, raw.rope_scaling, raw.rope_parameters)?;
        let attention_bias = raw.attention_bias.unwrap_or(false);
        let config = Self {
            architecture,
            vocab_size: required(raw.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: required(raw.intermediate_size, "intermediate_size")?,
            num_layers: required(raw.num_hidden_layers, "num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: required(
                raw.max_position_embeddings.or(Some(2048)),
                "max_position_embeddings",
            )?,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            qkv_bias: architecture == Architecture::Qwen2 || attention_bias,
            o_bias: architecture == Architecture::Llama && attention_bias,
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            initializer_range: raw.initializer_range.unwrap_or(0.02),
            bos_token_id: token_ids(raw.bos_token_id, "bos_token_id")?
                .first()
                .copied(),
            eos_token_ids: token_ids(raw.eos_token_id, "eos_token_id")?,
            pad_token_id: token_ids(raw.pad_token_id, "pad_token_id")?
                .first()
                .copied(),
        };
        if config.architecture == Architecture::Qwen2 && (config.o_bias || config.mlp_bias) {
            return Err(Error::Unsupported("Qwen2 with o_proj or MLP biases".into()));
        }
        config.check_ranges()?;
        Ok(config)
    }

    /// Fails on values a model cannot run with, naming the key: a non-positive or non-finite
    /// `rms_norm_eps` (NaN outputs), or a special token id outside the
    /// vocabulary (an `eos_token_id` that can never be sampled never stops generation).
    fn check_ranges(&self) -> Result<()> {
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(Error::InvalidConfig {
                field: "rms_norm_eps",
                reason: format!("must be a positive number, got {}", self.rms_norm_eps),
            });
        }
        let ids = self
            .bos_token_id
            .map(|id| ("bos_token_id", id))
            .into_iter()
            .chain(self.eos_token_ids.iter().map(|&id| ("eos_token_id", id)))
            .chain(self.pad_token_id.map(|id| ("pad_token_id", id)));
        for (field, id) in ids {
            if id as usize >= self.vocab_size {
                return Err(Error::InvalidConfig {
                    field,
                    reason: format!(
                        "{id} is outside the vocabulary (vocab_size {})",
                        self.vocab_size
                    ),
                });
            }
        }
        Ok(())
    }

    /// The config.json transformers would write for this model (legacy RoPE layout, which
    /// transformers 4 and 5 both read).
    pub fn to_hf_json(&self) -> Value {
        let rope_scaling = match &self.rope_scaling {
            RopeScaling::Default => Value::Null,
            RopeScaling::Linear { factor } => json!({"rope_type": "linear", "factor": factor}),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                json!({
                    "rope_type": "llama3",
                    "factor": factor,
                    "low_freq_factor": low_freq_factor,
                    "high_freq_factor": high_freq_factor,
                    "original_max_position_embeddings": original_max_position_embeddings,
                })
            }
        };
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        let mut v = json!({
            "architectures": [self.architecture.class_name()],
            "model_type": self.architecture.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "initializer_range": self.initializer_range,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": self.pad_token_id,
            "torch_dtype": "float32",
            "use_cache": true,
        });
        if self.architecture == Architecture::Llama {
            v["attention_bias"] = json!(self.qkv_bias);
            v["mlp_bias"] = json!(self.mlp_bias);
        } else {
            v["use_sliding_window"] = json!(false);
        }
        v
    }

    /// Number of trainable parameters (saturating at `usize::MAX`; see
    /// [`parameter_count`](Self::parameter_count)).
    pub fn num_parameters(&self) -> usize {
        usize::try_from(self.parameter_count()).unwrap_or(usize::MAX)
    }

    /// Number of trainable parameters, computed without overflow for any config.json
    /// (a `hidden_size` of 10^9 has about 10^19 of them).
    pub fn parameter_count(&self) -> u128 {
        let n = |x: usize| x as u128;
        let (d, f, v) = (
            n(self.hidden_size),
            n(self.intermediate_size),
            n(self.vocab_size),
        );
        let q = n(self.num_heads) * n(self.head_dim);
        let kv = n(self.num_kv_heads) * n(self.head_dim);
        let attn = d * q
            + 2 * d * kv
            + q * d
            + if self.qkv_bias { q + 2 * kv } else { 0 }
            + if self.o_bias { d } else { 0 };
        let mlp = 3 * d * f + if self.mlp_bias { 2 * f + d } else { 0 };
        let layer = attn + mlp + 2 * d;
        let head = if self.tie_word_embeddings { 0 } else { v * d };
        v * d + n(self.num_layers) * layer + d + head
    }

    /// The memory `workload` needs with this model: the one estimate that
    /// `init-model`, `train` and the model commands check before allocating
    /// ([`MemoryEstimate::check`]). It is a lower bound (what must be held at once, never
    /// temporary buffers), so a run it refuses could not have run.
    pub fn memory_estimate(&self, workload: &Workload) -> MemoryEstimate {
        // Saturating products: absurd sizes must give a huge estimate, never an overflow.
        let mul = |xs: &[u128]| xs.iter().fold(1u128, |a, &x| a.saturating_mul(x));
        let n = |x: usize| x as u128;
        const F32: u128 = 4;
        let params = self.parameter_count();
        let adapters = workload.adapter_parameters;
        let base = n(workload.base_dtype.size());
        let weights = mul(&[params, base])
            .saturating_add(mul(&[params, F32, n(workload.copies)]))
            .saturating_add(mul(&[adapters, F32]));
        // Gradients and AdamW's two moments, of what is trained.
        let trained = if adapters > 0 { adapters } else { params };
        let optimizer = if workload.train_rows > 0 {
            mul(&[3, trained, F32])
        } else {
            0
        };
        let tokens = n(workload.tokens);
        // Decoding: the KV cache of every row, and one row of logits each.
        let kv = mul(&[
            n(self.num_layers),
            2,
            n(self.num_kv_heads),
            n(self.head_dim),
        ]);
        let per_row = mul(&[tokens, kv]).saturating_add(n(self.vocab_size));
        let decode = mul(&[n(workload.decode_rows), per_row, F32]);
        // A training pass keeps at least the residual stream entering every layer (all a
        // checkpointed pass keeps); the head runs in chunks, so no logits are kept.
        let per_token = mul(&[n(self.num_layers) + 1, n(self.hidden_size)]);
        let train = mul(&[n(workload.train_rows), tokens, per_token, F32]);
        MemoryEstimate {
            parameters: params,
            weights,
            optimizer,
            batch: decode.max(train),
        }
    }
}

/// What a model is used for, sized by [`ModelConfig::memory_estimate`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Workload {
    /// Frozen copies of the weights held besides the model (a reference policy).
    pub copies: usize,
    /// Rows of the largest training batch (0: no training, so no gradients or optimiser state).
    pub train_rows: usize,
    /// Rows decoded at once with the KV cache (a rollout or an evaluation batch).
    pub decode_rows: usize,
    /// Tokens per row (prompt and completion).
    pub tokens: usize,
    /// Parameters of the LoRA adapters trained in place of the weights
    /// ([`LoraConfig::parameter_count`](crate::LoraConfig::parameter_count)); 0: every weight
    /// is trained.
    pub adapter_parameters: u128,
    /// How the model's own weights are stored (copies are f32).
    pub base_dtype: crate::BaseDType,
}

/// Bytes a [`Workload`] needs, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Parameters of the model.
    pub parameters: u128,
    /// The weights (in the base's dtype; copies and adapters in f32).
    pub weights: u128,
    /// Gradients and AdamW state.
    pub optimizer: u128,
    /// The larger of a decode batch (KV cache, a row of logits each) and a training batch
    /// (the layers' inputs).
    pub batch: u128,
}

impl MemoryEstimate {
    /// All parts together.
    pub fn total(&self) -> u128 {
        self.weights
            .saturating_add(self.optimizer)
            .saturating_add(self.batch)
    }

    /// Refuses an estimate above `limit`, naming `what` was sized.
    ///
    /// # Errors
    /// [`Error::MemoryLimit`] with the estimate, its parts and the limit.
    pub fn check(&self, what: &str, limit: &MemoryLimit) -> Result<()> {
        if self.total() <= u128::from(limit.bytes) {
            return Ok(());
        }
        Err(Error::MemoryLimit {
            what: what.to_owned(),
            estimate: self.to_string(),
            limit: limit.to_string(),
        })
    }
}

impl std::fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} parameters: weights {}",
            format_bytes(self.total()),
            self.parameters,
            format_bytes(self.weights)
        )?;
        if self.optimizer > 0 {
            write!(
                f,
                ", gradients and optimiser state {}",
                format_bytes(self.optimizer)
            )?;
        }
        if self.batch > 0 {
            write!(f, ", batch {}", format_bytes(self.batch))?;
        }
        f.write_str(")")
    }
}

/// The most memory a command may use, and where that figure comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    /// Bytes.
    pub bytes: u64,
    /// Its origin, as printed after the figure ("limit set by --max-memory").
    pub source: String,
}

impl MemoryLimit {
    /// The memory the machine has free: `MemAvailable` of /proc/meminfo on Linux; `None`
    /// elsewhere or when it cannot be read (no limit then).
    pub fn available() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(Self {
            bytes: kib.saturating_mul(1024),
            source: "memory this machine has available (MemAvailable in /proc/meminfo)".into(),
        })
    }

    /// The limit to check against: `given` (a user's limit, with its origin) capped by what
    /// the machine has available when `machine` is true (the work runs in this machine's
    /// memory, as on the CPU).
    pub fn resolve(given: Option<Self>, machine: bool) -> Option<Self> {
        let available = machine.then(Self::available).flatten();
        match (given, available) {
            (Some(g), Some(a)) if a.bytes < g.bytes => Some(a),
            (Some(g), _) => Some(g),
            (None, a) => a,
        }
    }
}

impl std::fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            format_bytes(u128::from(self.bytes)),
            self.source
        )
    }
}

/// A byte count as a person reads it: `512 B`, `3.1 MiB`, `1.2 TiB`.
pub fn format_bytes(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses a byte count: a number with an optional unit, `B`, `KB`/`MB`/`GB`/`TB` (powers of
/// 1000) or `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024), e.g. `2GiB`, `512 MB`, `1e9`.
///
/// # Errors
/// [`Error::InvalidInput`] naming the text.
pub fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => f64::NAN,
    };
    let value = number.trim().parse::<f64>().map(|v| v * scale);
    match value {
        Ok(v) if v.is_finite() && v >= 1.0 && v < u64::MAX as f64 => Ok(v as u64),
        _ => Err(Error::InvalidInput(format!(
            "`{text}` is not a memory size (e.g. 2GiB, 512MB, 1e9)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA: &str = r#"{"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":40,
        "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,
        "rope_theta":500000.0,"eos_token_id":[3,4],"bos_token_id":1}"#;

    #[test]
    fn memory_sizes_parse_and_print() {
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("512 MB").unwrap(), 512_000_000);
        assert_eq!(parse_bytes("1e9").unwrap(), 1_000_000_000);
        for bad in ["", "lots", "-1GiB", "2 parsecs", "0"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn absurd_sizes_give_a_huge_estimate_not_an_overflow() {
        let mut c = ModelConfig::from_json_str(LLAMA).unwrap();
        let small = c.memory_estimate(&Workload::default());
        assert_eq!(small.weights, 4 * c.parameter_count());
        assert_eq!(small.total(), small.weights);
        c.hidden_size = 1_000_000_000;
        c.num_layers = 1_000_000;
        let huge = c.memory_estimate(&Workload {
            copies: 1,
            train_rows: usize::MAX,
            decode_rows: usize::MAX,
            tokens: usize::MAX,
            adapter_parameters: u128::MAX,
            base_dtype: crate::BaseDType::F32,
        });
        assert!(huge.total() > 1 << 60, "{huge}");
        let limit = MemoryLimit {
            bytes: 1 << 30,
            source: "test limit".into(),
        };
        let e = huge.check("the model", &limit).unwrap_err().to_string();
        assert!(e.contains("estimated") && e.contains("test limit"), "{e}");
        // A batch costs memory: more rows, a larger estimate.
        let c = ModelConfig::from_json_str(LLAMA).unwrap();
        let rows = |train_rows| {
            c.memory_estimate(&Workload {
                train_rows,
                tokens: 64,
                ..Workload::default()
            })
            .total()
        };
        assert!(rows(100) > rows(1));
    }

    #[test]
    fn reads_legacy_layout_and_defaults() {
        let c = ModelConfig::from_json_str(LLAMA).unwrap();
        assert_eq!(c.architecture, Architecture::Llama);
        assert_eq!(c.head_dim, 4);
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.rope_scaling, RopeScaling::Default);
        assert_eq!(c.eos_token_ids, vec![3, 4]);
        assert!(!c.qkv_bias && !c.tie_word_embeddings);
    }

    #[test]
    fn round_trips_through_hf_json() {
        let c = ModelConfig::from_json_str(LLAMA).unwrap();
        let back = ModelConfig::from_json_str(&c.to_hf_json().to_string()).unwrap();
        assert_eq!(c, back);
    }

    #[test]
    fn reads_rope_parameters_layout() {
        let text = LLAMA.replace(
            r#""rope_theta":500000.0"#,
            r#""rope_parameters":{"rope_type":"llama3","rope_theta":5e5,"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":16}"#,
        );
        let c = ModelConfig::from_json_str(&text).unwrap();
        assert!(matches!(
            c.rope_scaling,
            RopeScaling::Llama3 {
                original_max_position_embeddings: 16,
                ..
            }
        ));
    }

    #[test]
    fn rejects_out_of_range_values_by_key() {
        for (from, to, key) in [
            (
                r#""bos_token_id":1"#,
                r#""bos_token_id":1,"rms_norm_eps":-1e-6"#,
                "rms_norm_eps",
            ),
            (
                r#""bos_token_id":1"#,
                r#""bos_token_id":1,"rms_norm_eps":0"#,
                "rms_norm_eps",
            ),
            (
                r#""rope_theta":500000.0"#,
                r#""rope_theta":-1.0"#,
                "rope_theta",
            ),
            (
                r#""eos_token_id":[3,4]"#,
                r#""eos_token_id":[3,32]"#,
                "eos_token_id",
            ),
            (
                r#""bos_token_id":1"#,
                r#""bos_token_id":99"#,
                "bos_token_id",
            ),
            (
                r#""bos_token_id":1"#,
                r#""bos_token_id":1,"pad_token_id":32"#,
                "pad_token_id",
            ),
        ] {
            let text = LLAMA.replace(from, to);
            assert_ne!(text, LLAMA);
            let err = ModelConfig::from_json_str(&text).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{to}: {err}");
        }
    }

    #[test]
    fn rejects_unsupported_options_by_name() {
        let gelu = LLAMA.replace(r#""bos_token_id":1"#, r#""hidden_act":"gelu""#);
        let err = ModelConfig::from_json_str(&gelu).unwrap_err().to_string();
        assert!(err.contains("hidden_act `gelu`"), "{err}");
        let mistral = LLAMA.replace("llama", "gpt2");
        assert!(
            ModelConfig::from_json_str(&mistral)
                .unwrap_err()
                .to_string()
                .contains("model_type `gpt2`")
        );
        let bad_heads = LLAMA.replace(r#""num_key_value_heads":2"#, r#""num_key_value_heads":3"#);
        assert!(
            ModelConfig::from_json_str(&bad_heads)
                .unwrap_err()
                .to_string()
                .contains("num_key_value_heads")
        );
        let yarn = LLAMA.replace(
            r#""rope_theta":500000.0"#,
            r#""rope_scaling":{"type":"yarn","factor":2.0}"#,
        );
        assert!(
            ModelConfig::from_json_str(&yarn)
                .unwrap_err()
                .to_string()
                .contains("`yarn`")
        );
        let missing = LLAMA.replace(r#""vocab_size":32,"#, "");
        assert!(
            ModelConfig::from_json_str(&missing)
                .unwrap_err()
                .to_string()
                .contains("`vocab_size`: missing")
        );
    }

    #[test]
    fn counts_parameters_like_transformers() {
        // LlamaForCausalLM(vocab 32, d 16, F 40, L 2, H 4, KV 2) has 4_416 parameters.
        let c = ModelConfig::from_json_str(LLAMA).unwrap();
        let (d, f, v, kv) = (16, 40, 32, 8);
        let layer = d * d * 2 + 2 * d * kv + 3 * d * f + 2 * d;
        assert_eq!(c.num_parameters(), 2 * v * d + 2 * layer + d);
    }
}
