//! Static shape inference: the output type of every op from its inputs' types.

use crate::error::IrError;
use crate::op::{Conv, Gemm, Op, Pool, PoolKind, QConv};
use crate::quant::QType;
use crate::tensor::{checked_numel, DType, TensorType};

fn err<T>(msg: impl Into<String>) -> Result<T, IrError> {
    Err(IrError::op(msg))
}

fn want_f32(t: &TensorType, what: &str) -> Result<(), IrError> {
    if t.dtype != DType::F32 {
        return err(format!("{what} must be f32, got {t}"));
    }
    Ok(())
}

/// numpy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, IrError> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return err(format!("shapes {a:?} and {b:?} do not broadcast"));
        };
    }
    Ok(out)
}

/// The largest padded extent (input plus both pads) a conv or pooling window may slide over
/// along one axis: larger extents are refused before any backend does arithmetic on them.
pub const MAX_PADDED_EXTENT: usize = 1 << 32;

/// The most taps (`kernel[0] * kernel[1]`) a pooling window may have (256 x 256).
pub const MAX_POOL_WINDOW_TAPS: usize = 256 * 256;

/// The most window taps a whole pooling op may visit (`N * C * OH * OW * KH * KW`).
pub const MAX_POOL_TOTAL_TAPS: u64 = 1 << 40;

/// Output size of a sliding window along one axis (shared by conv and pooling).
///
/// Besides the arithmetic, this is where window geometry is validated: the padded extent is
/// at most [`MAX_PADDED_EXTENT`], each pad is smaller than the (dilated) window (a window
/// that can lie wholly in the padding reads nothing), and the stride is at most the padded
/// extent (a longer stride places the same single window; the ONNX importer rewrites such
/// strides to the padded extent, which is equivalent).
pub fn window_out(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
    ceil_mode: bool,
) -> Result<usize, IrError> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return err("kernel, stride and dilation must be positive");
    }
    let overflow = || IrError::op("window arithmetic overflows (absurd kernel, dilation or pads)");
    let eff = dilation
        .checked_mul(kernel - 1)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(overflow)?;
    let padded = input
        .checked_add(pad_begin)
        .and_then(|v| v.checked_add(pad_end))
        .ok_or_else(overflow)?;
    if padded > MAX_PADDED_EXTENT {
        return err(format!(
            "padded input {padded} (input {input}, pads {pad_begin} and {pad_end}) exceeds the limit of 2^32"
        ));
    }
    if padded < eff {
        return err(format!(
            "window {eff} (kernel {kernel}, dilation {dilation}) larger than padded input {padded}"
        ));
    }
    if pad_begin >= eff || pad_end >= eff {
        return err(format!(
            "pads {pad_begin} and {pad_end} must be smaller than the window {eff} (kernel {kernel}, dilation {dilation})"
        ));
    }
    if stride > padded {
        return err(format!(
            "stride {stride} is larger than the padded input {padded}"
        ));
    }
    let span = padded - eff;
    let mut out = if ceil_mode {
        span.div_ceil(stride)
    } else {
        span / stride
    } + 1;
    // ONNX/PyTorch rule: with ceil_mode the last window must start inside the input or left pad.
    if ceil_mode && (out - 1) * stride >= input + pad_begin {
        out -= 1;
    }
    Ok(out)
}

fn conv_shape(c: &Conv, x: &TensorType, w: &TensorType) -> Result<Vec<usize>, IrError> {
    if x.rank() != 4 {
        return err(format!("conv input must be NCHW (rank 4), got {x}"));
    }
    if w.rank() != 4 {
        return err(format!("conv weight must be OIHW (rank 4), got {w}"));
    }
    let (n, ci, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (co, cig, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
    if c.group == 0 || ci % c.group != 0 || co % c.group != 0 {
        return err(format!(
            "group {} must divide input channels {ci} and output channels {co}",
            c.group
        ));
    }
    if cig * c.group != ci {
        return err(format!(
            "weight has {cig} input channels per group, input has {ci} channels in {} groups",
            c.group
        ));
    }
    if [kh, kw] != c.kernel {
        return err(format!(
            "kernel attribute {:?} does not match weight {w}",
            c.kernel
        ));
    }
    let oh = window_out(
        h,
        kh,
        c.strides[0],
        c.dilations[0],
        c.pads[0],
        c.pads[2],
        false,
    )?;
    let ow = window_out(
        wd,
        kw,
        c.strides[1],
        c.dilations[1],
        c.pads[1],
        c.pads[3],
        false,
    )?;
    Ok(vec![n, co, oh, ow])
}

fn pool_shape(p: &Pool, x: &TensorType) -> Result<Vec<usize>, IrError> {
    if x.rank() != 4 {
        return err(format!("pooling input must be NCHW (rank 4), got {x}"));
    }
    if p.kind == PoolKind::Avg && p.dilations != [1, 1] {
        return err("average pooling with dilation is not supported");
    }
    let oh = window_out(
        x.shape[2],
        p.kernel[0],
        p.strides[0],
        p.dilations[0],
        p.pads[0],
        p.pads[2],
        p.ceil_mode,
    )?;
    let ow = window_out(
        x.shape[3],
        p.kernel[1],
        p.strides[1],
        p.dilations[1],
        p.pads[1],
        p.pads[3],
        p.ceil_mode,
    )?;
    let taps = p.kernel[0].saturating_mul(p.kernel[1]);
    if taps > MAX_POOL_WINDOW_TAPS {
        return err(format!(
            "pooling window {}x{} has more than 256x256 taps",
            p.kernel[0], p.kernel[1]
        ));
    }
    let total = [x.shape[0], x.shape[1], oh, ow, taps]
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&t| t <= MAX_POOL_TOTAL_TAPS);
    if total.is_none() {
        return err(format!(
            "pooling visits more than 2^40 window taps ({} x {} outputs x {taps} taps)",
            x.shape[0].saturating_mul(x.shape[1]),
            oh.saturating_mul(ow)
        ));
    }
    Ok(vec![x.shape[0], x.shape[1], oh, ow])
}

fn gemm_shape(
    g: &Gemm,
    a: &TensorType,
    b: &TensorType,
    c: Option<&TensorType>,
) -> Result<Vec<usize>, IrError> {
    if a.rank() != 2 || b.rank() != 2 {
        return err(format!("Gemm operands must be rank 2, got {a} and {b}"));
    }
    let (m, ka) = if g.trans_a {
        (a.shape[1], a.shape[0])
    } else {
        (a.shape[0], a.shape[1])
    };
    let (kb, n) = if g.trans_b {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if ka != kb {
        return err(format!(
            "Gemm inner dimensions differ: {a} x {b} (transA={}, transB={})",
            g.trans_a, g.trans_b
        ));
    }
    let out = vec![m, n];
    if let Some(c) = c {
        if broadcast(&c.shape, &out)? != out {
            return err(format!("Gemm C {c} does not broadcast to [{m},{n}]"));
        }
    }
    Ok(out)
}

fn check_axes(axes: &[usize], rank: usize) -> Result<(), IrError> {
    for w in axes.windows(2) {
        if w[0] >= w[1] {
            return err(format!("axes {axes:?} must be sorted and distinct"));
        }
    }
    if axes.iter().any(|&a| a >= rank) {
        return err(format!("axes {axes:?} out of range for rank {rank}"));
    }
    Ok(())
}

/// The output type of a quantized conv: the conv's shape, the output parameters' type; the
/// parameters, the input types, the fused clamp and the accumulator's range are checked.
fn qconv_type(q: &QConv, ins: &[&TensorType]) -> Result<TensorType, IrError> {
    let (x, w) = (ins[0], ins[1]);
    if QType::of(x.dtype).is_none() || x.dtype != q.x.dtype {
        return err(format!(
            "QConv input {x} must be u8 or i8 matching its parameters ({})",
            q.x.dtype
        ));
    }
    if w.dtype != DType::I8 || q.w.dtype != DType::I8 {
        return err(format!("QConv weight must be i8, got {w}"));
    }
    if q.x.axis.is_some() || q.y.axis.is_some() || !matches!(q.w.axis, None | Some(0)) {
        return err("QConv input and output are quantized per tensor, weights per tensor or per output channel (axis 0)");
    }
    if q.w.zero_point.iter().any(|&z| z != 0) {
        return err("QConv weights must be symmetric (zero points 0)");
    }
    if q.conv.epilogue.residual != q.residual.is_some() {
        return err("QConv's epilogue residual flag and its residual parameters disagree");
    }
    let shape = conv_shape(&q.conv, x, w)?;
    q.x.check(&x.shape).map_err(IrError::op)?;
    q.w.check(&w.shape).map_err(IrError::op)?;
    q.y.check(&shape).map_err(IrError::op)?;
    if let Some(r) = &q.residual {
        let b = ins[2 + q.conv.has_bias as usize];
        if b.dtype != r.b.dtype || b.shape != shape {
            return err(format!(
                "QConv residual must be {}{shape:?} (the output's shape), got {b}",
                r.b.dtype
            ));
        }
        r.mid.check(&shape).map_err(IrError::op)?;
        r.b.check(&shape).map_err(IrError::op)?;
        if q.add_requant().is_none() {
            return err(format!(
                "QConv residual sum {} + {} -> {} needs u8/i8 operands per tensor of one type and scale ratios within range",
                r.mid, r.b, q.y
            ));
        }
    }
    if q.requant(shape[1]).is_none() {
        return err(format!(
            "QConv output {} cannot apply the fused activation {:?} as a clamp",
            q.requant_target(),
            q.conv.epilogue.act
        ));
    }
    if q.conv.has_bias && (ins[2].dtype != DType::I32 || ins[2].shape != [shape[1]]) {
        return err(format!(
            "QConv bias must be i32[{}], got {}",
            shape[1], ins[2]
        ));
    }
    let taps = w.shape[1] * w.shape[2] * w.shape[3];
    if !crate::quant::accumulator_fits(taps, 0) {
        return err(format!(
            "QConv over {taps} taps may overflow its i32 accumulator"
        ));
    }
    Ok(TensorType::new(q.y.dtype, shape))
}

/// Infers the output type of `op` applied to inputs of types `ins`.
pub fn infer(op: &Op, ins: &[&TensorType]) -> Result<TensorType, IrError> {
    let (lo, hi) = op.arity();
    if ins.len() < lo || hi.is_some_and(|h| ins.len() > h) {
        return err(format!(
            "expects {} inputs, got {}",
            match hi {
                Some(h) if h == lo => format!("{lo}"),
                Some(h) => format!("{lo}..={h}"),
                None => format!("at least {lo}"),
            },
            ins.len()
        ));
    }
    let same = |t: &TensorType| Ok(t.clone());
    let ty = match op {
        Op::Input { .. } => return err("Input nodes have no inferred type"),
        Op::Constant(t) => t.ty(),
        Op::Identity | Op::Dropout => same(ins[0])?,
        Op::Act(_) => {
            want_f32(ins[0], "activation input")?;
            same(ins[0])?
        }
        Op::Conv(c) => {
            want_f32(ins[0], "conv input")?;
            want_f32(ins[1], "conv weight")?;
            let shape = conv_shape(c, ins[0], ins[1])?;
            let mut k = 2;
            if c.has_bias {
                if ins[k].shape != [shape[1]] {
                    return err(format!("conv bias must be [{}], got {}", shape[1], ins[k]));
                }
                k += 1;
            }
            if c.epilogue.residual && ins[k].shape != shape {
                return err(format!(
                    "residual operand {} must match output {shape:?}",
                    ins[k]
                ));
            }
            TensorType::f32(shape)
        }
        Op::BatchNorm { .. } => {
            let x = ins[0];
            want_f32(x, "BatchNorm input")?;
            if x.rank() < 2 {
                return err(format!("BatchNorm input must have a channel axis, got {x}"));
            }
            for p in &ins[1..] {
                if p.shape != [x.shape[1]] {
                    return err(format!(
                        "BatchNorm parameters must be [{}], got {p}",
                        x.shape[1]
                    ));
                }
            }
            same(x)?
        }
        Op::ChannelAffine => {
            let x = ins[0];
            want_f32(x, "ChannelAffine input")?;
            if x.rank() < 2 || ins[1].shape != [x.shape[1]] || ins[2].shape != [x.shape[1]] {
                return err(format!(
                    "ChannelAffine needs [C] scale and bias for {x}, got {} and {}",
                    ins[1], ins[2]
                ));
            }
            same(x)?
        }
        Op::SqueezeExcite(_) => {
            let x = ins[0];
            if x.rank() != 4 {
                return err(format!("SqueezeExcite input must be NCHW, got {x}"));
            }
            let c = x.shape[1];
            let r = ins[1].shape.first().copied().unwrap_or(0);
            if ins[1].shape != [r, c, 1, 1]
                || ins[2].shape != [r]
                || ins[3].shape != [c, r, 1, 1]
                || ins[4].shape != [c]
            {
                return err(format!(
                    "SqueezeExcite weights must be [R,{c},1,1], [R], [{c},R,1,1], [{c}]; got {}, {}, {}, {}",
                    ins[1], ins[2], ins[3], ins[4]
                ));
            }
            same(x)?
        }
        Op::Binary(_) => {
            if ins[0].dtype != ins[1].dtype {
                return err(format!("operand types differ: {} and {}", ins[0], ins[1]));
            }
            TensorType::new(ins[0].dtype, broadcast(&ins[0].shape, &ins[1].shape)?)
        }
        Op::Gemm(g) => {
            let c = if g.has_c { Some(ins[2]) } else { None };
            let shape = gemm_shape(g, ins[0], ins[1], c)?;
            if g.epilogue.residual && ins[ins.len() - 1].shape != shape {
                return err("Gemm residual operand must match the output shape");
            }
            TensorType::f32(shape)
        }
        Op::MatMul => {
            let (a, b) = (ins[0], ins[1]);
            if a.rank() < 2 || b.rank() < 2 {
                return err(format!(
                    "MatMul operands of rank < 2 are not supported: {a}, {b}"
                ));
            }
            let (m, ka) = (a.shape[a.rank() - 2], a.shape[a.rank() - 1]);
            let (kb, n) = (b.shape[b.rank() - 2], b.shape[b.rank() - 1]);
            if ka != kb {
                return err(format!("MatMul inner dimensions differ: {a} x {b}"));
            }
            let mut shape = broadcast(&a.shape[..a.rank() - 2], &b.shape[..b.rank() - 2])?;
            shape.extend([m, n]);
            TensorType::f32(shape)
        }
        Op::GlobalAveragePool => {
            let x = ins[0];
            if x.rank() != 4 {
                return err(format!("GlobalAveragePool input must be NCHW, got {x}"));
            }
            TensorType::f32(vec![x.shape[0], x.shape[1], 1, 1])
        }
        Op::ReduceMean { axes, keepdims } => {
            let x = ins[0];
            check_axes(axes, x.rank())?;
            let mut shape = Vec::new();
            for (i, &d) in x.shape.iter().enumerate() {
                if axes.contains(&i) {
                    if *keepdims {
                        shape.push(1);
                    }
                } else {
                    shape.push(d);
                }
            }
            TensorType::f32(shape)
        }
        Op::Pool(p) => TensorType::f32(pool_shape(p, ins[0])?),
        Op::Flatten { axis } => {
            let x = ins[0];
            if *axis > x.rank() {
                return err(format!("Flatten axis {axis} out of range for {x}"));
            }
            let a: usize = x.shape[..*axis].iter().product();
            let b: usize = x.shape[*axis..].iter().product();
            TensorType::new(x.dtype, vec![a, b])
        }
        Op::Reshape { shape } => {
            let x = ins[0];
            if checked_numel(shape)? != x.numel() {
                return err(format!("cannot reshape {x} to {shape:?}"));
            }
            TensorType::new(x.dtype, shape.clone())
        }
        Op::Squeeze { axes } => {
            let x = ins[0];
            check_axes(axes, x.rank())?;
            if axes.iter().any(|&a| x.shape[a] != 1) {
                return err(format!("Squeeze axes {axes:?} of {x} are not all size 1"));
            }
            let shape = x
                .shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect();
            TensorType::new(x.dtype, shape)
        }
        Op::Unsqueeze { axes } => {
            let x = ins[0];
            let r = x.rank() + axes.len();
            check_axes(axes, r)?;
            let mut src = x.shape.iter();
            let shape = (0..r)
                .map(|i| {
                    if axes.contains(&i) {
                        1
                    } else {
                        *src.next().expect("rank checked")
                    }
                })
                .collect();
            TensorType::new(x.dtype, shape)
        }
        Op::Transpose { perm } => {
            let x = ins[0];
            let mut seen = vec![false; x.rank()];
            if perm.len() != x.rank()
                || perm
                    .iter()
                    .any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true))
            {
                return err(format!(
                    "perm {perm:?} is not a permutation of rank {}",
                    x.rank()
                ));
            }
            TensorType::new(x.dtype, perm.iter().map(|&p| x.shape[p]).collect())
        }
        Op::Concat { axis } => {
            let first = ins[0];
            if *axis >= first.rank() {
                return err(format!("Concat axis {axis} out of range for {first}"));
            }
            let mut shape = first.shape.clone();
            shape[*axis] = 0;
            for t in ins {
                if t.dtype != first.dtype || t.rank() != first.rank() {
                    return err(format!("Concat operands differ: {first} and {t}"));
                }
                for (i, (&a, &b)) in t.shape.iter().zip(&first.shape).enumerate() {
                    if i != *axis && a != b {
                        return err(format!(
                            "Concat operands differ off axis {axis}: {first} and {t}"
                        ));
                    }
                }
                shape[*axis] += t.shape[*axis];
            }
            TensorType::new(first.dtype, shape)
        }
        Op::Slice(s) => {
            let x = ins[0];
            if s.axes.len() != s.starts.len()
                || s.axes.len() != s.ends.len()
                || s.axes.len() != s.steps.len()
            {
                return err("Slice axes, starts, ends and steps differ in length");
            }
            let mut shape = x.shape.clone();
            for (k, &a) in s.axes.iter().enumerate() {
                if a >= x.rank() {
                    return err(format!("Slice axis {a} out of range for {x}"));
                }
                shape[a] = crate::eval::slice_len(x.shape[a], s.starts[k], s.ends[k], s.steps[k])?;
            }
            TensorType::new(x.dtype, shape)
        }
        Op::Gather { axis } => {
            let (x, idx) = (ins[0], ins[1]);
            if idx.dtype != DType::I64 {
                return err(format!("Gather indices must be integers, got {idx}"));
            }
            if *axis >= x.rank() {
                return err(format!("Gather axis {axis} out of range for {x}"));
            }
            let mut shape = x.shape[..*axis].to_vec();
            shape.extend(&idx.shape);
            shape.extend(&x.shape[axis + 1..]);
            TensorType::new(x.dtype, shape)
        }
        Op::Cast { to } => TensorType::new(*to, ins[0].shape.clone()),
        Op::Pad { pads, .. } => {
            let x = ins[0];
            if pads.len() != 2 * x.rank() {
                return err(format!(
                    "Pad needs {} pads for {x}, got {}",
                    2 * x.rank(),
                    pads.len()
                ));
            }
            let r = x.rank();
            let shape = (0..r)
                .map(|i| x.shape[i].checked_add(pads[i])?.checked_add(pads[i + r]))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| IrError::op(format!("Pad {pads:?} overflows for {x}")))?;
            TensorType::new(x.dtype, shape)
        }
        Op::Softmax { axis } => {
            let x = ins[0];
            if *axis >= x.rank() {
                return err(format!("Softmax axis {axis} out of range for {x}"));
            }
            same(x)?
        }
        Op::Quantize(q) => {
            want_f32(ins[0], "QuantizeLinear input")?;
            if QType::of(q.dtype).is_none() {
                return err(format!(
                    "QuantizeLinear output must be u8 or i8, got {}",
                    q.dtype
                ));
            }
            q.check(&ins[0].shape).map_err(IrError::op)?;
            TensorType::new(q.dtype, ins[0].shape.clone())
        }
        Op::Dequantize(q) => {
            if ins[0].dtype != q.dtype {
                return err(format!(
                    "DequantizeLinear input {} does not have the parameters' type {}",
                    ins[0], q.dtype
                ));
            }
            q.check(&ins[0].shape).map_err(IrError::op)?;
            TensorType::f32(ins[0].shape.clone())
        }
        Op::QConv(q) => qconv_type(q, ins)?,
        Op::QBinary(q) => {
            let (a, b) = (ins[0], ins[1]);
            if crate::op::QBinary::inner(&a.shape, &b.shape).is_none()
                || a.dtype != q.a.dtype
                || b.dtype != q.b.dtype
                || q.requant().is_none()
            {
                return err(format!(
                    "{} needs u8/i8 inputs per tensor of one type matching a={} b={} y={}, b of a's shape or its leading dims then ones, scale ratios within range; got {a} and {b}",
                    op.kind(),
                    q.a,
                    q.b,
                    q.y
                ));
            }
            TensorType::new(q.y.dtype, a.shape.clone())
        }
        Op::QGlobalAveragePool(m) => {
            let x = ins[0];
            if x.rank() != 4 || x.dtype != m.x.dtype || QType::of(x.dtype).is_none() {
                return err(format!(
                    "QGlobalAveragePool input must be NCHW u8/i8 matching its parameters ({}), got {x}",
                    m.x.dtype
                ));
            }
            let shape = vec![x.shape[0], x.shape[1], 1, 1];
            m.x.check(&x.shape).map_err(IrError::op)?;
            m.y.check(&shape).map_err(IrError::op)?;
            if m.requant(x.shape[2] * x.shape[3]).is_none() {
                return err(format!(
                    "QGlobalAveragePool from {} to {} over {}x{} has no requantization (per tensor, one type, sums within i32, multiplier in [2^-32, 256))",
                    m.x, m.y, x.shape[2], x.shape[3]
                ));
            }
            TensorType::new(m.y.dtype, shape)
        }
        Op::QLut(l) => {
            if ins[0].dtype != l.x.dtype() || !l.is_valid() {
                return err(format!(
                    "QLut from {} to {} with {} entries cannot read {}",
                    l.x,
                    l.y,
                    l.table.len(),
                    ins[0]
                ));
            }
            TensorType::new(l.y.dtype(), ins[0].shape.clone())
        }
        Op::Lrn(l) => {
            let x = ins[0];
            want_f32(x, "LRN input")?;
            if x.rank() < 2 {
                return err(format!("LRN needs a channel axis (rank >= 2), got {x}"));
            }
            if l.size == 0 {
                return err("LRN size must be at least 1");
            }
            if ![l.alpha, l.beta, l.bias].iter().all(|v| v.is_finite()) {
                return err(format!(
                    "LRN alpha {}, beta {} and bias {} must be finite",
                    l.alpha, l.beta, l.bias
                ));
            }
            same(x)?
        }
    };
    checked_numel(&ty.shape)?;
    Ok(ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(
            broadcast(&[1, 32, 1, 1], &[1, 32, 7, 7]).unwrap(),
            vec![1, 32, 7, 7]
        );
        assert_eq!(broadcast(&[3], &[2, 1]).unwrap(), vec![2, 3]);
        assert!(broadcast(&[3], &[4]).is_err());
    }

    #[test]
    fn window_sizes() {
        // stride 2, odd input, pad 1 each side, kernel 3: (7 + 2 - 3) / 2 + 1 = 4
        assert_eq!(window_out(7, 3, 2, 1, 1, 1, false).unwrap(), 4);
        // asymmetric pads (TF same): 224 -> 112 with pads (0, 1)
        assert_eq!(window_out(224, 3, 2, 1, 0, 1, false).unwrap(), 112);
        // ceil mode: 6 with k2 s2 -> 3; 5 with k2 s2 -> 3
        assert_eq!(window_out(5, 2, 2, 1, 0, 0, true).unwrap(), 3);
        assert_eq!(window_out(5, 2, 2, 1, 0, 0, false).unwrap(), 2);
        assert!(window_out(2, 5, 1, 1, 0, 0, false).is_err());
    }

    #[test]
    fn depthwise_conv_shape() {
        let c = Conv {
            kernel: [3, 3],
            strides: [2, 2],
            dilations: [1, 1],
            pads: [1, 1, 1, 1],
            group: 32,
            ..Default::default()
        };
        let x = TensorType::f32(vec![3, 32, 37, 37]);
        let w = TensorType::f32(vec![32, 1, 3, 3]);
        let t = infer(&Op::Conv(c), &[&x, &w]).unwrap();
        assert_eq!(t.shape, vec![3, 32, 19, 19]);
    }

    #[test]
    fn conv_group_mismatch_is_an_error() {
        let c = Conv {
            kernel: [3, 3],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [0; 4],
            group: 3,
            ..Default::default()
        };
        let x = TensorType::f32(vec![1, 32, 8, 8]);
        let w = TensorType::f32(vec![32, 1, 3, 3]);
        assert!(infer(&Op::Conv(c), &[&x, &w]).is_err());
    }

    #[test]
    fn absurd_window_arithmetic_is_an_error() {
        assert!(window_out(usize::MAX, 3, 1, 1, 1, 1, false).is_err());
        assert!(window_out(8, 3, 1, usize::MAX, 0, 0, false).is_err());
        let pad = Op::Pad {
            pads: vec![usize::MAX, 0],
            value: 0.0,
        };
        assert!(infer(&pad, &[&TensorType::f32(vec![2])]).is_err());
    }

    #[test]
    fn arity_checked() {
        let x = TensorType::f32(vec![1]);
        assert!(infer(&Op::Binary(crate::op::BinaryOp::Add), &[&x]).is_err());
    }
}
