//! The closed set of IR operations and their typed attributes.
//!
//! Every op has exactly one output. Inputs are ordered; the number each op takes is given by
//! [`Op::arity`] and checked by the verifier. Attributes are fully resolved by the importer
//! (no optional inputs, no negative axes, no `auto_pad` strings past the frontend).

use crate::quant::{QParams, QType, Requant};
use crate::schedule::ConvSchedule;
use crate::tensor::{DType, Tensor};
use std::fmt;

/// Elementwise activation, standalone ([`Op::Act`]) or fused into a producer's epilogue.
///
/// # Semantics of NaN, infinities and signed zeros
/// Those of onnxruntime's CPU kernels (checked against onnxruntime 1.32), and the same on every
/// code path (the reference executor, the generated CPU code, the `std::arch` kernels and the
/// PTX); [`Activation::apply`] is the definition:
/// - **NaN propagates** through every activation: `Relu(NaN) = Clip(NaN) = NaN` (a `max`
///   that ignores NaN would return 0 or `min`), and likewise for the others.
/// - Infinities: `Relu(+inf) = +inf`, `Clip(+-inf) = max / min`, `Sigmoid(+-inf) = 1 / 0`,
///   `HardSwish(-inf) = -inf * 0 = NaN`, `SiLU(-inf) = -inf / (1 + exp(inf)) = NaN`
///   (exp overflows to `+inf` on every path), `SiLU(+inf) = +inf`.
/// - The sign of a zero result is not part of the contract (`Relu(-0.0)` may be `-0.0` or
///   `+0.0`: onnxruntime returns `-0.0`, a vector `max` may return `+0.0`).
///
/// Tests compare every path with [`agrees`] on [`ACTIVATION_PROBES`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// max(x, 0), NaN propagating
    Relu,
    /// min(max(x, min), max), NaN propagating; ReLU6 is `Clip { min: 0, max: 6 }`.
    Clip { min: f32, max: f32 },
    /// 1 / (1 + exp(-x))
    Sigmoid,
    /// max(0, min(1, alpha * x + beta)), NaN propagating
    HardSigmoid { alpha: f32, beta: f32 },
    /// x * max(0, min(1, x * (1/6) + 1/2)), NaN propagating: `1/6` is rounded to f32 first,
    /// then one multiply and one add (onnxruntime's kernel exactly, bit for bit).
    HardSwish,
    /// x * sigmoid(x) (also called Swish), computed as x / (1 + exp(-x))
    Silu,
}

impl Activation {
    /// Applies the activation to one value. This is the single definition of its semantics
    /// (see the type's docs for NaN and infinities).
    pub fn apply(self, x: f32) -> f32 {
        // `f32::max`/`min` ignore a NaN operand; comparisons pass NaN through (a comparison
        // with NaN is false), as onnxruntime's kernels do.
        let clamp = |x: f32, lo: f32, hi: f32| {
            if x < lo {
                lo
            } else if x > hi {
                hi
            } else {
                x
            }
        };
        match self {
            Activation::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Activation::Clip { min, max } => clamp(x, min, max),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::HardSigmoid { alpha, beta } => clamp(alpha * x + beta, 0.0, 1.0),
            Activation::HardSwish => x * clamp(x * (1.0 / 6.0) + 0.5, 0.0, 1.0),
            Activation::Silu => x / (1.0 + (-x).exp()),
        }
    }
}

/// One activation of every kind, with the parameters tests use (ReLU6 and an asymmetric clip
/// straddling zero, MobileNetV3's HardSigmoid).
pub const ACTIVATION_EXAMPLES: &[Activation] = &[
    Activation::Relu,
    Activation::Clip { min: 0.0, max: 6.0 },
    Activation::Clip {
        min: -0.25,
        max: 0.5,
    },
    Activation::Sigmoid,
    Activation::HardSigmoid {
        alpha: 0.2,
        beta: 0.5,
    },
    Activation::HardSwish,
    Activation::Silu,
];

/// No activation, then [`ACTIVATION_EXAMPLES`]: every fused-epilogue activation form tests
/// cover.
pub fn optional_activation_examples() -> Vec<Option<Activation>> {
    std::iter::once(None)
        .chain(ACTIVATION_EXAMPLES.iter().copied().map(Some))
        .collect()
}

/// Inputs every implementation of the activations is tested on, next to ordinary values: NaN,
/// the infinities, both zeros, values around the overflow of `exp` (`ln(f32::MAX)` is about
/// 88.72) and the clamps of the vector `exp`, and huge finite values.
pub const ACTIVATION_PROBES: &[f32] = &[
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    0.0,
    -0.0,
    1.0,
    -1.0,
    3.0,
    -3.0,
    6.5,
    -6.5,
    20.0,
    -20.0,
    87.0,
    -87.0,
    88.5,
    -88.5,
    89.0,
    -89.0,
    100.0,
    -100.0,
    1e30,
    -1e30,
    f32::MAX,
    f32::MIN,
];

/// The agreement rule of activation tests: `got` agrees with the reference value `want` when
/// both are NaN, or they are equal (so equal infinities, and `+0.0 == -0.0`: the sign of a
/// zero is not part of the contract), or both are finite and
/// `|got - want| <= 1e-5 * max(1, |want|)` (the vector `exp` is a polynomial approximation,
/// and it overflows to `+inf` slightly before `ln(f32::MAX)`, where the exact results of
/// Sigmoid and SiLU are below `1e-37` anyway).
pub fn agrees(got: f32, want: f32) -> bool {
    if got.is_nan() || want.is_nan() {
        return got.is_nan() && want.is_nan();
    }
    got == want
        || (got.is_finite() && want.is_finite() && (got - want).abs() <= 1e-5 * want.abs().max(1.0))
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Relu => f.write_str("relu"),
            Activation::Clip { min, max } => write!(f, "clip({min:?},{max:?})"),
            Activation::Sigmoid => f.write_str("sigmoid"),
            Activation::HardSigmoid { alpha, beta } => write!(f, "hardsigmoid({alpha:?},{beta:?})"),
            Activation::HardSwish => f.write_str("hardswish"),
            Activation::Silu => f.write_str("silu"),
        }
    }
}

/// Epilogue fused into a conv or Gemm: optional residual add (the op's last input, added
/// after the bias), then optional activation.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Epilogue {
    /// When true the op has one extra trailing input of the output's shape, added to the
    /// result (after the bias, before the activation).
    pub residual: bool,
    pub act: Option<Activation>,
}

/// 2-D convolution on NCHW activations with OIHW weights (`O = out channels`,
/// `I = in channels / group`). Inputs: x, w, and optionally bias `[O]` (`has_bias`), then the
/// residual operand when `epilogue.residual` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// Explicit padding: top, left, bottom, right.
    pub pads: [usize; 4],
    pub group: usize,
    pub has_bias: bool,
    pub epilogue: Epilogue,
    /// Execution schedule chosen by the scheduling pass (`None` until then).
    pub schedule: Option<ConvSchedule>,
}

impl Default for Conv {
    /// A 1x1, stride-1, ungrouped conv without bias; construct others with
    /// `Conv { kernel: [3, 3], ..Default::default() }` so new fields do not break callers.
    fn default() -> Self {
        Conv {
            kernel: [1, 1],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [0; 4],
            group: 1,
            has_bias: false,
            epilogue: Epilogue::default(),
            schedule: None,
        }
    }
}

/// Squeeze-and-Excitation block as one op: `y = x * gate(W2 · act(W1 · mean_hw(x) + b1) + b2)`.
/// Inputs: x `[N,C,H,W]`, w1 `[R,C,1,1]`, b1 `[R]`, w2 `[C,R,1,1]`, b2 `[C]` (the two 1x1
/// convs keep their conv-shaped weights and names).
#[derive(Clone, Debug, PartialEq)]
pub struct SqueezeExcite {
    /// Activation after the reducing 1x1 conv (ReLU in MobileNetV3, SiLU in EfficientNet).
    pub act: Activation,
    /// Gate after the expanding 1x1 conv (HardSigmoid in MobileNetV3, Sigmoid in EfficientNet).
    pub gate: Activation,
}

/// Generalized matrix multiply `alpha * A' * B' + beta * C` (ONNX Gemm) on 2-D operands.
/// Inputs: a, b, and optionally c (broadcastable to the output), then the residual operand.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f32,
    pub beta: f32,
    pub has_c: bool,
    pub epilogue: Epilogue,
}

impl Default for Gemm {
    /// `A * B` without C; construct others with `..Default::default()`.
    fn default() -> Self {
        Gemm {
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            beta: 1.0,
            has_c: false,
            epilogue: Epilogue::default(),
        }
    }
}

/// Kind of spatial pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// 2-D max or average pooling over NCHW.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub ceil_mode: bool,
    /// Average pooling only: count padded cells in the divisor.
    pub count_include_pad: bool,
}

impl Default for Pool {
    /// A 1x1 stride-1 max pool; construct others with `..Default::default()`.
    fn default() -> Self {
        Pool {
            kind: PoolKind::Max,
            kernel: [1, 1],
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
            ceil_mode: false,
            count_include_pad: false,
        }
    }
}

/// Elementwise binary op with numpy-style broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// Normalized slice along some axes: `starts`/`ends` already clamped to the dimension,
/// `steps` non-zero.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    pub axes: Vec<usize>,
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    pub steps: Vec<i64>,
}

/// Local response normalization across channels (ONNX `LRN`, AlexNet and GoogLeNet), on
/// `[N, C, ...]` activations (rank >= 2, channel axis 1):
/// `y[n,c,..] = x[n,c,..] / (bias + alpha / size * sum_{c' in window(c)} x[n,c',..]^2)^beta`,
/// the window being [`Lrn::window`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lrn {
    /// Channels in the window (at least 1).
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

impl Lrn {
    /// The channels summed for output channel `c` of `channels`: from
    /// `c - floor((size - 1) / 2)` to `c + ceil((size - 1) / 2)` inclusive, clipped to
    /// `0..channels` (ONNX's definition; `ceil((size - 1) / 2) = size / 2`). The single
    /// definition of the window for every backend.
    pub fn window(&self, c: usize, channels: usize) -> std::ops::Range<usize> {
        let lo = c.saturating_sub(self.before());
        let hi = c
            .saturating_add(self.after())
            .saturating_add(1)
            .min(channels);
        lo..hi
    }

    /// Channels of the window before the output's channel: `floor((size - 1) / 2)`.
    pub fn before(&self) -> usize {
        self.size.saturating_sub(1) / 2
    }

    /// Channels of the window after the output's channel: `ceil((size - 1) / 2)`.
    pub fn after(&self) -> usize {
        self.size / 2
    }

    /// `alpha / size` rounded to f32, the factor of the sum of squares in the compiled
    /// kernels (`y = x / (bias + alpha_over_size * sum)^beta`, all in f32).
    pub fn alpha_over_size(&self) -> f32 {
        self.alpha / self.size as f32
    }
}

/// A quantized 2-D convolution (ONNX `QLinearConv`, with mnc's requantization rule of
/// [`crate::quant`]): `y = requant(bias[o] + sum (x - x_zp) * w)` per output element, the sum
/// over the same taps as [`Conv`] (a padding cell is the real value 0, contributing nothing).
/// Inputs: x (`u8`/`i8`, NCHW), w (`i8`, OIHW, zero points 0), and an `i32` bias `[O]` when
/// `conv.has_bias` (its scale is `x_scale * w_scale[o]`, zero point 0).
///
/// With a fused residual ([`QConv::residual`], `conv.epilogue.residual` set, one more input
/// of the output's shape): the conv requantizes to its own output parameters
/// ([`QResidual::mid`], the fused clamp applying there), and that value `a` and the residual
/// operand `b` give `y = AddRequant(a, b)` ([`crate::quant::AddRequant`], onnxruntime's
/// `QLinearAdd`): the same bytes as the `QConv` followed by a [`QBinary`] `Add`.
#[derive(Clone, Debug, PartialEq)]
pub struct QConv {
    /// Geometry and `has_bias`; the epilogue's activation may only be a clamp (ReLU/Clip,
    /// applied as the output range of [`Requant::bounds`]); `epilogue.residual` exactly when
    /// `residual` is set.
    pub conv: Conv,
    /// The input's parameters (per tensor).
    pub x: QParams,
    /// The weights' parameters: `i8`, per tensor or per output channel (axis 0), zero points 0.
    pub w: QParams,
    /// The output's parameters (per tensor).
    pub y: QParams,
    /// The residual sum fused after the requantization, if any.
    pub residual: Option<QResidual>,
}

/// The parameters of a residual sum fused into a [`QConv`].
#[derive(Clone, Debug, PartialEq)]
pub struct QResidual {
    /// The conv's own output parameters (per tensor): what it requantizes to before the sum.
    pub mid: QParams,
    /// The residual operand's parameters (per tensor).
    pub b: QParams,
    /// The conv's value is the sum's first operand (`a` of [`crate::quant::AddRequant`]),
    /// else the residual is: the order of onnxruntime's `fma`s, kept for exact results.
    pub conv_is_a: bool,
}

impl QResidual {
    /// The sum of the conv's requantized value `conv` and the residual value `res`, in the
    /// operand order of the sum it replaces.
    pub fn apply(&self, f: &crate::quant::AddRequant, conv: i32, res: i32) -> i32 {
        if self.conv_is_a {
            f.apply(conv, res)
        } else {
            f.apply(res, conv)
        }
    }
}

impl QConv {
    /// The element type the conv requantizes to: the output's, or with a fused residual
    /// the sum's first operand's.
    pub fn y_type(&self) -> Option<QType> {
        QType::of(self.requant_target().dtype)
    }

    /// The parameters the accumulators are requantized to ([`QResidual::mid`] with a fused
    /// residual, else the output's).
    pub fn requant_target(&self) -> &QParams {
        self.residual.as_ref().map_or(&self.y, |r| &r.mid)
    }

    /// The requantization of output channel accumulators (`out_channels` of them), or `None`
    /// for parameters inference refuses.
    pub fn requant(&self, out_channels: usize) -> Option<Requant> {
        let ws: Vec<f32> = (0..out_channels).map(|o| self.w.at(o).0).collect();
        let (ys, yzp) = self.requant_target().at(0);
        Requant::new(
            self.x.at(0).0,
            &ws,
            (ys, yzp, self.y_type()?),
            self.conv.epilogue.act,
        )
    }

    /// The fused residual sum as the op it replaces (`a` the conv's requantized value), or
    /// `None` without a residual.
    pub fn residual_sum(&self) -> Option<QBinary> {
        let r = self.residual.as_ref()?;
        let (a, b) = if r.conv_is_a {
            (r.mid.clone(), r.b.clone())
        } else {
            (r.b.clone(), r.mid.clone())
        };
        Some(QBinary {
            op: QBinaryOp::Add,
            a,
            b,
            y: self.y.clone(),
        })
    }

    /// The fused residual sum's function ([`QBinary::requant`] of [`QConv::residual_sum`]:
    /// the same restrictions), or `None` without a residual or for parameters inference
    /// refuses.
    pub fn add_requant(&self) -> Option<crate::quant::AddRequant> {
        match self.residual_sum()?.requant()? {
            crate::quant::BinaryRequant::Add(f) => Some(f),
            crate::quant::BinaryRequant::Mul(_) => None,
        }
    }
}

/// An elementwise function of one quantized value as a table: `y = table[x - x_type.min()]`
/// for every element. Made by `qdq-fold` from `DequantizeLinear -> activations ->
/// QuantizeLinear` (per tensor), whose result it equals exactly: the table is that chain
/// evaluated once on every possible input.
#[derive(Clone, Debug, PartialEq)]
pub struct QLut {
    pub x: QType,
    pub y: QType,
    /// `x.max() - x.min() + 1` outputs, each in `y`'s range.
    pub table: Vec<i32>,
}

impl QLut {
    /// The table of `f` on every value of `x`, each output clamped to `y`'s range.
    pub fn of(x: QType, y: QType, f: impl Fn(i32) -> i32) -> QLut {
        QLut {
            x,
            y,
            table: (x.min()..=x.max())
                .map(|v| f(v).clamp(y.min(), y.max()))
                .collect(),
        }
    }

    /// Whether the table has one entry per input value, each in the output's range.
    pub fn is_valid(&self) -> bool {
        self.table.len() == (self.x.max() - self.x.min() + 1) as usize
            && self
                .table
                .iter()
                .all(|v| (self.y.min()..=self.y.max()).contains(v))
    }

    /// The output for input value `v` (in `x`'s range).
    pub fn get(&self, v: i32) -> i32 {
        self.table[(v - self.x.min()) as usize]
    }
}

/// A quantized global average pool (onnxruntime's `QLinearGlobalAveragePool`, NCHW): per
/// image and channel, `y = requant(sum(x) - pixels * x_zp)` with [`Requant::mean`]: the exact
/// integer sum, one f32 multiply by `x_scale / (y_scale * pixels)`, round half to even,
/// saturate. Input and output have the same type, per tensor. Made by `qdq-fold` from
/// `DequantizeLinear -> GlobalAveragePool -> QuantizeLinear`.
#[derive(Clone, Debug, PartialEq)]
pub struct QMean {
    pub x: QParams,
    pub y: QParams,
}

impl QMean {
    /// The requantization of sums over `pixels` elements, or `None` for parameters
    /// inference refuses.
    pub fn requant(&self, pixels: usize) -> Option<Requant> {
        let (ys, yzp) = self.y.at(0);
        let qt = QType::of(self.y.dtype)?;
        if self.x.axis.is_some() || self.y.axis.is_some() || QType::of(self.x.dtype)? != qt {
            return None;
        }
        Requant::mean(self.x.at(0).0, pixels, (ys, yzp, qt))
    }
}

/// Which elementwise op a [`QBinary`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QBinaryOp {
    Add,
    Mul,
}

impl QBinaryOp {
    /// The float op it replaces.
    pub fn float(self) -> BinaryOp {
        match self {
            QBinaryOp::Add => BinaryOp::Add,
            QBinaryOp::Mul => BinaryOp::Mul,
        }
    }
}

/// A quantized elementwise sum or product (onnxruntime's `QLinearAdd` / `QLinearMul` as its
/// x86 kernels compute them, [`crate::quant::BinaryRequant`]): `y = f(a, b)` per element.
/// `b` has `a`'s shape, or `a`'s leading dimensions followed by ones (one value per channel:
/// the SE scale), broadcast over the rest. The three have one type, per tensor. Made by
/// `qdq-fold` from `DequantizeLinear(a) (+|*) DequantizeLinear(b) -> QuantizeLinear`.
#[derive(Clone, Debug, PartialEq)]
pub struct QBinary {
    pub op: QBinaryOp,
    pub a: QParams,
    pub b: QParams,
    pub y: QParams,
}

impl QBinary {
    /// The per-element function, or `None` for parameters inference refuses (per axis, not
    /// one type, or scale ratios whose results could leave `i32`).
    pub fn requant(&self) -> Option<crate::quant::BinaryRequant> {
        use crate::quant::{AddRequant, BinaryRequant, MulRequant};
        let qt = QType::of(self.y.dtype)?;
        if [&self.a, &self.b, &self.y]
            .iter()
            .any(|q| q.axis.is_some() || q.dtype != self.y.dtype)
        {
            return None;
        }
        let (ys, yzp) = self.y.at(0);
        let (a, b, y) = (self.a.at(0), self.b.at(0), (ys, yzp, qt));
        Some(match self.op {
            QBinaryOp::Add => BinaryRequant::Add(AddRequant::new(a, b, y)?),
            QBinaryOp::Mul => BinaryRequant::Mul(MulRequant::new(a, b, y)?),
        })
    }

    /// How many consecutive elements of `a` (of shape `a`) share one element of `b` (of
    /// shape `b`): 1 for one shape, the product of `a`'s trailing dimensions where `b` has
    /// ones after `a`'s leading ones; `None` for any other broadcast.
    pub fn inner(a: &[usize], b: &[usize]) -> Option<usize> {
        if a.len() != b.len() {
            return None;
        }
        let k = b.iter().rposition(|&d| d != 1).map_or(0, |i| i + 1);
        (a[..k] == b[..k]).then(|| a[k..].iter().product())
    }
}

/// The IR operations. Closed: every backend and pass matches it exhaustively.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Graph input number `index` (type stored on the node).
    Input {
        index: usize,
    },
    /// A constant (weights, biases, folded values). The node name is the tensor's name, e.g.
    /// `features.0.0.weight`.
    Constant(Tensor),
    /// Pass-through; removed by cleanup.
    Identity,
    /// Inference-mode dropout: pass-through; removed by cleanup.
    Dropout,
    Conv(Conv),
    /// Inference BatchNormalization. Inputs: x, scale, bias, mean, var (all `[C]`).
    BatchNorm {
        epsilon: f32,
    },
    /// Per-channel affine `y = x * scale[c] + bias[c]` over axis 1. Inputs: x, scale `[C]`,
    /// bias `[C]`. Made from a BatchNorm with no conv to fold into.
    ChannelAffine,
    SqueezeExcite(SqueezeExcite),
    Act(Activation),
    Binary(BinaryOp),
    Gemm(Gemm),
    /// numpy `matmul` semantics on rank >= 2 operands (batch dims broadcast).
    MatMul,
    /// Mean over H and W, keeping them as size 1.
    GlobalAveragePool,
    /// Mean over the given (sorted, non-negative) axes.
    ReduceMean {
        axes: Vec<usize>,
        keepdims: bool,
    },
    Pool(Pool),
    /// Reshape to `[prod(d[..axis]), prod(d[axis..])]`.
    Flatten {
        axis: usize,
    },
    /// Reshape to a fully resolved static shape.
    Reshape {
        shape: Vec<usize>,
    },
    /// Remove the given size-1 axes (sorted, non-negative).
    Squeeze {
        axes: Vec<usize>,
    },
    /// Insert size-1 axes at the given output positions (sorted, non-negative).
    Unsqueeze {
        axes: Vec<usize>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    Concat {
        axis: usize,
    },
    Slice(Slice),
    /// numpy `take` along `axis`: inputs data and integer indices (negative wrap once).
    Gather {
        axis: usize,
    },
    Cast {
        to: DType,
    },
    /// Constant-mode padding: `pads` holds begin pads for every axis then end pads.
    Pad {
        pads: Vec<usize>,
        value: f32,
    },
    Softmax {
        axis: usize,
    },
    Lrn(Lrn),
    /// ONNX `QuantizeLinear`: f32 -> the params' `u8`/`i8` ([`crate::quant::quantize`]).
    Quantize(QParams),
    /// ONNX `DequantizeLinear`: `u8`/`i8`/`i32` -> f32 ([`crate::quant::dequantize`]).
    Dequantize(QParams),
    QConv(Box<QConv>),
    QLut(QLut),
    QGlobalAveragePool(QMean),
    QBinary(QBinary),
}

impl Op {
    /// Short op-kind name used in errors, reports and the text form.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input { .. } => "Input",
            Op::Constant(_) => "Constant",
            Op::Identity => "Identity",
            Op::Dropout => "Dropout",
            Op::Conv(_) => "Conv",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::ChannelAffine => "ChannelAffine",
            Op::SqueezeExcite(_) => "SqueezeExcite",
            Op::Act(_) => "Act",
            Op::Binary(BinaryOp::Add) => "Add",
            Op::Binary(BinaryOp::Sub) => "Sub",
            Op::Binary(BinaryOp::Mul) => "Mul",
            Op::Binary(BinaryOp::Div) => "Div",
            Op::Gemm(_) => "Gemm",
            Op::MatMul => "MatMul",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::Pool(Pool {
                kind: PoolKind::Max,
                ..
            }) => "MaxPool",
            Op::Pool(Pool {
                kind: PoolKind::Avg,
                ..
            }) => "AveragePool",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Transpose { .. } => "Transpose",
            Op::Concat { .. } => "Concat",
            Op::Slice(_) => "Slice",
            Op::Gather { .. } => "Gather",
            Op::Cast { .. } => "Cast",
            Op::Pad { .. } => "Pad",
            Op::Softmax { .. } => "Softmax",
            Op::Lrn(_) => "LRN",
            Op::Quantize(_) => "QuantizeLinear",
            Op::Dequantize(_) => "DequantizeLinear",
            Op::QConv(_) => "QConv",
            Op::QLut(_) => "QLut",
            Op::QGlobalAveragePool(_) => "QGlobalAveragePool",
            Op::QBinary(q) => match q.op {
                QBinaryOp::Add => "QAdd",
                QBinaryOp::Mul => "QMul",
            },
        }
    }

    /// Allowed number of inputs as an inclusive range (min, max). `None` as max means any
    /// number >= min (Concat).
    pub fn arity(&self) -> (usize, Option<usize>) {
        let exact = |n| (n, Some(n));
        match self {
            Op::Input { .. } | Op::Constant(_) => exact(0),
            Op::Identity
            | Op::Dropout
            | Op::Act(_)
            | Op::GlobalAveragePool
            | Op::ReduceMean { .. }
            | Op::Pool(_)
            | Op::Flatten { .. }
            | Op::Reshape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Transpose { .. }
            | Op::Slice(_)
            | Op::Cast { .. }
            | Op::Pad { .. }
            | Op::Softmax { .. }
            | Op::Lrn(_)
            | Op::Quantize(_)
            | Op::Dequantize(_)
            | Op::QLut(_)
            | Op::QGlobalAveragePool(_) => exact(1),
            Op::Binary(_) | Op::MatMul | Op::Gather { .. } | Op::QBinary(_) => exact(2),
            Op::ChannelAffine => exact(3),
            Op::SqueezeExcite(_) => exact(5),
            Op::BatchNorm { .. } => exact(5),
            Op::Conv(c) => exact(2 + c.has_bias as usize + c.epilogue.residual as usize),
            Op::Gemm(g) => exact(2 + g.has_c as usize + g.epilogue.residual as usize),
            Op::QConv(q) => exact(2 + q.conv.has_bias as usize + q.residual.is_some() as usize),
            Op::Concat { .. } => (1, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: f32 = f32::NAN;
    const I: f32 = f32::INFINITY;

    /// onnxruntime 1.32's CPU outputs on [`ACTIVATION_PROBES`] (ONNX Relu, Clip(0, 6),
    /// Sigmoid, HardSigmoid(0.2, 0.5), HardSwish; SiLU is not an ONNX op).
    #[rustfmt::skip]
    fn onnxruntime_outputs() -> Vec<(Activation, [f32; 25])> {
        let m = f32::MAX;
        let hs = Activation::HardSigmoid { alpha: 0.2, beta: 0.5 };
        vec![
            (Activation::Relu, [N, I, 0.0, 0.0, -0.0, 1.0, 0.0, 3.0, 0.0, 6.5, 0.0, 20.0, 0.0,
                87.0, 0.0, 88.5, 0.0, 89.0, 0.0, 100.0, 0.0, 1e30, 0.0, m, 0.0]),
            (Activation::Clip { min: 0.0, max: 6.0 }, [N, 6.0, 0.0, 0.0, -0.0, 1.0, 0.0, 3.0,
                0.0, 6.0, 0.0, 6.0, 0.0, 6.0, 0.0, 6.0, 0.0, 6.0, 0.0, 6.0, 0.0, 6.0, 0.0, 6.0,
                0.0]),
            (Activation::Sigmoid, [N, 1.0, 0.0, 0.5, 0.5, 0.731_058_6, 0.268_941_43,
                0.952_574_1, 0.047_425_866, 0.998_498_8, 0.001_501_172_8, 1.0, 0.0, 1.0, 0.0,
                1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]),
            (hs, [N, 1.0, 0.0, 0.5, 0.5, 0.7, 0.3, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0,
                0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]),
            (Activation::HardSwish, [N, I, N, 0.0, -0.0, 0.666_666_7, -0.333_333_3, 3.0, -0.0,
                6.5, -0.0, 20.0, -0.0, 87.0, -0.0, 88.5, -0.0, 89.0, -0.0, 100.0, -0.0, 1e30,
                -0.0, m, -0.0]),
        ]
    }

    #[test]
    fn activations_match_onnxruntime_on_the_probes() {
        assert_eq!(ACTIVATION_PROBES.len(), 25);
        for (a, want) in onnxruntime_outputs() {
            for (&x, &w) in ACTIVATION_PROBES.iter().zip(&want) {
                let got = a.apply(x);
                assert!(agrees(got, w), "{a}({x}) = {got}, onnxruntime gives {w}");
            }
        }
        // SiLU (no ONNX op): x * sigmoid(x) with exp overflowing to +inf.
        let silu = |x: f32| Activation::Silu.apply(x);
        assert!(silu(f32::NAN).is_nan());
        assert!(silu(f32::NEG_INFINITY).is_nan());
        assert_eq!(silu(f32::INFINITY), f32::INFINITY);
        assert_eq!(silu(-100.0), 0.0);
    }

    #[test]
    fn lrn_windows_follow_onnx() {
        let lrn = |size| Lrn {
            size,
            alpha: 1e-4,
            beta: 0.75,
            bias: 1.0,
        };
        // size 5: c-2..=c+2, clipped
        assert_eq!(lrn(5).window(0, 8), 0..3);
        assert_eq!(lrn(5).window(4, 8), 2..7);
        assert_eq!(lrn(5).window(7, 8), 5..8);
        // even size 4: floor(3/2) = 1 before, ceil(3/2) = 2 after
        assert_eq!(lrn(4).window(3, 8), 2..6);
        assert_eq!(lrn(1).window(3, 8), 3..4);
        // absurd sizes saturate to every channel
        assert_eq!(lrn(usize::MAX).window(3, 8), 0..8);
    }

    #[test]
    fn the_agreement_rule() {
        assert!(agrees(f32::NAN, f32::NAN));
        assert!(!agrees(0.0, f32::NAN) && !agrees(f32::NAN, 0.0));
        assert!(agrees(-0.0, 0.0) && agrees(I, I));
        assert!(!agrees(I, -I) && !agrees(f32::MAX, I) && !agrees(6.0, 0.0));
        assert!(agrees(1.000_001, 1.0) && agrees(1e-38, 0.0));
        assert!(!agrees(1.001, 1.0));
    }
}
