//! Pass-through and miscellaneous ops: `Identity` -> [`mnc_ir::Op::Identity`], `Dropout` ->
//! [`mnc_ir::Op::Dropout`] (inference), `Constant` -> [`mnc_ir::Op::Constant`], `Softmax` ->
//! [`mnc_ir::Op::Softmax`].
//!
//! Specs and opset notes:
//! - <https://onnx.ai/onnx/operators/onnx__Identity.html>.
//! - <https://onnx.ai/onnx/operators/onnx__Dropout.html>: `is_test` before 7, `ratio`
//!   attribute 7-11, `ratio`/`training_mode` inputs from 12 (a constant true training_mode
//!   is refused); the `mask` output must be unused.
//! - <https://onnx.ai/onnx/operators/onnx__Constant.html>: `value` (1), `value_float(s)` and
//!   `value_int(s)` (12); sparse and string values are refused.
//! - <https://onnx.ai/onnx/operators/onnx__Softmax.html>: before 13 the input is coerced to
//!   2-D at `axis` (default 1), which equals a per-axis softmax only when every dimension
//!   after `axis` is 1 (e.g. `axis == rank - 1`); other cases are refused. From 13 it is
//!   per-axis (default -1).

use super::attrs::OnnxNode;
use super::data::tensor_from_proto;
use super::{norm_axis, Ctx, OpResult};
use mnc_ir::{NodeId, Op, Tensor};

/// ONNX `Identity`.
pub(crate) fn identity(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    let x = cx.input(n, 0)?;
    cx.emit(n, Op::Identity, &[x])
}

/// ONNX `Dropout` in inference mode.
pub(crate) fn dropout(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["ratio", "is_test", "seed"])?;
    if n.opset >= 12 {
        if let Some(id) = cx.opt_input(n, 2)? {
            let training = match cx.const_of(id).map(|t| &t.data) {
                Some(t) => t.len_nonzero() > 0,
                None => return Err("training_mode (input 2) must be a constant".into()),
            };
            if training {
                return Err("training_mode=true is not supported (inference only)".into());
            }
        }
    }
    let x = cx.input(n, 0)?;
    cx.emit(n, Op::Dropout, &[x])
}

/// ONNX `Constant`.
pub(crate) fn constant(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[
        "value",
        "value_float",
        "value_floats",
        "value_int",
        "value_ints",
    ])?;
    // The spec requires exactly one value attribute.
    let given: Vec<&str> = n
        .proto
        .attribute
        .iter()
        .map(|a| a.name.as_str())
        .filter(|a| a.starts_with("value"))
        .collect();
    if given.len() > 1 {
        return Err(format!(
            "several value attributes ({}); exactly one is allowed",
            given.join(", ")
        ));
    }
    let t = if let Some(t) = n.tensor("value")? {
        tensor_from_proto(t, None).map_err(|e| format!("attribute 'value': {e}"))?
    } else if let Some(v) = n.float("value_float")? {
        Tensor::scalar_f32(v)
    } else if let Some(v) = n.floats("value_floats")? {
        Tensor::from_f32(vec![v.len()], v).map_err(|e| e.to_string())?
    } else if let Some(v) = n.int("value_int")? {
        Tensor::from_i64(vec![], vec![v]).map_err(|e| e.to_string())?
    } else if let Some(v) = n.ints("value_ints")? {
        Tensor::from_i64(vec![v.len()], v).map_err(|e| e.to_string())?
    } else {
        return Err("no supported value attribute (value, value_float(s), value_int(s))".into());
    };
    Ok(cx.g.add_constant(n.name.clone(), t))
}

/// ONNX `Softmax`.
pub(crate) fn softmax(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["axis"])?;
    let x = cx.input(n, 0)?;
    let shape = cx.ty(x).shape.clone();
    let default = if n.opset < 13 { 1 } else { -1 };
    let axis = norm_axis(n.int_or("axis", default)?, shape.len(), "axis")?;
    if n.opset < 13 && shape[axis + 1..].iter().any(|&d| d != 1) {
        return Err(format!(
            "opset {} Softmax with axis {axis} on shape {shape:?} normalizes over the flattened trailing axes {axis}..; only axis == rank-1 (or size-1 trailing axes) is supported",
            n.opset
        ));
    }
    cx.emit(n, Op::Softmax { axis }, &[x])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use mnc_ir::Op;

    #[test]
    fn identity_dropout_constant() {
        let g = Model::new(13)
            .input("x", &[2, 3])
            .node("Identity", &["x"], &["i"], vec![])
            .node(
                "Dropout",
                &["x"],
                &["d", "mask"],
                vec![a_float("ratio", 0.2)],
            )
            .node(
                "Constant",
                &[],
                &["c1"],
                vec![a_tensor(
                    "value",
                    tensor_f32("", &[2], Some(vec![1.0, 2.0])),
                )],
            )
            .node("Constant", &[], &["c2"], vec![a_float("value_float", 3.0)])
            .node(
                "Constant",
                &[],
                &["c3"],
                vec![a_ints("value_ints", &[4, 5])],
            )
            .node("Constant", &[], &["c4"], vec![a_int("value_int", 6)])
            .node(
                "Constant",
                &[],
                &["c5"],
                vec![a_floats("value_floats", &[7.0])],
            )
            .output("i")
            .output("d")
            .output("c1")
            .output("c2")
            .output("c3")
            .output("c4")
            .output("c5")
            .import()
            .unwrap();
        assert_eq!(op_of(&g, "i").0, Op::Identity);
        assert_eq!(op_of(&g, "d").0, Op::Dropout);
        assert_eq!(const_f32(&g, "c1"), vec![1.0, 2.0]);
        assert_eq!(const_f32(&g, "c2"), vec![3.0]);
        assert_eq!(op_of(&g, "c2").1.shape, Vec::<usize>::new());
        assert_eq!(const_i64(&g, "c3"), vec![4, 5]);
        assert_eq!(const_i64(&g, "c4"), vec![6]);
        assert_eq!(const_f32(&g, "c5"), vec![7.0]);
    }

    #[test]
    fn identity_on_weight_is_not_folded() {
        let g = Model::new(13)
            .init_f32("w", &[2], None)
            .node("Identity", &["w"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap();
        assert_eq!(op_of(&g, "y").0, Op::Identity);
    }

    #[test]
    fn dropout_training_and_mask_are_refused() {
        let e = Model::new(13)
            .input("x", &[2, 3])
            .init_f32("r", &[], Some(vec![0.5]))
            .init_i64("t", &[], &[1])
            .node("Dropout", &["x", "r", "t"], &["d"], vec![])
            .output("d")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("training_mode"), "{e}");
        let e = Model::new(13)
            .input("x", &[2, 3])
            .node("Dropout", &["x"], &["d", "mask"], vec![])
            .output("d")
            .output("mask")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("'mask' is used"), "{e}");
    }

    #[test]
    fn constant_with_two_values_is_refused() {
        let e = Model::new(13)
            .node(
                "Constant",
                &[],
                &["c"],
                vec![a_float("value_float", 3.0), a_float("value_floats", 1.0)],
            )
            .output("c")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
    }

    #[test]
    fn softmax_axis_rules() {
        let g = Model::new(13)
            .input("x", &[2, 3, 4])
            .node("Softmax", &["x"], &["a"], vec![])
            .node("Softmax", &["x"], &["b"], vec![a_int("axis", 1)])
            .output("a")
            .output("b")
            .import()
            .unwrap();
        assert_eq!(op_of(&g, "a").0, Op::Softmax { axis: 2 });
        assert_eq!(op_of(&g, "b").0, Op::Softmax { axis: 1 });
        let g = Model::new(11)
            .input("x", &[2, 10])
            .node("Softmax", &["x"], &["a"], vec![])
            .output("a")
            .import()
            .unwrap();
        assert_eq!(op_of(&g, "a").0, Op::Softmax { axis: 1 });
        let e = Model::new(11)
            .input("x", &[2, 3, 4])
            .node("Softmax", &["x"], &["a"], vec![])
            .output("a")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("flattened"), "{e}");
    }

    #[test]
    fn constant_without_value_is_an_error() {
        let e = Model::new(13)
            .node("Constant", &[], &["c"], vec![a_str("value_string", "x")])
            .output("c")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("value_string"), "{e}");
    }
}
