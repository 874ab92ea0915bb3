//! Elementwise arithmetic -> [`mnc_ir::Op::Binary`] (`Add`, `Sub`, `Mul`, `Div`), and the
//! rounding ops `Ceil`/`Floor`, which are accepted only inside shape computations (constant
//! input, evaluated at import).
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__Add.html>,
//! <https://onnx.ai/onnx/operators/onnx__Sub.html>, <https://onnx.ai/onnx/operators/onnx__Mul.html>,
//! <https://onnx.ai/onnx/operators/onnx__Div.html> (opset >= 7: numpy broadcasting; opsets
//! 1-6 with the legacy `broadcast`/`axis` attributes are refused),
//! <https://onnx.ai/onnx/operators/onnx__Ceil.html>, <https://onnx.ai/onnx/operators/onnx__Floor.html>.

use super::attrs::OnnxNode;
use super::{Ctx, OpResult};
use mnc_ir::tensor::TensorData;
use mnc_ir::{BinaryOp, NodeId, Op, Tensor};

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
        TensorData::I64(_) => Ok(t.clone()),
    }
    .map_err(|e| e.to_string())?;
    Ok(cx.add_folded(n, out))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use mnc_ir::{BinaryOp, Op};

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
