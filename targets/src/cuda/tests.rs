//! Unit tests of the CUDA lowering (no GPU needed): determinism, kernel selection, buffer
//! planning and refusals.

use super::*;
use mnc_ir::{Activation, Conv, Epilogue, Gemm, Tensor, TensorType};

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
fn arena_reuses_dead_buffers() {
    let p = compile(&small(), CudaArch::Sm80, &CudaOptions::default()).unwrap();
    // x (2*8*81) and pw1 (2*16*81) must coexist; later values reuse x's space
    assert!(
        p.arena_len < p.naive_len,
        "{} vs {}",
        p.arena_len,
        p.naive_len
    );
    for l in &p.launches {
        let outb = l.args.last().unwrap();
        for a in &l.args[..l.args.len() - 1] {
            assert_ne!(a, outb, "{}: a kernel never runs in place", l.node);
        }
    }
    let mut arena = Arena::default();
    let a = arena.alloc(10);
    let b = arena.alloc(40);
    arena.release(a, 10);
    assert_eq!(arena.alloc(20), a, "first fit reuses the freed block");
    arena.release(b, 40);
    assert_eq!(arena.alloc(64), b);
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
