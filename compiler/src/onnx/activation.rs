//! Activations -> [`mnc_ir::Op::Act`]: `Relu`, `Clip`, `Sigmoid`, `HardSigmoid`, `HardSwish`.
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__Relu.html>,
//! <https://onnx.ai/onnx/operators/onnx__Clip.html> (opset < 11: `min`/`max` attributes;
//! from 11: optional constant inputs; absent bounds are -inf/+inf),
//! <https://onnx.ai/onnx/operators/onnx__Sigmoid.html>,
//! <https://onnx.ai/onnx/operators/onnx__HardSigmoid.html> (alpha 0.2, beta 0.5 by default),
//! <https://onnx.ai/onnx/operators/onnx__HardSwish.html> (opset 14).
//! Opsets 1-5 carry a `consumed_inputs` attribute, which is refused as unknown.

use super::attrs::OnnxNode;
use super::{Ctx, OpResult};
use mnc_ir::tensor::TensorData;
use mnc_ir::{Activation, NodeId, Op, Tensor};

fn act(cx: &mut Ctx, n: &OnnxNode, a: Activation) -> OpResult<NodeId> {
    let x = cx.input(n, 0)?;
    cx.emit(n, Op::Act(a), &[x])
}

/// ONNX `Relu`.
pub(crate) fn relu(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    act(cx, n, Activation::Relu)
}

/// ONNX `Sigmoid`.
pub(crate) fn sigmoid(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    act(cx, n, Activation::Sigmoid)
}

/// ONNX `HardSigmoid`.
pub(crate) fn hard_sigmoid(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["alpha", "beta"])?;
    let alpha = n.float_or("alpha", 0.2)?;
    let beta = n.float_or("beta", 0.5)?;
    act(cx, n, Activation::HardSigmoid { alpha, beta })
}

/// ONNX `HardSwish`.
pub(crate) fn hard_swish(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    act(cx, n, Activation::HardSwish)
}

/// ONNX `Clip`. On an integer constant (a shape computation) it is evaluated here.
pub(crate) fn clip(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    let (min, max) = if n.opset < 11 {
        n.only_attrs(&["min", "max"])?;
        (n.float("min")?, n.float("max")?)
    } else {
        n.only_attrs(&[])?;
        (
            cx.static_scalar(n, 1, "min")?,
            cx.static_scalar(n, 2, "max")?,
        )
    };
    let x = cx.input(n, 0)?;
    if let Some(TensorData::I64(v)) = cx.const_of(x).map(|t| &t.data) {
        let lo = min.map(|m| m.ceil() as i64).unwrap_or(i64::MIN);
        let hi = max.map(|m| m.floor() as i64).unwrap_or(i64::MAX);
        let out: Vec<i64> = v.iter().map(|&a| a.max(lo).min(hi)).collect();
        let shape = cx.ty(x).shape.clone();
        let t = Tensor::from_i64(shape, out).map_err(|e| e.to_string())?;
        return Ok(cx.add_folded(n, t));
    }
    act(
        cx,
        n,
        Activation::Clip {
            min: min.unwrap_or(f32::NEG_INFINITY),
            max: max.unwrap_or(f32::INFINITY),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use mnc_ir::{Activation, Op};

    fn unary(opset: i64, op: &str, attrs: Vec<onnx_protobuf::AttributeProto>) -> Op {
        let g = Model::new(opset)
            .input("x", &[1, 3, 4, 4])
            .node(op, &["x"], &["y"], attrs)
            .output("y")
            .import()
            .unwrap();
        op_of(&g, "y").0
    }

    #[test]
    fn simple_activations() {
        assert_eq!(unary(13, "Relu", vec![]), Op::Act(Activation::Relu));
        assert_eq!(unary(13, "Sigmoid", vec![]), Op::Act(Activation::Sigmoid));
        assert_eq!(
            unary(14, "HardSwish", vec![]),
            Op::Act(Activation::HardSwish)
        );
        assert_eq!(
            unary(13, "HardSigmoid", vec![]),
            Op::Act(Activation::HardSigmoid {
                alpha: 0.2,
                beta: 0.5
            })
        );
        assert_eq!(
            unary(13, "HardSigmoid", vec![a_float("alpha", 1.0 / 6.0)]),
            Op::Act(Activation::HardSigmoid {
                alpha: 1.0 / 6.0,
                beta: 0.5
            })
        );
    }

    #[test]
    fn clip_attribute_form_before_opset_11() {
        assert_eq!(
            unary(6, "Clip", vec![a_float("min", 0.0), a_float("max", 6.0)]),
            Op::Act(Activation::Clip { min: 0.0, max: 6.0 })
        );
        assert_eq!(
            unary(6, "Clip", vec![a_float("max", 6.0)]),
            Op::Act(Activation::Clip {
                min: f32::NEG_INFINITY,
                max: 6.0
            })
        );
    }

    #[test]
    fn clip_input_form_from_opset_11() {
        let g = Model::new(13)
            .input("x", &[1, 3])
            .init_f32("lo", &[], Some(vec![0.0]))
            .init_f32("hi", &[], Some(vec![6.0]))
            .node("Identity", &["hi"], &["hi2"], vec![])
            .node("Clip", &["x", "lo", "hi2"], &["y"], vec![])
            .node("Clip", &["x", "", "hi"], &["z"], vec![])
            .node("Clip", &["x"], &["w"], vec![])
            .output("y")
            .output("z")
            .output("w")
            .import()
            .unwrap();
        assert_eq!(
            op_of(&g, "y").0,
            Op::Act(Activation::Clip { min: 0.0, max: 6.0 })
        );
        assert_eq!(
            op_of(&g, "z").0,
            Op::Act(Activation::Clip {
                min: f32::NEG_INFINITY,
                max: 6.0
            })
        );
        assert_eq!(
            op_of(&g, "w").0,
            Op::Act(Activation::Clip {
                min: f32::NEG_INFINITY,
                max: f32::INFINITY
            })
        );
    }

    #[test]
    fn clip_bound_must_be_constant() {
        let e = Model::new(13)
            .input("x", &[1, 3])
            .input("lo", &[])
            .node("Clip", &["x", "lo"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap_err();
        assert!(
            e.to_string().contains("min (input 1) must be a constant"),
            "{e}"
        );
    }

    #[test]
    fn clip_of_integer_constant_is_folded() {
        let g = Model::new(13)
            .init_i64("v", &[3], &[-3, 2, 9])
            .init_f32("lo", &[], Some(vec![0.0]))
            .init_f32("hi", &[], Some(vec![5.0]))
            .node("Clip", &["v", "lo", "hi"], &["y"], vec![])
            .output("y")
            .import()
            .unwrap();
        assert_eq!(const_i64(&g, "y"), vec![0, 2, 5]);
    }

    #[test]
    fn legacy_consumed_inputs_is_refused() {
        let e = Model::new(5)
            .input("x", &[1, 3])
            .node(
                "Relu",
                &["x"],
                &["y"],
                vec![a_ints("consumed_inputs", &[0])],
            )
            .output("y")
            .import()
            .unwrap_err();
        assert!(e.to_string().contains("consumed_inputs"), "{e}");
    }
}
