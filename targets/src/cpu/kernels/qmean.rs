//! The quantized global average pool ([`mnc_ir::QMean`]): per plane the exact `i32` sum of
//! its bytes, less `pixels * x_zp`, requantized by [`super::int8::requant1`] with
//! [`mnc_ir::quant::Requant::mean`]'s multiplier. The geometry, the thread split and the
//! requantization ([`QMeanGeom::output`]) live here with the portable kernel ([`qmean`]);
//! the int8 kernel sets name the kernel each ISA uses.

use super::{plane_ranges, words_to_blob};
use mnc_ir::QType;

/// Signature of [`qmean`]: `(x, y, geom, threads)`.
pub type QMeanFn = unsafe extern "C" fn(*const u8, *mut u8, *const QMeanGeom, usize);

/// Geometry and requantization of a quantized mean, stored in the weights blob as `u64`
/// words.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QMeanGeom {
    /// Planes (`n * c`); each writes one output byte.
    pub planes: u64,
    /// Bytes per plane (`h * w`, below `2^31 / 255`: [`mnc_ir::quant::Requant::mean`]).
    pub pixels: u64,
    /// 1: the bytes are `i8`.
    pub x_i8: u64,
    /// The input zero point (the input type's domain).
    pub x_zp: i64,
    /// The multiplier's f32 bits.
    pub mult: u64,
    pub y_zp: i64,
    pub lo: i64,
    pub hi: i64,
}

impl QMeanGeom {
    /// The geometry of `m` over `planes` planes of `pixels` bytes, or `None` for parameters
    /// without a requantization (refused by inference).
    pub fn new(m: &mnc_ir::QMean, planes: usize, pixels: usize) -> Option<QMeanGeom> {
        let rq = m.requant(pixels)?;
        Some(QMeanGeom {
            planes: planes as u64,
            pixels: pixels as u64,
            x_i8: (QType::of(m.x.dtype)? == QType::I8) as u64,
            x_zp: m.x.at(0).1 as i64,
            mult: rq.mult[0].to_bits() as u64,
            y_zp: rq.zero_point as i64,
            lo: rq.lo as i64,
            hi: rq.hi as i64,
        })
    }

    /// The output byte of a plane whose values sum to `sum` (in the input type's domain).
    pub fn output(&self, sum: i64) -> u8 {
        let acc = (sum - self.pixels as i64 * self.x_zp) as i32;
        let mult = f32::from_bits(self.mult as u32);
        super::int8::requant1(acc, mult, self.lo as i32, self.hi as i32, self.y_zp as i32) as u8
    }

    /// The struct as f32 bit patterns, for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        let g = self;
        words_to_blob(&[
            g.planes,
            g.pixels,
            g.x_i8,
            g.x_zp as u64,
            g.mult,
            g.y_zp as u64,
            g.lo as u64,
            g.hi as u64,
        ])
    }
}

/// The sum of a plane's values (`u8`, or `i8` when `signed`), exactly.
fn plane_sum(p: &[u8], signed: bool) -> i32 {
    // Chunks of 2^16 bytes keep the u32 (or i32) partial sums exact; the total fits i32
    // (`pixels * 255 < 2^31`, checked by the geometry's requantization).
    p.chunks(1 << 16)
        .map(|c| {
            if signed {
                c.iter().map(|&b| b as i8 as i32).sum::<i32>()
            } else {
                c.iter().map(|&b| b as u32).sum::<u32>() as i32
            }
        })
        .sum()
}

/// A set's planes function: planes `q0..q1` of `x` into bytes `q0..q1` of `y`.
pub(super) type PlanesFn = unsafe fn(&QMeanGeom, *const u8, *mut u8, usize, usize);

/// The body of every set's entry: `planes` over ranges of the geometry's planes on up to
/// `threads` threads.
///
/// # Safety
/// As for [`qmean`]; the CPU runs `planes`' ISA.
pub(super) unsafe fn run(
    x: *const u8,
    y: *mut u8,
    geom: *const QMeanGeom,
    threads: usize,
    planes: PlanesFn,
) {
    super::at_boundary(|| {
        // SAFETY: the geometry is valid (contract).
        let g = unsafe { std::ptr::read_unaligned(geom) };
        let n = g.planes as usize;
        let (xa, ya) = (x as usize, y as usize);
        plane_ranges(threads, n, n * g.pixels as usize, n, &|q0, q1, _| {
            // SAFETY: disjoint planes of the call's buffers (contract).
            unsafe { planes(&g, xa as *const u8, ya as *mut u8, q0, q1) }
        });
    })
}

/// Planes `q0..q1`, summed byte by byte (the sums vectorize as they are).
///
/// # Safety
/// `x` holds the planes' bytes, `y` one byte per plane.
unsafe fn planes_portable(g: &QMeanGeom, x: *const u8, y: *mut u8, q0: usize, q1: usize) {
    let px = g.pixels as usize;
    for q in q0..q1 {
        // SAFETY: plane `q` and output byte `q` (contract).
        unsafe {
            let p = std::slice::from_raw_parts(x.add(q * px), px);
            *y.add(q) = g.output(plane_sum(p, g.x_i8 == 1) as i64);
        }
    }
}

/// `y[q] = requant(sum(plane q) - pixels * x_zp)` for every plane.
///
/// # Safety
/// `geom` points to a valid [`QMeanGeom`]; `x` holds `planes * pixels` bytes and `y`
/// `planes` bytes, not overlapping.
pub unsafe extern "C" fn qmean(x: *const u8, y: *mut u8, geom: *const QMeanGeom, threads: usize) {
    // SAFETY: as this function's contract.
    unsafe { run(x, y, geom, threads, planes_portable) }
}
