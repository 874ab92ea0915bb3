//! Conv/GEMM kernels in Rust `std::arch`, compiled once per ISA and called by the generated
//! code (registered with the JIT as symbols, see [`Kernel::symbol`] and [`dw_kernel`]).
//!
//! Entry points per ISA (all with the epilogue fused: bias, residual, activation as one
//! [`Epilogue`] in the call's description, applied to the registers before the only store):
//!
//! - **GEMM** ([`GemmFn`], shape and epilogue in a [`GemmCall`] stored in the weights
//!   blob): `C[m x n] = act(A[m x k] * B[k x n] + bias[row] + R)`. `A` is
//!   pre-packed by [`pack_a`] (blocks of `MR` rows, `k`-major inside a block, the last block
//!   zero-padded); `B` is row-major with leading dimension `ldb` (an NCHW activation plane or
//!   im2col rows); `C` and the optional residual `R` are row-major with `ldc`. Loop order:
//!   column panels of B small enough to stay in L2, `MR`-row blocks of A (one block, `k * MR`
//!   floats, stays in L1), `NR`-column register tiles; the last partial tile uses masked
//!   loads/stores (AVX2/AVX-512) or a staged copy (SSE).
//! - **Matrix-vector** ([`GemvFn`]): one row times a constant `k x n` matrix (the classifier
//!   at batch 1), `8 * W` columns per step.
//! - **Depthwise op** ([`DwFn`], AVX2/AVX-512): a whole conv with one input channel per
//!   group (depthwise and channel multipliers), geometry in a [`DwGeom`] stored in the
//!   weights blob: each input plane is copied into a zero-padded scratch plane (L1/L2
//!   resident), then up to 8 output rows x one vector of columns accumulate every tap in
//!   registers.
//! - **SqueezeExcite** ([`SeFn`]): squeeze (plane means), the two small mat-vecs with their
//!   activations, and the channel scaling.
//! - **Stem conv** ([`stem::StemFn`], AVX2/AVX-512): a whole ungrouped conv with at most
//!   [`stem::STEM_MAX_CI`] input channels, direct (no im2col), see [`stem`].
//! - **LRN** ([`lrn::LrnFn`]): one plain-Rust kernel for every ISA, see [`lrn`].
//! - **Table lookup** of quantized values ([`lut::LutFn`]): geometry and the portable
//!   kernel; the int8 sets name each ISA's.
//!
//! All split their work over the persistent pool ([`super::par::for_each`]) when called with
//! `threads > 1`: GEMM by (row blocks x column ranges), matrix-vector by column ranges,
//! depthwise by ranges of planes, SqueezeExcite by channel ranges. Every
//! output element is computed by exactly one task with the same arithmetic, so results do not
//! depend on the thread count. Dot products accumulate over `k` (taps) ascending from zero,
//! with FMA where the ISA has it.

use super::isa;
use std::cell::RefCell;

thread_local! {
    /// The message of a panic caught at a kernel boundary on this thread and not yet taken
    /// by [`take_panic`].
    static PANICKED: RefCell<Option<String>> = const { RefCell::new(None) };
}

#[cfg(test)]
thread_local! {
    /// Test hook: the next [`at_boundary`] call on this thread panics inside its body.
    pub(crate) static INJECT_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs the body of an `extern "C"` kernel entry point. A panic must not unwind out of an
/// `extern "C"` function (that aborts the process), nor through the generated code calling
/// it (which has no unwind information): a panic of the body (on this thread, or resumed here
/// from a pool thread by [`super::par::for_each`]) is caught, its message is recorded for
/// [`take_panic`], and the kernel returns normally with its output unspecified. While a
/// panic is recorded, further kernel calls on this thread (the rest of the step's loops)
/// return at once. The runtime takes the record after every step and fails the run with it.
pub fn at_boundary(body: impl FnOnce()) {
    if PANICKED.with(|p| p.borrow().is_some()) {
        return;
    }
    let mut body = Some(body);
    let r = super::par::caught(&mut || {
        #[cfg(test)]
        if INJECT_PANIC.with(|i| i.replace(false)) {
            panic!("injected kernel panic");
        }
        if let Some(body) = body.take() {
            body()
        }
    });
    if let Err(payload) = r {
        let msg = match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(p) => p.downcast_ref::<&str>().map_or_else(
                || "a panic with a non-string payload".into(),
                |s| s.to_string(),
            ),
        };
        PANICKED.with(|p| *p.borrow_mut() = Some(msg));
    }
}

/// Takes the message of the panic [`at_boundary`] caught on this thread since the last call,
/// if any.
pub fn take_panic() -> Option<String> {
    PANICKED.with(|p| p.borrow_mut().take())
}

/// `u64` words as f32 bit patterns (two per word, little-endian halves).
fn words_to_blob(words: &[u64]) -> Vec<f32> {
    words
        .iter()
        .flat_map(|&w| [f32::from_bits(w as u32), f32::from_bits((w >> 32) as u32)])
        .collect()
}

// The kernel families, each with its signature, geometry, thread driver and ISA body (a
// macro the ISA modules below expand).
#[macro_use]
pub mod epilogue;
#[macro_use]
pub mod gemm;
#[macro_use]
pub mod gemv;
#[macro_use]
pub mod se;
#[macro_use]
pub mod dw;
#[macro_use]
pub mod peak;
pub mod drive;
// The stem kernel's geometry, driver and ISA body (`stem_body!`, used by the modules below).
#[macro_use]
pub mod stem;

use drive::{part, plane_ranges, PAR_MIN_WORK, TASKS_PER_THREAD};
use dw::{dw_drive, Dw};
pub use dw::{
    dw_kernel, dw_tasks, lane_max_pixels, DwFn, DwGeom, DwPath, PadRow, DW_PARAMS, LANE_MAX_TAPS,
    PAD_ALIGN,
};
use epilogue::Epi;
pub use epilogue::{ActKind, Epilogue};
use gemm::{
    copies_b_panels, copy_panel, gemm_drive, panel_buffer, panel_stride, Gemm, PACK_MIN_ROW_TILES,
    PANEL_FLOATS,
};
pub use gemm::{gemm_kernel, pack_a, rows_in_lanes, GemmCall, GemmFn, Kernel, GEMM_PARAMS};
pub use gemv::{
    gemv_block_cols, gemv_kernel, pack_gemv_b, GemvCall, GemvFn, GEMV_MAX_ROWS, GEMV_PARAMS,
    GEMV_VECTORS,
};
use gemv::{gemv_drive, Gemv};
pub use peak::{best_giga_rate, peak_gflops, peak_int8_gops};
use se::{se_drive, Se, SePhases};
pub use se::{se_kernel, SeFn, SeGeom, SE_PARAMS};

/// The one-instruction vector helpers of an ISA module (`zero`, `splat`, `add`, `sub`, `mul`,
/// `div`, `min`, `max`, unaligned `ld` / `st`, broadcast `bc`), from its intrinsics.
macro_rules! lane_ops {
    ($feat:literal, $setzero:ident, $set1:ident, $add:ident, $sub:ident, $mul:ident, $div:ident,
     $min:ident, $max:ident, $loadu:ident, $storeu:ident) => {
        #[target_feature(enable = $feat)]
        #[inline]
        fn zero() -> V {
            $setzero()
        }
        #[target_feature(enable = $feat)]
        #[inline]
        fn splat(x: f32) -> V {
            $set1(x)
        }
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `p` is valid for reading one f32.
        unsafe fn bc(p: *const f32) -> V {
            // SAFETY: `p` is readable (contract).
            unsafe { $set1(*p) }
        }
        #[target_feature(enable = $feat)]
        #[inline]
        fn add(a: V, b: V) -> V {
            $add(a, b)
        }
        #[target_feature(enable = $feat)]
        #[inline]
        fn sub(a: V, b: V) -> V {
            $sub(a, b)
        }
        #[target_feature(enable = $feat)]
        #[inline]
        fn mul(a: V, b: V) -> V {
            $mul(a, b)
        }
        #[target_feature(enable = $feat)]
        #[inline]
        fn div(a: V, b: V) -> V {
            $div(a, b)
        }
        #[target_feature(enable = $feat)]
        #[inline]
        fn min(a: V, b: V) -> V {
            $min(a, b)
        }
        #[target_feature(enable = $feat)]
        #[inline]
        fn max(a: V, b: V) -> V {
            $max(a, b)
        }
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `p` is valid for reading `W` f32 (any alignment).
        unsafe fn ld(p: *const f32) -> V {
            // SAFETY: `W` floats at `p` are readable (contract); the load is unaligned.
            unsafe { $loadu(p) }
        }
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `p` is valid for writing `W` f32 (any alignment).
        unsafe fn st(p: *mut f32, v: V) {
            // SAFETY: `W` floats at `p` are writable (contract); the store is unaligned.
            unsafe { $storeu(p, v) }
        }
    };
}

/// SSE4.2 baseline: 6 x 8 tile of 128-bit vectors (12 accumulators), multiply + add (no FMA).
pub mod sse {
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;
    type V = __m128;
    /// f32 lanes per vector ([`IsaDesc::lanes`](crate::cpu::IsaDesc::lanes)).
    pub const W: usize = 4;
    /// Rows of the register tile.
    pub const MR: usize = 6;
    const NV: usize = 2;
    /// Whether the GEMM tiles' epilogue runs an exponential activation on a row's vectors
    /// in lockstep (`finish_n`; measured on AVX2 only).
    const EPI_LOCKSTEP: bool = false;

    #[target_feature(enable = "sse4.2")]
    #[inline]
    fn round(a: V) -> V {
        _mm_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a)
    }
    /// `y * 2^n` for integral `n` with `2^n` in the normal exponent range.
    #[target_feature(enable = "sse4.2")]
    #[inline]
    fn scale2(y: V, n: V) -> V {
        mul(y, pow2(n))
    }
    /// `2^n` for integral `n` in the normal exponent range.
    #[target_feature(enable = "sse4.2")]
    #[inline]
    fn pow2(n: V) -> V {
        let e = _mm_add_epi32(_mm_cvtps_epi32(n), _mm_set1_epi32(127));
        _mm_castsi128_ps(_mm_slli_epi32::<23>(e))
    }
    #[target_feature(enable = "sse4.2")]
    #[inline]
    /// # Safety
    /// The CPU supports the module's ISA; `p` is valid for reading `n` f32 (`n <= W`).
    unsafe fn ldm(p: *const f32, n: usize) -> V {
        // SAFETY: the first `n` floats at `p` are readable (contract); lanes past `n` are not
        // read.
        unsafe {
            let mut t = [0.0f32; 4];
            for (i, v) in t.iter_mut().enumerate().take(n) {
                *v = *p.add(i);
            }
            _mm_loadu_ps(t.as_ptr())
        }
    }
    #[target_feature(enable = "sse4.2")]
    #[inline]
    /// # Safety
    /// The CPU supports the module's ISA; `p` is valid for writing `n` f32 (`n <= W`).
    unsafe fn stm(p: *mut f32, v: V, n: usize) {
        // SAFETY: the first `n` floats at `p` are writable (contract); lanes past `n` are not
        // written.
        unsafe {
            let mut t = [0.0f32; 4];
            _mm_storeu_ps(t.as_mut_ptr(), v);
            for (i, x) in t.iter().enumerate().take(n) {
                *p.add(i) = *x;
            }
        }
    }
    #[target_feature(enable = "sse4.2")]
    #[inline]
    fn fma(a: V, b: V, c: V) -> V {
        _mm_add_ps(_mm_mul_ps(a, b), c)
    }
    lane_ops!(
        "sse4.2",
        _mm_setzero_ps,
        _mm_set1_ps,
        _mm_add_ps,
        _mm_sub_ps,
        _mm_mul_ps,
        _mm_div_ps,
        _mm_min_ps,
        _mm_max_ps,
        _mm_loadu_ps,
        _mm_storeu_ps
    );
    act_body!("sse4.2");
    gemm_body!("sse4.2");
    gemv_body!("sse4.2");
    se_body!("sse4.2");
    peak_body!("sse4.2");
}

/// AVX2 + FMA: 6 x 16 tile of 256-bit vectors (12 accumulators; each B vector feeds 6 rows).
pub mod avx2 {
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;
    type V = __m256;
    /// f32 lanes per vector ([`IsaDesc::lanes`](crate::cpu::IsaDesc::lanes)).
    pub const W: usize = 8;
    /// Rows of the register tile.
    pub const MR: usize = 6;
    const NV: usize = 2;
    /// Whether the GEMM tiles' epilogue runs an exponential activation on a row's vectors
    /// in lockstep (`finish_n`): EfficientNet-B0's SiLU expansions at 1 thread on Zen 4,
    /// `conv-gemm` summed 6.58 -> 6.25 ms (16 -> 96 at 112x112: 1.09 -> 0.99 ms).
    const EPI_LOCKSTEP: bool = true;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn round(a: V) -> V {
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a)
    }
    /// `y * 2^n` for integral `n` with `2^n` in the normal exponent range.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn scale2(y: V, n: V) -> V {
        mul(y, pow2(n))
    }
    /// `2^n` for integral `n` in the normal exponent range.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn pow2(n: V) -> V {
        let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e))
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn mask(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    /// # Safety
    /// The CPU supports the module's ISA; `p` is valid for reading `n` f32 (`n <= W`).
    /// A whole vector by a plain load (a masked load costs about twice as much on Zen 4).
    pub(super) unsafe fn ldm(p: *const f32, n: usize) -> V {
        // SAFETY: the first `n` floats at `p` are readable (contract); lanes past `n` are not
        // read.
        unsafe {
            if n >= W {
                _mm256_loadu_ps(p)
            } else {
                _mm256_maskload_ps(p, mask(n))
            }
        }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    /// # Safety
    /// The CPU supports the module's ISA; `p` is valid for writing `n` f32 (`n <= W`).
    ///
    /// Written as at most three plain stores (4, 2 and 1 lanes) rather than `vmaskmovps`,
    /// whose store form costs about 13 cycles on Zen 4 (3.7 ns against 0.6 for a plain
    /// store, measured in a loop): the epilogues store a partial vector per output row of
    /// the 7x7 and 14x14 layers.
    pub(super) unsafe fn stm(p: *mut f32, v: V, n: usize) {
        // SAFETY: the first `n` floats at `p` are writable (contract); the stores below write
        // lanes `0..n` only (4 + 2 + 1 covers every `n < W`).
        unsafe {
            if n >= W {
                return _mm256_storeu_ps(p, v);
            }
            let (mut p, mut n, mut x) = (p, n, _mm256_castps256_ps128(v));
            if n >= 4 {
                _mm_storeu_ps(p, x);
                (p, n, x) = (p.add(4), n - 4, _mm256_extractf128_ps::<1>(v));
            }
            if n >= 2 {
                _mm_store_sd(p.cast(), _mm_castps_pd(x));
                (p, n, x) = (p.add(2), n - 2, _mm_movehl_ps(x, x));
            }
            if n >= 1 {
                _mm_store_ss(p, x);
            }
        }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn fma(a: V, b: V, c: V) -> V {
        _mm256_fmadd_ps(a, b, c)
    }
    /// The even and the odd elements of the `2W` elements `a, b` (in order).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn deinterleave(a: V, b: V) -> (V, V) {
        let e = _mm256_shuffle_ps(a, b, 0b10_00_10_00);
        let o = _mm256_shuffle_ps(a, b, 0b11_01_11_01);
        let fix =
            |t: V| _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), 0b11_01_10_00));
        (fix(e), fix(o))
    }
    lane_ops!(
        "avx2,fma",
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_add_ps,
        _mm256_sub_ps,
        _mm256_mul_ps,
        _mm256_div_ps,
        _mm256_min_ps,
        _mm256_max_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps
    );
    act_body!("avx2,fma");
    gemm_body!("avx2,fma", |g: &super::Gemm, threads: usize| {
        // SAFETY: as for `gemm_drive` (the caller's contract); the row-tile condition of
        // `rows_range` is what `rows_in_lanes` checks, and the lowering packed A for it
        // (`Kernel::a_block_rows`).
        unsafe {
            // The table entry's choice, which the reports name too.
            if crate::cpu::isa::X86_64_AVX2.gemm.rows_in_lanes(g.m, g.n) {
                super::gemm_drive(rows_range, ROW_TILE, COL_TILE, true, g, threads)
            } else {
                super::gemm_drive(range, MR, NR, false, g, threads)
            }
        }
    });
    rows_in_lanes_body!("avx2,fma");
    rows_tile8_body!("avx2,fma");
    gemv_body!("avx2,fma");
    se_body!("avx2,fma");
    peak_body!("avx2,fma");
    /// The 8 x 8 transpose: lane `j` of vector `i` becomes lane `i` of vector `j`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn transpose(r: [V; W]) -> [V; W] {
        // 32-bit interleave of row pairs, then 64-bit, then the 128-bit halves.
        let mut t = [zero(); W];
        for i in 0..4 {
            t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let mut u = [zero(); W];
        for i in 0..2 {
            let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
            let pd = |x: V| _mm256_castps_pd(x);
            let ps = |x: __m256d| _mm256_castpd_ps(x);
            u[4 * i] = ps(_mm256_unpacklo_pd(pd(a), pd(c)));
            u[4 * i + 1] = ps(_mm256_unpackhi_pd(pd(a), pd(c)));
            u[4 * i + 2] = ps(_mm256_unpacklo_pd(pd(b), pd(d)));
            u[4 * i + 3] = ps(_mm256_unpackhi_pd(pd(b), pd(d)));
        }
        for i in 0..4 {
            t[i] = _mm256_permute2f128_ps::<0x20>(u[i], u[i + 4]);
            t[i + 4] = _mm256_permute2f128_ps::<0x31>(u[i], u[i + 4]);
        }
        t
    }
    dw_body!("avx2,fma", lane_planes, planes);
    dw_lanes_body!("avx2,fma");
    /// Output channels per block of the stem kernel (`CB x CV` accumulators; 16 ymm
    /// registers).
    const CB: usize = 4;
    /// Column vectors per block of the stem kernel: two (6 loads per 8 FMAs; the 8 x 1
    /// block loads 9 per 8). MobileNetV2's stem alone at 1 thread on Zen 4 (fastest of 900
    /// runs): 4 x 2 0.415-0.429 ms, 6 x 2 0.426-0.434, 8 x 1 0.465-0.481, 4 x 3 0.557-0.579
    /// (spills); on Ice Lake 4 x 2 had measured 1% slower than 8 x 1 and 4 x 3 13%.
    const CV: usize = 2;
    stem_body!("avx2,fma");
}

/// AVX-512F: 6 x 64 tile of 512-bit vectors (24 accumulators: 10 loads per 24 FMAs; the
/// 8 x 32 tile it replaced loaded 10 per 16 and ran 15-21% slower on Ice Lake), mask
/// registers for tails.
pub mod avx512 {
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;
    type V = __m512;
    /// f32 lanes per vector ([`IsaDesc::lanes`](crate::cpu::IsaDesc::lanes)).
    pub const W: usize = 16;
    /// Rows of the register tile.
    pub const MR: usize = 6;
    const NV: usize = 4;
    /// Whether the GEMM tiles' epilogue runs an exponential activation on a row's vectors
    /// in lockstep (`finish_n`): not here (EfficientNet-B0's `conv-gemm` at 1 thread on
    /// Zen 4 5.12 -> 5.24 ms that way; the 16-lane chains already overlap).
    const EPI_LOCKSTEP: bool = false;

    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    fn round(a: V) -> V {
        _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a)
    }
    /// `y * 2^n` for integral `n` (one `vscalefps`; exact, as `y * 2^n` is when `2^n` is
    /// normal).
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    fn scale2(y: V, n: V) -> V {
        _mm512_scalef_ps(y, n)
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    /// # Safety
    /// The CPU supports the module's ISA; `p` is valid for reading `n` f32 (`n <= W`).
    unsafe fn ldm(p: *const f32, n: usize) -> V {
        // SAFETY: the first `n` floats at `p` are readable (contract); lanes past `n` are not
        // read.
        unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, p) }
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    /// # Safety
    /// The CPU supports the module's ISA; `p` is valid for writing `n` f32 (`n <= W`).
    unsafe fn stm(p: *mut f32, v: V, n: usize) {
        // SAFETY: the first `n` floats at `p` are writable (contract); lanes past `n` are not
        // written.
        unsafe { _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as __mmask16, v) }
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    fn fma(a: V, b: V, c: V) -> V {
        _mm512_fmadd_ps(a, b, c)
    }
    /// The even and the odd elements of the `2W` elements `a, b` (in order).
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    fn deinterleave(a: V, b: V) -> (V, V) {
        let e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let o = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        (
            _mm512_permutex2var_ps(a, e, b),
            _mm512_permutex2var_ps(a, o, b),
        )
    }
    lane_ops!(
        "avx512f,avx2,fma",
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_add_ps,
        _mm512_sub_ps,
        _mm512_mul_ps,
        _mm512_div_ps,
        _mm512_min_ps,
        _mm512_max_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps
    );
    act_body!("avx512f,avx2,fma");
    gemm_body!("avx512f,avx2,fma", |g: &super::Gemm, threads: usize| {
        // SAFETY: as for `gemm_drive` (the caller's contract); the row-tile condition of
        // `rows_range` is what `rows_in_lanes` checks.
        unsafe {
            // The table entry's choice, which the reports name too.
            if crate::cpu::isa::X86_64_AVX512.gemm.rows_in_lanes(g.m, g.n) {
                super::gemm_drive(rows_range, ROW_TILE, COL_TILE, true, g, threads)
            } else {
                super::gemm_drive(range, MR, NR, false, g, threads)
            }
        }
    });

    rows_in_lanes_body!("avx512f,avx2,fma");
    rows_tile16_body!("avx512f,avx2,fma");

    /// The 16 x 16 transpose: lane `j` of vector `i` becomes lane `i` of vector `j`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    pub(super) fn transpose(r: [V; W]) -> [V; W] {
        let mut t = [zero(); W];
        // 32-bit interleave of row pairs, then 64-bit, then 128-bit lanes twice.
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let mut u = [zero(); W];
        for i in 0..4 {
            let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
            let pd = |x: V| _mm512_castps_pd(x);
            let ps = |x: __m512d| _mm512_castpd_ps(x);
            u[4 * i] = ps(_mm512_unpacklo_pd(pd(a), pd(c)));
            u[4 * i + 1] = ps(_mm512_unpackhi_pd(pd(a), pd(c)));
            u[4 * i + 2] = ps(_mm512_unpacklo_pd(pd(b), pd(d)));
            u[4 * i + 3] = ps(_mm512_unpackhi_pd(pd(b), pd(d)));
        }
        for i in 0..4 {
            for j in 0..2 {
                let (a, b) = (u[8 * j + i], u[8 * j + i + 4]);
                t[8 * j + i] = _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b);
                t[8 * j + i + 4] = _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b);
            }
        }
        for i in 0..8 {
            let (a, b) = (t[i], t[i + 8]);
            u[i] = _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b);
            u[i + 8] = _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b);
        }
        u
    }
    gemv_body!("avx512f,avx2,fma");
    se_body!("avx512f,avx2,fma");
    peak_body!("avx512f,avx2,fma");
    dw_body!("avx512f,avx2,fma", lane_planes, unpadded_planes);

    dw_lanes_body!("avx512f,avx2,fma");
    dw_unpadded_body!("avx512f,avx2,fma");

    /// Output channels per block of the stem kernel (`CB x CV` accumulators, `CV` input
    /// vectors and a weight broadcast: 28 of the 32 zmm registers).
    const CB: usize = 8;
    /// Column vectors per block of the stem kernel.
    const CV: usize = 3;
    stem_body!("avx512f,avx2,fma");
}

pub mod int8;
pub mod lrn;
pub mod lut;
pub mod qbinary;
pub mod qmean;

/// A Rust kernel that generated code calls by symbol, the same for every x86-64 target.
#[derive(Clone, Copy, Debug)]
pub struct SharedKernel {
    pub symbol: &'static str,
    pub func: *const u8,
    /// Pointer-sized arguments.
    pub params: usize,
}

/// Every [`SharedKernel`]: registered with the JIT and imported into each generated function.
pub fn shared_kernels() -> Vec<SharedKernel> {
    let lrn_fn: lrn::LrnFn = lrn::lrn;
    vec![SharedKernel {
        symbol: lrn::LRN_SYMBOL,
        func: lrn_fn as *const u8,
        params: lrn::LRN_PARAMS,
    }]
}
#[cfg(test)]
mod tests;
