//! Canonicalization: rewrites that make the graph independent of the exporter that wrote it,
//! run before BatchNorm folding and fusion so that those passes (which know the torchvision
//! forms) see the same graph whatever produced the file.
//!
//! - [`transpose`] (`transpose-sink`): layout. Transposes composed and cancelled in pairs,
//!   sunk through layout-agnostic ops (activations, broadcasting binary ops with permuted
//!   constants, Pad, ReduceMean, GlobalAveragePool, Concat, Softmax) and hoisted through an
//!   elementwise preprocessing chain onto the graph input; ReduceMean over non-trailing axes
//!   (NHWC spatial means) expressed as Transpose + trailing ReduceMean. A Keras/tf2onnx NHWC
//!   model ends with one Transpose at its input and none inside.
//! - [`simplify`] (`simplify`): algebra and views. `x + 0`, `x * 1`, `x - 0`, `x / 1`
//!   removed; view chains (Reshape/Squeeze/Unsqueeze/Flatten) collapsed to one view or none;
//!   `[N,C,1,1] -> [N,C]` views become `Flatten`; ReduceMean over H,W becomes
//!   GlobalAveragePool; `MatMul(x, W)` (+ a bias Add) with constant W becomes Gemm; a 1x1
//!   conv over a 1x1 map that is flattened becomes a Gemm after the Flatten.
//! - [`activation`] (`act-canon`): decomposed activations recognized: Clip chains merged
//!   (`Max`/`Min` with a constant import as Clip), HardSigmoid as `Clip(x + 3, 0, 6) / 6`
//!   (Div, or Mul by 1/6), HardSwish as `x * hardsigmoid(x)` (either operand order).
//! - [`affine`] (`affine-merge`, after `bn-fold`): per-channel constant Mul/Add/Sub/Div chains
//!   that no conv absorbed become one `ChannelAffine` (BatchNorm followed by a Caffe "Scale"
//!   layer, Keras preprocessing), and a ChannelAffine feeding an unpadded conv folds into it.
//!
//! Each rewrite is its own pass with unit tests that check the rewritten graph numerically
//! against the original (`testutil::check_pass`) and insta snapshots of the result.

pub mod activation;
pub mod affine;
pub mod simplify;
pub mod transpose;

use crate::error::PassError;
use mnc_ir::{Graph, NodeId, Op, Tensor};

/// Re-infers the type of `id` from its current inputs and stores it.
pub(crate) fn retype(g: &mut Graph, id: NodeId, pass: &'static str) -> Result<(), PassError> {
    if let Some(ty) = g.inferred_type(id).map_err(PassError::ir(pass))? {
        g.node_mut(id).ty = ty;
    }
    Ok(())
}

/// Adds a node after inferring its type, with a fresh name derived from `base`.
pub(crate) fn add_node(
    g: &mut Graph,
    base: &str,
    op: Op,
    inputs: &[NodeId],
    pass: &'static str,
) -> Result<NodeId, PassError> {
    let name = g.unique_name(base);
    g.add_node_inferred(name, op, inputs)
        .map_err(PassError::ir(pass))
}

/// Adds a constant with a fresh name derived from `base`.
pub(crate) fn add_const(g: &mut Graph, base: &str, t: Tensor) -> NodeId {
    let name = g.unique_name(base);
    g.add_constant(name, t)
}

/// The single f32 value of a constant with exactly one element.
pub(crate) fn scalar(g: &Graph, id: NodeId) -> Option<f32> {
    match &g.node(id).op {
        Op::Constant(t) if t.numel() == 1 => t.as_f32().map(|d| d[0]),
        _ => None,
    }
}

/// Whether `id` is a constant node.
pub(crate) fn is_const(g: &Graph, id: NodeId) -> bool {
    matches!(g.node(id).op, Op::Constant(_))
}

/// The driver of the canonicalization rewrites: visits every node still in the graph in
/// topological order (as of the start), applies `rule` (which returns whether it rewrote),
/// then removes dead nodes. Returns the number of rewrites plus removed nodes.
pub(crate) fn rewrite_each(
    g: &mut Graph,
    pass: &'static str,
    mut rule: impl FnMut(&mut Graph, NodeId) -> Result<bool, PassError>,
) -> Result<usize, PassError> {
    let mut n = 0;
    for id in g.topo_order().map_err(PassError::ir(pass))? {
        if g.contains(id) && rule(g, id)? {
            n += 1;
        }
    }
    Ok(n + g.remove_dead())
}
