//! Helpers shared by the CUDA integration tests: the models every check runs on (committed
//! fixtures and zoo models), the optimization pipeline, ptxas discovery and deterministic
//! inputs.

#![allow(dead_code)]

use mnc::onnx::{import_file, ImportOptions};
use mnc::zoo::{build, names, ZooOptions};
use mnc_ir::{Graph, Tensor};
use mnc_passes::{optimize, PipelineOptions};
use std::path::PathBuf;

/// The committed fixtures folder: the source tree's when it exists, else `tests/fixtures`
/// under the current directory (test binaries carried to another machine run from a copy
/// of the repository root).
pub fn fixtures_dir() -> PathBuf {
    let d = mnc_tests::fixtures_dir();
    if d.is_dir() {
        d
    } else {
        PathBuf::from("tests").join("fixtures")
    }
}

/// Every committed fixture model: (fixture name, imported graph).
pub fn fixture_models() -> Vec<(String, Graph)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("model.onnx").is_file())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no fixtures found under {}",
        fixtures_dir().display()
    );
    dirs.into_iter()
        .map(|d| {
            let name = d.file_name().unwrap().to_string_lossy().to_string();
            let g = import_file(&d.join("model.onnx"), &ImportOptions::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, g)
        })
        .collect()
}

/// Every zoo model at `resolution` and `batch` (BN folded, as exporters write them).
pub fn zoo_models(resolution: usize, batch: usize) -> Vec<(String, Graph)> {
    names()
        .iter()
        .map(|&n| {
            let o = ZooOptions {
                resolution: Some(resolution),
                batch,
                ..Default::default()
            };
            (
                n.to_string(),
                build(n, &o).unwrap_or_else(|e| panic!("{n}: {e}")),
            )
        })
        .collect()
}

/// `g` after the full optimization pipeline (fused epilogues, SE ops).
pub fn optimized(g: &Graph) -> Graph {
    let mut h = g.clone();
    let opts = PipelineOptions {
        verify: false,
        ..Default::default()
    };
    optimize(&mut h, &opts).unwrap_or_else(|e| panic!("{}: optimize: {e}", g.name));
    h
}

/// Deterministic inputs in [-1, 1) for every graph input.
pub fn inputs_for(g: &Graph, seed: u64) -> Vec<Tensor> {
    g.inputs
        .iter()
        .enumerate()
        .map(|(k, &id)| {
            mnc_passes::samples::Lcg::new(seed + k as u64).tensor(&g.node(id).ty.shape, -1.0, 1.0)
        })
        .collect()
}

/// The ptxas installed by `scripts/install-ptxas.sh` (under `.ptxas/`), if any.
pub fn ptxas() -> Option<PathBuf> {
    let root = mnc_tests::repo_root().join(".ptxas");
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "ptxas")
                && p.parent().is_some_and(|b| b.ends_with("bin"))
            {
                return Some(p);
            }
        }
    }
    None
}
