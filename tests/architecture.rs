//! The crate graph's invariants, read from `cargo metadata` (see docs/ARCHITECTURE.md):
//! the foundation crates never depend on burn, and internal dependencies only point down
//! the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Crates a downstream project can take without a tensor library.
const NO_BURN: [&str; 5] = [
    "redraft-gguf",
    "redraft-tokenizer",
    "redraft-verifier",
    "redraft-feedback-protocol",
    "redraft-credit-assignment",
];

/// The internal crates each crate may depend on (directly).
fn allowed() -> BTreeMap<&'static str, Vec<&'static str>> {
    BTreeMap::from([
        ("redraft-gguf", vec![]),
        ("redraft-tokenizer", vec!["redraft-gguf"]),
        ("redraft-verifier", vec![]),
        ("redraft-credit-assignment", vec![]),
        ("redraft-model", vec!["redraft-gguf"]),
        (
            "redraft-feedback-protocol",
            vec!["redraft-tokenizer", "redraft-verifier"],
        ),
        (
            "redraft-rollout-engine",
            vec![
                "redraft-model",
                "redraft-tokenizer",
                "redraft-verifier",
                "redraft-feedback-protocol",
            ],
        ),
        (
            "redraft-objectives",
            vec!["redraft-credit-assignment", "redraft-model"],
        ),
        (
            "redraft-trainer",
            vec![
                "redraft-model",
                "redraft-tokenizer",
                "redraft-verifier",
                "redraft-feedback-protocol",
                "redraft-rollout-engine",
                "redraft-credit-assignment",
                "redraft-objectives",
            ],
        ),
    ])
}

fn host_triple() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("host line")
        .to_string()
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
            &host_triple(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Package id -> (name, ids of its normal and build dependencies).
fn graph(meta: &Value) -> BTreeMap<String, (String, Vec<String>)> {
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            let id = node["id"].as_str().unwrap();
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].as_str() != Some("dev"))
                })
                .map(|d| d["pkg"].as_str().unwrap().to_string())
                .collect();
            (id.to_string(), (names[id].to_string(), deps))
        })
        .collect()
}

fn closure(graph: &BTreeMap<String, (String, Vec<String>)>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.to_string()];
    while let Some(id) = stack.pop() {
        if seen.insert(id.clone()) {
            stack.extend(graph[&id].1.iter().cloned());
        }
    }
    seen.into_iter().map(|id| graph[&id].0.clone()).collect()
}

fn id_of(graph: &BTreeMap<String, (String, Vec<String>)>, name: &str) -> String {
    graph
        .iter()
        .find(|(_, (n, _))| n == name)
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| panic!("{name} not in the workspace"))
}

#[test]
fn foundation_crates_never_depend_on_burn() {
    let graph = graph(&metadata());
    for name in NO_BURN {
        let reachable = closure(&graph, &id_of(&graph, name));
        let burn: Vec<&String> = reachable
            .iter()
            .filter(|n| n.starts_with("burn") || n.starts_with("cubecl"))
            .collect();
        assert!(burn.is_empty(), "{name} depends on {burn:?}");
    }
}

#[test]
fn internal_dependencies_point_down_the_layers() {
    let graph = graph(&metadata());
    for (name, allowed) in allowed() {
        let (_, deps) = &graph[&id_of(&graph, name)];
        for dep in deps {
            let dep_name = &graph[dep].0;
            if dep_name.starts_with("redraft") {
                assert!(
                    allowed.contains(&dep_name.as_str()),
                    "{name} must not depend on {dep_name}"
                );
            }
        }
    }
}
