//! GPU tile parameters of the CUDA kernels. The GEMM tile choice itself lives in
//! `mnc-passes` ([`mnc_passes::target::gpu_tile`]), where the scheduling pass uses it; this
//! module maps a [`CudaArch`] onto its facts for GEMMs that were not scheduled for a GPU.

use super::CudaArch;
use mnc_passes::target::gpu_tile;

/// Block tiling of the shared-memory GEMM kernel (pointwise convs, Gemm, MatMul).
pub use mnc_ir::schedule::GpuTile as GemmTile;
/// The candidate GEMM tiles, largest first.
pub use mnc_passes::target::gpu_tile::GEMM_TILES;

/// Chooses the GEMM tile for an `m x n` output with reduction length `k` on `arch` (the same
/// function the scheduling pass calls for a CUDA target).
pub fn gemm_tile(m: usize, n: usize, k: usize, arch: CudaArch) -> GemmTile {
    gpu_tile::gemm_tile(m, n, k, &arch.gpu_facts())
}

/// Whether the GEMM kernel can run with tile `t` on `arch`.
pub fn supported(t: &GemmTile, arch: CudaArch) -> bool {
    gpu_tile::supported(t, &arch.gpu_facts())
}

/// Threads per block of the one-thread-per-output kernels (elementwise, depthwise, direct
/// conv, pooling).
pub const ELEMENTWISE_BLOCK: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_facts_match_the_target_presets() {
        for arch in CudaArch::ALL {
            let t = arch.target_facts();
            assert_eq!(t.name, arch.target_name());
            assert_eq!(
                mnc_passes::TargetFacts::by_name(arch.target_name()),
                Some(t.clone())
            );
            assert_eq!(t.gpu, Some(arch.gpu_facts()));
        }
        assert_eq!(CudaArch::Sm80.sm_count(), 108);
        assert_eq!(CudaArch::Sm90.sm_count(), 132);
    }

    #[test]
    fn same_choice_as_the_scheduling_pass() {
        // 64x64 tiles give 120 blocks: enough for 108 SMs, not 132.
        let (m, n) = (64 * 8, 64 * 15);
        assert_eq!(gemm_tile(m, n, 64, CudaArch::Sm80), GEMM_TILES[1]);
        assert_eq!(gemm_tile(m, n, 64, CudaArch::Sm90), GEMM_TILES[2]);
        for arch in CudaArch::ALL {
            assert!(GEMM_TILES.iter().all(|t| supported(t, arch)));
        }
    }
}
