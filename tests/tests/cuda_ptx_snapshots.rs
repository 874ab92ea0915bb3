//! insta snapshots of the PTX the CUDA target emits for a few small kernels (reviewed files
//! under tests/tests/snapshots/): an activation, a pointwise conv as tiled GEMM with fused
//! bias + ReLU6, a depthwise conv with fused residual + SiLU, and an SE block. Also checks
//! that emission is deterministic and arch-specific only in the header.

use mnc_ir::{Activation, Conv, Epilogue, Graph, NodeId, Op, SqueezeExcite, Tensor, TensorType};
use mnc_runtime::cuda::{codegen, CudaArch, CudaOptions};

fn constant(g: &mut Graph, name: &str, shape: &[usize]) -> NodeId {
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect();
    g.add_constant(name, Tensor::from_f32(shape.to_vec(), data).unwrap())
}

fn ptx(g: &Graph) -> String {
    let p = codegen::compile(g, CudaArch::Sm80, &CudaOptions::default()).unwrap();
    let q = codegen::compile(g, CudaArch::Sm80, &CudaOptions::default()).unwrap();
    assert_eq!(p.ptx, q.ptx, "deterministic");
    let h = codegen::compile(g, CudaArch::Sm90, &CudaOptions::default()).unwrap();
    assert_eq!(
        h.ptx
            .replace("sm_90", "sm_80")
            .replace("cuda-sm90", "cuda-sm80"),
        p.ptx
    );
    p.ptx
}

#[test]
fn snapshot_relu6() {
    let mut g = Graph::new("relu6");
    let x = g.add_input("x", TensorType::f32(vec![2, 3, 5]));
    let y = g
        .add_node_inferred(
            "act",
            Op::Act(Activation::Clip { min: 0.0, max: 6.0 }),
            &[x],
        )
        .unwrap();
    g.add_output("y", y);
    insta::assert_snapshot!("cuda_relu6", ptx(&g));
}

#[test]
fn snapshot_pointwise_gemm() {
    let mut g = Graph::new("pointwise");
    let x = g.add_input("x", TensorType::f32(vec![1, 24, 7, 7]));
    let w = constant(&mut g, "w", &[40, 24, 1, 1]);
    let b = constant(&mut g, "b", &[40]);
    let c = Conv {
        has_bias: true,
        epilogue: Epilogue {
            residual: false,
            act: Some(Activation::Clip { min: 0.0, max: 6.0 }),
        },
        ..Default::default()
    };
    let y = g.add_node_inferred("pw", Op::Conv(c), &[x, w, b]).unwrap();
    g.add_output("y", y);
    insta::assert_snapshot!("cuda_pointwise_gemm", ptx(&g));
}

#[test]
fn snapshot_depthwise_residual_silu() {
    let mut g = Graph::new("depthwise");
    let x = g.add_input("x", TensorType::f32(vec![1, 8, 6, 6]));
    let w = constant(&mut g, "w", &[8, 1, 3, 3]);
    let b = constant(&mut g, "b", &[8]);
    let c = Conv {
        kernel: [3, 3],
        pads: [1, 1, 1, 1],
        group: 8,
        has_bias: true,
        epilogue: Epilogue {
            residual: true,
            act: Some(Activation::Silu),
        },
        ..Default::default()
    };
    let y = g
        .add_node_inferred("dw", Op::Conv(c), &[x, w, b, x])
        .unwrap();
    g.add_output("y", y);
    insta::assert_snapshot!("cuda_depthwise_residual_silu", ptx(&g));
}

#[test]
fn snapshot_squeeze_excite() {
    let mut g = Graph::new("se");
    let x = g.add_input("x", TensorType::f32(vec![1, 16, 4, 4]));
    let w1 = constant(&mut g, "w1", &[4, 16, 1, 1]);
    let b1 = constant(&mut g, "b1", &[4]);
    let w2 = constant(&mut g, "w2", &[16, 4, 1, 1]);
    let b2 = constant(&mut g, "b2", &[16]);
    let se = SqueezeExcite {
        act: Activation::Relu,
        gate: Activation::HardSigmoid {
            alpha: 1.0 / 6.0,
            beta: 0.5,
        },
    };
    let y = g
        .add_node_inferred("se", Op::SqueezeExcite(se), &[x, w1, b1, w2, b2])
        .unwrap();
    g.add_output("y", y);
    insta::assert_snapshot!("cuda_squeeze_excite", ptx(&g));
}

/// int8 (issue 14): `QuantizeLinear` (u8), a 3x3 `QConv` over 3 channels (one partial
/// `dp4a` quad per tap, 2 output channels per thread, ReLU as the output range), and
/// `DequantizeLinear`.
#[test]
fn snapshot_int8_qconv() {
    use mnc_ir::{DType, QConv, QParams};
    let mut g = Graph::new("int8_qconv");
    let x = g.add_input("x", TensorType::f32(vec![1, 3, 4, 4]));
    let xp = QParams::per_tensor(DType::U8, 0.02, 128);
    let yp = QParams::per_tensor(DType::U8, 0.05, 4);
    let xq = g
        .add_node_inferred("xq", Op::Quantize(xp.clone()), &[x])
        .unwrap();
    let w = Tensor::from_i32_values(
        vec![2, 3, 3, 3],
        DType::I8,
        (0..54).map(|i| i * 5 % 255 - 127).collect(),
    )
    .unwrap();
    let w = g.add_constant("w", w);
    let b = g.add_constant(
        "b",
        Tensor::from_i32_values(vec![2], DType::I32, vec![100, -100]).unwrap(),
    );
    let q = QConv {
        conv: Conv {
            kernel: [3, 3],
            pads: [1, 1, 1, 1],
            has_bias: true,
            epilogue: Epilogue {
                residual: false,
                act: Some(Activation::Relu),
            },
            ..Default::default()
        },
        x: xp,
        w: QParams::per_tensor(DType::I8, 0.01, 0),
        y: yp.clone(),
        residual: None,
    };
    let c = g
        .add_node_inferred("qconv", Op::QConv(Box::new(q)), &[xq, w, b])
        .unwrap();
    let y = g.add_node_inferred("y", Op::Dequantize(yp), &[c]).unwrap();
    g.add_output("y", y);
    insta::assert_snapshot!("cuda_int8_qconv", ptx(&g));
}

/// int8 (issue 14): a pointwise `QConv` of 24 u8 channels to 20 (i8 activations after a
/// Quantize): the tensor-core kernel (`mma.m16n8k32`, one partial 32-channel step, a
/// partial 16-row tile, 5x5 pixels in one 64-pixel tile), Clip(0, 6) as the output range.
#[test]
fn snapshot_int8_qconv_mma() {
    use mnc_ir::{DType, QConv, QParams};
    let mut g = Graph::new("int8_qconv_mma");
    let x = g.add_input("x", TensorType::f32(vec![1, 24, 5, 5]));
    let xp = QParams::per_tensor(DType::I8, 0.02, -4);
    let yp = QParams::per_tensor(DType::U8, 0.05, 0);
    let xq = g
        .add_node_inferred("xq", Op::Quantize(xp.clone()), &[x])
        .unwrap();
    let w = Tensor::from_i32_values(
        vec![20, 24, 1, 1],
        DType::I8,
        (0..480).map(|i| i * 7 % 255 - 127).collect(),
    )
    .unwrap();
    let w = g.add_constant("w", w);
    let q = QConv {
        conv: Conv {
            epilogue: Epilogue {
                residual: false,
                act: Some(Activation::Clip { min: 0.0, max: 6.0 }),
            },
            ..Default::default()
        },
        x: xp,
        w: QParams::per_tensor(DType::I8, 0.01, 0),
        y: yp.clone(),
        residual: None,
    };
    let c = g
        .add_node_inferred("qconv", Op::QConv(Box::new(q)), &[xq, w])
        .unwrap();
    let y = g.add_node_inferred("y", Op::Dequantize(yp), &[c]).unwrap();
    g.add_output("y", y);
    let text = ptx(&g);
    assert!(text.contains("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32"));
    insta::assert_snapshot!("cuda_int8_qconv_mma", text);
}
