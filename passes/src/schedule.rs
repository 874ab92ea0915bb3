//! Conv scheduling: classifies every conv (stem, depthwise, pointwise, standard, grouped) and
//! attaches a [`ConvSchedule`]: the class (read by the cost report and the CUDA code
//! generator) and, on GPU targets, the block tile of a pointwise conv's GEMM kernel (which
//! the CUDA code generator runs). The choice is a pure function of the conv's shapes and the
//! [`TargetFacts`]: [`classify`] and [`choose`] are unit-tested without any backend. The
//! schedule is printed in the IR dump.
//!
//! The CPU kernels choose their register tiles, orientations and layouts themselves, from
//! the shapes and their ISA table (`mnc_targets::cpu`, e.g. `rows_in_lanes`,
//! `DwGeom::in_lanes`); CPU tile sizes, a loop order and a depthwise-pointwise fusion plan
//! that this pass once computed were deleted because no backend executed them.

use crate::error::PassError;
use crate::manager::{Pass, PassContext};
use crate::target::{gpu_tile, TargetFacts};
use mnc_ir::schedule::{ConvClass, ConvSchedule};
use mnc_ir::{Graph, NodeId, Op};

const NAME: &str = "schedule";

/// Everything about a conv that its schedule depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Batch size.
    pub batch: usize,
    pub ic: usize,
    pub ih: usize,
    pub iw: usize,
    pub oc: usize,
    pub oh: usize,
    pub ow: usize,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub pads: [usize; 4],
    pub group: usize,
    /// Reads a graph input directly.
    pub is_stem: bool,
}

impl ConvShape {
    /// The shape facts of conv node `id` (None if `id` is not a conv).
    pub fn of(g: &Graph, id: NodeId) -> Option<ConvShape> {
        let Op::Conv(c) = &g.node(id).op else {
            return None;
        };
        let x = g.inputs(id)[0];
        let (xs, ys) = (&g.node(x).ty.shape, &g.node(id).ty.shape);
        Some(ConvShape {
            batch: xs[0],
            ic: xs[1],
            ih: xs[2],
            iw: xs[3],
            oc: ys[1],
            oh: ys[2],
            ow: ys[3],
            kernel: c.kernel,
            strides: c.strides,
            pads: c.pads,
            group: c.group,
            is_stem: reads_graph_input(g, x),
        })
    }
}

/// Whether `x` is a graph input, possibly through the input's layout Transpose and an
/// elementwise preprocessing chain (ChannelAffine, a binary op with a constant operand):
/// the conv reading it is the network's stem.
fn reads_graph_input(g: &Graph, mut x: NodeId) -> bool {
    loop {
        let ins = g.inputs(x);
        x = match &g.node(x).op {
            Op::Input { .. } => return true,
            Op::Transpose { .. } | Op::ChannelAffine => ins[0],
            Op::Binary(_) => {
                let konst: Vec<bool> = ins
                    .iter()
                    .map(|&i| matches!(g.node(i).op, Op::Constant(_)))
                    .collect();
                match konst.as_slice() {
                    [false, true] => ins[0],
                    [true, false] => ins[1],
                    _ => return false,
                }
            }
            _ => return false,
        };
    }
}

/// The structural class of a conv. A stem is an ungrouped, non-pointwise conv reading a
/// graph input (a 1x1 or depthwise conv on the input keeps its own class).
pub fn classify(s: &ConvShape) -> ConvClass {
    let pointwise = s.group == 1 && s.kernel == [1, 1] && s.strides == [1, 1] && s.pads == [0; 4];
    if s.is_stem && s.group == 1 && !pointwise {
        ConvClass::Stem
    } else if s.group > 1 && s.group == s.ic && s.group == s.oc {
        ConvClass::Depthwise
    } else if pointwise {
        ConvClass::Pointwise
    } else if s.group == 1 {
        ConvClass::Standard
    } else {
        ConvClass::Grouped
    }
}

/// The schedule of one conv on `t`: its class, and on a GPU target the block tile of
/// [`gpu_tile::gemm_tile`] for pointwise convs (run as a GEMM with `m = oc`, `n = batch * oh
/// * ow`, `k = ic`); other convs run one thread per output there and get none.
pub fn choose(s: &ConvShape, t: &TargetFacts) -> ConvSchedule {
    let class = classify(s);
    let gpu = match &t.gpu {
        Some(g) if class == ConvClass::Pointwise => {
            Some(gpu_tile::gemm_tile(s.oc, s.batch * s.oh * s.ow, s.ic, g))
        }
        _ => None,
    };
    ConvSchedule { class, gpu }
}

/// The scheduling pass: (re)computes the schedule of every conv.
#[derive(Default)]
pub struct Schedule;

impl Pass for Schedule {
    fn name(&self) -> &'static str {
        NAME
    }
    fn run(&self, g: &mut Graph, ctx: &PassContext) -> Result<usize, PassError> {
        let mut n = 0;
        for id in g.topo_order().map_err(PassError::ir(NAME))? {
            let Some(shape) = ConvShape::of(g, id) else {
                continue;
            };
            let s = choose(&shape, &ctx.target);
            if let Op::Conv(c) = &mut g.node_mut(id).op {
                if c.schedule.as_ref() != Some(&s) {
                    c.schedule = Some(s);
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn shape(ic: usize, oc: usize, hw: usize, k: usize, stride: usize, group: usize) -> ConvShape {
        let p = k / 2;
        let o = (hw + 2 * p - k) / stride + 1;
        ConvShape {
            batch: 1,
            ic,
            ih: hw,
            iw: hw,
            oc,
            oh: o,
            ow: o,
            kernel: [k, k],
            strides: [stride, stride],
            pads: [p; 4],
            group,
            is_stem: false,
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify(&shape(32, 32, 56, 3, 1, 32)), ConvClass::Depthwise);
        assert_eq!(classify(&shape(32, 64, 56, 3, 2, 32)), ConvClass::Grouped);
        assert_eq!(classify(&shape(32, 64, 56, 1, 1, 1)), ConvClass::Pointwise);
        assert_eq!(classify(&shape(32, 64, 56, 1, 2, 1)), ConvClass::Standard);
        assert_eq!(classify(&shape(32, 64, 56, 3, 1, 1)), ConvClass::Standard);
        assert_eq!(classify(&shape(32, 64, 56, 3, 1, 4)), ConvClass::Grouped);
        let mut stem = shape(3, 32, 224, 3, 2, 1);
        stem.is_stem = true;
        assert_eq!(classify(&stem), ConvClass::Stem);
        let mut first_pw = shape(16, 48, 8, 1, 1, 1);
        first_pw.is_stem = true;
        assert_eq!(classify(&first_pw), ConvClass::Pointwise);
    }

    #[test]
    fn pass_attaches_schedules_and_is_idempotent() {
        let g = crate::samples::mobilenet_v2_block(1).unwrap();
        let (after, n) = check_pass(&g, &Schedule, 0.0);
        assert_eq!(n, 4);
        let (_, again) = check_pass(&after, &Schedule, 0.0);
        assert_eq!(again, 0);
        let dw = after.find("features.1.conv.1.0").unwrap();
        match &after.node(dw).op {
            Op::Conv(c) => {
                let s = c.schedule.as_ref().unwrap();
                assert_eq!((s.class, s.gpu), (ConvClass::Depthwise, None));
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn gpu_tiles_only_on_gpu_targets_and_only_for_pointwise() {
        let mut pw = shape(320, 1280, 7, 1, 1, 1);
        assert_eq!(choose(&pw, &TargetFacts::default()).gpu, None);
        let h100 = TargetFacts::cuda_sm90();
        let gpu = h100.gpu.as_ref().unwrap();
        // batch 1: m = 1280, n = 49 -> the smallest tile.
        assert_eq!(
            choose(&pw, &h100).gpu,
            Some(gpu_tile::gemm_tile(1280, 49, 320, gpu))
        );
        assert_eq!(choose(&pw, &h100).gpu, Some(gpu_tile::GEMM_TILES[3]));
        // batch 256 multiplies n: big tiles.
        pw.batch = 256;
        let t = choose(&pw, &h100).gpu.unwrap();
        assert_eq!((t.bm, t.bn), (128, 128));
        let dw = shape(144, 144, 56, 3, 1, 144);
        assert_eq!(choose(&dw, &h100).gpu, None);
        assert_eq!(choose(&shape(16, 32, 5, 3, 1, 1), &h100).gpu, None);
    }
}
