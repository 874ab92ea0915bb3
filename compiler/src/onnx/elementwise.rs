//! Elementwise arithmetic -> [`mnc_ir::Op::Binary`] (`Add`, `Sub`, `Mul`, `Div`), the
//! variadic `Sum` and `Mean` (chains of `Add`, then a `Div` by the count), `Max`/`Min` of a
//! tensor and a scalar constant (-> [`mnc_ir::Activation::Clip`]), and the rounding ops
//! `Ceil`/`Floor`, which are accepted only inside shape computations (constant input,
//! evaluated at import).
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__Add.html>,
//! <https://onnx.ai/onnx/operators/onnx__Sub.html>, <https://onnx.ai/onnx/operators/onnx__Mul.html>,
//! <https://onnx.ai/onnx/operators/onnx__Div.html> (opset >= 7: numpy broadcasting; opsets
//! 1-6 with the legacy `broadcast`/`axis` attributes are refused),
//! <https://onnx.ai/onnx/operators/onnx__Ceil.html>, <https://onnx.ai/onnx/operators/onnx__Floor.html>,
//! <https://onnx.ai/onnx/operators/onnx__Sum.html>, <https://onnx.ai/onnx/operators/onnx__Mean.html>,
//! <https://onnx.ai/onnx/operators/onnx__Max.html>, <https://onnx.ai/onnx/operators/onnx__Min.html>
//! (variadic, one or more inputs; opset 6 requires equal shapes, 8 adds multidirectional
//! broadcasting, 12 (Max/Min) and 13 only widen the type lists: the same import for all;
//! opsets 1-5 with `consumed_inputs` are refused as an unknown attribute).

use super::attrs::OnnxNode;
use super::{display_node_name, Ctx, OpResult};
use mnc_ir::tensor::TensorData;
use mnc_ir::{Activation, BinaryOp, NodeId, Op, Tensor};

/// ONNX `Add`, `Sub`, `Mul`, `Div`.
pub(crate) fn binary(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    if n.opset < 7 && n.has_attr("broadcast") {
        return Err(format!(
            "legacy broadcasting (attribute 'broadcast', opset {}) is not supported; re-export with opset >= 7",
            n.opset
        ));
    }
    n.only_attrs(&[])?;
    let op = match n.proto.op_type.as_str() {
        "Add" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        other => return Err(format!("{other} is not a binary arithmetic op")),
    };
    let a = cx.input(n, 0)?;
    let b = cx.input(n, 1)?;
    cx.emit(n, Op::Binary(op), &[a, b])
}

/// The inputs of a variadic node (`Sum`, `Mean`, `Max`, `Min`): at least one, none omitted.
fn variadic_inputs(cx: &Ctx, n: &OnnxNode) -> OpResult<Vec<NodeId>> {
    if n.num_inputs() == 0 {
        return Err(format!("{} needs at least one input", n.proto.op_type));
    }
    (0..n.num_inputs()).map(|k| cx.input(n, k)).collect()
}

/// Adds `op` on `inputs` as an intermediate IR node of the ONNX node `n` (named
/// `<n>.<suffix>`, with `n` as its source), for ops imported as several IR nodes.
fn emit_step(
    cx: &mut Ctx,
    n: &OnnxNode,
    suffix: &str,
    op: Op,
    inputs: &[NodeId],
) -> OpResult<NodeId> {
    let step = OnnxNode {
        proto: n.proto,
        name: cx.unique(&format!("{}.{suffix}", n.name)),
        opset: n.opset,
    };
    let id = cx.emit(&step, op, inputs)?;
    cx.g.node_mut(id).sources = vec![display_node_name(n.proto)];
    Ok(id)
}

/// `x0 + x1 + ... + x(k-1)` as a left-to-right chain of broadcasting `Add` nodes (the
/// intermediates named `<n>.sum1`, ...); the last one is named `n` when `last_is_n`. One
/// input: that input itself.
fn add_chain(cx: &mut Ctx, n: &OnnxNode, xs: &[NodeId], last_is_n: bool) -> OpResult<NodeId> {
    let mut acc = xs[0];
    for (k, &x) in xs.iter().enumerate().skip(1) {
        let op = Op::Binary(BinaryOp::Add);
        acc = if last_is_n && k + 1 == xs.len() {
            cx.emit(n, op, &[acc, x])?
        } else {
            emit_step(cx, n, &format!("sum{k}"), op, &[acc, x])?
        };
    }
    Ok(acc)
}

/// ONNX `Sum`: `((x0 + x1) + x2) + ...` as `Add` nodes (multidirectional broadcasting: the
/// broadcast of the chain's shapes is that of all inputs); one input: `Identity`. The order
/// of the additions is that of onnxruntime's CPU kernel (left to right), so f32 results are
/// the same.
pub(crate) fn sum(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    let xs = variadic_inputs(cx, n)?;
    if xs.len() == 1 {
        return cx.emit(n, Op::Identity, &xs);
    }
    add_chain(cx, n, &xs, true)
}

/// ONNX `Mean`: the `Sum` chain, then a `Div` by the input count (a scalar constant named
/// `<n>.count`); one input: `Identity`. Float inputs only (as the spec).
pub(crate) fn mean(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    let xs = variadic_inputs(cx, n)?;
    if xs.len() == 1 {
        return cx.emit(n, Op::Identity, &xs);
    }
    if let Some(&x) = xs.iter().find(|&&x| cx.ty(x).dtype != mnc_ir::DType::F32) {
        return Err(format!("Mean of a {} input is not supported", cx.ty(x)));
    }
    let total = add_chain(cx, n, &xs, false)?;
    let name = cx.unique(&format!("{}.count", n.name));
    let count = cx.g.add_constant(name, Tensor::scalar_f32(xs.len() as f32));
    cx.emit(n, Op::Binary(BinaryOp::Div), &[total, count])
}

/// ONNX `Max` / `Min` of a tensor `x` and a single-element f32 constant `c` (in either
/// order), whose broadcast shape is that of `x` (`c` of rank at most `x`'s): `Max` becomes
/// `Clip { min: c, max: +inf }` and `Min` `Clip { min: -inf, max: c }`. One input:
/// `Identity`. Every other form (two tensors, more than two inputs, a constant of more than
/// one element, integer data) is refused naming the node.
///
/// Agreement with onnxruntime 1.32's CPU kernels (checked on NaN, +-inf, +-0, at opsets 8,
/// 12, 13): a NaN in `x` propagates (`Max(NaN, 0) = NaN`), as in `Clip`; infinities compare
/// as numbers. Two differences, made impossible or harmless: a NaN constant makes every
/// onnxruntime output NaN while `Clip` with a NaN bound would pass `x` through, so a NaN
/// constant is refused; and `Max(-0.0, 0.0)` is `+0.0` there while `Clip` may return
/// `-0.0` (the sign of a zero result is not part of [`Activation`]'s contract).
pub(crate) fn max_min(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    let op = n.proto.op_type.as_str();
    let xs = variadic_inputs(cx, n)?;
    if xs.len() == 1 {
        return cx.emit(n, Op::Identity, &xs);
    }
    let scalar = |cx: &Ctx, id: NodeId| match cx.const_of(id) {
        Some(t) if t.numel() == 1 => match &t.data {
            TensorData::F32(v) => Some(v[0]),
            TensorData::I64(_) | TensorData::U8(_) | TensorData::I8(_) | TensorData::I32(_) => None,
        },
        _ => None,
    };
    let (x, c) = match (xs.len(), scalar(cx, xs[0]), scalar(cx, xs[1])) {
        (2, _, Some(c)) => (xs[0], c),
        (2, Some(c), None) => (xs[1], c),
        (k, _, _) => {
            return Err(format!(
                "{op} of {k} inputs is only supported for a tensor and a single-element f32 constant (two inputs)"
            ))
        }
    };
    let cid = if x == xs[0] { xs[1] } else { xs[0] };
    if cx.ty(cid).shape.len() > cx.ty(x).shape.len() {
        return Err(format!(
            "{op}: the constant {} has a higher rank than the tensor {} (the output would be reshaped); not supported",
            cx.ty(cid),
            cx.ty(x)
        ));
    }
    if c.is_nan() {
        return Err(format!("{op} with a NaN constant is not supported"));
    }
    let a = match op {
        "Max" => Activation::Clip {
            min: c,
            max: f32::INFINITY,
        },
        "Min" => Activation::Clip {
            min: f32::NEG_INFINITY,
            max: c,
        },
        other => return Err(format!("{other} is not Max or Min")),
    };
    if cx.ty(x).dtype != mnc_ir::DType::F32 {
        return Err(format!("{op} of a {} tensor is not supported", cx.ty(x)));
    }
    cx.emit(n, Op::Act(a), &[x])
}

/// ONNX `Ceil` / `Floor` on a constant (shape computations only).
pub(crate) fn round_fold(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    let x = cx.input(n, 0)?;
    let Some(t) = cx.const_of(x) else {
        return Err(format!(
            "{} is only supported inside shape computations (its input must be constant)",
            n.proto.op_type
        ));
    };
    let ceil = n.proto.op_type == "Ceil";
    let out = match &t.data {
        TensorData::F32(v) => Tensor::from_f32(
            t.shape.clone(),
            v.iter()
                .map(|&x| if ceil { x.ceil() } else { x.floor() })
                .collect(),
        ),
        TensorData::I64(_) | TensorData::U8(_) | TensorData::I8(_) | TensorData::I32(_) => {
            Ok(t.clone())
        }
    }
    .map_err(|e| e.to_string())?;
    Ok(cx.add_folded(n, out))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use mnc_ir::{Activation, BinaryOp, Op};

    /// The op of the IR node named `name`.
    fn op_named(g: &mnc_ir::Graph, name: &str) -> (Op, Vec<String>) {
        let id = g
            .node_ids()
            .into_iter()
            .find(|&i| g.node(i).name == name)
            .unwrap_or_else(|| panic!("no node named {name}"));
        let ins = g
            .inputs(id)
            .iter()
            .map(|&i| g.node(i).name.clone())
            .collect();
        (g.node(id).op.clone(), ins)
    }

    #[test]
    fn sum_is_a_chain_of_broadcasting_adds() {
        for opset in [6, 8, 13] {
            let g = Model::new(opset)
                .input("a", &[2, 3, 4, 5])
                .input("b", &[2, 3, 4, 5])
                .init_f32("c", &[3, 1, 1], None)
                .node_named("s", "", "Sum", &["a", "b", "c"], &["y"])
                .output("y")
                .import()
                .unwrap();
            let (op, ty) = op_of(&g, "y");
            assert_eq!(op, Op::Binary(BinaryOp::Add));
            assert_eq!(ty.shape, vec![2, 3, 4, 5]);
            let add = Op::Binary(BinaryOp::Add);
            assert_eq!(
                op_named(&g, "s.sum1"),
                (add.clone(), vec!["a".into(), "b".into()])
            );
            assert_eq!(op_named(&g, "s"), (add, vec!["s.sum1".into(), "c".into()]));
            let sources: Vec<_> = g
                .node_ids()
                .into_iter()
                .map(|i| g.node(i).sources.clone())
                .collect();
            assert_eq!(
                sources
                    .iter()
                    .filter(|s| *s == &vec!["s".to_string()])
                    .count(),
                2
            );
        }
        // one input: Identity; two: one Add
        let one = Model::new(13)
            .input("a", &[2, 3])
            .node("Sum", &["a"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap();
        assert_eq!(op_of(&one, "y").0, Op::Identity);
        let two = Model::new(9)
            .input("a", &[2, 3])
            .input("b", &[3])
            .node("Sum", &["a", "b"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap();
        assert_eq!(
            op_of(&two, "y"),
            (Op::Binary(BinaryOp::Add), op_of(&two, "y").1)
        );
        assert_eq!(two.node_ids().len(), 3);
    }

    #[test]
    fn sum_and_mean_errors_name_the_problem() {
        let e = Model::new(13)
            .node("Sum", &[], &["y"], vec![])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("at least one input"), "{e}");
        let e = Model::new(13)
            .input("a", &[2, 3])
            .input("b", &[4])
            .node("Sum", &["a", "b"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("broadcast"), "{e}");
    }

    #[test]
    fn mean_divides_the_sum_by_the_count() {
        let g = Model::new(13)
            .input("a", &[2, 3])
            .input("b", &[2, 3])
            .input("c", &[3])
            .node_named("m", "", "Mean", &["a", "b", "c"], &["y"])
            .output("y")
            .import()
            .unwrap();
        let (op, ins) = op_named(&g, "m");
        assert_eq!(op, Op::Binary(BinaryOp::Div));
        assert_eq!(ins, vec!["m.sum2".to_string(), "m.count".into()]);
        assert_eq!(
            op_named(&g, "m.count").0,
            Op::Constant(mnc_ir::Tensor::scalar_f32(3.0))
        );
        assert_eq!(op_of(&g, "y").1.shape, vec![2, 3]);
    }

    fn max_min(
        op: &str,
        first_const: bool,
        c: Vec<f32>,
        cdims: &[i64],
    ) -> Result<mnc_ir::Graph, String> {
        let ins = if first_const { ["c", "x"] } else { ["x", "c"] };
        Model::new(13)
            .input("x", &[1, 3, 4, 4])
            .init_f32("c", cdims, Some(c))
            .node(op, &ins, &["y"], vec![])
            .output("y")
            .import()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn max_and_min_with_a_scalar_constant_are_clips() {
        for first in [false, true] {
            let g = max_min("Max", first, vec![0.5], &[]).unwrap();
            let inf = f32::INFINITY;
            assert_eq!(
                op_of(&g, "y").0,
                Op::Act(Activation::Clip { min: 0.5, max: inf })
            );
            let g = max_min("Min", first, vec![6.0], &[1, 1, 1]).unwrap();
            assert_eq!(
                op_of(&g, "y").0,
                Op::Act(Activation::Clip {
                    min: -inf,
                    max: 6.0
                })
            );
            assert_eq!(op_of(&g, "y").1.shape, vec![1, 3, 4, 4]);
        }
        let e = max_min("Max", false, vec![f32::NAN], &[1]).unwrap_err();
        assert!(e.contains("NaN constant"), "{e}");
        let e = max_min("Max", false, vec![1.0, 2.0, 3.0], &[3, 1, 1]).unwrap_err();
        assert!(e.contains("'Max'") || e.contains("(Max)"), "{e}");
        assert!(e.contains("single-element f32 constant"), "{e}");
        let e = max_min("Min", false, vec![1.0], &[1, 1, 1, 1, 1]).unwrap_err();
        assert!(e.contains("higher rank"), "{e}");
        // two tensors, three inputs
        let e = Model::new(13)
            .input("x", &[2])
            .input("z", &[2])
            .node_named("mx", "", "Max", &["x", "z"], &["y"])
            .output("y")
            .import()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 'mx' (Max)") && e.contains("of 2 inputs"),
            "{e}"
        );
        let e = Model::new(13)
            .input("x", &[2])
            .init_f32("c", &[], Some(vec![0.0]))
            .node("Min", &["x", "c", "c"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap_err()
            .to_string();
        assert!(e.contains("of 3 inputs"), "{e}");
    }

    #[test]
    fn binary_ops_broadcast() {
        for (name, op) in [
            ("Add", BinaryOp::Add),
            ("Sub", BinaryOp::Sub),
            ("Mul", BinaryOp::Mul),
            ("Div", BinaryOp::Div),
        ] {
            let g = Model::new(13)
                .input("x", &[2, 3, 4, 5])
                .init_f32("c", &[3, 1, 1], None)
                .node(name, &["x", "c"], &["y"], vec![])
                .output("y")
                .import()
                .unwrap();
            let (got, ty) = op_of(&g, "y");
            assert_eq!(got, Op::Binary(op));
            assert_eq!(ty.shape, vec![2, 3, 4, 5]);
        }
    }

    #[test]
    fn non_broadcastable_is_an_error() {
        let e = Model::new(13)
            .input("x", &[2, 3])
            .input("z", &[4])
            .node("Mul", &["x", "z"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("broadcast"), "{e}");
    }

    #[test]
    fn legacy_broadcast_is_refused() {
        let e = Model::new(6)
            .input("x", &[2, 3])
            .init_f32("c", &[3], None)
            .node("Add", &["x", "c"], &["y"], vec![a_int("broadcast", 1)])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("legacy broadcasting"), "{e}");
    }

    #[test]
    fn ceil_and_floor_fold_constants_only() {
        let g = Model::new(13)
            .init_f32("c", &[3], Some(vec![1.5, -1.5, 112.0]))
            .node("Ceil", &["c"], &["y"], vec![])
            .node("Floor", &["c"], &["z"], vec![])
            .output("y")
            .output("z")
            .import()
            .unwrap();
        assert_eq!(const_f32(&g, "y"), vec![2.0, -1.0, 112.0]);
        assert_eq!(const_f32(&g, "z"), vec![1.0, -2.0, 112.0]);
        let e = Model::new(13)
            .input("x", &[3])
            .node("Ceil", &["x"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("shape computations"), "{e}");
    }
}
