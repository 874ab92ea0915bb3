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

/// One fused op's share of a profiled CPU run.
#[derive(Clone, Debug, Serialize)]
pub struct OpProfile {
    pub node: String,
    pub op: String,
    pub strategy: String,
    pub mean_ms: f64,
    pub flops: u64,
    pub gflops: f64,
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
    pub timing: String,
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
    for _ in 0..opts.iters {
        let t = std::time::Instant::now();
        model.run_shared(&inputs)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let profile = match (model.executable(), opts.profile) {
        (Executable::Cpu(m), true) => Some(profile_ops(m, &inputs, opts.iters)?),
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
        timing: "wall clock per run(), including host<->device copies for GPU targets".into(),
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
        if self.target.starts_with("cuda") {
            let _ = writeln!(
                s,
                "(GPU timing is wall clock per run, including host<->device copies)"
            );
        }
        if let Some(p) = &self.profile {
            let _ = writeln!(s, "\nper op (mean over {} profiled runs):", self.iters);
            let _ = writeln!(
                s,
                "{:>9} {:>6} {:>9}  {:<18} {:<24} node",
                "ms", "%", "GFLOP/s", "op", "strategy"
            );
            let total: f64 = p.iter().map(|r| r.mean_ms).sum();
            for r in p {
                let _ = writeln!(
                    s,
                    "{:>9.4} {:>5.1}% {:>9.1}  {:<18} {:<24} {}",
                    r.mean_ms,
                    100.0 * r.mean_ms / total.max(1e-12),
                    r.gflops,
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
/// report's op kind, lowering strategy and FLOPs (by node name), in execution order.
fn profile_ops(
    m: &mnc_runtime::cpu::CompiledModel,
    input: &[Tensor],
    iters: usize,
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
    Ok(sums
        .into_iter()
        .map(|(node, total)| {
            let op = report.ops.iter().find(|o| o.node == node);
            let flops = op.map(|o| o.flops).unwrap_or(0);
            let mean_ms = total / iters as f64;
            OpProfile {
                op: op.map(|o| o.op.to_string()).unwrap_or_default(),
                strategy: op.map(|o| o.strategy.clone()).unwrap_or_default(),
                flops,
                gflops: if mean_ms > 0.0 {
                    flops as f64 / (mean_ms / 1e3) / 1e9
                } else {
                    0.0
                },
                mean_ms,
                node,
            }
        })
        .collect())
}
