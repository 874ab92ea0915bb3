//! Quantization numerics: the one definition of how mnc rounds, saturates and requantizes.
//!
//! Every path that touches quantized values (the reference executor through [`crate::eval`],
//! constant folding, the CPU kernels, the calibration of `mnc quantize`) calls or reproduces
//! these functions operation for operation, so integer results are bit-identical across paths
//! and tests compare them with `==`, not a tolerance.
//!
//! # The rules
//! - **Rounding**: to nearest, ties to even ([`round_half_even`]), as ONNX `QuantizeLinear`
//!   specifies and as `cvtps2dq` does under the default MXCSR rounding mode.
//! - **Saturation**: to the element type's range (`u8`: 0..=255, `i8`: -128..=127). A NaN
//!   quantizes to the zero point's clamp floor ([`QType::min`] after the zero point), because
//!   the clamp is `max(t, lo)` with the NaN-ignoring `max` of both Rust and `vmaxps` (second
//!   operand wins).
//! - **QuantizeLinear**: `q = clamp(round(x / scale) + zp)`, an IEEE division in f32
//!   ([`quantize`]); the clamp is applied before the rounding (`round(clamp(x / scale,
//!   qmin - zp, qmax - zp)) + zp`), which gives the same integer for every finite input and
//!   keeps infinities and NaN in range.
//! - **DequantizeLinear**: `x = ((q - zp) as f32) * scale`, the subtraction in `i32` (exact),
//!   one f32 multiply ([`dequantize`]).
//! - **Requantization of an integer convolution** ([`Requant`]): the accumulator
//!   `acc = bias[c] + sum (x - x_zp) * w` is an `i32`; the per-channel multiplier is
//!   `m[c] = (x_scale * w_scale[c]) / y_scale`, evaluated in f32 in that order (what
//!   onnxruntime's `QLinearConv` computes); the output is
//!   `round(clamp(acc as f32 * m[c], lo - y_zp, hi - y_zp)) + y_zp`, where `lo..=hi` is the
//!   element type's range narrowed by a fused ReLU/Clip ([`Requant::bounds`]). That is the
//!   arithmetic of onnxruntime's `MlasRequantizeOutput` (multiply, clamp, round, add).
//!
//! Weights are symmetric (`w_zp = 0`), per output channel; activations are per tensor,
//! asymmetric. The accumulation is exact in `i32` as long as
//! `taps * 255 * 128 + |bias| < 2^31` ([`accumulator_fits`]), which every layer of the
//! networks mnc targets satisfies by orders of magnitude (a 3x3 conv over 1152 channels:
//! about 3.4e8); the fold refuses a layer that does not.

use crate::op::Activation;
use crate::tensor::DType;
use std::fmt;

/// Element type of a quantized activation or weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QType {
    U8,
    I8,
}

impl QType {
    /// Smallest representable value.
    pub fn min(self) -> i32 {
        match self {
            QType::U8 => 0,
            QType::I8 => -128,
        }
    }
    /// Largest representable value.
    pub fn max(self) -> i32 {
        match self {
            QType::U8 => 255,
            QType::I8 => 127,
        }
    }
    /// The IR element type of a tensor holding these values.
    pub fn dtype(self) -> DType {
        match self {
            QType::U8 => DType::U8,
            QType::I8 => DType::I8,
        }
    }
    /// The quantized type stored in tensors of `dtype`, if any.
    pub fn of(dtype: DType) -> Option<QType> {
        match dtype {
            DType::U8 => Some(QType::U8),
            DType::I8 => Some(QType::I8),
            DType::F32 | DType::I64 | DType::I32 => None,
        }
    }
}

impl fmt::Display for QType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.dtype().fmt(f)
    }
}

/// Rounds to the nearest integer, ties to even (ONNX's rounding; `cvtps2dq` under the
/// default rounding mode). NaN and infinities are the caller's to clamp first.
pub fn round_half_even(x: f32) -> f32 {
    x.round_ties_even()
}

/// ONNX `QuantizeLinear` of one value: `clamp(round(x / scale) + zp)` (see the module docs).
pub fn quantize(x: f32, scale: f32, zp: i32, qt: QType) -> i32 {
    let t = x / scale;
    let t = t.max((qt.min() - zp) as f32).min((qt.max() - zp) as f32);
    round_half_even(t) as i32 + zp
}

/// ONNX `DequantizeLinear` of one value: `((q - zp) as f32) * scale`.
pub fn dequantize(q: i32, scale: f32, zp: i32) -> f32 {
    (q - zp) as f32 * scale
}

/// Whether an `i32` accumulator over `taps` products of a u8/i8 activation (after its zero
/// point: at most 255 in magnitude) and an i8 weight (at most 128), plus a bias of magnitude
/// `max_abs_bias`, cannot overflow.
pub fn accumulator_fits(taps: usize, max_abs_bias: i64) -> bool {
    (taps as i64)
        .checked_mul(255 * 128)
        .and_then(|p| p.checked_add(max_abs_bias))
        .is_some_and(|s| s < i32::MAX as i64)
}

/// Quantization parameters of one tensor: per tensor (`axis: None`, one scale and zero
/// point) or per slice along `axis` (one of each per index of that axis).
#[derive(Clone, Debug, PartialEq)]
pub struct QParams {
    /// The integer type (`I32` only for a bias dequantized by `DequantizeLinear`).
    pub dtype: DType,
    pub axis: Option<usize>,
    /// Positive, finite scales.
    pub scale: Vec<f32>,
    pub zero_point: Vec<i32>,
}

impl QParams {
    /// Per-tensor parameters.
    pub fn per_tensor(dtype: DType, scale: f32, zero_point: i32) -> Self {
        QParams {
            dtype,
            axis: None,
            scale: vec![scale],
            zero_point: vec![zero_point],
        }
    }

    /// The scale and zero point of slice `i` of the quantized axis (`i` ignored per tensor).
    pub fn at(&self, i: usize) -> (f32, i32) {
        match self.axis {
            None => (self.scale[0], self.zero_point[0]),
            Some(_) => (self.scale[i], self.zero_point[i]),
        }
    }

    /// Checks the parameters against the shape of the tensor they describe: an integer dtype,
    /// finite positive scales, zero points in range, one entry per slice of the axis.
    pub fn check(&self, shape: &[usize]) -> Result<(), String> {
        let range = match self.dtype {
            DType::U8 => Some((0, 255)),
            DType::I8 => Some((-128, 127)),
            DType::I32 => None,
            DType::F32 | DType::I64 => {
                return Err(format!(
                    "quantized type {} is not u8, i8 or i32",
                    self.dtype
                ))
            }
        };
        let want = match self.axis {
            None => 1,
            Some(a) => *shape
                .get(a)
                .ok_or_else(|| format!("axis {a} out of range for rank {}", shape.len()))?,
        };
        if self.scale.len() != want || self.zero_point.len() != want {
            return Err(format!(
                "{} scales and {} zero points, expected {want}",
                self.scale.len(),
                self.zero_point.len()
            ));
        }
        if let Some(s) = self.scale.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(format!("scale {s} is not finite and positive"));
        }
        if let Some((lo, hi)) = range {
            if let Some(z) = self.zero_point.iter().find(|z| !(lo..=hi).contains(*z)) {
                return Err(format!("zero point {z} outside {}", self.dtype));
            }
        }
        Ok(())
    }
}

impl fmt::Display for QParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.axis {
            None => write!(
                f,
                "{}(s={:?},zp={})",
                self.dtype, self.scale[0], self.zero_point[0]
            ),
            Some(a) => write!(f, "{}(axis={a},n={})", self.dtype, self.scale.len()),
        }
    }
}

/// The per-element function of a quantized sum `y = a + b` (all three per tensor, one type),
/// as onnxruntime's x86 `QLinearAdd` kernel (`MlasQLinearAddKernelAvx2Helper`) computes it:
/// with `ra = a_scale / y_scale`, `rb = b_scale / y_scale` and `fixed = y_zp - fma(ra, a_zp,
/// rb * b_zp)` in f32, `y = saturate(round_half_even(fma(a, ra, fma(b, rb, fixed))))` on the
/// stored values `a`, `b`. It differs from `quantize(dequantize(a) + dequantize(b))` on
/// rounding ties (a few elements per million).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AddRequant {
    pub ra: f32,
    pub rb: f32,
    pub fixed: f32,
    pub lo: i32,
    pub hi: i32,
}

/// The per-element function of a quantized product `y = a * b`, as onnxruntime's x86
/// `QLinearMul` kernel (`MlasQLinearMulKernel`, SSE2) computes it: with `r = (a_scale *
/// b_scale) / y_scale` in f32, `y = saturate(round_half_even(((a - a_zp) * (b - b_zp)) as f32
/// * r + y_zp))`, the product exact in `i32`, the multiply and the add each rounded to f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MulRequant {
    pub ratio: f32,
    pub a_zp: i32,
    pub b_zp: i32,
    pub y_zp: i32,
    pub lo: i32,
    pub hi: i32,
}

/// The function of a quantized elementwise binary op ([`crate::op::QBinary`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinaryRequant {
    Add(AddRequant),
    Mul(MulRequant),
}

/// Largest value the f32 results may reach before rounding: keeps them inside `i32` (where
/// onnxruntime's `cvtps2dq` would return the integer indefinite instead).
const BINARY_LIMIT: f32 = (1u32 << 30) as f32;

impl AddRequant {
    /// The function of inputs `(a_scale, a_zp)`, `(b_scale, b_zp)` and the output
    /// `(y_scale, y_zp, type)`, or `None` when a result could leave `i32` (absurd scale
    /// ratios, above `2^22`).
    pub fn new(a: (f32, i32), b: (f32, i32), y: (f32, i32, QType)) -> Option<AddRequant> {
        let (ra, rb) = (a.0 / y.0, b.0 / y.0);
        let f = AddRequant {
            ra,
            rb,
            fixed: y.1 as f32 - ra.mul_add(a.1 as f32, rb * b.1 as f32),
            lo: y.2.min(),
            hi: y.2.max(),
        };
        let bound = 256.0 * (ra.abs() + rb.abs()) + f.fixed.abs();
        bound
            .is_finite()
            .then_some(())
            .filter(|_| bound < BINARY_LIMIT)?;
        Some(f)
    }

    /// The output for stored values `a`, `b`.
    pub fn apply(&self, a: i32, b: i32) -> i32 {
        let t = (a as f32).mul_add(self.ra, (b as f32).mul_add(self.rb, self.fixed));
        (round_half_even(t) as i32).clamp(self.lo, self.hi)
    }
}

impl MulRequant {
    /// The function of inputs `(a_scale, a_zp)`, `(b_scale, b_zp)` and the output
    /// `(y_scale, y_zp, type)`, or `None` when a result could leave `i32`.
    pub fn new(a: (f32, i32), b: (f32, i32), y: (f32, i32, QType)) -> Option<MulRequant> {
        let ratio = (a.0 * b.0) / y.0;
        let bound = 65536.0 * ratio.abs() + y.1.abs() as f32;
        bound
            .is_finite()
            .then_some(())
            .filter(|_| bound < BINARY_LIMIT)?;
        Some(MulRequant {
            ratio,
            a_zp: a.1,
            b_zp: b.1,
            y_zp: y.1,
            lo: y.2.min(),
            hi: y.2.max(),
        })
    }

    /// The output for stored values `a`, `b`.
    pub fn apply(&self, a: i32, b: i32) -> i32 {
        let p = (a - self.a_zp) * (b - self.b_zp);
        let t = p as f32 * self.ratio + self.y_zp as f32;
        (round_half_even(t) as i32).clamp(self.lo, self.hi)
    }
}

impl BinaryRequant {
    /// The output for stored values `a`, `b`.
    pub fn apply(&self, a: i32, b: i32) -> i32 {
        match self {
            BinaryRequant::Add(f) => f.apply(a, b),
            BinaryRequant::Mul(f) => f.apply(a, b),
        }
    }
}

/// Requantization of an integer convolution's `i32` accumulators to the output type (see the
/// module docs): `q = round(clamp(acc as f32 * mult[c], lo - zp, hi - zp)) + zp`.
#[derive(Clone, Debug, PartialEq)]
pub struct Requant {
    /// Per output channel: `(x_scale * w_scale[c]) / y_scale` in f32.
    pub mult: Vec<f32>,
    pub zero_point: i32,
    /// Output range after the fused activation, inclusive.
    pub lo: i32,
    pub hi: i32,
}

impl Requant {
    /// The requantization of a conv with input scale `x_scale`, per-channel weight scales and
    /// the output's parameters, with an optional fused ReLU/Clip (other activations have no
    /// integer form here: `None`).
    pub fn new(
        x_scale: f32,
        w_scale: &[f32],
        y: (f32, i32, QType),
        act: Option<Activation>,
    ) -> Option<Requant> {
        let (y_scale, zp, qt) = y;
        let (lo, hi) = Requant::bounds(y_scale, zp, qt, act)?;
        Some(Requant {
            mult: w_scale.iter().map(|&ws| (x_scale * ws) / y_scale).collect(),
            zero_point: zp,
            lo,
            hi,
        })
    }

    /// The requantization of a quantized global average pool over `pixels` elements per
    /// channel: `mult = x_scale / (y_scale * pixels as f32)` in f32, the type's range, as
    /// onnxruntime's `QLinearGlobalAveragePool` (`MlasQLinearGlobalAveragePoolNchw`) computes
    /// it. `None` when the sums could overflow `i32` (`255 * pixels >= 2^31`) or the
    /// multiplier lies outside `[2^-32, 256)` (where onnxruntime refuses the op: the output
    /// would be constant).
    pub fn mean(x_scale: f32, pixels: usize, y: (f32, i32, QType)) -> Option<Requant> {
        let (y_scale, zp, qt) = y;
        if pixels == 0 || pixels > (i32::MAX / 255) as usize {
            return None;
        }
        let mult = x_scale / (y_scale * pixels as f32);
        if !(2f32.powi(-32)..256.0).contains(&mult) {
            return None;
        }
        Some(Requant {
            mult: vec![mult],
            zero_point: zp,
            lo: qt.min(),
            hi: qt.max(),
        })
    }

    /// The output range of a quantized output (`y_scale`, `zp`, `qt`) after a fused
    /// activation: the type's range, narrowed by ReLU to `[zp, ..]` and by
    /// `Clip { min, max }` to `[quantize(min), quantize(max)]`. `None` for an activation that
    /// is not a clamp, or a clip whose range is empty after quantization.
    pub fn bounds(y_scale: f32, zp: i32, qt: QType, act: Option<Activation>) -> Option<(i32, i32)> {
        let (lo, hi) = match act {
            None => (qt.min(), qt.max()),
            Some(Activation::Relu) => (zp.max(qt.min()), qt.max()),
            Some(Activation::Clip { min, max }) => (
                quantize(min, y_scale, zp, qt),
                quantize(max, y_scale, zp, qt),
            ),
            Some(
                Activation::Sigmoid
                | Activation::HardSigmoid { .. }
                | Activation::HardSwish
                | Activation::Silu,
            ) => return None,
        };
        (lo <= hi).then_some((lo, hi))
    }

    /// Requantizes one accumulator of output channel `c`.
    pub fn apply(&self, acc: i32, c: usize) -> i32 {
        let t = acc as f32 * self.mult[c];
        let t = t
            .max((self.lo - self.zero_point) as f32)
            .min((self.hi - self.zero_point) as f32);
        round_half_even(t) as i32 + self.zero_point
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_to_even() {
        for (x, want) in [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (-0.5, -0.0),
            (-1.5, -2.0),
            (2.4, 2.0),
        ] {
            assert_eq!(round_half_even(x), want, "{x}");
        }
    }

    #[test]
    fn quantize_saturates_and_handles_non_finite_values() {
        assert_eq!(quantize(1.0, 0.1, 10, QType::U8), 20);
        assert_eq!(quantize(0.25, 0.5, 0, QType::U8), 0); // 0.5 ties to 0
        assert_eq!(quantize(0.75, 0.5, 0, QType::U8), 2); // 1.5 ties to 2
        assert_eq!(quantize(1e9, 0.1, 10, QType::U8), 255);
        assert_eq!(quantize(-1e9, 0.1, 10, QType::U8), 0);
        assert_eq!(quantize(f32::INFINITY, 0.1, 0, QType::I8), 127);
        assert_eq!(quantize(f32::NEG_INFINITY, 0.1, 0, QType::I8), -128);
        assert_eq!(quantize(f32::NAN, 0.1, 3, QType::I8), -128);
        assert_eq!(quantize(-3.0, 1.0, 0, QType::I8), -3);
    }

    #[test]
    fn dequantize_inverts_quantize_within_half_a_step() {
        let (s, zp) = (0.037, 128);
        for i in -200..200 {
            let x = i as f32 * 0.013;
            let back = dequantize(quantize(x, s, zp, QType::U8), s, zp);
            assert!((back - x).abs() <= s / 2.0 + 1e-6, "{x} -> {back}");
        }
    }

    #[test]
    fn requant_clamps_to_the_fused_activation() {
        let r = Requant::new(
            0.5,
            &[0.25, 1.0],
            (0.125, 10, QType::U8),
            Some(Activation::Relu),
        )
        .unwrap();
        assert_eq!(r.mult, vec![1.0, 4.0]);
        assert_eq!((r.lo, r.hi), (10, 255));
        assert_eq!(r.apply(5, 0), 15);
        assert_eq!(r.apply(-5, 0), 10); // ReLU: nothing below the zero point
        assert_eq!(r.apply(1000, 1), 255);
        let six = Activation::Clip { min: 0.0, max: 6.0 };
        let r = Requant::new(1.0, &[1.0], (0.1, 0, QType::U8), Some(six)).unwrap();
        assert_eq!((r.lo, r.hi), (0, 60));
        assert_eq!(r.apply(100, 0), 60);
        assert!(Requant::new(
            1.0,
            &[1.0],
            (0.1, 0, QType::U8),
            Some(Activation::HardSwish)
        )
        .is_none());
    }

    #[test]
    fn params_are_checked_against_the_shape() {
        let p = QParams {
            dtype: DType::I8,
            axis: Some(0),
            scale: vec![0.1, 0.2],
            zero_point: vec![0, 0],
        };
        assert!(p.check(&[2, 3]).is_ok());
        assert!(p.check(&[3, 3]).is_err());
        assert!(QParams::per_tensor(DType::U8, 0.0, 0).check(&[4]).is_err());
        assert!(QParams::per_tensor(DType::U8, 0.1, 256)
            .check(&[4])
            .is_err());
        assert!(QParams::per_tensor(DType::F32, 0.1, 0).check(&[4]).is_err());
        assert!(accumulator_fits(3 * 3 * 1152, 1 << 20));
        assert!(!accumulator_fits(1 << 20, 0));
    }
}
