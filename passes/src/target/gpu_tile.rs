//! GPU GEMM tile choice: a pure function of the problem shape and the [`GpuFacts`]. The
//! scheduling pass stores its result on pointwise convs; the CUDA code generator uses the
//! stored tile, or calls [`gemm_tile`] itself for GEMMs the pass did not schedule (Gemm,
//! MatMul, graphs scheduled for a CPU), so there is one definition.

use super::GpuFacts;
use mnc_ir::schedule::GpuTile;

/// The candidate tiles of the shared-memory GEMM kernel, largest first. All use 256 threads
/// and load a whole number of elements of each operand tile per thread.
pub const GEMM_TILES: [GpuTile; 4] = [
    GpuTile {
        bm: 128,
        bn: 128,
        bk: 8,
        tm: 8,
        tn: 8,
    },
    GpuTile {
        bm: 64,
        bn: 64,
        bk: 16,
        tm: 4,
        tn: 4,
    },
    GpuTile {
        bm: 64,
        bn: 32,
        bk: 16,
        tm: 4,
        tn: 2,
    },
    GpuTile {
        bm: 32,
        bn: 32,
        bk: 16,
        tm: 2,
        tn: 2,
    },
];

/// Static shared memory of tile `t`: one `bk x bm` and one `bk x bn` f32 panel, bytes.
pub fn shared_bytes(t: &GpuTile) -> usize {
    t.bk * (t.bm + t.bn) * 4
}

/// Whether `t` is one of the kernel's candidates and fits a block on `gpu` (threads, whole
/// warps, static shared memory).
pub fn supported(t: &GpuTile, gpu: &GpuFacts) -> bool {
    GEMM_TILES.contains(t)
        && t.threads() <= gpu.max_threads_per_block
        && t.threads().is_multiple_of(gpu.warp_size.max(1))
        && shared_bytes(t) <= gpu.shared_bytes_per_block
}

/// Chooses the GEMM tile for an `m x n` output with reduction length `k` on `gpu`: the
/// largest supported candidate that still gives at least one block per SM (so the whole GPU
/// is busy) and whose rows and columns are not mostly padding (`m` and `n` at least half the
/// tile); small problems get the smallest tile. `k` does not matter: the reduction is
/// streamed in `bk` steps whatever its length.
pub fn gemm_tile(m: usize, n: usize, k: usize, gpu: &GpuFacts) -> GpuTile {
    let _ = k;
    GEMM_TILES
        .into_iter()
        .filter(|t| supported(t, gpu))
        .find(|t| t.blocks(m, n) >= gpu.sm_count && 2 * m >= t.bm && 2 * n >= t.bn)
        .unwrap_or(GEMM_TILES[GEMM_TILES.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_consistent() {
        for t in GEMM_TILES {
            assert_eq!(t.threads(), 256, "{t}");
            assert_eq!(t.bm % t.tm, 0);
            assert_eq!(t.bn % t.tn, 0);
            assert_eq!((t.bm * t.bk) % t.threads(), 0, "{t}");
            assert_eq!((t.bn * t.bk) % t.threads(), 0, "{t}");
            for gpu in [GpuFacts::sm80(), GpuFacts::sm90()] {
                assert!(supported(&t, &gpu), "{t}");
            }
        }
        let odd = GpuTile {
            bm: 48,
            bn: 32,
            bk: 16,
            tm: 3,
            tn: 2,
        };
        assert!(!supported(&odd, &GpuFacts::sm80()));
    }

    #[test]
    fn big_problems_get_big_tiles() {
        // MobileNetV2 batch 256, first expansion 1x1: m = 96, n = 256 * 112 * 112
        let t = gemm_tile(96, 256 * 112 * 112, 16, &GpuFacts::sm90());
        assert_eq!((t.bm, t.bn), (128, 128));
        // classifier at batch 256: m = 256, n = 1000
        let t = gemm_tile(256, 1000, 1280, &GpuFacts::sm80());
        assert_eq!((t.bm, t.bn), (64, 32));
    }

    #[test]
    fn small_problems_get_small_tiles() {
        // batch 1, last pointwise of MobileNetV2: 7x7 pixels, 320 -> 1280
        assert_eq!(gemm_tile(1280, 49, 320, &GpuFacts::sm90()), GEMM_TILES[3]);
        // a tiny ragged problem
        assert_eq!(gemm_tile(3, 5, 7, &GpuFacts::sm80()), GEMM_TILES[3]);
        // more SMs need more blocks: 64x64 tiles give 120 blocks (enough for 108, not 132)
        let (m, n) = (64 * 8, 64 * 15);
        assert_eq!(gemm_tile(m, n, 64, &GpuFacts::sm80()), GEMM_TILES[1]);
        assert_eq!(gemm_tile(m, n, 64, &GpuFacts::sm90()), GEMM_TILES[2]);
    }

    #[test]
    fn shared_memory_limit_excludes_tiles() {
        // 128x128x8 and 64x64x16 need 8 KiB each: a GPU with 6 KiB per block falls back
        // to 64x32x16 (6 KiB).
        let small = GpuFacts {
            shared_bytes_per_block: 6 << 10,
            ..GpuFacts::sm90()
        };
        let t = gemm_tile(96, 256 * 112 * 112, 16, &small);
        assert_eq!(t, GEMM_TILES[2]);
    }

    #[test]
    fn choice_is_deterministic() {
        for (m, n) in [(1, 1), (17, 300), (512, 512), (4096, 49)] {
            for gpu in [GpuFacts::sm80(), GpuFacts::sm90()] {
                assert_eq!(gemm_tile(m, n, 9, &gpu), gemm_tile(m, n, 9, &gpu));
            }
        }
    }
}
