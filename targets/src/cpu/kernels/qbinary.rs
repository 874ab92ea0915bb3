//! The quantized elementwise sum and product ([`mnc_ir::QBinary`]): `y[i] = f(a[i], b[i /
//! inner])` with [`mnc_ir::quant::BinaryRequant`] (onnxruntime's `QLinearAdd` /
//! `QLinearMul` formulas). The geometry and the portable kernel ([`qbinary`]) live here; the
//! int8 kernel sets name the kernel each ISA uses.

use super::words_to_blob;
use mnc_ir::quant::{AddRequant, BinaryRequant, MulRequant};
use mnc_ir::{QBinary, QBinaryOp, QType};

/// Signature of [`qbinary`]: `(a, b, y, geom, threads)`.
pub type QBinaryFn = unsafe extern "C" fn(*const u8, *const u8, *mut u8, *const QBinaryGeom, usize);

/// Length, broadcast and per-element function of a quantized sum or product, stored in the
/// weights blob as `u64` words.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QBinaryGeom {
    /// Elements of `a` and `y`.
    pub len: u64,
    /// Consecutive elements sharing one element of `b` ([`QBinary::inner`]).
    pub inner: u64,
    /// 1: the bytes are `i8`.
    pub i8: u64,
    /// 0: sum ([`AddRequant`]: `f0 = ra`, `f1 = rb`, `f2 = fixed`); 1: product
    /// ([`MulRequant`]: `f0 = ratio`, `i0 = a_zp`, `i1 = b_zp`, `i2 = y_zp`).
    pub mul: u64,
    /// f32 bits.
    pub f0: u64,
    pub f1: u64,
    pub f2: u64,
    pub i0: i64,
    pub i1: i64,
    pub i2: i64,
    pub lo: i64,
    pub hi: i64,
}

impl QBinaryGeom {
    /// The geometry of `q` on inputs of shapes `a` and `b`, or `None` for parameters or a
    /// broadcast without the integer form (refused by inference).
    pub fn new(q: &QBinary, a: &[usize], b: &[usize]) -> Option<QBinaryGeom> {
        let bits = |v: f32| v.to_bits() as u64;
        let base = QBinaryGeom {
            len: a.iter().product::<usize>() as u64,
            inner: QBinary::inner(a, b)?.max(1) as u64,
            i8: (QType::of(q.y.dtype)? == QType::I8) as u64,
            mul: (q.op == QBinaryOp::Mul) as u64,
            f0: 0,
            f1: 0,
            f2: 0,
            i0: 0,
            i1: 0,
            i2: 0,
            lo: 0,
            hi: 0,
        };
        Some(match q.requant()? {
            BinaryRequant::Add(f) => QBinaryGeom {
                f0: bits(f.ra),
                f1: bits(f.rb),
                f2: bits(f.fixed),
                lo: f.lo as i64,
                hi: f.hi as i64,
                ..base
            },
            BinaryRequant::Mul(f) => QBinaryGeom {
                f0: bits(f.ratio),
                i0: f.a_zp as i64,
                i1: f.b_zp as i64,
                i2: f.y_zp as i64,
                lo: f.lo as i64,
                hi: f.hi as i64,
                ..base
            },
        })
    }

    /// The per-element function.
    pub fn function(&self) -> BinaryRequant {
        let f = |w: u64| f32::from_bits(w as u32);
        let (lo, hi) = (self.lo as i32, self.hi as i32);
        if self.mul == 1 {
            BinaryRequant::Mul(MulRequant {
                ratio: f(self.f0),
                a_zp: self.i0 as i32,
                b_zp: self.i1 as i32,
                y_zp: self.i2 as i32,
                lo,
                hi,
            })
        } else {
            BinaryRequant::Add(AddRequant {
                ra: f(self.f0),
                rb: f(self.f1),
                fixed: f(self.f2),
                lo,
                hi,
            })
        }
    }

    /// The stored value of byte `v`.
    pub fn value(&self, v: u8) -> i32 {
        if self.i8 == 1 {
            v as i8 as i32
        } else {
            v as i32
        }
    }

    /// The struct as f32 bit patterns, for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        let g = self;
        words_to_blob(&[
            g.len,
            g.inner,
            g.i8,
            g.mul,
            g.f0,
            g.f1,
            g.f2,
            g.i0 as u64,
            g.i1 as u64,
            g.i2 as u64,
            g.lo as u64,
            g.hi as u64,
        ])
    }
}

/// Elements `i0..i1`, one at a time ([`BinaryRequant::apply`] itself).
///
/// # Safety
/// `a` and `y` hold `i1` bytes, `b` `ceil(i1 / inner)`; `y` is disjoint from the inputs or
/// equal to `a`.
pub(super) unsafe fn range_scalar(
    g: &QBinaryGeom,
    a: *const u8,
    b: *const u8,
    y: *mut u8,
    i0: usize,
    i1: usize,
) {
    let f = g.function();
    let inner = g.inner as usize;
    for i in i0..i1 {
        // SAFETY: `i < i1` (contract); each element is read before it is written.
        unsafe { *y.add(i) = f.apply(g.value(*a.add(i)), g.value(*b.add(i / inner))) as u8 }
    }
}

/// The runs of `i0..i1` whose elements share one `b` element (`b[i / inner]`), or the whole
/// range as one run when `b` is per element (`inner == 1`): a vector kernel broadcasts `b`
/// once per run, runs its lanes while they fit and hands the run's tail to [`range_scalar`].
pub(super) fn runs(inner: usize, i0: usize, i1: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut i = i0;
    std::iter::from_fn(move || {
        (i < i1).then(|| {
            let end = if inner == 1 {
                i1
            } else {
                ((i / inner + 1) * inner).min(i1)
            };
            let run = (i, end);
            i = end;
            run
        })
    })
}

/// `y[i] = f(a[i], b[i / inner])` for `i < len`, one element at a time (sets without a
/// vector kernel).
///
/// # Safety
/// `geom` points to a valid [`QBinaryGeom`]; `a` and `y` hold `len` bytes, `b` `len /
/// inner`; `y` is disjoint from the inputs or equal to `a`.
pub unsafe extern "C" fn qbinary(
    a: *const u8,
    b: *const u8,
    y: *mut u8,
    geom: *const QBinaryGeom,
    threads: usize,
) {
    // SAFETY: as this function's contract.
    unsafe { run(a, b, y, geom, threads, range_scalar) }
}

/// A set's range function: elements `i0..i1` (see [`range_scalar`]).
pub(super) type RangeFn = unsafe fn(&QBinaryGeom, *const u8, *const u8, *mut u8, usize, usize);

/// The body of every set's entry: `range` over contiguous ranges on up to `threads`.
///
/// # Safety
/// As for [`qbinary`]; the CPU runs `range`'s ISA.
pub(super) unsafe fn run(
    a: *const u8,
    b: *const u8,
    y: *mut u8,
    geom: *const QBinaryGeom,
    threads: usize,
    range: RangeFn,
) {
    super::at_boundary(|| {
        // SAFETY: the geometry is valid (contract).
        let g = unsafe { std::ptr::read_unaligned(geom) };
        let (aa, ba, ya) = (a as usize, b as usize, y as usize);
        super::int8::lin_drive(g.len as usize, threads, &|i0, i1| {
            // SAFETY: disjoint ranges of the call's buffers (contract).
            unsafe { range(&g, aa as *const u8, ba as *const u8, ya as *mut u8, i0, i1) }
        });
    })
}
