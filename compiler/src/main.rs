//! The `mnc` command-line interface.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use mnc::bench::BenchOptions;
use mnc::compiled::{CompileOptions, Model, Source};
use mnc::exec::ExecOptions;
use mnc::io;
use mnc::report::{CodegenSummary, CompileSummary, PhaseTimes};
use mnc_ir::Tensor;
use mnc_targets::Target;
use std::path::PathBuf;
use std::time::Instant;

/// mnc: a model compiler for ONNX convolutional networks (MobileNet, EfficientNet).
#[derive(Parser)]
#[command(
    name = "mnc",
    version,
    about = "mnc: a model compiler for ONNX convolutional networks (MobileNet, EfficientNet): import, optimize, cost-report, and run on the CPU (Cranelift JIT) or an NVIDIA GPU (PTX)",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on an input tensor (.npy) or an image, print or save the output.
    Run(RunArgs),
    /// Optimize a model for a target and emit its IR, Graphviz, ONNX or PTX, with a report.
    Compile(CompileArgs),
    /// Time a model on a target: median/min/p90 latency, throughput, GFLOP/s.
    Bench(BenchArgs),
    CostReport(mnc::cost::cli::CostArgs),
    Zoo(mnc::zoo::cli::ZooArgs),
    Quantize(mnc::quantize::cli::QuantizeArgs),
}

/// The x86-64 backend's run options of `run` and `bench`.
#[derive(Args)]
struct CpuFlags {
    /// x86-64 targets: threads per run (default: the number of physical cores).
    #[arg(long)]
    threads: Option<usize>,
    /// x86-64 targets: keep denormal floats (default: flushed to zero during a run, FTZ/DAZ;
    /// see docs/CPU_BACKEND.md).
    #[arg(long)]
    keep_denormals: bool,
    /// x86-64 targets: run a batch above 1 op by op over the whole batch (default: one run
    /// per image, images in parallel across threads, when no op mixes images; the compile
    /// report says which; see docs/CPU_BACKEND.md).
    #[arg(long)]
    no_batch_split: bool,
    /// x86-64 targets: with a batch split by image, run the classifier head per image too
    /// (default: the ops after the last per-image value, a classifier's Gemms, run once over
    /// the whole batch, so their weights stream from memory once per batch; the compile
    /// report says where the head starts; see docs/CPU_BACKEND.md).
    #[arg(long)]
    no_batch_head: bool,
    /// x86-64 targets with 2+ threads: run every run on the thread pool (default: each run
    /// on the pool or on the calling thread alone, whichever the runs so far measured
    /// faster; results are the same; see docs/CPU_BACKEND.md, Threads).
    #[arg(long)]
    no_thread_choice: bool,
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
    /// CUDA targets: allow TF32 tensor-core math (about 3 significant digits per product).
    #[arg(long)]
    allow_tf32: bool,
    #[command(flatten)]
    cpu: CpuFlags,
    /// The model's 4-D inputs are channels-last (NHWC, as Keras/tf2onnx export them): take
    /// them channels-first (NCHW) instead; the model's input transpose then disappears.
    #[arg(long)]
    nchw_input: bool,
}

/// Arguments of `mnc bench`.
#[derive(Args)]
struct BenchArgs {
    /// The model: an ONNX file, or `zoo:NAME` for a built-in architecture (random weights).
    model: String,
    /// Execution target.
    #[arg(long, default_value_t = Target::host_default())]
    target: Target,
    /// Batch size (default: the model's static batch, or 1).
    #[arg(long)]
    batch: Option<usize>,
    /// Timed runs.
    #[arg(long, default_value_t = 50)]
    iters: usize,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// CUDA targets: allow TF32 tensor-core math.
    #[arg(long)]
    allow_tf32: bool,
    #[command(flatten)]
    cpu: CpuFlags,
    /// x86-64 targets: per fused op (mean over the timed runs) time, GFLOP/s, GB/s and
    /// FLOP/byte of its compulsory traffic, and its place under the roofline (measured peak
    /// and memory bandwidth).
    #[arg(long)]
    profile: bool,
    /// The model's 4-D inputs are channels-last (NHWC, as Keras/tf2onnx export them): take
    /// them channels-first (NCHW) instead; the model's input transpose then disappears.
    #[arg(long)]
    nchw_input: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = BenchFormat::Text)]
    format: BenchFormat,
}

/// Output format of `mnc bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BenchFormat {
    Text,
    Json,
}

/// What `mnc compile` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Emit {
    /// The optimized IR in its text form.
    Ir,
    /// The optimized graph as Graphviz.
    Dot,
    /// The graph after the target-independent passes (cleanup, canonicalization, BN folding) as standard ONNX.
    Onnx,
    /// CUDA targets: the PTX module and the launch plan, written into the folder given by -o.
    Ptx,
    /// x86-64 targets: the Cranelift IR (CLIF) of every generated function.
    Clif,
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
    /// Output file for --emit (default: standard output; required for --emit onnx), or,
    /// without --emit, the compiled-model artifact (`.mnc`: optimized IR and schedules for
    /// this target and batch), which `run` and `bench` load without re-optimizing.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Print the IR after every run of this pass (repeatable; see the pass names in -v).
    #[arg(long, value_name = "PASS")]
    print_after: Vec<String>,
    /// Print the IR after every pass.
    #[arg(long)]
    print_after_all: bool,
    /// Verbose: per-pass timing and change counts, the CPU backend's arena plan.
    #[arg(short, long)]
    verbose: bool,
    /// CUDA targets: allow TF32 tensor-core math (about 3 significant digits per product).
    #[arg(long)]
    allow_tf32: bool,
    /// The model's 4-D inputs are channels-last (NHWC, as Keras/tf2onnx export them): take
    /// them channels-first (NCHW) instead; the model's input transpose then disappears.
    #[arg(long)]
    nchw_input: bool,
}

fn main() {
    // Like other Unix tools, end quietly when stdout is closed early (`mnc ... | head`)
    // instead of failing on the write: restore the default SIGPIPE action Rust ignores.
    #[cfg(unix)]
    // SAFETY: setting a signal disposition at start-up, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Command::Run(a) => cmd_run(a),
        Command::Compile(a) => cmd_compile(a),
        Command::Bench(a) => cmd_bench(a),
        Command::CostReport(a) => mnc::cost::cli::run(a),
        Command::Zoo(a) => mnc::zoo::cli::run(a),
        Command::Quantize(a) => mnc::quantize::cli::run(a),
    };
    if let Err(e) = result {
        // One line: the context chain joined by ': '.
        eprintln!("mnc: error: {}", mnc::error_line(&e));
        std::process::exit(1);
    }
}

fn cmd_run(a: &RunArgs) -> Result<()> {
    check_runnable(a.target)?;
    let t0 = Instant::now();
    let opts = compile_options(a.target, a.batch, a.allow_tf32, &a.cpu, a.nchw_input);
    // The input first: a bad input file fails before a full compile.
    let input = match (&a.input, &a.image) {
        (Some(p), _) => io::read_npy(p)?,
        (None, Some(p)) => io::load_image(p, 256, 224)?,
        (None, None) => bail!("give --input X.npy or --image PHOTO"),
    };
    let model = Model::compile(Source::Spec(&a.model), &opts)?;
    if model.inputs().len() != 1 {
        bail!(
            "{}: the model has {} inputs; `mnc run` feeds exactly one",
            a.model,
            model.inputs().len()
        );
    }
    let want = &model.inputs()[0].shape;
    // One image, replicated when the model was compiled for a larger batch.
    let input =
        if a.image.is_some() && want.len() == 4 && want[0] > 1 && want[1..] == input.shape[1..] {
            let one = input.as_f32().unwrap_or_default();
            let data = one
                .iter()
                .copied()
                .cycle()
                .take(one.len() * want[0])
                .collect();
            Tensor::from_f32(want.clone(), data)?
        } else {
            input
        };
    let t_load = t0.elapsed();
    let t1 = Instant::now();
    let outputs = model.run(&[input])?;
    let t_run = t1.elapsed();
    let out = outputs.first().context("the model produced no output")?;
    if let Some(path) = &a.output {
        io::write_npy(path, out)?;
        eprintln!(
            "wrote {} {:?} to {}",
            out.dtype(),
            out.shape,
            path.display()
        );
        return Ok(());
    }
    println!("output {:?} {}", out.shape, out.dtype());
    if let (Some(data), 2) = (out.as_f32(), out.shape.len()) {
        let (n, c) = (out.shape[0], out.shape[1]);
        let names = if a.image.is_some() && c == 1000 {
            Some(io::imagenet_classes())
        } else {
            None
        };
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
        "load+compile {:.1} ms, run {:.1} ms on target {} ({})",
        t_load.as_secs_f64() * 1e3,
        t_run.as_secs_f64() * 1e3,
        a.target,
        model.executable().describe()
    );
    Ok(())
}

/// The compile options of `run` and `bench` (threads default to the physical cores).
fn compile_options(
    target: Target,
    batch: Option<usize>,
    allow_tf32: bool,
    cpu: &CpuFlags,
    nchw_inputs: bool,
) -> CompileOptions {
    CompileOptions {
        target,
        batch,
        exec: ExecOptions {
            allow_tf32,
            threads: cpu.threads.unwrap_or(0),
            keep_denormals: cpu.keep_denormals,
            no_batch_split: cpu.no_batch_split,
            no_batch_head: cpu.no_batch_head,
            no_thread_choice: cpu.no_thread_choice,
        },
        nchw_inputs,
    }
}

/// Refuses to run code for a CPU this host cannot execute (compiling for it is allowed).
fn check_runnable(t: Target) -> Result<()> {
    if !t.is_cuda() && !t.runs_on_host() {
        bail!("target '{t}' cannot run on this host's CPU (compile for it with `mnc compile`)");
    }
    Ok(())
}

fn write_text(path: Option<&PathBuf>, text: &str) -> Result<()> {
    match path {
        Some(p) => {
            std::fs::write(p, text).with_context(|| format!("{}: cannot write", p.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn cmd_compile(a: &CompileArgs) -> Result<()> {
    for p in &a.print_after {
        if !mnc_passes::PASS_NAMES.contains(&p.as_str()) {
            bail!(
                "--print-after: unknown pass '{p}' (passes: {})",
                mnc_passes::PASS_NAMES.join(", ")
            );
        }
    }
    if a.emit == Some(Emit::Onnx) && a.output.is_none() {
        bail!("--emit onnx needs -o OUT.onnx");
    }
    if a.emit == Some(Emit::Ptx) && (!a.target.is_cuda() || a.output.is_none()) {
        bail!("--emit ptx needs a CUDA target (--target cuda-sm80|cuda-sm90) and -o DIR");
    }
    if a.allow_tf32 && a.emit != Some(Emit::Ptx) {
        // Only the PTX emitted here carries it: an artifact stores no backend options.
        bail!("--allow-tf32 applies to `--emit ptx` of a CUDA target only (the .mnc artifact and the compile report do not depend on it; pass it to `mnc run`/`mnc bench`)");
    }
    if a.emit == Some(Emit::Clif) && !a.target.is_jit() {
        bail!(
            "--emit clif needs an x86-64 target (--target x86_64|x86_64-avx2|x86_64-avx512|host)"
        );
    }
    let t0 = Instant::now();
    let mut graph = mnc::model::load(&a.model, a.batch)?;
    if a.nchw_input {
        mnc::model::inputs_to_nchw(&mut graph).with_context(|| a.model.clone())?;
    }
    let t_import = t0.elapsed();
    // The pipeline `run`, `bench` and the Python package use.
    let opts = mnc_passes::PipelineOptions {
        print_after: if a.print_after_all {
            mnc_passes::PrintAfter::All
        } else if !a.print_after.is_empty() {
            mnc_passes::PrintAfter::Passes(a.print_after.clone())
        } else {
            mnc_passes::PrintAfter::Nothing
        },
        ..mnc::exec::pipeline_options(a.target)
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
    // Code generation for the target (what `run` would JIT or emit), for the report.
    let t2 = Instant::now();
    let mut codegen: Option<CodegenSummary> = None;
    let mut cpu_model = None;
    if a.target.is_jit() && a.emit != Some(Emit::Onnx) {
        let opts = mnc_targets::cpu::CpuOptions {
            keep_clif: a.emit == Some(Emit::Clif),
            verify: a.emit == Some(Emit::Clif) || cfg!(debug_assertions),
            ..Default::default()
        };
        let m = mnc_runtime::cpu::CompiledModel::compile(&graph, a.target, &opts)
            .with_context(|| a.model.clone())?;
        codegen = Some(CodegenSummary::of_cpu(&m));
        cpu_model = Some(m);
    }
    let t_codegen = codegen.as_ref().map(|_| t2.elapsed());
    match a.emit {
        Some(Emit::Ir) => write_text(a.output.as_ref(), &mnc_passes::dump(&graph, &report)?)?,
        Some(Emit::Dot) => write_text(a.output.as_ref(), &mnc_ir::dot::to_dot(&graph))?,
        Some(Emit::Onnx) => {
            let out = a.output.as_ref().expect("checked above");
            mnc::export::write_onnx(&graph, out)
                .with_context(|| format!("{}: writing ONNX", out.display()))?;
        }
        Some(Emit::Clif) => {
            let m = cpu_model
                .as_ref()
                .expect("compiled above for x86-64 targets");
            write_text(a.output.as_ref(), &m.clif_text())?;
        }
        Some(Emit::Ptx) => {
            let (Target::Cuda(arch), Some(dir)) = (a.target, a.output.as_ref()) else {
                unreachable!("checked above")
            };
            let opts = mnc_targets::cuda::CudaOptions {
                allow_tf32: a.allow_tf32,
            };
            let prog = mnc_targets::cuda::compile(&graph, arch, &opts)
                .with_context(|| format!("{}: generating PTX", a.model))?;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create", dir.display()))?;
            let ptx = dir.join(format!("{}.ptx", sanitize(&graph.name)));
            std::fs::write(&ptx, &prog.ptx)
                .with_context(|| format!("{}: cannot write", ptx.display()))?;
            let plan = dir.join("plan.txt");
            std::fs::write(&plan, prog.plan_text())
                .with_context(|| format!("{}: cannot write", plan.display()))?;
            eprintln!(
                "wrote {} kernels ({} launches) to {} and the launch plan to {}",
                prog.kernels.len(),
                prog.launches.len(),
                ptx.display(),
                plan.display()
            );
        }
        None => {
            if let Some(out) = &a.output {
                let batch = graph
                    .inputs
                    .first()
                    .and_then(|&i| graph.node(i).ty.shape.first().copied())
                    .unwrap_or(1);
                mnc::artifact::write(out, &graph, a.target, batch, &report.header)?;
                eprintln!("wrote the compiled model to {}", out.display());
            }
        }
    }
    // The report goes to stderr when the IR/graph itself went to stdout.
    let times = PhaseTimes::new(t_import, t_passes, t_codegen);
    let summary = CompileSummary::new(
        &a.model,
        a.target,
        &graph,
        nodes_imported,
        Some(&report),
        codegen,
        times,
    )
    .text();
    let summary = if a.verbose {
        // The arena plan the CPU backend runs with (the passes plan none).
        let memory = cpu_model
            .as_ref()
            .map(|m| {
                format!(
                    "{} (the CPU backend's arena)\n",
                    m.report().memory.summary()
                )
            })
            .unwrap_or_default();
        format!("{summary}{report}{memory}")
    } else {
        summary
    };
    if a.emit.is_some() && a.output.is_none() {
        eprint!("{summary}");
    } else {
        print!("{summary}");
    }
    Ok(())
}

/// A file-name-safe form of a graph name.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "model".into()
    } else {
        s
    }
}

fn cmd_bench(a: &BenchArgs) -> Result<()> {
    check_runnable(a.target)?;
    if a.iters == 0 {
        bail!("--iters must be at least 1");
    }
    if a.profile && !a.target.is_jit() {
        bail!("--profile needs an x86-64 target (per-op timing of the JIT code)");
    }
    let opts = compile_options(a.target, a.batch, a.allow_tf32, &a.cpu, a.nchw_input);
    let model = Model::compile(Source::Spec(&a.model), &opts)?;
    let r = mnc::bench::bench(
        &model,
        &BenchOptions {
            iters: a.iters,
            warmup: a.warmup,
            profile: a.profile,
        },
    )?;
    match a.format {
        BenchFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        BenchFormat::Text => print!("{}", r.text()),
    }
    Ok(())
}
