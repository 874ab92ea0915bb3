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

/// The schedule of one conv: its class plus target-parameterized tiling.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvSchedule {
    pub class: ConvClass,
    /// Output channels computed per micro-kernel call.
    pub tile_oc: usize,
    /// Output pixels (along W) computed per micro-kernel call.
    pub tile_ow: usize,
    /// f32 lanes of the target's vectors.
    pub vector_width: usize,
}

impl fmt::Display for ConvSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} oc{} ow{} v{}",
            self.class, self.tile_oc, self.tile_ow, self.vector_width
        )
    }
}
