//! Batch separability: whether a graph treats the images of a batch independently, and the
//! same graph for one image.
//!
//! A backend may then run a batch of `B` as `B` runs of the one-image graph (one after
//! another, or on different threads) instead of running every op over the whole batch: the
//! activations of one image stay in cache from op to op, and threads need no
//! synchronisation inside an image. [`per_image`] decides it with one exhaustive match over
//! [`Op`]: each op either keeps axis 0 as the image axis of every batched value it reads and
//! writes, never mixing two images (then its one-image form is returned, with a `Reshape`'s
//! target shape rewritten), or it is refused with the reason.
//!
//! A value is *batched* when it depends on a graph input; constants and ops on constants
//! only are not. Every batched value must have the batch as its axis 0; an unbatched operand
//! of a broadcasting op must not span axis 0 (size 1 there, or a lower rank).

use crate::graph::{Graph, GraphOutput, NodeId};
use crate::op::Op;
use crate::tensor::TensorType;
use crate::IrError;
use std::collections::{HashMap, HashSet};

/// How an op's input slot may take part in a per-image split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// An activation: batched, with the batch as its axis 0.
    Image,
    /// A parameter (weights, statistics, indices): must not depend on the inputs.
    Param,
    /// A broadcasting operand: batched as [`Role::Image`], or unbatched without extent on
    /// the output's axis 0.
    Broadcast,
}

/// The graph for one image of `g`'s batch, when `g` treats images independently: every graph
/// input has rank 2 or more and the same batch `B > 1` as its axis 0, every graph output is
/// batched, and no op
/// mixes images. `Err` carries the reason it is not separable (naming the node), for reports.
///
/// The returned graph has the same nodes (ids, names, constants), its inputs' axis 0 set to
/// 1, `Reshape` targets rewritten accordingly and every type re-inferred.
pub fn per_image(g: &Graph) -> Result<Graph, String> {
    let batch = match g.inputs.first() {
        Some(&i) => g.node(i).ty.shape.first().copied().unwrap_or(0),
        None => return Err("the graph has no input".into()),
    };
    if batch < 2 {
        return Err(format!("batch {batch}: nothing to split"));
    }
    for &i in &g.inputs {
        let node = g.node(i);
        if node.ty.rank() < 2 {
            return Err(format!(
                "input '{}' has rank {}: no batch axis beside its data",
                node.name,
                node.ty.rank()
            ));
        }
    }
    let order = g.topo_order().map_err(|e| e.to_string())?;
    let mut batched: HashMap<NodeId, bool> = HashMap::new();
    let mut ops: Vec<(NodeId, Op)> = Vec::new();
    for &id in &order {
        let node = g.node(id);
        let ins = g.inputs(id);
        let roles: Vec<(bool, &TensorType)> =
            ins.iter().map(|i| (batched[i], &g.node(*i).ty)).collect();
        let any = roles.iter().any(|r| r.0);
        let is_batched = match &node.op {
            Op::Input { .. } => {
                if node.ty.shape.first() != Some(&batch) {
                    return Err(format!(
                        "input '{}' has shape {:?}, not batch {batch} on axis 0",
                        node.name, node.ty.shape
                    ));
                }
                true
            }
            Op::Constant(_) => false,
            op if any => {
                let image_op = image_op(op, &roles, &node.ty, batch)
                    .map_err(|why| format!("node '{}' ({}) {why}", node.name, node.op.kind()))?;
                if let Some(op) = image_op {
                    ops.push((id, op));
                }
                true
            }
            // An op on constants only: the same for every image.
            _ => false,
        };
        batched.insert(id, is_batched);
    }
    for o in &g.outputs {
        if !batched.get(&o.node).copied().unwrap_or(false) {
            return Err(format!("output '{}' does not depend on the input", o.name));
        }
    }
    let mut one = g.clone();
    for &i in &g.inputs {
        one.node_mut(i).ty.shape[0] = 1;
    }
    for (id, op) in ops {
        one.node_mut(id).op = op;
    }
    one.infer_types().map_err(|e: IrError| e.to_string())?;
    // The split is sound only if every batched value kept its other axes.
    for (&id, &b) in &batched {
        let (old, new) = (&g.node(id).ty.shape, &one.node(id).ty.shape);
        let kept = if b {
            old.first() == Some(&batch) && new.first() == Some(&1) && old[1..] == new[1..]
        } else {
            old == new
        };
        if !kept {
            return Err(format!(
                "node '{}' changes shape from {old:?} to {new:?} for one image",
                g.node(id).name
            ));
        }
    }
    Ok(one)
}

/// Checks `op` on inputs `ins` (batched?, type) with output type `out`: `Ok(None)` when the
/// op runs unchanged on one image, `Ok(Some(op))` when its one-image form differs, `Err`
/// with the reason when it mixes images.
fn image_op(
    op: &Op,
    ins: &[(bool, &TensorType)],
    out: &TensorType,
    batch: usize,
) -> Result<Option<Op>, String> {
    use Role::*;
    let not_axis0 = |what: &str, axis0: bool| {
        if axis0 {
            Err(format!("{what} axis 0, the batch axis"))
        } else {
            Ok(())
        }
    };
    let conv_roles;
    let roles: &[Role] = match op {
        Op::Input { .. } | Op::Constant(_) => return Ok(None),
        Op::Identity
        | Op::Dropout
        | Op::Act(_)
        | Op::Cast { .. }
        | Op::GlobalAveragePool
        | Op::Pool(_)
        | Op::Lrn(_)
        | Op::QLut(_)
        | Op::QGlobalAveragePool(_) => &[Image],
        Op::Conv(c) => {
            // x, w, then the bias and the residual when present.
            conv_roles = [
                Image,
                Param,
                if c.has_bias { Param } else { Broadcast },
                Broadcast,
            ];
            &conv_roles
        }
        Op::BatchNorm { .. } | Op::ChannelAffine | Op::SqueezeExcite(_) => &[Image, Param],
        Op::Binary(_) => &[Broadcast, Broadcast],
        // `b` may be one value per channel of an image: sliced with the image as well.
        Op::QBinary(_) => &[Image, Image],
        Op::Gemm(gm) => {
            if gm.trans_a {
                return Err("reads A transposed: its axis 0 is K, not the batch".into());
            }
            &[Image, Param, Broadcast, Broadcast]
        }
        Op::MatMul => {
            let (r0, r1) = (ins[0].1.rank(), ins[1].1.rank());
            let b_ok = match ins[1].0 {
                // Matrices per image: both stacked along axis 0.
                true => r0 == r1 && r0 >= 3,
                // Shared weights, broadcast over the image axis.
                false => r1 < r0 || (r0 == r1 && (r0 == 2 || ins[1].1.shape[0] == 1)),
            };
            if !ins[0].0 || r0 < 2 || !b_ok {
                return Err("multiplies across the batch axis".into());
            }
            return Ok(None);
        }
        Op::ReduceMean { axes, .. } => {
            not_axis0("reduces", axes.contains(&0))?;
            check(&[Image], ins, out, batch)?;
            return Ok(None);
        }
        Op::Flatten { axis } => {
            not_axis0("flattens", *axis == 0)?;
            check(&[Image], ins, out, batch)?;
            return Ok(None);
        }
        Op::Squeeze { axes } | Op::Unsqueeze { axes } => {
            not_axis0("squeezes or inserts", axes.contains(&0))?;
            check(&[Image], ins, out, batch)?;
            return Ok(None);
        }
        Op::Transpose { perm } => {
            not_axis0("moves", perm.first() != Some(&0))?;
            check(&[Image], ins, out, batch)?;
            return Ok(None);
        }
        Op::Softmax { axis } => {
            not_axis0("normalizes over", *axis == 0)?;
            check(&[Image], ins, out, batch)?;
            return Ok(None);
        }
        Op::Concat { axis } => {
            not_axis0("concatenates along", *axis == 0)?;
            check(&vec![Image; ins.len()], ins, out, batch)?;
            return Ok(None);
        }
        Op::Slice(s) => {
            not_axis0("slices", s.axes.contains(&0))?;
            check(&[Image], ins, out, batch)?;
            return Ok(None);
        }
        Op::Quantize(q) | Op::Dequantize(q) => {
            not_axis0("has parameters per index of", q.axis == Some(0))?;
            check(&[Image], ins, out, batch)?;
            return Ok(None);
        }
        Op::QConv(q) => {
            // x, w, then the bias and the fused residual when present.
            conv_roles = [
                Image,
                Param,
                if q.conv.has_bias { Param } else { Image },
                Image,
            ];
            &conv_roles
        }
        Op::Gather { axis } => {
            not_axis0("gathers along", *axis == 0)?;
            check(&[Image, Param], ins, out, batch)?;
            return Ok(None);
        }
        Op::Pad { pads, .. } => {
            let rank = pads.len() / 2;
            not_axis0(
                "pads",
                pads.first() != Some(&0) || pads.get(rank) != Some(&0),
            )?;
            check(&[Image], ins, out, batch)?;
            return Ok(None);
        }
        Op::Reshape { shape } => {
            if shape.first() != Some(&batch) {
                return Err(format!(
                    "reshapes to {shape:?}, moving the batch off axis 0"
                ));
            }
            check(&[Image], ins, out, batch)?;
            let mut one = shape.clone();
            one[0] = 1;
            return Ok(Some(Op::Reshape { shape: one }));
        }
    };
    check(roles, ins, out, batch)?;
    Ok(None)
}

/// Checks every input against its role (the last role repeats for extra inputs, as a
/// Conv's or Gemm's optional slots all share theirs).
fn check(
    roles: &[Role],
    ins: &[(bool, &TensorType)],
    out: &TensorType,
    batch: usize,
) -> Result<(), String> {
    if out.shape.first() != Some(&batch) {
        return Err(format!(
            "has output shape {:?}, not batch {batch} on axis 0",
            out.shape
        ));
    }
    for (k, &(b, ty)) in ins.iter().enumerate() {
        let role = roles
            .get(k)
            .or(roles.last())
            .copied()
            .unwrap_or(Role::Param);
        let image = b && ty.shape.first() == Some(&batch);
        let aligned = ty.rank() == out.rank();
        let spans_axis0 = aligned && ty.shape.first().is_some_and(|&d| d > 1);
        let ok = match role {
            Role::Image => image,
            Role::Param => !b,
            // Broadcasting aligns trailing axes: a batched operand must reach axis 0.
            Role::Broadcast => (image && aligned) || (!b && !spans_axis0),
        };
        if !ok {
            return Err(format!(
                "input {k} ({}, shape {:?}) is not separable by image",
                if b { "batched" } else { "constant" },
                ty.shape
            ));
        }
    }
    Ok(())
}

/// The classifier head of a graph with batch `B > 1` on its inputs' axis 0: `(body,
/// head)`, where `body` is `g` with one output, the *cut*: the first value (in topological
/// order) of type `[B, F]` that depends on the inputs and that every later op reads alone,
/// and `head` takes the cut as its only input and runs every op after it to `g`'s
/// outputs. `None` when no value is such a cut, when an op after it reads a value computed
/// before it other than the cut and constants, or when no matrix product follows it (the
/// point of the split: a backend that runs the body once per image runs the head once over
/// the batch, so a classifier's weights stream from memory once per batch, not once per
/// image).
///
/// Both graphs keep `g`'s node names, ops and types (constants the head reads are copied
/// into it); the body's output and the head's input are named as the cut's node.
pub fn split_head(g: &Graph) -> Option<(Graph, Graph)> {
    let batch = *g.node(*g.inputs.first()?).ty.shape.first()?;
    if batch < 2 {
        return None;
    }
    // The nodes some output needs, in topological order.
    let mut needed = HashSet::new();
    let mut stack: Vec<NodeId> = g.outputs.iter().map(|o| o.node).collect();
    while let Some(n) = stack.pop() {
        if needed.insert(n) {
            stack.extend(g.inputs(n));
        }
    }
    let order: Vec<NodeId> = g
        .topo_order()
        .ok()?
        .into_iter()
        .filter(|n| needed.contains(n))
        .collect();
    let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut batched: HashMap<NodeId, bool> = HashMap::new();
    for &n in &order {
        let b = matches!(g.node(n).op, Op::Input { .. })
            || g.inputs(n)
                .iter()
                .any(|i| batched.get(i).copied().unwrap_or(false));
        batched.insert(n, b);
    }
    let is_cut = |i: usize| {
        let c = order[i];
        let node = g.node(c);
        let after = &order[i + 1..];
        !matches!(node.op, Op::Input { .. })
            && batched[&c]
            && node.ty.rank() == 2
            && node.ty.shape[0] == batch
            && g.outputs.iter().all(|o| pos[&o.node] > i)
            // The head's only input is the cut: a graph input it reads (placed after the cut
            // in topological order) keeps the cut from being one.
            && after
                .iter()
                .all(|&n| !matches!(g.node(n).op, Op::Input { .. }))
            && after.iter().all(|&n| {
                g.inputs(n).iter().all(|inp| {
                    *inp == c || pos[inp] > i || matches!(g.node(*inp).op, Op::Constant(_))
                })
            })
            && after
                .iter()
                .any(|&n| matches!(g.node(n).op, Op::Gemm(_) | Op::MatMul))
    };
    let at = (0..order.len()).find(|&i| is_cut(i))?;
    let cut = order[at];
    let cn = g.node(cut);
    let mut head = Graph::new(g.name.clone());
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    map.insert(cut, head.add_input(cn.name.clone(), cn.ty.clone()));
    for &n in &order[at + 1..] {
        let mut ins = Vec::new();
        for inp in g.inputs(n) {
            let id = match map.get(&inp) {
                Some(&id) => id,
                // A constant computed before the cut (checked by `is_cut`): copied.
                None => {
                    let c = g.node(inp);
                    let id = head.add_node_typed(c.name.clone(), c.op.clone(), &[], c.ty.clone());
                    head.node_mut(id).sources = c.sources.clone();
                    map.insert(inp, id);
                    id
                }
            };
            ins.push(id);
        }
        let node = g.node(n);
        let id = head.add_node_typed(node.name.clone(), node.op.clone(), &ins, node.ty.clone());
        head.node_mut(id).sources = node.sources.clone();
        map.insert(n, id);
    }
    for o in &g.outputs {
        head.add_output(o.name.clone(), map[&o.node]);
    }
    let mut body = g.clone();
    body.outputs = vec![GraphOutput {
        name: cn.name.clone(),
        node: cut,
    }];
    body.remove_dead();
    Some((body, head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Activation, BinaryOp, Conv, Epilogue, Gemm};
    use crate::tensor::Tensor;

    fn conv_graph(batch: usize) -> (Graph, NodeId) {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::f32(vec![batch, 3, 8, 8]));
        let w = g.add_constant(
            "w",
            Tensor::zeros(&TensorType::f32(vec![4, 3, 3, 3])).unwrap(),
        );
        let conv = Op::Conv(Conv {
            kernel: [3, 3],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [1, 1, 1, 1],
            group: 1,
            has_bias: false,
            epilogue: Epilogue::default(),
            schedule: None,
        });
        let c = g.add_node_inferred("c", conv, &[x, w]).unwrap();
        let r = g
            .add_node_inferred("r", Op::Act(Activation::Relu), &[c])
            .unwrap();
        (g, r)
    }

    /// conv -> relu -> flatten `[4, 256]` -> gemm `[4, 10]` (-> + the flatten's first 10
    /// features when `skip`).
    fn classifier_graph(skip: bool) -> Graph {
        let (mut g, r) = conv_graph(4);
        let flat = g
            .add_node_inferred("flat", Op::Flatten { axis: 1 }, &[r])
            .unwrap();
        let w = g.add_constant(
            "fc.w",
            Tensor::zeros(&TensorType::f32(vec![256, 10])).unwrap(),
        );
        let fc = g
            .add_node_inferred("fc", Op::Gemm(Gemm::default()), &[flat, w])
            .unwrap();
        let y = if skip {
            let early = g
                .add_node_inferred(
                    "early",
                    Op::Reshape {
                        shape: vec![4, 256],
                    },
                    &[r],
                )
                .unwrap();
            let part = g
                .add_node_inferred("part", Op::Gemm(Gemm::default()), &[early, w])
                .unwrap();
            g.add_node_inferred("sum", Op::Binary(BinaryOp::Add), &[fc, part])
                .unwrap()
        } else {
            g.add_node_inferred("act", Op::Act(Activation::Relu), &[fc])
                .unwrap()
        };
        g.add_output("y", y);
        g
    }

    #[test]
    fn the_classifier_head_splits_off_at_the_first_rank2_cut() {
        let g = classifier_graph(false);
        let (body, head) = split_head(&g).unwrap();
        // The body ends at the flatten, the head starts there.
        assert_eq!(body.outputs.len(), 1);
        assert_eq!(body.node(body.outputs[0].node).name, "flat");
        assert!(body.find("fc").is_none() && body.find("fc.w").is_none());
        assert_eq!(head.inputs.len(), 1);
        let hin = head.node(head.inputs[0]);
        assert_eq!((hin.name.as_str(), &hin.ty.shape), ("flat", &vec![4, 256]));
        let names: HashSet<String> = head
            .node_ids()
            .into_iter()
            .map(|n| head.node(n).name.clone())
            .collect();
        let want: HashSet<String> = ["flat", "fc.w", "fc", "act"].map(String::from).into();
        assert_eq!(names, want);
        assert_eq!(head.outputs[0].name, "y");
        assert_eq!(head.node(head.outputs[0].node).ty.shape, vec![4, 10]);
        crate::verify::verify(&head).unwrap();
        crate::verify::verify(&body).unwrap();
        // The body is still separable by image.
        assert!(per_image(&body).is_ok());
    }

    #[test]
    fn no_head_without_a_cut_or_a_matrix_product() {
        // The sum reads the conv's output beside the flatten: no single cut before `fc`; the
        // only later cut candidates have no matrix product after them.
        assert!(split_head(&classifier_graph(true)).is_none());
        // No matrix product at all.
        let (mut g, r) = conv_graph(4);
        let flat = g
            .add_node_inferred("flat", Op::Flatten { axis: 1 }, &[r])
            .unwrap();
        let a = g
            .add_node_inferred("a", Op::Act(Activation::Relu), &[flat])
            .unwrap();
        g.add_output("y", a);
        assert!(split_head(&g).is_none());
        // A second graph input read after the flatten: the head would need it too.
        let mut g = classifier_graph(false);
        let extra = g.add_input("bias_in", TensorType::f32(vec![4, 10]));
        let fc = g.find("fc").unwrap();
        let sum = g
            .add_node_inferred("plus", Op::Binary(BinaryOp::Add), &[fc, extra])
            .unwrap();
        g.outputs[0].node = sum;
        g.remove_dead();
        assert!(split_head(&g).is_none());
        // Batch 1: nothing to split.
        let (mut g, r) = conv_graph(1);
        g.add_output("y", r);
        assert!(split_head(&g).is_none());
    }

    #[test]
    fn conv_chain_splits_and_reshape_is_rewritten() {
        let (mut g, r) = conv_graph(4);
        let flat = g
            .add_node_inferred(
                "reshape",
                Op::Reshape {
                    shape: vec![4, 256],
                },
                &[r],
            )
            .unwrap();
        g.add_output("y", flat);
        let one = per_image(&g).unwrap();
        assert_eq!(one.node(one.inputs[0]).ty.shape, vec![1, 3, 8, 8]);
        let y = one.outputs[0].node;
        assert_eq!(one.node(y).ty.shape, vec![1, 256]);
        assert_eq!(
            one.node(y).op,
            Op::Reshape {
                shape: vec![1, 256]
            }
        );
    }

    #[test]
    fn ops_that_mix_images_are_refused_with_the_node() {
        let cases: Vec<(Op, &str)> = vec![
            (Op::Softmax { axis: 0 }, "normalizes over axis 0"),
            (
                Op::Transpose {
                    perm: vec![1, 0, 2, 3],
                },
                "moves axis 0",
            ),
            (Op::Flatten { axis: 0 }, "flattens axis 0"),
            (
                Op::ReduceMean {
                    axes: vec![0],
                    keepdims: true,
                },
                "reduces axis 0",
            ),
            (
                Op::Reshape {
                    shape: vec![2, 512],
                },
                "moving the batch",
            ),
        ];
        for (op, want) in cases {
            let (mut g, r) = conv_graph(4);
            let bad = g.add_node_inferred("bad", op.clone(), &[r]).unwrap();
            g.add_output("y", bad);
            let e = per_image(&g).unwrap_err();
            assert!(e.contains("'bad'") && e.contains(want), "{op:?}: {e}");
        }
    }

    #[test]
    fn broadcast_constants_must_not_span_the_batch() {
        for (shape, ok) in [
            (vec![1, 4, 1, 1], true),
            (vec![4, 1, 1], true),
            (vec![4, 4, 1, 1], false),
        ] {
            let (mut g, r) = conv_graph(4);
            let k = g.add_constant("k", Tensor::zeros(&TensorType::f32(shape.clone())).unwrap());
            let m = g
                .add_node_inferred("mul", Op::Binary(BinaryOp::Mul), &[r, k])
                .unwrap();
            g.add_output("y", m);
            assert_eq!(per_image(&g).is_ok(), ok, "{shape:?}");
        }
    }

    #[test]
    fn gemm_rows_split_unless_a_is_transposed() {
        for trans_a in [false, true] {
            let mut g = Graph::new("t");
            let x = g.add_input("x", TensorType::f32(vec![3, 5]));
            let shape = if trans_a { vec![5, 5] } else { vec![5, 2] };
            let a = if trans_a {
                g.add_node_inferred("t", Op::Transpose { perm: vec![1, 0] }, &[x])
                    .unwrap()
            } else {
                x
            };
            let w = g.add_constant("w", Tensor::zeros(&TensorType::f32(shape)).unwrap());
            let gm = Op::Gemm(Gemm {
                trans_a,
                ..Default::default()
            });
            let y = g.add_node_inferred("gemm", gm, &[a, w]).unwrap();
            g.add_output("y", y);
            // Transposing the input already moves the batch; either way it is refused.
            assert_eq!(per_image(&g).is_ok(), !trans_a);
        }
    }

    #[test]
    fn batch_one_and_constant_outputs_are_not_split() {
        let (mut g, r) = conv_graph(1);
        g.add_output("y", r);
        assert!(per_image(&g).unwrap_err().contains("nothing to split"));
        let (mut g, r) = conv_graph(2);
        g.add_output("y", r);
        let k = g.add_constant("k", Tensor::scalar_f32(1.0));
        g.add_output("k", k);
        assert!(per_image(&g).unwrap_err().contains("does not depend"));
        // A vector input has no batch axis: its axis 0 is data.
        let mut g = Graph::new("v");
        let x = g.add_input("x", TensorType::f32(vec![32]));
        let r = g
            .add_node_inferred("relu", Op::Act(Activation::Relu), &[x])
            .unwrap();
        g.add_output("y", r);
        assert!(per_image(&g).unwrap_err().contains("rank 1"));
    }
}
