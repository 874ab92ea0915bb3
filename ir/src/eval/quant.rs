//! Quantized ops: `QuantizeLinear`, `DequantizeLinear` and the integer convolution, computed
//! exactly as [`crate::quant`] defines them (integer results: the other paths must equal
//! these, not approximate them).

use super::conv::accumulate;
use super::f32_data;
use crate::error::IrError;
use crate::op::{QBinary, QConv, QLut, QMean};
use crate::quant::{self, QParams, QType};
use crate::tensor::{Tensor, TensorData};

/// For every element of a tensor of `shape`, the index along `q.axis` (0 per tensor).
fn axis_index(q: &QParams, shape: &[usize]) -> impl Fn(usize) -> usize {
    let (dim, inner) = match q.axis {
        Some(a) => (shape[a], shape[a + 1..].iter().product::<usize>()),
        None => (1, 1),
    };
    move |i| (i / inner) % dim
}

/// The integer values of a u8/i8/i32 tensor.
fn ints(t: &Tensor, what: &str) -> Result<Vec<i32>, IrError> {
    Ok(match &t.data {
        TensorData::U8(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::I32(v) => v.clone(),
        TensorData::F32(_) | TensorData::I64(_) => {
            return Err(IrError::op(format!(
                "{what} must be u8, i8 or i32, got {}",
                t.ty()
            )))
        }
    })
}

/// ONNX `QuantizeLinear` ([`quant::quantize`] per element).
pub fn quantize(q: &QParams, x: &Tensor) -> Result<Tensor, IrError> {
    let v = f32_data(x, "QuantizeLinear input")?;
    let qt =
        QType::of(q.dtype).ok_or_else(|| IrError::op(format!("cannot quantize to {}", q.dtype)))?;
    let ax = axis_index(q, &x.shape);
    let out = v
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            let (s, zp) = q.at(ax(i));
            quant::quantize(f, s, zp, qt)
        })
        .collect();
    Tensor::from_i32_values(x.shape.clone(), q.dtype, out)
}

/// ONNX `DequantizeLinear` ([`quant::dequantize`] per element).
pub fn dequantize(q: &QParams, x: &Tensor) -> Result<Tensor, IrError> {
    let v = ints(x, "DequantizeLinear input")?;
    let ax = axis_index(q, &x.shape);
    let out = v
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let (s, zp) = q.at(ax(i));
            quant::dequantize(n, s, zp)
        })
        .collect();
    Tensor::from_f32(x.shape.clone(), out)
}

/// A table lookup per element.
pub fn lut(l: &QLut, x: &Tensor) -> Result<Tensor, IrError> {
    let v = ints(x, "QLut input")?;
    Tensor::from_i32_values(
        x.shape.clone(),
        l.y.dtype(),
        v.iter().map(|&i| l.get(i)).collect(),
    )
}

/// The quantized global average pool: per image and channel the exact `i32` sum of the
/// plane less `pixels * x_zp`, then [`quant::Requant::apply`] with [`quant::Requant::mean`].
pub fn qmean(m: &QMean, x: &Tensor) -> Result<Tensor, IrError> {
    let v = ints(x, "QGlobalAveragePool input")?;
    if x.shape.len() != 4 {
        return Err(IrError::op("QGlobalAveragePool input must be NCHW"));
    }
    let pixels = x.shape[2] * x.shape[3];
    let rq = m
        .requant(pixels)
        .ok_or_else(|| IrError::op("QGlobalAveragePool parameters have no requantization"))?;
    let x_zp = m.x.at(0).1;
    let out = v
        .chunks(pixels.max(1))
        .map(|plane| {
            let sum: i32 = plane.iter().sum();
            rq.apply(sum - pixels as i32 * x_zp, 0)
        })
        .collect();
    Tensor::from_i32_values(vec![x.shape[0], x.shape[1], 1, 1], m.y.dtype, out)
}

/// The quantized sum or product, element by element ([`quant::BinaryRequant::apply`]),
/// `b` broadcast as [`QBinary::inner`] says.
pub fn qbinary(q: &QBinary, ins: &[&Tensor]) -> Result<Tensor, IrError> {
    let (a, b) = (
        ints(ins[0], "QBinary input")?,
        ints(ins[1], "QBinary input")?,
    );
    let inner = QBinary::inner(&ins[0].shape, &ins[1].shape).ok_or_else(|| {
        IrError::op("QBinary b must have a's shape or its leading dims then ones")
    })?;
    let f = q
        .requant()
        .ok_or_else(|| IrError::op("QBinary parameters have no integer form"))?;
    let out = a
        .iter()
        .enumerate()
        .map(|(i, &x)| f.apply(x, b[i / inner.max(1)]))
        .collect();
    Tensor::from_i32_values(ins[0].shape.clone(), q.y.dtype, out)
}

/// The integer convolution: per output element
/// `acc = bias[o] + sum over (input channel of the group, ky, kx) of (x - x_zp) * w` in `i32`
/// (padding cells contribute nothing), then [`quant::Requant::apply`].
pub fn qconv(q: &QConv, ins: &[&Tensor], out_shape: Vec<usize>) -> Result<Tensor, IrError> {
    let c = &q.conv;
    let x = ints(ins[0], "QConv input")?;
    let w = ints(ins[1], "QConv weight")?;
    let bias = if c.has_bias {
        Some(ints(ins[2], "QConv bias")?)
    } else {
        None
    };
    let co = ins[1].shape[0];
    let rq = q
        .requant(co)
        .ok_or_else(|| IrError::op("QConv parameters have no integer requantization"))?;
    // Products of `x - x_zp` (at most 255 in magnitude) and an i8 weight fit i32; the sum
    // wraps like the kernels' (inference refuses layers whose sums could overflow).
    let x_zp = q.x.at(0).1;
    let xz: Vec<i32> = x.iter().map(|&v| v - x_zp).collect();
    let plane = out_shape[2] * out_shape[3];
    let mut out = vec![0i32; ins[0].shape[0] * co * plane];
    accumulate(
        c,
        &xz,
        &ins[0].shape,
        &w,
        &ins[1].shape,
        (out_shape[2], out_shape[3]),
        |a: i32, x, w| a.wrapping_add(x * w),
        |b, o, acc| {
            let bo = bias.as_ref().map_or(0, |bv| bv[o]);
            let dst = &mut out[(b * co + o) * plane..][..plane];
            for (d, &a) in dst.iter_mut().zip(acc) {
                *d = rq.apply(a.wrapping_add(bo), o);
            }
        },
    );
    // A fused residual: the requantized value and the residual operand through the sum's
    // function, element by element (exactly `QConv` then `QBinary` `Add`).
    if let (Some(add), Some(r)) = (q.add_requant(), &q.residual) {
        let res = ints(ins[2 + c.has_bias as usize], "QConv residual")?;
        for (d, &v) in out.iter_mut().zip(&res) {
            *d = r.apply(&add, *d, v);
        }
    } else if q.residual.is_some() {
        return Err(IrError::op("QConv residual parameters have no integer sum"));
    }
    Tensor::from_i32_values(out_shape, q.y.dtype, out)
}

#[cfg(test)]
mod tests {
    use super::super::eval_op;
    use crate::op::{Activation, Conv, Epilogue, Op, QConv};
    use crate::quant::QParams;
    use crate::tensor::{DType, Tensor, TensorData};

    fn u8t(shape: &[usize], v: &[i32]) -> Tensor {
        Tensor::from_i32_values(shape.to_vec(), DType::U8, v.to_vec()).unwrap()
    }

    #[test]
    fn quantized_add_is_onnxruntimes_fused_formula() {
        use crate::op::{QBinary, QBinaryOp};
        let q = QBinary {
            op: QBinaryOp::Add,
            a: QParams::per_tensor(DType::U8, 0.1, 3),
            b: QParams::per_tensor(DType::U8, 0.2, 9),
            y: QParams::per_tensor(DType::U8, 0.05, 7),
        };
        // ra = 2, rb = 4, fixed = 7 - (2 * 3 + 4 * 9) = -35: y = 2a + 4b - 35, saturated.
        let a = u8t(&[1, 4], &[3, 10, 0, 255]);
        let b = u8t(&[1, 4], &[9, 20, 0, 255]);
        let y = eval_op(&Op::QBinary(q.clone()), &[&a, &b]).unwrap();
        assert_eq!(y.data, TensorData::U8(vec![7, 65, 0, 255]));
        // Per axis or mixed types have no such function.
        let mixed = QBinary {
            b: QParams::per_tensor(DType::I8, 0.2, 9),
            ..q.clone()
        };
        assert!(mixed.requant().is_none());
        // The product, b one value per channel: r = 0.1 * 0.2 / 0.05 = 0.4;
        // y = round((a - 3) * (b - 9) * 0.4 + 7).
        let m = QBinary {
            op: QBinaryOp::Mul,
            ..q
        };
        let a = u8t(&[1, 2, 1, 2], &[3, 13, 8, 255]);
        let b = u8t(&[1, 2, 1, 1], &[19, 4]);
        let y = eval_op(&Op::QBinary(m), &[&a, &b]).unwrap();
        // 0 + 7; 10 * 10 * 0.4 + 7 = 47; 5 * -5 * 0.4 + 7 = -3 -> 0; 252 * -5 * 0.4 + 7 < 0.
        assert_eq!(y.data, TensorData::U8(vec![7, 47, 0, 0]));
        assert_eq!(QBinary::inner(&[1, 2, 3, 4], &[1, 2, 1, 1]), Some(12));
        assert_eq!(QBinary::inner(&[1, 2, 3, 4], &[1, 2, 3, 4]), Some(1));
        assert_eq!(QBinary::inner(&[1, 2, 3, 4], &[1, 1, 3, 4]), None);
    }

    #[test]
    fn quantized_mean_is_the_integer_sum_requantized() {
        use crate::op::QMean;
        let m = QMean {
            x: QParams::per_tensor(DType::U8, 0.1, 3),
            y: QParams::per_tensor(DType::U8, 0.05, 7),
        };
        // Plane sums 101, 0 and 1020 less 4 * 3, times 0.1 / (0.05 * 4) = 0.5: 44.5 -> 44
        // (half to even), -6, 504 (saturates at 255 - 7); plus the zero point 7.
        let x = u8t(
            &[1, 3, 2, 2],
            &[10, 20, 30, 41, 0, 0, 0, 0, 255, 255, 255, 255],
        );
        let y = eval_op(&Op::QGlobalAveragePool(m.clone()), &[&x]).unwrap();
        assert_eq!(y.shape, vec![1, 3, 1, 1]);
        assert_eq!(y.data, TensorData::U8(vec![51, 1, 255]));
        // The multiplier is onnxruntime's `x_s / (y_s * pixels)`, not `x_s / y_s / pixels`.
        let rq = m.requant(3).unwrap();
        assert_eq!(rq.mult[0], 0.1f32 / (0.05f32 * 3.0));
        // Types must agree; multipliers outside [2^-32, 256) and overflowing sums are refused.
        let mixed = QMean {
            y: QParams::per_tensor(DType::I8, 0.05, 7),
            ..m.clone()
        };
        assert!(mixed.requant(4).is_none());
        let huge = QMean {
            y: QParams::per_tensor(DType::U8, 1e-6, 7),
            ..m.clone()
        };
        assert!(huge.requant(1).is_none());
        assert!(m.requant(9_000_000).is_none());
    }

    #[test]
    fn quantize_and_dequantize_per_axis() {
        let q = QParams {
            dtype: DType::I8,
            axis: Some(1),
            scale: vec![0.5, 2.0],
            zero_point: vec![0, 1],
        };
        let x = Tensor::from_f32(vec![1, 2, 2], vec![1.0, -0.75, 4.0, 1000.0]).unwrap();
        let y = eval_op(&Op::Quantize(q.clone()), &[&x]).unwrap();
        assert_eq!(y.data, TensorData::I8(vec![2, -2, 3, 127]));
        let back = eval_op(&Op::Dequantize(q), &[&y]).unwrap();
        assert_eq!(back.as_f32().unwrap(), &[1.0, -1.0, 4.0, 252.0]);
    }

    /// A 3x3 conv with padding 1 over one 2x2 u8 channel: padded cells contribute nothing,
    /// in-range taps contribute `(x - x_zp) * w`; then the bias and the requantization.
    #[test]
    fn qconv_matches_hand_computed_values() {
        let q = QConv {
            conv: Conv {
                kernel: [3, 3],
                pads: [1, 1, 1, 1],
                has_bias: true,
                epilogue: Epilogue {
                    residual: false,
                    act: Some(Activation::Relu),
                },
                ..Default::default()
            },
            x: QParams::per_tensor(DType::U8, 0.5, 10),
            w: QParams::per_tensor(DType::I8, 0.25, 0),
            y: QParams::per_tensor(DType::U8, 0.125, 3),
            residual: None,
        };
        let x = u8t(&[1, 1, 2, 2], &[12, 10, 9, 14]); // x - zp = 2, 0, -1, 4
        let w = Tensor::from_i32_values(vec![1, 1, 3, 3], DType::I8, (1..=9).collect()).unwrap();
        let b = Tensor::from_i32_values(vec![1], DType::I32, vec![-5]).unwrap();
        let op = Op::QConv(Box::new(q));
        let y = eval_op(&op, &[&x, &w, &b]).unwrap();
        // Output (0,0) sees x(0,0)*w(1,1)=2*5, x(0,1)*w(1,2)=0, x(1,0)*w(2,1)=-8, x(1,1)*w(2,2)=36:
        // acc = -5 + 38 = 33; mult = 0.5 * 0.25 / 0.125 = 1 -> 33 + 3 = 36.
        // (0,1): 2*4 + 0*5 + -1*7 + 4*8 = 33 - 5 = 28 -> 31; (1,0): 2*2 + 0*3 - 5 + 4*6 = 23 - 5
        // = 18 -> 21; (1,1): 2*1 + 0 - 4 + 4*5 = 18 - 5 = 13 -> 16.
        assert_eq!(y.data, TensorData::U8(vec![36, 31, 21, 16]));
        // ReLU clamps at the zero point.
        let b = Tensor::from_i32_values(vec![1], DType::I32, vec![-1000]).unwrap();
        let q2 = eval_op(&op, &[&x, &w, &b]).unwrap();
        assert_eq!(q2.data, TensorData::U8(vec![3, 3, 3, 3]));
    }

    /// A fused residual gives exactly the `QConv` followed by the `QBinary` `Add` (u8 and
    /// i8 values), and the sum's function on one element.
    #[test]
    fn qconv_with_fused_residual_is_the_conv_then_the_add() {
        use crate::op::{QBinary, QBinaryOp, QResidual};
        for (bt, bzp, conv_is_a) in [
            (DType::U8, 130, true),
            (DType::I8, -7, false),
            (DType::U8, 1, false),
        ] {
            let mid = QParams::per_tensor(bt, 0.125, 3);
            let rb = QParams::per_tensor(bt, 0.3, bzp);
            let y = QParams::per_tensor(bt, 0.2, 11);
            let plain = QConv {
                conv: Conv {
                    has_bias: true,
                    ..Default::default()
                },
                x: QParams::per_tensor(DType::U8, 0.5, 10),
                w: QParams::per_tensor(DType::I8, 0.25, 0),
                y: mid.clone(),
                residual: None,
            };
            let fused = QConv {
                conv: Conv {
                    epilogue: Epilogue {
                        residual: true,
                        act: None,
                    },
                    ..plain.conv.clone()
                },
                y: y.clone(),
                residual: Some(QResidual {
                    mid: mid.clone(),
                    b: rb.clone(),
                    conv_is_a,
                }),
                ..plain.clone()
            };
            let xs: Vec<i32> = (0..2 * 3 * 4).map(|i| i * 37 % 256).collect();
            let x = u8t(&[2, 3, 2, 2], &xs);
            let w =
                Tensor::from_i32_values(vec![2, 3, 1, 1], DType::I8, vec![5, -9, 127, -128, 3, 60])
                    .unwrap();
            let b = Tensor::from_i32_values(vec![2], DType::I32, vec![-300, 41]).unwrap();
            let lo = if bt == DType::U8 { 0 } else { -128 };
            let rs: Vec<i32> = (0..16).map(|i| lo + i * 53 % 256).collect();
            let r = Tensor::from_i32_values(vec![2, 2, 2, 2], bt, rs.clone()).unwrap();
            let a = eval_op(&Op::QConv(Box::new(plain)), &[&x, &w, &b]).unwrap();
            let (pa, pb, ia, ib) = if conv_is_a {
                (mid, rb, &a, &r)
            } else {
                (rb, mid, &r, &a)
            };
            let add = Op::QBinary(QBinary {
                op: QBinaryOp::Add,
                a: pa,
                b: pb,
                y,
            });
            let want = eval_op(&add, &[ia, ib]).unwrap();
            let got = eval_op(&Op::QConv(Box::new(fused.clone())), &[&x, &w, &b, &r]).unwrap();
            assert_eq!(got, want, "{bt} conv_is_a {conv_is_a}");
            // Element 0: a by the unfused conv, then the sum's function on (a, b).
            let av = super::ints(&a, "a").unwrap()[0];
            let f = fused.add_requant().unwrap();
            let (fa, fb) = if conv_is_a { (av, rs[0]) } else { (rs[0], av) };
            assert_eq!(super::ints(&got, "y").unwrap()[0], f.apply(fa, fb));
        }
    }
}
