//! Squeeze-and-Excitation recognition: `mean_hw(x) -> 1x1 conv(+bias) -> act -> 1x1
//! conv(+bias) -> Sigmoid/HardSigmoid -> Mul with x` becomes one [`Op::SqueezeExcite`].
//! The spatial mean may be `GlobalAveragePool` or `ReduceMean(axes=[2,3], keepdims=1)` (the
//! dynamo export); the two activations may be standalone `Act` nodes or already fused into
//! the convs' epilogues (MobileNetV3: ReLU + HardSigmoid; EfficientNet: SiLU + Sigmoid); the
//! Mul may take its operands in either order. Every matched node except `x` must have no
//! other user. A conv without bias gets a zero bias constant.

use crate::error::PassError;
use crate::manager::{Pass, PassContext};
use crate::util::{add_sources, single_user};
use mnc_ir::{Activation, BinaryOp, Epilogue, Graph, NodeId, Op, SqueezeExcite, Tensor};

const NAME: &str = "se-fusion";

/// The SE recognition pass.
#[derive(Default)]
pub struct SeFusion;

/// A matched SE subgraph.
struct Match {
    x: NodeId,
    conv1: NodeId,
    conv2: NodeId,
    act: Activation,
    gate: Activation,
    /// Every node replaced by the SE op, in dataflow order.
    chain: Vec<NodeId>,
}

/// `id` as a plain 1x1 stride-1 ungrouped unpadded conv with no residual.
fn pointwise(g: &Graph, id: NodeId) -> Option<&mnc_ir::Conv> {
    match &g.node(id).op {
        Op::Conv(c)
            if c.kernel == [1, 1]
                && c.strides == [1, 1]
                && c.pads == [0; 4]
                && c.group == 1
                && !c.epilogue.residual =>
        {
            Some(c)
        }
        _ => None,
    }
}

/// Walks back from a value that should be `act(conv(..))`: either a conv with the
/// activation in its epilogue, or a standalone `Act` on a conv without one. Returns the conv,
/// the activation and the nodes passed.
fn conv_act(g: &Graph, id: NodeId) -> Option<(NodeId, Activation, Vec<NodeId>)> {
    if let Some(c) = pointwise(g, id) {
        return c.epilogue.act.map(|a| (id, a, vec![id]));
    }
    if let Op::Act(a) = g.node(id).op {
        let conv = g.inputs(id)[0];
        let c = pointwise(g, conv)?;
        if c.epilogue == Epilogue::default() && single_user(g, conv).map(|u| u.0) == Some(id) {
            return Some((conv, a, vec![conv, id]));
        }
    }
    None
}

fn is_gate(a: Activation) -> bool {
    matches!(a, Activation::Sigmoid | Activation::HardSigmoid { .. })
}

fn match_se(g: &Graph, mul: NodeId) -> Option<Match> {
    let ins = g.inputs(mul);
    'order: for (gate_v, x) in [(ins[0], ins[1]), (ins[1], ins[0])] {
        if g.node(x).ty.rank() != 4 || g.node(mul).ty != g.node(x).ty {
            continue;
        }
        let Some((conv2, gate, gate_nodes)) = conv_act(g, gate_v) else {
            continue;
        };
        if !is_gate(gate) {
            continue;
        }
        let h = g.inputs(conv2)[0];
        let Some((conv1, act, act_nodes)) = conv_act(g, h) else {
            continue;
        };
        let pool = g.inputs(conv1)[0];
        let is_mean = match &g.node(pool).op {
            Op::GlobalAveragePool => true,
            Op::ReduceMean { axes, keepdims } => axes == &[2, 3] && *keepdims,
            _ => false,
        };
        if !is_mean || g.inputs(pool)[0] != x {
            continue;
        }
        let chain: Vec<NodeId> = std::iter::once(pool)
            .chain(act_nodes)
            .chain(gate_nodes)
            .collect();
        // Each chain node feeds only the next one (the last feeds the Mul).
        for (i, &n) in chain.iter().enumerate() {
            let next = chain.get(i + 1).copied().unwrap_or(mul);
            if single_user(g, n).map(|u| u.0) != Some(next) {
                continue 'order;
            }
        }
        let c = g.node(x).ty.shape[1];
        let w1 = &g.node(g.inputs(conv1)[1]).ty.shape;
        let w2 = &g.node(g.inputs(conv2)[1]).ty.shape;
        if w1.len() != 4 || w1[1] != c || w2.as_slice() != [c, w1[0], 1, 1] {
            continue;
        }
        return Some(Match {
            x,
            conv1,
            conv2,
            act,
            gate,
            chain,
        });
    }
    None
}

/// The bias input of a conv, or a new zero bias constant named after its weight.
fn bias_of(g: &mut Graph, conv: NodeId) -> Result<NodeId, PassError> {
    let ins = g.inputs(conv);
    let has_bias = matches!(&g.node(conv).op, Op::Conv(c) if c.has_bias);
    if has_bias {
        return Ok(ins[2]);
    }
    let oc = g.node(conv).ty.shape[1];
    let w = g.node(ins[1]).name.clone();
    let base = w.strip_suffix(".weight").unwrap_or(&w).to_string();
    let name = g.unique_name(&format!("{base}.bias.zero"));
    let t = Tensor::from_f32(vec![oc], vec![0.0; oc]).map_err(PassError::ir(NAME))?;
    Ok(g.add_constant(name, t))
}

impl Pass for SeFusion {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, _: &PassContext) -> Result<usize, PassError> {
        let mut n = 0;
        for id in g.topo_order().map_err(PassError::ir(NAME))? {
            if !g.contains(id) || g.node(id).op != Op::Binary(BinaryOp::Mul) {
                continue;
            }
            let Some(m) = match_se(g, id) else {
                continue;
            };
            let (w1, w2) = (g.inputs(m.conv1)[1], g.inputs(m.conv2)[1]);
            let b1 = bias_of(g, m.conv1)?;
            let b2 = bias_of(g, m.conv2)?;
            let mut sources = Vec::new();
            for &c in &m.chain {
                sources.extend(g.node(c).sources.iter().cloned());
            }
            let own = std::mem::take(&mut g.node_mut(id).sources);
            add_sources(g, id, &sources);
            add_sources(g, id, &own);
            g.set_inputs(id, &[m.x, w1, b1, w2, b2]);
            g.node_mut(id).op = Op::SqueezeExcite(SqueezeExcite {
                act: m.act,
                gate: m.gate,
            });
            for &c in m.chain.iter().rev() {
                g.remove_node(c);
            }
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    /// x -> [mean] -> fc1 -> act -> fc2 -> gate -> Mul.
    fn se_graph(reduce_mean: bool, fc1_act: Activation, gate: Activation, swap: bool) -> Graph {
        let mut b = Builder::new("t", 4);
        let x = b.input("x", &[1, 8, 3, 3]);
        let m = if reduce_mean {
            b.g.add_node_inferred(
                "mean",
                Op::ReduceMean {
                    axes: vec![2, 3],
                    keepdims: true,
                },
                &[x],
            )
        } else {
            b.g.add_node_inferred("pool", Op::GlobalAveragePool, &[x])
        }
        .unwrap();
        let f1 = b.conv("fc1", m, 2, 1, 1, 1, true).unwrap();
        let a = b.act("act", fc1_act, f1).unwrap();
        let f2 = b.conv("fc2", a, 8, 1, 1, 1, false).unwrap();
        let gt = b.act("gate", gate, f2).unwrap();
        let (p, q) = if swap { (gt, x) } else { (x, gt) };
        let y = b.binary("mul", BinaryOp::Mul, p, q).unwrap();
        b.g.add_output("y", y);
        b.g
    }

    #[test]
    fn recognizes_standalone_and_fused_forms() {
        let hs = Activation::HardSigmoid {
            alpha: 1.0 / 6.0,
            beta: 0.5,
        };
        for (rm, act, gate, swap) in [
            (false, Activation::Relu, hs, true),
            (true, Activation::Silu, Activation::Sigmoid, false),
        ] {
            let g = se_graph(rm, act, gate, swap);
            // Standalone activations.
            let (after, n) = check_pass(&g, &SeFusion, 1e-5);
            assert_eq!(n, 1);
            assert_eq!(after.node_count(), 6, "x, w1, b1, w2, zero b2, SE");
            // Activations already fused into the convs.
            let (fused, _) = check_pass(&g, &crate::act_fusion::ActFusion, 1e-6);
            let (after2, n2) = check_pass(&fused, &SeFusion, 1e-5);
            assert_eq!(n2, 1);
            assert_eq!(after2.node_count(), 6);
            let se = after2.outputs[0].node;
            assert_eq!(
                after2.node(se).sources,
                [
                    if rm { "mean" } else { "pool" },
                    "fc1",
                    "act",
                    "fc2",
                    "gate",
                    "mul"
                ]
            );
            if rm {
                insta::assert_snapshot!(before_after(&g, &after));
            }
        }
    }

    #[test]
    fn rejects_non_gate_and_shared_intermediates() {
        // ReLU as the gate is not an SE.
        let g = se_graph(false, Activation::Relu, Activation::Relu, false);
        assert_eq!(check_pass(&g, &SeFusion, 1e-5).1, 0);
        // The pooled value used elsewhere.
        let mut g = se_graph(false, Activation::Relu, Activation::Sigmoid, false);
        let p = g.find("pool").unwrap();
        g.add_output("pooled", p);
        assert_eq!(check_pass(&g, &SeFusion, 1e-5).1, 0);
    }
}
