//! Benchmarking a compiled model: the figures `mnc bench` prints (text or JSON) and the
//! Python binding's `bench()` returns, from one implementation.

use crate::compiled::Model;
use crate::exec::Executable;
use anyhow::{bail, Result};
use mnc_ir::Tensor;
use serde::Serialize;

/// What to time.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Timed runs (at least 1).
    pub iters: usize,
    /// Untimed runs before timing.
    pub warmup: usize,
    /// x86-64 targets: also time every fused op (`run_profiled`, `iters` more runs).
    pub profile: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            iters: 50,
            warmup: 5,
            profile: false,
        }
    }
}

/// One fused op's share of a profiled CPU run, and where it sits under the roofline.
#[derive(Clone, Debug, Serialize)]
pub struct OpProfile {
    pub node: String,
    pub op: String,
    pub strategy: String,
    pub mean_ms: f64,
    pub flops: u64,
    pub gflops: f64,
    /// Compulsory memory traffic per run, from the compile report
    /// (`mnc_targets::cpu::OpReport::bytes`: output written once, every distinct input and
    /// constant read once; not measured cache misses).
    pub bytes: u64,
    /// `bytes` over the mean time.
    pub gbytes_per_s: f64,
    /// FLOPs per byte of compulsory traffic (0 when the op moves nothing).
    pub arithmetic_intensity: f64,
    /// The roofline's bound at this intensity, `min(peak, intensity x bandwidth)` with the
    /// measured peak and memory bandwidth of the run (absent without them).
    pub roof_gflops: Option<f64>,
    /// Which roof that is.
    pub bound: Option<Bound>,
    /// `gflops / roof_gflops`: above 1 for a memory-bound op means its data came from cache.
    pub roof_share: Option<f64>,
}

/// The roof that bounds an op on the roofline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    /// Arithmetic intensity x memory bandwidth is below the peak.
    Memory,
    /// The peak multiply-add rate.
    Compute,
}

/// The two measured roofs of a CPU run.
#[derive(Clone, Copy, Debug)]
pub struct Roofline {
    pub peak_gflops: f64,
    /// The int8 peak in GOP/s (the int8 convs' roof), when the target's int8 set has one.
    pub peak_int8_gops: Option<f64>,
    pub bandwidth_gbs: f64,
}

impl Roofline {
    /// The attainable GFLOP/s at `intensity` FLOP/byte and the roof that sets it, under the
    /// int8 peak for `int8` multiply-adds (where measured), else the f32 one.
    pub fn bound(&self, intensity: f64, int8: bool) -> (f64, Bound) {
        let peak = match (int8, self.peak_int8_gops) {
            (true, Some(p)) => p,
            _ => self.peak_gflops,
        };
        let mem = intensity * self.bandwidth_gbs;
        if mem < peak {
            (mem, Bound::Memory)
        } else {
            (peak, Bound::Compute)
        }
    }
}

/// The result of a benchmark (the fields of `mnc bench --format json`).
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub model: String,
    pub target: String,
    pub device: String,
    pub batch: usize,
    pub iters: usize,
    pub warmup: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub p90_ms: f64,
    pub throughput_per_s: f64,
    pub mult_adds: u64,
    pub gflops: f64,
    pub build_ms: f64,
    /// The target's peak for the cores used: a measured multiply-add loop on one core in the
    /// target's vector width, times the cores (x86-64 targets on this host).
    pub peak_gflops: Option<f64>,
    pub peak_share: Option<f64>,
    /// Cores the peak counts.
    pub peak_cores: Option<usize>,
    /// The int8 peak for the same cores, in GOP/s (2 per 8-bit multiply-add): a measured
    /// loop of the int8 kernel set's conv instruction (`vpdpbusd` on VNNI hosts); the roof of
    /// the int8 convs in the profile. `None` without an int8 set with such a loop.
    pub peak_int8_gops: Option<f64>,
    /// `--profile` on x86-64 targets: the measured memory bandwidth in GB/s
    /// ([`memory_bandwidth_gbs`]: a triad over 192 MiB on the `peak_cores` threads of the
    /// kernels' pool, 12 bytes per element: two reads and a write, the write-allocate read
    /// not counted, as in STREAM).
    pub bandwidth_gbs: Option<f64>,
    /// `--profile` on x86-64 targets: the bandwidth from L2 in GB/s, one core's triad over
    /// 192 KiB ([`l2_bandwidth_gbs`]) times `peak_cores` (the convention of the peak).
    pub cache_bandwidth_gbs: Option<f64>,
    pub timing: String,
    /// x86-64 targets: stalls of the kernels' thread pool during the timed runs (a long wait
    /// on a pool thread descheduled in a task, or a pool thread running on the caller's CPU;
    /// 3 within 50 ms start a period in which the kernels run on the calling thread alone,
    /// `mnc_targets::cpu::par`). A period started in the warm-up runs is not counted.
    pub pool_stalls: Option<u64>,
    /// x86-64 targets run on 2 or more threads: how many of the timed runs ran on the
    /// calling thread alone, the runtime having measured that faster than the thread pool
    /// (or probing it again; `mnc_runtime::threads`).
    pub serial_runs: Option<u64>,
    /// x86-64 targets run on 2 or more threads: the median time, in ns, for two threads to
    /// pass a cache line there and back ([`core_round_trip_ns`]), measured right after the
    /// timed runs. It tells the machine's state: 70-100 ns on the development VM normally,
    /// 340-400 ns (and slower multi-thread runs) when its vCPUs sit on distant cores.
    pub core_round_trip_ns: Option<f64>,
    pub profile: Option<Vec<OpProfile>>,
}

/// The `q` quantile (0..=1) of sorted, non-empty samples (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Times `model` on a fixed pseudo-random input in [-1, 1) (one per graph input).
pub fn bench(model: &Model, opts: &BenchOptions) -> Result<BenchResult> {
    if opts.iters == 0 {
        bail!("--iters must be at least 1");
    }
    if opts.profile && !model.target().is_jit() {
        bail!("--profile needs an x86-64 target (per-op timing of the JIT code)");
    }
    let inputs: std::sync::Arc<[Tensor]> = model
        .inputs()
        .iter()
        .enumerate()
        .map(|(k, p)| mnc_passes::samples::Lcg::new(1 + k as u64).tensor(&p.shape, -1.0, 1.0))
        .collect();
    for _ in 0..opts.warmup {
        model.run_shared(&inputs)?;
    }
    // Not preallocated from a caller's number (a huge --iters must not abort the process).
    let mut ms: Vec<f64> = Vec::new();
    let stalls_before = mnc_targets::cpu::par::stalls();
    let choice = |m: &Model| match m.executable() {
        Executable::Cpu(c) if c.report().threads >= 2 => Some(c.thread_choice_runs().1),
        _ => None,
    };
    let serial_before = choice(model);
    for _ in 0..opts.iters {
        let t = std::time::Instant::now();
        model.run_shared(&inputs)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let serial_runs = choice(model).zip(serial_before).map(|(a, b)| a - b);
    let pool_stalls = matches!(model.executable(), Executable::Cpu(_))
        .then(|| mnc_targets::cpu::par::stalls() - stalls_before);
    let core_round_trip_ns = match model.executable() {
        Executable::Cpu(m) if m.report().threads >= 2 => core_round_trip_ns(),
        _ => None,
    };
    ms.sort_by(|x, y| x.total_cmp(y));
    let (median, min, p90) = (quantile(&ms, 0.5), ms[0], quantile(&ms, 0.9));
    let batch = model.batch();
    let mult_adds = model.mult_adds();
    // 2 FLOPs per mult-add.
    let gflops = 2.0 * mult_adds as f64 / (median / 1e3) / 1e9;
    let peak = match model.executable() {
        Executable::Cpu(m) => mnc_targets::cpu::kernels::peak_gflops(m.target()).map(|p| {
            let cores = m
                .report()
                .threads
                .clamp(1, mnc_targets::cpu::par::physical_cores());
            (p * cores as f64, cores)
        }),
        _ => None,
    };
    let peak_int8 = match model.executable() {
        Executable::Cpu(m) => peak.and_then(|(_, cores)| {
            mnc_targets::cpu::kernels::peak_int8_gops(m.target()).map(|p| p * cores as f64)
        }),
        _ => None,
    };
    let (mut bandwidth, mut cache_bandwidth, mut profile) = (None, None, None);
    if let (Executable::Cpu(m), true) = (model.executable(), opts.profile) {
        let cores = peak.map_or(1, |p| p.1);
        bandwidth = memory_bandwidth_gbs(cores);
        cache_bandwidth = l2_bandwidth_gbs().map(|b| b * cores as f64);
        let roof = peak.zip(bandwidth).map(|(p, b)| Roofline {
            peak_gflops: p.0,
            peak_int8_gops: peak_int8,
            bandwidth_gbs: b,
        });
        profile = Some(profile_ops(m, &inputs, opts.iters, roof)?);
    }
    Ok(BenchResult {
        model: model.name().to_string(),
        target: model.target().name().to_string(),
        device: model.executable().describe(),
        batch,
        iters: opts.iters,
        warmup: opts.warmup,
        median_ms: median,
        min_ms: min,
        p90_ms: p90,
        throughput_per_s: batch as f64 / (median / 1e3),
        mult_adds,
        gflops,
        build_ms: model.build_time().as_secs_f64() * 1e3,
        peak_gflops: peak.map(|p| p.0),
        peak_share: peak.map(|p| gflops / p.0),
        peak_cores: peak.map(|p| p.1),
        peak_int8_gops: peak_int8,
        bandwidth_gbs: bandwidth,
        cache_bandwidth_gbs: cache_bandwidth,
        timing: "wall clock per run(), including host<->device copies for GPU targets".into(),
        pool_stalls,
        serial_runs,
        core_round_trip_ns,
        profile,
    })
}

impl BenchResult {
    /// The text `mnc bench` prints.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} on {} ({}), batch {}",
            self.model, self.target, self.device, self.batch
        );
        let _ = writeln!(
            s,
            "build (import + passes + codegen): {:.1} ms",
            self.build_ms
        );
        let _ = writeln!(
            s,
            "latency over {} runs (after {} warm-up): median {:.3} ms, min {:.3} ms, p90 {:.3} ms",
            self.iters, self.warmup, self.median_ms, self.min_ms, self.p90_ms
        );
        let _ = writeln!(s, "throughput: {:.1} inferences/s", self.throughput_per_s);
        if let Some(n) = self.pool_stalls.filter(|&n| n > 0) {
            let _ = writeln!(
                s,
                "thread pool: {n} stall(s) in the timed runs (a pool thread descheduled in a task, or on this thread's core; 3 within 50 ms make the kernels run on the calling thread alone for 20 ms-1 s, see docs/CPU_BACKEND.md)"
            );
        }
        if let Some(n) = self.serial_runs.filter(|&n| n > 0) {
            let _ = writeln!(
                s,
                "thread choice: {n} of the {} timed runs on the calling thread alone (measured faster than the thread pool, or trying it again; see docs/CPU_BACKEND.md)",
                self.iters
            );
        }
        if let Some(ns) = self.core_round_trip_ns {
            let _ = writeln!(
                s,
                "core-to-core round trip: {ns:.0} ns (two threads passing a cache line, after the timed runs; several times the usual figure means distant or shared cores, see docs/BENCHMARKS.md)"
            );
        }
        let _ = writeln!(
            s,
            "compute: {:.3} G mult-adds per run -> {:.1} GFLOP/s (2 FLOPs per mult-add)",
            self.mult_adds as f64 / 1e9,
            self.gflops
        );
        if let (Some(p), Some(cores)) = (self.peak_gflops, self.peak_cores) {
            let _ = writeln!(
                s,
                "share of peak: {:.1}% of {p:.0} GFLOP/s ({cores} core(s) x a measured multiply-add loop in the target's vector width)",
                100.0 * self.gflops / p
            );
        }
        if let (Some(p), Some(cores)) = (self.peak_int8_gops, self.peak_cores) {
            let _ = writeln!(
                s,
                "int8 peak: {p:.0} GOP/s ({cores} core(s) x a measured loop of the int8 kernels' multiply-add instruction; the roof of the integer convs): {:.1}% of it",
                100.0 * self.gflops / p
            );
        }
        if let (Some(b), Some(cores)) = (self.bandwidth_gbs, self.peak_cores) {
            let _ = write!(
                s,
                "memory bandwidth: {b:.1} GB/s (triad over {} MiB, {cores} thread(s))",
                (3 * 4 * MEMORY_TRIAD_LEN) >> 20
            );
            if let Some(c) = self.cache_bandwidth_gbs {
                let _ = write!(s, ", from L2 {c:.0} GB/s (one core's triad x {cores})");
            }
            if let Some(p) = self.peak_gflops {
                let _ = write!(s, "; ridge point {:.1} FLOP/byte", p / b);
            }
            let _ = writeln!(s);
        }
        if self.target.starts_with("cuda") {
            let _ = writeln!(
                s,
                "(GPU timing is wall clock per run, including host<->device copies)"
            );
        }
        if let Some(p) = &self.profile {
            let _ = writeln!(
                s,
                "\nper op (mean over {} profiled runs; bytes: compulsory traffic, each input read and the output written once; roof: min(peak, FLOP/byte x memory bandwidth), the int8 peak for the integer convs; GFLOP/s of those count 2 ops per 8-bit multiply-add):",
                self.iters
            );
            let _ = writeln!(
                s,
                "{:>9} {:>6} {:>9} {:>8} {:>8} {:<7} {:>7}  {:<18} {:<24} node",
                "ms", "%", "GFLOP/s", "GB/s", "FLOP/B", "bound", "roof%", "op", "strategy"
            );
            let total: f64 = p.iter().map(|r| r.mean_ms).sum();
            for r in p {
                let bound = match r.bound {
                    Some(Bound::Memory) => "memory",
                    Some(Bound::Compute) => "compute",
                    None => "-",
                };
                let share = r
                    .roof_share
                    .map_or("-".to_string(), |x| format!("{:.1}%", 100.0 * x));
                let _ = writeln!(
                    s,
                    "{:>9.4} {:>5.1}% {:>9.1} {:>8.2} {:>8.2} {:<7} {:>7}  {:<18} {:<24} {}",
                    r.mean_ms,
                    100.0 * r.mean_ms / total.max(1e-12),
                    r.gflops,
                    r.gbytes_per_s,
                    r.arithmetic_intensity,
                    bound,
                    share,
                    r.op,
                    r.strategy,
                    r.node
                );
            }
        }
        s
    }
}

/// Mean wall time per generated step over `iters` profiled runs, joined with the compile
/// report's op kind, lowering strategy, FLOPs and bytes (by node name), in execution order,
/// placed under `roof` when given.
fn profile_ops(
    m: &mnc_runtime::cpu::CompiledModel,
    input: &[Tensor],
    iters: usize,
    roof: Option<Roofline>,
) -> Result<Vec<OpProfile>> {
    let mut sums: Vec<(String, f64)> = Vec::new();
    for _ in 0..iters {
        let (_, times) = m.run_profiled(input)?;
        if sums.is_empty() {
            sums = times.iter().map(|(n, _)| (n.clone(), 0.0)).collect();
        }
        for ((_, acc), (_, d)) in sums.iter_mut().zip(&times) {
            *acc += d.as_secs_f64() * 1e3;
        }
    }
    let report = m.report();
    let images = report.images.max(1) as u64;
    Ok(sums
        .into_iter()
        .map(|(node, total)| {
            let op = report.ops.iter().find(|o| o.node == node);
            let mean_ms = total / iters as f64;
            op_profile(
                node,
                op.map(|o| o.op.to_string()).unwrap_or_default(),
                op.map(|o| o.strategy.clone()).unwrap_or_default(),
                mean_ms,
                // A split batch's ops are one image's (its head's the batch's); its profiled
                // times cover every image.
                op.map_or((0, 0), |o| {
                    let times = if o.per_batch { 1 } else { images };
                    (o.flops * times, o.bytes * times)
                }),
                op.is_some_and(|o| o.int8),
                roof,
            )
        })
        .collect())
}

/// One op's rates (per second of `mean_ms`), intensity and place under `roof`.
fn op_profile(
    node: String,
    op: String,
    strategy: String,
    mean_ms: f64,
    (flops, bytes): (u64, u64),
    int8: bool,
    roof: Option<Roofline>,
) -> OpProfile {
    let per_s = |x: u64| {
        if mean_ms > 0.0 {
            x as f64 / (mean_ms / 1e3) / 1e9
        } else {
            0.0
        }
    };
    let gflops = per_s(flops);
    let arithmetic_intensity = if bytes > 0 {
        flops as f64 / bytes as f64
    } else {
        0.0
    };
    let place = roof.map(|r| r.bound(arithmetic_intensity, int8));
    OpProfile {
        node,
        op,
        strategy,
        mean_ms,
        flops,
        gflops,
        bytes,
        gbytes_per_s: per_s(bytes),
        arithmetic_intensity,
        roof_gflops: place.map(|p| p.0),
        bound: place.map(|p| p.1),
        roof_share: place.and_then(|p| (p.0 > 0.0).then(|| gflops / p.0)),
    }
}

/// Bytes the [`triad`] moves per element: two 4-byte reads and one 4-byte write (the
/// STREAM convention: the read a write-allocate cache does before the write is not counted).
const TRIAD_BYTES: usize = 12;

/// `a[i] = b[i] + s * c[i]`: the streaming kernel the bandwidth figures time (plain Rust,
/// vectorized by the compiler for the build's baseline ISA).
fn triad(a: &mut [f32], b: &[f32], c: &[f32], s: f32) {
    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
        *a = b + s * c;
    }
}

/// The median time, in ns, for two threads to pass a cache line there and back: this thread
/// and a scoped one alternate on one atomic word, 5 samples of up to 2000 round trips each
/// (a sample stops after 50 ms and counts the trips it made). Each side spins, yielding its
/// core after 100 fruitless spins, so two threads placed on one CPU (or a loaded machine)
/// still finish: the figure then shows scheduler hand-offs. `None` when no thread can be
/// spawned.
pub fn core_round_trip_ns() -> Option<f64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    const TRIPS: u64 = 2000;
    const SAMPLES: usize = 5;
    const LIMIT: std::time::Duration = std::time::Duration::from_millis(50);
    /// Waits until `w` holds `want` (true) or the other side stopped (`u64::MAX`, false).
    fn wait(w: &AtomicU64, want: u64) -> bool {
        let mut spins = 0u32;
        loop {
            match w.load(Ordering::Acquire) {
                v if v == want => return true,
                u64::MAX => return false,
                _ => {}
            }
            spins += 1;
            if spins.is_multiple_of(100) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
    let word = AtomicU64::new(0);
    std::thread::scope(|sc| {
        let echo = std::thread::Builder::new()
            .spawn_scoped(sc, || {
                // Answers every odd value with the next even one until told to stop.
                let mut v = 1;
                while wait(&word, v) {
                    word.store(v + 1, Ordering::Release);
                    v += 2;
                }
            })
            .ok()?;
        let mut times = Vec::with_capacity(SAMPLES);
        let mut v = 1;
        for _ in 0..SAMPLES {
            let t = std::time::Instant::now();
            let mut trips = 0u64;
            while trips < TRIPS && t.elapsed() < LIMIT {
                word.store(v, Ordering::Release);
                // Only this thread stores `u64::MAX`: the echo always answers.
                wait(&word, v + 1);
                v += 2;
                trips += 1;
            }
            times.push(t.elapsed().as_secs_f64() * 1e9 / trips.max(1) as f64);
        }
        // The echo waits for the next odd value: it sees the stop.
        word.store(u64::MAX, Ordering::Release);
        echo.join().ok()?;
        times.sort_by(f64::total_cmp);
        Some(times[SAMPLES / 2])
    })
}

/// Three zero-initialized f32 arrays of `n` elements, or `None` when memory is short.
fn triad_arrays(n: usize) -> Option<[Vec<f32>; 3]> {
    let make = || -> Option<Vec<f32>> {
        let mut v = Vec::new();
        v.try_reserve_exact(n).ok()?;
        v.resize(n, 0.0);
        Some(v)
    };
    Some([make()?, make()?, make()?])
}

/// Elements of each of the three arrays [`memory_bandwidth_gbs`] streams: 64 MiB of f32,
/// 192 MiB in all, beyond the last-level cache of current x86 parts.
const MEMORY_TRIAD_LEN: usize = 16 << 20;

/// The measured memory bandwidth in GB/s over `threads` threads: the best of 3 [`triad`]
/// passes over three arrays of [`MEMORY_TRIAD_LEN`] floats, in 8 chunks per thread handed
/// out by the kernels' pool (`mnc_targets::cpu::par::for_each`, as the ops are), after a
/// first pass that maps the pages. `None` when the arrays cannot be allocated.
pub fn memory_bandwidth_gbs(threads: usize) -> Option<f64> {
    const N: usize = MEMORY_TRIAD_LEN;
    let chunks = threads.max(1) * 8;
    let len = N / chunks;
    let parts: Vec<std::sync::Mutex<[Vec<f32>; 3]>> = (0..chunks)
        .map(|_| triad_arrays(len).map(std::sync::Mutex::new))
        .collect::<Option<_>>()?;
    let s = std::hint::black_box(0.5f32);
    let pass = || {
        mnc_targets::cpu::par::for_each(threads, chunks, &|t| {
            // Each task locks its own chunk: never contended, so never poisoned by another.
            let mut p = parts[t].lock().unwrap_or_else(|e| e.into_inner());
            let [a, b, c] = &mut *p;
            triad(a, b, c, s);
            std::hint::black_box(a.as_ptr());
        })
    };
    pass();
    let bytes = (TRIAD_BYTES * len * chunks) as f64;
    Some(mnc_targets::cpu::kernels::best_giga_rate(3, bytes, pass))
}

/// The measured bandwidth of one core from its L2 cache in GB/s: the best of 5 runs of 200
/// [`triad`] passes over three 64 KiB arrays (192 KiB: beyond L1, inside the L2 of current
/// x86 cores).
pub fn l2_bandwidth_gbs() -> Option<f64> {
    const N: usize = 16 << 10;
    const PASSES: usize = 200;
    let [mut a, b, c] = triad_arrays(N)?;
    let s = std::hint::black_box(0.5f32);
    triad(&mut a, &b, &c, s);
    let bytes = (TRIAD_BYTES * N * PASSES) as f64;
    Some(mnc_targets::cpu::kernels::best_giga_rate(5, bytes, || {
        for _ in 0..PASSES {
            triad(std::hint::black_box(&mut a), &b, &c, s);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOF: Roofline = Roofline {
        peak_gflops: 100.0,
        peak_int8_gops: Some(400.0),
        bandwidth_gbs: 10.0,
    };

    fn op(flops: u64, bytes: u64) -> OpProfile {
        op_profile(
            "n".into(),
            "Conv".into(),
            "conv-gemm".into(),
            1.0,
            (flops, bytes),
            false,
            Some(ROOF),
        )
    }

    /// An int8 conv is placed under the int8 peak (past the ridge), a float one under the
    /// f32 peak; without a measured int8 peak the f32 one bounds both.
    #[test]
    fn int8_convs_are_placed_under_the_int8_peak() {
        let q = |roof| {
            op_profile(
                "q".into(),
                "QConv".into(),
                "int8-conv".into(),
                1.0,
                (200_000_000, 1_000_000),
                true,
                Some(roof),
            )
        };
        let r = q(ROOF);
        assert_eq!(
            (r.roof_gflops, r.bound),
            (Some(400.0), Some(Bound::Compute))
        );
        assert_eq!(r.roof_share, Some(0.5));
        let f = q(Roofline {
            peak_int8_gops: None,
            ..ROOF
        });
        assert_eq!(f.roof_gflops, Some(100.0));
        // Below the int8 ridge (40 FLOP/byte here) memory bounds it as any op.
        let m = op_profile(
            "q".into(),
            "QConv".into(),
            "int8-conv".into(),
            1.0,
            (20_000_000, 1_000_000),
            true,
            Some(ROOF),
        );
        assert_eq!((m.roof_gflops, m.bound), (Some(200.0), Some(Bound::Memory)));
    }

    /// Rates, intensity and the roof that bounds the op, on both sides of the ridge point
    /// (10 FLOP/byte here).
    #[test]
    fn an_op_is_placed_under_the_lower_roof() {
        // 2 MFLOP and 1 MB in 1 ms: 2 GFLOP/s, 1 GB/s, 2 FLOP/byte -> memory roof 20 GFLOP/s.
        let m = op(2_000_000, 1_000_000);
        assert_eq!((m.gflops, m.gbytes_per_s), (2.0, 1.0));
        assert_eq!(m.arithmetic_intensity, 2.0);
        assert_eq!((m.roof_gflops, m.bound), (Some(20.0), Some(Bound::Memory)));
        assert_eq!(m.roof_share, Some(0.1));
        // 50 MFLOP over 1 MB: 50 FLOP/byte, past the ridge -> the peak bounds it.
        let c = op(50_000_000, 1_000_000);
        assert_eq!(
            (c.roof_gflops, c.bound),
            (Some(100.0), Some(Bound::Compute))
        );
        assert_eq!(c.roof_share, Some(0.5));
        // Nothing moved (no step data): no intensity, a zero memory roof, no share.
        let z = op(0, 0);
        assert_eq!((z.arithmetic_intensity, z.roof_share), (0.0, None));
        // Without measured roofs, no placement.
        let n = op_profile(
            "n".into(),
            "Relu".into(),
            "act".into(),
            1.0,
            (0, 8),
            false,
            None,
        );
        assert_eq!((n.roof_gflops, n.bound, n.roof_share), (None, None, None));
        assert_eq!(n.gbytes_per_s, 8e-6);
    }

    fn result(profile: Vec<OpProfile>) -> BenchResult {
        BenchResult {
            model: "m".into(),
            target: "x86_64-avx2".into(),
            device: "cpu".into(),
            batch: 1,
            iters: 3,
            warmup: 1,
            median_ms: 1.0,
            min_ms: 1.0,
            p90_ms: 1.0,
            throughput_per_s: 1000.0,
            mult_adds: 1_000_000,
            gflops: 2.0,
            build_ms: 1.0,
            peak_gflops: Some(ROOF.peak_gflops),
            peak_share: Some(0.02),
            peak_cores: Some(2),
            peak_int8_gops: ROOF.peak_int8_gops,
            bandwidth_gbs: Some(ROOF.bandwidth_gbs),
            cache_bandwidth_gbs: Some(40.0),
            timing: String::new(),
            pool_stalls: Some(0),
            serial_runs: None,
            core_round_trip_ns: Some(85.0),
            profile: Some(profile),
        }
    }

    /// Two threads pass the line back and forth and the figure is a time per trip, also
    /// on a loaded machine (the spinning sides yield; a slow sample counts the trips it made).
    #[test]
    fn core_round_trip_is_measured() {
        let ns = core_round_trip_ns().expect("a round trip figure");
        assert!(ns.is_finite() && ns > 0.0, "{ns} ns");
        let t = result(vec![op(2_000_000, 1_000_000)]).text();
        assert!(t.contains("core-to-core round trip: 85 ns"), "{t}");
    }

    /// The text has the roofline columns, one row per op, and the bandwidth line.
    #[test]
    fn the_profile_text_shows_bandwidth_intensity_and_roof() {
        let t = result(vec![op(2_000_000, 1_000_000), op(50_000_000, 1_000_000)]).text();
        assert!(
            t.contains("memory bandwidth: 10.0 GB/s (triad over 192 MiB, 2 thread(s)), from L2 40 GB/s (one core's triad x 2); ridge point 10.0 FLOP/byte"),
            "{t}"
        );
        let header = t
            .lines()
            .find(|l| l.contains("GFLOP/s") && l.contains("node"));
        let header: Vec<&str> = header.expect(&t).split_whitespace().collect();
        assert_eq!(
            header,
            ["ms", "%", "GFLOP/s", "GB/s", "FLOP/B", "bound", "roof%", "op", "strategy", "node"]
        );
        let rows: Vec<Vec<&str>> = t
            .lines()
            .filter(|l| l.ends_with(" n"))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                [
                    "1.0000",
                    "50.0%",
                    "2.0",
                    "1.00",
                    "2.00",
                    "memory",
                    "10.0%",
                    "Conv",
                    "conv-gemm",
                    "n"
                ],
                [
                    "1.0000",
                    "50.0%",
                    "50.0",
                    "1.00",
                    "50.00",
                    "compute",
                    "50.0%",
                    "Conv",
                    "conv-gemm",
                    "n"
                ],
            ]
        );
    }

    /// `--format json` carries the roofline fields a plotting script reads.
    #[test]
    fn the_json_has_the_roofline_fields() {
        let j = serde_json::to_value(result(vec![op(2_000_000, 1_000_000)])).unwrap();
        assert_eq!(j["bandwidth_gbs"], 10.0);
        assert_eq!(j["cache_bandwidth_gbs"], 40.0);
        assert_eq!(j["peak_gflops"], 100.0);
        assert_eq!(j["peak_int8_gops"], 400.0);
        let p = &j["profile"][0];
        assert_eq!(p["bytes"], 1_000_000);
        assert_eq!(p["gbytes_per_s"], 1.0);
        assert_eq!(p["arithmetic_intensity"], 2.0);
        assert_eq!(p["roof_gflops"], 20.0);
        assert_eq!(p["bound"], "memory");
        assert_eq!(p["roof_share"], 0.1);
    }
}
