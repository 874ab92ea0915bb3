//! Execution schedules attached to ops by the scheduling pass (`mnc-passes`) and consumed by
//! the backends. Pure data: how a conv is classified and how its loops are tiled. The pass
//! that fills them in owns their meaning; the printer shows them in the IR dump.

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

/// Loop nest order of a conv schedule (outermost first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoopOrder {
    /// `oc tile { pixel tile { ic block { kh, kw } } }`: one output-channel tile's weights stay
    /// in cache while activations stream (large weights).
    OcOuter,
    /// `pixel tile { oc tile { ic block { kh, kw } } }`: an activation tile stays in cache
    /// while all weights stream from L2 (weights fit L2).
    PixelOuter,
    /// Depthwise: `channel { oh { ow tile { kh, kw } } }` (each channel independent).
    ChannelOuter,
}

impl fmt::Display for LoopOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoopOrder::OcOuter => "oc-outer",
            LoopOrder::PixelOuter => "pixel-outer",
            LoopOrder::ChannelOuter => "channel-outer",
        })
    }
}

/// The schedule of one conv: its class plus target-parameterized tiling. Chosen by the
/// scheduling pass as a pure function of shapes and target facts.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvSchedule {
    pub class: ConvClass,
    /// Output channels computed per micro-kernel call.
    pub tile_oc: usize,
    /// Output pixels (along W; along H*W for pointwise) computed per micro-kernel call.
    pub tile_ow: usize,
    /// Reduction elements (input channels x kernel taps) per cache block.
    pub tile_ic: usize,
    /// f32 lanes of the target's vectors.
    pub vector_width: usize,
    pub loop_order: LoopOrder,
    /// Depthwise only: computed in bands of `band_rows` output rows, each consumed at once by
    /// the pointwise conv that reads it, so the intermediate stays in cache. A plan: no
    /// backend executes the fused form yet.
    pub fuse_pointwise: bool,
    /// Rows per band when `fuse_pointwise` (0 otherwise).
    pub band_rows: usize,
}

impl fmt::Display for ConvSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} oc{} ow{} ic{} v{} {}",
            self.class,
            self.tile_oc,
            self.tile_ow,
            self.tile_ic,
            self.vector_width,
            self.loop_order
        )?;
        if self.fuse_pointwise {
            write!(f, " fuse-pw rows{}", self.band_rows)?;
        }
        Ok(())
    }
}
