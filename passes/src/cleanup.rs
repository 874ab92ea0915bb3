//! Cleanup: removes `Identity`/`Dropout`, merges an explicit zero `Pad` on H/W into the
//! padding of the convs that consume it, folds all-constant subgraphs into constants
//! (through the op semantics of `mnc_ir::eval`, size-capped), and removes dead nodes.
//! Target-independent; part of `--emit onnx`.

use crate::error::PassError;
use crate::manager::{Pass, PassContext};
use mnc_ir::{Graph, IrError, Op, Tensor};

/// Evaluator used for constant folding (`mnc_ir::eval::eval_op` in the pipeline).
pub type EvalFn = fn(&Op, &[&Tensor]) -> Result<Tensor, IrError>;

/// A folded constant may have at most this many elements, unless it is no larger than the
/// constants it is computed from (folding never multiplies constant memory beyond this).
pub const FOLD_MAX_ELEMENTS: usize = 1 << 16;

/// The cleanup pass.
pub struct Cleanup {
    pub eval: EvalFn,
}

impl Default for Cleanup {
    fn default() -> Self {
        Cleanup {
            eval: mnc_ir::eval::eval_op,
        }
    }
}

const NAME: &str = "cleanup";

/// Removes every Identity and Dropout node, rewiring its users to its input.
pub fn remove_identities(g: &mut Graph) -> usize {
    let mut n = 0;
    for id in g.node_ids() {
        if matches!(g.node(id).op, Op::Identity | Op::Dropout) {
            let x = g.inputs(id)[0];
            g.replace_all_uses(id, x);
            g.remove_node(id);
            n += 1;
        }
    }
    n
}

/// Rewires every conv that reads a constant-zero `Pad` (H/W only, rank 4) at its data input
/// to read the Pad's input instead, adding the pads to the conv's own padding. The Pad node
/// is left for its other users (or for dead-code elimination).
pub fn merge_pads(g: &mut Graph) -> usize {
    let mut n = 0;
    for id in g.node_ids() {
        let pads = match &g.node(id).op {
            Op::Pad { pads, value } if *value == 0.0 && pads.len() == 8 => pads.clone(),
            _ => continue,
        };
        if pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0 {
            continue;
        }
        let x = g.inputs(id)[0];
        let (t, l, b, r) = (pads[2], pads[3], pads[6], pads[7]);
        for (user, slot) in g.users(id) {
            let Op::Conv(c) = &g.node(user).op else {
                continue;
            };
            if slot != 0 || merged_pads(c, [t, l, b, r]).is_none() {
                continue;
            }
            let mut ins = g.inputs(user);
            ins[0] = x;
            g.set_inputs(user, &ins);
            let src = g.node(id).sources.clone();
            crate::util::add_sources(g, user, &src);
            if let Op::Conv(c) = &mut g.node_mut(user).op {
                if let Some(p) = merged_pads(c, [t, l, b, r]) {
                    c.pads = p;
                }
            }
            n += 1;
        }
    }
    n
}

/// The pads of `c` with `extra` (top, left, bottom, right) added, when every merged pad stays
/// smaller than the conv's dilated window along its axis (the IR refuses pads that reach the
/// window: such a Pad stays a separate node).
fn merged_pads(c: &mnc_ir::Conv, extra: [usize; 4]) -> Option<[usize; 4]> {
    let mut out = [0; 4];
    for i in 0..4 {
        let axis = i % 2;
        let window = c.dilations[axis]
            .checked_mul(c.kernel[axis].checked_sub(1)?)?
            .checked_add(1)?;
        out[i] = c.pads[i].checked_add(extra[i]).filter(|&p| p < window)?;
    }
    Some(out)
}

/// Replaces every node whose inputs are all constants by the constant it computes, in
/// topological order (so chains fold in one run), skipping results over the size cap and
/// ops the evaluator cannot compute.
pub fn fold_constants(g: &mut Graph, eval: EvalFn) -> Result<usize, PassError> {
    let mut n = 0;
    for id in g.topo_order().map_err(PassError::ir(NAME))? {
        let node = g.node(id);
        if matches!(node.op, Op::Constant(_) | Op::Input { .. }) {
            continue;
        }
        let ins = g.inputs(id);
        let consts: Vec<&Tensor> = ins
            .iter()
            .filter_map(|&i| match &g.node(i).op {
                Op::Constant(t) => Some(t),
                _ => None,
            })
            .collect();
        if ins.is_empty() || consts.len() != ins.len() {
            continue;
        }
        let in_elems: usize = consts.iter().map(|t| t.numel()).sum();
        if node.ty.numel() > FOLD_MAX_ELEMENTS.max(in_elems) {
            continue;
        }
        // An op the evaluator cannot compute (yet) stays in the graph; the executor reports
        // it with the node's name if it is reached.
        let Ok(t) = (eval)(&node.op, &consts) else {
            continue;
        };
        if t.ty() != node.ty {
            return Err(PassError::Node {
                pass: NAME,
                node: node.name.clone(),
                msg: format!(
                    "constant folding computed {} but the node is typed {}",
                    t.ty(),
                    node.ty
                ),
            });
        }
        g.set_inputs(id, &[]);
        g.node_mut(id).op = Op::Constant(t);
        n += 1;
    }
    Ok(n)
}

impl Pass for Cleanup {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, _: &PassContext) -> Result<usize, PassError> {
        let mut n = remove_identities(g);
        n += merge_pads(g);
        n += fold_constants(g, self.eval)?;
        n += g.remove_dead();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use mnc_ir::{Activation, BinaryOp, TensorType};

    /// A test evaluator for the ops folded below (independent of `mnc_ir::eval`).
    fn test_eval(op: &Op, ins: &[&Tensor]) -> Result<Tensor, IrError> {
        match op {
            Op::Binary(BinaryOp::Mul) | Op::Binary(BinaryOp::Add) => {
                let (a, b) = (ins[0].as_f32().unwrap(), ins[1].as_f32().unwrap());
                let data = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| match op {
                        Op::Binary(BinaryOp::Mul) => x * y,
                        _ => x + y,
                    })
                    .collect();
                Tensor::from_f32(ins[0].shape.clone(), data)
            }
            Op::Reshape { shape } => {
                Tensor::from_f32(shape.clone(), ins[0].as_f32().unwrap().to_vec())
            }
            _ => Err(IrError::op("not in the test evaluator")),
        }
    }

    #[test]
    fn removes_identity_dropout_and_dead_code() {
        let mut b = Builder::new("t", 1);
        let x = b.input("x", &[1, 4, 3, 3]);
        let i = b.g.add_node_inferred("id", Op::Identity, &[x]).unwrap();
        let d = b.g.add_node_inferred("drop", Op::Dropout, &[i]).unwrap();
        let y = b.act("relu", Activation::Relu, d).unwrap();
        let _dead = b.act("dead", Activation::Sigmoid, y).unwrap();
        let _unused = b.constant("unused.weight", &[4], 0.0, 1.0);
        b.g.add_output("y", y);
        let before = b.g.clone();
        let p = Cleanup { eval: test_eval };
        let (after, n) = check_pass(&before, &p, 0.0);
        assert_eq!(n, 4);
        assert_eq!(after.node_count(), 2);
        insta::assert_snapshot!(before_after(&before, &after));
    }

    #[test]
    fn folds_constant_chains_within_the_cap() {
        let mut b = Builder::new("t", 2);
        let x = b.input("x", &[2, 3]);
        let c1 = b.constant("c1", &[6], 0.0, 1.0);
        let c2 = b.constant("c2", &[6], 0.0, 1.0);
        let m = b.binary("m", BinaryOp::Mul, c1, c2).unwrap();
        let r =
            b.g.add_node_inferred("r", Op::Reshape { shape: vec![2, 3] }, &[m])
                .unwrap();
        let y = b.binary("y", BinaryOp::Add, x, r).unwrap();
        // Not foldable by the test evaluator: stays.
        let big = b.constant("big", &[2, 3], 0.0, 1.0);
        let s = b.binary("s", BinaryOp::Sub, big, big).unwrap();
        let z = b.binary("z", BinaryOp::Add, y, s).unwrap();
        b.g.add_output("z", z);
        let before = b.g.clone();
        let mut g = before.clone();
        let n = fold_constants(&mut g, test_eval).unwrap();
        assert_eq!(n, 2);
        let removed = g.remove_dead();
        assert_eq!(removed, 3, "c1, c2 and m are dead after folding");
        mnc_ir::verify::verify(&g).unwrap();
        let r = g.find("r").unwrap();
        let expect: Vec<f32> = {
            let c1 = crate::util::const_f32(&before, before.find("c1").unwrap())
                .unwrap()
                .1;
            let c2 = crate::util::const_f32(&before, before.find("c2").unwrap())
                .unwrap()
                .1;
            c1.iter().zip(c2).map(|(a, b)| a * b).collect()
        };
        assert_eq!(crate::util::const_f32(&g, r).unwrap().1, expect.as_slice());
        insta::assert_snapshot!(before_after(&before, &g));
    }

    #[test]
    fn folds_integer_shape_arithmetic_with_the_ir_semantics() {
        // The kind of i64 subgraph TF-"same" exports compute pads with: slice a constant
        // shape, cast, scale; consumed by an f32 Add.
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::f32(vec![2]));
        let shape = g.add_constant(
            "shape",
            Tensor::from_i64(vec![4], vec![1, 3, 7, 5]).unwrap(),
        );
        let sl = g
            .add_node_inferred(
                "slice",
                Op::Slice(mnc_ir::Slice {
                    axes: vec![0],
                    starts: vec![2],
                    ends: vec![4],
                    steps: vec![1],
                }),
                &[shape],
            )
            .unwrap();
        let cast = g
            .add_node_inferred(
                "cast",
                Op::Cast {
                    to: mnc_ir::DType::F32,
                },
                &[sl],
            )
            .unwrap();
        let half = g.add_constant("half", Tensor::scalar_f32(0.5));
        let m = g
            .add_node_inferred("mul", Op::Binary(BinaryOp::Mul), &[cast, half])
            .unwrap();
        let y = g
            .add_node_inferred("y", Op::Binary(BinaryOp::Add), &[x, m])
            .unwrap();
        g.add_output("y", y);
        let (after, n) = check_pass(&g, &Cleanup::default(), 0.0);
        // slice, cast and mul folded; then shape, half and the folded slice and cast are
        // dead.
        assert_eq!(n, 3 + 4);
        let m = after.find("mul").unwrap();
        assert_eq!(crate::util::const_f32(&after, m).unwrap().1, [3.5, 2.5]);
    }

    #[test]
    fn fold_respects_size_cap() {
        let mut g = Graph::new("t");
        let c = g.add_constant("c", Tensor::zeros(&TensorType::f32(vec![300, 1])).unwrap());
        let z = g.add_constant("z", Tensor::zeros(&TensorType::f32(vec![1, 300])).unwrap());
        // [300,1] + [1,300]: 90000 elements, more than the inputs (600) and the cap.
        const { assert!(300 * 300 > FOLD_MAX_ELEMENTS) };
        let a = g
            .add_node_inferred("a", Op::Binary(BinaryOp::Add), &[c, z])
            .unwrap();
        g.add_output("a", a);
        assert_eq!(fold_constants(&mut g, test_eval).unwrap(), 0);
    }

    /// `x [1,2,6,6]` -> zero Pad `pads` ("pad") -> 3x3 stride-2 conv with pad 1 ("conv") ->
    /// Pad of 1 on every side with `value` ("pad1") -> `k`x`k` conv in `group`s ("conv2").
    fn pad_conv_chain(pads: [usize; 8], value: f32, k: usize, group: usize) -> Graph {
        let mut b = Builder::new("t", 3);
        let x = b.input("x", &[1, 2, 6, 6]);
        let pad = |pads: Vec<usize>, value| Op::Pad { pads, value };
        let p =
            b.g.add_node_inferred("pad", pad(pads.to_vec(), 0.0), &[x])
                .unwrap();
        let c = b.conv("conv", p, 3, 3, 2, 1, true).unwrap();
        let q =
            b.g.add_node_inferred("pad1", pad(vec![0, 0, 1, 1, 0, 0, 1, 1], value), &[c])
                .unwrap();
        let d = b.conv("conv2", q, 3, k, 1, group, false).unwrap();
        b.g.add_output("y", d);
        b.g
    }

    #[test]
    fn merges_zero_pad_into_conv() {
        // A non-zero pad ("pad1") is not merged.
        let before = pad_conv_chain([0, 0, 1, 0, 0, 0, 1, 1], 1.0, 3, 3);
        let (after, n) = check_pass(&before, &Cleanup { eval: test_eval }, 1e-6);
        assert_eq!(n, 2, "one merge + the dead Pad");
        assert!(after.find("pad").is_none());
        assert!(after.find("pad1").is_some());
        insta::assert_snapshot!(before_after(&before, &after));
    }

    #[test]
    fn does_not_merge_pads_that_reach_the_window() {
        // A 3x3 conv with pad 1 after a zero Pad of 2 at the bottom: merged, the bottom pad
        // would be 3 = the window (a window row lying wholly in padding), which the IR
        // refuses; the Pad stays. A 1x1 conv never takes a pad.
        let before = pad_conv_chain([0, 0, 1, 0, 0, 0, 2, 1], 0.0, 1, 1);
        let (after, n) = check_pass(&before, &Cleanup { eval: test_eval }, 1e-6);
        assert_eq!(n, 0);
        assert!(after.find("pad").is_some() && after.find("pad1").is_some());
        let Op::Conv(c) = &after.node(after.find("conv").unwrap()).op else {
            panic!()
        };
        assert_eq!(c.pads, [1; 4]);
    }
}
