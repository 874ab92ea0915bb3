//! Helpers shared by the CUDA integration tests: the models every check runs on (committed
//! fixtures and zoo models), the optimization pipeline, ptxas discovery and deterministic
//! inputs.

#![allow(dead_code)]

use mnc::onnx::{import_file, ImportOptions};
use mnc::zoo::{build, names, ZooOptions};
use mnc_ir::{Graph, NodeId, Tensor};
use mnc_passes::{optimize, PipelineOptions};
use std::path::PathBuf;

/// The committed fixtures folder: the source tree's when it exists, else `tests/fixtures`
/// under the current directory (test binaries carried to another machine run from a copy
/// of the repository root).
pub fn fixtures_dir() -> PathBuf {
    let d = mnc_tests::fixtures_dir();
    if d.is_dir() {
        d
    } else {
        PathBuf::from("tests").join("fixtures")
    }
}

/// Every committed fixture model: (fixture name, imported graph).
pub fn fixture_models() -> Vec<(String, Graph)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("model.onnx").is_file())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no fixtures found under {}",
        fixtures_dir().display()
    );
    dirs.into_iter()
        .map(|d| {
            let name = d.file_name().unwrap().to_string_lossy().to_string();
            let g = import_file(&d.join("model.onnx"), &ImportOptions::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, g)
        })
        .collect()
}

/// Every zoo model at `resolution` and `batch` (BN folded, as exporters write them).
pub fn zoo_models(resolution: usize, batch: usize) -> Vec<(String, Graph)> {
    names()
        .iter()
        .map(|&n| {
            let o = ZooOptions {
                resolution: Some(resolution),
                batch,
                ..Default::default()
            };
            (
                n.to_string(),
                build(n, &o).unwrap_or_else(|e| panic!("{n}: {e}")),
            )
        })
        .collect()
}

/// `g` after the full optimization pipeline (fused epilogues, SE ops).
pub fn optimized(g: &Graph) -> Graph {
    let mut h = g.clone();
    let opts = PipelineOptions {
        verify: false,
        ..Default::default()
    };
    optimize(&mut h, &opts).unwrap_or_else(|e| panic!("{}: optimize: {e}", g.name));
    h
}

/// Deterministic inputs in [-1, 1) for every graph input.
pub fn inputs_for(g: &Graph, seed: u64) -> Vec<Tensor> {
    g.inputs
        .iter()
        .enumerate()
        .map(|(k, &id)| {
            mnc_passes::samples::Lcg::new(seed + k as u64).tensor(&g.node(id).ty.shape, -1.0, 1.0)
        })
        .collect()
}

/// The ptxas installed by `scripts/install-ptxas.sh` (under `.ptxas/`), if any.
pub fn ptxas() -> Option<PathBuf> {
    let root = mnc_tests::repo_root().join(".ptxas");
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "ptxas")
                && p.parent().is_some_and(|b| b.ends_with("bin"))
            {
                return Some(p);
            }
        }
    }
    None
}

/// The onnxruntime QDQ fixture (`tests/fixtures/quant/`) after the optimization pipeline
/// for the CUDA targets (their facts: integer convs without fused residual sums): its convs
/// and classifier folded into `QConv`s, the residual sums into `QAdd`s, the pool into a
/// `QGlobalAveragePool` (`qdq-fold`).
pub fn quant_fixture() -> Graph {
    let path = fixtures_dir().join("quant").join("model_qdq_ort.onnx");
    let g = import_file(&path, &ImportOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = g.clone();
    let opts = PipelineOptions {
        verify: false,
        target: mnc_passes::TargetFacts::cuda_sm80(),
        ..Default::default()
    };
    optimize(&mut h, &opts).unwrap_or_else(|e| panic!("{}: optimize: {e}", g.name));
    h
}

/// Deterministic integers in `lo..=hi`.
fn ints(n: usize, seed: u64, lo: i32, hi: i32) -> Vec<i32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + ((s >> 33) % (hi - lo + 1) as u64) as i32
        })
        .collect()
}

/// Synthetic graphs with every int8 op and every form of the CUDA int8 kernels, f32 in and
/// out (quantize at the start, dequantize at the end) plus some u8/i8 outputs:
/// `QConv` dense 3x3 (u8 and i8 inputs, bias, ReLU/Clip/none, u8 and i8 outputs), grouped
/// with 3 channels per group (a partial `dp4a` quad), 1x1 strided, depthwise 3x3 stride 2
/// and 5x5 dilated (a partial tap quad), a channel multiplier; `QLut` (i8 -> u8 and u8 ->
/// u8), `QAdd`, `QMul` with one value per channel (the SE form), `QGlobalAveragePool`, the
/// integer `Pad`, per-axis `QuantizeLinear`/`DequantizeLinear`. `batch` images.
pub fn int8_graphs(batch: usize) -> Vec<(String, Graph)> {
    use mnc_ir::{
        Activation, Conv, DType, Epilogue, Op, QBinary, QBinaryOp, QConv, QLut, QMean, QParams,
        QType, TensorType,
    };
    let pt = QParams::per_tensor;
    let mut g = Graph::new("int8_ops");
    let x = g.add_input("x", TensorType::f32(vec![batch, 6, 11, 10]));
    let xq = g
        .add_node_inferred("xq", Op::Quantize(pt(DType::U8, 0.011, 120)), &[x])
        .unwrap();
    let xi = g
        .add_node_inferred("xi", Op::Quantize(pt(DType::I8, 0.009, -7)), &[x])
        .unwrap();
    let mut seed = 1u64;
    let mut qconv = |g: &mut Graph,
                     name: &str,
                     x: NodeId,
                     xp: QParams,
                     co: usize,
                     conv: Conv,
                     y: QParams,
                     per_channel: bool| {
        let ci = g.node(x).ty.shape[1];
        let cig = ci / conv.group;
        let n = co * cig * conv.kernel[0] * conv.kernel[1];
        seed += 1;
        let w = Tensor::from_i32_values(
            vec![co, cig, conv.kernel[0], conv.kernel[1]],
            DType::I8,
            ints(n, seed, -127, 127),
        )
        .unwrap();
        let wc = g.add_constant(format!("{name}.w"), w);
        let wq = if per_channel {
            QParams {
                dtype: DType::I8,
                axis: Some(0),
                scale: (0..co).map(|o| 0.002 + 0.0003 * o as f32).collect(),
                zero_point: vec![0; co],
            }
        } else {
            pt(DType::I8, 0.0025, 0)
        };
        let mut ins = vec![x, wc];
        if conv.has_bias {
            let b = Tensor::from_i32_values(vec![co], DType::I32, ints(co, seed + 99, -3000, 3000))
                .unwrap();
            ins.push(g.add_constant(format!("{name}.b"), b));
        }
        let op = Op::QConv(Box::new(QConv {
            conv,
            x: xp,
            w: wq,
            y,
            residual: None,
        }));
        g.add_node_inferred(name, op, &ins).unwrap()
    };
    let relu = Epilogue {
        residual: false,
        act: Some(Activation::Relu),
    };
    let clip = Epilogue {
        residual: false,
        act: Some(Activation::Clip { min: 0.0, max: 6.0 }),
    };
    let a_p = pt(DType::U8, 0.05, 3);
    // dense 3x3, u8 in, bias, ReLU, per channel
    let c1 = qconv(
        &mut g,
        "c1",
        xq,
        pt(DType::U8, 0.011, 120),
        8,
        Conv {
            kernel: [3, 3],
            pads: [1, 1, 1, 1],
            has_bias: true,
            epilogue: relu,
            ..Default::default()
        },
        a_p.clone(),
        true,
    );
    // dense 3x3 stride 2, i8 in, i8 out, no activation, per-tensor weights, asymmetric pads
    let c2 = qconv(
        &mut g,
        "c2",
        xi,
        pt(DType::I8, 0.009, -7),
        16,
        Conv {
            kernel: [3, 3],
            strides: [2, 2],
            pads: [0, 1, 1, 0],
            has_bias: true,
            ..Default::default()
        },
        pt(DType::I8, 0.04, 5),
        false,
    );
    // grouped: 2 groups of 3 input channels (a partial quad), 6 outputs (3 per group)
    let c3 = qconv(
        &mut g,
        "c3",
        xq,
        pt(DType::U8, 0.011, 120),
        6,
        Conv {
            kernel: [3, 3],
            pads: [1, 1, 1, 1],
            group: 2,
            has_bias: true,
            epilogue: clip,
            ..Default::default()
        },
        pt(DType::U8, 0.03, 0),
        true,
    );
    // depthwise 3x3 stride 2 on c1 (9 taps: a partial tap quad)
    let d1 = qconv(
        &mut g,
        "d1",
        c1,
        a_p.clone(),
        8,
        Conv {
            kernel: [3, 3],
            strides: [2, 2],
            pads: [1, 1, 1, 1],
            group: 8,
            has_bias: true,
            epilogue: clip,
            ..Default::default()
        },
        pt(DType::U8, 0.04, 0),
        true,
    );
    // depthwise 5x5 dilation 2 with a channel multiplier of 2, no bias
    let d2 = qconv(
        &mut g,
        "d2",
        c1,
        a_p.clone(),
        16,
        Conv {
            kernel: [5, 5],
            dilations: [2, 2],
            pads: [4, 4, 4, 4],
            group: 8,
            ..Default::default()
        },
        pt(DType::U8, 0.1, 128),
        true,
    );
    // pointwise 1x1 stride 2 over 16 channels (four full quads, 4 channels per thread)
    let p1 = qconv(
        &mut g,
        "p1",
        d2,
        pt(DType::U8, 0.1, 128),
        8,
        Conv {
            strides: [2, 2],
            has_bias: true,
            epilogue: relu,
            ..Default::default()
        },
        pt(DType::U8, 0.06, 10),
        true,
    );
    // pointwise 1x1 stride 1 over 16 channels, 21 outputs: the tensor-core `mma` kernel
    // (a partial 32-channel step, a partial 16-row tile, ragged pixels)
    let p2 = qconv(
        &mut g,
        "p2",
        d2,
        pt(DType::U8, 0.1, 128),
        21,
        Conv {
            has_bias: true,
            epilogue: clip,
            ..Default::default()
        },
        pt(DType::U8, 0.05, 3),
        true,
    );
    // the same on i8 activations (`mma` with i8 x i8)
    let p3 = qconv(
        &mut g,
        "p3",
        c2,
        pt(DType::I8, 0.04, 5),
        9,
        Conv {
            has_bias: true,
            ..Default::default()
        },
        pt(DType::I8, 0.05, -2),
        false,
    );
    // QLut i8 -> u8 (a HardSwish-like table) and u8 -> u8
    let l1 = g
        .add_node_inferred(
            "l1",
            Op::QLut(QLut::of(QType::I8, QType::U8, |v| {
                (v * v) / 40 + v / 3 + 20
            })),
            &[c2],
        )
        .unwrap();
    let l2 = g
        .add_node_inferred(
            "l2",
            Op::QLut(QLut::of(QType::U8, QType::U8, |v| 255 - v / 2)),
            &[d1],
        )
        .unwrap();
    // QAdd of two u8 tensors of one shape, then the SE form: QGlobalAveragePool and QMul
    // by one value per channel
    let add = g
        .add_node_inferred(
            "add",
            Op::QBinary(QBinary {
                op: QBinaryOp::Add,
                a: pt(DType::U8, 0.04, 0),
                b: pt(DType::U8, 0.04, 0),
                y: pt(DType::U8, 0.07, 9),
            }),
            &[d1, l2],
        )
        .unwrap();
    let gap = g
        .add_node_inferred(
            "gap",
            Op::QGlobalAveragePool(QMean {
                x: pt(DType::U8, 0.07, 9),
                y: pt(DType::U8, 0.02, 2),
            }),
            &[add],
        )
        .unwrap();
    let mul = g
        .add_node_inferred(
            "mul",
            Op::QBinary(QBinary {
                op: QBinaryOp::Mul,
                a: pt(DType::U8, 0.07, 9),
                b: pt(DType::U8, 0.02, 2),
                y: pt(DType::U8, 0.05, 20),
            }),
            &[add, gap],
        )
        .unwrap();
    // the integer Pad of a quantized tensor (its zero point), then a 3x3 conv without pads
    let pad = g
        .add_node_inferred(
            "pad",
            Op::Pad {
                pads: vec![0, 0, 1, 2, 0, 0, 2, 1],
                value: 20.0,
            },
            &[mul],
        )
        .unwrap();
    let c4 = qconv(
        &mut g,
        "c4",
        pad,
        pt(DType::U8, 0.05, 20),
        5,
        Conv {
            kernel: [3, 3],
            has_bias: true,
            ..Default::default()
        },
        pt(DType::U8, 0.08, 100),
        true,
    );
    let deq = |g: &mut Graph, name: &str, x: NodeId, p: QParams| {
        g.add_node_inferred(name, Op::Dequantize(p), &[x]).unwrap()
    };
    let y1 = deq(&mut g, "y1", c4, pt(DType::U8, 0.08, 100));
    let y2 = deq(&mut g, "y2", p1, pt(DType::U8, 0.06, 10));
    let y3 = deq(&mut g, "y3", l1, pt(DType::U8, 0.01, 0));
    let y4 = deq(&mut g, "y4", c3, pt(DType::U8, 0.03, 0));
    let y6 = deq(&mut g, "y6", p2, pt(DType::U8, 0.05, 3));
    // per-axis quantize/dequantize (i8 along the channels)
    let ax = QParams {
        dtype: DType::I8,
        axis: Some(1),
        scale: (0..6).map(|c| 0.004 + 0.002 * c as f32).collect(),
        zero_point: (0..6).map(|c| c * 7 - 20).collect(),
    };
    let xa = g
        .add_node_inferred("xa", Op::Quantize(ax.clone()), &[x])
        .unwrap();
    let y5 = deq(&mut g, "y5", xa, ax);
    for (name, id) in [
        ("y1", y1),
        ("y2", y2),
        ("y3", y3),
        ("y4", y4),
        ("y5", y5),
        ("y6", y6),
        ("p3_i8", p3),
        ("mul_u8", mul),
        ("c2_i8", c2),
    ] {
        g.add_output(name, id);
    }
    vec![("int8_ops".to_string(), g)]
}
