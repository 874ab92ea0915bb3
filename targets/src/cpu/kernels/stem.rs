//! Direct convolution for few input channels: the networks' stem (3 -> 16/32 channels, 3x3,
//! stride 2 at 224x224), which im2col + GEMM handled badly (the im2col copy, generated
//! single-threaded code, cost 3-4x the GEMM).
//!
//! [`StemFn`] computes a whole ungrouped conv with at most [`STEM_MAX_CI`] input channels:
//! 1. the input planes of every batch element are copied into zero-padded scratch planes
//!    (`hp` rows laid out by [`DwGeom::pad_row`], input at row `pt`, column `pl`; split over
//!    the pool by planes);
//! 2. output rows (batch x rows, split over the pool): per row, per chunk of `CV` column
//!    vectors, per block of `CB` output channels (`CB x CV` accumulators: 8 x 1 on AVX2, 8 x 3
//!    on AVX-512), every tap `(ci, ky, kx)` loads `CV` input vectors (stride 2: the padded
//!    rows are deinterleaved, even columns then odd, so that the load is contiguous too) and
//!    `CB` broadcast weights, each weight feeding `CV` FMAs and each input vector `CB`
//!    (AVX-512: 11 loads per 24 FMAs; the 16 x 1 block it replaced loaded 17 per 16, and
//!    MobileNetV2's stem went from 0.52 to 0.43 ms at 1 thread on Ice Lake); the
//!    epilogue (bias, residual, activation) runs on the registers before the only (masked)
//!    stores. Leftover channels go one at a time, a row's last chunk has the vectors its
//!    columns need.
//!
//! Every output element is computed by one task, summing its taps in `(ci, ky, kx)` order from
//! zero: results do not depend on the thread count. The ISA bodies are in [`stem_body`]
//! (expanded in the AVX2 and AVX-512 modules).

use super::{part, Dw, DwFn, DwGeom, PAD_ALIGN, PAR_MIN_WORK, TASKS_PER_THREAD};
use crate::Target;

/// Most input channels the stem kernel takes (beyond that, im2col + GEMM).
pub const STEM_MAX_CI: usize = 4;

/// Floats of scratch a stem conv with geometry `g` needs: the padded input planes of every
/// batch element ([`DwGeom::plane_floats`] each), and [`PAD_ALIGN`] to spare to start them on
/// a cache line (`None` on overflow).
///
/// The stem kernel reads the depthwise kernel's geometry [`DwGeom`]: `planes = n * co` output
/// planes, `ci` input channels (all read by every output plane), the padded plane `hp x wp`,
/// window, strides, dilations and activation; it ignores `cog` and `tasks`.
pub fn scratch_floats(g: &DwGeom) -> Option<usize> {
    let n = g.planes.checked_div(g.co)?;
    usize::try_from(n.checked_mul(g.ci)?)
        .ok()?
        .checked_mul(g.plane_floats()?)?
        .checked_add(PAD_ALIGN)
}

/// Signature of the stem entry points: the depthwise kernel's ([`DwFn`]: `(x, weights, bias,
/// residual, y, scratch, geometry, threads)`; `bias` and `residual` read only where the
/// geometry's epilogue has them), with scratch
/// sized by [`scratch_floats`] and the weights tap-major: `w[t * co + o]` for tap
/// `t = (c * kh + ky) * kw + kx` of output channel `o`.
pub type StemFn = DwFn;

/// The stem kernel of a target (`None`: the SSE baseline, which keeps im2col + GEMM), with
/// its symbol name (from its [`IsaDesc`](crate::cpu::IsaDesc)).
pub fn stem_kernel(t: Target) -> Option<(&'static str, StemFn)> {
    crate::cpu::isa(t)
        .and_then(|d| d.stem)
        .map(|d| (d.symbol, d.func))
}

/// Runs a stem conv: pads the input planes through the ISA's `pad(d, p, y0, y1)` (padded rows
/// `y0..y1` of input plane `p = b * ci + c` into scratch plane `p`), then output rows `(b,
/// oy)` in ranges through the ISA's `rows(d, r0, r1)` (flattened `b * oh + oy`), on
/// `threads`. Both phases split the same output-row ranges over the same task indices: task
/// `t` pads the rows its output rows start on ([`pad_band`]), so the rows a task reads were
/// mostly padded on its own core (the pool runs a prefix of the tasks on the caller), and the
/// three input planes of an image split evenly instead of 2:1 over two threads.
///
/// # Safety
/// As for the ISA's `stem`: `d` describes valid buffers for its geometry.
pub(super) unsafe fn stem_drive(
    pad: unsafe fn(&Dw, usize, usize, usize),
    rows: unsafe fn(&Dw, usize, usize),
    d: &Dw,
    threads: usize,
) {
    let threads = super::super::par::threads_now(threads);
    let g = &d.g;
    let (n, ci) = ((g.planes / g.co.max(1)) as usize, g.ci as usize);
    let all = n * g.oh as usize;
    let work = (g.planes * g.oh * g.ow * g.ci * g.kh * g.kw) as usize;
    let pad_band_rows = |r0: usize, r1: usize| {
        for (b, y0, y1) in pad_band(g, r0, r1) {
            // SAFETY: each padded row of each plane is written by the one task whose band
            // holds it (`pad_band`), the bands of disjoint row ranges being disjoint; the
            // planes lie inside the call (contract).
            (0..ci).for_each(|c| unsafe { pad(d, b * ci + c, y0, y1) });
        }
    };
    if threads <= 1 || work < PAR_MIN_WORK {
        pad_band_rows(0, all);
        // SAFETY: every row on this thread, the planes padded (contract).
        return unsafe { rows(d, 0, all) };
    }
    let tasks = threads.saturating_mul(TASKS_PER_THREAD).min(all).max(1);
    super::super::par::for_each(threads, tasks, &|t| {
        let (r0, r1) = part(all, tasks, t);
        pad_band_rows(r0, r1)
    });
    super::super::par::for_each(threads, tasks, &|t| {
        let (r0, r1) = part(all, tasks, t);
        // SAFETY: disjoint row ranges of the whole call (contract).
        unsafe { rows(d, r0, r1) }
    });
}

/// The padded rows that the task computing output rows `r0..r1` (flattened `b * oh + oy`)
/// pads: per image `b` touched, `(b, y0, y1)` with `y0 = oy0 * sy` for its first row `oy0`
/// and `y1` the next range's start (the plane's `hp` rows for an image's last range), so the
/// ranges of `0..n * oh` cover every padded row of every image exactly once.
fn pad_band(
    g: &super::DwGeom,
    r0: usize,
    r1: usize,
) -> impl Iterator<Item = (usize, usize, usize)> {
    let (oh, sy, hp) = (g.oh as usize, g.sy as usize, g.hp as usize);
    let start = move |oy: usize| if oy == 0 { 0 } else { (oy * sy).min(hp) };
    let end = move |oy: usize| if oy >= oh { hp } else { (oy * sy).min(hp) };
    let images = if r0 < r1 {
        r0 / oh..(r1 - 1) / oh + 1
    } else {
        0..0
    };
    images.map(move |b| {
        let (a, z) = (r0.max(b * oh) - b * oh, r1.min((b + 1) * oh) - b * oh);
        (b, start(a), end(z))
    })
}

/// The stem body of the AVX2 / AVX-512 modules: `stem` (the [`StemFn`] entry) and its row
/// function, using the module's helpers (`pad_rows_in`, `zero_border_rows` and `tap` of the depthwise body, `finish`,
/// `bc`, ...)
/// and `CB` (accumulators per channel block).
macro_rules! stem_body {
    ($feat:literal) => {
        /// See [`super::stem::scratch_floats`] and [`super::stem::stem_kernel`] for the
        /// contract.
        ///
        /// # Safety
        /// The CPU must support the module's ISA; the buffers must be as the geometry
        /// describes (scratch: `n * ci * hp * wp` floats).
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn stem(
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
                super::stem::stem_drive(stem_pad, stem_rows, &d, threads)
            })
        }

        /// Pads rows `y0..y1` of padded plane `p` (`b * ci + c`, scratch plane `p`): zero
        /// border, input interior (deinterleaved for column stride 2, see [`pad_rows_in`]).
        ///
        /// # Safety
        /// The CPU supports the module's ISA; `d` is as [`stem`]'s contract states, `p < n *
        /// ci`, `y0 <= y1 <= hp`, and no other task touches those rows of scratch plane `p`.
        unsafe fn stem_pad(d: &super::Dw, p: usize, y0: usize, y1: usize) {
            let g = &d.g;
            let (h, w) = (g.h as usize, g.w as usize);
            let plane = g.plane_floats().unwrap_or(0);
            // SAFETY: scratch plane `p` (`plane` floats) and input plane `p` (`h * w`) are
            // in bounds (contract); the geometry's padded plane holds the input.
            unsafe {
                let sp = d.scratch.add(p * plane);
                zero_border_rows(sp, g, y0, y1);
                pad_rows_in(sp, d.x.add(p * h * w), g, y0, y1);
            }
        }

        /// Output rows `r0..r1` (flattened `b * oh + oy`) of every channel.
        ///
        /// # Safety
        /// The CPU supports the module's ISA; `d` is as [`stem`]'s contract states, with the
        /// scratch planes padded; `r0 <= r1 <= n * oh` and no other task writes those rows.
        unsafe fn stem_rows(d: &super::Dw, r0: usize, r1: usize) {
            // SAFETY: as this function's contract.
            unsafe {
                match d.g.sx {
                    1 => stem_rows_s::<1>(d, r0, r1),
                    2 => stem_rows_s::<2>(d, r0, r1),
                    _ => stem_rows_s::<0>(d, r0, r1),
                }
            }
        }

        #[target_feature(enable = $feat)]
        /// # Safety
        /// As for [`stem_rows`], with `SX` the geometry's column stride (0: any).
        unsafe fn stem_rows_s<const SX: usize>(d: &super::Dw, r0: usize, r1: usize) {
            let g = &d.g;
            let co = g.co as usize;
            let (oh, ow) = (g.oh as usize, g.ow as usize);
            // The padded planes' layout, once for all the rows (`chan` runs per column chunk
            // and channel block).
            let (pr, plane) = (g.pad_row(), g.plane_floats().unwrap_or(0));
            // SAFETY: as this function's contract; `chan` is called with channel blocks inside
            // `0..co` and a column chunk inside `0..ow`, and the planes' layout.
            unsafe {
                for r in r0..r1 {
                    let (b, oy) = (r / oh, r % oh);
                    let mut ox = 0;
                    while ox < ow {
                        let n = (ow - ox).min(CV * W);
                        let mut c0 = 0;
                        while c0 + CB <= co {
                            chan_n::<CB, SX>(d, &pr, plane, b, oy, ox, n, c0);
                            c0 += CB;
                        }
                        while c0 < co {
                            chan_n::<1, SX>(d, &pr, plane, b, oy, ox, n, c0);
                            c0 += 1;
                        }
                        ox += CV * W;
                    }
                }
            }
        }

        /// [`chan`] with as many column vectors as the chunk's `n` columns fill (a constant
        /// inside each call).
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// As for [`chan`], with `1 <= n <= CV * W`.
        #[allow(clippy::too_many_arguments)]
        unsafe fn chan_n<const NB: usize, const SX: usize>(
            d: &super::Dw,
            pr: &super::PadRow,
            plane_floats: usize,
            b: usize,
            oy: usize,
            ox: usize,
            n: usize,
            c0: usize,
        ) {
            // SAFETY: as this function's contract; `NV` vectors hold the `n` columns.
            unsafe {
                match n.div_ceil(W) {
                    1 => chan::<NB, SX, 1>(d, pr, plane_floats, b, oy, ox, n, c0),
                    2 => chan::<NB, SX, 2>(d, pr, plane_floats, b, oy, ox, n, c0),
                    _ => chan::<NB, SX, CV>(d, pr, plane_floats, b, oy, ox, n, c0),
                }
            }
        }

        /// Output channels `c0..c0 + NB` of row `oy` of batch element `b`, columns `ox..ox + n`
        /// in `NV` vectors.
        #[target_feature(enable = $feat)]
        #[inline]
        /// # Safety
        /// The CPU supports the module's ISA; as for [`stem_rows`], with `c0 + NB <= co`,
        /// `ox + n <= ow`, `(NV - 1) * W < n <= NV * W`, `pr` and `plane_floats` the
        /// geometry's [`super::DwGeom::pad_row`] and [`super::DwGeom::plane_floats`].
        #[allow(clippy::too_many_arguments)]
        unsafe fn chan<const NB: usize, const SX: usize, const NV: usize>(
            d: &super::Dw,
            pr: &super::PadRow,
            plane_floats: usize,
            b: usize,
            oy: usize,
            ox: usize,
            n: usize,
            c0: usize,
        ) {
            let g = &d.g;
            let u = |v: u64| v as usize;
            let (ci, co, kh, kw) = (u(g.ci), u(g.co), u(g.kh), u(g.kw));
            let (sy, sx, dy, dx) = (u(g.sy), u(g.sx), u(g.dy), u(g.dx));
            let (oh, ow) = (u(g.oh), u(g.ow));
            // SAFETY: every tap read lies inside padded plane `b * ci + c` (the geometry's
            // `hp x wp` covers the last output's window, as for the depthwise kernel), weights
            // `t * co + c0 + j < k * co`, outputs and residuals of row `oy`, columns `ox..ox +
            // n` of planes `b * co + c0 + j` (contract).
            unsafe {
                // Lanes of each column vector.
                let mut cnt = [W; NV];
                for (i, c) in cnt.iter_mut().enumerate() {
                    *c = n.saturating_sub(i * W).min(W);
                }
                let mut acc = [[zero(); NV]; NB];
                for c in 0..ci {
                    let plane = d.scratch.add((b * ci + c) * plane_floats);
                    for ky in 0..kh {
                        let row = plane.add((oy * sy + ky * dy) * pr.stride);
                        for kx in 0..kw {
                            let mut v = [zero(); NV];
                            for (i, x) in v.iter_mut().enumerate() {
                                *x = tap::<SX>(row, ox + i * W, kx * dx, cnt[i], sx, pr);
                            }
                            let wt = d.w.add(((c * kh + ky) * kw + kx) * co + c0);
                            for j in 0..NB {
                                let wj = bc(wt.add(j));
                                for i in 0..NV {
                                    acc[j][i] = fma(v[i], wj, acc[j][i]);
                                }
                            }
                        }
                    }
                }
                let e = super::Epi::new(&g.epi, d.bias, d.res);
                for (j, a) in acc.iter().enumerate() {
                    let o = c0 + j;
                    for (i, x) in a.iter().enumerate() {
                        let off = ((b * co + o) * oh + oy) * ow + ox + i * W;
                        let v = finish_at(*x, &e, o, off, cnt[i]);
                        if cnt[i] == W {
                            st(d.y.add(off), v);
                        } else {
                            stm(d.y.add(off), v, cnt[i]);
                        }
                    }
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::{pad_band, part, DwGeom};

    #[test]
    fn pad_bands_cover_every_padded_row_once() {
        // (images, oh, sy, hp): MobileNet's stem, stride 1, a window narrower than the stride
        // (rows past `oh * sy` belong to the last band), and more tasks than rows.
        for (n, oh, sy, hp) in [(1, 112, 2, 225), (2, 7, 1, 9), (3, 4, 3, 11), (1, 3, 2, 7)] {
            let g = DwGeom {
                oh,
                sy,
                hp,
                ..DwGeom::default()
            };
            let all = n * oh as usize;
            for tasks in [1, 2, 3, 8, 13] {
                let mut hits = vec![0u32; n * hp as usize];
                for t in 0..tasks {
                    let (r0, r1) = part(all, tasks, t);
                    for (b, y0, y1) in pad_band(&g, r0, r1) {
                        assert!(y0 <= y1 && y1 <= hp as usize);
                        (y0..y1).for_each(|y| hits[b * hp as usize + y] += 1);
                    }
                }
                assert!(
                    hits.iter().all(|&h| h == 1),
                    "n={n} oh={oh} sy={sy} hp={hp} tasks={tasks}: {hits:?}"
                );
            }
        }
    }
}
