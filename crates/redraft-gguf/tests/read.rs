//! The reader against gguf-py, llama.cpp's own Python library: each fixture holds a tensor `x`
//! of one type and `expected`, gguf-py's dequantization of it (scripts/gguf_fixtures.py).
//! Then hostile files: truncated, inconsistent or of unknown types, each refused by name.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use redraft_gguf::{Error, GgufFile};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{name}.gguf"))
}

#[test]
fn every_type_dequantizes_as_gguf_py_does() {
    for name in [
        "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k",
    ] {
        let file = GgufFile::open(&fixture(name)).unwrap();
        assert_eq!(
            file.metadata().str("fixture.type").unwrap().to_lowercase(),
            name
        );
        let x = file.tensor_info("x").unwrap();
        assert_eq!(x.shape, vec![3, 512], "{name}");
        let got = file.tensor_f32("x").unwrap();
        let want = file.tensor_f32("expected").unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{name}[{i}]: {g} vs gguf-py {w}"
            );
        }
    }
}

/// A GGUF file made by hand: `kv` metadata entries (already encoded) and tensors given as
/// (name, dims innermost first, type id, offset), followed by `data`.
fn handmade(kv: &[Vec<u8>], tensors: &[(&str, &[u64], u32, u64)], data: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kv.len() as u64).to_le_bytes());
    for entry in kv {
        b.extend(entry);
    }
    for (name, dims, ty, offset) in tensors {
        b.extend((name.len() as u64).to_le_bytes());
        b.extend(name.as_bytes());
        b.extend((dims.len() as u32).to_le_bytes());
        for d in *dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(ty.to_le_bytes());
        b.extend(offset.to_le_bytes());
    }
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.extend(data);
    b
}

fn string_kv(key: &str, value: &str) -> Vec<u8> {
    let mut b = (key.len() as u64).to_le_bytes().to_vec();
    b.extend(key.as_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend((value.len() as u64).to_le_bytes());
    b.extend(value.as_bytes());
    b
}

fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, redraft_gguf::Result<GgufFile>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, bytes).unwrap();
    let file = GgufFile::open(&path);
    (dir, file)
}

#[test]
fn a_handmade_file_reads_back() {
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let bytes = handmade(
        &[string_kv("general.architecture", "llama")],
        &[("w", &[3, 2], 0, 0)],
        &data,
    );
    let (_dir, file) = open_bytes(&bytes);
    let file = file.unwrap();
    assert_eq!(
        file.metadata().str("general.architecture").unwrap(),
        "llama"
    );
    assert_eq!(file.tensor_info("w").unwrap().shape, vec![2, 3]);
    assert_eq!(
        file.tensor_f32("w").unwrap(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
    assert!(matches!(
        file.metadata().uint("general.architecture"),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        file.tensor_f32("nope"),
        Err(Error::MissingTensor(_))
    ));
}

#[test]
fn an_unsupported_type_is_refused_naming_tensor_and_type() {
    // Q5_0 (id 6): 32 values in 22 bytes.
    let bytes = handmade(&[], &[("blk.0.attn_q.weight", &[32], 6, 0)], &[0; 22]);
    let (_dir, file) = open_bytes(&bytes);
    let error = file.unwrap().tensor_f32("blk.0.attn_q.weight").unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("blk.0.attn_q.weight") && message.contains("Q5_0"),
        "{message}"
    );
}

#[test]
fn inconsistent_directories_are_refused() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"GGML0000".to_vec(), "GGUF"),
        (
            handmade(&[], &[("w", &[4], 0, 0)], &[0; 8]),
            "outside the file",
        ),
        (
            handmade(&[], &[("w", &[100], 8, 0)], &[0; 4096]),
            "whole Q8_0 blocks",
        ),
        (
            handmade(&[], &[("w", &[u64::MAX, 4], 0, 0)], &[]),
            "overflows",
        ),
        (
            handmade(&[], &[("w", &[1], 0, 0), ("w", &[1], 0, 32)], &[0; 64]),
            "twice",
        ),
        (
            {
                let mut b = handmade(&[], &[], &[]);
                b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
                b
            },
            "cannot fit",
        ),
    ];
    for (bytes, needle) in cases {
        let (_dir, file) = open_bytes(&bytes);
        let message = file.unwrap_err().to_string();
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any prefix of a real file, and any single corrupted byte, is an error or reads back:
    /// never a panic or an abort.
    #[test]
    fn truncated_or_corrupted_files_never_panic(cut in 0usize..7232, at in 0usize..7232, byte: u8) {
        let whole = std::fs::read(fixture("q4_k")).unwrap();
        let data_end = GgufFile::open(&fixture("q4_k")).unwrap().tensors().iter()
            .map(|t| t.offset + t.bytes).max().unwrap() as usize;
        let (_dir, file) = open_bytes(&whole[..cut.min(whole.len())]);
        if cut < data_end {
            prop_assert!(file.is_err());
        }
        let mut corrupted = whole.clone();
        let at = at % corrupted.len();
        corrupted[at] = byte;
        let (_dir, file) = open_bytes(&corrupted);
        if let Ok(file) = file {
            for info in file.tensors().to_vec() {
                let _ = file.tensor_f32(&info.name);
            }
        }
    }
}
