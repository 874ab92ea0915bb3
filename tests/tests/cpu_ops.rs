//! CPU backend, op by op: every lowered op kind against `mnc_ir::eval::eval_op` on ragged
//! shapes, on every JIT target the host runs (Cranelift's verifier on), tolerance
//! `max|y - y_ref| <= 1e-4 * max|y_ref|` per element. Also: fallbacks are visible in the
//! report, CLIF is dumped, and a target the host cannot run is refused clearly.

mod cpu_common;

use cpu_common::*;
use mnc_ir::op::optional_activation_examples;
use mnc_ir::{
    Activation, BinaryOp, Conv, Epilogue, Gemm, Op, Pool, PoolKind, SqueezeExcite, Tensor,
};
use mnc_runtime::cpu::{CompiledModel, CpuOptions, Target};

const TOL: f32 = 1e-4;

#[test]
fn activations_including_extremes() {
    let mut v = rand_vec(203, 3)
        .iter()
        .map(|x| x * 12.0)
        .collect::<Vec<_>>();
    v.extend([-100.0, -88.0, -20.0, 0.0, 20.0, 88.0, 100.0, 1e30, -1e30]);
    let x = Tensor::from_f32(vec![v.len()], v).unwrap();
    for a in optional_activation_examples().into_iter().flatten() {
        let fb = check_op_all_targets(&Op::Act(a), &[(x.clone(), false)], TOL).unwrap();
        assert_eq!(fb, 0);
    }
}

#[test]
fn binary_broadcasting() {
    let shapes: &[(&[usize], &[usize])] = &[
        (&[2, 3, 5, 7], &[2, 3, 5, 7]),
        (&[2, 3, 5, 7], &[1, 3, 1, 1]),
        (&[2, 3, 5, 7], &[7]),
        (&[2, 3, 5, 7], &[]),
        (&[3, 1], &[1, 5]),
        (&[1, 6, 1, 1], &[2, 6, 3, 3]),
        (&[4, 1, 9], &[4, 3, 1]),
        (&[13], &[13]),
    ];
    for (i, (a, b)) in shapes.iter().enumerate() {
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            let ta = rand_tensor(a, i as u64 + 1);
            let mut tb = rand_tensor(b, i as u64 + 50);
            if op == BinaryOp::Div {
                let v: Vec<f32> = tb.as_f32().unwrap().iter().map(|x| x.abs() + 0.5).collect();
                tb = Tensor::from_f32(tb.shape.clone(), v).unwrap();
            }
            for b_const in [false, true] {
                let fb = check_op_all_targets(
                    &Op::Binary(op),
                    &[(ta.clone(), false), (tb.clone(), b_const)],
                    TOL,
                )
                .unwrap();
                assert_eq!(fb, 0);
            }
        }
    }
}

#[test]
fn affine_batchnorm_means_concat() {
    let x = rand_tensor(&[2, 5, 3, 7], 1);
    let s = rand_tensor(&[5], 2);
    let b = rand_tensor(&[5], 3);
    check_op_all_targets(
        &Op::ChannelAffine,
        &[(x.clone(), false), (s.clone(), true), (b.clone(), true)],
        TOL,
    )
    .unwrap();
    let var: Vec<f32> = rand_vec(5, 4).iter().map(|v| v.abs() + 0.1).collect();
    let var = Tensor::from_f32(vec![5], var).unwrap();
    let fb = check_op_all_targets(
        &Op::BatchNorm { epsilon: 1e-5 },
        &[
            (x.clone(), false),
            (s, true),
            (b, true),
            (rand_tensor(&[5], 5), true),
            (var, true),
        ],
        TOL,
    )
    .unwrap();
    assert_eq!(fb, 0);
    check_op_all_targets(&Op::GlobalAveragePool, &[(x.clone(), false)], TOL).unwrap();
    let big = rand_tensor(&[1, 3, 37, 37], 9);
    check_op_all_targets(&Op::GlobalAveragePool, &[(big.clone(), false)], TOL).unwrap();
    let fb = check_op_all_targets(
        &Op::ReduceMean {
            axes: vec![2, 3],
            keepdims: false,
        },
        &[(big, false)],
        TOL,
    )
    .unwrap();
    assert_eq!(fb, 0);
    let y = rand_tensor(&[2, 4, 3, 7], 6);
    for axis in 0..4 {
        let z = if axis == 1 { y.clone() } else { x.clone() };
        let op = Op::Concat { axis };
        if axis != 1 {
            // same shapes except the concat axis
            let fb = check_op_all_targets(&op, &[(x.clone(), false), (z, false)], TOL).unwrap();
            assert_eq!(fb, 0);
        } else {
            let fb = check_op_all_targets(&op, &[(x.clone(), false), (z, false)], TOL).unwrap();
            assert_eq!(fb, 0);
        }
    }
}

#[test]
fn squeeze_excite_both_forms() {
    // The last shape is large enough for the kernel to split every phase (the hidden
    // mat-vec by rows) at 2 and 3 threads.
    for (c, r, hw) in [(16, 4, 7), (37, 9, 5), (5, 1, 1), (300, 70, 7)] {
        for se in [
            SqueezeExcite {
                act: Activation::Relu,
                gate: Activation::HardSigmoid {
                    alpha: 1.0 / 6.0,
                    beta: 0.5,
                },
            },
            SqueezeExcite {
                act: Activation::Silu,
                gate: Activation::Sigmoid,
            },
        ] {
            let ins = [
                (rand_tensor(&[2, c, hw, hw + 2], 1), false),
                (rand_tensor(&[r, c, 1, 1], 2), true),
                (rand_tensor(&[r], 3), true),
                (rand_tensor(&[c, r, 1, 1], 4), true),
                (rand_tensor(&[c], 5), true),
            ];
            for threads in [1, 2, 3] {
                // The pool on every run (no switch to the calling thread alone).
                let opts = CpuOptions {
                    threads,
                    thread_choice: false,
                    ..verified()
                };
                let fb =
                    check_op_all_targets_with(&Op::SqueezeExcite(se.clone()), &ins, TOL, &opts)
                        .unwrap();
                assert_eq!(fb, 0);
            }
        }
    }
}

#[test]
fn pooling_max_and_avg() {
    let x = rand_tensor(&[2, 3, 11, 9], 7);
    for kind in [PoolKind::Max, PoolKind::Avg] {
        for (k, s, pads, ceil, cip) in [
            ([3, 3], [2, 2], [1, 1, 1, 1], false, false),
            ([3, 3], [2, 2], [1, 1, 1, 1], false, true),
            ([2, 3], [1, 2], [0, 1, 1, 0], true, false),
            ([3, 3], [2, 2], [0, 0, 0, 0], true, true),
            ([1, 1], [1, 1], [0, 0, 0, 0], false, false),
        ] {
            let p = Pool {
                kind,
                kernel: k,
                strides: s,
                pads,
                dilations: [1, 1],
                ceil_mode: ceil,
                count_include_pad: cip,
            };
            let fb = check_op_all_targets(&Op::Pool(p), &[(x.clone(), false)], TOL).unwrap();
            assert_eq!(fb, 0);
        }
    }
}

#[test]
fn gemm_and_matmul() {
    for (m, k, n) in [(1, 1280, 1000), (3, 17, 33), (2, 5, 16), (1, 7, 1)] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for (has_c, c_shape) in [
                (false, vec![]),
                (true, vec![n]),
                (true, vec![m, 1]),
                (true, vec![m, n]),
            ] {
                let a = rand_tensor(&(if ta { [k, m] } else { [m, k] }), 1);
                let b = rand_tensor(&(if tb { [n, k] } else { [k, n] }), 2);
                let g = Gemm {
                    trans_a: ta,
                    trans_b: tb,
                    alpha: 0.5,
                    beta: 2.0,
                    has_c,
                    epilogue: Epilogue {
                        residual: true,
                        act: Some(Activation::HardSwish),
                    },
                };
                let mut ins = vec![(a, false), (b, true)];
                if has_c {
                    ins.push((rand_tensor(&c_shape, 3), true));
                }
                ins.push((rand_tensor(&[m, n], 4), false));
                let fb = check_op_all_targets(&Op::Gemm(g), &ins, TOL).unwrap();
                assert_eq!(fb, 0);
            }
        }
        let fb = check_op_all_targets(
            &Op::MatMul,
            &[
                (rand_tensor(&[2, m, k], 5), false),
                (rand_tensor(&[k, n], 6), true),
            ],
            TOL,
        )
        .unwrap();
        assert_eq!(fb, 0);
    }
}

#[test]
fn conv_hand_cases() {
    // (n, ci, h, w, co, k, stride, dil, pads, group)
    type Case = (
        usize,
        usize,
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [usize; 4],
        usize,
    );
    let cases: &[Case] = &[
        (1, 3, 17, 17, 8, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], 1),
        (2, 16, 9, 9, 24, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0], 1),
        (1, 12, 10, 7, 12, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 12),
        (1, 12, 10, 7, 12, [5, 5], [2, 2], [1, 1], [2, 2, 2, 2], 12),
        (3, 8, 6, 11, 16, [3, 2], [2, 1], [2, 1], [1, 0, 2, 1], 4),
        (1, 6, 5, 5, 12, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1], 6),
        (1, 5, 1, 1, 7, [1, 1], [1, 1], [1, 1], [0, 0, 0, 0], 1),
        (1, 4, 7, 7, 4, [7, 7], [1, 1], [1, 1], [3, 3, 3, 3], 4),
        (1, 4, 8, 8, 6, [1, 1], [2, 2], [1, 1], [0, 0, 0, 0], 1),
    ];
    for (i, &(n, ci, h, w, co, k, s, d, p, grp)) in cases.iter().enumerate() {
        for act in optional_activation_examples() {
            for (bias, res) in [(false, false), (true, true), (true, false)] {
                let c = Conv {
                    kernel: k,
                    strides: s,
                    dilations: d,
                    pads: p,
                    group: grp,
                    has_bias: bias,
                    epilogue: Epilogue { residual: res, act },
                    schedule: None,
                };
                let x = rand_tensor(&[n, ci, h, w], i as u64);
                let wt = rand_tensor(&[co, ci / grp, k[0], k[1]], 100 + i as u64);
                let mut ins = vec![(x, false), (wt, true)];
                if bias {
                    ins.push((rand_tensor(&[co], 7), true));
                }
                if res {
                    let oh = (h + p[0] + p[2] - (d[0] * (k[0] - 1) + 1)) / s[0] + 1;
                    let ow = (w + p[1] + p[3] - (d[1] * (k[1] - 1) + 1)) / s[1] + 1;
                    ins.push((rand_tensor(&[n, co, oh, ow], 8), false));
                }
                let fb = check_op_all_targets(&Op::Conv(c), &ins, TOL)
                    .unwrap_or_else(|e| panic!("case {i}: {e}"));
                assert_eq!(fb, 0, "case {i}");
            }
        }
    }
}

#[test]
fn fallback_is_visible_and_still_correct() {
    // ReduceMean over a leading axis is not lowered: it must run (reference kernel) and be
    // labelled.
    let x = rand_tensor(&[2, 3, 4], 1);
    let op = Op::ReduceMean {
        axes: vec![0],
        keepdims: false,
    };
    let fb = check_op_all_targets(&op, &[(x.clone(), false)], 0.0).unwrap();
    assert_eq!(
        fb,
        Target::jit_targets_for_test("cpu_ops::fallback_is_visible_and_still_correct").len()
    );
    let (g, _) = single_op_graph(&op, &[(x, false)]);
    let m = CompiledModel::compile(&g, Target::X86_64, &CpuOptions::default()).unwrap();
    let text = m.report().to_text();
    assert!(
        text.contains("fallback: ReduceMean over non-trailing axes"),
        "{text}"
    );
}

#[test]
fn clif_dump_and_report() {
    let c = Conv {
        kernel: [3, 3],
        pads: [1, 1, 1, 1],
        group: 4,
        has_bias: true,
        ..Default::default()
    };
    let (g, feeds) = single_op_graph(
        &Op::Conv(c),
        &[
            (rand_tensor(&[1, 4, 6, 6], 1), false),
            (rand_tensor(&[4, 1, 3, 3], 2), true),
            (rand_tensor(&[4], 3), true),
        ],
    );
    let opts = CpuOptions {
        keep_clif: true,
        ..verified()
    };
    let m = CompiledModel::compile(&g, Target::X86_64, &opts).unwrap();
    let clif = m.clif_text();
    assert!(
        clif.contains("function") && clif.contains("f32x4") && clif.contains("; op0 op (Conv)"),
        "{clif}"
    );
    let r = m.report();
    assert_eq!(r.ops.len(), 1);
    assert_eq!(r.ops[0].strategy, "conv-direct");
    assert!(r.code_bytes > 0 && r.ops[0].code_bytes == r.code_bytes);
    assert_eq!(r.ops[0].flops, 2 * 4 * 36 * 9);
    if Target::X86_64.runs_on_host() {
        assert_eq!(m.run(&feeds).unwrap()[0].shape, vec![1, 4, 6, 6]);
    }
}

#[test]
fn wrong_inputs_are_clear_errors() {
    let (g, _) = single_op_graph(
        &Op::Act(Activation::Relu),
        &[(rand_tensor(&[2, 3], 1), false)],
    );
    let m = CompiledModel::compile(&g, Target::detect_host(), &CpuOptions::default()).unwrap();
    if !m.target().is_jit() {
        eprintln!("SKIPPED wrong_inputs_are_clear_errors: no JIT target runs on this CPU");
        return;
    }
    let e = m.run(&[rand_tensor(&[3, 2], 1)]).unwrap_err().to_string();
    assert_eq!(e, "input 'x0' must be f32[2,3], got f32[3,2]");
    let e = m.run(&[]).unwrap_err().to_string();
    assert!(e.contains("takes 1 input(s), got 0"), "{e}");
}

#[test]
fn reference_is_not_a_jit_target() {
    let (g, _) = single_op_graph(&Op::Act(Activation::Relu), &[(rand_tensor(&[2], 1), false)]);
    let e = CompiledModel::compile(&g, Target::Reference, &CpuOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a JIT target"), "{e}");
}

#[test]
fn packed_constant_also_read_raw() {
    // The same constant is a conv weight (read packed) and an Add operand (read raw), and a
    // view of it is a graph output: the blob must still hold its raw bytes.
    use mnc_ir::{Graph, TensorType};
    let mut g = Graph::new("shared");
    let x = g.add_input("x", TensorType::f32(vec![1, 3, 1, 1]));
    let w = g.add_constant("w", rand_tensor(&[3, 3, 1, 1], 1));
    let conv = g
        .add_node_inferred("conv", Op::Conv(Conv::default()), &[x, w])
        .unwrap();
    let sum = g
        .add_node_inferred("sum", Op::Binary(BinaryOp::Add), &[conv, w])
        .unwrap();
    let flat = g
        .add_node_inferred("flat", Op::Flatten { axis: 1 }, &[w])
        .unwrap();
    g.add_output("sum", sum);
    g.add_output("w_flat", flat);
    let feed = rand_tensor(&[1, 3, 1, 1], 2);
    let want = mnc_runtime::reference::run(&g, std::slice::from_ref(&feed)).unwrap();
    for t in Target::jit_targets_for_test("cpu_ops::packed_constant_also_read_raw") {
        let m = CompiledModel::compile(&g, t, &verified()).unwrap();
        let got = m.run(std::slice::from_ref(&feed)).unwrap();
        assert_eq!(got.len(), want.len(), "{t}: number of outputs");
        for (a, b) in got.iter().zip(&want) {
            check_close(&format!("{t}"), a, b, TOL).unwrap();
        }
    }
}

/// Which ISAs the CPU tests exercise on this host: one `ISA exercised: <target>` line per
/// JIT target it runs and one SKIPPED line per target it cannot (`.ci/run` prints them).
#[test]
fn host_isas() {
    let run = Target::jit_targets_for_test("host_isas");
    for t in &run {
        eprintln!("ISA exercised: {t}");
    }
    assert_eq!(run, Target::host_jit_targets());
    #[cfg(target_arch = "x86_64")]
    assert!(!run.is_empty(), "no JIT target runs on this x86-64 CPU");
}
