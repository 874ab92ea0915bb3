//! Guard-page mode (`CompiledModel::run_guarded`) on real programs: every committed fixture,
//! the hand-built sample blocks and a set of ragged single-op graphs (depthwise stride 1/2,
//! pointwise, im2col and grouped convs, pools, SE, Gemm, MatMul, broadcasting Binary, Concat,
//! GAP, ChannelAffine, activations) run on every JIT target the host has, in both placements
//! (buffers against the trailing and against the leading guard page), with Cranelift's
//! verifier and the canaries on. Any out-of-bounds read or write by generated code faults and
//! kills this test binary (SIGSEGV); the results must match the reference to
//! `max|y - y_ref| <= 1e-4 * max|y_ref|` per element and equal the plain run bit for bit
//! (the code is the same, only the buffer addresses differ, and no kernel branches on
//! alignment). The runtime's unit tests (`mnc_runtime::guard`) prove that such accesses do
//! fault.

mod cpu_common;

use cpu_common::*;
use mnc::onnx::{import_file, ImportOptions};
use mnc_ir::eval::eval_op;
use mnc_ir::{
    Activation, BinaryOp, Conv, Epilogue, Gemm, Graph, Op, Pool, PoolKind, SqueezeExcite, Tensor,
};
use mnc_runtime::cpu::{CompiledModel, GuardPlacement, Target};
use mnc_tests::fixtures;
use std::time::Instant;

const TOL: f32 = 1e-4;

/// Compiles `g` for every host JIT target and runs it guarded in both placements, checking
/// every output against `want` and against the plain run. Returns the number of guarded runs.
fn check_guarded(what: &str, g: &Graph, x: &[Tensor], want: &[Tensor]) -> usize {
    let mut runs = 0;
    for t in Target::jit_targets_for_test(what) {
        let m =
            CompiledModel::compile(g, t, &verified()).unwrap_or_else(|e| panic!("{what} {t}: {e}"));
        assert_eq!(
            m.report().fallbacks(),
            0,
            "{what} {t}: fallback ops are not covered by guard pages\n{}",
            m.report().to_text()
        );
        let plain = m.run(x).unwrap_or_else(|e| panic!("{what} {t}: {e}"));
        for pl in GuardPlacement::ALL {
            let got = m
                .run_guarded(x, pl)
                .unwrap_or_else(|e| panic!("{what} {t} {pl:?}: {e}"));
            assert_eq!(got.len(), want.len(), "{what} {t} {pl:?}");
            for (k, (y, r)) in got.iter().zip(want).enumerate() {
                check_close(&format!("{what} {t} {pl:?} output {k}"), y, r, TOL)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            assert_eq!(
                got, plain,
                "{what} {t} {pl:?}: guarded run differs from the plain run"
            );
            runs += 1;
        }
    }
    runs
}

/// One op on `inputs` (graph input or constant each), checked guarded against `eval_op`.
fn check_op(what: &str, op: &Op, inputs: &[(Tensor, bool)]) -> usize {
    let refs: Vec<&Tensor> = inputs.iter().map(|(t, _)| t).collect();
    let want = eval_op(op, &refs).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (g, feeds) = single_op_graph(op, inputs);
    check_guarded(what, &g, &feeds, &[want])
}

fn conv_case(
    what: &str,
    (n, ci, h, w): (usize, usize, usize, usize),
    co: usize,
    c: Conv,
    seed: u64,
) -> usize {
    let (k, s, d, p) = (c.kernel, c.strides, c.dilations, c.pads);
    let mut ins = vec![
        (rand_tensor(&[n, ci, h, w], seed), false),
        (rand_tensor(&[co, ci / c.group, k[0], k[1]], seed + 1), true),
    ];
    if c.has_bias {
        ins.push((rand_tensor(&[co], seed + 2), true));
    }
    if c.epilogue.residual {
        let oh = (h + p[0] + p[2] - (d[0] * (k[0] - 1) + 1)) / s[0] + 1;
        let ow = (w + p[1] + p[3] - (d[1] * (k[1] - 1) + 1)) / s[1] + 1;
        ins.push((rand_tensor(&[n, co, oh, ow], seed + 3), false));
    }
    check_op(what, &Op::Conv(c), &ins)
}

#[test]
fn ragged_ops_in_both_placements() {
    let t0 = Instant::now();
    let mut runs = 0;
    let relu6 = Some(Activation::Clip { min: 0.0, max: 6.0 });
    let ep = |residual, act| Epilogue { residual, act };
    // Depthwise, stride 1 and 2 (odd sizes: partial vectors at every row end).
    for (what, shape, k, s, pads) in [
        ("dw 3x3 s1", (1, 13, 11, 9), [3, 3], [1, 1], [1, 1, 1, 1]),
        ("dw 3x3 s2", (2, 7, 15, 13), [3, 3], [2, 2], [1, 1, 1, 1]),
        ("dw 5x5 s2", (1, 6, 10, 11), [5, 5], [2, 2], [2, 2, 2, 2]),
        ("dw 3x3 s2 asym", (1, 5, 9, 6), [3, 3], [2, 2], [0, 0, 1, 1]),
    ] {
        let c = Conv {
            kernel: k,
            strides: s,
            pads,
            group: shape.1,
            has_bias: true,
            epilogue: ep(s == [1, 1], relu6),
            ..Default::default()
        };
        runs += conv_case(what, shape, shape.1, c, 10);
    }
    // Pointwise (GEMM kernel on the activation plane) and strided 1x1.
    let pw = Conv {
        has_bias: true,
        epilogue: ep(true, Some(Activation::HardSwish)),
        ..Default::default()
    };
    runs += conv_case("pointwise", (2, 9, 5, 7), 13, pw, 20);
    let pw2 = Conv {
        strides: [2, 2],
        ..Default::default()
    };
    runs += conv_case("pointwise s2", (1, 4, 9, 7), 6, pw2, 25);
    // im2col (full and grouped, dilated, asymmetric pads).
    let full = Conv {
        kernel: [3, 3],
        strides: [2, 2],
        pads: [1, 1, 1, 1],
        has_bias: true,
        epilogue: ep(false, Some(Activation::Silu)),
        ..Default::default()
    };
    runs += conv_case("im2col 3x3 s2", (1, 3, 17, 15), 10, full, 30);
    let grouped = Conv {
        kernel: [3, 2],
        strides: [2, 1],
        dilations: [2, 1],
        pads: [1, 0, 2, 1],
        group: 4,
        epilogue: ep(true, None),
        ..Default::default()
    };
    runs += conv_case("im2col grouped", (3, 8, 6, 11), 16, grouped, 40);
    // Pools.
    let x = rand_tensor(&[2, 3, 11, 9], 50);
    for (kind, k, s, pads, ceil, cip) in [
        (PoolKind::Max, [3, 3], [2, 2], [1, 1, 1, 1], false, false),
        (PoolKind::Avg, [2, 3], [1, 2], [0, 1, 1, 0], true, false),
        (PoolKind::Avg, [3, 3], [2, 2], [1, 1, 1, 1], false, true),
    ] {
        let p = Pool {
            kind,
            kernel: k,
            strides: s,
            pads,
            ceil_mode: ceil,
            count_include_pad: cip,
            ..Default::default()
        };
        runs += check_op(
            &format!("{kind:?} pool"),
            &Op::Pool(p),
            &[(x.clone(), false)],
        );
    }
    runs += check_op("gap", &Op::GlobalAveragePool, &[(x.clone(), false)]);
    runs += check_op(
        "affine",
        &Op::ChannelAffine,
        &[
            (x.clone(), false),
            (rand_tensor(&[3], 51), true),
            (rand_tensor(&[3], 52), true),
        ],
    );
    runs += check_op(
        "sigmoid",
        &Op::Act(Activation::Sigmoid),
        &[(rand_tensor(&[203], 53), false)],
    );
    // Squeeze-and-excite.
    let (c, r) = (37, 9);
    let se = SqueezeExcite {
        act: Activation::Silu,
        gate: Activation::Sigmoid,
    };
    runs += check_op(
        "se",
        &Op::SqueezeExcite(se),
        &[
            (rand_tensor(&[2, c, 5, 7], 60), false),
            (rand_tensor(&[r, c, 1, 1], 61), true),
            (rand_tensor(&[r], 62), true),
            (rand_tensor(&[c, r, 1, 1], 63), true),
            (rand_tensor(&[c], 64), true),
        ],
    );
    // Gemm (transposes, C broadcast, residual) and MatMul.
    // C of shape [m, 1], [n] or none.
    for (m, k, n, ta, tb, c_col) in [
        (3, 17, 33, false, true, Some(true)),
        (2, 131, 67, true, false, Some(false)),
        (1, 7, 1, false, false, None),
    ] {
        let g = Gemm {
            trans_a: ta,
            trans_b: tb,
            alpha: 0.5,
            beta: 2.0,
            has_c: c_col.is_some(),
            epilogue: ep(true, Some(Activation::Relu)),
        };
        let mut ins = vec![
            (rand_tensor(&(if ta { [k, m] } else { [m, k] }), 70), false),
            (rand_tensor(&(if tb { [n, k] } else { [k, n] }), 71), true),
        ];
        match c_col {
            Some(true) => ins.push((rand_tensor(&[m, 1], 72), true)),
            Some(false) => ins.push((rand_tensor(&[n], 72), true)),
            None => {}
        }
        ins.push((rand_tensor(&[m, n], 73), false));
        runs += check_op(&format!("gemm {m}x{k}x{n}"), &Op::Gemm(g), &ins);
    }
    runs += check_op(
        "matmul",
        &Op::MatMul,
        &[
            (rand_tensor(&[2, 3, 17], 74), false),
            (rand_tensor(&[17, 9], 75), true),
        ],
    );
    // Broadcasting Binary ops (the second operand an input or a constant).
    for (i, (a, b, op, b_const)) in [
        (&[2, 3, 5, 7][..], &[1, 3, 1, 1][..], BinaryOp::Add, false),
        (&[4, 1, 9], &[4, 3, 1], BinaryOp::Mul, false),
        (&[2, 3, 5, 7], &[7], BinaryOp::Sub, true),
        (&[3, 1], &[1, 5], BinaryOp::Div, true),
        (&[13], &[], BinaryOp::Mul, true),
    ]
    .into_iter()
    .enumerate()
    {
        let ta = rand_tensor(a, 80 + i as u64);
        let mut tb = rand_tensor(b, 90 + i as u64);
        if op == BinaryOp::Div {
            for v in tb.as_f32_mut().unwrap() {
                *v = v.abs() + 0.5;
            }
        }
        runs += check_op(
            &format!("{op:?} {a:?} {b:?}"),
            &Op::Binary(op),
            &[(ta, false), (tb, b_const)],
        );
    }
    // Concat along the channel and the last axis, three ragged inputs.
    runs += check_op(
        "concat c",
        &Op::Concat { axis: 1 },
        &[
            (rand_tensor(&[2, 3, 5, 7], 100), false),
            (rand_tensor(&[2, 5, 5, 7], 101), false),
            (rand_tensor(&[2, 1, 5, 7], 102), false),
        ],
    );
    runs += check_op(
        "concat w",
        &Op::Concat { axis: 3 },
        &[
            (rand_tensor(&[2, 3, 5, 7], 103), false),
            (rand_tensor(&[2, 3, 5, 1], 104), false),
            (rand_tensor(&[2, 3, 5, 2], 105), false),
        ],
    );
    eprintln!(
        "ragged ops: {runs} guarded runs in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn sample_blocks_in_both_placements() {
    let t0 = Instant::now();
    let mut runs = 0;
    for (name, g) in mnc_tests::sample_blocks() {
        let x = feeds(&g, 5);
        let want = mnc_runtime::reference::run(&g, &x).unwrap();
        let g = mnc::exec::optimized(g, Target::X86_64Avx2).unwrap();
        runs += check_guarded(name, &g, &x, &want);
    }
    eprintln!(
        "sample blocks: {runs} guarded runs in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn committed_fixtures_in_both_placements() {
    let t0 = Instant::now();
    let all = fixtures();
    assert!(!all.is_empty(), "no fixtures found");
    let mut runs = 0;
    for dir in all {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let g = import_file(&dir.join("model.onnx"), &ImportOptions::default()).unwrap();
        let g = mnc::exec::optimized(g, Target::X86_64Avx2).unwrap();
        let npy = dir.join("input.npy");
        let x = if npy.is_file() {
            vec![mnc::io::read_npy(&npy).unwrap()]
        } else {
            feeds(&g, 3)
        };
        let want = mnc_runtime::reference::run(&g, &x).unwrap();
        runs += check_guarded(&name, &g, &x, &want);
    }
    eprintln!(
        "fixtures: {runs} guarded runs in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
