//! The `mnc zoo` command: `mnc zoo list` prints the models with resolution, parameters and
//! mult-adds; `mnc zoo NAME` builds one and writes it as ONNX.

use super::{build, names, native_resolution, native_scaling, ZooOptions};
use crate::cost::format::commas;
use crate::cost::{analyze, CostOptions};
use anyhow::Context;
use std::fmt::Write;
use std::path::PathBuf;

const ABOUT: &str = "Build a built-in MobileNet / EfficientNet and write it as ONNX";
const LONG_ABOUT: &str = "Build a built-in MobileNet / EfficientNet and write it as ONNX.

Forms:
  mnc zoo list [--format text|markdown]
  mnc zoo NAME [-o FILE.onnx] [--num-classes N] [--resolution R] [--width W --depth D]
               [--keep-bn] [--seed S] [--batch N]

The architectures match torchvision's (timm's mobilenetv1_100 for mobilenet_v1) layer for layer,
with the same tensor names as their state dicts. EfficientNet B1-B7 are generated from B0 by
compound scaling; --width/--depth/--resolution make your own variant.

Zoo weights are deterministic pseudo-random numbers from --seed, scaled so activations stay O(1):
they are for compiling, testing and benchmarking, NOT for accuracy (the predictions are
meaningless).";

/// Output format of `mnc zoo list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Text,
    Markdown,
}

/// Arguments of `mnc zoo`.
#[derive(clap::Args, Debug, Clone)]
#[command(about = ABOUT, long_about = LONG_ABOUT)]
pub struct ZooArgs {
    /// `list`, or the model to build (see `mnc zoo list`).
    #[arg(value_name = "list|NAME")]
    pub model: String,
    /// Output ONNX file (default: NAME.onnx).
    #[arg(short = 'o', long = "output", value_name = "FILE.onnx")]
    pub output: Option<PathBuf>,
    /// Classifier outputs (replaces the last Linear layer).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub num_classes: usize,
    /// Input height and width (default: the model's native resolution).
    #[arg(long, value_name = "R")]
    pub resolution: Option<usize>,
    /// Width (channel) multiplier (default: the model's own).
    #[arg(long, value_name = "W")]
    pub width: Option<f64>,
    /// Depth (repeat) multiplier, EfficientNet only (default: the model's own).
    #[arg(long, value_name = "D")]
    pub depth: Option<f64>,
    /// Keep Conv -> BatchNormalization (as the PyTorch modules are) instead of folding BN.
    #[arg(long)]
    pub keep_bn: bool,
    /// Seed of the pseudo-random weights (for testing/benchmarking, not accuracy).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Batch size of the graph input.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub batch: usize,
    /// Format of `mnc zoo list` (default: text); refused when building a model.
    #[arg(long, value_enum)]
    pub format: Option<ListFormat>,
}

/// The EfficientNet paper's published figures (Tan & Le 2019, Table 2): params, FLOPs.
const PAPER: [(&str, &str); 8] = [
    ("5.3M", "0.39B"),
    ("7.8M", "0.70B"),
    ("9.2M", "1.0B"),
    ("12M", "1.8B"),
    ("19M", "4.2B"),
    ("30M", "9.9B"),
    ("43M", "19B"),
    ("66M", "37B"),
];

/// One row of `mnc zoo list`.
#[derive(Clone, Debug, PartialEq)]
pub struct ZooRow {
    pub name: &'static str,
    pub width: f64,
    pub depth: f64,
    pub resolution: usize,
    /// Parameters of the `--keep-bn` form (torchvision's count).
    pub params: u64,
    /// Parameters of the default BN-folded form.
    pub folded_params: u64,
    /// Mult-adds at the native resolution, batch 1 (torchinfo conventions).
    pub mult_adds: u64,
}

/// Builds every zoo model at its native resolution and measures it with the cost module.
pub fn rows() -> anyhow::Result<Vec<ZooRow>> {
    let mut out = Vec::new();
    for &name in names() {
        let (width, depth) = native_scaling(name)?;
        let keep = ZooOptions {
            keep_bn: true,
            ..Default::default()
        };
        let g = build(name, &keep)?;
        let c = analyze(&g, &CostOptions::default())
            .with_context(|| format!("cost analysis of {name}"))?;
        drop(g);
        let folded = build(name, &ZooOptions::default())?;
        let cf = analyze(&folded, &CostOptions::default())
            .with_context(|| format!("cost analysis of folded {name}"))?;
        out.push(ZooRow {
            name,
            width,
            depth,
            resolution: native_resolution(name)?,
            params: c.total_params,
            folded_params: cf.total_params,
            mult_adds: c.total_mult_adds,
        });
    }
    Ok(out)
}

/// Renders the rows as `mnc zoo list` prints them.
pub fn render(rows: &[ZooRow], format: ListFormat) -> String {
    let mut s = String::new();
    match format {
        ListFormat::Text => {
            writeln!(
                s,
                "{:<20} {:>6} {:>6} {:>5} {:>12} {:>12} {:>14}",
                "model", "width", "depth", "res", "params", "params(fold)", "mult-adds (M)"
            )
            .ok();
            for r in rows {
                writeln!(
                    s,
                    "{:<20} {:>6.1} {:>6.1} {:>5} {:>12} {:>12} {:>14.2}",
                    r.name,
                    r.width,
                    r.depth,
                    r.resolution,
                    commas(r.params),
                    commas(r.folded_params),
                    r.mult_adds as f64 / 1e6
                )
                .ok();
            }
            s.push_str(
                "params: torchvision's count (BatchNorm weight+bias included, --keep-bn form); \
params(fold): the default BN-folded form. Mult-adds at the native resolution, batch 1.\n",
            );
        }
        ListFormat::Markdown => {
            s.push_str("| model | width | depth | resolution | params (mnc) | params BN-folded (mnc) | mult-adds (mnc) | paper params | paper FLOPs |\n");
            s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for r in rows {
                let paper = r
                    .name
                    .strip_prefix("efficientnet_b")
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| PAPER.get(i).copied())
                    .unwrap_or(("", ""));
                writeln!(
                    s,
                    "| {} | {:.1} | {:.1} | {} | {} | {} | {:.2} M | {} | {} |",
                    r.name,
                    r.width,
                    r.depth,
                    r.resolution,
                    commas(r.params),
                    commas(r.folded_params),
                    r.mult_adds as f64 / 1e6,
                    paper.0,
                    paper.1
                )
                .ok();
            }
        }
    }
    s
}

/// Runs `mnc zoo`.
pub fn run(args: &ZooArgs) -> anyhow::Result<()> {
    if args.model == "list" {
        print!(
            "{}",
            render(&rows()?, args.format.unwrap_or(ListFormat::Text))
        );
        return Ok(());
    }
    if args.format.is_some() {
        anyhow::bail!("--format applies to `mnc zoo list` only (a model is written as ONNX)");
    }
    let opts = ZooOptions {
        num_classes: args.num_classes,
        resolution: args.resolution,
        width: args.width,
        depth: args.depth,
        keep_bn: args.keep_bn,
        seed: args.seed,
        batch: args.batch,
    };
    let g = build(&args.model, &opts)?;
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.onnx", args.model)));
    crate::export::write_onnx(&g, &path)?;
    let c = analyze(&g, &CostOptions::default())
        .with_context(|| format!("cost analysis of {}", args.model))?;
    let input = &g.node(g.inputs[0]).ty;
    println!(
        "wrote {} ({}, input {}, {} parameters{}, {:.2} M mult-adds); zoo weights are pseudo-random: \
for compiling, testing and benchmarking, not accuracy",
        path.display(),
        args.model,
        input,
        commas(c.total_params),
        if args.keep_bn { "" } else { " after BN folding" },
        c.total_mult_adds as f64 / 1e6
    );
    Ok(())
}
