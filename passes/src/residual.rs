//! Residual fusion: `Add(a, b)` where one operand is produced by a Conv (or Gemm) with a
//! plain epilogue (no residual, no activation yet) whose only user is the Add, and the other
//! operand already has the Add's output shape, becomes that conv with `epilogue.residual`
//! and the other operand as its trailing residual input (the inverted-residual/MBConv skip
//! connection). An activation after the Add can then fuse too (it applies after the
//! residual).
//!
//! The quantized form likewise, on targets whose integer convs take a fused residual sum
//! (`TargetFacts::int8_residual`): a `QBinary` `Add` of a `QConv` (more than one input channel
//! per group, no residual yet, any fused clamp, only user the sum) and an operand of the
//! sum's type becomes that `QConv` with a [`QResidual`]: it requantizes to its old output
//! parameters, then applies the sum's function with the operands in their order (the same
//! bytes; `mnc_ir::eval` checks it).

use crate::error::PassError;
use crate::manager::{Pass, PassContext};
use crate::util::{absorb, epilogue, epilogue_mut, single_user};
use mnc_ir::{BinaryOp, Epilogue, Graph, NodeId, Op, QBinaryOp, QResidual};

const NAME: &str = "residual-fusion";

/// The residual fusion pass.
#[derive(Default)]
pub struct ResidualFusion;

/// Whether `add` can be fused into its operand `conv` with `other` as the residual (the
/// float form).
fn fusable(g: &Graph, add: NodeId, conv: NodeId, other: NodeId) -> bool {
    epilogue(&g.node(conv).op) == Some(&Epilogue::default()) && plain_pair(g, add, conv, other)
}

/// The shape and use conditions both forms share: `conv` used only by `add`, `other` a
/// different node, both of the sum's type.
fn plain_pair(g: &Graph, add: NodeId, conv: NodeId, other: NodeId) -> bool {
    single_user(g, conv).map(|u| u.0) == Some(add)
        && conv != other
        && g.node(conv).ty == g.node(add).ty
        && g.node(other).ty == g.node(add).ty
}

/// The quantized form: `add` is a `QBinary` `Add` whose operand `k` is `conv`, a `QConv`
/// with more than one input channel per group and no residual: that conv with the sum fused.
fn fused_qconv(g: &Graph, add: NodeId, k: usize) -> Option<Op> {
    let Op::QBinary(q) = &g.node(add).op else {
        return None;
    };
    let ins = g.inputs(add);
    let (conv, other) = (ins[k], ins[1 - k]);
    let Op::QConv(c) = &g.node(conv).op else {
        return None;
    };
    let depthwise = g.node(g.inputs(conv)[1]).ty.shape.get(1) == Some(&1);
    let mine = if k == 0 { &q.a } else { &q.b };
    if q.op != QBinaryOp::Add
        || c.residual.is_some()
        || depthwise
        || mine != &c.y
        || !plain_pair(g, add, conv, other)
    {
        return None;
    }
    let mut f = (**c).clone();
    f.conv.epilogue.residual = true;
    f.residual = Some(QResidual {
        mid: c.y.clone(),
        b: if k == 0 { q.b.clone() } else { q.a.clone() },
        conv_is_a: k == 0,
    });
    f.y = q.y.clone();
    f.add_requant().map(|_| Op::QConv(Box::new(f)))
}

impl Pass for ResidualFusion {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<usize, PassError> {
        let mut n = 0;
        let order = g.topo_order().map_err(PassError::ir(NAME))?;
        // Positions in the original order (removals keep the relative order valid).
        let pos: std::collections::HashMap<NodeId, usize> =
            order.iter().enumerate().map(|(i, &x)| (x, i)).collect();
        for id in order {
            if !g.contains(id) {
                continue;
            }
            if cx.target.int8_residual && matches!(g.node(id).op, Op::QBinary(_)) {
                // The later-computed operand first, as below.
                let ins = g.inputs(id);
                let ks = if pos.get(&ins[0]) < pos.get(&ins[1]) {
                    [1, 0]
                } else {
                    [0, 1]
                };
                for k in ks {
                    let Some(op) = fused_qconv(g, id, k) else {
                        continue;
                    };
                    let (conv, other) = (ins[k], ins[1 - k]);
                    let mut cins = g.inputs(conv);
                    cins.push(other);
                    g.set_inputs(conv, &cins);
                    g.node_mut(conv).op = op;
                    absorb(g, conv, id);
                    n += 1;
                    break;
                }
                continue;
            }
            if g.node(id).op != Op::Binary(BinaryOp::Add) {
                continue;
            }
            let ins = g.inputs(id);
            // Prefer the operand computed later (the block's last conv); the other is
            // typically the block input, already live.
            let mut cands = [(ins[0], ins[1]), (ins[1], ins[0])];
            if pos.get(&ins[0]) < pos.get(&ins[1]) {
                cands.swap(0, 1);
            }
            for (conv, other) in cands {
                if !fusable(g, id, conv, other) {
                    continue;
                }
                let mut cins = g.inputs(conv);
                cins.push(other);
                g.set_inputs(conv, &cins);
                if let Some(e) = epilogue_mut(&mut g.node_mut(conv).op) {
                    e.residual = true;
                }
                absorb(g, conv, id);
                n += 1;
                break;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use mnc_ir::Activation;

    #[test]
    fn fuses_skip_add_either_order() {
        for swap in [false, true] {
            let mut b = Builder::new("t", 1);
            let x = b.input("x", &[1, 4, 4, 4]);
            let c = b.conv("conv", x, 4, 3, 1, 1, true).unwrap();
            let (p, q) = if swap { (c, x) } else { (x, c) };
            let y = b.binary("add", BinaryOp::Add, p, q).unwrap();
            b.g.add_output("y", y);
            let (after, n) = check_pass(&b.g, &ResidualFusion, 1e-6);
            assert_eq!(n, 1);
            let y = after.outputs[0].node;
            assert_eq!(after.inputs(y).last(), Some(&after.inputs[0]));
            assert_eq!(after.node(y).sources, ["conv", "add"]);
            if !swap {
                insta::assert_snapshot!(before_after(&b.g, &after));
            }
        }
    }

    #[test]
    fn act_after_add_fuses_after_residual() {
        let mut b = Builder::new("t", 2);
        let x = b.input("x", &[1, 4, 4, 4]);
        let c = b.conv("conv", x, 4, 1, 1, 1, false).unwrap();
        let y = b.binary("add", BinaryOp::Add, c, x).unwrap();
        let r = b.act("relu", Activation::Relu, y).unwrap();
        b.g.add_output("y", r);
        let (g1, _) = check_pass(&b.g, &ResidualFusion, 1e-6);
        let (g2, n) = check_pass(&g1, &crate::act_fusion::ActFusion, 1e-6);
        assert_eq!(n, 1);
        assert_eq!(g2.node_count(), 3);
    }

    #[test]
    fn not_fused_with_act_broadcast_or_shared_output() {
        let mut b = Builder::new("t", 3);
        let x = b.input("x", &[1, 4, 4, 4]);
        let c = b.conv("conv", x, 4, 1, 1, 1, false).unwrap();
        let r = b.act("relu", Activation::Relu, c).unwrap();
        let a1 = b.binary("add_shared", BinaryOp::Add, c, x).unwrap(); // conv used twice
        let k = b.constant("k", &[1, 4, 1, 1], 0.0, 1.0);
        let c2 = b.conv("conv2", a1, 4, 1, 1, 1, false).unwrap();
        let a2 = b.binary("add_bcast", BinaryOp::Add, c2, k).unwrap(); // broadcast operand
        let a3 = b.binary("sum", BinaryOp::Add, a2, r).unwrap();
        b.g.add_output("y", a3);
        let (_, n) = check_pass(&b.g, &ResidualFusion, 1e-6);
        assert_eq!(n, 0);
    }
}
