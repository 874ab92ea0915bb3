//! GPU tile parameters: a pure function of the problem shape and the architecture.

use super::CudaArch;
use std::fmt;

/// Block tiling of the shared-memory GEMM kernel (pointwise convs, Gemm, MatMul): each block
/// computes a `bm x bn` output tile, stepping the reduction by `bk`; each thread computes a
/// `tm x tn` micro-tile (rows strided by `bm / tm`, columns by `bn / tn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmTile {
    pub bm: usize,
    pub bn: usize,
    pub bk: usize,
    pub tm: usize,
    pub tn: usize,
}

impl GemmTile {
    /// Threads per block.
    pub fn threads(&self) -> usize {
        (self.bm / self.tm) * (self.bn / self.tn)
    }
    /// Number of blocks covering an `m x n` output.
    pub fn blocks(&self, m: usize, n: usize) -> usize {
        m.div_ceil(self.bm) * n.div_ceil(self.bn)
    }
}

impl fmt::Display for GemmTile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "block {}x{}x{} thread {}x{} ({} threads)",
            self.bm,
            self.bn,
            self.bk,
            self.tm,
            self.tn,
            self.threads()
        )
    }
}

/// The candidate tiles, largest first. All use 256 threads and load a whole number of
/// elements of each operand tile per thread.
pub const GEMM_TILES: [GemmTile; 4] = [
    GemmTile {
        bm: 128,
        bn: 128,
        bk: 8,
        tm: 8,
        tn: 8,
    },
    GemmTile {
        bm: 64,
        bn: 64,
        bk: 16,
        tm: 4,
        tn: 4,
    },
    GemmTile {
        bm: 64,
        bn: 32,
        bk: 16,
        tm: 4,
        tn: 2,
    },
    GemmTile {
        bm: 32,
        bn: 32,
        bk: 16,
        tm: 2,
        tn: 2,
    },
];

/// Chooses the GEMM tile for an `m x n` output with reduction length `k` on `arch`: the
/// largest candidate that still gives at least one block per SM (so the whole GPU is busy)
/// and whose rows are not mostly padding (`m` at least half the tile height); small
/// problems get the smallest tile.
pub fn gemm_tile(m: usize, n: usize, k: usize, arch: CudaArch) -> GemmTile {
    let sms = arch.sm_count();
    let _ = k; // the reduction is streamed in `bk` steps whatever its length
    for t in GEMM_TILES {
        if t.blocks(m, n) >= sms && 2 * m >= t.bm && 2 * n >= t.bn {
            return t;
        }
    }
    GEMM_TILES[GEMM_TILES.len() - 1]
}

/// Threads per block of the one-thread-per-output kernels (elementwise, depthwise, direct
/// conv, pooling).
pub const ELEMENTWISE_BLOCK: usize = 256;

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
            assert!(
                t.bk * (t.bm + t.bn) * 4 <= 48 * 1024,
                "{t}: static shared memory"
            );
        }
    }

    #[test]
    fn big_problems_get_big_tiles() {
        // MobileNetV2 batch 256, first expansion 1x1: m = 96, n = 256 * 112 * 112
        let t = gemm_tile(96, 256 * 112 * 112, 16, CudaArch::Sm90);
        assert_eq!((t.bm, t.bn), (128, 128));
        // classifier at batch 256: m = 256, n = 1000
        let t = gemm_tile(256, 1000, 1280, CudaArch::Sm80);
        assert_eq!((t.bm, t.bn), (64, 32));
    }

    #[test]
    fn small_problems_get_small_tiles() {
        // batch 1, last pointwise of MobileNetV2: 7x7 pixels, 320 -> 1280
        assert_eq!(gemm_tile(1280, 49, 320, CudaArch::Sm90), GEMM_TILES[3]);
        // a tiny ragged problem
        assert_eq!(gemm_tile(3, 5, 7, CudaArch::Sm80), GEMM_TILES[3]);
        // more SMs need more blocks: 64x64 tiles give 120 blocks (enough for 108, not 132)
        let (m, n) = (64 * 8, 64 * 15);
        assert_eq!(gemm_tile(m, n, 64, CudaArch::Sm80), GEMM_TILES[1]);
        assert_eq!(gemm_tile(m, n, 64, CudaArch::Sm90), GEMM_TILES[2]);
    }

    #[test]
    fn choice_is_deterministic() {
        for (m, n) in [(1, 1), (17, 300), (512, 512), (4096, 49)] {
            for arch in [CudaArch::Sm80, CudaArch::Sm90] {
                assert_eq!(gemm_tile(m, n, 9, arch), gemm_tile(m, n, 9, arch));
            }
        }
    }
}
