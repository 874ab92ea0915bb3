//! The one memory planner: assigns every activation (every value a backend keeps in its
//! run arena) a byte range in that arena, from liveness over the order the backend runs the
//! nodes in. The backend says per node what its value is ([`Storage`]): outside the arena
//! (a constant, or a view of one), a view of its first input (shares that buffer whatever
//! else reads it: no code writes a view), or its own bytes, which may take over the buffer of
//! one of the inputs it names ([`InPlace`]) when no value in that buffer is read after this
//! node, the buffer has the output's size, and (for an exclusive input) no other input slot
//! of the node reads that buffer. The CPU backend plans its arena here (its strategies decide
//! which ops may run in place); [`plan_memory`] is the target-neutral plan from the op facts
//! alone ([`mnc_ir::facts`]). Buffers whose lifetimes overlap never overlap in the arena, nor
//! do their padding zones; [`MemoryPlan::check`] verifies that independently of how the plan
//! was made.
//!
//! Lifetimes are inclusive step ranges: the node at index `i` of the order runs at step
//! `i + 1`; a value is live from the step that defines it to the last step that reads it
//! (graph outputs: to the end; graph inputs: from step 0).

use crate::error::PassError;
use mnc_ir::facts::{self, InPlace};
use mnc_ir::{Graph, NodeId, Op};
use std::collections::HashMap;
use std::fmt::Write;

/// What a backend decides for the value of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Not in the arena: a constant (the backend keeps it with the weights). A view of a
    /// value outside the arena is outside too.
    Outside,
    /// A view of the node's first input: it shares that input's buffer (or is outside with
    /// it), however long either is read.
    View,
    /// Its own bytes, or the buffer of the first of these inputs that the planner finds free
    /// to take over at this node (in place).
    Own(Vec<InPlace>),
}

/// How the arena is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaOptions {
    /// Every buffer's offset and size are multiples of this (bytes).
    pub alignment: usize,
    /// Bytes kept free before and after every buffer (the CPU's guard canaries); a multiple
    /// of the alignment keeps the buffers aligned.
    pub padding: usize,
    /// Whether a graph input's buffer may be taken over in place (the backend copies the
    /// inputs into the arena for each run); otherwise the caller's input stays intact.
    pub overwrite_inputs: bool,
}

/// Where one activation lives.
#[derive(Clone, Debug, PartialEq)]
pub struct ValuePlan {
    pub node: NodeId,
    pub name: String,
    pub bytes: usize,
    /// Index into [`MemoryPlan::buffers`].
    pub buffer: usize,
    /// Step that defines the value (0 for graph inputs).
    pub def: usize,
    /// Last step that reads it (`usize::MAX` for graph outputs).
    pub last_use: usize,
    /// The input whose buffer this value overwrites in place, or aliases when `view`.
    pub in_place_of: Option<NodeId>,
    /// The value is a view of `in_place_of` ([`Storage::View`]).
    pub view: bool,
}

/// One arena buffer, shared by a chain of in-place values and views.
#[derive(Clone, Debug, PartialEq)]
pub struct BufferPlan {
    /// Offset of the buffer's first byte (its padding lies just before it).
    pub offset: usize,
    /// Size rounded up to the alignment (padding not included).
    pub bytes: usize,
    pub start: usize,
    pub end: usize,
}

/// The arena layout of a graph's activations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryPlan {
    pub values: Vec<ValuePlan>,
    pub buffers: Vec<BufferPlan>,
    /// Size of the arena, bytes (the last buffer's trailing padding included).
    pub arena_bytes: usize,
    /// Sum of the sizes of all activations (what one buffer per value would need).
    pub naive_bytes: usize,
    pub alignment: usize,
    /// Bytes kept free before and after every buffer.
    pub padding: usize,
}

/// The target-neutral decision for node `id` from the op facts: a constant is outside the
/// arena, a view ([`facts::is_view`]) shares its input's buffer, any other op may take over
/// its in-place inputs of the output's type ([`facts::in_place_candidates`]).
pub fn facts_storage(g: &Graph, id: NodeId) -> Storage {
    let node = g.node(id);
    let types: Vec<_> = g.inputs(id).iter().map(|&i| g.node(i).ty.clone()).collect();
    match (&node.op, types.first()) {
        (Op::Constant(_), _) => Storage::Outside,
        (op, Some(t)) if facts::is_view(op, t.dtype) => Storage::View,
        (op, _) => Storage::Own(facts::in_place_candidates(op, &types, &node.ty)),
    }
}

fn align(x: usize, a: usize) -> usize {
    x.div_ceil(a.max(1)) * a.max(1)
}

/// The target-neutral plan of `g` ([`facts_storage`] for every node, all nodes in
/// topological order, graph inputs never overwritten, no padding).
pub fn plan_memory(g: &Graph, alignment: usize) -> Result<MemoryPlan, PassError> {
    let order = g.topo_order().map_err(PassError::ir("memory-plan"))?;
    let opts = ArenaOptions {
        alignment,
        padding: 0,
        overwrite_inputs: false,
    };
    plan_arena(g, &order, |id| facts_storage(g, id), &opts)
}

/// Plans the arena of the nodes of `order` (a topological order of the nodes the backend
/// runs; readers outside it are ignored) with `storage` deciding each node's value, and
/// checks the result ([`MemoryPlan::check`]).
pub fn plan_arena(
    g: &Graph,
    order: &[NodeId],
    mut storage: impl FnMut(NodeId) -> Storage,
    opts: &ArenaOptions,
) -> Result<MemoryPlan, PassError> {
    let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i + 1)).collect();
    let mut values: Vec<ValuePlan> = Vec::new();
    let mut index: HashMap<NodeId, usize> = HashMap::new();
    // Per buffer: its first value, (first def, latest last_use of its members, holds a graph
    // input, bytes).
    let mut bufs: Vec<(NodeId, usize, usize, bool, usize)> = Vec::new();
    for &id in order {
        let node = g.node(id);
        let is_input = matches!(node.op, Op::Input { .. });
        let ins = g.inputs(id);
        let (buffer, in_place_of, view) = match storage(id) {
            Storage::Outside => continue,
            Storage::View => {
                let src = *ins.first().ok_or_else(|| {
                    PassError::MemoryPlan(format!("view '{}' has no input", node.name))
                })?;
                match index.get(&src) {
                    Some(&vi) => (Some(values[vi].buffer), Some(src), true),
                    None => continue, // a view of a value outside the arena
                }
            }
            Storage::Own(candidates) => {
                let chosen = candidates
                    .into_iter()
                    .find_map(|InPlace { slot, exclusive }| {
                        let cand = *ins.get(slot)?;
                        let b = values[*index.get(&cand)?].buffer;
                        let (_, _, end, holds_input, bytes) = bufs[b];
                        let other_reader = exclusive
                            && ins.iter().enumerate().any(|(j, o)| {
                                j != slot && index.get(o).is_some_and(|&ov| values[ov].buffer == b)
                            });
                        (end <= pos[&id]
                            && (opts.overwrite_inputs || !holds_input)
                            && bytes == node.ty.bytes()
                            && !other_reader)
                            .then_some((b, cand))
                    });
                match chosen {
                    Some((b, cand)) => (Some(b), Some(cand), false),
                    None => (None, None, false),
                }
            }
        };
        let def = if is_input { 0 } else { pos[&id] };
        let last_use = if g.is_output(id) {
            usize::MAX
        } else {
            g.users(id)
                .iter()
                .filter_map(|(u, _)| pos.get(u).copied())
                .fold(def, usize::max)
        };
        let buffer = match buffer {
            Some(b) => {
                bufs[b].2 = bufs[b].2.max(last_use);
                b
            }
            None => {
                bufs.push((id, def, last_use, is_input, node.ty.bytes()));
                bufs.len() - 1
            }
        };
        index.insert(id, values.len());
        values.push(ValuePlan {
            node: id,
            name: node.name.clone(),
            bytes: node.ty.bytes(),
            buffer,
            def,
            last_use,
            in_place_of,
            view,
        });
    }
    let mut buffers: Vec<BufferPlan> = bufs
        .iter()
        .map(|&(_, start, end, _, bytes)| BufferPlan {
            offset: 0,
            bytes: align(bytes, opts.alignment),
            start,
            end,
        })
        .collect();
    // First fit in two orders (by start step, larger first among equal starts; by size,
    // largest first): the smaller arena wins, the start order on a tie.
    let pad = opts.padding;
    let mut by_start: Vec<usize> = (0..buffers.len()).collect();
    by_start.sort_by_key(|&i| {
        (
            buffers[i].start,
            std::cmp::Reverse(buffers[i].bytes),
            bufs[i].0,
        )
    });
    let mut by_size: Vec<usize> = (0..buffers.len()).collect();
    by_size.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].bytes), buffers[i].start, i));
    let (mut offsets, mut arena) = first_fit(&buffers, &by_start, pad);
    let (o2, a2) = first_fit(&buffers, &by_size, pad);
    if a2 < arena {
        (offsets, arena) = (o2, a2);
    }
    for (b, off) in buffers.iter_mut().zip(offsets) {
        b.offset = off + pad;
    }
    let naive_bytes = values.iter().map(|v| v.bytes).sum();
    let plan = MemoryPlan {
        values,
        buffers,
        arena_bytes: arena,
        naive_bytes,
        alignment: opts.alignment,
        padding: pad,
    };
    plan.check()?;
    Ok(plan)
}

/// Places the buffers in `order`, each at the lowest offset where its padded extent meets no
/// already placed buffer whose lifetime overlaps its own: the padded extents' offsets and the
/// arena size (sums saturate: a backend refuses an arena that large).
fn first_fit(buffers: &[BufferPlan], order: &[usize], pad: usize) -> (Vec<usize>, usize) {
    let mut offsets = vec![0usize; buffers.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut arena = 0;
    for &i in order {
        let size = buffers[i].bytes.saturating_add(2 * pad);
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| overlaps(&buffers[i], &buffers[j]))
            .map(|&j| {
                let hi = offsets[j].saturating_add(buffers[j].bytes.saturating_add(2 * pad));
                (offsets[j], hi)
            })
            .collect();
        busy.sort();
        let mut off = 0usize;
        for (lo, hi) in busy {
            if off.saturating_add(size) <= lo {
                break;
            }
            off = off.max(hi);
        }
        offsets[i] = off;
        arena = arena.max(off.saturating_add(size));
        placed.push(i);
    }
    (offsets, arena)
}

fn overlaps(a: &BufferPlan, b: &BufferPlan) -> bool {
    a.start <= b.end && b.start <= a.end
}

impl MemoryPlan {
    /// Number of values that overwrite an input's buffer in place (views not counted).
    pub fn in_place_count(&self) -> usize {
        self.values
            .iter()
            .filter(|v| v.in_place_of.is_some() && !v.view)
            .count()
    }

    /// Number of values that are views of another value's buffer.
    pub fn view_count(&self) -> usize {
        self.values.iter().filter(|v| v.view).count()
    }

    /// The plan of the value defined by `node` (none for a value outside the arena).
    pub fn value(&self, node: NodeId) -> Option<&ValuePlan> {
        self.values.iter().find(|v| v.node == node)
    }

    /// Arena offset of the value defined by `node`.
    pub fn offset_of(&self, node: NodeId) -> Option<usize> {
        self.value(node).map(|v| self.buffers[v.buffer].offset)
    }

    /// Verifies the plan: every value fits its buffer and lies within its lifetime, every
    /// buffer with its padding fits the arena and is aligned, and no two buffers that are
    /// live at the same step share a byte of their padded extents.
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
        let pad = self.padding;
        let extent = |b: &BufferPlan| {
            let hi = b.offset.saturating_add(b.bytes).saturating_add(pad);
            (b.offset.checked_sub(pad), hi)
        };
        for (i, a) in self.buffers.iter().enumerate() {
            let (lo, hi) = extent(a);
            if lo.is_none() || hi > self.arena_bytes || a.offset % self.alignment.max(1) != 0 {
                return bad(format!(
                    "buffer {i} lies outside the arena or is misaligned"
                ));
            }
            for (j, b) in self.buffers.iter().enumerate().skip(i + 1) {
                let (blo, bhi) = extent(b);
                let (lo, blo) = (lo.unwrap_or(0), blo.unwrap_or(0));
                let bytes_meet = lo < bhi && blo < hi;
                if overlaps(a, b) && bytes_meet && hi > lo && bhi > blo {
                    return bad(format!(
                        "buffers {i} and {j} are live together and overlap in the arena"
                    ));
                }
            }
        }
        Ok(())
    }

    /// One line: the arena against the naive sum, buffers, in-place values and views.
    pub fn summary(&self) -> String {
        format!(
            "memory: arena {} bytes for {} activations in {} buffers ({} in place, {} views); naive sum {} bytes ({:.1}% of naive)",
            self.arena_bytes,
            self.values.len(),
            self.buffers.len(),
            self.in_place_count(),
            self.view_count(),
            self.naive_bytes,
            100.0 * self.arena_bytes as f64 / self.naive_bytes.max(1) as f64
        )
    }

    /// One line per value: name, offset, size, lifetime and in-place or view source.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "# memory plan: arena {} bytes, naive {} bytes, {} buffers, {} in place, {} views\n",
            self.arena_bytes,
            self.naive_bytes,
            self.buffers.len(),
            self.in_place_count(),
            self.view_count()
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
                let name = self.value(p).map_or("?", |w| &w.name);
                let how = if v.view { "view-of" } else { "in-place-of" };
                write!(s, " {how} {name:?}").unwrap();
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
        assert!(by("flat").view);
        assert_eq!((p.in_place_count(), p.view_count()), (2, 1));
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
