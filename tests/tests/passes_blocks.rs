//! Differential tests of the optimization passes against the reference executor: for a
//! MobileNetV2 inverted-residual block, a MobileNetV3 block with SE + HardSwish and an
//! EfficientNet MBConv block with SE + SiLU (built with random weights and BatchNorm nodes by
//! `mnc_passes::samples`), the output after the full pipeline and after each pass alone
//! matches the unoptimized graph to `1e-5 * max|y|` per element.
//!
//! Real fixtures can reuse [`check_graph`] as they are added.

use mnc_ir::{Graph, Op, Tensor};
use mnc_passes::samples::{self, Lcg};
use mnc_passes::{PipelineOptions, PASS_NAMES};

const TOL: f32 = 1e-5;

fn inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Lcg::new(seed);
    g.inputs
        .iter()
        .map(|&i| rng.tensor(&g.node(i).ty.shape, -2.0, 2.0))
        .collect()
}

/// `max|y - y_ref| <= tol * max|y_ref|` per element, for every output.
fn assert_close(got: &[Tensor], want: &[Tensor], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (k, (y, r)) in got.iter().zip(want).enumerate() {
        assert_eq!(y.shape, r.shape, "{what}: output {k} shape");
        let (y, r) = (y.as_f32().unwrap(), r.as_f32().unwrap());
        let scale = r.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            scale > 0.0,
            "{what}: output {k} is all zeros (test would be vacuous)"
        );
        for (i, (a, b)) in y.iter().zip(r).enumerate() {
            assert!(
                (a - b).abs() <= TOL * scale,
                "{what}: output {k} element {i}: {a} vs {b} (tol {})",
                TOL * scale
            );
        }
    }
}

fn opts() -> PipelineOptions {
    PipelineOptions {
        verify: true,
        ..Default::default()
    }
}

/// Runs the full pipeline and every pass alone on copies of `g` and compares each result
/// with the reference executor's output on the original. Returns the optimized graph.
fn check_graph(g: &Graph, name: &str) -> Graph {
    let x = inputs(g, 7);
    let want = mnc_runtime::reference::run(g, &x).unwrap();
    for pass in PASS_NAMES {
        let mut h = g.clone();
        mnc_passes::run_single_pass(&mut h, pass, &opts()).unwrap();
        let got = mnc_runtime::reference::run(&h, &x).unwrap();
        assert_close(&got, &want, &format!("{name} after {pass} alone"));
    }
    let mut h = g.clone();
    mnc_passes::optimize(&mut h, &opts()).unwrap();
    let got = mnc_runtime::reference::run(&h, &x).unwrap();
    assert_close(&got, &want, &format!("{name} after the full pipeline"));
    let mem = mnc_passes::plan_memory(&h, opts().target.alignment).unwrap();
    mem.check().unwrap();
    assert!(mem.arena_bytes <= mem.naive_bytes);
    h
}

fn count(g: &Graph, kind: &str) -> usize {
    g.node_ids()
        .into_iter()
        .filter(|&i| g.node(i).op.kind() == kind)
        .count()
}

#[test]
fn mobilenet_v2_block_matches_reference() {
    let g = samples::mobilenet_v2_block(21).unwrap();
    let h = check_graph(&g, "mbv2");
    assert_eq!(count(&g, "BatchNorm"), 4);
    assert_eq!(count(&h, "BatchNorm"), 0);
    assert_eq!(count(&h, "Act"), 0, "every Clip fused");
    assert_eq!(count(&h, "Add"), 0, "the residual Add fused");
}

#[test]
fn mobilenet_v3_block_matches_reference() {
    let g = samples::mobilenet_v3_block(22).unwrap();
    let h = check_graph(&g, "mbv3");
    assert_eq!(count(&h, "SqueezeExcite"), 1);
    assert_eq!(count(&h, "Conv"), 3);
    assert_eq!(count(&h, "Act") + count(&h, "Mul") + count(&h, "Add"), 0);
}

#[test]
fn efficientnet_mbconv_block_matches_reference() {
    let g = samples::efficientnet_mbconv_block(23).unwrap();
    let h = check_graph(&g, "effnet");
    assert_eq!(count(&h, "SqueezeExcite"), 1);
    assert_eq!(
        count(&h, "Dropout") + count(&h, "Act") + count(&h, "Mul"),
        0
    );
    let silu = h.node_ids().into_iter().filter(|&i| {
        matches!(&h.node(i).op, Op::Conv(c) if c.epilogue.act == Some(mnc_ir::Activation::Silu))
    });
    assert_eq!(silu.count(), 2, "expand and depthwise convs carry SiLU");
}

#[test]
fn cleanup_and_fold_matches_reference() {
    for (name, g) in [
        ("mbv2", samples::mobilenet_v2_block(31).unwrap()),
        ("mbv3", samples::mobilenet_v3_block(32).unwrap()),
        ("effnet", samples::efficientnet_mbconv_block(33).unwrap()),
    ] {
        let x = inputs(&g, 3);
        let want = mnc_runtime::reference::run(&g, &x).unwrap();
        let mut h = g.clone();
        mnc_passes::cleanup_and_fold(&mut h, &opts()).unwrap();
        assert_eq!(count(&h, "BatchNorm") + count(&h, "Dropout"), 0, "{name}");
        let got = mnc_runtime::reference::run(&h, &x).unwrap();
        assert_close(&got, &want, &format!("{name} after cleanup_and_fold"));
    }
}
