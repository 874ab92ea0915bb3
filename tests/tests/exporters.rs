//! "Any exporter, same graph": Keras applications converted by tf2onnx (NHWC input, every
//! conv wrapped in transposes, BatchNorm as Mul/Add, HardSwish as `x * relu6(x + 3) / 6`,
//! SE means over NHWC axes, the classifier as 1x1 convs) must optimize to the same op classes
//! as the torchvision export of the same architecture (mnc's built-in zoo model), with one
//! Transpose at the input and at most one ChannelAffine (the Keras Rescaling/Normalization
//! preprocessing where it cannot fold exactly into the padded stem conv), run with zero
//! fallbacks on every CPU target and match onnxruntime to `1e-4 * max|y_ref|` per element.
//!
//! The fixtures are generated (tensorflow-cpu and tf2onnx) by
//! `scripts/make_exporter_fixtures.py`, which `.ci/run` calls; without them these tests print
//! a SKIPPED line (and fail under `MNC_REQUIRE_PYTHON=1`).

use mnc::compiled::{CompileOptions, Model, Source};
use mnc_ir::{Op, Tensor};
use mnc_targets::Target;
use mnc_tests::{assert_close, exporter_fixtures};
use std::collections::BTreeMap;
use std::path::Path;

fn meta(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("meta.json")).expect("meta.json");
    serde_json::from_str(&text).expect("meta.json is JSON")
}

fn compile(spec: &str, target: Target, batch: Option<usize>) -> Model {
    let opts = CompileOptions {
        target,
        batch,
        ..Default::default()
    };
    Model::compile(Source::Spec(spec), &opts).unwrap_or_else(|e| panic!("{spec}: {e:#}"))
}

fn tiled(t: &Tensor, n: usize) -> Tensor {
    let mut shape = t.shape.clone();
    shape[0] *= n;
    Tensor::from_f32(shape, t.as_f32().unwrap().repeat(n)).unwrap()
}

#[test]
fn keras_models_optimize_to_the_torchvision_op_classes() {
    let dirs = exporter_fixtures(
        "keras_models_optimize_to_the_torchvision_op_classes",
        "keras_",
    );
    let Some(&target) = Target::jit_targets_for_test("keras op classes").last() else {
        return;
    };
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let tv = meta(&dir)["torchvision_counterpart"]
            .as_str()
            .expect("torchvision_counterpart")
            .to_string();
        let model = dir.join("model.onnx");
        let keras = compile(model.to_str().unwrap(), target, None);
        let torch = compile(&format!("zoo:{tv}"), target, None);
        let mut got: BTreeMap<String, usize> = keras.summary().ops.clone();
        assert_eq!(
            got.remove("Transpose"),
            Some(1),
            "{name}: exactly one Transpose (the NHWC input's)"
        );
        let affine = got.remove("ChannelAffine").unwrap_or(0);
        assert!(affine <= 1, "{name}: {affine} ChannelAffine ops");
        assert_eq!(got, torch.summary().ops, "{name} vs torchvision {tv}");
        // The transpose reads the graph input directly.
        let g = keras.optimized_graph();
        let input = g.inputs[0];
        let t = g
            .node_ids()
            .into_iter()
            .find(|&i| matches!(g.node(i).op, Op::Transpose { .. }))
            .unwrap();
        assert_eq!(g.inputs(t), vec![input], "{name}");
        eprintln!(
            "{name}: {} -> {} nodes, ops {:?} (+1 Transpose, {affine} ChannelAffine) = {tv}",
            keras.summary().nodes_imported,
            keras.summary().nodes_optimized,
            got
        );
    }
}

#[test]
fn keras_models_match_onnxruntime_on_every_cpu_target_with_no_fallback() {
    let dirs = exporter_fixtures("keras_models_match_onnxruntime", "keras_");
    let targets = Target::jit_targets_for_test("keras vs onnxruntime");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let x = mnc::io::read_npy(&dir.join("input.npy")).unwrap();
        let y_ref = mnc::io::read_npy(&dir.join("output.npy")).unwrap();
        let model = dir.join("model.onnx");
        let spec = model.to_str().unwrap();
        for &t in &targets {
            for batch in [1, 2] {
                let m = compile(spec, t, Some(batch));
                let fallbacks = m.summary().codegen.as_ref().map(|c| c.fallbacks);
                assert_eq!(fallbacks, Some(0), "{name} on {t}: fallbacks");
                let y = m.run(&[tiled(&x, batch)]).unwrap();
                let want = tiled(&y_ref, batch);
                assert_eq!(y[0].shape, want.shape, "{name}");
                let what = format!("{name} on {t}, batch {batch}");
                assert_close(&what, y[0].as_f32().unwrap(), want.as_f32().unwrap(), 1e-4);
            }
        }
        // The reference executor on the graph as imported (no passes) agrees too.
        let m = compile(spec, Target::Reference, None);
        let y = m.run(&[x]).unwrap();
        assert_close(&name, y[0].as_f32().unwrap(), y_ref.as_f32().unwrap(), 1e-4);
        eprintln!("{name}: matches onnxruntime on {targets:?} and the reference executor");
    }
}

/// Which passes rewrite each Keras model and the op classes it ends with: reviewed
/// snapshots. Node and change counts are printed, not snapshotted: tf2onnx's output is not
/// deterministic in detail (two conversions of the same EfficientNetB0 differed by one
/// Reshape and the constant names), while which passes act and the final graph are stable.
#[test]
fn keras_per_pass_snapshots() {
    let dirs = exporter_fixtures("keras_per_pass_snapshots", "keras_");
    let Some(&target) = Target::jit_targets_for_test("keras per-pass snapshots").last() else {
        return;
    };
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let model = dir.join("model.onnx");
        let m = compile(model.to_str().unwrap(), target, Some(1));
        let s = m.summary();
        eprintln!(
            "{name}: nodes {} -> {}",
            s.nodes_imported, s.nodes_optimized
        );
        let mut text = String::new();
        for p in &s.passes {
            eprintln!(
                "  {:<16} runs {:>2} changes {:>4} nodes {:>4} -> {:<4} ({:+})",
                p.pass, p.runs, p.changes, p.nodes_before, p.nodes_after, p.nodes_net
            );
            let acted = if p.changes > 0 {
                "rewrites"
            } else {
                "no change"
            };
            text.push_str(&format!("{:<16} {acted}\n", p.pass));
        }
        for (k, v) in &s.ops {
            text.push_str(&format!("{k}: {v}\n"));
        }
        insta::assert_snapshot!(format!("{name}_passes"), text);
    }
}

/// `--nchw-input` (`CompileOptions::nchw_inputs`): the Keras models take NCHW data and the
/// compiled graph has no transpose left; outputs still match onnxruntime's (fed NHWC), on
/// the compiled target and on the reference executor (which runs the inserted transpose).
#[test]
fn keras_models_with_nchw_input_have_no_transpose() {
    let dirs = exporter_fixtures("keras_models_with_nchw_input", "keras_");
    let Some(&target) = Target::jit_targets_for_test("keras nchw input").last() else {
        return;
    };
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let x = mnc::io::read_npy(&dir.join("input.npy")).unwrap();
        let x = mnc_ir::eval::eval_op(
            &Op::Transpose {
                perm: vec![0, 3, 1, 2],
            },
            &[&x],
        )
        .unwrap();
        let y_ref = mnc::io::read_npy(&dir.join("output.npy")).unwrap();
        let model = dir.join("model.onnx");
        for t in [target, Target::Reference] {
            let opts = CompileOptions {
                target: t,
                nchw_inputs: true,
                ..Default::default()
            };
            let m = Model::compile(Source::Spec(model.to_str().unwrap()), &opts).unwrap();
            assert_eq!(m.inputs()[0].shape, x.shape, "{name}");
            if t != Target::Reference {
                assert_eq!(m.summary().ops.get("Transpose"), None, "{name}");
            }
            let y = m.run(std::slice::from_ref(&x)).unwrap();
            let what = format!("{name} (NCHW input) on {t}");
            assert_close(&what, y[0].as_f32().unwrap(), y_ref.as_f32().unwrap(), 1e-4);
        }
    }
}

/// The cost report's depthwise-separable analysis sees through tf2onnx's NHWC transposes and
/// decomposed BatchNorm on the imported graph: Keras MobileNetV2 has the same 17
/// depthwise -> pointwise pairs as the torchvision architecture.
#[test]
fn keras_mobilenet_v2_separable_pairs_on_the_imported_graph() {
    let dirs = exporter_fixtures("keras_mobilenet_v2_separable_pairs", "keras_mobilenet_v2");
    for dir in dirs {
        let opts = mnc::onnx::ImportOptions { batch: Some(1) };
        let g = mnc::onnx::import_file(&dir.join("model.onnx"), &opts).unwrap();
        let keras = mnc::cost::analyze(&g, &Default::default()).unwrap();
        let tv = mnc::model::load("zoo:mobilenet_v2", Some(1)).unwrap();
        let torch = mnc::cost::analyze(&tv, &Default::default()).unwrap();
        assert_eq!(keras.separable.len(), 17);
        assert_eq!(keras.separable.len(), torch.separable.len());
    }
}
