//! GPU correctness of the CUDA target: every committed fixture and every zoo model, and
//! ragged-shape property tests of each kernel family, against the reference executor
//! (`max|y - y_ref| <= 1e-4 * max|y_ref|`); the int8 kernels (the quantized fixture, every
//! int8 op, ragged integer convs) EQUAL to it (`check_exact`). Without a CUDA driver or GPU every test prints a
//! SKIPPED line with the reason and passes. `bench_zoo_models` (ignored; run by
//! scripts/gpu-check.sh) times MobileNetV2 and EfficientNet-B0 at batch 1 and 256.

mod cuda_util;

use cuda_util::*;
use mnc::zoo::{build, ZooOptions};
use mnc_ir::{
    Activation, BinaryOp, Conv, Epilogue, Gemm, Graph, NodeId, Op, Pool, PoolKind, SqueezeExcite,
    Tensor, TensorType,
};
use mnc_runtime::cuda::{
    codegen, device_available, device_capability, CudaArch, CudaModel, CudaOptions,
};
use mnc_runtime::reference;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

const TOL: f32 = 1e-4;

/// The architecture to generate for the GPU here, or `None` (after a SKIPPED line, printed
/// once per test).
fn gpu(test: &str) -> Option<CudaArch> {
    static ARCH: OnceLock<Result<CudaArch, String>> = OnceLock::new();
    static SAID: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let arch = ARCH.get_or_init(|| {
        device_available()?;
        let (major, minor) = device_capability().map_err(|e| e.to_string())?;
        CudaArch::for_compute_capability(major, minor)
            .ok_or_else(|| format!("compute capability {major}.{minor} is below 8.0"))
    });
    match arch {
        Ok(a) => Some(*a),
        Err(why) => {
            if SAID.lock().unwrap().insert(test.to_string()) {
                eprintln!("SKIPPED {test}: {why}");
            }
            None
        }
    }
}

/// Runs `g` on the GPU and on the reference executor with the same inputs; returns
/// (max error, max |y_ref|) over all outputs after asserting the tolerance.
fn check_with(
    what: &str,
    reference_graph: &Graph,
    compiled: &Graph,
    arch: CudaArch,
    seed: u64,
    opts: &CudaOptions,
    tol: f32,
) -> (f32, f32) {
    let x = inputs_for(reference_graph, seed);
    let want =
        reference::run(reference_graph, &x).unwrap_or_else(|e| panic!("{what}: reference: {e}"));
    let mut m = CudaModel::compile(compiled, arch, opts).unwrap_or_else(|e| panic!("{what}: {e}"));
    let got = m.run(&x).unwrap_or_else(|e| panic!("{what}: run: {e}"));
    assert_eq!(got.len(), want.len(), "{what}: output count");
    let mut worst = (0.0f32, 0.0f32);
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.shape, w.shape, "{what}: output {k} shape");
        let (gv, wv) = (g.as_f32().unwrap(), w.as_f32().unwrap());
        assert!(
            gv.iter().all(|v| v.is_finite()) || wv.iter().any(|v| !v.is_finite()),
            "{what}: non-finite output"
        );
        let (err, scale) = mnc_tests::max_errors(gv, wv);
        assert!(
            err <= tol * scale.max(f32::MIN_POSITIVE),
            "{what}: output {k}: max|y - y_ref| = {err:e} > {tol:e} * max|y_ref| ({scale:e})"
        );
        worst = (worst.0.max(err), worst.1.max(scale));
    }
    // A second run reuses the loaded model (and its CUDA graph at batch 1).
    let again = m.run(&x).unwrap();
    assert_eq!(again, got, "{what}: runs are deterministic");
    worst
}

/// [`check_with`] in exact f32 with the 1e-4 tolerance.
fn check(
    what: &str,
    reference_graph: &Graph,
    compiled: &Graph,
    arch: CudaArch,
    seed: u64,
) -> (f32, f32) {
    check_with(
        what,
        reference_graph,
        compiled,
        arch,
        seed,
        &CudaOptions::default(),
        TOL,
    )
}

/// Tolerance of the TF32 tensor-core path (operands rounded to 10-bit mantissas).
const TF32_TOL: f32 = 2e-2;

#[test]
fn tf32_gemms_and_models_close_to_reference() {
    let Some(arch) = gpu("tf32_gemms_and_models_close_to_reference") else {
        return;
    };
    let opts = CudaOptions { allow_tf32: true };
    // ragged Gemms (both transposes, broadcast C, residual) and pointwise convs
    for (i, &(m, n, k, ta, tb)) in [
        (37, 70, 45, false, true),
        (5, 3, 130, true, false),
        (150, 140, 9, false, false),
        (64, 64, 16, true, true),
    ]
    .iter()
    .enumerate()
    {
        let mut g = Graph::new("tf32-gemm");
        let a = g.add_input(
            "a",
            TensorType::f32(if ta { vec![k, m] } else { vec![m, k] }),
        );
        let b = g.add_constant(
            "b",
            rand_tensor(&if tb { vec![n, k] } else { vec![k, n] }, 3),
        );
        let c = g.add_constant("c", rand_tensor(&[n], 4));
        let r = g.add_constant("r", rand_tensor(&[m, n], 5));
        let op = Op::Gemm(Gemm {
            trans_a: ta,
            trans_b: tb,
            alpha: 0.5,
            beta: -2.0,
            has_c: true,
            epilogue: Epilogue {
                residual: true,
                act: Some(Activation::Relu),
            },
        });
        let y = g.add_node_inferred("gemm", op, &[a, b, c, r]).unwrap();
        g.add_output("y", y);
        let (e, s) = check_with(&format!("tf32 gemm {i}"), &g, &g, arch, 9, &opts, TF32_TOL);
        eprintln!("tf32 gemm {m}x{n}x{k}: max err {e:.3e} (max|y| {s:.3e})");
    }
    for (name, g) in zoo_models(64, 2) {
        if name != "mobilenet_v2" && name != "efficientnet_b0" {
            continue;
        }
        let h = optimized(&g);
        let (e, s) = check_with(&format!("{name} tf32"), &g, &h, arch, 3, &opts, TF32_TOL);
        eprintln!("{name} 64px batch 2 tf32: max err {e:.3e} (max|y| {s:.3e})");
    }
}

#[test]
fn fixtures_match_reference() {
    let Some(arch) = gpu("fixtures_match_reference") else {
        return;
    };
    for (name, g) in fixture_models() {
        let (e, s) = check(&format!("{name} (raw)"), &g, &g, arch, 1);
        eprintln!("{name}: raw graph max err {e:.3e} (max|y| {s:.3e})");
        let h = optimized(&g);
        let (e, s) = check(&format!("{name} (optimized)"), &g, &h, arch, 2);
        eprintln!("{name}: optimized max err {e:.3e} (max|y| {s:.3e})");
    }
}

#[test]
fn zoo_models_match_reference() {
    let Some(arch) = gpu("zoo_models_match_reference") else {
        return;
    };
    for (res, batch) in [(64, 2), (33, 1)] {
        for (name, g) in zoo_models(res, batch) {
            let h = optimized(&g);
            let (e, s) = check(&format!("{name} {res}px batch {batch}"), &g, &h, arch, 3);
            eprintln!("{name} {res}px batch {batch}: max err {e:.3e} (max|y| {s:.3e})");
        }
    }
}

fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    let data = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_f32(shape.to_vec(), data).unwrap()
}

fn acts() -> impl Strategy<Value = Option<Activation>> {
    prop_oneof![
        Just(None),
        Just(Some(Activation::Relu)),
        Just(Some(Activation::Clip { min: 0.0, max: 6.0 })),
        Just(Some(Activation::Silu)),
        Just(Some(Activation::HardSwish)),
        Just(Some(Activation::Sigmoid)),
        Just(Some(Activation::HardSigmoid {
            alpha: 0.2,
            beta: 0.5
        })),
    ]
}

#[derive(Debug, Clone)]
struct ConvCase {
    n: usize,
    ci: usize,
    co: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    stride: [usize; 2],
    dil: [usize; 2],
    pads: [usize; 4],
    group: usize,
    bias: bool,
    residual: bool,
    act: Option<Activation>,
}

fn conv_cases() -> impl Strategy<Value = ConvCase> {
    // kind 0: pointwise, 1: depthwise, 2: general (grouped or not)
    (
        0..3usize,
        1..4usize,
        1..10usize,
        1..12usize,
        1..12usize,
        1..12usize,
        (1..4usize, 1..4usize, 1..3usize, 1..3usize, 1..3usize),
        (0..3usize, 0..3usize, 0..3usize, 0..3usize),
        (any::<bool>(), any::<bool>(), acts(), 1..4usize),
    )
        .prop_map(
            |(
                kind,
                n,
                c1,
                c2,
                h,
                w,
                (kh, kw, s, d, _g),
                (p0, p1, p2, p3),
                (bias, residual, act, gsel),
            )| {
                let (ci, co, k, stride, pads, group) = match kind {
                    0 => (c1, c2, [1, 1], [1, 1], [0; 4], 1),
                    1 => (c1, c1, [kh, kw], [s, s], [p0, p1, p2, p3], c1),
                    _ => {
                        let group = [1, 2, 3][gsel - 1];
                        (
                            c1 * group,
                            c2 * group,
                            [kh, kw],
                            [s, 1],
                            [p0, p1, p2, p3],
                            group,
                        )
                    }
                };
                let dil = if kind == 0 { [1, 1] } else { [d, 1] };
                ConvCase {
                    n,
                    ci,
                    co,
                    h: h + 2,
                    w: w + 2,
                    k,
                    stride,
                    dil,
                    pads,
                    group,
                    bias,
                    residual,
                    act,
                }
            },
        )
}

/// A graph with one conv (and its constants) on input `x`.
fn conv_graph(c: &ConvCase) -> Option<Graph> {
    let mut g = Graph::new("conv-case");
    let x = g.add_input("x", TensorType::f32(vec![c.n, c.ci, c.h, c.w]));
    let w = g.add_constant("w", rand_tensor(&[c.co, c.ci / c.group, c.k[0], c.k[1]], 7));
    let mut ins = vec![x, w];
    if c.bias {
        ins.push(g.add_constant("b", rand_tensor(&[c.co], 8)));
    }
    let conv = Conv {
        kernel: c.k,
        strides: c.stride,
        dilations: c.dil,
        pads: c.pads,
        group: c.group,
        has_bias: c.bias,
        epilogue: Epilogue {
            residual: false,
            act: None,
        },
        schedule: None,
    };
    // output shape first (without the residual operand)
    let probe =
        mnc_ir::infer::infer(&Op::Conv(conv.clone()), &[&g.node(x).ty, &g.node(w).ty]).ok()?;
    if probe.shape.contains(&0) {
        return None;
    }
    if c.residual {
        ins.push(g.add_constant("r", rand_tensor(&probe.shape, 9)));
    }
    let conv = Conv {
        epilogue: Epilogue {
            residual: c.residual,
            act: c.act,
        },
        ..conv
    };
    let y = g.add_node_inferred("conv", Op::Conv(conv), &ins).ok()?;
    g.add_output("y", y);
    Some(g)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_shrink_iters: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ragged_convs_match_reference(c in conv_cases()) {
        let Some(arch) = gpu("ragged_convs_match_reference") else { return Ok(()) };
        if let Some(g) = conv_graph(&c) {
            check(&format!("{c:?}"), &g, &g, arch, 5);
        }
    }

    #[test]
    fn ragged_gemms_match_reference(
        m in 1..70usize, n in 1..70usize, k in 1..90usize,
        ta in any::<bool>(), tb in any::<bool>(), cshape in 0..4usize,
        alpha in prop_oneof![Just(1.0f32), Just(0.5f32)], beta in prop_oneof![Just(1.0f32), Just(-2.0f32)],
        residual in any::<bool>(), act in acts(),
    ) {
        let Some(arch) = gpu("ragged_gemms_match_reference") else { return Ok(()) };
        let mut g = Graph::new("gemm-case");
        let a = g.add_input("a", TensorType::f32(if ta { vec![k, m] } else { vec![m, k] }));
        let b = g.add_constant("b", rand_tensor(&if tb { vec![n, k] } else { vec![k, n] }, 3));
        let mut ins = vec![a, b];
        let has_c = cshape > 0;
        if has_c {
            let s = match cshape { 1 => vec![n], 2 => vec![m, 1], _ => vec![m, n] };
            ins.push(g.add_constant("c", rand_tensor(&s, 4)));
        }
        if residual {
            ins.push(g.add_constant("r", rand_tensor(&[m, n], 5)));
        }
        let op = Op::Gemm(Gemm { trans_a: ta, trans_b: tb, alpha, beta, has_c, epilogue: Epilogue { residual, act } });
        let y = g.add_node_inferred("gemm", op, &ins).unwrap();
        g.add_output("y", y);
        check("gemm", &g, &g, arch, 6);
    }

    #[test]
    fn ragged_pools_se_softmax_match_reference(
        n in 1..3usize, c in 1..20usize, h in 1..15usize, w in 1..15usize,
        k in 1..4usize, s in 1..3usize, pad in 0..2usize, avg in any::<bool>(), incl in any::<bool>(),
        r in 1..6usize,
    ) {
        let Some(arch) = gpu("ragged_pools_se_softmax_match_reference") else { return Ok(()) };
        let pad = pad.min(k - 1);
        let mut g = Graph::new("misc-case");
        let x = g.add_input("x", TensorType::f32(vec![n, c, h + k, w + k]));
        let p = Pool {
            kind: if avg { PoolKind::Avg } else { PoolKind::Max },
            kernel: [k, k], strides: [s, s], pads: [pad; 4], count_include_pad: incl,
            ..Default::default()
        };
        let pooled = g.add_node_inferred("pool", Op::Pool(p), &[x]).unwrap();
        let se_in: NodeId = pooled;
        let ws = [
            g.add_constant("w1", rand_tensor(&[r, c, 1, 1], 11)),
            g.add_constant("b1", rand_tensor(&[r], 12)),
            g.add_constant("w2", rand_tensor(&[c, r, 1, 1], 13)),
            g.add_constant("b2", rand_tensor(&[c], 14)),
        ];
        let se = SqueezeExcite { act: Activation::Silu, gate: Activation::Sigmoid };
        let y = g.add_node_inferred("se", Op::SqueezeExcite(se), &[se_in, ws[0], ws[1], ws[2], ws[3]]).unwrap();
        let gap = g.add_node_inferred("gap", Op::GlobalAveragePool, &[y]).unwrap();
        let flat = g.add_node_inferred("flat", Op::Flatten { axis: 1 }, &[gap]).unwrap();
        let sm = g.add_node_inferred("softmax", Op::Softmax { axis: 1 }, &[flat]).unwrap();
        let bias = g.add_constant("bias", rand_tensor(&[c], 15));
        let add = g.add_node_inferred("add", Op::Binary(BinaryOp::Sub), &[sm, bias]).unwrap();
        g.add_output("y", add);
        g.add_output("pooled", pooled);
        check("pool/se/softmax", &g, &g, arch, 7);
    }

    #[test]
    fn ragged_lrns_match_reference(
        n in 1..3usize, c in 1..20usize, h in 1..9usize, w in 1..9usize, size in 1..8usize,
        beta in prop_oneof![Just(0.75f32), Just(0.5f32), Just(1.0f32), Just(0.6f32)],
    ) {
        let Some(arch) = gpu("ragged_lrns_match_reference") else { return Ok(()) };
        let mut g = Graph::new("lrn-case");
        let x = g.add_input("x", TensorType::f32(vec![n, c, h, w]));
        let l = mnc_ir::Lrn { size, alpha: 0.5, beta, bias: 1.0 };
        let y = g.add_node_inferred("lrn", Op::Lrn(l), &[x]).unwrap();
        g.add_output("y", y);
        check("lrn", &g, &g, arch, 8);
    }
}

/// Times `execute` (inputs already on the device, like a framework benchmark).
/// Runs `g` on the GPU and on the reference executor with the same inputs and asserts that
/// every output is EQUAL (the int8 kernels are bit-exact: integer outputs, and f32 outputs
/// of `DequantizeLinear`, have one right answer).
fn check_exact(what: &str, g: &Graph, arch: CudaArch, x: &[Tensor]) {
    let want = reference::run(g, x).unwrap_or_else(|e| panic!("{what}: reference: {e}"));
    let mut m = CudaModel::compile(g, arch, &CudaOptions::default())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let got = m.run(x).unwrap_or_else(|e| panic!("{what}: run: {e}"));
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (k, (gt, wt)) in got.iter().zip(&want).enumerate() {
        assert_eq!(gt.shape, wt.shape, "{what}: output {k} shape");
        assert_eq!(gt.dtype(), wt.dtype(), "{what}: output {k} type");
        if gt != wt {
            let diff = match (gt.to_i64_vec(), wt.to_i64_vec(), gt.as_f32(), wt.as_f32()) {
                (Some(a), Some(b), _, _) => a.iter().zip(&b).filter(|(x, y)| x != y).count(),
                (_, _, Some(a), Some(b)) => a
                    .iter()
                    .zip(b)
                    .filter(|(x, y)| x.to_bits() != y.to_bits())
                    .count(),
                _ => usize::MAX,
            };
            panic!(
                "{what}: output {k} ({}) differs from the reference in {diff} of {} elements",
                g.outputs[k].name,
                gt.numel()
            );
        }
    }
    let again = m.run(x).unwrap();
    assert_eq!(again, got, "{what}: runs are deterministic");
}

#[test]
fn int8_quant_fixture_equals_reference() {
    let Some(arch) = gpu("int8_quant_fixture_equals_reference") else {
        return;
    };
    let g = quant_fixture();
    let x = mnc::io::read_npy(&fixtures_dir().join("quant").join("input.npy")).unwrap();
    check_exact(
        "quant fixture, input.npy",
        &g,
        arch,
        std::slice::from_ref(&x),
    );
    for seed in 0..3 {
        check_exact("quant fixture", &g, arch, &inputs_for(&g, seed));
    }
}

#[test]
fn int8_ops_equal_reference() {
    for batch in [1, 3] {
        for (name, g) in int8_graphs(batch) {
            // Without a GPU too: the graph runs on the reference executor.
            reference::run(&g, &inputs_for(&g, 0)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let Some(arch) = gpu("int8_ops_equal_reference") else {
                return;
            };
            for seed in 0..3 {
                check_exact(
                    &format!("{name}, batch {batch}"),
                    &g,
                    arch,
                    &inputs_for(&g, seed),
                );
            }
        }
    }
}

/// A random integer conv: u8 or i8 in and out, any geometry and group split, ReLU/Clip or
/// none, per-tensor or per-channel weights.
#[derive(Debug, Clone)]
struct QConvCase {
    n: usize,
    cig: usize,
    cog: usize,
    group: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    stride: [usize; 2],
    dil: [usize; 2],
    pads: [usize; 4],
    x_i8: bool,
    y_i8: bool,
    act: u8,
    bias: bool,
    seed: u64,
}

fn qconv_cases() -> impl Strategy<Value = QConvCase> {
    (
        (
            1usize..3,
            1usize..10,
            1usize..7,
            1usize..4,
            1usize..12,
            1usize..12,
        ),
        (
            1usize..6,
            1usize..6,
            1usize..3,
            1usize..3,
            1usize..3,
            1usize..3,
        ),
        (0usize..3, 0usize..3, 0usize..3, 0usize..3),
        (
            any::<bool>(),
            any::<bool>(),
            0u8..3,
            any::<bool>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (n, cig, cog, group, h, w),
                (kh, kw, sy, sx, dy, dx),
                (pt, pl, pb, pr),
                (x_i8, y_i8, act, bias, seed),
            )| {
                QConvCase {
                    n,
                    cig,
                    cog,
                    group,
                    h,
                    w,
                    k: [kh, kw],
                    stride: [sy, sx],
                    dil: [dy, dx],
                    pads: [pt, pl, pb, pr],
                    x_i8,
                    y_i8,
                    act,
                    bias,
                    seed,
                }
            },
        )
}

/// Pointwise cases the tensor-core kernel runs (`int8::QConvKernel::Imma`: 1x1, stride 1,
/// one group, 16+ input channels): ragged channel counts (partial 32-channel steps and
/// 16-row tiles) and pixel counts (partial 64-pixel tiles).
fn pointwise_qconv_cases() -> impl Strategy<Value = QConvCase> {
    (
        (1usize..3, 16usize..100, 1usize..140, 1usize..20, 1usize..20),
        (
            any::<bool>(),
            any::<bool>(),
            0u8..3,
            any::<bool>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |((n, cig, cog, h, w), (x_i8, y_i8, act, bias, seed))| QConvCase {
                n,
                cig,
                cog,
                group: 1,
                h,
                w,
                k: [1, 1],
                stride: [1, 1],
                dil: [1, 1],
                pads: [0; 4],
                x_i8,
                y_i8,
                act,
                bias,
                seed,
            },
        )
}

/// `Quantize -> QConv -> Dequantize` of a case (`None` if the IR refuses it).
fn qconv_graph(c: &QConvCase) -> Option<Graph> {
    use mnc_ir::{DType, QConv, QParams};
    let (ci, co) = (c.cig * c.group, c.cog * c.group);
    // The kernel shrunk until its window fits the input, the pads below the window.
    let fit = |k: usize, d: usize, len: usize| k.min((len - 1) / d + 1);
    let mut c = c.clone();
    c.k = [fit(c.k[0], c.dil[0], c.h), fit(c.k[1], c.dil[1], c.w)];
    for (i, p) in c.pads.iter_mut().enumerate() {
        *p = (*p).min((c.k[i % 2] - 1) * c.dil[i % 2]);
    }
    let xt = if c.x_i8 { DType::I8 } else { DType::U8 };
    let yt = if c.y_i8 { DType::I8 } else { DType::U8 };
    let xp = QParams::per_tensor(xt, 0.013, if c.x_i8 { -9 } else { 117 });
    let yp = QParams::per_tensor(
        yt,
        0.02 + (c.seed % 7) as f32 * 0.01,
        if c.y_i8 { 3 } else { 90 },
    );
    let mut g = Graph::new("qconv");
    let x = g.add_input("x", TensorType::f32(vec![c.n, ci, c.h, c.w]));
    let xq = g
        .add_node_inferred("xq", Op::Quantize(xp.clone()), &[x])
        .ok()?;
    let wt = rand_tensor(&[co, c.cig, c.k[0], c.k[1]], c.seed);
    let wv: Vec<i32> = wt
        .as_f32()
        .unwrap()
        .iter()
        .map(|v| (v * 127.0).round() as i32)
        .collect();
    let w = g.add_constant(
        "w",
        Tensor::from_i32_values(vec![co, c.cig, c.k[0], c.k[1]], DType::I8, wv).unwrap(),
    );
    let wq = if c.seed.is_multiple_of(2) {
        QParams {
            dtype: DType::I8,
            axis: Some(0),
            scale: (0..co).map(|o| 0.003 + 0.0005 * (o % 5) as f32).collect(),
            zero_point: vec![0; co],
        }
    } else {
        QParams::per_tensor(DType::I8, 0.004, 0)
    };
    let mut ins = vec![xq, w];
    if c.bias {
        let bt = rand_tensor(&[co], c.seed + 1);
        let bv = bt
            .as_f32()
            .unwrap()
            .iter()
            .map(|v| (v * 2000.0) as i32)
            .collect();
        ins.push(g.add_constant(
            "b",
            Tensor::from_i32_values(vec![co], DType::I32, bv).unwrap(),
        ));
    }
    let act = match c.act {
        0 => None,
        1 => Some(Activation::Relu),
        _ => Some(Activation::Clip { min: 0.0, max: 1.5 }),
    };
    let q = QConv {
        conv: Conv {
            kernel: c.k,
            strides: c.stride,
            dilations: c.dil,
            pads: c.pads,
            group: c.group,
            has_bias: c.bias,
            epilogue: Epilogue {
                residual: false,
                act,
            },
            schedule: None,
        },
        x: xp,
        w: wq,
        y: yp.clone(),
        residual: None,
    };
    let y = g
        .add_node_inferred("qconv", Op::QConv(Box::new(q)), &ins)
        .ok()?;
    let yf = g.add_node_inferred("yf", Op::Dequantize(yp), &[y]).ok()?;
    g.add_output("y", yf);
    g.add_output("yq", y);
    Some(g)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ragged_qconvs_equal_reference(c in qconv_cases()) {
        if let Some(g) = qconv_graph(&c) {
            // Without a GPU too: the case generates code and runs on the reference.
            let x = inputs_for(&g, c.seed);
            codegen::compile(&g, CudaArch::Sm80, &CudaOptions::default()).unwrap();
            reference::run(&g, &x).unwrap();
            let Some(arch) = gpu("ragged_qconvs_equal_reference") else { return Ok(()); };
            check_exact(&format!("{c:?}"), &g, arch, &x);
        }
    }

    #[test]
    fn ragged_pointwise_qconvs_equal_reference(c in pointwise_qconv_cases()) {
        let g = qconv_graph(&c).expect("a pointwise conv the IR accepts");
        let x = inputs_for(&g, c.seed);
        let p = codegen::compile(&g, CudaArch::Sm80, &CudaOptions::default()).unwrap();
        prop_assert!(p.ptx.contains("mma.sync.aligned.m16n8k32"), "not on tensor cores: {c:?}");
        reference::run(&g, &x).unwrap();
        let Some(arch) = gpu("ragged_pointwise_qconvs_equal_reference") else { return Ok(()); };
        check_exact(&format!("{c:?}"), &g, arch, &x);
    }
}

fn time_model(m: &mut CudaModel, x: &[Tensor], iters: usize) -> f64 {
    m.upload_inputs(x).unwrap();
    for _ in 0..3 {
        m.execute().unwrap();
    }
    m.synchronize().unwrap();
    let t = Instant::now();
    for _ in 0..iters {
        m.execute().unwrap();
    }
    m.synchronize().unwrap();
    t.elapsed().as_secs_f64() * 1e3 / iters as f64
}

#[test]
#[ignore = "benchmark: run by scripts/gpu-check.sh on a GPU machine"]
fn bench_zoo_models() {
    let Some(arch) = gpu("bench_zoo_models") else {
        return;
    };
    for (name, tf32) in [
        ("mobilenet_v2", false),
        ("efficientnet_b0", false),
        ("mobilenet_v2", true),
        ("efficientnet_b0", true),
    ] {
        let who = if tf32 { "mnc-tf32" } else { "mnc" };
        for batch in [1usize, 256] {
            let o = ZooOptions {
                batch,
                ..Default::default()
            };
            let g = build(name, &o).unwrap();
            let h = optimized(&g);
            let t0 = Instant::now();
            let mut m = CudaModel::compile(&h, arch, &CudaOptions { allow_tf32: tf32 }).unwrap();
            let load_s = t0.elapsed().as_secs_f64();
            let x = inputs_for(&g, 1);
            if batch == 1 {
                // full-size sanity check against the reference executor
                let want = reference::run(&g, &x).unwrap();
                let got = m.run(&x).unwrap();
                let (e, s) =
                    mnc_tests::max_errors(got[0].as_f32().unwrap(), want[0].as_f32().unwrap());
                // reported, not asserted: the correctness tests assert; the timing still runs
                let tol = if tf32 { TF32_TOL } else { TOL };
                let verdict = if e <= tol * s { "ok" } else { "MISMATCH" };
                eprintln!(
                    "{who} {name} 224px batch 1: max err vs reference {e:.3e} (max|y| {s:.3e}) {verdict}"
                );
            }
            let iters = if batch == 1 { 200 } else { 10 };
            let ms = time_model(&mut m, &x, iters);
            let p = m.program();
            println!(
                "BENCH {who} {name} batch={batch} ms={ms:.3} img_per_s={:.1} kernels={} launches={} cuda_graph={} arena_mib={:.1} load_s={load_s:.2} device={}",
                batch as f64 * 1e3 / ms,
                p.kernels.len(),
                p.launches.len(),
                m.uses_cuda_graph(),
                p.arena_len as f64 * 4.0 / (1 << 20) as f64,
                m.device_name()
            );
        }
    }
}
