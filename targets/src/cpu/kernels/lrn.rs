//! Local response normalization across channels ([`mnc_ir::Lrn`]) as one Rust kernel shared
//! by every x86-64 target (plain Rust: the compiler vectorizes the per-position loops with
//! the baseline SSE2 `mulps`/`sqrtps`; LRN is a small part of the networks that use it).
//!
//! For each output plane `(b, c)`, the squares of the window's input planes
//! ([`mnc_ir::Lrn::window`], channels ascending) are summed in f32 into a block of positions,
//! then `y = x / (bias + alpha / size * sum)^beta`. The power is `sqrt(t) * sqrt(sqrt(t))` for
//! `beta = 0.75` (AlexNet's and GoogLeNet's value), `sqrt(t)` for 0.5, `t` for 1, else
//! `powf`. Against the reference (f64 throughout) results agree to a few ulps.
//!
//! Planes are split over the threads in contiguous ranges; every output element is computed
//! by exactly one task with the same arithmetic, so results do not depend on the thread count.

use super::{part, words_to_blob, PAR_MIN_WORK, TASKS_PER_THREAD};

/// Geometry and parameters of an LRN op, stored in the weights blob as `u64` words (the
/// float parameters as their f32 bit patterns).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LrnGeom {
    pub n: u64,
    pub c: u64,
    /// Elements per channel plane.
    pub inner: u64,
    pub size: u64,
    /// `alpha / size`, `beta`, `bias` as f32 bits.
    pub alpha_over_size: u64,
    pub beta: u64,
    pub bias: u64,
}

impl LrnGeom {
    /// The geometry of `l` on an `[n, c, inner...]` input.
    pub fn new(l: &mnc_ir::Lrn, n: usize, c: usize, inner: usize) -> Self {
        let bits = |v: f32| v.to_bits() as u64;
        LrnGeom {
            n: n as u64,
            c: c as u64,
            inner: inner as u64,
            size: l.size as u64,
            alpha_over_size: bits(l.alpha_over_size()),
            beta: bits(l.beta),
            bias: bits(l.bias),
        }
    }

    /// The struct as f32 bit patterns, for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        words_to_blob(&[
            self.n,
            self.c,
            self.inner,
            self.size,
            self.alpha_over_size,
            self.beta,
            self.bias,
        ])
    }

    fn lrn(&self) -> mnc_ir::Lrn {
        let f = |w: u64| f32::from_bits(w as u32);
        mnc_ir::Lrn {
            size: self.size as usize,
            alpha: f(self.alpha_over_size) * self.size as f32,
            beta: f(self.beta),
            bias: f(self.bias),
        }
    }
}

/// Signature of the LRN entry point: `(x, y, geometry, threads)`; `x` and `y` do not overlap.
pub type LrnFn = unsafe extern "C" fn(*const f32, *mut f32, *const LrnGeom, usize);

/// Number of parameters of [`LrnFn`].
pub const LRN_PARAMS: usize = 4;

/// Symbol name of the kernel registered with the JIT.
pub const LRN_SYMBOL: &str = "mnc_lrn";

/// Positions of a plane handled per block (the window sums stay in L1).
const BLOCK: usize = 256;

/// One LRN call, shared by its tasks.
struct Call {
    x: *const f32,
    y: *mut f32,
    g: LrnGeom,
}

// SAFETY: tasks read x and write disjoint plane ranges of y, which does not overlap x.
unsafe impl Sync for Call {}

/// `t^-beta`-free form: `x / t^beta` for one block, with the special cases of `beta`.
#[inline(always)]
fn normalize(xs: &[f32], sums: &[f32], ys: &mut [f32], k: f32, beta: f32, bias: f32) {
    let it = xs.iter().zip(sums).zip(ys.iter_mut());
    if beta == 0.75 {
        for ((&x, &s), y) in it {
            let t = bias + k * s;
            let r = t.sqrt();
            *y = x / (r * r.sqrt());
        }
    } else if beta == 0.5 {
        for ((&x, &s), y) in it {
            *y = x / (bias + k * s).sqrt();
        }
    } else if beta == 1.0 {
        for ((&x, &s), y) in it {
            *y = x / (bias + k * s);
        }
    } else {
        for ((&x, &s), y) in it {
            *y = x / (bias + k * s).powf(beta);
        }
    }
}

/// Output planes `p0..p1` (`p = b * c + channel`).
///
/// # Safety
/// `d` describes valid, non-overlapping buffers of `n * c * inner` floats.
unsafe fn planes(d: &Call, p0: usize, p1: usize) {
    let (c, inner) = (d.g.c as usize, d.g.inner as usize);
    let l = d.g.lrn();
    let k = f32::from_bits(d.g.alpha_over_size as u32);
    let mut sums = [0.0f32; BLOCK];
    for p in p0..p1 {
        let (b, ch) = (p / c, p % c);
        // SAFETY: plane `p` and the window's planes of batch element `b` lie in the buffers.
        let (xp, yp) = unsafe {
            (
                std::slice::from_raw_parts(d.x.add(p * inner), inner),
                std::slice::from_raw_parts_mut(d.y.add(p * inner), inner),
            )
        };
        for i0 in (0..inner).step_by(BLOCK) {
            let len = BLOCK.min(inner - i0);
            let s = &mut sums[..len];
            s.fill(0.0);
            for w in l.window(ch, c) {
                // SAFETY: as above.
                let xw =
                    unsafe { std::slice::from_raw_parts(d.x.add((b * c + w) * inner + i0), len) };
                for (acc, &v) in s.iter_mut().zip(xw) {
                    *acc += v * v;
                }
            }
            normalize(
                &xp[i0..i0 + len],
                s,
                &mut yp[i0..i0 + len],
                k,
                l.beta,
                l.bias,
            );
        }
    }
}

/// The LRN kernel (every x86-64 target).
///
/// # Safety
/// `x` and `y` hold `n * c * inner` floats each as `geom` describes and do not overlap.
pub unsafe extern "C" fn lrn(x: *const f32, y: *mut f32, geom: *const LrnGeom, threads: usize) {
    super::at_boundary(|| {
        // SAFETY: the geometry is valid, as this function's contract states.
        let g = unsafe { *geom };
        let d = Call { x, y, g };
        let total = (d.g.n * d.g.c) as usize;
        let work = total.saturating_mul(d.g.inner as usize);
        let threads = super::super::par::threads_now(threads);
        let tasks = if threads <= 1 || work < PAR_MIN_WORK {
            1
        } else {
            threads.saturating_mul(TASKS_PER_THREAD).min(total)
        };
        super::super::par::for_each(threads, tasks, &|t| {
            let (p0, p1) = part(total, tasks, t);
            // SAFETY: disjoint plane ranges of a call whose buffers are as the contract
            // states.
            unsafe { planes(&d, p0, p1) }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel against the reference evaluator on ragged shapes, even and odd sizes, the
    /// special and generic values of beta, several thread counts (bit-identical to one
    /// thread), with nothing written past the output.
    #[test]
    fn matches_the_reference_for_every_thread_count() {
        let mut g = mnc_passes::samples::Lcg::new(7);
        let cases: [(&[usize], usize, f32); 6] = [
            (&[1, 7, 5, 3], 5, 0.75),
            (&[2, 3, 1, 1], 4, 0.5),
            (&[1, 16, 33, 17], 3, 1.0),
            (&[3, 5, 300], 2, 0.6),
            (&[1, 1, 9], 7, 0.75),
            (&[2, 9], 1, 0.75),
        ];
        for (shape, size, beta) in cases {
            let numel: usize = shape.iter().product();
            let x: Vec<f32> = (0..numel).map(|_| g.uniform(-3.0, 3.0)).collect();
            let l = mnc_ir::Lrn {
                size,
                alpha: 0.3,
                beta,
                bias: 1.5,
            };
            let xt = mnc_ir::Tensor::from_f32(shape.to_vec(), x.clone()).unwrap();
            let want = mnc_ir::eval::eval_op(&mnc_ir::Op::Lrn(l), &[&xt]).unwrap();
            let want = want.as_f32().unwrap();
            let inner = shape[2..].iter().product();
            let geom = LrnGeom::new(&l, shape[0], shape[1], inner);
            let mut first: Option<Vec<f32>> = None;
            for threads in [1, 2, 3, 8] {
                let mut y = vec![f32::NAN; numel + 5];
                // SAFETY: x and y hold `numel` floats and do not overlap.
                unsafe { lrn(x.as_ptr(), y.as_mut_ptr(), &geom, threads) };
                assert!(super::super::take_panic().is_none());
                assert!(
                    y[numel..].iter().all(|v| v.is_nan()),
                    "wrote past the output"
                );
                y.truncate(numel);
                for (i, (a, b)) in y.iter().zip(want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs(),
                        "{shape:?} size {size} beta {beta} element {i}: {a} vs {b}"
                    );
                }
                match &first {
                    None => first = Some(y),
                    Some(f) => assert!(
                        f.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{shape:?}: {threads} threads differ from 1"
                    ),
                }
            }
        }
    }

    #[test]
    fn geometry_round_trips_the_parameters() {
        let l = mnc_ir::Lrn {
            size: 5,
            alpha: 1e-4,
            beta: 0.75,
            bias: 2.0,
        };
        let g = LrnGeom::new(&l, 1, 96, 55 * 55);
        let back = g.lrn();
        assert_eq!((back.size, back.beta, back.bias), (5, 0.75, 2.0));
        assert!((back.alpha - 1e-4).abs() < 1e-10);
        assert_eq!(g.to_blob().len(), 14);
    }
}
