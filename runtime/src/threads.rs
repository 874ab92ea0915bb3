//! The run-level choice between the thread pool and the calling thread alone.
//!
//! A compiled model asks for `threads` threads, but whether the pool pays depends on the
//! machine at the moment: on the development VM's "slow state" (its two vCPUs on distant,
//! shared cores: a cache line takes 340-400 ns there and back instead of 70-100) MobileNetV2
//! int8 at batch 1 takes 1.28 ms on 2 threads and 1.17 ms on one, while the f32 model still
//! gains from the second thread; with another process busy on a core the pool's own stall
//! detection (`mnc_targets::cpu::par`) catches the worst of it. Rather than guess from such
//! signs, [`ThreadChoice`] times whole runs both ways and runs the faster: the first runs
//! alternate in pairs (after a cold one; one pair each when the serial run is no faster
//! than the pool's, three otherwise), then the other way is tried again (two runs)
//! every 16 to 256 runs, the less often the larger the measured gap, so that probing costs
//! under 1.5% of the run time. The first run after a switch is not measured: a pool run
//! right after a serial one finds the pool threads parked (waking them, and the scheduler
//! placing a woken thread beside its waker, made such runs as slow as serial ones, and a
//! choice measured that way never went back to the pool). Only speed changes: results do not
//! depend on the thread count.

use std::time::Duration;

/// How a run uses the threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// The kernels split their work over the thread pool.
    Pool,
    /// Every kernel runs on the calling thread alone (`mnc_targets::cpu::par::serial_scope`).
    Serial,
}

impl RunMode {
    fn other(self) -> RunMode {
        match self {
            RunMode::Pool => RunMode::Serial,
            RunMode::Serial => RunMode::Pool,
        }
    }
    fn index(self) -> usize {
        match self {
            RunMode::Pool => 0,
            RunMode::Serial => 1,
        }
    }
}

/// Samples kept per mode (their minimum is the mode's estimate: one slow run, a moment of
/// preemption, does not flip the choice, and one fast probe brings a mode back).
const KEEP: usize = 3;
/// The serial mode is chosen when its estimate is below this fraction of the pool's (the
/// pool keeps a tie: it is what the user asked for).
const SERIAL_MARGIN: f64 = 0.97;
/// The first comparison ends after one measured run of each mode when the serial run took
/// at least this many times the pool run: the pool (what the user asked for) is kept
/// without more serial runs, and the probes go on as after a full comparison (every 16 runs
/// while the gap is under 1.2), which correct a serial sample that a disturbance made slow.
/// Only a serial run faster than the pool's takes [`KEEP`] runs of each mode. At 1.2 (session
/// 23), a pool run slowed by a disturbance made the comparison go on: in 27 of 40 25-run
/// `mnc bench`es of MobileNetV2 on `x86_64-avx2` at 2 threads (a noisy stretch of the VM) 2
/// of the 20 timed runs were serial (twice the time), the medians 1.046x those of
/// `--no-thread-choice` (24 of 40 pairs slower).
const CLEAR_GAP: f64 = 1.0;

/// The run-level thread choice of one compiled model (see the module docs): a pure state
/// machine over measured run times.
#[derive(Clone, Debug, Default)]
pub struct ThreadChoice {
    /// Runs recorded so far.
    runs: u64,
    /// The last [`KEEP`] times of each mode, oldest first.
    samples: [Vec<Duration>; 2],
    /// Runs recorded in each mode, measured or not.
    counts: [u64; 2],
    /// The run (count of recorded runs) at which the other mode is tried next, and the run
    /// at which both modes were last measured (the start of the wait for the next probe).
    next_probe: u64,
    last_probe: u64,
    /// The mode of the last run, and whether that run was the first in its mode (the cold
    /// run, or the first after a switch).
    last: Option<RunMode>,
    switched: bool,
    /// The first comparison is over (both modes measured [`KEEP`] times, or the pool
    /// clearly ahead, [`CLEAR_GAP`]): from then on only probes run the other mode.
    compared: bool,
}

impl ThreadChoice {
    /// A choice with nothing measured.
    pub fn new() -> ThreadChoice {
        ThreadChoice::default()
    }

    /// The mode of the next run.
    pub fn next(&self) -> RunMode {
        // Run 0 is cold (page faults, caches): pool. Then alternate until the first
        // comparison is over (`compared`).
        let Some(last) = self.last else {
            return RunMode::Pool;
        };
        // The first run after a switch is not measured: the mode runs twice.
        if self.switched && self.runs > 1 {
            return last;
        }
        if !self.compared {
            return if self.samples[1].len() < self.samples[0].len() {
                RunMode::Serial
            } else {
                RunMode::Pool
            };
        }
        let best = self.best();
        if self.runs >= self.next_probe {
            best.other()
        } else {
            best
        }
    }

    /// Records a run of `mode` that took `t`, or `None` for a run that does not measure its
    /// mode (a pool run during which the pool's own stall detection sent its jobs to the
    /// calling thread: that is the pool's business, not a measure of it).
    pub fn record(&mut self, mode: RunMode, t: Option<Duration>) {
        self.runs += 1;
        self.counts[mode.index()] += 1;
        self.switched = self.last != Some(mode) || self.runs == 1;
        self.last = Some(mode);
        let Some(t) = t.filter(|_| !self.switched) else {
            return; // the cold run, the first after a switch, or not a measure
        };
        let best_before = self.best();
        let compared_before = self.compared;
        let s = &mut self.samples[mode.index()];
        if s.len() == KEEP {
            s.remove(0);
        }
        s.push(t);
        // Both modes' estimates as measured now.
        let (p, q) = (self.estimate(RunMode::Pool), self.estimate(RunMode::Serial));
        if !self.compared {
            let clear = p > 0.0 && q >= CLEAR_GAP * p;
            self.compared = clear || self.samples.iter().all(|s| s.len() == KEEP);
            if !self.compared {
                return;
            }
        }
        if !compared_before || mode != best_before {
            // Both measured: the first time, or a probe (of the mode not chosen) just ran.
            self.last_probe = self.runs;
        }
        // The next probe, the further the larger the gap, as measured now: the chosen
        // mode's estimate moves every run (a pool that became slow brings the probe of the
        // serial mode closer).
        let gap = p.max(q) / p.min(q).max(1e-9);
        let every = if gap < 1.2 {
            16
        } else if gap < 1.5 {
            64
        } else {
            256
        };
        self.next_probe = self.last_probe + every;
    }

    /// The mode the measurements favour (the pool until both are measured).
    pub fn best(&self) -> RunMode {
        if self.samples.iter().any(|s| s.is_empty()) {
            return RunMode::Pool;
        }
        if self.estimate(RunMode::Serial) < SERIAL_MARGIN * self.estimate(RunMode::Pool) {
            RunMode::Serial
        } else {
            RunMode::Pool
        }
    }

    /// Runs recorded in `mode`, measured or not (the cold first run and the first after each
    /// switch included).
    pub fn runs_in(&self, mode: RunMode) -> u64 {
        self.counts[mode.index()]
    }

    /// The fastest of the mode's kept samples, in seconds (0 without one).
    fn estimate(&self, mode: RunMode) -> f64 {
        self.samples[mode.index()]
            .iter()
            .map(|d| d.as_secs_f64())
            .min_by(|a, b| a.total_cmp(b))
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a choice for `n` runs whose times the closure gives per mode and run index;
    /// returns the modes run.
    fn drive(n: usize, time: impl Fn(RunMode, usize) -> f64) -> Vec<RunMode> {
        let mut c = ThreadChoice::new();
        (0..n)
            .map(|i| {
                let m = c.next();
                c.record(m, Some(Duration::from_secs_f64(time(m, i) * 1e-3)));
                m
            })
            .collect()
    }

    #[test]
    fn a_faster_pool_keeps_the_pool_with_rare_probes() {
        let modes = drive(1000, |m, _| if m == RunMode::Pool { 0.7 } else { 1.2 });
        let serial = modes.iter().filter(|&&m| m == RunMode::Serial).count();
        // 1 measured serial run to start (2 runs: the gap is clear), then a probe of 2 runs
        // per 256 (gap 1.71).
        assert_eq!(
            &modes[..4],
            &[
                RunMode::Pool,
                RunMode::Pool,
                RunMode::Serial,
                RunMode::Serial
            ]
        );
        assert!(modes[4..260].iter().all(|&m| m == RunMode::Pool));
        assert!(
            (2..=2 + 2 * (1000 / 256 + 1)).contains(&serial),
            "{serial} serial runs"
        );
        assert_eq!(modes[999], RunMode::Pool);
    }

    #[test]
    fn a_faster_serial_run_is_chosen() {
        let modes = drive(500, |m, _| if m == RunMode::Pool { 1.28 } else { 1.17 });
        let pool = modes[14..].iter().filter(|&&m| m == RunMode::Pool).count();
        // Gap 1.09: a pool probe of 2 runs every 16.
        assert!(pool <= 2 * (486 / 16 + 2), "{pool} pool runs");
        assert_eq!(modes[499], RunMode::Serial);
    }

    #[test]
    fn a_change_of_machine_state_is_followed() {
        // The pool is faster for 300 runs, then slower (the VM's slow state).
        let modes = drive(900, |m, i| match (m, i < 300) {
            (RunMode::Pool, true) => 0.7,
            (RunMode::Pool, false) => 1.3,
            (RunMode::Serial, _) => 1.17,
        });
        assert_eq!(modes[290], RunMode::Pool);
        // Found within a few runs of the change (the chosen mode is measured every run); the
        // pool is then probed every 16 runs (gap 1.11): 2 runs in 18 or so.
        let serial = modes[310..]
            .iter()
            .filter(|&&m| m == RunMode::Serial)
            .count();
        assert!(
            serial * 100 >= 85 * (900 - 310),
            "{serial} serial runs of {}",
            900 - 310
        );
    }

    #[test]
    fn the_first_run_after_a_switch_is_not_measured() {
        // Every run right after a switch is slow (a parked pool, a cold cache): ignored, the
        // pool stays chosen.
        let modes = drive(600, |m, i| match m {
            RunMode::Pool => 0.7,
            RunMode::Serial => 1.17,
        } + if i > 0 { 0.0 } else { 5.0 });
        let mut c = ThreadChoice::new();
        let mut last = None;
        for (i, &m) in modes.iter().enumerate() {
            let slow = last.is_some_and(|l| l != m);
            let t = if slow {
                1.5
            } else if m == RunMode::Pool {
                0.7
            } else {
                1.17
            };
            assert_eq!(c.next(), m, "run {i}");
            c.record(m, Some(Duration::from_secs_f64(t * 1e-3)));
            last = Some(m);
        }
        assert_eq!(c.best(), RunMode::Pool);
        assert_eq!(
            modes[..12]
                .iter()
                .filter(|&&m| m == RunMode::Serial)
                .count(),
            2
        );
    }

    #[test]
    fn a_close_first_comparison_takes_keep_runs_of_each_mode() {
        // Serial 0.98x the pool: faster, so 3 measured runs of each (6 serial runs in the
        // first 12), then the pool (within `SERIAL_MARGIN`).
        let modes = drive(40, |m, _| if m == RunMode::Pool { 1.0 } else { 0.98 });
        let serial = |r: &[RunMode]| r.iter().filter(|&&m| m == RunMode::Serial).count();
        assert_eq!(serial(&modes[..12]), 6);
        assert_eq!(serial(&modes[12..28]), 0);
        // A first serial run no faster than the pool's ends it after one.
        let modes = drive(40, |m, _| if m == RunMode::Pool { 1.0 } else { 1.02 });
        assert_eq!(serial(&modes[..12]), 2);
    }

    #[test]
    fn a_pool_slow_for_a_moment_is_chosen_again_soon() {
        // 20 slow pool runs (a serial period of the pool's stall detection, measured), then
        // fast again: back on the pool within two short probe periods.
        let modes = drive(400, |m, i| match m {
            RunMode::Pool if (100..120).contains(&i) => 1.5,
            RunMode::Pool => 0.7,
            RunMode::Serial => 1.17,
        });
        assert_eq!(modes[99], RunMode::Pool);
        let back = (120..400).find(|&i| modes[i..].iter().take(40).all(|&m| m == RunMode::Pool));
        assert!(back.is_some_and(|i| i < 120 + 2 * 64), "{back:?}");
    }

    /// Every run counts in its mode, also the first after each switch (which is not
    /// measured): `mnc bench` reports these counts as the runs that ran serially.
    #[test]
    fn every_run_counts_in_its_mode() {
        let mut c = ThreadChoice::new();
        let mut ran = [0u64; 2];
        for i in 0..600 {
            let m = c.next();
            ran[m.index()] += 1;
            let t =
                if m == RunMode::Pool { 0.7 } else { 1.2 } * if i % 50 == 7 { 3.0 } else { 1.0 };
            c.record(m, Some(Duration::from_secs_f64(t * 1e-3)));
        }
        // The 2 runs of the first comparison and the probes after it.
        assert!(ran[1] > 2, "{ran:?}");
        assert_eq!([c.runs_in(RunMode::Pool), c.runs_in(RunMode::Serial)], ran);
    }

    #[test]
    fn unmeasured_runs_change_nothing() {
        let mut c = ThreadChoice::new();
        for _ in 0..40 {
            let m = c.next();
            let t = if m == RunMode::Pool { 0.7 } else { 1.17 };
            c.record(m, Some(Duration::from_secs_f64(t * 1e-3)));
        }
        let before = (c.best(), c.runs_in(RunMode::Pool));
        for _ in 0..10 {
            c.record(RunMode::Pool, None);
        }
        // The choice stays; the runs are counted (they ran on the pool).
        assert_eq!(
            (c.best(), c.runs_in(RunMode::Pool)),
            (before.0, before.1 + 10)
        );
    }

    #[test]
    fn a_tie_keeps_the_pool() {
        let modes = drive(200, |_, _| 1.0);
        assert_eq!(modes[199], RunMode::Pool);
        assert!(
            modes[14..]
                .iter()
                .filter(|&&m| m == RunMode::Serial)
                .count()
                <= 2 * (186 / 16 + 1)
        );
    }
}
