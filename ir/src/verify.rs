//! The IR verifier: structural and type invariants that every pass must preserve.

use crate::error::IrError;
use crate::graph::Graph;
use crate::op::Op;
use std::collections::HashSet;

/// Checks the graph: acyclic; every node's inputs occupy slots `0..n` exactly once and their
/// count fits the op's arity; stored types equal the types shape inference gives; node names
/// are unique; inputs are `Op::Input` nodes numbered in order; outputs exist.
pub fn verify(g: &Graph) -> Result<(), IrError> {
    let order = g.topo_order()?;
    let mut names = HashSet::new();
    for &id in &order {
        let node = g.node(id);
        if !names.insert(node.name.as_str()) {
            return Err(IrError::Invalid(format!(
                "duplicate node name '{}'",
                node.name
            )));
        }
        let slots = g.input_slots(id);
        if slots.iter().enumerate().any(|(i, &s)| i != s) {
            return Err(IrError::Invalid(format!(
                "node '{}' has input slots {slots:?}, expected 0..{}",
                node.name,
                slots.len()
            )));
        }
        if let Some(ty) = g.inferred_type(id)? {
            if ty != node.ty {
                return Err(IrError::Invalid(format!(
                    "node '{}' ({}) is typed {} but its inputs give {}",
                    node.name,
                    node.op.kind(),
                    node.ty,
                    ty
                )));
            }
        }
    }
    for (k, &i) in g.inputs.iter().enumerate() {
        if !g.contains(i) {
            return Err(IrError::Invalid(format!("graph input {k} was removed")));
        }
        match g.node(i).op {
            Op::Input { index } if index == k => {}
            _ => {
                return Err(IrError::Invalid(format!(
                    "graph input {k} ('{}') is not Input {{ index: {k} }}",
                    g.node(i).name
                )))
            }
        }
    }
    for id in g.node_ids() {
        if let Op::Input { .. } = g.node(id).op {
            if !g.inputs.contains(&id) {
                return Err(IrError::Invalid(format!(
                    "Input node '{}' is not a graph input",
                    g.node(id).name
                )));
            }
        }
    }
    if g.outputs.is_empty() {
        return Err(IrError::Invalid("the graph has no outputs".into()));
    }
    for o in &g.outputs {
        if !g.contains(o.node) {
            return Err(IrError::Invalid(format!(
                "output '{}' refers to a removed node",
                o.name
            )));
        }
    }
    Ok(())
}
