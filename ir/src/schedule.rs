//! Execution schedules attached to ops by the scheduling pass (`mnc-passes`) and consumed by
//! the backends. Pure data: how a conv is classified (the cost report and the CUDA code
//! generator read it) and, on GPU targets, the block tile of its GEMM kernel (the CUDA code
//! generator runs it). The pass that fills them in owns their meaning; the printer shows them
//! in the IR dump. Nothing here is a plan that no backend executes: the CPU kernels choose
//! their register tiles and layouts from the shapes and their ISA table (`mnc-targets`).

use std::fmt;

/// Structural class of a convolution (drives kernel selection and cost reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvClass {
    /// The first conv on the network input.
    Stem,
    /// group == in channels == out channels (channel multiplier 1).
    Depthwise,
    /// 1x1, stride 1, ungrouped.
    Pointwise,
    /// Any other ungrouped conv.
    Standard,
    /// Grouped, but not depthwise.
    Grouped,
}

impl fmt::Display for ConvClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConvClass::Stem => "stem",
            ConvClass::Depthwise => "depthwise",
            ConvClass::Pointwise => "pointwise",
            ConvClass::Standard => "standard",
            ConvClass::Grouped => "grouped",
        })
    }
}

/// The schedule of one conv: its class and, on GPU targets, its GEMM block tile. Chosen by
/// the scheduling pass as a pure function of shapes and target facts.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvSchedule {
    pub class: ConvClass,
    /// GPU targets only: the block tile of the GEMM kernel that runs this conv (pointwise
    /// convs); `None` on CPU targets and for convs that GPUs run one thread per output.
    pub gpu: Option<GpuTile>,
}

impl fmt::Display for ConvSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.class)?;
        if let Some(t) = &self.gpu {
            write!(f, " gpu[{t}]")?;
        }
        Ok(())
    }
}

/// Threads per warp on NVIDIA GPUs (the unit [`GpuTile::warp`] is measured in).
pub const WARP_SIZE: usize = 32;

/// Tiling of a shared-memory GEMM on a GPU (pointwise convs, Gemm, MatMul): each block
/// computes a `bm x bn` output tile, stepping the reduction by `bk`; each thread computes a
/// `tm x tn` micro-tile (rows strided by `bm / tm`, columns by `bn / tn`). Threads are laid
/// out row-major over the `(bm / tm) x (bn / tn)` thread grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GpuTile {
    pub bm: usize,
    pub bn: usize,
    pub bk: usize,
    pub tm: usize,
    pub tn: usize,
}

impl GpuTile {
    /// Threads per block.
    pub fn threads(&self) -> usize {
        (self.bm / self.tm.max(1)) * (self.bn / self.tn.max(1))
    }
    /// Number of blocks covering an `m x n` output.
    pub fn blocks(&self, m: usize, n: usize) -> usize {
        m.div_ceil(self.bm.max(1)) * n.div_ceil(self.bn.max(1))
    }
    /// The `rows x cols` output region one warp of [`WARP_SIZE`] consecutive threads covers
    /// under the row-major thread layout (when a warp spans several thread rows).
    pub fn warp(&self) -> (usize, usize) {
        let thx = (self.bn / self.tn.max(1)).max(1);
        if thx >= WARP_SIZE {
            (self.tm, WARP_SIZE * self.tn)
        } else {
            ((WARP_SIZE / thx) * self.tm, thx * self.tn)
        }
    }
}

impl fmt::Display for GpuTile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (wm, wn) = self.warp();
        write!(
            f,
            "block {}x{}x{} warp {}x{} thread {}x{}",
            self.bm, self.bn, self.bk, wm, wn, self.tm, self.tn
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_tile_geometry_and_display() {
        let t = GpuTile {
            bm: 128,
            bn: 128,
            bk: 8,
            tm: 8,
            tn: 8,
        };
        assert_eq!(t.threads(), 256);
        assert_eq!(t.blocks(129, 128), 2);
        // 16 threads per row: a warp is 2 thread rows of 8x8 micro-tiles.
        assert_eq!(t.warp(), (16, 128));
        assert_eq!(t.to_string(), "block 128x128x8 warp 16x128 thread 8x8");
        let wide = GpuTile {
            bm: 8,
            bn: 256,
            bk: 8,
            tm: 1,
            tn: 4,
        };
        assert_eq!(wide.warp(), (1, 128));
    }

    #[test]
    fn gpu_tile_is_printed_only_when_present() {
        let mut s = ConvSchedule {
            class: ConvClass::Pointwise,
            gpu: None,
        };
        assert_eq!(s.to_string(), "pointwise");
        s.gpu = Some(GpuTile {
            bm: 32,
            bn: 32,
            bk: 16,
            tm: 2,
            tn: 2,
        });
        assert_eq!(
            s.to_string(),
            "pointwise gpu[block 32x32x16 warp 4x32 thread 2x2]"
        );
    }
}
