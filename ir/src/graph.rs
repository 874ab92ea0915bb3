//! The dataflow graph: nodes (one op, one output each) on a petgraph `StableDiGraph`, so that
//! node ids survive rewrites. An edge `a -> b` with weight `k` means "the output of `a` is
//! input number `k` of `b`".

use crate::error::IrError;
use crate::op::Op;
use crate::tensor::TensorType;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::collections::BTreeMap;

/// Identifier of a node; also names the node's (single) output value.
pub type NodeId = NodeIndex<u32>;

/// One operation in the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Name, unique in the graph: the ONNX node name (or output tensor name), or for a
    /// constant the initializer name.
    pub name: String,
    pub op: Op,
    /// Type of the node's output, set by shape inference.
    pub ty: TensorType,
    /// Names of the ONNX nodes this node was made from (several after fusion).
    pub sources: Vec<String>,
}

/// A named graph output.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphOutput {
    pub name: String,
    pub node: NodeId,
}

/// A whole model: the graph, its inputs (the `Op::Input` nodes, in order) and outputs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    g: StableDiGraph<Node, usize>,
    /// The `Op::Input` nodes, in input order.
    pub inputs: Vec<NodeId>,
    pub outputs: Vec<GraphOutput>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Self {
        Graph {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Adds a graph input of the given type.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> NodeId {
        let index = self.inputs.len();
        let name = name.into();
        let id = self.g.add_node(Node {
            sources: vec![name.clone()],
            name,
            op: Op::Input { index },
            ty,
        });
        self.inputs.push(id);
        id
    }

    /// Adds a node with the given ordered inputs. Its type is set from `ty`; use
    /// [`Graph::add_node_inferred`] to infer it.
    pub fn add_node_typed(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[NodeId],
        ty: TensorType,
    ) -> NodeId {
        let name = name.into();
        let id = self.g.add_node(Node {
            sources: vec![name.clone()],
            name,
            op,
            ty,
        });
        for (k, &src) in inputs.iter().enumerate() {
            self.g.add_edge(src, id, k);
        }
        id
    }

    /// Adds a node and infers its output type from its inputs' types.
    pub fn add_node_inferred(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[NodeId],
    ) -> Result<NodeId, IrError> {
        let name = name.into();
        let in_tys: Vec<&TensorType> = inputs.iter().map(|&i| &self.g[i].ty).collect();
        let ty = crate::infer::infer(&op, &in_tys).map_err(|e| e.at_node(&name, op.kind()))?;
        Ok(self.add_node_typed(name, op, inputs, ty))
    }

    /// Adds a constant node holding `t`.
    pub fn add_constant(&mut self, name: impl Into<String>, t: crate::tensor::Tensor) -> NodeId {
        let ty = t.ty();
        self.add_node_typed(name, Op::Constant(t), &[], ty)
    }

    /// Marks `node` as a graph output called `name`.
    pub fn add_output(&mut self, name: impl Into<String>, node: NodeId) {
        self.outputs.push(GraphOutput {
            name: name.into(),
            node,
        });
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id]
    }
    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id)
    }
    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }
    /// All node ids in index order (not topological).
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.g.node_indices().collect()
    }

    /// The ordered inputs of `id`.
    pub fn inputs(&self, id: NodeId) -> Vec<NodeId> {
        let mut v: Vec<(usize, NodeId)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        v.sort_by_key(|&(k, _)| k);
        v.into_iter().map(|(_, n)| n).collect()
    }

    /// The input slots of each edge into `id`, sorted (for the verifier).
    pub(crate) fn input_slots(&self, id: NodeId) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| *e.weight())
            .collect();
        v.sort();
        v
    }

    /// The consumers of `id`'s output as `(consumer, input slot)`, sorted.
    pub fn users(&self, id: NodeId) -> Vec<(NodeId, usize)> {
        let mut v: Vec<(NodeId, usize)> = self
            .g
            .edges_directed(id, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight()))
            .collect();
        v.sort();
        v
    }

    /// Whether `id` is a graph output.
    pub fn is_output(&self, id: NodeId) -> bool {
        self.outputs.iter().any(|o| o.node == id)
    }

    /// Replaces the ordered inputs of `id`.
    pub fn set_inputs(&mut self, id: NodeId, inputs: &[NodeId]) {
        let old: Vec<_> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in old {
            self.g.remove_edge(e);
        }
        for (k, &src) in inputs.iter().enumerate() {
            self.g.add_edge(src, id, k);
        }
    }

    /// Redirects every use of `old` (edges and graph outputs) to `new`.
    pub fn replace_all_uses(&mut self, old: NodeId, new: NodeId) {
        if old == new {
            return;
        }
        let uses: Vec<_> = self
            .g
            .edges_directed(old, Direction::Outgoing)
            .map(|e| (e.id(), e.target(), *e.weight()))
            .collect();
        for (e, target, slot) in uses {
            self.g.remove_edge(e);
            self.g.add_edge(new, target, slot);
        }
        for o in &mut self.outputs {
            if o.node == old {
                o.node = new;
            }
        }
    }

    /// Removes a node and its edges. Callers must have redirected its uses first.
    pub fn remove_node(&mut self, id: NodeId) -> Option<Node> {
        self.inputs.retain(|&i| i != id);
        self.g.remove_node(id)
    }

    /// Nodes in a deterministic topological order (Kahn's algorithm, ties broken by node
    /// index). Fails on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, IrError> {
        let mut indeg: BTreeMap<NodeId, usize> = BTreeMap::new();
        for n in self.g.node_indices() {
            indeg.insert(n, self.g.edges_directed(n, Direction::Incoming).count());
        }
        let mut ready: std::collections::BTreeSet<NodeId> = indeg
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&n, _)| n)
            .collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("edge target is a node");
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        if order.len() != indeg.len() {
            let stuck = indeg
                .iter()
                .find(|(n, _)| !order.contains(n))
                .map(|(&n, _)| self.g[n].name.clone())
                .unwrap_or_default();
            return Err(IrError::Cycle { node: stuck });
        }
        Ok(order)
    }

    /// Re-infers every node's output type in topological order.
    pub fn infer_types(&mut self) -> Result<(), IrError> {
        for id in self.topo_order()? {
            let ty = self.inferred_type(id)?;
            if let Some(ty) = ty {
                self.g[id].ty = ty;
            }
        }
        Ok(())
    }

    /// The type shape inference gives `id` from its inputs' current types (`None` for
    /// inputs, whose type is given).
    pub fn inferred_type(&self, id: NodeId) -> Result<Option<TensorType>, IrError> {
        let node = &self.g[id];
        if let Op::Input { .. } = node.op {
            return Ok(None);
        }
        let ins = self.inputs(id);
        let tys: Vec<&TensorType> = ins.iter().map(|&i| &self.g[i].ty).collect();
        crate::infer::infer(&node.op, &tys)
            .map(Some)
            .map_err(|e| e.at_node(&node.name, node.op.kind()))
    }

    /// Removes every node from which no graph output is reachable (graph inputs are kept).
    /// Returns how many nodes were removed.
    pub fn remove_dead(&mut self) -> usize {
        let mut live = std::collections::HashSet::new();
        let mut stack: Vec<NodeId> = self.outputs.iter().map(|o| o.node).collect();
        stack.extend(self.inputs.iter().copied());
        while let Some(n) = stack.pop() {
            if live.insert(n) {
                stack.extend(self.inputs(n));
            }
        }
        let dead: Vec<NodeId> = self
            .g
            .node_indices()
            .filter(|n| !live.contains(n))
            .collect();
        for &n in &dead {
            self.g.remove_node(n);
        }
        dead.len()
    }

    /// Finds a node by name.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.g.node_indices().find(|&n| self.g[n].name == name)
    }

    /// A name not used by any node, derived from `base`.
    pub fn unique_name(&self, base: &str) -> String {
        let names: std::collections::HashSet<&str> =
            self.g.node_weights().map(|n| n.name.as_str()).collect();
        if !names.contains(base) {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}.{i}"))
            .find(|c| !names.contains(c.as_str()))
            .expect("infinite candidates")
    }
}
