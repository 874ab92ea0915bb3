//! Every committed fixture (tests/fixtures/<name>/: model.onnx, input.npy, output.npy made by
//! scripts/make_fixtures.py with onnxruntime) imports with static shapes and runs on the
//! reference executor within `1e-4 * max|y_ref|` of onnxruntime's output, element by element.

use mnc_tests::{assert_close, fixtures};

#[test]
fn fixtures_match_onnxruntime_on_the_reference_executor() {
    let all = fixtures();
    assert!(all.len() >= 4, "expected the committed fixtures, found {}", all.len());
    for dir in all {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let g = mnc::onnx::import_file(&dir.join("model.onnx"), &Default::default())
            .unwrap_or_else(|e| panic!("{name}: import failed: {e}"));
        mnc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{name}: verify: {e}"));
        let x = mnc::io::read_npy(&dir.join("input.npy")).unwrap();
        let y_ref = mnc::io::read_npy(&dir.join("output.npy")).unwrap();
        let y = mnc_runtime::reference::run(&g, &[x]).unwrap_or_else(|e| panic!("{name}: run: {e}"));
        assert_eq!(y[0].shape, y_ref.shape, "{name}: output shape");
        assert_close(&name, y[0].as_f32().unwrap(), y_ref.as_f32().unwrap(), 1e-4);
        eprintln!("{name}: ok ({} nodes)", g.node_count());
    }
}
