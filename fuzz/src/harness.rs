//! What each fuzz target does with one input. Every function must return normally for every
//! input: an error is the expected outcome of a bad input; a panic, abort, hang or huge
//! allocation is a finding. This file is also compiled into the normal test suite
//! (`tests/tests/fuzz_regressions.rs`, through `#[path]`), so it uses only crates that the
//! test suite has.

use mnc_runtime::cpu::{CompiledModel, CpuOptions};
use mnc_targets::Target;
use std::path::Path;

/// The CLI's image transform (`mnc run --image`): resize the short side to 256, crop 224.
pub const IMAGE_RESIZE: u32 = 256;
pub const IMAGE_CROP: u32 = 224;

/// The host JIT target an input is compiled for: chosen by its length, so that a corpus
/// covers every ISA this host runs (the reference executor where it runs none).
fn target_for(data: &[u8]) -> Target {
    let ts = Target::host_jit_targets();
    if ts.is_empty() {
        return Target::Reference;
    }
    ts[data.len() % ts.len()]
}

/// JIT-compiles `g` (not run) for `target` with Cranelift's verifier on, one thread.
fn compile(g: &mnc_ir::Graph, target: Target) {
    if !target.is_jit() || !target.runs_on_host() {
        return;
    }
    let opts = CpuOptions {
        verify: true,
        threads: 1,
        ..Default::default()
    };
    let _ = CompiledModel::compile(g, target, &opts);
}

/// ONNX bytes -> importer (verifier included) -> optimization pipeline -> CPU code
/// generation. Nothing runs.
pub fn onnx_compile(data: &[u8]) {
    let opts = mnc::onnx::ImportOptions::default();
    let Ok(g) = mnc::onnx::import_bytes(data, None, "fuzz.onnx", &opts) else {
        return;
    };
    let target = target_for(data);
    let Ok(g) = mnc::exec::optimized(g, target) else {
        return;
    };
    compile(&g, target);
}

/// `.mnc` bytes -> the artifact decoder (and, for a decoded artifact, CPU code generation
/// as `mnc run` does at load). Each input is decoded twice: as is, and re-sealed (its
/// length field and CRC-32 rewritten by [`mnc::artifact::seal`]), since a mutated file
/// almost never passes the checksum and the decoder's later checks would go unexercised.
pub fn artifact(data: &[u8]) {
    load_artifact(data);
    if data.len() >= 4 && data.starts_with(mnc::artifact::MAGIC) {
        let sealed = mnc::artifact::seal(data[..data.len() - 4].to_vec());
        if sealed != data {
            load_artifact(&sealed);
        }
    }
}

fn load_artifact(data: &[u8]) {
    if let Ok(art) = mnc::artifact::decode(data, Path::new("fuzz.mnc")) {
        compile(&art.graph, art.target);
    }
}

/// `.npy` bytes -> the `.npy` reader.
pub fn npy(data: &[u8]) {
    let _ = mnc::io::decode_npy(data, Path::new("fuzz.npy"));
}

/// Image bytes -> the image loader with the CLI's transform (through a file: the loader
/// takes a path; one file per process, rewritten for each input).
pub fn image(data: &[u8]) {
    let path = std::env::temp_dir().join(format!("mnc-fuzz-image-{}", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = mnc::io::load_image(&path, IMAGE_RESIZE, IMAGE_CROP);
    }
}

/// What a fuzz target does with one input.
pub type Run = fn(&[u8]);

/// The targets by name, as `scripts/fuzz.sh` and the regression test name them.
pub const TARGETS: &[(&str, Run)] = &[
    ("onnx_compile", onnx_compile),
    ("artifact", artifact),
    ("npy", npy),
    ("image", image),
];
