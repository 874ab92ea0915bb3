//! The compile report as data: what `mnc compile` prints and what the Python binding's
//! `CompiledModel.report()` returns (one struct, so the two never disagree).

use mnc_ir::{Graph, Op};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Code generation figures of an x86-64 target.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CodegenSummary {
    /// Generated functions (one per op that runs JIT code).
    pub functions: usize,
    /// Machine code size in bytes.
    pub code_bytes: usize,
    /// Ops that run on the reference kernel instead of generated code.
    pub fallbacks: usize,
    /// Threads per run.
    pub threads: usize,
    /// Whether runs flush denormals to zero (FTZ/DAZ).
    pub flush_denormals: bool,
    /// With 2+ threads: whether each run uses the pool or the calling thread alone by
    /// measured run times (`--no-thread-choice` turns it off).
    pub thread_choice: bool,
    /// Weights packed for the kernels, bytes.
    pub weight_bytes: usize,
    /// The backend's activation arena (liveness), bytes.
    pub arena_bytes: usize,
    /// Ops whose output overwrites one of their inputs.
    pub in_place_ops: usize,
    /// Kernel scratch, bytes.
    pub scratch_bytes: usize,
    /// Runs of the compiled program per batch: 1, or the batch when it runs image by image
    /// (the arena and scratch figures are then one image run's; concurrent image runs each
    /// take their own).
    pub images: usize,
    /// How a batch above 1 runs, and why it is not split by image if it is not (empty for
    /// batch 1).
    pub batch_plan: String,
}

impl CodegenSummary {
    /// The figures of a compiled CPU model.
    pub fn of_cpu(m: &mnc_runtime::cpu::CompiledModel) -> Self {
        let r = m.report();
        CodegenSummary {
            functions: r.ops.iter().filter(|o| o.code_bytes > 0).count(),
            code_bytes: r.code_bytes,
            fallbacks: r.fallbacks(),
            threads: r.threads,
            flush_denormals: r.flush_denormals,
            thread_choice: r.thread_choice,
            weight_bytes: r.weight_bytes,
            arena_bytes: r.arena_bytes,
            in_place_ops: r.in_place_ops,
            scratch_bytes: r.scratch_bytes,
            images: r.images,
            batch_plan: r.batch_plan.clone(),
        }
    }
}

/// Wall time of the phases of a compilation, milliseconds (`codegen` only where code was
/// generated for the report: the x86-64 targets).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PhaseTimes {
    pub import_ms: f64,
    pub passes_ms: f64,
    pub codegen_ms: Option<f64>,
}

impl PhaseTimes {
    /// From measured durations.
    pub fn new(import: Duration, passes: Duration, codegen: Option<Duration>) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        PhaseTimes {
            import_ms: ms(import),
            passes_ms: ms(passes),
            codegen_ms: codegen.map(ms),
        }
    }
}

/// One pass of the pipeline as the compile report shows it: how often it ran, what it
/// changed, the node count before its first run and after its last run, and the net node
/// change of its own runs (other passes may run in between, in a fixed-point group).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PassSummary {
    pub pass: String,
    pub runs: usize,
    pub changes: usize,
    pub nodes_before: usize,
    pub nodes_after: usize,
    /// Sum over this pass's runs of (nodes after the run - nodes before it).
    pub nodes_net: i64,
}

/// Per-pass summaries in pipeline order (first run) from a pipeline report.
pub fn pass_summaries(r: &mnc_passes::PipelineReport) -> Vec<PassSummary> {
    let mut out: Vec<PassSummary> = Vec::new();
    let mut before = r.nodes_before;
    for rec in &r.records {
        let net = rec.nodes_after as i64 - before as i64;
        match out.iter_mut().find(|p| p.pass == rec.pass) {
            Some(p) => {
                p.runs += 1;
                p.changes += rec.changes;
                p.nodes_after = rec.nodes_after;
                p.nodes_net += net;
            }
            None => out.push(PassSummary {
                pass: rec.pass.to_string(),
                runs: 1,
                changes: rec.changes,
                nodes_before: before,
                nodes_after: rec.nodes_after,
                nodes_net: net,
            }),
        }
        before = rec.nodes_after;
    }
    out
}

/// What a compilation did: nodes before and after the passes, changes per pass, the ops of
/// the optimized graph by class, mult-adds, code generation and phase times.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CompileSummary {
    /// The model as the user named it.
    pub model: String,
    /// The target's name.
    pub target: String,
    /// Graph nodes (constants and inputs included) as imported (or as loaded from an artifact).
    pub nodes_imported: usize,
    /// Graph nodes after the passes.
    pub nodes_optimized: usize,
    /// Changes per pass, summed over the fixed-point iterations (empty for an artifact: its
    /// passes ran when it was written).
    pub changes_by_pass: BTreeMap<String, usize>,
    /// Every pass in pipeline order with its node counts (empty for an artifact).
    pub passes: Vec<PassSummary>,
    /// Ops of the optimized graph by class (`Conv/depthwise`, `SqueezeExcite`, ...).
    pub ops: BTreeMap<String, usize>,
    /// Mult-adds of the optimized graph (torchinfo conventions).
    pub mult_adds: Option<u64>,
    /// Code generation (x86-64 targets).
    pub codegen: Option<CodegenSummary>,
    /// Phase times.
    pub times: PhaseTimes,
}

impl CompileSummary {
    /// Summarizes the optimized graph `g`; `passes` is the pipeline's report (none for an
    /// artifact).
    pub fn new(
        model: &str,
        target: mnc_targets::Target,
        g: &Graph,
        nodes_imported: usize,
        passes: Option<&mnc_passes::PipelineReport>,
        codegen: Option<CodegenSummary>,
        times: PhaseTimes,
    ) -> Self {
        let mut ops: BTreeMap<String, usize> = BTreeMap::new();
        for id in g.node_ids() {
            let key = match &g.node(id).op {
                Op::Conv(c) => match &c.schedule {
                    Some(sc) => format!("Conv/{}", sc.class),
                    None => "Conv".to_string(),
                },
                Op::Constant(_) | Op::Input { .. } => continue,
                op => op.kind().to_string(),
            };
            *ops.entry(key).or_default() += 1;
        }
        let passes = passes.map(pass_summaries).unwrap_or_default();
        let changes_by_pass = passes.iter().map(|p| (p.pass.clone(), p.changes)).collect();
        CompileSummary {
            model: model.to_string(),
            target: target.name().to_string(),
            nodes_imported,
            nodes_optimized: g.node_count(),
            changes_by_pass,
            passes,
            ops,
            mult_adds: crate::cost::analyze(g, &Default::default())
                .ok()
                .map(|c| c.total_mult_adds),
            codegen,
            times,
        }
    }

    /// The report's text, as `mnc compile` prints it.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let join = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(s, "{}: compiled for target {}", self.model, self.target);
        let _ = writeln!(
            s,
            "nodes: {} imported -> {} after passes",
            self.nodes_imported, self.nodes_optimized
        );
        if !self.passes.is_empty() {
            let _ = writeln!(
                s,
                "passes (nodes before the first run -> after the last run; net change of the pass's own runs):"
            );
            for p in &self.passes {
                let _ = writeln!(
                    s,
                    "  {:<16} {:>2} run(s) {:>5} changes  nodes {:>5} -> {:<5} ({:+})",
                    p.pass, p.runs, p.changes, p.nodes_before, p.nodes_after, p.nodes_net
                );
            }
        }
        let _ = writeln!(s, "ops: {}", join(&self.ops));
        if let Some(m) = self.mult_adds {
            let _ = writeln!(s, "mult-adds: {:.2} M", m as f64 / 1e6);
        }
        if let Some(c) = &self.codegen {
            let _ = writeln!(
                s,
                "codegen: {} generated functions, {:.1} KiB of code, {} fallback op(s), {} thread(s) per run{}, denormals {}; packed weights {:.2} MB, the backend's arena {:.2} MB (liveness; {} op(s) in place) + kernel scratch {:.2} MB",
                c.functions,
                c.code_bytes as f64 / 1024.0,
                c.fallbacks,
                c.threads,
                mnc_targets::cpu::thread_choice_text(c.threads, c.thread_choice),
                if c.flush_denormals { "flushed" } else { "kept" },
                c.weight_bytes as f64 / 1e6,
                c.arena_bytes as f64 / 1e6,
                c.in_place_ops,
                c.scratch_bytes as f64 / 1e6,
            );
            if !c.batch_plan.is_empty() {
                let per = if c.images > 1 {
                    " (arena and scratch: per image run)"
                } else {
                    ""
                };
                let _ = writeln!(s, "{}{per}", c.batch_plan);
            }
        }
        let t = &self.times;
        let _ = write!(
            s,
            "time: import {:.1} ms, passes {:.1} ms",
            t.import_ms, t.passes_ms
        );
        let _ = match t.codegen_ms {
            Some(c) => writeln!(s, ", codegen {c:.1} ms"),
            None => writeln!(s),
        };
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnc_passes::{PassRecord, PipelineReport};

    fn rec(pass: &'static str, round: usize, changes: usize, nodes_after: usize) -> PassRecord {
        PassRecord {
            pass,
            round,
            changes,
            time: Duration::ZERO,
            nodes_after,
        }
    }

    /// A pass run once, then a fixed-point group of two passes over two rounds: nodes before
    /// the first run, after the last, and the net change of the pass's own runs only.
    #[test]
    fn pass_summaries_follow_the_runs() {
        let r = PipelineReport {
            nodes_before: 100,
            records: vec![
                rec("cleanup", 0, 3, 97),
                rec("a", 1, 5, 90),
                rec("b", 1, 2, 95),
                rec("a", 2, 1, 94),
                rec("b", 2, 0, 94),
            ],
            ..Default::default()
        };
        let s = pass_summaries(&r);
        let got: Vec<(&str, usize, usize, usize, usize, i64)> = s
            .iter()
            .map(|p| {
                let n = p.pass.as_str();
                (
                    n,
                    p.runs,
                    p.changes,
                    p.nodes_before,
                    p.nodes_after,
                    p.nodes_net,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("cleanup", 1, 3, 100, 97, -3),
                ("a", 2, 6, 97, 94, -7 - 1),
                ("b", 2, 2, 90, 94, 5),
            ]
        );
    }
}
