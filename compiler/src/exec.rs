//! Builds an executable model for a target and runs it: the one place where the CLI's `run`
//! and `bench` choose between the reference executor and the compiled backends.

use anyhow::{bail, Context, Result};
use mnc_ir::{Graph, Tensor};
use mnc_targets::Target;

/// Options that change what is built (they show in the compile report).
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// CUDA: allow TF32 tensor-core math for pointwise convs and GEMMs (not exact f32).
    pub allow_tf32: bool,
    /// CPU: threads per run (the kernels split their work over a persistent pool; results
    /// do not depend on it). 0 means the number of physical cores.
    pub threads: usize,
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
}

/// A model ready to run on one target.
pub enum Executable {
    /// The naive reference executor on the imported (unoptimized) graph: the oracle.
    Reference(Graph),
    /// Cranelift JIT code for an x86-64 CPU, after the optimization pipeline.
    Cpu(Box<mnc_runtime::cpu::CompiledModel>),
    /// PTX on an NVIDIA GPU through the CUDA driver, after the optimization pipeline.
    Cuda(Box<mnc_runtime::cuda::CudaModel>),
}

impl Executable {
    /// Prepares `graph` for `target`. Compiled targets run the optimization pipeline first.
    pub fn build(graph: Graph, target: Target, opts: &ExecOptions) -> Result<Self> {
        if opts.allow_tf32 && !target.is_cuda() {
            bail!("--allow-tf32 applies to CUDA targets only (target is {target})");
        }
        if opts.threads > 1 && !target.is_jit() {
            bail!("--threads applies to the x86-64 targets only (target is {target})");
        }
        match target {
            Target::Reference => Ok(Executable::Reference(graph)),
            Target::Cuda(arch) => {
                let g = optimized(graph, target)?;
                let copts = mnc_targets::cuda::CudaOptions {
                    allow_tf32: opts.allow_tf32,
                };
                let m = mnc_runtime::cuda::CudaModel::compile(&g, arch, &copts)
                    .with_context(|| format!("target {target}"))?;
                Ok(Executable::Cuda(Box::new(m)))
            }
            Target::X86_64 | Target::X86_64Avx2 | Target::X86_64Avx512 => {
                let g = optimized(graph, target)?;
                let copts = mnc_targets::cpu::CpuOptions {
                    threads: opts.cpu_threads(),
                    ..Default::default()
                };
                let m = mnc_runtime::cpu::CompiledModel::compile(&g, target, &copts)
                    .with_context(|| format!("target {target}"))?;
                Ok(Executable::Cpu(Box::new(m)))
            }
        }
    }

    /// Runs the model on `inputs`.
    pub fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        match self {
            Executable::Reference(g) => Ok(mnc_runtime::reference::run(g, inputs)?),
            Executable::Cpu(m) => Ok(m.run(inputs)?),
            Executable::Cuda(m) => Ok(m.run(inputs)?),
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
            Executable::Cuda(m) => format!(
                "{}{}",
                m.device_name(),
                if m.uses_cuda_graph() {
                    ", CUDA graph"
                } else {
                    ""
                }
            ),
        }
    }
}

/// Runs the full optimization pipeline for `target` (verified).
pub fn optimized(mut graph: Graph, target: Target) -> Result<Graph> {
    let opts = mnc_passes::PipelineOptions {
        target: target_facts(target),
        verify: true,
        plan_memory: false,
        ..Default::default()
    };
    mnc_passes::optimize(&mut graph, &opts).context("optimizing")?;
    Ok(graph)
}

/// Target facts the passes schedule for: the preset of the target's name (CPU ISAs, CUDA
/// architectures), scalar facts for the reference executor.
pub fn target_facts(t: Target) -> mnc_passes::TargetFacts {
    mnc_passes::TargetFacts::by_name(t.name()).unwrap_or_else(mnc_passes::TargetFacts::scalar)
}
