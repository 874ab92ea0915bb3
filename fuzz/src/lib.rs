//! The fuzz targets' shared code: [`harness`] (what each target does with one input; also
//! compiled into the regression test `tests/tests/fuzz_regressions.rs`, which replays the
//! committed corpora and crash inputs) and [`seeds`] (the seed corpora, generated at run time
//! by the `make_seeds` binary). Every binary of this crate allocates through [`Capped`].

pub mod harness;
pub mod seeds;

use std::alloc::{GlobalAlloc, Layout, System};

/// The largest single allocation an input may cause. libFuzzer's own `-malloc_limit_mb`
/// needs a sanitizer's allocator hooks (not linked here) and `-rss_limit_mb` misses a huge
/// zeroed allocation that is never touched, so the allocator checks every request itself.
pub const MAX_ALLOCATION: usize = 2 << 30;

/// The system allocator, aborting (a crash for libFuzzer, which saves the input) on any
/// request over [`MAX_ALLOCATION`].
pub struct Capped;

impl Capped {
    fn check(size: usize) {
        if size > MAX_ALLOCATION {
            // No formatting: it could allocate.
            let msg: &[u8] = b"mnc-fuzz: allocation over 2 GiB requested\n";
            // SAFETY: writes `msg.len()` bytes of a live slice to fd 2.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            std::process::abort();
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; `check`
// only aborts.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: the caller's contract for `GlobalAlloc::alloc`, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;
