//! Random valid CNN graphs for the graph-level fuzzer (`tests/tests/graph_fuzz.rs`) and the
//! ONNX fuzz target's seeds (`fuzz/`): convs (standard, depthwise, grouped, strided,
//! dilated, padded, rectangular kernels, with or without bias), max/average pools (padded,
//! strided, ceil mode, dilated max), BatchNorm, activations, per-channel and residual
//! elementwise ops, explicit zero `Pad`, channel `Concat`, and optionally a
//! GlobalAveragePool -> Flatten -> Gemm head. Every layer is accepted by shape inference
//! (a candidate it refuses is redrawn) and sizes stay small, so the reference executor runs
//! each graph in milliseconds. Deterministic: one seed, one graph.

use mnc_ir::{BinaryOp, Conv, Gemm, Graph, NodeId, Op, Pool, PoolKind, Tensor, TensorType};
use mnc_passes::samples::Lcg;

/// Largest channel count a layer produces.
pub const MAX_CHANNELS: usize = 16;
/// Largest input height/width.
pub const MAX_HW: usize = 24;
/// Largest element count of any activation.
pub const MAX_NUMEL: usize = 2 * MAX_CHANNELS * 26 * 26;

/// Integer draws on top of the tests' one generator, [`Lcg`].
pub struct Draw(pub Lcg);

impl Draw {
    pub fn new(seed: u64) -> Self {
        Draw(Lcg::new(seed))
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.0.uniform(0.0, 1.0) * n as f32) as usize).min(n - 1)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f32) -> bool {
        self.0.uniform(0.0, 1.0) < p
    }
    /// One element of `xs`.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// The random graph of `seed`: one NCHW input, 1-8 layers, one or two outputs.
pub fn random_graph(seed: u64) -> Graph {
    let mut d = Draw::new(seed);
    let mut b = Gen {
        g: Graph::new(format!("fuzz{seed}")),
        values: Vec::new(),
        k: 0,
    };
    let shape = vec![
        d.range(1, 2),
        d.range(1, 8),
        d.range(1, MAX_HW),
        d.range(1, MAX_HW),
    ];
    let x = b.g.add_input("x", TensorType::f32(shape));
    b.values.push(x);
    let mut cur = x;
    for _ in 0..d.range(1, 8) {
        // Redraw candidates shape inference refuses (a window larger than the padded input).
        for _ in 0..16 {
            if let Some(id) = b.layer(&mut d, cur) {
                cur = id;
                b.values.push(id);
                break;
            }
        }
    }
    if d.chance(0.25) {
        cur = b.head(&mut d, cur);
    } else if b.values.len() > 2 && d.chance(0.2) {
        // A second output from the middle of the graph: that value must survive fusion.
        let mid = b.values[b.values.len() / 2];
        b.g.add_output("mid", mid);
    }
    b.g.add_output("y", cur);
    b.g
}

struct Gen {
    g: Graph,
    /// The 4-D values made so far (the input first).
    values: Vec<NodeId>,
    /// Counter for unique node names.
    k: usize,
}

impl Gen {
    fn name(&mut self, what: &str) -> String {
        self.k += 1;
        format!("{what}{}", self.k)
    }

    fn shape(&self, id: NodeId) -> Vec<usize> {
        self.g.node(id).ty.shape.clone()
    }

    /// Adds `op` over `x` and constants `consts` if shape inference accepts it and the
    /// output is within [`MAX_NUMEL`]; nothing is added otherwise.
    fn try_add(&mut self, what: &str, op: Op, x: &[NodeId], consts: Vec<Tensor>) -> Option<NodeId> {
        let const_tys: Vec<TensorType> = consts.iter().map(|t| t.ty()).collect();
        let mut tys: Vec<&TensorType> = x.iter().map(|&i| &self.g.node(i).ty).collect();
        tys.extend(const_tys.iter());
        let out = mnc_ir::infer::infer(&op, &tys).ok()?;
        if out.numel() == 0 || out.numel() > MAX_NUMEL {
            return None;
        }
        let name = self.name(what);
        let mut ins = x.to_vec();
        for (k, t) in consts.into_iter().enumerate() {
            ins.push(self.g.add_constant(format!("{name}.c{k}"), t));
        }
        self.g.add_node_inferred(name, op, &ins).ok()
    }

    fn layer(&mut self, d: &mut Draw, x: NodeId) -> Option<NodeId> {
        let s = self.shape(x);
        let c = s[1];
        match d.below(10) {
            0..=2 => self.conv(d, x),
            3 => {
                let kind = d.pick(&[PoolKind::Max, PoolKind::Avg]);
                let kernel = [d.range(1, 3), d.range(1, 3)];
                let pads = [
                    d.below(kernel[0]),
                    d.below(kernel[1]),
                    d.below(kernel[0]),
                    d.below(kernel[1]),
                ];
                // Dilated max pools only unpadded: shape inference accepts a dilated window
                // that covers padding only (e.g. k=1x2 d=1x2 p=0,1,0,1 on a width-1 input),
                // which the reference refuses at run time.
                let dilations = match kind {
                    PoolKind::Max if pads == [0; 4] => [d.range(1, 2), d.range(1, 2)],
                    PoolKind::Max | PoolKind::Avg => [1, 1],
                };
                let pool = Pool {
                    kind,
                    kernel,
                    strides: [d.range(1, 3), d.range(1, 3)],
                    pads,
                    dilations,
                    ceil_mode: d.chance(0.3),
                    count_include_pad: d.chance(0.5),
                };
                self.try_add("pool", Op::Pool(pool), &[x], vec![])
            }
            4 => {
                let act = d.pick(mnc_ir::op::ACTIVATION_EXAMPLES);
                self.try_add("act", Op::Act(act), &[x], vec![])
            }
            5 => {
                let consts = vec![
                    d.0.tensor(&[c], 0.5, 1.5),
                    d.0.tensor(&[c], -0.5, 0.5),
                    d.0.tensor(&[c], -0.5, 0.5),
                    d.0.tensor(&[c], 0.5, 1.5),
                ];
                self.try_add("bn", Op::BatchNorm { epsilon: 1e-5 }, &[x], consts)
            }
            6 => {
                // Per-channel constant ([C,1,1] or [1,C,1,1]); Div only by values away from 0.
                let op = d.pick(&[BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div]);
                let shape: Vec<usize> = if d.chance(0.5) {
                    vec![c, 1, 1]
                } else {
                    vec![1, c, 1, 1]
                };
                let t = match op {
                    BinaryOp::Mul | BinaryOp::Div => d.0.tensor(&shape, 0.5, 1.5),
                    BinaryOp::Add | BinaryOp::Sub => d.0.tensor(&shape, -1.0, 1.0),
                };
                self.try_add("bin", Op::Binary(op), &[x], vec![t])
            }
            7 => {
                // Residual: with an earlier value of the same shape.
                let same: Vec<NodeId> = self
                    .values
                    .iter()
                    .copied()
                    .filter(|&v| v != x && self.g.node(v).ty.shape == s)
                    .collect();
                if same.is_empty() {
                    return None;
                }
                let other = d.pick(&same);
                let op = d.pick(&[BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul]);
                let ins = if d.chance(0.5) {
                    [x, other]
                } else {
                    [other, x]
                };
                self.try_add("res", Op::Binary(op), &ins, vec![])
            }
            8 => {
                if d.chance(0.3) {
                    return self.try_add("gap", Op::GlobalAveragePool, &[x], vec![]);
                }
                // Explicit zero padding of H and W (cleanup merges it into a following conv).
                let mut pads = vec![0; 8];
                for k in [2, 3, 6, 7] {
                    pads[k] = d.below(3);
                }
                self.try_add("pad", Op::Pad { pads, value: 0.0 }, &[x], vec![])
            }
            _ => {
                // Channel concat with itself or an earlier value of the same N, H, W.
                let fits: Vec<NodeId> = self
                    .values
                    .iter()
                    .copied()
                    .filter(|&v| {
                        let t = &self.g.node(v).ty.shape;
                        t[0] == s[0] && t[2] == s[2] && t[3] == s[3]
                    })
                    .collect();
                let other = d.pick(&fits);
                if c + self.shape(other)[1] > MAX_CHANNELS {
                    return None;
                }
                self.try_add("cat", Op::Concat { axis: 1 }, &[x, other], vec![])
            }
        }
    }

    fn conv(&mut self, d: &mut Draw, x: NodeId) -> Option<NodeId> {
        let ci = self.shape(x)[1];
        let divisors: Vec<usize> = (2..ci).filter(|&g| ci.is_multiple_of(g)).collect();
        let (group, oc) = match d.below(4) {
            // depthwise, channel multiplier 1 or 2
            0 => (ci, ci * d.range(1, 2)),
            // grouped
            1 if !divisors.is_empty() => {
                let g = d.pick(&divisors);
                (g, g * d.range(1, MAX_CHANNELS / g))
            }
            _ => (1, d.range(1, MAX_CHANNELS)),
        };
        if oc > MAX_CHANNELS {
            return None;
        }
        let kernel = [d.pick(&[1, 1, 2, 3, 3, 5]), d.pick(&[1, 1, 2, 3, 3, 5])];
        let conv = Conv {
            kernel,
            strides: [d.pick(&[1, 1, 2, 3]), d.pick(&[1, 1, 2, 3])],
            dilations: [d.pick(&[1, 1, 2]), d.pick(&[1, 1, 2])],
            pads: [
                d.below(kernel[0]),
                d.below(kernel[1]),
                d.below(kernel[0]),
                d.below(kernel[1]),
            ],
            group,
            has_bias: d.chance(0.5),
            ..Default::default()
        };
        let fan_in = (ci / group) * kernel[0] * kernel[1];
        let a = (3.0 / fan_in as f32).sqrt();
        let mut consts = vec![d.0.tensor(&[oc, ci / group, kernel[0], kernel[1]], -a, a)];
        if conv.has_bias {
            consts.push(d.0.tensor(&[oc], -0.5, 0.5));
        }
        self.try_add("conv", Op::Conv(conv), &[x], consts)
    }

    /// GlobalAveragePool -> Flatten -> Gemm (with bias, transposed weights like PyTorch).
    fn head(&mut self, d: &mut Draw, x: NodeId) -> NodeId {
        let c = self.shape(x)[1];
        let gap = self.try_add("gap", Op::GlobalAveragePool, &[x], vec![]);
        let flat = gap.and_then(|p| self.try_add("flat", Op::Flatten { axis: 1 }, &[p], vec![]));
        let Some(flat) = flat else { return x };
        let out = d.range(1, 10);
        let gemm = Gemm {
            trans_b: true,
            has_c: true,
            ..Default::default()
        };
        let consts = vec![
            d.0.tensor(&[out, c], -0.5, 0.5),
            d.0.tensor(&[out], -0.5, 0.5),
        ];
        self.try_add("fc", Op::Gemm(gemm), &[flat], consts)
            .unwrap_or(flat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphs_are_valid_deterministic_and_varied() {
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let g = random_graph(seed);
            mnc_ir::verify::verify(&g).unwrap();
            assert_eq!(
                mnc_ir::print::print_graph(&g).unwrap(),
                mnc_ir::print::print_graph(&random_graph(seed)).unwrap()
            );
            kinds.extend(crate::kinds(&g).into_keys());
        }
        for k in [
            "Conv",
            "MaxPool",
            "AveragePool",
            "Act",
            "BatchNorm",
            "Add",
            "Mul",
            "Div",
            "Pad",
            "Concat",
            "GlobalAveragePool",
            "Gemm",
        ] {
            assert!(kinds.contains(k), "no {k} in 200 graphs: {kinds:?}");
        }
    }
}
