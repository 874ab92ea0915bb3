//! Shared helpers of mnc's integration tests (the tests themselves are in `tests/tests/`):
//! fixture discovery, the per-element tolerance check, and locating a Python with onnxruntime
//! for the cross-checks against onnxruntime.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The committed fixtures folder (`tests/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    repo_root().join("tests").join("fixtures")
}

/// Every committed fixture: folders under `tests/fixtures` holding `model.onnx`, sorted.
pub fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join("model.onnx").is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Largest absolute element error and the largest reference magnitude.
pub fn max_errors(y: &[f32], y_ref: &[f32]) -> (f32, f32) {
    assert_eq!(y.len(), y_ref.len(), "length mismatch");
    let err = y.iter().zip(y_ref).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let scale = y_ref.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    (err, scale)
}

/// Asserts `max|y - y_ref| <= rel * max|y_ref|` element by element (NaN fails).
pub fn assert_close(what: &str, y: &[f32], y_ref: &[f32], rel: f32) {
    assert_eq!(y.len(), y_ref.len(), "{what}: length {} vs {}", y.len(), y_ref.len());
    assert!(y.iter().all(|v| v.is_finite()), "{what}: non-finite output");
    let (err, scale) = max_errors(y, y_ref);
    assert!(
        err <= rel * scale,
        "{what}: max|y - y_ref| = {err:e} > {rel:e} * max|y_ref| ({scale:e})"
    );
}

/// A Python interpreter that can import onnxruntime, numpy and onnx: the repository's `.venv`
/// (made by `.ci/run`), else `python3`. When none is found the caller should skip, and this
/// prints a visible line saying so; with `MNC_REQUIRE_PYTHON=1` (set by `.ci/run`) it panics
/// instead, so CI never skips these checks silently.
pub fn python_with_onnxruntime(test: &str) -> Option<PathBuf> {
    let candidates = [repo_root().join(".venv/bin/python"), PathBuf::from("python3")];
    for py in candidates {
        let ok = Command::new(&py)
            .args(["-c", "import onnxruntime, numpy, onnx"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(py);
        }
    }
    if std::env::var("MNC_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("{test}: MNC_REQUIRE_PYTHON=1 but no Python with onnxruntime, numpy and onnx was found");
    }
    eprintln!("SKIPPED {test}: no Python with onnxruntime/numpy/onnx (run .ci/run or make .venv)");
    None
}
