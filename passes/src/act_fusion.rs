//! Activation fusion: a standalone activation (Relu, Clip/ReLU6, Sigmoid, HardSigmoid,
//! HardSwish, SiLU) whose input is a Conv or Gemm without an activation yet, and the only
//! user of that output, moves into the producer's epilogue. `Mul(x, Sigmoid(x))` (either
//! operand order) is recognized as SiLU: fused the same way when `x` is such a producer used
//! only by the pattern, otherwise rewritten to one standalone `Act(silu)`.

use crate::error::PassError;
use crate::manager::{Pass, PassContext};
use crate::util::{absorb, add_sources, epilogue, epilogue_mut, single_user, used_only_by};
use mnc_ir::{Activation, BinaryOp, Graph, NodeId, Op};

const NAME: &str = "act-fusion";

/// The activation fusion pass.
#[derive(Default)]
pub struct ActFusion;

/// Whether `x` is a Conv/Gemm whose epilogue has no activation yet.
fn takes_act(g: &Graph, x: NodeId) -> bool {
    epilogue(&g.node(x).op).is_some_and(|e| e.act.is_none())
}

fn set_act(g: &mut Graph, x: NodeId, a: Activation) {
    if let Some(e) = epilogue_mut(&mut g.node_mut(x).op) {
        e.act = Some(a);
    }
}

/// If `mul` is `Mul(x, Sigmoid(x))` or `Mul(Sigmoid(x), x)` with the sigmoid used only
/// there, returns `(x, sigmoid)`.
fn silu_pattern(g: &Graph, mul: NodeId) -> Option<(NodeId, NodeId)> {
    let ins = g.inputs(mul);
    for (s, x) in [(ins[0], ins[1]), (ins[1], ins[0])] {
        if g.node(s).op == Op::Act(Activation::Sigmoid)
            && g.inputs(s)[0] == x
            && s != x
            && single_user(g, s).map(|u| u.0) == Some(mul)
        {
            return Some((x, s));
        }
    }
    None
}

impl Pass for ActFusion {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, _: &PassContext) -> Result<usize, PassError> {
        let mut n = 0;
        for id in g.topo_order().map_err(PassError::ir(NAME))? {
            // (Constants are skipped before the clone below: weights can be hundreds of MB.)
            if !g.contains(id) || matches!(g.node(id).op, Op::Constant(_)) {
                continue;
            }
            match g.node(id).op.clone() {
                Op::Binary(BinaryOp::Mul) => {
                    let Some((x, s)) = silu_pattern(g, id) else {
                        continue;
                    };
                    let s_src = g.node(s).sources.clone();
                    if takes_act(g, x) && used_only_by(g, x, &[s, id]) {
                        set_act(g, x, Activation::Silu);
                        add_sources(g, x, &s_src);
                        absorb(g, x, id);
                        g.remove_node(s);
                    } else {
                        g.set_inputs(id, &[x]);
                        g.node_mut(id).op = Op::Act(Activation::Silu);
                        let own = g.node(id).sources.clone();
                        g.node_mut(id).sources = s_src;
                        add_sources(g, id, &own);
                        g.remove_node(s);
                    }
                    n += 1;
                }
                Op::Act(a) => {
                    let x = g.inputs(id)[0];
                    if takes_act(g, x) && single_user(g, x) == Some((id, 0)) {
                        set_act(g, x, a);
                        absorb(g, x, id);
                        n += 1;
                    }
                }
                _ => {}
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn conv_then(a: Activation) -> mnc_ir::Graph {
        let mut b = Builder::new("t", 1);
        let x = b.input("x", &[1, 3, 4, 4]);
        let c = b.conv("conv", x, 4, 3, 1, 1, true).unwrap();
        let y = b.act("act", a, c).unwrap();
        b.g.add_output("y", y);
        b.g
    }

    #[test]
    fn fuses_every_activation_kind() {
        for &a in mnc_ir::op::ACTIVATION_EXAMPLES {
            let g = conv_then(a);
            let (after, n) = check_pass(&g, &ActFusion, 1e-6);
            assert_eq!(n, 1, "{a}");
            let y = after.outputs[0].node;
            match &after.node(y).op {
                Op::Conv(c) => assert_eq!(c.epilogue.act, Some(a)),
                other => panic!("{a}: expected the conv, got {other:?}"),
            }
            assert_eq!(after.node(y).sources, ["conv", "act"]);
        }
        let g = conv_then(Activation::Clip { min: 0.0, max: 6.0 });
        let (after, _) = check_pass(&g, &ActFusion, 1e-6);
        insta::assert_snapshot!(before_after(&g, &after));
    }

    #[test]
    fn silu_pattern_both_orders() {
        for swap in [false, true] {
            let mut b = Builder::new("t", 2);
            let x = b.input("x", &[1, 3, 4, 4]);
            let c = b.conv("conv", x, 4, 1, 1, 1, false).unwrap();
            let y = b.silu("silu", c, swap).unwrap();
            b.g.add_output("y", y);
            let (after, n) = check_pass(&b.g, &ActFusion, 1e-6);
            assert_eq!(n, 1);
            assert_eq!(after.node_count(), 3);
            let y = after.outputs[0].node;
            assert_eq!(after.node(y).sources, ["conv", "silu.sigmoid", "silu.mul"]);
            if swap {
                insta::assert_snapshot!(before_after(&b.g, &after));
            }
        }
    }

    #[test]
    fn fuses_into_gemm_after_residual() {
        let mut b = Builder::new("t", 4);
        let x = b.input("x", &[2, 6]);
        let w = b.constant("fc.weight", &[5, 6], -1.0, 1.0);
        let c = b.constant("fc.bias", &[5], -1.0, 1.0);
        let gemm = mnc_ir::Gemm {
            trans_b: true,
            has_c: true,
            ..Default::default()
        };
        let y =
            b.g.add_node_inferred("fc", Op::Gemm(gemm), &[x, w, c])
                .unwrap();
        let r = b.constant("r", &[2, 5], -1.0, 1.0);
        let s = b.binary("add", BinaryOp::Add, y, r).unwrap();
        let h = b.act("hs", Activation::HardSwish, s).unwrap();
        b.g.add_output("y", h);
        let (g1, n1) = check_pass(&b.g, &crate::residual::ResidualFusion, 1e-6);
        let (g2, n2) = check_pass(&g1, &ActFusion, 1e-6);
        assert_eq!((n1, n2), (1, 1));
        let out = g2.outputs[0].node;
        match &g2.node(out).op {
            Op::Gemm(g) => {
                assert!(g.epilogue.residual);
                assert_eq!(g.epilogue.act, Some(Activation::HardSwish));
            }
            other => panic!("expected the Gemm, got {other:?}"),
        }
        assert_eq!(g2.node(out).sources, ["fc", "add", "hs"]);
    }

    #[test]
    fn not_fused_when_output_has_another_user_or_act_present() {
        let mut b = Builder::new("t", 3);
        let x = b.input("x", &[1, 3, 4, 4]);
        let c = b.conv("conv", x, 4, 1, 1, 1, false).unwrap();
        let r = b.act("relu", Activation::Relu, c).unwrap();
        let s = b.silu("silu", c, false).unwrap(); // conv has 3 users: standalone SiLU
        let z = b.binary("z", BinaryOp::Add, r, s).unwrap();
        let c2 = b.conv("conv2", z, 4, 1, 1, 1, false).unwrap();
        let r2 = b.act("relu2", Activation::Relu, c2).unwrap();
        let r3 = b.act("relu3", Activation::Relu, r2).unwrap(); // conv2 has act already after
        b.g.add_output("y", r3);
        let (after, n) = check_pass(&b.g, &ActFusion, 1e-6);
        assert_eq!(n, 2, "SiLU canonicalized + relu2 fused");
        assert!(after.find("relu").is_some());
        assert!(after.find("relu3").is_some());
        insta::assert_snapshot!(before_after(&b.g, &after));
    }
}
