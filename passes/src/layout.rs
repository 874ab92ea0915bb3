//! Layout analysis (no rewrite). Decides which activation layout the target wants and where
//! conversions would have to go; nothing is inserted into the graph, because no backend
//! that executes blocked layouts exists yet and the reference executor runs NCHW only.
//!
//! Rule: on a vector target (`vector_f32 > 1`) every rank-4 activation produced by an op
//! that can work channel-blocked (convs, per-channel and elementwise ops, pooling, SE) is
//! kept in `NCHW{v}c` (channels padded to the vector width, one vector of channels
//! innermost); ops whose meaning depends on the logical element order (Flatten, Reshape,
//! Transpose, Gemm, Softmax, Concat, ...), graph inputs and graph outputs use plain NCHW.
//! A conversion sits on every activation edge where the producer's layout differs from the
//! layout the consumer reads. Constants (weights) are not converted per inference: a backend
//! re-packs them once at compile time.

use crate::target::TargetFacts;
use mnc_ir::{Graph, NodeId, Op};
use std::collections::HashMap;
use std::fmt;

/// An activation layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Plain row-major logical order (NCHW for rank 4).
    Plain,
    /// Channel-blocked `N, C/b, H, W, b`.
    Blocked(usize),
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layout::Plain => f.write_str("nchw"),
            Layout::Blocked(b) => write!(f, "nchw{b}c"),
        }
    }
}

/// A layout conversion the target would need: the value of `producer` converted once to
/// `to` and read by every listed consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversion {
    pub producer: NodeId,
    /// Consumers and their input slots; `None` stands for a graph output.
    pub consumers: Vec<Option<(NodeId, usize)>>,
    pub from: Layout,
    pub to: Layout,
}

/// The result of the analysis.
#[derive(Clone, Debug, PartialEq)]
pub struct LayoutPlan {
    /// The layout the target wants for conv activations.
    pub preferred: Layout,
    /// Layout of every non-constant value.
    pub layouts: HashMap<NodeId, Layout>,
    pub conversions: Vec<Conversion>,
}

/// Runs the analysis on `g` for target `t`.
pub fn analyze(g: &Graph, t: &TargetFacts) -> Result<LayoutPlan, mnc_ir::IrError> {
    let preferred = if t.vector_f32 > 1 {
        Layout::Blocked(t.vector_f32)
    } else {
        Layout::Plain
    };
    let order = g.topo_order()?;
    let is_const = |id: NodeId| matches!(g.node(id).op, Op::Constant(_));
    // A binary op is blocked only if every activation operand is rank 4 with the output's
    // channel count (same shape or a per-channel [N,C,1,1] value).
    let wants_blocked = |id: NodeId| {
        let n = g.node(id);
        if preferred == Layout::Plain
            || n.ty.rank() != 4
            || !mnc_ir::facts::of(&n.op).channel_blockable
        {
            return false;
        }
        !matches!(n.op, Op::Binary(_))
            || g.inputs(id).iter().all(|&i| {
                let s = &g.node(i).ty.shape;
                is_const(i) || (s.len() == 4 && s[1] == n.ty.shape[1])
            })
    };
    let mut layouts = HashMap::new();
    for &id in &order {
        if is_const(id) {
            continue;
        }
        let l = if wants_blocked(id) {
            preferred
        } else {
            Layout::Plain
        };
        layouts.insert(id, l);
    }
    let mut conversions: Vec<Conversion> = Vec::new();
    let mut add = |producer: NodeId, consumer, from, to| match conversions
        .iter_mut()
        .find(|c| c.producer == producer && c.to == to)
    {
        Some(c) => c.consumers.push(consumer),
        None => conversions.push(Conversion {
            producer,
            consumers: vec![consumer],
            from,
            to,
        }),
    };
    for &id in &order {
        if is_const(id) {
            continue;
        }
        for (slot, src) in g.inputs(id).into_iter().enumerate() {
            if is_const(src) {
                continue;
            }
            let (from, to) = (layouts[&src], layouts[&id]);
            if from != to {
                add(src, Some((id, slot)), from, to);
            }
        }
    }
    for o in &g.outputs {
        if let Some(&from) = layouts.get(&o.node) {
            if from != Layout::Plain {
                add(o.node, None, from, Layout::Plain);
            }
        }
    }
    Ok(LayoutPlan {
        preferred,
        layouts,
        conversions,
    })
}

impl LayoutPlan {
    /// One line per conversion, e.g. `"input" -> "conv0"[0], "conv2"[3]: nchw -> nchw8c`
    /// (`g` is the analyzed graph; nodes it lacks print as `?`).
    pub fn to_text(&self, g: &Graph) -> String {
        let name = |n: NodeId| {
            if g.contains(n) {
                g.node(n).name.clone()
            } else {
                "?".to_string()
            }
        };
        let mut s = format!(
            "# layout: preferred {}, {} conversions\n",
            self.preferred,
            self.conversions.len()
        );
        for c in &self.conversions {
            let to: Vec<String> = c
                .consumers
                .iter()
                .map(|u| match u {
                    Some((n, slot)) => format!("{:?}[{slot}]", name(*n)),
                    None => "output".to_string(),
                })
                .collect();
            let to = to.join(", ");
            s.push_str(&format!(
                "{:?} -> {to}: {} -> {}\n",
                name(c.producer),
                c.from,
                c.to
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use mnc_ir::Activation;

    #[test]
    fn conversions_only_at_graph_edges_of_a_conv_chain() {
        let mut g = crate::samples::mobilenet_v3_block(1).unwrap();
        crate::optimize(&mut g, &Default::default()).unwrap();
        let p = analyze(&g, &TargetFacts::default()).unwrap();
        assert_eq!(p.preferred, Layout::Blocked(8));
        // The input (read by the expand conv and as the residual), and the output.
        assert_eq!(p.conversions.len(), 2);
        assert_eq!(p.conversions[0].consumers.len(), 2);
        insta::assert_snapshot!(p.to_text(&g));
        // A scalar target keeps everything plain.
        let q = analyze(&g, &TargetFacts::scalar()).unwrap();
        assert!(q.conversions.is_empty());
    }

    #[test]
    fn classifier_head_converts_once_before_flatten() {
        let mut b = Builder::new("t", 2);
        let x = b.input("x", &[1, 3, 8, 8]);
        let c = b.conv("stem", x, 16, 3, 2, 1, true).unwrap();
        let r = b.act("relu", Activation::Relu, c).unwrap();
        let p =
            b.g.add_node_inferred("gap", Op::GlobalAveragePool, &[r])
                .unwrap();
        let f =
            b.g.add_node_inferred("flat", Op::Flatten { axis: 1 }, &[p])
                .unwrap();
        let s =
            b.g.add_node_inferred("softmax", Op::Softmax { axis: 1 }, &[f])
                .unwrap();
        b.g.add_output("y", s);
        let plan = analyze(&b.g, &wide_cpu()).unwrap();
        assert_eq!(plan.layouts[&p], Layout::Blocked(16));
        assert_eq!(plan.layouts[&f], Layout::Plain);
        insta::assert_snapshot!(plan.to_text(&b.g));
    }
}
