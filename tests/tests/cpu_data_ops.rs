//! CPU backend, data-movement ops and Softmax (`targets/src/cpu/lower_data.rs`): Transpose,
//! Slice, Pad and Gather must be bit-identical to `mnc_ir::eval::eval_op`; Softmax within
//! `max|y - y_ref| <= 1e-4 * max|y_ref|` per element; LRN (the Rust kernel of
//! `targets/src/cpu/kernels/lrn.rs`) within `1e-5 * |y_ref|` of every element. Every JIT target the host runs, with
//! Cranelift's verifier and guard canaries on, and the op report must name the generated
//! strategy (not a fallback).

mod cpu_common;

use cpu_common::*;
use mnc_ir::eval::eval_op;
use mnc_ir::{Op, Slice, Tensor};
use mnc_runtime::cpu::{CompiledModel, Target};

const TOL: f32 = 1e-4;

/// How the result is compared with the reference.
#[derive(Clone, Copy)]
enum Cmp {
    /// Every output element bit-identical.
    Exact,
    /// `|y - y_ref| <= TOL * max|y_ref|` per element.
    Close,
}

/// Runs `op` on every host JIT target; the op's report strategy must start with
/// `strategy`. Returns the number of targets checked.
fn check(op: &Op, inputs: &[(Tensor, bool)], cmp: Cmp, strategy: &str) -> Result<usize, String> {
    let refs: Vec<&Tensor> = inputs.iter().map(|(t, _)| t).collect();
    let want = eval_op(op, &refs).map_err(|e| format!("reference: {e}"))?;
    let (g, feeds) = single_op_graph(op, inputs);
    let mut n = 0;
    for t in Target::jit_targets_for_test(op.kind()) {
        let m = CompiledModel::compile(&g, t, &verified()).map_err(|e| format!("{t}: {e}"))?;
        let rep = m
            .report()
            .ops
            .iter()
            .find(|o| o.node == "op")
            .ok_or_else(|| format!("{t}: op missing from the report"))?;
        if !rep.strategy.starts_with(strategy) || rep.fallback {
            return Err(format!(
                "{t} {op:?}: strategy {:?}, want {strategy:?}",
                rep.strategy
            ));
        }
        let got = m.run(&feeds).map_err(|e| format!("{t}: {e}"))?;
        let what = format!("{t} {op:?} on {:?}", inputs[0].0.shape);
        match cmp {
            Cmp::Exact => {
                if got[0].shape != want.shape {
                    return Err(format!(
                        "{what}: shape {:?} vs {:?}",
                        got[0].shape, want.shape
                    ));
                }
                let (a, b) = (got[0].as_f32().unwrap(), want.as_f32().unwrap());
                if let Some(i) = (0..b.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
                    return Err(format!("{what}: element {i}: got {}, want {}", a[i], b[i]));
                }
            }
            Cmp::Close => {
                check_close(&what, &got[0], &want, TOL)?;
            }
        }
        n += 1;
    }
    Ok(n)
}

fn permutations(r: usize) -> Vec<Vec<usize>> {
    if r == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(r - 1) {
        for pos in 0..=p.len() {
            let mut q = p.clone();
            q.insert(pos, r - 1);
            out.push(q);
        }
    }
    out
}

#[test]
fn transpose_every_permutation_rank_2_to_4() {
    let shapes: [&[usize]; 7] = [
        &[5, 7],
        &[1, 9],
        &[3, 5, 6],
        &[4, 1, 9],
        &[2, 3, 5, 7],
        &[1, 3, 1, 6],
        &[2, 6, 5, 13],
    ];
    let mut cases = 0;
    for (s, shape) in shapes.iter().enumerate() {
        let x = rand_tensor(shape, 10 + s as u64);
        let perms = permutations(shape.len());
        assert_eq!(
            perms.len(),
            (1..=shape.len()).product::<usize>(),
            "permutations of rank {}",
            shape.len()
        );
        for perm in perms {
            let op = Op::Transpose { perm };
            check(&op, &[(x.clone(), false)], Cmp::Exact, "transpose").unwrap();
            cases += 1;
        }
    }
    // NCHW -> NHWC with a larger plane (innermost source stride 144, vector assembly + tail).
    let x = rand_tensor(&[2, 19, 12, 12], 3);
    let op = Op::Transpose {
        perm: vec![0, 2, 3, 1],
    };
    check(&op, &[(x, false)], Cmp::Exact, "transpose").unwrap();
    // Cache-blocked copies: innermost output axis longer than a block (64) with a source
    // stride >= 16, full blocks plus a tail, the contiguous source axis adjacent or not.
    for (shape, perm) in [
        (vec![130, 16], vec![1, 0]),
        (vec![2, 67, 17], vec![0, 2, 1]),
        (vec![3, 70, 5, 16], vec![0, 3, 2, 1]),
        (vec![2, 128, 16], vec![2, 0, 1]),
    ] {
        let x = rand_tensor(&shape, 4);
        let op = Op::Transpose { perm };
        check(&op, &[(x, false)], Cmp::Exact, "transpose-tiled").unwrap();
    }
    let x = rand_tensor(&[2, 3, 70, 16], 5);
    for perm in permutations(4) {
        let op = Op::Transpose { perm };
        check(&op, &[(x.clone(), false)], Cmp::Exact, "transpose").unwrap();
    }
    // Empty tensor.
    let x = Tensor::from_f32(vec![3, 0, 2], vec![]).unwrap();
    let op = Op::Transpose {
        perm: vec![2, 1, 0],
    };
    check(&op, &[(x, false)], Cmp::Exact, "transpose").unwrap();
    assert_eq!(cases, 2 * 2 + 2 * 6 + 3 * 24);
}

/// Normalized `(start, end, step)` triples for a dimension of size `dim` (the importer's
/// clamping: `end == dim` for open positive ends, `end == -1` for open negative ones).
fn slice_cases(dim: i64) -> Vec<(i64, i64, i64)> {
    vec![
        (0, dim, 1),
        (1, dim, 1),
        (1, dim - 1, 1),
        (0, dim, 2),
        (1, dim, 3),
        (0, dim, dim + 5),
        (dim - 1, -1, -1),
        (dim - 1, 0, -2),
        (dim - 2, -1, -3),
        (dim - 1, -1, -(dim + 5)),
        (2, 2, 1),
        (3, 1, 1),
        (0, 1, -1),
    ]
}

#[test]
fn slice_every_axis_with_negative_steps_and_clamped_ends() {
    let shapes: [&[usize]; 3] = [&[7, 9], &[5, 6, 7], &[3, 4, 5, 6]];
    let mut cases = 0;
    for (s, shape) in shapes.iter().enumerate() {
        let x = rand_tensor(shape, 20 + s as u64);
        for axis in 0..shape.len() {
            for (start, end, step) in slice_cases(shape[axis] as i64) {
                let op = Op::Slice(Slice {
                    axes: vec![axis],
                    starts: vec![start],
                    ends: vec![end],
                    steps: vec![step],
                });
                check(&op, &[(x.clone(), false)], Cmp::Exact, "slice")
                    .unwrap_or_else(|e| panic!("axis {axis} ({start},{end},{step}): {e}"));
                cases += 1;
            }
        }
        // All axes at once, in reverse axis order, mixing directions.
        let r = shape.len();
        let mut sl = Slice {
            axes: vec![],
            starts: vec![],
            ends: vec![],
            steps: vec![],
        };
        for a in (0..r).rev() {
            let d = shape[a] as i64;
            let (st, en, sp) = if a % 2 == 0 {
                (d - 1, -1, -2)
            } else {
                (1, d, 2)
            };
            sl.axes.push(a);
            sl.starts.push(st);
            sl.ends.push(en);
            sl.steps.push(sp);
        }
        check(&Op::Slice(sl), &[(x.clone(), false)], Cmp::Exact, "slice").unwrap();
    }
    assert_eq!(cases, (2 + 3 + 4) * 13);
}

#[test]
fn pad_each_side_including_zero_sizes() {
    let shape = [2usize, 3, 4, 5];
    let r = shape.len();
    let x = rand_tensor(&shape, 31);
    let mut cases = 0;
    for axis in 0..r {
        for (before, after) in [(1, 0), (0, 1), (2, 3), (0, 0)] {
            let mut pads = vec![0; 2 * r];
            pads[axis] = before;
            pads[axis + r] = after;
            let op = Op::Pad { pads, value: -1.5 };
            check(&op, &[(x.clone(), false)], Cmp::Exact, "pad")
                .unwrap_or_else(|e| panic!("axis {axis} ({before},{after}): {e}"));
            cases += 1;
        }
    }
    // Every side at once, asymmetric, and special fill values (bit patterns kept).
    for value in [0.0, -0.0, 7.25, f32::NEG_INFINITY, f32::NAN] {
        let op = Op::Pad {
            pads: vec![1, 0, 2, 1, 0, 3, 1, 2],
            value,
        };
        check(&op, &[(x.clone(), false)], Cmp::Exact, "pad").unwrap();
        cases += 1;
    }
    // Zero-size input axes: the output is all padding (or empty).
    for (shape, pads) in [
        (vec![2, 0, 3], vec![0, 1, 1, 1, 2, 0]),
        (vec![0, 4], vec![2, 0, 1, 1]),
        (vec![3, 0], vec![1, 0, 0, 0]),
        (vec![7], vec![3, 2]),
    ] {
        let n = shape.iter().product();
        let t = Tensor::from_f32(shape, rand_vec(n, 5)).unwrap();
        let op = Op::Pad { pads, value: 2.5 };
        check(&op, &[(t, false)], Cmp::Exact, "pad").unwrap();
        cases += 1;
    }
    assert_eq!(cases, 4 * 4 + 5 + 4);
}

fn idx(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_i64(shape.to_vec(), v.to_vec()).unwrap()
}

#[test]
fn gather_every_axis_with_negative_indices() {
    let shape = [3usize, 4, 5, 6];
    let x = rand_tensor(&shape, 41);
    let mut cases = 0;
    for (axis, &dim) in shape.iter().enumerate() {
        let d = dim as i64;
        let index_sets = [
            idx(&[], &[-1]),
            idx(&[2], &[0, -d]),
            idx(&[2, 3], &[1, -1, 0, d - 1, -2, 1]),
            // More than UNROLL_INDICES: the packed index table.
            idx(&[12], &[0, 1, -1, 2, -2, 0, d - 1, -d, 1, 1, -1, 0]),
        ];
        for (k, i) in index_sets.into_iter().enumerate() {
            let want = if k == 3 { "gather-table" } else { "gather" };
            let op = Op::Gather { axis };
            check(&op, &[(x.clone(), false), (i, true)], Cmp::Exact, want)
                .unwrap_or_else(|e| panic!("axis {axis} set {k}: {e}"));
            cases += 1;
        }
    }
    // A 1-D table and a size-1 axis.
    let v = rand_tensor(&[10], 2);
    check(
        &Op::Gather { axis: 0 },
        &[(v, false), (idx(&[3], &[-10, 9, 4]), true)],
        Cmp::Exact,
        "gather",
    )
    .unwrap();
    let w = rand_tensor(&[4, 1, 3], 3);
    check(
        &Op::Gather { axis: 1 },
        &[(w, false), (idx(&[2], &[0, -1]), true)],
        Cmp::Exact,
        "gather",
    )
    .unwrap();
    assert_eq!(cases, 4 * 4);
}

#[test]
fn gather_non_constant_or_out_of_range_indices_stay_fallbacks() {
    let x = rand_tensor(&[3, 4], 1);
    // Indices as a graph input: fallback, still correct.
    let i = idx(&[2], &[2, -3]);
    let op = Op::Gather { axis: 0 };
    let (g, feeds) = single_op_graph(&op, &[(x.clone(), false), (i.clone(), false)]);
    let want = eval_op(&op, &[&x, &i]).unwrap();
    for t in Target::jit_targets_for_test(
        "cpu_data_ops::gather_non_constant_or_out_of_range_indices_stay_fallbacks",
    ) {
        let m = CompiledModel::compile(&g, t, &verified()).unwrap();
        assert_eq!(m.report().fallbacks(), 1);
        let text = m.report().to_text();
        assert!(text.contains("fallback"), "{text}");
        let got = m.run(&feeds).unwrap();
        assert_eq!(got[0], want);
    }
    // An index out of range: the graph compiles (fallback) and the run reports the error.
    let bad = idx(&[1], &[4]);
    let (g, feeds) = single_op_graph(&Op::Gather { axis: 1 }, &[(x, false), (bad, true)]);
    for t in Target::jit_targets_for_test(
        "cpu_data_ops::gather_non_constant_or_out_of_range_indices_stay_fallbacks",
    ) {
        let m = CompiledModel::compile(&g, t, &verified()).unwrap();
        assert_eq!(m.report().fallbacks(), 1);
        assert!(m.run(&feeds).is_err());
    }
}

/// Values in [-scale, scale) with some rows of equal and extreme entries mixed in.
fn softmax_input(shape: &[usize], scale: f32, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = rand_vec(n, seed).iter().map(|x| x * scale).collect();
    if n >= 4 {
        v[0] = scale;
        v[n - 1] = -scale;
        v[n / 2] = scale;
    }
    Tensor::from_f32(shape.to_vec(), v).unwrap()
}

#[test]
fn softmax_every_axis_including_large_magnitudes() {
    let shapes: [&[usize]; 6] = [
        &[9],
        &[3, 1000],
        &[4, 7],
        &[3, 5, 7],
        &[2, 3, 4, 5],
        &[2, 9, 1, 6],
    ];
    let mut cases = 0;
    for (s, shape) in shapes.iter().enumerate() {
        for axis in 0..shape.len() {
            for (k, scale) in [4.0f32, 80.0, 1e4].into_iter().enumerate() {
                let x = softmax_input(shape, scale, (100 * s + 10 * axis + k) as u64);
                let want = if axis == shape.len() - 1 {
                    "softmax-rows"
                } else {
                    "softmax-strided"
                };
                let op = Op::Softmax { axis };
                check(&op, &[(x, false)], Cmp::Close, want)
                    .unwrap_or_else(|e| panic!("{shape:?} axis {axis} scale {scale}: {e}"));
                cases += 1;
            }
        }
    }
    // Constant rows (all entries equal, extreme): exactly uniform in the reference.
    for v in [80.0f32, -80.0, 1e4, -1e4] {
        let x = Tensor::from_f32(vec![3, 6], vec![v; 18]).unwrap();
        for axis in 0..2 {
            check(
                &Op::Softmax { axis },
                &[(x.clone(), false)],
                Cmp::Close,
                "softmax",
            )
            .unwrap();
            cases += 1;
        }
    }
    // Non-finite entries: a NaN or +inf poisons its row (NaN everywhere, as in the
    // reference), a -inf entry gets (close to) zero.
    let mut v = rand_vec(4 * 6, 9);
    v[2] = f32::NAN;
    v[6 + 4] = f32::INFINITY;
    v[12] = f32::NEG_INFINITY;
    v[12 + 5] = f32::NEG_INFINITY;
    let x = Tensor::from_f32(vec![4, 6], v).unwrap();
    for axis in 0..2 {
        check(
            &Op::Softmax { axis },
            &[(x.clone(), false)],
            Cmp::Close,
            "softmax",
        )
        .unwrap();
        cases += 1;
    }
    assert_eq!(cases, (1 + 2 + 2 + 3 + 4 + 4) * 3 + 8 + 2);
}

#[test]
fn lrn_matches_the_reference_per_element_on_ragged_shapes() {
    let shapes: [&[usize]; 6] = [
        &[1, 7, 5, 3],
        &[2, 3, 1, 1],
        &[1, 16, 13, 11],
        &[3, 5, 37],
        &[2, 9],
        &[1, 1, 300, 2],
    ];
    let mut cases = 0;
    for (s, shape) in shapes.iter().enumerate() {
        for (k, (size, beta)) in [(5, 0.75f32), (4, 0.5), (1, 1.0), (3, 0.6)]
            .into_iter()
            .enumerate()
        {
            // values up to 20, alpha large enough that the scale is far from the bias
            let n: usize = shape.iter().product();
            let v: Vec<f32> = rand_vec(n, (10 * s + k) as u64)
                .iter()
                .map(|x| 20.0 * x)
                .collect();
            let x = Tensor::from_f32(shape.to_vec(), v).unwrap();
            let op = Op::Lrn(mnc_ir::Lrn {
                size,
                alpha: 0.01,
                beta,
                bias: 1.0 + k as f32,
            });
            let want = eval_op(&op, &[&x]).unwrap();
            let want = want.as_f32().unwrap();
            let (g, feeds) = single_op_graph(&op, &[(x.clone(), false)]);
            for t in Target::jit_targets_for_test("LRN") {
                for threads in [1, 3] {
                    let opts = mnc_runtime::cpu::CpuOptions {
                        threads,
                        ..verified()
                    };
                    let m = CompiledModel::compile(&g, t, &opts).unwrap();
                    let rep = &m.report().ops[0];
                    assert_eq!((rep.strategy.as_str(), rep.fallback), ("lrn-kernel", false));
                    let got = m.run(&feeds).unwrap();
                    let got = got[0].as_f32().unwrap();
                    for (i, (a, b)) in got.iter().zip(want).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * b.abs(),
                            "{t} x{threads} {shape:?} {op:?}: element {i}: {a} vs {b}"
                        );
                    }
                }
            }
            cases += 1;
        }
    }
    assert_eq!(cases, 24);
}

#[test]
fn data_ops_in_one_graph_share_buffers_correctly() {
    // Transpose -> Slice -> Pad -> Softmax -> Gather chained, compared as a whole.
    let mut g = mnc_ir::Graph::new("chain");
    let x = rand_tensor(&[2, 5, 6], 7);
    let xi = g.add_input("x", x.ty());
    let t = g
        .add_node_inferred(
            "t",
            Op::Transpose {
                perm: vec![0, 2, 1],
            },
            &[xi],
        )
        .unwrap();
    let s = g
        .add_node_inferred(
            "s",
            Op::Slice(Slice {
                axes: vec![1, 2],
                starts: vec![5, 0],
                ends: vec![-1, 5],
                steps: vec![-2, 1],
            }),
            &[t],
        )
        .unwrap();
    let p = g
        .add_node_inferred(
            "p",
            Op::Pad {
                pads: vec![0, 1, 0, 0, 0, 2],
                value: 0.5,
            },
            &[s],
        )
        .unwrap();
    let sm = g
        .add_node_inferred("sm", Op::Softmax { axis: 2 }, &[p])
        .unwrap();
    let ic = g.add_constant("i", idx(&[3], &[-1, 0, 2]));
    let ga = g
        .add_node_inferred("ga", Op::Gather { axis: 1 }, &[sm, ic])
        .unwrap();
    g.add_output("y", ga);
    mnc_ir::verify::verify(&g).unwrap();
    // Reference: op by op.
    let r_t = eval_op(&g.node(t).op, &[&x]).unwrap();
    let r_s = eval_op(&g.node(s).op, &[&r_t]).unwrap();
    let r_p = eval_op(&g.node(p).op, &[&r_s]).unwrap();
    let r_sm = eval_op(&g.node(sm).op, &[&r_p]).unwrap();
    let want = eval_op(&g.node(ga).op, &[&r_sm, &idx(&[3], &[-1, 0, 2])]).unwrap();
    for tg in
        Target::jit_targets_for_test("cpu_data_ops::data_ops_in_one_graph_share_buffers_correctly")
    {
        let m = CompiledModel::compile(&g, tg, &verified()).unwrap();
        assert_eq!(m.report().fallbacks(), 0, "{}", m.report().to_text());
        let got = m.run(std::slice::from_ref(&x)).unwrap();
        check_close(&format!("{tg} chain"), &got[0], &want, TOL).unwrap();
    }
}

/// Median of `runs` timings of `f`, in microseconds.
fn median_us(runs: usize, mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..runs).map(|_| f()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[runs / 2]
}

/// Step time of the generated code vs the reference kernel on representative shapes (host
/// target). Run in release: `cargo test --release -p mnc-tests --test cpu_data_ops --
/// --ignored --nocapture`.
#[test]
#[ignore]
fn data_ops_speed() {
    use mnc_runtime::cpu::CpuOptions;
    use std::time::Instant;
    let opts = CpuOptions {
        verify: false,
        threads: 1,
        ..Default::default()
    };
    let sl = |axes: Vec<usize>, starts: Vec<i64>, ends: Vec<i64>, steps: Vec<i64>| {
        Op::Slice(Slice {
            axes,
            starts,
            ends,
            steps,
        })
    };
    type Case = (&'static str, Op, Vec<(Tensor, bool)>);
    let cases: Vec<Case> = vec![
        (
            "transpose NCHW->NHWC 1x32x112x112",
            Op::Transpose {
                perm: vec![0, 2, 3, 1],
            },
            vec![(rand_tensor(&[1, 32, 112, 112], 1), false)],
        ),
        (
            "transpose NHWC->NCHW 1x112x112x32",
            Op::Transpose {
                perm: vec![0, 3, 1, 2],
            },
            vec![(rand_tensor(&[1, 112, 112, 32], 1), false)],
        ),
        (
            "transpose channel shuffle 1x2x58x28x28",
            Op::Transpose {
                perm: vec![0, 2, 1, 3, 4],
            },
            vec![(rand_tensor(&[1, 2, 58, 28, 28], 1), false)],
        ),
        (
            "slice 1x64x56x56 [1:55:2, 1:55:2]",
            sl(vec![2, 3], vec![1, 1], vec![55, 55], vec![2, 2]),
            vec![(rand_tensor(&[1, 64, 56, 56], 1), false)],
        ),
        (
            "slice 1x64x56x56 channels 16:48",
            sl(vec![1], vec![16], vec![48], vec![1]),
            vec![(rand_tensor(&[1, 64, 56, 56], 1), false)],
        ),
        (
            "pad 1x32x112x112 by 1 on H, W",
            Op::Pad {
                pads: vec![0, 0, 1, 1, 0, 0, 1, 1],
                value: 0.0,
            },
            vec![(rand_tensor(&[1, 32, 112, 112], 1), false)],
        ),
        (
            "gather 64 rows of 1000x256",
            Op::Gather { axis: 0 },
            vec![
                (rand_tensor(&[1000, 256], 1), false),
                (
                    idx(&[64], &(0..64).map(|i| (i * 37) % 1000).collect::<Vec<_>>()),
                    true,
                ),
            ],
        ),
        (
            "gather 4 channels of 1x64x56x56",
            Op::Gather { axis: 1 },
            vec![
                (rand_tensor(&[1, 64, 56, 56], 1), false),
                (idx(&[4], &[3, -1, 17, 0]), true),
            ],
        ),
        (
            "softmax 1x1000",
            Op::Softmax { axis: 1 },
            vec![(rand_tensor(&[1, 1000], 1), false)],
        ),
        (
            "softmax 1x12x197x197 last axis",
            Op::Softmax { axis: 3 },
            vec![(rand_tensor(&[1, 12, 197, 197], 1), false)],
        ),
        (
            "(for comparison) sigmoid 1x12x197x197",
            Op::Act(mnc_ir::Activation::Sigmoid),
            vec![(rand_tensor(&[1, 12, 197, 197], 1), false)],
        ),
        (
            "softmax 1x1000x7x7 axis 1",
            Op::Softmax { axis: 1 },
            vec![(rand_tensor(&[1, 1000, 7, 7], 1), false)],
        ),
        (
            "lrn 1x96x55x55 size 5 (AlexNet)",
            Op::Lrn(mnc_ir::Lrn {
                size: 5,
                alpha: 1e-4,
                beta: 0.75,
                bias: 1.0,
            }),
            vec![(rand_tensor(&[1, 96, 55, 55], 1), false)],
        ),
    ];
    let t = Target::detect_host();
    println!("target {t}; median step time of 30 runs");
    for (name, op, inputs) in cases {
        let (g, feeds) = single_op_graph(&op, &inputs);
        let m = CompiledModel::compile(&g, t, &opts).unwrap();
        let strategy = m.report().ops[0].strategy.clone();
        let jit = median_us(30, || {
            let (_, times) = m.run_profiled(&feeds).unwrap();
            times.iter().map(|(_, d)| d.as_secs_f64()).sum::<f64>() * 1e6
        });
        let refs: Vec<&Tensor> = inputs.iter().map(|(x, _)| x).collect();
        let reference = median_us(30, || {
            let s = Instant::now();
            let y = eval_op(&op, &refs).unwrap();
            let d = s.elapsed().as_secs_f64() * 1e6;
            std::hint::black_box(y);
            d
        });
        println!(
            "{name:40} {strategy:16} {jit:9.1} us   reference {reference:9.1} us   x{:.1}",
            reference / jit
        );
    }
}
