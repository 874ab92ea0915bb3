//! Depthwise/pointwise scheduling: classifies every conv (stem, depthwise, pointwise,
//! standard, grouped) and attaches a [`ConvSchedule`] (tile sizes, loop order, vector width,
//! and whether a depthwise conv is computed in row bands fused with the pointwise conv that
//! consumes it). The choice is a pure function of the conv's shapes and the
//! [`TargetFacts`]: [`classify`], [`choose`] and [`fuse_band_rows`] are unit-tested without
//! any backend. The schedule is printed in the IR dump. No backend executes these
//! schedules yet (the reference executor ignores them); in particular the depthwise-pointwise
//! fusion flag is a plan, not an executed fusion.

use crate::error::PassError;
use crate::manager::{Pass, PassContext};
use crate::target::{gpu_tile, TargetFacts};
use crate::util::single_user;
use mnc_ir::schedule::{ConvClass, ConvSchedule, LoopOrder};
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

/// The schedule of one conv on `t` (without depthwise-pointwise fusion; see
/// [`fuse_band_rows`]).
///
/// - Depthwise: one channel at a time, up to 4 vectors of output pixels per call (4
///   accumulators), the whole `kh*kw` window as the reduction.
/// - Others (GEMM-like): a register-blocked micro-kernel of `tile_oc x tile_ow` with
///   `tile_ow` = 2 vectors of output pixels (along H*W for pointwise, W otherwise) and
///   `tile_oc` the accumulator rows the register file holds beside the 2 input vectors and
///   one broadcast weight; the reduction is blocked so that one weight panel and one input
///   panel fill at most half of L1. Weights that fit half of L2 stream per pixel tile
///   (pixel-outer), larger ones stay per oc tile (oc-outer).
/// - On a GPU target, pointwise convs (run as a GEMM with `m = oc`, `n = batch * oh * ow`,
///   `k = ic`) also get the block tile of [`gpu_tile::gemm_tile`]; other convs run one
///   thread per output and get none.
pub fn choose(s: &ConvShape, t: &TargetFacts) -> ConvSchedule {
    let class = classify(s);
    let v = t.vector_f32.max(1);
    let round_v = |x: usize| x.div_ceil(v) * v;
    if class == ConvClass::Depthwise {
        return ConvSchedule {
            class,
            tile_oc: 1,
            tile_ow: (4 * v).min(round_v(s.ow)),
            tile_ic: s.kernel[0] * s.kernel[1],
            vector_width: v,
            loop_order: LoopOrder::ChannelOuter,
            fuse_pointwise: false,
            band_rows: 0,
            gpu: None,
        };
    }
    let pixels = if class == ConvClass::Pointwise {
        s.oh * s.ow
    } else {
        s.ow
    };
    let tile_ow = (2 * v).min(round_v(pixels));
    let nv = tile_ow.div_ceil(v);
    let oc_per_group = s.oc / s.group.max(1);
    let tile_oc = (t.vector_registers.saturating_sub(nv + 1) / nv)
        .max(1)
        .min(oc_per_group);
    let k = s.ic / s.group.max(1) * s.kernel[0] * s.kernel[1];
    let panel = (tile_oc + tile_ow) * 4;
    let tile_ic = ((t.l1_bytes / 2) / panel).clamp(1, k.max(1));
    let weight_bytes = s.oc * k * 4;
    let loop_order = if weight_bytes <= t.l2_bytes / 2 {
        LoopOrder::PixelOuter
    } else {
        LoopOrder::OcOuter
    };
    let gpu = match &t.gpu {
        Some(g) if class == ConvClass::Pointwise => {
            Some(gpu_tile::gemm_tile(s.oc, s.batch * s.oh * s.ow, s.ic, g))
        }
        _ => None,
    };
    ConvSchedule {
        class,
        tile_oc,
        tile_ow,
        tile_ic,
        vector_width: v,
        loop_order,
        fuse_pointwise: false,
        band_rows: 0,
        gpu,
    }
}

/// Rows per band when depthwise conv `dw` feeds pointwise conv `pw`: the most output rows
/// whose depthwise result (`C x rows x OW` f32) plus the pointwise output band
/// (`OC x rows x OW`) fit in half of L2, capped at the output height; `None` when not even
/// one row fits (then the two convs run separately).
pub fn fuse_band_rows(dw: &ConvShape, pw: &ConvShape, t: &TargetFacts) -> Option<usize> {
    let row_bytes = (dw.oc + pw.oc) * dw.ow * 4;
    let rows = (t.l2_bytes / 2) / row_bytes.max(1);
    (rows >= 1).then(|| rows.min(dw.oh))
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
            let mut s = choose(&shape, &ctx.target);
            if s.class == ConvClass::Depthwise {
                if let Some((user, 0)) = single_user(g, id) {
                    if let Some(pw) = ConvShape::of(g, user) {
                        if classify(&pw) == ConvClass::Pointwise {
                            if let Some(rows) = fuse_band_rows(&shape, &pw, &ctx.target) {
                                s.fuse_pointwise = true;
                                s.band_rows = rows;
                            }
                        }
                    }
                }
            }
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
    fn pointwise_tiles_follow_the_register_file() {
        let pw = shape(96, 24, 56, 1, 1, 1);
        let avx2 = choose(&pw, &TargetFacts::default());
        assert_eq!((avx2.tile_oc, avx2.tile_ow, avx2.vector_width), (6, 16, 8));
        assert_eq!(avx2.tile_ic, 96, "whole reduction fits half of L1");
        assert_eq!(avx2.loop_order, LoopOrder::PixelOuter);
        let avx512 = choose(&pw, &wide_cpu());
        assert_eq!((avx512.tile_oc, avx512.tile_ow), (14, 32));
        let neon = choose(&pw, &TargetFacts::aarch64_neon());
        assert_eq!((neon.tile_oc, neon.tile_ow), (14, 8));
        // 7x7 feature map = 49 pixels: 2 vectors on avx2; few output channels clamp tile_oc.
        let small = choose(&shape(960, 4, 7, 1, 1, 1), &TargetFacts::default());
        assert_eq!((small.tile_oc, small.tile_ow), (4, 16));
        // Tiny map on avx512: one vector only.
        let one = choose(&shape(8, 8, 2, 1, 1, 1), &wide_cpu());
        assert_eq!((one.tile_oc, one.tile_ow), (8, 16));
    }

    #[test]
    fn reduction_blocking_and_loop_order_follow_caches() {
        // 1280x320 pointwise: 1.6 MB of weights > L2/2 on avx2 -> oc-outer; K = 320 > the
        // L1 budget of 16384 / ((6 + 16) * 4) = 186.
        let s = choose(&shape(320, 1280, 7, 1, 1, 1), &TargetFacts::default());
        assert_eq!(s.loop_order, LoopOrder::OcOuter);
        assert_eq!(s.tile_ic, 186);
        // Standard 3x3: reduction over ic*9, pixels along W only.
        let s = choose(&shape(16, 32, 5, 3, 1, 1), &TargetFacts::default());
        assert_eq!(
            (s.class, s.tile_ow, s.tile_ic),
            (ConvClass::Standard, 8, 144)
        );
    }

    #[test]
    fn depthwise_schedule_and_fusion_band() {
        let dw = shape(144, 144, 56, 3, 1, 144);
        let s = choose(&dw, &TargetFacts::default());
        assert_eq!(
            (s.tile_oc, s.tile_ow, s.tile_ic, s.loop_order),
            (1, 32, 9, LoopOrder::ChannelOuter)
        );
        let pw = shape(144, 24, 56, 1, 1, 1);
        // (144 + 24) * 56 * 4 = 37632 bytes per row; 512 KiB / that = 13 rows.
        assert_eq!(fuse_band_rows(&dw, &pw, &TargetFacts::default()), Some(13));
        // A huge row does not fit: no fusion.
        let wide = shape(4096, 4096, 512, 3, 1, 4096);
        let wpw = shape(4096, 4096, 512, 1, 1, 1);
        assert_eq!(fuse_band_rows(&wide, &wpw, &TargetFacts::scalar()), None);
        // Capped at the output height.
        let tiny = shape(8, 8, 4, 3, 1, 8);
        assert_eq!(
            fuse_band_rows(&tiny, &shape(8, 8, 4, 1, 1, 1), &TargetFacts::scalar()),
            Some(4)
        );
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
                assert!(
                    !s.fuse_pointwise,
                    "before fusion the depthwise feeds a BatchNorm"
                );
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
