//! The fused epilogue every f32 kernel applies before its only store: activation codes
//! ([`act_code`], [`encode_act`]), the per-call description (`Epi`) and the ISA body
//! (`act_body!`: `exp`, `act`, `finish`).

use mnc_ir::Activation;

/// Activation codes of the fused epilogue (the `act` argument of the kernels).
pub mod act_code {
    pub const NONE: u64 = 0;
    pub const RELU: u64 = 1;
    /// `p0 = min`, `p1 = max`.
    pub const CLIP: u64 = 2;
    pub const SIGMOID: u64 = 3;
    /// `p0 = alpha`, `p1 = beta`.
    pub const HARD_SIGMOID: u64 = 4;
    pub const HARD_SWISH: u64 = 5;
    pub const SILU: u64 = 6;
}

/// The fused activation as `(code, params)`: the code from [`act_code`] and its two f32
/// parameters packed as `p0.to_bits() | p1.to_bits() << 32`.
pub fn encode_act(a: Option<Activation>) -> (u64, u64) {
    let pack = |a: f32, b: f32| a.to_bits() as u64 | (b.to_bits() as u64) << 32;
    match a {
        None => (act_code::NONE, 0),
        Some(Activation::Relu) => (act_code::RELU, 0),
        Some(Activation::Clip { min, max }) => (act_code::CLIP, pack(min, max)),
        Some(Activation::Sigmoid) => (act_code::SIGMOID, 0),
        Some(Activation::HardSigmoid { alpha, beta }) => {
            (act_code::HARD_SIGMOID, pack(alpha, beta))
        }
        Some(Activation::HardSwish) => (act_code::HARD_SWISH, 0),
        Some(Activation::Silu) => (act_code::SILU, 0),
    }
}

/// The epilogue of one kernel call.
#[derive(Clone, Copy)]
pub(super) struct Epi {
    /// Per-row bias (null: none).
    pub(super) bias: *const f32,
    /// Residual with the output's layout (null: none).
    pub(super) res: *const f32,
    pub(super) code: u64,
    pub(super) p0: f32,
    pub(super) p1: f32,
}

impl Epi {
    pub(super) fn new(bias: *const f32, res: *const f32, code: u64, pp: u64) -> Epi {
        Epi {
            bias,
            res,
            code,
            p0: f32::from_bits(pp as u32),
            p1: f32::from_bits((pp >> 32) as u32),
        }
    }
}

/// Vector math shared by the ISA modules (each provides `V`, `W`, `zero`, `splat`, `add`,
/// `sub`, `mul`, `div`, `min`, `max`, `fma`, `round`, `scale2` and `ld`/`ldm`/`st`/`stm`):
/// the fused activations, with `exp` built as in the generated code (range reduction by
/// `n ln2`, degree-6 polynomial, scaling by `2^n`), but with the range reduction fused
/// (`fma`: one rounding instead of two where the ISA has FMA) and the scaling one
/// `vscalefps` on AVX-512 (`2^n` built in the exponent bits elsewhere): 4 fewer
/// instructions per vector, which made EfficientNet-B0's SiLU layers (op-throughput bound
/// in the epilogue) faster: 6.09 -> 5.77 ms at 1 thread.
macro_rules! act_body {
    ($feat:literal) => {
        #[target_feature(enable = $feat)]
        #[inline]
        fn exp(x: V) -> V {
            // The input second in min/max: NaN propagates (x86 returns the second operand
            // when either is NaN), as in `Activation::apply`. Above 88.38 the result is
            // +inf (2^128 built in the exponent bits), so exp overflows as in f32::exp and
            // SiLU(-inf) = -inf / inf = NaN on every path; below -87.3 it stays normal.
            let x = min(splat(89.0), max(splat(-87.3), x));
            let fx = round(mul(x, splat(std::f32::consts::LOG2_E)));
            let r = fma(fx, splat(-0.693_359_4), x);
            let r = fma(fx, splat(2.121_944_4e-4), r);
            let mut y = splat(1.987_569_1e-4);
            for c in [
                1.398_199_9e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                1.666_666_5e-1,
                0.5,
            ] {
                y = fma(y, r, splat(c));
            }
            let y = fma(y, mul(r, r), add(r, splat(1.0)));
            scale2(y, fx)
        }

        /// The activation `code` ([`super::act_code`]) with parameters `p0`, `p1`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn act(v: V, code: u64, p0: f32, p1: f32) -> V {
            match code {
                super::act_code::NONE => v,
                // The input second in min/max (x86 returns the second operand when either is
                // NaN): NaN propagates, as in `Activation::apply`.
                super::act_code::RELU => max(zero(), v),
                super::act_code::CLIP => min(splat(p1), max(splat(p0), v)),
                super::act_code::SIGMOID => div(splat(1.0), add(splat(1.0), exp(sub(zero(), v)))),
                super::act_code::HARD_SIGMOID => {
                    min(splat(1.0), max(zero(), fma(v, splat(p0), splat(p1))))
                }
                super::act_code::HARD_SWISH => mul(
                    v,
                    min(
                        splat(1.0),
                        max(zero(), fma(v, splat(1.0 / 6.0), splat(0.5))),
                    ),
                ),
                _ => div(v, add(splat(1.0), exp(sub(zero(), v)))),
            }
        }

        /// Bias, residual and activation of one output vector of `n` lanes (`n == W`: full)
        /// at `row`/`col` of an output with leading dimension `ld`.
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `res`, when not null, is valid for reading `n` f32
        /// (`n <= W`).
        unsafe fn finish(v: V, e: &super::Epi, bias: V, res: *const f32, n: usize) -> V {
            // SAFETY: as this function's contract.
            unsafe { finish_with(v, e, bias, res, n, e.code) }
        }

        /// [`finish`] with the activation `code` given (a constant at a call site that
        /// dispatches on `e.code` once for many vectors, so that the match folds away).
        #[allow(dead_code)]
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// As for [`finish`].
        unsafe fn finish_with(
            mut v: V,
            e: &super::Epi,
            bias: V,
            res: *const f32,
            n: usize,
            code: u64,
        ) -> V {
            // SAFETY: `res` holds `n` readable f32 when not null (this function's contract).
            unsafe {
                if !e.bias.is_null() {
                    v = add(v, bias);
                }
                if !res.is_null() {
                    v = add(v, if n == W { ld(res) } else { ldm(res, n) });
                }
                act(v, code, e.p0, e.p1)
            }
        }

        /// [`finish`] for one vector of `n` lanes of output row (or channel) `row` at offset
        /// `off` of the output: that row's bias and the residual at `off`, where the
        /// epilogue has them. (Used by the stem kernel and the AVX-512 transposed tiles; the
        /// SSE module has neither, and the column tiles hoist the bias per row.)
        #[allow(dead_code)]
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; the bias (when not null) holds `row`, the
        /// residual (when not null) `n` f32 at `off`.
        unsafe fn finish_at(v: V, e: &super::Epi, row: usize, off: usize, n: usize) -> V {
            // SAFETY: as this function's contract.
            unsafe {
                let bias = if e.bias.is_null() {
                    zero()
                } else {
                    bc(e.bias.add(row))
                };
                let res = if e.res.is_null() {
                    std::ptr::null()
                } else {
                    e.res.add(off)
                };
                finish(v, e, bias, res, n)
            }
        }
    };
}
