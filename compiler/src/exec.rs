//! Builds an executable model for a target and runs it: the one place where `run`, `bench`,
//! the compiled-model API ([`crate::compiled`]) and the Python binding choose between the
//! reference executor and the compiled backends.

use anyhow::{bail, Context, Result};
use mnc_ir::{Graph, Tensor, TensorView};
use mnc_targets::Target;
use std::sync::Arc;

/// Options that change what is built (they show in the compile report).
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// CUDA: allow TF32 tensor-core math for pointwise convs and GEMMs (not exact f32).
    pub allow_tf32: bool,
    /// CPU: threads per run (the kernels split their work over a persistent pool; results
    /// do not depend on it). 0 means the number of physical cores.
    pub threads: usize,
    /// CPU: keep denormal floats during a run (default: flushed to zero, MXCSR FTZ/DAZ; see
    /// `mnc_targets::cpu::fpenv`).
    pub keep_denormals: bool,
    /// CPU: run a batch above 1 op by op over the whole batch instead of one run per image
    /// (`mnc_targets::cpu::CpuOptions::split_batch` off).
    pub no_batch_split: bool,
    /// CPU: with a batch split by image, run the classifier head per image too
    /// (`mnc_targets::cpu::CpuOptions::batch_head` off).
    pub no_batch_head: bool,
    /// CPU: every run on the thread pool (`CpuOptions::thread_choice` off).
    pub no_thread_choice: bool,
}

impl ExecOptions {
    /// The thread count a CPU build uses: `threads`, or the physical cores when 0.
    pub fn cpu_threads(&self) -> usize {
        if self.threads == 0 {
            mnc_targets::cpu::par::physical_cores()
        } else {
            self.threads
        }
    }

    /// Refuses options that do not apply to `target` (instead of silently dropping them).
    pub fn check(&self, target: Target) -> Result<()> {
        if self.allow_tf32 && !target.is_cuda() {
            bail!("--allow-tf32 applies to CUDA targets only (target is {target})");
        }
        if self.threads > 1 && !target.is_jit() {
            bail!("--threads applies to the x86-64 targets only (target is {target})");
        }
        if self.keep_denormals && !target.is_jit() {
            bail!("--keep-denormals applies to the x86-64 targets only (target is {target})");
        }
        if self.no_batch_split && !target.is_jit() {
            bail!("--no-batch-split applies to the x86-64 targets only (target is {target})");
        }
        if self.no_batch_head && !target.is_jit() {
            bail!("--no-batch-head applies to the x86-64 targets only (target is {target})");
        }
        if self.no_thread_choice && !target.is_jit() {
            bail!("--no-thread-choice applies to the x86-64 targets only (target is {target})");
        }
        Ok(())
    }
}

/// A model ready to run on one target. `Send + Sync`: [`Executable::run`] takes `&self`, so
/// several threads may run one executable at once.
pub enum Executable {
    /// The naive reference executor on the imported (unoptimized) graph: the oracle.
    Reference(Graph),
    /// Cranelift JIT code for an x86-64 CPU, after the optimization pipeline.
    Cpu(Box<mnc_runtime::cpu::CompiledModel>),
    /// PTX on an NVIDIA GPU through the CUDA driver, after the optimization pipeline; the
    /// driver handles live on a thread of their own (see [`crate::cuda_worker`]).
    Cuda(crate::cuda_worker::CudaWorker),
}

impl Executable {
    /// Prepares an already optimized `graph` (the pipeline's output, or a `.mnc` artifact's
    /// graph) for `target`: code generation only (the reference executor and the CUDA worker
    /// keep a copy of the graph; the CPU backend packs what it needs).
    pub fn from_optimized(graph: &Graph, target: Target, opts: &ExecOptions) -> Result<Self> {
        opts.check(target)?;
        Ok(match target {
            Target::Reference => Executable::Reference(graph.clone()),
            Target::Cuda(arch) => {
                let copts = mnc_targets::cuda::CudaOptions {
                    allow_tf32: opts.allow_tf32,
                };
                let w = crate::cuda_worker::CudaWorker::compile(graph.clone(), arch, copts)
                    .with_context(|| format!("target {target}"))?;
                Executable::Cuda(w)
            }
            Target::X86_64 | Target::X86_64Avx2 | Target::X86_64Avx512 => {
                let copts = mnc_targets::cpu::CpuOptions {
                    threads: opts.cpu_threads(),
                    flush_denormals: !opts.keep_denormals,
                    split_batch: !opts.no_batch_split,
                    batch_head: !opts.no_batch_head,
                    thread_choice: !opts.no_thread_choice,
                    ..Default::default()
                };
                // The error names the target ("compiling for x86_64-avx2: ...").
                let m = mnc_runtime::cpu::CompiledModel::compile(graph, target, &copts)?;
                Executable::Cpu(Box::new(m))
            }
        })
    }

    /// Runs the model on `inputs` (one tensor per graph input, in order).
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        match self {
            Executable::Reference(g) => Ok(mnc_runtime::reference::run(g, inputs)?),
            Executable::Cpu(m) => Ok(m.run(inputs)?),
            Executable::Cuda(m) => m.run(Arc::from(inputs.to_vec())),
        }
    }

    /// [`Executable::run`] on inputs shared between calls: the CUDA worker takes them
    /// without a copy (what a benchmark times).
    pub fn run_shared(&self, inputs: &Arc<[Tensor]>) -> Result<Vec<Tensor>> {
        match self {
            Executable::Cuda(m) => m.run(inputs.clone()),
            _ => self.run(inputs),
        }
    }

    /// Runs the model on borrowed inputs: the CPU backend copies each once, straight into
    /// its arena; the other executors take owned copies.
    pub fn run_views(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>> {
        match self {
            Executable::Cpu(m) => Ok(m.run_views(inputs)?),
            _ => self.run(&inputs.iter().map(TensorView::to_tensor).collect::<Vec<_>>()),
        }
    }

    /// A short description of where it runs (device name for GPUs).
    pub fn describe(&self) -> String {
        match self {
            Executable::Reference(_) => "reference executor".into(),
            Executable::Cpu(m) => format!(
                "Cranelift JIT, {}, {} thread(s)",
                m.target(),
                m.report().threads
            ),
            Executable::Cuda(m) => m.describe().to_string(),
        }
    }
}

/// The pipeline options every compiled target uses: the target's facts, the verifier after
/// every pass (the backend plans the activation arena: `mnc_passes::memory::plan_arena`).
pub fn pipeline_options(target: Target) -> mnc_passes::PipelineOptions {
    mnc_passes::PipelineOptions {
        target: target_facts(target),
        verify: true,
        ..Default::default()
    }
}

/// Runs the full optimization pipeline for `target` (verified).
pub fn optimized(mut graph: Graph, target: Target) -> Result<Graph> {
    mnc_passes::optimize(&mut graph, &pipeline_options(target)).context("optimizing")?;
    Ok(graph)
}

/// Target facts the passes schedule for ([`Target::pass_facts`]): a JIT ISA's from its
/// table entry, a CUDA architecture's preset, scalar facts for the reference executor.
pub fn target_facts(t: Target) -> mnc_passes::TargetFacts {
    t.pass_facts()
}
