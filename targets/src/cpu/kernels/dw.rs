//! The depthwise kernel family (one input channel per group): geometry ([`DwGeom`]),
//! signature, thread driver, the per-ISA body (`dw_body!`: one padded plane at a time) and
//! the planes with the channels in the vector lanes (`dw_lanes_body!`, AVX2 and AVX-512,
//! chosen by [`DwGeom::in_lanes`]).

use super::drive::{plane_ranges, TASKS_PER_THREAD};
use super::epilogue::Epilogue;
use super::words_to_blob;
use crate::cpu::isa;
use crate::Target;

/// Geometry and epilogue of a depthwise op (one input channel per group), stored in the
/// weights blob as `u64` words (see [`DwGeom::to_blob`]) and read by the kernel.
///
/// Output plane `q` (`0..planes`, `= b * co + o`) reads input plane `b * ci + o / cog`, taps
/// `w[o * kh * kw ..]`, `bias[o]`, residual plane `q`. The zero-padded copy of an input plane
/// is `hp x wp` (rows and columns; stored as [`DwGeom::pad_row`] lays a row out) with the
/// input at row `pt`, column `pl`; every tap read of every output lies inside it. The stem
/// kernel reads the same struct (see [`super::stem::scratch_floats`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
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
    /// The fused epilogue (whether the bias and residual operands are read, the
    /// activation).
    pub epi: Epilogue,
    /// Padded planes the scratch area holds (one per task; the most tasks a call uses).
    pub tasks: u64,
}

impl DwGeom {
    /// The struct as f32 bit patterns (two per `u64`, little-endian), for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        let [e0, e1] = self.epi.to_words();
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
            e0,
            e1,
            self.tasks,
        ])
    }

    /// The input plane that output channel `o` of batch element `b` reads: `b * ci + o / cog`.
    pub fn input_plane(&self, b: usize, o: usize) -> usize {
        b * self.ci as usize + o / self.cog as usize
    }

    /// Whether the depthwise kernel of an ISA with `lanes` f32 per vector computes these
    /// planes with the channels in the vector lanes, `lanes` planes at a time (the AVX-512
    /// and AVX2 kernels, on planes of at most [`lane_max_pixels`] outputs, where one plane at
    /// a time leaves lanes empty and pays its fixed costs per channel). A pure function of
    /// the shape; both ways give identical results.
    pub fn in_lanes(&self, lanes: usize) -> bool {
        self.oh.saturating_mul(self.ow) <= lane_max_pixels(lanes, self.sx, self.kh * self.kw)
            && self.kh.saturating_mul(self.kw) <= LANE_MAX_TAPS
    }

    /// Whether the depthwise kernel of an ISA with `lanes` f32 per vector reads these planes
    /// straight from the input, without the padded copy (the AVX-512 kernel, on square 3x3
    /// and 5x5 undilated windows not computed in the lanes, at stride 1 or 2): each input
    /// row is loaded once per vector of outputs (at stride 1 one masked load per tap, at
    /// stride 2 three loads split into the tap vectors in registers; masked loads give the
    /// padding's zeros), then applied to the output rows that read it. A pure function of
    /// the shape; both ways give identical results (the same products in the same order).
    pub fn unpadded(&self, lanes: usize) -> bool {
        lanes == UNPADDED_LANES
            && !self.in_lanes(lanes)
            && self.sx == self.sy
            && (self.sx == 1 || self.sx == 2)
            && self.dx == 1
            && self.dy == 1
            && self.kh == self.kw
            && matches!(self.kh, 3 | 5)
    }

    /// How the depthwise kernel of an ISA with `lanes` f32 per vector computes these planes
    /// (what [`dw_kernel`]'s entry runs, what the compile report names): the one choice,
    /// from [`DwGeom::in_lanes`] and [`DwGeom::unpadded`]; every path gives identical
    /// results.
    pub fn path(&self, lanes: usize) -> DwPath {
        if self.in_lanes(lanes) {
            DwPath::Lanes
        } else if self.unpadded(lanes) {
            DwPath::Unpadded
        } else {
            DwPath::Padded
        }
    }

    /// How a padded plane stores its rows ([`PadRow`]): every row starts on a cache line,
    /// and the input's columns start on one, so that copying a row in stores whole lines
    /// and most tap loads do not straddle two.
    pub fn pad_row(&self) -> PadRow {
        let (wp, pl) = (self.wp as usize, self.pl as usize);
        // The smallest position `>= from` at which index `idx` of a run lands on a line.
        let base =
            |idx: usize, from: usize| from + (PAD_ALIGN - (from + idx) % PAD_ALIGN) % PAD_ALIGN;
        if self.sx == 2 {
            // Input column 0 is padded column `pl` (index `pl / 2` of its parity's half),
            // input column 1 is padded column `pl + 1`.
            let half = wp.div_ceil(2);
            let first = base(pl / 2, 0);
            let second = base(pl.div_ceil(2), first + half);
            let (even, odd) = if pl.is_multiple_of(2) {
                (first, second)
            } else {
                (second, first)
            };
            PadRow {
                stride: (even.max(odd) + half).next_multiple_of(PAD_ALIGN),
                even,
                odd,
                split: true,
            }
        } else {
            let even = base(pl, 0);
            PadRow {
                stride: (even + wp).next_multiple_of(PAD_ALIGN),
                even,
                odd: even,
                split: false,
            }
        }
    }

    /// Floats of one padded plane as [`DwGeom::pad_row`] stores it: `hp` rows (`None` on
    /// overflow).
    pub fn plane_floats(&self) -> Option<usize> {
        usize::try_from(self.hp)
            .ok()?
            .checked_mul(self.pad_row().stride)
    }

    /// Floats of scratch one task needs on an ISA with `lanes` f32 per vector: the padded
    /// plane, or with the channels in the lanes ([`DwGeom::in_lanes`]) the padded planes,
    /// the output pixels and the taps of `lanes` channels, interleaved, or none on the
    /// unpadded path ([`DwGeom::unpadded`]); a whole number of cache lines
    /// ([`PAD_ALIGN`]), so that every task's area starts on one (`None` on overflow).
    pub fn task_floats(&self, lanes: usize) -> Option<usize> {
        let f = match self.path(lanes) {
            DwPath::Lanes => {
                let out = (self.oh * self.ow).next_multiple_of(lanes as u64);
                let f = self
                    .hp
                    .checked_mul(self.wp)?
                    .checked_add(out)?
                    .checked_add(self.kh * self.kw)?
                    .checked_mul(lanes as u64)?;
                usize::try_from(f).ok()?
            }
            // Read straight from the input: no padded plane.
            DwPath::Unpadded => 0,
            DwPath::Padded => self.plane_floats()?,
        };
        Some(f.next_multiple_of(PAD_ALIGN))
    }

    /// Floats of scratch the op needs on an ISA with `lanes` f32 per vector: one
    /// [`DwGeom::task_floats`] area per task, and [`PAD_ALIGN`] more to start the first on a
    /// cache line ([`aligned`]) (`None` on overflow).
    pub fn scratch_floats(&self, lanes: usize) -> Option<usize> {
        self.task_floats(lanes)?
            .checked_mul(usize::try_from(self.tasks).ok()?)?
            .checked_add(PAD_ALIGN)
    }
}

/// How the depthwise kernel computes a conv's planes ([`DwGeom::path`]; reports name it
/// `conv-dw-padded`, `conv-dw-unpadded`, `conv-dw-lanes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DwPath {
    /// One plane at a time from a zero-padded copy of its input plane.
    Padded,
    /// One plane at a time, its input rows read without a copy ([`DwGeom::unpadded`]).
    Unpadded,
    /// `lanes` planes at a time, the channels in the vector lanes
    /// ([`DwGeom::in_lanes`]).
    Lanes,
}

/// Floats to which the rows of padded planes and the scratch areas are aligned: one 64-byte
/// cache line.
pub const PAD_ALIGN: usize = 16;

/// The first cache-line-aligned float at or after `p` (a scratch area sized with
/// [`PAD_ALIGN`] floats to spare holds it and everything after it that it was sized for).
pub(super) fn aligned(p: *mut f32) -> *mut f32 {
    p.wrapping_add(
        (p as usize)
            .next_multiple_of(PAD_ALIGN * 4)
            .wrapping_sub(p as usize)
            / 4,
    )
}

/// Where the columns of a padded row lie ([`DwGeom::pad_row`]): rows are `stride` floats
/// apart; padded column `j` is at `even + j`, or, with column stride 2 (`split`), the even
/// columns at `even + j / 2` and the odd ones at `odd + j / 2`, so that the inputs of a
/// vector of outputs are one contiguous load. Positions between the runs are never read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PadRow {
    pub stride: usize,
    pub even: usize,
    pub odd: usize,
    pub split: bool,
}

impl PadRow {
    /// The position of padded column `j` in its row.
    #[inline]
    pub fn at(&self, j: usize) -> usize {
        if !self.split {
            self.even + j
        } else if j.is_multiple_of(2) {
            self.even + j / 2
        } else {
            self.odd + j / 2
        }
    }
}

/// The vector width (f32 lanes) whose depthwise kernel has the unpadded path
/// ([`DwGeom::unpadded`]): AVX-512's.
pub const UNPADDED_LANES: usize = 16;

/// Most output pixels per plane that the depthwise kernel of an ISA with `lanes` f32 per
/// vector computes with the channels in the lanes ([`DwGeom::in_lanes`]) at column stride
/// `sx` with `taps` window taps (0: it has no such path). AVX-512: 7x7 and 8x8 planes
/// (larger ones read their rows straight from the input, [`DwGeom::unpadded`]), and with
/// 5x5 windows at stride 1 planes up to 28x28. AVX2 (no unpadded path): those, at stride 2
/// planes up to 14x14 (MobileNetV2's 28x28 -> 14x14 layer, `mnc bench --profile --target
/// x86_64-avx2` on a Zen 4: 0.097 ms through the padded copy, 0.060 in the lanes; at
/// stride 1 14x14 3x3 planes measured no faster in the lanes), and with 5x5 windows planes
/// up to 28x28 at either stride. The 5x5 limits (session 21, Zen 4, per-op profile, 1
/// thread): EfficientNet-B0's and MobileNetV3-Large's 5x5 layers at 28x28 and 14x14
/// output 0.73-0.80x their padded-path time on AVX2, at stride 1 0.86-0.94x the unpadded
/// path's on AVX-512; 25 taps pay for the transposes where 9 do not (MobileNetV2's 3x3
/// 56x56 -> 28x28 layer 1.35x in the lanes on AVX2), and AVX-512's unpadded stride-2 path
/// stays ahead (56x56 -> 28x28 5x5: 1.17x in the lanes).
pub fn lane_max_pixels(lanes: usize, sx: u64, taps: u64) -> u64 {
    match (lanes, sx) {
        (16, 1) if taps >= 25 => 784,
        (16, _) => 64,
        (8, 2) if taps >= 25 => 784,
        (8, 2) => 196,
        (8, _) if taps >= 25 => 784,
        (8, _) => 64,
        _ => 0,
    }
}

/// Most taps of a window computed with the channels in the vector lanes.
pub const LANE_MAX_TAPS: u64 = 49;

/// Signature of the depthwise op entry points:
/// `(x, taps, bias, residual, y, scratch, geometry, threads)`; `bias` and `residual` are read
/// only where the geometry's [`Epilogue`] has them (null otherwise).
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
/// baseline), with its symbol name (from its [`IsaDesc`](crate::cpu::IsaDesc)).
pub fn dw_kernel(t: Target) -> Option<(&'static str, DwFn)> {
    isa(t).and_then(|d| d.dw).map(|d| (d.symbol, d.func))
}

/// One depthwise or stem call ([`DwFn`], [`stem::StemFn`]), shared by its tasks.
pub(super) struct Dw {
    pub(super) x: *const f32,
    pub(super) w: *const f32,
    pub(super) bias: *const f32,
    pub(super) res: *const f32,
    pub(super) y: *mut f32,
    pub(super) scratch: *mut f32,
    pub(super) g: DwGeom,
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
    pub(super) unsafe fn new(
        x: *const f32,
        w: *const f32,
        bias: *const f32,
        res: *const f32,
        y: *mut f32,
        scratch: *mut f32,
        geom: *const DwGeom,
    ) -> Dw {
        // The blob keeps it 8-byte aligned, but the guard-page test mode may not.
        // SAFETY: `geom` is readable (contract).
        let g: DwGeom = unsafe { std::ptr::read_unaligned(geom) };
        // The operands the epilogue has; null otherwise, which the kernels test.
        let e = super::Epi::new(&g.epi, bias, res);
        Dw {
            x,
            w,
            bias: e.bias,
            res: e.res,
            y,
            // The areas of the tasks (stem: the planes) start on cache lines; the scratch has
            // `PAD_ALIGN` floats to spare for it (`scratch_floats`).
            scratch: aligned(scratch),
            g,
        }
    }

    /// The epilogue of output plane `q` (`b * co + o`): channel `o`'s bias, the plane's
    /// residual, the geometry's activation.
    ///
    /// # Safety
    /// `q < planes` of the call (the bias and residual hold that channel and plane).
    pub(super) unsafe fn plane_epi(&self, q: usize) -> super::Epi {
        let g = &self.g;
        let o = q % g.co as usize;
        let plane = (g.oh * g.ow) as usize;
        // SAFETY: channel `o` and plane `q` lie inside the bias and residual (contract).
        unsafe {
            super::Epi::new(
                &g.epi,
                if self.bias.is_null() {
                    self.bias
                } else {
                    self.bias.add(o)
                },
                if self.res.is_null() {
                    self.res
                } else {
                    self.res.add(q * plane)
                },
            )
        }
    }
}

/// Runs a depthwise op as ranges of planes on `threads`, each task with its own scratch area ([`DwGeom::task_floats`]).
///
/// # Safety
/// As for the ISA's `planes` function.
pub(super) unsafe fn dw_drive(
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
    // With the channels in the lanes, tasks take whole groups of `lanes` planes (a range cut
    // inside a group would compute that group twice, half empty).
    let unit = if g.path(lanes) == DwPath::Lanes {
        lanes
    } else {
        1
    };
    plane_ranges(
        threads,
        n.div_ceil(unit),
        work,
        g.tasks as usize,
        &|u0, u1, t| {
            let (q0, q1) = (u0 * unit, (u1 * unit).min(n));
            // SAFETY: task `t` owns scratch area `t` (the geometry reserves `tasks` of them);
            // disjoint ranges of the caller's planes.
            unsafe { planes(d, q0, q1, d.scratch.add(t * area)) }
        },
    );
}

/// How many tasks (and scratch planes) a depthwise op with `threads` uses.
pub fn dw_tasks(threads: usize) -> usize {
    if threads <= 1 {
        1
    } else {
        threads.saturating_mul(TASKS_PER_THREAD)
    }
}

/// Runs `$f::<RB, ..>(args.., i0)` over the items `0..$len` in blocks of `RB = 8` items from
/// `i0`, the rest (1 to 7 items) in one last block: a constant `RB` per call, so that a
/// block's accumulators stay in registers.
macro_rules! in_blocks_of_8 {
    ($len:expr, $f:ident::<_ $(, $gen:tt)*>($($arg:expr),*)) => {{
        let len: usize = $len;
        let mut i0 = 0;
        while i0 + 8 <= len {
            $f::<8 $(, $gen)*>($($arg,)* i0);
            i0 += 8;
        }
        match len - i0 {
            7 => $f::<7 $(, $gen)*>($($arg,)* i0),
            6 => $f::<6 $(, $gen)*>($($arg,)* i0),
            5 => $f::<5 $(, $gen)*>($($arg,)* i0),
            4 => $f::<4 $(, $gen)*>($($arg,)* i0),
            3 => $f::<3 $(, $gen)*>($($arg,)* i0),
            2 => $f::<2 $(, $gen)*>($($arg,)* i0),
            1 => $f::<1 $(, $gen)*>($($arg,)* i0),
            _ => {}
        }
    }};
}

/// The depthwise body for the AVX2 / AVX-512 modules (uses the module's helpers and its
/// `deinterleave`).
macro_rules! dw_body {
    // An ISA without a channels-in-lanes path (`DwGeom::in_lanes` is false for its width).
    ($feat:literal) => {
        dw_body!($feat, planes, planes);
    };
    // `lanes(d, q0, q1, scratch)`: the planes with the channels in the lanes; `unpadded(d,
    // q0, q1, scratch)`: the planes read without the padded copy (`DwGeom::unpadded`).
    ($feat:literal, $lanes:expr, $unpadded:expr) => {
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
                let unpadded: unsafe fn(&super::Dw, usize, usize, *mut f32) = $unpadded;
                let path = match d.g.path(W) {
                    super::DwPath::Lanes => lanes,
                    super::DwPath::Unpadded => unpadded,
                    super::DwPath::Padded => planes,
                };
                super::dw_drive(path, W, &d, threads)
            })
        }

        /// Output planes `q0..q1`, using the padded plane `sp`.
        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `d` describes buffers as [`dw`]'s contract states;
        /// `q0..q1` lies inside `0..planes` and no other task writes those output planes; `sp` is
        /// valid for writing [`super::DwGeom::plane_floats`] f32 that only this task uses.
        unsafe fn planes(d: &super::Dw, q0: usize, q1: usize, sp: *mut f32) {
            // SAFETY: plane `q < planes` reads input plane `b * ci + o / cog` (`h * w` floats),
            // taps
            // `o * kh * kw..`, writes output plane `q` (`oh * ow` floats); `sp` holds
            // `hp` padded rows ([`super::DwGeom::pad_row`]) with the `h x w` interior at (`pt`,
            // `pl`) (contract, geometry).
            unsafe {
                let g = &d.g;
                let u = |v: u64| v as usize;
                let (h, w) = (u(g.h), u(g.w));
                let co = u(g.co);
                let (oh, ow, taps) = (u(g.oh), u(g.ow), u(g.kh * g.kw));
                // The border stays zero: only the interior is rewritten per plane.
                zero_border_rows(sp, g, 0, g.hp as usize);
                let pr = g.pad_row();
                for q in q0..q1 {
                    let (b, o) = (q / co, q % co);
                    pad_rows_in(
                        sp,
                        d.x.add(g.input_plane(b, o) * h * w),
                        g,
                        0,
                        g.hp as usize,
                    );
                    let epi = d.plane_epi(q);
                    let pg = Geom {
                        sp,
                        pr,
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
                    // Square 3x3 / 5x5 windows, undilated, equal strides: the tap loops unrolled.
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

        /// Zeroes the border of rows `y0..y1` of the padded plane `sp` (`hp` rows,
        /// [`super::DwGeom::pad_row`]): every padded column that [`pad_rows_in`] does not
        /// write (the rows above and below the input, and the padded columns left and right
        /// of it). A depthwise task does it once for the whole plane (`0..hp`): its planes
        /// rewrite only the interior.
        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `sp` is valid for writing
        /// [`super::DwGeom::plane_floats`] f32, with `pt + h <= hp`, `pl + w <= wp` and
        /// `y0 <= y1 <= hp`.
        unsafe fn zero_border_rows(sp: *mut f32, g: &super::DwGeom, y0: usize, y1: usize) {
            let u = |v: u64| v as usize;
            let (h, w, wp, pt, pl) = (u(g.h), u(g.w), u(g.wp), u(g.pt), u(g.pl));
            let pr = g.pad_row();
            // The interior rows of the range.
            let (a, z) = (y0.max(pt), y1.min(pt + h));
            // SAFETY: every position written lies in rows `y0..y1` of the plane (contract).
            unsafe {
                if a >= z {
                    return fill_zero(sp.add(y0 * pr.stride), (y1 - y0) * pr.stride);
                }
                fill_zero(sp.add(y0 * pr.stride), (a - y0) * pr.stride);
                fill_zero(sp.add(z * pr.stride), (y1 - z) * pr.stride);
                for iy in a..z {
                    let row = sp.add(iy * pr.stride);
                    for j in (0..pl).chain(pl + w..wp) {
                        *row.add(pr.at(j)) = 0.0;
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

        /// Copies the input rows of the `h x w` plane `x` that land in padded rows `y0..y1`
        /// into the interior of the padded plane `sp` (`hp` rows as
        /// [`super::DwGeom::pad_row`] lays them out, the input at row `pt`, column `pl`),
        /// leaving the border as it is. With column stride 2 each padded row is
        /// stored deinterleaved, its even columns in one run and its odd columns in another,
        /// so that every tap of a vector of outputs is one contiguous load ([`tap`]).
        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `x` is valid for reading `h * w` f32 and `sp`
        /// for writing [`super::DwGeom::plane_floats`], with `pt + h <= hp`, `pl + w <= wp`
        /// and `y0 <= y1 <= hp`.
        unsafe fn pad_rows_in(
            sp: *mut f32,
            x: *const f32,
            g: &super::DwGeom,
            y0: usize,
            y1: usize,
        ) {
            let u = |v: u64| v as usize;
            let (h, w, pt, pl) = (u(g.h), u(g.w), u(g.pt), u(g.pl));
            let pr = g.pad_row();
            // Where input columns 0, 2, 4, .. and 1, 3, 5, .. of a row go: padded columns
            // `pl` and `pl + 1` and every second one after each (cache-line aligned).
            let (even_at, odd_at) = (pr.at(pl), pr.at(pl + 1));
            // SAFETY: rows `pt..pt + h` of `sp` and every input row are in bounds, and the
            // columns written are padded columns `pl..pl + w` of their row (contract).
            unsafe {
                // The padded rows of the range that hold input rows (`r - pt`).
                for r in y0.max(pt)..y1.min(pt + h) {
                    let (row, src) = (sp.add(r * pr.stride), x.add((r - pt) * w));
                    if g.sx == 2 {
                        copy_s2(row.add(even_at), row.add(odd_at), src, w);
                    } else {
                        copy(row.add(even_at), src, w);
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
            /// Where the padded columns of a row are, and the rows' distance.
            pr: super::PadRow,
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
            // The rest in one block: as many independent accumulator chains as rows (small
            // planes are otherwise bound by the FMA latency of one or two chains).
            unsafe { in_blocks_of_8!(oh, block::<_, SX, K>(g, SX)) }
        }

        #[target_feature(enable = $feat)]
        #[inline(never)]
        /// # Safety
        /// The CPU supports the module's ISA; as for [`dw_rows`].
        unsafe fn dw_rows_any(g: &Geom, oh: usize, sx: usize) {
            // SAFETY: `block` is called for each row `oy < oh` (contract).
            unsafe {
                for oy in 0..oh {
                    block::<1, 0, 0>(g, sx, oy);
                }
            }
        }

        /// `n` (1..=W) inputs at element stride `sx` from `p` (`SX == 1`: contiguous; any
        /// other `SX`: the stride `sx`, element by element; stride 2 reads deinterleaved rows
        /// contiguously instead, see [`super::PadRow`]).
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
        /// row's deinterleaved form ([`pad_rows_in`], [`super::PadRow`]).
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; `row` is a padded row laid out as `pr` says
        /// (deinterleaved for `SX == 2`) holding every column read.
        unsafe fn tap<const SX: usize>(
            row: *const f32,
            ox: usize,
            j: usize,
            n: usize,
            sx: usize,
            pr: &super::PadRow,
        ) -> V {
            // SAFETY: the columns read are inside the padded row (contract).
            unsafe {
                // `pr.at` spelled out per stride: `SX` is a constant here, the `split` test is not.
                match SX {
                    1 => load::<1>(row.add(pr.even + ox + j), n, 1),
                    2 => {
                        let run = if j.is_multiple_of(2) { pr.even } else { pr.odd };
                        load::<1>(row.add(run + j / 2 + ox), n, 1)
                    }
                    _ => load::<0>(row.add(pr.even + ox * sx + j), n, sx),
                }
            }
        }

        /// `RB` output rows from `oy`, column chunks of `W`; each tap broadcast once per chunk
        /// and applied to the rows' independent accumulator chains; the epilogue runs on the
        /// registers before the store.
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; as for [`dw_rows`], for output rows `oy..oy + RB`.
        unsafe fn block<const RB: usize, const SX: usize, const K: usize>(
            g: &Geom,
            sx: usize,
            oy: usize,
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
                        // K x K taps, stride SX, no dilation (checked by the caller), in (ky, kx)
                        // order with the rows innermost: the accumulators stay in registers
                        // (sharing each input row between the rows that read it left them on
                        // the stack).
                        let top = g.sp.add(oy * SX * g.pr.stride);
                        for ky in 0..K {
                            for kx in 0..K {
                                let t = bc(g.taps.add(ky * K + kx));
                                for (r, a) in acc.iter_mut().enumerate() {
                                    let row = top.add((r * SX + ky) * g.pr.stride);
                                    *a = fma(tap::<SX>(row, ox, kx, n, SX, &g.pr), t, *a);
                                }
                            }
                        }
                    }
                    for ky in 0..if K > 0 { 0 } else { g.kh } {
                        for kx in 0..g.kw {
                            let t = bc(g.taps.add(ky * g.kw + kx));
                            for (r, a) in acc.iter_mut().enumerate() {
                                let row = g.sp.add(((oy + r) * g.sy + ky * g.dy) * g.pr.stride);
                                let v = tap::<SX>(row, ox, kx * g.dx, n, sx, &g.pr);
                                *a = fma(v, t, *a);
                            }
                        }
                    }
                    store_rows(g.y, g.ow, oy, ox, n, &acc, e, bias);
                    ox += W;
                }
            }
        }

        /// The epilogue and the stores of `RB` output rows from `oy` of an output plane `y`
        /// (`ow` wide), `n` outputs from column `ox` (`1 <= n <= W`): the bias vector, the
        /// residual at the same place, the activation.
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; those outputs (and the residual's) are in bounds.
        #[allow(clippy::too_many_arguments)]
        unsafe fn store_rows<const RB: usize>(
            y: *mut f32,
            ow: usize,
            oy: usize,
            ox: usize,
            n: usize,
            acc: &[V; RB],
            e: &super::Epi,
            bias: V,
        ) {
            use super::ActKind as K;
            // One dispatch on the activation per block, each arm with the activation a
            // constant: the rows' epilogues are then straight-line code and the accumulators
            // stay in registers (a dispatch per row kept them on the stack).
            // SAFETY: as this function's contract.
            unsafe {
                match e.act {
                    K::None => {
                        store_rows_as::<RB, { K::None as u32 }>(y, ow, oy, ox, n, acc, e, bias)
                    }
                    K::Relu => {
                        store_rows_as::<RB, { K::Relu as u32 }>(y, ow, oy, ox, n, acc, e, bias)
                    }
                    K::Clip => {
                        store_rows_as::<RB, { K::Clip as u32 }>(y, ow, oy, ox, n, acc, e, bias)
                    }
                    K::Sigmoid => {
                        store_rows_as::<RB, { K::Sigmoid as u32 }>(y, ow, oy, ox, n, acc, e, bias)
                    }
                    K::HardSigmoid => store_rows_as::<RB, { K::HardSigmoid as u32 }>(
                        y, ow, oy, ox, n, acc, e, bias,
                    ),
                    K::HardSwish => {
                        store_rows_as::<RB, { K::HardSwish as u32 }>(y, ow, oy, ox, n, acc, e, bias)
                    }
                    K::Silu => {
                        store_rows_as::<RB, { K::Silu as u32 }>(y, ow, oy, ox, n, acc, e, bias)
                    }
                }
            }
        }

        /// [`store_rows`] with the activation `ActKind::ALL[CODE]` (`e.act`) a constant.
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// As for [`store_rows`].
        #[allow(clippy::too_many_arguments)]
        unsafe fn store_rows_as<const RB: usize, const CODE: u32>(
            y: *mut f32,
            ow: usize,
            oy: usize,
            ox: usize,
            n: usize,
            acc: &[V; RB],
            e: &super::Epi,
            bias: V,
        ) {
            // SAFETY: as this function's contract.
            unsafe {
                for (r, a) in acc.iter().enumerate() {
                    let off = (oy + r) * ow + ox;
                    let res = if e.res.is_null() {
                        std::ptr::null()
                    } else {
                        e.res.add(off)
                    };
                    let v = finish_with(*a, e, bias, res, n, super::ActKind::ALL[CODE as usize]);
                    let dst = y.add(off);
                    if n == W {
                        st(dst, v);
                    } else {
                        stm(dst, v, n);
                    }
                }
            }
        }
    };
}

/// The depthwise planes with the channels in the vector lanes ([`DwGeom::in_lanes`]):
/// `lane_planes`, `lane_rows` and `lane_block` of a `W`-lane module (AVX2, AVX-512; uses
/// its helpers and its `W x W` `transpose`).
macro_rules! dw_lanes_body {
    ($feat:literal) => {
        /// Depthwise planes `q0..q1` with the channels in the vector lanes
        /// ([`super::DwGeom::in_lanes`]), `W` planes at a time: the input planes are transposed
        /// into one padded plane of pixel vectors (each the `W` channels of one pixel), every
        /// output pixel accumulates its taps as vectors of `W` channels (tap vectors of the `W`
        /// channels' weights), and the output pixel vectors are transposed back into planes for
        /// the epilogue and the stores. Every output sums the same products in the same order
        /// as [`planes`].
        #[target_feature(enable = $feat)]
        /// # Safety
        /// As for [`planes`], with `sp` valid for writing [`super::DwGeom::task_floats`] of
        /// `W` lanes.
        unsafe fn lane_planes(d: &super::Dw, q0: usize, q1: usize, sp: *mut f32) {
            let g = &d.g;
            let u = |v: u64| v as usize;
            let (h, w, hp, wp, pt, pl) = (u(g.h), u(g.w), u(g.hp), u(g.wp), u(g.pt), u(g.pl));
            let co = u(g.co);
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
                let e = super::Epi::new(&g.epi, d.bias, d.res);
                let mut q = q0;
                while q < q1 {
                    let nch = (q1 - q).min(W);
                    // Per lane: its output channel and input plane.
                    let mut chan = [0usize; W];
                    let mut src = [d.x; W];
                    let (mut b, mut o) = (q / co, q % co);
                    for i in 0..nch {
                        chan[i] = o;
                        src[i] = d.x.add(g.input_plane(b, o) * hw);
                        o += 1;
                        if o == co {
                            (b, o) = (b + 1, 0);
                        }
                    }
                    // The tap vectors: the channels' rows of taps transposed, `W` taps at a
                    // time (lanes past `nch` zero).
                    let mut t0 = 0;
                    while t0 < taps {
                        let cnt = (taps - t0).min(W);
                        let tv = rows_transposed(|i| d.w.add(chan[i] * taps), nch, t0, cnt);
                        for (j, v) in tv.iter().enumerate() {
                            if j < cnt {
                                st(wv.add((t0 + j) * W), *v);
                            }
                        }
                        t0 += W;
                    }
                    let mut p0 = 0;
                    while p0 < hw {
                        let cnt = (hw - p0).min(W);
                        let px = rows_transposed(|i| src[i], nch, p0, cnt);
                        let (iy, mut ix) = (p0 / w, p0 % w);
                        // Over all `W` vectors (a constant trip count: `px` stays in registers),
                        // storing the first `cnt`; the destination steps along the padded rows.
                        let mut dst = tp.add(((pt + iy) * wp + pl + ix) * W);
                        for (j, v) in px.iter().enumerate() {
                            if j < cnt {
                                st(dst, *v);
                            }
                            ix += 1;
                            dst = dst.wrapping_add(W);
                            if ix == w {
                                ix = 0;
                                dst = dst.wrapping_add((wp - w) * W);
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
                        for (i, v) in cv.iter().enumerate() {
                            if i < nch {
                                let off = (q + i) * ohw + p0;
                                stm(d.y.add(off), finish_at(*v, &e, chan[i], off, cnt), cnt);
                            }
                        }
                        p0 += W;
                    }
                    q += W;
                }
            }
        }

        /// Elements `at..at + cnt` (`cnt <= W`) of the rows `row(i)`, `i < nch` (`nch <= W`),
        /// transposed: vector `j` holds element `at + j` of every row, zero past `nch`.
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; each `row(i)`, `i < nch`, is valid for reading
        /// `at + cnt` f32.
        unsafe fn rows_transposed(
            row: impl Fn(usize) -> *const f32,
            nch: usize,
            at: usize,
            cnt: usize,
        ) -> [V; W] {
            // SAFETY: only the elements `at..at + cnt` of rows `i < nch` are read (contract).
            transpose(std::array::from_fn(|i| unsafe {
                if i < nch {
                    ldm(row(i).add(at), cnt)
                } else {
                    zero()
                }
            }))
        }

        /// Every output pixel of [`lane_planes`]' current channels, in blocks of up to 8 pixels of
        /// a row, `SX` the column stride (0: any).
        #[target_feature(enable = $feat)]
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
                    in_blocks_of_8!(ow, lane_block::<_, SX>(g, tp, wv, out, oy));
                }
            }
        }

        /// Output pixels `ox..ox + NB` of row `oy` as vectors of `W` channels, from the padded
        /// pixel plane `tp` and the tap vectors `wv`, into the output pixel vectors `out`.
        #[target_feature(enable = $feat)]
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
    };
}

/// The AVX-512 depthwise planes read without the padded copy ([`DwGeom::unpadded`]):
/// `unpadded_planes`, `unpadded_rows`, `unpadded_block` and `unpadded_row` of a 16-lane
/// module (uses its helpers).
macro_rules! dw_unpadded_body {
    ($feat:literal) => {
        /// Depthwise planes `q0..q1` with a square 3x3 or 5x5 window at stride 1 or 2, read
        /// straight from the input planes ([`super::DwGeom::unpadded`]; no scratch).
        #[target_feature(enable = $feat)]
        /// # Safety
        /// The CPU supports the module's ISA; `d` describes buffers as [`dw`]'s contract
        /// states, with a geometry for which `unpadded(W)` holds; `q0..q1` lies inside
        /// `0..planes` and no other task writes those output planes.
        unsafe fn unpadded_planes(d: &super::Dw, q0: usize, q1: usize, _scratch: *mut f32) {
            // SAFETY: plane `q < planes` reads input plane `b * ci + o / cog` (`h * w` floats)
            // and taps `o * kh * kw..`, and writes output plane `q` (`oh * ow` floats)
            // (contract, geometry).
            unsafe {
                let g = &d.g;
                let u = |v: u64| v as usize;
                let (h, w, co, oh, ow, k) = (u(g.h), u(g.w), u(g.co), u(g.oh), u(g.ow), u(g.kh));
                for q in q0..q1 {
                    let (b, o) = (q / co, q % co);
                    let epi = d.plane_epi(q);
                    let pg = Unpadded {
                        x: d.x.add(g.input_plane(b, o) * h * w),
                        h,
                        w,
                        pt: u(g.pt),
                        pl: u(g.pl),
                        taps: d.w.add(o * k * k),
                        ow,
                        y: d.y.add(q * oh * ow),
                        epi,
                    };
                    match (u(g.sx), k) {
                        (1, 3) => unpadded_rows::<1, 3>(&pg, oh),
                        (1, _) => unpadded_rows::<1, 5>(&pg, oh),
                        (_, 3) => unpadded_rows::<2, 3>(&pg, oh),
                        _ => unpadded_rows::<2, 5>(&pg, oh),
                    }
                }
            }
        }

        /// One output plane of the unpadded path, read from its input plane.
        struct Unpadded {
            x: *const f32,
            h: usize,
            w: usize,
            pt: usize,
            pl: usize,
            taps: *const f32,
            ow: usize,
            y: *mut f32,
            epi: super::Epi,
        }

        #[target_feature(enable = $feat)]
        #[inline(never)]
        /// # Safety
        /// The CPU supports the module's ISA; `g` is one output plane as [`unpadded_planes`]
        /// builds it, with `oh` output rows.
        unsafe fn unpadded_rows<const S: usize, const K: usize>(g: &Unpadded, oh: usize) {
            // SAFETY: every block covers rows `< oh` and columns from `ox < ow` (contract).
            unsafe {
                let mut ox = 0;
                while ox < g.ow {
                    in_blocks_of_8!(oh, unpadded_block::<_, S, K>(g, ox));
                    ox += W;
                }
            }
        }

        /// The lanes of `x[c0 .. c0 + W]` that lie inside `0..w`, as a load mask.
        #[inline]
        fn col_mask(c0: isize, w: usize) -> u16 {
            let lo = (-c0).clamp(0, W as isize) as u32;
            let hi = (w as isize - c0).clamp(0, W as isize) as u32;
            let upto = |n: u32| if n >= 16 { 0xffffu32 } else { (1u32 << n) - 1 };
            (upto(hi) & !upto(lo)) as u16
        }

        /// Input row `S oy + J - pt` of an [`unpadded_block`] at stride `S` (`J < S (RB - 1) +
        /// K`, else nothing): its masked loads (`m`: the loads' masks and first column; two at
        /// stride 1, three at stride 2), the `K` tap vectors, and their products added to the
        /// accumulators of the output rows that read it.
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; as for [`unpadded_block`].
        unsafe fn unpadded_row<const J: usize, const RB: usize, const S: usize, const K: usize>(
            g: &Unpadded,
            oy: usize,
            m: ([u16; 5], isize),
            acc: &mut [V; RB],
        ) {
            if J >= S * (RB - 1) + K {
                return;
            }
            let iy = (S * oy + J).wrapping_sub(g.pt);
            let inside = iy < g.h;
            let (mk, c0) = m;
            let mk = if inside { mk } else { [0; 5] };
            // SAFETY: the loads are masked to columns `0..w` of row `iy < h` of the plane, or
            // load nothing (contract).
            unsafe {
                let p =
                    g.x.add(if inside { iy * g.w } else { 0 })
                        .wrapping_offset(c0);
                let t: [V; K] = if S == 1 {
                    // Tap `kx`: input columns `c0 + kx..`, one masked load each: loads where
                    // lane rotations of two loads were shuffles, and no padded copy (Zen 4,
                    // MobileNetV2, 1 thread: 14x14 rows 0.92-0.94x, 56x56 0.94x and 112x112
                    // 0.93x their earlier time).
                    std::array::from_fn(|kx| _mm512_maskz_loadu_ps(mk[kx], p.wrapping_add(kx)))
                } else {
                    let a = _mm512_maskz_loadu_ps(mk[0], p);
                    let b = _mm512_maskz_loadu_ps(mk[1], p.wrapping_add(W));
                    // Element `j` of the concatenated loads (a, b, c) is input column `c0 + j`;
                    // tap `kx` takes elements `kx, kx + 2, ..`: the even / odd runs, and those
                    // shifted by one or two lanes topped up from `c`.
                    let c = _mm512_maskz_loadu_ps(mk[2], p.wrapping_add(2 * W));
                    let idx = |first: i32, last: i32| {
                        _mm512_setr_epi32(
                            first,
                            first + 2,
                            first + 4,
                            first + 6,
                            first + 8,
                            first + 10,
                            first + 12,
                            first + 14,
                            first + 16,
                            first + 18,
                            first + 20,
                            first + 22,
                            first + 24,
                            first + 26,
                            first + 28,
                            last,
                        )
                    };
                    let ev = _mm512_permutex2var_ps(a, idx(0, 30), b);
                    let od = _mm512_permutex2var_ps(a, idx(1, 31), b);
                    let shift = |first: i32, last: i32| {
                        _mm512_setr_epi32(
                            first,
                            first + 1,
                            first + 2,
                            first + 3,
                            first + 4,
                            first + 5,
                            first + 6,
                            first + 7,
                            first + 8,
                            first + 9,
                            first + 10,
                            first + 11,
                            first + 12,
                            first + 13,
                            first + 14,
                            last,
                        )
                    };
                    std::array::from_fn(|kx| match kx {
                        0 => ev,
                        1 => od,
                        2 => _mm512_permutex2var_ps(ev, shift(1, 16), c),
                        3 => _mm512_permutex2var_ps(od, shift(1, 17), c),
                        _ => _mm512_permutex2var_ps(ev, shift(2, 18), c),
                    })
                };
                for (r, a) in acc.iter_mut().enumerate() {
                    // Window row `ky = J - S r` of output row `oy + r`.
                    if J >= S * r && J - S * r < K {
                        let ky = J - S * r;
                        for (kx, &tv) in t.iter().enumerate() {
                            *a = fma(tv, bc(g.taps.add(ky * K + kx)), *a);
                        }
                    }
                }
            }
        }

        /// `RB` output rows from `oy` times one vector of `W` output columns from `ox`, stride
        /// `S`: the `S (RB - 1) + K` input rows they read are visited top to bottom
        /// ([`unpadded_row`]); each is loaded once (masked loads of the input columns from `S
        /// ox - pl`, zero outside the row, nothing for rows outside the plane), split into its
        /// `K` tap vectors in registers (tap `kx` of output `ox + i` is input column `S (ox +
        /// i) + kx - pl`: `valignd` at stride 1, `vpermt2ps` at stride 2), and applied to the
        /// output rows that read it. Each accumulator sums its taps in `(ky, kx)` order from
        /// zero, the padding as zero products, as the padded copy does: identical results.
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; as for [`unpadded_rows`], for output rows `oy..oy
        /// + RB` and columns `ox..` of the plane.
        unsafe fn unpadded_block<const RB: usize, const S: usize, const K: usize>(
            g: &Unpadded,
            ox: usize,
            oy: usize,
        ) {
            // SAFETY: the rows' loads are masked (`unpadded_row`); the stores and residual reads
            // cover the `n` outputs of the vector in rows `< oh` (contract).
            unsafe {
                let e = &g.epi;
                let bias = if e.bias.is_null() { zero() } else { bc(e.bias) };
                let n = (g.ow - ox).min(W);
                let c0 = (S * ox) as isize - g.pl as isize;
                // The loads' masks: at stride 1 one load per tap (columns from `c0 + kx`), at
                // stride 2 three vectors of columns from `c0`.
                let masks: [u16; 5] = std::array::from_fn(|i| {
                    let first = if S == 1 { i } else { i * W };
                    col_mask(c0 + first as isize, g.w)
                });
                let m = (masks, c0);
                let mut acc = [zero(); RB];
                // One call per input row (at most 2 * 7 + 5 = 19): the accumulators are
                // indexed by constants and stay in registers.
                unpadded_row::<0, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<1, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<2, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<3, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<4, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<5, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<6, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<7, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<8, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<9, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<10, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<11, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<12, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<13, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<14, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<15, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<16, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<17, RB, S, K>(g, oy, m, &mut acc);
                unpadded_row::<18, RB, S, K>(g, oy, m, &mut acc);
                store_rows(g.y, g.ow, oy, ox, n, &acc, e, bias);
            }
        }
    };
}
