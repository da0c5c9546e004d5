//! One module per subcommand, plus what they share: opening model directories and JSONL I/O.

pub(crate) mod eval;
pub(crate) mod generate;
pub(crate) mod init_model;
pub(crate) mod score;
pub(crate) mod serve;
pub(crate) mod tasks;
pub(crate) mod train;
pub(crate) mod verify;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use redraft::model::burn::tensor::Device;
use redraft::model::{CausalLm, DeviceSpec};
use redraft::tokenizer::Tokenizer;

/// A model directory opened for inference.
pub(crate) struct LoadedModel {
    pub(crate) model: CausalLm,
    pub(crate) tokenizer: Box<dyn Tokenizer>,
    pub(crate) device: Device,
}

impl LoadedModel {
    /// Loads config.json, the safetensors weights and the tokenizer of `dir` onto `device`.
    pub(crate) fn open(dir: &Path, device: DeviceSpec) -> Result<Self> {
        let device = device.device()?;
        let model = CausalLm::from_pretrained(dir, &device)
            .with_context(|| format!("loading the model in {}", dir.display()))?;
        let tokenizer = redraft::tokenizer::load_tokenizer(dir)
            .with_context(|| format!("loading the tokenizer in {}", dir.display()))?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// The id used to pad batches: the tokenizer's pad, else its eos, else 0 (pads are masked).
    pub(crate) fn pad_id(&self) -> u32 {
        self.tokenizer.special_tokens().padding_id()
    }

    /// Tokens that end a completion: the model's eos ids, the tokenizer's eos and, for chat
    /// templates, `<|im_end|>`.
    pub(crate) fn stop_tokens(&self) -> Vec<u32> {
        let mut stop = self.model.config().eos_token_ids.clone();
        stop.extend(self.tokenizer.special_tokens().eos);
        stop.extend(self.tokenizer.token_to_id("<|im_end|>"));
        stop
    }
}

/// A text prompt as the program feeds it to a model: the tokenizer's BOS token, when it has
/// one, followed by the encoded text.
pub(crate) fn encode_text(
    tokenizer: &dyn Tokenizer,
    text: &str,
) -> redraft::tokenizer::Result<Vec<u32>> {
    let bos = tokenizer.special_tokens().bos;
    Ok(bos.into_iter().chain(tokenizer.encode(text)?).collect())
}

/// Reads non-empty lines of a JSONL file as `T`, naming file and line on errors.
pub(crate) fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut items = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: invalid input line", path.display(), index + 1))?;
        items.push(item);
    }
    Ok(items)
}

/// Where results go: standard output, or a file written only once everything succeeded.
pub(crate) struct Output {
    path: Option<PathBuf>,
    buffer: Vec<u8>,
}

impl Output {
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            buffer: Vec::new(),
        }
    }

    /// A writer into the buffer, for library functions that write JSONL.
    pub(crate) fn writer(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }

    pub(crate) fn line(&mut self, text: &str) {
        self.buffer.extend_from_slice(text.as_bytes());
        self.buffer.push(b'\n');
    }

    /// Writes everything: to stdout, or atomically to the file (no partial file on failure).
    pub(crate) fn finish(self) -> Result<()> {
        match self.path {
            Some(path) => redraft::model::write_atomic(&path, &self.buffer)
                .with_context(|| format!("writing {}", path.display())),
            None => {
                let mut out = BufWriter::new(std::io::stdout().lock());
                out.write_all(&self.buffer)?;
                out.flush()?;
                Ok(())
            }
        }
    }
}
