//! Test support: a tiny graph evaluator with its own naive kernels for the ops the passes
//! rewrite (conv with epilogues, BatchNorm, ChannelAffine, activations, broadcasting binary
//! ops, means, SE, Pad), independent of `mnc_ir::eval` (used only for the remaining ops), so
//! that every rewrite is checked numerically; plus small helpers.

use mnc_ir::{Activation, BinaryOp, Graph, NodeId, Op, Tensor, TensorType};
use std::collections::HashMap;

pub use crate::samples::{Builder, Lcg};

/// Adds a standalone activation node (panics on a shape error: test helper).
pub fn act(g: &mut Graph, name: &str, a: Activation, x: NodeId) -> NodeId {
    g.add_node_inferred(name, Op::Act(a), &[x]).unwrap()
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn f(t: &Tensor) -> &[f32] {
    t.as_f32().expect("f32 tensor")
}

fn conv(c: &mnc_ir::Conv, ins: &[&Tensor], out: &TensorType) -> Vec<f32> {
    let (x, w) = (ins[0], ins[1]);
    let (xs, ws, os) = (&x.shape, &w.shape, &out.shape);
    let (n, ic, ih, iw) = (xs[0], xs[1], xs[2], xs[3]);
    let (oc, icg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let (oh, ow) = (os[2], os[3]);
    let ocg = oc / c.group;
    let mut k = 2;
    let bias = if c.has_bias {
        k += 1;
        Some(f(ins[2]))
    } else {
        None
    };
    let res = c.epilogue.residual.then(|| f(ins[k]));
    let mut y = vec![0.0f32; n * oc * oh * ow];
    for b in 0..n {
        for o in 0..oc {
            let grp = o / ocg;
            for yh in 0..oh {
                for yw in 0..ow {
                    let mut acc = 0.0f64;
                    for i in 0..icg {
                        let ci = grp * icg + i;
                        for r in 0..kh {
                            for s in 0..kw {
                                let hh = (yh * c.strides[0] + r * c.dilations[0]) as isize
                                    - c.pads[0] as isize;
                                let ww = (yw * c.strides[1] + s * c.dilations[1]) as isize
                                    - c.pads[1] as isize;
                                if hh < 0 || ww < 0 || hh >= ih as isize || ww >= iw as isize {
                                    continue;
                                }
                                let xv =
                                    f(x)[((b * ic + ci) * ih + hh as usize) * iw + ww as usize];
                                let wv = f(w)[((o * icg + i) * kh + r) * kw + s];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    let idx = ((b * oc + o) * oh + yh) * ow + yw;
                    let mut v = acc as f32 + bias.map_or(0.0, |bb| bb[o]);
                    if let Some(r) = res {
                        v += r[idx];
                    }
                    if let Some(a) = c.epilogue.act {
                        v = a.apply(v);
                    }
                    y[idx] = v;
                }
            }
        }
    }
    y
}

fn per_channel_map(x: &Tensor, mut fun: impl FnMut(usize, f32) -> f32) -> Vec<f32> {
    let c = x.shape[1];
    let inner: usize = x.shape[2..].iter().product();
    f(x).iter()
        .enumerate()
        .map(|(i, &v)| fun((i / inner) % c, v))
        .collect()
}

fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, out: &TensorType) -> Vec<f32> {
    let r = out.shape.len();
    let pad = |s: &[usize]| {
        let mut p = vec![1; r - s.len()];
        p.extend_from_slice(s);
        p
    };
    let (sa, sb) = (pad(&a.shape), pad(&b.shape));
    let (ta, tb, to) = (strides(&sa), strides(&sb), strides(&out.shape));
    (0..out.numel())
        .map(|i| {
            let (mut ia, mut ib) = (0, 0);
            for d in 0..r {
                let k = (i / to[d]) % out.shape[d];
                if sa[d] != 1 {
                    ia += k * ta[d];
                }
                if sb[d] != 1 {
                    ib += k * tb[d];
                }
            }
            let (x, y) = (f(a)[ia], f(b)[ib]);
            match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
            }
        })
        .collect()
}

fn mean_hw(x: &Tensor) -> Vec<f32> {
    let (n, c) = (x.shape[0], x.shape[1]);
    let hw: usize = x.shape[2..].iter().product();
    (0..n * c)
        .map(|i| f(x)[i * hw..(i + 1) * hw].iter().sum::<f32>() / hw as f32)
        .collect()
}

/// Evaluates one node with the naive kernels above.
pub fn eval_node(op: &Op, ins: &[&Tensor], out: &TensorType) -> Tensor {
    // Integer data (quantized graphs) comes from the IR's own semantics.
    if ins.iter().any(|t| t.as_f32().is_none()) {
        return mnc_ir::eval::eval_op(op, ins).unwrap();
    }
    let data = match op {
        Op::Constant(t) => return t.clone(),
        Op::Identity | Op::Dropout | Op::Reshape { .. } | Op::Flatten { .. } => f(ins[0]).to_vec(),
        Op::Conv(c) => conv(c, ins, out),
        Op::BatchNorm { epsilon } => {
            let (s, b, m, v) = (f(ins[1]), f(ins[2]), f(ins[3]), f(ins[4]));
            per_channel_map(ins[0], |c, x| {
                (x - m[c]) / (v[c] + epsilon).sqrt() * s[c] + b[c]
            })
        }
        Op::ChannelAffine => {
            let (s, b) = (f(ins[1]), f(ins[2]));
            per_channel_map(ins[0], |c, x| x * s[c] + b[c])
        }
        Op::Act(a) => f(ins[0]).iter().map(|&v| a.apply(v)).collect(),
        Op::Binary(b) => binary(*b, ins[0], ins[1], out),
        Op::GlobalAveragePool => mean_hw(ins[0]),
        Op::ReduceMean { axes, .. } if axes == &[2, 3] => mean_hw(ins[0]),
        Op::SqueezeExcite(se) => {
            let x = ins[0];
            let (w1, b1, w2, b2) = (f(ins[1]), f(ins[2]), f(ins[3]), f(ins[4]));
            let (n, c) = (x.shape[0], x.shape[1]);
            let r = ins[2].shape[0];
            let s = mean_hw(x);
            let mut gate = vec![0.0; n * c];
            for b in 0..n {
                let h: Vec<f32> = (0..r)
                    .map(|j| {
                        let z: f32 = (0..c).map(|k| w1[j * c + k] * s[b * c + k]).sum();
                        se.act.apply(z + b1[j])
                    })
                    .collect();
                for k in 0..c {
                    let z: f32 = (0..r).map(|j| w2[k * r + j] * h[j]).sum();
                    gate[b * c + k] = se.gate.apply(z + b2[k]);
                }
            }
            let hw: usize = x.shape[2..].iter().product();
            f(x).iter()
                .enumerate()
                .map(|(i, &v)| v * gate[i / hw])
                .collect()
        }
        Op::Pad { pads, value } => {
            let x = ins[0];
            let r = x.shape.len();
            let (tx, to) = (strides(&x.shape), strides(&out.shape));
            (0..out.numel())
                .map(|i| {
                    let mut ix = 0;
                    for d in 0..r {
                        let k = (i / to[d]) % out.shape[d];
                        if k < pads[d] || k >= pads[d] + x.shape[d] {
                            return *value;
                        }
                        ix += (k - pads[d]) * tx[d];
                    }
                    f(x)[ix]
                })
                .collect()
        }
        // Ops the pass tests use rarely (Gemm, shape ops) come from the IR's own semantics.
        other => return mnc_ir::eval::eval_op(other, ins).unwrap(),
    };
    Tensor::from_f32(out.shape.clone(), data).unwrap()
}

/// Runs the graph on the given inputs; returns the outputs in order.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    let mut vals: HashMap<NodeId, Tensor> = HashMap::new();
    for id in g.topo_order().unwrap() {
        let node = g.node(id);
        let t = match &node.op {
            Op::Input { index } => inputs[*index].clone(),
            op => {
                let ins: Vec<NodeId> = g.inputs(id);
                let ins: Vec<&Tensor> = ins.iter().map(|i| &vals[i]).collect();
                eval_node(op, &ins, &node.ty)
            }
        };
        vals.insert(id, t);
    }
    g.outputs.iter().map(|o| vals[&o.node].clone()).collect()
}

/// Random inputs for every graph input (deterministic).
pub fn random_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Lcg::new(seed);
    g.inputs
        .iter()
        .map(|&i| rng.tensor(&g.node(i).ty.shape, -2.0, 2.0))
        .collect()
}

/// Asserts `max|a - b| <= tol * max|b|` per element for every output pair.
pub fn assert_close(a: &[Tensor], b: &[Tensor], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.shape, y.shape);
        let scale = f(y).iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
        for (i, (p, q)) in f(x).iter().zip(f(y)).enumerate() {
            assert!(
                (p - q).abs() <= tol * scale,
                "element {i}: {p} vs {q} (tol {} )",
                tol * scale
            );
        }
    }
}

/// Runs `pass` alone on a copy of `g` and checks the outputs match the original's; returns
/// the rewritten graph.
pub fn check_pass(g: &Graph, pass: &dyn crate::Pass, tol: f32) -> (Graph, usize) {
    let mut h = g.clone();
    let ctx = crate::PassContext::default();
    let n = pass.run(&mut h, &ctx).unwrap();
    mnc_ir::verify::verify(&h).unwrap();
    let x = random_inputs(g, 42);
    assert_close(&run(&h, &x), &run(g, &x), tol);
    (h, n)
}

/// The IR text of a graph.
pub fn text(g: &Graph) -> String {
    mnc_ir::print::print_graph(g).unwrap()
}

/// Before/after IR text in one snapshot string.
pub fn before_after(before: &Graph, after: &Graph) -> String {
    format!("--- before\n{}--- after\n{}", text(before), text(after))
}
