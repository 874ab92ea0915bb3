//! The process-wide thread pool of the CPU backend kernels, and the machine's physical core
//! count ([`physical_cores`]).
//!
//! [`for_each`] runs `f(t)` for every task `t` in `0..tasks` on the calling thread plus up
//! to `threads - 1` persistent pool threads (`mnc-pool-N`, spawned lazily, kept for the life
//! of the process, at most [`MAX_HELPERS`]); [`join`] is a two-way fork/join built on the
//! same machinery (no kernel uses it today). There is one job slot: a dispatcher that finds
//! it taken (another run dispatching concurrently, or a nested call from inside a task) runs
//! its tasks serially on its own thread instead of waiting, so concurrent runs never wait on
//! each other. Results must therefore not depend on which thread ran which task (callers
//! write disjoint outputs with the same arithmetic).
//!
//! # Protocol
//! The dispatcher, holding the `busy` flag, writes the job (closure, task count), then
//! publishes it through two epoch-tagged words:
//! - `claim` = `(epoch, lo, hi)`: tasks `lo..hi` are unclaimed. Every participant, the
//!   caller included, claims one task at a time with a compare-exchange that also checks the
//!   epoch, so tasks are handed out dynamically and a pool thread that is descheduled between
//!   two tasks holds nothing back: the caller keeps claiming and only waits for tasks already
//!   claimed and in progress. The caller claims from the front, pool threads from the back
//!   (see [`claim`] for why).
//! - `seats` = `(epoch, helper places left)` (`epoch << 24 | count`): a pool thread takes a seat before it claims, so
//!   a job runs on at most `threads` threads in all.
//!
//! Pool threads spin (`std::hint::spin_loop`) on `seats` for [`IDLE_SPIN`] after the last job
//! they saw, then park on a condition variable; the dispatcher only takes the lock and
//! notifies when some thread is parked, so dispatching to spinning threads is a few atomic
//! operations, no system call. Every finished task is counted in `done` (Release) and the
//! dispatcher returns only once `done` accounts for every task the pool threads claimed
//! (Acquire), so no pool thread touches the job or its closure after the dispatcher returned.
//!
//! # Stalls
//! A pool thread can be descheduled in the middle of a task it claimed (another process
//! busy on its core): the dispatcher then waits for that task, up to a scheduler time slice
//! (milliseconds), and every job of a run can hit it again, so that 2 threads end up slower
//! than one. Or the other cores are busy and the scheduler puts a pool thread on the
//! dispatcher's core, where its tasks and the dispatcher's spinning take turns. So a job
//! stalls when the dispatcher waited long for claimed tasks (above [`STALL_MIN`] and above
//! [`STALL_TASKS`] times its own mean task) or a pool thread finished a task on the CPU the
//! job was published from (`sched_getcpu`). [`STALLS_SERIAL`] stalled jobs within
//! [`STALL_WINDOW`] or in a row make every dispatch run serially on its caller for
//! [`SERIAL_FIRST`]; then the pool is tried again, and a long wait within [`STALL_MEMORY`]
//! of the period's end starts the next period at once, twice as long (up to
//! [`SERIAL_MAX`]). Isolated stalls (another process or the hypervisor taking a core for a
//! moment) change nothing: they cost less than running serially would; nor does a pool
//! thread on the dispatcher's CPU within [`SHARED_GRACE`] of a period's end (a woken thread
//! placed beside its waker). Kernels size their task split by [`threads_now`], so that a
//! serial job is not cut into tasks that repeat shared work. Results do not change (they
//! never depend on which thread ran a task); [`stalls`] counts the stalled jobs.
//!
//! # Panics
//! A panic in a task (or in `join`'s first closure) is caught where it happens; the job's
//! unclaimed tasks are then dropped (they may or may not have run), the dispatcher waits for
//! the tasks in progress, releases the pool and resumes the first panic on the calling thread
//! ([`std::panic::resume_unwind`]). The pool stays usable. In the serial fallbacks the panic
//! simply propagates.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Most pool threads ever spawned (a job has at most `MAX_HELPERS + 1` participants).
pub const MAX_HELPERS: usize = 256;
/// How long an idle pool thread spins after the last job it saw before it parks (about
/// what 2^14 `spin_loop`s, the older helper's budget, take on a current x86 core). Short
/// under Miri, whose clock is virtual, so that parking gets exercised there.
pub const IDLE_SPIN: Duration = Duration::from_micros(if cfg!(miri) { 2 } else { 300 });
/// How long a dispatcher spins on tasks in progress before it starts yielding its core.
const WAIT_SPIN: Duration = Duration::from_micros(50);
/// Spin iterations between two clock reads.
const SPIN_CHECK: u32 = 64;
/// Shortest wait for pool threads' claimed tasks that counts as a long wait (see the module
/// docs); also at least [`STALL_TASKS`] mean tasks of the dispatcher.
pub const STALL_MIN: Duration = Duration::from_micros(200);
/// A long wait is one of more than this many of the dispatcher's own mean task durations.
pub const STALL_TASKS: u32 = 4;
/// The first serial period (at least; see [`SERIAL_JOBS`]).
pub const SERIAL_FIRST: Duration = Duration::from_millis(20);
/// The first serial period lasts at least this many times the job that started it (a batch
/// split by image is one job of tens of milliseconds per run).
pub const SERIAL_JOBS: u32 = 8;
/// The longest serial period (the period doubles per long wait that follows the last serial
/// period within [`STALL_MEMORY`]).
pub const SERIAL_MAX: Duration = Duration::from_secs(1);
/// A long wait within this of the end of the last serial period (the first jobs that try
/// the pool again) starts the next period at once, twice as long; a later stall counts
/// towards [`STALLS_SERIAL`] and a period then starts again from [`SERIAL_FIRST`].
pub const STALL_MEMORY: Duration = Duration::from_millis(50);
/// [`STALLS_SERIAL`] stalls within this make the dispatches run serially.
pub const STALL_WINDOW: Duration = Duration::from_millis(50);
/// After a serial period, how long a pool thread on the dispatcher's CPU is not a stall: a
/// woken pool thread often lands on its waker's CPU for the first jobs, until the scheduler
/// moves it to an idle core.
pub const SHARED_GRACE: Duration = Duration::from_millis(10);
/// Stalled jobs within [`STALL_WINDOW`], or in a row, that make the dispatches run serially
/// (an unloaded VM shows isolated waits of 0.2-3 ms on a descheduled pool thread, 1-5 per
/// few hundred runs; a busy core, one every few milliseconds).
pub const STALLS_SERIAL: usize = 3;

/// Low bits of `seats` holding a count; the high bits hold the job's epoch.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Bits of each of the two task indices in `claim` (`epoch << 2 * INDEX_BITS | lo <<
/// INDEX_BITS | hi`).
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// Largest task count of one published job; `for_each` splits larger ones.
const MAX_JOB_TASKS: usize = INDEX_MASK as usize;
/// Epochs wrap after 2^24 jobs (what `claim` leaves for them). A stale compare-exchange
/// would need a pool thread to sleep between its load and its compare-exchange through a
/// multiple of that many jobs and find the same task indices; it would then still claim an
/// unclaimed task of the current job, counted in `done` as any other, so the only effect is
/// one more participant than the job's seats.
const EPOCH_MASK: u64 = (1 << (64 - 2 * INDEX_BITS)) - 1;

fn pack(epoch: u64, count: u64) -> u64 {
    epoch << COUNT_BITS | count
}
fn epoch_of(w: u64) -> u64 {
    w >> COUNT_BITS
}
fn count_of(w: u64) -> u64 {
    w & COUNT_MASK
}
/// The `claim` word of job `epoch` with tasks `lo..hi` unclaimed.
fn pack_claim(epoch: u64, lo: u64, hi: u64) -> u64 {
    epoch << (2 * INDEX_BITS) | lo << INDEX_BITS | hi
}
/// `(epoch, lo, hi)` of a `claim` word.
fn unpack_claim(w: u64) -> (u64, u64, u64) {
    (
        w >> (2 * INDEX_BITS),
        (w >> INDEX_BITS) & INDEX_MASK,
        w & INDEX_MASK,
    )
}

/// Keeps the hot words of the pool on cache lines of their own.
#[repr(align(128))]
struct Padded<T>(T);

/// The published job: a thin pointer to the dispatcher's `&dyn Fn(usize)`, the task count
/// and the dispatcher's MXCSR, which every pool thread adopts before running the job's tasks
/// (so denormal flushing, see [`super::fpenv`], is the same on every thread of a run).
#[derive(Clone, Copy)]
struct Job {
    f: *const (),
    mxcsr: u32,
    /// The CPU the dispatcher ran on when it published the job ([`current_cpu`]).
    cpu: Option<usize>,
}

type TaskFn<'a> = &'a (dyn Fn(usize) + Sync + 'a);

struct Pool {
    /// The job slot: taken (Acquire) and released (Release) by a dispatcher, never waited on.
    busy: Padded<AtomicBool>,
    /// `(epoch, lo, hi)` of the current job ([`pack_claim`]): tasks `lo..hi` are unclaimed;
    /// the dispatcher claims from the front (`lo`), pool threads from the back (`hi`).
    claim: Padded<AtomicU64>,
    /// `(epoch, seats left for pool threads)` of the current job; pool threads poll it.
    seats: Padded<AtomicU64>,
    /// Tasks of the current job finished (or dropped after a panic) by pool threads.
    done: Padded<AtomicUsize>,
    /// Written only by the `busy` holder before it publishes `claim`; read by a pool thread
    /// only while it holds a claimed, unfinished task of that job.
    job: UnsafeCell<Job>,
    /// Epoch of the last published job (only touched by the `busy` holder).
    epoch: AtomicU64,
    /// Pool threads spawned so far (only grown by the `busy` holder).
    helpers: AtomicUsize,
    /// Set once a spawn failed: the pool stays at its current size.
    spawn_failed: AtomicBool,
    /// Pool threads parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    park: Mutex<()>,
    wake: Condvar,
    /// The first panic a pool thread caught in the current job.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Until when (ns of [`now_ns`]) dispatches run serially; 0: no serial period yet.
    /// Written only by the `busy` holder.
    serial_until: AtomicU64,
    /// The last serial period, ns.
    serial_ns: AtomicU64,
    /// Stalls so far.
    stalls: AtomicU64,
    /// When (ns of [`now_ns`]) the last `STALLS_SERIAL - 1` stalls happened, oldest first;
    /// 0: none. Only touched by the `busy` holder.
    last_stalls: [AtomicU64; STALLS_SERIAL - 1],
    /// Set by a pool thread that finished a task of the current job on the dispatcher's CPU.
    shared_cpu: AtomicBool,
    /// Stalled jobs in a row (reset by a job that did not stall). Only touched by the `busy`
    /// holder.
    stalled_jobs: AtomicU64,
}

// SAFETY: all fields but `job` are Sync. `job` is written only by the holder of `busy`,
// before the Release store that publishes the job's `claim` word, and read by a pool thread
// only after an Acquire compare-exchange on `claim` succeeded for that job's epoch (the
// compare-exchanges of other participants continue the release sequence), so writes
// happen-before reads. A reader holds a claimed task that is not yet counted in `done`; the
// dispatcher does not release `busy` (so no next job is written) before it observed (Acquire)
// every claimed task counted in `done` (Release, after the last read), so reads happen-before
// the next write.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool::new();

impl Pool {
    /// An idle pool with no thread yet.
    const fn new() -> Pool {
        Pool {
            busy: Padded(AtomicBool::new(false)),
            claim: Padded(AtomicU64::new(0)),
            seats: Padded(AtomicU64::new(0)),
            done: Padded(AtomicUsize::new(0)),
            job: UnsafeCell::new(Job {
                f: std::ptr::null(),
                mxcsr: 0,
                cpu: None,
            }),
            epoch: AtomicU64::new(0),
            helpers: AtomicUsize::new(0),
            spawn_failed: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            park: Mutex::new(()),
            wake: Condvar::new(),
            panic: Mutex::new(None),
            serial_until: AtomicU64::new(0),
            serial_ns: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            last_stalls: [const { AtomicU64::new(0) }; STALLS_SERIAL - 1],
            shared_cpu: AtomicBool::new(false),
            stalled_jobs: AtomicU64::new(0),
        }
    }
}

/// The CPU the calling thread runs on (Linux `sched_getcpu`; `None` elsewhere, under Miri
/// or on error).
fn current_cpu() -> Option<usize> {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        // SAFETY: `sched_getcpu` takes no arguments and has no preconditions.
        let c = unsafe { libc::sched_getcpu() };
        usize::try_from(c).ok()
    }
    #[cfg(not(all(target_os = "linux", not(miri))))]
    {
        None
    }
}

/// Nanoseconds since the pool's clock started (at least 1).
fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

/// Stalled jobs of the process's pool so far (see the module docs): long waits on a
/// descheduled pool thread, and jobs in which a pool thread ran on the dispatcher's CPU.
pub fn stalls() -> u64 {
    POOL.stalls.load(Ordering::Relaxed)
}

/// Whether stalls are detected and acted on: not in this crate's own unit tests, which check
/// every kernel's task split against one thread and must always run the split they ask for
/// (whatever the load of the test machine); the stall handling itself is tested in
/// `tests/pool_stalls.rs`, a process of its own.
const ADAPTIVE: bool = !cfg!(test);

/// The threads a job dispatched now would run on: 1 when `threads <= 1`, when the pool is
/// held (by another run, or by the job this call is nested in) or in a serial period (see
/// the module docs); else `threads`. Kernels size their task split with it, so that a job
/// that will run on its caller alone is not cut into tasks that each repeat shared work (a
/// panel packed per task). A hint: the pool may change state before the dispatch, which
/// only costs speed (results never depend on the split). In this crate's unit tests it
/// returns `threads` ([`ADAPTIVE`]).
pub fn threads_now(threads: usize) -> usize {
    if threads <= 1 || SERIAL_HERE.get() {
        1
    } else if !ADAPTIVE {
        threads
    } else if POOL.busy.0.load(Ordering::Relaxed) || serial_now(&POOL) {
        1
    } else {
        threads
    }
}

thread_local! {
    /// Set by [`serial_scope`]: every job this thread dispatches runs on it alone.
    static SERIAL_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every job the calling thread dispatches in it run serially on that thread
/// ([`threads_now`] returns 1 there), as a run the runtime measured faster without the pool
/// (`mnc_runtime`'s thread choice). Results do not change (they never depend on the
/// split); the previous setting is restored when `f` returns or unwinds.
pub fn serial_scope<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL_HERE.set(self.0);
        }
    }
    let _restore = Restore(SERIAL_HERE.replace(true));
    f()
}

/// What is left of the current serial period (`None` outside one): dispatches until then
/// run on their callers alone.
pub fn serial_left() -> Option<Duration> {
    // One load: a period that another dispatcher starts meanwhile must not make `until - now`
    // of an older end underflow.
    let until = POOL.serial_until.load(Ordering::Relaxed);
    let now = now_ns();
    before_end(until, now, Duration::ZERO).then(|| Duration::from_nanos(until - now))
}

/// Whether dispatches run serially now (a serial period, see the module docs).
fn serial_now(pool: &Pool) -> bool {
    within(pool, now_ns(), Duration::ZERO)
}

/// Whether `now` is before the end of the last serial period plus `after` (false before
/// the first period).
fn within(pool: &Pool, now: u64, after: Duration) -> bool {
    before_end(pool.serial_until.load(Ordering::Relaxed), now, after)
}

/// Whether `now` is before `end` (a serial period's end, 0 for none) plus `after`.
fn before_end(end: u64, now: u64, after: Duration) -> bool {
    end != 0 && now < end.saturating_add(after.as_nanos() as u64)
}

/// What made a job a stalled one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// A long wait for a claimed task.
    Wait,
    /// A pool thread finished a task on the dispatcher's CPU.
    SharedCpu,
}

/// Records how the job just finished went (only by the `busy` holder; `None`: no stall). At
/// the [`STALLS_SERIAL`]-th stalled job within [`STALL_WINDOW`] or in a row, or at a long
/// wait within [`STALL_MEMORY`] of the end of the last serial period, dispatches run
/// serially for the next period. A pool thread on the dispatcher's CPU within
/// [`SHARED_GRACE`] of that end does not count (the scheduler often places a woken thread
/// beside its waker for a moment). `job`: when the dispatcher started its share of the job.
fn record(pool: &Pool, stall: Option<Stall>, job: Instant) {
    let Some(kind) = stall else {
        if pool.stalled_jobs.load(Ordering::Relaxed) != 0 {
            pool.stalled_jobs.store(0, Ordering::Relaxed);
        }
        return;
    };
    let now = now_ns();
    if kind == Stall::SharedCpu && within(pool, now, SHARED_GRACE) {
        return;
    }
    pool.stalls.fetch_add(1, Ordering::Relaxed);
    let in_a_row = pool.stalled_jobs.fetch_add(1, Ordering::Relaxed) + 1;
    let oldest = pool.last_stalls[0].load(Ordering::Relaxed);
    for i in 1..pool.last_stalls.len() {
        let t = pool.last_stalls[i].load(Ordering::Relaxed);
        pool.last_stalls[i - 1].store(t, Ordering::Relaxed);
    }
    pool.last_stalls[STALLS_SERIAL - 2].store(now, Ordering::Relaxed);
    let window = oldest != 0 && now.saturating_sub(oldest) <= STALL_WINDOW.as_nanos() as u64;
    let after = kind == Stall::Wait && within(pool, now, STALL_MEMORY);
    if window || after || in_a_row >= STALLS_SERIAL as u64 {
        pool.stalled_jobs.store(0, Ordering::Relaxed);
        serial_period(pool, now, job.elapsed());
    }
}

/// Starts a serial period at `now` after a job of duration `job` (only by the `busy`
/// holder): [`SERIAL_FIRST`] or [`SERIAL_JOBS`] jobs, whichever is longer, or twice the last
/// one when it ended within [`STALL_MEMORY`].
fn serial_period(pool: &Pool, now: u64, job: Duration) {
    let last = pool.serial_ns.load(Ordering::Relaxed);
    let first = SERIAL_FIRST
        .max(job.saturating_mul(SERIAL_JOBS))
        .min(SERIAL_MAX);
    let period = if within(pool, now, STALL_MEMORY) {
        last.saturating_mul(2).min(SERIAL_MAX.as_nanos() as u64)
    } else {
        first.as_nanos() as u64
    };
    pool.serial_ns.store(period, Ordering::Relaxed);
    pool.serial_until.store(now + period, Ordering::Relaxed);
}

/// Runs `f(t)` once for every `t` in `0..tasks`, on the calling thread plus up to
/// `threads - 1` pool threads, and returns when all have finished. `threads <= 1` or
/// `tasks <= 1` runs everything on the caller. Never blocks on another dispatcher: when the
/// pool is busy (another run dispatching concurrently) or when called from inside a task
/// (nested), it runs serially; so it does in a serial period after stalls. A panic in `f` is
/// resumed on the caller once no task is in progress any more (see the module docs).
pub fn for_each(threads: usize, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    if threads <= 1 || tasks <= 1 {
        (0..tasks).for_each(f);
        return;
    }
    let mut base = 0;
    while base < tasks {
        let n = (tasks - base).min(MAX_JOB_TASKS);
        if base == 0 && n == tasks {
            dispatch(threads, n, n - 1, f, || {});
        } else {
            dispatch(threads, n, n - 1, &|t| f(base + t), || {});
        }
        base += n;
    }
}

/// Runs `a` on the calling thread and `b` on a pool thread (or both here when the pool is
/// busy, or when `b` is not picked up before `a` is done), returning when both are done.
pub fn join<A: FnOnce(), B: Fn() + Sync>(a: A, b: B) {
    dispatch(2, 1, 1, &|_| b(), a);
}

/// Runs `pre` and then tasks of `f` on the caller, and `f`'s tasks on up to
/// `min(threads - 1, max_seats)` pool threads. `1 <= tasks <= MAX_JOB_TASKS`.
fn dispatch<P: FnOnce()>(threads: usize, tasks: usize, max_seats: usize, f: TaskFn<'_>, pre: P) {
    let pool = &POOL;
    let serial = |pre: P| {
        pre();
        (0..tasks).for_each(f);
    };
    if threads <= 1
        || SERIAL_HERE.get()
        || pool
            .busy
            .0
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return serial(pre);
    }
    let busy = BusyGuard(pool);
    if ADAPTIVE && serial_now(pool) {
        drop(busy);
        return serial(pre);
    }
    let helpers = grow(pool, (threads - 1).min(MAX_HELPERS));
    let seats = (threads - 1).min(max_seats).min(helpers);
    if seats == 0 {
        drop(busy);
        return serial(pre);
    }

    let epoch = (pool.epoch.load(Ordering::Relaxed) + 1) & EPOCH_MASK;
    let epoch = epoch.max(1); // epoch 0 is the idle state pool threads start from
    pool.epoch.store(epoch, Ordering::Relaxed);
    pool.done.0.store(0, Ordering::Relaxed);
    pool.shared_cpu.store(false, Ordering::Relaxed);
    // `f` lives on this frame until we return; the pool reaches it through this pointer.
    let f_ref: TaskFn<'_> = f;
    // SAFETY: we hold `busy` and every pool thread finished with the previous job (see
    // `impl Sync for Pool`); the stores below publish the write.
    unsafe {
        *pool.job.get() = Job {
            f: &f_ref as *const TaskFn<'_> as *const (),
            mxcsr: super::fpenv::mxcsr(),
            cpu: current_cpu(),
        };
    }
    pool.claim
        .0
        .store(pack_claim(epoch, 0, tasks as u64), Ordering::Release);
    // SeqCst store then SeqCst load of `sleepers`, against the pool thread's SeqCst
    // increment of `sleepers` then SeqCst load of `seats` (in `idle`): at least one side sees
    // the other, so either the thread does not park or we notify it under `park`.
    pool.seats
        .0
        .store(pack(epoch, seats as u64), Ordering::SeqCst);
    let sleeping = pool.sleepers.load(Ordering::SeqCst);
    if sleeping > 0 {
        let _g = pool.park.lock().unwrap_or_else(|e| e.into_inner());
        if sleeping <= seats {
            pool.wake.notify_all();
        } else {
            (0..seats).for_each(|_| pool.wake.notify_one());
        }
    }

    // Our share: `pre`, then tasks until none is left. Panics are caught so that we do not
    // unwind out of this frame (freeing `f`) while pool threads may still run it.
    let mut mine = 0usize; // tasks run or dropped here
    let own_start = Instant::now();
    let mut payload = None;
    let mut pre = Some(pre);
    if let Err(p) = caught(&mut || {
        if let Some(pre) = pre.take() {
            pre()
        }
    }) {
        payload = Some(p);
        mine += close(pool, epoch);
    } else {
        while let Some(t) = claim(pool, epoch, End::Front) {
            mine += 1;
            if let Err(p) = caught(&mut || f(t)) {
                payload = Some(p);
                mine += close(pool, epoch);
                break;
            }
        }
    }

    // Wait for the tasks pool threads claimed and are still running.
    let start = Instant::now();
    let mut spins = 0u32;
    while pool.done.0.load(Ordering::Acquire) + mine < tasks {
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(SPIN_CHECK) || start.elapsed() < WAIT_SPIN {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    let mut long_wait = false;
    if spins >= SPIN_CHECK {
        // A long wait: a stall when it also exceeds `STALL_TASKS` of our own mean tasks
        // (`pre` and the tasks we ran, over the tasks, at least one).
        let waited = start.elapsed();
        let own =
            start.saturating_duration_since(own_start) / mine.clamp(1, u32::MAX as usize) as u32;
        long_wait = waited > STALL_MIN && waited > own.saturating_mul(STALL_TASKS);
    }
    if ADAPTIVE && payload.is_none() {
        let stall = if long_wait {
            Some(Stall::Wait)
        } else if pool.shared_cpu.load(Ordering::Relaxed) {
            Some(Stall::SharedCpu)
        } else {
            None
        };
        record(pool, stall, own_start);
    }
    let helper_panic = pool.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(busy);
    if let Some(p) = payload.or(helper_panic) {
        resume_unwind(p);
    }
}

/// Releases `busy` (Release: our reads and writes of the job happen-before the next holder's).
struct BusyGuard(&'static Pool);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.0.store(false, Ordering::Release);
    }
}

/// Which end of a job's unclaimed tasks a participant claims from.
#[derive(Clone, Copy)]
enum End {
    /// The lowest unclaimed task: the dispatcher.
    Front,
    /// The highest: pool threads.
    Back,
}

/// Claims one task of job `epoch` at `end` and returns its index, or `None` when the job has
/// none left or is over.
///
/// Two ends, so that with two threads the dispatcher runs the first part of every job and
/// the pool thread the last part, whatever the balance between them: consecutive ops split
/// over the same dimension in the same order (channels, then channels again) then mostly
/// read on each core what that core wrote, instead of fetching half of it from the other
/// core's cache (which costs 4x more on a VM whose two vCPUs sit on different core
/// complexes; see docs/CPU_BACKEND.md, "Task order").
fn claim(pool: &Pool, epoch: u64, end: End) -> Option<usize> {
    let mut w = pool.claim.0.load(Ordering::Relaxed);
    loop {
        let (e, lo, hi) = unpack_claim(w);
        if e != epoch || lo >= hi {
            return None;
        }
        let (next, t) = match end {
            End::Front => (pack_claim(e, lo + 1, hi), lo),
            End::Back => (pack_claim(e, lo, hi - 1), hi - 1),
        };
        // Acquire on success: synchronizes with the dispatcher's Release publication of
        // `claim` (and so of `job`).
        match pool
            .claim
            .0
            .compare_exchange_weak(w, next, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => return Some(t as usize),
            Err(now) => w = now,
        }
    }
}

/// Drops the unclaimed tasks of job `epoch` (after a panic) and returns how many there were.
/// Only called while the caller holds a claimed, unfinished task or is the dispatcher, so
/// the job is still `epoch`.
fn close(pool: &Pool, epoch: u64) -> usize {
    let (_, lo, hi) = unpack_claim(pool.claim.0.swap(pack_claim(epoch, 0, 0), Ordering::AcqRel));
    hi.saturating_sub(lo) as usize
}

/// Spawns pool threads until there are `want` (or a spawn failed); returns how many exist.
/// Only called by the `busy` holder.
fn grow(pool: &'static Pool, want: usize) -> usize {
    let mut have = pool.helpers.load(Ordering::Relaxed);
    while have < want && !pool.spawn_failed.load(Ordering::Relaxed) {
        let spawned = std::thread::Builder::new()
            .name(format!("mnc-pool-{}", have + 1))
            .spawn(move || helper_main(pool));
        match spawned {
            Ok(_) => {
                have += 1;
                pool.helpers.store(have, Ordering::Relaxed);
            }
            Err(_) => pool.spawn_failed.store(true, Ordering::Relaxed),
        }
    }
    have
}

/// A pool thread: waits for a job with a free seat, runs tasks of it until none is left.
fn helper_main(pool: &'static Pool) {
    let mut seen = 0u64; // epoch of the last job looked at (0: none yet)
    let mut idle_since = Instant::now();
    let mut spins = 0u32;
    loop {
        let w = pool.seats.0.load(Ordering::Relaxed);
        if epoch_of(w) == seen {
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(SPIN_CHECK) || idle_since.elapsed() < IDLE_SPIN {
                std::hint::spin_loop();
            } else {
                idle(pool, seen);
                idle_since = Instant::now();
            }
            continue;
        }
        idle_since = Instant::now();
        if count_of(w) == 0 {
            seen = epoch_of(w); // no seat left for us in this job
            continue;
        }
        // Acquire: a seat of job E implies E's `claim` publication is visible to `claim`.
        if pool
            .seats
            .0
            .compare_exchange_weak(w, w - 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue; // lost a race (or a new job): look again
        }
        seen = epoch_of(w);
        work(pool, seen);
        idle_since = Instant::now();
    }
}

/// Parks until a job newer than `seen` is published.
fn idle(pool: &Pool, seen: u64) {
    let mut g = pool.park.lock().unwrap_or_else(|e| e.into_inner());
    pool.sleepers.fetch_add(1, Ordering::SeqCst);
    while epoch_of(pool.seats.0.load(Ordering::SeqCst)) == seen {
        g = pool.wake.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    pool.sleepers.fetch_sub(1, Ordering::SeqCst);
}

/// Runs tasks of job `epoch` until none is left; a panic drops the rest of the job.
fn work(pool: &Pool, epoch: u64) {
    while let Some(t) = claim(pool, epoch, End::Back) {
        // SAFETY: we hold a claimed task of job `epoch` not yet counted in `done`, so the
        // dispatcher is still waiting in `dispatch`, `job` is that job's (see `impl Sync for
        // Pool`) and `job.f` points at its live `&dyn Fn`.
        let result = unsafe { run_task(pool, t) };
        let mut finished = 1;
        if let Err(p) = result {
            let mut slot = pool.panic.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(p);
            drop(slot);
            finished += close(pool, epoch);
        }
        // Release: the task's effects and our last use of `job` happen-before the
        // dispatcher's Acquire load that sees this count.
        pool.done.0.fetch_add(finished, Ordering::Release);
        if finished > 1 {
            return;
        }
    }
}

/// Runs task `t` of the current job, catching a panic.
///
/// # Safety
/// The caller holds that claimed task, not yet counted in `done`.
unsafe fn run_task(pool: &Pool, t: usize) -> std::thread::Result<()> {
    // SAFETY: by the contract, `job` holds the current job and its closure is alive until
    // the task is counted in `done`, which happens after this function returned.
    let job = unsafe { *pool.job.get() };
    // The dispatcher's floating-point mode (a no-op when it is already ours).
    super::fpenv::set_mxcsr(job.mxcsr);
    // SAFETY: `job.f` points at the dispatcher's `&dyn Fn` (see `dispatch`), alive as above.
    let f: TaskFn<'_> = unsafe { *(job.f as *const TaskFn<'_>) };
    let r = caught(&mut || f(t));
    if job.cpu.is_some() && current_cpu() == job.cpu {
        pool.shared_cpu.store(true, Ordering::Relaxed);
    }
    r
}

/// Runs `f`, catching a panic: the only `catch_unwind` of the pool and of the kernels'
/// `extern "C"` boundary ([`super::kernels::at_boundary`]). Kept out of line: with
/// `catch_unwind` inlined into `dispatch`'s claiming loop, the copy of this crate linked into
/// the `mnc-runtime` test binary (opt-level 1) crashed with SIGSEGV in `__rust_panic_cleanup`
/// when a task the caller ran panicked: the landing pad the personality routine entered
/// passed `r15` (holding the exception class "MOZ\0RUST") instead of `rax` (where
/// `_Unwind_SetGR` had put the exception object) to the cleanup. That is wrong code for the
/// inlined catch, not a logic error of the pool; a catch in a function of its own avoids it
/// (regression test: `pool_task_panics_are_caught_in_this_crate` in `mnc-runtime`).
#[inline(never)]
pub(crate) fn caught(f: &mut dyn FnMut()) -> std::thread::Result<()> {
    catch_unwind(AssertUnwindSafe(f))
}

/// Number of physical cores (SMT siblings counted once) this process may run on: on Linux the
/// distinct `(physical_package_id, core_id)` pairs of the online CPUs in the process's
/// affinity mask (read from `/sys` and `/proc/self/status`), at most
/// [`std::thread::available_parallelism`] (which also reflects cgroup quotas); elsewhere, or
/// when those files cannot be read, `available_parallelism`. At least 1. Computed once.
pub fn physical_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
        linux_physical_cores()
            .map_or(logical, |p| p.min(logical))
            .max(1)
    })
}

fn linux_physical_cores() -> Option<usize> {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    let online = parse_cpu_list(online.trim())?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|l| parse_cpu_list(l.trim()));
    let mut cores = std::collections::BTreeSet::new();
    for cpu in online {
        if allowed.as_ref().is_some_and(|a| !a.contains(&cpu)) {
            continue;
        }
        let dir = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let read = |name: &str| -> Option<i64> {
            std::fs::read_to_string(format!("{dir}/{name}"))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        cores.insert((read("physical_package_id")?, read("core_id")?));
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Parses a Linux CPU list such as `0-3,8,10-11`; `None` if malformed.
fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b || b - a > 1 << 16 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::{for_each, join, physical_cores, serial_scope, threads_now};
    use std::collections::HashSet;
    use std::panic::catch_unwind;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// Runs `for_each(threads, tasks)` and checks that every task ran exactly once.
    fn check_exactly_once(threads: usize, tasks: usize) {
        let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
        for_each(threads, tasks, &|t| {
            hits[t].fetch_add(1, Ordering::Relaxed);
        });
        for (t, h) in hits.iter().enumerate() {
            let n = h.load(Ordering::Relaxed);
            assert_eq!(
                n, 1,
                "threads={threads} tasks={tasks}: task {t} ran {n} times"
            );
        }
    }

    #[test]
    fn par_for_each_runs_every_task_exactly_once() {
        let (threads_grid, tasks_grid, reps): (&[usize], &[usize], usize) = if cfg!(miri) {
            (&[0, 1, 2, 3, 8], &[0, 1, 2, 5, 17], 1)
        } else {
            (
                &[0, 1, 2, 3, 4, 7, 8, 16, 300],
                &[0, 1, 2, 3, 5, 8, 17, 64, 1000],
                5,
            )
        };
        for &threads in threads_grid {
            for &tasks in tasks_grid {
                for _ in 0..reps {
                    check_exactly_once(threads, tasks);
                }
            }
        }
    }

    #[test]
    fn par_for_each_uses_at_most_threads_participants() {
        // Grow the pool first, then ask for 2 threads: at most the caller + 1 pool thread.
        for_each(8, 64, &|_| {});
        for _ in 0..rounds(20) {
            let who = Mutex::new(HashSet::new());
            for_each(2, 64, &|_| {
                who.lock().unwrap().insert(std::thread::current().id());
                spin_for(Duration::from_micros(20));
            });
            let who = who.into_inner().unwrap();
            assert!(who.len() <= 2, "{} threads ran a threads=2 job", who.len());
        }
    }

    #[test]
    fn serial_scope_runs_every_task_on_the_caller_and_restores() {
        let me = std::thread::current().id();
        let others = AtomicUsize::new(0);
        let inside = serial_scope(|| {
            for_each(4, 64, &|_| {
                if std::thread::current().id() != me {
                    others.fetch_add(1, Ordering::Relaxed);
                }
            });
            threads_now(4)
        });
        assert_eq!(inside, 1);
        assert_eq!(others.load(Ordering::Relaxed), 0);
        // Restored after the scope, and after a panic inside one.
        assert_eq!(threads_now(4), 4);
        assert!(catch_unwind(|| serial_scope(|| panic!("inside"))).is_err());
        assert_eq!(threads_now(4), 4);
    }

    #[test]
    fn par_caller_runs_a_prefix_of_the_tasks_and_pool_threads_the_rest() {
        // The caller claims from the front, pool threads from the back: whoever ran how many,
        // the caller's tasks are `0..k`. (With a concurrent dispatcher holding the pool the
        // job runs serially on the caller: all tasks, still a prefix.)
        let me = std::thread::current().id();
        for tasks in [2, 3, 8, 64] {
            for _ in 0..rounds(20) {
                let mine: Vec<AtomicBool> = (0..tasks).map(|_| AtomicBool::new(false)).collect();
                for_each(2, tasks, &|t| {
                    if std::thread::current().id() == me {
                        mine[t].store(true, Ordering::Relaxed);
                    }
                    spin_for(Duration::from_micros(5));
                });
                let k = mine
                    .iter()
                    .take_while(|m| m.load(Ordering::Relaxed))
                    .count();
                assert!(
                    mine[k..].iter().all(|m| !m.load(Ordering::Relaxed)),
                    "caller's tasks of {tasks} are not a prefix"
                );
            }
        }
    }

    #[test]
    fn par_for_each_runs_on_named_pool_threads_or_caller() {
        let me = std::thread::current().id();
        let names = Mutex::new(Vec::new());
        for _ in 0..rounds(20) {
            for_each(4, 32, &|_| {
                let cur = std::thread::current();
                if cur.id() != me {
                    names
                        .lock()
                        .unwrap()
                        .push(cur.name().unwrap_or("").to_string());
                }
                spin_for(Duration::from_micros(10));
            });
        }
        for n in names.into_inner().unwrap() {
            assert!(n.starts_with("mnc-pool-"), "task ran on thread {n:?}");
        }
    }

    #[test]
    fn par_concurrent_dispatchers_get_correct_results() {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|d| {
                    s.spawn(move || {
                        for round in 0..rounds(300) {
                            let tasks = 1 + (round * 7 + d * 13) % 40;
                            let out: Vec<AtomicUsize> =
                                (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                            for_each(1 + (round + d) % 5, tasks, &|t| {
                                out[t].fetch_add(t * 3 + d + 1, Ordering::Relaxed);
                            });
                            for (t, o) in out.iter().enumerate() {
                                assert_eq!(o.load(Ordering::Relaxed), t * 3 + d + 1);
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("dispatcher thread failed");
            }
        });
    }

    #[test]
    fn par_nested_for_each_runs_serially_and_completes() {
        let hits: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
        let inner_threads = Mutex::new(Vec::new());
        for_each(4, 8, &|i| {
            let outer = std::thread::current().id();
            for_each(4, 8, &|j| {
                // Serial: the inner tasks run on the thread that runs the outer task.
                inner_threads
                    .lock()
                    .unwrap()
                    .push(std::thread::current().id() == outer);
                hits[i * 8 + j].fetch_add(1, Ordering::Relaxed);
            });
            join(
                || {
                    hits[i * 8].fetch_add(10, Ordering::Relaxed);
                },
                || {
                    hits[i * 8 + 1].fetch_add(10, Ordering::Relaxed);
                },
            );
        });
        for (k, h) in hits.iter().enumerate() {
            let want = if k % 8 < 2 { 11 } else { 1 };
            assert_eq!(h.load(Ordering::Relaxed), want, "cell {k}");
        }
        assert!(inner_threads
            .into_inner()
            .unwrap()
            .into_iter()
            .all(|same| same));
    }

    #[test]
    fn par_join_runs_both_halves_even_when_contended() {
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..rounds(2000) {
                        join(
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
        let want = 4 * ((0..rounds(2000)).sum::<usize>() + rounds(2000));
        assert_eq!(total.load(Ordering::Relaxed), want);
    }

    #[test]
    fn par_panic_in_task_propagates_and_pool_stays_usable() {
        for round in 0..rounds(20) {
            let ran = AtomicUsize::new(0);
            let r = catch_unwind(|| {
                for_each(4, 16, &|t| {
                    spin_for(Duration::from_micros(20));
                    if t == round % 16 {
                        panic!("task {t} failed");
                    }
                    ran.fetch_add(1, Ordering::Relaxed);
                });
            });
            let msg = r.expect_err("the panic must reach the caller");
            let msg = msg
                .downcast_ref::<String>()
                .expect("panic payload is the task's message");
            assert_eq!(*msg, format!("task {} failed", round % 16));
            assert!(ran.load(Ordering::Relaxed) <= 15);
            check_exactly_once(4, 33);
        }
        // A panic in `join`'s first half also reaches the caller.
        let r = catch_unwind(|| join(|| panic!("first half"), || {}));
        assert!(r.is_err());
        check_exactly_once(4, 33);
    }

    #[test]
    fn par_panic_on_pool_thread_propagates() {
        // Tasks panic only on pool threads: either the caller ran every task (no panic) or
        // the pool thread's panic reaches the caller. Either way the pool keeps working.
        let mut pool_panics = 0;
        for _ in 0..rounds(50) {
            let ran = AtomicUsize::new(0);
            let r = catch_unwind(|| {
                for_each(2, 8, &|_| {
                    spin_for(Duration::from_micros(50));
                    let name = std::thread::current().name().map(str::to_string);
                    if name.is_some_and(|n| n.starts_with("mnc-pool-")) {
                        panic!("pool task failed");
                    }
                    ran.fetch_add(1, Ordering::Relaxed);
                });
            });
            match r {
                Ok(()) => assert_eq!(ran.load(Ordering::Relaxed), 8),
                Err(p) => {
                    assert_eq!(p.downcast_ref::<&str>(), Some(&"pool task failed"));
                    pool_panics += 1;
                }
            }
            check_exactly_once(3, 20);
        }
        eprintln!(
            "pool-thread panics propagated: {pool_panics}/{}",
            rounds(50)
        );
    }

    #[test]
    fn par_stall_bookkeeping_on_a_pool_of_its_own() {
        use super::{before_end, now_ns, record, serial_now as serial, Pool, Stall};
        use super::{SERIAL_FIRST, SHARED_GRACE, STALL_MEMORY};
        // Two stalled jobs change nothing, the third in a row (or within the window) starts
        // a period.
        let p = Pool::new();
        record(&p, Some(Stall::Wait), Instant::now());
        record(&p, Some(Stall::SharedCpu), Instant::now());
        assert!(!serial(&p));
        record(&p, Some(Stall::Wait), Instant::now());
        assert!(serial(&p));
        assert_eq!(
            p.serial_ns.load(Ordering::Relaxed),
            SERIAL_FIRST.as_nanos() as u64
        );
        assert_eq!(p.stalls.load(Ordering::Relaxed), 3);
        // After the period: a pool thread on our CPU within the grace does not count; one
        // long wait within the memory starts the next period, twice as long.
        let end = p.serial_until.load(Ordering::Relaxed);
        std::thread::sleep(SERIAL_FIRST + SERIAL_FIRST / 20);
        assert!(!serial(&p));
        let at = now_ns();
        record(&p, Some(Stall::SharedCpu), Instant::now());
        // On a loaded machine the sleep can overrun the grace: the shared-CPU job then counts
        // (and, within the window of the first three, starts a period), which is right, but
        // not what the rest of this part checks.
        if before_end(end, at, SHARED_GRACE) {
            assert_eq!(p.stalls.load(Ordering::Relaxed), 3);
            assert!(!serial(&p), "one shared-CPU job does not start a period");
            let at = now_ns();
            record(&p, Some(Stall::Wait), Instant::now());
            assert!(serial(&p));
            if before_end(end, at, STALL_MEMORY) {
                assert_eq!(
                    p.serial_ns.load(Ordering::Relaxed),
                    2 * SERIAL_FIRST.as_nanos() as u64
                );
            }
        } else {
            eprintln!("par_stall_bookkeeping: the sleep overran the grace; the after-period checks are skipped");
        }
        // A clean job breaks a run.
        let p = Pool::new();
        record(&p, Some(Stall::SharedCpu), Instant::now());
        record(&p, None, Instant::now());
        record(&p, Some(Stall::SharedCpu), Instant::now());
        assert_eq!(p.stalled_jobs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn par_physical_cores_is_within_bounds() {
        let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
        let p = physical_cores();
        assert!(
            p >= 1 && p <= logical,
            "physical_cores={p}, logical={logical}"
        );
    }

    #[test]
    fn par_parse_cpu_list() {
        assert_eq!(
            super::parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(super::parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(super::parse_cpu_list(""), Some(vec![]));
        assert_eq!(super::parse_cpu_list("3-1"), None);
        assert_eq!(super::parse_cpu_list("x"), None);
    }

    /// `n` natively, far fewer under Miri.
    fn rounds(n: usize) -> usize {
        if cfg!(miri) {
            n.div_ceil(100).max(2)
        } else {
            n
        }
    }

    fn spin_for(d: Duration) {
        let t = Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    }

    /// Per-call overhead of an empty job; prints, asserts nothing about time.
    /// `cargo test -p mnc-targets --release par_overhead -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn par_overhead_benchmark() {
        fn per_call(n: usize, mut call: impl FnMut()) -> f64 {
            let t = Instant::now();
            for _ in 0..n {
                call();
            }
            t.elapsed().as_secs_f64() * 1e9 / n as f64
        }
        fn median_after_idle(n: usize, idle: Duration, mut call: impl FnMut()) -> f64 {
            let mut v: Vec<f64> = (0..n)
                .map(|_| {
                    std::thread::sleep(idle);
                    let t = Instant::now();
                    call();
                    t.elapsed().as_secs_f64() * 1e9
                })
                .collect();
            v.sort_by(f64::total_cmp);
            v[n / 2]
        }
        let cores = physical_cores();
        let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!("physical_cores={cores} available_parallelism={logical}");
        let noop = |_: usize| {};
        for_each(logical.max(2), 64, &noop); // spawn the pool
        const N: usize = 200_000;
        println!(
            "serial for_each(1, 2):              {:8.0} ns/call",
            per_call(N, || for_each(1, 2, &noop))
        );
        for threads in [2, 4, 8, logical] {
            if threads > logical.max(2) {
                continue;
            }
            let ran = AtomicUsize::new(0);
            let helped = AtomicUsize::new(0);
            let me = std::thread::current().id();
            let count = |_: usize| {
                ran.fetch_add(1, Ordering::Relaxed);
                if std::thread::current().id() != me {
                    helped.fetch_add(1, Ordering::Relaxed);
                }
            };
            let ns = per_call(N, || for_each(threads, threads, &count));
            println!(
                "for_each({threads}, {threads}) back to back:    {ns:8.0} ns/call  \
                 ({:.1}% of tasks ran on pool threads)",
                100.0 * helped.load(Ordering::Relaxed) as f64 / ran.load(Ordering::Relaxed) as f64
            );
        }
        println!(
            "join(noop, noop) back to back:      {:8.0} ns/call",
            per_call(N, || join(|| {}, || {}))
        );
        // Work that a second thread can share: 2 tasks of ~20 µs each.
        let work = |_: usize| spin_for(Duration::from_micros(20));
        println!(
            "for_each(1, 2, 20µs tasks):         {:8.0} ns/call",
            per_call(2000, || for_each(1, 2, &work))
        );
        println!(
            "for_each(2, 2, 20µs tasks):         {:8.0} ns/call",
            per_call(2000, || for_each(2, 2, &work))
        );
        println!(
            "for_each(2, 2) 100 µs after last:   {:8.0} ns median",
            median_after_idle(500, Duration::from_micros(100), || for_each(2, 2, &noop))
        );
        println!(
            "for_each(2, 2) 5 ms after last:     {:8.0} ns median (pool parked)",
            median_after_idle(300, Duration::from_millis(5), || for_each(2, 2, &noop))
        );
        println!(
            "for_each(2, 2, 20µs) 5 ms after:    {:8.0} ns median (pool parked)",
            median_after_idle(300, Duration::from_millis(5), || for_each(2, 2, &work))
        );
        println!(
            "for_each(1, 2, 20µs) 5 ms after:    {:8.0} ns median (serial)",
            median_after_idle(300, Duration::from_millis(5), || for_each(1, 2, &work))
        );
    }
}
