//! Quantized ops on the CPU backend against the integer reference (`mnc_ir::eval::quant`):
//! QuantizeLinear, DequantizeLinear and QConv (pointwise, depthwise, stem, grouped, strided,
//! padded, with ReLU/Clip clamps) on ragged random shapes, u8 and i8 activations, 1 and 3
//! threads. Integer results have one right answer: every element must be equal.

mod cpu_common;

use cpu_common::{check_op_exact, verified};
use mnc_ir::{Activation, Conv, DType, Epilogue, Op, QConv, QParams, Tensor};
use mnc_passes::samples::Lcg;
use mnc_runtime::cpu::CpuOptions;

fn ints(rng: &mut Lcg, shape: &[usize], dtype: DType, lo: i32, hi: i32) -> Tensor {
    let n = shape.iter().product();
    let v = (0..n)
        .map(|_| (rng.uniform(lo as f32, hi as f32 + 1.0).floor() as i32).clamp(lo, hi))
        .collect();
    Tensor::from_i32_values(shape.to_vec(), dtype, v).unwrap()
}

fn opts(threads: usize) -> CpuOptions {
    CpuOptions {
        threads,
        ..verified()
    }
}

/// One quantized conv case: `[n, ci, h, w]` input, `co` outputs, kernel, stride, pad, group.
struct Case {
    x: [usize; 4],
    co: usize,
    k: usize,
    s: usize,
    p: usize,
    group: usize,
}

fn qconv_case(
    c: &Case,
    x_dtype: DType,
    act: Option<Activation>,
    seed: u64,
) -> (Op, Vec<(Tensor, bool)>) {
    let mut rng = Lcg::new(seed);
    let (xlo, xhi, xzp) = match x_dtype {
        DType::U8 => (0, 255, 3 + (seed % 200) as i32),
        _ => (-128, 127, (seed % 50) as i32 - 25),
    };
    let x = ints(&mut rng, &c.x, x_dtype, xlo, xhi);
    let cig = c.x[1] / c.group;
    let w = ints(&mut rng, &[c.co, cig, c.k, c.k], DType::I8, -127, 127);
    let b = ints(&mut rng, &[c.co], DType::I32, -20000, 20000);
    let taps = (cig * c.k * c.k) as f32;
    let y_dtype = if seed.is_multiple_of(2) {
        DType::U8
    } else {
        x_dtype
    };
    let y_zp = if y_dtype == DType::U8 { 40 } else { -10 };
    let op = Op::QConv(Box::new(QConv {
        conv: Conv {
            kernel: [c.k, c.k],
            strides: [c.s, c.s],
            pads: [c.p; 4],
            group: c.group,
            has_bias: true,
            epilogue: Epilogue {
                residual: false,
                act,
            },
            ..Default::default()
        },
        x: QParams::per_tensor(x_dtype, 0.02, xzp),
        w: QParams {
            dtype: DType::I8,
            axis: Some(0),
            scale: (0..c.co).map(|o| 0.001 + 0.0002 * (o % 7) as f32).collect(),
            zero_point: vec![0; c.co],
        },
        // An output scale that spreads the accumulators over the output range.
        y: QParams::per_tensor(y_dtype, 0.02 * 0.002 * 60.0 * taps.sqrt(), y_zp),
        residual: None,
    }));
    (op, vec![(x, false), (w, true), (b, true)])
}

#[test]
fn qconv_matches_the_integer_reference() {
    let cases = [
        // pointwise, ragged K and pixel counts
        Case {
            x: [1, 13, 7, 9],
            co: 21,
            k: 1,
            s: 1,
            p: 0,
            group: 1,
        },
        Case {
            x: [2, 32, 14, 14],
            co: 64,
            k: 1,
            s: 1,
            p: 0,
            group: 1,
        },
        // large enough (4.8 M multiply-adds) to be split over the threads
        Case {
            x: [1, 64, 28, 28],
            co: 96,
            k: 1,
            s: 1,
            p: 0,
            group: 1,
        },
        Case {
            x: [1, 3, 1, 1],
            co: 5,
            k: 1,
            s: 1,
            p: 0,
            group: 1,
        },
        // depthwise 3x3 / 5x5, stride 1 and 2
        Case {
            x: [1, 24, 11, 10],
            co: 24,
            k: 3,
            s: 1,
            p: 1,
            group: 24,
        },
        Case {
            x: [2, 17, 15, 13],
            co: 17,
            k: 3,
            s: 2,
            p: 1,
            group: 17,
        },
        Case {
            x: [1, 40, 9, 9],
            co: 40,
            k: 5,
            s: 1,
            p: 2,
            group: 40,
        },
        Case {
            x: [1, 8, 12, 7],
            co: 8,
            k: 5,
            s: 2,
            p: 2,
            group: 8,
        },
        // stem, grouped, strided pointwise
        Case {
            x: [1, 3, 33, 31],
            co: 16,
            k: 3,
            s: 2,
            p: 1,
            group: 1,
        },
        Case {
            x: [1, 12, 8, 8],
            co: 18,
            k: 3,
            s: 1,
            p: 1,
            group: 2,
        },
        Case {
            x: [1, 16, 9, 9],
            co: 8,
            k: 1,
            s: 2,
            p: 0,
            group: 1,
        },
    ];
    let acts = [
        None,
        Some(Activation::Relu),
        Some(Activation::Clip { min: 0.0, max: 6.0 }),
    ];
    let mut n = 0;
    for (i, c) in cases.iter().enumerate() {
        for (j, act) in acts.iter().enumerate() {
            for dtype in [DType::U8, DType::I8] {
                let seed = (i * 7 + j * 3) as u64 + (dtype == DType::I8) as u64;
                let (op, ins) = qconv_case(c, dtype, *act, seed);
                for threads in [1, 3] {
                    let f = check_op_exact(&op, &ins, &opts(threads))
                        .unwrap_or_else(|e| panic!("case {i} act {act:?} {dtype}: {e}"));
                    assert_eq!(f, 0, "case {i}: QConv runs on an int8 kernel");
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, cases.len() * acts.len() * 2 * 2);
}

#[test]
fn quantize_and_dequantize_match_the_reference() {
    let mut rng = Lcg::new(11);
    for (shape, dtype, scale, zp) in [
        (vec![1, 3, 17, 19], DType::U8, 0.031, 128),
        (vec![2, 5, 7], DType::I8, 0.5, -3),
        (vec![1000], DType::U8, 0.0007, 0),
    ] {
        let n: usize = shape.iter().product();
        // Values beyond the range saturate; some land on ties of x / scale.
        let v: Vec<f32> = (0..n)
            .map(|i| {
                if i % 17 == 0 {
                    (i as f32 - 8.0) * 0.5 * scale
                } else {
                    rng.uniform(-200.0, 200.0) * scale
                }
            })
            .collect();
        let x = Tensor::from_f32(shape.clone(), v).unwrap();
        let q = QParams::per_tensor(dtype, scale, zp);
        for threads in [1, 3] {
            check_op_exact(
                &Op::Quantize(q.clone()),
                &[(x.clone(), false)],
                &opts(threads),
            )
            .unwrap();
        }
        let (lo, hi) = if dtype == DType::U8 {
            (0, 255)
        } else {
            (-128, 127)
        };
        let xq = ints(&mut rng, &shape, dtype, lo, hi);
        for threads in [1, 3] {
            check_op_exact(
                &Op::Dequantize(q.clone()),
                &[(xq.clone(), false)],
                &opts(threads),
            )
            .unwrap();
        }
    }
}

#[test]
fn lookup_tables_match_the_reference() {
    use mnc_ir::{QLut, QType};
    let mut rng = Lcg::new(5);
    for (xt, yt) in [
        (QType::U8, QType::U8),
        (QType::I8, QType::U8),
        (QType::I8, QType::I8),
    ] {
        let l = QLut::of(xt, yt, |v| (v * v) / 97 - 40);
        let x = ints(&mut rng, &[2, 3, 19, 23], xt.dtype(), xt.min(), xt.max());
        for threads in [1, 3] {
            let f = check_op_exact(&Op::QLut(l.clone()), &[(x.clone(), false)], &opts(threads))
                .unwrap();
            assert_eq!(f, 0, "the lookup runs on its kernel");
        }
    }
}

/// The quantized global average pool on its kernel equals the reference byte for byte:
/// u8 and i8, planes from 1 to 56x56 pixels, thread counts that split the planes.
#[test]
fn quantized_means_match_the_reference() {
    use mnc_ir::{QMean, QParams, QType};
    let mut rng = Lcg::new(9);
    for (qt, shape, xs, ys) in [
        (QType::U8, [1usize, 3, 1, 1], 0.02f32, 0.02f32),
        (QType::U8, [2, 40, 7, 7], 0.05, 0.011),
        (QType::I8, [1, 24, 56, 56], 0.03, 0.004),
        (QType::I8, [3, 5, 9, 13], 0.1, 0.5),
    ] {
        let m = QMean {
            x: QParams::per_tensor(qt.dtype(), xs, if qt == QType::U8 { 90 } else { -20 }),
            y: QParams::per_tensor(qt.dtype(), ys, if qt == QType::U8 { 7 } else { 12 }),
        };
        let x = ints(&mut rng, &shape, qt.dtype(), qt.min(), qt.max());
        for threads in [1, 3] {
            let f = check_op_exact(
                &Op::QGlobalAveragePool(m.clone()),
                &[(x.clone(), false)],
                &opts(threads),
            )
            .unwrap();
            assert_eq!(f, 0, "the mean runs on its kernel");
        }
    }
}

/// The quantized sum and product on their kernel equal the reference byte for byte (u8 and
/// i8; the product also with one value per channel, the SE scale).
#[test]
fn quantized_sums_and_products_match_the_reference() {
    use mnc_ir::{QBinary, QBinaryOp, QParams, QType};
    let mut rng = Lcg::new(12);
    for (op, per_channel) in [
        (QBinaryOp::Add, false),
        (QBinaryOp::Mul, false),
        (QBinaryOp::Mul, true),
    ] {
        for qt in [QType::U8, QType::I8] {
            let zp = |v: i32| if qt == QType::U8 { v + 128 } else { v };
            let q = QBinary {
                op,
                a: QParams::per_tensor(qt.dtype(), 0.031, zp(-11)),
                b: QParams::per_tensor(qt.dtype(), 0.017, zp(40)),
                y: QParams::per_tensor(qt.dtype(), 0.043, zp(3)),
            };
            let shape = [2, 24, 9, 11];
            let b_shape = if per_channel { [2, 24, 1, 1] } else { shape };
            let a = ints(&mut rng, &shape, qt.dtype(), qt.min(), qt.max());
            let b = ints(&mut rng, &b_shape, qt.dtype(), qt.min(), qt.max());
            for threads in [1, 3] {
                let f = check_op_exact(
                    &Op::QBinary(q.clone()),
                    &[(a.clone(), false), (b.clone(), false)],
                    &opts(threads),
                )
                .unwrap();
                assert_eq!(f, 0, "{op:?} runs on its kernel");
            }
        }
    }
}
