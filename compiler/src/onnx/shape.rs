//! Shape and data-movement ops: `Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`, `Transpose`,
//! `Concat`, `Slice`, `Gather`, `Cast`, `Pad`, `Shape`, `ConstantOfShape`.
//!
//! `Shape` and `ConstantOfShape` always become constants (every type is static); the others
//! map to IR ops and are folded by [`Ctx::emit`] inside shape computations. Attributes the
//! IR needs statically (Reshape shape, Slice starts/ends/axes/steps, Pad pads, Squeeze and
//! Unsqueeze axes) must be constants once shape computations are folded.
//!
//! Specs and opset notes:
//! - <https://onnx.ai/onnx/operators/onnx__Reshape.html>: `shape` attribute before opset 5,
//!   input from 5; `allowzero` from 14 (0 copies the input dim unless allowzero).
//! - <https://onnx.ai/onnx/operators/onnx__Flatten.html>: negative `axis` from 11.
//! - <https://onnx.ai/onnx/operators/onnx__Squeeze.html>,
//!   <https://onnx.ai/onnx/operators/onnx__Unsqueeze.html>: `axes` attribute before 13,
//!   input from 13.
//! - <https://onnx.ai/onnx/operators/onnx__Transpose.html>: default perm reverses the axes.
//! - <https://onnx.ai/onnx/operators/onnx__Concat.html>: negative axis from 11.
//! - <https://onnx.ai/onnx/operators/onnx__Slice.html>: attributes before 10, inputs (with
//!   `steps`) from 10; bounds are clamped like the spec, INT64_MAX/MIN included.
//! - <https://onnx.ai/onnx/operators/onnx__Gather.html>.
//! - <https://onnx.ai/onnx/operators/onnx__Cast.html>: to float, int64 or int32 (held as
//!   i64); `saturate` (19) only concerns float8 and is ignored.
//! - <https://onnx.ai/onnx/operators/onnx__Pad.html>: `paddings` attribute in opset 1,
//!   `pads`/`value` attributes in 2-10, inputs from 11, `axes` input from 18; constant mode
//!   only; negative pads are refused.
//! - <https://onnx.ai/onnx/operators/onnx__Shape.html>: `start`/`end` from 15.
//! - <https://onnx.ai/onnx/operators/onnx__ConstantOfShape.html>.

use super::attrs::OnnxNode;
use super::data::{dims_of, tensor_from_proto};
use super::{norm_axes, norm_axes_in_order, norm_axis, Ctx, OpResult, FOLD_LIMIT};
use mnc_ir::tensor::TensorData;
use mnc_ir::{DType, NodeId, Op, Slice, Tensor};
use onnx_protobuf::tensor_proto::DataType;
use protobuf::Enum;

/// Static integer list read from an attribute (old opsets) or a constant input (new ones).
fn ints_attr_or_input(
    cx: &Ctx,
    n: &OnnxNode,
    attr: &str,
    input: usize,
    from_opset: i64,
) -> OpResult<Option<Vec<i64>>> {
    if n.opset < from_opset {
        n.ints(attr)
    } else {
        cx.opt_static_ints(n, input, attr)
    }
}

/// Resolves an ONNX Reshape target (0 = copy, -1 = infer) against `input`.
fn resolve_reshape(input: &[usize], target: &[i64], allowzero: bool) -> OpResult<Vec<usize>> {
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(1);
            }
            -1 => return Err(format!("shape {target:?} has more than one -1")),
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| {
                format!("shape {target:?}: 0 at position {i} has no input dimension to copy")
            })?),
            d if d < 0 => return Err(format!("shape {target:?} has a negative dimension {d}")),
            d => out.push(usize::try_from(d).map_err(|_| format!("dimension {d} too large"))?),
        }
    }
    let total = mnc_ir::tensor::checked_numel(input).map_err(|e| e.to_string())?;
    if let Some(i) = infer_at {
        let rest = mnc_ir::tensor::checked_numel(&out).map_err(|e| e.to_string())?;
        if rest == 0 || total % rest != 0 {
            return Err(format!(
                "cannot infer the -1 in shape {target:?} for an input of shape {input:?}"
            ));
        }
        out[i] = total / rest;
    }
    if mnc_ir::tensor::checked_numel(&out).map_err(|e| e.to_string())? != total {
        return Err(format!("cannot reshape {input:?} to {target:?}"));
    }
    Ok(out)
}

/// ONNX `Reshape`.
pub(crate) fn reshape(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    let x = cx.input(n, 0)?;
    let target = if n.opset < 5 {
        n.only_attrs(&["shape", "consumed_inputs"])?;
        n.required_ints("shape")?
    } else {
        n.only_attrs(&["allowzero"])?;
        cx.static_ints(n, 1, "shape")?
    };
    let allowzero = n.flag("allowzero", false)?;
    let input = cx.ty(x).shape.clone();
    let shape = match resolve_reshape(&input, &target, allowzero) {
        Ok(s) => s,
        // A batch-1 export re-specialized to batch N still names batch 1 in its reshapes.
        Err(e) => match cx.batch_override {
            Some((orig, new))
                if target.first() == Some(&(orig as i64)) && input.first() == Some(&new) =>
            {
                let mut t = target.clone();
                t[0] = new as i64;
                resolve_reshape(&input, &t, allowzero).map_err(|_| e)?
            }
            _ => return Err(e),
        },
    };
    cx.emit(n, Op::Reshape { shape }, &[x])
}

/// ONNX `Flatten`.
pub(crate) fn flatten(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["axis"])?;
    let x = cx.input(n, 0)?;
    let rank = cx.ty(x).rank() as i64;
    let axis = n.int_or("axis", 1)?;
    if axis < -rank || axis > rank {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    let axis = if axis < 0 { axis + rank } else { axis } as usize;
    cx.emit(n, Op::Flatten { axis }, &[x])
}

/// ONNX `Squeeze`.
pub(crate) fn squeeze(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(if n.opset < 13 { &["axes"] } else { &[] })?;
    let x = cx.input(n, 0)?;
    let shape = cx.ty(x).shape.clone();
    let axes = match ints_attr_or_input(cx, n, "axes", 1, 13)? {
        Some(a) => norm_axes(&a, shape.len(), "axis")?,
        None => (0..shape.len()).filter(|&i| shape[i] == 1).collect(),
    };
    cx.emit(n, Op::Squeeze { axes }, &[x])
}

/// ONNX `Unsqueeze`.
pub(crate) fn unsqueeze(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(if n.opset < 13 { &["axes"] } else { &[] })?;
    let x = cx.input(n, 0)?;
    let axes = ints_attr_or_input(cx, n, "axes", 1, 13)?.ok_or("axes are required")?;
    let rank = cx.ty(x).rank() + axes.len();
    let axes = norm_axes(&axes, rank, "axis")?;
    cx.emit(n, Op::Unsqueeze { axes }, &[x])
}

/// ONNX `Transpose`.
pub(crate) fn transpose(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["perm"])?;
    let x = cx.input(n, 0)?;
    let rank = cx.ty(x).rank();
    let perm = n
        .usizes("perm")?
        .unwrap_or_else(|| (0..rank).rev().collect());
    cx.emit(n, Op::Transpose { perm }, &[x])
}

/// ONNX `Concat`.
pub(crate) fn concat(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["axis"])?;
    let ins = (0..n.num_inputs())
        .filter(|&k| n.input_name(k).is_some())
        .map(|k| cx.input(n, k))
        .collect::<OpResult<Vec<_>>>()?;
    let first = *ins.first().ok_or("Concat needs at least one input")?;
    let axis = match n.int("axis")? {
        Some(a) => a,
        None if n.opset < 4 => 1,
        None => return Err("attribute 'axis' is required".into()),
    };
    let axis = norm_axis(axis, cx.ty(first).rank(), "axis")?;
    cx.emit(n, Op::Concat { axis }, &ins)
}

/// Clamps ONNX slice bounds on a dimension of size `dim` as the spec does.
pub(crate) fn clamp_slice(dim: usize, start: i64, end: i64, step: i64) -> (i64, i64) {
    let d = dim as i64;
    let adj = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = (adj(start), adj(end));
    if step > 0 {
        (s.max(0).min(d), e.max(0).min(d))
    } else {
        (s.max(0).min(d - 1).max(-1), e.max(-1).min(d - 1))
    }
}

/// ONNX `Slice`.
pub(crate) fn slice(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    let x = cx.input(n, 0)?;
    let shape = cx.ty(x).shape.clone();
    let (starts, ends, axes, steps) = if n.opset < 10 {
        n.only_attrs(&["starts", "ends", "axes"])?;
        (
            n.required_ints("starts")?,
            n.required_ints("ends")?,
            n.ints("axes")?,
            None,
        )
    } else {
        n.only_attrs(&[])?;
        (
            cx.static_ints(n, 1, "starts")?,
            cx.static_ints(n, 2, "ends")?,
            cx.opt_static_ints(n, 3, "axes")?,
            cx.opt_static_ints(n, 4, "steps")?,
        )
    };
    let k = starts.len();
    let axes = axes.unwrap_or_else(|| (0..k as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; k]);
    if ends.len() != k || axes.len() != k || steps.len() != k {
        return Err(format!(
            "starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} differ in length"
        ));
    }
    let mut s = Slice {
        axes: Vec::new(),
        starts: Vec::new(),
        ends: Vec::new(),
        steps: Vec::new(),
    };
    let axes = norm_axes_in_order(&axes, shape.len(), "axis")?;
    for i in 0..k {
        let a = axes[i];
        if steps[i] == 0 {
            return Err("a slice step is 0".into());
        }
        let (b, e) = clamp_slice(shape[a], starts[i], ends[i], steps[i]);
        s.axes.push(a);
        s.starts.push(b);
        s.ends.push(e);
        s.steps.push(steps[i]);
    }
    cx.emit(n, Op::Slice(s), &[x])
}

/// ONNX `Gather`.
pub(crate) fn gather(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["axis"])?;
    let x = cx.input(n, 0)?;
    let idx = cx.input(n, 1)?;
    let shape = cx.ty(x).shape.clone();
    let axis = norm_axis(n.int_or("axis", 0)?, shape.len(), "axis")?;
    if let Some(TensorData::I64(v)) = cx.const_of(idx).map(|t| &t.data) {
        let d = shape[axis] as i64;
        if let Some(bad) = v.iter().find(|&&i| i < -d || i >= d) {
            return Err(format!(
                "index {bad} is out of range for dimension {axis} of size {d}"
            ));
        }
    }
    cx.emit(n, Op::Gather { axis }, &[x, idx])
}

/// ONNX `Cast`.
pub(crate) fn cast(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["to", "saturate"])?;
    let to = n.int("to")?.ok_or("attribute 'to' is required")?;
    let to = match i32::try_from(to).ok().and_then(DataType::from_i32) {
        Some(DataType::FLOAT) => DType::F32,
        Some(DataType::INT64 | DataType::INT32) => DType::I64,
        Some(d) => {
            return Err(format!(
                "cast to {d:?} is not supported (only float, int64, int32)"
            ))
        }
        None => return Err(format!("cast to unknown type {to}")),
    };
    let x = cx.input(n, 0)?;
    cx.emit(n, Op::Cast { to }, &[x])
}

/// ONNX `Pad` (constant mode).
pub(crate) fn pad(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    let x = cx.input(n, 0)?;
    let rank = cx.ty(x).rank();
    let mode = n.string("mode")?.unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(format!(
            "mode '{mode}' is not supported (only constant padding)"
        ));
    }
    let (pads, value) = if n.opset < 11 {
        n.only_attrs(&["mode", "pads", "paddings", "value"])?;
        let p = match n.ints("pads")? {
            Some(p) => p,
            None => n.ints("paddings")?.ok_or("attribute 'pads' is required")?,
        };
        (p, n.float_or("value", 0.0)?)
    } else {
        n.only_attrs(&["mode"])?;
        let mut p = cx.static_ints(n, 1, "pads")?;
        let value = cx.static_scalar(n, 2, "constant_value")?.unwrap_or(0.0);
        let axes = if n.opset >= 18 {
            cx.opt_static_ints(n, 3, "axes")?
        } else {
            None
        };
        if let Some(axes) = axes {
            let axes = norm_axes_in_order(&axes, rank, "axis")?;
            if p.len() != 2 * axes.len() {
                return Err(format!("pads {p:?} do not match axes {axes:?}"));
            }
            let mut full = vec![0; 2 * rank];
            for (i, &a) in axes.iter().enumerate() {
                full[a] = p[i];
                full[a + rank] = p[i + axes.len()];
            }
            p = full;
        }
        (p, value)
    };
    if pads.len() != 2 * rank {
        return Err(format!(
            "pads {pads:?} must have {} values for rank {rank}",
            2 * rank
        ));
    }
    let pads = pads
        .iter()
        .map(|&p| {
            usize::try_from(p)
                .map_err(|_| format!("negative pads {pads:?} (cropping) are not supported"))
        })
        .collect::<OpResult<Vec<_>>>()?;
    cx.emit(n, Op::Pad { pads, value }, &[x])
}

/// ONNX `Shape`: the (static) shape of the input, as an i64 constant.
pub(crate) fn shape(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(if n.opset >= 15 {
        &["start", "end"]
    } else {
        &[]
    })?;
    let x = cx.input(n, 0)?;
    let dims: Vec<i64> = cx.ty(x).shape.iter().map(|&d| d as i64).collect();
    let r = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (start, end) = if n.opset >= 15 {
        (clamp(n.int_or("start", 0)?), clamp(n.int_or("end", r)?))
    } else {
        (0, dims.len())
    };
    let v = if start < end {
        dims[start..end].to_vec()
    } else {
        vec![]
    };
    let t = Tensor::from_i64(vec![v.len()], v).map_err(|e| e.to_string())?;
    Ok(cx.add_folded(n, t))
}

/// ONNX `ConstantOfShape`: a filled constant of a constant shape.
pub(crate) fn constant_of_shape(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["value"])?;
    let dims = cx.static_ints(n, 0, "shape")?;
    let (shape, numel) = dims_of(&dims)?;
    if numel > FOLD_LIMIT {
        return Err(format!(
            "shape {shape:?} is too large for a constant (more than {FOLD_LIMIT} elements)"
        ));
    }
    let value = match n.tensor("value")? {
        Some(t) => tensor_from_proto(t, None).map_err(|e| format!("attribute 'value': {e}"))?,
        None => Tensor::scalar_f32(0.0),
    };
    if value.numel() != 1 {
        return Err(format!(
            "attribute 'value' must hold one element, has {}",
            value.numel()
        ));
    }
    let t = match &value.data {
        TensorData::F32(v) => Tensor::from_f32(shape, vec![v[0]; numel]),
        TensorData::I64(v) => Tensor::from_i64(shape, vec![v[0]; numel]),
        TensorData::U8(_) | TensorData::I8(_) | TensorData::I32(_) => Tensor::from_i32_values(
            shape,
            value.dtype(),
            vec![value.to_i64_vec().expect("integer")[0] as i32; numel],
        ),
    }
    .map_err(|e| e.to_string())?;
    Ok(cx.add_folded(n, t))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::clamp_slice;
    use mnc_ir::{DType, Op};

    #[test]
    fn reshape_copy_and_infer() {
        let g = Model::new(13)
            .input("x", &[2, 3, 4])
            .init_i64("s", &[3], &[0, -1, 2])
            .node("Reshape", &["x", "s"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap();
        let (op, ty) = op_of(&g, "y");
        assert_eq!(
            op,
            Op::Reshape {
                shape: vec![2, 6, 2]
            }
        );
        assert_eq!(ty.shape, vec![2, 6, 2]);
        // attribute form (opset 1-4)
        let g = Model::new(4)
            .input("x", &[2, 3, 4])
            .node("Reshape", &["x"], &["y"], vec![a_ints("shape", &[-1, 4])])
            .output("y")
            .import()
            .unwrap();
        assert_eq!(op_of(&g, "y").0, Op::Reshape { shape: vec![6, 4] });
    }

    #[test]
    fn reshape_errors() {
        for s in [&[-1, -1][..], &[5, -1], &[7, 3], &[-2, 12]] {
            let e = Model::new(13)
                .input("x", &[2, 3, 4])
                .init_i64("s", &[s.len() as i64], s)
                .node("Reshape", &["x", "s"], &["y"], vec![])
                .output("y")
                .import()
                .unwrap_err();
            assert!(e.to_string().contains("(Reshape)"), "{e}");
        }
        let e = Model::new(13)
            .input("x", &[2, 3, 4])
            .input("s", &[2])
            .node("Reshape", &["x", "s"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("must be a constant"), "{e}");
    }

    #[test]
    fn reshape_respecializes_batch() {
        let m = Model::new(13)
            .input("x", &[1, 8, 1, 1])
            .init_i64("s", &[2], &[1, 8])
            .node("Reshape", &["x", "s"], &["y"], vec![])
            .output("y");
        let g = m
            .import_with(&super::super::ImportOptions { batch: Some(3) })
            .unwrap();
        assert_eq!(op_of(&g, "y").1.shape, vec![3, 8]);
    }

    #[test]
    fn flatten_squeeze_unsqueeze_transpose() {
        let g = Model::new(11)
            .input("x", &[2, 3, 1, 1])
            .node("Flatten", &["x"], &["f"], vec![a_int("axis", -3)])
            .node("Squeeze", &["x"], &["s"], vec![a_ints("axes", &[-1, 2])])
            .node("Squeeze", &["x"], &["s2"], vec![])
            .node("Unsqueeze", &["x"], &["u"], vec![a_ints("axes", &[0, -1])])
            .node("Transpose", &["x"], &["t"], vec![])
            .node(
                "Transpose",
                &["x"],
                &["t2"],
                vec![a_ints("perm", &[0, 2, 3, 1])],
            )
            .output("f")
            .output("s")
            .output("s2")
            .output("u")
            .output("t")
            .output("t2")
            .import()
            .unwrap();
        assert_eq!(op_of(&g, "f").0, Op::Flatten { axis: 1 });
        assert_eq!(op_of(&g, "f").1.shape, vec![2, 3]);
        assert_eq!(op_of(&g, "s").0, Op::Squeeze { axes: vec![2, 3] });
        assert_eq!(op_of(&g, "s2").0, Op::Squeeze { axes: vec![2, 3] });
        assert_eq!(op_of(&g, "u").0, Op::Unsqueeze { axes: vec![0, 5] });
        assert_eq!(op_of(&g, "u").1.shape, vec![1, 2, 3, 1, 1, 1]);
        assert_eq!(
            op_of(&g, "t").0,
            Op::Transpose {
                perm: vec![3, 2, 1, 0]
            }
        );
        assert_eq!(op_of(&g, "t2").1.shape, vec![2, 1, 1, 3]);
        // input forms from opset 13
        let g = Model::new(13)
            .input("x", &[2, 3, 1, 1])
            .init_i64("ax", &[2], &[3, 2])
            .node("Squeeze", &["x", "ax"], &["s"], vec![])
            .node("Unsqueeze", &["s", "ax"], &["u"], vec![])
            .output("u")
            .import()
            .unwrap();
        assert_eq!(op_of(&g, "u").0, Op::Unsqueeze { axes: vec![2, 3] });
        assert_eq!(op_of(&g, "u").1.shape, vec![2, 3, 1, 1]);
    }

    #[test]
    fn squeeze_of_non_unit_axis_is_an_error() {
        let e = Model::new(11)
            .input("x", &[2, 3])
            .node("Squeeze", &["x"], &["s"], vec![a_ints("axes", &[0])])
            .output("s")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("(Squeeze)"), "{e}");
    }

    #[test]
    fn slice_clamping() {
        assert_eq!(clamp_slice(10, 0, i64::MAX, 1), (0, 10));
        assert_eq!(clamp_slice(10, -3, -1, 1), (7, 9));
        assert_eq!(clamp_slice(10, i64::MIN, 5, 1), (0, 5));
        assert_eq!(clamp_slice(10, -1, i64::MIN, -1), (9, -1));
        assert_eq!(clamp_slice(10, i64::MAX, -i64::MAX, -1), (9, -1));
        assert_eq!(clamp_slice(0, 0, 5, 1), (0, 0));
        assert_eq!(clamp_slice(0, -1, i64::MIN, -1), (-1, -1));
    }

    #[test]
    fn slice_input_and_attribute_forms() {
        let g = Model::new(13)
            .input("x", &[2, 8, 6])
            .init_i64("st", &[2], &[1, -1])
            .init_i64("en", &[2], &[i64::MAX, 0])
            .init_i64("ax", &[2], &[1, -1])
            .init_i64("sp", &[2], &[2, -2])
            .node("Slice", &["x", "st", "en", "ax", "sp"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap();
        let (op, ty) = op_of(&g, "y");
        let Op::Slice(s) = op else { panic!() };
        assert_eq!(s.axes, vec![1, 2]);
        assert_eq!(s.starts, vec![1, 5]);
        assert_eq!(s.ends, vec![8, 0]);
        assert_eq!(s.steps, vec![2, -2]);
        assert_eq!(ty.shape, vec![2, 4, 3]);
        let g = Model::new(9)
            .input("x", &[2, 8, 6])
            .node(
                "Slice",
                &["x"],
                &["y"],
                vec![
                    a_ints("starts", &[0, 2]),
                    a_ints("ends", &[1, 100]),
                    a_ints("axes", &[0, 2]),
                ],
            )
            .output("y")
            .import()
            .unwrap();
        assert_eq!(op_of(&g, "y").1.shape, vec![1, 8, 4]);
        let e = Model::new(13)
            .input("x", &[2, 8])
            .init_i64("st", &[1], &[0])
            .init_i64("en", &[1], &[1])
            .init_i64("sp", &[1], &[0])
            .node("Slice", &["x", "st", "en", "", "sp"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("step is 0"), "{e}");
    }

    #[test]
    fn gather_and_cast() {
        let g = Model::new(13)
            .input("x", &[4, 5])
            .init_i64("i", &[2], &[3, -1])
            .node("Gather", &["x", "i"], &["y"], vec![a_int("axis", 1)])
            .node("Cast", &["x"], &["c"], vec![a_int("to", 7)])
            .output("y")
            .output("c")
            .import()
            .unwrap();
        assert_eq!(op_of(&g, "y").0, Op::Gather { axis: 1 });
        assert_eq!(op_of(&g, "y").1.shape, vec![4, 2]);
        assert_eq!(op_of(&g, "c").0, Op::Cast { to: DType::I64 });
        let e = Model::new(13)
            .input("x", &[4, 5])
            .init_i64("i", &[1], &[5])
            .node("Gather", &["x", "i"], &["y"], vec![a_int("axis", 1)])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = Model::new(13)
            .input("x", &[4, 5])
            .node("Cast", &["x"], &["c"], vec![a_int("to", 9)])
            .output("c")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("BOOL"), "{e}");
    }

    #[test]
    fn pad_forms() {
        let g = Model::new(13)
            .input("x", &[1, 3, 5, 5])
            .init_i64("p", &[8], &[0, 0, 0, 1, 0, 0, 1, 2])
            .init_f32("v", &[], Some(vec![0.5]))
            .node(
                "Pad",
                &["x", "p", "v"],
                &["y"],
                vec![a_str("mode", "constant")],
            )
            .output("y")
            .import()
            .unwrap();
        assert_eq!(
            op_of(&g, "y").0,
            Op::Pad {
                pads: vec![0, 0, 0, 1, 0, 0, 1, 2],
                value: 0.5
            }
        );
        assert_eq!(op_of(&g, "y").1.shape, vec![1, 3, 6, 8]);
        let g = Model::new(2)
            .input("x", &[1, 3])
            .node("Pad", &["x"], &["y"], vec![a_ints("pads", &[0, 1, 0, 1])])
            .output("y")
            .import()
            .unwrap();
        assert_eq!(op_of(&g, "y").1.shape, vec![1, 5]);
        let g = Model::new(18)
            .input("x", &[1, 3, 5, 5])
            .init_i64("p", &[4], &[1, 1, 0, 1])
            .init_i64("ax", &[2], &[2, -1])
            .node("Pad", &["x", "p", "", "ax"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap();
        assert_eq!(
            op_of(&g, "y").0,
            Op::Pad {
                pads: vec![0, 0, 1, 1, 0, 0, 0, 1],
                value: 0.0
            }
        );
        for (mode, pads) in [("reflect", [0, 0, 1, 1]), ("constant", [0, 0, -1, 1])] {
            let e = Model::new(11)
                .input("x", &[3, 5])
                .init_i64("p", &[4], &pads)
                .node("Pad", &["x", "p"], &["y"], vec![a_str("mode", mode)])
                .output("y")
                .import()
                .unwrap_err();
            assert!(e.to_string().contains("(Pad)"), "{e}");
        }
        // a repeated axis (undefined in ONNX) is refused, not silently overwritten
        let e = Model::new(18)
            .input("x", &[1, 3, 5, 5])
            .init_i64("p", &[4], &[1, 1, 0, 1])
            .init_i64("ax", &[2], &[3, -1])
            .node("Pad", &["x", "p", "", "ax"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("axes [3, -1] repeat an axis"), "{e}");
    }

    #[test]
    fn shape_and_constant_of_shape_fold() {
        let g = Model::new(15)
            .input("x", &[2, 3, 4, 5])
            .node("Shape", &["x"], &["s"], vec![])
            .node(
                "Shape",
                &["x"],
                &["s2"],
                vec![a_int("start", 1), a_int("end", -1)],
            )
            .node(
                "ConstantOfShape",
                &["s2"],
                &["c"],
                vec![a_tensor("value", tensor_i64("", &[1], &[7]))],
            )
            .node("ConstantOfShape", &["s2"], &["z"], vec![])
            .output("s")
            .output("s2")
            .output("c")
            .output("z")
            .import()
            .unwrap();
        assert_eq!(const_i64(&g, "s"), vec![2, 3, 4, 5]);
        assert_eq!(const_i64(&g, "s2"), vec![3, 4]);
        assert_eq!(const_i64(&g, "c"), vec![7; 12]);
        assert_eq!(op_of(&g, "c").1.shape, vec![3, 4]);
        assert_eq!(const_f32(&g, "z"), vec![0.0; 12]);
    }

    #[test]
    fn constant_of_large_shape_is_refused_before_allocating() {
        // within the 2^31-element tensor limit, but far beyond any shape computation
        let e = Model::new(13)
            .init_i64("s", &[2], &[1 << 15, 1 << 15])
            .node("ConstantOfShape", &["s"], &["c"], vec![])
            .output("c")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("too large for a constant"), "{e}");
        // a fold whose result would be huge (padding a small constant)
        let e = Model::new(13)
            .init_i64("v", &[1], &[1])
            .init_i64("p", &[2], &[0, 1 << 30])
            .node("Pad", &["v", "p"], &["c"], vec![])
            .output("c")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("folding would create"), "{e}");
    }

    #[test]
    fn constant_of_absurd_shape_is_refused_before_allocating() {
        let e = Model::new(13)
            .init_i64("s", &[3], &[1 << 20, 1 << 20, 1 << 20])
            .node("ConstantOfShape", &["s"], &["c"], vec![])
            .output("c")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }
}
