//! Graphviz output of the IR (`mnc compile --emit dot`). Deterministic: nodes in the same
//! topological order and numbering as the text printer (`%k`), attributes in a fixed order.
//! Constants are drawn as small grey notes, fused nodes (several ONNX sources) filled blue,
//! graph outputs as ellipses; an edge into input slot `k > 0` is labelled `k`.

use crate::graph::{Graph, NodeId};
use crate::op::Op;
use crate::print::op_attrs;
use std::collections::HashMap;
use std::fmt::Write;

/// Escapes a string for a double-quoted DOT string.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// The graph in Graphviz DOT syntax. A cyclic graph (which the verifier rejects) is drawn in
/// node-index order instead of topological order.
pub fn to_dot(g: &Graph) -> String {
    let order: Vec<NodeId> = g.topo_order().unwrap_or_else(|_| g.node_ids());
    let num: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut s = String::new();
    writeln!(s, "digraph \"{}\" {{", esc(&g.name)).unwrap();
    s.push_str("  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    s.push_str("  edge [fontsize=8];\n");
    for &id in &order {
        let n = g.node(id);
        let k = num[&id];
        let (label, style) = match &n.op {
            Op::Constant(_) => (
                format!("{}\n{}", n.name, n.ty),
                ", shape=note, style=filled, fillcolor=\"#eeeeee\", fontsize=8",
            ),
            Op::Input { .. } => (
                format!(
                    "%{k} {}{}\n{}\n{}",
                    n.op.kind(),
                    op_attrs(&n.op),
                    n.name,
                    n.ty
                ),
                ", shape=ellipse",
            ),
            op => {
                let mut l = format!("%{k} {}{}\n{}\n{}", op.kind(), op_attrs(op), n.name, n.ty);
                if n.sources.len() > 1 {
                    write!(l, "\n<- {}", n.sources.join(", ")).unwrap();
                }
                let style = if n.sources.len() > 1 {
                    ", style=filled, fillcolor=\"#cfe2ff\""
                } else {
                    ""
                };
                (l, style)
            }
        };
        writeln!(s, "  n{k} [label=\"{}\"{style}];", esc(&label)).unwrap();
    }
    for &id in &order {
        for (slot, src) in g.inputs(id).into_iter().enumerate() {
            let Some(&from) = num.get(&src) else { continue };
            if slot == 0 {
                writeln!(s, "  n{from} -> n{};", num[&id]).unwrap();
            } else {
                writeln!(s, "  n{from} -> n{} [label=\"{slot}\"];", num[&id]).unwrap();
            }
        }
    }
    for (i, o) in g.outputs.iter().enumerate() {
        writeln!(
            s,
            "  out{i} [label=\"output {}\", shape=ellipse];",
            esc(&o.name)
        )
        .unwrap();
        if let Some(&from) = num.get(&o.node) {
            writeln!(s, "  n{from} -> out{i};").unwrap();
        }
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Activation, Conv, Epilogue};
    use crate::tensor::{Tensor, TensorType};

    #[test]
    fn dot_of_a_small_graph() {
        let mut g = Graph::new("t\"q");
        let x = g.add_input("x", TensorType::f32(vec![1, 2, 3, 3]));
        let w = g.add_constant(
            "w",
            Tensor::from_f32(vec![2, 2, 1, 1], vec![1.0, 0.0, 0.0, 1.0]).unwrap(),
        );
        let c = g
            .add_node_inferred(
                "conv",
                crate::Op::Conv(Conv {
                    epilogue: Epilogue {
                        residual: true,
                        act: Some(Activation::Relu),
                    },
                    ..Default::default()
                }),
                &[x, w, x],
            )
            .unwrap();
        g.node_mut(c).sources.push("relu".into());
        g.add_output("y", c);
        let d = to_dot(&g);
        assert_eq!(d, to_dot(&g.clone()), "deterministic");
        let want = r##"digraph "t\"q" {
  rankdir=TB;
  node [shape=box, fontname="monospace", fontsize=10];
  edge [fontsize=8];
  n0 [label="%0 Input[0]\nx\nf32[1,2,3,3]", shape=ellipse];
  n1 [label="w\nf32[2,2,1,1]", shape=note, style=filled, fillcolor="#eeeeee", fontsize=8];
  n2 [label="%2 Conv[k=1x1 s=1x1 d=1x1 p=0,0,0,0 g=1 +residual act=relu]\nconv\nf32[1,2,3,3]\n<- conv, relu", style=filled, fillcolor="#cfe2ff"];
  n0 -> n2;
  n1 -> n2 [label="1"];
  n0 -> n2 [label="2"];
  out0 [label="output y", shape=ellipse];
  n2 -> out0;
}
"##;
        assert_eq!(d, want);
    }
}
