//! Spatial pooling (max/average, ONNX semantics) and mean reductions (GlobalAveragePool,
//! ReduceMean).

use super::{err, f32_data, f32_tensor, strides};
use crate::error::IrError;
use crate::op::{Pool, PoolKind};
use crate::tensor::Tensor;

/// 2-D max or average pooling over NCHW.
///
/// Max ignores padding (only input cells compete). Average sums the window's input cells in
/// f32 (row-major window order) and divides by the number of input cells, or with
/// `count_include_pad` by the number of window cells inside the padded extent
/// `[-pad_begin, size + pad_end)` (cells a ceil-mode window hangs past that are never
/// counted), as ONNX Runtime and PyTorch do. A window with no input cell (pads as large as
/// the window) is an error rather than an invented value.
pub fn pool(p: &Pool, x: &Tensor, out_shape: Vec<usize>) -> Result<Tensor, IrError> {
    let v = f32_data(x, "pooling input")?;
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (oh, ow) = (out_shape[2], out_shape[3]);
    let [kh, kw] = p.kernel;
    let [sy, sx] = p.strides;
    let [dy, dx] = p.dilations;
    let (pt, pl, pb, pr) = (
        p.pads[0] as i64,
        p.pads[1] as i64,
        p.pads[2] as i64,
        p.pads[3] as i64,
    );
    let (h_i, w_i) = (h as i64, w as i64);
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        let xp = &v[plane * h * w..][..h * w];
        for oy in 0..oh {
            let y0 = (oy * sy) as i64 - pt;
            for ox in 0..ow {
                let x0 = (ox * sx) as i64 - pl;
                let mut max = f32::NEG_INFINITY;
                let mut sum = 0.0f32;
                let mut cells = 0usize;
                let mut padded_rows = 0usize;
                let mut padded_cols = 0usize;
                for ky in 0..kh {
                    let iy = y0 + (ky * dy) as i64;
                    if iy >= -pt && iy < h_i + pb {
                        padded_rows += 1;
                    }
                }
                for kx in 0..kw {
                    let ix = x0 + (kx * dx) as i64;
                    if ix >= -pl && ix < w_i + pr {
                        padded_cols += 1;
                    }
                }
                for ky in 0..kh {
                    let iy = y0 + (ky * dy) as i64;
                    if iy < 0 || iy >= h_i {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = x0 + (kx * dx) as i64;
                        if ix < 0 || ix >= w_i {
                            continue;
                        }
                        let e = xp[iy as usize * w + ix as usize];
                        // NaN propagates through max, as in ONNX Runtime and PyTorch.
                        if e > max || e.is_nan() {
                            max = e;
                        }
                        sum += e;
                        cells += 1;
                    }
                }
                if cells == 0 {
                    return err(format!(
                        "pooling window at output ({oy}, {ox}) covers no input cell (pads {:?} too large for kernel {:?})",
                        p.pads, p.kernel
                    ));
                }
                out.push(match p.kind {
                    PoolKind::Max => max,
                    PoolKind::Avg if p.count_include_pad => {
                        sum / (padded_rows * padded_cols) as f32
                    }
                    PoolKind::Avg => sum / cells as f32,
                });
            }
        }
    }
    f32_tensor(out_shape, out)
}

/// Mean over H and W of an NCHW tensor (sum in f64), keeping them as size 1.
pub fn global_average_pool(x: &Tensor) -> Result<Tensor, IrError> {
    let v = f32_data(x, "GlobalAveragePool input")?;
    let (n, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3]);
    let out = (0..n * c)
        .map(|p| {
            let s: f64 = v[p * hw..][..hw].iter().map(|&e| e as f64).sum();
            (s / hw as f64) as f32
        })
        .collect();
    f32_tensor(vec![n, c, 1, 1], out)
}

/// Mean over `axes` (sum in f64). Element order of the result is the same with or without
/// keepdims; `out_shape` (from inference) decides which.
pub fn reduce_mean(x: &Tensor, axes: &[usize], out_shape: Vec<usize>) -> Result<Tensor, IrError> {
    let v = f32_data(x, "ReduceMean input")?;
    let r = x.shape.len();
    // Strides into the keepdims-shaped result, 0 along reduced axes.
    let kept: Vec<usize> = (0..r)
        .map(|i| if axes.contains(&i) { 1 } else { x.shape[i] })
        .collect();
    let ks = strides(&kept);
    let dst: Vec<usize> = (0..r)
        .map(|i| if axes.contains(&i) { 0 } else { ks[i] })
        .collect();
    let count: usize = axes.iter().map(|&a| x.shape[a]).product();
    let m: usize = out_shape.iter().product();
    let mut sums = vec![0.0f64; m];
    if !v.is_empty() {
        let mut idx = vec![0; r];
        for &e in v {
            let o: usize = idx.iter().zip(&dst).map(|(i, s)| i * s).sum();
            sums[o] += e as f64;
            super::next_index(&mut idx, &x.shape);
        }
    }
    let out = sums.iter().map(|&s| (s / count as f64) as f32).collect();
    f32_tensor(out_shape, out)
}

#[cfg(test)]
mod tests {
    use super::super::eval_op;
    use super::super::testutil::*;
    use crate::op::{Op, Pool, PoolKind};

    fn x5() -> crate::Tensor {
        // 1x1x5x5, values 1..25
        tf(
            &[1, 1, 5, 5],
            &(1..=25).map(|v| v as f32).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn max_pool_hand() {
        let p = Pool {
            kind: PoolKind::Max,
            kernel: [2, 2],
            strides: [2, 2],
            ..Default::default()
        };
        let y = eval_op(&Op::Pool(p.clone()), &[&x5()]).unwrap();
        assert_close(&y, &[1, 1, 2, 2], &[7., 9., 17., 19.], 0.0);
        // ceil mode: 3x3 output, last windows clipped
        let pc = Pool {
            ceil_mode: true,
            ..p.clone()
        };
        let y = eval_op(&Op::Pool(pc), &[&x5()]).unwrap();
        assert_close(
            &y,
            &[1, 1, 3, 3],
            &[7., 9., 10., 17., 19., 20., 22., 24., 25.],
            0.0,
        );
        // 3x3 stride 2 pad 1 on negative values: padding must not win
        let neg = tf(
            &[1, 1, 5, 5],
            &(1..=25).map(|v| -(v as f32)).collect::<Vec<_>>(),
        );
        let pp = Pool {
            kind: PoolKind::Max,
            kernel: [3, 3],
            strides: [2, 2],
            pads: [1, 1, 1, 1],
            ..Default::default()
        };
        let y = eval_op(&Op::Pool(pp), &[&neg]).unwrap();
        assert_close(
            &y,
            &[1, 1, 3, 3],
            &[-1., -2., -4., -6., -7., -9., -16., -17., -19.],
            0.0,
        );
        // dilation 2, kernel 2: taps (r, c), (r, c+2), (r+2, c), (r+2, c+2); output 3x3
        let pd = Pool {
            kind: PoolKind::Max,
            kernel: [2, 2],
            dilations: [2, 2],
            ..Default::default()
        };
        let y = eval_op(&Op::Pool(pd), &[&x5()]).unwrap();
        assert_close(
            &y,
            &[1, 1, 3, 3],
            &[13., 14., 15., 18., 19., 20., 23., 24., 25.],
            0.0,
        );
    }

    #[test]
    fn avg_pool_hand() {
        // 3x3 stride 2 pad 1 on 5x5 (values 1..25)
        let p = Pool {
            kind: PoolKind::Avg,
            kernel: [3, 3],
            strides: [2, 2],
            pads: [1, 1, 1, 1],
            ..Default::default()
        };
        let y = eval_op(&Op::Pool(p.clone()), &[&x5()]).unwrap();
        // corner (0,0): cells 1,2,6,7 -> 16/4 = 4; (0,1): 2,3,4,7,8,9 -> 33/6 = 5.5
        // (1,1): 7,8,9,12,13,14,17,18,19 -> 13
        assert_close(
            &y,
            &[1, 1, 3, 3],
            &[4., 5.5, 7., 11.5, 13., 14.5, 19., 20.5, 22.],
            1e-6,
        );
        let pi = Pool {
            count_include_pad: true,
            ..p.clone()
        };
        let y = eval_op(&Op::Pool(pi), &[&x5()]).unwrap();
        assert_close(
            &y,
            &[1, 1, 3, 3],
            &[
                16. / 9.,
                33. / 9.,
                28. / 9.,
                69. / 9.,
                13.,
                87. / 9.,
                76. / 9.,
                123. / 9.,
                88. / 9.,
            ],
            1e-6,
        );
        // ceil mode, 2x2 stride 2 without pads on 5x5: border windows hang outside
        let pc = Pool {
            kind: PoolKind::Avg,
            kernel: [2, 2],
            strides: [2, 2],
            ceil_mode: true,
            ..Default::default()
        };
        let y = eval_op(&Op::Pool(pc.clone()), &[&x5()]).unwrap();
        // (0,2): cells 5,10 -> 7.5; (2,2): 25
        assert_close(
            &y,
            &[1, 1, 3, 3],
            &[4., 6., 7.5, 14., 16., 17.5, 21.5, 23.5, 25.],
            1e-6,
        );
        // count_include_pad with ceil mode and no pads: the overhang is not padding, not counted
        let pci = Pool {
            count_include_pad: true,
            ..pc
        };
        let y = eval_op(&Op::Pool(pci), &[&x5()]).unwrap();
        assert_close(
            &y,
            &[1, 1, 3, 3],
            &[4., 6., 7.5, 14., 16., 17.5, 21.5, 23.5, 25.],
            1e-6,
        );
        // ceil mode with pad 1 and count_include_pad: the window at 2 rows covers rows 3,4 and pad row 5
        let pcp = Pool {
            kind: PoolKind::Avg,
            kernel: [3, 3],
            strides: [2, 2],
            pads: [0, 0, 1, 1],
            ceil_mode: true,
            count_include_pad: true,
            ..Default::default()
        };
        let y = eval_op(&Op::Pool(pcp), &[&tf(&[1, 1, 4, 4], &[1.; 16])]).unwrap();
        // out = ceil((4+1-3)/2)+1 = 2; window at 2 covers 2,3 + pad row 4 -> 6 input cells / 9 (rows) ; corner (1,1): 4/9
        assert_close(&y, &[1, 1, 2, 2], &[1., 6. / 9., 6. / 9., 4. / 9.], 1e-6);
    }

    #[test]
    fn pool_ragged_channels_and_batch() {
        // batch 3, 5 channels, 3x3 input, 2x2 max stride 1: each plane is offset by its index
        let mut data = Vec::new();
        for p in 0..15 {
            data.extend((0..9).map(|v| (v + 100 * p) as f32));
        }
        let x = tf(&[3, 5, 3, 3], &data);
        let pm = Pool {
            kind: PoolKind::Max,
            kernel: [2, 2],
            ..Default::default()
        };
        let y = eval_op(&Op::Pool(pm), &[&x]).unwrap();
        let want: Vec<f32> = (0..15)
            .flat_map(|p| [4., 5., 7., 8.].map(|v| v + 100. * p as f32))
            .collect();
        assert_close(&y, &[3, 5, 2, 2], &want, 0.0);
        let g = eval_op(&Op::GlobalAveragePool, &[&x]).unwrap();
        let want: Vec<f32> = (0..15).map(|p| 4. + 100. * p as f32).collect();
        assert_close(&g, &[3, 5, 1, 1], &want, 1e-7);
    }

    #[test]
    fn pool_errors() {
        let x = x5();
        // a window entirely in padding
        let p = Pool {
            kind: PoolKind::Max,
            kernel: [1, 1],
            pads: [1, 0, 0, 0],
            ..Default::default()
        };
        assert!(eval_op(&Op::Pool(p), &[&x]).is_err());
        let p = Pool {
            kind: PoolKind::Avg,
            kernel: [2, 2],
            dilations: [2, 2],
            ..Default::default()
        };
        assert!(eval_op(&Op::Pool(p), &[&x]).is_err());
        assert!(eval_op(&Op::GlobalAveragePool, &[&ti(&[1, 1, 1, 1], &[1])]).is_err());
        assert!(eval_op(&Op::GlobalAveragePool, &[&tf(&[1, 1], &[1.])]).is_err());
    }

    #[test]
    fn reduce_mean_hand() {
        let x = tf(
            &[2, 3, 2],
            &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
        );
        let y = eval_op(
            &Op::ReduceMean {
                axes: vec![1],
                keepdims: true,
            },
            &[&x],
        )
        .unwrap();
        assert_close(&y, &[2, 1, 2], &[3., 4., 9., 10.], 1e-7);
        let y = eval_op(
            &Op::ReduceMean {
                axes: vec![0, 2],
                keepdims: false,
            },
            &[&x],
        )
        .unwrap();
        assert_close(&y, &[3], &[4.5, 6.5, 8.5], 1e-7);
        let y = eval_op(
            &Op::ReduceMean {
                axes: vec![0, 1, 2],
                keepdims: false,
            },
            &[&x],
        )
        .unwrap();
        assert_close(&y, &[], &[6.5], 1e-7);
        assert!(eval_op(
            &Op::ReduceMean {
                axes: vec![3],
                keepdims: false
            },
            &[&x]
        )
        .is_err());
        assert!(eval_op(
            &Op::ReduceMean {
                axes: vec![1, 0],
                keepdims: false
            },
            &[&x]
        )
        .is_err());
    }
}
