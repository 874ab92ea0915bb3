//! Unit tests of the CUDA lowering (no GPU needed): determinism, kernel selection, buffer
//! planning and refusals.

use super::*;
use mnc_ir::QType;
use mnc_ir::{Activation, Conv, Epilogue, Gemm, Tensor, TensorType};

/// `n` pseudo-random integers in `lo..lo + span` (deterministic per `seed`).
fn lcg(n: usize, seed: u32, lo: i32, span: u32) -> Vec<i32> {
    (0..n as u32)
        .map(|i| {
            lo + ((i.wrapping_mul(2654435761) ^ seed).wrapping_mul(40503) >> 7) as i32 % span as i32
        })
        .collect()
}

/// `got` equals the reference's integer output `want` (which must not be constant).
fn assert_equals_reference(got: &[i32], want: &Tensor, case: usize) {
    let want: Vec<i32> = want
        .to_i64_vec()
        .unwrap()
        .iter()
        .map(|&v| v as i32)
        .collect();
    assert_eq!(got, want, "case {case}");
    assert!(
        want.iter().any(|&v| v != want[0]),
        "case {case} is constant"
    );
}

fn tf(shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761u32) ^ seed) % 97) as f32 / 97.0 - 0.5)
        .collect();
    Tensor::from_f32(shape.to_vec(), data).unwrap()
}

/// x -> pointwise conv (bias, relu6) -> depthwise 3x3 s2 -> pointwise + residual-free -> GAP
/// -> flatten -> gemm
fn small() -> Graph {
    let mut g = Graph::new("small");
    let x = g.add_input("x", TensorType::f32(vec![2, 8, 9, 9]));
    let w1 = g.add_constant("w1", tf(&[16, 8, 1, 1], 1));
    let b1 = g.add_constant("b1", tf(&[16], 2));
    let pw = Conv {
        has_bias: true,
        epilogue: Epilogue {
            residual: false,
            act: Some(Activation::Clip { min: 0.0, max: 6.0 }),
        },
        ..Default::default()
    };
    let c1 = g
        .add_node_inferred("pw1", Op::Conv(pw), &[x, w1, b1])
        .unwrap();
    let w2 = g.add_constant("w2", tf(&[16, 1, 3, 3], 3));
    let dw = Conv {
        kernel: [3, 3],
        strides: [2, 2],
        pads: [1, 1, 1, 1],
        group: 16,
        ..Default::default()
    };
    let c2 = g.add_node_inferred("dw", Op::Conv(dw), &[c1, w2]).unwrap();
    let p = g
        .add_node_inferred("gap", Op::GlobalAveragePool, &[c2])
        .unwrap();
    let f = g
        .add_node_inferred("flat", Op::Flatten { axis: 1 }, &[p])
        .unwrap();
    let fw = g.add_constant("fc.w", tf(&[5, 16], 4));
    let fb = g.add_constant("fc.b", tf(&[5], 5));
    let gm = Gemm {
        trans_b: true,
        has_c: true,
        ..Default::default()
    };
    let y = g
        .add_node_inferred("fc", Op::Gemm(gm), &[f, fw, fb])
        .unwrap();
    g.add_output("y", y);
    g
}

#[test]
fn ptx_is_deterministic_and_headed() {
    let g = small();
    let a = compile(&g, CudaArch::Sm80, &CudaOptions::default()).unwrap();
    let b = compile(&g, CudaArch::Sm80, &CudaOptions::default()).unwrap();
    assert_eq!(a.ptx, b.ptx);
    assert!(a
        .ptx
        .contains(".version 8.0\n.target sm_80\n.address_size 64\n"));
    let c = compile(&g, CudaArch::Sm90, &CudaOptions::default()).unwrap();
    assert!(c.ptx.contains(".target sm_90"));
}

#[test]
fn kernel_selection() {
    let p = compile(&small(), CudaArch::Sm90, &CudaOptions::default()).unwrap();
    let kinds: Vec<&str> = p
        .launches
        .iter()
        .map(|l| p.kernels[l.kernel].rsplit('_').next().unwrap())
        .collect();
    assert_eq!(kinds, ["gemm", "dwconv", "mean", "gemm"]);
    // the flatten is a view: the gemm reads the pooled buffer directly
    assert_eq!(p.launches[3].args[0], p.launches[2].args[1]);
    // pointwise conv args: w, x, bias, y (GEMM A = weights, B = activations)
    assert_eq!(p.launches[0].args.len(), 4);
    assert_eq!(p.launches[0].args[0].space, Space::Weights);
    assert_eq!(p.launches[0].args[1], p.inputs[0].buf);
    assert_eq!(p.inputs[0].buf.space, Space::Arena);
    let text = p.plan_text();
    assert!(
        text.starts_with("cuda-sm90: 4 kernels, 4 launches"),
        "{text}"
    );
    assert!(
        text.contains("pw1") && text.contains("mnc_k0_gemm"),
        "{text}"
    );
}

#[test]
fn arena_is_the_passes_plan_and_reuses_dead_buffers() {
    let p = compile(&small(), CudaArch::Sm80, &CudaOptions::default()).unwrap();
    // x (2*8*81) and pw1 (2*16*81) must coexist; later values reuse x's space
    assert!(
        p.arena_len < p.naive_len,
        "{} vs {}",
        p.arena_len,
        p.naive_len
    );
    p.memory.check().unwrap();
    assert_eq!(
        p.arena_len * 4,
        p.memory.arena_bytes.next_multiple_of(4 * ALIGN)
    );
    for l in &p.launches {
        // Each launch of this graph writes its node's value at the plan's offset.
        let outb = l.args.last().unwrap();
        let v = p.memory.values.iter().find(|v| v.name == l.node).unwrap();
        assert_eq!(
            (outb.space, outb.offset * 4),
            (Space::Arena, p.memory.buffers[v.buffer].offset),
            "{}",
            l.node
        );
        for a in &l.args[..l.args.len() - 1] {
            assert_ne!(a, outb, "{}: a kernel never runs in place", l.node);
        }
    }
    // The view (flatten) shares the pooled value's buffer.
    let buf = |name: &str| {
        p.memory
            .values
            .iter()
            .find(|v| v.name == name)
            .unwrap()
            .buffer
    };
    assert_eq!(buf("flat"), buf("gap"));
}

/// SqueezeExcite's three vectors are per-launch temporaries: in the scratch area after the
/// planned activations, inside the arena, disjoint from each other.
#[test]
fn temporaries_live_in_the_scratch_after_the_plan() {
    let mut g = Graph::new("se");
    let x = g.add_input("x", TensorType::f32(vec![2, 8, 5, 5]));
    let w1 = g.add_constant("w1", tf(&[3, 8, 1, 1], 1));
    let b1 = g.add_constant("b1", tf(&[3], 2));
    let w2 = g.add_constant("w2", tf(&[8, 3, 1, 1], 3));
    let b2 = g.add_constant("b2", tf(&[8], 4));
    let se = mnc_ir::SqueezeExcite {
        act: Activation::Relu,
        gate: Activation::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
    };
    let y = g
        .add_node_inferred("se", Op::SqueezeExcite(se), &[x, w1, b1, w2, b2])
        .unwrap();
    g.add_output("y", y);
    let p = compile(&g, CudaArch::Sm80, &CudaOptions::default()).unwrap();
    p.memory.check().unwrap();
    let base = p.memory.arena_bytes.div_ceil(4 * ALIGN) * ALIGN;
    let temps: Vec<usize> = p
        .launches
        .iter()
        .flat_map(|l| l.args.iter())
        .filter(|a| a.space == Space::Arena && a.offset >= base)
        .map(|a| a.offset)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // mean -> s (16 words), matvec -> hid (6), matvec -> gate (16): one aligned slot each.
    assert_eq!(
        temps,
        vec![base, base + ALIGN, base + 2 * ALIGN],
        "{}",
        p.plan_text()
    );
    assert_eq!(p.arena_len, base + 3 * ALIGN);
}

#[test]
fn tf32_only_when_allowed() {
    let exact = compile(&small(), CudaArch::Sm80, &CudaOptions::default()).unwrap();
    assert!(!exact.ptx.contains("mma.sync") && !exact.ptx.contains("tf32"));
    let tf32 = compile(&small(), CudaArch::Sm80, &CudaOptions { allow_tf32: true }).unwrap();
    assert!(tf32
        .ptx
        .contains("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32"));
    assert!(tf32.ptx.contains("cvt.rna.tf32.f32"));
    assert_eq!(tf32.launches.len(), exact.launches.len());
}

#[test]
fn refusals_are_errors() {
    let mut g = Graph::new("gather");
    let x = g.add_input("x", TensorType::f32(vec![4, 3]));
    let i = g.add_constant("i", Tensor::from_i64(vec![2], vec![0, 2]).unwrap());
    let y = g
        .add_node_inferred("take", Op::Gather { axis: 0 }, &[x, i])
        .unwrap();
    g.add_output("y", y);
    let e = compile(&g, CudaArch::Sm90, &CudaOptions::default()).unwrap_err();
    assert!(e.to_string().contains("'take'"), "{e}");
    assert_eq!("cuda-sm90".parse::<CudaArch>().unwrap(), CudaArch::Sm90);
    assert!("cuda-sm70".parse::<CudaArch>().is_err());
    assert_eq!(CudaArch::for_compute_capability(9, 0), Some(CudaArch::Sm90));
    assert_eq!(CudaArch::for_compute_capability(8, 6), Some(CudaArch::Sm80));
    assert_eq!(CudaArch::for_compute_capability(7, 5), None);
}

#[test]
fn lrn_unrolls_its_window_with_predicated_loads() {
    let graph = |c: usize, size: usize, beta: f32| {
        let mut g = Graph::new("lrn");
        let x = g.add_input("x", TensorType::f32(vec![1, c, 4, 4]));
        let l = mnc_ir::Lrn {
            size,
            alpha: 1e-4,
            beta,
            bias: 1.0,
        };
        let y = g.add_node_inferred("norm1", Op::Lrn(l), &[x]).unwrap();
        g.add_output("y", y);
        g
    };
    // size 5 over 8 channels: offsets -2..=2, four of them predicated; beta 0.75 by sqrt
    let p = compile(&graph(8, 5, 0.75), CudaArch::Sm80, &CudaOptions::default()).unwrap();
    assert_eq!(p.kernels.len(), 1);
    assert!(p.kernels[0].ends_with("_lrn"), "{:?}", p.kernels);
    assert_eq!(p.ptx.matches("ld.global.nc.f32").count(), 5, "{}", p.ptx);
    assert_eq!(p.ptx.matches("setp.").count(), 4 + 1, "{}", p.ptx);
    assert_eq!(p.ptx.matches("sqrt.rn.f32").count(), 2);
    assert!(!p.ptx.contains("lg2"));
    // a window wider than the channels only reads the channels there are
    let p = compile(&graph(2, 7, 0.6), CudaArch::Sm80, &CudaOptions::default()).unwrap();
    assert_eq!(p.ptx.matches("ld.global.nc.f32").count(), 3, "{}", p.ptx);
    assert!(p.ptx.contains("lg2.approx.f32") && p.ptx.contains("ex2.approx.f32"));
    // a window of more than 64 channels is refused, naming the node
    let e = compile(
        &graph(100, 99, 0.75),
        CudaArch::Sm80,
        &CudaOptions::default(),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, CudaError::Unsupported { .. })
            && msg.contains("'norm1' (LRN)")
            && msg.contains("window of 99 channels"),
        "{msg}"
    );
}

#[test]
fn a_graph_with_a_lying_node_type_is_refused() {
    let mut g = small();
    let dw = g.find("dw").unwrap();
    // `Node::ty` is public: a bigger claimed output would size the buffers and launches
    // from the claim while the kernels read the real input.
    g.node_mut(dw).ty = TensorType::f32(vec![2, 16, 50, 50]);
    let e = compile(&g, CudaArch::Sm80, &CudaOptions::default()).unwrap_err();
    assert!(e.to_string().contains("node 'dw' (Conv) is typed"), "{e}");
}

#[test]
fn activations_propagate_nan_in_ptx() {
    // Relu / Clip / HardSigmoid / HardSwish clamp with `max.NaN` / `min.NaN` (sm_80+), so NaN
    // propagates as in `Activation::apply`; plain `max.f32` would return the other operand.
    for &a in mnc_ir::op::ACTIVATION_EXAMPLES {
        if matches!(a, Activation::Sigmoid | Activation::Silu) {
            continue; // no clamp
        }
        let mut g = Graph::new("act");
        let x = g.add_input("x", TensorType::f32(vec![4, 64]));
        let y = g.add_node_inferred("a", Op::Act(a), &[x]).unwrap();
        g.add_output("y", y);
        let p = compile(&g, CudaArch::Sm80, &CudaOptions::default()).unwrap();
        let body = &p.ptx[p.ptx.find(".entry").unwrap()..];
        assert!(body.contains("max.NaN.f32"), "{a}: {body}");
        for line in body.lines() {
            let l = line.trim_start();
            assert!(
                !(l.starts_with("max.f32") || l.starts_with("min.f32")),
                "{a}: NaN-dropping clamp `{l}`"
            );
        }
    }
}

/// f32 x -> Quantize (u8) -> QConv 3x3 (3 input channels: a partial quad) -> QConv
/// depthwise 3x3 -> QLut -> QGlobalAveragePool -> QMul by channel -> Dequantize.
fn int8_graph() -> Graph {
    use mnc_ir::{DType, QBinary, QBinaryOp, QConv, QLut, QMean, QParams, QType};
    let pt = QParams::per_tensor;
    let mut g = Graph::new("int8");
    let x = g.add_input("x", TensorType::f32(vec![1, 3, 6, 6]));
    let xq = g
        .add_node_inferred("xq", Op::Quantize(pt(DType::U8, 0.02, 128)), &[x])
        .unwrap();
    let w = Tensor::from_i32_values(
        vec![4, 3, 3, 3],
        DType::I8,
        (0..108).map(|i| (i * 37 % 255) - 127).collect(),
    )
    .unwrap();
    let w = g.add_constant("c.w", w);
    let b = g.add_constant(
        "c.b",
        Tensor::from_i32_values(vec![4], DType::I32, vec![10, -20, 30, -40]).unwrap(),
    );
    let conv = Conv {
        kernel: [3, 3],
        pads: [1, 1, 1, 1],
        has_bias: true,
        epilogue: Epilogue {
            residual: false,
            act: Some(Activation::Relu),
        },
        ..Default::default()
    };
    let qc = QConv {
        conv,
        x: pt(DType::U8, 0.02, 128),
        w: pt(DType::I8, 0.01, 0),
        y: pt(DType::U8, 0.05, 4),
        residual: None,
    };
    let c = g
        .add_node_inferred("c", Op::QConv(Box::new(qc)), &[xq, w, b])
        .unwrap();
    let dw = g.add_constant(
        "d.w",
        Tensor::from_i32_values(
            vec![4, 1, 3, 3],
            DType::I8,
            (0..36).map(|i| i - 18).collect(),
        )
        .unwrap(),
    );
    let qd = QConv {
        conv: Conv {
            kernel: [3, 3],
            pads: [1, 1, 1, 1],
            group: 4,
            ..Default::default()
        },
        x: pt(DType::U8, 0.05, 4),
        w: pt(DType::I8, 0.01, 0),
        y: pt(DType::U8, 0.05, 4),
        residual: None,
    };
    let d = g
        .add_node_inferred("d", Op::QConv(Box::new(qd)), &[c, dw])
        .unwrap();
    let l = g
        .add_node_inferred(
            "l",
            Op::QLut(QLut::of(QType::U8, QType::U8, |v| v / 2)),
            &[d],
        )
        .unwrap();
    let p = pt(DType::U8, 0.05, 4);
    let m = g
        .add_node_inferred(
            "gap",
            Op::QGlobalAveragePool(QMean {
                x: p.clone(),
                y: p.clone(),
            }),
            &[l],
        )
        .unwrap();
    let y = g
        .add_node_inferred(
            "mul",
            Op::QBinary(QBinary {
                op: QBinaryOp::Mul,
                a: p.clone(),
                b: p.clone(),
                y: p.clone(),
            }),
            &[l, m],
        )
        .unwrap();
    let yf = g.add_node_inferred("yf", Op::Dequantize(p), &[y]).unwrap();
    g.add_output("y", yf);
    g
}

#[test]
fn int8_ops_lower_to_dp4a_and_exact_requantization() {
    let p = compile(&int8_graph(), CudaArch::Sm80, &CudaOptions::default()).unwrap();
    let kinds: Vec<&str> = p
        .launches
        .iter()
        .map(|l| p.kernels[l.kernel].rsplit('_').next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "quantize",
            "qconv",
            "qdwconv",
            "qlut",
            "qmean",
            "qmul",
            "dequantize"
        ]
    );
    let text = &p.ptx;
    // u8 activations times i8 weights; the stem's 3 channels are one partial quad per tap
    // (the fourth lane is the zero point, never loaded): 9 dp4a per channel, 4 channels per
    // thread; the depthwise conv's 9 taps are 3 quads.
    assert_eq!(text.matches("dp4a.u32.s32").count(), 9 * 4 + 3, "{text}");
    assert!(!text.contains("dp4a.s32.s32"));
    // Round half to even, never an FMA in the requantization, byte stores.
    assert!(text.contains("cvt.rni.s32.f32"));
    assert!(text.contains("div.rn.f32"), "QuantizeLinear divides");
    assert!(!text.contains("fma.rn.f32"), "{text}");
    assert!(text.contains("st.global.u8"));
    // QMul: the exact integer product, then mul and add rounded separately.
    assert!(text.contains("mul.lo.s32"));
    // the conv's constants: biases, multipliers, 4 channels x 1 quad x 9 taps words; the
    // dw conv's: 4 + 4 + 4 x 3 words.
    assert_eq!(p.arena_len % ALIGN, 0);
    // Bytes in the arena: a u8 [1, 4, 6, 6] tensor takes 36 words.
    assert!(
        p.arena_len < 4 * 4 * 36 + 3 * 36 + 8 * ALIGN,
        "{}",
        p.arena_len
    );
}

#[test]
fn int8_packing_folds_the_zero_point_into_the_bias() {
    use int8::{pack_qconv, QConvSpec};
    let spec = |ci: usize, co: usize, group: usize, k: usize| QConvSpec {
        conv: kernels::ConvSpec {
            n: 1,
            ci,
            h: 4,
            w: 4,
            co,
            oh: 4,
            ow: 4,
            kh: k,
            kw: k,
            stride: [1, 1],
            dilation: [1, 1],
            pad: [k / 2, k / 2],
            group,
            epi: crate::epilogue::Epilogue::new(true, false, None),
        },
        x: QType::U8,
        x_zp: 10,
        y_zp: 0,
        lo: 0,
        hi: 255,
    };
    // 5 input channels, 1x1, 2 outputs: quads (0..4) and (4, pad, pad, pad).
    let s = spec(5, 2, 1, 1);
    let w: Vec<i8> = vec![1, 2, 3, 4, 5, -1, -2, -3, -4, -5];
    let v = pack_qconv(&s, &w, &[100, 200], &[0.5, 0.25]).unwrap();
    let bits = |f: f32| f.to_bits();
    assert_eq!(bits(v[0]) as i32, 100 - 10 * 15);
    assert_eq!(bits(v[1]) as i32, 200 + 10 * 15);
    assert_eq!((v[2], v[3]), (0.5, 0.25));
    assert_eq!(bits(v[4]), u32::from_le_bytes([1, 2, 3, 4]));
    assert_eq!(bits(v[5]), u32::from_le_bytes([5, 0, 0, 0]));
    assert_eq!(bits(v[6]), u32::from_le_bytes([0xff, 0xfe, 0xfd, 0xfc]));
    assert_eq!(bits(v[7]), u32::from_le_bytes([0xfb, 0, 0, 0]));
    assert_eq!(s.channels_per_thread(), 2);
    // depthwise 3x3: the 9 taps in 3 quads, the last with one tap.
    let s = spec(2, 2, 2, 3);
    assert!(s.depthwise());
    assert_eq!(s.words_per_channel(), 3);
    let w: Vec<i8> = (1..=18).collect();
    let v = pack_qconv(&s, &w, &[0, 0], &[1.0, 1.0]).unwrap();
    assert_eq!(v.len(), 2 + 2 + 6);
    assert_eq!(bits(v[4]), u32::from_le_bytes([1, 2, 3, 4]));
    assert_eq!(bits(v[6]), u32::from_le_bytes([9, 0, 0, 0]));
    assert_eq!(bits(v[7]), u32::from_le_bytes([10, 11, 12, 13]));
    assert_eq!(bits(v[0]) as i32, -10 * 45);
    // wrong lengths are an error, not a panic
    assert!(pack_qconv(&s, &w[..5], &[0, 0], &[1.0, 1.0]).is_err());
}

#[test]
fn int8_values_reach_only_the_int8_ops() {
    use mnc_ir::{DType, PoolKind, QParams};
    let mut g = Graph::new("maxpool_u8");
    let x = g.add_input("x", TensorType::f32(vec![1, 2, 4, 4]));
    let q = g
        .add_node_inferred(
            "q",
            Op::Quantize(QParams::per_tensor(DType::U8, 0.1, 0)),
            &[x],
        )
        .unwrap();
    let pool = mnc_ir::Pool {
        kind: PoolKind::Max,
        kernel: [2, 2],
        strides: [2, 2],
        ..Default::default()
    };
    let Ok(y) = g.add_node_inferred("pool", Op::Pool(pool), &[q]) else {
        return; // the IR refuses u8 pooling itself
    };
    g.add_output("y", y);
    let e = compile(&g, CudaArch::Sm80, &CudaOptions::default()).unwrap_err();
    assert!(e.to_string().contains("'pool'"), "{e}");
    assert!(e.to_string().contains("u8"), "{e}");
}

/// The arithmetic of the `qconv`/`qdwconv` kernels emulated on the host from the packed
/// constants (quads, zero-point bytes on padding and past the channels, folded bias,
/// `dp4a`, requantization) equals the reference executor's `QConv`: checks the packing
/// layout and the bias folding the PTX relies on (the PTX itself runs only on a GPU).
#[test]
fn int8_packed_conv_arithmetic_equals_the_reference() {
    use int8::{pack_qconv, QConvSpec};
    use mnc_ir::{DType, QConv, QParams};
    // (ci, co, group, kernel, strides, pads, i8 input)
    type Case = (
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 4],
        bool,
    );
    let cases: [Case; 6] = [
        (3, 5, 1, [3, 3], [1, 1], [1, 1, 1, 1], false),
        (9, 4, 1, [1, 1], [2, 2], [0, 0, 0, 0], true),
        (6, 6, 2, [3, 2], [2, 1], [2, 0, 1, 1], true),
        (4, 4, 4, [3, 3], [2, 2], [1, 1, 1, 1], false),
        (3, 6, 3, [5, 5], [1, 1], [2, 2, 2, 2], true),
        (8, 12, 1, [1, 1], [1, 1], [0, 0, 0, 0], false),
    ];
    for (k, &(ci, co, group, kernel, strides, pads, x_i8)) in cases.iter().enumerate() {
        let (h, w) = (7, 6);
        let xt = if x_i8 { DType::I8 } else { DType::U8 };
        let x_zp = if x_i8 { -5 } else { 131 };
        let cig = ci / group;
        let q = QConv {
            conv: Conv {
                kernel,
                strides,
                pads,
                group,
                has_bias: true,
                epilogue: Epilogue {
                    residual: false,
                    act: Some(Activation::Relu),
                },
                ..Default::default()
            },
            x: QParams::per_tensor(xt, 0.02, x_zp),
            w: QParams {
                dtype: DType::I8,
                axis: Some(0),
                scale: (0..co).map(|o| 0.004 + 0.001 * o as f32).collect(),
                zero_point: vec![0; co],
            },
            y: QParams::per_tensor(DType::U8, 0.05, 7),
            residual: None,
        };
        let (lo, span) = if x_i8 { (-128, 256) } else { (0, 256) };
        let xv = lcg(ci * h * w, k as u32 + 1, lo, span);
        let wv = lcg(co * cig * kernel[0] * kernel[1], k as u32 + 7, -127, 255);
        let bv = lcg(co, k as u32 + 11, -4000, 8000);
        let x = Tensor::from_i32_values(vec![1, ci, h, w], xt, xv.clone()).unwrap();
        let wt =
            Tensor::from_i32_values(vec![co, cig, kernel[0], kernel[1]], DType::I8, wv.clone())
                .unwrap();
        let bt = Tensor::from_i32_values(vec![co], DType::I32, bv.clone()).unwrap();
        let want = mnc_ir::eval::eval_op(&Op::QConv(Box::new(q.clone())), &[&x, &wt, &bt]).unwrap();
        let (oh, ow) = (want.shape[2], want.shape[3]);
        let rq = q.requant(co).unwrap();
        let s = QConvSpec {
            conv: kernels::ConvSpec {
                n: 1,
                ci,
                h,
                w,
                co,
                oh,
                ow,
                kh: kernel[0],
                kw: kernel[1],
                stride: strides,
                dilation: [1, 1],
                pad: [pads[0], pads[1]],
                group,
                epi: crate::epilogue::Epilogue::new(true, false, None),
            },
            x: QType::of(xt).unwrap(),
            x_zp,
            y_zp: rq.zero_point,
            lo: rq.lo,
            hi: rq.hi,
        };
        let w8: Vec<i8> = wv.iter().map(|&v| v as i8).collect();
        let packed = pack_qconv(&s, &w8, &bv, &rq.mult).unwrap();
        let word = |i: usize| packed[i].to_bits();
        // the multipliers the kernel reads: the pack's, after the folded biases
        let from_pack = mnc_ir::quant::Requant {
            mult: packed[co..2 * co].to_vec(),
            ..rq.clone()
        };
        // dp4a: bytes of `a` (signed for i8 activations) times the signed bytes of `b`.
        let dp4a = |acc: i32, a: [u8; 4], b: u32| {
            (0..4).fold(acc, |s, j| {
                let av = if x_i8 { a[j] as i8 as i32 } else { a[j] as i32 };
                s.wrapping_add(av * (b.to_le_bytes()[j] as i8 as i32))
            })
        };
        let taps = kernel[0] * kernel[1];
        let (cog, zpb) = (co / group, x_zp as u8);
        // the byte of input channel c at tap t of output (oy, ox), or the zero point's
        let xb = |c: usize, t: usize, oy: usize, ox: usize| -> u8 {
            let iy = (oy * strides[0] + t / kernel[1]) as i64 - pads[0] as i64;
            let ix = (ox * strides[1] + t % kernel[1]) as i64 - pads[1] as i64;
            if (0..h as i64).contains(&iy) && (0..w as i64).contains(&ix) {
                xv[(c * h + iy as usize) * w + ix as usize] as u8
            } else {
                zpb
            }
        };
        let mut got = Vec::new();
        for o in 0..co {
            let g = o / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = word(o) as i32;
                    if s.depthwise() {
                        for qi in 0..taps.div_ceil(4) {
                            let a = std::array::from_fn(|j| {
                                let t = 4 * qi + j;
                                if t < taps {
                                    xb(g, t, oy, ox)
                                } else {
                                    zpb
                                }
                            });
                            acc = dp4a(acc, a, word(2 * co + o * taps.div_ceil(4) + qi));
                        }
                    } else {
                        let nq = cig.div_ceil(4);
                        for qi in 0..nq {
                            for t in 0..taps {
                                let a = std::array::from_fn(|j| {
                                    let c = 4 * qi + j;
                                    if c < cig {
                                        xb(g * cig + c, t, oy, ox)
                                    } else {
                                        zpb
                                    }
                                });
                                acc = dp4a(acc, a, word(2 * co + (o * nq + qi) * taps + t));
                            }
                        }
                    }
                    got.push(from_pack.apply(acc, o));
                }
            }
        }
        assert_equals_reference(&got, &want, k);
    }
}

/// The tensor-core conv ([`int8::qconv_imma`]) emulated on the host lane by lane: each
/// step staged as the kernel stages it, A fragments read from the pack at
/// [`int8::imma_a_word`], B fragments from the staged words as the kernel addresses them,
/// each `mma.m16n8k32` computed from the fragment layouts of the PTX ISA (transcribed here
/// independently of the pack), and the outputs placed by the accumulator layout: equals the
/// reference executor's `QConv` exactly. Checks the pack, the staging and the fragment
/// addressing the PTX relies on (the PTX itself runs only on a GPU).
#[test]
fn int8_imma_conv_arithmetic_equals_the_reference() {
    use int8::{imma_a_word, pack_qconv_imma, QConvKernel, QConvSpec, IMMA_TILE};
    use mnc_ir::{DType, QConv, QParams};
    // the PTX ISA's layouts for 8-bit m16n8k32 (groupID = lane >> 2, tig = lane % 4)
    let a_pos = |lane: usize, i: usize| {
        let (gid, tig) = (lane >> 2, lane % 4);
        let row = if i < 4 || (8..12).contains(&i) {
            gid
        } else {
            gid + 8
        };
        let col = if i < 8 {
            tig * 4 + (i & 3)
        } else {
            tig * 4 + (i & 3) + 16
        };
        (row, col)
    };
    let b_pos = |lane: usize, i: usize| {
        let tig = lane % 4;
        let k = if i < 4 {
            tig * 4 + (i & 3)
        } else {
            tig * 4 + (i & 3) + 16
        };
        (k, lane >> 2)
    };
    let c_pos = |lane: usize, i: usize| {
        let (gid, tig) = (lane >> 2, lane % 4);
        (if i < 2 { gid } else { gid + 8 }, tig * 2 + (i & 1))
    };
    // (n, ci, co, h, w, i8 input)
    let cases = [
        (1, 16, 8, 3, 5, false),
        (2, 19, 37, 7, 10, true),
        (1, 70, 130, 9, 9, false),
        (1, 32, 64, 8, 8, true),
    ];
    for (case, &(n, ci, co, h, w, x_i8)) in cases.iter().enumerate() {
        let pix = h * w;
        let xt = if x_i8 { DType::I8 } else { DType::U8 };
        let x_zp = if x_i8 { -3 } else { 125 };
        let q = QConv {
            conv: Conv {
                has_bias: true,
                epilogue: Epilogue {
                    residual: false,
                    act: Some(Activation::Relu),
                },
                ..Default::default()
            },
            x: QParams::per_tensor(xt, 0.02, x_zp),
            w: QParams {
                dtype: DType::I8,
                axis: Some(0),
                scale: (0..co).map(|o| 0.002 + 0.0001 * o as f32).collect(),
                zero_point: vec![0; co],
            },
            y: QParams::per_tensor(DType::U8, 0.06, 9),
            residual: None,
        };
        let xv = lcg(
            n * ci * pix,
            case as u32 + 3,
            if x_i8 { -128 } else { 0 },
            256,
        );
        let wv = lcg(co * ci, case as u32 + 5, -127, 255);
        let bv = lcg(co, case as u32 + 9, -3000, 6000);
        let x = Tensor::from_i32_values(vec![n, ci, h, w], xt, xv.clone()).unwrap();
        let wt = Tensor::from_i32_values(vec![co, ci, 1, 1], DType::I8, wv.clone()).unwrap();
        let bt = Tensor::from_i32_values(vec![co], DType::I32, bv.clone()).unwrap();
        let want = mnc_ir::eval::eval_op(&Op::QConv(Box::new(q.clone())), &[&x, &wt, &bt]).unwrap();
        let rq = q.requant(co).unwrap();
        let s = QConvSpec {
            conv: kernels::ConvSpec {
                n,
                ci,
                h,
                w,
                co,
                oh: h,
                ow: w,
                kh: 1,
                kw: 1,
                stride: [1, 1],
                dilation: [1, 1],
                pad: [0, 0],
                group: 1,
                epi: crate::epilogue::Epilogue::new(true, false, None),
            },
            x: QType::of(xt).unwrap(),
            x_zp,
            y_zp: rq.zero_point,
            lo: rq.lo,
            hi: rq.hi,
        };
        assert_eq!(s.kernel(), QConvKernel::Imma, "case {case}");
        let w8: Vec<i8> = wv.iter().map(|&v| v as i8).collect();
        let packed = pack_qconv_imma(&s, &w8, &bv, &rq.mult).unwrap();
        let word = |i: usize| packed[i].to_bits();
        let rows = co.next_multiple_of(IMMA_TILE.0);
        let from_pack = mnc_ir::quant::Requant {
            mult: packed[rows..rows + co].to_vec(),
            ..rq.clone()
        };
        let xb = |b: usize, c: usize, p: usize| -> u8 {
            if c < ci && p < pix {
                xv[(b * ci + c) * pix + p] as u8
            } else {
                0
            }
        };
        let (bm, bn, bk) = IMMA_TILE;
        let steps = ci.div_ceil(bk);
        let mut got = vec![i32::MIN; n * co * pix];
        for b in 0..n {
            for by in 0..co.div_ceil(bm) {
                for bx in 0..pix.div_ceil(bn) {
                    // acc[warp][mi][ni][lane][r]
                    let mut acc = [[[[[0i32; 4]; 32]; 4]; 2]; 4];
                    for step in 0..steps {
                        // the staged words: pixel nn, quad q = 4 channels of one pixel
                        let staged = |nn: usize, q: usize| -> u32 {
                            u32::from_le_bytes(std::array::from_fn(|j| {
                                xb(b, step * bk + 4 * q + j, bx * bn + nn)
                            }))
                        };
                        for (warp, acc_w) in acc.iter_mut().enumerate() {
                            let (wmi, wni) = (warp >> 1, warp & 1);
                            for (mi, acc_m) in acc_w.iter_mut().enumerate() {
                                let a: Vec<[u32; 4]> = (0..32)
                                    .map(|lane| {
                                        let w0 = imma_a_word(&s, by * 4 + wmi * 2 + mi, step, lane);
                                        std::array::from_fn(|r| word(w0 + r))
                                    })
                                    .collect();
                                for (ni, acc_t) in acc_m.iter_mut().enumerate() {
                                    let bf: Vec<[u32; 2]> = (0..32)
                                        .map(|lane| {
                                            let px = wni * 32 + ni * 8 + (lane >> 2);
                                            std::array::from_fn(|r| staged(px, lane % 4 + 4 * r))
                                        })
                                        .collect();
                                    // D = A B + C from the fragments
                                    let mut am = [[0i32; 32]; 16];
                                    let mut bmx = [[0i32; 8]; 32];
                                    for lane in 0..32 {
                                        for i in 0..16 {
                                            let (r, c) = a_pos(lane, i);
                                            am[r][c] =
                                                a[lane][i / 4].to_le_bytes()[i % 4] as i8 as i32;
                                        }
                                        for i in 0..8 {
                                            let (kk, nn) = b_pos(lane, i);
                                            let byte = bf[lane][i / 4].to_le_bytes()[i % 4];
                                            bmx[kk][nn] =
                                                if x_i8 { byte as i8 as i32 } else { byte as i32 };
                                        }
                                    }
                                    for (lane, acc_l) in acc_t.iter_mut().enumerate() {
                                        for (i, acc_i) in acc_l.iter_mut().enumerate() {
                                            let (r, c) = c_pos(lane, i);
                                            let dot = (0..32).fold(0i32, |t, kk| {
                                                t.wrapping_add(am[r][kk] * bmx[kk][c])
                                            });
                                            *acc_i = acc_i.wrapping_add(dot);
                                        }
                                    }
                                }
                            }
                        }
                    }
                    // the epilogue's placement of accumulator r of lane `lane`
                    for (warp, acc_w) in acc.iter().enumerate() {
                        let (wmi, wni) = (warp >> 1, warp & 1);
                        for (mi, acc_m) in acc_w.iter().enumerate() {
                            for (ni, acc_t) in acc_m.iter().enumerate() {
                                for (lane, acc_l) in acc_t.iter().enumerate() {
                                    let (gid, tig) = (lane >> 2, lane % 4);
                                    for (r, &acc_r) in acc_l.iter().enumerate() {
                                        let o = by * bm + wmi * 32 + 16 * mi + gid + 8 * (r / 2);
                                        let p = bx * bn + wni * 32 + 8 * ni + 2 * tig + r % 2;
                                        if o < co && p < pix {
                                            let v = acc_r.wrapping_add(word(o) as i32);
                                            got[(b * co + o) * pix + p] = from_pack.apply(v, o);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_equals_reference(&got, &want, case);
    }
}

/// The int8 conv kernel is a pure function of the geometry: tensor cores for pointwise
/// convs of one group with 16+ input channels, `dp4a` otherwise.
#[test]
fn int8_conv_kernel_selection() {
    use int8::{QConvKernel, QConvSpec, IMMA_MIN_CHANNELS};
    let spec = |ci: usize, co: usize, group: usize, k: usize, stride: usize| {
        let (oh, pad) = (if k == 1 { 9 / stride } else { 9 }, k / 2);
        QConvSpec {
            conv: kernels::ConvSpec {
                n: 1,
                ci,
                h: 9,
                w: 9,
                co,
                oh: oh.max(1),
                ow: oh.max(1),
                kh: k,
                kw: k,
                stride: [stride; 2],
                dilation: [1, 1],
                pad: [pad, pad],
                group,
                epi: crate::epilogue::Epilogue::new(true, false, None),
            },
            x: QType::U8,
            x_zp: 0,
            y_zp: 0,
            lo: 0,
            hi: 255,
        }
    };
    let m = IMMA_MIN_CHANNELS;
    assert_eq!(spec(m, 8, 1, 1, 1).kernel(), QConvKernel::Imma);
    assert_eq!(spec(960, 160, 1, 1, 1).kernel(), QConvKernel::Imma);
    assert_eq!(spec(m - 1, 8, 1, 1, 1).kernel(), QConvKernel::Dp4a);
    assert_eq!(spec(m, 8, 1, 1, 2).kernel(), QConvKernel::Dp4a);
    assert_eq!(spec(2 * m, 2 * m, 2, 1, 1).kernel(), QConvKernel::Dp4a);
    assert_eq!(spec(m, 8, 1, 3, 1).kernel(), QConvKernel::Dp4a);
    assert_eq!(spec(m, m, m, 3, 1).kernel(), QConvKernel::Depthwise);
}
