//! Small graph-query and rewrite helpers shared by the passes.

use mnc_ir::{Epilogue, Graph, NodeId, Op, Tensor};

/// The constant f32 tensor held by `id`, if it is a constant node.
pub fn const_f32(g: &Graph, id: NodeId) -> Option<(&Tensor, &[f32])> {
    match &g.node(id).op {
        Op::Constant(t) => t.as_f32().map(|d| (t, d)),
        _ => None,
    }
}

/// The only consumer of `id` as `(consumer, slot)`, when `id` has exactly one use edge and
/// is not a graph output.
pub fn single_user(g: &Graph, id: NodeId) -> Option<(NodeId, usize)> {
    if g.is_output(id) {
        return None;
    }
    match g.users(id).as_slice() {
        [u] => Some(*u),
        _ => None,
    }
}

/// Whether `id`'s output is used only by `users` (each edge's consumer must be in the set)
/// and is not a graph output.
pub fn used_only_by(g: &Graph, id: NodeId, users: &[NodeId]) -> bool {
    !g.is_output(id) && g.users(id).iter().all(|(u, _)| users.contains(u))
}

/// Appends `extra` source names to `into`'s sources, skipping duplicates.
pub fn add_sources(g: &mut Graph, into: NodeId, extra: &[String]) {
    let node = g.node_mut(into);
    for s in extra {
        if !node.sources.contains(s) {
            node.sources.push(s.clone());
        }
    }
}

/// Folds node `gone` into `keep`: every use of `gone` now uses `keep`, `keep` inherits
/// `gone`'s sources, and `gone` is removed.
pub fn absorb(g: &mut Graph, keep: NodeId, gone: NodeId) {
    let src = g.node(gone).sources.clone();
    g.replace_all_uses(gone, keep);
    add_sources(g, keep, &src);
    g.remove_node(gone);
}

/// The per-channel values of a constant that broadcasts along axis 1 of an NCHW tensor with
/// `c` channels (`[]`, `[1]`, `[C,1,1]`, `[1,C,1,1]`, `[1,1,1]`, ...), expanded to `c` values
/// (widened to f64 for folding arithmetic).
pub fn per_channel(t: &Tensor, data: &[f32], c: usize) -> Option<Vec<f64>> {
    if data.len() == 1 && t.shape.len() <= 4 {
        return Some(vec![data[0] as f64; c]);
    }
    let s = &t.shape;
    let ok = match s.len() {
        3 => s[0] == c && s[1] == 1 && s[2] == 1,
        4 => s[0] == 1 && s[1] == c && s[2] == 1 && s[3] == 1,
        _ => false,
    };
    ok.then(|| data.iter().map(|&v| v as f64).collect())
}

/// The fusable epilogue of a Conv or Gemm.
pub fn epilogue_mut(op: &mut Op) -> Option<&mut Epilogue> {
    match op {
        Op::Conv(c) => Some(&mut c.epilogue),
        Op::Gemm(g) => Some(&mut g.epilogue),
        _ => None,
    }
}

/// The epilogue of a Conv or Gemm.
pub fn epilogue(op: &Op) -> Option<&Epilogue> {
    match op {
        Op::Conv(c) => Some(&c.epilogue),
        Op::Gemm(g) => Some(&g.epilogue),
        _ => None,
    }
}

/// Removes node `gone`, whose result equals its input `x`: every use of `gone` now uses `x`.
pub fn absorb_into_input(g: &mut Graph, gone: NodeId, x: NodeId) {
    g.replace_all_uses(gone, x);
    g.remove_node(gone);
}
