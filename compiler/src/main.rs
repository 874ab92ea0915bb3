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
    /// Optimize a model for a target and emit its IR, Graphviz or ONNX, with a report.
    Compile(CompileArgs),
    CostReport(mnc::cost::cli::CostArgs),
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

/// What `mnc compile` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Emit {
    /// The optimized IR in its text form.
    Ir,
    /// The optimized graph as Graphviz.
    Dot,
    /// The graph after the target-independent passes (cleanup, BN folding) as standard ONNX.
    Onnx,
}

/// Arguments of `mnc compile`.
#[derive(Args)]
struct CompileArgs {
    /// The model: an ONNX file, or `zoo:NAME` for a built-in architecture (random weights).
    model: String,
    /// Target to optimize for (its vector width and caches drive scheduling).
    #[arg(long, default_value_t = Target::host_default())]
    target: Target,
    /// Batch size to compile for (default: the model's static batch, or 1).
    #[arg(long)]
    batch: Option<usize>,
    /// What to write (default: only the compile report).
    #[arg(long, value_enum)]
    emit: Option<Emit>,
    /// Output file for --emit (default: standard output; required for --emit onnx).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Print the IR after every run of this pass (repeatable; see the pass names in -v).
    #[arg(long, value_name = "PASS")]
    print_after: Vec<String>,
    /// Print the IR after every pass.
    #[arg(long)]
    print_after_all: bool,
    /// Verbose: per-pass timing and change counts, memory plan.
    #[arg(short, long)]
    verbose: bool,
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Command::Run(a) => cmd_run(a),
        Command::Compile(a) => cmd_compile(a),
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
        t => mnc_runtime::cpu::CompiledModel::compile(&graph, t, &Default::default())
            .and_then(|m| m.run(&[input]))
            .with_context(|| format!("{}: running on target {t}", a.model))?,
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

/// Target facts the passes schedule for.
fn target_facts(t: Target) -> mnc_passes::TargetFacts {
    mnc_passes::TargetFacts::by_name(t.name()).unwrap_or_else(mnc_passes::TargetFacts::scalar)
}

fn write_text(path: Option<&PathBuf>, text: &str) -> Result<()> {
    match path {
        Some(p) => std::fs::write(p, text).with_context(|| format!("{}: cannot write", p.display())),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn cmd_compile(a: &CompileArgs) -> Result<()> {
    for p in &a.print_after {
        if !mnc_passes::PASS_NAMES.contains(&p.as_str()) {
            bail!("--print-after: unknown pass '{p}' (passes: {})", mnc_passes::PASS_NAMES.join(", "));
        }
    }
    if a.emit == Some(Emit::Onnx) && a.output.is_none() {
        bail!("--emit onnx needs -o OUT.onnx");
    }
    let t0 = Instant::now();
    let mut graph = mnc::model::load(&a.model, a.batch)?;
    let t_import = t0.elapsed();
    let opts = mnc_passes::PipelineOptions {
        target: target_facts(a.target),
        verify: true,
        print_after: if a.print_after_all {
            mnc_passes::PrintAfter::All
        } else if !a.print_after.is_empty() {
            mnc_passes::PrintAfter::Passes(a.print_after.clone())
        } else {
            mnc_passes::PrintAfter::Nothing
        },
        ..Default::default()
    };
    let nodes_imported = graph.node_count();
    let t1 = Instant::now();
    let report = if a.emit == Some(Emit::Onnx) {
        mnc_passes::cleanup_and_fold(&mut graph, &opts)
    } else {
        mnc_passes::optimize(&mut graph, &opts)
    }
    .with_context(|| format!("{}: optimizing", a.model))?;
    let t_passes = t1.elapsed();
    for (pass, ir) in &report.dumps {
        eprintln!("# IR after {pass}\n{ir}");
    }
    match a.emit {
        Some(Emit::Ir) => write_text(a.output.as_ref(), &mnc_passes::dump(&graph, &report)?)?,
        Some(Emit::Dot) => write_text(a.output.as_ref(), &mnc_ir::dot::to_dot(&graph))?,
        Some(Emit::Onnx) => {
            let out = a.output.as_ref().expect("checked above");
            mnc::export::write_onnx(&graph, out)
                .with_context(|| format!("{}: writing ONNX", out.display()))?;
        }
        None => {}
    }
    // The report goes to stderr when the IR/graph itself went to stdout.
    let summary = compile_summary(&graph, &report, nodes_imported, t_import, t_passes, a);
    if a.emit.is_some() && a.output.is_none() {
        eprint!("{summary}");
    } else {
        print!("{summary}");
    }
    Ok(())
}

fn compile_summary(
    g: &mnc_ir::Graph,
    report: &mnc_passes::PipelineReport,
    nodes_imported: usize,
    t_import: std::time::Duration,
    t_passes: std::time::Duration,
    a: &CompileArgs,
) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let mut s = String::new();
    let mut ops: BTreeMap<String, usize> = BTreeMap::new();
    for id in g.node_ids() {
        let n = g.node(id);
        let key = match &n.op {
            mnc_ir::Op::Conv(c) => match &c.schedule {
                Some(sc) => format!("Conv/{}", sc.class),
                None => "Conv".to_string(),
            },
            mnc_ir::Op::Constant(_) | mnc_ir::Op::Input { .. } => continue,
            op => op.kind().to_string(),
        };
        *ops.entry(key).or_default() += 1;
    }
    let _ = writeln!(s, "{}: compiled for target {}", a.model, a.target);
    let _ = writeln!(s, "nodes: {} imported -> {} after passes", nodes_imported, g.node_count());
    let fusions: Vec<String> = report
        .records
        .iter()
        .fold(BTreeMap::<&str, usize>::new(), |mut m, r| {
            *m.entry(r.pass).or_default() += r.changes;
            m
        })
        .into_iter()
        .map(|(p, c)| format!("{p} {c}"))
        .collect();
    let _ = writeln!(s, "changes by pass: {}", fusions.join(", "));
    let _ = writeln!(
        s,
        "ops: {}",
        ops.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    );
    if let Ok(cost) = mnc::cost::analyze(g, &Default::default()) {
        let _ = writeln!(s, "mult-adds: {:.2} M", cost.total_mult_adds as f64 / 1e6);
    }
    if let Some(m) = &report.memory {
        let _ = writeln!(
            s,
            "activation arena: {:.2} MB (naive sum of activations {:.2} MB)",
            m.arena_bytes as f64 / 1e6,
            m.naive_bytes as f64 / 1e6
        );
    }
    let _ = writeln!(
        s,
        "time: import {:.1} ms, passes {:.1} ms",
        t_import.as_secs_f64() * 1e3,
        t_passes.as_secs_f64() * 1e3
    );
    if a.verbose {
        let _ = write!(s, "{report}");
    }
    s
}
