//! Int8 (quantized) convolution kernels: the integer arithmetic of `mnc_ir::quant`,
//! bit-exact (every test compares with `==`), on NCHW activations of `u8` or `i8` bytes.
//!
//! Three entry points per kernel set ([`Int8Kernels`], chosen by the ISA table:
//! [`IsaDesc::int8`](crate::cpu::IsaDesc::int8)), plus the two conversions:
//!
//! - **Conv** ([`QConvFn`], geometry [`QConvGeom`], weights packed by [`pack_qconv`]): any
//!   grouped conv as a GEMM per (image, group): `acc[o][p] = bias[o] + sum_k (x[k][p] -
//!   x_zp) * w[o][k]`, requantized by [`requant1`]. Per task (or, for a pointwise chunk
//!   that several tasks split by output channels, once by all of them, before any computes),
//!   a panel of up to [`QConvGeom::chunk`] output pixels is packed as `[k / 4][pixels][4]`
//!   bytes (`k` padded with zeros to a multiple of 4, pixels to a multiple of 16): a
//!   pointwise conv interleaves
//!   four channel rows (SSE2 unpacks; AVX-512BW 64 pixels at a time in the VNNI sets: the
//!   set's `InterleaveFn`), any other conv gathers im2col columns, a padded cell
//!   being `x_zp`. An `i8` activation is turned into `u8` as it is packed (`^ 0x80`, its zero
//!   point `+ 128`: [`QConvGeom::x_zp`] is the `u8`-domain one), so the GEMM only multiplies
//!   `u8 x i8`. The weights are packed once ([`pack_qconv`]) in blocks of [`MR`] output
//!   channels: the block's `MR` biases with `x_zp * sum_k w[o][k]` folded in, its `MR`
//!   multipliers, then `k / 4` steps of `MR x 4` weight bytes. The GEMM accumulates
//!   `sum_k x[k][p] * w[o][k]` (raw bytes) in wrapping `i32`, adds the folded bias and
//!   requantizes: the same integer as the reference whenever that one fits `i32`
//!   (`mnc_ir::quant::accumulator_fits`). The VNNI path multiplies with `vpdpbusd` (4
//!   products per lane, `MR` channels x 48 pixels in 24 zmm accumulators; whole tiles of a
//!   block whose multipliers are below 0.5 requantize by saturating packs, `vnni::Packed`,
//!   the same integers, docs/QUANTIZATION.md); the AVX2 path with
//!   `vpmaddwd` on the bytes widened to `i16` (exact: no saturation); the scalar path loops.
//! - **Depthwise** ([`QDwFn`], geometry [`QDwGeom`], weights packed by [`pack_qdw`]): one input
//!   channel per group (a channel multiplier allowed), any window, stride, padding, dilation.
//!   Per output plane the input plane is converted to f32 `x - x_zp` in a zero-padded scratch
//!   plane, split into `sx` column phases (column `c` at phase `c % sx`, index `c / sx`) so
//!   that every tap of a stride-`sx` output row is one contiguous vector load; the taps
//!   accumulate by f32 FMA. Products of bytes are at most `255 * 128` and a window of at most
//!   [`QDW_MAX_TAPS`] taps keeps every partial sum below `2^24`: every f32 operation is exact,
//!   so the sum converts back to the exact `i32`, the bias is added in `i32` and the result is
//!   requantized as above. 3x3 and 5x5 windows are unrolled.
//! - **QuantizeLinear / DequantizeLinear** ([`QuantFn`], [`DequantFn`], geometry
//!   [`QLinGeom`]): per tensor, an IEEE division `x / scale` (no reciprocal), the clamp, the
//!   `cvtps2dq` rounding, as `mnc_ir::quant::quantize` / `dequantize`.
//!
//! Rounding: `cvtps2dq` under the default MXCSR rounding mode (to nearest, ties to even), the
//! mode every run keeps (the runtime only sets the denormal flags). Threads: every output
//! element is computed by one task, by exact integer arithmetic, so results do not depend on
//! the thread count nor on how tasks were split.

use super::qbinary::QBinaryGeom;
use super::{part, words_to_blob, PAR_MIN_WORK, TASKS_PER_THREAD};
use crate::cpu::isa::Sym;
use crate::Target;
use mnc_ir::quant::QType;

/// Output channels per packed weight block (rows of every path's register tile).
pub const MR: usize = 8;
/// Pixels of a panel are padded to a multiple of this (one zmm of `u8` quads).
const PX: usize = 16;
/// Pixels per register tile of the VNNI path (3 zmm of 16 pixels).
const VNNI_TILE: usize = 48;
/// Bytes of one task's panel the chunk size aims at (L2 resident).
const PANEL_BYTES: usize = 96 * 1024;
/// Most taps of a depthwise window: `taps * 255 * 128 < 2^24` keeps the f32 sums exact.
pub const QDW_MAX_TAPS: usize = (1 << 24) / (255 * 128);
/// Multiply-adds below which a conv runs on the calling thread: about 2 us of VNNI work on
/// a Zen 5 core, well above a pool dispatch (0.1-0.3 us to a spinning helper); 2^22 (the
/// value tuned on Zen 4) kept MobileNetV2's classifier (1280 -> 1000, 19 us) and its
/// 192 -> 64 projection at 14x14 on one thread (the f32 kernels' [`PAR_MIN_WORK`] is 16x
/// smaller).
const QCONV_PAR_MIN_WORK: usize = 1 << 20;
/// Tasks per thread of a parallel int8 conv: two (four, as the other kernels, cost
/// MobileNetV2's projections 10-35% at 2 threads: more tasks packing the same panel).
const QCONV_TASKS_PER_THREAD: usize = 2;

/// How many tasks (and scratch panels, [`QConvGeom::tasks`]) an int8 conv with `threads`
/// uses.
pub fn qconv_tasks(threads: usize) -> usize {
    threads.saturating_mul(QCONV_TASKS_PER_THREAD).max(1)
}
/// Elements per task of a split quantize / dequantize.
const LIN_CHUNK: usize = 16 * 1024;

/// Requantizes one accumulator: `round(clamp(acc as f32 * mult, lo - zp, hi - zp)) + zp`,
/// operation for operation `mnc_ir::quant::Requant::apply` (tested against it).
#[inline]
pub fn requant1(acc: i32, mult: f32, lo: i32, hi: i32, zp: i32) -> i32 {
    let t = acc as f32 * mult;
    let t = t.max((lo - zp) as f32).min((hi - zp) as f32);
    mnc_ir::quant::round_half_even(t) as i32 + zp
}

/// The `u8`-domain zero point and byte flip of a quantized input: `i8` bytes are flipped by
/// `^ 0x80` (value `+ 128`), so `x - zp` is unchanged.
pub fn u8_domain(qt: QType, zp: i32) -> (u64, u64) {
    match qt {
        QType::U8 => (zp as u64 & 0xff, 0),
        QType::I8 => ((zp + 128) as u64 & 0xff, 1),
    }
}

/// The entry points of one int8 kernel set, with their JIT symbol names.
#[derive(Clone, Copy, Debug)]
pub struct Int8Kernels {
    /// The set's name: its module in this file.
    pub name: &'static str,
    /// CPU features the set needs beyond its ISA's [`IsaDesc::features`](crate::cpu::IsaDesc::features)
    /// (as `is_x86_feature_detected!` spells them): an ISA lists its sets best first and
    /// [`int8_kernels`] takes the first one the host runs.
    pub features: &'static [&'static str],
    /// Grouped / pointwise / general conv ([`QConvFn`]).
    pub conv: Sym<QConvFn>,
    /// Depthwise conv ([`QDwFn`]).
    pub dw: Sym<QDwFn>,
    /// QuantizeLinear ([`QuantFn`]).
    pub quantize: Sym<QuantFn>,
    /// DequantizeLinear ([`DequantFn`]).
    pub dequantize: Sym<DequantFn>,
    /// Table lookup ([`super::lut::LutFn`]).
    pub lut: Sym<super::lut::LutFn>,
    /// Quantized global average pool ([`super::qmean::QMeanFn`]).
    pub mean: Sym<super::qmean::QMeanFn>,
    /// Quantized sum and product ([`super::qbinary::QBinaryFn`]).
    pub binary: Sym<super::qbinary::QBinaryFn>,
    /// A loop of independent integer multiply-adds in the instruction the conv kernels use
    /// (`flops_per_step`: 2 per 8-bit multiply-add), for the int8 roofline of `mnc bench
    /// --profile` ([`super::peak_int8_gops`]); `None` for the scalar set.
    pub peak: Option<crate::cpu::isa::PeakLoop>,
}

/// Independent accumulators of the int8 peak loops (enough to cover the latency).
const PEAK_CHAINS: usize = 12;

/// The portable quantized sum and product ([`super::qbinary::qbinary`]), for the sets
/// without a vector one.
pub const BINARY_PORTABLE: Sym<super::qbinary::QBinaryFn> = Sym {
    symbol: "mnc_qbinary",
    func: super::qbinary::qbinary,
};

/// The portable quantized mean ([`super::qmean::qmean`]), every set's.
pub const MEAN_PORTABLE: Sym<super::qmean::QMeanFn> = Sym {
    symbol: "mnc_qmean",
    func: super::qmean::qmean,
};

/// The portable table lookup ([`super::lut::lut`]), for the sets without a vector one.
pub const LUT_PORTABLE: Sym<super::lut::LutFn> = Sym {
    symbol: "mnc_qlut",
    func: super::lut::lut,
};

/// The int8 kernel set a JIT target uses on this host: the first of its
/// [`IsaDesc::int8`](crate::cpu::IsaDesc::int8) sets whose extra features the host has (the
/// last set needs none, tested). All sets compute the same bytes.
pub fn int8_kernels(t: Target) -> Option<&'static Int8Kernels> {
    crate::cpu::isa(t)?
        .int8
        .iter()
        .copied()
        .find(|k| k.features.iter().all(|f| crate::host_has(f) == Some(true)))
}

/// Geometry and requantization of a quantized conv ([`QConvFn`]), stored in the weights
/// blob as `u64` words ([`QConvGeom::to_blob`]).
///
/// Input `[n, ci, h, w]`, output `[n, co, oh, ow]`, `groups` groups (`ci` and `co`
/// multiples of it), window `kh x kw`, strides, dilations, top/left padding `pt`, `pl` (the
/// bottom/right padding is whatever `oh`, `ow` imply; out-of-range taps read `x_zp`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QConvGeom {
    pub n: u64,
    pub ci: u64,
    pub h: u64,
    pub w: u64,
    pub co: u64,
    pub groups: u64,
    pub kh: u64,
    pub kw: u64,
    pub sy: u64,
    pub sx: u64,
    pub dy: u64,
    pub dx: u64,
    pub pt: u64,
    pub pl: u64,
    pub oh: u64,
    pub ow: u64,
    /// Input zero point in the `u8` domain ([`u8_domain`]).
    pub x_zp: u64,
    /// 1: the input bytes are `i8` (flipped by `^ 0x80` as they are packed).
    pub x_i8: u64,
    /// Output zero point and clamp range (`lo..=hi`), in the output type's domain.
    pub y_zp: i64,
    pub lo: i64,
    pub hi: i64,
    /// Panels the scratch holds (one per task; the most tasks a call uses, see
    /// [`qconv_tasks`]).
    pub tasks: u64,
    /// 1: a residual sum ([`mnc_ir::QResidual`]) follows the requantization (`y_zp`, `lo`,
    /// `hi` are then the conv's own output's, `QResidual::mid`); its [`QBinaryGeom`] follows
    /// this struct in the geometry blob ([`QConvGeom::to_blob_with`]).
    pub res: u64,
    /// 1: the conv's value is the sum's first operand.
    pub res_conv_a: u64,
}

impl QConvGeom {
    fn u(v: u64) -> usize {
        v as usize
    }
    /// Input channels per group times the window: the GEMM's depth.
    pub fn k(&self) -> usize {
        Self::u(self.ci / self.groups.max(1) * self.kh * self.kw)
    }
    /// `k` rounded up to whole 4-byte quads, in quads.
    pub fn k4(&self) -> usize {
        self.k().div_ceil(4)
    }
    /// Output pixels per image.
    pub fn pixels(&self) -> usize {
        Self::u(self.oh * self.ow)
    }
    /// Output channels per group.
    pub fn cog(&self) -> usize {
        Self::u(self.co / self.groups.max(1))
    }
    /// Packed weight blocks per group.
    pub fn blocks(&self) -> usize {
        self.cog().div_ceil(MR)
    }
    /// Bytes of one packed weight block: `MR` biases, `MR` multipliers, `k4 * MR * 4` weights.
    pub fn block_bytes(&self) -> usize {
        MR * 8 + self.k4() * MR * 4
    }
    /// Bytes [`pack_qconv`] returns.
    pub fn packed_bytes(&self) -> usize {
        Self::u(self.groups) * self.blocks() * self.block_bytes()
    }
    /// Output pixels per panel (a multiple of the VNNI tile unless the image is smaller): what
    /// keeps the panel in L2, and small enough that each of the `tasks` has pixels of its own
    /// where the image allows (a task splitting a panel's output channels with others packs
    /// the whole panel again: with few panels the packing multiplies instead of the work
    /// dividing).
    ///
    /// A last chunk under a quarter of the others (and under `4 * VNNI_TILE`) is spread over
    /// them instead (MobileNetV2: 7x7 = 49 pixels one chunk, not 48 + 1; 14x14 = 4 x 49, not
    /// 4 x 48 + 4): such a chunk packed a panel and streamed every weight of the conv again
    /// for a few pixels, which the block's `gemv` rest does at a fraction of the cost. With
    /// several threads the chunks of a call come in whole rounds of them.
    pub fn chunk(&self) -> usize {
        let p = self.pixels().max(1);
        let c = (PANEL_BYTES / (self.k4() * 4).max(1)) / VNNI_TILE * VNNI_TILE;
        let per_image = (self.n * self.groups).max(1) as usize;
        // At least two tiles per chunk where the image has them: 14x14 in 4 x 49 pixels (a
        // tile and a one-pixel rest each, every chunk packing a panel and streaming all the
        // weights) cost MobileNetV2's 14x14 convs 8-25% at 2 threads against 2 x 98.
        let chunks_wanted = (self.tasks.max(1) as usize)
            .div_ceil(per_image)
            .min((p / (2 * VNNI_TILE)).max(1));
        let share = p.div_ceil(chunks_wanted) / VNNI_TILE * VNNI_TILE;
        let chunk = c.min(share).clamp(VNNI_TILE, 32 * VNNI_TILE).min(p);
        let mut n = p.div_ceil(chunk);
        let last = p - (n - 1) * chunk;
        let mut chunk = if n > 1 && last * 4 < chunk.max(4 * VNNI_TILE) {
            n -= 1;
            p.div_ceil(n)
        } else {
            chunk
        };
        // Chunks that do not divide evenly over the threads leave one thread a chunk more
        // than the other(s) (MobileNetV2's 144 -> 24 projection at 56x56: 5 chunks on 2
        // threads ran 3 against 2): take the next whole number of rounds, fewer chunks
        // where their panel stays within 5/4 of the budget, else more.
        let threads = (self.tasks as usize / QCONV_TASKS_PER_THREAD).max(1);
        if threads > 1 && n > 1 && !(per_image * n).is_multiple_of(threads) {
            let down = n / threads * threads;
            let fits = |m: usize| m > 0 && p.div_ceil(m) * self.k4() * 4 <= PANEL_BYTES * 5 / 4;
            n = if fits(down) {
                down
            } else {
                n.next_multiple_of(threads)
            };
            chunk = p.div_ceil(n);
        }
        chunk
    }
    /// Pixels of a panel row (the chunk padded to a multiple of 16).
    fn panel_stride(&self) -> usize {
        self.chunk().next_multiple_of(PX)
    }
    /// Bytes of one task's panel.
    pub fn panel_bytes(&self) -> usize {
        self.k4() * self.panel_stride() * 4
    }
    /// Bytes of scratch the op needs: one panel per task (`None` on overflow).
    pub fn scratch_bytes(&self) -> Option<usize> {
        self.panel_bytes().checked_mul(Self::u(self.tasks.max(1)))
    }
    /// Whether the conv is pointwise: 1x1, stride 1, no padding (the panel interleaves
    /// channel rows instead of gathering im2col columns).
    pub fn pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sy == 1
            && self.sx == 1
            && self.pt == 0
            && self.pl == 0
            && self.oh == self.h
            && self.ow == self.w
    }
    /// Checks the fields against each other (the kernel trusts them).
    pub fn check(&self) -> Result<(), String> {
        let g = self;
        if g.groups == 0 || !g.ci.is_multiple_of(g.groups) || !g.co.is_multiple_of(g.groups) {
            return Err(format!(
                "{} groups do not divide {} -> {} channels",
                g.groups, g.ci, g.co
            ));
        }
        if [g.kh, g.kw, g.sy, g.sx, g.dy, g.dx].contains(&0) {
            return Err("zero window, stride or dilation".into());
        }
        if g.x_zp > 255 || g.x_i8 > 1 {
            return Err(format!(
                "input zero point {} (u8 domain) out of range",
                g.x_zp
            ));
        }
        check_out(g.y_zp, g.lo, g.hi)?;
        if g.res > 1 || g.res_conv_a > 1 {
            return Err("residual flags out of range".into());
        }
        if self.k() == 0 || self.k() > i32::MAX as usize / (255 * 128) {
            return Err(format!("depth {} out of range", self.k()));
        }
        Ok(())
    }
    /// The struct as f32 bit patterns (two per `u64`, little-endian), for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        let g = self;
        words_to_blob(&[
            g.n,
            g.ci,
            g.h,
            g.w,
            g.co,
            g.groups,
            g.kh,
            g.kw,
            g.sy,
            g.sx,
            g.dy,
            g.dx,
            g.pt,
            g.pl,
            g.oh,
            g.ow,
            g.x_zp,
            g.x_i8,
            g.y_zp as u64,
            g.lo as u64,
            g.hi as u64,
            g.tasks,
            g.res,
            g.res_conv_a,
        ])
    }

    /// [`QConvGeom::to_blob`] followed by the residual sum's geometry (when `res` is set).
    pub fn to_blob_with(&self, sum: Option<&QBinaryGeom>) -> Vec<f32> {
        let mut b = self.to_blob();
        if let Some(s) = sum {
            b.extend(s.to_blob());
        }
        b
    }
}

/// The output zero point and clamp lie in `u8` or `i8` range, `lo <= zp`-independent.
fn check_out(zp: i64, lo: i64, hi: i64) -> Result<(), String> {
    if !(-128..=255).contains(&zp) || !(-128..=255).contains(&lo) || !(lo..=255).contains(&hi) {
        return Err(format!(
            "output zero point {zp} or range {lo}..={hi} out of range"
        ));
    }
    Ok(())
}

/// Packs a conv's weights `w[co][ci / groups][kh][kw]` (symmetric `i8`), `i32` biases and
/// per-channel multipliers (`mnc_ir::quant::Requant::mult`) into the layout [`QConvFn`]
/// reads (see the module docs), folding `x_zp * sum_k w[o][k]` into the biases.
pub fn pack_qconv(g: &QConvGeom, w: &[i8], bias: &[i32], mult: &[f32]) -> Result<Vec<u8>, String> {
    g.check()?;
    let (co, k, cog, k4) = (g.co as usize, g.k(), g.cog(), g.k4());
    if w.len() != co * k || bias.len() != co || mult.len() != co {
        return Err(format!(
            "{} weights, {} biases, {} multipliers for {co} x {k}",
            w.len(),
            bias.len(),
            mult.len()
        ));
    }
    let zp = g.x_zp as i32;
    let mut out = Vec::with_capacity(g.packed_bytes());
    for gi in 0..g.groups as usize {
        for cb in 0..g.blocks() {
            let chan = |r: usize| Some(cb * MR + r).filter(|&o| o < cog).map(|o| gi * cog + o);
            for r in 0..MR {
                let b = chan(r).map_or(0, |o| {
                    let s: i32 = w[o * k..(o + 1) * k].iter().map(|&v| v as i32).sum();
                    bias[o].wrapping_sub(zp.wrapping_mul(s))
                });
                out.extend_from_slice(&b.to_le_bytes());
            }
            for r in 0..MR {
                let m = chan(r).map_or(0.0, |o| mult[o]);
                out.extend_from_slice(&m.to_le_bytes());
            }
            for q in 0..k4 {
                for r in 0..MR {
                    for j in 0..4 {
                        let kk = 4 * q + j;
                        let v = chan(r).filter(|_| kk < k).map_or(0, |o| w[o * k + kk]);
                        out.push(v as u8);
                    }
                }
            }
        }
    }
    debug_assert_eq!(out.len(), g.packed_bytes());
    Ok(out)
}

/// Signature of the conv entry points: `(x, packed_weights, y, residual, scratch, geometry,
/// threads)`; `residual` (the output's shape, null without [`QConvGeom::res`]); scratch holds
/// [`QConvGeom::scratch_bytes`].
pub type QConvFn = unsafe extern "C" fn(
    *const u8,
    *const u8,
    *mut u8,
    *const u8,
    *mut u8,
    *const QConvGeom,
    usize,
);

/// A set's residual sum over `rows` rows of `np` bytes, `stride` apart: `y[i] = f(y[i],
/// res[i])` (`f(res[i], y[i])` unless `conv_is_a`) with the sum's function ([`QBinaryGeom`],
/// an `Add`), in place.
///
/// # Safety
/// `y` and `res` hold the rows; the CPU runs the set's ISA.
type SumRowsFn = unsafe fn(&QBinaryGeom, *mut u8, *const u8, usize, usize, usize, bool);

/// [`SumRowsFn`] one element at a time (`AddRequant::apply` itself): the sets without a
/// vector one.
///
/// # Safety
/// As for [`SumRowsFn`].
unsafe fn sum_rows_scalar(
    g: &QBinaryGeom,
    y: *mut u8,
    res: *const u8,
    rows: usize,
    np: usize,
    stride: usize,
    conv_is_a: bool,
) {
    let f = g.function();
    for r in 0..rows {
        for i in r * stride..r * stride + np {
            // SAFETY: inside the rows (contract); each byte read before it is written.
            unsafe {
                let (c, b) = (g.value(*y.add(i)), g.value(*res.add(i)));
                let (fa, fb) = if conv_is_a { (c, b) } else { (b, c) };
                *y.add(i) = f.apply(fa, fb) as u8;
            }
        }
    }
}

/// One conv call, shared by its tasks.
struct QConv {
    x: *const u8,
    wp: *const u8,
    y: *mut u8,
    scratch: *mut u8,
    /// The residual sum: its geometry, operand, and the set's function for it.
    sum: Option<(QBinaryGeom, *const u8, SumRowsFn)>,
    g: QConvGeom,
    k: usize,
    k4: usize,
    chunk: usize,
    pcp: usize,
    cog: usize,
    blocks: usize,
    block_bytes: usize,
    /// Per depth index `kk < k` of an im2col panel ([`ImTap::all`]); empty when pointwise.
    taps: Vec<ImTap>,
    /// The set's interleave of four channel rows into quads (pointwise panels).
    interleave: InterleaveFn,
}

// SAFETY: tasks read x and the weights, write disjoint output rows and their own panels.
unsafe impl Sync for QConv {}

/// What an im2col panel's depth index `kk` reads: input channel `c` (of the group), window
/// row `ky`, column offset `off = kx * dx` in the padded row, and the output columns
/// `lo..hi` where that tap reads input (`0 <= ox * sx + off - pl < w`).
#[derive(Clone, Copy, Debug)]
struct ImTap {
    c: usize,
    ky: usize,
    off: usize,
    lo: usize,
    hi: usize,
}

impl ImTap {
    /// The taps of every depth index of `g` (computed once per call: the divisions stay
    /// out of the panel fill).
    fn all(g: &QConvGeom) -> Vec<ImTap> {
        let u = |v: u64| v as usize;
        let (w, kh, kw, sx, dx, pl) = (u(g.w), u(g.kh), u(g.kw), u(g.sx), u(g.dx), u(g.pl));
        (0..g.k())
            .map(|kk| {
                let (c, ky, kx) = (kk / (kh * kw), kk / kw % kh, kk % kw);
                let off = kx * dx;
                let lo = pl.saturating_sub(off).div_ceil(sx);
                let hi = if w + pl > off {
                    (w + pl - off - 1) / sx + 1
                } else {
                    0
                };
                ImTap { c, ky, off, lo, hi }
            })
            .collect()
    }
}

/// `MR` output channels (`rows` of them real) times `np` pixels of a packed panel: the ISA's
/// register tiles. `y` is the first output (channel `o0`, pixel `p0`), rows `ys` apart.
type BlockFn = unsafe fn(&QConv, *const u8, usize, *const u8, usize, *mut u8, usize);

/// What a [`BlockFn`]'s last partial vector of `n` pixels (`0 < n < 16`) at depth `k4`
/// quads costs it beyond its whole vectors, in the set's own units (only compared with
/// each other): a kernel set that computes such a rest pixel by pixel pays more for more
/// pixels, one that computes it as a whole vector the same for any `n`.
type RestCostFn = fn(usize, usize) -> usize;

/// The [`RestCostFn`] of the blocks that compute every rest as a whole vector.
fn vector_rest_cost(_n: usize, k4: usize) -> usize {
    MR * k4
}

impl QConv {
    /// # Safety
    /// `geom` is readable.
    /// # Safety
    /// `geom` is readable, followed by the sum's [`QBinaryGeom`] when `res` is set;
    /// `range` and `interleave` run on this CPU.
    #[allow(clippy::too_many_arguments)]
    unsafe fn new(
        x: *const u8,
        wp: *const u8,
        y: *mut u8,
        res: *const u8,
        scratch: *mut u8,
        geom: *const QConvGeom,
        range: SumRowsFn,
        interleave: InterleaveFn,
    ) -> QConv {
        // SAFETY: readable (contract); the blob may not keep it 8-byte aligned.
        let g = unsafe { std::ptr::read_unaligned(geom) };
        let sum = (g.res == 1).then(|| {
            // SAFETY: the sum's geometry follows (contract).
            let s = unsafe { std::ptr::read_unaligned(geom.add(1) as *const QBinaryGeom) };
            (s, res, range)
        });
        QConv {
            x,
            wp,
            y,
            scratch,
            sum,
            g,
            k: g.k(),
            k4: g.k4(),
            chunk: g.chunk(),
            pcp: g.panel_stride(),
            cog: g.cog(),
            blocks: g.blocks(),
            block_bytes: g.block_bytes(),
            taps: if g.pointwise() {
                Vec::new()
            } else {
                ImTap::all(&g)
            },
            interleave,
        }
    }

    /// Packs pixels `p0..p0 + np` of image `b`, group `gi` into `panel`.
    ///
    /// # Safety
    /// The call's buffers are valid; `panel` holds [`QConvGeom::panel_bytes`] this task owns.
    unsafe fn fill(&self, b: usize, gi: usize, p0: usize, np: usize, panel: *mut u8) {
        // SAFETY: as this function's contract.
        unsafe {
            if self.g.pointwise() {
                self.fill_pw(b, gi, p0, np, 0..self.k4, panel)
            } else {
                self.fill_im2col(b, gi, p0, np, panel)
            }
        }
    }

    /// Pointwise panel: quad `q` of pixel `p` holds channels `4q..4q + 4` of the group; only
    /// the quads `quads` are written.
    ///
    /// # Safety
    /// As for [`QConv::fill`], for a pointwise geometry, with `quads` inside `0..k4`; the
    /// caller owns those quads' rows of the panel.
    unsafe fn fill_pw(
        &self,
        b: usize,
        gi: usize,
        p0: usize,
        np: usize,
        quads: std::ops::Range<usize>,
        panel: *mut u8,
    ) {
        let g = &self.g;
        let (ci, hw, k, pcp) = (g.ci as usize, self.g.pixels(), self.k, self.pcp);
        let flip = if g.x_i8 == 1 { 0x80u8 } else { 0 };
        let zeros = [0u8; 0];
        // SAFETY: channel rows `gi * k + kk` (`kk < k`) of image `b` hold `hw >= p0 + np`
        // bytes; the panel holds `k4 * pcp * 4` bytes (contract).
        unsafe {
            let base = self.x.add((b * ci + gi * k) * hw + p0);
            for q in quads {
                let rows: [*const u8; 4] = std::array::from_fn(|j| {
                    if 4 * q + j < k {
                        base.add((4 * q + j) * hw)
                    } else {
                        zeros.as_ptr()
                    }
                });
                let real = [0, 1, 2, 3].map(|j| 4 * q + j < k);
                let dst = panel.add(q * pcp * 4);
                let mut p = 0;
                if real == [true; 4] {
                    p = (self.interleave)(rows, flip, np, dst);
                }
                while p < np {
                    for j in 0..4 {
                        *dst.add(p * 4 + j) = if real[j] { *rows[j].add(p) ^ flip } else { 0 };
                    }
                    p += 1;
                }
                std::ptr::write_bytes(dst.add(np * 4), 0, (pcp - np) * 4);
            }
        }
    }

    /// General panel: im2col columns, `x_zp` where a tap falls in the padding. Output-row
    /// segments outer, quads inner: per quad, the pixels where every tap reads input (or is
    /// constant: all padding, or past `k`) go 16 at a time through [`gather16`] and one
    /// interleave; the edges tap by tap.
    ///
    /// # Safety
    /// As for [`QConv::fill`].
    unsafe fn fill_im2col(&self, b: usize, gi: usize, p0: usize, np: usize, panel: *mut u8) {
        let g = &self.g;
        let u = |v: u64| v as usize;
        let (ci, h, w) = (u(g.ci), u(g.h), u(g.w));
        let (sy, sx, dy, pt, pl, ow) = (u(g.sy), u(g.sx), u(g.dy), u(g.pt), u(g.pl), u(g.ow));
        let cig = ci / u(g.groups);
        let flip = if g.x_i8 == 1 { 0x80u8 } else { 0 };
        let zp = g.x_zp as u8;
        let pcp = self.pcp;
        // SAFETY: every read is of an in-range input pixel of channel `gi * cig + c < ci` of
        // image `b` (16-pixel groups only where every tap's columns lie in `lo..hi`, whose
        // input bytes, `16 * sx` from the first, lie in the row: `gather16`'s contract); every
        // write lies in the panel's `k4 * pcp * 4` bytes (contract).
        unsafe {
            let (mut p, mut oy, mut ox0) = (0, p0 / ow, p0 % ow);
            while p < np {
                let len = (ow - ox0).min(np - p);
                for q in 0..self.k4 {
                    let dst = panel.add(q * pcp * 4 + p * 4);
                    // Per tap: the constant byte of a tap without input in this row, or its
                    // row and valid columns `lo..hi` (absolute output columns).
                    let mut tap: [(Option<u8>, *const u8, usize, usize); 4] =
                        [(Some(0), std::ptr::null(), 0, 0); 4];
                    for (j, t) in tap.iter_mut().enumerate() {
                        let kk = 4 * q + j;
                        if kk >= self.k {
                            continue;
                        }
                        let ImTap { c, ky, off, lo, hi } = self.taps[kk];
                        let iy = (oy * sy + ky * dy).wrapping_sub(pt);
                        let (lo, hi) = (lo.clamp(ox0, ox0 + len), hi.clamp(ox0, ox0 + len));
                        *t = if iy >= h || lo >= hi {
                            (Some(zp), std::ptr::null(), 0, 0)
                        } else {
                            let plane = self.x.add((b * ci + gi * cig + c) * h * w);
                            // The row's byte of output column `ox` is `row[ox * sx]`.
                            let row = plane.add(iy * w).wrapping_add(off).wrapping_sub(pl);
                            (None, row, lo, hi)
                        };
                    }
                    // The pixels every reading tap covers.
                    let (mut l, mut hh) = (ox0, ox0 + len);
                    for t in &tap {
                        if t.0.is_none() {
                            l = l.max(t.2);
                            hh = hh.min(t.3);
                        }
                    }
                    let simd = (sx == 1 || sx == 2) && l < hh;
                    let mut v0 = ox0;
                    let mut v1 = ox0;
                    if simd {
                        // Output columns `ox..ox + 16`, every tap reading input.
                        let group = |ox: usize| {
                            let rows: [[u8; 16]; 4] = std::array::from_fn(|j| match tap[j] {
                                (Some(v), ..) => [v; 16],
                                (None, row, ..) => gather16(row.add(ox * sx), sx, flip),
                            });
                            interleave16(&rows, dst.add((ox - ox0) * 4));
                        };
                        v0 = l;
                        v1 = l + (hh - l) / 16 * 16;
                        let mut ox = v0;
                        while ox < v1 {
                            group(ox);
                            ox += 16;
                        }
                        // The last group ends at `hh`, overlapping the one before (the same
                        // bytes again): only the true edges go tap by tap.
                        if v1 < hh && hh - l >= 16 {
                            group(hh - 16);
                            v1 = hh;
                        }
                    }
                    // The rest, tap by tap.
                    for (j, t) in tap.iter().enumerate() {
                        let seg = dst.add(j);
                        for ox in (ox0..v0).chain(v1..ox0 + len) {
                            *seg.add((ox - ox0) * 4) = match *t {
                                (Some(v), ..) => v,
                                (None, row, lo, hi) => {
                                    if ox >= lo && ox < hi {
                                        *row.add(ox * sx) ^ flip
                                    } else {
                                        zp
                                    }
                                }
                            };
                        }
                    }
                }
                p += len;
                ox0 = 0;
                oy += 1;
            }
            for q in 0..self.k4 {
                std::ptr::write_bytes(panel.add(q * pcp * 4 + np * 4), 0, (pcp - np) * 4);
            }
        }
    }
}

/// 16 bytes of a row at stride `sx` (1 or 2) from `src`, `^ flip`.
///
/// # Safety
/// `src` is valid for reading `15 * sx + 1` bytes.
#[inline]
unsafe fn gather16(src: *const u8, sx: usize, flip: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    #[cfg(target_arch = "x86_64")]
    // SAFETY: 16 bytes at `src`, or for stride 2 the 31 bytes up to `src[30]` read as 16
    // plus 15 (the second load starts at `src + 15`, its first byte dropped); SSE2 is part
    // of x86-64.
    unsafe {
        use core::arch::x86_64::*;
        let f = _mm_set1_epi8(flip as i8);
        let v = if sx == 1 {
            _mm_loadu_si128(src as *const __m128i)
        } else {
            // Even bytes of `src[0..16]` and of `src[15..31]` shifted by one: `src[16..30]`
            // evens are the odd positions of the second load.
            let m = _mm_set1_epi16(0x00ff);
            let a = _mm_and_si128(_mm_loadu_si128(src as *const __m128i), m);
            let b = _mm_srli_epi16(_mm_loadu_si128(src.add(15) as *const __m128i), 8);
            _mm_packus_epi16(a, b)
        };
        _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, _mm_xor_si128(v, f));
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads `src[i * sx]` for `i < 16` (contract).
    unsafe {
        for (i, o) in out.iter_mut().enumerate() {
            *o = *src.add(i * sx) ^ flip;
        }
    }
    out
}

/// Interleaves four 16-byte rows into 16 quads at `dst`.
///
/// # Safety
/// `dst` is valid for writing 64 bytes.
#[inline]
unsafe fn interleave16(rows: &[[u8; 16]; 4], dst: *mut u8) {
    let ptrs: [*const u8; 4] = std::array::from_fn(|j| rows[j].as_ptr());
    // SAFETY: 16 readable bytes per row, 64 writable at `dst` (contract).
    unsafe { interleave4(ptrs, 0, 16, dst) };
}

/// Signature of the interleaves of pointwise panels ([`interleave4`]): whole groups of
/// pixels of four byte rows (`^ flip`) into quads at `dst`, returning the pixels done.
///
/// # Safety
/// The rows hold `np` readable bytes, `dst` `np * 4` writable ones; the CPU runs the
/// function's ISA.
type InterleaveFn = unsafe fn([*const u8; 4], u8, usize, *mut u8) -> usize;

/// Interleaves whole 16-pixel groups of four byte rows (`^ flip`) into quads at `dst`;
/// returns the pixels done (SSE2: every set's fallback).
///
/// # Safety
/// The rows hold `np` readable bytes, `dst` `np * 4` writable ones.
unsafe fn interleave4(rows: [*const u8; 4], flip: u8, np: usize, dst: *mut u8) -> usize {
    let mut p = 0;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: 16-byte loads at `p + 16 <= np` of each row, 64-byte stores at `4p` (contract);
    // SSE2 is part of x86-64.
    unsafe {
        use core::arch::x86_64::*;
        let f = _mm_set1_epi8(flip as i8);
        while p + 16 <= np {
            let ld = |j: usize| _mm_xor_si128(_mm_loadu_si128(rows[j].add(p) as *const __m128i), f);
            let (a, b, c, d) = (ld(0), ld(1), ld(2), ld(3));
            let (ab0, ab1) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
            let (cd0, cd1) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
            let o = dst.add(p * 4) as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi16(ab0, cd0));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(ab0, cd0));
            _mm_storeu_si128(o.add(2), _mm_unpacklo_epi16(ab1, cd1));
            _mm_storeu_si128(o.add(3), _mm_unpackhi_epi16(ab1, cd1));
            p += 16;
        }
    }
    p
}

/// Where an image's pixel chunks start and end: every chunk `chunk` pixels (the last one
/// shorter), each with the same rest of a 16-pixel vector, or chunks that split the image's
/// vectors, so that only the last one has a rest; whichever costs the busiest thread less by
/// the kernel set's [`RestCostFn`] (14x14 in 2 chunks of 98 pixels, a 2-pixel rest each that
/// the VNNI blocks compute pixel by pixel; 28x28 in 4 chunks, 3 x 192 + 208 pixels, not 4 x
/// 196 each with a rest). No chunk exceeds [`QConvGeom::panel_stride`]:
/// `ceil(ceil(p / 16) / c) = ceil(ceil(p / c) / 16)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ChunkSplit {
    p: usize,
    chunk: usize,
    chunks: usize,
    by_vectors: bool,
}

impl ChunkSplit {
    /// The split of `p` pixels in chunks of `chunk` (`> 0`) for `images` images (times
    /// groups) on `threads`, a rest of `r` pixels costing `rest_cost(r)`.
    fn new(
        p: usize,
        chunk: usize,
        images: usize,
        threads: usize,
        rest_cost: impl Fn(usize) -> usize,
    ) -> ChunkSplit {
        let chunks = p.div_ceil(chunk);
        let cost = |r: usize| if r == 0 { 0 } else { rest_cost(r) };
        let busiest = |n: usize| n.div_ceil(threads.max(1));
        let by_vectors =
            busiest(images) * cost(p % PX) < busiest(images * chunks) * cost(chunk % PX);
        ChunkSplit {
            p,
            chunk,
            chunks,
            by_vectors,
        }
    }

    /// Pixels `p0..p1` of chunk `ch < chunks`.
    fn pixels(&self, ch: usize) -> (usize, usize) {
        if self.by_vectors {
            let (v0, v1) = part(self.p.div_ceil(PX), self.chunks, ch);
            ((v0 * PX).min(self.p), (v1 * PX).min(self.p))
        } else {
            (ch * self.chunk, ((ch + 1) * self.chunk).min(self.p))
        }
    }
}

/// Whether a parallel int8 conv with `units` pixel chunks and `blocks` weight blocks splits
/// its output channels one range per thread, each range cut into pixel ranges: a pointwise
/// expansion ([`super::gemm::expands`]: `cog >= EXPAND_RATIO * k`, the 1x1 conv before an
/// inverted residual block's depthwise conv) of one group with at least a block per thread
/// and a chunk per task of a thread. The pool's caller claims tasks from the front and pool threads from the back
/// ([`crate::cpu::par`]), so each thread computes about one range of the expanded planes, and
/// the depthwise conv after it, split by planes the same way ([`super::plane_ranges`]), reads
/// them from its own core's cache; split by pixels, half of the expanded tensor (the largest
/// of the block) crossed to the other core. The price: every thread packs every panel. As
/// the f32 GEMM's [`super::gemm::Split::RowsPerThread`]. A pure function of the geometry.
fn qconv_by_channels(g: &QConvGeom, units: usize, blocks: usize, threads: usize) -> bool {
    g.pointwise()
        && g.groups == 1
        && super::gemm::expands(g.cog(), g.k())
        && blocks >= threads
        && units >= QCONV_TASKS_PER_THREAD
}

/// Runs a conv: work items `(image, group, pixel chunk, channel-block range)` in that order
/// (channel-block range first for an expansion, [`qconv_by_channels`]), split into at most
/// `tasks` contiguous ranges, each task packing its panels into its own scratch panel and
/// running `block` over them.
///
/// # Safety
/// `d` describes valid buffers for its geometry; `block` is callable on this CPU.
unsafe fn qconv_drive(block: BlockFn, rest_cost: RestCostFn, d: &QConv, threads: usize) {
    let threads = super::super::par::threads_now(threads);
    let g = &d.g;
    let (n, groups, p) = (g.n as usize, g.groups as usize, g.pixels());
    let chunks = p.div_ceil(d.chunk);
    let units = n * groups * chunks;
    if units == 0 || d.blocks == 0 {
        return;
    }
    let work = units * d.blocks * MR * d.chunk * d.k;
    let parallel = threads > 1 && work >= QCONV_PAR_MIN_WORK;
    // An expansion's output channels go one range per thread (see [`qconv_by_channels`]).
    let by_channels = parallel && qconv_by_channels(g, units, d.blocks, threads);
    let (splits, tasks) = if !parallel {
        (1, 1)
    } else if by_channels {
        let want = qconv_tasks(threads).min(g.tasks.max(1) as usize);
        let per = (want / threads).clamp(1, units);
        (threads, threads * per)
    } else {
        let want = qconv_tasks(threads);
        // Units in whole rounds of the threads are not split further: splitting them by
        // channel blocks as well would pack each unit's panel in a phase of its own.
        let splits = if units.is_multiple_of(threads) {
            1
        } else {
            want.div_ceil(units).min(d.blocks).max(1)
        };
        (
            splits,
            want.min(units * splits).min(g.tasks.max(1) as usize),
        )
    };
    let items = units * splits;
    // Tasks per channel-block range when split by channels.
    let per = tasks / splits;
    // Task `t`'s items: a range of the units in one channel-block range when split by
    // channels, else a range of all the items.
    let range = |t: usize| {
        if by_channels {
            let (u0, u1) = part(units, per, t % per);
            (t / per * units + u0, t / per * units + u1)
        } else {
            part(items, tasks, t)
        }
    };
    // Item `i`: `(unit, channel-block range)`, units first within a range when split by
    // channels (so that each task's items lie in one range), else ranges first.
    let item = |i: usize| {
        if by_channels {
            (i % units, i / units)
        } else {
            (i / splits, i % splits)
        }
    };
    let split = ChunkSplit::new(p, d.chunk, n * groups, tasks.min(threads), |r| {
        rest_cost(r, d.k4)
    });
    // Pixels `(img, gi, p0, np)` of a unit.
    let unit_px = |unit: usize| {
        let (img, rest) = (unit / (groups * chunks), unit % (groups * chunks));
        let (gi, ch) = (rest / chunks, rest % chunks);
        let (p0, p1) = split.pixels(ch);
        (img, gi, p0, p1 - p0)
    };
    // A pointwise unit split over several tasks (few pixels: MobileNetV2's 7x7 layers) is
    // packed once, into a panel of its own, by all the tasks (each a range of its quads), and
    // then computed from it: each task packing the whole panel again cost as much as a
    // quarter of those convs at 2 threads. The scratch holds `g.tasks` panels.
    let shared = !by_channels && splits > 1 && g.pointwise() && units <= g.tasks.max(1) as usize;
    if shared {
        let pack = |t: usize| {
            let (i0, i1) = range(t);
            for i in i0..i1 {
                let (unit, s) = item(i);
                let (img, gi, p0, np) = unit_px(unit);
                let (q0, q1) = part(d.k4, splits, s);
                // SAFETY: panel `unit` lies in the scratch (`units <= g.tasks` panels); the
                // item's quads of it are written by this task alone (disjoint ranges of
                // the split); the unit's pixels lie inside the call (contract).
                unsafe {
                    let panel = d.scratch.wrapping_add(unit * g.panel_bytes());
                    d.fill_pw(img, gi, p0, np, q0..q1, panel)
                }
            }
        };
        super::super::par::for_each(threads, tasks, &pack);
    }
    let run = |t: usize| {
        let (i0, i1) = range(t);
        let own = d.scratch.wrapping_add(t * g.panel_bytes());
        let mut filled = usize::MAX;
        for i in i0..i1 {
            let (unit, s) = item(i);
            let (img, gi, p0, np) = unit_px(unit);
            let panel = if shared {
                d.scratch.wrapping_add(unit * g.panel_bytes())
            } else {
                own
            };
            // SAFETY: task `t` owns scratch panel `t` (`tasks <= g.tasks`), or reads the
            // unit's shared panel, packed before this phase; the unit's pixels and channels
            // lie inside the call (contract).
            unsafe {
                if !shared && filled != unit {
                    d.fill(img, gi, p0, np, own);
                    filled = unit;
                }
                let (b0, b1) = part(d.blocks, splits, s);
                for cb in b0..b1 {
                    let o0 = cb * MR;
                    let rows = (d.cog - o0).min(MR);
                    let wblk = d.wp.add((gi * d.blocks + cb) * d.block_bytes);
                    let off = ((img * groups + gi) * d.cog + o0) * p + p0;
                    block(d, panel, np, wblk, rows, d.y.add(off), p);
                    if let Some((sg, res, sum)) = &d.sum {
                        // The sum over the rows just stored (in L1), in place.
                        let c = d.g.res_conv_a == 1;
                        sum(sg, d.y.add(off), res.add(off), rows, np, p, c);
                    }
                }
            }
        }
    };
    if tasks == 1 {
        run(0)
    } else {
        super::super::par::for_each(threads, tasks, &run)
    }
}

/// Geometry and requantization of a depthwise conv ([`QDwFn`]), stored in the weights blob
/// as `u64` words ([`QDwGeom::to_blob`]).
///
/// Output plane `q` (`0..planes`, `= b * co + o`) reads input plane `b * ci + o / cog`; the
/// window covers padded rows `oy * sy + ky * dy` (input row `- pt`) and columns likewise.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QDwGeom {
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
    /// Input zero point in the `u8` domain ([`u8_domain`]).
    pub x_zp: u64,
    /// 1: the input bytes are `i8`.
    pub x_i8: u64,
    pub y_zp: i64,
    pub lo: i64,
    pub hi: i64,
    /// Scratch areas (one per task, see [`super::dw_tasks`]).
    pub tasks: u64,
}

impl QDwGeom {
    /// The depthwise geometry of a conv with one input channel per group (`g.groups =
    /// g.ci`): its planes, window and requantization, at most one task per plane.
    pub fn of_conv(g: &QConvGeom) -> QDwGeom {
        let planes = g.n * g.co;
        QDwGeom {
            planes,
            co: g.co,
            ci: g.ci,
            cog: g.co / g.groups.max(1),
            h: g.h,
            w: g.w,
            pt: g.pt,
            pl: g.pl,
            kh: g.kh,
            kw: g.kw,
            sy: g.sy,
            sx: g.sx,
            dy: g.dy,
            dx: g.dx,
            oh: g.oh,
            ow: g.ow,
            x_zp: g.x_zp,
            x_i8: g.x_i8,
            y_zp: g.y_zp,
            lo: g.lo,
            hi: g.hi,
            tasks: g.tasks.min(planes).max(1),
        }
    }

    /// Rows of the padded plane every tap read lies in.
    pub fn hp(&self) -> usize {
        ((self.oh.max(1) - 1) * self.sy + (self.kh - 1) * self.dy + 1) as usize
    }
    /// Columns of the padded plane.
    pub fn wp(&self) -> usize {
        ((self.ow.max(1) - 1) * self.sx + (self.kw - 1) * self.dx + 1) as usize
    }
    /// Columns of one phase of the padded plane.
    pub fn wq(&self) -> usize {
        self.wp().div_ceil(self.sx as usize)
    }
    /// Floats of one task's scratch: the `sx` phases of the padded plane and one padded row
    /// (the f32 kernels), or the padded plane as bytes with 64 bytes of slack (the byte-quad
    /// kernel, [`dw_quads`]), whichever is larger.
    pub fn task_floats(&self) -> usize {
        let f32_path = self.sx as usize * self.hp() * self.wq() + self.wp();
        let lanes = if dw_lanes(self) {
            DWL_LANES * self.hp() * self.wp()
        } else {
            0
        };
        f32_path.max(self.plane_bytes().div_ceil(4)).max(lanes)
    }
    /// Bytes of the padded plane the byte-quad kernel reads, with the 64 bytes its last
    /// vector load may read past the plane.
    pub fn plane_bytes(&self) -> usize {
        self.hp() * self.wp() + 64
    }
    /// Tap quads per window row (the byte-quad kernel): `ceil(kw / 4)`.
    pub fn kq(&self) -> usize {
        (self.kw as usize).div_ceil(4)
    }
    /// Byte offset, in an output channel's record, of the byte-quad kernel's part: the bias
    /// less `x_zp * sum(w)`, then `kh * kq` tap quads.
    pub fn quads_offset(&self) -> usize {
        4 * (2 + (self.kh * self.kw) as usize)
    }
    /// Floats of scratch the op needs (`None` on overflow).
    pub fn scratch_floats(&self) -> Option<usize> {
        self.task_floats().checked_mul(self.tasks.max(1) as usize)
    }
    /// Bytes of one output channel's packed record: bias, multiplier, taps (f32), then the
    /// byte-quad kernel's bias and tap quads ([`QDwGeom::quads_offset`]).
    pub fn record_bytes(&self) -> usize {
        self.quads_offset() + 4 + 4 * self.kh as usize * self.kq()
    }
    /// Checks the fields against each other (the kernel trusts them).
    pub fn check(&self) -> Result<(), String> {
        let g = self;
        if g.co == 0
            || g.cog == 0
            || !g.co.is_multiple_of(g.cog)
            || g.co / g.cog != g.ci
            || !g.planes.is_multiple_of(g.co)
        {
            return Err(format!(
                "{} -> {} channels ({} per group) is not depthwise",
                g.ci, g.co, g.cog
            ));
        }
        if [g.kh, g.kw, g.sy, g.sx, g.dy, g.dx].contains(&0) {
            return Err("zero window, stride or dilation".into());
        }
        if (g.kh * g.kw) as usize > QDW_MAX_TAPS {
            return Err(format!("{}x{} window over {QDW_MAX_TAPS} taps", g.kh, g.kw));
        }
        if g.x_zp > 255 || g.x_i8 > 1 {
            return Err(format!(
                "input zero point {} (u8 domain) out of range",
                g.x_zp
            ));
        }
        check_out(g.y_zp, g.lo, g.hi)
    }
    /// The struct as f32 bit patterns, for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        let g = self;
        words_to_blob(&[
            g.planes,
            g.co,
            g.ci,
            g.cog,
            g.h,
            g.w,
            g.pt,
            g.pl,
            g.kh,
            g.kw,
            g.sy,
            g.sx,
            g.dy,
            g.dx,
            g.oh,
            g.ow,
            g.x_zp,
            g.x_i8,
            g.y_zp as u64,
            g.lo as u64,
            g.hi as u64,
            g.tasks,
        ])
    }
}

/// Packs a depthwise conv's weights `w[co][1][kh][kw]`, biases and multipliers: per output
/// channel `[bias i32][mult f32][taps f32 x kh * kw]` for the f32 kernels, then `[bias - x_zp
/// * sum(w) i32][kh x kq quads of i8 taps]` for the byte-quad kernel (window row `ky`, quad
/// `q`: taps `4q..4q + 4`, zero past `kw`); little-endian words. After the `co` records, for
/// a geometry [`dw_small`] accepts, the small-plane kernel's gather table
/// ([`dw_small_table`]).
pub fn pack_qdw(g: &QDwGeom, w: &[i8], bias: &[i32], mult: &[f32]) -> Result<Vec<u8>, String> {
    g.check()?;
    let (co, taps) = (g.co as usize, (g.kh * g.kw) as usize);
    if w.len() != co * taps || bias.len() != co || mult.len() != co {
        return Err(format!(
            "{} weights, {} biases, {} multipliers for {co} x {taps}",
            w.len(),
            bias.len(),
            mult.len()
        ));
    }
    let mut out = Vec::with_capacity(co * g.record_bytes());
    for o in 0..co {
        out.extend_from_slice(&bias[o].to_le_bytes());
        out.extend_from_slice(&mult[o].to_le_bytes());
        let ws = &w[o * taps..(o + 1) * taps];
        for &t in ws {
            out.extend_from_slice(&(t as f32).to_le_bytes());
        }
        // The quad kernel reads padding as `x_zp` and sums `w * x` (u8 domain): `-x_zp *
        // sum(w)` restores `sum(w * (x - x_zp))`. Wrapping, as `vpdpbusd` adds: the final
        // sum is exact whenever the true accumulator fits `i32` (checked by inference).
        let sum: i64 = ws.iter().map(|&t| t as i64).sum();
        out.extend_from_slice(&((bias[o] as i64 - g.x_zp as i64 * sum) as i32).to_le_bytes());
        let (kh, kw) = (g.kh as usize, g.kw as usize);
        for ky in 0..kh {
            for kx in 0..4 * g.kq() {
                out.push(if kx < kw { ws[ky * kw + kx] as u8 } else { 0 });
            }
        }
    }
    if let Some(s) = dw_small(g) {
        out.extend_from_slice(&dw_small_table(g, &s));
    }
    Ok(out)
}

/// Input planes of at most this many bytes run the small-plane depthwise kernel
/// ([`dw_small`]): the plane and the zero-point slot fit four 64-byte registers.
pub const DWS_MAX_PLANE: usize = 255;
/// Largest small-plane gather table ([`dw_small_table`]) packed with the weights.
const DWS_MAX_TABLE: usize = 64 * 1024;

/// How the small-plane depthwise kernel ([`vbmi`]) covers a plane: the whole input plane
/// (`h * w <= 127` bytes: two registers; `<= 255`: four) stays in registers, read straight
/// from the input with masked loads (no padded copy), the bytes past it holding the zero
/// point, and each 16-lane output vector (16 consecutive outputs of the flattened `oh x ow`
/// plane, rows wrapping) gathers its window quads with `vpermi2b` through a table of byte
/// indices packed after the weights ([`dw_small_table`]). Padding taps and lanes past the
/// plane index the zero-point slot ([`DwSmall::zp_slot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwSmall {
    /// Four registers (planes of 128..=255 bytes) instead of two.
    pub wide: bool,
    /// Output vectors per plane: `ceil(oh * ow / 16)`.
    pub vecs: usize,
    /// Window quads per output vector: `kh * kq` (the packed records' row quads).
    pub quads: usize,
}

impl DwSmall {
    /// The index every padding tap and every lane past the plane reads: the last byte of
    /// the registers, past the plane and filled with the zero point.
    pub fn zp_slot(&self) -> u8 {
        if self.wide {
            255
        } else {
            127
        }
    }
    /// Bytes of the gather table.
    pub fn table_bytes(&self) -> usize {
        self.vecs * self.quads * 64
    }
}

/// The small-plane layout of a depthwise geometry, or `None` when the input plane exceeds
/// [`DWS_MAX_PLANE`] bytes or the table [`DWS_MAX_TABLE`]. A pure function of the geometry.
pub fn dw_small(g: &QDwGeom) -> Option<DwSmall> {
    let hw = (g.h * g.w) as usize;
    let ohw = (g.oh * g.ow) as usize;
    if hw == 0 || hw > DWS_MAX_PLANE || ohw == 0 {
        return None;
    }
    let s = DwSmall {
        wide: hw > 127,
        vecs: ohw.div_ceil(16),
        quads: g.kh as usize * g.kq(),
    };
    (s.table_bytes() <= DWS_MAX_TABLE).then_some(s)
}

/// The gather table of [`dw_small`]: per output vector `v`, per window row `ky` and row
/// quad `q` (the order of the packed records' quads), 64 byte indices: lane `j`'s four
/// bytes are the input-plane offsets `iy * w + ix` of taps `4q..4q + 4` of row `ky` for
/// output `16v + j`, or [`DwSmall::zp_slot`] where the tap is padding, past `kw` (its weight
/// is zero) or the lane past the plane.
pub fn dw_small_table(g: &QDwGeom, s: &DwSmall) -> Vec<u8> {
    let u = |v: u64| v as usize;
    let (h, w, kh, kw, kq) = (u(g.h), u(g.w), u(g.kh), u(g.kw), g.kq());
    let (sy, sx, dy, dx, pt, pl) = (u(g.sy), u(g.sx), u(g.dy), u(g.dx), u(g.pt), u(g.pl));
    let (oh, ow) = (u(g.oh), u(g.ow));
    let zp = s.zp_slot();
    let mut t = Vec::with_capacity(s.table_bytes());
    for v in 0..s.vecs {
        for ky in 0..kh {
            for q in 0..kq {
                for j in 0..16 {
                    let o = 16 * v + j;
                    for b in 0..4 {
                        let kx = 4 * q + b;
                        let idx = if o >= oh * ow || kx >= kw {
                            None
                        } else {
                            let iy = (o / ow * sy + ky * dy).checked_sub(pt).filter(|&r| r < h);
                            let ix = (o % ow * sx + kx * dx).checked_sub(pl).filter(|&c| c < w);
                            iy.zip(ix).map(|(r, c)| (r * w + c) as u8)
                        };
                        t.push(idx.unwrap_or(zp));
                    }
                }
            }
        }
    }
    t
}

/// Output channels per vector of the channel-lanes depthwise kernel ([`dw_lanes`]).
pub const DWL_LANES: usize = 8;
/// Largest output plane (pixels) the channel-lanes kernel runs: up to 16x16 (MobileNet's
/// 14x14 and 7x7 stages). Measured on MobileNetV2 int8 (Zen 3, one thread, per op against
/// plane by plane): 7x7 and 14x14 planes 1.35-2.3x faster. With the limit at 32x32 the 28x28
/// planes also ran ~1.25x faster, but every other op of the model measured 1.05-1.3x slower
/// in the same rounds (not with this limit): see docs/BENCHMARKS.md, session 28.
pub const DWL_MAX_OUT: usize = 256;
/// Largest padded plane of the channel-lanes kernel's scratch, in bytes (8 floats per
/// position): an L2-resident working set.
pub const DWL_MAX_SCRATCH: usize = 128 * 1024;
/// Largest window the channel-lanes kernel runs (its tap vectors are held per group of
/// planes); the f32 sums are exact: `25 * 255 * 128 < 2^24`.
pub const DWL_MAX_TAPS: usize = 25;

/// Whether the AVX2 set runs a depthwise geometry channels-in-lanes ([`avx2`]: eight output
/// channels per vector, one f32 lane each, the input planes transposed into a padded
/// `[row][column][channel]` scratch) instead of plane by plane: small output planes
/// ([`DWL_MAX_OUT`]), windows of at most [`DWL_MAX_TAPS`] taps and a padded plane of at
/// most [`DWL_MAX_SCRATCH`] bytes per task. A pure function of the geometry.
pub fn dw_lanes(g: &QDwGeom) -> bool {
    let ohw = g.oh.saturating_mul(g.ow);
    ohw > 0
        && ohw <= DWL_MAX_OUT as u64
        && g.kh.saturating_mul(g.kw) <= DWL_MAX_TAPS as u64
        && g.hp().saturating_mul(g.wp()) <= DWL_MAX_SCRATCH / (4 * DWL_LANES)
}

/// Tap quads per window row the byte-quad depthwise kernel handles (`kw <= 8`).
pub const DWQ_MAX_KQ: usize = 2;

/// How the byte-quad depthwise kernel ([`vbmi`]) covers a plane: each 16-lane vector holds
/// `rows` output rows of `seg` outputs (`seg = 16` columns of one row when `ow >= 16`, else
/// `rows` whole rows of `ow`), and `idx[q]` is the `vpermb` pattern that puts into lane `j`
/// the four padded-plane bytes of window quad `q` (taps `4q..4q + 4` of a window row), as
/// offsets from the vector's first input byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DwQuads {
    pub kq: usize,
    pub rows: usize,
    pub seg: usize,
    pub idx: [[u8; 64]; DWQ_MAX_KQ],
}

/// The byte-quad layout of a depthwise geometry, or `None` when the window or the strides
/// are too wide for one 64-byte load (then the f32 kernel runs). A pure function of the
/// geometry.
pub fn dw_quads(g: &QDwGeom) -> Option<DwQuads> {
    let u = |v: u64| v as usize;
    let (ow, sy, sx, dx) = (u(g.ow), u(g.sy), u(g.sx), u(g.dx));
    let kq = g.kq();
    if kq > DWQ_MAX_KQ || ow == 0 {
        return None;
    }
    let wp = g.wp();
    let seg = ow.min(16);
    let last = |rows: usize| (rows - 1) * sy * wp + (seg - 1) * sx + (4 * kq - 1) * dx;
    let rows = (1..=(16 / seg).min(g.oh.max(1) as usize))
        .rev()
        .find(|&r| last(r) < 64)?;
    let mut idx = [[0u8; 64]; DWQ_MAX_KQ];
    for (q, pattern) in idx.iter_mut().enumerate().take(kq) {
        for j in 0..rows * seg {
            let base = (j / seg) * sy * wp + (j % seg) * sx;
            for b in 0..4 {
                pattern[4 * j + b] = (base + (4 * q + b) * dx) as u8;
            }
        }
    }
    Some(DwQuads { kq, rows, seg, idx })
}

/// Signature of the depthwise entry points: `(x, packed_weights, y, scratch, geometry,
/// threads)`; scratch holds [`QDwGeom::scratch_floats`].
pub type QDwFn =
    unsafe extern "C" fn(*const u8, *const u8, *mut u8, *mut f32, *const QDwGeom, usize);

/// One depthwise call, shared by its tasks.
struct QDw {
    x: *const u8,
    wp: *const u8,
    y: *mut u8,
    scratch: *mut f32,
    g: QDwGeom,
}

// SAFETY: tasks read x and the weights and write disjoint output planes and their own
// scratch areas.
unsafe impl Sync for QDw {}

impl QDw {
    /// # Safety
    /// `geom` is readable.
    unsafe fn new(
        x: *const u8,
        wp: *const u8,
        y: *mut u8,
        scratch: *mut f32,
        geom: *const QDwGeom,
    ) -> QDw {
        QDw {
            x,
            wp,
            y,
            scratch,
            // SAFETY: readable (contract).
            g: unsafe { std::ptr::read_unaligned(geom) },
        }
    }
}

/// Runs a depthwise conv as ranges of output planes, each task with its own scratch area:
/// `planes(d, q0, q1, scratch)`.
///
/// # Safety
/// `d` describes valid buffers; `planes` is callable on this CPU.
unsafe fn qdw_drive(planes: unsafe fn(&QDw, usize, usize, *mut f32), d: &QDw, threads: usize) {
    let g = &d.g;
    let n = g.planes as usize;
    let work = n * (g.oh * g.ow * g.kh * g.kw) as usize;
    let per = g.task_floats();
    super::plane_ranges(threads, n, work, g.tasks as usize, &|q0, q1, t| {
        // SAFETY: task `t` owns scratch area `t` (`tasks <= g.tasks`); disjoint ranges of
        // the call's planes (contract).
        unsafe { planes(d, q0, q1, d.scratch.add(t * per)) }
    });
}

/// Zeroes a task's scratch area: the padding of every plane [`dw_pad`] later fills stays
/// zero (it only ever writes the input's interior).
///
/// # Safety
/// `sp` holds [`QDwGeom::task_floats`] floats this task owns.
unsafe fn dw_zero(g: &QDwGeom, sp: *mut f32) {
    // SAFETY: contract.
    unsafe { std::slice::from_raw_parts_mut(sp, g.task_floats()).fill(0.0) }
}

/// Writes input plane `xin` into the padded, phase-split plane (inlined into each ISA's
/// caller, with its row functions) (column `c` of the padded
/// plane at phase `c % sx`, index `c / sx`): only the cells that hold input, the rest
/// staying zero since [`dw_zero`]. `row(dst, src, n, avail)` converts `n` input bytes to
/// f32 `x - x_zp` (flipped for `i8`), `avail >= n` bytes being readable at `src`;
/// `row2(even, odd, src, n, avail)` converts likewise, even columns to `even`, odd ones to
/// `odd` (stride 2).
///
/// # Safety
/// `xin` holds `h * w` bytes; `sp` holds [`QDwGeom::task_floats`] floats this task owns,
/// zeroed by [`dw_zero`] and since written only by this function for the same geometry.
#[inline(always)]
unsafe fn dw_pad(
    g: &QDwGeom,
    xin: *const u8,
    sp: *mut f32,
    row: impl Fn(*mut f32, *const u8, usize, usize, u8, f32),
    row2: impl Fn(*mut f32, *mut f32, *const u8, usize, usize, u8, f32),
) {
    let u = |v: u64| v as usize;
    let (h, w, pt, pl, sx) = (u(g.h), u(g.w), u(g.pt), u(g.pl), u(g.sx));
    let (hp, wp, wq) = (g.hp(), g.wp(), g.wq());
    let flip = if g.x_i8 == 1 { 0x80u8 } else { 0 };
    let zp = g.x_zp as f32;
    // Input columns `0..w` land at padded columns `pl..`; only those below `wp` are read.
    let (c0, c1) = (pl.min(wp), (pl + w).min(wp));
    if c0 >= c1 {
        return;
    }
    // SAFETY: rows `r < hp` of phases `< sx` (each `wq` floats) and the temporary row (`wp`
    // floats after the phases) lie in the task's area; input rows `iy < h` hold
    // `w >= c1 - c0` bytes (contract); padded columns below `c1 <= wp` land at phase indices
    // below `wq`.
    unsafe {
        let tmp = sp.add(sx * hp * wq);
        for r in pt.min(hp)..(pt + h).min(hp) {
            let src = xin.add((r - pt) * w);
            let avail = (h - (r - pt)) * w;
            if sx == 1 {
                row(sp.add(r * wq + c0), src, c1 - c0, avail, flip, zp);
                continue;
            }
            if sx == 2 {
                // Padded column `pl + ix`: even input columns at phase `pl % 2`, index
                // `pl / 2 + ix / 2`, odd ones at the other phase, index `(pl + 1) / 2 + ix / 2`.
                let (pe, po) = (pl % 2, 1 - pl % 2);
                let ev = sp.add((pe * hp + r) * wq + pl / 2);
                let od = sp.add((po * hp + r) * wq + pl.div_ceil(2));
                row2(ev, od, src, c1 - c0, avail, flip, zp);
            } else {
                // The temporary row's border columns stay zero.
                row(tmp.add(c0), src, c1 - c0, avail, flip, zp);
                for ph in 0..sx {
                    let out = sp.add((ph * hp + r) * wq);
                    for i in 0..wq {
                        let c = i * sx + ph;
                        *out.add(i) = if c < wp { *tmp.add(c) } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// Geometry and parameters of a QuantizeLinear / DequantizeLinear ([`QuantFn`],
/// [`DequantFn`]), stored in the weights blob as `u64` words.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QLinGeom {
    /// Elements.
    pub len: u64,
    /// The scale's f32 bits.
    pub scale: u64,
    /// Zero point (in the quantized type's domain).
    pub zp: i64,
    /// 1: the quantized side is `i8`, else `u8`.
    pub i8: u64,
}

impl QLinGeom {
    /// Per-tensor parameters of `len` elements.
    pub fn new(len: usize, scale: f32, zp: i32, qt: QType) -> QLinGeom {
        QLinGeom {
            len: len as u64,
            scale: scale.to_bits() as u64,
            zp: zp as i64,
            i8: (qt == QType::I8) as u64,
        }
    }
    fn qtype(&self) -> QType {
        if self.i8 == 1 {
            QType::I8
        } else {
            QType::U8
        }
    }
    fn scale(&self) -> f32 {
        f32::from_bits(self.scale as u32)
    }
    /// The struct as f32 bit patterns, for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        words_to_blob(&[self.len, self.scale, self.zp as u64, self.i8])
    }
}

/// Signature of the QuantizeLinear entry points: `(x f32, y bytes, geometry, threads)`.
pub type QuantFn = unsafe extern "C" fn(*const f32, *mut u8, *const QLinGeom, usize);
/// Signature of the DequantizeLinear entry points: `(x bytes, y f32, geometry, threads)`.
pub type DequantFn = unsafe extern "C" fn(*const u8, *mut f32, *const QLinGeom, usize);

/// Runs `range(i0, i1)` over `0..len` in chunks on `threads` (every elementwise int8 kernel:
/// quantize, dequantize, lookup, sum).
pub(super) fn lin_drive(len: usize, threads: usize, range: &(dyn Fn(usize, usize) + Sync)) {
    let threads = super::super::par::threads_now(threads);
    if threads <= 1 || len < PAR_MIN_WORK {
        return range(0, len);
    }
    let tasks = len
        .div_ceil(LIN_CHUNK)
        .min(threads.saturating_mul(TASKS_PER_THREAD));
    super::super::par::for_each(threads, tasks, &|t| {
        let (i0, i1) = part(len, tasks, t);
        range(i0, i1)
    });
}

/// Raw pointers of a quantize / dequantize call, shared by its tasks.
#[derive(Clone, Copy)]
struct Lin<A, B> {
    x: *const A,
    y: *mut B,
    g: QLinGeom,
}
// SAFETY: tasks read `x` and write disjoint ranges of `y`.
unsafe impl<A, B> Sync for Lin<A, B> {}

/// The scalar QuantizeLinear of elements `i0..i1` (`mnc_ir::quant::quantize` itself).
///
/// # Safety
/// `l` describes valid buffers; `i0 <= i1 <= len`.
unsafe fn quantize_scalar(l: &Lin<f32, u8>, i0: usize, i1: usize) {
    let (s, zp, qt) = (l.g.scale(), l.g.zp as i32, l.g.qtype());
    for i in i0..i1 {
        // SAFETY: `i < len` (contract).
        unsafe { *l.y.add(i) = mnc_ir::quant::quantize(*l.x.add(i), s, zp, qt) as u8 }
    }
}

/// The scalar DequantizeLinear of elements `i0..i1`.
///
/// # Safety
/// As for [`quantize_scalar`].
unsafe fn dequantize_scalar(l: &Lin<u8, f32>, i0: usize, i1: usize) {
    let (s, zp) = (l.g.scale(), l.g.zp as i32);
    let i8 = l.g.i8 == 1;
    for i in i0..i1 {
        // SAFETY: `i < len` (contract).
        unsafe {
            let b = *l.x.add(i);
            let q = if i8 { b as i8 as i32 } else { b as i32 };
            *l.y.add(i) = mnc_ir::quant::dequantize(q, s, zp);
        }
    }
}

/// The depthwise entry point of a kernel set, from its planes function.
macro_rules! dw_entry {
    ($dw_planes:expr) => {
        /// See [`super::QDwFn`] and [`super::QDwGeom`] for the contract.
        ///
        /// # Safety
        /// The CPU must support the module's ISA; the buffers must be as the geometry
        /// describes (weights from [`super::pack_qdw`]).
        pub unsafe extern "C" fn dw(
            x: *const u8,
            w: *const u8,
            y: *mut u8,
            scratch: *mut f32,
            geom: *const super::QDwGeom,
            threads: usize,
        ) {
            // SAFETY: the buffers and the ISA are as this function's contract states.
            super::super::at_boundary(|| unsafe {
                let d = super::QDw::new(x, w, y, scratch, geom);
                super::qdw_drive($dw_planes, &d, threads)
            })
        }
    };
}

/// The int8 peak loop of a SIMD module ([`Int8Kernels::peak`]): `$name(steps)` runs `steps`
/// rounds of [`PEAK_CHAINS`] independent multiply-adds `$step` on accumulators starting at
/// `$set1(i)`, and returns their sum (`$add`, then `$lane`) so nothing is optimized away.
macro_rules! int8_peak_loop {
    ($name:ident, $feat:literal, $what:literal, $zero:expr, $set1:ident, $step:expr, $lane:expr,
     $add:ident) => {
        #[doc = concat!("`steps` rounds of [`super::PEAK_CHAINS`] independent ", $what, ".")]
        ///
        /// # Safety
        /// The CPU runs the module's ISA.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $name(steps: usize) -> f32 {
            let mut acc = [$zero; super::PEAK_CHAINS];
            for (i, v) in acc.iter_mut().enumerate() {
                *v = $set1(i as i32);
            }
            for _ in 0..steps {
                for v in acc.iter_mut() {
                    *v = $step(*v);
                }
            }
            let s = acc.iter().fold($zero, |s, &v| $add(s, v));
            $lane(s) as f32
        }
    };
}

/// The entry points of a kernel set from its per-ISA parts.
macro_rules! conv_entry {
    ($block:expr, $rest_cost:expr, $range:expr, $interleave:expr) => {
        /// See [`super::QConvFn`] and [`super::QConvGeom`] for the contract.
        ///
        /// # Safety
        /// The CPU must support the module's ISA; the buffers must be as the geometry
        /// describes (weights from [`super::pack_qconv`]).
        pub unsafe extern "C" fn conv(
            x: *const u8,
            w: *const u8,
            y: *mut u8,
            res: *const u8,
            scratch: *mut u8,
            geom: *const super::QConvGeom,
            threads: usize,
        ) {
            // SAFETY: the buffers and the ISA are as this function's contract states.
            super::super::at_boundary(|| unsafe {
                let d = super::QConv::new(x, w, y, res, scratch, geom, $range, $interleave);
                super::qconv_drive($block, $rest_cost, &d, threads)
            })
        }
    };
}

macro_rules! int8_entries {
    ($block:expr, $rest_cost:expr, $sum_rows:expr, $dw_planes:expr, $quant:expr, $dequant:expr,
     $interleave:expr) => {
        conv_entry!($block, $rest_cost, $sum_rows, $interleave);

        dw_entry!($dw_planes);

        /// See [`super::QuantFn`].
        ///
        /// # Safety
        /// The CPU must support the module's ISA; `x` holds `len` floats, `y` `len` bytes.
        pub unsafe extern "C" fn quantize(
            x: *const f32,
            y: *mut u8,
            geom: *const super::QLinGeom,
            threads: usize,
        ) {
            super::super::at_boundary(|| {
                let l = super::Lin {
                    x,
                    y,
                    // SAFETY: the geometry is readable (contract).
                    g: unsafe { std::ptr::read_unaligned(geom) },
                };
                // SAFETY: sub-ranges of the call, whose buffers and ISA are as the contract
                // states.
                super::lin_drive(l.g.len as usize, threads, &|i0, i1| unsafe {
                    $quant(&l, i0, i1)
                })
            })
        }

        /// See [`super::DequantFn`].
        ///
        /// # Safety
        /// The CPU must support the module's ISA; `x` holds `len` bytes, `y` `len` floats.
        pub unsafe extern "C" fn dequantize(
            x: *const u8,
            y: *mut f32,
            geom: *const super::QLinGeom,
            threads: usize,
        ) {
            super::super::at_boundary(|| {
                let l = super::Lin {
                    x,
                    y,
                    // SAFETY: the geometry is readable (contract).
                    g: unsafe { std::ptr::read_unaligned(geom) },
                };
                // SAFETY: sub-ranges of the call, whose buffers and ISA are as the contract
                // states.
                super::lin_drive(l.g.len as usize, threads, &|i0, i1| unsafe {
                    $dequant(&l, i0, i1)
                })
            })
        }
    };
}

/// The requantization of one depthwise output channel.
struct DwEpi {
    /// The bias as the accumulators' start when that keeps every partial sum exact in f32
    /// (`|bias| + taps * 255 * 128 < 2^24`; `folded`), else 0 and the bias added in `i32`.
    init: f32,
    folded: bool,
    bias: i32,
    mult: f32,
    /// `lo - zp`, `hi - zp` as f32.
    lo: f32,
    hi: f32,
    zp: i32,
}

/// The depthwise planes of a SIMD module (uses its `W`, `RB`, `Vf`, `dw_row`, `row2`, `ldm`,
/// `bcf`, `fma`, `splatf`, `dw_out`).
macro_rules! qdw_body {
    ($feat:literal) => {
        /// Output planes `q0..q1` with the scratch area `sp`.
        ///
        /// # Safety
        /// As for [`super::qdw_drive`]'s `planes`; the CPU runs the module's ISA.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn dw_planes(d: &QDw, q0: usize, q1: usize, sp: *mut f32) {
            let g = &d.g;
            let u = |v: u64| v as usize;
            let (h, w, co, ci, cog) = (u(g.h), u(g.w), u(g.co), u(g.ci), u(g.cog));
            let (oh, ow) = (u(g.oh), u(g.ow));
            let rec = g.record_bytes();
            let taps_n = g.kh * g.kw;
            let fast = g.kh == g.kw && g.dy == 1 && g.dx == 1;
            let mut last = usize::MAX;
            // SAFETY: plane `q < planes` reads input plane `b * ci + o / cog`, record `o`,
            // writes output plane `q` and the task's scratch area (contract).
            unsafe {
                super::dw_zero(g, sp);
                for q in q0..q1 {
                    let (b, o) = (q / co, q % co);
                    let inp = b * ci + o / cog;
                    if inp != last {
                        // `dw_pad` passes rows inside the task's area and the input plane, as
                        // `dw_row` and `row2` require.
                        let row = |a, b, c, e, f, z| dw_row(a, b, c, e, f, z);
                        let row2 = |a, b, c, e, f, z, zz| row2(a, b, c, e, f, z, zz);
                        super::dw_pad(g, d.x.add(inp * h * w), sp, row, row2);
                        last = inp;
                    }
                    let r = d.wp.add(o * rec);
                    let bias = (r as *const i32).read_unaligned();
                    let folded = (bias.unsigned_abs() as u64) + taps_n * 255 * 128 < 1 << 24;
                    let e = super::DwEpi {
                        init: if folded { bias as f32 } else { 0.0 },
                        folded,
                        bias,
                        mult: (r.add(4) as *const f32).read_unaligned(),
                        lo: (g.lo - g.y_zp) as f32,
                        hi: (g.hi - g.y_zp) as f32,
                        zp: g.y_zp as i32,
                    };
                    let taps = r.add(8) as *const f32;
                    let y = d.y.add(q * oh * ow);
                    match (fast, g.kh) {
                        (true, 3) => dw_rows::<3>(g, sp, taps, &e, y),
                        (true, 5) => dw_rows::<5>(g, sp, taps, &e, y),
                        _ => dw_rows::<0>(g, sp, taps, &e, y),
                    }
                }
            }
        }

        /// Every output row of one plane, `RB` rows at a time.
        ///
        /// # Safety
        /// `sp` holds the plane's padded phases; `taps` the window; `y` the `oh * ow` outputs.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn dw_rows<const K: usize>(
            g: &super::QDwGeom,
            sp: *const f32,
            taps: *const f32,
            e: &super::DwEpi,
            y: *mut u8,
        ) {
            let oh = g.oh as usize;
            // SAFETY: rows `oy..oy + RB <= oh` (contract).
            unsafe {
                let mut oy = 0;
                while oy + RB <= oh {
                    dw_block::<RB, K>(g, sp, taps, e, y, oy);
                    oy += RB;
                }
                match oh - oy {
                    7 => dw_block::<7, K>(g, sp, taps, e, y, oy),
                    6 => dw_block::<6, K>(g, sp, taps, e, y, oy),
                    5 => dw_block::<5, K>(g, sp, taps, e, y, oy),
                    4 => dw_block::<4, K>(g, sp, taps, e, y, oy),
                    3 => dw_block::<3, K>(g, sp, taps, e, y, oy),
                    2 => dw_block::<2, K>(g, sp, taps, e, y, oy),
                    1 => dw_block::<1, K>(g, sp, taps, e, y, oy),
                    _ => {}
                }
            }
        }

        /// Output rows `oy..oy + RB`, `W` columns at a time; `K > 0`: a `K x K` undilated
        /// window (unrolled), else the geometry's.
        ///
        /// # Safety
        /// As for [`dw_rows`], `oy + RB <= oh`.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn dw_block<const RB: usize, const K: usize>(
            g: &super::QDwGeom,
            sp: *const f32,
            taps: *const f32,
            e: &super::DwEpi,
            y: *mut u8,
            oy: usize,
        ) {
            let u = |v: u64| v as usize;
            let (kh, kw) = if K > 0 { (K, K) } else { (u(g.kh), u(g.kw)) };
            let (dy, dx) = if K > 0 { (1, 1) } else { (u(g.dy), u(g.dx)) };
            let (sy, sx, ow) = (u(g.sy), u(g.sx), u(g.ow));
            let (hp, wq) = (g.hp(), g.wq());
            // SAFETY: tap `(ky, kx)` of output `(oy + r, ox + i)` reads phase `kx * dx % sx`,
            // row `(oy + r) * sy + ky * dy < hp`, index `ox + i + kx * dx / sx < wq`; outputs
            // `(oy + r) * ow + ox + i` with `i < n` (contract).
            unsafe {
                let mut ox = 0;
                while ox < ow {
                    let n = (ow - ox).min(W);
                    let mut acc = [splatf(e.init); RB];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let t = bcf(taps.add(ky * kw + kx));
                            let c = kx * dx;
                            let base = sp.add((c % sx) * hp * wq + ox + c / sx);
                            for (r, a) in acc.iter_mut().enumerate() {
                                let v = ldm(base.add(((oy + r) * sy + ky * dy) * wq), n);
                                *a = fma(v, t, *a);
                            }
                        }
                    }
                    for (r, a) in acc.iter().enumerate() {
                        dw_out(y.add((oy + r) * ow + ox), *a, e, n);
                    }
                    ox += W;
                }
            }
        }
    };
}

/// The vector helpers and loops an int8 SIMD module shares, from its intrinsics and its
/// primitives `ld_u8` / `ld_i8` (`W` bytes widened to `i32` lanes), `stm` (the first `n`
/// floats), `store_bytes` (the low bytes of the first `n` lanes): `requant`, `requant_f`,
/// `bcf`, `fma`, `splatf`, `dw_out`, `dw_row`, `quant`, `dequant`.
macro_rules! simd_ops {
    ($feat:literal, $set1_ps:ident, $set1_epi32:ident, $fmadd:ident, $mul:ident, $div:ident,
     $min:ident, $max:ident, $sub_ps:ident, $cvt_ps:ident, $cvt_epi32:ident, $add_epi32:ident,
     $sub_epi32:ident, $xor:ident, $loadu:ident, $storeu:ident) => {
        /// Requantized `i32` lanes (see [`super::requant1`]).
        #[target_feature(enable = $feat)]
        #[inline]
        pub(super) fn requant(acc: Vi, m: Vf, lo: Vf, hi: Vf, zp: Vi) -> Vi {
            requant_f($cvt_ps(acc), m, lo, hi, zp)
        }

        /// [`requant`] of an accumulator already converted to f32.
        #[target_feature(enable = $feat)]
        #[inline]
        fn requant_f(acc: Vf, m: Vf, lo: Vf, hi: Vf, zp: Vi) -> Vi {
            // The value first in max/min, as `Requant::apply` (x86 returns the second
            // operand when either is NaN).
            let t = $min($max($mul(acc, m), lo), hi);
            $add_epi32($cvt_epi32(t), zp)
        }

        /// # Safety
        /// `p` is valid for reading one float.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn bcf(p: *const f32) -> Vf {
            // SAFETY: contract.
            unsafe { $set1_ps(p.read_unaligned()) }
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn fma(a: Vf, b: Vf, c: Vf) -> Vf {
            $fmadd(a, b, c)
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn splatf(v: f32) -> Vf {
            $set1_ps(v)
        }

        /// Requantizes the exact f32 sums `acc` (plus the `i32` bias unless folded) and
        /// stores `n` bytes.
        ///
        /// # Safety
        /// `p` is valid for writing `n` bytes (`1 <= n <= W`).
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn dw_out(p: *mut u8, acc: Vf, e: &super::DwEpi, n: usize) {
            let (m, lo, hi) = ($set1_ps(e.mult), $set1_ps(e.lo), $set1_ps(e.hi));
            let zp = $set1_epi32(e.zp);
            let q = if e.folded {
                // `acc` is the exact accumulator (bias included): `acc as f32` is itself.
                requant_f(acc, m, lo, hi, zp)
            } else {
                requant(
                    $add_epi32($cvt_epi32(acc), $set1_epi32(e.bias)),
                    m,
                    lo,
                    hi,
                    zp,
                )
            };
            // SAFETY: contract.
            unsafe { store_bytes(p, q, n) }
        }

        /// `n` input bytes to f32 `(x ^ flip) - zp`.
        ///
        /// # Safety
        /// `dst` holds `n` floats, `src` `avail >= n` readable bytes; the CPU runs the
        /// module's ISA.
        #[target_feature(enable = $feat)]
        unsafe fn dw_row(dst: *mut f32, src: *const u8, n: usize, avail: usize, flip: u8, zp: f32) {
            // SAFETY: `W`-byte loads below `avail` (or from the local copy), stores below `n`
            // (contract).
            unsafe {
                let (f, z) = ($set1_epi32(flip as i32), $set1_ps(zp));
                let cvt = |p: *const u8| $sub_ps($cvt_ps($xor(ld_u8(p), f)), z);
                let mut i = 0;
                while i + W <= n {
                    $storeu(dst.add(i), cvt(src.add(i)));
                    i += W;
                }
                if i < n {
                    // The tail: a whole load where the plane goes on, else through a local
                    // copy (byte-masked loads would need AVX512-BW).
                    let mut t = [0u8; 16];
                    let s8 = if i + W <= avail {
                        src.add(i)
                    } else {
                        for (j, b) in t.iter_mut().enumerate().take(n - i) {
                            *b = *src.add(i + j);
                        }
                        t.as_ptr()
                    };
                    stm(dst.add(i), cvt(s8), n - i);
                }
            }
        }

        /// QuantizeLinear of elements `i0..i1`: whole vectors, the tail as
        /// [`super::quantize_scalar`].
        ///
        /// # Safety
        /// As for [`super::quantize_scalar`]; the CPU runs the module's ISA.
        #[target_feature(enable = $feat)]
        unsafe fn quant(l: &super::Lin<f32, u8>, i0: usize, i1: usize) {
            let qt = l.g.qtype();
            let zp = l.g.zp as i32;
            let s = $set1_ps(l.g.scale());
            let lo = $set1_ps((qt.min() - zp) as f32);
            let hi = $set1_ps((qt.max() - zp) as f32);
            let z = $set1_epi32(zp);
            let mut i = i0;
            // SAFETY: elements `i..i + W <= i1 <= len` (contract).
            unsafe {
                while i + W <= i1 {
                    // An IEEE division, as `quantize` (not a reciprocal multiply).
                    let t = $min($max($div($loadu(l.x.add(i)), s), lo), hi);
                    store_bytes(l.y.add(i), $add_epi32($cvt_epi32(t), z), W);
                    i += W;
                }
                super::quantize_scalar(l, i, i1)
            }
        }

        /// DequantizeLinear of elements `i0..i1`.
        ///
        /// # Safety
        /// As for [`super::dequantize_scalar`]; the CPU runs the module's ISA.
        #[target_feature(enable = $feat)]
        unsafe fn dequant(l: &super::Lin<u8, f32>, i0: usize, i1: usize) {
            let s = $set1_ps(l.g.scale());
            let z = $set1_epi32(l.g.zp as i32);
            let mut i = i0;
            // SAFETY: elements `i..i + W <= i1 <= len` (contract).
            unsafe {
                while i + W <= i1 {
                    let p = l.x.add(i);
                    let q = if l.g.i8 == 1 { ld_i8(p) } else { ld_u8(p) };
                    $storeu(l.y.add(i), $mul($cvt_ps($sub_epi32(q, z)), s));
                    i += W;
                }
                super::dequantize_scalar(l, i, i1)
            }
        }
    };
}

/// Plain Rust, for the SSE baseline: integer loops over the packed panel and the input.
pub mod scalar {
    use super::{requant1, QConv, QDw, MR};

    /// The kernel set.
    pub static KERNELS: super::Int8Kernels = super::Int8Kernels {
        name: "scalar",
        features: &[],
        conv: super::Sym {
            symbol: "mnc_qconv_scalar",
            func: conv,
        },
        dw: super::Sym {
            symbol: "mnc_qdw_scalar",
            func: dw,
        },
        quantize: super::Sym {
            symbol: "mnc_quantize_scalar",
            func: quantize,
        },
        dequantize: super::Sym {
            symbol: "mnc_dequantize_scalar",
            func: dequantize,
        },
        lut: super::LUT_PORTABLE,
        mean: super::MEAN_PORTABLE,
        binary: super::BINARY_PORTABLE,
        peak: None,
    };

    /// # Safety
    /// As for [`super::BlockFn`].
    unsafe fn block(
        d: &QConv,
        panel: *const u8,
        np: usize,
        wblk: *const u8,
        rows: usize,
        y: *mut u8,
        ys: usize,
    ) {
        let (lo, hi, zp) = (d.g.lo as i32, d.g.hi as i32, d.g.y_zp as i32);
        // SAFETY: the block holds `MR` biases, multipliers and `k4 * MR * 4` weights; the
        // panel `k4 * pcp * 4` bytes; outputs `rows` rows of `np` (contract).
        unsafe {
            let wq = wblk.add(MR * 8);
            for r in 0..rows {
                let bias = (wblk.add(4 * r) as *const i32).read_unaligned();
                let mult = (wblk.add(4 * (MR + r)) as *const f32).read_unaligned();
                for p in 0..np {
                    let mut acc = 0i32;
                    for q in 0..d.k4 {
                        for j in 0..4 {
                            let x = *panel.add((q * d.pcp + p) * 4 + j) as i32;
                            let w = *wq.add((q * MR + r) * 4 + j) as i8 as i32;
                            acc = acc.wrapping_add(x * w);
                        }
                    }
                    *y.add(r * ys + p) = requant1(acc.wrapping_add(bias), mult, lo, hi, zp) as u8;
                }
            }
        }
    }

    /// # Safety
    /// As for [`super::qdw_drive`]'s `planes`.
    unsafe fn planes(d: &QDw, q0: usize, q1: usize, _scratch: *mut f32) {
        let g = &d.g;
        let u = |v: u64| v as usize;
        let (h, w, co, ci, cog) = (u(g.h), u(g.w), u(g.co), u(g.ci), u(g.cog));
        let (kh, kw, sy, sx, dy, dx) = (u(g.kh), u(g.kw), u(g.sy), u(g.sx), u(g.dy), u(g.dx));
        let (pt, pl, oh, ow) = (u(g.pt), u(g.pl), u(g.oh), u(g.ow));
        let flip = if g.x_i8 == 1 { 0x80u8 } else { 0 };
        let (xzp, lo, hi, zp) = (g.x_zp as i32, g.lo as i32, g.hi as i32, g.y_zp as i32);
        let rec = g.record_bytes();
        // SAFETY: planes `q < planes` read input plane `b * ci + o / cog` at in-range
        // pixels, channel `o`'s record, and write output plane `q` (contract).
        unsafe {
            for q in q0..q1 {
                let (b, o) = (q / co, q % co);
                let xp = d.x.add((b * ci + o / cog) * h * w);
                let r = d.wp.add(o * rec);
                let bias = (r as *const i32).read_unaligned();
                let mult = (r.add(4) as *const f32).read_unaligned();
                let taps = r.add(8) as *const f32;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias;
                        for ky in 0..kh {
                            let iy = (oy * sy + ky * dy).wrapping_sub(pt);
                            for kx in 0..kw {
                                let ix = (ox * sx + kx * dx).wrapping_sub(pl);
                                if iy < h && ix < w {
                                    let x = (*xp.add(iy * w + ix) ^ flip) as i32 - xzp;
                                    let t = taps.add(ky * kw + kx).read_unaligned() as i32;
                                    acc += x * t;
                                }
                            }
                        }
                        *d.y.add((q * oh + oy) * ow + ox) = requant1(acc, mult, lo, hi, zp) as u8;
                    }
                }
            }
        }
    }

    int8_entries!(
        block,
        super::vector_rest_cost,
        super::sum_rows_scalar,
        planes,
        super::quantize_scalar,
        super::dequantize_scalar,
        super::interleave4
    );
}

/// AVX2: `vpmaddwd` on bytes widened to `i16` (4 channels x 16 pixels per register tile).
pub mod avx2 {
    use super::super::avx2::{ldm, stm};
    use super::{QConv, QDw, MR};
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;

    type Vf = __m256;
    type Vi = __m256i;
    /// f32 / i32 lanes.
    const W: usize = 8;

    /// The kernel set.
    pub static KERNELS: super::Int8Kernels = super::Int8Kernels {
        name: "avx2",
        features: &[],
        conv: super::Sym {
            symbol: "mnc_qconv_avx2",
            func: conv,
        },
        dw: super::Sym {
            symbol: "mnc_qdw_avx2",
            func: dw,
        },
        quantize: super::Sym {
            symbol: "mnc_quantize_avx2",
            func: quantize,
        },
        dequantize: super::Sym {
            symbol: "mnc_dequantize_avx2",
            func: dequantize,
        },
        lut: super::LUT_PORTABLE,
        mean: super::MEAN_PORTABLE,
        binary: BINARY,
        peak: Some(crate::cpu::isa::PeakLoop {
            func: madd_loop,
            flops_per_step: 2 * 16 * super::PEAK_CHAINS,
        }),
    };

    /// The low byte of each of the 8 lanes of `v`, in the low 8 bytes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn low_bytes(v: Vi) -> __m128i {
        let sh = _mm256_setr_epi8(
            0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1,
            -1, -1, -1, -1, -1, -1, -1, -1, -1,
        );
        let b = _mm256_permutevar8x32_epi32(
            _mm256_shuffle_epi8(v, sh),
            _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1),
        );
        _mm256_castsi256_si128(b)
    }

    /// Stores the low bytes of the first `n` lanes of `v` (`1 <= n <= 8`).
    ///
    /// # Safety
    /// `p` is valid for writing `n` bytes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store_bytes(p: *mut u8, v: Vi, n: usize) {
        // SAFETY: contract.
        unsafe { store8(p, low_bytes(v), n) }
    }

    /// Stores the first `n` of the low 8 bytes of `b` (`1 <= n <= 8`).
    ///
    /// # Safety
    /// `p` is valid for writing `n` bytes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store8(p: *mut u8, b: __m128i, n: usize) {
        // SAFETY: `n` bytes at `p` are writable (contract).
        unsafe {
            if n == 8 {
                _mm_storel_epi64(p as *mut __m128i, b);
            } else {
                let mut t = [0u8; 16];
                _mm_storeu_si128(t.as_mut_ptr() as *mut __m128i, b);
                std::ptr::copy_nonoverlapping(t.as_ptr(), p, n);
            }
        }
    }

    /// # Safety
    /// As for [`super::BlockFn`]; the CPU runs AVX2.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block(
        d: &QConv,
        panel: *const u8,
        np: usize,
        wblk: *const u8,
        rows: usize,
        y: *mut u8,
        ys: usize,
    ) {
        // SAFETY: as this function's contract: tiles stay inside the panel's padded pixels
        // and the `rows x np` outputs.
        unsafe {
            for half in 0..rows.div_ceil(4) {
                let r0 = half * 4;
                let mut p = 0;
                while p + 16 <= np {
                    tile::<2>(d, panel, wblk, r0, (rows - r0).min(4), y, ys, p, 16);
                    p += 16;
                }
                if p < np {
                    let n = np - p;
                    if n > 8 {
                        tile::<2>(d, panel, wblk, r0, (rows - r0).min(4), y, ys, p, n);
                    } else {
                        tile::<1>(d, panel, wblk, r0, (rows - r0).min(4), y, ys, p, n);
                    }
                }
            }
        }
    }

    /// Channels `r0..r0 + rows` (`rows <= 4`) of the block times pixels `p..p + n`
    /// (`n <= 8 * NV`, the panel padded past them).
    ///
    /// # Safety
    /// As for [`block`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const NV: usize>(
        d: &QConv,
        panel: *const u8,
        wblk: *const u8,
        r0: usize,
        rows: usize,
        y: *mut u8,
        ys: usize,
        p: usize,
        n: usize,
    ) {
        // SAFETY: quads `q < k4` of pixels `p..p + 8 * NV <= pcp` and of channels `r0 + r < MR`
        // lie in the panel and the block; outputs as [`block`].
        unsafe {
            let mut acc = [[_mm256_setzero_si256(); NV]; 4];
            let wq = wblk.add(MR * 8 + r0 * 4);
            let lo8 = _mm256_set1_epi32(0x00ff00ff);
            for q in 0..d.k4 {
                let xp = panel.add((q * d.pcp + p) * 4);
                let mut xl = [_mm256_setzero_si256(); NV];
                let mut xh = [_mm256_setzero_si256(); NV];
                for j in 0..NV {
                    let v = _mm256_loadu_si256(xp.add(32 * j) as *const Vi);
                    xl[j] = _mm256_and_si256(v, lo8);
                    xh[j] = _mm256_srli_epi16::<8>(v);
                }
                let wr = wq.add(q * MR * 4);
                for (r, a) in acc.iter_mut().enumerate() {
                    let wb = _mm256_set1_epi32((wr.add(4 * r) as *const i32).read_unaligned());
                    let w02 = _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(wb));
                    let w13 = _mm256_srai_epi16::<8>(wb);
                    for j in 0..NV {
                        let s = _mm256_add_epi32(
                            _mm256_madd_epi16(xl[j], w02),
                            _mm256_madd_epi16(xh[j], w13),
                        );
                        a[j] = _mm256_add_epi32(a[j], s);
                    }
                }
            }
            let (lo, hi) = (
                _mm256_set1_ps((d.g.lo - d.g.y_zp) as f32),
                _mm256_set1_ps((d.g.hi - d.g.y_zp) as f32),
            );
            let zp = _mm256_set1_epi32(d.g.y_zp as i32);
            for (r, a) in acc.iter().enumerate().take(rows) {
                let bias =
                    _mm256_set1_epi32((wblk.add(4 * (r0 + r)) as *const i32).read_unaligned());
                let m =
                    _mm256_set1_ps((wblk.add(4 * (MR + r0 + r)) as *const f32).read_unaligned());
                for (j, v) in a.iter().enumerate() {
                    let c = n.saturating_sub(j * W).min(W);
                    if c > 0 {
                        let v = requant(_mm256_add_epi32(*v, bias), m, lo, hi, zp);
                        store_bytes(y.add((r0 + r) * ys + p + j * W), v, c);
                    }
                }
            }
        }
    }

    /// This set's quantized sum and product ([`binary`]), also the VNNI set's.
    pub(super) const BINARY: super::Sym<super::super::qbinary::QBinaryFn> = super::Sym {
        symbol: "mnc_qbinary_avx2",
        func: binary,
    };

    /// The constants of a quantized sum or product ([`mnc_ir::quant::BinaryRequant`]) in
    /// vectors: a sum's `ra`, `rb`, `fixed`; a product's `ratio`, zero points and `y_zp`.
    struct BinVec {
        mul: bool,
        f0: Vf,
        f1: Vf,
        f2: Vf,
        a_zp: Vi,
        b_zp: Vi,
        lo: Vi,
        hi: Vi,
    }

    impl BinVec {
        #[target_feature(enable = "avx2,fma")]
        fn new(f: &mnc_ir::quant::BinaryRequant) -> BinVec {
            use mnc_ir::quant::BinaryRequant;
            let z = _mm256_setzero_si256();
            match f {
                BinaryRequant::Add(f) => BinVec {
                    mul: false,
                    f0: _mm256_set1_ps(f.ra),
                    f1: _mm256_set1_ps(f.rb),
                    f2: _mm256_set1_ps(f.fixed),
                    a_zp: z,
                    b_zp: z,
                    lo: _mm256_set1_epi32(f.lo),
                    hi: _mm256_set1_epi32(f.hi),
                },
                BinaryRequant::Mul(f) => BinVec {
                    mul: true,
                    f0: _mm256_set1_ps(f.ratio),
                    f1: _mm256_setzero_ps(),
                    f2: _mm256_set1_ps(f.y_zp as f32),
                    a_zp: _mm256_set1_epi32(f.a_zp),
                    b_zp: _mm256_set1_epi32(f.b_zp),
                    lo: _mm256_set1_epi32(f.lo),
                    hi: _mm256_set1_epi32(f.hi),
                },
            }
        }

        /// `BinaryRequant::apply` on 8 lanes of stored values: a sum's two FMAs, or a
        /// product's exact `i32` product, multiplied and added (not fused); rounded half to
        /// even (`cvtps2dq` under the default rounding mode), clamped.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        fn apply(&self, a: Vi, b: Vi) -> Vi {
            let t = if self.mul {
                let p = _mm256_mullo_epi32(
                    _mm256_sub_epi32(a, self.a_zp),
                    _mm256_sub_epi32(b, self.b_zp),
                );
                _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), self.f0), self.f2)
            } else {
                let vb = _mm256_fmadd_ps(_mm256_cvtepi32_ps(b), self.f1, self.f2);
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), self.f0, vb)
            };
            _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(t), self.lo), self.hi)
        }
    }

    /// `W` stored bytes at `p` widened to `i32` lanes (sign-extended when `i8`).
    ///
    /// # Safety
    /// `p` is valid for reading 8 bytes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn ld_q(p: *const u8, i8: bool) -> Vi {
        // SAFETY: contract.
        unsafe {
            if i8 {
                ld_i8(p)
            } else {
                ld_u8(p)
            }
        }
    }

    /// [`super::SumRowsFn`] 8 lanes at a time, each row's tail element by element: the
    /// arithmetic of this set's `QAdd` ([`BinVec::apply`]).
    ///
    /// # Safety
    /// As for [`super::SumRowsFn`]; the CPU runs AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sum_rows(
        g: &super::super::qbinary::QBinaryGeom,
        y: *mut u8,
        res: *const u8,
        rows: usize,
        np: usize,
        stride: usize,
        conv_is_a: bool,
    ) {
        let f = BinVec::new(&g.function());
        let i8 = g.i8 == 1;
        // SAFETY: 8-byte loads and stores inside the rows (contract).
        unsafe {
            for r in 0..rows {
                let (yr, rr) = (y.add(r * stride), res.add(r * stride));
                let mut i = 0;
                while i + W <= np {
                    let (c, b) = (ld_q(yr.add(i), i8), ld_q(rr.add(i), i8));
                    let v = if conv_is_a {
                        f.apply(c, b)
                    } else {
                        f.apply(b, c)
                    };
                    store_bytes(yr.add(i), v, W);
                    i += W;
                }
                super::sum_rows_scalar(g, yr.add(i), rr.add(i), 1, np - i, 0, conv_is_a);
            }
        }
    }

    /// Elements `i0..i1` of a quantized sum or product, 8 at a time ([`BinVec::apply`]);
    /// `b` per element or broadcast per run of `inner`; the tails element by element.
    ///
    /// # Safety
    /// As for [`super::super::qbinary::range_scalar`]; the CPU runs AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn binary_range(
        g: &super::super::qbinary::QBinaryGeom,
        a: *const u8,
        b: *const u8,
        y: *mut u8,
        i0: usize,
        i1: usize,
    ) {
        let f = BinVec::new(&g.function());
        let (inner, i8) = (g.inner as usize, g.i8 == 1);
        // SAFETY: 8-byte loads and stores below `i1` (contract), `b` read below
        // `ceil(i1 / inner)`.
        unsafe {
            for (mut i, end) in super::super::qbinary::runs(inner, i0, i1) {
                while i + W <= end {
                    let vb = if inner == 1 {
                        ld_q(b.add(i), i8)
                    } else {
                        _mm256_set1_epi32(g.value(*b.add(i / inner)))
                    };
                    store_bytes(y.add(i), f.apply(ld_q(a.add(i), i8), vb), W);
                    i += W;
                }
                super::super::qbinary::range_scalar(g, a, b, y, i, end);
            }
        }
    }

    /// See [`super::super::qbinary::QBinaryFn`].
    ///
    /// # Safety
    /// As for [`super::super::qbinary::qbinary`]; the CPU runs AVX2 and FMA.
    pub unsafe extern "C" fn binary(
        a: *const u8,
        b: *const u8,
        y: *mut u8,
        geom: *const super::super::qbinary::QBinaryGeom,
        threads: usize,
    ) {
        // SAFETY: as this function's contract.
        unsafe { super::super::qbinary::run(a, b, y, geom, threads, binary_range) }
    }

    /// Output rows per depthwise block (accumulators; 16 ymm registers).
    const RB: usize = 4;

    /// `n` input bytes to f32 `(x ^ flip) - zp`, even ones to `e`, odd ones to `o`.
    ///
    /// # Safety
    /// `e` holds `(n + 1) / 2` floats, `o` `n / 2`, `src` `avail >= n` readable bytes; the
    /// CPU runs AVX2.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row2(
        e: *mut f32,
        o: *mut f32,
        src: *const u8,
        n: usize,
        avail: usize,
        flip: u8,
        zp: f32,
    ) {
        // SAFETY: 16-byte loads below `avail` (or from the local copy), stores of the even
        // and odd lanes below `n` (contract).
        unsafe {
            let (f, z) = (_mm256_set1_epi32(flip as i32), _mm256_set1_ps(zp));
            let cvt = |p: *const u8| {
                let b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i));
                _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_xor_si256(b, f)), z)
            };
            let mut i = 0;
            while i < n {
                let m = (n - i).min(2 * W);
                let mut t = [0u8; 16];
                let s8 = if i + 2 * W <= avail {
                    src.add(i)
                } else {
                    for (j, b) in t.iter_mut().enumerate().take(m) {
                        *b = *src.add(i + j);
                    }
                    t.as_ptr()
                };
                let (a, b) = (cvt(s8), cvt(s8.add(W)));
                let ev = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
                    _mm256_castps_pd(_mm256_shuffle_ps::<0b10_00_10_00>(a, b)),
                ));
                let od = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
                    _mm256_castps_pd(_mm256_shuffle_ps::<0b11_01_11_01>(a, b)),
                ));
                // Partial stores (`stm`: plain stores, not `vmaskmovps`) only for the tail.
                stm(e.add(i / 2), ev, m.div_ceil(2));
                stm(o.add(i / 2), od, m / 2);
                i += 2 * W;
            }
        }
    }

    /// `W` bytes at `p` widened to `i32` lanes (zero-extended).
    ///
    /// # Safety
    /// `p` is valid for reading 8 bytes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn ld_u8(p: *const u8) -> Vi {
        // SAFETY: contract.
        unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i)) }
    }

    /// `W` bytes at `p` widened to `i32` lanes (sign-extended).
    ///
    /// # Safety
    /// `p` is valid for reading 8 bytes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn ld_i8(p: *const u8) -> Vi {
        // SAFETY: contract.
        unsafe { _mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i)) }
    }

    simd_ops!(
        "avx2,fma",
        _mm256_set1_ps,
        _mm256_set1_epi32,
        _mm256_fmadd_ps,
        _mm256_mul_ps,
        _mm256_div_ps,
        _mm256_min_ps,
        _mm256_max_ps,
        _mm256_sub_ps,
        _mm256_cvtepi32_ps,
        _mm256_cvtps_epi32,
        _mm256_add_epi32,
        _mm256_sub_epi32,
        _mm256_xor_si256,
        _mm256_loadu_ps,
        _mm256_storeu_ps
    );

    int8_peak_loop!(
        madd_loop,
        "avx2,fma",
        "`vpmaddwd` + `vpaddd` (16 8-bit multiply-adds widened to i16 pairs, as the conv kernel's)",
        _mm256_setzero_si256(),
        _mm256_set1_epi32,
        |v| _mm256_add_epi32(
            v,
            _mm256_madd_epi16(
                _mm256_set1_epi16(3),
                std::hint::black_box(_mm256_set1_epi16(-2))
            )
        ),
        |s| _mm256_extract_epi32::<0>(s),
        _mm256_add_epi32
    );

    qdw_body!("avx2,fma");

    /// The 8x8 byte transpose: `rows[i]` holds bytes `r_i[0..8]` in its low half; the
    /// `j`-th vector returned holds `(r_0[j], .., r_7[j])` in its low half.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn transpose8(r: [__m128i; 8]) -> [__m128i; 8] {
        let t0 = _mm_unpacklo_epi8(r[0], r[1]);
        let t1 = _mm_unpacklo_epi8(r[2], r[3]);
        let t2 = _mm_unpacklo_epi8(r[4], r[5]);
        let t3 = _mm_unpacklo_epi8(r[6], r[7]);
        let u0 = _mm_unpacklo_epi16(t0, t1);
        let u1 = _mm_unpackhi_epi16(t0, t1);
        let u2 = _mm_unpacklo_epi16(t2, t3);
        let u3 = _mm_unpackhi_epi16(t2, t3);
        // Columns 2k and 2k + 1 in the low and high halves of pair k.
        let pairs = [
            _mm_unpacklo_epi32(u0, u2),
            _mm_unpackhi_epi32(u0, u2),
            _mm_unpacklo_epi32(u1, u3),
            _mm_unpackhi_epi32(u1, u3),
        ];
        std::array::from_fn(|j| {
            let p = pairs[j / 2];
            if j % 2 == 0 {
                p
            } else {
                _mm_unpackhi_epi64(p, p)
            }
        })
    }

    /// `n <= 8` bytes at `p` in the low half of a vector (zeros after them): one 8-byte
    /// load when `avail >= 8` bytes are readable at `p`, else through a local copy.
    ///
    /// # Safety
    /// `avail >= n` bytes are readable at `p`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load8(p: *const u8, n: usize, avail: usize) -> __m128i {
        // SAFETY: 8 bytes when `avail >= 8`, else `n <= avail` (contract).
        unsafe {
            if avail >= 8 {
                _mm_loadl_epi64(p as *const __m128i)
            } else {
                let mut t = [0u8; 8];
                std::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), n);
                _mm_loadl_epi64(t.as_ptr() as *const __m128i)
            }
        }
    }

    /// Output planes `q0..q1` channels-in-lanes ([`super::dw_lanes`] geometries), eight
    /// planes at a time, one per f32 lane: the eight input planes are transposed (8x8 bytes)
    /// into the task's padded scratch as `[hp][wp][8]` floats `(x ^ flip) - x_zp` (borders
    /// zero since [`super::dw_zero`]); each output pixel is `kh * kw` FMAs of a window
    /// vector by the taps of the eight channels; the exact sums are requantized lane by
    /// lane with each channel's bias and multiplier as the plane-by-plane kernel does
    /// ([`super::DwEpi`], unfolded: `cvt(sum) + bias` equals the folded start's exact sum),
    /// and transposed back to the eight output planes. Fewer than eight planes left: the
    /// last one fills the idle lanes, whose outputs are not stored.
    ///
    /// # Safety
    /// As for [`super::qdw_drive`]'s `planes`; `dw_lanes(&d.g)` (the scratch area holds
    /// `8 * hp * wp` floats); the CPU runs AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn lanes_planes(d: &QDw, q0: usize, q1: usize, sp: *mut f32) {
        const L: usize = super::DWL_LANES;
        let g = &d.g;
        let u = |v: u64| v as usize;
        let (h, w, co, ci, cog) = (u(g.h), u(g.w), u(g.co), u(g.ci), u(g.cog));
        let (oh, ow, kh, kw) = (u(g.oh), u(g.ow), u(g.kh), u(g.kw));
        let (sy, sx, dy, dx, pt, pl) = (u(g.sy), u(g.sx), u(g.dy), u(g.dx), u(g.pt), u(g.pl));
        let (hp, wp, ohw, hw) = (g.hp(), g.wp(), oh * ow, h * w);
        let rec = g.record_bytes();
        let taps = kh * kw;
        // Float offset of each tap from its window's origin.
        let mut toff = [0usize; super::DWL_MAX_TAPS];
        for ky in 0..kh {
            for kx in 0..kw {
                toff[ky * kw + kx] = (ky * dy * wp + kx * dx) * L;
            }
        }
        let flip = _mm256_set1_epi32(if g.x_i8 == 1 { 0x80 } else { 0 });
        let xzp = _mm256_set1_ps(g.x_zp as f32);
        let lo = _mm256_set1_ps((g.lo - g.y_zp) as f32);
        let hi = _mm256_set1_ps((g.hi - g.y_zp) as f32);
        let yzp = _mm256_set1_epi32(g.y_zp as i32);
        // Input columns `0..w` land at padded columns `pl..`, rows at `pt..`; only those
        // below `wp` / `hp` are read.
        let (r0, r1) = (pt.min(hp), (pt + h).min(hp));
        let (c0, c1) = (pl.min(wp), (pl + w).min(wp));
        // SAFETY: lane `l` reads input plane `b * ci + o / cog` (`hw` bytes: `load8` is
        // given what is left of it) and record `o` of plane `q < q1 <= planes`, writes output
        // plane `q` only for the `n` live lanes (`ohw` bytes, stores of at most what is left
        // of it), and the task's scratch below `8 * hp * wp` floats: padded rows `< hp`,
        // columns `< wp`, window reads `((oy * sy + ky * dy) * wp + ox * sx + kx * dx) * 8`
        // with every term inside the padded plane by the definition of `hp` and `wp`
        // (contract).
        unsafe {
            super::dw_zero(g, sp);
            let mut qg = q0;
            while qg < q1 {
                let n = (q1 - qg).min(L);
                let mut src = [d.x; L];
                let mut rp = [d.wp; L];
                for l in 0..L {
                    let q = qg + l.min(n - 1);
                    let (b, o) = (q / co, q % co);
                    src[l] = d.x.add((b * ci + o / cog) * hw);
                    rp[l] = d.wp.add(o * rec);
                }
                let lane_f = |off: usize| {
                    let v: [f32; L] =
                        std::array::from_fn(|l| (rp[l].add(off) as *const f32).read_unaligned());
                    _mm256_loadu_ps(v.as_ptr())
                };
                let bias = _mm256_castps_si256(lane_f(0));
                let mult = lane_f(4);
                let mut wv = [_mm256_setzero_ps(); super::DWL_MAX_TAPS];
                for (t, v) in wv.iter_mut().enumerate().take(taps) {
                    *v = lane_f(8 + 4 * t);
                }
                // The eight planes into the padded scratch, 8 columns at a time.
                for r in r0..r1 {
                    let iy = r - pt;
                    let mut c = c0;
                    while c < c1 {
                        let m = (c1 - c).min(8);
                        let at = iy * w + (c - pl);
                        let rows: [__m128i; L] =
                            std::array::from_fn(|l| load8(src[l].add(at), m, hw - at));
                        let px = transpose8(rows);
                        for (j, &b8) in px.iter().enumerate().take(m) {
                            let v = _mm256_xor_si256(_mm256_cvtepu8_epi32(b8), flip);
                            let f = _mm256_sub_ps(_mm256_cvtepi32_ps(v), xzp);
                            _mm256_storeu_ps(sp.add((r * wp + c + j) * L), f);
                        }
                        c += m;
                    }
                }
                // The outputs, 8 pixels (in plane order) at a time.
                let (mut oy, mut ox) = (0, 0);
                let mut p0 = 0;
                while p0 < ohw {
                    let m = (ohw - p0).min(8);
                    // Window origins; the lanes past `m` repeat the first pixel.
                    let mut base = [(oy * sy * wp + ox * sx) * L; 8];
                    for b in base.iter_mut().take(m) {
                        *b = (oy * sy * wp + ox * sx) * L;
                        ox += 1;
                        if ox == ow {
                            ox = 0;
                            oy += 1;
                        }
                    }
                    let mut acc = [_mm256_setzero_ps(); 8];
                    for t in 0..taps {
                        let (wt, o) = (wv[t], toff[t]);
                        for (a, &b) in acc.iter_mut().zip(&base) {
                            *a = _mm256_fmadd_ps(_mm256_loadu_ps(sp.add(b + o)), wt, *a);
                        }
                    }
                    let outs: [__m128i; 8] = std::array::from_fn(|j| {
                        let s = _mm256_add_epi32(_mm256_cvtps_epi32(acc[j]), bias);
                        low_bytes(requant(s, mult, lo, hi, yzp))
                    });
                    let ch = transpose8(outs);
                    for (l, &b8) in ch.iter().enumerate().take(n) {
                        store8(d.y.add((qg + l) * ohw + p0), b8, m);
                    }
                    p0 += m;
                }
                qg += n;
            }
        }
    }

    /// The set's depthwise planes: channels-in-lanes on [`super::dw_lanes`] geometries,
    /// else plane by plane.
    ///
    /// # Safety
    /// As for [`super::qdw_drive`]'s `planes`; the CPU runs AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn planes(d: &QDw, q0: usize, q1: usize, sp: *mut f32) {
        // SAFETY: contract; `task_floats` covers the lanes kernel's scratch when it runs.
        unsafe {
            if super::dw_lanes(&d.g) {
                lanes_planes(d, q0, q1, sp)
            } else {
                dw_planes(d, q0, q1, sp)
            }
        }
    }

    int8_entries!(
        block,
        super::vector_rest_cost,
        sum_rows,
        planes,
        quant,
        dequant,
        super::interleave4
    );
}

/// AVX-512 with VNNI: `vpdpbusd` (`u8 x i8`, 4 products per `i32` lane), `MR` channels x 48
/// pixels per register tile; AVX-512F depthwise and conversions.
pub mod vnni {
    use super::{QConv, QDw, MR, VNNI_TILE};
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;

    type Vf = __m512;
    type Vi = __m512i;
    /// f32 / i32 lanes.
    const W: usize = 16;
    /// Cost of one [`gemv`] pixel beyond its multiply-adds, in `vpdpbusd`: the reduction
    /// of its halves, the requantization and `MR` byte stores.
    const GEMV_FIXED: usize = 40;
    /// Cost of a one-vector [`tile`] beyond its `MR` `vpdpbusd` per quad: the requantization
    /// of `MR` vectors.
    const TILE_FIXED: usize = 16;

    /// The cost in `vpdpbusd` of a last partial vector of `n` pixels (`n < 16`) of a block
    /// over `k4` quads, pixel by pixel through [`gemv`] (half a `vpdpbusd` per quad and
    /// pixel, plus [`GEMV_FIXED`]) or as a one-vector [`tile`] (`MR` per quad whatever its
    /// pixels, plus [`TILE_FIXED`]), and whether [`gemv`] is the cheaper: a 49-pixel
    /// 960-channel chunk's last pixel by `gemv`; the 4 pixels of a 100-pixel 64-channel
    /// chunk as a tile (they took 2 us of a 20 us conv through `gemv`).
    fn rest(n: usize, k4: usize) -> (usize, bool) {
        let (gemv, tile) = (n * (k4.div_ceil(2) + GEMV_FIXED), MR * k4 + TILE_FIXED);
        (gemv.min(tile), gemv < tile)
    }

    /// The [`super::RestCostFn`] of [`block`].
    pub(super) fn rest_cost(n: usize, k4: usize) -> usize {
        rest(n, k4).0
    }

    /// The kernel set.
    pub static KERNELS: super::Int8Kernels = super::Int8Kernels {
        name: "vnni",
        features: &["avx512vnni", "avx512bw"],
        conv: super::Sym {
            symbol: "mnc_qconv_vnni",
            func: conv,
        },
        dw: super::Sym {
            symbol: "mnc_qdw_avx512",
            func: dw,
        },
        quantize: super::Sym {
            symbol: "mnc_quantize_avx512",
            func: quantize,
        },
        dequantize: super::Sym {
            symbol: "mnc_dequantize_avx512",
            func: dequantize,
        },
        lut: super::LUT_PORTABLE,
        mean: super::MEAN_PORTABLE,
        // The AVX2 set's (8 lanes): AVX-512 VNNI parts run AVX2.
        binary: super::avx2::BINARY,
        peak: Some(crate::cpu::isa::PeakLoop {
            func: dot_loop,
            flops_per_step: 2 * 64 * super::PEAK_CHAINS,
        }),
    };

    fn mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// Stores the low bytes of the first `n` lanes of `v` (`1 <= n <= 16`).
    ///
    /// # Safety
    /// `p` is valid for writing `n` bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    #[inline]
    pub(super) unsafe fn store_bytes(p: *mut u8, v: Vi, n: usize) {
        // SAFETY: the mask writes bytes below `n` only (contract).
        unsafe { _mm512_mask_cvtepi32_storeu_epi8(p as *mut i8, mask(n), v) }
    }

    /// # Safety
    /// As for [`super::BlockFn`]; the CPU runs AVX-512F and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub(super) unsafe fn block(
        d: &QConv,
        panel: *const u8,
        np: usize,
        wblk: *const u8,
        rows: usize,
        y: *mut u8,
        ys: usize,
    ) {
        // SAFETY: as this function's contract: tiles stay inside the panel's padded pixels
        // and the `rows x np` outputs.
        unsafe {
            let mut p = 0;
            let pk = Packed::new(&d.g, wblk);
            while p + VNNI_TILE <= np {
                tile::<3>(d, panel, wblk, rows, y, ys, p, VNNI_TILE, pk.as_ref());
                p += VNNI_TILE;
            }
            // The rest: whole 16-pixel vectors in one tile, and a last partial vector one
            // pixel at a time by `gemv` where that is cheaper ([`rest`]; MobileNetV2's
            // 7x7 layers: 49 = 48 + 1 pixels).
            let mut n = np - p;
            if rest(n % W, d.k4).1 {
                for i in n / W * W..n {
                    gemv(d, panel.add(4 * (p + i)), wblk, rows, y.add(p + i), ys);
                }
                n = n / W * W;
            }
            match n.div_ceil(W) {
                0 => {}
                1 => tile::<1>(d, panel, wblk, rows, y, ys, p, n, None),
                2 => tile::<2>(d, panel, wblk, rows, y, ys, p, n, None),
                _ => tile::<3>(d, panel, wblk, rows, y, ys, p, n, None),
            }
        }
    }

    /// The `MR` channels of the block (`rows` stored) times one pixel: channels in lanes,
    /// lanes `0..8` summing the even quads and `8..16` the odd ones (one 64-byte load of the
    /// block's weights per two quads, where the pixel tiles would broadcast every weight
    /// for 16 lanes of which one is used), the halves added before the requantization.
    ///
    /// # Safety
    /// As for [`block`] with `np = 1`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    unsafe fn gemv(
        d: &QConv,
        panel: *const u8,
        wblk: *const u8,
        rows: usize,
        y: *mut u8,
        ys: usize,
    ) {
        // SAFETY: quads `q < k4` of the panel's pixel 0 (`pcp * 4` bytes apart) and of the
        // block's weights (`MR * 4` bytes each, the last one alone read as 32 bytes); the
        // block's `MR` biases and multipliers; outputs `r * ys` for `r < rows`.
        unsafe {
            let (k4, step) = (d.k4, d.pcp * 4);
            let w = wblk.add(MR * 8);
            let xq =
                |q: usize| _mm256_set1_epi32((panel.add(q * step) as *const i32).read_unaligned());
            let mut acc = _mm512_zextsi256_si512(_mm256_loadu_si256(wblk as *const __m256i));
            let mut q = 0;
            while q + 2 <= k4 {
                let xv = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(xq(q)), xq(q + 1));
                let wv = _mm512_loadu_si512(w.add(q * MR * 4) as *const Vi);
                acc = _mm512_dpbusd_epi32(acc, xv, wv);
                q += 2;
            }
            if q < k4 {
                let xv = _mm512_castsi256_si512(xq(q));
                let wv =
                    _mm512_zextsi256_si512(_mm256_loadu_si256(w.add(q * MR * 4) as *const __m256i));
                acc = _mm512_dpbusd_epi32(acc, xv, wv);
            }
            let s = _mm256_add_epi32(
                _mm512_castsi512_si256(acc),
                _mm512_extracti64x4_epi64::<1>(acc),
            );
            let m = _mm256_loadu_ps(wblk.add(MR * 4) as *const f32);
            let (lo, hi) = (
                _mm256_set1_ps((d.g.lo - d.g.y_zp) as f32),
                _mm256_set1_ps((d.g.hi - d.g.y_zp) as f32),
            );
            // `Requant::apply` lane by lane: multiply, clamp (value first), round, add.
            let t = _mm256_min_ps(
                _mm256_max_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), m), lo),
                hi,
            );
            let v = _mm256_add_epi32(_mm256_cvtps_epi32(t), _mm256_set1_epi32(d.g.y_zp as i32));
            let mut out = [0i32; MR];
            _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, v);
            for (r, &o) in out.iter().enumerate().take(rows) {
                *y.add(r * ys) = o as u8;
            }
        }
    }

    /// The `MR` channels of the block (`rows` stored) times pixels `p..p + n` (`n <= 16 *
    /// NV`, the panel padded past them); a whole 48-pixel tile stores through `pk` where the
    /// block has one ([`Packed`]).
    ///
    /// # Safety
    /// As for [`block`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn tile<const NV: usize>(
        d: &QConv,
        panel: *const u8,
        wblk: *const u8,
        rows: usize,
        y: *mut u8,
        ys: usize,
        p: usize,
        n: usize,
        pk: Option<&Packed>,
    ) {
        // SAFETY: quads `q < k4` of pixels `p..p + 16 * NV <= pcp` and of the block's `MR`
        // channels lie in the panel and the block; outputs as [`block`].
        unsafe {
            // The accumulators start from the folded biases (wrapping, as `vpdpbusd` adds).
            let mut acc: [[Vi; NV]; MR] = std::array::from_fn(|r| {
                [_mm512_set1_epi32((wblk.add(4 * r) as *const i32).read_unaligned()); NV]
            });
            let mut xp = panel.add(p * 4);
            let mut wq = wblk.add(MR * 8);
            let step = d.pcp * 4;
            for _ in 0..d.k4 {
                let mut xv = [_mm512_setzero_si512(); NV];
                for (j, v) in xv.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(xp.add(64 * j) as *const Vi);
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let wb = _mm512_set1_epi32((wq.add(4 * r) as *const i32).read_unaligned());
                    for j in 0..NV {
                        a[j] = _mm512_dpbusd_epi32(a[j], xv[j], wb);
                    }
                }
                xp = xp.add(step);
                wq = wq.add(MR * 4);
            }
            let (lo, hi) = (
                _mm512_set1_ps((d.g.lo - d.g.y_zp) as f32),
                _mm512_set1_ps((d.g.hi - d.g.y_zp) as f32),
            );
            if NV == 3 && n == VNNI_TILE {
                if let Some(e) = pk {
                    for (r, a) in acc.iter().enumerate().take(rows) {
                        let m =
                            _mm512_set1_ps((wblk.add(4 * (MR + r)) as *const f32).read_unaligned());
                        e.store48([a[0], a[1], a[NV - 1]], m, y.add(r * ys + p));
                    }
                    return;
                }
            }
            let zp = _mm512_set1_epi32(d.g.y_zp as i32);
            for (r, a) in acc.iter().enumerate().take(rows) {
                let m = _mm512_set1_ps((wblk.add(4 * (MR + r)) as *const f32).read_unaligned());
                for (j, v) in a.iter().enumerate() {
                    let c = n.saturating_sub(j * W).min(W);
                    if c > 0 {
                        let v = requant(*v, m, lo, hi, zp);
                        store_bytes(y.add(r * ys + p + j * W), v, c);
                    }
                }
            }
        }
    }

    /// [`super::interleave4`] 64 pixels at a time: byte and word unpacks within 128-bit
    /// lanes, then a 4 x 4 transpose of the lanes (8 `vshufi64x2`): 24 instructions per 64
    /// pixels where the SSE2 one takes 64. The rest through [`super::interleave4`].
    ///
    /// # Safety
    /// As for [`super::InterleaveFn`]; the CPU runs AVX-512BW.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub(super) unsafe fn interleave64(
        rows: [*const u8; 4],
        flip: u8,
        np: usize,
        dst: *mut u8,
    ) -> usize {
        let mut p = 0;
        // SAFETY: 64-byte loads at `p + 64 <= np` of each row, 256-byte stores at `4p`
        // (contract).
        unsafe {
            let f = _mm512_set1_epi8(flip as i8);
            while p + 64 <= np {
                let ld =
                    |j: usize| _mm512_xor_si512(_mm512_loadu_si512(rows[j].add(p) as *const Vi), f);
                let (a, b, c, d) = (ld(0), ld(1), ld(2), ld(3));
                let (ab0, ab1) = (_mm512_unpacklo_epi8(a, b), _mm512_unpackhi_epi8(a, b));
                let (cd0, cd1) = (_mm512_unpacklo_epi8(c, d), _mm512_unpackhi_epi8(c, d));
                // Lane `l` of `q[i]`: the quads of pixels `16 l + 4 i..16 l + 4 i + 4`.
                let q = [
                    _mm512_unpacklo_epi16(ab0, cd0),
                    _mm512_unpackhi_epi16(ab0, cd0),
                    _mm512_unpacklo_epi16(ab1, cd1),
                    _mm512_unpackhi_epi16(ab1, cd1),
                ];
                let t0 = _mm512_shuffle_i64x2::<0x44>(q[0], q[1]);
                let t1 = _mm512_shuffle_i64x2::<0x44>(q[2], q[3]);
                let t2 = _mm512_shuffle_i64x2::<0xee>(q[0], q[1]);
                let t3 = _mm512_shuffle_i64x2::<0xee>(q[2], q[3]);
                let o = dst.add(p * 4) as *mut Vi;
                _mm512_storeu_si512(o, _mm512_shuffle_i64x2::<0x88>(t0, t1));
                _mm512_storeu_si512(o.add(1), _mm512_shuffle_i64x2::<0xdd>(t0, t1));
                _mm512_storeu_si512(o.add(2), _mm512_shuffle_i64x2::<0x88>(t2, t3));
                _mm512_storeu_si512(o.add(3), _mm512_shuffle_i64x2::<0xdd>(t2, t3));
                p += 64;
            }
            p + super::interleave4(rows.map(|r| r.add(p)), flip, np - p, dst.add(p * 4))
        }
    }

    /// The requantization of a whole tile row by saturating packs: each accumulator is
    /// multiplied and rounded (`cvtps2dq`), packed to `i16` with signed saturation, the zero
    /// point added with saturation, packed to bytes with the pack's saturation and clamped
    /// there (one byte vector) where the clamp is narrower: 48 bytes, one store. The same
    /// integers as [`requant`]: rounding commutes with a clamp to integer bounds, and the
    /// saturations only move values already outside `lo..=hi` further out. `cvtps2dq` is
    /// exact while `|acc * m| < 2^31`, which every multiplier of the block below `0.5` in
    /// magnitude guarantees ([`Packed::new`] checks it).
    pub(super) struct Packed {
        zp: Vi,
        lo: Vi,
        hi: Vi,
        /// The `i8` pack (signed saturation); else `u8`.
        signed: bool,
        /// Whether `lo..=hi` is narrower than the pack's saturation.
        clamp: bool,
    }

    impl Packed {
        /// The packed epilogue for the weight block `wblk`, or `None` when one of its
        /// multipliers is not below `0.5` in magnitude (or NaN).
        ///
        /// # Safety
        /// `wblk` holds a packed block's `MR` biases and multipliers.
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
        #[inline]
        pub(super) unsafe fn new(g: &super::QConvGeom, wblk: *const u8) -> Option<Packed> {
            // SAFETY: the block's `MR` multipliers follow its `MR` biases (contract).
            let m = unsafe { _mm256_loadu_ps(wblk.add(MR * 4) as *const f32) };
            let abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0), m);
            // Ordered less-than: false for NaN.
            let ok = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(abs, _mm256_set1_ps(0.5)));
            if ok != 0xff {
                return None;
            }
            let (lo, hi) = (g.lo, g.hi);
            let signed = hi <= 127;
            let (smin, smax) = if signed { (-128, 127) } else { (0, 255) };
            Some(Packed {
                zp: _mm512_set1_epi16(g.y_zp as i16),
                // Byte patterns of the bounds (`lo..=hi` lies inside the pack's range).
                lo: _mm512_set1_epi8(lo as i8),
                hi: _mm512_set1_epi8(hi as i8),
                signed,
                clamp: lo > smin || hi < smax,
            })
        }

        /// Requantizes the 48 lanes of `a` (pixels in order) by the multiplier `m` and
        /// stores their 48 bytes at `y`.
        ///
        /// # Safety
        /// `y` is valid for writing 48 bytes.
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
        #[inline]
        unsafe fn store48(&self, a: [Vi; 3], m: Vf, y: *mut u8) {
            let r = a.map(|v| _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(v), m)));
            let p01 = _mm512_adds_epi16(_mm512_packs_epi32(r[0], r[1]), self.zp);
            let p22 = _mm512_adds_epi16(_mm512_packs_epi32(r[2], r[2]), self.zp);
            // The clamp on the packed bytes (one vector, not two of words): saturating to
            // the type's range and then clamping to `lo..=hi` inside it is the clamp.
            let b = if self.signed {
                let b = _mm512_packs_epi16(p01, p22);
                if self.clamp {
                    _mm512_min_epi8(_mm512_max_epi8(b, self.lo), self.hi)
                } else {
                    b
                }
            } else {
                let b = _mm512_packus_epi16(p01, p22);
                if self.clamp {
                    _mm512_min_epu8(_mm512_max_epu8(b, self.lo), self.hi)
                } else {
                    b
                }
            };
            // Each 128-bit lane `l` holds pixels `4l..4l + 4` of `r[0]`, `r[1]`, `r[2]`,
            // `r[2]` (one dword each): gather dwords `0, 4, 8, 12, 1, 5, ..` into order.
            let idx = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
            let b = _mm512_permutexvar_epi32(idx, b);
            // SAFETY: 48 bytes (contract).
            unsafe { _mm512_mask_storeu_epi8(y as *mut i8, (1u64 << 48) - 1, b) }
        }
    }

    /// The first `n` floats at `p` (`n <= 16`).
    ///
    /// # Safety
    /// `p` is valid for reading `n` floats.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn ldm(p: *const f32, n: usize) -> Vf {
        // SAFETY: the mask reads lanes below `n` only (contract).
        unsafe { _mm512_maskz_loadu_ps(mask(n), p) }
    }

    /// Output rows per depthwise block (accumulators; 32 zmm registers).
    const RB: usize = 8;

    /// `n` input bytes to f32 `(x ^ flip) - zp`, even ones to `e`, odd ones to `o`.
    ///
    /// # Safety
    /// `e` holds `(n + 1) / 2` floats, `o` `n / 2`, `src` `avail >= n` readable bytes; the
    /// CPU runs AVX-512F.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    unsafe fn row2(
        e: *mut f32,
        o: *mut f32,
        src: *const u8,
        n: usize,
        avail: usize,
        flip: u8,
        zp: f32,
    ) {
        // SAFETY: 32-byte loads below `avail` (or from the local copy), stores of the even
        // and odd lanes below `n` (contract).
        unsafe {
            let (f, z) = (_mm512_set1_epi32(flip as i32), _mm512_set1_ps(zp));
            let cvt = |p: *const u8| {
                let b = _mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i));
                _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_xor_si512(b, f)), z)
            };
            let ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            let mut i = 0;
            while i < n {
                let m = (n - i).min(2 * W);
                let mut t = [0u8; 32];
                let s8 = if i + 2 * W <= avail {
                    src.add(i)
                } else {
                    for (j, b) in t.iter_mut().enumerate().take(m) {
                        *b = *src.add(i + j);
                    }
                    t.as_ptr()
                };
                let (a, b) = (cvt(s8), cvt(s8.add(W)));
                _mm512_mask_storeu_ps(
                    e.add(i / 2),
                    mask(m.div_ceil(2)),
                    _mm512_permutex2var_ps(a, ie, b),
                );
                _mm512_mask_storeu_ps(o.add(i / 2), mask(m / 2), _mm512_permutex2var_ps(a, io, b));
                i += 2 * W;
            }
        }
    }

    /// `W` bytes at `p` widened to `i32` lanes (zero-extended).
    ///
    /// # Safety
    /// `p` is valid for reading 16 bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn ld_u8(p: *const u8) -> Vi {
        // SAFETY: contract.
        unsafe { _mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i)) }
    }

    /// `W` bytes at `p` widened to `i32` lanes (sign-extended).
    ///
    /// # Safety
    /// `p` is valid for reading 16 bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn ld_i8(p: *const u8) -> Vi {
        // SAFETY: contract.
        unsafe { _mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i)) }
    }

    /// Stores the first `n` lanes of `v` (`n < 16`).
    ///
    /// # Safety
    /// `p` is valid for writing `n` floats.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn stm(p: *mut f32, v: Vf, n: usize) {
        // SAFETY: the mask writes lanes below `n` only (contract).
        unsafe { _mm512_mask_storeu_ps(p, mask(n), v) }
    }

    simd_ops!(
        "avx512f,avx512bw,avx512vnni,avx2,fma",
        _mm512_set1_ps,
        _mm512_set1_epi32,
        _mm512_fmadd_ps,
        _mm512_mul_ps,
        _mm512_div_ps,
        _mm512_min_ps,
        _mm512_max_ps,
        _mm512_sub_ps,
        _mm512_cvtepi32_ps,
        _mm512_cvtps_epi32,
        _mm512_add_epi32,
        _mm512_sub_epi32,
        _mm512_xor_si512,
        _mm512_loadu_ps,
        _mm512_storeu_ps
    );

    int8_peak_loop!(
        dot_loop,
        "avx512f,avx512bw,avx512vnni,avx2,fma",
        "`vpdpbusd` (64 8-bit multiply-adds)",
        _mm512_setzero_si512(),
        _mm512_set1_epi32,
        |v| _mm512_dpbusd_epi32(v, _mm512_set1_epi8(3), _mm512_set1_epi8(-2)),
        |s| _mm512_reduce_add_epi32(s),
        _mm512_add_epi32
    );

    qdw_body!("avx512f,avx512bw,avx512vnni,avx2,fma");

    int8_entries!(
        block,
        rest_cost,
        super::avx2::sum_rows,
        dw_planes,
        quant,
        dequant,
        interleave64
    );
}

/// AVX-512 VNNI with VBMI (Ice Lake, Zen 4 on): the VNNI set's conv and conversions, and a
/// depthwise conv in integers. The input plane is copied as bytes (its padding holding the
/// zero point), one 64-byte load covers a vector's window row, `vpermb` ([`super::dw_quads`])
/// gathers each output's four consecutive taps into its `i32` lane and `vpdpbusd` multiplies
/// them by the channel's tap quad: `ceil(kw / 4)` instructions per window row and 16 outputs
/// where the f32 kernel spends `kw` FMAs. Geometries [`super::dw_quads`] refuses run the VNNI
/// set's f32 planes.
pub mod vbmi {
    use super::vnni::{requant, store_bytes};
    use super::{DwQuads, QDw, QDwGeom};
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;

    type Vi = __m512i;

    /// Vectors per depthwise block (independent accumulators).
    const RB: usize = 4;

    /// The mask of the first `n` bytes of a 64-byte vector (`n <= 64`).
    fn bytes_mask(n: usize) -> __mmask64 {
        if n >= 64 {
            !0
        } else {
            (1u64 << n) - 1
        }
    }

    /// The kernel set.
    pub static KERNELS: super::Int8Kernels = super::Int8Kernels {
        name: "vbmi",
        features: &["avx512vnni", "avx512vbmi", "avx512bw"],
        conv: super::Sym {
            symbol: "mnc_qconv_vbmi",
            func: conv,
        },
        dw: super::Sym {
            symbol: "mnc_qdw_vbmi",
            func: dw,
        },
        quantize: super::vnni::KERNELS.quantize,
        dequantize: super::vnni::KERNELS.dequantize,
        lut: super::Sym {
            symbol: "mnc_qlut_vbmi",
            func: lut,
        },
        mean: super::Sym {
            symbol: "mnc_qmean_vbmi",
            func: mean,
        },
        binary: super::Sym {
            symbol: "mnc_qbinary_vbmi",
            func: binary,
        },
        // `vpdpbusd`, as the VNNI set's.
        peak: super::vnni::KERNELS.peak,
    };

    // The VNNI set's GEMM; its residual sums in vectors ([`sum_rows`]).
    conv_entry!(
        super::vnni::block,
        super::vnni::rest_cost,
        sum_rows,
        super::vnni::interleave64
    );

    /// The constants of a sum's function ([`mnc_ir::quant::AddRequant`]) in vectors.
    struct AddVec {
        ra: __m512,
        rb: __m512,
        fixed: __m512,
        lo: Vi,
        hi: Vi,
    }

    impl AddVec {
        #[target_feature(enable = "avx512f")]
        fn new(f: &mnc_ir::quant::AddRequant) -> AddVec {
            AddVec {
                ra: _mm512_set1_ps(f.ra),
                rb: _mm512_set1_ps(f.rb),
                fixed: _mm512_set1_ps(f.fixed),
                lo: _mm512_set1_epi32(f.lo),
                hi: _mm512_set1_epi32(f.hi),
            }
        }
    }

    /// `AddRequant::apply` on 16 lanes of stored values `a`, `b` (as f32): `fma(a, ra,
    /// fma(b, rb, fixed))`, rounded half to even, clamped.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn add_lanes(va: __m512, vb: __m512, c: &AddVec) -> Vi {
        let t = _mm512_fmadd_ps(va, c.ra, _mm512_fmadd_ps(vb, c.rb, c.fixed));
        _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(t), c.lo), c.hi)
    }

    /// [`super::SumRowsFn`] 16 lanes at a time (masked at a row's end): the arithmetic of
    /// this set's `QAdd` ([`binary_range`], [`add_lanes`]), constants hoisted.
    ///
    /// # Safety
    /// As for [`super::SumRowsFn`]; the CPU runs AVX-512 BW and VL.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni,avx2,fma")]
    unsafe fn sum_rows(
        g: &super::super::qbinary::QBinaryGeom,
        y: *mut u8,
        res: *const u8,
        rows: usize,
        np: usize,
        stride: usize,
        conv_is_a: bool,
    ) {
        use mnc_ir::quant::BinaryRequant;
        let BinaryRequant::Add(f) = g.function() else {
            // SAFETY: as this function's contract.
            return unsafe { super::sum_rows_scalar(g, y, res, rows, np, stride, conv_is_a) };
        };
        let add = AddVec::new(&f);
        let i8 = g.i8 == 1;
        // SAFETY: masked 16-byte loads and stores inside the rows (contract).
        unsafe {
            let load = |p: *const u8, m: __mmask16| {
                let v = _mm_maskz_loadu_epi8(m, p as *const i8);
                _mm512_cvtepi32_ps(if i8 {
                    _mm512_cvtepi8_epi32(v)
                } else {
                    _mm512_cvtepu8_epi32(v)
                })
            };
            for r in 0..rows {
                let (yr, rr) = (y.add(r * stride), res.add(r * stride));
                let mut i = 0;
                while i < np {
                    let m = (u32::MAX >> (32 - (np - i).min(16))) as __mmask16;
                    let (c, b) = (load(yr.add(i), m), load(rr.add(i), m));
                    let (va, vb) = if conv_is_a { (c, b) } else { (b, c) };
                    let v = add_lanes(va, vb, &add);
                    _mm512_mask_cvtepi32_storeu_epi8(yr.add(i) as *mut i8, m, v);
                    i += 16;
                }
            }
        }
    }

    /// Output planes `q0..q1` with the scratch area `sp` (see [`super::qdw_drive`]).
    ///
    /// # Safety
    /// As for [`super::qdw_drive`]'s `planes`; the CPU runs AVX-512 VNNI, VBMI and BW.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni,avx2,fma")]
    unsafe fn dw_planes(d: &QDw, q0: usize, q1: usize, sp: *mut f32) {
        // SAFETY: contract; the scratch area holds `plane_bytes` bytes (`task_floats`).
        unsafe {
            if let Some(s) = super::dw_small(&d.g) {
                return if s.wide {
                    small_planes::<true>(d, &s, q0, q1)
                } else {
                    small_planes::<false>(d, &s, q0, q1)
                };
            }
            match super::dw_quads(&d.g) {
                Some(l) => quad_planes(d, &l, q0, q1, sp as *mut u8),
                None => super::vnni::dw_planes(d, q0, q1, sp),
            }
        }
    }

    /// Output planes `q0..q1` on the small-plane layout `s` (`WIDE = s.wide`): the input
    /// plane in 2 (4) registers, each output vector's window quads gathered by one (two,
    /// and a blend on the index's top bit) `vpermi2b` through the packed table.
    ///
    /// # Safety
    /// As for [`dw_planes`]; `s = dw_small(&d.g)`, the weights packed by
    /// [`super::pack_qdw`] (the table after the `co` records).
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni,avx2,fma")]
    unsafe fn small_planes<const WIDE: bool>(d: &QDw, s: &super::DwSmall, q0: usize, q1: usize) {
        let g = &d.g;
        let u = |v: u64| v as usize;
        let (hw, co, ci, cog) = (u(g.h * g.w), u(g.co), u(g.ci), u(g.cog));
        let ohw = u(g.oh * g.ow);
        let (rec, tail) = (g.record_bytes(), g.quads_offset());
        // SAFETY: plane `q < planes` reads input plane `b * ci + o / cog` (`hw` bytes, by
        // masked loads that touch no byte past them), record `o` and the table after the
        // `co` records (`vecs * quads` index vectors), and writes output plane `q`
        // (`ohw` bytes, masked stores) (contract).
        unsafe {
            let table = d.wp.add(co * rec) as *const Vi;
            let zpv = _mm512_set1_epi8(g.x_zp as u8 as i8);
            let f = _mm512_set1_epi8(if g.x_i8 == 1 { 0x80u8 as i8 } else { 0 });
            let e = Epi {
                lo: _mm512_set1_ps((g.lo - g.y_zp) as f32),
                hi: _mm512_set1_ps((g.hi - g.y_zp) as f32),
                zp: _mm512_set1_epi32(g.y_zp as i32),
            };
            let regs = if WIDE { 4 } else { 2 };
            for q in q0..q1 {
                let (b, o) = (q / co, q % co);
                let src = d.x.add((b * ci + o / cog) * hw);
                let plane: [Vi; 4] = std::array::from_fn(|k| {
                    let n = hw.saturating_sub(64 * k).min(64);
                    if k >= regs || n == 0 {
                        return zpv;
                    }
                    let m = bytes_mask(n);
                    let v = _mm512_maskz_loadu_epi8(m, src.add(64 * k) as *const i8);
                    _mm512_mask_blend_epi8(m, zpv, _mm512_xor_si512(v, f))
                });
                let r = d.wp.add(o * rec);
                let ch = Channel {
                    bias: (r.add(tail) as *const i32).read_unaligned(),
                    mult: (r.add(4) as *const f32).read_unaligned(),
                    quads: r.add(tail + 4) as *const i32,
                };
                let y = d.y.add(q * ohw);
                let mut v = 0;
                while v + RB <= s.vecs {
                    small_block::<WIDE, RB>(s, &plane, table, &ch, &e, y, v, ohw);
                    v += RB;
                }
                while v < s.vecs {
                    small_block::<WIDE, 1>(s, &plane, table, &ch, &e, y, v, ohw);
                    v += 1;
                }
            }
        }
    }

    /// The requantization constants of a depthwise call.
    struct Epi {
        lo: __m512,
        hi: __m512,
        zp: Vi,
    }

    /// Output vectors `v0..v0 + R` of one plane (outputs `16 * v0..`, at most `ohw`).
    ///
    /// # Safety
    /// As for [`small_planes`]; `v0 + R <= s.vecs`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn small_block<const WIDE: bool, const R: usize>(
        s: &super::DwSmall,
        plane: &[Vi; 4],
        table: *const Vi,
        ch: &Channel,
        e: &Epi,
        y: *mut u8,
        v0: usize,
        ohw: usize,
    ) {
        // SAFETY: index vectors `(v * quads + j)` with `v < vecs` lie in the table; the
        // record holds `quads` weight quads; outputs `16 * v..` below `ohw` (contract).
        unsafe {
            let mut acc = [_mm512_set1_epi32(ch.bias); R];
            for j in 0..s.quads {
                let wq = _mm512_set1_epi32(ch.quads.add(j).read_unaligned());
                for (r, a) in acc.iter_mut().enumerate() {
                    let idx = _mm512_loadu_si512(table.add((v0 + r) * s.quads + j));
                    let x = if WIDE {
                        let lo = _mm512_permutex2var_epi8(plane[0], idx, plane[1]);
                        let hi = _mm512_permutex2var_epi8(plane[2], idx, plane[3]);
                        _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi)
                    } else {
                        _mm512_permutex2var_epi8(plane[0], idx, plane[1])
                    };
                    *a = _mm512_dpbusd_epi32(*a, x, wq);
                }
            }
            let m = _mm512_set1_ps(ch.mult);
            for (r, a) in acc.iter().enumerate() {
                let o = 16 * (v0 + r);
                let n = (ohw - o).min(16);
                store_bytes(y.add(o), requant(*a, m, e.lo, e.hi, e.zp), n);
            }
        }
    }

    /// Copies input plane `x` into the padded byte plane (`^ flip`), leaving the border
    /// (the zero point, written once per task) as it is.
    ///
    /// # Safety
    /// `x` holds `h * w` bytes; `plane` [`QDwGeom::plane_bytes`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni,avx2,fma")]
    unsafe fn copy_plane(g: &QDwGeom, x: *const u8, plane: *mut u8, flip: u8) {
        let u = |v: u64| v as usize;
        let (h, w, pt, pl) = (u(g.h), u(g.w), u(g.pt), u(g.pl));
        let (hp, wp) = (g.hp(), g.wp());
        // Input columns `0..w` land at padded columns `pl..`; only those below `wp` are read.
        let (c0, c1) = (pl.min(wp), (pl + w).min(wp));
        if c0 >= c1 {
            return;
        }
        // SAFETY: rows `r < hp`, columns below `wp` of the plane; input rows `r - pt < h`,
        // `c1 - c0 <= w` bytes each (contract).
        unsafe {
            let f = _mm512_set1_epi8(flip as i8);
            for r in pt.min(hp)..(pt + h).min(hp) {
                let (src, dst) = (x.add((r - pt) * w), plane.add(r * wp + c0));
                // Masked 64-byte moves: rows are short (7..112 bytes), a `memcpy` call each
                // would cost more than the copy.
                let mut i = 0;
                while i < c1 - c0 {
                    let n = (c1 - c0 - i).min(64);
                    let k = bytes_mask(n);
                    let v = _mm512_maskz_loadu_epi8(k, src.add(i) as *const i8);
                    _mm512_mask_storeu_epi8(dst.add(i) as *mut i8, k, _mm512_xor_si512(v, f));
                    i += 64;
                }
            }
        }
    }

    /// Output planes `q0..q1` on the byte-quad layout `l`.
    ///
    /// # Safety
    /// As for [`dw_planes`]; `plane` holds [`QDwGeom::plane_bytes`] bytes this task owns;
    /// `l = dw_quads(&d.g)`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni,avx2,fma")]
    unsafe fn quad_planes(d: &QDw, l: &DwQuads, q0: usize, q1: usize, plane: *mut u8) {
        let g = &d.g;
        let u = |v: u64| v as usize;
        let (h, w, co, ci, cog) = (u(g.h), u(g.w), u(g.co), u(g.ci), u(g.cog));
        let (oh, ow) = (u(g.oh), u(g.ow));
        let (rec, tail) = (g.record_bytes(), g.quads_offset());
        let flip = if g.x_i8 == 1 { 0x80u8 } else { 0 };
        let mut last = usize::MAX;
        // SAFETY: plane `q < planes` reads input plane `b * ci + o / cog`, record `o`,
        // writes output plane `q` (contract); the padded plane lies in the task's area.
        unsafe {
            std::ptr::write_bytes(plane, g.x_zp as u8, g.plane_bytes());
            let idx = [
                _mm512_loadu_si512(l.idx[0].as_ptr() as *const Vi),
                _mm512_loadu_si512(l.idx[1].as_ptr() as *const Vi),
            ];
            for q in q0..q1 {
                let (b, o) = (q / co, q % co);
                let inp = b * ci + o / cog;
                if inp != last {
                    copy_plane(g, d.x.add(inp * h * w), plane, flip);
                    last = inp;
                }
                let r = d.wp.add(o * rec);
                let ch = Channel {
                    bias: (r.add(tail) as *const i32).read_unaligned(),
                    mult: (r.add(4) as *const f32).read_unaligned(),
                    quads: r.add(tail + 4) as *const i32,
                };
                let y = d.y.add(q * oh * ow);
                if l.kq == 1 {
                    quad_plane::<1>(g, l, &idx, plane, &ch, y);
                } else {
                    quad_plane::<2>(g, l, &idx, plane, &ch, y);
                }
            }
        }
    }

    /// One output channel's part of the packed record.
    struct Channel {
        bias: i32,
        mult: f32,
        quads: *const i32,
    }

    /// One output plane, `KQ` quads per window row, `RB` vectors at a time.
    ///
    /// # Safety
    /// As for [`quad_planes`]; `ch.quads` holds `kh * KQ` quads; `y` the `oh * ow` outputs.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn quad_plane<const KQ: usize>(
        g: &QDwGeom,
        l: &DwQuads,
        idx: &[Vi; super::DWQ_MAX_KQ],
        plane: *const u8,
        ch: &Channel,
        y: *mut u8,
    ) {
        let (oh, ow) = (g.oh as usize, g.ow as usize);
        let units = oh.div_ceil(l.rows);
        let chunks = ow.div_ceil(l.seg);
        // SAFETY: vectors `u < units`, chunks `c < chunks` (contract of `quad_block`).
        unsafe {
            for c in 0..chunks {
                let mut u = 0;
                while u + RB <= units {
                    quad_block::<KQ, RB>(g, l, idx, plane, ch, y, u, c * l.seg);
                    u += RB;
                }
                while u < units {
                    quad_block::<KQ, 1>(g, l, idx, plane, ch, y, u, c * l.seg);
                    u += 1;
                }
            }
        }
    }

    /// Vectors `u0..u0 + R` (output rows from `u0 * rows`) at output column `ox0`.
    ///
    /// # Safety
    /// As for [`quad_plane`]; `(u0 + R) * rows < oh + rows`, `ox0 < ow`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn quad_block<const KQ: usize, const R: usize>(
        g: &QDwGeom,
        l: &DwQuads,
        idx: &[Vi; super::DWQ_MAX_KQ],
        plane: *const u8,
        ch: &Channel,
        y: *mut u8,
        u0: usize,
        ox0: usize,
    ) {
        let u = |v: u64| v as usize;
        let (kh, sy, sx, dy) = (u(g.kh), u(g.sy), u(g.sx), u(g.dy));
        let (oh, ow, wp) = (u(g.oh), u(g.ow), g.wp());
        // SAFETY: a vector's first output row `oy <= oh - 1` reads padded rows `oy * sy + ky
        // * dy < hp` from column `ox0 * sx < wp`: the 64-byte load ends before `hp * wp +
        // 64` ([`QDwGeom::plane_bytes`]); `dw_quads` keeps every gathered byte inside the
        // load. Outputs: `n` bytes from `oy * ow + ox0`, inside the plane.
        unsafe {
            let mut acc = [_mm512_set1_epi32(ch.bias); R];
            for ky in 0..kh {
                let wq: [Vi; KQ] = std::array::from_fn(|q| {
                    _mm512_set1_epi32(ch.quads.add(ky * KQ + q).read_unaligned())
                });
                for (r, a) in acc.iter_mut().enumerate() {
                    let oy = (u0 + r) * l.rows;
                    let v = _mm512_loadu_si512(
                        plane.add((oy * sy + ky * dy) * wp + ox0 * sx) as *const Vi
                    );
                    for q in 0..KQ {
                        *a = _mm512_dpbusd_epi32(*a, _mm512_permutexvar_epi8(idx[q], v), wq[q]);
                    }
                }
            }
            let (lo, hi) = (
                _mm512_set1_ps((g.lo - g.y_zp) as f32),
                _mm512_set1_ps((g.hi - g.y_zp) as f32),
            );
            let zp = _mm512_set1_epi32(g.y_zp as i32);
            let m = _mm512_set1_ps(ch.mult);
            for (r, a) in acc.iter().enumerate() {
                let oy = (u0 + r) * l.rows;
                let n = if l.rows == 1 {
                    (ow - ox0).min(l.seg)
                } else {
                    (oh - oy).min(l.rows) * ow
                };
                store_bytes(y.add(oy * ow + ox0), requant(*a, m, lo, hi, zp), n);
            }
        }
    }

    /// Elements `i0..i1` of a table lookup: 64 bytes per step, two `vpermi2b` over the
    /// table's halves and a blend on each index's top bit.
    ///
    /// # Safety
    /// `x` and `y` hold `i1` bytes (the same buffer or disjoint); the CPU runs AVX-512 VBMI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni,avx2,fma")]
    unsafe fn lut_range(
        g: &super::super::lut::LutGeom,
        x: *const u8,
        y: *mut u8,
        i0: usize,
        i1: usize,
    ) {
        // SAFETY: masked loads and stores of bytes `i0..i1` (contract); the table is 256
        // bytes.
        unsafe {
            let t = g.table.as_ptr();
            let tab: [Vi; 4] =
                std::array::from_fn(|k| _mm512_loadu_si512(t.add(64 * k) as *const Vi));
            let f = _mm512_set1_epi8(g.flip as u8 as i8);
            let mut i = i0;
            while i < i1 {
                let n = (i1 - i).min(64);
                let k = bytes_mask(n);
                let v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(k, x.add(i) as *const i8), f);
                let lo = _mm512_permutex2var_epi8(tab[0], v, tab[1]);
                let hi = _mm512_permutex2var_epi8(tab[2], v, tab[3]);
                let r = _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi);
                _mm512_mask_storeu_epi8(y.add(i) as *mut i8, k, r);
                i += 64;
            }
        }
    }

    /// Planes `q0..q1` of a quantized mean: 64 bytes per `vpsadbw` (i8 bytes flipped to
    /// the u8 domain, `+128` each, taken back out of the sum).
    ///
    /// # Safety
    /// `x` holds the planes' bytes, `y` one byte per plane; the CPU runs AVX-512 BW.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni,avx2,fma")]
    unsafe fn mean_planes(
        g: &super::super::qmean::QMeanGeom,
        x: *const u8,
        y: *mut u8,
        q0: usize,
        q1: usize,
    ) {
        let px = g.pixels as usize;
        // SAFETY: masked loads of plane `q`'s bytes, the store of output `q` (contract).
        unsafe {
            let f = _mm512_set1_epi8(if g.x_i8 == 1 { -128 } else { 0 });
            let zero = _mm512_setzero_si512();
            for q in q0..q1 {
                let p = x.add(q * px);
                let mut acc = zero;
                let mut i = 0;
                while i < px {
                    let n = (px - i).min(64);
                    let k = bytes_mask(n);
                    let v = _mm512_maskz_loadu_epi8(k, p.add(i) as *const i8);
                    let v = _mm512_maskz_mov_epi8(k, _mm512_xor_si512(v, f));
                    acc = _mm512_add_epi64(acc, _mm512_sad_epu8(v, zero));
                    i += 64;
                }
                let sum = _mm512_reduce_add_epi64(acc) - 128 * (g.x_i8 as i64) * px as i64;
                *y.add(q) = g.output(sum);
            }
        }
    }

    /// See [`super::super::qmean::QMeanFn`].
    ///
    /// # Safety
    /// As for [`super::super::qmean::qmean`]; the CPU runs AVX-512 BW.
    pub unsafe extern "C" fn mean(
        x: *const u8,
        y: *mut u8,
        geom: *const super::super::qmean::QMeanGeom,
        threads: usize,
    ) {
        // SAFETY: as this function's contract.
        unsafe { super::super::qmean::run(x, y, geom, threads, mean_planes) }
    }

    /// Elements `i0..i1` of a quantized sum or product, 16 at a time (lane by lane the
    /// arithmetic of [`mnc_ir::quant::BinaryRequant::apply`]: widen, the sum's two FMAs or
    /// the product's exact `i32` product, multiply and add, then round half to even and
    /// saturate); `b` per element or broadcast per run of `inner`; the tails element by
    /// element.
    ///
    /// # Safety
    /// As for [`super::super::qbinary::range_scalar`]; the CPU runs AVX-512 BW.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni,avx2,fma")]
    unsafe fn binary_range(
        g: &super::super::qbinary::QBinaryGeom,
        a: *const u8,
        b: *const u8,
        y: *mut u8,
        i0: usize,
        i1: usize,
    ) {
        use mnc_ir::quant::BinaryRequant;
        let f = g.function();
        let inner = g.inner as usize;
        // SAFETY: 16-byte loads and stores below `i1` (contract), `b` read below
        // `ceil(i1 / inner)`.
        unsafe {
            let widen = |v: __m128i| {
                if g.i8 == 1 {
                    _mm512_cvtepi8_epi32(v)
                } else {
                    _mm512_cvtepu8_epi32(v)
                }
            };
            let load = |p: *const u8| widen(_mm_loadu_si128(p as *const __m128i));
            let (lo, hi) = (
                _mm512_set1_epi32(g.lo as i32),
                _mm512_set1_epi32(g.hi as i32),
            );
            // 16 outputs from the widened `a` and `b` lanes (the constants are loop
            // invariants).
            let lanes = |va: __m512i, vb: __m512i| {
                let t = match f {
                    BinaryRequant::Add(f) => {
                        let c = AddVec::new(&f);
                        return add_lanes(_mm512_cvtepi32_ps(va), _mm512_cvtepi32_ps(vb), &c);
                    }
                    BinaryRequant::Mul(f) => {
                        let p = _mm512_mullo_epi32(
                            _mm512_sub_epi32(va, _mm512_set1_epi32(f.a_zp)),
                            _mm512_sub_epi32(vb, _mm512_set1_epi32(f.b_zp)),
                        );
                        _mm512_add_ps(
                            _mm512_mul_ps(_mm512_cvtepi32_ps(p), _mm512_set1_ps(f.ratio)),
                            _mm512_set1_ps(f.y_zp as f32),
                        )
                    }
                };
                _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(t), lo), hi)
            };
            for (mut i, end) in super::super::qbinary::runs(inner, i0, i1) {
                while i + 16 <= end {
                    let vb = if inner == 1 {
                        load(b.add(i))
                    } else {
                        _mm512_set1_epi32(g.value(*b.add(i / inner)))
                    };
                    let v = lanes(load(a.add(i)), vb);
                    _mm_storeu_si128(y.add(i) as *mut __m128i, _mm512_cvtepi32_epi8(v));
                    i += 16;
                }
                super::super::qbinary::range_scalar(g, a, b, y, i, end);
            }
        }
    }

    /// See [`super::super::qbinary::QBinaryFn`].
    ///
    /// # Safety
    /// As for [`super::super::qbinary::qbinary`]; the CPU runs AVX-512 BW.
    pub unsafe extern "C" fn binary(
        a: *const u8,
        b: *const u8,
        y: *mut u8,
        geom: *const super::super::qbinary::QBinaryGeom,
        threads: usize,
    ) {
        // SAFETY: as this function's contract.
        unsafe { super::super::qbinary::run(a, b, y, geom, threads, binary_range) }
    }

    /// See [`super::super::lut::LutFn`].
    ///
    /// # Safety
    /// As for [`super::super::lut::lut`]; the CPU runs AVX-512 VBMI.
    pub unsafe extern "C" fn lut(
        x: *const u8,
        y: *mut u8,
        geom: *const super::super::lut::LutGeom,
        threads: usize,
    ) {
        // SAFETY: as this function's contract.
        unsafe { super::super::lut::run(x, y, geom, threads, lut_range) }
    }

    dw_entry!(dw_planes);
}

#[cfg(test)]
#[path = "int8_tests.rs"]
mod tests;
