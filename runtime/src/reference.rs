//! The reference executor: runs a [`Graph`] node by node through the naive kernels of
//! [`mnc_ir::eval`]. It is the oracle every pass and backend is compared against, so it
//! favours obviousness over speed, but it frees each intermediate value after its last use
//! so that full-size models do not hold every activation at once.

use crate::error::RuntimeError;
use mnc_ir::eval::eval_op;
use mnc_ir::tensor::checked_numel;
use mnc_ir::{Graph, IrError, NodeId, Op, Tensor};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Executes graphs with the reference kernels. Stateless; the methods are also available as
/// the free functions [`run`] and [`run_all`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ReferenceExecutor;

impl ReferenceExecutor {
    /// Runs `graph` on `inputs` (one per graph input, in order) and returns the graph outputs
    /// in order. Only nodes that some output depends on are evaluated.
    pub fn run(&self, graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        run(graph, inputs)
    }

    /// Runs every node of `graph` (dead ones included) and returns each node's value, for
    /// debugging and per-pass differential tests.
    pub fn run_all(
        &self,
        graph: &Graph,
        inputs: &[Tensor],
    ) -> Result<BTreeMap<NodeId, Tensor>, RuntimeError> {
        run_all(graph, inputs)
    }
}

/// Runs `graph` on `inputs` and returns its outputs in order (see [`ReferenceExecutor::run`]).
pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
    Ok(execute(graph, inputs, false)?.outputs)
}

/// Runs every node of `graph` and returns all values (see [`ReferenceExecutor::run_all`]).
pub fn run_all(graph: &Graph, inputs: &[Tensor]) -> Result<BTreeMap<NodeId, Tensor>, RuntimeError> {
    let done = execute(graph, inputs, true)?;
    Ok(done
        .all
        .into_iter()
        .map(|(id, v)| (id, v.into_owned()))
        .collect())
}

/// What one execution produced.
struct Execution<'a> {
    outputs: Vec<Tensor>,
    /// Every node's value (only when asked to keep them all).
    all: HashMap<NodeId, Cow<'a, Tensor>>,
    /// Largest number of values held at once (observes the freeing of dead values; read by
    /// the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    peak_live: usize,
}

/// Checks the inputs against the graph's input types.
fn check_inputs(graph: &Graph, inputs: &[Tensor]) -> Result<(), RuntimeError> {
    if inputs.len() != graph.inputs.len() {
        return Err(RuntimeError::InputCount {
            graph: graph.name.clone(),
            expected: graph.inputs.len(),
            got: inputs.len(),
        });
    }
    for (&id, t) in graph.inputs.iter().zip(inputs) {
        let node = graph.node(id);
        if t.dtype() != node.ty.dtype || t.shape != node.ty.shape {
            return Err(RuntimeError::InputType {
                name: node.name.clone(),
                expected: node.ty.clone(),
                got: t.ty(),
            });
        }
        if checked_numel(&t.shape).ok() != Some(t.numel()) {
            return Err(RuntimeError::InputData {
                name: node.name.clone(),
                shape: t.shape.clone(),
                len: t.numel(),
            });
        }
    }
    Ok(())
}

/// The nodes some graph output depends on.
fn needed(graph: &Graph) -> HashSet<NodeId> {
    let mut live = HashSet::new();
    let mut stack: Vec<NodeId> = graph.outputs.iter().map(|o| o.node).collect();
    while let Some(n) = stack.pop() {
        if graph.contains(n) && live.insert(n) {
            stack.extend(graph.inputs(n));
        }
    }
    live
}

fn execute<'a>(
    graph: &'a Graph,
    inputs: &'a [Tensor],
    keep_all: bool,
) -> Result<Execution<'a>, RuntimeError> {
    check_inputs(graph, inputs)?;
    for o in &graph.outputs {
        if !graph.contains(o.node) {
            return Err(
                IrError::Invalid(format!("output '{}' refers to a removed node", o.name)).into(),
            );
        }
    }
    let order = graph.topo_order()?;
    let wanted = if keep_all {
        order.iter().copied().collect()
    } else {
        needed(graph)
    };
    // Remaining reads of each value by evaluated consumers (one per input edge).
    let mut remaining: HashMap<NodeId, usize> = HashMap::new();
    for &id in &order {
        if wanted.contains(&id) {
            for src in graph.inputs(id) {
                *remaining.entry(src).or_default() += 1;
            }
        }
    }
    let mut values: HashMap<NodeId, Cow<'a, Tensor>> = HashMap::new();
    let mut peak_live = 0;
    for &id in &order {
        if !wanted.contains(&id) {
            continue;
        }
        let node = graph.node(id);
        let value: Cow<'a, Tensor> = match &node.op {
            Op::Input { index } => match inputs.get(*index) {
                Some(t) => Cow::Borrowed(t),
                None => {
                    return Err(IrError::Invalid(format!(
                        "Input node '{}' has index {index} but the graph has {} inputs",
                        node.name,
                        inputs.len()
                    ))
                    .into())
                }
            },
            // Borrow weights from the graph instead of copying them on every run.
            Op::Constant(t) => Cow::Borrowed(t),
            op => {
                let srcs = graph.inputs(id);
                let mut args: Vec<&Tensor> = Vec::with_capacity(srcs.len());
                for s in &srcs {
                    let v = values.get(s).ok_or_else(|| {
                        IrError::Invalid(format!(
                            "value of '{}' (input of '{}') is not available",
                            graph.node(*s).name,
                            node.name
                        ))
                    })?;
                    args.push(v.as_ref());
                }
                let out = eval_op(op, &args).map_err(|e| e.at_node(&node.name, op.kind()))?;
                Cow::Owned(out)
            }
        };
        if value.dtype() != node.ty.dtype || value.shape != node.ty.shape {
            return Err(RuntimeError::NodeType {
                node: node.name.clone(),
                op: node.op.kind().to_string(),
                expected: node.ty.clone(),
                got: value.ty(),
            });
        }
        values.insert(id, value);
        peak_live = peak_live.max(values.len());
        if !keep_all {
            for s in graph.inputs(id) {
                let left = remaining.get_mut(&s).map(|r| {
                    *r -= 1;
                    *r
                });
                if left == Some(0) && !graph.is_output(s) {
                    values.remove(&s);
                }
            }
        }
    }
    let mut outputs = Vec::with_capacity(graph.outputs.len());
    for o in &graph.outputs {
        let v = values
            .get(&o.node)
            .ok_or_else(|| IrError::Invalid(format!("output '{}' was not computed", o.name)))?;
        outputs.push(v.as_ref().clone());
    }
    Ok(Execution {
        outputs,
        all: if keep_all { values } else { HashMap::new() },
        peak_live,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnc_ir::{Activation, Conv, Gemm, TensorType};

    fn tf(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::from_f32(shape.to_vec(), data.to_vec()).unwrap()
    }

    /// conv(1->2, 2x2, bias) -> relu -> gap -> flatten -> gemm(2->3, C); outputs: gemm, gap.
    fn small_net() -> Graph {
        let mut g = Graph::new("small");
        let x = g.add_input("x", TensorType::f32(vec![2, 1, 3, 3]));
        // channel 0 picks the top-left tap; channel 1 is minus the bottom-right tap
        let w = g.add_constant("w", tf(&[2, 1, 2, 2], &[1., 0., 0., 0., 0., 0., 0., -1.]));
        let b = g.add_constant("b", tf(&[2], &[0., 7.]));
        let conv = Conv {
            kernel: [2, 2],
            has_bias: true,
            ..Default::default()
        };
        let c = g
            .add_node_inferred("conv", Op::Conv(conv), &[x, w, b])
            .unwrap();
        let r = g
            .add_node_inferred("relu", Op::Act(Activation::Relu), &[c])
            .unwrap();
        let p = g
            .add_node_inferred("gap", Op::GlobalAveragePool, &[r])
            .unwrap();
        let f = g
            .add_node_inferred("flat", Op::Flatten { axis: 1 }, &[p])
            .unwrap();
        let fw = g.add_constant("fc.w", tf(&[2, 3], &[1., 0., 2., 4., 1., 0.]));
        let fb = g.add_constant("fc.b", tf(&[3], &[0.5, 0., -1.]));
        let gemm = Gemm {
            has_c: true,
            ..Default::default()
        };
        let y = g
            .add_node_inferred("fc", Op::Gemm(gemm), &[f, fw, fb])
            .unwrap();
        g.add_output("logits", y);
        g.add_output("pooled", p);
        mnc_ir::verify::verify(&g).unwrap();
        g
    }

    fn small_input() -> Tensor {
        let mut d: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        d.extend([-1.0; 9]);
        tf(&[2, 1, 3, 3], &d)
    }

    #[test]
    fn small_net_hand_computed() {
        let g = small_net();
        let out = ReferenceExecutor.run(&g, &[small_input()]).unwrap();
        // image 0: ch0 = [1,2,4,5] -> mean 3; ch1 = 7 - [5,6,8,9] = [2,1,-1,-2] -> relu mean 0.75
        //   fc: [3*1 + 0.75*4 + 0.5, 0.75, 3*2 - 1] = [6.5, 0.75, 5]
        // image 1 (all -1): ch0 = -1 -> 0; ch1 = 7 + 1 = 8 -> 8; fc: [32.5, 8, -1]
        assert_eq!(out.len(), 2);
        let tol = 1e-6;
        let want = [6.5f32, 0.75, 5., 32.5, 8., -1.];
        assert_eq!(out[0].shape, vec![2, 3]);
        for (a, b) in out[0].as_f32().unwrap().iter().zip(&want) {
            assert!((a - b).abs() <= tol * 32.5, "{a} vs {b}");
        }
        assert_eq!(out[1].shape, vec![2, 2, 1, 1]);
        for (a, b) in out[1].as_f32().unwrap().iter().zip(&[3f32, 0.75, 0., 8.]) {
            assert!((a - b).abs() <= tol * 8.0, "{a} vs {b}");
        }
    }

    #[test]
    fn run_all_returns_every_node_and_frees_dead_values() {
        let g = small_net();
        let x = small_input();
        let all = run_all(&g, std::slice::from_ref(&x)).unwrap();
        assert_eq!(all.len(), g.node_count());
        let relu = g.find("relu").unwrap();
        assert_eq!(all[&relu].shape, vec![2, 2, 2, 2]);
        assert_eq!(
            all[&relu].as_f32().unwrap(),
            &[1., 2., 4., 5., 2., 1., 0., 0., 0., 0., 0., 0., 8., 8., 8., 8.]
        );
        // the streaming run frees x, w, b after conv and conv after relu: at most 5 of the
        // 10 values are held at once (gap, flat, fc.w, fc.b, fc at the end)
        let ex = execute(&g, std::slice::from_ref(&x), false).unwrap();
        assert!(ex.peak_live <= 5, "peak {}", ex.peak_live);
        assert_eq!(ex.outputs, run(&g, &[x]).unwrap());
    }

    #[test]
    fn value_read_twice_and_dead_branch() {
        // y = (x + x) * x; a dead branch (x - x) is never needed
        let mut g = Graph::new("twice");
        let x = g.add_input("x", TensorType::f32(vec![3]));
        let add = mnc_ir::BinaryOp::Add;
        let s = g.add_node_inferred("s", Op::Binary(add), &[x, x]).unwrap();
        let m = g
            .add_node_inferred("m", Op::Binary(mnc_ir::BinaryOp::Mul), &[s, x])
            .unwrap();
        let d = g
            .add_node_inferred("dead", Op::Binary(mnc_ir::BinaryOp::Sub), &[x, x])
            .unwrap();
        g.add_output("y", m);
        let xv = tf(&[3], &[1., -2., 0.5]);
        let out = run(&g, std::slice::from_ref(&xv)).unwrap();
        assert_eq!(out, vec![tf(&[3], &[2., 8., 0.5])]);
        let all = run_all(&g, &[xv]).unwrap();
        assert_eq!(all[&d], tf(&[3], &[0., 0., 0.]));
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn input_mismatches_are_clear_errors() {
        let g = small_net();
        let e = run(&g, &[]).unwrap_err();
        assert!(
            matches!(
                e,
                RuntimeError::InputCount {
                    expected: 1,
                    got: 0,
                    ..
                }
            ),
            "{e}"
        );
        let e = run(&g, &[tf(&[1, 1, 3, 3], &[0.; 9])]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input 'x' must be f32[2,1,3,3], got f32[1,1,3,3]"
        );
        let xi = Tensor::from_i64(vec![2, 1, 3, 3], vec![0; 18]).unwrap();
        let e = run(&g, &[xi]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "input 'x' must be f32[2,1,3,3], got i64[2,1,3,3]"
        );
        let bad = Tensor {
            shape: vec![2, 1, 3, 3],
            data: mnc_ir::TensorData::F32(vec![0.; 5]),
        };
        assert!(matches!(
            run(&g, &[bad]).unwrap_err(),
            RuntimeError::InputData { .. }
        ));
    }

    #[test]
    fn evaluation_errors_name_the_node() {
        // an i64 division by zero inside the graph
        let mut g = Graph::new("div");
        let a = g.add_input("a", TensorType::new(mnc_ir::DType::I64, vec![2]));
        let z = g.add_constant("zero", Tensor::from_i64(vec![1], vec![0]).unwrap());
        let d = g
            .add_node_inferred("the_div", Op::Binary(mnc_ir::BinaryOp::Div), &[a, z])
            .unwrap();
        g.add_output("y", d);
        let e = run(&g, &[Tensor::from_i64(vec![2], vec![4, 6]).unwrap()]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("the_div") && msg.contains("Div"), "{msg}");
        // a stale stored type is caught
        let mut g2 = g.clone();
        g2.node_mut(z).op = Op::Constant(Tensor::from_i64(vec![1], vec![2]).unwrap());
        g2.node_mut(d).ty = TensorType::new(mnc_ir::DType::I64, vec![3]);
        let e = run(&g2, &[Tensor::from_i64(vec![2], vec![4, 6]).unwrap()]).unwrap_err();
        assert!(matches!(e, RuntimeError::NodeType { .. }), "{e}");
        // an output may be a graph input directly
        let mut g3 = Graph::new("id");
        let a = g3.add_input("a", TensorType::f32(vec![1]));
        g3.add_output("a_out", a);
        assert_eq!(run(&g3, &[tf(&[1], &[3.])]).unwrap(), vec![tf(&[1], &[3.])]);
    }
}
