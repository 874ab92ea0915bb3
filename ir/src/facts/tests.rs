use super::*;
use crate::eval::eval_op;
use crate::eval::testutil::rand_vec;
use crate::infer::infer;
use crate::op::{
    Activation, Conv, Epilogue, Gemm, Lrn, Pool, PoolKind, QBinary, QBinaryOp, QConv, QLut, QMean,
    Slice, SqueezeExcite,
};
use crate::quant::{QParams, QType};
use crate::tensor::Tensor;

/// Small deterministic generator (xorshift) for shapes and choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
    fn shape(&mut self, rank: usize) -> Vec<usize> {
        (0..rank).map(|_| 1 + self.below(4)).collect()
    }
    fn perm(&mut self, r: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..r).collect();
        for i in (1..r).rev() {
            p.swap(i, self.below(i + 1));
        }
        p
    }
}

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32(shape.to_vec(), rand_vec(n, seed)).unwrap()
}

/// One op of every variant (and every attribute enum case the facts distinguish), with
/// input types it is valid on.
fn examples() -> Vec<(Op, Vec<TensorType>)> {
    let f = |s: &[usize]| TensorType::f32(s.to_vec());
    let x = f(&[2, 4, 5, 5]);
    let conv = |residual, has_bias| {
        let mut ins = vec![x.clone(), f(&[4, 4, 1, 1])];
        if has_bias {
            ins.push(f(&[4]));
        }
        if residual {
            ins.push(x.clone());
        }
        (
            Op::Conv(Conv {
                has_bias,
                epilogue: Epilogue {
                    residual,
                    act: None,
                },
                ..Default::default()
            }),
            ins,
        )
    };
    let gemm = |residual| {
        let mut ins = vec![f(&[2, 3]), f(&[3, 4]), f(&[4])];
        if residual {
            ins.push(f(&[2, 4]));
        }
        (
            Op::Gemm(Gemm {
                has_c: true,
                epilogue: Epilogue {
                    residual,
                    act: None,
                },
                ..Default::default()
            }),
            ins,
        )
    };
    let c4 = f(&[4]);
    vec![
        (Op::Input { index: 0 }, vec![]),
        (Op::Constant(tensor(&[2], 1)), vec![]),
        (Op::Identity, vec![x.clone()]),
        (Op::Dropout, vec![x.clone()]),
        conv(false, false),
        conv(true, false),
        conv(true, true),
        (
            Op::BatchNorm { epsilon: 1e-5 },
            vec![x.clone(), c4.clone(), c4.clone(), c4.clone(), c4.clone()],
        ),
        (Op::ChannelAffine, vec![x.clone(), c4.clone(), c4.clone()]),
        (
            Op::SqueezeExcite(SqueezeExcite {
                act: Activation::Relu,
                gate: Activation::Sigmoid,
            }),
            vec![
                x.clone(),
                f(&[2, 4, 1, 1]),
                f(&[2]),
                f(&[4, 2, 1, 1]),
                c4.clone(),
            ],
        ),
        (Op::Act(Activation::Relu), vec![x.clone()]),
        (Op::Binary(BinaryOp::Add), vec![x.clone(), x.clone()]),
        (Op::Binary(BinaryOp::Sub), vec![x.clone(), f(&[4, 1, 1])]),
        (Op::Binary(BinaryOp::Mul), vec![f(&[4, 1, 1]), x.clone()]),
        (Op::Binary(BinaryOp::Div), vec![x.clone(), x.clone()]),
        gemm(false),
        gemm(true),
        (Op::MatMul, vec![f(&[2, 3]), f(&[3, 4])]),
        (Op::GlobalAveragePool, vec![x.clone()]),
        (
            Op::ReduceMean {
                axes: vec![2, 3],
                keepdims: true,
            },
            vec![x.clone()],
        ),
        (
            Op::Pool(Pool {
                kind: PoolKind::Max,
                ..Default::default()
            }),
            vec![x.clone()],
        ),
        (
            Op::Pool(Pool {
                kind: PoolKind::Avg,
                ..Default::default()
            }),
            vec![x.clone()],
        ),
        (Op::Flatten { axis: 1 }, vec![x.clone()]),
        (
            Op::Reshape {
                shape: vec![2, 100],
            },
            vec![x.clone()],
        ),
        (Op::Squeeze { axes: vec![0] }, vec![f(&[1, 4, 5])]),
        (Op::Unsqueeze { axes: vec![1] }, vec![c4.clone()]),
        (
            Op::Transpose {
                perm: vec![0, 2, 3, 1],
            },
            vec![x.clone()],
        ),
        (Op::Concat { axis: 1 }, vec![x.clone(), x.clone()]),
        (
            Op::Slice(Slice {
                axes: vec![1],
                starts: vec![0],
                ends: vec![2],
                steps: vec![1],
            }),
            vec![x.clone()],
        ),
        (
            Op::Gather { axis: 1 },
            vec![x.clone(), TensorType::new(DType::I64, vec![2])],
        ),
        (Op::Cast { to: DType::F32 }, vec![x.clone()]),
        (Op::Cast { to: DType::I64 }, vec![x.clone()]),
        (
            Op::Pad {
                pads: vec![0, 0, 1, 1, 0, 0, 1, 1],
                value: 0.0,
            },
            vec![x.clone()],
        ),
        (Op::Softmax { axis: 1 }, vec![x.clone()]),
        (
            Op::Quantize(QParams::per_tensor(DType::U8, 0.1, 128)),
            vec![x.clone()],
        ),
        (
            Op::Dequantize(QParams::per_tensor(DType::U8, 0.1, 128)),
            vec![TensorType::new(DType::U8, x.shape.clone())],
        ),
        (
            Op::QConv(Box::new(QConv {
                conv: Conv {
                    has_bias: true,
                    ..Default::default()
                },
                x: QParams::per_tensor(DType::U8, 0.1, 128),
                w: QParams {
                    dtype: DType::I8,
                    axis: Some(0),
                    scale: vec![0.01; 4],
                    zero_point: vec![0; 4],
                },
                y: QParams::per_tensor(DType::U8, 0.2, 0),
                residual: None,
            })),
            vec![
                TensorType::new(DType::U8, x.shape.clone()),
                TensorType::new(DType::I8, vec![4, 4, 1, 1]),
                TensorType::new(DType::I32, vec![4]),
            ],
        ),
        (
            Op::QLut(QLut::of(QType::U8, QType::U8, |v| 255 - v)),
            vec![TensorType::new(DType::U8, x.shape.clone())],
        ),
        (
            Op::QGlobalAveragePool(QMean {
                x: QParams::per_tensor(DType::U8, 0.1, 3),
                y: QParams::per_tensor(DType::U8, 0.05, 7),
            }),
            vec![TensorType::new(DType::U8, x.shape.clone())],
        ),
        (
            Op::QBinary(QBinary {
                op: QBinaryOp::Mul,
                a: QParams::per_tensor(DType::U8, 0.1, 3),
                b: QParams::per_tensor(DType::U8, 0.2, 9),
                y: QParams::per_tensor(DType::U8, 0.05, 7),
            }),
            vec![TensorType::new(DType::U8, x.shape.clone()); 2],
        ),
        (
            Op::Lrn(Lrn {
                size: 3,
                alpha: 1e-4,
                beta: 0.75,
                bias: 1.0,
            }),
            vec![x.clone()],
        ),
    ]
}

/// The variant's number: an exhaustive match, so a new variant fails to compile here until
/// it has an example.
fn variant(op: &Op) -> usize {
    match op {
        Op::Input { .. } => 0,
        Op::Constant(_) => 1,
        Op::Identity => 2,
        Op::Dropout => 3,
        Op::Conv(_) => 4,
        Op::BatchNorm { .. } => 5,
        Op::ChannelAffine => 6,
        Op::SqueezeExcite(_) => 7,
        Op::Act(_) => 8,
        Op::Binary(_) => 9,
        Op::Gemm(_) => 10,
        Op::MatMul => 11,
        Op::GlobalAveragePool => 12,
        Op::ReduceMean { .. } => 13,
        Op::Pool(_) => 14,
        Op::Flatten { .. } => 15,
        Op::Reshape { .. } => 16,
        Op::Squeeze { .. } => 17,
        Op::Unsqueeze { .. } => 18,
        Op::Transpose { .. } => 19,
        Op::Concat { .. } => 20,
        Op::Slice(_) => 21,
        Op::Gather { .. } => 22,
        Op::Cast { .. } => 23,
        Op::Pad { .. } => 24,
        Op::Softmax { .. } => 25,
        Op::Lrn(_) => 26,
        Op::Quantize(_) => 27,
        Op::Dequantize(_) => 28,
        Op::QConv(_) => 29,
        Op::QLut(_) => 30,
        Op::QGlobalAveragePool(_) => 31,
        Op::QBinary(_) => 32,
    }
}

#[test]
fn the_examples_cover_every_variant() {
    let seen: std::collections::BTreeSet<usize> =
        examples().iter().map(|(op, _)| variant(op)).collect();
    assert_eq!(seen, (0..33).collect());
    for (op, ins) in examples() {
        if !matches!(op, Op::Input { .. } | Op::Constant(_)) {
            let refs: Vec<&TensorType> = ins.iter().collect();
            infer(&op, &refs).unwrap_or_else(|e| panic!("{op:?}: {e}"));
        }
    }
}

#[test]
fn every_view_keeps_the_bytes_on_random_shapes() {
    let mut rng = Rng(0x5eed);
    for case in 0..200u64 {
        let rank = 1 + rng.below(4);
        let shape = rng.shape(rank);
        let numel: usize = shape.iter().product();
        let ones: Vec<usize> = (0..rank).filter(|&a| shape[a] == 1).collect();
        let mut ops = vec![
            Op::Identity,
            Op::Dropout,
            Op::Cast { to: DType::F32 },
            Op::Flatten {
                axis: rng.below(rank + 1),
            },
            Op::Reshape { shape: vec![numel] },
            Op::Unsqueeze {
                axes: vec![rng.below(rank + 1)],
            },
        ];
        if !ones.is_empty() {
            ops.push(Op::Squeeze {
                axes: vec![ones[rng.below(ones.len())]],
            });
        }
        let x = tensor(&shape, case + 1);
        for op in ops {
            assert!(is_view(&op, DType::F32), "{op:?}");
            let out = infer(&op, &[&x.ty()]).unwrap();
            assert_eq!(out.bytes(), x.ty().bytes(), "{op:?} on {shape:?}");
            let y = eval_op(&op, &[&x]).unwrap();
            assert_eq!(y.as_f32(), x.as_f32(), "{op:?} on {shape:?}");
        }
    }
    // A real cast is not a view; no other op is.
    assert!(!is_view(&Op::Cast { to: DType::I64 }, DType::F32));
    for (op, ins) in examples() {
        let dtype = ins.first().map_or(DType::F32, |t| t.dtype);
        let listed = matches!(
            op,
            Op::Identity
                | Op::Dropout
                | Op::Flatten { .. }
                | Op::Reshape { .. }
                | Op::Squeeze { .. }
                | Op::Unsqueeze { .. }
                | Op::Cast { to: DType::F32 }
        );
        assert_eq!(is_view(&op, dtype), listed, "{op:?}");
        if listed {
            let refs: Vec<&TensorType> = ins.iter().collect();
            assert_eq!(infer(&op, &refs).unwrap().bytes(), ins[0].bytes());
        }
    }
}

#[test]
fn in_place_slots_hold_an_operand_of_the_output_type() {
    for (op, ins) in examples() {
        let refs: Vec<&TensorType> = ins.iter().collect();
        let slots = of(&op).in_place;
        assert!(
            slots.iter().all(|s| s.slot < ins.len()),
            "{op:?}: {slots:?} outside the inputs"
        );
        if matches!(op, Op::Input { .. } | Op::Constant(_)) {
            assert!(slots.is_empty());
            continue;
        }
        let out = infer(&op, &refs).unwrap();
        let cands = in_place_candidates(&op, &ins, &out);
        assert!(cands.iter().all(|c| ins[c.slot] == out));
        // Every listed slot is a data operand (not a weight): in these examples at least
        // one of them has the output's type.
        assert_eq!(slots.is_empty(), cands.is_empty(), "{op:?}");
        if of(&op).view.is_some() {
            assert!(slots.is_empty(), "views alias by `view`, not in place");
        }
    }
}

/// The Gemm-residual question, decided once: not in place (the CPU's generated GEMM stores
/// the accumulated row before its epilogue reads the residual); a conv's residual is, and
/// only when its buffer feeds no other input (the conv reads its data across tiles).
#[test]
fn residuals_in_place_for_convs_only() {
    for (op, _) in examples() {
        match &op {
            Op::Gemm(_) => assert!(of(&op).in_place.is_empty()),
            Op::Conv(c) if c.epilogue.residual => assert_eq!(
                of(&op).in_place,
                vec![InPlace {
                    slot: 2 + c.has_bias as usize,
                    exclusive: true
                }]
            ),
            Op::Conv(_) => assert!(of(&op).in_place.is_empty()),
            _ => {}
        }
    }
}

/// `op(Transpose(p)(x_k)) == Transpose(after)(op'(x_k))` by the reference semantics, for
/// every op [`through_transpose`] moves, on random shapes and permutations.
#[test]
fn through_transpose_commutes_by_the_reference_semantics() {
    let mut rng = Rng(0xfac7);
    let mut checked = 0;
    for case in 0..300u64 {
        let r = 2 + rng.below(3);
        let p = rng.perm(r);
        let src = rng.shape(r);
        let xt: Vec<usize> = p.iter().map(|&a| src[a]).collect(); // shape after Transpose(p)
        let axis = rng.below(r);
        let reduce_axes: Vec<usize> = {
            let k = 1 + rng.below(r);
            let mut a = rng.perm(r)[..k].to_vec();
            a.sort_unstable();
            a
        };
        let ops = [
            Op::Act(Activation::Silu),
            Op::Binary(BinaryOp::Sub),
            Op::Pad {
                pads: (0..2 * r).map(|_| rng.below(2)).collect(),
                value: 0.5,
            },
            Op::ReduceMean {
                axes: reduce_axes.clone(),
                keepdims: true,
            },
            Op::ReduceMean {
                axes: reduce_axes,
                keepdims: false,
            },
            Op::GlobalAveragePool,
            Op::Concat { axis },
            Op::Softmax { axis },
        ];
        for op in ops {
            let Some((moved, after)) = through_transpose(&op, &p) else {
                continue;
            };
            let arity = match op {
                Op::Binary(_) | Op::Concat { .. } => 2,
                _ => 1,
            };
            let xs: Vec<Tensor> = (0..arity)
                .map(|k| tensor(&src, case * 7 + k as u64 + 1))
                .collect();
            let tp = Op::Transpose { perm: p.clone() };
            let txs: Vec<Tensor> = xs.iter().map(|x| eval_op(&tp, &[x]).unwrap()).collect();
            assert_eq!(txs[0].shape, xt);
            let want = eval_op(&op, &txs.iter().collect::<Vec<_>>()).unwrap();
            let inner = eval_op(&moved, &xs.iter().collect::<Vec<_>>()).unwrap();
            let got = eval_op(&Op::Transpose { perm: after }, &[&inner]).unwrap();
            assert_eq!(got.shape, want.shape, "{op:?} p={p:?}");
            let (g, w) = (got.as_f32().unwrap(), want.as_f32().unwrap());
            for (a, b) in g.iter().zip(w) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{op:?} p={p:?}");
            }
            checked += 1;
        }
    }
    assert!(checked > 500, "only {checked} cases moved");
}

#[test]
fn non_trailing_means_do_not_move() {
    // NCHW -> NHWC: the spatial axes 1, 2 of the NHWC value map to 2, 3 (trailing) ...
    let p = [0, 2, 3, 1];
    let m = |axes: Vec<usize>| Op::ReduceMean {
        axes,
        keepdims: true,
    };
    assert!(through_transpose(&m(vec![1, 2]), &p).is_some());
    // ... the channel axis 3 maps to 1, which is not trailing.
    assert!(through_transpose(&m(vec![3]), &p).is_none());
    // A pad with the wrong rank and an axis outside the rank are refused.
    let pad = Op::Pad {
        pads: vec![0; 6],
        value: 0.0,
    };
    assert!(through_transpose(&pad, &p).is_none());
    assert!(through_transpose(&Op::Concat { axis: 4 }, &p).is_none());
    assert!(through_transpose(&Op::GlobalAveragePool, &[1, 0, 2]).is_none());
}

#[test]
fn elementwise_ops_are_exactly_the_ones_moved_unchanged() {
    for (op, _) in examples() {
        let p = [0, 2, 3, 1];
        if of(&op).elementwise.is_some() {
            assert_eq!(through_transpose(&op, &p), Some((op.clone(), p.to_vec())));
        }
    }
}

#[test]
fn weighted_layers_are_convs_matrices_and_se() {
    for (op, _) in examples() {
        let w = of(&op).weights;
        let expect = matches!(
            op,
            Op::Conv(_) | Op::QConv(_) | Op::Gemm(_) | Op::MatMul | Op::SqueezeExcite(_)
        );
        assert_eq!(w.is_weighted_layer(), expect, "{op:?}");
        let has_params = !matches!(w, Weights::None);
        assert_eq!(
            has_params,
            expect || matches!(op, Op::BatchNorm { .. } | Op::ChannelAffine),
            "{op:?}"
        );
    }
}

#[test]
fn mult_adds_per_parameter_follow_torchinfo() {
    let conv = Weights::Conv { bias: true };
    // A conv's parameters are used once per output position ...
    assert_eq!(conv.macs_per_param(&[2, 8, 5, 7]), Some(2 * 5 * 7));
    assert_eq!(conv.macs_per_param(&[2, 8, 5]), None);
    // ... the others once per row of the batch.
    for w in [
        Weights::Matrix { c: true },
        Weights::Norm {
            running_stats: false,
        },
        Weights::SqueezeExcite,
    ] {
        assert_eq!(w.macs_per_param(&[3, 10]), Some(3));
    }
    assert_eq!(Weights::None.macs_per_param(&[3, 10]), Some(0));
}
