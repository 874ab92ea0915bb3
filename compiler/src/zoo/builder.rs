//! Graph building blocks shared by the zoo architectures: conv + BatchNorm (kept or folded),
//! activations in exporter form, Squeeze-and-Excitation, the inverted-residual block of
//! MobileNetV3 and EfficientNet, residual add, pooling head, Linear.
//!
//! Weights are pseudo-random (see [`super::rng`]) and scaled so activations stay O(1): the
//! builder tracks an estimate of the second moment `E[x^2]` of every value it makes, and
//! chooses each BatchNorm's running variance as the predicted variance of the conv output
//! it normalizes (`E[x^2]_in * sum(w^2)` per output channel). So every BatchNorm brings its
//! output back to `~gamma^2`, whatever the depth, and the folded form computes the same
//! function as the `--keep-bn` form (same streams, BN folded in f64).

use super::rng::Rng;
use super::ZooError;
use mnc_ir::{Activation, BinaryOp, Conv, Gemm, Graph, NodeId, Op, Tensor, TensorType};
use std::collections::HashMap;

/// ReLU6 as the IR spells it.
pub const RELU6: Activation = Activation::Clip { min: 0.0, max: 6.0 };
/// PyTorch's `nn.Hardsigmoid` (`relu6(x + 3) / 6`).
pub const TORCH_HARDSIGMOID: Activation = Activation::HardSigmoid {
    alpha: 1.0 / 6.0,
    beta: 0.5,
};

/// One conv followed by a BatchNorm, named by their module paths.
pub struct ConvBn<'a> {
    /// Module path of the conv (`features.0.0`).
    pub conv: &'a str,
    /// Module path of the BatchNorm (`features.0.1`).
    pub bn: &'a str,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
    /// Range of the BatchNorm's gamma (smaller for the last BN of a residual branch).
    pub gamma: (f64, f64),
}

/// Squeeze-and-Excitation inside an [`InvertedResidual`].
pub struct SeSpec {
    /// Channels of the squeezed (`fc1`) layer.
    pub squeeze: usize,
    /// Activation after `fc1`.
    pub act: Activation,
    /// Gate activation after `fc2`.
    pub gate: Activation,
}

/// A torchvision inverted-residual block (MobileNetV3 `InvertedResidual`, EfficientNet
/// `MBConv`): optional 1x1 expansion, depthwise conv, optional SE, 1x1 projection, each a
/// numbered layer `block.j`, and a residual add when the shape is kept.
pub struct InvertedResidual<'a> {
    /// Module path of the layer sequence (`features.1.0.block`).
    pub block: &'a str,
    /// Name of the residual add.
    pub add: &'a str,
    /// Channels after expansion (no expansion layer when equal to the input's).
    pub expanded: usize,
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Depthwise stride.
    pub stride: usize,
    pub cout: usize,
    /// Activation of the expansion and depthwise layers.
    pub act: Activation,
    pub se: Option<SeSpec>,
}

/// The usual BatchNorm gamma range.
pub const GAMMA: (f64, f64) = (0.7, 1.3);
/// Gamma range of the BatchNorm closing a residual branch, so that sums of many residual
/// blocks stay O(1).
pub const GAMMA_RESIDUAL: (f64, f64) = (0.3, 0.6);

/// Builds one zoo graph.
pub struct Builder {
    pub g: Graph,
    keep_bn: bool,
    seed: u64,
    eps: f32,
    /// Estimated `E[x^2]` of each value.
    m2: HashMap<NodeId, f64>,
}

/// `E[f(z)^2]` for `z ~ N(0, v)` by the trapezoid rule over +-8 sigma.
fn act_m2(a: Activation, v: f64) -> f64 {
    let s = v.max(1e-12).sqrt();
    let n = 800;
    let (lo, hi) = (-8.0 * s, 8.0 * s);
    let h = (hi - lo) / n as f64;
    let mut acc = 0.0;
    for i in 0..=n {
        let z = lo + h * i as f64;
        let pdf = (-(z * z) / (2.0 * v.max(1e-12))).exp() / (s * (std::f64::consts::TAU).sqrt());
        let f = a.apply(z as f32) as f64;
        let w = if i == 0 || i == n { 0.5 } else { 1.0 };
        acc += w * f * f * pdf;
    }
    acc * h
}

impl Builder {
    /// A builder for graph `name`; `eps` is the BatchNorm epsilon of the architecture.
    pub fn new(name: &str, keep_bn: bool, seed: u64, eps: f32) -> Self {
        Builder {
            g: Graph::new(name),
            keep_bn,
            seed,
            eps,
            m2: HashMap::new(),
        }
    }

    fn rng(&self, tensor: &str) -> Rng {
        Rng::for_tensor(self.seed, tensor)
    }

    fn m2_of(&self, x: NodeId) -> f64 {
        self.m2.get(&x).copied().unwrap_or(1.0)
    }

    fn shape(&self, x: NodeId) -> &[usize] {
        &self.g.node(x).ty.shape
    }

    fn constant(
        &mut self,
        name: &str,
        shape: Vec<usize>,
        data: Vec<f32>,
    ) -> Result<NodeId, ZooError> {
        let t = Tensor::from_f32(shape, data)?;
        Ok(self.g.add_constant(name, t))
    }

    fn node(&mut self, name: &str, op: Op, inputs: &[NodeId], m2: f64) -> Result<NodeId, ZooError> {
        let id = self.g.add_node_inferred(name, op, inputs)?;
        self.m2.insert(id, m2);
        Ok(id)
    }

    /// The graph input `input` of shape `[batch, 3, res, res]` (unit-variance data).
    pub fn input(&mut self, batch: usize, res: usize) -> NodeId {
        let id = self
            .g
            .add_input("input", TensorType::f32(vec![batch, 3, res, res]));
        self.m2.insert(id, 1.0);
        id
    }

    /// Conv (no bias) + BatchNorm, or with BN folded into the conv's weight and bias.
    pub fn conv_bn(&mut self, x: NodeId, s: &ConvBn) -> Result<NodeId, ZooError> {
        let cin = self.channels(x);
        if s.groups == 0 || !cin.is_multiple_of(s.groups) || !s.cout.is_multiple_of(s.groups) {
            return Err(ZooError::Option(format!(
                "{}: {cin} -> {} channels in {} groups",
                s.conv, s.cout, s.groups
            )));
        }
        let cig = cin / s.groups;
        let k = s.kernel;
        let per_out = cig * k * k;
        let fan_in = per_out as f64;
        let mut r = self.rng(&format!("{}.weight", s.conv));
        let std = 1.0 / fan_in.sqrt();
        let w: Vec<f64> = (0..s.cout * per_out).map(|_| r.normal() * std).collect();
        let m2_in = self.m2_of(x);
        // Predicted E[y^2] of each output channel before BN.
        let var: Vec<f64> = w
            .chunks(per_out.max(1))
            .map(|c| m2_in * c.iter().map(|v| v * v).sum::<f64>())
            .collect();
        let c = s.cout;
        let mut rg = self.rng(&format!("{}.weight", s.bn));
        let gamma: Vec<f64> = (0..c).map(|_| rg.range(s.gamma.0, s.gamma.1)).collect();
        let mut rb = self.rng(&format!("{}.bias", s.bn));
        let beta: Vec<f64> = (0..c).map(|_| 0.1 * rb.normal()).collect();
        let mut rm = self.rng(&format!("{}.running_mean", s.bn));
        let mean: Vec<f64> = var.iter().map(|v| 0.1 * v.sqrt() * rm.normal()).collect();
        let mut rv = self.rng(&format!("{}.running_var", s.bn));
        let rvar: Vec<f64> = var
            .iter()
            .map(|v| (v * rv.range(0.8, 1.25)).max(1e-3))
            .collect();
        let eps = self.eps as f64;
        let m2_out = (0..c)
            .map(|o| {
                gamma[o] * gamma[o] * (var[o] + mean[o] * mean[o]) / (rvar[o] + eps)
                    + beta[o] * beta[o]
            })
            .sum::<f64>()
            / c.max(1) as f64;
        let conv = Conv {
            kernel: [k, k],
            strides: [s.stride, s.stride],
            pads: [(k - 1) / 2; 4],
            group: s.groups,
            has_bias: !self.keep_bn,
            ..Default::default()
        };
        let wshape = vec![c, cig, k, k];
        if self.keep_bn {
            let wc = self.constant(
                &format!("{}.weight", s.conv),
                wshape,
                w.iter().map(|&v| v as f32).collect(),
            )?;
            let y = self.node(s.conv, Op::Conv(conv), &[x, wc], 1.0)?;
            let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let g = self.constant(&format!("{}.weight", s.bn), vec![c], f(&gamma))?;
            let b = self.constant(&format!("{}.bias", s.bn), vec![c], f(&beta))?;
            let m = self.constant(&format!("{}.running_mean", s.bn), vec![c], f(&mean))?;
            let v = self.constant(&format!("{}.running_var", s.bn), vec![c], f(&rvar))?;
            self.node(
                s.bn,
                Op::BatchNorm { epsilon: self.eps },
                &[y, g, b, m, v],
                m2_out,
            )
        } else {
            let scale: Vec<f64> = (0..c).map(|o| gamma[o] / (rvar[o] + eps).sqrt()).collect();
            let wf: Vec<f32> = w
                .chunks(per_out.max(1))
                .zip(&scale)
                .flat_map(|(ch, &sc)| ch.iter().map(move |&v| (v * sc) as f32))
                .collect();
            let bf: Vec<f32> = (0..c)
                .map(|o| (beta[o] - mean[o] * scale[o]) as f32)
                .collect();
            let wc = self.constant(&format!("{}.weight", s.conv), wshape, wf)?;
            let bc = self.constant(&format!("{}.bias", s.conv), vec![c], bf)?;
            self.node(s.conv, Op::Conv(conv), &[x, wc, bc], m2_out)
        }
    }

    /// Conv2dNormActivation-style `prefix.0` conv, `prefix.1` BN, `prefix.2` activation.
    #[allow(clippy::too_many_arguments)]
    pub fn cna(
        &mut self,
        x: NodeId,
        prefix: &str,
        cout: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        act: Option<Activation>,
        gamma: (f64, f64),
    ) -> Result<NodeId, ZooError> {
        let y = self.conv_bn(
            x,
            &ConvBn {
                conv: &format!("{prefix}.0"),
                bn: &format!("{prefix}.1"),
                cout,
                kernel,
                stride,
                groups,
                gamma,
            },
        )?;
        match act {
            Some(a) => self.act(y, &format!("{prefix}.2"), a),
            None => Ok(y),
        }
    }

    /// An [`InvertedResidual`] block on `x`.
    pub fn inverted_residual(
        &mut self,
        x: NodeId,
        s: &InvertedResidual,
    ) -> Result<NodeId, ZooError> {
        let p = s.block;
        let cin = self.channels(x);
        let residual = s.stride == 1 && cin == s.cout;
        let mut j = 0;
        let mut h = x;
        if s.expanded != cin {
            h = self.cna(
                h,
                &format!("{p}.0"),
                s.expanded,
                1,
                1,
                1,
                Some(s.act),
                GAMMA,
            )?;
            j += 1;
        }
        h = self.cna(
            h,
            &format!("{p}.{j}"),
            s.expanded,
            s.kernel,
            s.stride,
            s.expanded,
            Some(s.act),
            GAMMA,
        )?;
        j += 1;
        if let Some(se) = &s.se {
            h = self.se(h, &format!("{p}.{j}"), se.squeeze, se.act, se.gate)?;
            j += 1;
        }
        let gamma = if residual { GAMMA_RESIDUAL } else { GAMMA };
        h = self.cna(h, &format!("{p}.{j}"), s.cout, 1, 1, 1, None, gamma)?;
        if residual {
            self.add(h, x, s.add)
        } else {
            Ok(h)
        }
    }

    /// Activation node `name`. SiLU is written as an exporter writes it: `name.sigmoid`
    /// (Sigmoid) and `name` (`Mul(x, sigmoid)`).
    pub fn act(&mut self, x: NodeId, name: &str, a: Activation) -> Result<NodeId, ZooError> {
        let m2 = act_m2(a, self.m2_of(x));
        if a == Activation::Silu {
            let s = self.node(
                &format!("{name}.sigmoid"),
                Op::Act(Activation::Sigmoid),
                &[x],
                act_m2(Activation::Sigmoid, self.m2_of(x)),
            )?;
            self.node(name, Op::Binary(BinaryOp::Mul), &[x, s], m2)
        } else {
            self.node(name, Op::Act(a), &[x], m2)
        }
    }

    /// torchvision `SqueezeExcitation` at module path `p`: `p.avgpool`, `p.fc1`,
    /// `p.activation`, `p.fc2`, `p.scale_activation`, and `p` = `Mul(scale, x)`.
    pub fn se(
        &mut self,
        x: NodeId,
        p: &str,
        squeeze: usize,
        act: Activation,
        gate: Activation,
    ) -> Result<NodeId, ZooError> {
        let c = self.channels(x);
        let m2_x = self.m2_of(x);
        let pool = self.node(&format!("{p}.avgpool"), Op::GlobalAveragePool, &[x], m2_x)?;
        let fc1 = self.conv1x1_bias(
            pool,
            &format!("{p}.fc1"),
            squeeze,
            1.0 / (c as f64 * m2_x).sqrt(),
            1.0,
        )?;
        let h = self.act(fc1, &format!("{p}.activation"), act)?;
        let m2_h = self.m2_of(h);
        let fc2 = self.conv1x1_bias(
            h,
            &format!("{p}.fc2"),
            c,
            1.0 / (squeeze as f64 * m2_h).sqrt(),
            1.0,
        )?;
        let s = self.act(fc2, &format!("{p}.scale_activation"), gate)?;
        let gm2 = self.m2_of(s);
        self.node(p, Op::Binary(BinaryOp::Mul), &[s, x], m2_x * gm2)
    }

    /// A 1x1 conv with bias at module path `name` (weights `N(0, std^2)`, bias `N(0, 0.1^2)`).
    fn conv1x1_bias(
        &mut self,
        x: NodeId,
        name: &str,
        cout: usize,
        std: f64,
        m2_out: f64,
    ) -> Result<NodeId, ZooError> {
        let cin = self.channels(x);
        let mut r = self.rng(&format!("{name}.weight"));
        let w: Vec<f32> = (0..cout * cin).map(|_| (r.normal() * std) as f32).collect();
        let mut rb = self.rng(&format!("{name}.bias"));
        let b: Vec<f32> = (0..cout).map(|_| (0.1 * rb.normal()) as f32).collect();
        let wc = self.constant(&format!("{name}.weight"), vec![cout, cin, 1, 1], w)?;
        let bc = self.constant(&format!("{name}.bias"), vec![cout], b)?;
        let conv = Conv {
            has_bias: true,
            ..Default::default()
        };
        self.node(name, Op::Conv(conv), &[x, wc, bc], m2_out)
    }

    /// Residual add `name = a + b`.
    pub fn add(&mut self, a: NodeId, b: NodeId, name: &str) -> Result<NodeId, ZooError> {
        let m2 = self.m2_of(a) + self.m2_of(b);
        self.node(name, Op::Binary(BinaryOp::Add), &[a, b], m2)
    }

    /// Global average pool `pool` then `Flatten(axis 1)` `flatten`.
    pub fn pool_flatten(
        &mut self,
        x: NodeId,
        pool: &str,
        flatten: &str,
    ) -> Result<NodeId, ZooError> {
        let m2 = self.m2_of(x);
        let p = self.node(pool, Op::GlobalAveragePool, &[x], m2)?;
        self.node(flatten, Op::Flatten { axis: 1 }, &[p], m2)
    }

    /// Inference-mode dropout `name`.
    pub fn dropout(&mut self, x: NodeId, name: &str) -> Result<NodeId, ZooError> {
        let m2 = self.m2_of(x);
        self.node(name, Op::Dropout, &[x], m2)
    }

    /// `nn.Linear` at module path `name`: Gemm(x, W^T) + b with `name.weight` `[out, in]` and
    /// `name.bias` `[out]`.
    pub fn linear(&mut self, x: NodeId, name: &str, out: usize) -> Result<NodeId, ZooError> {
        let cin = self.channels(x);
        let std = 1.0 / (cin as f64 * self.m2_of(x)).sqrt();
        let mut r = self.rng(&format!("{name}.weight"));
        let w: Vec<f32> = (0..out * cin).map(|_| (r.normal() * std) as f32).collect();
        let mut rb = self.rng(&format!("{name}.bias"));
        let b: Vec<f32> = (0..out).map(|_| (0.1 * rb.normal()) as f32).collect();
        let wc = self.constant(&format!("{name}.weight"), vec![out, cin], w)?;
        let bc = self.constant(&format!("{name}.bias"), vec![out], b)?;
        let gemm = Gemm {
            trans_b: true,
            has_c: true,
            ..Default::default()
        };
        self.node(name, Op::Gemm(gemm), &[x, wc, bc], 1.0)
    }

    /// Marks `x` as the graph output `logits` and returns the graph, renumbered as the ONNX
    /// importer numbers a model: constants first (in order of first use), then the input,
    /// then the computing nodes in build order. The IR text of the zoo graph is then
    /// identical to that of its ONNX export re-imported.
    pub fn finish(self, x: NodeId) -> Result<Graph, ZooError> {
        let g = self.g;
        let order = g.topo_order()?;
        let mut out = Graph::new(g.name.clone());
        let mut map: HashMap<NodeId, NodeId> = HashMap::new();
        for &id in &order {
            let n = g.node(id);
            if let Op::Constant(t) = &n.op {
                map.insert(id, out.add_constant(n.name.clone(), t.clone()));
            }
        }
        for &id in &g.inputs {
            let n = g.node(id);
            map.insert(id, out.add_input(n.name.clone(), n.ty.clone()));
        }
        for &id in &order {
            let n = g.node(id);
            if matches!(n.op, Op::Constant(_) | Op::Input { .. }) {
                continue;
            }
            let ins: Vec<NodeId> = g.inputs(id).iter().map(|i| map[i]).collect();
            let new = out.add_node_typed(n.name.clone(), n.op.clone(), &ins, n.ty.clone());
            map.insert(id, new);
        }
        out.add_output("logits", map[&x]);
        Ok(out)
    }

    /// Channel count of `x`.
    pub fn channels(&self, x: NodeId) -> usize {
        self.shape(x).get(1).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn act_second_moments() {
        // ReLU halves the second moment of a centred Gaussian.
        assert!((act_m2(Activation::Relu, 2.0) - 1.0).abs() < 1e-3);
        // Sigmoid of N(0, 1): E[s^2] ~ 0.2933.
        assert!((act_m2(Activation::Sigmoid, 1.0) - 0.2933).abs() < 2e-3);
    }
}
