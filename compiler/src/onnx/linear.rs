//! `Gemm` -> [`mnc_ir::Op::Gemm`] and `MatMul` -> [`mnc_ir::Op::MatMul`].
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__Gemm.html> (opsets 1-6 carry a `broadcast`
//! attribute, ignored since the IR broadcasts C; C is optional from opset 11),
//! <https://onnx.ai/onnx/operators/onnx__MatMul.html> (numpy matmul; rank >= 2 operands).

use super::attrs::OnnxNode;
use super::{Ctx, OpResult};
use mnc_ir::{Gemm, NodeId, Op};

/// ONNX `Gemm`.
pub(crate) fn gemm(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["alpha", "beta", "transA", "transB", "broadcast"])?;
    let a = cx.input(n, 0)?;
    let b = cx.input(n, 1)?;
    let c = cx.opt_input(n, 2)?;
    let op = Op::Gemm(Gemm {
        trans_a: n.flag("transA", false)?,
        trans_b: n.flag("transB", false)?,
        alpha: n.float_or("alpha", 1.0)?,
        beta: n.float_or("beta", 1.0)?,
        has_c: c.is_some(),
        ..Default::default()
    });
    let mut ins = vec![a, b];
    ins.extend(c);
    cx.emit(n, op, &ins)
}

/// ONNX `MatMul`.
pub(crate) fn matmul(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    let a = cx.input(n, 0)?;
    let b = cx.input(n, 1)?;
    cx.emit(n, Op::MatMul, &[a, b])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use mnc_ir::{Gemm, Op};

    #[test]
    fn gemm_classifier_head() {
        let g = Model::new(13)
            .input("x", &[3, 16])
            .init_f32("w", &[10, 16], None)
            .init_f32("b", &[10], None)
            .node(
                "Gemm",
                &["x", "w", "b"],
                &["y"],
                vec![
                    a_int("transB", 1),
                    a_float("alpha", 1.0),
                    a_float("beta", 0.5),
                ],
            )
            .output("y")
            .import()
            .unwrap();
        let (op, ty) = op_of(&g, "y");
        assert_eq!(
            op,
            Op::Gemm(Gemm {
                trans_b: true,
                beta: 0.5,
                has_c: true,
                ..Default::default()
            })
        );
        assert_eq!(ty.shape, vec![3, 10]);
    }

    #[test]
    fn gemm_without_c_and_shape_mismatch() {
        let g = Model::new(13)
            .input("x", &[16, 3])
            .init_f32("w", &[16, 4], None)
            .node("Gemm", &["x", "w"], &["y"], vec![a_int("transA", 1)])
            .output("y")
            .import()
            .unwrap();
        let (op, ty) = op_of(&g, "y");
        assert_eq!(
            op,
            Op::Gemm(Gemm {
                trans_a: true,
                ..Default::default()
            })
        );
        assert_eq!(ty.shape, vec![3, 4]);
        let e = Model::new(13)
            .input("x", &[3, 16])
            .init_f32("w", &[10, 16], None)
            .node("Gemm", &["x", "w"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("inner dimensions"), "{e}");
    }

    #[test]
    fn matmul_batched() {
        let g = Model::new(13)
            .input("x", &[2, 5, 16])
            .init_f32("w", &[16, 4], None)
            .node("MatMul", &["x", "w"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap();
        let (op, ty) = op_of(&g, "y");
        assert_eq!(op, Op::MatMul);
        assert_eq!(ty.shape, vec![2, 5, 4]);
    }
}
