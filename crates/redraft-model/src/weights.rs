//! Where a model's weights come from: a seeded random initialisation or a Hugging Face
//! safetensors checkpoint (one file or shards listed in `model.safetensors.index.json`), and how
//! they are written back.
//!
//! Tensors are addressed by transformers' names and shapes (`model.layers.0.self_attn.q_proj.weight`,
//! `[out, in]`), so the model builder can ask every source the same way. F32, BF16 and F16 files
//! are converted to f32.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// How a tensor is initialised when it is not read from a file (transformers' conventions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Normal(0, initializer_range): weight matrices and embeddings.
    Normal,
    /// All ones: RMSNorm scales.
    Ones,
    /// All zeros: biases.
    Zeros,
}

/// A provider of named tensors in transformers' layout.
pub trait WeightSource {
    /// Returns the values of tensor `name`, row-major, which must have `shape`.
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>>;

    /// Called once the model is built; a checkpoint reports tensors that were never asked for.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Seeded random initialisation: each tensor's values depend only on the seed and its name.
#[derive(Debug, Clone)]
pub struct RandomInit {
    seed: u64,
    std: f64,
}

impl RandomInit {
    /// Normal(0, `std`) weights drawn from a generator seeded by `seed`.
    pub fn new(seed: u64, std: f64) -> Self {
        Self { seed, std }
    }
}

/// FNV-1a, to derive a stable per-tensor seed from its name.
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl WeightSource for RandomInit {
    fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Vec<f32>> {
        let n = shape.iter().product();
        Ok(match init {
            Init::Ones => vec![1.0; n],
            Init::Zeros => vec![0.0; n],
            Init::Normal => {
                let normal = Normal::new(0.0, self.std).map_err(|e| Error::InvalidConfig {
                    field: "initializer_range",
                    reason: e.to_string(),
                })?;
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ fnv1a(name));
                (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
            }
        })
    }
}

/// The safetensors files of a model directory, read into memory.
#[derive(Debug)]
pub struct Checkpoint {
    dir: PathBuf,
    files: Vec<(PathBuf, Vec<u8>)>,
    /// Tensor name -> index into `files`.
    index: HashMap<String, usize>,
    used: HashSet<String>,
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })
}

impl Checkpoint {
    /// Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let mut files = Vec::new();
        let mut index = HashMap::new();
        if single.exists() {
            files.push((single, Vec::new()));
        } else if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(|source| Error::Io {
                path: index_path.clone(),
                source,
            })?;
            let shard_index: ShardIndex =
                serde_json::from_str(&text).map_err(|source| Error::Json {
                    path: index_path.clone(),
                    source,
                })?;
            let mut shard_ids: HashMap<String, usize> = HashMap::new();
            for (tensor, shard) in shard_index.weight_map {
                if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
                    return Err(Error::Safetensors {
                        path: index_path.clone(),
                        message: format!("shard name `{shard}` must be a plain file name"),
                    });
                }
                let id = *shard_ids.entry(shard.clone()).or_insert_with(|| {
                    files.push((dir.join(&shard), Vec::new()));
                    files.len() - 1
                });
                index.insert(tensor, id);
            }
        } else {
            return Err(Error::Io {
                path: single,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model.safetensors or model.safetensors.index.json in the model directory",
                ),
            });
        }
        for (id, (path, bytes)) in files.iter_mut().enumerate() {
            *bytes = read(path)?;
            let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
                path: path.clone(),
                message: e.to_string(),
            })?;
            for name in st.names() {
                index.entry(name.to_string()).or_insert(id);
            }
        }
        Ok(Self {
            dir: dir.into(),
            files,
            index,
            used: HashSet::new(),
        })
    }

    /// Names of all tensors in the checkpoint.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}

pub(crate) fn to_f32(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::UnsupportedDType {
                name: name.into(),
                dtype: format!("{other:?}"),
            });
        }
    })
}

impl WeightSource for Checkpoint {
    fn tensor(&mut self, name: &str, shape: &[usize], _init: Init) -> Result<Vec<f32>> {
        let missing = || Error::MissingTensor {
            name: name.into(),
            dir: self.dir.clone(),
        };
        let id = *self.index.get(name).ok_or_else(missing)?;
        let (path, bytes) = &self.files[id];
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let view = st.tensor(name).map_err(|_| missing())?;
        if view.shape() != shape {
            return Err(Error::ShapeMismatch {
                name: name.into(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let values = to_f32(name, view.dtype(), view.data())?;
        self.used.insert(name.to_string());
        Ok(values)
    }

    fn finish(&mut self) -> Result<()> {
        let mut unused: Vec<&str> = self
            .index
            .keys()
            .filter(|n| !self.used.contains(*n))
            .map(String::as_str)
            .collect();
        unused.sort_unstable();
        if !unused.is_empty() {
            tracing::warn!(dir = %self.dir.display(), ?unused, "checkpoint tensors not used by the model");
        }
        Ok(())
    }
}

/// The float format of a saved checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaveDType {
    /// 32-bit floats (exact).
    #[default]
    F32,
    /// bfloat16 (half the size; rounds the weights).
    Bf16,
}

/// A named tensor in transformers' layout, ready to be written.
#[derive(Debug, Clone)]
pub struct NamedTensor {
    /// transformers' name.
    pub name: String,
    /// transformers' shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// Serialises tensors into the bytes of a safetensors file (with transformers' `format: pt`).
pub fn safetensors_bytes(tensors: &[NamedTensor], dtype: SaveDType) -> Result<Vec<u8>> {
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|t| {
            let bytes = match dtype {
                SaveDType::F32 => t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                SaveDType::Bf16 => t
                    .values
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            };
            (t.name.clone(), t.shape.clone(), bytes)
        })
        .collect();
    let st_dtype = match dtype {
        SaveDType::F32 => Dtype::F32,
        SaveDType::Bf16 => Dtype::BF16,
    };
    let views = encoded
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(st_dtype, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Safetensors {
            path: "<memory>".into(),
            message: e.to_string(),
        })?;
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::serialize(views, metadata).map_err(|e| Error::Safetensors {
        path: "<memory>".into(),
        message: e.to_string(),
    })
}

/// The temporary sibling `dir/.{name}.tmp-{pid}` through which an atomic write publishes
/// `dir/name` (a file or a folder): the one naming rule of temporaries, which
/// [`remove_stale_temps`] recognises.
pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Whether `name` is a temporary of [`temp_path`]'s form (`.{name}.tmp-{digits}`).
fn is_temp_name(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(".tmp-"))
        .is_some_and(|(head, pid)| {
            !head.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Removes the temporaries ([`temp_path`]) that atomic writes killed before their rename left
/// in `dir`, files and folders alike, and nothing else; returns what it removed. Call it only
/// while no atomic write into `dir` is in flight (a run folder has one writer). A missing `dir`
/// has none.
///
/// # Errors
/// [`Error::Io`] when `dir` cannot be listed or a temporary cannot be removed.
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        if !entry.file_name().to_str().is_some_and(is_temp_name) {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().map_err(io(&path))?.is_dir();
        if is_dir {
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        } else {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        removed.push(path);
    }
    Ok(removed)
}

/// The folder holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Flushes `path` to disk: a file's data, or a folder's entries (what makes a rename into it
/// durable) and, with `recursive`, everything under it. The one fsync helper of atomic writes.
fn sync_path(path: &Path, recursive: bool) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        if recursive {
            for entry in std::fs::read_dir(path)? {
                sync_path(&entry?.path(), true)?;
            }
        }
        // Folders can be opened and synced on Unix only; elsewhere the rename is what we have.
        if cfg!(unix) {
            std::fs::File::open(path)?.sync_all()?;
        }
        Ok(())
    } else if meta.is_file() {
        std::fs::File::open(path)?.sync_all()
    } else {
        Ok(())
    }
}

/// Renames the complete, synced `tmp` to `target` and syncs the folder holding it, so that the
/// new name survives a crash.
fn rename_durably(tmp: &Path, target: &Path) -> std::io::Result<()> {
    std::fs::rename(tmp, target)?;
    sync_path(parent_dir(target), false)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory ([`temp_path`]),
/// flushed to disk, then a rename and a flush of the directory, so a crash never leaves a
/// truncated file under the final name and a completed write survives one.
///
/// # Errors
/// [`Error::Io`] naming `path`; the temporary is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = temp_path(parent_dir(path), &file_name);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| {
            std::io::Write::write_all(&mut file, bytes).and_then(|()| file.sync_all())
        })
        .and_then(|()| rename_durably(&tmp, path));
    written.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io {
            path: path.into(),
            source,
        }
    })
}

/// Publishes the complete folder `tmp` as `dir` (a sibling of `tmp`), replacing any folder of
/// that name: the one place where finished checkpoints and final models take their name.
/// Everything under `tmp` is flushed to disk before the rename, and the parent folder after it.
///
/// # Errors
/// [`Error::Io`] naming the path that failed.
pub fn replace_dir(tmp: &Path, dir: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    sync_path(tmp, true).map_err(io(tmp))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    rename_durably(tmp, dir).map_err(io(dir))
}

/// Writes folder `dir` whole: `write` fills a temporary sibling ([`temp_path`], emptied first),
/// which then replaces `dir` ([`replace_dir`]); when `write` or the rename fails the temporary
/// is removed and `dir` is left as it was. The one way finished folders are published
/// (checkpoints, a run's `final/` and `reference/`, the command-line program's model folders).
///
/// # Errors
/// What `write` returns, or [`Error::Io`] naming the path that failed.
pub fn publish_dir<T, E: From<Error>>(
    dir: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            io(dir)(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a folder name",
            ))
        })?;
    let tmp = temp_path(parent_dir(dir), &name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    let written = write(&tmp).and_then(|value| {
        replace_dir(&tmp, dir)?;
        Ok(value)
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_recognised_by_their_one_form() {
        for name in [".step-00000003.tmp-4000000", ".latest.tmp-1", ".a.b.tmp-77"] {
            assert!(is_temp_name(name), "{name}");
        }
        for name in [
            "step-00000003",
            "notes.tmp",
            ".keep.tmp-me",
            ".tmp-12",
            "latest.tmp-12",
            ".final.tmp",
            ".x.tmp-",
        ] {
            assert!(!is_temp_name(name), "{name}");
        }
        let made = temp_path(Path::new("d"), "final");
        assert!(is_temp_name(made.file_name().unwrap().to_str().unwrap()));
    }

    #[test]
    fn published_folders_and_files_are_whole_and_leave_no_temporary() {
        // Durability itself (the fsyncs) cannot be observed without a crash; what can be is
        // that the published folder is complete and nothing temporary remains.
        let root = tempfile::tempdir().unwrap();
        let tmp = temp_path(root.path(), "out");
        std::fs::create_dir_all(tmp.join("sub")).unwrap();
        write_atomic(&tmp.join("a.json"), b"{}").unwrap();
        write_atomic(&tmp.join("sub/b.bin"), &[7; 1000]).unwrap();
        let dir = root.path().join("out");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("old"), b"old").unwrap();
        replace_dir(&tmp, &dir).unwrap();
        assert_eq!(std::fs::read(dir.join("a.json")).unwrap(), b"{}");
        assert_eq!(std::fs::read(dir.join("sub/b.bin")).unwrap(), vec![7; 1000]);
        assert!(!dir.join("old").exists());
        let names = |d: &Path| -> Vec<String> {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(root.path()), ["out"]);
        let mut inside = names(&dir);
        inside.sort();
        assert_eq!(inside, ["a.json", "sub"]);
        assert_eq!(names(&dir.join("sub")), ["b.bin"]);
    }

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let stale_dir = root.path().join(".step-00000002.tmp-4000000");
        std::fs::create_dir_all(stale_dir.join("model")).unwrap();
        std::fs::write(root.path().join(".latest.tmp-4000001"), b"x").unwrap();
        for keep in ["step-00000001", "notes.tmp", ".keep.tmp-me"] {
            std::fs::write(root.path().join(keep), b"mine").unwrap();
        }
        let mut removed = remove_stale_temps(root.path()).unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [root.path().join(".latest.tmp-4000001"), stale_dir.clone()]
        );
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".keep.tmp-me", "notes.tmp", "step-00000001"]);
        assert!(
            remove_stale_temps(&root.path().join("missing"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn random_init_depends_on_seed_and_name_only() {
        let mut a = RandomInit::new(7, 0.02);
        let x = a.tensor("w", &[3, 4], Init::Normal).unwrap();
        let _ = a.tensor("other", &[5], Init::Normal).unwrap();
        let y = RandomInit::new(7, 0.02)
            .tensor("w", &[3, 4], Init::Normal)
            .unwrap();
        assert_eq!(x, y);
        assert_ne!(
            x,
            RandomInit::new(8, 0.02)
                .tensor("w", &[3, 4], Init::Normal)
                .unwrap()
        );
        assert_eq!(a.tensor("n", &[2], Init::Ones).unwrap(), vec![1.0, 1.0]);
    }

    #[test]
    fn safetensors_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let t = NamedTensor {
            name: "a.weight".into(),
            shape: vec![2, 2],
            values: vec![1.0, -2.5, 3.25, 0.0],
        };
        write_atomic(
            &dir.path().join("model.safetensors"),
            &safetensors_bytes(&[t], SaveDType::F32).unwrap(),
        )
        .unwrap();
        let mut ck = Checkpoint::open(dir.path()).unwrap();
        assert_eq!(
            ck.tensor("a.weight", &[2, 2], Init::Normal).unwrap(),
            vec![1.0, -2.5, 3.25, 0.0]
        );
        let err = ck
            .tensor("a.weight", &[4], Init::Normal)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`a.weight` has shape [2, 2], expected [4]"),
            "{err}"
        );
        let err = ck
            .tensor("b.weight", &[4], Init::Normal)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`b.weight` is missing"), "{err}");
    }

    #[test]
    fn bf16_is_converted() {
        let dir = tempfile::tempdir().unwrap();
        let t = NamedTensor {
            name: "x".into(),
            shape: vec![3],
            values: vec![1.0, 0.5, -3.0],
        };
        std::fs::write(
            dir.path().join("model.safetensors"),
            safetensors_bytes(&[t], SaveDType::Bf16).unwrap(),
        )
        .unwrap();
        let mut ck = Checkpoint::open(dir.path()).unwrap();
        assert_eq!(
            ck.tensor("x", &[3], Init::Normal).unwrap(),
            vec![1.0, 0.5, -3.0]
        );
    }

    #[test]
    fn garbage_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("model.safetensors"),
            b"not a safetensors file",
        )
        .unwrap();
        let err = Checkpoint::open(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Safetensors { .. }), "{err}");
    }
}
