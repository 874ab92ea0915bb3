//! The `mnc` command-line interface.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use mnc::io;
use mnc_ir::Tensor;
use mnc_targets::Target;
use std::path::PathBuf;
use std::time::Instant;

/// mnc: a model compiler for ONNX convolutional networks (MobileNet, EfficientNet).
#[derive(Parser)]
#[command(name = "mnc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on an input tensor (.npy) or an image, print or save the output.
    Run(RunArgs),
    /// Per-layer and total parameters, mult-adds and memory (torchinfo conventions).
    CostReport(mnc::cost::cli::CostArgs),
    /// Built-in MobileNet / EfficientNet architectures: list them or write one as ONNX.
    Zoo(mnc::zoo::cli::ZooArgs),
}

/// Arguments of `mnc run`.
#[derive(Args)]
struct RunArgs {
    /// The model: an ONNX file, or `zoo:NAME` for a built-in architecture (random weights).
    model: String,
    /// Input tensor as a float32 .npy file (NCHW).
    #[arg(long, conflicts_with = "image", required_unless_present = "image")]
    input: Option<PathBuf>,
    /// Input image (PNG or JPEG): resized to 256, center-cropped to 224, ImageNet-normalized.
    #[arg(long)]
    image: Option<PathBuf>,
    /// Write the first output here as float32 .npy instead of printing a summary.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Execution target.
    #[arg(long, default_value_t = Target::host_default())]
    target: Target,
    /// Batch size to compile for (default: the model's static batch, or 1).
    #[arg(long)]
    batch: Option<usize>,
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Command::Run(a) => cmd_run(a),
        Command::CostReport(a) => mnc::cost::cli::run(a),
        Command::Zoo(a) => mnc::zoo::cli::run(a),
    };
    if let Err(e) = result {
        // One line: the context chain joined by ': '.
        eprintln!("mnc: error: {e:#}");
        std::process::exit(1);
    }
}

fn cmd_run(a: &RunArgs) -> Result<()> {
    if !a.target.runs_on_host() {
        bail!("target '{}' cannot run on this host", a.target);
    }
    let t0 = Instant::now();
    let graph = mnc::model::load(&a.model, a.batch)?;
    let t_load = t0.elapsed();
    let input = match (&a.input, &a.image) {
        (Some(p), _) => io::read_npy(p)?,
        (None, Some(p)) => {
            let mut t = io::load_image(p, 256, 224)?;
            let want = graph
                .inputs
                .first()
                .map(|&i| graph.node(i).ty.shape.clone())
                .unwrap_or_default();
            // One image, replicated when the model was compiled for a larger batch.
            if want.len() == 4 && want[0] > 1 && want[1..] == t.shape[1..] {
                let one = t.as_f32().unwrap_or_default().to_vec();
                let data = one.iter().copied().cycle().take(one.len() * want[0]).collect();
                t = Tensor::from_f32(want, data)?;
            }
            t
        }
        (None, None) => bail!("give --input X.npy or --image PHOTO"),
    };
    if graph.inputs.len() != 1 {
        bail!("{}: the model has {} inputs; `mnc run` feeds exactly one", a.model, graph.inputs.len());
    }
    let t1 = Instant::now();
    let outputs = match a.target {
        Target::Reference => mnc_runtime::reference::run(&graph, &[input])
            .with_context(|| format!("{}: running on the reference executor", a.model))?,
    };
    let t_run = t1.elapsed();
    let out = outputs.first().context("the model produced no output")?;
    if let Some(path) = &a.output {
        io::write_npy(path, out)?;
        eprintln!("wrote {} {:?} to {}", out.dtype(), out.shape, path.display());
        return Ok(());
    }
    println!("output {:?} {}", out.shape, out.dtype());
    if let (Some(data), 2) = (out.as_f32(), out.shape.len()) {
        let (n, c) = (out.shape[0], out.shape[1]);
        let names = if a.image.is_some() && c == 1000 { Some(io::imagenet_classes()) } else { None };
        for b in 0..n {
            println!("batch item {b}: top-5");
            for (i, v) in io::top_k(&data[b * c..(b + 1) * c], 5) {
                match &names {
                    Some(names) => println!("  {i:>5}  {v:>10.4}  {}", names[i]),
                    None => println!("  {i:>5}  {v:>10.4}"),
                }
            }
        }
    }
    println!(
        "load {:.1} ms, run {:.1} ms on target {}",
        t_load.as_secs_f64() * 1e3,
        t_run.as_secs_f64() * 1e3,
        a.target
    );
    Ok(())
}
