//! The matrix-vector kernel family (one row times a constant matrix: the classifier at
//! batch 1): signature, thread driver and per-ISA body (`gemv_body!`).

use super::drive::{part, PAR_MIN_WORK, TASKS_PER_THREAD};
use super::epilogue::{Epi, Epilogue};
use super::words_to_blob;
use crate::cpu::isa;
use crate::Target;

/// Vectors of columns per block of the matrix-vector kernel (its accumulators).
pub const GEMV_VECTORS: usize = 8;

/// Columns per block of the matrix-vector kernel of an ISA with `lanes` f32 per vector: the
/// width of the column blocks [`pack_gemv_b`] stores.
pub fn gemv_block_cols(lanes: usize) -> usize {
    GEMV_VECTORS * lanes
}

/// The `k x n` row-major matrix `b` as the matrix-vector kernel of an ISA with `lanes` f32
/// per vector reads it: column blocks of [`gemv_block_cols`]`(lanes)`, each `k` rows of the
/// block's columns, `[ceil(n / cols)][k][cols]`, the last block zero-padded. A block is one
/// contiguous stream (the hardware prefetchers follow it; rows of `n` floats made every
/// block a strided walk), and every load is a whole vector.
pub fn pack_gemv_b(b: &[f32], k: usize, n: usize, lanes: usize) -> Vec<f32> {
    let cols = gemv_block_cols(lanes);
    let blocks = n.div_ceil(cols);
    let mut out = vec![0.0f32; blocks * k * cols];
    if out.is_empty() {
        return out;
    }
    for (blk, dst) in out.chunks_exact_mut(k * cols).enumerate() {
        let (j0, j1) = (blk * cols, ((blk + 1) * cols).min(n));
        for (p, row) in dst.chunks_exact_mut(cols).enumerate() {
            row[..j1 - j0].copy_from_slice(&b[p * n + j0..p * n + j1]);
        }
    }
    out
}

/// Most rows of A a matrix-vector call takes ([`GemvCall::m`]): a few rows (a batch's
/// classifier inputs) share each column block of B while it is in L2, which streams from
/// memory once per call; more rows go to the GEMM.
pub const GEMV_MAX_ROWS: usize = 16;

/// The shape and epilogue of one matrix-vector call, stored in the weights blob
/// ([`GemvCall::to_blob`]): `y[i][j] = act(sum_p x[i][p] * B[p][j] + bias[j] +
/// residual[i][j])` for `i < m`, `j < n`, `p < k` (`x`, `y` and the residual row-major), with
/// `B` stored by [`pack_gemv_b`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemvCall {
    /// Rows of A (1 ..= [`GEMV_MAX_ROWS`]).
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub epi: Epilogue,
}

impl GemvCall {
    /// The struct as f32 bit patterns, for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        let [e0, e1] = self.epi.to_words();
        words_to_blob(&[self.m, self.n, self.k, e0, e1])
    }
}

/// Signature of the matrix-vector entry points (one row of A times a constant B):
/// `(x, b, y, bias, residual, call, threads)`; `bias` and `residual` are read only where the
/// call's [`Epilogue`] has them.
pub type GemvFn = unsafe extern "C" fn(
    *const f32,
    *const f32,
    *mut f32,
    *const f32,
    *const f32,
    *const GemvCall,
    usize,
);

/// Number of parameters of [`GemvFn`].
pub const GEMV_PARAMS: usize = 7;

/// The matrix-vector kernel of a target, with its symbol name (from its
/// [`IsaDesc`](crate::cpu::IsaDesc)).
pub fn gemv_kernel(t: Target) -> Option<(&'static str, GemvFn)> {
    isa(t).map(|d| (d.gemv.symbol, d.gemv.func))
}

/// One matrix-vector call, shared by its tasks.
pub(super) struct Gemv {
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) x: *const f32,
    pub(super) b: *const f32,
    pub(super) y: *mut f32,
    pub(super) epi: Epi,
}

// SAFETY: tasks read x, b, bias, residual and write disjoint column ranges of y.
unsafe impl Sync for Gemv {}

/// Runs a matrix-vector product as column ranges (multiples of `cols`) on `threads`.
///
/// # Safety
/// As for the ISA's `gemv_cols`.
pub(super) unsafe fn gemv_drive(
    range: unsafe fn(&Gemv, usize, usize),
    cols: usize,
    g: &Gemv,
    threads: usize,
) {
    let threads = crate::cpu::par::threads_now(threads);
    let blocks = g.n.div_ceil(cols);
    if threads <= 1 || g.m * g.n * g.k < PAR_MIN_WORK || blocks < 2 {
        // SAFETY: the whole call, as the caller's contract allows.
        return unsafe { range(g, 0, g.n) };
    }
    let tasks = blocks.min(threads.saturating_mul(TASKS_PER_THREAD));
    crate::cpu::par::for_each(threads, tasks, &|t| {
        let (b0, b1) = part(blocks, tasks, t);
        let (c0, c1) = (b0 * cols, (b1 * cols).min(g.n));
        if c0 < c1 {
            // SAFETY: disjoint column ranges of the caller's valid call.
            unsafe { range(g, c0, c1) }
        }
    });
}

/// The matrix-vector body, shared by the ISA modules.
macro_rules! gemv_body {
    ($feat:literal) => {
        /// Vectors of columns per block of B ([`super::pack_gemv_b`]).
        const GV: usize = super::GEMV_VECTORS;
        /// Rows of A per multi-row tile: they share each vector of B loaded (`ROWS x
        /// ROW_VECTORS` accumulators, `ROWS` broadcasts and one vector of B in registers).
        const ROWS: usize = 3;
        /// Vectors of columns per multi-row tile (the block in `GV / ROW_VECTORS` passes).
        const ROW_VECTORS: usize = if W == 16 { 8 } else { 4 };

        /// See [`super::GemvFn`] for the contract.
        ///
        /// # Safety
        /// The CPU must support the module's ISA; `call` is readable (at any alignment);
        /// `x` holds `m x k` floats, `b` the `k x n` matrix as [`super::pack_gemv_b`] stores
        /// it for `W` lanes, `y` (and the residual where the epilogue has one) `m x n`, the
        /// bias (where it has one) `n`.
        pub unsafe extern "C" fn gemv(
            x: *const f32,
            b: *const f32,
            y: *mut f32,
            bias: *const f32,
            res: *const f32,
            call: *const super::GemvCall,
            threads: usize,
        ) {
            // SAFETY: `call` is readable and describes the buffers (contract), and the CPU
            // runs the ISA.
            super::at_boundary(|| unsafe {
                let call = std::ptr::read_unaligned(call);
                let g = super::Gemv {
                    m: call.m as usize,
                    n: call.n as usize,
                    k: call.k as usize,
                    x,
                    b,
                    y,
                    epi: super::Epi::new(&call.epi, bias, res),
                };
                super::gemv_drive(gemv_cols, GV * W, &g, threads)
            })
        }

        /// Columns `c0..c1` of the call, one block of `GV` vectors of columns at a time: a
        /// single row as one tile of `GV` vectors, more rows in tiles of up to [`ROWS`] rows x
        /// [`ROW_VECTORS`] vectors (the block stays in L2 while its rows pass). Every output
        /// is one FMA chain over `k` ascending from zero, whatever the tile: identical
        /// results for any `m` and thread count.
        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `g` describes buffers as [`gemv`]'s contract states;
        /// `c0..c1` lies inside `0..n` (`c0` a multiple of `GV * W`) and no other task writes
        /// those columns.
        unsafe fn gemv_cols(g: &super::Gemv, c0: usize, c1: usize) {
            // SAFETY: every tile lies inside rows `0..m` and the block's columns (contract).
            unsafe {
                let mut c = c0;
                while c < c1 {
                    let mut cnt = [0usize; GV];
                    for (j, n) in cnt.iter_mut().enumerate() {
                        *n = (c1 - c).saturating_sub(j * W).min(W);
                    }
                    let mut r = 0;
                    while r < g.m {
                        let rows = (g.m - r).min(ROWS);
                        if rows == 1 {
                            row_tile::<1, GV>(g, r, c, 0, &cnt);
                        } else {
                            for v0 in (0..GV).step_by(ROW_VECTORS) {
                                if rows == 2 {
                                    row_tile::<2, ROW_VECTORS>(g, r, c, v0, &cnt);
                                } else {
                                    row_tile::<ROWS, ROW_VECTORS>(g, r, c, v0, &cnt);
                                }
                            }
                        }
                        r += rows;
                    }
                    c += GV * W;
                }
            }
        }

        /// Rows `r..r + R` times vectors `v0..v0 + VN` of the column block from column `c`
        /// (`cnt[v]`: the columns of vector `v` inside the call).
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// As for [`gemv_cols`]; rows `r..r + R` lie inside `0..m`, `v0 + VN <= GV`, `c` is
        /// the block's first column.
        unsafe fn row_tile<const R: usize, const VN: usize>(
            g: &super::Gemv,
            r: usize,
            c: usize,
            v0: usize,
            cnt: &[usize; GV],
        ) {
            // SAFETY: `x` rows `r..r + R` hold `k` floats each; the block (`k` rows of `GV * W`
            // floats, zero-padded) starts at `c * k`; `y`, residual and bias columns `c + v *
            // W ..+ cnt[v]` lie inside the call (contract).
            unsafe {
                let mut acc = [[zero(); VN]; R];
                let mut brow = g.b.add(c * g.k + v0 * W);
                let xr = g.x.add(r * g.k);
                for p in 0..g.k {
                    let xv: [V; R] = std::array::from_fn(|i| bc(xr.add(i * g.k + p)));
                    for j in 0..VN {
                        let bv = ld(brow.add(j * W));
                        for i in 0..R {
                            acc[i][j] = fma(xv[i], bv, acc[i][j]);
                        }
                    }
                    brow = brow.add(GV * W);
                }
                let e = &g.epi;
                for j in 0..VN {
                    let n = cnt[v0 + j];
                    if n == 0 {
                        continue;
                    }
                    let at = c + (v0 + j) * W;
                    let bias = if e.bias.is_null() {
                        zero()
                    } else if n == W {
                        ld(e.bias.add(at))
                    } else {
                        ldm(e.bias.add(at), n)
                    };
                    for (i, a) in acc.iter().enumerate() {
                        let off = (r + i) * g.n + at;
                        let res = if e.res.is_null() {
                            std::ptr::null()
                        } else {
                            e.res.add(off)
                        };
                        let v = finish(a[j], e, bias, res, n);
                        if n == W {
                            st(g.y.add(off), v);
                        } else {
                            stm(g.y.add(off), v, n);
                        }
                    }
                }
            }
        }
    };
}
