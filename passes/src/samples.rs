//! Small hand-built CNN graphs with deterministic pseudo-random weights: the building
//! blocks of MobileNetV2, MobileNetV3 and EfficientNet exactly as ONNX exports spell them
//! (BatchNorm nodes, `x * sigmoid(x)` SiLU, Dropout, explicit SE subgraphs). Used by the pass
//! unit tests, the differential integration tests and documentation examples.

use mnc_ir::{Activation, BinaryOp, Conv, Graph, IrError, NodeId, Op, Tensor, TensorType};

/// Deterministic xorshift generator for weights (no external RNG crate needed).
#[derive(Clone, Debug)]
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let u = (self.0 >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    /// A tensor of the given shape with values uniform in `[lo, hi)`.
    pub fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| self.uniform(lo, hi)).collect();
        Tensor::from_f32(shape.to_vec(), data).expect("length matches shape")
    }
}

/// Builds graphs node by node with generated weights named like PyTorch parameters.
pub struct Builder {
    pub g: Graph,
    pub rng: Lcg,
}

impl Builder {
    pub fn new(name: &str, seed: u64) -> Self {
        Builder {
            g: Graph::new(name),
            rng: Lcg::new(seed),
        }
    }

    /// Adds an f32 graph input.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> NodeId {
        self.g.add_input(name, TensorType::f32(shape.to_vec()))
    }

    /// Adds a constant with values uniform in `[lo, hi)`.
    pub fn constant(&mut self, name: &str, shape: &[usize], lo: f32, hi: f32) -> NodeId {
        let t = self.rng.tensor(shape, lo, hi);
        self.g.add_constant(name, t)
    }

    /// Adds `name` = Conv(x) with `oc` output channels, a `k`x`k` kernel, "same" padding for
    /// odd `k`, the given stride and group; weights `name.weight` (and `name.bias`).
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        name: &str,
        x: NodeId,
        oc: usize,
        k: usize,
        stride: usize,
        group: usize,
        bias: bool,
    ) -> Result<NodeId, IrError> {
        let ic = self.g.node(x).ty.shape[1];
        let fan_in = (ic / group * k * k) as f32;
        let bound = (3.0 / fan_in).sqrt();
        let w = self.constant(
            &format!("{name}.weight"),
            &[oc, ic / group, k, k],
            -bound,
            bound,
        );
        let mut ins = vec![x, w];
        if bias {
            ins.push(self.constant(&format!("{name}.bias"), &[oc], -0.2, 0.2));
        }
        let p = k / 2;
        let op = Op::Conv(Conv {
            kernel: [k, k],
            strides: [stride, stride],
            pads: [p, p, p, p],
            group,
            has_bias: bias,
            ..Default::default()
        });
        self.g.add_node_inferred(name, op, &ins)
    }

    /// Adds an inference BatchNorm over axis 1 with random statistics (variance > 0).
    pub fn bn(&mut self, name: &str, x: NodeId) -> Result<NodeId, IrError> {
        let c = self.g.node(x).ty.shape[1];
        let s = self.constant(&format!("{name}.weight"), &[c], 0.5, 1.5);
        let b = self.constant(&format!("{name}.bias"), &[c], -0.5, 0.5);
        let m = self.constant(&format!("{name}.running_mean"), &[c], -0.5, 0.5);
        let v = self.constant(&format!("{name}.running_var"), &[c], 0.3, 2.0);
        self.g
            .add_node_inferred(name, Op::BatchNorm { epsilon: 1e-5 }, &[x, s, b, m, v])
    }

    /// Adds a standalone activation.
    pub fn act(&mut self, name: &str, a: Activation, x: NodeId) -> Result<NodeId, IrError> {
        self.g.add_node_inferred(name, Op::Act(a), &[x])
    }

    /// Adds a binary op.
    pub fn binary(
        &mut self,
        name: &str,
        op: BinaryOp,
        a: NodeId,
        b: NodeId,
    ) -> Result<NodeId, IrError> {
        self.g.add_node_inferred(name, Op::Binary(op), &[a, b])
    }

    /// SiLU spelled as ONNX exports do: `Mul(x, Sigmoid(x))` (or `Mul(Sigmoid(x), x)` when
    /// `swap`).
    pub fn silu(&mut self, name: &str, x: NodeId, swap: bool) -> Result<NodeId, IrError> {
        let s = self.act(&format!("{name}.sigmoid"), Activation::Sigmoid, x)?;
        let (a, b) = if swap { (s, x) } else { (x, s) };
        self.binary(&format!("{name}.mul"), BinaryOp::Mul, a, b)
    }
}

const RELU6: Activation = Activation::Clip { min: 0.0, max: 6.0 };

/// A MobileNetV2 stem (3x3 stride-2 conv, BN, ReLU6) followed by one inverted-residual
/// block with stride 1 and expansion 6: 1x1 expand, BN, ReLU6, 3x3 depthwise, BN, ReLU6,
/// 1x1 project, BN, and the residual `Add(x, block)`. Input `[1,3,16,16]`, output
/// `[1,8,8,8]`.
pub fn mobilenet_v2_block(seed: u64) -> Result<Graph, IrError> {
    let mut b = Builder::new("mbv2_block", seed);
    let x = b.input("input", &[1, 3, 16, 16]);
    let c = b.conv("features.0.0", x, 8, 3, 2, 1, false)?;
    let c = b.bn("features.0.1", c)?;
    let s = b.act("features.0.2", RELU6, c)?;
    let e = b.conv("features.1.conv.0.0", s, 48, 1, 1, 1, false)?;
    let e = b.bn("features.1.conv.0.1", e)?;
    let e = b.act("features.1.conv.0.2", RELU6, e)?;
    let d = b.conv("features.1.conv.1.0", e, 48, 3, 1, 48, false)?;
    let d = b.bn("features.1.conv.1.1", d)?;
    let d = b.act("features.1.conv.1.2", RELU6, d)?;
    let p = b.conv("features.1.conv.2", d, 8, 1, 1, 1, false)?;
    let p = b.bn("features.1.conv.3", p)?;
    let y = b.binary("features.1.add", BinaryOp::Add, s, p)?;
    b.g.add_output("output", y);
    Ok(b.g)
}

/// A MobileNetV3 bneck block with SE and HardSwish, stride 1: 1x1 expand 16->48, BN,
/// HardSwish, 5x5 depthwise, BN, HardSwish, SE (GlobalAveragePool, 1x1 conv 48->16 + bias,
/// ReLU, 1x1 conv 16->48 + bias, HardSigmoid(1/6, 1/2), `Mul(gate, x)`), 1x1 project
/// 48->16, BN, residual Add. Input and output `[1,16,8,8]`.
pub fn mobilenet_v3_block(seed: u64) -> Result<Graph, IrError> {
    let mut b = Builder::new("mbv3_block", seed);
    let x = b.input("input", &[1, 16, 8, 8]);
    let e = b.conv("block.0.0", x, 48, 1, 1, 1, false)?;
    let e = b.bn("block.0.1", e)?;
    let e = b.act("block.0.2", Activation::HardSwish, e)?;
    let d = b.conv("block.1.0", e, 48, 5, 1, 48, false)?;
    let d = b.bn("block.1.1", d)?;
    let d = b.act("block.1.2", Activation::HardSwish, d)?;
    let p =
        b.g.add_node_inferred("block.2.avgpool", Op::GlobalAveragePool, &[d])?;
    let f1 = b.conv("block.2.fc1", p, 16, 1, 1, 1, true)?;
    let r = b.act("block.2.relu", Activation::Relu, f1)?;
    let f2 = b.conv("block.2.fc2", r, 48, 1, 1, 1, true)?;
    let gate = b.act(
        "block.2.hardsigmoid",
        Activation::HardSigmoid {
            alpha: 1.0 / 6.0,
            beta: 0.5,
        },
        f2,
    )?;
    let se = b.binary("block.2.mul", BinaryOp::Mul, gate, d)?;
    let o = b.conv("block.3.0", se, 16, 1, 1, 1, false)?;
    let o = b.bn("block.3.1", o)?;
    let y = b.binary("add", BinaryOp::Add, o, x)?;
    b.g.add_output("output", y);
    Ok(b.g)
}

/// An EfficientNet MBConv block with SE and SiLU as exported to ONNX: 1x1 expand 16->64, BN,
/// `x * sigmoid(x)`, 3x3 depthwise, BN, `sigmoid(x) * x`, SE (ReduceMean over H,W keepdims,
/// 1x1 conv 64->4 + bias, SiLU, 1x1 conv 4->64 + bias, Sigmoid, `Mul(x, gate)`), 1x1 project
/// 64->16, BN, an inference Dropout (drop path), residual Add. Input and output
/// `[1,16,8,8]`.
pub fn efficientnet_mbconv_block(seed: u64) -> Result<Graph, IrError> {
    let mut b = Builder::new("effnet_mbconv", seed);
    let x = b.input("input", &[1, 16, 8, 8]);
    let e = b.conv("conv_pw", x, 64, 1, 1, 1, false)?;
    let e = b.bn("bn1", e)?;
    let e = b.silu("act1", e, false)?;
    let d = b.conv("conv_dw", e, 64, 3, 1, 64, false)?;
    let d = b.bn("bn2", d)?;
    let d = b.silu("act2", d, true)?;
    let m = b.g.add_node_inferred(
        "se.mean",
        Op::ReduceMean {
            axes: vec![2, 3],
            keepdims: true,
        },
        &[d],
    )?;
    let r = b.conv("se.conv_reduce", m, 4, 1, 1, 1, true)?;
    let r = b.silu("se.act1", r, false)?;
    let ex = b.conv("se.conv_expand", r, 64, 1, 1, 1, true)?;
    let gate = b.act("se.gate", Activation::Sigmoid, ex)?;
    let se = b.binary("se.mul", BinaryOp::Mul, d, gate)?;
    let o = b.conv("conv_pwl", se, 16, 1, 1, 1, false)?;
    let o = b.bn("bn3", o)?;
    let o = b.g.add_node_inferred("drop_path", Op::Dropout, &[o])?;
    let y = b.binary("add", BinaryOp::Add, o, x)?;
    b.g.add_output("output", y);
    Ok(b.g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_verify() {
        for g in [
            mobilenet_v2_block(1).unwrap(),
            mobilenet_v3_block(2).unwrap(),
            efficientnet_mbconv_block(3).unwrap(),
        ] {
            mnc_ir::verify::verify(&g).unwrap();
        }
    }

    #[test]
    fn lcg_is_deterministic_and_in_range() {
        let a = Lcg::new(7).tensor(&[100], -1.0, 1.0);
        let b = Lcg::new(7).tensor(&[100], -1.0, 1.0);
        assert_eq!(a, b);
        assert!(a.as_f32().unwrap().iter().all(|v| (-1.0..1.0).contains(v)));
        assert_ne!(a, Lcg::new(8).tensor(&[100], -1.0, 1.0));
    }
}
