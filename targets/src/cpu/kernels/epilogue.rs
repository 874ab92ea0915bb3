//! The fused epilogue every f32 kernel applies before its only store: the shared description
//! ([`Epilogue`], [`ActKind`]: `crate::epilogue`), the per-call operands (`Epi`) and the ISA
//! body (`act_body!`: `exp`, `act`, `finish`).

pub use crate::epilogue::{ActKind, Epilogue};

/// The epilogue of one kernel call: the call's [`Epilogue`] with its operands (a pointer is
/// null where the description has no such operand, whatever the caller passed).
#[derive(Clone, Copy)]
pub(super) struct Epi {
    /// Per-row bias (null: none).
    pub(super) bias: *const f32,
    /// Residual with the output's layout (null: none).
    pub(super) res: *const f32,
    pub(super) act: ActKind,
    pub(super) p0: f32,
    pub(super) p1: f32,
}

impl Epi {
    /// The epilogue `d` with its bias and residual operands (read only where `d` has them).
    pub(super) fn new(d: &Epilogue, bias: *const f32, res: *const f32) -> Epi {
        let null = std::ptr::null();
        Epi {
            bias: if d.bias() { bias } else { null },
            res: if d.residual() { res } else { null },
            act: d.act,
            p0: d.p0,
            p1: d.p1,
        }
    }
}

/// Vector math shared by the ISA modules (each provides `V`, `W`, `zero`, `splat`, `add`,
/// `sub`, `mul`, `div`, `min`, `max`, `fma`, `round`, `scale2` and `ld`/`ldm`/`st`/`stm`):
/// the fused activations, with the exponential (`exp_n`) built as in the generated code
/// (range reduction by `n ln2`, degree-6 polynomial, scaling by `2^n`), but with the range
/// reduction fused
/// (`fma`: one rounding instead of two where the ISA has FMA) and the scaling one
/// `vscalefps` on AVX-512 (`2^n` built in the exponent bits elsewhere): 4 fewer
/// instructions per vector, which made EfficientNet-B0's SiLU layers (op-throughput bound
/// in the epilogue) faster: 6.09 -> 5.77 ms at 1 thread.
macro_rules! act_body {
    ($feat:literal) => {
        /// The activation `kind` with parameters `p0`, `p1`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn act(v: V, kind: super::ActKind, p0: f32, p1: f32) -> V {
            use super::ActKind as K;
            match kind {
                K::None => v,
                // The input second in min/max (x86 returns the second operand when either is
                // NaN): NaN propagates, as in `Activation::apply`.
                K::Relu => max(zero(), v),
                K::Clip => min(splat(p1), max(splat(p0), v)),
                K::Sigmoid | K::Silu => act_n([v], kind, p0, p1)[0],
                K::HardSigmoid => min(splat(1.0), max(zero(), fma(v, splat(p0), splat(p1)))),
                K::HardSwish => mul(
                    v,
                    min(
                        splat(1.0),
                        max(zero(), fma(v, splat(1.0 / 6.0), splat(0.5))),
                    ),
                ),
            }
        }

        /// `exp` of `N` vectors in lockstep: each step over all `N` before the next, so that
        /// the out-of-order core sees `N` independent chains and each constant is broadcast
        /// once per step (each vector's result does not depend on `N`). Plain loops, no
        /// closures (a closure does not inherit the ISA's target features). The input second
        /// in min/max: NaN propagates (x86 returns the second operand when either is NaN), as
        /// in `Activation::apply`. Above 88.38 the result is +inf (2^128 built in the
        /// exponent bits), so exp overflows as in f32::exp and SiLU(-inf) = -inf / inf = NaN
        /// on every path; below -87.3 it stays normal.
        #[target_feature(enable = $feat)]
        #[inline]
        fn exp_n<const N: usize>(mut x: [V; N]) -> [V; N] {
            let (hi, lo, l2e) = (splat(89.0), splat(-87.3), splat(std::f32::consts::LOG2_E));
            let mut fx = [zero(); N];
            for i in 0..N {
                x[i] = min(hi, max(lo, x[i]));
                fx[i] = round(mul(x[i], l2e));
            }
            let (c1, c2) = (splat(-0.693_359_4), splat(2.121_944_4e-4));
            let mut r = [zero(); N];
            for i in 0..N {
                r[i] = fma(fx[i], c2, fma(fx[i], c1, x[i]));
            }
            let mut y = [splat(1.987_569_1e-4); N];
            for c in [
                1.398_199_9e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                1.666_666_5e-1,
                0.5,
            ] {
                let c = splat(c);
                for i in 0..N {
                    y[i] = fma(y[i], r[i], c);
                }
            }
            let one = splat(1.0);
            for i in 0..N {
                y[i] = scale2(fma(y[i], mul(r[i], r[i]), add(r[i], one)), fx[i]);
            }
            y
        }

        /// [`act`] of `N` vectors, the exponential ones ([`exp_n`]) in lockstep (and defined
        /// here only: [`act`] takes them from here); the same results as [`act`] per vector.
        #[target_feature(enable = $feat)]
        #[inline]
        fn act_n<const N: usize>(mut v: [V; N], kind: super::ActKind, p0: f32, p1: f32) -> [V; N] {
            use super::ActKind as K;
            match kind {
                K::Silu | K::Sigmoid => {
                    let mut m = [zero(); N];
                    for i in 0..N {
                        m[i] = sub(zero(), v[i]);
                    }
                    let e = exp_n(m);
                    let one = splat(1.0);
                    for i in 0..N {
                        let num = if matches!(kind, K::Silu) { v[i] } else { one };
                        v[i] = div(num, add(one, e[i]));
                    }
                    v
                }
                _ => {
                    for x in v.iter_mut() {
                        *x = act(*x, kind, p0, p1);
                    }
                    v
                }
            }
        }

        /// [`finish`] of `N` vectors (`n[i]` lanes of vector `i`, its residual at `res[i]`
        /// where not null and `n[i] > 0`), the activation by [`act_n`].
        #[allow(dead_code)]
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; each `res[i]`, when not null and `n[i] > 0`, is
        /// valid for reading `n[i]` f32 (`n[i] <= W`).
        unsafe fn finish_n<const N: usize>(
            mut v: [V; N],
            e: &super::Epi,
            bias: V,
            res: [*const f32; N],
            n: [usize; N],
        ) -> [V; N] {
            for i in 0..N {
                let r = if n[i] > 0 { res[i] } else { std::ptr::null() };
                // SAFETY: `r` holds `n[i]` readable f32 when not null (contract).
                v[i] = unsafe { bias_res(v[i], e, bias, r, n[i]) };
            }
            act_n(v, e.act, e.p0, e.p1)
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
            unsafe { finish_with(v, e, bias, res, n, e.act) }
        }

        /// [`finish`] with the activation `kind` given (a constant at a call site that
        /// dispatches on `e.act` once for many vectors, so that the match folds away).
        #[allow(dead_code)]
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// As for [`finish`].
        unsafe fn finish_with(
            v: V,
            e: &super::Epi,
            bias: V,
            res: *const f32,
            n: usize,
            kind: super::ActKind,
        ) -> V {
            // SAFETY: `res` holds `n` readable f32 when not null (this function's contract).
            act(unsafe { bias_res(v, e, bias, res, n) }, kind, e.p0, e.p1)
        }

        /// `v` plus the bias vector and the `n`-lane residual at `res`, each where the
        /// epilogue has it (`res` not null).
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `res`, when not null, is valid for reading `n`
        /// f32 (`1 <= n <= W`).
        unsafe fn bias_res(mut v: V, e: &super::Epi, bias: V, res: *const f32, n: usize) -> V {
            if !e.bias.is_null() {
                v = add(v, bias);
            }
            if !res.is_null() {
                // SAFETY: `res` holds `n` readable f32 (contract).
                v = add(v, unsafe {
                    if n == W {
                        ld(res)
                    } else {
                        ldm(res, n)
                    }
                });
            }
            v
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
