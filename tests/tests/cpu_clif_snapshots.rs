//! insta snapshots of the Cranelift IR (CLIF) the CPU backend generates for one small
//! inverted-residual block (reviewed files under tests/tests/snapshots/): on the SSE baseline,
//! where the depthwise conv and every epilogue are generated code, and on AVX-512, where the
//! functions call the `std::arch` kernels with their call descriptions (GEMM, depthwise) from
//! the weights blob. Generating code runs nothing, so the snapshots hold on any x86-64 host.
//! A change to the lowering, the kernels' call signatures or the emitted epilogue shows here
//! as a diff to review.

use mnc_ir::{Activation, Conv, Epilogue, Graph, NodeId, Op, Tensor, TensorType};
use mnc_targets::cpu::{compile, CpuOptions};
use mnc_targets::Target;

fn constant(g: &mut Graph, name: &str, shape: &[usize]) -> NodeId {
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| (i % 7) as f32 * 0.125 - 0.375).collect();
    g.add_constant(name, Tensor::from_f32(shape.to_vec(), data).unwrap())
}

/// x [1, 8, 6, 6] -> 1x1 expand to 16 (bias, ReLU6) -> 3x3 depthwise (bias, ReLU6) -> 1x1
/// project to 8 (bias, + x): MobileNetV2's block at toy size, epilogues already fused.
fn block() -> Graph {
    let mut g = Graph::new("block");
    let x = g.add_input("x", TensorType::f32(vec![1, 8, 6, 6]));
    let relu6 = Some(Activation::Clip { min: 0.0, max: 6.0 });
    let (w1, b1) = (
        constant(&mut g, "w1", &[16, 8, 1, 1]),
        constant(&mut g, "b1", &[16]),
    );
    let expand = Conv {
        has_bias: true,
        epilogue: Epilogue {
            residual: false,
            act: relu6,
        },
        ..Default::default()
    };
    let e = g
        .add_node_inferred("expand", Op::Conv(expand), &[x, w1, b1])
        .unwrap();
    let (w2, b2) = (
        constant(&mut g, "w2", &[16, 1, 3, 3]),
        constant(&mut g, "b2", &[16]),
    );
    let dw = Conv {
        kernel: [3, 3],
        pads: [1, 1, 1, 1],
        group: 16,
        has_bias: true,
        epilogue: Epilogue {
            residual: false,
            act: relu6,
        },
        ..Default::default()
    };
    let d = g
        .add_node_inferred("dw", Op::Conv(dw), &[e, w2, b2])
        .unwrap();
    let (w3, b3) = (
        constant(&mut g, "w3", &[8, 16, 1, 1]),
        constant(&mut g, "b3", &[8]),
    );
    let project = Conv {
        has_bias: true,
        epilogue: Epilogue {
            residual: true,
            act: None,
        },
        ..Default::default()
    };
    let y = g
        .add_node_inferred("project", Op::Conv(project), &[d, w3, b3, x])
        .unwrap();
    g.add_output("y", y);
    g
}

/// The CLIF of every generated function, one thread (no task split in the descriptions).
fn clif(target: Target) -> String {
    let opts = CpuOptions {
        keep_clif: true,
        threads: 1,
        ..CpuOptions::default()
    };
    let p = compile(&block(), target, &opts).unwrap();
    let again = compile(&block(), target, &opts).unwrap();
    assert_eq!(p.clif_text(), again.clif_text(), "deterministic");
    p.clif_text()
}

#[test]
fn snapshot_block_sse() {
    insta::assert_snapshot!("cpu_clif_block_x86_64", clif(Target::X86_64));
}

#[test]
fn snapshot_block_avx512() {
    insta::assert_snapshot!("cpu_clif_block_x86_64_avx512", clif(Target::X86_64Avx512));
}
