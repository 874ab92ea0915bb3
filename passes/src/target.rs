//! Target facts: what the target-dependent passes read about a CPU or GPU (the GPU's
//! numbers for the scheduling pass's GEMM tiles, the buffer alignment for the memory plan,
//! whether int8 kernels exist for `qdq-fold`). Pure data. Vector widths, register counts
//! and cache sizes are not here: no pass reads them (the CPU kernels' tiles come from the
//! ISA table in `mnc-targets`). The x86-64 JIT ISAs are
//! not described here: `mnc-targets` builds their facts from its ISA table
//! (`mnc_targets::cpu::isa`, one entry per ISA) and `mnc_targets::Target::pass_facts` hands
//! every target's facts to the pipeline. The presets here are for what has no table entry:
//! the reference executor ([`TargetFacts::scalar`]), the CUDA architectures (which
//! `mnc-targets` maps onto [`TargetFacts::cuda_sm80`] / [`TargetFacts::cuda_sm90`]), a
//! non-JIT NEON machine for the passes' own tests, and [`TargetFacts::default`], the AVX2
//! machine the passes run on without a backend (their tests, snapshots and library use;
//! `mnc-targets` tests that it equals its AVX2 table entry).
//! [`gpu_tile`] owns the GPU GEMM tile choice (used by the scheduling pass and, for
//! unscheduled graphs, by the CUDA code generator).

pub mod gpu_tile;

use std::fmt;

/// What the scheduling and layout passes know about the target machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetFacts {
    /// Name shown in the IR dump header, e.g. `x86_64-avx2`.
    pub name: String,
    /// Alignment of every buffer in the activation arena, bytes.
    pub alignment: usize,
    /// GPU targets only: what the GPU tile choice needs (`None` on CPUs).
    pub gpu: Option<GpuFacts>,
    /// Whether the backend runs the integer ops ([`mnc_ir::Op::QConv`], [`mnc_ir::Op::QLut`])
    /// with integer kernels: `qdq-fold` makes them from QDQ patterns only then.
    pub int8: bool,
    /// Whether those integer convs take a fused residual sum ([`mnc_ir::QResidual`]):
    /// `qconv-residual` fuses a `QConv`'s `QAdd` into it only then.
    pub int8_residual: bool,
}

/// What the GPU tile choice knows about an NVIDIA GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuFacts {
    /// Compute capability as `10 * major + minor` (80 for sm_80).
    pub compute_capability: u32,
    /// Streaming multiprocessors.
    pub sm_count: usize,
    /// Threads per warp.
    pub warp_size: usize,
    /// Static shared memory one block may use without opt-in, bytes.
    pub shared_bytes_per_block: usize,
    /// Threads per block at most.
    pub max_threads_per_block: usize,
}

impl GpuFacts {
    /// A100 (sm_80): 108 SMs, 48 KiB static shared memory per block.
    pub fn sm80() -> Self {
        GpuFacts {
            compute_capability: 80,
            sm_count: 108,
            warp_size: 32,
            shared_bytes_per_block: 48 << 10,
            max_threads_per_block: 1024,
        }
    }
    /// H100 SXM (sm_90): 132 SMs, 48 KiB static shared memory per block.
    pub fn sm90() -> Self {
        GpuFacts {
            compute_capability: 90,
            sm_count: 132,
            ..Self::sm80()
        }
    }
}

impl TargetFacts {
    /// AArch64 with NEON (no int8 kernels).
    pub fn aarch64_neon() -> Self {
        TargetFacts {
            name: "aarch64-neon".into(),
            alignment: 64,
            gpu: None,
            int8: false,
            int8_residual: false,
        }
    }
    /// A scalar machine (also what the reference executor is scheduled for).
    pub fn scalar() -> Self {
        TargetFacts {
            name: "scalar".into(),
            alignment: 64,
            gpu: None,
            int8: false,
            int8_residual: false,
        }
    }
    /// NVIDIA A100 (`cuda-sm80`), 128-byte buffers; the CUDA backend reads the GPU tiles of
    /// the schedule.
    pub fn cuda_sm80() -> Self {
        TargetFacts {
            name: "cuda-sm80".into(),
            alignment: 128,
            gpu: Some(GpuFacts::sm80()),
            // The int8 kernels of the CUDA target (`dp4a` convs, issue 14), without fused
            // residual sums.
            int8: true,
            int8_residual: false,
        }
    }
    /// NVIDIA H100 (`cuda-sm90`): as [`TargetFacts::cuda_sm80`] with the H100's GPU facts.
    pub fn cuda_sm90() -> Self {
        TargetFacts {
            name: "cuda-sm90".into(),
            gpu: Some(GpuFacts::sm90()),
            ..Self::cuda_sm80()
        }
    }
    /// The presets by name (`x86_64-avx2` for the default, `aarch64-neon`, `scalar`,
    /// `cuda-sm80`, `cuda-sm90`).
    pub fn by_name(name: &str) -> Option<Self> {
        Self::presets().into_iter().find(|t| t.name == name)
    }
    /// Every preset.
    pub fn presets() -> Vec<Self> {
        vec![
            Self::default(),
            Self::aarch64_neon(),
            Self::scalar(),
            Self::cuda_sm80(),
            Self::cuda_sm90(),
        ]
    }
}

/// The machine the passes run for without a backend: x86-64 with AVX2/FMA and int8 kernels,
/// 64-byte buffers. The same facts as the AVX2 entry of `mnc-targets`' ISA table (tested
/// there).
impl Default for TargetFacts {
    fn default() -> Self {
        TargetFacts {
            name: "x86_64-avx2".into(),
            alignment: 64,
            gpu: None,
            int8: true,
            int8_residual: true,
        }
    }
}

impl fmt::Display for TargetFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if self.int8 {
            f.write_str(" int8")?;
        }
        if let Some(g) = &self.gpu {
            write!(
                f,
                " sm_{} sms{} smem={}K",
                g.compute_capability,
                g.sm_count,
                g.shared_bytes_per_block >> 10
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_by_name() {
        for t in TargetFacts::presets() {
            assert_eq!(TargetFacts::by_name(&t.name), Some(t.clone()));
            assert!(t.alignment.is_power_of_two());
        }
        assert!(TargetFacts::by_name("x86_64-avx2").unwrap().int8);
        assert!(
            TargetFacts::by_name("x86_64").is_none(),
            "JIT ISAs live in mnc-targets"
        );
        assert!(TargetFacts::by_name("reference").is_none());
        assert!(TargetFacts::presets()
            .iter()
            .all(|t| t.gpu.is_some() == t.name.starts_with("cuda-")));
    }

    #[test]
    fn cuda_presets() {
        let a = TargetFacts::by_name("cuda-sm80").unwrap();
        let h = TargetFacts::by_name("cuda-sm90").unwrap();
        assert_eq!(a.gpu.as_ref().unwrap().sm_count, 108);
        assert_eq!(h.gpu.as_ref().unwrap().sm_count, 132);
        assert_eq!(h.gpu.as_ref().unwrap().compute_capability, 90);
        assert_eq!(h.to_string(), "cuda-sm90 int8 sm_90 sms132 smem=48K");
        assert_eq!(TargetFacts::default().to_string(), "x86_64-avx2 int8");
    }
}
