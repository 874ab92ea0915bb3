//! Two-way fork/join for the micro-kernels (`CpuOptions::threads == 2`): one persistent
//! helper thread, shared by every model in the process. A kernel splits its work in two,
//! gives one half to the helper and runs the other itself. When the helper is busy (another
//! run is using it) the caller runs both halves itself, so concurrent runs never wait on
//! each other and results do not depend on who ran what (the halves write disjoint outputs
//! with the same arithmetic).
//!
//! Handoff: the helper spins on a sequence counter for a while after each job (low latency
//! between the many kernel calls of one run), then parks on a condition variable. A job the
//! helper has not claimed by the time the caller finished its own half is taken back and run
//! by the caller (a claim word holds the job's sequence number and state), so a descheduled
//! helper on a busy machine costs at most the serial time.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

/// A type-erased `&dyn Fn()` valid while the dispatcher waits for it.
#[derive(Clone, Copy)]
struct JobRef {
    data: *const (),
    call: unsafe fn(*const ()),
}

struct Helper {
    /// Bumped by the dispatcher after writing `job`.
    posted: AtomicU64,
    /// Set to the job's sequence number by the helper once it finished.
    done: AtomicU64,
    /// `seq << 2 | state` of the current job: posted, claimed by the helper, or taken back.
    claim: AtomicU64,
    job: UnsafeCell<Option<JobRef>>,
    /// Held by the dispatcher for the duration of a job (`try_lock`: never waited on).
    dispatch: Mutex<()>,
    park: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the holder of `dispatch` before it publishes the job with
// a Release store of `posted`, and read by the helper after an Acquire load observing it;
// the dispatcher does not return (so the referenced closure stays alive) before the helper
// has published `done` for that job.
unsafe impl Sync for Helper {}

const SPINS: u32 = 1 << 14;
const POSTED: u64 = 0;
const CLAIMED: u64 = 1;
const TAKEN_BACK: u64 = 2;

fn helper() -> &'static Helper {
    static H: OnceLock<&'static Helper> = OnceLock::new();
    H.get_or_init(|| {
        let h: &'static Helper = Box::leak(Box::new(Helper {
            posted: AtomicU64::new(0),
            done: AtomicU64::new(0),
            claim: AtomicU64::new(TAKEN_BACK),
            job: UnsafeCell::new(None),
            dispatch: Mutex::new(()),
            park: Mutex::new(()),
            wake: Condvar::new(),
        }));
        let spawned = std::thread::Builder::new()
            .name("mnc-kernel-helper".into())
            .spawn(move || helper_loop(h));
        if spawned.is_err() {
            // Without a helper thread every join runs serially: hold the dispatch lock
            // forever so that `try_lock` always fails.
            std::mem::forget(h.dispatch.lock());
        }
        h
    })
}

fn helper_loop(h: &'static Helper) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        loop {
            if h.posted.load(Ordering::Acquire) > seen {
                break;
            }
            spins += 1;
            if spins < SPINS {
                std::hint::spin_loop();
            } else {
                let guard = h.park.lock().unwrap_or_else(|e| e.into_inner());
                if h.posted.load(Ordering::Acquire) == seen {
                    drop(h.wake.wait(guard));
                }
                spins = 0;
            }
        }
        seen = h.posted.load(Ordering::Acquire);
        let claimed = h
            .claim
            .compare_exchange(
                seen << 2 | POSTED,
                seen << 2 | CLAIMED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if !claimed {
            // Taken back by the dispatcher (which no longer waits for us), or superseded.
            continue;
        }
        // SAFETY: see `impl Sync for Helper`; the claim succeeded, so the dispatcher waits
        // for `done` and the job is alive.
        if let Some(job) = unsafe { *h.job.get() } {
            unsafe { (job.call)(job.data) };
        }
        h.done.store(seen, Ordering::Release);
    }
}

/// Runs `a` on the calling thread and `b` on the helper thread (or both here when the helper
/// is busy), returning when both are done.
pub fn join<A: FnOnce(), B: Fn() + Sync>(a: A, b: B) {
    let h = helper();
    let Ok(guard) = h.dispatch.try_lock() else {
        a();
        b();
        return;
    };
    unsafe fn call<B: Fn()>(p: *const ()) {
        // SAFETY: `p` points at the `B` on the dispatcher's stack, alive until `done`.
        unsafe { (*(p as *const B))() }
    }
    // SAFETY: we hold `dispatch`; the helper reads `job` only after the Release below.
    unsafe {
        *h.job.get() = Some(JobRef {
            data: &b as *const B as *const (),
            call: call::<B>,
        });
    }
    let seq = h.posted.load(Ordering::Relaxed) + 1;
    h.claim.store(seq << 2 | POSTED, Ordering::Release);
    h.posted.store(seq, Ordering::Release);
    {
        let _p = h.park.lock().unwrap_or_else(|e| e.into_inner());
        h.wake.notify_one();
    }
    a();
    let taken_back = h
        .claim
        .compare_exchange(
            seq << 2 | POSTED,
            seq << 2 | TAKEN_BACK,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok();
    if taken_back {
        b();
        drop(guard);
        return;
    }
    let mut spins = 0u32;
    while h.done.load(Ordering::Acquire) < seq {
        spins += 1;
        if spins < SPINS {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    drop(guard);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn join_runs_both_halves_even_when_contended() {
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..2000 {
                        super::join(
                            || {
                                total.fetch_add(i, Ordering::Relaxed);
                            },
                            || {
                                total.fetch_add(1, Ordering::Relaxed);
                            },
                        );
                    }
                });
            }
        });
        let want = 4 * ((0..2000).sum::<usize>() + 2000);
        assert_eq!(total.load(Ordering::Relaxed), want);
    }
}
