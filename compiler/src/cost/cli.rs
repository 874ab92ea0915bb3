//! The `mnc cost-report` subcommand: arguments, import (and optionally optimization) of
//! each model, analysis and rendering.

use super::format::{render, Format};
use super::{analyze, CostOptions, ModelCost};
use anyhow::{bail, Context};
use std::path::PathBuf;

/// Pipeline stage whose graph is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// The graph as imported from ONNX (BatchNorm kept when the export kept it).
    Imported,
    /// The graph after the optimization pipeline (BN folding, fusion).
    Optimized,
}

impl Stage {
    /// The stage named `imported` or `optimized`.
    pub fn from_name(name: &str) -> Option<Stage> {
        [Stage::Imported, Stage::Optimized]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    /// `imported` or `optimized`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Imported => "imported",
            Stage::Optimized => "optimized",
        }
    }
}

/// Arguments of `mnc cost-report`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    about = "Per-layer and total parameters, mult-adds and memory (torchinfo conventions)",
    long_about = "Per-layer and total parameters, mult-adds and memory of one or more ONNX models, \
with torchinfo 1.8's conventions: conv mult-adds = (weight + bias elements) x N x output H x W; \
Gemm/MatMul = parameters x output rows; BatchNorm/ChannelAffine = N x parameters (running mean/var \
are buffers, not parameters); parameter-free layers = 0. Forward/backward pass size = 2 x the output \
bytes of every layer with parameters; MB = 10^6 bytes. Also a depthwise-separable analysis and a \
breakdown by conv class. See docs/COST.md."
)]
pub struct CostArgs {
    /// ONNX model files or `zoo:NAME` built-in models; several give a side-by-side comparison.
    #[arg(value_name = "MODEL.onnx|zoo:NAME", required = true)]
    pub models: Vec<PathBuf>,
    /// Batch size given to the graph inputs (default: the export's, 1 if symbolic).
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// Mark parameters whose tensor name starts with PREFIX as non-trainable (repeatable).
    #[arg(long = "freeze", value_name = "PREFIX")]
    pub freeze: Vec<String>,
    /// Report the imported graph or the graph after the optimization pipeline.
    #[arg(long, value_enum, default_value_t = Stage::Imported)]
    pub stage: Stage,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Imports, analyzes and renders every model of `args`; the report text.
pub fn report(args: &CostArgs) -> anyhow::Result<String> {
    if args.batch == Some(0) {
        bail!("--batch must be at least 1");
    }
    let opts = CostOptions {
        freeze: args.freeze.clone(),
        stage: Some(args.stage.as_str().to_string()),
    };
    let mut costs: Vec<ModelCost> = Vec::with_capacity(args.models.len());
    for path in &args.models {
        // The import error names the file.
        let graph = crate::model::load(&path.to_string_lossy(), args.batch)?;
        let cost = cost_at_stage(graph, &opts, args.stage)
            .with_context(|| format!("{}", path.display()))?;
        costs.push(cost);
    }
    for (cost, label) in costs.iter_mut().zip(model_labels(&args.models)) {
        cost.model = label;
    }
    Ok(render(&costs, args.format)?)
}

/// The cost report of an imported graph at `stage` (for `Optimized`, with a note of what the
/// pipeline saved). The CLI and the Python binding's `cost_report` both call it.
pub fn cost_at_stage(
    graph: mnc_ir::Graph,
    opts: &CostOptions,
    stage: Stage,
) -> anyhow::Result<ModelCost> {
    Ok(match stage {
        Stage::Imported => analyze(&graph, opts)?,
        Stage::Optimized => {
            let before = analyze(&graph, opts)?;
            let optimized = optimize(graph).context("optimizing")?;
            let mut after = analyze(&optimized, opts)?;
            after.notes.push(savings_note(&before, &after));
            after
        }
    })
}

/// The graph `--stage optimized` reports: the full pipeline as `mnc compile` runs it
/// (scheduled for x86_64-avx2; schedules do not change any figure of the report).
pub fn optimize(g: mnc_ir::Graph) -> anyhow::Result<mnc_ir::Graph> {
    crate::exec::optimized(g, mnc_targets::Target::X86_64Avx2)
}

/// The note of an optimized-stage report: what the pipeline changed against the imported
/// graph.
pub fn savings_note(before: &ModelCost, after: &ModelCost) -> String {
    let with_params = |c: &ModelCost| c.layers.iter().filter(|l| l.params > 0).count();
    format!(
        "optimized vs imported: params {} -> {}, layers {} -> {} ({} -> {} with params), \
         mult-adds {} -> {}, forward/backward pass size {:.2} -> {:.2} MB",
        super::format::commas(before.total_params),
        super::format::commas(after.total_params),
        before.layers.len(),
        after.layers.len(),
        with_params(before),
        with_params(after),
        super::format::commas(before.total_mult_adds),
        super::format::commas(after.total_mult_adds),
        before.forward_backward_pass_size_mb,
        after.forward_backward_pass_size_mb
    )
}

/// Labels of the models: the file stem, or, where stems collide, the shortest trailing
/// part of the path that tells the files apart (`mobilenet_v2_op13/model`); a file given
/// twice gets `#2`, `#3`, ...
pub fn model_labels(paths: &[PathBuf]) -> Vec<String> {
    let parts: Vec<Vec<String>> = paths
        .iter()
        .map(|p| {
            let mut v: Vec<String> = p
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            v.reverse();
            v
        })
        .collect();
    let longest = parts.iter().map(|v| v.len()).max().unwrap_or(1).max(1);
    let label = |v: &[String], k: usize| {
        let mut t: Vec<&str> = v.iter().take(k).map(|s| s.as_str()).collect();
        t.reverse();
        t.join("/")
    };
    let mut labels: Vec<String> = Vec::new();
    for k in 1..=longest {
        labels = parts.iter().map(|v| label(v, k)).collect();
        let unique: std::collections::HashSet<&String> = labels.iter().collect();
        if unique.len() == labels.len() {
            return labels;
        }
    }
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    labels
        .into_iter()
        .map(|l| {
            let n = seen.entry(l.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                l
            } else {
                format!("{l}#{n}")
            }
        })
        .collect()
}

/// Runs `mnc cost-report`: prints the report to stdout (a closed pipe, as with `| head`,
/// ends the output quietly).
pub fn run(args: &CostArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let text = report(args)?;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing the report to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ps: &[&str]) -> Vec<String> {
        model_labels(&ps.iter().map(PathBuf::from).collect::<Vec<_>>())
    }

    #[derive(clap::Parser, Debug)]
    struct Cmd {
        #[command(flatten)]
        args: CostArgs,
    }

    #[test]
    fn arguments_parse() {
        use clap::{CommandFactory, Parser};
        Cmd::command().debug_assert();
        let c = Cmd::try_parse_from([
            "mnc",
            "a.onnx",
            "b.onnx",
            "--batch",
            "32",
            "--freeze",
            "features",
            "--freeze",
            "head.0",
            "--stage",
            "optimized",
            "--format",
            "json",
        ])
        .unwrap()
        .args;
        assert_eq!(c.models, [PathBuf::from("a.onnx"), PathBuf::from("b.onnx")]);
        assert_eq!(c.batch, Some(32));
        assert_eq!(c.freeze, ["features", "head.0"]);
        assert_eq!((c.stage, c.format), (Stage::Optimized, Format::Json));
        let d = Cmd::try_parse_from(["mnc", "a.onnx"]).unwrap().args;
        assert_eq!(
            (d.batch, d.stage, d.format),
            (None, Stage::Imported, Format::Table)
        );
        assert!(Cmd::try_parse_from(["mnc"]).is_err());
        assert!(Cmd::try_parse_from(["mnc", "a.onnx", "--format", "xml"]).is_err());
    }

    #[test]
    fn labels_are_stems_made_unique_by_their_folders() {
        assert_eq!(labels(&["a/mobilenet_v2.onnx"]), ["mobilenet_v2"]);
        assert_eq!(labels(&["x/m.onnx", "y/e.onnx"]), ["m", "e"]);
        assert_eq!(
            labels(&["f/mnv2_bn/model.onnx", "f/mnv2/model.onnx"]),
            ["mnv2_bn/model", "mnv2/model"]
        );
        assert_eq!(labels(&["m.onnx", "m.onnx"]), ["m", "m#2"]);
    }
}
