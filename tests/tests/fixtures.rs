//! Every committed fixture (tests/fixtures/<name>/: model.onnx, input.npy, output.npy made by
//! scripts/make_fixtures.py with onnxruntime) imports with static shapes and runs on the
//! reference executor within `1e-4 * max|y_ref|` of onnxruntime's output, element by element,
//! at its own batch and re-specialized to twice that batch (also for static batch-1
//! exports). The full-size models of `fixtures-full/` are checked the same way (ignored test).

use mnc::onnx::{import_file, ImportOptions};
use mnc_ir::Tensor;
use mnc_tests::{assert_close, fixtures, fixtures_in, repo_root};
use std::path::Path;

/// The `.npy` tensor at `p` repeated `tile` times along its first axis.
fn read_tiled(p: &Path, tile: usize) -> Tensor {
    let t = mnc::io::read_npy(p).unwrap_or_else(|e| panic!("{e:#}"));
    if tile == 1 {
        return t;
    }
    let mut shape = t.shape.clone();
    shape[0] *= tile;
    Tensor::from_f32(shape, t.as_f32().expect("f32 .npy").repeat(tile)).unwrap()
}

/// Imports `dir/model.onnx` with its batch set to `tile` times the batch of `dir/input.npy`,
/// runs it on the reference executor on the input
/// repeated `tile` times and compares with `dir/output.npy` (onnxruntime's output, repeated):
/// `max|y - y_ref| <= 1e-4 * max|y_ref|`. Returns the node count.
fn check_fixture(dir: &Path, tile: usize) -> usize {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let x = read_tiled(&dir.join("input.npy"), tile);
    let y_ref = read_tiled(&dir.join("output.npy"), tile);
    let opts = ImportOptions {
        batch: Some(x.shape[0]),
    };
    let g = import_file(&dir.join("model.onnx"), &opts)
        .unwrap_or_else(|e| panic!("{name}: import failed: {e}"));
    mnc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{name}: verify: {e}"));
    assert_eq!(g.inputs.len(), 1, "{name}");
    assert_eq!(g.node(g.inputs[0]).ty.shape, x.shape, "{name}: input shape");
    let y = mnc_runtime::reference::run(&g, &[x]).unwrap_or_else(|e| panic!("{name}: run: {e}"));
    assert_eq!(y[0].shape, y_ref.shape, "{name}: output shape");
    let what = format!("{name} (batch x{tile})");
    assert_close(&what, y[0].as_f32().unwrap(), y_ref.as_f32().unwrap(), 1e-4);
    g.node_count()
}

#[test]
fn fixtures_match_onnxruntime_on_the_reference_executor() {
    let all = fixtures();
    assert!(
        all.len() >= 4,
        "expected the committed fixtures, found {}",
        all.len()
    );
    for dir in all {
        let nodes = check_fixture(&dir, 1);
        check_fixture(&dir, 2);
        eprintln!("{}: ok ({nodes} nodes)", dir.display());
    }
}

/// The full-size models that `scripts/make_fixtures.py --full` writes to `fixtures-full/`
/// (not in git; run with `--ignored` after generating them): every one imports and matches
/// onnxruntime.
#[test]
#[ignore = "needs fixtures-full/ (python scripts/make_fixtures.py --full)"]
fn full_size_fixtures_match_onnxruntime() {
    let root = repo_root().join("fixtures-full");
    let dirs = fixtures_in(&root);
    assert!(!dirs.is_empty(), "no fixtures under {}", root.display());
    for d in &dirs {
        let t = std::time::Instant::now();
        check_fixture(d, 1);
        eprintln!("{}: matches onnxruntime ({:?})", d.display(), t.elapsed());
    }
}
