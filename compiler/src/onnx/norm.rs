//! `BatchNormalization` -> [`mnc_ir::Op::BatchNorm`] (inference form), `LRN` ->
//! [`mnc_ir::Op::Lrn`].
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__BatchNormalization.html>. Opset notes: opsets
//! 6 and 7 carry `spatial` (only 1 is supported) and opset 6 `is_test`; opset 9 drops
//! `spatial`; opset 14 adds `training_mode` (1 is refused); the optional training outputs
//! (running mean/var, saved statistics) must be unused. Opsets 1-5 (`consumed_inputs`) are
//! not supported.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__LRN.html>: `size` (required), `alpha` (default
//! 1e-4), `beta` (0.75), `bias` (1.0); opset 13 only adds bfloat16, so opsets 1 and 13 import
//! alike. The window of channel `c` is `c - floor((size-1)/2) ..= c + ceil((size-1)/2)`
//! ([`mnc_ir::Lrn::window`]).

use super::attrs::OnnxNode;
use super::{Ctx, OpResult};
use mnc_ir::{Lrn, NodeId, Op};

/// ONNX `BatchNormalization` in inference mode.
pub(crate) fn batch_norm(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    if n.opset < 6 {
        return Err(format!(
            "BatchNormalization of opset {} (with consumed_inputs) is not supported; re-export with opset >= 6",
            n.opset
        ));
    }
    n.only_attrs(&["epsilon", "momentum", "spatial", "is_test", "training_mode"])?;
    if n.flag("training_mode", false)? {
        return Err("training_mode=1 is not supported (inference only)".into());
    }
    if n.int_or("spatial", 1)? != 1 {
        return Err("spatial=0 (per-activation statistics) is not supported".into());
    }
    let epsilon = n.float_or("epsilon", 1e-5)?;
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return Err(format!(
            "epsilon {epsilon} is not a finite non-negative number"
        ));
    }
    let ins = (0..5)
        .map(|k| cx.input(n, k))
        .collect::<OpResult<Vec<_>>>()?;
    cx.emit(n, Op::BatchNorm { epsilon }, &ins)
}

/// ONNX `LRN` (local response normalization across channels).
pub(crate) fn lrn(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["size", "alpha", "beta", "bias"])?;
    let size = match n.int("size")? {
        Some(s) if s >= 1 => s as usize,
        Some(s) => return Err(format!("size {s} must be at least 1")),
        None => return Err("attribute 'size' is required".into()),
    };
    let l = Lrn {
        size,
        alpha: n.float_or("alpha", 1e-4)?,
        beta: n.float_or("beta", 0.75)?,
        bias: n.float_or("bias", 1.0)?,
    };
    for (what, v) in [("alpha", l.alpha), ("beta", l.beta), ("bias", l.bias)] {
        if !v.is_finite() {
            return Err(format!("{what} {v} is not a finite number"));
        }
    }
    let x = cx.input(n, 0)?;
    cx.emit(n, Op::Lrn(l), &[x])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use mnc_ir::{Lrn, Op};

    fn lrn(opset: i64, attrs: Vec<onnx_protobuf::AttributeProto>) -> Result<Op, String> {
        let g = Model::new(opset)
            .input("x", &[2, 7, 5, 3])
            .node("LRN", &["x"], &["y"], attrs)
            .output("y")
            .import()
            .map_err(|e| e.to_string())?;
        let (op, ty) = op_of(&g, "y");
        assert_eq!(ty.shape, vec![2, 7, 5, 3]);
        Ok(op)
    }

    #[test]
    fn lrn_attributes_and_defaults() {
        for opset in [1, 9, 13] {
            let op = lrn(opset, vec![a_int("size", 5)]).unwrap();
            let want = Lrn {
                size: 5,
                alpha: 1e-4,
                beta: 0.75,
                bias: 1.0,
            };
            assert_eq!(op, Op::Lrn(want));
        }
        let attrs = vec![
            a_int("size", 4),
            a_float("alpha", 2e-5),
            a_float("beta", 0.5),
            a_float("bias", 2.0),
        ];
        let want = Lrn {
            size: 4,
            alpha: 2e-5,
            beta: 0.5,
            bias: 2.0,
        };
        assert_eq!(lrn(13, attrs).unwrap(), Op::Lrn(want));
    }

    #[test]
    fn lrn_errors_name_the_problem() {
        let e = lrn(13, vec![]).unwrap_err();
        assert!(
            e.contains("(LRN)") && e.contains("'size' is required"),
            "{e}"
        );
        let e = lrn(13, vec![a_int("size", 0)]).unwrap_err();
        assert!(e.contains("size 0"), "{e}");
        let e = lrn(13, vec![a_int("size", 3), a_float("beta", f32::NAN)]).unwrap_err();
        assert!(e.contains("beta NaN"), "{e}");
        let e = lrn(13, vec![a_int("size", 3), a_int("axis", 1)]).unwrap_err();
        assert!(e.contains("axis"), "{e}");
    }

    fn bn(opset: i64, attrs: Vec<onnx_protobuf::AttributeProto>, outs: &[&str]) -> Model {
        let mut m = Model::new(opset).input("x", &[2, 3, 5, 5]);
        for p in ["s", "b", "m", "v"] {
            m = m.init_f32(p, &[3], Some(vec![1.0, 0.5, 0.25]));
        }
        m.node(
            "BatchNormalization",
            &["x", "s", "b", "m", "v"],
            outs,
            attrs,
        )
        .output("y")
    }

    #[test]
    fn inference_batchnorm_keeps_epsilon() {
        for opset in [7, 9, 14, 15] {
            let g = bn(
                opset,
                vec![a_float("epsilon", 1e-3), a_float("momentum", 0.9)],
                &["y"],
            )
            .import()
            .unwrap();
            let (op, ty) = op_of(&g, "y");
            assert_eq!(op, Op::BatchNorm { epsilon: 1e-3 });
            assert_eq!(ty.shape, vec![2, 3, 5, 5]);
        }
        let g = bn(9, vec![], &["y"]).import().unwrap();
        assert_eq!(op_of(&g, "y").0, Op::BatchNorm { epsilon: 1e-5 });
    }

    #[test]
    fn training_forms_are_refused() {
        let e = bn(15, vec![a_int("training_mode", 1)], &["y"])
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("training_mode"), "{e}");
        let e = bn(7, vec![a_int("spatial", 0)], &["y"])
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("spatial"), "{e}");
        // an unused running-mean output is fine; a used one is not
        assert!(bn(9, vec![], &["y", "rm"]).import().is_ok());
        let e = bn(9, vec![], &["y", "rm"])
            .output("rm")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("'rm' is used"), "{e}");
        let e = bn(5, vec![], &["y"]).import().unwrap_err();
        assert!(e.to_string().contains("opset 5"), "{e}");
    }

    #[test]
    fn wrong_parameter_shape_is_an_error() {
        let e = Model::new(13)
            .input("x", &[1, 4, 2, 2])
            .init_f32("p", &[3], None)
            .node(
                "BatchNormalization",
                &["x", "p", "p", "p", "p"],
                &["y"],
                vec![],
            )
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("BatchNormalization"), "{e}");
    }
}
