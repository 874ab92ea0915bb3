//! Op semantics as naive reference kernels: obviously-correct loops, written for clarity,
//! not speed. The reference executor, constant folding and the importer's folding of
//! shape-computing subgraphs all evaluate ops through [`eval_op`].
//!
//! [`eval_op`] first runs shape inference ([`crate::infer::infer`]) on the inputs' types and
//! checks that every input's data length matches its shape, so the kernels can trust shapes;
//! anything malformed (wrong dtype, bad attributes, out-of-range indices, integer division by
//! zero, ...) is an [`IrError`], never a panic.
//!
//! Numerics (the contract backends are compared against):
//! - conv, Gemm and MatMul dot products accumulate in `f32`, in the order of the reduction
//!   index (conv: input channel, then kernel row, then kernel column; Gemm/MatMul: `k`
//!   ascending), starting from `0.0`; then the bias (or `beta * C`) is added, then the
//!   residual operand, then the activation is applied;
//! - means over many elements (GlobalAveragePool, ReduceMean, the squeeze of SqueezeExcite)
//!   and the Softmax denominator accumulate in `f64` (clearly more accurate for long sums)
//!   and round to `f32` once;
//! - average pooling sums its (small) window in `f32` in row-major window order;
//! - LRN sums the squares of its window and raises the scale to `beta` in `f64`, rounding
//!   the quotient to `f32` once;
//! - quantized ops are exact: integer accumulation in `i32`, and the rounding, saturation and
//!   requantization of [`crate::quant`].
//!
//! Kernels are split per op family: [`shape`] (data movement, Cast), [`elementwise`]
//! (Binary, Act, BatchNorm, ChannelAffine, Softmax, LRN), [`conv`] (Conv, SqueezeExcite),
//! [`pool`] (Pool, GlobalAveragePool, ReduceMean), [`linalg`] (Gemm, MatMul), [`quant`]
//! (QuantizeLinear, DequantizeLinear, QConv).

pub mod conv;
pub mod elementwise;
pub mod linalg;
pub mod pool;
pub mod quant;
pub mod shape;

use crate::error::IrError;
use crate::op::Op;
use crate::tensor::{checked_numel, Tensor, TensorData, TensorType};

/// Length of a normalized slice `starts..ends` by `step` on a dimension of size `dim`.
/// `start`/`end` must already be clamped by the importer (see `Op::Slice`).
pub fn slice_len(dim: usize, start: i64, end: i64, step: i64) -> Result<usize, IrError> {
    if step == 0 {
        return Err(IrError::op("Slice step must be non-zero"));
    }
    let dim = dim as i64;
    let ok = if step > 0 {
        (0..=dim).contains(&start) && (0..=dim).contains(&end)
    } else {
        (-1..dim).contains(&start) && (-1..dim).contains(&end)
    };
    if !ok {
        return Err(IrError::op(format!(
            "Slice bounds {start}..{end} (step {step}) not normalized for dimension {dim}"
        )));
    }
    let n = if step > 0 {
        (end - start + step - 1) / step
    } else {
        (start - end + (-step) - 1) / (-step)
    };
    Ok(n.max(0) as usize)
}

/// Evaluates `op` on concrete inputs (ordered as the node's inputs). Input nodes cannot be
/// evaluated (the executor binds them). Errors carry no node name; callers add it with
/// [`IrError::at_node`].
pub fn eval_op(op: &Op, inputs: &[&Tensor]) -> Result<Tensor, IrError> {
    if let Op::Input { index } = op {
        return err(format!(
            "graph input {index} cannot be evaluated; the executor binds it"
        ));
    }
    for (k, t) in inputs.iter().enumerate() {
        let n = checked_numel(&t.shape)?;
        if n != t.numel() {
            return err(format!(
                "input {k} has {} elements for shape {:?}",
                t.numel(),
                t.shape
            ));
        }
    }
    let tys: Vec<TensorType> = inputs.iter().map(|t| t.ty()).collect();
    let ty_refs: Vec<&TensorType> = tys.iter().collect();
    let out = crate::infer::infer(op, &ty_refs)?;
    let x = inputs.first().copied();
    let first = || x.ok_or_else(|| IrError::op("missing input"));
    match op {
        Op::Input { .. } => err("Input nodes cannot be evaluated"),
        Op::Constant(t) => {
            if checked_numel(&t.shape)? != t.numel() {
                return err(format!(
                    "constant has {} elements for shape {:?}",
                    t.numel(),
                    t.shape
                ));
            }
            Ok(t.clone())
        }
        Op::Identity
        | Op::Dropout
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. } => Ok(shape::reshape(first()?, out.shape)),
        Op::Transpose { perm } => Ok(shape::transpose(first()?, perm, out.shape)),
        Op::Concat { axis } => shape::concat(inputs, *axis, out.shape),
        Op::Slice(s) => shape::slice(first()?, s, out.shape),
        Op::Gather { axis } => shape::gather(inputs[0], inputs[1], *axis, out.shape),
        Op::Cast { to } => shape::cast(first()?, *to),
        Op::Pad { pads, value } => shape::pad(first()?, pads, *value, out.shape),
        Op::Binary(b) => elementwise::binary(*b, inputs[0], inputs[1], out.shape),
        Op::Act(a) => elementwise::act(*a, first()?),
        Op::BatchNorm { epsilon } => elementwise::batch_norm(inputs, *epsilon),
        Op::ChannelAffine => elementwise::channel_affine(inputs),
        Op::Softmax { axis } => elementwise::softmax(first()?, *axis),
        Op::Lrn(l) => elementwise::lrn(l, first()?),
        Op::Quantize(q) => quant::quantize(q, first()?),
        Op::Dequantize(q) => quant::dequantize(q, first()?),
        Op::QConv(q) => quant::qconv(q, inputs, out.shape),
        Op::QLut(l) => quant::lut(l, first()?),
        Op::QGlobalAveragePool(m) => quant::qmean(m, first()?),
        Op::QBinary(q) => quant::qbinary(q, inputs),
        Op::Conv(c) => conv::conv(c, inputs, out.shape),
        Op::SqueezeExcite(se) => conv::squeeze_excite(se, inputs),
        Op::Gemm(g) => linalg::gemm(g, inputs, out.shape),
        Op::MatMul => linalg::matmul(inputs[0], inputs[1], out.shape),
        Op::GlobalAveragePool => pool::global_average_pool(first()?),
        Op::ReduceMean { axes, .. } => pool::reduce_mean(first()?, axes, out.shape),
        Op::Pool(p) => pool::pool(p, first()?, out.shape),
    }
}

/// `Err(IrError::Op(msg))`.
pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, IrError> {
    Err(IrError::op(msg))
}

/// The f32 elements of `t`, or an error naming `what` when `t` is not f32.
pub(crate) fn f32_data<'a>(t: &'a Tensor, what: &str) -> Result<&'a [f32], IrError> {
    t.as_f32()
        .ok_or_else(|| IrError::op(format!("{what} must be f32, got {}", t.ty())))
}

/// Builds an f32 tensor whose length the caller computed from `shape`.
pub(crate) fn f32_tensor(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor, IrError> {
    Tensor::from_f32(shape, data)
}

/// Row-major strides of `shape` (in elements).
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Strides of `shape` aligned to an output of rank `rank` for numpy broadcasting: leading
/// missing axes and size-1 axes get stride 0.
pub(crate) fn broadcast_strides(shape: &[usize], rank: usize) -> Vec<usize> {
    let s = strides(shape);
    let lead = rank - shape.len();
    (0..rank)
        .map(|i| {
            if i < lead || shape[i - lead] == 1 {
                0
            } else {
                s[i - lead]
            }
        })
        .collect()
}

/// Advances the row-major multi-index `idx` within `shape`; false once it wraps around.
pub(crate) fn next_index(idx: &mut [usize], shape: &[usize]) -> bool {
    for i in (0..shape.len()).rev() {
        idx[i] += 1;
        if idx[i] < shape[i] {
            return true;
        }
        idx[i] = 0;
    }
    false
}

/// The tensor of the given shape whose element `i` is element `src[i]` of `t` (same dtype).
/// `src` holds indices the caller has checked to be in range.
pub(crate) fn take_elems(t: &Tensor, shape: Vec<usize>, src: &[usize]) -> Tensor {
    let data = match &t.data {
        TensorData::F32(v) => TensorData::F32(src.iter().map(|&i| v[i]).collect()),
        TensorData::I64(v) => TensorData::I64(src.iter().map(|&i| v[i]).collect()),
        TensorData::U8(v) => TensorData::U8(src.iter().map(|&i| v[i]).collect()),
        TensorData::I8(v) => TensorData::I8(src.iter().map(|&i| v[i]).collect()),
        TensorData::I32(v) => TensorData::I32(src.iter().map(|&i| v[i]).collect()),
    };
    Tensor { shape, data }
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::tensor::Tensor;

    /// An f32 tensor (panics on a length mismatch: test inputs only).
    pub fn tf(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::from_f32(shape.to_vec(), data.to_vec()).expect("test tensor")
    }
    /// An i64 tensor (test inputs only).
    pub fn ti(shape: &[usize], data: &[i64]) -> Tensor {
        Tensor::from_i64(shape.to_vec(), data.to_vec()).expect("test tensor")
    }
    /// Asserts `max|y - y_ref| <= tol * max(max|y_ref|, 1)` elementwise with equal shapes.
    pub fn assert_close(got: &Tensor, want_shape: &[usize], want: &[f32], tol: f32) {
        assert_eq!(got.shape, want_shape, "shape");
        let g = got.as_f32().expect("f32 result");
        assert_eq!(g.len(), want.len(), "length");
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in g.iter().zip(want).enumerate() {
            let ok = (a - b).abs() <= tol * scale || (a.is_nan() && b.is_nan()) || a == b;
            assert!(
                ok,
                "element {i}: got {a}, want {b} (tol {tol} * {scale})\n got {g:?}\nwant {want:?}"
            );
        }
    }
    /// Deterministic pseudo-random values in [-1, 1) (xorshift), for larger shapes.
    pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn input_nodes_are_refused() {
        assert!(eval_op(&Op::Input { index: 0 }, &[]).is_err());
    }

    #[test]
    fn constant_and_identity() {
        let t = tf(&[2], &[1.0, 2.0]);
        assert_eq!(eval_op(&Op::Constant(t.clone()), &[]).unwrap(), t);
        assert_eq!(eval_op(&Op::Identity, &[&t]).unwrap(), t);
        assert_eq!(eval_op(&Op::Dropout, &[&t]).unwrap(), t);
        // wrong arity is an error, not a panic
        assert!(eval_op(&Op::Identity, &[]).is_err());
        assert!(eval_op(&Op::Constant(t.clone()), &[&t]).is_err());
    }

    #[test]
    fn malformed_tensors_are_refused() {
        let bad = Tensor {
            shape: vec![3],
            data: TensorData::F32(vec![1.0]),
        };
        assert!(eval_op(&Op::Identity, &[&bad]).is_err());
        assert!(eval_op(&Op::Constant(bad), &[]).is_err());
    }

    #[test]
    fn slice_len_cases() {
        assert_eq!(slice_len(5, 0, 5, 2).unwrap(), 3);
        assert_eq!(slice_len(5, 4, -1, -1).unwrap(), 5);
        assert_eq!(slice_len(5, 4, 0, -2).unwrap(), 2);
        assert_eq!(slice_len(5, 3, 1, 1).unwrap(), 0);
        assert!(slice_len(5, 0, 6, 1).is_err());
        assert!(slice_len(5, 0, 5, 0).is_err());
    }
}
