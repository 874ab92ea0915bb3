//! Elementwise kernels: broadcasting Binary (f32 and i64), activations, inference
//! BatchNorm, ChannelAffine, and the numerically stable Softmax.

use super::{broadcast_strides, err, f32_data, f32_tensor, next_index};
use crate::error::IrError;
use crate::op::{Activation, BinaryOp};
use crate::tensor::{Tensor, TensorData};

/// Applies `f` to every broadcast pair `(a[i], b[j])` in row-major output order.
fn zip_broadcast<T: Copy, U>(
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    out_shape: &[usize],
    mut f: impl FnMut(T, T) -> Result<U, IrError>,
) -> Result<Vec<U>, IrError> {
    let r = out_shape.len();
    let sa = broadcast_strides(a_shape, r);
    let sb = broadcast_strides(b_shape, r);
    let n: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok(out);
    }
    let mut idx = vec![0; r];
    loop {
        let ia: usize = idx.iter().zip(&sa).map(|(i, s)| i * s).sum();
        let ib: usize = idx.iter().zip(&sb).map(|(i, s)| i * s).sum();
        out.push(f(a[ia], b[ib])?);
        if !next_index(&mut idx, out_shape) {
            break;
        }
    }
    Ok(out)
}

/// Broadcasting Add/Sub/Mul/Div. On i64: overflow is an error, Div truncates toward zero
/// (like ONNX/C) and division by zero is an error. On f32: IEEE arithmetic.
pub fn binary(
    op: BinaryOp,
    a: &Tensor,
    b: &Tensor,
    out_shape: Vec<usize>,
) -> Result<Tensor, IrError> {
    let data = match (&a.data, &b.data) {
        (TensorData::F32(x), TensorData::F32(y)) => {
            let f = |p: f32, q: f32| {
                Ok(match op {
                    BinaryOp::Add => p + q,
                    BinaryOp::Sub => p - q,
                    BinaryOp::Mul => p * q,
                    BinaryOp::Div => p / q,
                })
            };
            TensorData::F32(zip_broadcast(x, &a.shape, y, &b.shape, &out_shape, f)?)
        }
        (TensorData::I64(x), TensorData::I64(y)) => {
            let f = |p: i64, q: i64| {
                let r = match op {
                    BinaryOp::Add => p.checked_add(q),
                    BinaryOp::Sub => p.checked_sub(q),
                    BinaryOp::Mul => p.checked_mul(q),
                    BinaryOp::Div => {
                        if q == 0 {
                            return err(format!("integer division by zero ({p} / 0)"));
                        }
                        p.checked_div(q)
                    }
                };
                r.ok_or_else(|| IrError::op(format!("i64 overflow in {op:?}({p}, {q})")))
            };
            TensorData::I64(zip_broadcast(x, &a.shape, y, &b.shape, &out_shape, f)?)
        }
        _ => return err(format!("operand types differ: {} and {}", a.ty(), b.ty())),
    };
    Ok(Tensor {
        shape: out_shape,
        data,
    })
}

/// Standalone activation, through [`Activation::apply`].
pub fn act(a: Activation, x: &Tensor) -> Result<Tensor, IrError> {
    let v = f32_data(x, "activation input")?;
    f32_tensor(x.shape.clone(), v.iter().map(|&e| a.apply(e)).collect())
}

/// Applies `f(value, channel)` over a tensor whose axis 1 is the channel axis.
fn per_channel(x: &Tensor, mut f: impl FnMut(f32, usize) -> f32) -> Result<Tensor, IrError> {
    let v = f32_data(x, "input")?;
    let c = x.shape[1];
    let inner: usize = x.shape[2..].iter().product();
    let out = v
        .iter()
        .enumerate()
        .map(|(i, &e)| f(e, (i / inner.max(1)) % c.max(1)))
        .collect();
    f32_tensor(x.shape.clone(), out)
}

/// Inference BatchNormalization over axis 1:
/// `y = (x - mean[c]) / sqrt(var[c] + epsilon) * scale[c] + bias[c]`, evaluated in that order.
pub fn batch_norm(ins: &[&Tensor], epsilon: f32) -> Result<Tensor, IrError> {
    let scale = f32_data(ins[1], "BatchNorm scale")?;
    let bias = f32_data(ins[2], "BatchNorm bias")?;
    let mean = f32_data(ins[3], "BatchNorm mean")?;
    let var = f32_data(ins[4], "BatchNorm variance")?;
    let denom: Vec<f32> = var.iter().map(|&v| (v + epsilon).sqrt()).collect();
    per_channel(ins[0], |e, c| (e - mean[c]) / denom[c] * scale[c] + bias[c])
}

/// `y = x * scale[c] + bias[c]` over axis 1.
pub fn channel_affine(ins: &[&Tensor]) -> Result<Tensor, IrError> {
    let scale = f32_data(ins[1], "ChannelAffine scale")?;
    let bias = f32_data(ins[2], "ChannelAffine bias")?;
    per_channel(ins[0], |e, c| e * scale[c] + bias[c])
}

/// Softmax along one axis: `exp(x - max) / sum(exp(x - max))`, the sum accumulated in f64.
pub fn softmax(x: &Tensor, axis: usize) -> Result<Tensor, IrError> {
    let v = f32_data(x, "Softmax input")?;
    let d = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let outer: usize = x.shape[..axis].iter().product();
    let mut out = vec![0.0f32; v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * d + k) * inner + i;
            let m = (0..d).map(|k| v[at(k)]).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f64;
            for k in 0..d {
                let e = (v[at(k)] - m).exp();
                out[at(k)] = e;
                sum += e as f64;
            }
            for k in 0..d {
                out[at(k)] = (out[at(k)] as f64 / sum) as f32;
            }
        }
    }
    f32_tensor(x.shape.clone(), out)
}

/// Local response normalization across channels (axis 1):
/// `x / (bias + alpha / size * sum_{c' in window} x[c']^2)^beta`, in `f64`.
pub fn lrn(l: &crate::op::Lrn, x: &Tensor) -> Result<Tensor, IrError> {
    let v = f32_data(x, "LRN input")?;
    let (n, c) = (x.shape[0], x.shape[1]);
    let inner: usize = x.shape[2..].iter().product();
    let k = l.alpha as f64 / l.size as f64;
    let mut out = vec![0.0f32; v.len()];
    for b in 0..n {
        let plane = |ch: usize, i: usize| (b * c + ch) * inner + i;
        for ch in 0..c {
            for i in 0..inner {
                let sq: f64 = l
                    .window(ch, c)
                    .map(|w| (v[plane(w, i)] as f64).powi(2))
                    .sum();
                let scale = (l.bias as f64 + k * sq).powf(l.beta as f64);
                out[plane(ch, i)] = (v[plane(ch, i)] as f64 / scale) as f32;
            }
        }
    }
    f32_tensor(x.shape.clone(), out)
}

#[cfg(test)]
mod tests {
    use super::super::eval_op;
    use super::super::testutil::*;
    use crate::op::{Activation, BinaryOp, Op};

    fn bin(
        op: BinaryOp,
        a: &crate::Tensor,
        b: &crate::Tensor,
    ) -> Result<crate::Tensor, crate::IrError> {
        eval_op(&Op::Binary(op), &[a, b])
    }

    #[test]
    fn binary_f32_broadcast() {
        let a = tf(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = tf(&[3], &[10., 20., 30.]);
        let y = bin(BinaryOp::Add, &a, &b).unwrap();
        assert_eq!(y, tf(&[2, 3], &[11., 22., 33., 14., 25., 36.]));
        let c = tf(&[2, 1], &[2., 4.]);
        let y = bin(BinaryOp::Div, &a, &c).unwrap();
        assert_eq!(y, tf(&[2, 3], &[0.5, 1., 1.5, 1., 1.25, 1.5]));
        let y = bin(BinaryOp::Sub, &c, &b).unwrap();
        assert_eq!(y, tf(&[2, 3], &[-8., -18., -28., -6., -16., -26.]));
        // [3,1] * [1,2] -> [3,2] (both sides broadcast)
        let p = tf(&[3, 1], &[1., 2., 3.]);
        let q = tf(&[1, 2], &[10., -1.]);
        let y = bin(BinaryOp::Mul, &p, &q).unwrap();
        assert_eq!(y, tf(&[3, 2], &[10., -1., 20., -2., 30., -3.]));
        // scalar with NCHW (SE-style [1,C,1,1] * [N,C,H,W])
        let s = tf(&[], &[2.]);
        assert_eq!(
            bin(BinaryOp::Mul, &a, &s).unwrap(),
            tf(&[2, 3], &[2., 4., 6., 8., 10., 12.])
        );
        let g = tf(&[1, 2, 1, 1], &[1., -1.]);
        let x = tf(
            &[3, 2, 1, 2],
            &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
        );
        let y = bin(BinaryOp::Mul, &x, &g).unwrap();
        assert_eq!(
            y,
            tf(
                &[3, 2, 1, 2],
                &[1., 2., -3., -4., 5., 6., -7., -8., 9., 10., -11., -12.]
            )
        );
        // f32 division by zero is IEEE
        let y = bin(BinaryOp::Div, &tf(&[1], &[1.]), &tf(&[1], &[0.])).unwrap();
        assert_eq!(y.as_f32().unwrap()[0], f32::INFINITY);
        // errors
        assert!(bin(BinaryOp::Add, &tf(&[3], &[0.; 3]), &tf(&[4], &[0.; 4])).is_err());
        assert!(bin(BinaryOp::Add, &tf(&[1], &[0.]), &ti(&[1], &[0])).is_err());
    }

    #[test]
    fn binary_i64() {
        let a = ti(&[4], &[7, -7, 7, -7]);
        let b = ti(&[4], &[2, 2, -2, -2]);
        assert_eq!(
            bin(BinaryOp::Div, &a, &b).unwrap(),
            ti(&[4], &[3, -3, -3, 3])
        );
        assert_eq!(
            bin(BinaryOp::Add, &a, &b).unwrap(),
            ti(&[4], &[9, -5, 5, -9])
        );
        assert_eq!(
            bin(BinaryOp::Sub, &a, &b).unwrap(),
            ti(&[4], &[5, -9, 9, -5])
        );
        assert_eq!(
            bin(BinaryOp::Mul, &a, &b).unwrap(),
            ti(&[4], &[14, -14, -14, 14])
        );
        // shape arithmetic: [1,32,7,7] / 7 style with scalar
        let s = ti(&[], &[7]);
        assert_eq!(
            bin(BinaryOp::Div, &ti(&[2], &[49, 14]), &s).unwrap(),
            ti(&[2], &[7, 2])
        );
        assert!(bin(BinaryOp::Div, &a, &ti(&[1], &[0])).is_err());
        assert!(bin(BinaryOp::Div, &ti(&[1], &[i64::MIN]), &ti(&[1], &[-1])).is_err());
        assert!(bin(BinaryOp::Add, &ti(&[1], &[i64::MAX]), &ti(&[1], &[1])).is_err());
        assert!(bin(BinaryOp::Mul, &ti(&[1], &[i64::MAX]), &ti(&[1], &[2])).is_err());
    }

    #[test]
    fn activations_edge_values() {
        let xs = [-1e30f32, -7.0, -3.0, -0.5, 0.0, 0.5, 3.0, 6.5, 1e30];
        let x = tf(&[9], &xs);
        let run = |a: Activation| eval_op(&Op::Act(a), &[&x]).unwrap();
        assert_close(
            &run(Activation::Relu),
            &[9],
            &[0., 0., 0., 0., 0., 0.5, 3., 6.5, 1e30],
            0.0,
        );
        assert_close(
            &run(Activation::Clip { min: 0.0, max: 6.0 }),
            &[9],
            &[0., 0., 0., 0., 0., 0.5, 3., 6., 6.],
            0.0,
        );
        // sigmoid(-7) = 1/(1+e^7) = 9.1105e-4, sigmoid(-0.5) = 0.37754067, sigmoid(3) = 0.95257413
        let sig = run(Activation::Sigmoid);
        assert_close(
            &sig,
            &[9],
            &[
                0.,
                9.110512e-4,
                0.047425874,
                0.37754067,
                0.5,
                0.62245935,
                0.95257413,
                0.9984988,
                1.,
            ],
            1e-6,
        );
        // hardsigmoid(alpha 0.2, beta 0.5): clamp(0.2x + 0.5)
        assert_close(
            &run(Activation::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            }),
            &[9],
            &[0., 0., 0., 0.4, 0.5, 0.6, 1., 1., 1.],
            1e-6,
        );
        // hardswish: x * clamp(x/6 + 0.5): -0.5 -> -0.5*0.41666 = -0.20833, 0.5 -> 0.29167
        assert_close(
            &run(Activation::HardSwish),
            &[9],
            &[-0., 0., 0., -0.20833333, 0., 0.29166667, 3., 6.5, 1e30],
            1e-6,
        );
        // silu: x * sigmoid(x); large negative -> -0, large positive -> x
        let silu = run(Activation::Silu);
        let want = [
            -0.0,
            -7.0 * 9.110512e-4,
            -3.0 * 0.047425874,
            -0.5 * 0.37754067,
            0.,
            0.5 * 0.62245935,
            3.0 * 0.95257413,
            6.5 * 0.9984988,
            1e30,
        ];
        let got = silu.as_f32().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
        }
        assert!(got.iter().all(|v| v.is_finite()));
        // NaN propagates through sigmoid, is not a panic
        let n = eval_op(&Op::Act(Activation::Sigmoid), &[&tf(&[1], &[f32::NAN])]).unwrap();
        assert!(n.as_f32().unwrap()[0].is_nan());
        assert!(eval_op(&Op::Act(Activation::Relu), &[&ti(&[1], &[1])]).is_err());
    }

    #[test]
    fn batch_norm_and_affine() {
        // N=1, C=3, H=1, W=2
        let x = tf(&[1, 3, 1, 2], &[1., 2., 3., 4., 5., 6.]);
        let scale = tf(&[3], &[1., 2., 0.5]);
        let bias = tf(&[3], &[0., 1., -1.]);
        let mean = tf(&[3], &[1., 3., 0.]);
        let var = tf(&[3], &[4., 1., 0.25]);
        let y = eval_op(
            &Op::BatchNorm { epsilon: 0.0 },
            &[&x, &scale, &bias, &mean, &var],
        )
        .unwrap();
        // c0: (x-1)/2*1+0 -> 0, 0.5 ; c1: (x-3)/1*2+1 -> 1, 3 ; c2: x/0.5*0.5-1 -> 4, 5
        assert_close(&y, &[1, 3, 1, 2], &[0., 0.5, 1., 3., 4., 5.], 1e-6);
        let y = eval_op(
            &Op::BatchNorm { epsilon: 5.0 },
            &[&x, &scale, &bias, &mean, &var],
        )
        .unwrap();
        // c0 denom sqrt(9)=3: 0, 1/3
        assert_close(
            &y,
            &[1, 3, 1, 2],
            &[
                0.,
                1. / 3.,
                1.0,
                1. + 2. / 6f32.sqrt(),
                5. / 5.25f32.sqrt() * 0.5 - 1.,
                6. / 5.25f32.sqrt() * 0.5 - 1.,
            ],
            1e-6,
        );
        let y = eval_op(&Op::ChannelAffine, &[&x, &scale, &bias]).unwrap();
        assert_close(&y, &[1, 3, 1, 2], &[1., 2., 7., 9., 1.5, 2.], 0.0);
        // rank 2 (N, C), batch 3
        let x2 = tf(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
        let s2 = tf(&[2], &[2., -1.]);
        let b2 = tf(&[2], &[0.5, 0.]);
        let y = eval_op(&Op::ChannelAffine, &[&x2, &s2, &b2]).unwrap();
        assert_close(&y, &[3, 2], &[2.5, -2., 6.5, -4., 10.5, -6.], 0.0);
        assert!(eval_op(&Op::ChannelAffine, &[&x2, &ti(&[2], &[1, 1]), &b2]).is_err());
        assert!(eval_op(&Op::ChannelAffine, &[&x2, &tf(&[3], &[1.; 3]), &b2]).is_err());
    }

    #[test]
    fn softmax_hand() {
        let x = tf(&[2, 3], &[0., 1., 2., 1000., 1000., 1000.]);
        let y = eval_op(&Op::Softmax { axis: 1 }, &[&x]).unwrap();
        // e^0, e^1, e^2 normalized: 0.09003057, 0.24472847, 0.66524096
        assert_close(
            &y,
            &[2, 3],
            &[
                0.09003057,
                0.24472847,
                0.66524096,
                1. / 3.,
                1. / 3.,
                1. / 3.,
            ],
            1e-6,
        );
        let y = eval_op(&Op::Softmax { axis: 0 }, &[&x]).unwrap();
        assert_close(&y, &[2, 3], &[0., 0., 0., 1., 1., 1.], 1e-6);
        assert!(eval_op(&Op::Softmax { axis: 2 }, &[&x]).is_err());
    }

    #[test]
    fn lrn_hand() {
        use crate::op::Lrn;
        // [1, 3, 1, 2]: channels (1, 2, 3) at the first position, (0, -1, 2) at the second.
        let x = tf(&[1, 3, 1, 2], &[1., 0., 2., -1., 3., 2.]);
        // size 3, alpha / size = 1, beta 1, bias 1: y = x / (1 + sum of window squares)
        let l = Lrn {
            size: 3,
            alpha: 3.0,
            beta: 1.0,
            bias: 1.0,
        };
        let y = eval_op(&Op::Lrn(l), &[&x]).unwrap();
        #[rustfmt::skip]
        let want = [1. / 6., 0. / 2., 2. / 15., -1. / 6., 3. / 14., 2. / 6.];
        assert_close(&y, &[1, 3, 1, 2], &want, 1e-7);
        // even size 2 (window c..=c+1), alpha / size = 1, beta 0.5, bias 0
        let x = tf(&[1, 3], &[3., 4., 12.]);
        let l = Lrn {
            size: 2,
            alpha: 2.0,
            beta: 0.5,
            bias: 0.0,
        };
        let y = eval_op(&Op::Lrn(l), &[&x]).unwrap();
        assert_close(&y, &[1, 3], &[0.6, 4. / 160f32.sqrt(), 1.0], 1e-7);
        // ONNX defaults on one channel: x / (1 + 1e-4 x^2)^0.75
        let l = Lrn {
            size: 5,
            alpha: 1e-4,
            beta: 0.75,
            bias: 1.0,
        };
        let y = eval_op(&Op::Lrn(l), &[&tf(&[1, 1, 1], &[10.])]).unwrap();
        let want = 10.0 / (1.0 + 1e-4 / 5.0 * 100.0f64).powf(0.75);
        assert_close(&y, &[1, 1, 1], &[want as f32], 1e-7);
        // malformed: rank 1, size 0, non-finite parameters
        assert!(eval_op(&Op::Lrn(l), &[&tf(&[3], &[1., 2., 3.])]).is_err());
        let bad = [
            Lrn { size: 0, ..l },
            Lrn {
                beta: f32::NAN,
                ..l
            },
            Lrn {
                alpha: f32::INFINITY,
                ..l
            },
        ];
        for b in bad {
            assert!(eval_op(&Op::Lrn(b), &[&x]).is_err(), "{b:?}");
        }
    }
}
