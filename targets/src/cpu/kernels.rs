//! Conv/GEMM kernels in Rust `std::arch`, compiled once per ISA and called by the generated
//! code (registered with the JIT as symbols, see [`Kernel::symbol`] and [`dw_kernel`]).
//!
//! Entry points per ISA (all with the epilogue fused: bias, residual, activation from
//! [`encode_act`], applied to the registers before the only store):
//!
//! - **GEMM** ([`GemmFn`]): `C[m x n] = act(A[m x k] * B[k x n] + bias[row] + R)`. `A` is
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
use crate::Target;
use mnc_ir::Activation;
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
struct Epi {
    /// Per-row bias (null: none).
    bias: *const f32,
    /// Residual with the output's layout (null: none).
    res: *const f32,
    code: u64,
    p0: f32,
    p1: f32,
}

impl Epi {
    fn new(bias: *const f32, res: *const f32, code: u64, pp: u64) -> Epi {
        Epi {
            bias,
            res,
            code,
            p0: f32::from_bits(pp as u32),
            p1: f32::from_bits((pp >> 32) as u32),
        }
    }
}

/// Signature of the GEMM entry points:
/// `(m, n, k, a_packed, b, ldb, c, ldc, bias, residual, act, act_params, threads)`;
/// `bias` and `residual` may be null.
pub type GemmFn = unsafe extern "C" fn(
    usize,
    usize,
    usize,
    *const f32,
    *const f32,
    usize,
    *mut f32,
    usize,
    *const f32,
    *const f32,
    u64,
    u64,
    usize,
);

/// Number of parameters of [`GemmFn`].
pub const GEMM_PARAMS: usize = 13;

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
}

/// The GEMM kernel the given JIT target uses (`None` for the reference and CUDA targets):
/// [`IsaDesc::gemm`](super::IsaDesc::gemm) of its table entry.
pub fn gemm_kernel(t: Target) -> Option<Kernel> {
    isa(t).map(|d| d.gemm)
}

/// Signature of the matrix-vector entry points (one row of A times a constant B):
/// `(n, k, x, b, y, bias, residual, act, act_params, threads)`: `y[j] = act(sum_p x[p] *
/// b[p * n + j] + bias[j] + residual[j])`; `bias` and `residual` may be null.
pub type GemvFn = unsafe extern "C" fn(
    usize,
    usize,
    *const f32,
    *const f32,
    *mut f32,
    *const f32,
    *const f32,
    u64,
    u64,
    usize,
);

/// Number of parameters of [`GemvFn`].
pub const GEMV_PARAMS: usize = 10;

/// The matrix-vector kernel of a target, with its symbol name (from its
/// [`IsaDesc`](super::IsaDesc)).
pub fn gemv_kernel(t: Target) -> Option<(&'static str, GemvFn)> {
    isa(t).map(|d| (d.gemv.symbol, d.gemv.func))
}

/// One matrix-vector call, shared by its tasks.
struct Gemv {
    n: usize,
    k: usize,
    x: *const f32,
    b: *const f32,
    y: *mut f32,
    epi: Epi,
}

// SAFETY: tasks read x, b, bias, residual and write disjoint column ranges of y.
unsafe impl Sync for Gemv {}

/// Runs a matrix-vector product as column ranges (multiples of `cols`) on `threads`.
///
/// # Safety
/// As for the ISA's `gemv_cols`.
unsafe fn gemv_drive(range: unsafe fn(&Gemv, usize, usize), cols: usize, g: &Gemv, threads: usize) {
    let threads = super::par::threads_now(threads);
    let blocks = g.n.div_ceil(cols);
    if threads <= 1 || g.n * g.k < PAR_MIN_WORK || blocks < 2 {
        // SAFETY: the whole call, as the caller's contract allows.
        return unsafe { range(g, 0, g.n) };
    }
    let tasks = blocks.min(threads.saturating_mul(TASKS_PER_THREAD));
    super::par::for_each(threads, tasks, &|t| {
        let (b0, b1) = part(blocks, tasks, t);
        let (c0, c1) = (b0 * cols, (b1 * cols).min(g.n));
        if c0 < c1 {
            // SAFETY: disjoint column ranges of the caller's valid call.
            unsafe { range(g, c0, c1) }
        }
    });
}

/// Shape and activations of a SqueezeExcite op, stored in the weights blob like [`DwGeom`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeGeom {
    pub n: u64,
    pub c: u64,
    /// Elements per channel plane.
    pub hw: u64,
    /// Hidden width (rows of the first weight).
    pub r: u64,
    /// Hidden activation and gate ([`encode_act`]).
    pub act: u64,
    pub act_params: u64,
    pub gate: u64,
    pub gate_params: u64,
}

impl SeGeom {
    /// The struct as f32 bit patterns, for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        words_to_blob(&[
            self.n,
            self.c,
            self.hw,
            self.r,
            self.act,
            self.act_params,
            self.gate,
            self.gate_params,
        ])
    }

    /// Floats of scratch the op needs (the squeezed vector and the hidden one).
    pub fn scratch_floats(&self) -> usize {
        (self.c + self.r) as usize
    }
}

/// `u64` words as f32 bit patterns (two per word, little-endian halves).
fn words_to_blob(words: &[u64]) -> Vec<f32> {
    words
        .iter()
        .flat_map(|&w| [f32::from_bits(w as u32), f32::from_bits((w >> 32) as u32)])
        .collect()
}

/// Signature of the SqueezeExcite entry points: `(x, w1, b1, w2, b2, y, scratch, geometry,
/// threads)`: per batch element, `s = mean over each plane of x`, `h = act(w1 s + b1)`,
/// `g = gate(w2 h + b2)`, `y = x * g` per channel.
pub type SeFn = unsafe extern "C" fn(
    *const f32,
    *const f32,
    *const f32,
    *const f32,
    *const f32,
    *mut f32,
    *mut f32,
    *const SeGeom,
    usize,
);

/// Number of parameters of [`SeFn`].
pub const SE_PARAMS: usize = 9;

/// The SqueezeExcite kernel of a target, with its symbol name (from its
/// [`IsaDesc`](super::IsaDesc)).
pub fn se_kernel(t: Target) -> Option<(&'static str, SeFn)> {
    isa(t).map(|d| (d.se.symbol, d.se.func))
}

/// One SqueezeExcite call, shared by its tasks.
struct Se {
    x: *const f32,
    w1: *const f32,
    b1: *const f32,
    w2: *const f32,
    b2: *const f32,
    y: *mut f32,
    scratch: *mut f32,
    g: SeGeom,
}

// SAFETY: the tasks of one phase write disjoint channels of `scratch` (squeeze) or of `y`
// (excite); phases are separated by the pool's join.
unsafe impl Sync for Se {}

/// The phases of a SqueezeExcite op of one ISA.
struct SePhases {
    /// Means of channels `c0..c1` of batch element `b` into `scratch[c]`.
    squeeze: unsafe fn(&Se, usize, usize, usize),
    /// The hidden vector of batch element `b` (serial: `r` short dot products).
    hidden: unsafe fn(&Se),
    /// Gates and scales channels `c0..c1` of batch element `b`.
    excite: unsafe fn(&Se, usize, usize, usize),
}

/// Runs a SqueezeExcite op: per batch element, squeeze and excite split by channels.
///
/// # Safety
/// As for the ISA's phase functions.
unsafe fn se_drive(ph: &SePhases, d: &Se, threads: usize) {
    let threads = super::par::threads_now(threads);
    let (c, hw) = (d.g.c as usize, d.g.hw as usize);
    let tasks = if threads <= 1 || c * hw < PAR_MIN_WORK {
        1
    } else {
        threads.saturating_mul(TASKS_PER_THREAD).min(c)
    };
    for b in 0..d.g.n as usize {
        super::par::for_each(threads, tasks, &|t| {
            let (c0, c1) = part(c, tasks, t);
            // SAFETY: disjoint channel ranges of a valid call.
            unsafe { (ph.squeeze)(d, b, c0, c1) }
        });
        // SAFETY: the squeeze of batch element `b` is complete (the pool joined) and no
        // task runs now.
        unsafe { (ph.hidden)(d) };
        super::par::for_each(threads, tasks, &|t| {
            let (c0, c1) = part(c, tasks, t);
            // SAFETY: as above.
            unsafe { (ph.excite)(d, b, c0, c1) }
        });
    }
}

/// Geometry and epilogue of a depthwise op (one input channel per group), stored in the
/// weights blob as `u64` words (see [`DwGeom::to_blob`]) and read by the kernel.
///
/// Output plane `q` (`0..planes`, `= b * co + o`) reads input plane `b * ci + o / cog`, taps
/// `w[o * kh * kw ..]`, `bias[o]`, residual plane `q`. The zero-padded copy of an input plane
/// is `hp x wp` floats with the input at row `pt`, column `pl`; every tap read of every output
/// lies inside it. The stem kernel reads the same struct (see [`stem::scratch_floats`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwGeom {
    pub planes: u64,
    pub co: u64,
    pub ci: u64,
    pub cog: u64,
    pub h: u64,
    pub w: u64,
    pub pt: u64,
    pub pl: u64,
    pub kh: u64,
    pub kw: u64,
    pub sy: u64,
    pub sx: u64,
    pub dy: u64,
    pub dx: u64,
    pub oh: u64,
    pub ow: u64,
    pub hp: u64,
    pub wp: u64,
    /// Activation code and parameters ([`encode_act`]).
    pub act: u64,
    pub act_params: u64,
    /// Padded planes the scratch area holds (one per task; the most tasks a call uses).
    pub tasks: u64,
}

impl DwGeom {
    /// The struct as f32 bit patterns (two per `u64`, little-endian), for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        words_to_blob(&[
            self.planes,
            self.co,
            self.ci,
            self.cog,
            self.h,
            self.w,
            self.pt,
            self.pl,
            self.kh,
            self.kw,
            self.sy,
            self.sx,
            self.dy,
            self.dx,
            self.oh,
            self.ow,
            self.hp,
            self.wp,
            self.act,
            self.act_params,
            self.tasks,
        ])
    }

    /// Whether the depthwise kernel of an ISA with `lanes` f32 per vector computes these
    /// planes with the channels in the vector lanes, [`LANE_CHANNELS`] planes at a time
    /// (the AVX-512 kernel, on planes of at most [`LANE_MAX_PIXELS`] outputs, where one
    /// plane at a time leaves lanes empty and pays its fixed costs per channel). A pure
    /// function of the shape; both ways give identical results.
    pub fn in_lanes(&self, lanes: usize) -> bool {
        lanes == LANE_CHANNELS
            && self.oh.saturating_mul(self.ow) <= LANE_MAX_PIXELS
            && self.kh.saturating_mul(self.kw) <= LANE_MAX_TAPS
    }

    /// Floats of scratch one task needs on an ISA with `lanes` f32 per vector: the padded
    /// plane, or with the channels in the lanes ([`DwGeom::in_lanes`]) the padded planes,
    /// the output pixels and the taps of `lanes` channels, interleaved (`None` on overflow).
    pub fn task_floats(&self, lanes: usize) -> Option<usize> {
        let plane = self.hp.checked_mul(self.wp)?;
        let f = if self.in_lanes(lanes) {
            let out = (self.oh * self.ow).next_multiple_of(lanes as u64);
            plane
                .checked_add(out)?
                .checked_add(self.kh * self.kw)?
                .checked_mul(lanes as u64)?
        } else {
            plane
        };
        usize::try_from(f).ok()
    }

    /// Floats of scratch the op needs on an ISA with `lanes` f32 per vector: one
    /// [`DwGeom::task_floats`] area per task (`None` on overflow).
    pub fn scratch_floats(&self, lanes: usize) -> Option<usize> {
        self.task_floats(lanes)?
            .checked_mul(usize::try_from(self.tasks).ok()?)
    }
}

/// Channels per step of a depthwise op computed with the channels in the vector lanes
/// ([`DwGeom::in_lanes`]): one AVX-512 vector.
pub const LANE_CHANNELS: usize = 16;
/// Most output pixels per plane computed with the channels in the vector lanes.
pub const LANE_MAX_PIXELS: u64 = 64;
/// Most taps of a window computed with the channels in the vector lanes.
pub const LANE_MAX_TAPS: u64 = 49;

/// Signature of the depthwise op entry points:
/// `(x, taps, bias, residual, y, scratch, geometry, threads)`; `bias` and `residual` may be
/// null.
pub type DwFn = unsafe extern "C" fn(
    *const f32,
    *const f32,
    *const f32,
    *const f32,
    *mut f32,
    *mut f32,
    *const DwGeom,
    usize,
);

/// Number of parameters of [`DwFn`].
pub const DW_PARAMS: usize = 8;

/// The depthwise op kernel of a target (`None` where generated 128-bit code is used: the SSE
/// baseline), with its symbol name (from its [`IsaDesc`](super::IsaDesc)).
pub fn dw_kernel(t: Target) -> Option<(&'static str, DwFn)> {
    isa(t).and_then(|d| d.dw).map(|d| (d.symbol, d.func))
}

/// Multiply-adds below which a call is not split between threads.
const PAR_MIN_WORK: usize = 1 << 16;
/// Tasks per thread a split aims for (dynamic claiming balances a slow thread).
const TASKS_PER_THREAD: usize = 4;
/// Floats of B per column panel (128 KiB: stays in L2 next to the A block).
const PANEL_FLOATS: usize = 32 * 1024;

/// One GEMM call, shared by its tasks.
struct Gemm {
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    epi: Epi,
}

// SAFETY: the tasks of one call read `a`, `b`, bias and residual and write disjoint parts of
// `c` (each output element belongs to exactly one task); the dispatcher outlives them.
unsafe impl Sync for Gemm {}

/// `part(len, parts, i)`: the `i`-th of `parts` nearly equal ranges of `0..len`.
fn part(len: usize, parts: usize, i: usize) -> (usize, usize) {
    (len * i / parts, len * (i + 1) / parts)
}

/// Whether the AVX-512 GEMM computes an `m x n` call with its output rows in the vector
/// lanes ([`avx512::ROW_TILE`] rows x at most [`avx512::COL_TILE`] columns per register tile,
/// the tile transposed in registers before the epilogue) instead of its columns: when `m` is
/// a multiple of the row tile and vectors of columns would leave more than one lane in eight
/// empty (the 49 columns of a 7x7 plane fill 49 of 64 lanes; 960 rows fill all of theirs).
/// A pure function of the shape: both ways compute every output with the same arithmetic
/// (an FMA chain over `k` ascending from zero), so the results are identical.
pub fn rows_in_lanes(m: usize, n: usize, lanes: usize) -> bool {
    let row_tile = 2 * lanes;
    m > 0 && m.is_multiple_of(row_tile) && n > 0 && 8 * n < 7 * n.div_ceil(lanes) * lanes
}

/// Runs a GEMM (rows `r0..r1` in whole `mr` blocks, columns `c0..c1`) as tasks on `threads`.
///
/// # Safety
/// As for the ISA's `range` function: `g` describes valid buffers.
unsafe fn gemm_drive(
    range: unsafe fn(&Gemm, usize, usize, usize, usize),
    mr: usize,
    nr: usize,
    g: &Gemm,
    threads: usize,
) {
    let threads = super::par::threads_now(threads);
    let (mb, nt) = (g.m.div_ceil(mr), g.n.div_ceil(nr));
    if threads <= 1 || g.m * g.n * g.k < PAR_MIN_WORK || mb * nt < 2 {
        // SAFETY: the whole call, as the caller's contract allows.
        return unsafe { range(g, 0, g.m, 0, g.n) };
    }
    let want = threads
        .saturating_mul(TASKS_PER_THREAD)
        .min(g.m * g.n * g.k / (PAR_MIN_WORK / 4))
        .max(2);
    let cc = nt.min(want);
    let rc = mb.min(want.div_ceil(cc));
    super::par::for_each(threads, cc * rc, &|t| {
        let (ri, ci) = (t / cc, t % cc);
        let (b0, b1) = part(mb, rc, ri);
        let (t0, t1) = part(nt, cc, ci);
        let (r0, r1) = (b0 * mr, (b1 * mr).min(g.m));
        let (c0, c1) = (t0 * nr, (t1 * nr).min(g.n));
        if r0 < r1 && c0 < c1 {
            // SAFETY: disjoint sub-ranges of the caller's valid call.
            unsafe { range(g, r0, r1, c0, c1) }
        }
    });
}

/// One depthwise or stem call ([`DwFn`], [`stem::StemFn`]), shared by its tasks.
struct Dw {
    x: *const f32,
    w: *const f32,
    bias: *const f32,
    res: *const f32,
    y: *mut f32,
    scratch: *mut f32,
    g: DwGeom,
}

// SAFETY: tasks read x/w/bias/res and write disjoint output planes (depthwise) or rows (stem)
// and scratch planes of their own (depthwise: one per task; stem: the padding phase writes
// disjoint planes before the row phase only reads them).
unsafe impl Sync for Dw {}

impl Dw {
    /// The call's arguments as one value, the geometry copied out of the blob.
    ///
    /// # Safety
    /// `geom` is valid for reading one [`DwGeom`] (at any alignment).
    unsafe fn new(
        x: *const f32,
        w: *const f32,
        bias: *const f32,
        res: *const f32,
        y: *mut f32,
        scratch: *mut f32,
        geom: *const DwGeom,
    ) -> Dw {
        Dw {
            x,
            w,
            bias,
            res,
            y,
            scratch,
            // The blob keeps it 8-byte aligned, but the guard-page test mode may not.
            // SAFETY: `geom` is readable (contract).
            g: unsafe { std::ptr::read_unaligned(geom) },
        }
    }
}

/// Runs a depthwise op as ranges of planes on `threads`, each task with its own padded plane.
///
/// # Safety
/// As for the ISA's `planes` function.
unsafe fn dw_drive(
    planes: unsafe fn(&Dw, usize, usize, *mut f32),
    lanes: usize,
    d: &Dw,
    threads: usize,
) {
    let g = &d.g;
    let n = g.planes as usize;
    let work = n * (g.oh * g.ow * g.kh * g.kw) as usize;
    // The geometry's scratch was sized by `scratch_floats(lanes)` (contract).
    let area = g.task_floats(lanes).unwrap_or(0);
    plane_ranges(threads, n, work, g.tasks as usize, &|q0, q1, t| {
        // SAFETY: task `t` owns scratch area `t` (the geometry reserves `tasks` of them);
        // disjoint ranges of the caller's planes.
        unsafe { planes(d, q0, q1, d.scratch.add(t * area)) }
    });
}

/// Runs `f(q0, q1, t)` over ranges of `0..n` planes on `threads`: one task (`t = 0`, every
/// plane) below [`PAR_MIN_WORK`] multiply-adds (`work`) or on one thread, else at most
/// `max_tasks` (the scratch areas a geometry reserves, one per task `t`).
fn plane_ranges(
    threads: usize,
    n: usize,
    work: usize,
    max_tasks: usize,
    f: &(dyn Fn(usize, usize, usize) + Sync),
) {
    let threads = super::par::threads_now(threads);
    let tasks = if threads <= 1 || work < PAR_MIN_WORK {
        1
    } else {
        max_tasks.min(n).max(1)
    };
    if tasks == 1 {
        return f(0, n, 0);
    }
    super::par::for_each(threads, tasks, &|t| {
        let (q0, q1) = part(n, tasks, t);
        f(q0, q1, t)
    });
}

/// How many tasks (and scratch planes) a depthwise op with `threads` uses.
pub fn dw_tasks(threads: usize) -> usize {
    if threads <= 1 {
        1
    } else {
        threads.saturating_mul(TASKS_PER_THREAD)
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

/// Vector math shared by the ISA modules (each provides `V`, `W`, `zero`, `splat`, `add`,
/// `sub`, `mul`, `div`, `min`, `max`, `fma`, `round`, `pow2` and `ld`/`ldm`/`st`/`stm`):
/// the fused activations, with `exp` as in the generated code (range reduction by `n ln2`,
/// degree-6 polynomial, `2^n` built in the exponent bits).
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
            let r = sub(x, mul(fx, splat(0.693_359_4)));
            let r = sub(r, mul(fx, splat(-2.121_944_4e-4)));
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
            mul(y, pow2(fx))
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
        unsafe fn finish(mut v: V, e: &super::Epi, bias: V, res: *const f32, n: usize) -> V {
            // SAFETY: `res` holds `n` readable f32 when not null (this function's contract).
            unsafe {
                if !e.bias.is_null() {
                    v = add(v, bias);
                }
                if !res.is_null() {
                    v = add(v, if n == W { ld(res) } else { ldm(res, n) });
                }
                act(v, e.code, e.p0, e.p1)
            }
        }
    };
}

/// The GEMM body, shared by the ISA modules (uses `NV`, `MR` and the module's helpers).
macro_rules! gemm_body {
    ($feat:literal) => {
        gemm_body!($feat, |g: &super::Gemm, threads: usize| {
            // SAFETY: as for `gemm_drive` (the caller's contract).
            unsafe { super::gemm_drive(range, MR, NR, g, threads) }
        });
    };
    // `drive(g, threads)` runs a whole call (the module may pick other tiles by shape).
    ($feat:literal, $drive:expr) => {
        /// Columns per register tile.
        pub const NR: usize = NV * W;

        /// See the module docs of `kernels` for the contract.
        ///
        /// # Safety
        /// The CPU must support the module's ISA; `a` must hold `ceil(m / MR) * k * MR`
        /// floats, `b` `k` rows of `ldb` (at least `n` readable), `c` (and the residual when
        /// not null) `m` rows of `ldc`, the bias (when not null) `m` floats.
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn gemm(
            m: usize,
            n: usize,
            k: usize,
            a: *const f32,
            b: *const f32,
            ldb: usize,
            c: *mut f32,
            ldc: usize,
            bias: *const f32,
            res: *const f32,
            act: u64,
            act_params: u64,
            threads: usize,
        ) {
            let g = super::Gemm {
                m,
                n,
                k,
                a,
                b,
                ldb,
                c,
                ldc,
                epi: super::Epi::new(bias, res, act, act_params),
            };
            let drive: unsafe fn(&super::Gemm, usize) = $drive;
            // SAFETY: the buffers are as this function's contract states, and so is the ISA.
            super::at_boundary(|| unsafe { drive(&g, threads) })
        }

        /// Rows `r0..r1` (`r0` a multiple of `MR`) and columns `c0..c1` of the call.
        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `g` describes buffers as [`gemm`]'s contract states;
        /// rows `r0..r1` (`r0` a multiple of `MR`) and columns `c0..c1` lie inside the call and no
        /// other task writes them.
        unsafe fn range(g: &super::Gemm, r0: usize, r1: usize, c0: usize, c1: usize) {
            // SAFETY: every tile lies inside rows `r0..r1`, columns `c0..c1` of the call (the loops
            // clip the last panel, block and tile), which the contract gives this task.
            unsafe {
                let panel = (super::PANEL_FLOATS / g.k.max(1)).max(NR) / NR * NR;
                let mut p0 = c0;
                while p0 < c1 {
                    let p1 = (p0 + panel).min(c1);
                    let mut mb = r0;
                    while mb < r1 {
                        let mr = (r1 - mb).min(MR);
                        let mut nb = p0;
                        while nb + NR <= p1 {
                            tile::<true>(g, mb, nb, mr, NR);
                            nb += NR;
                        }
                        if nb < p1 {
                            tile::<false>(g, mb, nb, mr, p1 - nb);
                        }
                        mb += MR;
                    }
                    p0 = p1;
                }
            }
        }

        /// One register tile: rows `row..row + mr`, columns `col..col + cols`.
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; as for [`range`]; rows `row..row + mr` (`mr <= MR`)
        /// and columns `col..col + cols` (`cols <= NR`, `== NR` when `FULL`) lie inside the call.
        unsafe fn tile<const FULL: bool>(
            g: &super::Gemm,
            row: usize,
            col: usize,
            mr: usize,
            cols: usize,
        ) {
            // SAFETY: the tile lies inside the call (contract): A's block `row / MR` holds `k * MR`
            // floats, B rows `0..k` hold `col + cols` columns, C rows `row..row + mr` hold
            // `col + cols` columns; the partial tile loads and stores `cnt[j]` lanes only.
            unsafe {
                let (ap, bp, k, ldb) = (g.a.add(row * g.k), g.b.add(col), g.k, g.ldb);
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
                        for j in 0..NV {
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
                    for j in 0..NV {
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

/// The matrix-vector body, shared by the ISA modules.
macro_rules! gemv_body {
    ($feat:literal) => {
        /// Accumulators (vectors of columns) per step of [`gemv`].
        const GV: usize = 8;

        /// See [`super::GemvFn`] for the contract.
        ///
        /// # Safety
        /// The CPU must support the module's ISA; `x` holds `k` floats, `b` `k * n`, `y` (and
        /// the bias and residual when not null) `n`.
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn gemv(
            n: usize,
            k: usize,
            x: *const f32,
            b: *const f32,
            y: *mut f32,
            bias: *const f32,
            res: *const f32,
            act: u64,
            act_params: u64,
            threads: usize,
        ) {
            let g = super::Gemv {
                n,
                k,
                x,
                b,
                y,
                epi: super::Epi::new(bias, res, act, act_params),
            };
            // SAFETY: the buffers are as this function's contract states, and so is the ISA.
            super::at_boundary(|| unsafe { super::gemv_drive(gemv_cols, GV * W, &g, threads) })
        }

        /// Columns `c0..c1` of the call, `GV` vectors of columns at a time.
        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `g` describes buffers as [`gemv`]'s contract states;
        /// `c0..c1` lies inside `0..n` and no other task writes those columns.
        unsafe fn gemv_cols(g: &super::Gemv, c0: usize, c1: usize) {
            // SAFETY: `x` holds `k` floats, `b` `k * n`, and columns `c..c + cnt[j]` of `y`, bias
            // and residual lie inside `c0..c1 <= n` (contract).
            unsafe {
                let e = &g.epi;
                let mut c = c0;
                while c < c1 {
                    let mut cnt = [0usize; GV];
                    for (j, n) in cnt.iter_mut().enumerate() {
                        *n = (c1 - c).saturating_sub(j * W).min(W);
                    }
                    let full = cnt[GV - 1] == W;
                    let mut acc = [zero(); GV];
                    for p in 0..g.k {
                        let xv = bc(g.x.add(p));
                        let row = g.b.add(p * g.n + c);
                        for j in 0..GV {
                            let v = if full {
                                ld(row.add(j * W))
                            } else {
                                ldm(row.wrapping_add(j * W), cnt[j])
                            };
                            acc[j] = fma(xv, v, acc[j]);
                        }
                    }
                    for j in 0..GV {
                        if cnt[j] == 0 {
                            continue;
                        }
                        let at = c + j * W;
                        let bias = if e.bias.is_null() {
                            zero()
                        } else if cnt[j] == W {
                            ld(e.bias.add(at))
                        } else {
                            ldm(e.bias.add(at), cnt[j])
                        };
                        let res = if e.res.is_null() {
                            std::ptr::null()
                        } else {
                            e.res.add(at)
                        };
                        let v = finish(acc[j], e, bias, res, cnt[j]);
                        if cnt[j] == W {
                            st(g.y.add(at), v);
                        } else {
                            stm(g.y.add(at), v, cnt[j]);
                        }
                    }
                    c += GV * W;
                }
            }
        }
    };
}

/// The SqueezeExcite body, shared by the ISA modules.
macro_rules! se_body {
    ($feat:literal) => {
        /// See [`super::SeFn`] for the contract.
        ///
        /// # Safety
        /// The CPU must support the module's ISA; the buffers must be as the geometry
        /// describes (scratch: `c + r` floats).
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn se(
            x: *const f32,
            w1: *const f32,
            b1: *const f32,
            w2: *const f32,
            b2: *const f32,
            y: *mut f32,
            scratch: *mut f32,
            geom: *const super::SeGeom,
            threads: usize,
        ) {
            // SAFETY: the buffers (the geometry included) are as this function's contract
            // states, and so is the ISA.
            super::at_boundary(|| unsafe {
                let d = super::Se {
                    x,
                    w1,
                    b1,
                    w2,
                    b2,
                    y,
                    scratch,
                    // The blob keeps it 8-byte aligned, but the guard-page test mode may not.
                    g: std::ptr::read_unaligned(geom),
                };
                let ph = super::SePhases {
                    squeeze: se_squeeze,
                    hidden: se_hidden,
                    excite: se_excite,
                };
                super::se_drive(&ph, &d, threads)
            })
        }

        /// Sum of `n` floats from `p` (four vector accumulators, then the lanes in order).
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `p` is valid for reading `n` f32.
        unsafe fn sum(p: *const f32, n: usize) -> f32 {
            // SAFETY: `p + i` with `i + W <= n` (full loads) or `n - i` lanes (masked) stays inside
            // the `n` readable floats (contract).
            unsafe {
                let mut acc = [zero(); 4];
                let mut i = 0;
                while i + 4 * W <= n {
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = add(*a, ld(p.add(i + j * W)));
                    }
                    i += 4 * W;
                }
                while i + W <= n {
                    acc[0] = add(acc[0], ld(p.add(i)));
                    i += W;
                }
                if i < n {
                    acc[1] = add(acc[1], ldm(p.add(i), n - i));
                }
                let v = add(add(acc[0], acc[1]), add(acc[2], acc[3]));
                let mut t = [0.0f32; W];
                st(t.as_mut_ptr(), v);
                t.iter().sum()
            }
        }

        /// `sum_i a[i] * b[i]` over `n` floats.
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `a` and `b` are valid for reading `n` f32 each.
        unsafe fn dot(a: *const f32, b: *const f32, n: usize) -> f32 {
            // SAFETY: every load reads `W` floats below `n`, or `m = n - i` lanes, of `a` and `b`
            // (contract: `n` floats each).
            unsafe {
                let mut acc = [zero(); 2];
                let mut i = 0;
                while i + 2 * W <= n {
                    acc[0] = fma(ld(a.add(i)), ld(b.add(i)), acc[0]);
                    acc[1] = fma(ld(a.add(i + W)), ld(b.add(i + W)), acc[1]);
                    i += 2 * W;
                }
                while i < n {
                    let m = (n - i).min(W);
                    acc[0] = fma(ldm(a.add(i), m), ldm(b.add(i), m), acc[0]);
                    i += W;
                }
                let mut t = [0.0f32; W];
                st(t.as_mut_ptr(), add(acc[0], acc[1]));
                t.iter().sum()
            }
        }

        /// The activation `code` of one scalar.
        #[target_feature(enable = $feat)]
        #[inline]
        fn act1(x: f32, code: u64, pp: u64) -> f32 {
            let (p0, p1) = (f32::from_bits(pp as u32), f32::from_bits((pp >> 32) as u32));
            let mut t = [0.0f32; W];
            // SAFETY: `st` writes the `W` floats of the local array `t`.
            unsafe { st(t.as_mut_ptr(), act(splat(x), code, p0, p1)) };
            t[0]
        }

        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `d` describes buffers as [`se`]'s contract states; `b
        /// < n`, `c0..c1` lies inside `0..c` and no other task writes those scratch channels.
        unsafe fn se_squeeze(d: &super::Se, b: usize, c0: usize, c1: usize) {
            // SAFETY: channel `ch < c` of batch element `b < n`: its plane of `x` holds `hw`
            // floats, and `scratch[ch]` is this task's (contract).
            unsafe {
                let (c, hw) = (d.g.c as usize, d.g.hw as usize);
                let inv = 1.0 / hw as f32;
                for ch in c0..c1 {
                    *d.scratch.add(ch) = sum(d.x.add((b * c + ch) * hw), hw) * inv;
                }
            }
        }

        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `d` describes buffers as [`se`]'s contract states,
        /// its squeezed vector is written, and no task runs concurrently.
        unsafe fn se_hidden(d: &super::Se) {
            // SAFETY: `w1` holds `r * c` floats, `b1` `r`, scratch `c + r` (contract).
            unsafe {
                let (c, r) = (d.g.c as usize, d.g.r as usize);
                let hid = d.scratch.add(c);
                for j in 0..r {
                    let v = dot(d.w1.add(j * c), d.scratch, c) + *d.b1.add(j);
                    *hid.add(j) = act1(v, d.g.act, d.g.act_params);
                }
            }
        }

        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `d` describes buffers as [`se`]'s contract states,
        /// its hidden vector is written; `b < n`, `c0..c1` lies inside `0..c` and no other task
        /// writes those output channels.
        unsafe fn se_excite(d: &super::Se, b: usize, c0: usize, c1: usize) {
            // SAFETY: channel `ch < c` of batch element `b`: `w2` row `ch` holds `r` floats,
            // `b2[ch]`
            // exists, and the planes of `x` and `y` hold `hw` floats (contract).
            unsafe {
                let (c, hw, r) = (d.g.c as usize, d.g.hw as usize, d.g.r as usize);
                let hid = d.scratch.add(c);
                for ch in c0..c1 {
                    let v = dot(d.w2.add(ch * r), hid, r) + *d.b2.add(ch);
                    let g = splat(act1(v, d.g.gate, d.g.gate_params));
                    let (xp, yp) = (d.x.add((b * c + ch) * hw), d.y.add((b * c + ch) * hw));
                    let mut i = 0;
                    while i + W <= hw {
                        st(yp.add(i), mul(ld(xp.add(i)), g));
                        i += W;
                    }
                    if i < hw {
                        stm(yp.add(i), mul(ldm(xp.add(i), hw - i), g), hw - i);
                    }
                }
            }
        }
    };
}

/// The peak-throughput loop of an ISA module (for [`peak_gflops`]).
macro_rules! peak_body {
    ($feat:literal) => {
        /// Independent multiply-add chains per step of [`fma_loop`] (covers FMA latency x
        /// the two FMA pipes).
        const CHAINS: usize = 12;

        /// `steps` rounds of `CHAINS` independent vector multiply-adds; returns the sum of
        /// the lanes so nothing is optimized away. FLOPs: `2 * W * CHAINS * steps`.
        ///
        /// # Safety
        /// The CPU must support the module's ISA.
        #[target_feature(enable = $feat)]
        pub unsafe fn fma_loop(steps: usize) -> f32 {
            // SAFETY: `st` writes the `W` floats of the local array `t`.
            unsafe {
                let (a, b) = (splat(0.999_999), splat(1e-7));
                let mut acc = [zero(); CHAINS];
                for (i, v) in acc.iter_mut().enumerate() {
                    *v = splat(i as f32);
                }
                for _ in 0..steps {
                    for v in acc.iter_mut() {
                        *v = fma(*v, a, b);
                    }
                }
                let mut t = [0.0f32; W];
                let mut s = zero();
                for v in acc {
                    s = add(s, v);
                }
                st(t.as_mut_ptr(), s);
                t.iter().sum()
            }
        }

        /// FLOPs one step of [`fma_loop`] does.
        pub const FLOPS_PER_STEP: usize = 2 * W * CHAINS;
    };
}

/// The measured single-core peak of a JIT target on this host, in GFLOP/s: the best of a few
/// ~2 ms runs of a loop of independent multiply-adds in the target's vector width (FMA where
/// the ISA has it, multiply + add on the SSE baseline). `None` when the host cannot run it.
/// Used to report the share of peak an op or model reaches.
pub fn peak_gflops(t: Target) -> Option<f64> {
    if !t.runs_on_host() {
        return None;
    }
    let super::isa::PeakLoop {
        func: f,
        flops_per_step: per_step,
    } = isa(t)?.peak;
    let steps = 200_000;
    Some(best_giga_rate(5, (steps * per_step) as f64, || {
        // SAFETY: the host runs the target's ISA (checked above).
        std::hint::black_box(unsafe { f(steps) });
    }))
}

/// The measured single-core int8 peak of a JIT target on this host, in GOP/s (2 per 8-bit
/// multiply-add): the loop of its int8 kernel set's conv instruction
/// ([`int8::Int8Kernels::peak`], `vpdpbusd` on VNNI hosts), timed like [`peak_gflops`].
/// `None` when the host cannot run the target or its set has no such loop (scalar).
pub fn peak_int8_gops(t: Target) -> Option<f64> {
    if !t.runs_on_host() {
        return None;
    }
    let super::isa::PeakLoop {
        func: f,
        flops_per_step: per_step,
    } = int8::int8_kernels(t)?.peak?;
    let steps = 100_000;
    Some(best_giga_rate(5, (steps * per_step) as f64, || {
        // SAFETY: the host runs the set (`int8_kernels` checked its features).
        std::hint::black_box(unsafe { f(steps) });
    }))
}

/// The best rate, in billions of `amount` per second, of `reps` timed calls of `run`, each
/// doing `amount` units of work (FLOPs, bytes): the measurement convention of the peak and
/// of `mnc bench`'s bandwidths. 0 when no call took measurable time.
pub fn best_giga_rate(reps: usize, amount: f64, mut run: impl FnMut()) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..reps {
        let t0 = std::time::Instant::now();
        run();
        let secs = t0.elapsed().as_secs_f64();
        if secs > 0.0 {
            best = best.max(amount / secs / 1e9);
        }
    }
    best
}

/// The depthwise body for the AVX2 / AVX-512 modules (uses the module's helpers and its
/// `deinterleave`).
macro_rules! dw_body {
    // An ISA without a channels-in-lanes path (`DwGeom::in_lanes` is false for its width).
    ($feat:literal) => {
        dw_body!($feat, planes);
    };
    // `lanes(d, q0, q1, scratch)`: the planes with the channels in the lanes.
    ($feat:literal, $lanes:expr) => {
        /// See [`super::DwGeom`] and [`super::dw_kernel`] for the contract.
        ///
        /// # Safety
        /// The CPU must support the module's ISA; the buffers must be as the geometry
        /// describes (scratch: [`super::DwGeom::scratch_floats`] for `W` lanes).
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn dw(
            x: *const f32,
            w: *const f32,
            bias: *const f32,
            res: *const f32,
            y: *mut f32,
            scratch: *mut f32,
            geom: *const super::DwGeom,
            threads: usize,
        ) {
            // SAFETY: the buffers (the geometry included) are as this function's contract
            // states, and so is the ISA.
            super::at_boundary(|| unsafe {
                let d = super::Dw::new(x, w, bias, res, y, scratch, geom);
                let lanes: unsafe fn(&super::Dw, usize, usize, *mut f32) = $lanes;
                if d.g.in_lanes(W) {
                    super::dw_drive(lanes, W, &d, threads)
                } else {
                    super::dw_drive(planes, W, &d, threads)
                }
            })
        }

        /// Output planes `q0..q1`, using the padded plane `sp`.
        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `d` describes buffers as [`dw`]'s contract states;
        /// `q0..q1` lies inside `0..planes` and no other task writes those output planes; `sp` is
        /// valid for writing `hp * wp` f32 that only this task uses.
        unsafe fn planes(d: &super::Dw, q0: usize, q1: usize, sp: *mut f32) {
            // SAFETY: plane `q < planes` reads input plane `b * ci + o / cog` (`h * w` floats),
            // taps
            // `o * kh * kw..`, writes output plane `q` (`oh * ow` floats); `sp` holds
            // `hp * wp` floats with the `h x w` interior at (`pt`, `pl`) (contract, geometry).
            unsafe {
                let g = &d.g;
                let u = |v: u64| v as usize;
                let (h, w, hp, wp) = (u(g.h), u(g.w), u(g.hp), u(g.wp));
                let (co, ci, cog) = (u(g.co), u(g.ci), u(g.cog));
                let (oh, ow, taps) = (u(g.oh), u(g.ow), u(g.kh * g.kw));
                // The border stays zero: only the interior is rewritten per plane.
                fill_zero(sp, hp * wp);
                let (code, pp) = (g.act, g.act_params);
                let half = wp.div_ceil(2);
                for q in q0..q1 {
                    let (b, o) = (q / co, q % co);
                    pad_rows(sp, d.x.add((b * ci + o / cog) * h * w), g);
                    let epi = super::Epi::new(
                        if d.bias.is_null() {
                            d.bias
                        } else {
                            d.bias.add(o)
                        },
                        if d.res.is_null() {
                            d.res
                        } else {
                            d.res.add(q * oh * ow)
                        },
                        code,
                        pp,
                    );
                    let pg = Geom {
                        sp,
                        pw: wp,
                        half,
                        taps: d.w.add(o * taps),
                        kh: u(g.kh),
                        kw: u(g.kw),
                        sy: u(g.sy),
                        dy: u(g.dy),
                        dx: u(g.dx),
                        ow,
                        y: d.y.add(q * oh * ow),
                        epi,
                    };
                    // Square 3x3 / 5x5 windows, undilated, equal strides: the tap loops unrolled
                    // (each input vector loaded once per block and shared by the rows using it).
                    let square = g.kh == g.kw && g.dy == 1 && g.dx == 1 && g.sy == g.sx;
                    match (u(g.sx), if square { u(g.kh) } else { 0 }) {
                        (1, 3) => dw_rows::<1, 3>(&pg, oh),
                        // 5x5 unrolled only with 32 vector registers (AVX2 measured slower:
                        // spills).
                        (1, 5) if W == 16 => dw_rows::<1, 5>(&pg, oh),
                        (2, 3) => dw_rows::<2, 3>(&pg, oh),
                        (2, 5) if W == 16 => dw_rows::<2, 5>(&pg, oh),
                        (1, _) => dw_rows::<1, 0>(&pg, oh),
                        (2, _) => dw_rows::<2, 0>(&pg, oh),
                        (sx, _) => dw_rows_any(&pg, oh, sx),
                    }
                }
            }
        }

        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `p` is valid for writing `n` f32.
        unsafe fn fill_zero(p: *mut f32, n: usize) {
            // SAFETY: stores stay below `n` floats at `p` (contract).
            unsafe {
                let mut i = 0;
                while i + W <= n {
                    st(p.add(i), zero());
                    i += W;
                }
                if i < n {
                    stm(p.add(i), zero(), n - i);
                }
            }
        }

        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `dst` is valid for writing and `src` for reading `n`
        /// f32; the two do not overlap.
        unsafe fn copy(dst: *mut f32, src: *const f32, n: usize) {
            // SAFETY: loads and stores stay below `n` floats at `src` / `dst` (contract).
            unsafe {
                let mut i = 0;
                while i + W <= n {
                    st(dst.add(i), ld(src.add(i)));
                    i += W;
                }
                if i < n {
                    stm(dst.add(i), ldm(src.add(i), n - i), n - i);
                }
            }
        }

        /// Copies the `h x w` input plane `x` into the interior of the padded plane `sp`
        /// (`hp x wp`, the input at row `pt`, column `pl`), leaving the border as it is. With
        /// column stride 2 each padded row is stored deinterleaved, its even columns first
        /// (`wp.div_ceil(2)` floats) and its odd columns after them, so that every tap of a
        /// vector of outputs is one contiguous load ([`tap`]).
        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `x` is valid for reading `h * w` f32 and `sp`
        /// for writing `hp * wp`, with `pt + h <= hp` and `pl + w <= wp`.
        unsafe fn pad_rows(sp: *mut f32, x: *const f32, g: &super::DwGeom) {
            let u = |v: u64| v as usize;
            let (h, w, wp, pt, pl) = (u(g.h), u(g.w), u(g.wp), u(g.pt), u(g.pl));
            let half = wp.div_ceil(2);
            // Where input columns 0, 2, 4, .. and 1, 3, 5, .. of a row go: padded column
            // `j = pl + ix` is at `j / 2` if even, at `half + j / 2` if odd.
            let (even_at, odd_at) = if pl % 2 == 0 {
                (pl / 2, half + pl / 2)
            } else {
                (half + pl / 2, pl.div_ceil(2))
            };
            // SAFETY: rows `pt..pt + h` of `sp` and every input row are in bounds, and the
            // columns written are padded columns `pl..pl + w` of their row (contract).
            unsafe {
                for iy in 0..h {
                    let (row, src) = (sp.add((pt + iy) * wp), x.add(iy * w));
                    if g.sx == 2 {
                        copy_s2(row.add(even_at), row.add(odd_at), src, w);
                    } else {
                        copy(row.add(pl), src, w);
                    }
                }
            }
        }

        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `src` is valid for reading `n` f32, `even` for
        /// writing `n.div_ceil(2)` and `odd` for writing `n / 2`; none of them overlap.
        unsafe fn copy_s2(even: *mut f32, odd: *mut f32, src: *const f32, n: usize) {
            // SAFETY: loads stay below `n` floats at `src`, stores below the halves' lengths
            // (contract).
            unsafe {
                let mut i = 0;
                while i + 2 * W <= n {
                    let (e, o) = deinterleave(ld(src.add(i)), ld(src.add(i + W)));
                    st(even.add(i / 2), e);
                    st(odd.add(i / 2), o);
                    i += 2 * W;
                }
                if i < n {
                    let r = n - i;
                    let a = ldm(src.add(i), r.min(W));
                    let b = if r > W {
                        ldm(src.add(i + W), r - W)
                    } else {
                        zero()
                    };
                    let (e, o) = deinterleave(a, b);
                    stm(even.add(i / 2), e, r.div_ceil(2));
                    if r > 1 {
                        stm(odd.add(i / 2), o, r / 2);
                    }
                }
            }
        }

        /// One output plane read from its padded input copy.
        struct Geom {
            sp: *const f32,
            pw: usize,
            /// Stride 2 along rows (`SX == 2`): a padded row holds its even columns at
            /// `0..half` and its odd columns at `half..pw`, so padded column `j` is at
            /// `j / 2` (even) or `half + j / 2` (odd).
            half: usize,
            taps: *const f32,
            kh: usize,
            kw: usize,
            sy: usize,
            dy: usize,
            dx: usize,
            ow: usize,
            y: *mut f32,
            epi: super::Epi,
        }

        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `g` is one output plane as [`planes`] builds it:
        /// every tap read of its `oh` output rows lies inside the padded plane `g.sp`, and `oh *
        /// ow` outputs (and residuals) fit `g.y` (`g.epi.res`).
        unsafe fn dw_rows<const SX: usize, const K: usize>(g: &Geom, oh: usize) {
            // SAFETY: `block` is called for rows `oy..oy + RB` with `oy + RB <= oh` (contract).
            unsafe {
                let mut oy = 0;
                while oy + 8 <= oh {
                    block::<8, SX, K>(g, oy, SX);
                    oy += 8;
                }
                // The rest in one block: as many independent accumulator chains as rows (small
                // planes are otherwise bound by the FMA latency of one or two chains).
                match oh - oy {
                    7 => block::<7, SX, K>(g, oy, SX),
                    6 => block::<6, SX, K>(g, oy, SX),
                    5 => block::<5, SX, K>(g, oy, SX),
                    4 => block::<4, SX, K>(g, oy, SX),
                    3 => block::<3, SX, K>(g, oy, SX),
                    2 => block::<2, SX, K>(g, oy, SX),
                    1 => block::<1, SX, K>(g, oy, SX),
                    _ => {}
                }
            }
        }

        #[target_feature(enable = $feat)]
        #[inline(never)]
        /// # Safety
        /// The CPU supports the module's ISA; as for [`dw_rows`].
        unsafe fn dw_rows_any(g: &Geom, oh: usize, sx: usize) {
            // SAFETY: `block` is called for each row `oy < oh` (contract).
            unsafe {
                for oy in 0..oh {
                    block::<1, 0, 0>(g, oy, sx);
                }
            }
        }

        /// `n` (1..=W) inputs at element stride `sx` from `p` (`SX == 1`: contiguous; any
        /// other `SX`: the stride `sx`, element by element; stride 2 reads deinterleaved rows
        /// contiguously instead, see [`Geom::half`]).
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `p` is valid for reading the elements `0, sx, .., (n
        /// - 1) * sx` (`1 <= n <= W`).
        unsafe fn load<const SX: usize>(p: *const f32, n: usize, sx: usize) -> V {
            // SAFETY: only the elements `i * sx` for `i < n` are read (contract).
            unsafe {
                match SX {
                    1 => {
                        if n == W {
                            ld(p)
                        } else {
                            ldm(p, n)
                        }
                    }
                    _ => {
                        let mut t = [0.0f32; W];
                        for (i, v) in t.iter_mut().enumerate().take(n) {
                            *v = *p.add(i * sx);
                        }
                        ld(t.as_ptr())
                    }
                }
            }
        }

        /// The `n` (1..=W) inputs that tap column `j` (`kx * dx`) of output columns `ox..ox +
        /// n` reads from padded row `row` at column stride `sx` (`SX`: 1, 2, or 0 for any):
        /// padded columns `ox * sx + j + i * sx`, which for stride 2 lie contiguously in the
        /// row's deinterleaved form ([`pad_rows`], [`Geom::half`]).
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `row` is a padded row (deinterleaved with
        /// `half` even columns for `SX == 2`) holding every column read.
        unsafe fn tap<const SX: usize>(
            row: *const f32,
            ox: usize,
            j: usize,
            n: usize,
            sx: usize,
            half: usize,
        ) -> V {
            // SAFETY: the columns read are inside the padded row (contract).
            unsafe {
                match SX {
                    1 => load::<1>(row.add(ox + j), n, 1),
                    2 => load::<1>(row.add((j % 2) * half + ox + j / 2), n, 1),
                    _ => load::<0>(row.add(ox * sx + j), n, sx),
                }
            }
        }

        /// `RB` output rows from `oy`, column chunks of `W`; the taps broadcast once per
        /// chunk and shared by the rows (independent accumulator chains); the epilogue runs
        /// on the registers before the store.
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; as for [`dw_rows`], for output rows `oy..oy + RB`.
        unsafe fn block<const RB: usize, const SX: usize, const K: usize>(
            g: &Geom,
            oy: usize,
            sx: usize,
        ) {
            // SAFETY: the geometry keeps every tap read of rows `oy..oy + RB` inside the padded
            // plane
            // and the `ow` outputs of each row inside the output plane (contract).
            unsafe {
                let e = &g.epi;
                let bias = if e.bias.is_null() { zero() } else { bc(e.bias) };
                let mut ox = 0;
                while ox < g.ow {
                    let n = (g.ow - ox).min(W);
                    let mut acc = [zero(); RB];
                    if K > 0 {
                        // K x K taps, stride SX, no dilation (checked by the caller): input row
                        // `ir` of the block feeds output row `r` through tap row `ir - r * SX`.
                        // Per accumulator the taps still come in (ky, kx) order.
                        let top = g.sp.add(oy * SX * g.pw);
                        for ir in 0..(RB - 1) * SX + K {
                            for kx in 0..K {
                                let v = tap::<SX>(top.add(ir * g.pw), ox, kx, n, SX, g.half);
                                for (r, a) in acc.iter_mut().enumerate() {
                                    if ir >= r * SX && ir - r * SX < K {
                                        let t = bc(g.taps.add((ir - r * SX) * K + kx));
                                        *a = fma(v, t, *a);
                                    }
                                }
                            }
                        }
                    }
                    for ky in 0..if K > 0 { 0 } else { g.kh } {
                        for kx in 0..g.kw {
                            let t = bc(g.taps.add(ky * g.kw + kx));
                            for (r, a) in acc.iter_mut().enumerate() {
                                let row = g.sp.add(((oy + r) * g.sy + ky * g.dy) * g.pw);
                                let v = tap::<SX>(row, ox, kx * g.dx, n, sx, g.half);
                                *a = fma(v, t, *a);
                            }
                        }
                    }
                    for (r, a) in acc.iter().enumerate() {
                        let off = (oy + r) * g.ow + ox;
                        let res = if e.res.is_null() {
                            std::ptr::null()
                        } else {
                            e.res.add(off)
                        };
                        let v = finish(*a, e, bias, res, n);
                        let dst = g.y.add(off);
                        if n == W {
                            st(dst, v);
                        } else {
                            stm(dst, v, n);
                        }
                    }
                    ox += W;
                }
            }
        }
    };
}

// The stem kernel's geometry, driver and ISA body (`stem_body!`, used by the modules below).
#[macro_use]
pub mod stem;

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

    #[target_feature(enable = "sse4.2")]
    #[inline]
    fn round(a: V) -> V {
        _mm_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a)
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

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn round(a: V) -> V {
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a)
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
    unsafe fn ldm(p: *const f32, n: usize) -> V {
        // SAFETY: the first `n` floats at `p` are readable (contract); lanes past `n` are not
        // read.
        unsafe { _mm256_maskload_ps(p, mask(n)) }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    /// # Safety
    /// The CPU supports the module's ISA; `p` is valid for writing `n` f32 (`n <= W`).
    unsafe fn stm(p: *mut f32, v: V, n: usize) {
        // SAFETY: the first `n` floats at `p` are writable (contract); lanes past `n` are not
        // written.
        unsafe { _mm256_maskstore_ps(p, mask(n), v) }
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
    gemm_body!("avx2,fma");
    gemv_body!("avx2,fma");
    se_body!("avx2,fma");
    peak_body!("avx2,fma");
    dw_body!("avx2,fma");
    /// Output channels per block of the stem kernel (accumulators; 16 ymm registers).
    const CB: usize = 8;
    stem_body!("avx2,fma");
}

/// AVX-512F: 8 x 32 tile of 512-bit vectors (16 accumulators), mask registers for tails.
pub mod avx512 {
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;
    type V = __m512;
    /// f32 lanes per vector ([`IsaDesc::lanes`](crate::cpu::IsaDesc::lanes)).
    pub const W: usize = 16;
    /// Rows of the register tile.
    pub const MR: usize = 8;
    const NV: usize = 2;

    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    fn round(a: V) -> V {
        _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a)
    }
    /// `2^n` for integral `n` in the normal exponent range.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    fn pow2(n: V) -> V {
        let e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(e))
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
            if super::rows_in_lanes(g.m, g.n, W) {
                super::gemm_drive(rows_range, ROW_TILE, COL_TILE, g, threads)
            } else {
                super::gemm_drive(range, MR, NR, g, threads)
            }
        }
    });

    /// Rows per register tile of the rows-in-lanes GEMM ([`super::rows_in_lanes`]): two
    /// vectors.
    pub const ROW_TILE: usize = 2 * W;
    /// Most columns per register tile of the rows-in-lanes GEMM (2 x 12 accumulators).
    pub const COL_TILE: usize = 12;

    /// Rows `r0..r1` and columns `c0..c1` of a rows-in-lanes GEMM: row tiles of
    /// [`ROW_TILE`], the columns cut into nearly equal tiles of at most [`COL_TILE`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    /// # Safety
    /// As for [`range`], with `r0` and `r1` multiples of [`ROW_TILE`] (so is `m`).
    unsafe fn rows_range(g: &super::Gemm, r0: usize, r1: usize, c0: usize, c1: usize) {
        let tiles = (c1 - c0).div_ceil(COL_TILE);
        // SAFETY: every tile lies inside rows `r0..r1`, columns `c0..c1` (contract).
        unsafe {
            let mut row = r0;
            while row < r1 {
                for t in 0..tiles {
                    let (a, b) = super::part(c1 - c0, tiles, t);
                    let col = c0 + a;
                    match b - a {
                        1 => rows_tile::<1>(g, row, col),
                        2 => rows_tile::<2>(g, row, col),
                        3 => rows_tile::<3>(g, row, col),
                        4 => rows_tile::<4>(g, row, col),
                        5 => rows_tile::<5>(g, row, col),
                        6 => rows_tile::<6>(g, row, col),
                        7 => rows_tile::<7>(g, row, col),
                        8 => rows_tile::<8>(g, row, col),
                        9 => rows_tile::<9>(g, row, col),
                        10 => rows_tile::<10>(g, row, col),
                        11 => rows_tile::<11>(g, row, col),
                        _ => rows_tile::<12>(g, row, col),
                    }
                }
                row += ROW_TILE;
            }
        }
    }

    /// One rows-in-lanes register tile: rows `row..row + ROW_TILE`, columns `col..col + NC`.
    /// Per `k`: two vectors of A (four packed `MR`-row blocks, `MR = W / 2`), `NC`
    /// broadcasts of B, `2 * NC` FMAs; then each vector's `W x NC` block is transposed so
    /// that the epilogue and the store run along a row, as in [`tile`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    /// # Safety
    /// As for [`range`]; rows `row..row + ROW_TILE` and columns `col..col + NC` lie inside
    /// the call (`NC <= W`).
    unsafe fn rows_tile<const NC: usize>(g: &super::Gemm, row: usize, col: usize) {
        const { assert!(2 * MR == W && NC <= W) };
        // SAFETY: A blocks `row / MR ..+ 4` exist (the row tile lies inside `m`), each `k *
        // MR` floats; B rows `0..k` hold columns `col..col + NC`; C (and the residual) rows
        // `row..row + ROW_TILE` hold them too (contract).
        unsafe {
            let k = g.k;
            let blk = |i: usize| g.a.add((row / MR + i) * k * MR);
            let (a0, a1, a2, a3) = (blk(0), blk(1), blk(2), blk(3));
            let half = |lo: *const f32, hi: *const f32| {
                let v = _mm512_castps256_ps512(_mm256_loadu_ps(lo));
                _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                    _mm512_castps_pd(v),
                    _mm256_loadu_pd(hi as *const f64),
                ))
            };
            let bp = g.b.add(col);
            let mut acc = [[zero(); NC]; 2];
            for p in 0..k {
                let o = p * MR;
                let (x0, x1) = (half(a0.add(o), a1.add(o)), half(a2.add(o), a3.add(o)));
                let brow = bp.add(p * g.ldb);
                let [lo, hi] = &mut acc;
                for (j, (l, h)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
                    let b = bc(brow.add(j));
                    *l = fma(x0, b, *l);
                    *h = fma(x1, b, *h);
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
                    let bias = if e.bias.is_null() {
                        zero()
                    } else {
                        bc(e.bias.add(m))
                    };
                    let res = if e.res.is_null() {
                        std::ptr::null()
                    } else {
                        e.res.add(off)
                    };
                    stm(g.c.add(off), finish(*x, e, bias, res, NC), NC);
                }
            }
        }
    }

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
    dw_body!("avx512f,avx2,fma", lane_planes);

    /// Depthwise planes `q0..q1` with the channels in the vector lanes
    /// ([`super::DwGeom::in_lanes`]), `W` planes at a time: the input planes are transposed
    /// into one padded plane of pixel vectors (each the `W` channels of one pixel), every
    /// output pixel accumulates its taps as vectors of `W` channels (tap vectors of the `W`
    /// channels' weights), and the output pixel vectors are transposed back into planes for
    /// the epilogue and the stores. Every output sums the same products in the same order
    /// as [`planes`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    /// # Safety
    /// As for [`planes`], with `sp` valid for writing [`super::DwGeom::task_floats`] of
    /// `W` lanes.
    unsafe fn lane_planes(d: &super::Dw, q0: usize, q1: usize, sp: *mut f32) {
        let g = &d.g;
        let u = |v: u64| v as usize;
        let (h, w, hp, wp, pt, pl) = (u(g.h), u(g.w), u(g.hp), u(g.wp), u(g.pt), u(g.pl));
        let (co, ci, cog) = (u(g.co), u(g.ci), u(g.cog));
        let (oh, ow, kh, kw) = (u(g.oh), u(g.ow), u(g.kh), u(g.kw));
        let (hw, ohw, taps) = (h * w, oh * ow, kh * kw);
        // SAFETY: the scratch holds the padded pixel plane (`hp * wp` vectors), the output
        // pixels (`ohw` rounded up to `W` vectors) and the taps (`taps` vectors); input,
        // weight, bias, residual and output accesses are those of planes `q0..q1`
        // (contract).
        unsafe {
            let (tp, out) = (sp, sp.add(hp * wp * W));
            let wv = out.add(ohw.next_multiple_of(W) * W);
            // The border stays zero: only the interior pixels are rewritten.
            fill_zero(tp, hp * wp * W);
            let e = super::Epi::new(d.bias, d.res, g.act, g.act_params);
            let mut q = q0;
            while q < q1 {
                let nch = (q1 - q).min(W);
                // Per lane: its output channel and input plane.
                let mut chan = [0usize; W];
                let mut src = [d.x; W];
                let (mut b, mut o) = (q / co, q % co);
                for i in 0..nch {
                    chan[i] = o;
                    src[i] = d.x.add((b * ci + o / cog) * hw);
                    o += 1;
                    if o == co {
                        (b, o) = (b + 1, 0);
                    }
                }
                for t in 0..taps {
                    for (i, &o) in chan.iter().enumerate() {
                        *wv.add(t * W + i) = if i < nch { *d.w.add(o * taps + t) } else { 0.0 };
                    }
                }
                let mut p0 = 0;
                while p0 < hw {
                    let cnt = (hw - p0).min(W);
                    let px = transpose(std::array::from_fn(|i| {
                        if i < nch {
                            ldm(src[i].add(p0), cnt)
                        } else {
                            zero()
                        }
                    }));
                    let (mut iy, mut ix) = (p0 / w, p0 % w);
                    for v in px.iter().take(cnt) {
                        st(tp.add(((pt + iy) * wp + pl + ix) * W), *v);
                        ix += 1;
                        if ix == w {
                            (iy, ix) = (iy + 1, 0);
                        }
                    }
                    p0 += W;
                }
                match g.sx {
                    1 => lane_rows::<1>(g, tp, wv, out),
                    2 => lane_rows::<2>(g, tp, wv, out),
                    _ => lane_rows::<0>(g, tp, wv, out),
                }
                let mut p0 = 0;
                while p0 < ohw {
                    let cnt = (ohw - p0).min(W);
                    let cv = transpose(std::array::from_fn(|j| {
                        if j < cnt {
                            ld(out.add((p0 + j) * W))
                        } else {
                            zero()
                        }
                    }));
                    for (i, v) in cv.iter().enumerate().take(nch) {
                        let (qi, o) = (q + i, chan[i]);
                        let bias = if d.bias.is_null() {
                            zero()
                        } else {
                            bc(d.bias.add(o))
                        };
                        let res = if d.res.is_null() {
                            std::ptr::null()
                        } else {
                            d.res.add(qi * ohw + p0)
                        };
                        stm(d.y.add(qi * ohw + p0), finish(*v, &e, bias, res, cnt), cnt);
                    }
                    p0 += W;
                }
                q += W;
            }
        }
    }

    /// Every output pixel of [`lane_planes`]' current channels, in blocks of up to 8 pixels of
    /// a row, `SX` the column stride (0: any).
    #[target_feature(enable = "avx512f,avx2,fma")]
    /// # Safety
    /// As for [`lane_block`].
    unsafe fn lane_rows<const SX: usize>(
        g: &super::DwGeom,
        tp: *const f32,
        wv: *const f32,
        out: *mut f32,
    ) {
        let (oh, ow) = (g.oh as usize, g.ow as usize);
        // SAFETY: blocks of pixels inside the output plane (contract).
        unsafe {
            for oy in 0..oh {
                let mut ox = 0;
                while ox < ow {
                    let nb = (ow - ox).min(8);
                    match nb {
                        8 => lane_block::<8, SX>(g, tp, wv, out, oy, ox),
                        7 => lane_block::<7, SX>(g, tp, wv, out, oy, ox),
                        6 => lane_block::<6, SX>(g, tp, wv, out, oy, ox),
                        5 => lane_block::<5, SX>(g, tp, wv, out, oy, ox),
                        4 => lane_block::<4, SX>(g, tp, wv, out, oy, ox),
                        3 => lane_block::<3, SX>(g, tp, wv, out, oy, ox),
                        2 => lane_block::<2, SX>(g, tp, wv, out, oy, ox),
                        _ => lane_block::<1, SX>(g, tp, wv, out, oy, ox),
                    }
                    ox += nb;
                }
            }
        }
    }

    /// Output pixels `ox..ox + NB` of row `oy` as vectors of `W` channels, from the padded
    /// pixel plane `tp` and the tap vectors `wv`, into the output pixel vectors `out`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    /// # Safety
    /// As for [`lane_planes`]: every tap of these outputs lies inside the padded plane.
    unsafe fn lane_block<const NB: usize, const SX: usize>(
        g: &super::DwGeom,
        tp: *const f32,
        wv: *const f32,
        out: *mut f32,
        oy: usize,
        ox: usize,
    ) {
        let u = |v: u64| v as usize;
        let (wp, kh, kw) = (u(g.wp), u(g.kh), u(g.kw));
        let (sy, dy, dx) = (u(g.sy), u(g.dy), u(g.dx));
        let sx = if SX > 0 { SX } else { u(g.sx) };
        // SAFETY: pixel `(oy * sy + ky * dy, (ox + j) * sx + kx * dx)` lies inside the
        // padded plane for every tap and `j < NB` (the geometry's padded plane holds every
        // tap of every output); `out` holds `oh * ow` vectors (contract).
        unsafe {
            let mut acc = [zero(); NB];
            for ky in 0..kh {
                for kx in 0..kw {
                    let t = ld(wv.add((ky * kw + kx) * W));
                    let base = tp.add(((oy * sy + ky * dy) * wp + ox * sx + kx * dx) * W);
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = fma(ld(base.add(j * sx * W)), t, *a);
                    }
                }
            }
            let row = out.add((oy * u(g.ow) + ox) * W);
            for (j, a) in acc.iter().enumerate() {
                st(row.add(j * W), *a);
            }
        }
    }
    /// Output channels per block of the stem kernel (accumulators; 32 zmm registers).
    const CB: usize = 16;
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
