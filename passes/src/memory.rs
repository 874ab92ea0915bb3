//! Memory planning: assigns every activation (every non-constant value) a byte range in one
//! arena, from liveness over the topological order. A value may reuse its input's buffer in
//! place when the op's facts allow it ([`mnc_ir::facts`]: views alias their input; ops such
//! as the elementwise ones, ChannelAffine, SqueezeExcite and a conv's residual overwrite an
//! input of the output's type) and the input's buffer is not read after this node. Buffers whose lifetimes overlap never overlap in the arena;
//! [`MemoryPlan::check`] verifies that independently of how the plan was made.
//!
//! Lifetimes are inclusive step ranges: a value is live from the step that defines it to the
//! last step that reads it (graph outputs: to the end; graph inputs: from step 0).

use crate::error::PassError;
use mnc_ir::facts::{self, InPlace};
use mnc_ir::{Graph, NodeId, Op, TensorType};
use std::collections::HashMap;
use std::fmt::Write;

/// Where one activation lives.
#[derive(Clone, Debug, PartialEq)]
pub struct ValuePlan {
    pub node: NodeId,
    pub name: String,
    pub bytes: usize,
    /// Index into [`MemoryPlan::buffers`].
    pub buffer: usize,
    /// Step (position in topological order) that defines the value.
    pub def: usize,
    /// Last step that reads it (`usize::MAX` for graph outputs).
    pub last_use: usize,
    /// The input whose buffer this value overwrites (or aliases), if any.
    pub in_place_of: Option<NodeId>,
}

/// One arena buffer, shared by a chain of in-place values.
#[derive(Clone, Debug, PartialEq)]
pub struct BufferPlan {
    pub offset: usize,
    /// Size rounded up to the alignment.
    pub bytes: usize,
    pub start: usize,
    pub end: usize,
}

/// The arena layout of a graph's activations.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    pub values: Vec<ValuePlan>,
    pub buffers: Vec<BufferPlan>,
    /// Size of the arena, bytes.
    pub arena_bytes: usize,
    /// Sum of the sizes of all activations (what one buffer per value would need).
    pub naive_bytes: usize,
    pub alignment: usize,
}

/// The inputs (by slot, in order of preference) whose buffer node `id` may reuse, with
/// whether that buffer must feed no other input of the node: a view's input
/// ([`facts::is_view`]), else the op's in-place inputs of the output's type
/// ([`facts::in_place_candidates`]).
fn reusable_inputs(g: &Graph, id: NodeId, ins: &[NodeId]) -> Vec<InPlace> {
    let node = g.node(id);
    let types: Vec<TensorType> = ins.iter().map(|&i| g.node(i).ty.clone()).collect();
    match types.first() {
        Some(t) if facts::is_view(&node.op, t.dtype) => vec![InPlace {
            slot: 0,
            exclusive: false,
        }],
        _ => facts::in_place_candidates(&node.op, &types, &node.ty),
    }
}

fn align(x: usize, a: usize) -> usize {
    x.div_ceil(a.max(1)) * a.max(1)
}

/// Plans the arena for `g` with every buffer aligned to `alignment` bytes.
pub fn plan_memory(g: &Graph, alignment: usize) -> Result<MemoryPlan, PassError> {
    let order = g.topo_order().map_err(PassError::ir("memory-plan"))?;
    let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let is_act = |id: NodeId| !matches!(g.node(id).op, Op::Constant(_));
    let mut values: Vec<ValuePlan> = Vec::new();
    let mut index: HashMap<NodeId, usize> = HashMap::new();
    // Per buffer: (first def, latest last_use of its members, holds a graph input, bytes).
    let mut bufs: Vec<(usize, usize, bool, usize)> = Vec::new();
    for &id in &order {
        if !is_act(id) {
            continue;
        }
        let node = g.node(id);
        let def = if matches!(node.op, Op::Input { .. }) {
            0
        } else {
            pos[&id]
        };
        let last_use = if g.is_output(id) {
            usize::MAX
        } else {
            g.users(id).iter().map(|(u, _)| pos[u]).max().unwrap_or(def)
        };
        let bytes = node.ty.bytes();
        let ins = g.inputs(id);
        let mut chosen = None;
        for InPlace { slot, exclusive } in reusable_inputs(g, id, &ins) {
            let cand = ins[slot];
            let Some(&vi) = index.get(&cand) else {
                continue; // a constant
            };
            let b = values[vi].buffer;
            let (_, end, pinned, bbytes) = bufs[b];
            let other_reader = exclusive
                && ins
                    .iter()
                    .any(|&o| o != cand && index.get(&o).is_some_and(|&ov| values[ov].buffer == b));
            if !pinned
                && end == pos[&id]
                && bbytes == bytes
                && g.node(cand).ty.dtype == node.ty.dtype
                && !other_reader
            {
                chosen = Some((cand, b));
                break;
            }
        }
        let buffer = match chosen {
            Some((_, b)) => {
                bufs[b].1 = bufs[b].1.max(last_use);
                b
            }
            None => {
                bufs.push((def, last_use, matches!(node.op, Op::Input { .. }), bytes));
                bufs.len() - 1
            }
        };
        index.insert(id, values.len());
        values.push(ValuePlan {
            node: id,
            name: node.name.clone(),
            bytes,
            buffer,
            def,
            last_use,
            in_place_of: chosen.map(|c| c.0),
        });
    }
    // Greedy placement: largest buffers first, each at the lowest offset that does not
    // collide with an already placed buffer whose lifetime overlaps.
    let mut buffers: Vec<BufferPlan> = bufs
        .iter()
        .map(|&(start, end, _, bytes)| BufferPlan {
            offset: 0,
            bytes: align(bytes, alignment),
            start,
            end,
        })
        .collect();
    let mut idx: Vec<usize> = (0..buffers.len()).collect();
    idx.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].bytes), buffers[i].start, i));
    let mut placed: Vec<usize> = Vec::new();
    let mut arena = 0;
    for i in idx {
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| overlaps(&buffers[i], &buffers[j]))
            .map(|&j| (buffers[j].offset, buffers[j].offset + buffers[j].bytes))
            .collect();
        busy.sort();
        let mut off = 0;
        for (lo, hi) in busy {
            if off + buffers[i].bytes <= lo {
                break;
            }
            off = off.max(hi);
        }
        buffers[i].offset = off;
        arena = arena.max(off + buffers[i].bytes);
        placed.push(i);
    }
    let naive_bytes = values.iter().map(|v| v.bytes).sum();
    let plan = MemoryPlan {
        values,
        buffers,
        arena_bytes: arena,
        naive_bytes,
        alignment,
    };
    plan.check()?;
    Ok(plan)
}

fn overlaps(a: &BufferPlan, b: &BufferPlan) -> bool {
    a.start <= b.end && b.start <= a.end
}

impl MemoryPlan {
    /// Number of values that reuse an input's buffer.
    pub fn in_place_count(&self) -> usize {
        self.values
            .iter()
            .filter(|v| v.in_place_of.is_some())
            .count()
    }

    /// Arena offset of the value defined by `node`.
    pub fn offset_of(&self, node: NodeId) -> Option<usize> {
        self.values
            .iter()
            .find(|v| v.node == node)
            .map(|v| self.buffers[v.buffer].offset)
    }

    /// Verifies the plan: every value fits its buffer and lies within its lifetime, every
    /// buffer fits the arena and is aligned, and no two buffers that are live at the same step
    /// share a byte.
    pub fn check(&self) -> Result<(), PassError> {
        let bad = |m: String| Err(PassError::MemoryPlan(m));
        for v in &self.values {
            let Some(b) = self.buffers.get(v.buffer) else {
                return bad(format!("value '{}' names a missing buffer", v.name));
            };
            if v.bytes > b.bytes || v.def < b.start || v.last_use > b.end {
                return bad(format!("value '{}' does not fit its buffer", v.name));
            }
        }
        for (i, a) in self.buffers.iter().enumerate() {
            if a.offset + a.bytes > self.arena_bytes || a.offset % self.alignment.max(1) != 0 {
                return bad(format!(
                    "buffer {i} lies outside the arena or is misaligned"
                ));
            }
            for (j, b) in self.buffers.iter().enumerate().skip(i + 1) {
                let bytes_meet = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
                if overlaps(a, b) && bytes_meet && a.bytes > 0 && b.bytes > 0 {
                    return bad(format!(
                        "buffers {i} and {j} are live together and overlap in the arena"
                    ));
                }
            }
        }
        Ok(())
    }

    /// One line per value: name, offset, size, lifetime and in-place source.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "# memory plan: arena {} bytes, naive {} bytes, {} buffers, {} in place\n",
            self.arena_bytes,
            self.naive_bytes,
            self.buffers.len(),
            self.in_place_count()
        );
        for v in &self.values {
            let b = &self.buffers[v.buffer];
            let end = if v.last_use == usize::MAX {
                "out".to_string()
            } else {
                v.last_use.to_string()
            };
            write!(
                s,
                "{:?} @{} +{} [{}..{}] buf{}",
                v.name, b.offset, v.bytes, v.def, end, v.buffer
            )
            .unwrap();
            if let Some(p) = v.in_place_of {
                let name = self
                    .values
                    .iter()
                    .find(|w| w.node == p)
                    .map_or("?", |w| &w.name);
                write!(s, " in-place-of {name:?}").unwrap();
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use mnc_ir::{Activation, BinaryOp};

    #[test]
    fn chain_uses_two_slots() {
        // x -> a -> b -> c -> d (convs change the value, so no in-place): two buffers suffice.
        let mut b = Builder::new("t", 1);
        let x = b.input("x", &[1, 4, 4, 4]);
        let mut v = x;
        for i in 0..4 {
            v = b.conv(&format!("c{i}"), v, 4, 3, 1, 1, false).unwrap();
        }
        b.g.add_output("y", v);
        let p = plan_memory(&b.g, 64).unwrap();
        assert_eq!(p.naive_bytes, 5 * 256);
        // Each value is live until the next conv reads it: two 256-byte slots alternate (the
        // dead input's slot is reused; only overwriting a live input in place is refused).
        assert_eq!(p.arena_bytes, 2 * 256);
        assert_eq!(p.in_place_count(), 0);
        insta::assert_snapshot!(p.to_text());
    }

    #[test]
    fn elementwise_and_views_run_in_place_only_when_legal() {
        let mut b = Builder::new("t", 2);
        let x = b.input("x", &[1, 4, 4, 4]);
        let c = b.conv("c", x, 4, 1, 1, 1, false).unwrap();
        let r = b.act("relu", Activation::Relu, c).unwrap(); // in place of c
        let s = b.act("sig", Activation::Sigmoid, r).unwrap(); // r still read by add: not in place
        let a = b.binary("add", BinaryOp::Add, r, s).unwrap(); // in place of r (slot 0)
        let f =
            b.g.add_node_inferred("flat", Op::Flatten { axis: 1 }, &[a])
                .unwrap(); // view of a
        b.g.add_output("y", f);
        let p = plan_memory(&b.g, 64).unwrap();
        let by = |n: &str| p.values.iter().find(|v| v.name == n).unwrap().clone();
        assert_eq!(by("relu").in_place_of, Some(c));
        assert_eq!(by("sig").in_place_of, None);
        assert_eq!(by("add").in_place_of, Some(r));
        assert_eq!(by("flat").in_place_of, Some(a));
        assert_eq!(p.in_place_count(), 3);
        // The input x is never overwritten.
        assert!(p.values.iter().all(|v| v.in_place_of != Some(x)));
        insta::assert_snapshot!(p.to_text());
    }

    /// The plan follows the op facts the CPU backend runs by: a BatchNorm overwrites its
    /// input (the CPU's affine code does), a Gemm never overwrites its residual (the CPU's
    /// generated GEMM stores each row before its epilogue reads the residual row). The plan
    /// had these two the other way round.
    #[test]
    fn batchnorm_runs_in_place_and_a_gemm_residual_does_not() {
        let mut b = Builder::new("t", 4);
        let x = b.input("x", &[2, 4, 3, 3]);
        let c = b.conv("c", x, 4, 1, 1, 1, false).unwrap();
        let bn = b.bn("bn", c).unwrap();
        let f =
            b.g.add_node_inferred("flat", Op::Flatten { axis: 1 }, &[bn])
                .unwrap();
        let a = b.input("a", &[2, 5]);
        let w = b.constant("w", &[5, 36], -1.0, 1.0);
        let gemm = Op::Gemm(mnc_ir::Gemm {
            epilogue: mnc_ir::Epilogue {
                residual: true,
                act: None,
            },
            ..Default::default()
        });
        let y = b.g.add_node_inferred("fc", gemm, &[a, w, f]).unwrap();
        b.g.add_output("y", y);
        let p = plan_memory(&b.g, 64).unwrap();
        p.check().unwrap();
        let by = |n: &str| p.values.iter().find(|v| v.name == n).unwrap().clone();
        assert_eq!(by("bn").in_place_of, Some(c));
        assert_eq!(by("flat").in_place_of, Some(bn));
        assert_eq!(by("fc").in_place_of, None);
        assert_ne!(by("fc").buffer, by("flat").buffer);
    }

    #[test]
    fn check_rejects_overlapping_live_buffers() {
        let mut b = Builder::new("t", 3);
        let x = b.input("x", &[1, 4, 4, 4]);
        let c = b.conv("c", x, 4, 1, 1, 1, false).unwrap();
        b.g.add_output("y", c);
        let mut p = plan_memory(&b.g, 64).unwrap();
        p.check().unwrap();
        let other = p.values[1].buffer;
        p.buffers[other].offset = p.buffers[p.values[0].buffer].offset;
        assert!(matches!(p.check(), Err(PassError::MemoryPlan(_))));
    }

    #[test]
    fn blocks_plan_below_naive_sum() {
        for g in [
            crate::samples::mobilenet_v2_block(1).unwrap(),
            crate::samples::efficientnet_mbconv_block(2).unwrap(),
        ] {
            let p = plan_memory(&g, 64).unwrap();
            p.check().unwrap();
            assert!(
                p.arena_bytes < p.naive_bytes,
                "{} vs {}",
                p.arena_bytes,
                p.naive_bytes
            );
        }
    }
}

#[cfg(test)]
mod simulate {
    //! Executes graphs inside one arena laid out by the plan (every activation read from and
    //! written to its planned bytes, the arena pre-filled with NaN) and compares with plain
    //! execution: a plan that lets a live value be overwritten, or reads a value before it is
    //! written, changes the outputs.
    use super::*;
    use crate::testutil::*;
    use mnc_ir::{Activation, BinaryOp, Tensor};

    fn run_in_arena(g: &Graph, plan: &MemoryPlan, inputs: &[Tensor]) -> Vec<Tensor> {
        let mut arena = vec![f32::NAN; plan.arena_bytes / 4];
        let slot: HashMap<NodeId, (usize, usize)> = plan
            .values
            .iter()
            .map(|v| (v.node, (plan.buffers[v.buffer].offset / 4, v.bytes / 4)))
            .collect();
        let read = |arena: &[f32], id: NodeId| -> Tensor {
            match &g.node(id).op {
                Op::Constant(t) => t.clone(),
                _ => {
                    let (off, n) = slot[&id];
                    Tensor::from_f32(g.node(id).ty.shape.clone(), arena[off..off + n].to_vec())
                        .unwrap()
                }
            }
        };
        for id in g.topo_order().unwrap() {
            let node = g.node(id);
            let out = match &node.op {
                Op::Constant(_) => continue,
                Op::Input { index } => inputs[*index].clone(),
                op => {
                    let ins: Vec<Tensor> = g.inputs(id).iter().map(|&i| read(&arena, i)).collect();
                    let refs: Vec<&Tensor> = ins.iter().collect();
                    eval_node(op, &refs, &node.ty)
                }
            };
            let (off, n) = slot[&id];
            arena[off..off + n].copy_from_slice(out.as_f32().unwrap());
        }
        g.outputs.iter().map(|o| read(&arena, o.node)).collect()
    }

    fn check(g: &Graph) -> MemoryPlan {
        let plan = plan_memory(g, 64).unwrap();
        let x = random_inputs(g, 3);
        let want = run(g, &x);
        let got = run_in_arena(g, &plan, &x);
        assert_close(&got, &want, 0.0);
        plan
    }

    #[test]
    fn blocks_run_correctly_inside_their_arena() {
        for g in [
            crate::samples::mobilenet_v2_block(1).unwrap(),
            crate::samples::mobilenet_v3_block(2).unwrap(),
            crate::samples::efficientnet_mbconv_block(3).unwrap(),
        ] {
            let before = check(&g);
            let mut h = g.clone();
            crate::optimize(&mut h, &Default::default()).unwrap();
            let after = check(&h);
            assert!(after.arena_bytes <= before.arena_bytes);
        }
    }

    /// Random DAGs of convs, activations, binary ops and reshapes with random skip edges.
    #[test]
    fn random_graphs_run_correctly_inside_their_arena() {
        let mut rng = Lcg::new(77);
        let mut pick = |n: usize| ((rng.uniform(0.0, 1.0) * n as f32) as usize).min(n - 1);
        let mut total_in_place = 0;
        for case in 0..40 {
            let mut b = Builder::new("rand", case);
            let x = b.input("x", &[1, 4, 3, 3]);
            let mut vals = vec![x];
            for i in 0..12 {
                let a = vals[pick(vals.len())];
                let y = match pick(5) {
                    0 => b.conv(&format!("c{i}"), a, 4, 3, 1, 1, true).unwrap(),
                    1 => b.act(&format!("r{i}"), Activation::Relu, a).unwrap(),
                    2 => {
                        let c = vals[pick(vals.len())];
                        b.binary(&format!("m{i}"), BinaryOp::Mul, a, c).unwrap()
                    }
                    3 => {
                        let c = vals[pick(vals.len())];
                        b.binary(&format!("a{i}"), BinaryOp::Add, c, a).unwrap()
                    }
                    _ => {
                        let f =
                            b.g.add_node_inferred(format!("f{i}"), Op::Flatten { axis: 1 }, &[a])
                                .unwrap();
                        b.g.add_node_inferred(
                            format!("u{i}"),
                            Op::Reshape {
                                shape: vec![1, 4, 3, 3],
                            },
                            &[f],
                        )
                        .unwrap()
                    }
                };
                vals.push(y);
            }
            // Two outputs: the last value and a random earlier one.
            let last = *vals.last().unwrap();
            b.g.add_output("y", last);
            let other = vals[pick(vals.len())];
            b.g.add_output("z", other);
            let plan = check(&b.g);
            total_in_place += plan.in_place_count();
        }
        assert!(
            total_in_place > 0,
            "the random graphs exercise in-place reuse"
        );
    }
}
