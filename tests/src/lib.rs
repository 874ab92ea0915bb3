//! Shared helpers of mnc's integration tests (the tests themselves are in `tests/tests/`):
//! fixture discovery, the per-element tolerance check, node counts by op kind, and locating a
//! Python with onnxruntime for the cross-checks against onnxruntime.

pub mod graphgen;

use mnc_ir::Graph;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The committed fixtures folder (`tests/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    repo_root().join("tests").join("fixtures")
}

/// Every committed fixture: folders under `tests/fixtures` holding `model.onnx`, sorted.
pub fn fixtures() -> Vec<PathBuf> {
    fixtures_in(&fixtures_dir())
}

/// The fixture folders (those holding `model.onnx`) directly under `root`, sorted; none
/// when `root` cannot be read.
pub fn fixtures_in(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("model.onnx").is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A fresh-or-existing scratch folder `mnc-<tag>-<pid>` under the system temp folder.
/// The three hand-built sample blocks of `mnc_passes::samples` (MobileNetV2 inverted
/// residual, MobileNetV3 block with SE, EfficientNet MBConv), named, with fixed seeds.
pub fn sample_blocks() -> Vec<(&'static str, Graph)> {
    vec![
        (
            "mbv2",
            mnc_passes::samples::mobilenet_v2_block(11).expect("sample block"),
        ),
        (
            "mbv3",
            mnc_passes::samples::mobilenet_v3_block(12).expect("sample block"),
        ),
        (
            "effnet",
            mnc_passes::samples::efficientnet_mbconv_block(13).expect("sample block"),
        ),
    ]
}

pub fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mnc-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

/// Largest absolute element error and the largest reference magnitude.
pub fn max_errors(y: &[f32], y_ref: &[f32]) -> (f32, f32) {
    assert_eq!(y.len(), y_ref.len(), "length mismatch");
    let err = y
        .iter()
        .zip(y_ref)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = y_ref.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    (err, scale)
}

/// Asserts `max|y - y_ref| <= rel * max|y_ref|` element by element (NaN fails).
pub fn assert_close(what: &str, y: &[f32], y_ref: &[f32], rel: f32) {
    assert_eq!(
        y.len(),
        y_ref.len(),
        "{what}: length {} vs {}",
        y.len(),
        y_ref.len()
    );
    assert!(y.iter().all(|v| v.is_finite()), "{what}: non-finite output");
    let (err, scale) = max_errors(y, y_ref);
    assert!(
        err <= rel * scale,
        "{what}: max|y - y_ref| = {err:e} > {rel:e} * max|y_ref| ({scale:e})"
    );
}

/// Node counts of `g` by op kind (constants counted as "Constant").
pub fn kinds(g: &Graph) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for id in g.node_ids() {
        *m.entry(g.node(id).op.kind()).or_insert(0) += 1;
    }
    m
}

/// Node counts before and after a transformation, one `kind: before -> after` line per op
/// kind present in either graph (the text of the counts snapshots).
pub fn counts_text(before: &Graph, after: &Graph) -> String {
    let (b, a) = (kinds(before), kinds(after));
    let mut keys: Vec<&&str> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut s = format!("nodes: {} -> {}\n", before.node_count(), after.node_count());
    for k in keys {
        s.push_str(&format!(
            "{k}: {} -> {}\n",
            b.get(*k).unwrap_or(&0),
            a.get(*k).unwrap_or(&0)
        ));
    }
    s
}

/// A Python interpreter that can import onnxruntime, numpy and onnx: the repository's `.venv`
/// (made by `.ci/run`), else `python3`. When none is found the caller should skip, and this
/// prints a visible line saying so; with `MNC_REQUIRE_PYTHON=1` (set by `.ci/run`) it panics
/// instead, so CI never skips these checks silently.
pub fn python_with_onnxruntime(test: &str) -> Option<PathBuf> {
    let candidates = [
        repo_root().join(".venv/bin/python"),
        PathBuf::from("python3"),
    ];
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
        panic!(
            "{test}: MNC_REQUIRE_PYTHON=1 but no Python with onnxruntime, numpy and onnx was found"
        );
    }
    eprintln!("SKIPPED {test}: no Python with onnxruntime/numpy/onnx (run .ci/run or make .venv)");
    None
}

/// The generated "other exporters" fixtures (`fixtures-exporters/`, not in git): Keras
/// applications converted by tf2onnx (`keras_*`) and the `onnx` package's light zoo CNNs with
/// random weights (`zoo_*`), written by `scripts/make_exporter_fixtures.py` (which `.ci/run`
/// calls). Returns the folders whose name starts with `prefix`; when there are none the
/// caller should skip, and this prints a visible line saying so; with
/// `MNC_REQUIRE_PYTHON=1` (set by `.ci/run`) it panics instead.
pub fn exporter_fixtures(test: &str, prefix: &str) -> Vec<PathBuf> {
    let root = repo_root().join("fixtures-exporters");
    let v: Vec<PathBuf> = fixtures_in(&root)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    if v.is_empty() {
        if std::env::var("MNC_REQUIRE_PYTHON").as_deref() == Ok("1") {
            panic!(
                "{test}: MNC_REQUIRE_PYTHON=1 but {} holds no {prefix}* fixtures",
                root.display()
            );
        }
        eprintln!(
            "SKIPPED {test}: no {prefix}* fixtures in {} (python scripts/make_exporter_fixtures.py fixtures-exporters)",
            root.display()
        );
    }
    v
}
