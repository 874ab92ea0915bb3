//! Table lookup of quantized values ([`mnc_ir::QLut`]): `y[i] = table[x[i] ^ flip]` over
//! bytes. The geometry and the portable kernel ([`lut`]) live here; the int8 kernel sets ([`super::int8::Int8Kernels::lut`]) name the kernel each ISA
//! uses. A lookup has one right answer; the work is split into contiguous ranges over the
//! threads.

use super::words_to_blob;

/// Signature of [`lut`]: `(x, y, blob, threads)`; `blob` is [`LutGeom::to_blob`].
pub type LutFn = unsafe extern "C" fn(*const u8, *mut u8, *const LutGeom, usize);

/// The lookup's geometry followed by its table, stored in the weights blob.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LutGeom {
    /// Elements.
    pub n: u64,
    /// XORed into each input byte to make the table index: 0 for u8 inputs, 0x80 for i8
    /// (`x + 128` as a byte).
    pub flip: u64,
    /// `table[i]` is the output byte (two's complement for i8) of input index `i`.
    pub table: [u8; 256],
}

impl LutGeom {
    /// The lookup of `l` over `n` elements.
    pub fn new(l: &mnc_ir::QLut, n: usize) -> Self {
        let mut table = [0u8; 256];
        for (t, &v) in table.iter_mut().zip(&l.table) {
            *t = v as u8;
        }
        LutGeom {
            n: n as u64,
            flip: if l.x == mnc_ir::QType::I8 { 0x80 } else { 0 },
            table,
        }
    }

    /// The struct as f32 bit patterns, for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        let mut words = vec![self.n, self.flip];
        words.extend(
            self.table
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))),
        );
        words_to_blob(&words)
    }
}

/// A set's range function: elements `i0..i1`.
pub(super) type RangeFn = unsafe fn(&LutGeom, *const u8, *mut u8, usize, usize);

/// The body of every set's entry: `range` over contiguous ranges on up to `threads`.
///
/// # Safety
/// As for [`lut`]; the CPU runs `range`'s ISA.
pub(super) unsafe fn run(
    x: *const u8,
    y: *mut u8,
    geom: *const LutGeom,
    threads: usize,
    range: RangeFn,
) {
    super::at_boundary(|| {
        // SAFETY: the geometry is valid, as this function's contract states.
        let g = unsafe { &*geom };
        let (xa, ya) = (x as usize, y as usize);
        super::int8::lin_drive(g.n as usize, threads, &|i0, i1| {
            // SAFETY: disjoint ranges of the call's buffers (contract).
            unsafe { range(g, xa as *const u8, ya as *mut u8, i0, i1) }
        });
    });
}

/// Elements `i0..i1`, one byte at a time.
///
/// # Safety
/// `x` and `y` hold `i1` bytes, the same buffer or disjoint.
unsafe fn range_portable(g: &LutGeom, x: *const u8, y: *mut u8, i0: usize, i1: usize) {
    let flip = g.flip as u8;
    for i in i0..i1 {
        // SAFETY: `i < i1`; each element is read just before the same element is written.
        unsafe { *y.add(i) = g.table[(*x.add(i) ^ flip) as usize] }
    }
}

/// `y[i] = table[x[i] ^ flip]` for `i < n`, one byte at a time (every ISA without a vector
/// lookup).
///
/// # Safety
/// `geom` points to a valid [`LutGeom`]; `x` and `y` hold `n` bytes each and are either the
/// same buffer or do not overlap.
pub unsafe extern "C" fn lut(x: *const u8, y: *mut u8, geom: *const LutGeom, threads: usize) {
    // SAFETY: as this function's contract.
    unsafe { run(x, y, geom, threads, range_portable) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnc_ir::{QLut, QType};

    #[test]
    fn lookup_matches_the_table_for_every_thread_count() {
        for (xt, yt) in [
            (QType::U8, QType::U8),
            (QType::I8, QType::U8),
            (QType::I8, QType::I8),
        ] {
            let l = QLut::of(xt, yt, |v| v * 3 - 7);
            let n = 100_003;
            let x: Vec<u8> = (0..n).map(|i| (i * 31 % 256) as u8).collect();
            let g = LutGeom::new(&l, n);
            for threads in [1, 3, 8] {
                let mut y = vec![0u8; n];
                // SAFETY: n bytes each, valid geometry.
                unsafe { lut(x.as_ptr(), y.as_mut_ptr(), &g, threads) };
                for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
                    let v = if xt == QType::I8 {
                        a as i8 as i32
                    } else {
                        a as i32
                    };
                    let want = l.get(v);
                    let got = if yt == QType::I8 {
                        b as i8 as i32
                    } else {
                        b as i32
                    };
                    assert_eq!(got, want, "element {i}, {xt}->{yt}, {threads} threads");
                }
            }
        }
        assert_eq!(
            LutGeom::new(&QLut::of(QType::U8, QType::U8, |v| v), 1)
                .to_blob()
                .len(),
            68
        );
    }
}
