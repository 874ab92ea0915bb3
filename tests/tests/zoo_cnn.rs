//! The classic ONNX-zoo CNNs (issue 11): ResNet50, SqueezeNet 1.0, ShuffleNet, DenseNet121,
//! Inception v1 and v2, AlexNet and VGG19, as the `onnx` package's light models (Caffe2 exports, opset 9) with seeded random weights, written with onnxruntime's
//! outputs by `scripts/make_exporter_fixtures.py` into `fixtures-exporters/zoo_*` (not in
//! git; the tests print a SKIPPED line without them).
//!
//! Each model is imported, optimized and compiled for every JIT target the host runs; it must
//! compile without a single fallback op, and both of onnxruntime's outputs must agree per
//! element within `1e-4 * max|y|`: the softmax output (`output.npy`) and, where the fixture
//! has it, the softmax input (`logits.npy`, the model's second output). The time each model
//! takes is printed (not asserted): with the test profile, one thread, on a 2-core AVX-512
//! host, the six small models take about 6 s in all (three targets each), AlexNet 5 s and
//! VGG19 18 s (2.3 GB peak resident memory), so the two large ones are a separate test that
//! runs in parallel with the first rather than an ignored one.

use mnc::onnx::{import_file, ImportOptions};
use mnc_runtime::cpu::{CompiledModel, CpuOptions, Target};
use mnc_tests::{assert_close, exporter_fixtures, max_errors};
use std::path::Path;
use std::time::Instant;

/// Models whose weights make them slow to import and compile (AlexNet 244 MB, VGG19 575 MB):
/// in their own test.
const LARGE: &[&str] = &["zoo_alexnet", "zoo_vgg19"];

fn check_model(dir: &Path) {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let t0 = Instant::now();
    let mut g = import_file(&dir.join("model.onnx"), &ImportOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    mnc_passes::optimize(&mut g, &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let t_opt = t0.elapsed();
    let x = mnc::io::read_npy(&dir.join("input.npy")).unwrap();
    let mut want = vec![(
        "output",
        mnc::io::read_npy(&dir.join("output.npy")).unwrap(),
    )];
    let logits = dir.join("logits.npy");
    if logits.is_file() {
        want.push(("logits", mnc::io::read_npy(&logits).unwrap()));
    }
    assert_eq!(g.outputs.len(), want.len(), "{name}: graph outputs");
    let opts = CpuOptions {
        threads: 1,
        ..Default::default()
    };
    for t in Target::jit_targets_for_test(&name) {
        let t1 = Instant::now();
        let m = CompiledModel::compile(&g, t, &opts).unwrap_or_else(|e| panic!("{name} {t}: {e}"));
        let t_compile = t1.elapsed();
        let report = m.report();
        assert_eq!(
            report.fallbacks(),
            0,
            "{name} {t}: fallback ops\n{}",
            report.to_text()
        );
        let t2 = Instant::now();
        let y = m
            .run(std::slice::from_ref(&x))
            .unwrap_or_else(|e| panic!("{name} {t}: {e}"));
        let t_run = t2.elapsed();
        assert_eq!(y.len(), want.len(), "{name} {t}: outputs");
        let mut errs = Vec::new();
        for (got, (what, w)) in y.iter().zip(&want) {
            assert_eq!(got.shape, w.shape, "{name} {t} {what}: shape");
            let (g, r) = (got.as_f32().unwrap(), w.as_f32().unwrap());
            assert_close(&format!("{name} {t} {what}"), g, r, 1e-4);
            let (err, scale) = max_errors(g, r);
            errs.push(format!(
                "{what} max err {:.2e} (rel {:.2e})",
                err,
                err / scale
            ));
        }
        println!(
            "{name:18} {t}: import+optimize {:.2} s, compile {:.2} s, run {:.0} ms; {}",
            t_opt.as_secs_f64(),
            t_compile.as_secs_f64(),
            t_run.as_secs_f64() * 1e3,
            errs.join(", ")
        );
    }
    println!("{name:18} total {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn zoo_cnns_compile_without_fallbacks_and_match_onnxruntime() {
    let dirs = exporter_fixtures("zoo_cnn", "zoo_");
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy();
        if !LARGE.contains(&name.as_ref()) {
            check_model(dir);
        }
    }
}

#[test]
fn large_zoo_cnns_compile_without_fallbacks_and_match_onnxruntime() {
    let dirs = exporter_fixtures("zoo_cnn_large", "zoo_");
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy();
        if LARGE.contains(&name.as_ref()) {
            check_model(dir);
        }
    }
}
