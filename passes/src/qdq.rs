//! QDQ folding (`qdq-fold`): the QDQ form of a quantized conv, as onnxruntime's
//! `quantize_static` writes it,
//!
//! ```text
//! xq -> DequantizeLinear -> Conv(w = DequantizeLinear(int8 constant),
//!                               b = DequantizeLinear(int32 constant)) [-> Relu | Clip] -> QuantizeLinear
//! ```
//!
//! becomes one [`Op::QConv`] on `xq` with the int8 weights and the int32 bias, its output the
//! `QuantizeLinear`'s (a fused ReLU/Clip is the output's clamp). Integer accumulation then
//! replaces the dequantize -> f32 conv -> quantize round trip: results agree with that round
//! trip within one quantization step of the output (the rounding of `acc * multiplier` once
//! instead of the f32 conv's own rounding), and equal onnxruntime's `QLinearConv`, which
//! requantizes the same way ([`mnc_ir::quant`]).
//!
//! Before that, `DequantizeLinear -> Pad -> QuantizeLinear` with the same parameters becomes
//! the integer `Pad` of the quantized tensor, and an integer Pad whose padding byte is the
//! zero point of the `QConv` reading it merges into that conv's pads (both exact).
//!
//! It also folds `DequantizeLinear -> activations -> QuantizeLinear` (per tensor: the QDQ
//! form of a HardSwish, HardSigmoid, Sigmoid, ... between quantized layers) into an
//! [`Op::QLut`], a table of the chain on every input value: exactly the same results.
//!
//! `DequantizeLinear(a) (+|*) DequantizeLinear(b) -> QuantizeLinear` (per tensor, one type;
//! `b` of `a`'s shape, or one value per channel for a product) becomes an [`Op::QBinary`]
//! with onnxruntime's `QLinearAdd` / `QLinearMul` formulas (what it runs for that pattern; the
//! float op differs on rounding ties, a few elements per million).
//!
//! And `DequantizeLinear -> GlobalAveragePool -> QuantizeLinear` (per tensor, one type) into
//! an [`Op::QGlobalAveragePool`]: the exact integer sum requantized once, which is what
//! onnxruntime runs for that pattern (`QLinearGlobalAveragePool`), instead of a float mean
//! that may round a tie the other way.
//!
//! Runs first in the pipeline (cleanup would fold the weights' `DequantizeLinear` into f32
//! constants) and only on targets with integer conv kernels (`TargetFacts::int8`):
//! elsewhere the QDQ graph runs in f32 with fake quantization, which is what the QDQ form
//! means. A conv whose parameters have no integer form (per-tensor input and output,
//! symmetric int8 weights per tensor or per output channel, an accumulator that cannot
//! overflow) is left as it is.

use crate::error::PassError;
use crate::manager::{Pass, PassContext};
use crate::util::{add_sources, single_user};
use mnc_ir::quant;
use mnc_ir::{
    Activation, BinaryOp, DType, Graph, NodeId, Op, QBinary, QBinaryOp, QConv, QLut, QMean,
    QParams, QType, Tensor, TensorData,
};

const NAME: &str = "qdq-fold";

/// The QDQ folding pass.
#[derive(Default)]
pub struct QdqFold;

/// `id` is a `DequantizeLinear`: its input and parameters.
fn dequantized(g: &Graph, id: NodeId) -> Option<(NodeId, &QParams)> {
    match &g.node(id).op {
        Op::Dequantize(q) => Some((g.inputs(id)[0], q)),
        _ => None,
    }
}

/// The constant tensor of node `id`.
fn constant(g: &Graph, id: NodeId) -> Option<&Tensor> {
    match &g.node(id).op {
        Op::Constant(t) => Some(t),
        _ => None,
    }
}

/// The QConv replacing the quantize node `q`, with its inputs and the nodes it replaces, or
/// `None` when the pattern does not match.
struct Match {
    op: QConv,
    x: NodeId,
    /// The int8 weights: an existing constant, or (a Gemm's, as `[M, K, 1, 1]`) a new one.
    w: Result<NodeId, Tensor>,
    /// A Gemm's `[N, K]` input and `[N, M]` output: the conv runs on `[N, K, 1, 1]` views.
    gemm: Option<[usize; 3]>,
    /// The int32 bias: an existing constant, or values to add as one.
    bias: Option<Result<NodeId, Tensor>>,
    conv: NodeId,
    act: Option<NodeId>,
}

fn match_at(g: &Graph, qn: NodeId) -> Option<Match> {
    let Op::Quantize(yq) = &g.node(qn).op else {
        return None;
    };
    let mut src = g.inputs(qn)[0];
    let mut act_node = None;
    let mut act = None;
    if let Op::Act(a @ (Activation::Relu | Activation::Clip { .. })) = g.node(src).op {
        if single_user(g, src)?.0 != qn {
            return None;
        }
        act_node = Some(src);
        act = Some(a);
        src = g.inputs(src)[0];
    }
    let (conv, gemm, wt) = match &g.node(src).op {
        Op::Conv(conv) => (conv.clone(), None, None),
        Op::Gemm(gm) => {
            let (conv, dims, w) = gemm_as_conv(g, src, gm)?;
            (conv, Some(dims), Some(w))
        }
        _ => return None,
    };
    if conv.epilogue.residual || single_user(g, src)?.0 != act_node.unwrap_or(qn) {
        return None;
    }
    let act = match (conv.epilogue.act, act) {
        (None, a) | (a, None) => a,
        (Some(_), Some(_)) => return None,
    };
    let ins = g.inputs(src);
    let (x, xq) = dequantized(g, ins[0])?;
    let (w, wq) = match wt {
        Some((t, q)) => (Err(t), q),
        None => {
            let (w, wq) = dequantized(g, ins[1])?;
            (Ok(w), wq.clone())
        }
    };
    let wt = match &w {
        Ok(id) => constant(g, *id)?,
        Err(t) => t,
    };
    let co = wt.shape.first().copied()?;
    if wt.dtype() != DType::I8 || xq.axis.is_some() || yq.axis.is_some() {
        return None;
    }
    let wq = &wq;
    let bias = if conv.has_bias {
        Some(int_bias(g, ins[2], xq.scale[0], wq, co)?)
    } else {
        None
    };
    let mut c = conv;
    c.epilogue.act = act;
    Some(Match {
        op: QConv {
            conv: c,
            x: xq.clone(),
            w: wq.clone(),
            y: yq.clone(),
            residual: None,
        },
        x,
        w,
        gemm,
        bias,
        conv: src,
        act: act_node,
    })
}

/// A Gemm `y[N, M] = x[N, K] * W + C` (no transposed A, alpha and beta 1, `W` the
/// dequantized int8 constant) as a 1x1 conv: the conv, `[N, K, M]`, and the weights as
/// `[M, K, 1, 1]` with their parameters per output channel (transposed when `W` is `[K, M]`).
#[allow(clippy::type_complexity)]
fn gemm_as_conv(
    g: &Graph,
    id: NodeId,
    gm: &mnc_ir::Gemm,
) -> Option<(mnc_ir::Conv, [usize; 3], (Tensor, QParams))> {
    if gm.trans_a || gm.alpha != 1.0 || (gm.has_c && gm.beta != 1.0) {
        return None;
    }
    let ins = g.inputs(id);
    let (n, k) = match g.node(ins[0]).ty.shape.as_slice() {
        &[n, k] => (n, k),
        _ => return None,
    };
    let (w, wq) = dequantized(g, ins[1])?;
    let TensorData::I8(v) = &constant(g, w)?.data else {
        return None;
    };
    // The output-channel axis of W, and W as [M][K].
    let (m, out_axis) = if gm.trans_b {
        (g.node(w).ty.shape[0], 0)
    } else {
        (g.node(w).ty.shape[1], 1)
    };
    if wq.axis.is_some_and(|a| a != out_axis) || v.len() != m * k {
        return None;
    }
    let data: Vec<i32> = (0..m * k)
        .map(|i| {
            let (o, kk) = (i / k, i % k);
            v[if gm.trans_b { o * k + kk } else { kk * m + o }] as i32
        })
        .collect();
    let t = Tensor::from_i32_values(vec![m, k, 1, 1], DType::I8, data).ok()?;
    let q = QParams {
        axis: wq.axis.map(|_| 0),
        ..wq.clone()
    };
    let conv = mnc_ir::Conv {
        has_bias: gm.has_c,
        epilogue: gm.epilogue,
        ..Default::default()
    };
    Some((conv, [n, k, m], (t, q)))
}

/// The int32 bias of a conv with input scale `xs` and weights `wq` over `co` output channels:
/// the `DequantizeLinear`'s int32 constant when its scales are `xs * w_scale[c]` (what
/// onnxruntime writes), else the real bias (dequantized, or an f32 constant) requantized to
/// that scale with [`mnc_ir::quant`]'s rounding.
fn int_bias(
    g: &Graph,
    b: NodeId,
    xs: f32,
    wq: &QParams,
    co: usize,
) -> Option<Result<NodeId, Tensor>> {
    let scale: Vec<f32> = (0..co).map(|c| xs * wq.at(c).0).collect();
    let real: Vec<f32> = match dequantized(g, b) {
        Some((bi, bq)) => {
            let t = constant(g, bi)?;
            let TensorData::I32(v) = &t.data else {
                return None;
            };
            if v.len() != co {
                return None;
            }
            let same = (0..co).all(|c| bq.at(c) == (scale[c], 0));
            if same {
                return Some(Ok(bi));
            }
            (0..co)
                .map(|c| mnc_ir::quant::dequantize(v[c], bq.at(c).0, bq.at(c).1))
                .collect()
        }
        None => constant(g, b)?.as_f32()?.to_vec(),
    };
    if real.len() != co {
        return None;
    }
    let mut q = Vec::with_capacity(co);
    for c in 0..co {
        let v = (real[c] as f64 / scale[c] as f64).round_ties_even();
        if v.is_nan() || v.abs() >= (1u64 << 30) as f64 {
            return None;
        }
        q.push(v as i32);
    }
    Some(Err(Tensor {
        shape: vec![co],
        data: TensorData::I32(q),
    }))
}

/// The lookup table replacing the quantize node `qn` when its input is a chain of
/// activations (single users) on a per-tensor `DequantizeLinear`: the table, the quantized
/// input, and the nodes it replaces.
fn lut_at(g: &Graph, qn: NodeId) -> Option<(QLut, NodeId, Vec<NodeId>)> {
    let Op::Quantize(yq) = &g.node(qn).op else {
        return None;
    };
    let mut acts = Vec::new();
    let mut chain = Vec::new();
    let mut src = g.inputs(qn)[0];
    while let Op::Act(a) = g.node(src).op {
        if single_user(g, src)?.0 != *chain.last().unwrap_or(&qn) {
            return None;
        }
        acts.push(a);
        chain.push(src);
        src = g.inputs(src)[0];
    }
    let (x, xq) = dequantized(g, src)?;
    if acts.is_empty() || xq.axis.is_some() || yq.axis.is_some() {
        return None;
    }
    let (xt, yt) = (QType::of(xq.dtype)?, QType::of(yq.dtype)?);
    let ((xs, xzp), (ys, yzp)) = (xq.at(0), yq.at(0));
    let lut = QLut::of(xt, yt, |v| {
        let r = acts
            .iter()
            .rev()
            .fold(quant::dequantize(v, xs, xzp), |r, a| a.apply(r));
        quant::quantize(r, ys, yzp, yt)
    });
    Some((lut, x, chain))
}

/// `QuantizeLinear(y) <- GlobalAveragePool (single user) <- DequantizeLinear(x) <- xq`, per
/// tensor: the quantized mean, the quantized input and the pool node (whether the
/// parameters have an integer form is left to inference).
fn mean_at(g: &Graph, qn: NodeId) -> Option<(QMean, NodeId, NodeId)> {
    let Op::Quantize(yq) = &g.node(qn).op else {
        return None;
    };
    let pool = g.inputs(qn)[0];
    if !matches!(g.node(pool).op, Op::GlobalAveragePool) || single_user(g, pool)?.0 != qn {
        return None;
    }
    let (x, xq) = dequantized(g, g.inputs(pool)[0])?;
    if xq.axis.is_some() || yq.axis.is_some() {
        return None;
    }
    let m = QMean {
        x: xq.clone(),
        y: yq.clone(),
    };
    Some((m, x, pool))
}

/// `QuantizeLinear(y) <- Add | Mul (single user) <- DequantizeLinear(a), DequantizeLinear(b)`,
/// per tensor, `b` of `a`'s shape (or one value per channel for a product, either operand):
/// the quantized op, its two quantized inputs (`a` the full-size one) and the float node
/// (whether the parameters have the integer form is left to inference).
fn binary_at(g: &Graph, qn: NodeId) -> Option<(QBinary, [NodeId; 2], NodeId)> {
    let Op::Quantize(yq) = &g.node(qn).op else {
        return None;
    };
    let node = g.inputs(qn)[0];
    let op = match g.node(node).op {
        Op::Binary(BinaryOp::Add) => QBinaryOp::Add,
        Op::Binary(BinaryOp::Mul) => QBinaryOp::Mul,
        _ => return None,
    };
    if single_user(g, node)?.0 != qn || yq.axis.is_some() {
        return None;
    }
    let ins = g.inputs(node);
    let (mut a, mut b) = (dequantized(g, ins[0])?, dequantized(g, ins[1])?);
    let shape = |x: NodeId| g.node(x).ty.shape.clone();
    if op == QBinaryOp::Mul && QBinary::inner(&shape(a.0), &shape(b.0)).is_none() {
        // Both operands commute: the per-channel one may come first.
        std::mem::swap(&mut a, &mut b);
    }
    let inner = QBinary::inner(&shape(a.0), &shape(b.0))?;
    if op == QBinaryOp::Add && inner != 1 {
        return None;
    }
    let q = QBinary {
        op,
        a: a.1.clone(),
        b: b.1.clone(),
        y: yq.clone(),
    };
    Some((q, [a.0, b.0], node))
}

/// `QuantizeLinear(p) <- Pad(value v) <- DequantizeLinear(p) <- x` (the same per-tensor
/// parameters on both sides): the Pad of `x` itself with the byte `quantize(v)`. Exact: a
/// quantized value survives the dequantize/quantize round trip (`|q - zp| < 2^22`), and a
/// padded cell is `quantize(v)` either way.
fn int_pad_at(g: &Graph, qn: NodeId) -> Option<(Op, NodeId)> {
    let Op::Quantize(yq) = &g.node(qn).op else {
        return None;
    };
    let pad = g.inputs(qn)[0];
    let Op::Pad { pads, value } = &g.node(pad).op else {
        return None;
    };
    if single_user(g, pad)?.0 != qn {
        return None;
    }
    let (x, xq) = dequantized(g, g.inputs(pad)[0])?;
    if xq != yq || yq.axis.is_some() {
        return None;
    }
    let (s, zp) = yq.at(0);
    let q = quant::quantize(*value, s, zp, QType::of(yq.dtype)?);
    Some((
        Op::Pad {
            pads: pads.clone(),
            value: q as f32,
        },
        x,
    ))
}

/// A `QConv` reading a spatial-only integer `Pad` (single user) whose padding byte is the
/// conv's input zero point: the conv with the pads added to its own (a padding cell of a
/// quantized conv is its zero point already). Exact.
fn merge_pad_into_qconv(g: &mut Graph, qc: NodeId) -> bool {
    let Op::QConv(q) = &g.node(qc).op else {
        return false;
    };
    let pad = g.inputs(qc)[0];
    let Op::Pad { pads, value } = &g.node(pad).op else {
        return false;
    };
    let fits = pads.len() == 8
        && pads[0] == 0
        && pads[1] == 0
        && pads[4] == 0
        && pads[5] == 0
        && *value == q.x.at(0).1 as f32
        && single_user(g, pad).map(|u| u.0) == Some(qc);
    if !fits {
        return false;
    }
    let mut merged = (**q).clone();
    let add = [pads[2], pads[3], pads[6], pads[7]];
    for (p, a) in merged.conv.pads.iter_mut().zip(add) {
        *p += a;
    }
    let x = g.inputs(pad)[0];
    let mut ins = g.inputs(qc);
    ins[0] = x;
    let tys: Vec<&mnc_ir::TensorType> = ins.iter().map(|&i| &g.node(i).ty).collect();
    let op = Op::QConv(Box::new(merged));
    match mnc_ir::infer::infer(&op, &tys) {
        Ok(ty) if ty == g.node(qc).ty => {}
        _ => return false,
    }
    let src = g.node(pad).sources.clone();
    g.node_mut(qc).op = op;
    g.set_inputs(qc, &ins);
    add_sources(g, qc, &src);
    true
}

/// Adds the `QConv` of a match on its inputs (new weight and bias constants, a Gemm's
/// reshapes to and from `[N, K, 1, 1]`), recording every node it adds in `added`; the node
/// standing for the quantized output, or `None` when a node does not infer (parameters
/// without an integer form).
#[allow(clippy::too_many_arguments)]
fn build_qconv(
    g: &mut Graph,
    op: QConv,
    x: NodeId,
    w: Result<NodeId, Tensor>,
    bias: Option<Result<NodeId, Tensor>>,
    gemm: Option<[usize; 3]>,
    name: &str,
    added: &mut Vec<NodeId>,
) -> Option<NodeId> {
    let mut constant = |g: &mut Graph, c: Result<NodeId, Tensor>, tag: &str| match c {
        Ok(id) => id,
        Err(t) => {
            let id = g.add_constant(g.unique_name(&format!("{name}/{tag}")), t);
            added.push(id);
            id
        }
    };
    let w = constant(g, w, "weight_int8");
    let b = bias.map(|b| constant(g, b, "bias_int32"));
    let mut node = |g: &mut Graph, tag: &str, op: Op, ins: &[NodeId]| {
        let id = g
            .add_node_inferred(g.unique_name(&format!("{name}/{tag}")), op, ins)
            .ok()?;
        added.push(id);
        Some(id)
    };
    let x = match gemm {
        Some([n, k, _]) => node(
            g,
            "nchw",
            Op::Reshape {
                shape: vec![n, k, 1, 1],
            },
            &[x],
        )?,
        None => x,
    };
    let mut ins = vec![x, w];
    ins.extend(b);
    let y = node(g, "int8", Op::QConv(Box::new(op)), &ins)?;
    match gemm {
        Some([n, _, m]) => node(g, "rows", Op::Reshape { shape: vec![n, m] }, &[y]),
        None => Some(y),
    }
}

impl Pass for QdqFold {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<usize, PassError> {
        if !cx.target.int8 {
            return Ok(0);
        }
        let mut n = 0;
        // Pads between a dequantize and a quantize of the same parameters become integer Pads
        // (timm's TF-"same" padding, quantized by onnxruntime), so the conv after them folds.
        for qn in g.topo_order().map_err(PassError::ir(NAME))? {
            let Some((op, x)) = int_pad_at(g, qn) else {
                continue;
            };
            let name = g.node(qn).name.clone();
            let tmp = g.unique_name(&format!("{name}/int"));
            let Ok(id) = g.add_node_inferred(tmp, op, &[x]) else {
                continue;
            };
            let pad = g.inputs(qn)[0];
            let mut sources = g.node(pad).sources.clone();
            sources.extend(g.node(qn).sources.clone());
            g.replace_all_uses(qn, id);
            g.remove_node(qn);
            g.remove_node(pad);
            g.node_mut(id).name = name;
            add_sources(g, id, &sources);
            n += 1;
        }
        for qn in g.topo_order().map_err(PassError::ir(NAME))? {
            if !g.contains(qn) {
                continue;
            }
            let Some(m) = match_at(g, qn) else {
                continue;
            };
            let conv_name = g.node(m.conv).name.clone();
            // Nodes added for this match, removed again if it does not apply after all.
            let mut added: Vec<NodeId> = Vec::new();
            let Some(id) = build_qconv(g, m.op, m.x, m.w, m.bias, m.gemm, &conv_name, &mut added)
                .filter(|&id| g.node(id).ty == g.node(qn).ty)
            else {
                for a in added.into_iter().rev() {
                    g.remove_node(a);
                }
                continue;
            };
            let mut sources = g.node(m.conv).sources.clone();
            for k in m.act.iter().chain([&qn]) {
                sources.extend(g.node(*k).sources.clone());
            }
            g.replace_all_uses(qn, id);
            g.remove_node(qn);
            if let Some(a) = m.act {
                g.remove_node(a);
            }
            g.remove_node(m.conv);
            g.node_mut(id).name = conv_name;
            g.node_mut(id).sources.clear();
            add_sources(g, id, &sources);
            n += 1;
        }
        // The dequantize nodes the folds bypassed still read the Pads: drop them first.
        if n > 0 {
            g.remove_dead();
        }
        for id in g.topo_order().map_err(PassError::ir(NAME))? {
            if merge_pad_into_qconv(g, id) {
                n += 1;
            }
        }
        for qn in g.topo_order().map_err(PassError::ir(NAME))? {
            if !g.contains(qn) {
                continue;
            }
            let Some((op, ins, chain)) = lut_at(g, qn)
                .map(|(lut, x, chain)| (Op::QLut(lut), vec![x], chain))
                .or_else(|| {
                    mean_at(g, qn)
                        .map(|(m, x, pool)| (Op::QGlobalAveragePool(m), vec![x], vec![pool]))
                })
                .or_else(|| {
                    binary_at(g, qn).map(|(q, ab, node)| (Op::QBinary(q), ab.to_vec(), vec![node]))
                })
            else {
                continue;
            };
            let name = g.node(qn).name.clone();
            let tmp = g.unique_name(&format!("{name}/{}", op.kind()));
            let Ok(id) = g.add_node_inferred(tmp, op, &ins) else {
                continue;
            };
            let mut sources: Vec<String> = Vec::new();
            for k in chain.iter().rev().chain([&qn]) {
                sources.extend(g.node(*k).sources.clone());
            }
            g.replace_all_uses(qn, id);
            g.remove_node(qn);
            for k in chain {
                g.remove_node(k);
            }
            g.node_mut(id).name = name;
            add_sources(g, id, &sources);
            n += 1;
        }
        if n > 0 {
            g.remove_dead();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::TargetFacts;
    use mnc_ir::{Conv, TensorType};

    /// `x -> Q -> DQ -> Conv(DQ(w int8 per channel), DQ(b int32)) -> Clip(0, 6) -> Q -> DQ`.
    fn qdq_conv(group: usize, bias_scale_matches: bool) -> Graph {
        qdq_conv_padded(group, bias_scale_matches, None)
    }

    /// [`qdq_conv`] with `DQ -> Pad -> Q -> DQ` (the quantized TF-"same" padding) before the
    /// conv when `pad` is given.
    fn qdq_conv_padded(group: usize, bias_scale_matches: bool, pad: Option<Vec<usize>>) -> Graph {
        let mut rng = Lcg::new(7);
        let (ci, co) = (8, 16);
        let mut g = Graph::new("qdq");
        let x = g.add_input("x", TensorType::f32(vec![2, ci, 6, 5]));
        let xq = QParams::per_tensor(DType::U8, 0.04, 120);
        let q = g
            .add_node_inferred("xq", Op::Quantize(xq.clone()), &[x])
            .unwrap();
        let mut dq = g
            .add_node_inferred("xdq", Op::Dequantize(xq.clone()), &[q])
            .unwrap();
        if let Some(pads) = pad {
            let p = g
                .add_node_inferred("pad", Op::Pad { pads, value: 0.0 }, &[dq])
                .unwrap();
            let pq = g
                .add_node_inferred("pq", Op::Quantize(xq.clone()), &[p])
                .unwrap();
            dq = g
                .add_node_inferred("pdq", Op::Dequantize(xq), &[pq])
                .unwrap();
        }
        let cig = ci / group;
        let wv: Vec<i32> = (0..co * cig * 9)
            .map(|_| rng.uniform(-127.0, 127.0) as i32)
            .collect();
        let w = g.add_constant(
            "w",
            Tensor::from_i32_values(vec![co, cig, 3, 3], DType::I8, wv).unwrap(),
        );
        let ws: Vec<f32> = (0..co).map(|c| 0.002 + 0.0003 * c as f32).collect();
        let wq = QParams {
            dtype: DType::I8,
            axis: Some(0),
            scale: ws.clone(),
            zero_point: vec![0; co],
        };
        let wdq = g
            .add_node_inferred("wdq", Op::Dequantize(wq), &[w])
            .unwrap();
        let bv: Vec<i32> = (0..co).map(|c| c as i32 * 37 - 300).collect();
        let b = g.add_constant(
            "b",
            Tensor::from_i32_values(vec![co], DType::I32, bv).unwrap(),
        );
        let fudge = if bias_scale_matches { 1.0 } else { 1.5 };
        let bq = QParams {
            dtype: DType::I32,
            axis: Some(0),
            scale: ws.iter().map(|s| 0.04 * s * fudge).collect(),
            zero_point: vec![0; co],
        };
        let bdq = g
            .add_node_inferred("bdq", Op::Dequantize(bq), &[b])
            .unwrap();
        let conv = Op::Conv(Conv {
            kernel: [3, 3],
            pads: [1, 1, 1, 1],
            group,
            has_bias: true,
            ..Default::default()
        });
        let c = g.add_node_inferred("conv", conv, &[dq, wdq, bdq]).unwrap();
        let r = act(&mut g, "relu6", Activation::Clip { min: 0.0, max: 6.0 }, c);
        let yq = QParams::per_tensor(DType::U8, 6.0 / 255.0, 0);
        let q2 = g
            .add_node_inferred("yq", Op::Quantize(yq.clone()), &[r])
            .unwrap();
        let y = g
            .add_node_inferred("ydq", Op::Dequantize(yq), &[q2])
            .unwrap();
        g.add_output("y", y);
        g
    }

    /// `g` after `qdq-fold` alone for `target`, and the run's report.
    fn fold(g: &Graph, target: TargetFacts) -> (Graph, crate::PipelineReport) {
        let mut folded = g.clone();
        let report = crate::manager::PassManager::new("t", PassContext { target })
            .once(QdqFold)
            .run(&mut folded)
            .unwrap();
        (folded, report)
    }

    /// The op kinds of `g`'s nodes.
    fn kinds(g: &Graph) -> Vec<&'static str> {
        g.node_ids().iter().map(|&i| g.node(i).op.kind()).collect()
    }

    /// Folded, the conv is integer and agrees with the fake-quantized f32 graph within one
    /// step of the output's scale on every element.
    #[test]
    fn a_qdq_conv_becomes_an_integer_conv_within_one_step() {
        for (group, matches) in [(1, true), (2, true), (8, false)] {
            let g = qdq_conv(group, matches);
            let (folded, report) = fold(&g, TargetFacts::default());
            assert!(report.header.contains("int8"), "{}", report.header);
            let kinds = kinds(&folded);
            assert!(kinds.contains(&"QConv"), "{kinds:?}");
            assert!(
                !kinds.contains(&"Conv") && !kinds.contains(&"Act"),
                "{kinds:?}"
            );
            within_one_step(&g, &folded, 3, 6.0 / 255.0, &format!("group {group}"));
        }
    }

    /// The QDQ classifier (`Gemm` with int8 weights, either layout) becomes a 1x1 integer conv
    /// between two views, within one output step.
    #[test]
    fn a_qdq_gemm_becomes_an_integer_conv() {
        for trans_b in [true, false] {
            let mut rng = Lcg::new(3);
            let (n, k, m) = (3, 37, 11);
            let mut g = Graph::new("gemm");
            let x = g.add_input("x", TensorType::f32(vec![n, k]));
            let xq = QParams::per_tensor(DType::U8, 0.02, 128);
            let q = g
                .add_node_inferred("xq", Op::Quantize(xq.clone()), &[x])
                .unwrap();
            let dq = g
                .add_node_inferred("xdq", Op::Dequantize(xq), &[q])
                .unwrap();
            let wshape = if trans_b { vec![m, k] } else { vec![k, m] };
            let wv: Vec<i32> = (0..m * k)
                .map(|_| rng.uniform(-127.0, 127.0) as i32)
                .collect();
            let w = g.add_constant("w", Tensor::from_i32_values(wshape, DType::I8, wv).unwrap());
            let ws: Vec<f32> = (0..m).map(|c| 0.003 + 0.0001 * c as f32).collect();
            let wq = QParams {
                dtype: DType::I8,
                axis: Some(if trans_b { 0 } else { 1 }),
                scale: ws.clone(),
                zero_point: vec![0; m],
            };
            let wdq = g
                .add_node_inferred("wdq", Op::Dequantize(wq), &[w])
                .unwrap();
            let b = g.add_constant(
                "b",
                Tensor::from_i32_values(
                    vec![m],
                    DType::I32,
                    (0..m as i32).map(|i| 50 * i - 200).collect(),
                )
                .unwrap(),
            );
            let bq = QParams {
                dtype: DType::I32,
                axis: Some(0),
                scale: ws.iter().map(|s| 0.02 * s).collect(),
                zero_point: vec![0; m],
            };
            let bdq = g
                .add_node_inferred("bdq", Op::Dequantize(bq), &[b])
                .unwrap();
            let gemm = Op::Gemm(mnc_ir::Gemm {
                trans_b,
                has_c: true,
                ..Default::default()
            });
            let y = g.add_node_inferred("fc", gemm, &[dq, wdq, bdq]).unwrap();
            let yq = QParams::per_tensor(DType::U8, 0.05, 100);
            let q2 = g
                .add_node_inferred("yq", Op::Quantize(yq.clone()), &[y])
                .unwrap();
            let out = g
                .add_node_inferred("ydq", Op::Dequantize(yq), &[q2])
                .unwrap();
            g.add_output("y", out);
            let (folded, _) = fold(&g, TargetFacts::default());
            let kinds = kinds(&folded);
            assert!(
                kinds.contains(&"QConv") && !kinds.contains(&"Gemm"),
                "{kinds:?}"
            );
            within_one_step(&g, &folded, 4, 0.05, &format!("transB {trans_b}"));
        }
    }

    /// A quantized zero Pad before the conv becomes part of the integer conv's padding.
    #[test]
    fn a_quantized_pad_merges_into_the_integer_conv() {
        let g = qdq_conv_padded(2, true, Some(vec![0, 0, 1, 0, 0, 0, 1, 1]));
        let (folded, _) = fold(&g, TargetFacts::default());
        let kinds = kinds(&folded);
        assert!(
            kinds.contains(&"QConv") && !kinds.contains(&"Pad"),
            "{kinds:?} {}",
            text(&folded)
        );
        let qc = folded
            .node_ids()
            .into_iter()
            .find(|&i| matches!(folded.node(i).op, Op::QConv(_)))
            .unwrap();
        let Op::QConv(q) = &folded.node(qc).op else {
            unreachable!()
        };
        assert_eq!(q.conv.pads, [2, 1, 2, 2], "{}", text(&folded));
        within_one_step(&g, &folded, 9, 6.0 / 255.0, "padded");
    }

    /// A float input `name` of `shape`, quantized and dequantized with `p`: the
    /// `DequantizeLinear` node.
    fn qdq_input(g: &mut Graph, name: &str, shape: &[usize], p: QParams) -> NodeId {
        let x = g.add_input(name, TensorType::f32(shape.to_vec()));
        let q = g
            .add_node_inferred(format!("{name}q"), Op::Quantize(p.clone()), &[x])
            .unwrap();
        g.add_node_inferred(format!("{name}dq"), Op::Dequantize(p), &[q])
            .unwrap()
    }

    /// Quantizes and dequantizes `node` with `p` into the graph output `y`.
    fn qdq_output(g: &mut Graph, node: NodeId, p: QParams) {
        let q = g
            .add_node_inferred("yq", Op::Quantize(p.clone()), &[node])
            .unwrap();
        let y = g.add_node_inferred("ydq", Op::Dequantize(p), &[q]).unwrap();
        g.add_output("y", y);
    }

    /// `folded` computes what `g` computes within one output step `step` on every element
    /// (random inputs from `seed`); `what` names the case in a failure.
    fn within_one_step(g: &Graph, folded: &Graph, seed: u64, step: f32, what: &str) {
        let inputs = random_inputs(g, seed);
        let (want, got) = (run(g, &inputs), run(folded, &inputs));
        for (a, b) in want[0]
            .as_f32()
            .unwrap()
            .iter()
            .zip(got[0].as_f32().unwrap())
        {
            assert!((a - b).abs() <= step * 1.0001, "{what}: {a} vs {b}");
        }
    }

    /// `DQ -> HardSwish -> Clip -> Q` becomes one lookup with exactly the chain's results.
    #[test]
    fn an_activation_chain_between_qdq_pairs_becomes_an_exact_table() {
        for (xt, yt) in [
            (DType::U8, DType::U8),
            (DType::I8, DType::U8),
            (DType::U8, DType::I8),
        ] {
            let mut g = Graph::new("lut");
            let xq = QParams::per_tensor(xt, 0.031, if xt == DType::U8 { 131 } else { 3 });
            let dq = qdq_input(&mut g, "x", &[1, 4, 9, 7], xq);
            let hs = act(&mut g, "hs", Activation::HardSwish, dq);
            let cl = act(
                &mut g,
                "clip",
                Activation::Clip {
                    min: -0.2,
                    max: 2.5,
                },
                hs,
            );
            let yq = QParams::per_tensor(yt, 0.013, if yt == DType::U8 { 20 } else { -50 });
            qdq_output(&mut g, cl, yq);
            let (folded, _) = fold(&g, TargetFacts::default());
            let kinds = kinds(&folded);
            assert!(
                kinds.contains(&"QLut") && !kinds.contains(&"Act"),
                "{kinds:?}"
            );
            let inputs: Vec<Tensor> = random_inputs(&g, 5)
                .into_iter()
                .map(|t| {
                    let v = t.as_f32().unwrap().iter().map(|v| v * 5.0).collect();
                    Tensor::from_f32(t.shape.clone(), v).unwrap()
                })
                .collect();
            assert_eq!(run(&g, &inputs), run(&folded, &inputs));
        }
    }

    /// `DQ -> GlobalAveragePool -> Q` becomes the integer mean when both sides have one
    /// type (within one output step of the float mean), and stays when they differ.
    #[test]
    fn a_quantized_global_average_pool_becomes_the_integer_mean() {
        for (xt, yt, folds) in [
            (DType::U8, DType::U8, true),
            (DType::I8, DType::I8, true),
            (DType::U8, DType::I8, false),
        ] {
            let mut g = Graph::new("mean");
            let xq = QParams::per_tensor(xt, 0.021, if xt == DType::U8 { 100 } else { -7 });
            let dq = qdq_input(&mut g, "x", &[2, 5, 7, 6], xq);
            let pool = g
                .add_node_inferred("pool", Op::GlobalAveragePool, &[dq])
                .unwrap();
            let ys = 0.007;
            let yq = QParams::per_tensor(yt, ys, if yt == DType::U8 { 128 } else { 1 });
            qdq_output(&mut g, pool, yq);
            let (folded, _) = fold(&g, TargetFacts::default());
            let kinds = kinds(&folded);
            assert_eq!(kinds.contains(&"QGlobalAveragePool"), folds, "{kinds:?}");
            assert_eq!(kinds.contains(&"GlobalAveragePool"), !folds, "{kinds:?}");
            within_one_step(&g, &folded, 11, ys, &format!("{xt} -> {yt}"));
        }
    }

    /// `DQ(a) + DQ(b) -> Q` and `DQ(x) * DQ(s) -> Q` (s one value per channel, either
    /// operand first) become the integer ops when the three share one type (within one
    /// output step of the float op), and stay when they do not or a sum broadcasts.
    #[test]
    fn quantized_sums_and_products_become_integer_ops() {
        let full = vec![2, 6, 5, 7];
        let chan = vec![2, 6, 1, 1];
        for (op, t, yt, b_shape, swap, folds) in [
            (BinaryOp::Add, DType::U8, DType::U8, &full, false, true),
            (BinaryOp::Add, DType::I8, DType::I8, &full, false, true),
            (BinaryOp::Add, DType::U8, DType::I8, &full, false, false),
            (BinaryOp::Add, DType::U8, DType::U8, &chan, false, false),
            (BinaryOp::Mul, DType::U8, DType::U8, &chan, false, true),
            (BinaryOp::Mul, DType::U8, DType::U8, &chan, true, true),
            (BinaryOp::Mul, DType::I8, DType::I8, &full, false, true),
        ] {
            let mut g = Graph::new("binary");
            let mut dq = Vec::new();
            for (k, s, shape) in [("a", 0.03f32, &full), ("b", 0.011, b_shape)] {
                let p = QParams::per_tensor(t, s, if t == DType::U8 { 120 } else { 5 });
                dq.push(qdq_input(&mut g, k, shape, p));
            }
            if swap {
                dq.reverse();
            }
            let node = g.add_node_inferred("op", Op::Binary(op), &dq).unwrap();
            let ys = if op == BinaryOp::Add { 0.037 } else { 0.0021 };
            let yq = QParams::per_tensor(yt, ys, if yt == DType::U8 { 100 } else { -3 });
            qdq_output(&mut g, node, yq);
            let (folded, _) = fold(&g, TargetFacts::default());
            let kinds = kinds(&folded);
            let (qk, fk) = if op == BinaryOp::Add {
                ("QAdd", "Add")
            } else {
                ("QMul", "Mul")
            };
            assert_eq!(kinds.contains(&qk), folds, "{op:?} {b_shape:?}: {kinds:?}");
            assert_eq!(kinds.contains(&fk), !folds, "{op:?} {b_shape:?}: {kinds:?}");
            within_one_step(&g, &folded, 13, ys, &format!("{op:?} {b_shape:?}"));
        }
    }

    #[test]
    fn nothing_folds_without_integer_kernels() {
        let g = qdq_conv(1, true);
        let target = TargetFacts {
            int8: false,
            ..Default::default()
        };
        assert_eq!(text(&fold(&g, target).0), text(&g));
    }
}
