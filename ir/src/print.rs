//! The stable text form of the IR. Snapshot tests compare it, so it is deterministic and
//! diff-friendly: one node per line in topological order (each constant just before its first
//! user), values renumbered `%0, %1, ...`
//! in that order, attributes in a fixed order, constants shown by type and content hash
//! (small ones by value).

use crate::graph::{Graph, NodeId};
use crate::op::{Epilogue, Op, PoolKind};
use crate::tensor::TensorData;
use std::collections::HashMap;
use std::fmt::Write;

fn fmt_list<T: std::fmt::Display>(v: &[T], sep: &str) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

fn epilogue(e: &Epilogue) -> String {
    let mut s = String::new();
    if e.residual {
        s.push_str(" +residual");
    }
    if let Some(a) = e.act {
        write!(s, " act={a}").unwrap();
    }
    s
}

/// The bracketed attribute list of an op (empty for ops without attributes).
pub fn op_attrs(op: &Op) -> String {
    let a = match op {
        Op::Input { index } => format!("{index}"),
        Op::Constant(_) | Op::Identity | Op::Dropout | Op::MatMul | Op::GlobalAveragePool => {
            String::new()
        }
        Op::Binary(_) | Op::ChannelAffine => String::new(),
        Op::SqueezeExcite(se) => format!("act={} gate={}", se.act, se.gate),
        Op::Conv(c) => {
            format!(
                "k={} s={} d={} p={} g={}{}{}",
                fmt_list(&c.kernel, "x"),
                fmt_list(&c.strides, "x"),
                fmt_list(&c.dilations, "x"),
                fmt_list(&c.pads, ","),
                c.group,
                if c.has_bias { " bias" } else { "" },
                epilogue(&c.epilogue)
            ) + &c
                .schedule
                .as_ref()
                .map(|s| format!(" schedule={{{s}}}"))
                .unwrap_or_default()
        }
        Op::BatchNorm { epsilon } => format!("eps={epsilon:?}"),
        Op::Quantize(q) | Op::Dequantize(q) => q.to_string(),
        Op::QLut(l) => {
            let t = crate::tensor::Tensor::from_i32_values(
                vec![l.table.len()],
                crate::tensor::DType::I32,
                l.table.clone(),
            );
            let hash = t.map(|t| t.content_hash()).unwrap_or(0);
            format!("{}->{} table=#{hash:08x}", l.x, l.y)
        }
        Op::QGlobalAveragePool(m) => format!("x={} y={}", m.x, m.y),
        Op::QBinary(q) => format!("a={} b={} y={}", q.a, q.b, q.y),
        Op::QConv(q) => format!(
            "{} x={} w={} y={}{}",
            op_attrs(&Op::Conv(q.conv.clone())),
            q.x,
            q.w,
            q.y,
            q.residual
                .as_ref()
                .map(|r| format!(
                    " mid={} res={}{}",
                    r.mid,
                    r.b,
                    if r.conv_is_a { "" } else { " res-first" }
                ))
                .unwrap_or_default()
        ),
        Op::Act(a) => a.to_string(),
        Op::Gemm(g) => format!(
            "transA={} transB={} alpha={:?} beta={:?}{}{}",
            g.trans_a as u8,
            g.trans_b as u8,
            g.alpha,
            g.beta,
            if g.has_c { " C" } else { "" },
            epilogue(&g.epilogue)
        ),
        Op::ReduceMean { axes, keepdims } => {
            format!("axes={} keepdims={}", fmt_list(axes, ","), *keepdims as u8)
        }
        Op::Pool(p) => {
            let mut s = format!(
                "k={} s={} p={}",
                fmt_list(&p.kernel, "x"),
                fmt_list(&p.strides, "x"),
                fmt_list(&p.pads, ",")
            );
            if p.dilations != [1, 1] {
                write!(s, " d={}", fmt_list(&p.dilations, "x")).unwrap();
            }
            if p.ceil_mode {
                s.push_str(" ceil");
            }
            if p.kind == PoolKind::Avg && p.count_include_pad {
                s.push_str(" count_include_pad");
            }
            s
        }
        Op::Flatten { axis } => format!("axis={axis}"),
        Op::Reshape { shape } => format!("shape={}", fmt_list(shape, ",")),
        Op::Squeeze { axes } | Op::Unsqueeze { axes } => format!("axes={}", fmt_list(axes, ",")),
        Op::Transpose { perm } => format!("perm={}", fmt_list(perm, ",")),
        Op::Concat { axis } | Op::Gather { axis } | Op::Softmax { axis } => format!("axis={axis}"),
        Op::Slice(s) => format!(
            "axes={} starts={} ends={} steps={}",
            fmt_list(&s.axes, ","),
            fmt_list(&s.starts, ","),
            fmt_list(&s.ends, ","),
            fmt_list(&s.steps, ",")
        ),
        Op::Cast { to } => format!("to={to}"),
        Op::Pad { pads, value } => format!("pads={} value={value:?}", fmt_list(pads, ",")),
        Op::Lrn(l) => format!(
            "size={} alpha={:?} beta={:?} bias={:?}",
            l.size, l.alpha, l.beta, l.bias
        ),
    };
    if a.is_empty() {
        a
    } else {
        format!("[{a}]")
    }
}

/// The printing order: topological, with each constant placed just before its first user
/// (so a conv's weights sit next to it, not in a block at the top). Constants no op uses
/// (e.g. a constant graph output) come last.
pub fn print_order(g: &Graph) -> Result<Vec<NodeId>, crate::error::IrError> {
    let topo = g.topo_order()?;
    let is_const = |id: NodeId| matches!(g.node(id).op, Op::Constant(_));
    let mut placed = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(topo.len());
    for &id in &topo {
        if is_const(id) {
            continue;
        }
        for i in g.inputs(id) {
            if is_const(i) && placed.insert(i) {
                out.push(i);
            }
        }
        placed.insert(id);
        out.push(id);
    }
    out.extend(topo.into_iter().filter(|id| !placed.contains(id)));
    Ok(out)
}

/// Prints the graph in its stable text form. Fails only on a cyclic graph.
pub fn print_graph(g: &Graph) -> Result<String, crate::error::IrError> {
    let order = print_order(g)?;
    let num: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut s = String::new();
    writeln!(s, "graph {:?} {{", g.name).unwrap();
    for &id in &order {
        let n = g.node(id);
        write!(s, "  %{} = {}{}", num[&id], n.op.kind(), op_attrs(&n.op)).unwrap();
        let ins = g.inputs(id);
        if !ins.is_empty() {
            let args: Vec<String> = ins.iter().map(|i| format!("%{}", num[i])).collect();
            write!(s, "({})", args.join(", ")).unwrap();
        }
        write!(s, " : {} {:?}", n.ty, n.name).unwrap();
        if let Op::Constant(t) = &n.op {
            match &t.data {
                TensorData::I64(v) if v.len() <= 8 => write!(s, " = {v:?}").unwrap(),
                TensorData::F32(v) if v.len() <= 4 => write!(s, " = {v:?}").unwrap(),
                _ => write!(s, " #{:08x}", t.content_hash()).unwrap(),
            }
        }
        if n.sources.len() != 1 || n.sources[0] != n.name {
            write!(s, " <- [{}]", n.sources.join(", ")).unwrap();
        }
        s.push('\n');
    }
    for o in &g.outputs {
        writeln!(s, "  output {:?} = %{}", o.name, num[&o.node]).unwrap();
    }
    s.push_str("}\n");
    Ok(s)
}
