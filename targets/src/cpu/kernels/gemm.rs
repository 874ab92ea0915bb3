//! The GEMM kernel family: signature and table entry ([`GemmFn`], [`Kernel`]), A packing
//! ([`pack_a`]), the thread driver (`gemm_drive`), the per-ISA body (`gemm_body!`: column
//! register tiles) and the AVX-512 tiles with output rows in the lanes
//! (`rows_in_lanes_body!`, chosen by [`rows_in_lanes`]).

use super::drive::{part, part_tent, PAR_MIN_WORK, TASKS_PER_THREAD};
use super::epilogue::{Epi, Epilogue};
use super::words_to_blob;
use crate::cpu::isa;
use crate::Target;

/// The shape and epilogue of one GEMM call, stored in the weights blob
/// ([`GemmCall::to_blob`]) and read by the kernel: `C[m x n] = act(A[m x k] B[k x n] +
/// bias[row] + R)` with B's rows `ldb` floats apart and C's (and R's) `ldc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmCall {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub ldb: u64,
    pub ldc: u64,
    pub epi: Epilogue,
}

impl GemmCall {
    /// The struct as f32 bit patterns, for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        let [e0, e1] = self.epi.to_words();
        words_to_blob(&[self.m, self.n, self.k, self.ldb, self.ldc, e0, e1])
    }
}

/// Signature of the GEMM entry points: `(a_packed, b, c, bias, residual, call, threads)`;
/// `bias` and `residual` are read only where the call's [`Epilogue`] has them.
pub type GemmFn = unsafe extern "C" fn(
    *const f32,
    *const f32,
    *mut f32,
    *const f32,
    *const f32,
    *const GemmCall,
    usize,
);

/// Number of parameters of [`GemmFn`].
pub const GEMM_PARAMS: usize = 7;

/// The GEMM kernel of one ISA: its symbol name, entry point and register tile.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// Symbol name under which the JIT resolves it.
    pub symbol: &'static str,
    /// Entry point (only called when the host runs the target).
    pub func: GemmFn,
    /// Rows of the register tile (rows per packed A block).
    pub mr: usize,
    /// Columns of the register tile.
    pub nr: usize,
    /// The vector width of the kernel's tiles with output rows in the lanes (`None` where
    /// it has none): it runs an `m x n` call that way when [`rows_in_lanes`]`(m, n,
    /// lanes)` holds ([`Kernel::rows_in_lanes`]).
    pub row_lanes: Option<usize>,
    /// Rows of those tiles (the rows of a packed A block for them; unused without
    /// `row_lanes`).
    pub row_tile: usize,
}

impl Kernel {
    /// Whether the kernel runs an `m x n` call with its output rows in the vector lanes.
    pub fn rows_in_lanes(&self, m: usize, n: usize) -> bool {
        self.row_lanes
            .is_some_and(|lanes| rows_in_lanes(m, n, lanes))
    }

    /// Rows per packed A block the kernel reads for an `m x n` call ([`pack_a`]'s `mr`):
    /// the row tile with the output rows in the lanes, so that each `k` step of a tile
    /// reads A as consecutive vectors; else the register tile's rows.
    pub fn a_block_rows(&self, m: usize, n: usize) -> usize {
        if self.rows_in_lanes(m, n) {
            self.row_tile
        } else {
            self.mr
        }
    }
}

/// The GEMM kernel the given JIT target uses (`None` for the reference and CUDA targets):
/// [`IsaDesc::gemm`](crate::cpu::IsaDesc::gemm) of its table entry.
pub fn gemm_kernel(t: Target) -> Option<Kernel> {
    isa(t).map(|d| d.gemm)
}

/// Floats of B per column panel (128 KiB: stays in L2 next to the A block).
pub(super) const PANEL_FLOATS: usize = 32 * 1024;

/// Bytes to which a copied B panel's rows are aligned (a cache line).
const PANEL_ALIGN: usize = 64;

std::thread_local! {
    /// This thread's buffer for copied B panels ([`panel_buffer`]): grown on first use,
    /// reused by every later call.
    static PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether a GEMM task copies each B panel into an aligned buffer before its tiles read it:
/// B's rows do not start on `lanes`-float boundaries (a 14x14 plane's 196 floats), so most
/// vector loads of B would cross a cache line (on Intel cores a split load costs two, and the
/// tiles' loads of B are what stalls: 8 x 32 tiles over 576 x 576 x 192 in cache ran at 100
/// GFLOP/s with rows 196 floats apart against 135 with 192 or 208, Ice Lake), and more than
/// at least [`COPY_MIN_ROW_BLOCKS`] blocks of rows read the panel (the copy is one more pass
/// over it). A pure function of the call, which changes no arithmetic: the tiles compute the
/// same FMA chains either way.
pub(super) fn copies_b_panels(
    b: *const f32,
    ldb: usize,
    lanes: usize,
    rows: usize,
    mr: usize,
) -> bool {
    rows >= COPY_MIN_ROW_BLOCKS * mr
        && (!ldb.is_multiple_of(lanes) || !(b as usize).is_multiple_of(lanes * 4))
}

/// Blocks of rows of a GEMM task from which copying its B panels pays: MobileNetV2's 14x14
/// expansions (64 -> 384, 96 -> 576: 32-48 blocks of 6 rows per task at 2 threads) ran 9-16%
/// faster with the copy on Zen 4, its projections (384 -> 64, 576 -> 96: 6-8 blocks per task,
/// 384-576 rows of B per panel) 2-8% slower (with every task of more than one block copying,
/// session 19's rule, measured on Ice Lake only).
pub(super) const COPY_MIN_ROW_BLOCKS: usize = 16;

/// Full row tiles of a rows-in-lanes GEMM task from which packing its B columns tile by tile
/// pays (each tile then reads `k` runs of its few columns, contiguous, instead of `k` rows of
/// B a plane apart): on Zen 4, MobileNetV2's 7x7 layers at 1 thread on AVX2 (16-row tiles,
/// 6-80 per call) 0.88-1.0x their time; on AVX-512 (64-row tiles) the projections with 1-2
/// tiles and 576-960 rows of B 1.10-1.15x (the packing pass not repaid), the expansions with
/// 15 tiles 0.96-0.99x.
pub(super) const PACK_MIN_ROW_TILES: usize = 4;

/// Row stride (floats) of a copied panel of `cols` columns: whole vectors of `lanes`.
pub(super) fn panel_stride(cols: usize, lanes: usize) -> usize {
    cols.div_ceil(lanes) * lanes
}

/// This thread's panel buffer with room for `floats` floats, [`PANEL_ALIGN`]-aligned. The
/// pointer stays valid until the next call on this thread (the only user is a GEMM task,
/// which does not call it again before it is done with the panel).
pub(super) fn panel_buffer(floats: usize) -> *mut f32 {
    PANEL.with(|p| {
        let mut v = p.borrow_mut();
        let need = floats + PANEL_ALIGN / 4;
        if v.len() < need {
            v.resize(need, 0.0);
        }
        let base = v.as_mut_ptr();
        // `align_offset` of an f32 pointer to 64 bytes is below 16 elements (f32 pointers are
        // 4-aligned), inside the slack reserved above.
        base.wrapping_add(base.align_offset(PANEL_ALIGN))
    })
}

/// Copies columns `c0..c1` of B's `k` rows (`ldb` apart) to `dst`, rows `ld` apart.
///
/// # Safety
/// `b` holds `k` rows of `ldb` floats with columns `c0..c1` readable; `dst` holds `k * ld`
/// writable floats (`ld >= c1 - c0`) not overlapping B.
pub(super) unsafe fn copy_panel(
    b: *const f32,
    ldb: usize,
    k: usize,
    c0: usize,
    c1: usize,
    dst: *mut f32,
    ld: usize,
) {
    for p in 0..k {
        // SAFETY: row `p`'s columns `c0..c1` and `dst`'s row `p` exist (contract).
        unsafe { std::ptr::copy_nonoverlapping(b.add(p * ldb + c0), dst.add(p * ld), c1 - c0) };
    }
}

/// One GEMM call, shared by its tasks.
pub(super) struct Gemm {
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) a: *const f32,
    pub(super) b: *const f32,
    pub(super) ldb: usize,
    pub(super) c: *mut f32,
    pub(super) ldc: usize,
    pub(super) epi: Epi,
}

// SAFETY: the tasks of one call read `a`, `b`, bias and residual and write disjoint parts of
// `c` (each output element belongs to exactly one task); the dispatcher outlives them.
unsafe impl Sync for Gemm {}

/// Whether the AVX-512 GEMM computes an `m x n` call with its output rows in the vector
/// lanes ([`super::avx512::ROW_TILE`] rows x at most [`super::avx512::COL_TILE`] columns per register tile,
/// the tile transposed in registers before the epilogue) instead of its columns: when `m` is
/// a multiple of the row tile and vectors of columns would leave more than one lane in eight
/// empty (the 49 columns of a 7x7 plane fill 49 of 64 lanes; 960 rows fill all of theirs).
/// A pure function of the shape: both ways compute every output with the same arithmetic
/// (an FMA chain over `k` ascending from zero), so the results are identical.
pub fn rows_in_lanes(m: usize, n: usize, lanes: usize) -> bool {
    let row_tile = 2 * lanes;
    // Columns per vector (AVX-512) or per two-vector tile (AVX2): 16 either way.
    let cols = 16;
    m > 0 && m.is_multiple_of(row_tile) && n > 0 && 8 * n < 7 * n.div_ceil(cols) * cols
}

/// Runs a GEMM (rows `r0..r1` in whole `mr` blocks, columns `c0..c1`) as tasks on `threads`,
/// cut as [`gemm_split`] says for the tiles (`rows_first`: the rows-in-lanes tiles).
///
/// # Safety
/// As for the ISA's `range` function: `g` describes valid buffers.
pub(super) unsafe fn gemm_drive(
    range: unsafe fn(&Gemm, usize, usize, usize, usize),
    mr: usize,
    nr: usize,
    rows_first: bool,
    g: &Gemm,
    threads: usize,
) {
    let threads = crate::cpu::par::threads_now(threads);
    let (mb, nt) = (g.m.div_ceil(mr), g.n.div_ceil(nr));
    if threads <= 1 || g.m * g.n * g.k < PAR_MIN_WORK || mb * nt < 2 {
        // SAFETY: the whole call, as the caller's contract allows.
        return unsafe { range(g, 0, g.m, 0, g.n) };
    }
    let want = threads
        .saturating_mul(TASKS_PER_THREAD)
        .min(g.m * g.n * g.k / (PAR_MIN_WORK / 4))
        .max(2);
    let split = gemm_split(g.m, g.k, rows_first);
    let (rc, cc) = task_grid(mb, nt, want, threads, split);
    crate::cpu::par::for_each(threads, cc * rc, &|t| {
        let ri = t / cc;
        // The tasks in the middle of the list are the smallest ([`part_tent`]): the rows
        // when they alone are split, else the columns of each row range (whose ranges stay
        // equal: one per thread for an expansion).
        let (b0, b1) = if cc == 1 {
            part_tent(mb, rc, 0, rc, ri)
        } else {
            part(mb, rc, ri)
        };
        let (t0, t1) = part_tent(nt, rc * cc, ri * cc, (ri + 1) * cc, t);
        let (r0, r1) = (b0 * mr, (b1 * mr).min(g.m));
        let (c0, c1) = (t0 * nr, (t1 * nr).min(g.n));
        if r0 < r1 && c0 < c1 {
            // SAFETY: disjoint sub-ranges of the caller's valid call.
            unsafe { range(g, r0, r1, c0, c1) }
        }
    });
}

/// How a GEMM call's tasks cut it ([`task_grid`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Split {
    /// Column ranges first (the column tiles: each task reads all of A, which the panels
    /// reread anyway).
    Columns,
    /// Row blocks first (the rows-in-lanes tiles: a 7x7 layer's few columns cut into eight
    /// tasks had each one stream all of the weights, and MobileNetV3-Large's 160 -> 960
    /// layers ran 1.2x faster on 2 threads than on one).
    Rows,
    /// One range of row blocks per thread, each cut into column ranges: an expansion
    /// (`m >= EXPAND_RATIO * k`, the 1x1 conv before an inverted residual block's depthwise
    /// conv). The pool's caller claims tasks from the front and pool threads from the back
    /// ([`crate::cpu::par`]), so each thread computes about one range of output channels,
    /// and the depthwise conv after it, split by planes the same way, reads its input
    /// planes from its own core's cache; split by columns, half of the expanded tensor (the
    /// largest of the block) crossed to the other core. MobileNetV2 / EfficientNet-B0 /
    /// MobileNetV3-Large batch 1 at 2 threads, alternating binaries (Zen 4, noisy VM):
    /// 0.971 and 1.003, 0.987, 0.981 the earlier time; `x86_64-avx2` 0.982.
    RowsPerThread,
}

/// Rows at least this many times the depth make a GEMM an expansion ([`Split::RowsPerThread`]):
/// 2 takes in MobileNetV3's 2.3-4x expansions too. Against a mark of 4, MobileNetV3-Large
/// batch 1 at 2 threads took 0.989x the time (38 alternating rounds, 26 faster), 0.992x on
/// `x86_64-avx2`; MobileNetV3-Small 1.004x. Projections (`m < k`) never qualify.
pub(super) const EXPAND_RATIO: usize = 2;

/// Whether a 1x1 conv's GEMM of `m` output rows over depth `k` is an expansion (`m >=
/// EXPAND_RATIO * k`): the f32 GEMM ([`gemm_split`]) and the int8 conv
/// (`int8::qconv_by_channels`) then split the output channels one range per thread.
pub(super) fn expands(m: usize, k: usize) -> bool {
    m >= EXPAND_RATIO.saturating_mul(k)
}

/// How an `m x n x k` GEMM is cut into tasks: [`Split::Rows`] for the rows-in-lanes tiles
/// (`rows_first`), [`Split::RowsPerThread`] for an expansion, else [`Split::Columns`]. A pure
/// function of the shape; the results do not depend on it.
pub(super) fn gemm_split(m: usize, k: usize, rows_first: bool) -> Split {
    if rows_first {
        Split::Rows
    } else if expands(m, k) {
        Split::RowsPerThread
    } else {
        Split::Columns
    }
}

/// The tasks of a GEMM split, `(row ranges, column ranges)`, for `mb` row blocks, `nt`
/// column tiles, about `want` tasks and `threads` threads: the columns ([`Split::Columns`])
/// or the rows ([`Split::Rows`]) cut into as many ranges as they have tiles up to `want`, the
/// other side into what is left; [`Split::RowsPerThread`] cuts the rows into `threads`
/// ranges (columns first where there are fewer row blocks than threads).
pub(super) fn task_grid(
    mb: usize,
    nt: usize,
    want: usize,
    threads: usize,
    split: Split,
) -> (usize, usize) {
    match split {
        Split::Rows => {
            let rc = mb.min(want);
            (rc, nt.min(want.div_ceil(rc)))
        }
        Split::RowsPerThread if mb >= threads && threads > 0 => {
            (threads, nt.min(want.div_ceil(threads)))
        }
        Split::Columns | Split::RowsPerThread => {
            let cc = nt.min(want);
            (mb.min(want.div_ceil(cc)), cc)
        }
    }
}

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

/// The GEMM body, shared by the ISA modules (uses `NV`, `MR` and the module's helpers).
macro_rules! gemm_body {
    ($feat:literal) => {
        gemm_body!($feat, |g: &super::Gemm, threads: usize| {
            // SAFETY: as for `gemm_drive` (the caller's contract).
            unsafe { super::gemm_drive(range, MR, NR, false, g, threads) }
        });
    };
    // `drive(g, threads)` runs a whole call (the module may pick other tiles by shape).
    ($feat:literal, $drive:expr) => {
        /// Columns per register tile.
        pub const NR: usize = NV * W;

        /// See the module docs of `kernels` for the contract.
        ///
        /// # Safety
        /// The CPU must support the module's ISA; `call` must be readable (at any alignment)
        /// and describe the buffers: `a` must hold `ceil(m / MR) * k * MR` floats, `b` `k`
        /// rows of `ldb` (at least `n` readable), `c` (and the residual when the epilogue has
        /// one) `m` rows of `ldc`, the bias (when the epilogue has one) `m` floats.
        pub unsafe extern "C" fn gemm(
            a: *const f32,
            b: *const f32,
            c: *mut f32,
            bias: *const f32,
            res: *const f32,
            call: *const super::GemmCall,
            threads: usize,
        ) {
            let drive: unsafe fn(&super::Gemm, usize) = $drive;
            // SAFETY: `call` is readable and describes the buffers (contract; the blob keeps
            // it 8-byte aligned, but the guard-page test mode may not), and the CPU runs the
            // ISA.
            super::at_boundary(|| unsafe {
                let call = std::ptr::read_unaligned(call);
                let g = super::Gemm {
                    m: call.m as usize,
                    n: call.n as usize,
                    k: call.k as usize,
                    a,
                    b,
                    ldb: call.ldb as usize,
                    c,
                    ldc: call.ldc as usize,
                    epi: super::Epi::new(&call.epi, bias, res),
                };
                drive(&g, threads)
            })
        }

        /// Rows `r0..r1` (`r0` a multiple of `MR`) and columns `c0..c1` of the call.
        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `g` describes buffers as [`gemm`]'s contract states;
        /// rows `r0..r1` (`r0` a multiple of `MR`) and columns `c0..c1` lie inside the call and no
        /// other task writes them.
        unsafe fn range(g: &super::Gemm, r0: usize, r1: usize, c0: usize, c1: usize) {
            // The exponential activations take the lockstep epilogue (`finish_n`) where the
            // module's `EPI_LOCKSTEP` says so; the others one vector at a time (in one
            // function the arrays cost them 14-30% on a 16 -> 96 conv at 112x112 without
            // activation, Zen 4).
            // SAFETY: as this function's contract.
            unsafe {
                if EPI_LOCKSTEP
                    && matches!(g.epi.act, super::ActKind::Silu | super::ActKind::Sigmoid)
                {
                    range_with::<true>(g, r0, r1, c0, c1)
                } else {
                    range_with::<false>(g, r0, r1, c0, c1)
                }
            }
        }

        /// [`range`] with the epilogue's form (`LOCK`: [`finish_n`] per row) chosen.
        #[target_feature(enable = $feat)]
        /// # Safety
        /// As for [`range`].
        unsafe fn range_with<const LOCK: bool>(
            g: &super::Gemm,
            r0: usize,
            r1: usize,
            c0: usize,
            c1: usize,
        ) {
            // SAFETY: every tile lies inside rows `r0..r1`, columns `c0..c1` of the call (the loops
            // clip the last panel, block and tile), which the contract gives this task.
            unsafe {
                let panel = (super::PANEL_FLOATS / g.k.max(1)).max(NR) / NR * NR;
                // Misaligned rows of B: each panel is copied to an aligned buffer first.
                let copy = super::copies_b_panels(g.b, g.ldb, W, r1 - r0, MR);
                let buf = if copy {
                    let width = panel.min(c1 - c0);
                    super::panel_buffer(g.k * super::panel_stride(width, W))
                } else {
                    std::ptr::null_mut()
                };
                let mut p0 = c0;
                while p0 < c1 {
                    let p1 = (p0 + panel).min(c1);
                    // B's column `p0` and its row stride, in B or in the copy.
                    let (bp, ldb) = if copy {
                        let ld = super::panel_stride(p1 - p0, W);
                        super::copy_panel(g.b, g.ldb, g.k, p0, p1, buf, ld);
                        (buf as *const f32, ld)
                    } else {
                        (g.b.add(p0), g.ldb)
                    };
                    let mut mb = r0;
                    while mb < r1 {
                        let mr = (r1 - mb).min(MR);
                        let mut nb = p0;
                        while nb + NR <= p1 {
                            tile::<true, NV, LOCK>(g, bp.add(nb - p0), ldb, mb, nb, mr, NR);
                            nb += NR;
                        }
                        // The last tile computes only the vectors that hold columns (the
                        // 4 columns left of a 14x14 plane's 196 are one vector, not `NV`).
                        let (rest, bt) = (p1 - nb, bp.add(nb - p0));
                        match rest.div_ceil(W) {
                            0 => {}
                            1 => tile::<false, 1, LOCK>(g, bt, ldb, mb, nb, mr, rest),
                            2 if NV > 2 => tile::<false, 2, LOCK>(g, bt, ldb, mb, nb, mr, rest),
                            3 if NV > 3 => tile::<false, 3, LOCK>(g, bt, ldb, mb, nb, mr, rest),
                            _ => tile::<false, NV, LOCK>(g, bt, ldb, mb, nb, mr, rest),
                        }
                        mb += MR;
                    }
                    p0 = p1;
                }
            }
        }

        /// One register tile of `VN` vectors: rows `row..row + mr`, columns `col..col + cols`,
        /// B's column `col` at `bp` with its rows `ldb` floats apart (in B or in a copied
        /// panel).
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; as for [`range`]; rows `row..row + mr` (`mr <= MR`)
        /// and columns `col..col + cols` (`cols <= VN * W`, `== VN * W` when `FULL`) lie
        /// inside the call; `bp` holds `k` rows of `ldb` floats with `cols` readable.
        unsafe fn tile<const FULL: bool, const VN: usize, const LOCK: bool>(
            g: &super::Gemm,
            bp: *const f32,
            ldb: usize,
            row: usize,
            col: usize,
            mr: usize,
            cols: usize,
        ) {
            // SAFETY: the tile lies inside the call (contract): A's block `row / MR` holds `k * MR`
            // floats, `bp`'s rows `0..k` hold `cols` columns, C rows `row..row + mr` hold
            // `col + cols` columns; the partial tile loads and stores `cnt[j]` lanes only.
            unsafe {
                let (ap, k) = (g.a.add(row * g.k), g.k);
                let mut acc = [[zero(); VN]; MR];
                let mut cnt = [W; VN];
                if !FULL {
                    for (j, c) in cnt.iter_mut().enumerate() {
                        *c = cols.saturating_sub(j * W).min(W);
                    }
                }
                for p in 0..k {
                    let brow = bp.add(p * ldb);
                    let mut bv = [zero(); VN];
                    for j in 0..VN {
                        // `wrapping_add`: an empty chunk's address may lie past the buffer (never
                        // dereferenced: a masked load of 0 lanes reads nothing).
                        bv[j] = if FULL {
                            ld(brow.add(j * W))
                        } else {
                            ldm(brow.wrapping_add(j * W), cnt[j])
                        };
                    }
                    let arow = ap.add(p * MR);
                    for r in 0..MR {
                        let av = bc(arow.add(r));
                        for j in 0..VN {
                            acc[r][j] = fma(av, bv[j], acc[r][j]);
                        }
                    }
                }
                let e = &g.epi;
                for r in 0..mr {
                    let off = (row + r) * g.ldc + col;
                    let crow = g.c.add(off);
                    let bias = if e.bias.is_null() {
                        zero()
                    } else {
                        bc(e.bias.add(row + r))
                    };
                    if LOCK {
                        // The row's vectors through the exponential together (`finish_n`:
                        // their chains side by side); an empty vector's residual is not
                        // read (`cnt` 0 lanes).
                        let mut res = [std::ptr::null(); VN];
                        if !e.res.is_null() {
                            for (j, p) in res.iter_mut().enumerate() {
                                *p = e.res.wrapping_add(off + j * W);
                            }
                        }
                        let v = finish_n(acc[r], e, bias, res, cnt);
                        for j in 0..VN {
                            if FULL {
                                st(crow.add(j * W), v[j]);
                            } else if cnt[j] > 0 {
                                stm(crow.add(j * W), v[j], cnt[j]);
                            }
                        }
                        continue;
                    }
                    for j in 0..VN {
                        let res = if e.res.is_null() {
                            std::ptr::null()
                        } else {
                            e.res.wrapping_add(off + j * W)
                        };
                        if FULL {
                            st(crow.add(j * W), finish(acc[r][j], e, bias, res, W));
                        } else if cnt[j] > 0 {
                            let v = finish(acc[r][j], e, bias, res, cnt[j]);
                            stm(crow.add(j * W), v, cnt[j]);
                        }
                    }
                }
            }
        }
    };
}

/// The tile of `$rv` vectors of rows and `$nc` columns, `rows_tile::<$rv, $nc>` for each
/// listed width (the last also for any larger `$nc`): a constant width inside each tile.
macro_rules! rows_tile_match {
    (
        $rv:tt; $nc:expr, $g:expr, $bp:expr, $ldb:expr, $row:expr, $col:expr, $pf:expr;
        $($w:literal)* ; $last:literal
    ) => {
        match $nc {
            $($w => rows_tile::<$rv, $w>($g, $bp, $ldb, $row, $col, $pf),)*
            _ => rows_tile::<$rv, $last>($g, $bp, $ldb, $row, $col, $pf),
        }
    };
}

/// The GEMM tiles with output rows in the vector lanes ([`rows_in_lanes`]): `ROW_TILE`,
/// `rows_range`, `rows_tile`, `rows_tile_n` (the width dispatch) and `prefetch_a` of a
/// module, with its `ROW_TILE_VECTORS`, `COL_TILE` and `rows_tail_n` (from
/// [`rows_tile16_body`] or [`rows_tile8_body`]; uses its helpers and `transpose`); A packed
/// in blocks of `ROW_TILE` rows ([`Kernel::a_block_rows`]).
macro_rules! rows_in_lanes_body {
    ($feat:literal) => {
        /// Rows per register tile of the rows-in-lanes GEMM ([`super::rows_in_lanes`]):
        /// `ROW_TILE_VECTORS` vectors (the rows of a packed A block).
        pub const ROW_TILE: usize = ROW_TILE_VECTORS * W;

        /// Rows `r0..r1` and columns `c0..c1` of a rows-in-lanes GEMM: row tiles of
        /// [`ROW_TILE`] (a last one of two vectors where `r1` ends there), the columns cut
        /// into nearly equal tiles of at most `COL_TILE` (`TAIL_COL_TILE` in the two-vector
        /// tile). With at least [`super::PACK_MIN_ROW_TILES`] full row tiles, the full tiles
        /// read B's columns packed tile by tile into this thread's panel buffer (the same
        /// values: the results do not change).
        #[target_feature(enable = $feat)]
        /// # Safety
        /// As for [`range`], with `r0` a multiple of [`ROW_TILE`], `r1` one or `m` (a multiple
        /// of two vectors) and A packed in blocks of [`ROW_TILE`] rows.
        unsafe fn rows_range(g: &super::Gemm, r0: usize, r1: usize, c0: usize, c1: usize) {
            // SAFETY: every tile lies inside rows `r0..r1`, columns `c0..c1` (contract).
            unsafe {
                let full_row_tiles = (r1 - r0) / ROW_TILE;
                let col_tiles = (c1 - c0).div_ceil(COL_TILE);
                // B's columns packed by the full row tiles' column tiles (tile `t` of
                // columns `a..b`: `k` rows of `b - a` floats from `a * k`) where at least
                // `PACK_MIN_ROW_TILES` row tiles read them.
                let packed = if full_row_tiles >= super::PACK_MIN_ROW_TILES {
                    let buf = super::panel_buffer(g.k * (c1 - c0));
                    for t in 0..col_tiles {
                        let (a, b) = super::part(c1 - c0, col_tiles, t);
                        super::copy_panel(g.b, g.ldb, g.k, c0 + a, c0 + b, buf.add(a * g.k), b - a);
                    }
                    buf as *const f32
                } else {
                    std::ptr::null()
                };
                let mut row = r0;
                while row < r1 {
                    let full = row + ROW_TILE <= r1;
                    let width = if full { COL_TILE } else { TAIL_COL_TILE };
                    let tiles = (c1 - c0).div_ceil(width);
                    for t in 0..tiles {
                        // The first column tile prefetches the next row tile's A into L2.
                        let pf = if t == 0 && row + ROW_TILE < r1 {
                            g.a.add((row + ROW_TILE) * g.k)
                        } else {
                            std::ptr::null()
                        };
                        let (a, b) = super::part(c1 - c0, tiles, t);
                        if full && !packed.is_null() {
                            rows_tile_n(g, packed.add(a * g.k), b - a, row, c0 + a, pf, b - a);
                        } else if full {
                            rows_tile_n(g, g.b.add(c0 + a), g.ldb, row, c0 + a, pf, b - a);
                        } else {
                            rows_tail_n(g, g.b.add(c0 + a), g.ldb, row, c0 + a, pf, b - a);
                        }
                    }
                    row += ROW_TILE;
                }
            }
        }

        /// The tile of `nc` (1..=[`COL_TILE`], 6 on both ISAs) columns.
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// As for [`rows_tile`].
        #[allow(clippy::too_many_arguments)]
        unsafe fn rows_tile_n(
            g: &super::Gemm,
            bp: *const f32,
            ldb: usize,
            row: usize,
            col: usize,
            pf: *const f32,
            nc: usize,
        ) {
            // SAFETY: as this function's contract.
            unsafe {
                rows_tile_match!(ROW_TILE_VECTORS; nc, g, bp, ldb, row, col, pf; 1 2 3 4 5; 6)
            }
        }

        /// Prefetches `k` step `p` of the next row tile's A (`ROW_TILE` floats from `pf + p *
        /// ROW_TILE`) into L2, a cache line at a time.
        #[target_feature(enable = $feat)]
        #[inline]
        fn prefetch_a(pf: *const f32, p: usize) {
            let at = pf.wrapping_add(p * ROW_TILE);
            for line in 0..(ROW_TILE * 4).div_ceil(64) {
                // A prefetch never faults.
                _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(line * 16) as *const i8);
            }
        }

        /// One rows-in-lanes register tile: rows `row..row + RV * W`, columns `col..col +
        /// NC`. Per `k`: `RV` consecutive vectors of A (from its packed block of
        /// [`ROW_TILE`] rows), `NC` broadcasts of B, `RV * NC` FMAs, and (when `pf` is not
        /// null) the `k` step's part of the next row tile's A at `pf` prefetched into L2
        /// (`prefetch_a`: the weights of the 7x7 layers come cold from L3, and the first
        /// column tile of each row tile fetches the next one's while it computes); then each
        /// vector's `W x NC` block is transposed so that the epilogue and the store run along
        /// a row, as in [`tile`].
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// As for [`range`]; rows `row..row + RV * W` (`RV <= ROW_TILE_VECTORS`) and columns
        /// `col..col + NC` lie inside the call (`NC <= W`), A packed in blocks of
        /// [`ROW_TILE`] rows.
        unsafe fn rows_tile<const RV: usize, const NC: usize>(
            g: &super::Gemm,
            bp: *const f32,
            ldb: usize,
            row: usize,
            col: usize,
            pf: *const f32,
        ) {
            const { assert!(NC <= W && RV <= ROW_TILE_VECTORS) };
            // SAFETY: A's block holding rows `row..row + RV * W` exists (the row tile lies
            // inside `m`, the block is padded to `ROW_TILE` rows); B rows `0..k` hold columns
            // `col..col + NC`; C (and the residual) rows `row..row + RV * W` hold them too
            // (contract).
            unsafe {
                let a = g.a.add(row * g.k);
                let mut acc = [[zero(); NC]; RV];
                for p in 0..g.k {
                    let ap = a.add(p * ROW_TILE);
                    let mut x = [zero(); RV];
                    for (h, v) in x.iter_mut().enumerate() {
                        *v = ld(ap.add(h * W));
                    }
                    let brow = bp.add(p * ldb);
                    if !pf.is_null() {
                        prefetch_a(pf, p);
                    }
                    for j in 0..NC {
                        let b = bc(brow.add(j));
                        for h in 0..RV {
                            acc[h][j] = fma(x[h], b, acc[h][j]);
                        }
                    }
                }
                let e = &g.epi;
                for (h, part) in acc.iter().enumerate() {
                    let mut v = [zero(); W];
                    v[..NC].copy_from_slice(part);
                    let v = transpose(v);
                    for (r, x) in v.iter().enumerate() {
                        let m = row + h * W + r;
                        let off = m * g.ldc + col;
                        stm(g.c.add(off), finish_at(*x, e, m, off, NC), NC);
                    }
                }
            }
        }
    };
}

/// The AVX-512 rows-in-lanes parts of [`rows_in_lanes_body`] for a 16-lane module.
macro_rules! rows_tile16_body {
    ($feat:literal) => {
        /// Vectors of rows per register tile of the rows-in-lanes GEMM (64 rows: four
        /// vectors of A and six broadcasts of B per 24 FMAs, as the column tile's ratio).
        pub const ROW_TILE_VECTORS: usize = 4;
        /// Most columns per register tile (4 x 6 accumulators, four vectors of A and a
        /// broadcast: 29 of the 32 registers).
        pub const COL_TILE: usize = 6;
        /// Most columns per tile of the two-vector tile that ends a call whose `m` is not a
        /// multiple of 64 (2 x 12 accumulators).
        pub const TAIL_COL_TILE: usize = 12;

        /// The two-vector tile of `nc` (1..=[`TAIL_COL_TILE`]) columns.
        #[target_feature(enable = $feat)]
        #[inline(never)]
        /// # Safety
        /// As for [`rows_tile`].
        #[allow(clippy::too_many_arguments)]
        unsafe fn rows_tail_n(
            g: &super::Gemm,
            bp: *const f32,
            ldb: usize,
            row: usize,
            col: usize,
            pf: *const f32,
            nc: usize,
        ) {
            // SAFETY: as this function's contract.
            unsafe {
                rows_tile_match!(2; nc, g, bp, ldb, row, col, pf; 1 2 3 4 5 6 7 8 9 10 11; 12)
            }
        }
    };
}

/// The AVX2 rows-in-lanes parts of [`rows_in_lanes_body`] for an 8-lane module.
macro_rules! rows_tile8_body {
    ($feat:literal) => {
        /// Vectors of rows per register tile of the rows-in-lanes GEMM (16 rows).
        pub const ROW_TILE_VECTORS: usize = 2;
        /// Most columns per register tile of the rows-in-lanes GEMM (2 x 6 accumulators, two
        /// vectors of A and a broadcast of B: 15 of the 16 registers).
        pub const COL_TILE: usize = 6;
        /// As [`COL_TILE`]: the row tile is two vectors, so no call ends in a shorter one.
        pub const TAIL_COL_TILE: usize = COL_TILE;

        /// As [`rows_tile_n`] (never called: every row tile is whole).
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// As for [`rows_tile`].
        #[allow(clippy::too_many_arguments)]
        unsafe fn rows_tail_n(
            g: &super::Gemm,
            bp: *const f32,
            ldb: usize,
            row: usize,
            col: usize,
            pf: *const f32,
            nc: usize,
        ) {
            // SAFETY: as this function's contract.
            unsafe { rows_tile_n(g, bp, ldb, row, col, pf, nc) }
        }
    };
}
