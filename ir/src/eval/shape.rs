//! Data-movement kernels (dtype-generic: f32 and i64): reshape-like ops, Transpose, Concat,
//! Slice, Gather, constant Pad, and Cast.

use super::{err, next_index, strides, take_elems};
use crate::error::IrError;
use crate::op::Slice;
use crate::tensor::{DType, Tensor, TensorData};

/// Identity, Dropout, Flatten, Reshape, Squeeze, Unsqueeze: same row-major data, new shape.
pub fn reshape(x: &Tensor, shape: Vec<usize>) -> Tensor {
    Tensor {
        shape,
        data: x.data.clone(),
    }
}

/// `out[j] = x[j permuted back]`: output axis `i` is input axis `perm[i]`.
pub fn transpose(x: &Tensor, perm: &[usize], out_shape: Vec<usize>) -> Tensor {
    let in_strides = strides(&x.shape);
    let src_strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let n = x.numel();
    let mut src = Vec::with_capacity(n);
    if n > 0 {
        let mut idx = vec![0; out_shape.len()];
        loop {
            src.push(idx.iter().zip(&src_strides).map(|(i, s)| i * s).sum());
            if !next_index(&mut idx, &out_shape) {
                break;
            }
        }
    }
    take_elems(x, out_shape, &src)
}

/// Concatenation along `axis` (shapes already checked by inference).
pub fn concat(xs: &[&Tensor], axis: usize, out_shape: Vec<usize>) -> Result<Tensor, IrError> {
    let outer: usize = out_shape[..axis].iter().product();
    let inner: usize = out_shape[axis + 1..].iter().product();
    let n: usize = out_shape.iter().product();
    // Element `i` of the output comes from input `k`, element `src` of it.
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(n);
    for o in 0..outer {
        for (k, x) in xs.iter().enumerate() {
            let chunk = x.shape[axis] * inner;
            picks.extend((0..chunk).map(|j| (k, o * chunk + j)));
        }
    }
    // Every operand must hold the first one's variant.
    macro_rules! pick {
        ($var:ident) => {{
            let vs: Option<Vec<_>> = xs
                .iter()
                .map(|x| match &x.data {
                    TensorData::$var(v) => Some(v.as_slice()),
                    _ => None,
                })
                .collect();
            let vs = vs.ok_or_else(|| IrError::op("Concat operands have different dtypes"))?;
            TensorData::$var(picks.iter().map(|&(k, j)| vs[k][j]).collect())
        }};
    }
    let data = match &xs[0].data {
        TensorData::F32(_) => pick!(F32),
        TensorData::I64(_) => pick!(I64),
        TensorData::U8(_) => pick!(U8),
        TensorData::I8(_) => pick!(I8),
        TensorData::I32(_) => pick!(I32),
    };
    Ok(Tensor {
        shape: out_shape,
        data,
    })
}

/// Strided slice with normalized bounds (see [`crate::op::Slice`] and [`super::slice_len`]).
pub fn slice(x: &Tensor, s: &Slice, out_shape: Vec<usize>) -> Result<Tensor, IrError> {
    let r = x.shape.len();
    // Per axis: first source index and step (untouched axes: 0 and 1).
    let mut start = vec![0i64; r];
    let mut step = vec![1i64; r];
    let mut seen = vec![false; r];
    for (k, &a) in s.axes.iter().enumerate() {
        if std::mem::replace(&mut seen[a], true) {
            return err(format!("Slice axis {a} given twice"));
        }
        start[a] = s.starts[k];
        step[a] = s.steps[k];
    }
    let in_strides = strides(&x.shape);
    let n: usize = out_shape.iter().product();
    let mut src = Vec::with_capacity(n);
    if n > 0 {
        let mut idx = vec![0; r];
        loop {
            let mut off = 0usize;
            for a in 0..r {
                let i = start[a] + idx[a] as i64 * step[a];
                // Guaranteed by slice_len; checked anyway so that no input can panic.
                if i < 0 || i as usize >= x.shape[a] {
                    return err(format!("Slice index {i} out of range on axis {a}"));
                }
                off += i as usize * in_strides[a];
            }
            src.push(off);
            if !next_index(&mut idx, &out_shape) {
                break;
            }
        }
    }
    Ok(take_elems(x, out_shape, &src))
}

/// numpy `take` along `axis` with i64 indices; a negative index wraps once (`-1` is the last),
/// anything still out of range is an error.
pub fn gather(
    x: &Tensor,
    indices: &Tensor,
    axis: usize,
    out_shape: Vec<usize>,
) -> Result<Tensor, IrError> {
    let idx = indices
        .as_i64()
        .ok_or_else(|| IrError::op("Gather indices must be i64"))?;
    let dim = x.shape[axis];
    let outer: usize = x.shape[..axis].iter().product();
    let inner: usize = x.shape[axis + 1..].iter().product();
    let mut wrapped = Vec::with_capacity(idx.len());
    for &i in idx {
        let j = if i < 0 { i + dim as i64 } else { i };
        if j < 0 || j >= dim as i64 {
            return err(format!(
                "Gather index {i} out of range for axis {axis} of size {dim}"
            ));
        }
        wrapped.push(j as usize);
    }
    let mut src = Vec::with_capacity(outer * wrapped.len() * inner);
    for o in 0..outer {
        for &j in &wrapped {
            let base = (o * dim + j) * inner;
            src.extend(base..base + inner);
        }
    }
    Ok(take_elems(x, out_shape, &src))
}

/// Converts between element types. f32 -> integer truncates toward zero; NaN, infinities and
/// values outside the target's range are errors, as are integers outside a narrower integer
/// type's range. Integer -> f32 rounds to the nearest f32.
pub fn cast(x: &Tensor, to: DType) -> Result<Tensor, IrError> {
    if x.dtype() == to {
        return Ok(x.clone());
    }
    // Every integer value, widened to i64 (f32 truncated and range-checked first).
    let ints: Vec<i64> = match &x.data {
        TensorData::F32(v) => {
            if to == DType::F32 {
                unreachable!("same dtype returned above");
            }
            // 2^63 is exactly representable; the valid truncated range is [-2^63, 2^63).
            const LIM: f32 = 9_223_372_036_854_775_808.0;
            let mut out = Vec::with_capacity(v.len());
            for &f in v {
                let t = f.trunc();
                if !f.is_finite() || !(-LIM..LIM).contains(&t) {
                    return err(format!("cannot cast {f} to {to}"));
                }
                out.push(t as i64);
            }
            out
        }
        _ => x.to_i64_vec().expect("integer tensor"),
    };
    let out_of_range = |lo: i64, hi: i64| -> Result<(), IrError> {
        match ints.iter().find(|&&i| !(lo..=hi).contains(&i)) {
            Some(i) => err(format!("cannot cast {i} to {to}")),
            None => Ok(()),
        }
    };
    let data = match to {
        DType::F32 => TensorData::F32(ints.iter().map(|&i| i as f32).collect()),
        DType::I64 => TensorData::I64(ints),
        DType::I32 => {
            out_of_range(i32::MIN as i64, i32::MAX as i64)?;
            TensorData::I32(ints.iter().map(|&i| i as i32).collect())
        }
        DType::U8 => {
            out_of_range(0, 255)?;
            TensorData::U8(ints.iter().map(|&i| i as u8).collect())
        }
        DType::I8 => {
            out_of_range(-128, 127)?;
            TensorData::I8(ints.iter().map(|&i| i as i8).collect())
        }
    };
    Ok(Tensor {
        shape: x.shape.clone(),
        data,
    })
}

/// Constant padding: `pads[i]` cells before and `pads[i + rank]` after axis `i`, filled with
/// `value`. For i64 tensors `value` must be an integer.
pub fn pad(
    x: &Tensor,
    pads: &[usize],
    value: f32,
    out_shape: Vec<usize>,
) -> Result<Tensor, IrError> {
    let r = x.shape.len();
    let in_strides = strides(&x.shape);
    let n: usize = out_shape.iter().product();
    // Source offset of each output element, or None for a padding cell.
    let mut src: Vec<Option<usize>> = Vec::with_capacity(n);
    if n > 0 {
        let mut idx = vec![0; r];
        loop {
            let mut off = Some(0usize);
            for a in 0..r {
                let i = idx[a] as i64 - pads[a] as i64;
                off = match off {
                    Some(o) if i >= 0 && (i as usize) < x.shape[a] => {
                        Some(o + i as usize * in_strides[a])
                    }
                    _ => None,
                };
            }
            src.push(off);
            if !next_index(&mut idx, &out_shape) {
                break;
            }
        }
    }
    if x.dtype() != DType::F32 && (value.fract() != 0.0 || !value.is_finite()) {
        return err(format!(
            "pad value {value} is not an integer for a {} tensor",
            x.dtype()
        ));
    }
    macro_rules! fill {
        ($var:ident, $v:expr, $t:ty) => {{
            let fill = value as $t;
            if fill as f32 != value {
                return err(format!(
                    "pad value {value} is out of range for {}",
                    x.dtype()
                ));
            }
            TensorData::$var(src.iter().map(|s| s.map_or(fill, |i| $v[i])).collect())
        }};
    }
    let data = match &x.data {
        TensorData::F32(v) => {
            TensorData::F32(src.iter().map(|s| s.map_or(value, |i| v[i])).collect())
        }
        TensorData::I64(v) => fill!(I64, v, i64),
        TensorData::U8(v) => fill!(U8, v, u8),
        TensorData::I8(v) => fill!(I8, v, i8),
        TensorData::I32(v) => fill!(I32, v, i32),
    };
    Ok(Tensor {
        shape: out_shape,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::super::eval_op;
    use super::super::testutil::*;
    use crate::op::{Op, Slice};
    use crate::tensor::DType;

    #[test]
    fn reshape_family() {
        let x = ti(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let r = eval_op(&Op::Reshape { shape: vec![3, 2] }, &[&x]).unwrap();
        assert_eq!(r, ti(&[3, 2], &[1, 2, 3, 4, 5, 6]));
        assert!(eval_op(&Op::Reshape { shape: vec![4] }, &[&x]).is_err());
        let x4 = tf(&[2, 1, 3, 1], &[1., 2., 3., 4., 5., 6.]);
        let f = eval_op(&Op::Flatten { axis: 1 }, &[&x4]).unwrap();
        assert_eq!(f.shape, vec![2, 3]);
        let f0 = eval_op(&Op::Flatten { axis: 0 }, &[&x4]).unwrap();
        assert_eq!(f0.shape, vec![1, 6]);
        let s = eval_op(&Op::Squeeze { axes: vec![1, 3] }, &[&x4]).unwrap();
        assert_eq!(s, tf(&[2, 3], &[1., 2., 3., 4., 5., 6.]));
        assert!(eval_op(&Op::Squeeze { axes: vec![0] }, &[&x4]).is_err());
        let u = eval_op(&Op::Unsqueeze { axes: vec![0, 3] }, &[&s]).unwrap();
        assert_eq!(u.shape, vec![1, 2, 3, 1]);
        assert_eq!(u.as_f32().unwrap(), &[1., 2., 3., 4., 5., 6.]);
        // scalar <-> [1]
        let sc = ti(&[], &[7]);
        let u = eval_op(&Op::Unsqueeze { axes: vec![0] }, &[&sc]).unwrap();
        assert_eq!(u, ti(&[1], &[7]));
    }

    #[test]
    fn transpose_hand() {
        // [2,3] -> [3,2]
        let x = ti(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let t = eval_op(&Op::Transpose { perm: vec![1, 0] }, &[&x]).unwrap();
        assert_eq!(t, ti(&[3, 2], &[1, 4, 2, 5, 3, 6]));
        // [2,1,3] perm [2,0,1] -> [3,2,1]; out[k,i,0] = x[i,0,k]
        let x = tf(&[2, 1, 3], &[1., 2., 3., 4., 5., 6.]);
        let t = eval_op(
            &Op::Transpose {
                perm: vec![2, 0, 1],
            },
            &[&x],
        )
        .unwrap();
        assert_eq!(t, tf(&[3, 2, 1], &[1., 4., 2., 5., 3., 6.]));
        assert!(eval_op(
            &Op::Transpose {
                perm: vec![0, 0, 1]
            },
            &[&x]
        )
        .is_err());
    }

    #[test]
    fn concat_hand() {
        let a = ti(&[2, 1], &[1, 2]);
        let b = ti(&[2, 2], &[3, 4, 5, 6]);
        let c = eval_op(&Op::Concat { axis: 1 }, &[&a, &b]).unwrap();
        assert_eq!(c, ti(&[2, 3], &[1, 3, 4, 2, 5, 6]));
        let d = eval_op(&Op::Concat { axis: 0 }, &[&b, &b]).unwrap();
        assert_eq!(d, ti(&[4, 2], &[3, 4, 5, 6, 3, 4, 5, 6]));
        // shape-computing style: concat of 1-D i64 vectors
        let s = eval_op(
            &Op::Concat { axis: 0 },
            &[&ti(&[1], &[1]), &ti(&[1], &[-1]), &ti(&[0], &[])],
        )
        .unwrap();
        assert_eq!(s, ti(&[2], &[1, -1]));
        // dtype mismatch
        assert!(eval_op(
            &Op::Concat { axis: 0 },
            &[&ti(&[1], &[1]), &tf(&[1], &[1.])]
        )
        .is_err());
    }

    #[test]
    fn slice_hand() {
        let x = ti(&[2, 5], &[0, 1, 2, 3, 4, 10, 11, 12, 13, 14]);
        let op = |axes: Vec<usize>, starts: Vec<i64>, ends: Vec<i64>, steps: Vec<i64>| {
            Op::Slice(Slice {
                axes,
                starts,
                ends,
                steps,
            })
        };
        let y = eval_op(&op(vec![1], vec![1], vec![5], vec![2]), &[&x]).unwrap();
        assert_eq!(y, ti(&[2, 2], &[1, 3, 11, 13]));
        // reverse along axis 1, rows 1..2
        let y = eval_op(&op(vec![0, 1], vec![1, 4], vec![2, -1], vec![1, -1]), &[&x]).unwrap();
        assert_eq!(y, ti(&[1, 5], &[14, 13, 12, 11, 10]));
        // step -2 from 4 down to (excluding) 0
        let y = eval_op(&op(vec![1], vec![4], vec![0], vec![-2]), &[&x]).unwrap();
        assert_eq!(y, ti(&[2, 2], &[4, 2, 14, 12]));
        // empty
        let y = eval_op(&op(vec![1], vec![3], vec![3], vec![1]), &[&x]).unwrap();
        assert_eq!(y.shape, vec![2, 0]);
        // errors: unnormalized, zero step, duplicate axis, axis out of range
        assert!(eval_op(&op(vec![1], vec![0], vec![6], vec![1]), &[&x]).is_err());
        assert!(eval_op(&op(vec![1], vec![0], vec![5], vec![0]), &[&x]).is_err());
        assert!(eval_op(&op(vec![1, 1], vec![0, 0], vec![5, 5], vec![1, 1]), &[&x]).is_err());
        assert!(eval_op(&op(vec![2], vec![0], vec![1], vec![1]), &[&x]).is_err());
    }

    #[test]
    fn gather_hand() {
        let x = tf(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
        let i = ti(&[2], &[2, -3]);
        let y = eval_op(&Op::Gather { axis: 0 }, &[&x, &i]).unwrap();
        assert_eq!(y, tf(&[2, 2], &[5., 6., 1., 2.]));
        let i = ti(&[], &[-1]);
        let y = eval_op(&Op::Gather { axis: 1 }, &[&x, &i]).unwrap();
        assert_eq!(y, tf(&[3], &[2., 4., 6.]));
        // shape-computing: take dim 0 of a shape vector
        let shp = ti(&[4], &[1, 32, 7, 7]);
        let y = eval_op(&Op::Gather { axis: 0 }, &[&shp, &ti(&[], &[0])]).unwrap();
        assert_eq!(y, ti(&[], &[1]));
        // 2-D indices
        let y = eval_op(&Op::Gather { axis: 1 }, &[&x, &ti(&[2, 2], &[0, 1, 1, 0])]).unwrap();
        assert_eq!(
            y,
            tf(
                &[3, 2, 2],
                &[1., 2., 2., 1., 3., 4., 4., 3., 5., 6., 6., 5.]
            )
        );
        // out of range (wraps once only), f32 indices
        assert!(eval_op(&Op::Gather { axis: 0 }, &[&x, &ti(&[1], &[3])]).is_err());
        assert!(eval_op(&Op::Gather { axis: 0 }, &[&x, &ti(&[1], &[-4])]).is_err());
        assert!(eval_op(&Op::Gather { axis: 0 }, &[&x, &tf(&[1], &[0.])]).is_err());
        assert!(eval_op(&Op::Gather { axis: 2 }, &[&x, &ti(&[1], &[0])]).is_err());
    }

    #[test]
    fn cast_hand() {
        let x = tf(&[5], &[1.9, -1.9, 0.0, -0.5, 1e10]);
        let y = eval_op(&Op::Cast { to: DType::I64 }, &[&x]).unwrap();
        assert_eq!(y, ti(&[5], &[1, -1, 0, 0, 10_000_000_000]));
        let y = eval_op(&Op::Cast { to: DType::F32 }, &[&ti(&[2], &[-3, 1 << 40])]).unwrap();
        assert_eq!(y, tf(&[2], &[-3.0, (1u64 << 40) as f32]));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e19, -1e19] {
            assert!(eval_op(&Op::Cast { to: DType::I64 }, &[&tf(&[1], &[bad])]).is_err());
        }
        let same = ti(&[1], &[4]);
        assert_eq!(
            eval_op(&Op::Cast { to: DType::I64 }, &[&same]).unwrap(),
            same
        );
    }

    #[test]
    fn pad_hand() {
        let x = tf(&[1, 2], &[1., 2.]);
        let y = eval_op(
            &Op::Pad {
                pads: vec![1, 0, 0, 2],
                value: -1.0,
            },
            &[&x],
        )
        .unwrap();
        assert_eq!(y, tf(&[2, 4], &[-1., -1., -1., -1., 1., 2., -1., -1.]));
        let xi = ti(&[2], &[5, 6]);
        let y = eval_op(
            &Op::Pad {
                pads: vec![1, 1],
                value: 0.0,
            },
            &[&xi],
        )
        .unwrap();
        assert_eq!(y, ti(&[4], &[0, 5, 6, 0]));
        assert!(eval_op(
            &Op::Pad {
                pads: vec![1, 1],
                value: 0.5
            },
            &[&xi]
        )
        .is_err());
        assert!(eval_op(
            &Op::Pad {
                pads: vec![1],
                value: 0.0
            },
            &[&xi]
        )
        .is_err());
    }

    #[test]
    fn transpose_random_nchw_to_nhwc() {
        let (n, c, h, w) = (3, 5, 4, 7);
        let v = rand_vec(n * c * h * w, 9);
        let x = tf(&[n, c, h, w], &v);
        let y = eval_op(
            &Op::Transpose {
                perm: vec![0, 2, 3, 1],
            },
            &[&x],
        )
        .unwrap();
        assert_eq!(y.shape, vec![n, h, w, c]);
        let yv = y.as_f32().unwrap();
        for b in 0..n {
            for ch in 0..c {
                for r in 0..h {
                    for q in 0..w {
                        assert_eq!(
                            yv[((b * h + r) * w + q) * c + ch],
                            v[((b * c + ch) * h + r) * w + q]
                        );
                    }
                }
            }
        }
    }
}
