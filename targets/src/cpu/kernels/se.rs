//! The SqueezeExcite kernel family: geometry ([`SeGeom`]), signature, the three-phase
//! thread driver and the per-ISA body (`se_body!`).

use super::drive::{part, PAR_MIN_WORK, TASKS_PER_THREAD};
use super::epilogue::Epilogue;
use super::words_to_blob;
use crate::cpu::isa;
use crate::Target;

/// Shape and epilogues of a SqueezeExcite op, stored in the weights blob like [`DwGeom`](super::DwGeom).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeGeom {
    pub n: u64,
    pub c: u64,
    /// Elements per channel plane.
    pub hw: u64,
    /// Hidden width (rows of the first weight).
    pub r: u64,
    /// Epilogue of the first mat-vec (its bias, the hidden activation).
    pub hidden: Epilogue,
    /// Epilogue of the second mat-vec (its bias, the gate).
    pub gate: Epilogue,
}

impl SeGeom {
    /// The struct as f32 bit patterns, for the weights blob.
    pub fn to_blob(&self) -> Vec<f32> {
        let ([h0, h1], [g0, g1]) = (self.hidden.to_words(), self.gate.to_words());
        words_to_blob(&[self.n, self.c, self.hw, self.r, h0, h1, g0, g1])
    }

    /// Floats of scratch the op needs (the squeezed vector and the hidden one).
    pub fn scratch_floats(&self) -> usize {
        (self.c + self.r) as usize
    }
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
/// [`IsaDesc`](crate::cpu::IsaDesc)).
pub fn se_kernel(t: Target) -> Option<(&'static str, SeFn)> {
    isa(t).map(|d| (d.se.symbol, d.se.func))
}

/// One SqueezeExcite call, shared by its tasks.
pub(super) struct Se {
    pub(super) x: *const f32,
    pub(super) w1: *const f32,
    pub(super) b1: *const f32,
    pub(super) w2: *const f32,
    pub(super) b2: *const f32,
    pub(super) y: *mut f32,
    pub(super) scratch: *mut f32,
    pub(super) g: SeGeom,
}

// SAFETY: the tasks of one phase write disjoint channels of `scratch` (squeeze) or of `y`
// (excite); phases are separated by the pool's join.
unsafe impl Sync for Se {}

/// The phases of a SqueezeExcite op of one ISA.
pub(super) struct SePhases {
    /// Means of channels `c0..c1` of batch element `b` into `scratch[c]`.
    pub(super) squeeze: unsafe fn(&Se, usize, usize, usize),
    /// Rows `j0..j1` of the hidden vector (`r` dot products of length `c`, split by rows).
    pub(super) hidden: unsafe fn(&Se, usize, usize),
    /// Gates and scales channels `c0..c1` of batch element `b`.
    pub(super) excite: unsafe fn(&Se, usize, usize, usize),
}

/// Tasks of each phase of a SqueezeExcite op on `threads` threads: one below
/// [`PAR_MIN_WORK`] floats read per batch element (the planes, twice, and both mat-vecs'
/// weights: at 7x7 the weights are most of it, 2 x 960 x 240 floats in MobileNetV3-Large),
/// else [`TASKS_PER_THREAD`] per thread, at most one per channel.
pub(super) fn se_tasks(g: &SeGeom, threads: usize) -> usize {
    let (c, hw, r) = (g.c as usize, g.hw as usize, g.r as usize);
    let work = c
        .saturating_mul(hw)
        .saturating_mul(2)
        .saturating_add(c.saturating_mul(r).saturating_mul(2));
    if threads <= 1 || work < PAR_MIN_WORK {
        1
    } else {
        threads.saturating_mul(TASKS_PER_THREAD).min(c)
    }
}

/// Runs a SqueezeExcite op: per batch element, squeeze and excite split by channels, the
/// hidden vector by its rows.
///
/// # Safety
/// As for the ISA's phase functions.
pub(super) unsafe fn se_drive(ph: &SePhases, d: &Se, threads: usize) {
    let threads = crate::cpu::par::threads_now(threads);
    let (c, r) = (d.g.c as usize, d.g.r as usize);
    let tasks = se_tasks(&d.g, threads);
    // The hidden mat-vec alone: split where its weights are worth a pool dispatch.
    let hidden_tasks = if c.saturating_mul(r) < PAR_MIN_WORK / 4 {
        1
    } else {
        tasks.min(r).max(1)
    };
    for b in 0..d.g.n as usize {
        crate::cpu::par::for_each(threads, tasks, &|t| {
            let (c0, c1) = part(c, tasks, t);
            // SAFETY: disjoint channel ranges of a valid call.
            unsafe { (ph.squeeze)(d, b, c0, c1) }
        });
        // The squeeze of batch element `b` is complete (the pool joined).
        crate::cpu::par::for_each(threads, hidden_tasks, &|t| {
            let (j0, j1) = part(r, hidden_tasks, t);
            // SAFETY: disjoint ranges of hidden rows of a valid call.
            unsafe { (ph.hidden)(d, j0, j1) }
        });
        crate::cpu::par::for_each(threads, tasks, &|t| {
            let (c0, c1) = part(c, tasks, t);
            // SAFETY: as above.
            unsafe { (ph.excite)(d, b, c0, c1) }
        });
    }
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

        /// One scalar `x` through epilogue `e`: plus `*bias` where `e` has a bias, then the
        /// activation (the mat-vecs have no residual).
        ///
        /// # Safety
        /// `bias` is readable where `e` has a bias.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn epi1(mut x: f32, bias: *const f32, e: &super::Epilogue) -> f32 {
            if e.bias() {
                // SAFETY: readable where `e` has a bias (contract).
                x += unsafe { *bias };
            }
            let mut t = [0.0f32; W];
            // SAFETY: `st` writes the `W` floats of the local array `t`.
            unsafe { st(t.as_mut_ptr(), act(splat(x), e.act, e.p0, e.p1)) };
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
        /// its squeezed vector is written; `j0..j1` lies inside `0..r` and no other task
        /// writes those hidden rows.
        unsafe fn se_hidden(d: &super::Se, j0: usize, j1: usize) {
            // SAFETY: `w1` holds `r * c` floats, `b1` `r`, scratch `c + r` (contract).
            unsafe {
                let c = d.g.c as usize;
                let hid = d.scratch.add(c);
                for j in j0..j1 {
                    let v = dot(d.w1.add(j * c), d.scratch, c);
                    *hid.add(j) = epi1(v, d.b1.wrapping_add(j), &d.g.hidden);
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
                    let v = dot(d.w2.add(ch * r), hid, r);
                    let g = splat(epi1(v, d.b2.wrapping_add(ch), &d.g.gate));
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
