//! Convolution (grouped/depthwise, strided, dilated, asymmetric pads, bias, fused epilogue)
//! and the fused Squeeze-and-Excitation block.

use super::{f32_data, f32_tensor};
use crate::error::IrError;
use crate::op::{Conv, Epilogue, SqueezeExcite};
use crate::tensor::Tensor;

/// The output positions `o` in `[lo, hi)` (with `hi <= out_len`) whose input position
/// `o * stride + offset` lies inside `0..in_len`. Shared with the JIT's im2col and pooling
/// loops, which must visit exactly the cells the reference does.
pub fn valid_range(out_len: usize, in_len: usize, stride: usize, offset: i64) -> (usize, usize) {
    let s = stride as i64;
    let lo = if offset >= 0 {
        0
    } else {
        (-offset + s - 1) / s
    };
    let room = in_len as i64 - offset;
    let hi = if room <= 0 {
        0
    } else {
        ((room + s - 1) / s).min(out_len as i64)
    };
    let lo = lo.min(hi);
    (lo as usize, hi as usize)
}

/// Applies a fused epilogue to `acc` (already holding the bias): add the residual, then the
/// activation.
fn epilogue(e: &Epilogue, acc: f32, residual: Option<f32>) -> f32 {
    let v = match residual {
        Some(r) => acc + r,
        None => acc,
    };
    match e.act {
        Some(a) => a.apply(v),
        None => v,
    }
}

/// The accumulation of an NCHW x OIHW convolution, shared by the float and the integer
/// conv: for every image `b` and output channel `o`, the plane of accumulators starts at
/// `T::default()` and every tap adds `mac(acc, x, w)` in the order of the reduction index
/// (input channel of the group, kernel row, kernel column; padding cells contribute nothing),
/// then `finish(b, o, plane)` consumes the plane.
#[allow(clippy::too_many_arguments)]
pub(crate) fn accumulate<T: Copy + Default>(
    c: &Conv,
    x: &[T],
    xs: &[usize],
    w: &[T],
    ws: &[usize],
    (oh, ow): (usize, usize),
    mac: impl Fn(T, T, T) -> T,
    mut finish: impl FnMut(usize, usize, &[T]),
) {
    let (n, ci, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (co, cig, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let [sy, sx] = c.strides;
    let [dy, dx] = c.dilations;
    let (pt, pl) = (c.pads[0] as i64, c.pads[1] as i64);
    let cog = co / c.group;
    let mut acc = vec![T::default(); oh * ow];
    for b in 0..n {
        for o in 0..co {
            let g = o / cog;
            acc.fill(T::default());
            for icg in 0..cig {
                let ic = g * cig + icg;
                let xp = &x[(b * ci + ic) * h * wd..][..h * wd];
                for ky in 0..kh {
                    let offy = (ky * dy) as i64 - pt;
                    let (oy0, oy1) = valid_range(oh, h, sy, offy);
                    for kx in 0..kw {
                        let offx = (kx * dx) as i64 - pl;
                        let (ox0, ox1) = valid_range(ow, wd, sx, offx);
                        let wv = w[((o * cig + icg) * kh + ky) * kw + kx];
                        for oy in oy0..oy1 {
                            let iy = (oy as i64 * sy as i64 + offy) as usize;
                            let xrow = &xp[iy * wd..][..wd];
                            let arow = &mut acc[oy * ow..][..ow];
                            for (ox, a) in arow.iter_mut().enumerate().take(ox1).skip(ox0) {
                                let ix = (ox as i64 * sx as i64 + offx) as usize;
                                *a = mac(*a, xrow[ix], wv);
                            }
                        }
                    }
                }
            }
            finish(b, o, &acc);
        }
    }
}

/// NCHW x OIHW convolution. Per output element:
/// `acc = sum over (input channel of the group, ky, kx) of x * w` in that order from `0.0`
/// (padding cells contribute nothing), then `y = act(acc + bias[o] + residual)`.
pub fn conv(c: &Conv, ins: &[&Tensor], out_shape: Vec<usize>) -> Result<Tensor, IrError> {
    let x = f32_data(ins[0], "conv input")?;
    let w = f32_data(ins[1], "conv weight")?;
    let mut k = 2;
    let bias = if c.has_bias {
        k += 1;
        Some(f32_data(ins[k - 1], "conv bias")?)
    } else {
        None
    };
    let residual = if c.epilogue.residual {
        Some(f32_data(ins[k], "conv residual operand")?)
    } else {
        None
    };
    let (co, plane) = (ins[1].shape[0], out_shape[2] * out_shape[3]);
    let mut out = vec![0.0f32; ins[0].shape[0] * co * plane];
    accumulate(
        c,
        x,
        &ins[0].shape,
        w,
        &ins[1].shape,
        (out_shape[2], out_shape[3]),
        |a, x, w| a + x * w,
        |b, o, acc| {
            let base = (b * co + o) * plane;
            for (i, &a) in acc.iter().enumerate() {
                let with_bias = match bias {
                    Some(bv) => a + bv[o],
                    None => a,
                };
                out[base + i] = epilogue(&c.epilogue, with_bias, residual.map(|r| r[base + i]));
            }
        },
    );
    f32_tensor(out_shape, out)
}

/// `y = x * gate(W2 · act(W1 · mean_hw(x) + b1) + b2)`; the spatial mean accumulates in f64,
/// the two small matrix-vector products in f32 (index ascending), bias added after the sum.
pub fn squeeze_excite(se: &SqueezeExcite, ins: &[&Tensor]) -> Result<Tensor, IrError> {
    let x = f32_data(ins[0], "SqueezeExcite input")?;
    let w1 = f32_data(ins[1], "SqueezeExcite w1")?;
    let b1 = f32_data(ins[2], "SqueezeExcite b1")?;
    let w2 = f32_data(ins[3], "SqueezeExcite w2")?;
    let b2 = f32_data(ins[4], "SqueezeExcite b2")?;
    let (n, c, h, wd) = (
        ins[0].shape[0],
        ins[0].shape[1],
        ins[0].shape[2],
        ins[0].shape[3],
    );
    let r = ins[1].shape[0];
    let hw = h * wd;
    let mut out = vec![0.0f32; x.len()];
    for b in 0..n {
        let s: Vec<f32> = (0..c)
            .map(|ch| {
                let p = &x[(b * c + ch) * hw..][..hw];
                (p.iter().map(|&v| v as f64).sum::<f64>() / hw as f64) as f32
            })
            .collect();
        let hid: Vec<f32> = (0..r)
            .map(|j| {
                let acc = (0..c).fold(0.0f32, |a, ch| a + w1[j * c + ch] * s[ch]);
                se.act.apply(acc + b1[j])
            })
            .collect();
        for ch in 0..c {
            let acc = (0..r).fold(0.0f32, |a, j| a + w2[ch * r + j] * hid[j]);
            let g = se.gate.apply(acc + b2[ch]);
            let base = (b * c + ch) * hw;
            for i in base..base + hw {
                out[i] = x[i] * g;
            }
        }
    }
    f32_tensor(ins[0].shape.clone(), out)
}

#[cfg(test)]
mod tests {
    use super::super::eval_op;
    use super::super::testutil::*;
    use super::valid_range;
    use crate::op::{Activation, Conv, Epilogue, Op, SqueezeExcite};
    use crate::tensor::Tensor;

    /// Independent formulation: explicit im2col (with bounds checks per cell) + matmul per
    /// group, then bias/residual/activation.
    fn conv_im2col(
        c: &Conv,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&[f32]>,
        res: Option<&[f32]>,
    ) -> (Vec<usize>, Vec<f32>) {
        let xs = x.as_f32().unwrap();
        let ws = w.as_f32().unwrap();
        let (n, ci, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        let (co, cig, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
        let oh = (h + c.pads[0] + c.pads[2] - (c.dilations[0] * (kh - 1) + 1)) / c.strides[0] + 1;
        let ow = (wd + c.pads[1] + c.pads[3] - (c.dilations[1] * (kw - 1) + 1)) / c.strides[1] + 1;
        let cog = co / c.group;
        let kk = cig * kh * kw;
        let mut out = vec![0.0f32; n * co * oh * ow];
        for b in 0..n {
            for g in 0..c.group {
                // cols[kidx][pix]
                let mut cols = vec![0.0f32; kk * oh * ow];
                for icg in 0..cig {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let kidx = (icg * kh + ky) * kw + kx;
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    let iy = (oy * c.strides[0] + ky * c.dilations[0]) as i64
                                        - c.pads[0] as i64;
                                    let ix = (ox * c.strides[1] + kx * c.dilations[1]) as i64
                                        - c.pads[1] as i64;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd
                                    {
                                        let ic = g * cig + icg;
                                        cols[kidx * oh * ow + oy * ow + ox] = xs
                                            [((b * ci + ic) * h + iy as usize) * wd + ix as usize];
                                    }
                                }
                            }
                        }
                    }
                }
                for ocg in 0..cog {
                    let o = g * cog + ocg;
                    for p in 0..oh * ow {
                        let mut acc = 0.0f64;
                        for kidx in 0..kk {
                            acc += ws[o * kk + kidx] as f64 * cols[kidx * oh * ow + p] as f64;
                        }
                        let mut v = acc as f32 + bias.map_or(0.0, |bv| bv[o]);
                        let oi = (b * co + o) * oh * ow + p;
                        if let Some(r) = res {
                            v += r[oi];
                        }
                        if let Some(a) = c.epilogue.act {
                            v = a.apply(v);
                        }
                        out[oi] = v;
                    }
                }
            }
        }
        (vec![n, co, oh, ow], out)
    }

    #[test]
    fn valid_ranges() {
        // out 4, in 7, stride 2, offset -1 (pad 1, ky 0): o*2-1 in 0..7 -> o in 1..4
        assert_eq!(valid_range(4, 7, 2, -1), (1, 4));
        // offset +1 (ky 2, pad 1): o*2+1 < 7 -> o in 0..3
        assert_eq!(valid_range(4, 7, 2, 1), (0, 3));
        assert_eq!(valid_range(3, 2, 1, 5), (0, 0));
        let (lo, hi) = valid_range(3, 2, 1, -9);
        assert!(lo >= hi);
    }

    #[test]
    fn conv_hand_3x3_pad1() {
        // 1x1x3x3 input 1..9, 3x3 all-ones kernel, pad 1: sums of 3x3 neighbourhoods
        let x = tf(&[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let w = tf(&[1, 1, 3, 3], &[1.; 9]);
        let c = Conv {
            kernel: [3, 3],
            pads: [1, 1, 1, 1],
            ..Default::default()
        };
        let y = eval_op(&Op::Conv(c.clone()), &[&x, &w]).unwrap();
        assert_close(
            &y,
            &[1, 1, 3, 3],
            &[12., 21., 16., 27., 45., 33., 24., 39., 28.],
            0.0,
        );
        // stride 2 on the odd input: corners only
        let c2 = Conv {
            strides: [2, 2],
            ..c.clone()
        };
        let y = eval_op(&Op::Conv(c2), &[&x, &w]).unwrap();
        assert_close(&y, &[1, 1, 2, 2], &[12., 16., 24., 28.], 0.0);
        // asymmetric pads (top 0, left 1, bottom 1, right 0), 2x2 kernel of ones
        let w2 = tf(&[1, 1, 2, 2], &[1.; 4]);
        let c3 = Conv {
            kernel: [2, 2],
            pads: [0, 1, 1, 0],
            ..Default::default()
        };
        let y = eval_op(&Op::Conv(c3), &[&x, &w2]).unwrap();
        // rows: window rows (0,1),(1,2),(2,pad); cols: (pad,0),(0,1),(1,2)
        assert_close(
            &y,
            &[1, 1, 3, 3],
            &[5., 12., 16., 11., 24., 28., 7., 15., 17.],
            0.0,
        );
        // dilation 2, 2x2 kernel [1,2,3,4] on 3x3: taps (0,0),(0,2),(2,0),(2,2)
        let w4 = tf(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let c4 = Conv {
            kernel: [2, 2],
            dilations: [2, 2],
            ..Default::default()
        };
        let y = eval_op(&Op::Conv(c4), &[&x, &w4]).unwrap();
        assert_close(&y, &[1, 1, 1, 1], &[1. + 6. + 21. + 36.], 0.0);
    }

    #[test]
    fn conv_bias_residual_act_order() {
        // 1x1 conv, 2 in -> 1 out, w = [1, -1], bias -3; residual then relu
        let x = tf(&[1, 2, 1, 2], &[5., 1., 2., 2.]);
        let w = tf(&[1, 2, 1, 1], &[1., -1.]);
        let b = tf(&[1], &[-3.]);
        let r = tf(&[1, 1, 1, 2], &[1., 2.]);
        let c = Conv {
            has_bias: true,
            epilogue: Epilogue {
                residual: true,
                act: Some(Activation::Relu),
            },
            ..Default::default()
        };
        // acc = [3, -1]; + bias -> [0, -4]; + res -> [1, -2]; relu -> [1, 0]
        let y = eval_op(&Op::Conv(c.clone()), &[&x, &w, &b, &r]).unwrap();
        assert_close(&y, &[1, 1, 1, 2], &[1., 0.], 0.0);
        // missing residual operand, bad bias shape, f32 check
        assert!(eval_op(&Op::Conv(c.clone()), &[&x, &w, &b]).is_err());
        assert!(eval_op(&Op::Conv(c.clone()), &[&x, &w, &tf(&[2], &[0., 0.]), &r]).is_err());
        assert!(eval_op(&Op::Conv(c), &[&x, &w, &b, &ti(&[1, 1, 1, 2], &[0, 0])]).is_err());
    }

    #[test]
    fn conv_depthwise_and_grouped_hand() {
        // depthwise: 3 channels, 1x1x2x2 input per channel, 2x2 kernel per channel
        let x = tf(
            &[1, 3, 2, 2],
            &[1., 2., 3., 4., 1., 1., 1., 1., 0., 1., 0., 1.],
        );
        let w = tf(
            &[3, 1, 2, 2],
            &[1., 0., 0., 1., 1., 2., 3., 4., 5., 6., 7., 8.],
        );
        let c = Conv {
            kernel: [2, 2],
            group: 3,
            ..Default::default()
        };
        let y = eval_op(&Op::Conv(c), &[&x, &w]).unwrap();
        assert_close(&y, &[1, 3, 1, 1], &[5., 10., 14.], 0.0);
        // groups = 2 with 4 in / 4 out channels, 1x1: out[o] = sum over the group's 2 inputs
        let x = tf(&[1, 4, 1, 1], &[1., 2., 3., 4.]);
        let w = tf(&[4, 2, 1, 1], &[1., 1., 1., -1., 1., 1., 2., 0.]);
        let c = Conv {
            group: 2,
            ..Default::default()
        };
        let y = eval_op(&Op::Conv(c), &[&x, &w]).unwrap();
        assert_close(&y, &[1, 4, 1, 1], &[3., -1., 7., 6.], 0.0);
    }

    #[test]
    fn conv_matches_im2col_ragged() {
        let cases = [
            // (n, ci, h, w, co, k, stride, dil, pads, group, bias, residual, act)
            (
                3,
                3,
                7,
                5,
                5,
                [3, 3],
                [2, 2],
                [1, 1],
                [1, 1, 1, 1],
                1,
                true,
                false,
                None,
            ),
            (
                1,
                5,
                9,
                8,
                7,
                [3, 2],
                [1, 2],
                [2, 1],
                [0, 1, 2, 0],
                1,
                false,
                true,
                Some(Activation::Silu),
            ),
            (
                2,
                4,
                6,
                7,
                4,
                [3, 3],
                [2, 1],
                [1, 1],
                [1, 0, 1, 2],
                2,
                true,
                true,
                Some(Activation::Relu),
            ),
            (
                2,
                7,
                11,
                11,
                7,
                [5, 5],
                [2, 2],
                [1, 1],
                [2, 2, 2, 2],
                7,
                true,
                false,
                Some(Activation::Clip { min: 0.0, max: 6.0 }),
            ),
            (
                1,
                6,
                5,
                5,
                9,
                [3, 3],
                [1, 1],
                [2, 2],
                [2, 2, 2, 2],
                3,
                false,
                false,
                Some(Activation::HardSwish),
            ),
            (
                1,
                3,
                13,
                13,
                16,
                [3, 3],
                [2, 2],
                [1, 1],
                [0, 0, 1, 1],
                1,
                true,
                false,
                None,
            ),
        ];
        for (t, &(n, ci, h, wd, co, k, s, d, p, g, hb, hr, act)) in cases.iter().enumerate() {
            let c = Conv {
                kernel: k,
                strides: s,
                dilations: d,
                pads: p,
                group: g,
                has_bias: hb,
                epilogue: Epilogue { residual: hr, act },
                schedule: None,
            };
            let x = tf(&[n, ci, h, wd], &rand_vec(n * ci * h * wd, 10 + t as u64));
            let w = tf(
                &[co, ci / g, k[0], k[1]],
                &rand_vec(co * ci / g * k[0] * k[1], 20 + t as u64),
            );
            let b = tf(&[co], &rand_vec(co, 30 + t as u64));
            let op = Op::Conv(c.clone());
            let mut ins: Vec<&Tensor> = vec![&x, &w];
            if hb {
                ins.push(&b);
            }
            let shape = crate::infer::infer(
                &Op::Conv(Conv {
                    has_bias: false,
                    epilogue: Epilogue::default(),
                    ..c.clone()
                }),
                &[&x.ty(), &w.ty()][..],
            )
            .map(|t| t.shape);
            let shape = shape.unwrap();
            let r = tf(&shape, &rand_vec(shape.iter().product(), 40 + t as u64));
            if hr {
                ins.push(&r);
            }
            let y = eval_op(&op, &ins).unwrap();
            let (ws, want) = conv_im2col(
                &c,
                &x,
                &w,
                hb.then(|| b.as_f32().unwrap()),
                hr.then(|| r.as_f32().unwrap()),
            );
            assert_close(&y, &ws, &want, 1e-5);
        }
    }

    #[test]
    fn squeeze_excite_hand() {
        // N=1, C=2, H=1, W=2; R=1
        let x = tf(&[1, 2, 1, 2], &[1., 3., -2., 0.]);
        // means: [2, -1]; hidden = relu(1*2 + 2*(-1) + 0.5) = 0.5
        let w1 = tf(&[1, 2, 1, 1], &[1., 2.]);
        let b1 = tf(&[1], &[0.5]);
        // gates: clip01(2*0.5 + 0) = 1 ; clip01(-1*0.5 + 0.75) = 0.25 (hardsigmoid a=1,b=0)
        let w2 = tf(&[2, 1, 1, 1], &[2., -1.]);
        let b2 = tf(&[2], &[0., 0.75]);
        let se = SqueezeExcite {
            act: Activation::Relu,
            gate: Activation::HardSigmoid {
                alpha: 1.0,
                beta: 0.0,
            },
        };
        let y = eval_op(&Op::SqueezeExcite(se), &[&x, &w1, &b1, &w2, &b2]).unwrap();
        assert_close(&y, &[1, 2, 1, 2], &[1., 3., -0.5, 0.], 0.0);
        // batch 3 with sigmoid gate: gate = sigmoid(b2) when w2 = 0
        let x3 = tf(&[3, 2, 1, 2], &[1.; 12]);
        let z2 = tf(&[2, 1, 1, 1], &[0., 0.]);
        let b2 = tf(&[2], &[0., 100.]);
        let se = SqueezeExcite {
            act: Activation::Silu,
            gate: Activation::Sigmoid,
        };
        let y = eval_op(&Op::SqueezeExcite(se.clone()), &[&x3, &w1, &b1, &z2, &b2]).unwrap();
        assert_close(
            &y,
            &[3, 2, 1, 2],
            &[0.5, 0.5, 1., 1., 0.5, 0.5, 1., 1., 0.5, 0.5, 1., 1.],
            1e-6,
        );
        assert!(eval_op(
            &Op::SqueezeExcite(se),
            &[&x3, &w1, &b1, &z2, &tf(&[3], &[0.; 3])]
        )
        .is_err());
    }
}
