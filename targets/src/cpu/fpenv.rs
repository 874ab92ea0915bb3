//! The floating-point environment of a CPU run: denormal handling in MXCSR.
//!
//! With [`super::CpuOptions::flush_denormals`] (the default) a run sets MXCSR's FTZ (flush
//! results that would be denormal to zero, bit 15) and DAZ (read denormal inputs as zero,
//! bit 6) on the calling thread for the duration of the run and restores the caller's MXCSR
//! afterwards ([`FlushDenormals`], also on an error or a panic). The pool threads of
//! [`super::par`] take the dispatching thread's MXCSR at the start of every job, so every task
//! of a run computes in the same mode and results stay identical for every thread count.
//!
//! Why: an operation with a denormal operand or result takes a microcode assist on x86 (tens
//! to ~150 cycles instead of 4), and the networks' activations decay into that range (SiLU and
//! Sigmoid of large negative inputs, tiny products in the tails of small weights). With
//! flushing, a denormal result becomes +-0 and a denormal input reads as +-0: values below
//! 2^-126 (~1.18e-38) in magnitude are lost, a relative change far below the f32 rounding of
//! anything they are added to. Only SSE/AVX arithmetic is affected (all of mnc's kernels and
//! generated code); the reference executor computes in f64 and is not.
//!
//! Rust caveat: Rust (like LLVM) assumes the default floating-point environment, and its
//! inline-assembly rules ask an `asm!` block to leave MXCSR as it found it; the guard changes
//! it for the span of a run, as onnxruntime and OpenVINO do from C++. What that can change is
//! limited to float results the compiler evaluates at compile time (constant folding in the
//! default mode, which differs from the run's mode only where a denormal is involved); no
//! control flow of the kernels depends on it. `flush_denormals: false` runs in the caller's
//! environment untouched.

/// MXCSR's "denormals are zero" bit.
pub const DAZ: u32 = 1 << 6;
/// MXCSR's "flush to zero" bit.
pub const FTZ: u32 = 1 << 15;

/// MXCSR's control bits (masks, rounding, DAZ, FTZ); bits 0-5 are sticky exception flags
/// that ordinary arithmetic sets (a comparison with a denormal operand sets DE, bit 1).
pub const CONTROL: u32 = 0xFFC0;

/// The calling thread's MXCSR (0 where the architecture has none).
#[inline]
pub fn mxcsr() -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let mut v: u32 = 0;
        // SAFETY: `stmxcsr` stores the 4-byte MXCSR register to the given address, a live,
        // aligned local; SSE is part of the x86-64 baseline.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut v as *mut u32, options(nostack, preserves_flags))
        };
        v
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Sets the calling thread's MXCSR to `v` when it differs from the current value.
///
/// Only the bits of a value read by [`mxcsr`] (possibly with [`FTZ`] / [`DAZ`] changed) may be
/// written: a reserved bit set would fault (#GP).
#[inline]
pub fn set_mxcsr(v: u32) {
    #[cfg(target_arch = "x86_64")]
    if mxcsr() != v {
        // SAFETY: `ldmxcsr` loads MXCSR from a live, aligned local. The callers only pass
        // values read by `mxcsr` with FTZ/DAZ toggled (both defined on every x86-64 CPU with
        // SSE2, DAZ on every one since the Pentium 4 steppings x86-64 postdates), so no
        // reserved bit is set. Changing rounding/flush modes is not UB for Rust code: it
        // changes the results of float operations, which is the point.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &v as *const u32, options(nostack, preserves_flags, readonly))
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// Sets FTZ and DAZ on the calling thread while alive; restores the previous MXCSR on drop.
pub struct FlushDenormals {
    saved: u32,
}

impl FlushDenormals {
    /// Turns flushing on (`on == false`: leaves MXCSR as it is, and restores it as it was).
    pub fn new(on: bool) -> Self {
        let saved = mxcsr();
        if on {
            set_mxcsr(saved | FTZ | DAZ);
        }
        FlushDenormals { saved }
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        set_mxcsr(self.saved);
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// The smallest positive normal f32 times 0.5: a denormal result.
    fn halve(x: f32) -> f32 {
        std::hint::black_box(x) * std::hint::black_box(0.5f32)
    }

    #[test]
    fn flushing_zeroes_denormal_results_and_inputs_and_is_restored() {
        let before = mxcsr() & CONTROL;
        let denormal = f32::from_bits(1); // 1.4e-45
        assert!(
            halve(f32::MIN_POSITIVE) > 0.0,
            "denormals are kept by default"
        );
        {
            let _g = FlushDenormals::new(true);
            assert_eq!(mxcsr() & (FTZ | DAZ), FTZ | DAZ);
            assert_eq!(
                halve(f32::MIN_POSITIVE),
                0.0,
                "FTZ: denormal result flushed"
            );
            // DAZ: a denormal operand reads as zero (1.4e-45 * 2^100 would be normal).
            let big = std::hint::black_box(2f32.powi(100));
            assert_eq!(std::hint::black_box(denormal) * big, 0.0);
        }
        assert_eq!(mxcsr() & CONTROL, before, "restored on drop");
        assert!(halve(f32::MIN_POSITIVE) > 0.0);
        {
            let _g = FlushDenormals::new(false);
            assert_eq!(mxcsr() & CONTROL, before);
        }
        assert_eq!(mxcsr() & CONTROL, before);
    }
}
