//! `transpose-sink`: layout canonicalization.
//!
//! Exporters from channels-last frameworks (tf2onnx from Keras) wrap every conv in a
//! `Transpose(0,3,1,2)` before and a `Transpose(0,2,3,1)` after, and run everything in
//! between (BatchNorm as Mul/Add, activations, padding, SE means, residual adds) in NHWC. This
//! pass moves those transposes until they meet and cancel. Rules, applied in topological
//! order (one run can carry a transpose across a whole chain):
//!
//! 1. **Compose**: `Transpose(q)(Transpose(p)(x))` becomes `Transpose(p[q[i]])(x)`; an
//!    identity permutation is removed.
//! 2. **Sink**: an op whose every non-constant input is `Transpose(p)(a_k)` (same `p`, same
//!    rank) is rewritten to run on the `a_k` and is followed by one `Transpose(p)`:
//!    activations; Add/Sub/Mul/Div (constant operands are broadcast to the full rank and
//!    permuted by `p`'s inverse; single-element constants are kept); Pad (pads permuted);
//!    ReduceMean (axes mapped through `p`; only when the mapped axes are the trailing ones,
//!    which the backends run natively); GlobalAveragePool (as a ReduceMean over the mapped
//!    axes, under the same rule); Concat and Softmax (axis mapped). A transpose applied to a
//!    graph input (where rule 3 puts it) is sunk only when a chain of such elementwise ops
//!    leads it to its inverse, where it cancels.
//! 3. **Hoist to the input**: `Transpose(p)(f_k(...f_1(input)))` where every `f_i` is an
//!    activation or a binary op with one constant operand that does not broadcast the other,
//!    each used only by the next, becomes `f_k(...f_1(Transpose(p)(input)))`: the
//!    preprocessing (Keras Rescaling/Normalization) then runs in NCHW next to the first conv.
//! 4. **Non-trailing ReduceMean** (an NHWC spatial mean that no transpose could be sunk
//!    into): `ReduceMean(axes)` becomes `Transpose` (kept axes first, reduced axes last) +
//!    trailing ReduceMean (+ the inverse transpose when `keepdims`), which rules 1-2 then
//!    cancel against the neighbouring transposes where they exist.
//!
//! 5. **Absorbed into a Gemm**: `Gemm(Flatten(Transpose(p)(x)), W)` (batch axis kept, the
//!    Flatten used only there, constant `W`; MatMul too) becomes `Gemm(Flatten(x), W')` with
//!    the rows of `W` (columns when `trans_b`) permuted: a Keras `Flatten` of an NHWC map
//!    before a `Dense` layer.
//!
//! Rules 2 and 4 cannot undo each other: rule 2 never produces a non-trailing ReduceMean,
//! and rule 3 never produces a transpose that rule 2 would move.

use super::{add_const, add_node, is_const, retype};
use crate::error::PassError;
use crate::manager::{Pass, PassContext};
use crate::util::single_user;
use mnc_ir::facts::{self, Elementwise};
use mnc_ir::{BinaryOp, Graph, NodeId, Op, Tensor};

const NAME: &str = "transpose-sink";

/// The transpose-sinking pass.
pub struct TransposeSink;

/// `perm` of a Transpose node.
fn perm_of(g: &Graph, id: NodeId) -> Option<Vec<usize>> {
    match &g.node(id).op {
        Op::Transpose { perm } => Some(perm.clone()),
        _ => None,
    }
}

/// The inverse permutation: `inverse(p)[p[i]] = i`.
pub fn inverse(p: &[usize]) -> Vec<usize> {
    let mut q = vec![0; p.len()];
    for (i, &v) in p.iter().enumerate() {
        q[v] = i;
    }
    q
}

fn is_identity(p: &[usize]) -> bool {
    p.iter().enumerate().all(|(i, &v)| i == v)
}

/// `t` broadcast-padded to rank `rank` (leading 1s) and transposed by `perm`.
fn permute_const(t: &Tensor, rank: usize, perm: &[usize]) -> Option<Tensor> {
    if t.shape.len() > rank {
        return None;
    }
    let mut shape = vec![1; rank - t.shape.len()];
    shape.extend_from_slice(&t.shape);
    let padded = Tensor { shape, ..t.clone() };
    mnc_ir::eval::eval_op(
        &Op::Transpose {
            perm: perm.to_vec(),
        },
        &[&padded],
    )
    .ok()
}

/// Rule 1: composes `id` (a Transpose) with a Transpose input. Returns whether it changed.
fn compose(g: &mut Graph, id: NodeId) -> Result<bool, PassError> {
    let Some(q) = perm_of(g, id) else {
        return Ok(false);
    };
    let x = g.inputs(id)[0];
    let (src, perm) = match perm_of(g, x) {
        Some(p) if p.len() == q.len() => (g.inputs(x)[0], q.iter().map(|&i| p[i]).collect()),
        _ => (x, q),
    };
    if is_identity(&perm) {
        g.replace_all_uses(id, src);
        g.remove_node(id);
        return Ok(true);
    }
    if src == x {
        return Ok(false);
    }
    g.set_inputs(id, &[src]);
    g.node_mut(id).op = Op::Transpose { perm };
    retype(g, id, NAME)?;
    Ok(true)
}

/// Whether the single-use chain of elementwise ops (those rule 3 hoists across) starting at
/// `id` ends in a transpose that cancels `Transpose(p)`. A transpose on a graph input is
/// sunk only then: otherwise rule 3 would hoist it back.
fn reaches_inverse(g: &Graph, mut id: NodeId, p: &[usize]) -> bool {
    let inv = inverse(p);
    loop {
        let Some((u, _)) = single_user(g, id) else {
            return false;
        };
        if perm_of(g, u).as_deref() == Some(&inv[..]) {
            return true;
        }
        match hoistable(g, u) {
            Some((x, _)) if x == id => id = u,
            _ => return false,
        }
    }
}

/// Rule 2 at `id`. Returns whether it rewrote.
fn sink(g: &mut Graph, id: NodeId) -> Result<bool, PassError> {
    // The op is only borrowed until `through_transpose` says what it becomes: a constant's op holds
    // its weights.
    let ins = g.inputs(id);
    let concat = matches!(g.node(id).op, Op::Concat { .. });
    let binary = matches!(g.node(id).op, Op::Binary(_));
    let mut p: Option<Vec<usize>> = None;
    for &i in &ins {
        if is_const(g, i) {
            if concat {
                return Ok(false);
            }
            continue;
        }
        let Some(q) = perm_of(g, i) else {
            return Ok(false);
        };
        let src = g.inputs(i)[0];
        if g.node(src).ty.rank() != q.len()
            || matches!(g.node(src).op, Op::Input { .. }) && !reaches_inverse(g, id, &q)
        {
            return Ok(false);
        }
        match &p {
            None => p = Some(q),
            Some(p0) if *p0 == q => {}
            _ => return Ok(false),
        }
    }
    let Some(p) = p else {
        return Ok(false);
    };
    let rank = p.len();
    if g.node(id).ty.rank() != rank {
        return Ok(false);
    }
    let Some((new_op, after)) = facts::through_transpose(&g.node(id).op, &p) else {
        return Ok(false);
    };
    let inv = inverse(&p);
    let mut new_ins = Vec::with_capacity(ins.len());
    for &i in &ins {
        if let Op::Constant(t) = &g.node(i).op {
            if !binary {
                return Ok(false);
            }
            if t.numel() == 1 || t.shape.iter().all(|&d| d == 1) && t.shape.len() <= rank {
                new_ins.push(i);
                continue;
            }
            let Some(pt) = permute_const(t, rank, &inv) else {
                return Ok(false);
            };
            let base = format!("{}.nchw", g.node(i).name);
            new_ins.push(add_const(g, &base, pt));
        } else {
            new_ins.push(g.inputs(i)[0]);
        }
    }
    g.set_inputs(id, &new_ins);
    g.node_mut(id).op = new_op;
    retype(g, id, NAME)?;
    let base = format!("{}/transpose", g.node(id).name);
    let t = add_node(g, &base, Op::Transpose { perm: after }, &[id], NAME)?;
    // Every former use of `id` now reads the transpose, which itself reads `id`.
    g.replace_all_uses(id, t);
    g.set_inputs(t, &[id]);
    let src = g.node(id).sources.clone();
    g.node_mut(t).sources = src;
    Ok(true)
}

/// The non-constant operand of an elementwise node that rule 3 can move a transpose across,
/// with the constant operand's slot (`None` for an activation).
fn hoistable(g: &Graph, id: NodeId) -> Option<(NodeId, Option<usize>)> {
    let ins = g.inputs(id);
    match facts::of(&g.node(id).op).elementwise? {
        Elementwise::Unary => Some((ins[0], None)),
        Elementwise::Binary(b) => {
            let (x, c) = match (is_const(g, ins[0]), is_const(g, ins[1])) {
                (false, true) => (0, 1),
                // The operand order is kept (c - x stays c - x), so both orders are fine.
                (true, false) => (1, 0),
                _ => return None,
            };
            let _: BinaryOp = b;
            (g.node(ins[x]).ty.shape == g.node(id).ty.shape).then_some((ins[x], Some(c)))
        }
    }
}

/// Rule 3 at `id` (a Transpose). Returns whether it rewrote.
fn hoist(g: &mut Graph, id: NodeId) -> Result<bool, PassError> {
    let Some(p) = perm_of(g, id) else {
        return Ok(false);
    };
    let top = g.inputs(id)[0];
    let mut chain = Vec::new();
    let mut cur = top;
    let mut next_user = id;
    loop {
        if matches!(g.node(cur).op, Op::Input { .. }) {
            break;
        }
        let users = g.users(cur);
        if g.is_output(cur) || users.len() != 1 || users[0].0 != next_user {
            return Ok(false);
        }
        let Some((x, c)) = hoistable(g, cur) else {
            return Ok(false);
        };
        // The constant operand, permuted like the data (kept when it is all ones in shape).
        let mut konst = None;
        if let Some(cs) = c {
            let Op::Constant(ct) = &g.node(g.inputs(cur)[cs]).op else {
                return Ok(false);
            };
            if !(ct.numel() == 1 || ct.shape.iter().all(|&d| d == 1)) {
                let Some(pt) = permute_const(ct, p.len(), &p) else {
                    return Ok(false);
                };
                konst = Some((cs, pt));
            }
        }
        chain.push((cur, x, konst));
        next_user = cur;
        cur = x;
    }
    if chain.is_empty() || g.node(cur).ty.rank() != p.len() {
        return Ok(false);
    }
    let input = cur;
    let base = format!("{}/transpose", g.node(input).name);
    let t = add_node(g, &base, Op::Transpose { perm: p.clone() }, &[input], NAME)?;
    // Rewire bottom-up: the lowest chain node reads the transpose.
    let mut below = t;
    for (n, x, konst) in chain.into_iter().rev() {
        let mut ins = g.inputs(n);
        let xslot = ins.iter().position(|&i| i == x).unwrap_or(0);
        ins[xslot] = below;
        if let Some((cs, pt)) = konst {
            let name = format!("{}.nchw", g.node(ins[cs]).name);
            ins[cs] = add_const(g, &name, pt);
        }
        g.set_inputs(n, &ins);
        retype(g, n, NAME)?;
        below = n;
    }
    g.replace_all_uses(id, top);
    g.remove_node(id);
    Ok(true)
}

/// Rule 5 at `id` (a `Flatten(axis=1)` whose input is `Transpose(p)(x)` with `p[0] = 0`,
/// read only by a Gemm or MatMul as its constant-weighted left operand): the transpose is
/// absorbed by permuting the weight rows (columns when `trans_b`), and the Flatten reads `x`.
fn absorb_into_gemm(g: &mut Graph, id: NodeId) -> Result<bool, PassError> {
    if g.node(id).op != (Op::Flatten { axis: 1 }) {
        return Ok(false);
    }
    let t = g.inputs(id)[0];
    let Some(p) = perm_of(g, t) else {
        return Ok(false);
    };
    let x = g.inputs(t)[0];
    let Some((user, 0)) = single_user(g, id) else {
        return Ok(false);
    };
    let trans_b = match &g.node(user).op {
        Op::Gemm(gm) if !gm.trans_a => gm.trans_b,
        Op::MatMul => false,
        _ => return Ok(false),
    };
    let wid = g.inputs(user)[1];
    let Some((wt, w)) = crate::util::const_f32(g, wid) else {
        return Ok(false);
    };
    let ts = g.node(t).ty.shape.clone();
    let xs = g.node(x).ty.shape.clone();
    let features: usize = ts[1..].iter().product();
    if p.first() != Some(&0) || wt.shape.len() != 2 || ts.len() < 2 {
        return Ok(false);
    }
    let (rows, cols) = (wt.shape[0], wt.shape[1]);
    if (if trans_b { cols } else { rows }) != features {
        return Ok(false);
    }
    // Row-major strides of x's feature axes (1..r).
    let r = ts.len();
    let mut xstride = vec![0usize; r];
    let mut acc = 1;
    for a in (1..r).rev() {
        xstride[a] = acc;
        acc *= xs[a];
    }
    // For every feature j in the transposed order, its index in x's order.
    let mut to_x = Vec::with_capacity(features);
    let mut idx = vec![0usize; r];
    for _ in 0..features {
        to_x.push((1..r).map(|i| idx[i] * xstride[p[i]]).sum::<usize>());
        for i in (1..r).rev() {
            idx[i] += 1;
            if idx[i] < ts[i] {
                break;
            }
            idx[i] = 0;
        }
    }
    let mut w2 = vec![0.0f32; w.len()];
    for (j, &jx) in to_x.iter().enumerate() {
        if trans_b {
            for o in 0..rows {
                w2[o * cols + jx] = w[o * cols + j];
            }
        } else {
            w2[jx * cols..(jx + 1) * cols].copy_from_slice(&w[j * cols..(j + 1) * cols]);
        }
    }
    let shape = wt.shape.clone();
    let name = format!("{}.unpermuted", g.node(wid).name);
    let nw = add_const(
        g,
        &name,
        Tensor::from_f32(shape, w2).map_err(PassError::ir(NAME))?,
    );
    let mut uins = g.inputs(user);
    uins[1] = nw;
    g.set_inputs(user, &uins);
    g.set_inputs(id, &[x]);
    retype(g, id, NAME)?;
    Ok(true)
}

/// Rule 4 at `id`. Returns whether it rewrote.
fn split_reduce(g: &mut Graph, id: NodeId) -> Result<bool, PassError> {
    let Op::ReduceMean { axes, keepdims } = g.node(id).op.clone() else {
        return Ok(false);
    };
    let x = g.inputs(id)[0];
    let r = g.node(x).ty.rank();
    let n = axes.len();
    let valid = axes.iter().all(|&a| a < r) && axes.windows(2).all(|w| w[0] < w[1]);
    if n == 0 || !valid || axes.iter().enumerate().all(|(i, &a)| a == r - n + i) {
        return Ok(false);
    }
    let mut perm: Vec<usize> = (0..r).filter(|a| !axes.contains(a)).collect();
    perm.extend_from_slice(&axes);
    let name = g.node(id).name.clone();
    let t = add_node(
        g,
        &format!("{name}/to_trailing"),
        Op::Transpose { perm: perm.clone() },
        &[x],
        NAME,
    )?;
    g.set_inputs(id, &[t]);
    g.node_mut(id).op = Op::ReduceMean {
        axes: (r - n..r).collect(),
        keepdims,
    };
    retype(g, id, NAME)?;
    if keepdims {
        let back = add_node(
            g,
            &format!("{name}/transpose"),
            Op::Transpose {
                perm: inverse(&perm),
            },
            &[id],
            NAME,
        )?;
        g.replace_all_uses(id, back);
        g.set_inputs(back, &[id]);
    }
    Ok(true)
}

impl Pass for TransposeSink {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, _: &PassContext) -> Result<usize, PassError> {
        super::rewrite_each(g, NAME, |g, id| match g.node(id).op {
            Op::Transpose { .. } => Ok(compose(g, id)? || hoist(g, id)?),
            Op::ReduceMean { .. } => Ok(sink(g, id)? || split_reduce(g, id)?),
            Op::Flatten { .. } => absorb_into_gemm(g, id),
            _ => sink(g, id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use mnc_ir::{Activation, Conv};

    const TO_NCHW: [usize; 4] = [0, 3, 1, 2];
    const TO_NHWC: [usize; 4] = [0, 2, 3, 1];

    fn t(b: &mut Builder, name: &str, perm: [usize; 4], x: NodeId) -> NodeId {
        b.g.add_node_inferred(
            name,
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
        .unwrap()
    }

    fn count(g: &Graph, kind: &str) -> usize {
        g.node_ids()
            .into_iter()
            .filter(|&i| g.node(i).op.kind() == kind)
            .count()
    }

    /// A tf2onnx-style NHWC block: input NHWC, Rescaling (Mul, Add), then every conv wrapped
    /// in transposes, decomposed BN (Mul/Add by `[C]` constants broadcast on the last axis),
    /// ReLU6, an NHWC Pad, a depthwise conv, an SE-style mean over H,W (axes 1,2), a
    /// residual Add and a Concat on the channel axis.
    fn keras_block() -> Graph {
        let mut b = Builder::new("keras_block", 5);
        let x = b.input("input", &[2, 7, 6, 4]);
        let s = b.constant("scale", &[], 0.5, 0.6);
        let x = b.binary("rescale.mul", BinaryOp::Mul, x, s).unwrap();
        let o = b.constant("offset", &[1, 1, 1, 4], -1.0, 1.0);
        let x = b.binary("rescale.add", BinaryOp::Add, x, o).unwrap();
        let xt = t(&mut b, "t0", TO_NCHW, x);
        let c1 = b.conv("conv1", xt, 8, 1, 1, 1, false).unwrap();
        let y = t(&mut b, "t1", TO_NHWC, c1);
        let m = b.constant("bn.mul", &[8], 0.5, 1.5);
        let y = b.binary("bn.mul", BinaryOp::Mul, y, m).unwrap();
        let a = b.constant("bn.add", &[8], -0.5, 0.5);
        let y = b.binary("bn.add", BinaryOp::Add, y, a).unwrap();
        let y = b
            .act("relu6", Activation::Clip { min: 0.0, max: 6.0 }, y)
            .unwrap();
        let pad =
            b.g.add_node_inferred(
                "pad",
                Op::Pad {
                    pads: vec![0, 1, 0, 0, 0, 1, 2, 0],
                    value: 0.0,
                },
                &[y],
            )
            .unwrap();
        let pt = t(&mut b, "t2", TO_NCHW, pad);
        let w = b.constant("dw.weight", &[8, 1, 3, 3], -0.5, 0.5);
        let dw =
            b.g.add_node_inferred(
                "dw",
                Op::Conv(Conv {
                    kernel: [3, 3],
                    group: 8,
                    ..Default::default()
                }),
                &[pt, w],
            )
            .unwrap();
        let d = t(&mut b, "t3", TO_NHWC, dw);
        let mean =
            b.g.add_node_inferred(
                "se.mean",
                Op::ReduceMean {
                    axes: vec![1, 2],
                    keepdims: true,
                },
                &[d],
            )
            .unwrap();
        let gate = b.act("se.gate", Activation::Sigmoid, mean).unwrap();
        let e = b.binary("se.mul", BinaryOp::Mul, d, gate).unwrap();
        let r = b.binary("residual", BinaryOp::Add, e, y).unwrap();
        let cat =
            b.g.add_node_inferred("cat", Op::Concat { axis: 3 }, &[r, e])
                .unwrap();
        let ct = t(&mut b, "t4", TO_NCHW, cat);
        let c2 = b.conv("conv2", ct, 5, 3, 2, 1, true).unwrap();
        let out = t(&mut b, "t5", TO_NHWC, c2);
        b.g.add_output("y", out);
        b.g
    }

    #[test]
    fn keras_block_keeps_one_transpose_at_the_input_and_one_at_the_output() {
        let g = keras_block();
        assert_eq!(count(&g, "Transpose"), 6);
        let (mut h, n) = check_pass(&g, &TransposeSink, 1e-5);
        assert!(n > 0);
        // A second run changes nothing but dead code (the pass reaches its fixed point in one
        // run on this chain).
        let ctx = PassContext::default();
        assert_eq!(TransposeSink.run(&mut h, &ctx).unwrap(), 0);
        assert_eq!(count(&h, "Transpose"), 2, "{}", text(&h));
        // The input's transpose reads the graph input directly; the other one is the output's.
        let input = h.inputs[0];
        let (first, _) = h.users(input)[0];
        assert!(matches!(h.node(first).op, Op::Transpose { .. }));
        assert!(matches!(h.node(h.outputs[0].node).op, Op::Transpose { .. }));
        // The NHWC mean became an NCHW spatial mean, the concat runs on channels.
        assert_eq!(count(&h, "ReduceMean"), 1);
        for id in h.node_ids() {
            match &h.node(id).op {
                Op::ReduceMean { axes, .. } => assert_eq!(axes, &[2, 3]),
                Op::Concat { axis } => assert_eq!(*axis, 1),
                _ => {}
            }
        }
        insta::assert_snapshot!("keras_block", before_after(&g, &h));
    }

    #[test]
    fn nhwc_mean_without_a_transpose_to_sink_becomes_a_trailing_mean() {
        for keepdims in [true, false] {
            let mut b = Builder::new("mean", 1);
            let x = b.input("x", &[2, 5, 3, 4]);
            let m =
                b.g.add_node_inferred(
                    "mean",
                    Op::ReduceMean {
                        axes: vec![1, 2],
                        keepdims,
                    },
                    &[x],
                )
                .unwrap();
            b.g.add_output("y", m);
            let (h, n) = check_pass(&b.g, &TransposeSink, 1e-6);
            assert_eq!(n, 1);
            assert_eq!(count(&h, "Transpose"), 1 + keepdims as usize);
            let trailing = h
                .node_ids()
                .into_iter()
                .any(|i| matches!(&h.node(i).op, Op::ReduceMean { axes, .. } if axes == &[2, 3]));
            assert!(trailing, "{}", text(&h));
        }
    }

    #[test]
    fn transposes_compose_and_identities_vanish() {
        let mut b = Builder::new("compose", 1);
        let x = b.input("x", &[2, 3, 4, 5]);
        let a = t(&mut b, "a", TO_NHWC, x);
        let r = b.act("relu", Activation::Relu, a).unwrap();
        let c = t(&mut b, "c", [0, 2, 1, 3], r);
        let d = t(&mut b, "d", [0, 2, 1, 3], c);
        let e = t(&mut b, "e", TO_NCHW, d);
        b.g.add_output("y", e);
        // Round 1 composes c, d and e into one NCHW transpose; round 2 sinks the input's
        // transpose through the ReLU into it, where both cancel.
        let (mut h, _) = check_pass(&b.g, &TransposeSink, 0.0);
        assert_eq!(count(&h, "Transpose"), 2, "{}", text(&h));
        let ctx = PassContext::default();
        assert!(TransposeSink.run(&mut h, &ctx).unwrap() > 0);
        assert_eq!(count(&h, "Transpose"), 0, "{}", text(&h));
        assert_eq!(TransposeSink.run(&mut h, &ctx).unwrap(), 0);
    }

    #[test]
    fn mixed_permutations_or_unknown_operands_are_left_alone() {
        let mut b = Builder::new("mixed", 1);
        let x = b.input("x", &[2, 3, 4, 4]);
        let y = b.input("y", &[2, 4, 4, 3]);
        let a = t(&mut b, "a", TO_NHWC, x);
        // `y` is not a transpose: the Add cannot run in the other layout without one.
        let s = b.binary("add", BinaryOp::Add, a, y).unwrap();
        b.g.add_output("s", s);
        let (h, n) = check_pass(&b.g, &TransposeSink, 0.0);
        assert_eq!(n, 0);
        assert_eq!(text(&h), text(&b.g));
    }

    #[test]
    fn nhwc_flatten_before_a_dense_layer_is_absorbed_into_its_weights() {
        for (trans_b, matmul) in [(false, false), (true, false), (false, true)] {
            let mut b = Builder::new("dense", 2);
            let x = b.input("x", &[2, 3, 4, 5]);
            let c = b.conv("conv", x, 6, 3, 1, 1, true).unwrap();
            let tt = t(&mut b, "t", TO_NHWC, c);
            let f =
                b.g.add_node_inferred("flat", Op::Flatten { axis: 1 }, &[tt])
                    .unwrap();
            let wshape = if trans_b { [7, 120] } else { [120, 7] };
            let w = b.constant("w", &wshape, -0.3, 0.3);
            let op = if matmul {
                Op::MatMul
            } else {
                Op::Gemm(mnc_ir::Gemm {
                    trans_b,
                    ..Default::default()
                })
            };
            let y = b.g.add_node_inferred("dense", op, &[f, w]).unwrap();
            b.g.add_output("y", y);
            let (h, n) = check_pass(&b.g, &TransposeSink, 1e-5);
            assert!(n > 0);
            assert_eq!(count(&h, "Transpose"), 0, "{}", text(&h));
        }
    }

    /// A random tf2onnx-style NHWC network: preprocessing and a stem conv, then activations, binary ops with `[C]`, `[1,1,1,C]` or
    /// scalar constants, NHWC pads, SE-style means over axes 1,2, channel concats, residual
    /// adds, and convs wrapped in `Transpose(0,3,1,2)` / `Transpose(0,2,3,1)`; the output is
    /// NHWC or, half the time, transposed back to NCHW.
    fn random_nhwc_chain(seed: u64) -> Graph {
        let mut b = Builder::new("nhwc", seed);
        let mut r = Lcg::new(seed * 7 + 1);
        let mut pick = |n: usize| ((r.uniform(0.0, 1.0) * n as f32) as usize).min(n - 1);
        let (n, h, w, c) = (1 + pick(2), 1 + pick(7), 1 + pick(7), 1 + pick(6));
        let mut x = b.input("x", &[n, h, w, c]);
        // As in a real network: preprocessing (elementwise, scalar or per-channel constants),
        // then the stem conv; only values after it are reused by residuals and concats.
        for k in 0..pick(3) {
            let shape: Vec<usize> = if pick(2) == 0 { vec![] } else { vec![c] };
            let op = [BinaryOp::Add, BinaryOp::Mul][pick(2)];
            let kc = b.constant(&format!("pre{k}.c"), &shape, 0.5, 1.5);
            x = b.binary(&format!("pre{k}"), op, x, kc).unwrap();
        }
        let xt = t(&mut b, "stem.in", TO_NCHW, x);
        let cv = b.conv("stem", xt, 1 + pick(6), 3, 1, 1, true).unwrap();
        x = t(&mut b, "stem.out", TO_NHWC, cv);
        let mut seen = vec![x];
        for k in 0..(4 + pick(8)) {
            let s = b.g.node(x).ty.shape.clone();
            let c = s[3];
            let name = format!("l{k}");
            x = match pick(7) {
                0 => {
                    let a = mnc_ir::op::ACTIVATION_EXAMPLES[pick(7)];
                    b.act(&name, a, x).unwrap()
                }
                1 => {
                    let shape: Vec<usize> = match pick(3) {
                        0 => vec![c],
                        1 => vec![1, 1, 1, c],
                        _ => vec![],
                    };
                    let op = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div][pick(4)];
                    let k = b.constant(&format!("{name}.c"), &shape, 0.5, 1.5);
                    // (c / x only with the constant on the right: x may be near 0.)
                    if pick(2) == 0 || op == BinaryOp::Div {
                        b.binary(&name, op, x, k).unwrap()
                    } else {
                        b.binary(&name, op, k, x).unwrap()
                    }
                }
                2 => {
                    let pads = vec![0, pick(2), pick(3), 0, 0, pick(3), pick(2), 0];
                    b.g.add_node_inferred(&name, Op::Pad { pads, value: 0.0 }, &[x])
                        .unwrap()
                }
                3 => {
                    let m =
                        b.g.add_node_inferred(
                            format!("{name}.mean"),
                            Op::ReduceMean {
                                axes: vec![1, 2],
                                keepdims: true,
                            },
                            &[x],
                        )
                        .unwrap();
                    let g = b
                        .act(&format!("{name}.gate"), Activation::Sigmoid, m)
                        .unwrap();
                    b.binary(&name, BinaryOp::Mul, x, g).unwrap()
                }
                4 => {
                    let same: Vec<NodeId> = seen
                        .iter()
                        .copied()
                        .filter(|&v| v != x && b.g.node(v).ty.shape == s)
                        .collect();
                    if same.is_empty() {
                        continue;
                    }
                    let other = same[pick(same.len())];
                    b.binary(&name, BinaryOp::Add, other, x).unwrap()
                }
                5 => {
                    let same: Vec<NodeId> = seen
                        .iter()
                        .copied()
                        .filter(|&v| b.g.node(v).ty.shape[..3] == s[..3])
                        .collect();
                    let other = same[pick(same.len())];
                    b.g.add_node_inferred(&name, Op::Concat { axis: 3 }, &[x, other])
                        .unwrap()
                }
                _ => {
                    let xt = t(&mut b, &format!("{name}.in"), TO_NCHW, x);
                    let k = [1, 3][pick(2)];
                    let cv = b
                        .conv(&name, xt, 1 + pick(6), k, 1, 1, pick(2) == 0)
                        .unwrap();
                    t(&mut b, &format!("{name}.out"), TO_NHWC, cv)
                }
            };
            seen.push(x);
        }
        if pick(2) == 0 {
            x = t(&mut b, "to_nchw", TO_NCHW, x);
        }
        b.g.add_output("y", x);
        b.g
    }

    #[test]
    fn random_nhwc_chains_canonicalize_to_boundary_transposes() {
        let mut max_seen = 0;
        for seed in 1..=60 {
            let g = random_nhwc_chain(seed);
            let mut h = g.clone();
            let opts = crate::PipelineOptions {
                verify: true,
                ..Default::default()
            };
            crate::cleanup_and_fold(&mut h, &opts).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let x = random_inputs(&g, seed);
            eprintln!("seed {seed}");
            assert_close(&run(&h, &x), &run(&g, &x), 1e-4);
            // At most the input's transpose and the output's.
            let n = count(&h, "Transpose");
            assert!(n <= 2, "seed {seed}: {n} transposes left\n{}", text(&h));
            max_seen = max_seen.max(count(&g, "Transpose"));
            for id in h.node_ids() {
                if let Op::ReduceMean { axes, .. } = &h.node(id).op {
                    let r = h.node(h.inputs(id)[0]).ty.rank();
                    assert_eq!(axes.last(), Some(&(r - 1)), "seed {seed}: {}", text(&h));
                }
            }
        }
        assert!(max_seen >= 6, "the generator should wrap several convs");
    }

    #[test]
    fn inverse_and_composition() {
        assert_eq!(inverse(&TO_NCHW), TO_NHWC.to_vec());
        assert_eq!(inverse(&[2, 0, 1]), vec![1, 2, 0]);
        assert!(is_identity(&[0, 1, 2]) && !is_identity(&[1, 0]));
    }
}
