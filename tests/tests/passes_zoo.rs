//! The optimization pipeline on the whole zoo architectures (BatchNorm kept, as a
//! BN-preserving export would give them): every BatchNorm folded, every activation and
//! residual Add fused, every SE block recognized, and the output unchanged (reference
//! executor, at a small resolution to keep the naive kernels fast). Node counts by kind
//! before/after are snapshotted, and so is the whole optimized IR of MobileNetV2 and
//! EfficientNet-B0.

use mnc::zoo::{build, ZooOptions};
use mnc_ir::{Graph, Tensor};
use mnc_passes::samples::Lcg;
use mnc_passes::PipelineOptions;
use mnc_tests::{assert_close, counts_text, kinds};

/// Folding re-rounds every conv weight (see `passes_fixtures.rs` for the measured noise
/// floor); the zoo models keep BN, so they use the same bound.
const TOL_REFOLDED: f32 = 3e-5;

fn zoo(name: &str, resolution: Option<usize>) -> Graph {
    build(
        name,
        &ZooOptions {
            keep_bn: true,
            resolution,
            seed: 5,
            ..Default::default()
        },
    )
    .unwrap()
}

fn opts() -> PipelineOptions {
    PipelineOptions {
        verify: true,
        ..Default::default()
    }
}

#[test]
fn whole_models_fuse_completely() {
    for (name, se) in [
        ("mobilenet_v2", 0),
        ("efficientnet_b0", 16),
        ("mobilenet_v3_large", 8),
    ] {
        let g = zoo(name, None);
        let mut h = g.clone();
        let report = mnc_passes::optimize(&mut h, &opts()).unwrap();
        let a = kinds(&h);
        assert_eq!(a.get("BatchNorm"), None, "{name}");
        assert_eq!(a.get("Act"), None, "{name}: every activation fused");
        assert_eq!(a.get("Add"), None, "{name}: every residual Add fused");
        assert_eq!(a.get("SqueezeExcite").copied().unwrap_or(0), se, "{name}");
        let m = mnc_passes::plan_memory(&h, opts().target.alignment).unwrap();
        println!(
            "{name}: nodes {} -> {}, arena {} bytes, naive {} bytes",
            g.node_count(),
            h.node_count(),
            m.arena_bytes,
            m.naive_bytes
        );
        insta::assert_snapshot!(format!("zoo_counts_{name}"), counts_text(&g, &h));
        if name != "mobilenet_v3_large" {
            // The whole optimized IR of MobileNetV2 and EfficientNet-B0 (x86_64-avx2 facts).
            insta::assert_snapshot!(
                format!("zoo_ir_{name}"),
                mnc_passes::dump(&h, &report).unwrap()
            );
        }
    }
}

#[test]
fn whole_models_match_reference_at_small_resolution() {
    for name in ["mobilenet_v2", "efficientnet_b0", "mobilenet_v3_large"] {
        let g = zoo(name, Some(64));
        let mut rng = Lcg::new(1);
        let x: Vec<Tensor> = g
            .inputs
            .iter()
            .map(|&i| rng.tensor(&g.node(i).ty.shape, -2.0, 2.0))
            .collect();
        let want = mnc_runtime::reference::run(&g, &x).unwrap();
        let mut h = g.clone();
        mnc_passes::optimize(&mut h, &opts()).unwrap();
        let got = mnc_runtime::reference::run(&h, &x).unwrap();
        assert_close(
            &format!("{name} after the full pipeline"),
            got[0].as_f32().unwrap(),
            want[0].as_f32().unwrap(),
            TOL_REFOLDED,
        );
    }
}
