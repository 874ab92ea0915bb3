//! Quantized ONNX: `QuantizeLinear` -> [`Op::Quantize`], `DequantizeLinear` ->
//! [`Op::Dequantize`] (the QDQ form onnxruntime's `quantize_static` writes), and
//! `QLinearConv` -> [`Op::QConv`] (the operator form). Numerics: [`mnc_ir::quant`].
//!
//! Specs: <https://onnx.ai/onnx/operators/onnx__QuantizeLinear.html>,
//! <https://onnx.ai/onnx/operators/onnx__DequantizeLinear.html>,
//! <https://onnx.ai/onnx/operators/onnx__QLinearConv.html>. Opset notes: 10 introduced the
//! Q/DQ pair (per tensor); 13 added `axis` (per-axis scales, default axis 1); 19 added
//! `saturate` (float8 only: ignored for integer types) and 21 `block_size` (blocked
//! quantization: refused unless 0) and `output_dtype` (read: it must agree with the zero
//! point). Scales and zero points must be constants (dynamic quantization is refused); only
//! `uint8`/`int8` (and an `int32` input of `DequantizeLinear`, a bias) are supported.
//! `QLinearConv` (opset 10) takes the attributes of `Conv`; its weights must be `int8` with
//! zero points 0 (symmetric), the input and output parameters per tensor.
//!
//! The other ops of the operator form are decomposed exactly into
//! `DequantizeLinear -> float op -> QuantizeLinear` (their definition):
//! `QLinearMatMul` (opset 10), and onnxruntime's `com.microsoft` contrib ops `QLinearAdd`,
//! `QLinearMul`, `QLinearGlobalAveragePool` (`channels_last = 0` only), `QLinearSigmoid` and
//! `QGemm` (<https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md>).
//! onnxruntime's own kernels for them compute in float with scale ratios, so their outputs
//! may differ from the decomposition by one quantization step where a value rounds at a tie.
//! `ConvInteger`/`MatMulInteger` (int32 outputs) are not supported.

use super::attrs::OnnxNode;
use super::conv::conv_attrs;
use super::{Ctx, OpResult};
use mnc_ir::tensor::TensorData;
use mnc_ir::{Activation, BinaryOp, DType, Gemm, NodeId, Op, QConv, QParams, Tensor};

/// The constant scale (`k`) and optional zero point (`k + 1`) of a Q/DQ-style node for a
/// value of `shape`, with the element type `default` when the zero point is absent.
fn params(
    cx: &Ctx,
    n: &OnnxNode,
    k: usize,
    shape: &[usize],
    default: DType,
    axis_attr: Option<i64>,
) -> OpResult<QParams> {
    let what = |i: usize| n.input_name(i).unwrap_or_default().to_string();
    let s_id = cx.input(n, k)?;
    let scale = cx.const_of(s_id).ok_or_else(|| {
        format!(
            "scale '{}' must be a constant (dynamic quantization is not supported)",
            what(k)
        )
    })?;
    let scale = scale
        .as_f32()
        .ok_or_else(|| format!("scale '{}' must be float", what(k)))?
        .to_vec();
    let (dtype, zero_point) = match cx.opt_input(n, k + 1)? {
        None => (default, vec![0; scale.len()]),
        Some(z) => {
            let t = cx
                .const_of(z)
                .ok_or_else(|| format!("zero point '{}' must be a constant", what(k + 1)))?;
            let dtype = match t.dtype() {
                // INT32 initializers import as i64 (see `data`): an int32 zero point.
                DType::I64 => DType::I32,
                d => d,
            };
            let zp = t
                .to_i64_vec()
                .ok_or_else(|| format!("zero point '{}' must be an integer tensor", what(k + 1)))?;
            let zp: Vec<i32> = zp
                .iter()
                .map(|&v| i32::try_from(v).map_err(|_| format!("zero point {v} out of range")))
                .collect::<OpResult<_>>()?;
            if zp.len() != scale.len() {
                return Err(format!(
                    "{} scales but {} zero points",
                    scale.len(),
                    zp.len()
                ));
            }
            (dtype, zp)
        }
    };
    // One scale is per tensor whatever the axis says (the same values either way).
    let per_tensor = scale.len() == 1;
    let axis = if per_tensor {
        None
    } else {
        let a = axis_attr.unwrap_or(1);
        Some(super::norm_axis(a, shape.len(), "axis")?)
    };
    let q = QParams {
        dtype,
        axis,
        scale,
        zero_point,
    };
    q.check(shape)
        .map_err(|e| format!("quantization parameters: {e}"))?;
    Ok(q)
}

/// Refuses the attributes of opsets 19/21 that select other forms than plain integer
/// quantization.
fn check_q_attrs(n: &OnnxNode) -> OpResult<()> {
    n.only_attrs(&["axis", "saturate", "block_size", "output_dtype"])?;
    if n.int_or("block_size", 0)? != 0 {
        return Err("blocked quantization (block_size != 0) is not supported".into());
    }
    Ok(())
}

/// Input `k` of `n`, a constant integer tensor that ONNX types as int32 (the importer holds
/// INT32 initializers as i64, see `data`), as a new `i32` constant node (`what` names it in
/// errors).
fn int32_constant(cx: &mut Ctx, n: &OnnxNode, k: usize, what: &str) -> OpResult<NodeId> {
    let id = cx.input(n, k)?;
    let t = cx
        .const_of(id)
        .ok_or_else(|| format!("{what} must be a constant int32 tensor"))?;
    let v: Vec<i32> = t
        .to_i64_vec()
        .ok_or_else(|| format!("{what} must be int32"))?
        .iter()
        .map(|&v| i32::try_from(v).map_err(|_| format!("{what} value {v} is not an int32")))
        .collect::<OpResult<_>>()?;
    let shape = t.shape.clone();
    let name = cx.unique(&format!("{}/int32", n.input_name(k).unwrap_or_default()));
    Ok(cx.g.add_constant(
        name,
        Tensor {
            shape,
            data: TensorData::I32(v),
        },
    ))
}

/// ONNX `QuantizeLinear`.
pub(crate) fn quantize_linear(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    check_q_attrs(n)?;
    let x = cx.input(n, 0)?;
    let shape = cx.ty(x).shape.clone();
    let q = params(cx, n, 1, &shape, DType::U8, n.int("axis")?)?;
    if !matches!(q.dtype, DType::U8 | DType::I8) {
        return Err(format!(
            "quantizing to {} is not supported (u8, i8 only)",
            q.dtype
        ));
    }
    if let Some(od) = n.int("output_dtype")? {
        let want = match q.dtype {
            DType::U8 => 2,
            _ => 3,
        };
        if od != 0 && od != want {
            return Err(format!(
                "output_dtype {od} disagrees with the zero point's type {}",
                q.dtype
            ));
        }
    }
    cx.emit(n, Op::Quantize(q), &[x])
}

/// ONNX `DequantizeLinear`. An int32 constant input (a bias) is narrowed from the importer's
/// i64 to `i32`.
pub(crate) fn dequantize_linear(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    check_q_attrs(n)?;
    let mut x = cx.input(n, 0)?;
    let shape = cx.ty(x).shape.clone();
    let in_type = match cx.ty(x).dtype {
        DType::I64 => DType::I32,
        d => d,
    };
    let q = params(cx, n, 1, &shape, in_type, n.int("axis")?)?;
    if q.dtype != in_type {
        return Err(format!(
            "input is {in_type} but the zero point is {}",
            q.dtype
        ));
    }
    if cx.ty(x).dtype == DType::I64 {
        x = int32_constant(cx, n, 0, "an int32 input (a bias)")?;
    }
    cx.emit(n, Op::Dequantize(q), &[x])
}

/// ONNX `QLinearConv`: inputs x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
/// y_zero_point, optional int32 bias.
pub(crate) fn qlinear_conv(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    let x = cx.input(n, 0)?;
    let w = cx.input(n, 3)?;
    let b = cx.opt_input(n, 8)?;
    let conv = conv_attrs(cx, n, x, w, b.is_some())?;
    let xt = cx.ty(x).clone();
    let wt = cx.ty(w).clone();
    let xq = params(cx, n, 1, &xt.shape, xt.dtype, None)?;
    let wq = params(cx, n, 4, &wt.shape, wt.dtype, Some(0))?;
    // The output's shape is known after inference; its parameters are per tensor.
    let yq = params(cx, n, 6, &[], DType::U8, None)?;
    let mut ins = vec![x, w];
    if b.is_some() {
        ins.push(int32_constant(cx, n, 8, "the bias")?);
    }
    let op = Op::QConv(Box::new(QConv {
        conv,
        x: xq,
        w: wq,
        y: yq,
        residual: None,
    }));
    cx.emit(n, op, &ins)
}

/// Adds `op` on `ins` as one part of the decomposition of `n` (named `{n}/{part}`).
fn part(cx: &mut Ctx, n: &OnnxNode, tag: &str, op: Op, ins: &[NodeId]) -> OpResult<NodeId> {
    let name = cx.unique(&format!("{}/{tag}", n.name));
    let id =
        cx.g.add_node_inferred(name, op, ins)
            .map_err(|e| e.to_string())?;
    cx.g.node_mut(id).sources = vec![n.name.clone()];
    Ok(id)
}

/// `DequantizeLinear` of input `k` with the scale and zero point at inputs `k + 1`, `k + 2`.
fn dq_input(cx: &mut Ctx, n: &OnnxNode, k: usize, axis: Option<i64>) -> OpResult<NodeId> {
    let x = cx.input(n, k)?;
    let t = cx.ty(x).clone();
    let q = params(cx, n, k + 1, &t.shape, t.dtype, axis)?;
    part(cx, n, &format!("dq{k}"), Op::Dequantize(q), &[x])
}

/// `QuantizeLinear` of `y` with the scale and zero point at inputs `k`, `k + 1`; the node
/// stands for `n`'s output.
fn q_output(cx: &mut Ctx, n: &OnnxNode, k: usize, y: NodeId) -> OpResult<NodeId> {
    let shape = cx.ty(y).shape.clone();
    let q = params(cx, n, k, &shape, DType::U8, None)?;
    if !matches!(q.dtype, DType::U8 | DType::I8) {
        return Err(format!(
            "quantizing to {} is not supported (u8, i8 only)",
            q.dtype
        ));
    }
    cx.emit(n, Op::Quantize(q), &[y])
}

/// `QLinearAdd` / `QLinearMul` (`com.microsoft`): A, A_scale, A_zero_point, B, B_scale,
/// B_zero_point, C_scale, C_zero_point.
pub(crate) fn qlinear_binary(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    let op = match n.proto.op_type.as_str() {
        "QLinearAdd" => BinaryOp::Add,
        _ => BinaryOp::Mul,
    };
    let a = dq_input(cx, n, 0, None)?;
    let b = dq_input(cx, n, 3, None)?;
    let y = part(cx, n, "float", Op::Binary(op), &[a, b])?;
    q_output(cx, n, 6, y)
}

/// `QLinearGlobalAveragePool` (`com.microsoft`): X, x_scale, x_zero_point, y_scale,
/// y_zero_point; NCHW only.
pub(crate) fn qlinear_global_average_pool(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["channels_last"])?;
    if n.int_or("channels_last", 0)? != 0 {
        return Err("channels_last = 1 is not supported".into());
    }
    let x = dq_input(cx, n, 0, None)?;
    let y = part(cx, n, "float", Op::GlobalAveragePool, &[x])?;
    q_output(cx, n, 3, y)
}

/// `QLinearSigmoid` (`com.microsoft`): X, X_scale, X_zero_point, Y_scale, Y_zero_point.
pub(crate) fn qlinear_sigmoid(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    let x = dq_input(cx, n, 0, None)?;
    let y = part(cx, n, "float", Op::Act(Activation::Sigmoid), &[x])?;
    q_output(cx, n, 3, y)
}

/// `QLinearMatMul`: a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale,
/// y_zero_point (b may be quantized per column: axis 1 of a 2-D b).
pub(crate) fn qlinear_matmul(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&[])?;
    let a = dq_input(cx, n, 0, None)?;
    let b_rank = cx.ty(cx.input(n, 3)?).rank() as i64;
    let b = dq_input(cx, n, 3, Some(b_rank - 1))?;
    let y = part(cx, n, "float", Op::MatMul, &[a, b])?;
    q_output(cx, n, 6, y)
}

/// `QGemm` (`com.microsoft`): A, a_scale, a_zero_point, B, b_scale, b_zero_point, optional
/// int32 C (scale `a_scale * b_scale`), optional y_scale and y_zero_point (absent: a float
/// output); attributes `alpha`, `transA`, `transB`.
pub(crate) fn qgemm(cx: &mut Ctx, n: &OnnxNode) -> OpResult<NodeId> {
    n.only_attrs(&["alpha", "transA", "transB"])?;
    let trans_b = n.flag("transB", false)?;
    let a = dq_input(cx, n, 0, None)?;
    // Per output column: axis 0 of a transposed B, else axis 1.
    let b = dq_input(cx, n, 3, Some(if trans_b { 0 } else { 1 }))?;
    let (Op::Dequantize(aq), Op::Dequantize(bq)) = (&cx.g.node(a).op, &cx.g.node(b).op) else {
        return Err("internal: dequantized inputs expected".into());
    };
    let cols = bq.scale.len();
    let c_scale: Vec<f32> = bq.scale.iter().map(|&s| aq.scale[0] * s).collect();
    let mut ins = vec![a, b];
    if cx.opt_input(n, 6)?.is_some() {
        let ci = int32_constant(cx, n, 6, "C")?;
        let shape = cx.ty(ci).shape.clone();
        let axis = (c_scale.len() > 1).then(|| shape.len().saturating_sub(1));
        if axis.is_some() && shape.last() != Some(&cols) {
            return Err(format!(
                "C of shape {shape:?} does not match {cols} output columns"
            ));
        }
        let q = QParams {
            dtype: DType::I32,
            axis,
            zero_point: vec![0; c_scale.len()],
            scale: c_scale,
        };
        ins.push(part(cx, n, "dqC", Op::Dequantize(q), &[ci])?);
    }
    let gemm = Op::Gemm(Gemm {
        trans_a: n.flag("transA", false)?,
        trans_b,
        alpha: n.float_or("alpha", 1.0)?,
        beta: 1.0,
        has_c: ins.len() == 3,
        ..Default::default()
    });
    if cx.opt_input(n, 7)?.is_none() {
        return cx.emit(n, gemm, &ins);
    }
    let y = part(cx, n, "float", gemm, &ins)?;
    q_output(cx, n, 7, y)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use mnc_ir::{DType, Op, QParams};
    use onnx_protobuf::tensor_proto::DataType;

    #[test]
    fn qdq_pair_per_tensor_and_per_axis() {
        let g = Model::new(13)
            .input("x", &[1, 2, 3, 3])
            .init_f32("s", &[], Some(vec![0.5]))
            .init_int("z", DataType::UINT8, &[], &[10])
            .node("QuantizeLinear", &["x", "s", "z"], &["q"], vec![])
            .init_f32("s2", &[2], Some(vec![0.5, 0.25]))
            .init_int("z2", DataType::UINT8, &[2], &[10, 20])
            .node("DequantizeLinear", &["q", "s2", "z2"], &["y"], vec![])
            .output("q")
            .output("y")
            .import()
            .unwrap();
        let (op, ty) = op_of(&g, "q");
        assert_eq!(op, Op::Quantize(QParams::per_tensor(DType::U8, 0.5, 10)));
        assert_eq!(ty.dtype, DType::U8);
        let (op, ty) = op_of(&g, "y");
        assert_eq!(
            op,
            Op::Dequantize(QParams {
                dtype: DType::U8,
                axis: Some(1),
                scale: vec![0.5, 0.25],
                zero_point: vec![10, 20],
            })
        );
        assert_eq!(ty.dtype, DType::F32);
    }

    #[test]
    fn bad_quantization_parameters_are_refused() {
        let run = |scale: f32, attrs| {
            Model::new(13)
                .input("x", &[1, 2])
                .init_f32("s", &[], Some(vec![scale]))
                .init_int("z", DataType::UINT8, &[], &[0])
                .node("QuantizeLinear", &["x", "s", "z"], &["q"], attrs)
                .output("q")
                .import()
                .map_err(|e| e.to_string())
        };
        assert!(run(0.5, vec![]).is_ok());
        assert!(run(0.0, vec![]).unwrap_err().contains("scale"));
        assert!(run(-1.0, vec![]).is_err());
        let e = run(0.5, vec![a_int("block_size", 2)]).unwrap_err();
        assert!(e.contains("block_size"), "{e}");
        // A dynamic scale is refused with the reason.
        let e = Model::new(13)
            .input("x", &[1, 2])
            .input("s", &[])
            .node("QuantizeLinear", &["x", "s"], &["q"], vec![])
            .output("q")
            .import()
            .unwrap_err()
            .to_string();
        assert!(e.contains("dynamic quantization"), "{e}");
    }
}
