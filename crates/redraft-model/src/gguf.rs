//! Models stored in GGUF files (llama.cpp's format), read as transformers reads them
//! (`from_pretrained(..., gguf_file=...)`): the config from the file's metadata, every tensor
//! renamed to transformers' name and dequantized to f32, and llama's query/key rows put back in
//! transformers' order (llama.cpp's converter interleaves the two RoPE halves of each head).
//!
//! Architectures llama and qwen2; anything else, and any option redraft does not compute (Llama 3
//! `rope_freqs`, partial rotary), is refused by name before a tensor is read.

use std::collections::HashSet;
use std::path::Path;

use burn::tensor::Device;
use redraft_gguf::GgufFile;
use serde_json::{Map, Value, json};

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::transformer::CausalLm;
use crate::weights::{Init, WeightSource};

/// Whether `path` names a GGUF file (by its extension).
pub fn is_gguf(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

impl ModelConfig {
    /// The config of a model directory (its `config.json`) or of a `.gguf` file.
    pub fn load(path: &Path) -> Result<Self> {
        if is_gguf(path) {
            Self::from_gguf(&GgufFile::open(path)?)
        } else {
            Self::from_file(&path.join("config.json"))
        }
    }

    /// The config of the model in a GGUF file, from its metadata (as transformers maps it).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for an architecture other than llama and qwen2 or an option redraft
    /// does not compute; [`Error::Gguf`] for missing or mistyped metadata; the usual config
    /// validation errors.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let meta = file.metadata();
        let arch = meta.str("general.architecture")?;
        let architecture = match arch {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => {
                return Err(Error::Unsupported(format!(
                    "GGUF architecture `{other}` in {} (supported: llama, qwen2)",
                    file.path().display()
                )));
            }
        };
        if file.tensor_info("rope_freqs.weight").is_some() {
            return Err(Error::Unsupported(
                "GGUF tensor `rope_freqs.weight` (Llama 3 RoPE scaling stored as frequencies)"
                    .into(),
            ));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let embedding = file
            .tensor_info("token_embd.weight")
            .ok_or_else(|| redraft_gguf::Error::MissingTensor("token_embd.weight".into()))?;
        let hidden = meta.uint(&key("embedding_length"))?;
        let heads = meta.uint(&key("attention.head_count"))?;
        let mut hf = Map::new();
        hf.insert("model_type".into(), arch.into());
        hf.insert("vocab_size".into(), embedding.shape[0].into());
        hf.insert("hidden_size".into(), hidden.into());
        hf.insert(
            "intermediate_size".into(),
            meta.uint(&key("feed_forward_length"))?.into(),
        );
        hf.insert(
            "num_hidden_layers".into(),
            meta.uint(&key("block_count"))?.into(),
        );
        hf.insert("num_attention_heads".into(), heads.into());
        let kv_heads = match meta.get(&key("attention.head_count_kv")) {
            Some(_) => meta.uint(&key("attention.head_count_kv"))?,
            None => heads,
        };
        hf.insert("num_key_value_heads".into(), kv_heads.into());
        let head_dim = match meta.get(&key("attention.key_length")) {
            Some(_) => meta.uint(&key("attention.key_length"))?,
            None => hidden / heads.max(1),
        };
        hf.insert("head_dim".into(), head_dim.into());
        if meta.get(&key("rope.dimension_count")).is_some()
            && meta.uint(&key("rope.dimension_count"))? != head_dim
        {
            return Err(Error::Unsupported(format!(
                "GGUF `{}` = {} differs from the head size {head_dim} (partial rotary)",
                key("rope.dimension_count"),
                meta.uint(&key("rope.dimension_count"))?
            )));
        }
        hf.insert(
            "rms_norm_eps".into(),
            meta.float(&key("attention.layer_norm_rms_epsilon"))?.into(),
        );
        if meta.get(&key("rope.freq_base")).is_some() {
            hf.insert(
                "rope_theta".into(),
                meta.float(&key("rope.freq_base"))?.into(),
            );
        }
        match meta
            .get(&key("rope.scaling.type"))
            .map(|_| meta.str(&key("rope.scaling.type")))
        {
            None => {}
            Some(Ok("none")) => {}
            Some(Ok("linear")) => {
                let factor = meta.float(&key("rope.scaling.factor"))?;
                hf.insert(
                    "rope_scaling".into(),
                    json!({"rope_type": "linear", "factor": factor}),
                );
            }
            Some(Ok(other)) => {
                return Err(Error::Unsupported(format!(
                    "GGUF `{}` = `{other}`",
                    key("rope.scaling.type")
                )));
            }
            Some(Err(e)) => return Err(e.into()),
        }
        hf.insert(
            "max_position_embeddings".into(),
            meta.uint(&key("context_length"))?.into(),
        );
        hf.insert(
            "tie_word_embeddings".into(),
            file.tensor_info("output.weight").is_none().into(),
        );
        for (gguf_key, hf_key) in [
            ("tokenizer.ggml.bos_token_id", "bos_token_id"),
            ("tokenizer.ggml.eos_token_id", "eos_token_id"),
            ("tokenizer.ggml.padding_token_id", "pad_token_id"),
        ] {
            if meta.get(gguf_key).is_some() {
                hf.insert(hf_key.into(), meta.uint(gguf_key)?.into());
            }
        }
        let config = Self::from_hf_json(Value::Object(hf))?;
        debug_assert_eq!(config.architecture, architecture);
        Ok(config)
    }
}

/// llama.cpp's name of the tensor transformers calls `name`.
fn gguf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(fixed) = fixed {
        return Some(fixed.into());
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let (module, kind) = part.rsplit_once('.')?;
    let short = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{kind}"))
}

/// Undoes llama.cpp's query/key permutation: in the file, row `(h, i, j)` of each head holds
/// transformers' row `(h, j, i)` (`j` the RoPE half, `i < head_dim / 2`). `values` are rows of
/// `row_len` (1 for a bias).
fn unpermute_rows(values: &[f32], heads: usize, row_len: usize) -> Vec<f32> {
    let rows = values.len() / row_len;
    let half = rows / heads / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let to = (h * 2 + j) * half + i;
                let from = h * 2 * half + i * 2 + j;
                out[to * row_len..(to + 1) * row_len]
                    .copy_from_slice(&values[from * row_len..(from + 1) * row_len]);
            }
        }
    }
    out
}

/// The tensors of a GGUF file under transformers' names and layouts.
#[derive(Debug)]
pub struct GgufWeights {
    file: GgufFile,
    config: ModelConfig,
    used: HashSet<String>,
}

impl GgufWeights {
    /// Weights of `file` for a model of `config` (see [`ModelConfig::from_gguf`]).
    pub fn new(file: GgufFile, config: ModelConfig) -> Self {
        Self {
            file,
            config,
            used: HashSet::new(),
        }
    }
}

impl WeightSource for GgufWeights {
    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Vec<f32>> {
        let missing = || Error::MissingTensor {
            name: name.into(),
            dir: self.file.path().into(),
        };
        let gguf = gguf_name(name).ok_or_else(missing)?;
        let info = self.file.tensor_info(&gguf).ok_or_else(missing)?;
        if info.shape != shape {
            return Err(Error::ShapeMismatch {
                name: format!("{name} (GGUF `{gguf}`)"),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        let values = self.file.tensor_f32(&gguf)?;
        self.used.insert(gguf);
        let row_len = shape.get(1).copied().unwrap_or(1);
        let heads = if name.ends_with("q_proj.weight") || name.ends_with("q_proj.bias") {
            Some(self.config.num_heads)
        } else if name.ends_with("k_proj.weight") || name.ends_with("k_proj.bias") {
            Some(self.config.num_kv_heads)
        } else {
            None
        };
        Ok(match heads {
            Some(heads) if self.config.architecture == Architecture::Llama => {
                unpermute_rows(&values, heads, row_len)
            }
            _ => values,
        })
    }

    fn finish(&mut self) -> Result<()> {
        let unused: Vec<&str> = self
            .file
            .tensors()
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| !self.used.contains(*n))
            .collect();
        if !unused.is_empty() {
            tracing::warn!(file = %self.file.path().display(), ?unused, "GGUF tensors not used by the model");
        }
        Ok(())
    }
}

impl CausalLm {
    /// Loads the model in GGUF file `path` onto `device`, dequantized to f32.
    pub fn from_gguf(path: &Path, device: &Device) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let config = ModelConfig::from_gguf(&file)?;
        let mut weights = GgufWeights::new(file, config.clone());
        Self::build(&config, &mut weights, device)
    }

    /// Loads a model directory (`config.json` + safetensors) or a `.gguf` file.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        if is_gguf(path) {
            Self::from_gguf(path, device)
        } else {
            Self::from_pretrained(path, device)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_llama_cpp() {
        assert_eq!(
            gguf_name("model.layers.3.self_attn.o_proj.weight").as_deref(),
            Some("blk.3.attn_output.weight")
        );
        assert_eq!(
            gguf_name("model.layers.0.self_attn.q_proj.bias").as_deref(),
            Some("blk.0.attn_q.bias")
        );
        assert_eq!(
            gguf_name("lm_head.weight").as_deref(),
            Some("output.weight")
        );
        assert_eq!(gguf_name("model.layers.0.unknown.weight"), None);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: reshape(heads, 2, half, ...).swapaxes(1, 2): file row (h, i, j) = hf row (h, j, i).
        let (heads, half, row_len) = (2, 3, 2);
        let hf: Vec<f32> = (0..heads * 2 * half * row_len).map(|v| v as f32).collect();
        let mut file = vec![0.0; hf.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..half {
                    let from = (h * 2 + j) * half + i;
                    let to = h * 2 * half + i * 2 + j;
                    file[to * row_len..(to + 1) * row_len]
                        .copy_from_slice(&hf[from * row_len..(from + 1) * row_len]);
                }
            }
        }
        assert_eq!(unpermute_rows(&file, heads, row_len), hf);
    }
}
