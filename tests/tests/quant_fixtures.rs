//! The QDQ model onnxruntime's `quantize_static` wrote (`tests/fixtures/quant/`, made by
//! `scripts/make_quant_fixtures.py`) on every JIT target the host runs: its convs fold into
//! integer convs (`qdq-fold`; the classifier Gemm too, as a 1x1 conv), nothing falls back
//! to the reference kernels, and the output
//! equals onnxruntime's int8 output within one step of the output's quantization on every
//! element (measured: equal). The reference executor (DequantizeLinear -> f32 op ->
//! QuantizeLinear) is held to the same bound.

use mnc::compiled::{CompileOptions, Model, Source};
use mnc::exec::ExecOptions;
use mnc_ir::{Op, Tensor};
use mnc_targets::Target;

fn fixture(name: &str) -> std::path::PathBuf {
    mnc_tests::repo_root()
        .join("tests/fixtures/quant")
        .join(name)
}

fn read(name: &str) -> Tensor {
    mnc::io::read_npy(&fixture(name)).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The scale of the model's output `QuantizeLinear` (the step the bound is measured in).
fn output_step(m: &Model) -> f32 {
    let g = m.optimized_graph();
    let out = g.outputs[0].node;
    match &g.node(out).op {
        Op::Dequantize(q) => q.scale[0],
        op => panic!("the output is made by {}, not DequantizeLinear", op.kind()),
    }
}

fn max_steps(y: &Tensor, want: &Tensor, step: f32) -> f32 {
    assert_eq!(y.shape, want.shape);
    y.as_f32()
        .unwrap()
        .iter()
        .zip(want.as_f32().unwrap())
        .map(|(a, b)| (a - b).abs() / step)
        .fold(0.0, f32::max)
}

#[test]
fn onnxruntime_qdq_model_runs_in_int8_and_matches_onnxruntime() {
    let path = fixture("model_qdq_ort.onnx");
    let spec = path.to_str().unwrap();
    let x = read("input.npy");
    let want = read("output_qdq_ort.npy");
    let reference = Model::compile(
        Source::Spec(spec),
        &CompileOptions {
            target: Target::Reference,
            ..Default::default()
        },
    )
    .unwrap();
    let step = output_step(&reference);
    let y = reference.run(std::slice::from_ref(&x)).unwrap();
    let steps = max_steps(&y[0], &want, step);
    eprintln!("reference: max |y - y_ort| = {steps} output steps");
    // The integer ops compute what onnxruntime's fused kernels compute: equal, not close.
    assert_eq!(steps, 0.0, "reference: {steps} steps");
    for t in Target::jit_targets_for_test("quant_fixtures") {
        for threads in [1, 2] {
            let m = Model::compile(
                Source::Spec(spec),
                &CompileOptions {
                    target: t,
                    exec: ExecOptions {
                        threads,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .unwrap();
            let g = m.optimized_graph();
            let kinds = mnc_tests::kinds(g);
            assert_eq!(
                kinds.get("Conv"),
                None,
                "{t}: every conv is integer: {kinds:?}"
            );
            assert_eq!(
                kinds.get("Gemm"),
                None,
                "{t}: the classifier too: {kinds:?}"
            );
            assert_eq!(
                kinds.get("QConv"),
                Some(&14),
                "{t}: 13 convs and the Gemm: {kinds:?}"
            );
            // The two residual sums fuse into their projection convs (`residual-fusion`).
            assert_eq!(kinds.get("QAdd"), None, "{t}: the residual sums: {kinds:?}");
            let fused = g
                .node_ids()
                .into_iter()
                .filter(
                    |&id| matches!(&g.node(id).op, mnc_ir::Op::QConv(q) if q.residual.is_some()),
                )
                .count();
            assert_eq!(fused, 2, "{t}: convs with a fused residual sum");
            assert_eq!(
                kinds.get("QGlobalAveragePool"),
                Some(&1),
                "{t}: the pool: {kinds:?}"
            );
            let codegen = m
                .summary()
                .codegen
                .as_ref()
                .expect("a JIT target's codegen figures");
            assert_eq!(
                codegen.fallbacks, 0,
                "{t}: every op runs on generated code or a kernel"
            );
            let y = m.run(std::slice::from_ref(&x)).unwrap();
            let steps = max_steps(&y[0], &want, step);
            eprintln!("{t}, {threads} thread(s): max |y - y_ort| = {steps} output steps");
            assert_eq!(steps, 0.0, "{t}: {steps} steps");
        }
    }
}
