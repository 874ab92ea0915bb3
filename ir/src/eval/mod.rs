//! Op semantics as naive reference kernels: obviously-correct loops, written for clarity,
//! not speed. The reference executor, constant folding and the importer's folding of
//! shape-computing subgraphs all evaluate ops through [`eval_op`].

use crate::error::IrError;
use crate::op::Op;
use crate::tensor::Tensor;

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
/// evaluated (the executor binds them).
pub fn eval_op(op: &Op, inputs: &[&Tensor]) -> Result<Tensor, IrError> {
    let _ = (op, inputs);
    Err(IrError::op("eval_op: being written"))
}
