//! GEMM micro-kernels in Rust `std::arch`, compiled once per ISA and called by the generated
//! code at panel granularity (registered with the JIT as symbols, see [`Kernel::symbol`]).
//!
//! Every kernel computes `C[m x n] = A[m x k] * B[k x n]` (overwriting C) where
//! - `A` is pre-packed by [`pack_a`]: blocks of `MR` rows, each stored `k`-major
//!   (`a[(row / MR) * k * MR + p * MR + row % MR]`), the last block zero-padded;
//! - `B` is row-major with leading dimension `ldb` (an NCHW activation plane or im2col rows);
//! - `C` is row-major with leading dimension `ldc`.
//!
//! Loop order: `MR`-row blocks of A outer (one A block, `k * MR` floats, stays in L1), `NR`
//! column tiles inner; the caller passes a panel of B small enough to stay in L2. The last
//! partial column tile uses masked loads/stores (AVX2/AVX-512) or a staged copy (SSE).
//! The dot products accumulate over `k` ascending from zero (with FMA where the ISA has it).

use crate::Target;

/// Signature of every micro-kernel: `(m, n, k, a_packed, b, ldb, c, ldc)`.
pub type GemmFn =
    unsafe extern "C" fn(usize, usize, usize, *const f32, *const f32, usize, *mut f32, usize);

/// A micro-kernel for one ISA: its symbol name, entry point and register tile.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// Symbol name under which the JIT resolves it.
    pub symbol: &'static str,
    /// Entry point (only called when the host runs the target).
    pub func: GemmFn,
    /// Symbol and entry point of the two-thread variant (splits rows or columns in two).
    pub par_symbol: &'static str,
    pub par_func: GemmFn,
    /// Rows of the register tile (rows per packed A block).
    pub mr: usize,
    /// Columns of the register tile.
    pub nr: usize,
}

/// The GEMM micro-kernel the given JIT target uses (`None` for the reference target).
pub fn gemm_kernel(t: Target) -> Option<Kernel> {
    match t {
        Target::Reference | Target::Cuda(_) => None,
        Target::X86_64 => Some(Kernel {
            symbol: "mnc_gemm_sse",
            func: sse::gemm,
            par_symbol: "mnc_gemm_sse_par",
            par_func: gemm_par_sse,
            mr: sse::MR,
            nr: sse::NR,
        }),
        Target::X86_64Avx2 => Some(Kernel {
            symbol: "mnc_gemm_avx2",
            func: avx2::gemm,
            par_symbol: "mnc_gemm_avx2_par",
            par_func: gemm_par_avx2,
            mr: avx2::MR,
            nr: avx2::NR,
        }),
        Target::X86_64Avx512 => Some(Kernel {
            symbol: "mnc_gemm_avx512",
            func: avx512::gemm,
            par_symbol: "mnc_gemm_avx512_par",
            par_func: gemm_par_avx512,
            mr: avx512::MR,
            nr: avx512::NR,
        }),
    }
}

/// Signature of the depthwise plane kernels:
/// `(padded_plane, padded_width, taps, kh, kw, sy, sx, dy, dx, oh, ow, out)`.
pub type DwFn = unsafe extern "C" fn(
    *const f32,
    usize,
    *const f32,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    *mut f32,
);

/// Number of parameters of [`DwFn`].
pub const DW_PARAMS: usize = 12;

/// The depthwise plane kernel of a target (`None` where the generated 128-bit code is used:
/// the SSE baseline and the reference target), with its symbol name.
///
/// Contract: `out[oy][ox] = sum over (ky, kx) of taps[ky*kw + kx] *
/// plane[(oy*sy + ky*dy) * padded_width + ox*sx + kx*dx]`, taps in that order from zero, for a
/// zero-padded input plane laid out so that every read is inside it (the caller's padded
/// copy, see `lower::direct_padded`). Stride-2 chunks read only the elements they use
/// (masked loads), so nothing past the last needed input is touched.
pub fn dw_kernel(t: Target) -> Option<(&'static str, DwFn)> {
    match t {
        Target::X86_64Avx2 => Some(("mnc_dw_avx2", avx2::dw)),
        Target::X86_64Avx512 => Some(("mnc_dw_avx512", avx512::dw)),
        _ => None,
    }
}

/// The two-thread variant of [`dw_kernel`] (splits the output rows in two).
pub fn dw_kernel_par(t: Target) -> Option<(&'static str, DwFn)> {
    match t {
        Target::X86_64Avx2 => Some(("mnc_dw_avx2_par", dw_par_avx2)),
        Target::X86_64Avx512 => Some(("mnc_dw_avx512_par", dw_par_avx512)),
        _ => None,
    }
}

/// Work (multiply-adds) below which a kernel call is not split.
const PAR_MIN_WORK: usize = 1 << 17;

/// Runs a GEMM kernel as two halves through [`super::par::join`]: by `mr`-row blocks when
/// there are at least 4 (or no second column tile), else by `nr`-column tiles.
///
/// # Safety
/// As for the kernel `f`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_split(
    f: GemmFn,
    mr: usize,
    nr: usize,
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    let (mb, nt) = (m.div_ceil(mr), n.div_ceil(nr));
    if m * n * k < PAR_MIN_WORK || (mb < 2 && nt < 2) {
        return f(m, n, k, a, b, ldb, c, ldc);
    }
    let (ua, ub, uc) = (a as usize, b as usize, c as usize);
    if mb >= 4 || nt < 2 {
        let mh = mb / 2 * mr;
        super::par::join(
            || f(mh, n, k, a, b, ldb, c, ldc),
            || {
                f(
                    m - mh,
                    n,
                    k,
                    (ua as *const f32).add(mh * k),
                    ub as *const f32,
                    ldb,
                    (uc as *mut f32).add(mh * ldc),
                    ldc,
                )
            },
        );
    } else {
        let nh = nt / 2 * nr;
        super::par::join(
            || f(m, nh, k, a, b, ldb, c, ldc),
            || {
                f(
                    m,
                    n - nh,
                    k,
                    ua as *const f32,
                    (ub as *const f32).add(nh),
                    ldb,
                    (uc as *mut f32).add(nh),
                    ldc,
                )
            },
        );
    }
}

/// Runs a depthwise kernel as two halves of output rows through [`super::par::join`].
///
/// # Safety
/// As for the kernel `f`.
#[allow(clippy::too_many_arguments)]
unsafe fn dw_split(
    f: DwFn,
    sp: *const f32,
    pw: usize,
    taps: *const f32,
    kh: usize,
    kw: usize,
    sy: usize,
    sx: usize,
    dy: usize,
    dx: usize,
    oh: usize,
    ow: usize,
    y: *mut f32,
) {
    if oh < 2 || oh * ow * kh * kw < PAR_MIN_WORK / 8 {
        return f(sp, pw, taps, kh, kw, sy, sx, dy, dx, oh, ow, y);
    }
    let oh1 = oh / 2;
    let (usp, ut, uy) = (sp as usize, taps as usize, y as usize);
    super::par::join(
        || f(sp, pw, taps, kh, kw, sy, sx, dy, dx, oh1, ow, y),
        || {
            f(
                (usp as *const f32).add(oh1 * sy * pw),
                pw,
                ut as *const f32,
                kh,
                kw,
                sy,
                sx,
                dy,
                dx,
                oh - oh1,
                ow,
                (uy as *mut f32).add(oh1 * ow),
            )
        },
    );
}

macro_rules! par_entry {
    ($gname:ident, $gemm:path, $mr:expr, $nr:expr) => {
        /// Two-thread variant of the ISA's GEMM kernel (same contract).
        ///
        /// # Safety
        /// As for the ISA's kernel.
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn $gname(
            m: usize,
            n: usize,
            k: usize,
            a: *const f32,
            b: *const f32,
            ldb: usize,
            c: *mut f32,
            ldc: usize,
        ) {
            gemm_split($gemm, $mr, $nr, m, n, k, a, b, ldb, c, ldc)
        }
    };
}
par_entry!(gemm_par_sse, sse::gemm, sse::MR, sse::NR);
par_entry!(gemm_par_avx2, avx2::gemm, avx2::MR, avx2::NR);
par_entry!(gemm_par_avx512, avx512::gemm, avx512::MR, avx512::NR);

macro_rules! dw_par_entry {
    ($name:ident, $dw:path) => {
        /// Two-thread variant of the ISA's depthwise kernel (same contract).
        ///
        /// # Safety
        /// As for the ISA's kernel.
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn $name(
            sp: *const f32,
            pw: usize,
            taps: *const f32,
            kh: usize,
            kw: usize,
            sy: usize,
            sx: usize,
            dy: usize,
            dx: usize,
            oh: usize,
            ow: usize,
            y: *mut f32,
        ) {
            dw_split($dw, sp, pw, taps, kh, kw, sy, sx, dy, dx, oh, ow, y)
        }
    };
}
dw_par_entry!(dw_par_avx2, avx2::dw);
dw_par_entry!(dw_par_avx512, avx512::dw);

/// Packs a row-major `m x k` matrix into `MR`-row blocks, `k`-major inside a block, the last
/// block zero-padded to `MR` rows (the layout every kernel reads).
pub fn pack_a(a: &[f32], m: usize, k: usize, mr: usize) -> Vec<f32> {
    let blocks = m.div_ceil(mr);
    let mut out = vec![0.0f32; blocks * k * mr];
    for row in 0..m {
        let (blk, r) = (row / mr, row % mr);
        for p in 0..k {
            out[blk * k * mr + p * mr + r] = a[row * k + p];
        }
    }
    out
}

/// The kernel body, shared by the ISA modules; each module provides `V`, `W`, `MR`, `NV`
/// and the inlined vector helpers `zero`, `ld`, `ldm`, `st`, `stm`, `bc`, `fma`.
macro_rules! gemm_body {
    ($feat:literal) => {
        /// Columns per register tile.
        pub const NR: usize = NV * W;

        /// See the module docs for the contract.
        ///
        /// # Safety
        /// The CPU must support the module's ISA; `a` must hold `ceil(m / MR) * k * MR`
        /// floats, `b` `k` rows of `ldb` (at least `n` readable) and `c` `m` rows of `ldc`.
        #[target_feature(enable = $feat)]
        pub unsafe extern "C" fn gemm(
            m: usize,
            n: usize,
            k: usize,
            a: *const f32,
            b: *const f32,
            ldb: usize,
            c: *mut f32,
            ldc: usize,
        ) {
            let mut mb = 0;
            while mb < m {
                let mr = (m - mb).min(MR);
                let ap = a.add(mb * k);
                let mut nb = 0;
                while nb + NR <= n {
                    tile::<true>(ap, b.add(nb), ldb, c.add(mb * ldc + nb), ldc, k, mr, NR);
                    nb += NR;
                }
                if nb < n {
                    tile::<false>(ap, b.add(nb), ldb, c.add(mb * ldc + nb), ldc, k, mr, n - nb);
                }
                mb += MR;
            }
        }

        #[target_feature(enable = $feat)]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        unsafe fn tile<const FULL: bool>(
            ap: *const f32,
            bp: *const f32,
            ldb: usize,
            cp: *mut f32,
            ldc: usize,
            k: usize,
            mr: usize,
            cols: usize,
        ) {
            let mut acc = [[zero(); NV]; MR];
            let mut cnt = [W; NV];
            if !FULL {
                for (j, c) in cnt.iter_mut().enumerate() {
                    *c = cols.saturating_sub(j * W).min(W);
                }
            }
            for p in 0..k {
                let brow = bp.add(p * ldb);
                let mut bv = [zero(); NV];
                for j in 0..NV {
                    bv[j] = if FULL {
                        ld(brow.add(j * W))
                    } else {
                        ldm(brow.add(j * W), cnt[j])
                    };
                }
                let arow = ap.add(p * MR);
                for r in 0..MR {
                    let av = bc(arow.add(r));
                    for j in 0..NV {
                        acc[r][j] = fma(av, bv[j], acc[r][j]);
                    }
                }
            }
            for r in 0..mr {
                let crow = cp.add(r * ldc);
                for j in 0..NV {
                    if FULL {
                        st(crow.add(j * W), acc[r][j]);
                    } else {
                        stm(crow.add(j * W), acc[r][j], cnt[j]);
                    }
                }
            }
        }
    };
}

/// The depthwise plane kernel body for the AVX2 / AVX-512 modules (uses `V`, `W`, `zero`,
/// `ld`, `ldm`, `st`, `stm`, `bc`, `fma` and the module's stride-2 loader `ld_s2`).
macro_rules! dw_body {
    ($feat:literal) => {
        /// See [`super::dw_kernel`] for the contract.
        ///
        /// # Safety
        /// The CPU must support the module's ISA; the plane, taps and output must be as the
        /// contract describes.
        #[target_feature(enable = $feat)]
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn dw(
            sp: *const f32,
            pw: usize,
            taps: *const f32,
            kh: usize,
            kw: usize,
            sy: usize,
            sx: usize,
            dy: usize,
            dx: usize,
            oh: usize,
            ow: usize,
            y: *mut f32,
        ) {
            let g = Geom {
                sp,
                pw,
                taps,
                kh,
                kw,
                sy,
                dy,
                dx,
                ow,
                y,
            };
            match sx {
                1 => dw_rows::<1>(&g, oh),
                2 => dw_rows::<2>(&g, oh),
                _ => dw_rows_any(&g, oh, sx),
            }
        }

        struct Geom {
            sp: *const f32,
            pw: usize,
            taps: *const f32,
            kh: usize,
            kw: usize,
            sy: usize,
            dy: usize,
            dx: usize,
            ow: usize,
            y: *mut f32,
        }

        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn dw_rows<const SX: usize>(g: &Geom, oh: usize) {
            let mut oy = 0;
            while oy + 8 <= oh {
                block::<8, SX>(g, oy, SX);
                oy += 8;
            }
            if oy + 4 <= oh {
                block::<4, SX>(g, oy, SX);
                oy += 4;
            }
            if oy + 2 <= oh {
                block::<2, SX>(g, oy, SX);
                oy += 2;
            }
            if oy < oh {
                block::<1, SX>(g, oy, SX);
            }
        }

        #[target_feature(enable = $feat)]
        #[inline(never)]
        unsafe fn dw_rows_any(g: &Geom, oh: usize, sx: usize) {
            for oy in 0..oh {
                block::<1, 0>(g, oy, sx);
            }
        }

        /// `n` (1..=W) inputs at element stride `sx` from `p` (stride 0 in `SX` = any).
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn load<const SX: usize>(p: *const f32, n: usize, sx: usize) -> V {
            match SX {
                1 => {
                    if n == W {
                        ld(p)
                    } else {
                        ldm(p, n)
                    }
                }
                2 => ld_s2(p, n),
                _ => {
                    let mut t = [0.0f32; W];
                    for (i, v) in t.iter_mut().enumerate().take(n) {
                        *v = *p.add(i * sx);
                    }
                    ld(t.as_ptr())
                }
            }
        }

        /// `RB` output rows from `oy`, column chunks of `W`; the taps broadcast once per
        /// chunk and shared by the rows (independent accumulator chains).
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn block<const RB: usize, const SX: usize>(g: &Geom, oy: usize, sx: usize) {
            let mut ox = 0;
            while ox < g.ow {
                let n = (g.ow - ox).min(W);
                let mut acc = [zero(); RB];
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let t = bc(g.taps.add(ky * g.kw + kx));
                        let col = ox * sx + kx * g.dx;
                        for (r, a) in acc.iter_mut().enumerate() {
                            let row = (oy + r) * g.sy + ky * g.dy;
                            let v = load::<SX>(g.sp.add(row * g.pw + col), n, sx);
                            *a = fma(v, t, *a);
                        }
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    let dst = g.y.add((oy + r) * g.ow + ox);
                    if n == W {
                        st(dst, *a);
                    } else {
                        stm(dst, *a, n);
                    }
                }
                ox += W;
            }
        }
    };
}

/// SSE4.2 baseline: 4 x 8 tile of 128-bit vectors, multiply + add (no FMA).
pub mod sse {
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;
    type V = __m128;
    const W: usize = 4;
    /// Rows of the register tile.
    pub const MR: usize = 4;
    const NV: usize = 2;

    #[target_feature(enable = "sse4.2")]
    #[inline]
    unsafe fn zero() -> V {
        _mm_setzero_ps()
    }
    #[target_feature(enable = "sse4.2")]
    #[inline]
    unsafe fn ld(p: *const f32) -> V {
        _mm_loadu_ps(p)
    }
    #[target_feature(enable = "sse4.2")]
    #[inline]
    unsafe fn ldm(p: *const f32, n: usize) -> V {
        let mut t = [0.0f32; 4];
        for (i, v) in t.iter_mut().enumerate().take(n) {
            *v = *p.add(i);
        }
        _mm_loadu_ps(t.as_ptr())
    }
    #[target_feature(enable = "sse4.2")]
    #[inline]
    unsafe fn st(p: *mut f32, v: V) {
        _mm_storeu_ps(p, v)
    }
    #[target_feature(enable = "sse4.2")]
    #[inline]
    unsafe fn stm(p: *mut f32, v: V, n: usize) {
        let mut t = [0.0f32; 4];
        _mm_storeu_ps(t.as_mut_ptr(), v);
        for (i, x) in t.iter().enumerate().take(n) {
            *p.add(i) = *x;
        }
    }
    #[target_feature(enable = "sse4.2")]
    #[inline]
    unsafe fn bc(p: *const f32) -> V {
        _mm_set1_ps(*p)
    }
    #[target_feature(enable = "sse4.2")]
    #[inline]
    unsafe fn fma(a: V, b: V, c: V) -> V {
        _mm_add_ps(_mm_mul_ps(a, b), c)
    }
    gemm_body!("sse4.2");
}

/// AVX2 + FMA: 4 x 24 tile of 256-bit vectors (12 accumulators).
pub mod avx2 {
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;
    type V = __m256;
    const W: usize = 8;
    /// Rows of the register tile.
    pub const MR: usize = 4;
    const NV: usize = 3;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn zero() -> V {
        _mm256_setzero_ps()
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn ld(p: *const f32) -> V {
        _mm256_loadu_ps(p)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn mask(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn ldm(p: *const f32, n: usize) -> V {
        _mm256_maskload_ps(p, mask(n))
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn st(p: *mut f32, v: V) {
        _mm256_storeu_ps(p, v)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn stm(p: *mut f32, v: V, n: usize) {
        _mm256_maskstore_ps(p, mask(n), v)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn bc(p: *const f32) -> V {
        _mm256_broadcast_ss(&*p)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn fma(a: V, b: V, c: V) -> V {
        _mm256_fmadd_ps(a, b, c)
    }
    /// Elements `0, 2, .., 2(n-1)` from `p` (reads exactly `2n - 1` floats).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn ld_s2(p: *const f32, n: usize) -> V {
        let m = 2 * n - 1;
        let a = ldm(p, m.min(W));
        let b = ldm(p.add(W), m.saturating_sub(W));
        let t = _mm256_shuffle_ps(a, b, 0b10_00_10_00);
        _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), 0b11_01_10_00))
    }
    gemm_body!("avx2,fma");
    dw_body!("avx2,fma");
}

/// AVX-512F: 8 x 32 tile of 512-bit vectors (16 accumulators), mask registers for tails.
pub mod avx512 {
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;
    type V = __m512;
    const W: usize = 16;
    /// Rows of the register tile.
    pub const MR: usize = 8;
    const NV: usize = 2;

    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn zero() -> V {
        _mm512_setzero_ps()
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn ld(p: *const f32) -> V {
        _mm512_loadu_ps(p)
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn ldm(p: *const f32, n: usize) -> V {
        _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, p)
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn st(p: *mut f32, v: V) {
        _mm512_storeu_ps(p, v)
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn stm(p: *mut f32, v: V, n: usize) {
        _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as __mmask16, v)
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn bc(p: *const f32) -> V {
        _mm512_set1_ps(*p)
    }
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn fma(a: V, b: V, c: V) -> V {
        _mm512_fmadd_ps(a, b, c)
    }
    /// Elements `0, 2, .., 2(n-1)` from `p` (reads exactly `2n - 1` floats).
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn ld_s2(p: *const f32, n: usize) -> V {
        let m = 2 * n - 1;
        let a = ldm(p, m.min(W));
        let b = ldm(p.add(W), m.saturating_sub(W));
        let idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        _mm512_permutex2var_ps(a, idx, b)
    }
    gemm_body!("avx512f,avx2,fma");
    dw_body!("avx512f,avx2,fma");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn kernels_match_naive_on_ragged_shapes() {
        for t in Target::host_jit_targets() {
            let kern = gemm_kernel(t).unwrap();
            for &(m, n, k) in &[
                (1, 1, 1),
                (3, 7, 5),
                (9, 33, 17),
                (17, 50, 3),
                (8, 32, 64),
                (13, 100, 40),
            ] {
                let a = rand(m * k, 1);
                let b = rand(k * (n + 3), 2);
                let ldb = n + 3;
                let ldc = n + 2;
                let mut c = vec![7.0f32; m * ldc];
                let ap = pack_a(&a, m, k, kern.mr);
                unsafe { (kern.func)(m, n, k, ap.as_ptr(), b.as_ptr(), ldb, c.as_mut_ptr(), ldc) };
                for i in 0..m {
                    for j in 0..ldc {
                        let got = c[i * ldc + j];
                        if j >= n {
                            assert_eq!(got, 7.0, "{t} wrote outside C at ({i},{j})");
                            continue;
                        }
                        let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * ldb + j]).sum();
                        assert!(
                            (got - want).abs() <= 1e-5 * (k as f32),
                            "{t} {m}x{n}x{k} at ({i},{j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn dw_kernels_match_naive_and_stay_in_bounds() {
        for t in Target::host_jit_targets() {
            let Some((_, f)) = dw_kernel(t) else { continue };
            // (oh, ow, kh, kw, sy, sx, dy, dx)
            for &(oh, ow, kh, kw, sy, sx, dy, dx) in &[
                (1, 1, 1, 1, 1, 1, 1, 1),
                (7, 7, 3, 3, 1, 1, 1, 1),
                (9, 21, 5, 5, 2, 2, 1, 1),
                (3, 40, 3, 3, 1, 2, 2, 2),
                (13, 17, 3, 2, 3, 3, 1, 2),
                (5, 33, 7, 7, 1, 1, 1, 1),
            ] {
                let hp = (oh - 1) * sy + (kh - 1) * dy + 1;
                let wp = (ow - 1) * sx + (kw - 1) * dx + 1;
                // A sentinel after the plane: exactly the elements the contract allows are read.
                let mut plane = rand(hp * wp, 3);
                plane.extend([f32::NAN; 64]);
                let taps = rand(kh * kw, 4);
                let mut y = vec![9.0f32; oh * ow + 40];
                unsafe {
                    f(
                        plane.as_ptr(),
                        wp,
                        taps.as_ptr(),
                        kh,
                        kw,
                        sy,
                        sx,
                        dy,
                        dx,
                        oh,
                        ow,
                        y.as_mut_ptr(),
                    )
                };
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut want = 0.0f32;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                want += taps[ky * kw + kx]
                                    * plane[(oy * sy + ky * dy) * wp + ox * sx + kx * dx];
                            }
                        }
                        let got = y[oy * ow + ox];
                        assert!(
                            (got - want).abs() <= 1e-5 * (kh * kw) as f32,
                            "{t} ({oy},{ox}): {got} vs {want}"
                        );
                    }
                }
                assert!(
                    y[oh * ow..].iter().all(|&v| v == 9.0),
                    "{t}: wrote past the output"
                );
            }
        }
    }
}
