//! One module per subcommand, plus what they share: opening model directories and JSONL I/O.

pub(crate) mod convert;
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
use redraft::model::{CausalLm, DeviceSpec, temp_path};
use redraft::tokenizer::Tokenizer;

/// A model (a directory or a `.gguf` file) opened for inference.
pub(crate) struct LoadedModel {
    pub(crate) model: CausalLm,
    pub(crate) tokenizer: Box<dyn Tokenizer>,
    pub(crate) device: Device,
}

impl LoadedModel {
    /// Loads config.json, the safetensors weights and the tokenizer of directory `dir`, or
    /// the model and tokenizer of a `.gguf` file, onto `device`, with the PEFT LoRA adapter of
    /// folder `adapter` when given (checked against the model first, then merged into its
    /// weights: sampling and scoring then cost what the base costs).
    pub(crate) fn open(dir: &Path, adapter: Option<&Path>, device: DeviceSpec) -> Result<Self> {
        let device = device.device()?;
        let mut model = CausalLm::load(dir, &device)
            .with_context(|| format!("loading the model in {}", dir.display()))?;
        if let Some(adapter) = adapter {
            model = model
                .with_adapter(adapter, &device)
                .with_context(|| format!("loading the LoRA adapter in {}", adapter.display()))?
                .merge_lora();
        }
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

/// The folder holding `path` (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Checks, before any work, that folder `dir` can be written by [`publish_dir`]: its parent
/// exists, and it is missing or empty unless `force` (replace it).
pub(crate) fn check_out_dir(dir: &Path, force: bool) -> Result<()> {
    let parent = parent_of(dir);
    if !parent.is_dir() {
        anyhow::bail!(
            "the folder {} of {} does not exist",
            parent.display(),
            dir.display()
        );
    }
    dir.file_name()
        .with_context(|| format!("{}: not a folder name", dir.display()))?;
    let non_empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    if non_empty && !force {
        anyhow::bail!(
            "{} exists and is not empty (use --force to replace it)",
            dir.display()
        );
    }
    Ok(())
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

/// Where results go: standard output, or a file written whole or not at all.
///
/// A file output is opened before the work starts ([`Output::create`]): the results stream into
/// a temporary file beside the target (so a missing or read-only folder fails at once), which
/// [`Output::finish`] renames onto the target; dropped unfinished, the temporary file is removed.
pub(crate) struct Output {
    sink: BufWriter<Box<dyn Write>>,
    /// `(temporary file, target)` of a file output.
    file: Option<(PathBuf, PathBuf)>,
}

impl Output {
    /// Opens standard output, or the temporary file beside `path`, before any work.
    pub(crate) fn create(path: Option<PathBuf>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self {
                sink: BufWriter::new(Box::new(std::io::stdout().lock())),
                file: None,
            });
        };
        let name = path
            .file_name()
            .with_context(|| format!("{}: not a file name", path.display()))?;
        let tmp = temp_path(parent_of(&path), &name.to_string_lossy());
        let file = File::create(&tmp).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            sink: BufWriter::new(Box::new(file)),
            file: Some((tmp, path)),
        })
    }

    /// A writer, for library functions that write JSONL.
    pub(crate) fn writer(&mut self) -> &mut impl Write {
        &mut self.sink
    }

    /// Writes `text` and a newline.
    pub(crate) fn line(&mut self, text: &str) -> Result<()> {
        writeln!(self.sink, "{text}").with_context(|| format!("writing {}", self.name()))
    }

    fn name(&self) -> String {
        self.file.as_ref().map_or_else(
            || "standard output".into(),
            |(_, p)| p.display().to_string(),
        )
    }

    /// Flushes everything; a file output is renamed onto its target.
    pub(crate) fn finish(mut self) -> Result<()> {
        let name = self.name();
        self.sink
            .flush()
            .with_context(|| format!("writing {name}"))?;
        if let Some((tmp, path)) = self.file.take()
            && let Err(e) = std::fs::rename(&tmp, &path)
        {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("writing {name}"));
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some((tmp, _)) = self.file.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
