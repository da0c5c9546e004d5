//! Model directories as transformers writes them: `config.json` plus `model.safetensors` (or
//! shards with `model.safetensors.index.json`).

use std::path::Path;

use burn::tensor::Device;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::transformer::CausalLm;
use crate::weights::{Checkpoint, SaveDType, safetensors_bytes, write_atomic};

impl CausalLm {
    /// Loads `config.json` and the safetensors weights of a model directory onto `device`.
    pub fn from_pretrained(dir: &Path, device: &Device) -> Result<Self> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let mut checkpoint = Checkpoint::open(dir)?;
        Self::build(&config, &mut checkpoint, device)
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (created if needed). Each file is
    /// written atomically; existing shards of an older checkpoint are removed.
    pub fn save_pretrained(&self, dir: &Path, dtype: SaveDType) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.into(),
            source,
        })?;
        let weights = safetensors_bytes(&self.export(), dtype)?;
        write_atomic(&dir.join("model.safetensors"), &weights)?;
        let index = dir.join("model.safetensors.index.json");
        if index.exists() {
            std::fs::remove_file(&index).map_err(|source| Error::Io {
                path: index,
                source,
            })?;
        }
        let mut config = self.config().to_hf_json();
        if dtype == SaveDType::Bf16 {
            config["torch_dtype"] = "bfloat16".into();
        }
        let text = serde_json::to_string_pretty(&config).map_err(|source| Error::Json {
            path: dir.join("config.json"),
            source,
        })?;
        write_atomic(&dir.join("config.json"), text.as_bytes())
    }
}
