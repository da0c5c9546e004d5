//! What the model's integration tests share: the device under test and the fixture folders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use redraft_model::DeviceSpec;
use redraft_model::burn::tensor::Device;

/// `cpu`, unless `REDRAFT_TEST_DEVICE` names another device compiled into the build (CI runs
/// the parity tests again with `--features wgpu` and `REDRAFT_TEST_DEVICE=wgpu`).
pub(crate) fn device() -> Device {
    let spec: DeviceSpec = std::env::var("REDRAFT_TEST_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()
        .unwrap();
    spec.device().unwrap()
}

/// The fixture folder `name` (tests/fixtures/, made by scripts/make_model_fixtures.py and
/// scripts/make_lora_fixtures.py).
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
