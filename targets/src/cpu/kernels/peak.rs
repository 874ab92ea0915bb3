//! The measured peaks the profile compares against: the multiply-add loop per ISA
//! (`peak_body!`), [`peak_gflops`], [`peak_int8_gops`] and [`best_giga_rate`].

use super::int8;
use crate::cpu::isa;
use crate::Target;

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
