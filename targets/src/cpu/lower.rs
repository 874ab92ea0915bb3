//! Per-op lowering: decides how each op runs ([`plan_op`]: generated code, a no-op view, or
//! a visible fallback to the reference kernel) and emits its Cranelift function
//! ([`emit_op`]), specialized to the op's static shapes.
//!
//! Pointer-table layout of a generated function: slot 0 is the output, slots `1..=n_in` the
//! op's inputs in order, then the op's packed constants (`extras`, made at compile time), then
//! the scratch area when `scratch_bytes > 0`.

use super::emit::{Emitter, Operand};
use super::isa::IsaDesc;
use super::kernels::stem::{self, STEM_MAX_CI};
use super::kernels::{
    dw_tasks, pack_a, pack_gemv_b, DwGeom, DwPath, Epilogue, GemmCall, GemvCall, Kernel, SeGeom,
    GEMV_MAX_ROWS,
};
use cranelift_codegen::ir::{types, FuncRef, InstBuilder, Value};
use mnc_ir::eval::conv::valid_range;
use mnc_ir::facts;
use mnc_ir::{Activation, BinaryOp, Conv, DType, Op, PoolKind, Tensor, TensorType};

/// What the lowering needs to know about one node.
pub struct OpInfo<'g> {
    pub op: &'g Op,
    pub inputs: Vec<TensorType>,
    /// The constant value of each input, when it is a constant.
    pub consts: Vec<Option<&'g Tensor>>,
    pub out: TensorType,
}

impl<'g> OpInfo<'g> {
    /// What the lowering needs about node `id` of `g`: its op, input and output types, and the
    /// value of every constant input.
    pub fn of(g: &'g mnc_ir::Graph, id: mnc_ir::NodeId) -> Self {
        let node = g.node(id);
        let ins = g.inputs(id);
        OpInfo {
            op: &node.op,
            inputs: ins.iter().map(|&i| g.node(i).ty.clone()).collect(),
            consts: ins
                .iter()
                .map(|&i| match &g.node(i).op {
                    Op::Constant(t) => Some(t),
                    _ => None,
                })
                .collect(),
            out: node.ty.clone(),
        }
    }
}

/// How one op is executed.
pub enum Plan {
    /// A generated function.
    Jit(JitPlan),
    /// The output is the input's bytes (reshape family): no code, same buffer.
    View,
    /// The reference kernel (`mnc_ir::eval::eval_op`), with the reason it is not lowered.
    Fallback(String),
}

/// A lowered op: its kind, packed constants and scratch need.
pub struct JitPlan {
    pub kind: Kind,
    /// Constants packed at compile time, passed after the inputs.
    pub extras: Vec<Vec<f32>>,
    pub scratch_bytes: usize,
    /// Floating-point operations of one run (mult-adds count 2), for reports.
    pub flops: u64,
}

/// The lowering strategy chosen for an op.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Conv through the GEMM kernel with its fused epilogue (im2col into scratch unless
    /// 1x1/s1/p0), split over `threads`: A packed per group in extra 0, the
    /// [`GemmCall`] in extra 1.
    ConvGemm {
        im2col: bool,
        /// The GEMM kernel runs it with the output rows in the lanes ([`Kernel::rows_in_lanes`]).
        rows_in_lanes: bool,
        threads: usize,
    },
    /// Conv with one input channel per group (depthwise and channel multipliers): either the
    /// per-ISA depthwise op kernel (`kernel`: the path it takes, [`DwGeom::path`]; geometry
    /// in extra 0, scratch for the path's planes, fused epilogue, split over `threads`), or
    /// (`None`) generated register-accumulating loops over a zero-padded copy of each plane.
    ConvDirect {
        kernel: Option<DwPath>,
        threads: usize,
    },
    /// Ungrouped conv with at most [`STEM_MAX_CI`] input channels (the stem) through the
    /// per-ISA direct stem kernel ([`super::kernels::stem`]): geometry in extra 0, the padded
    /// input planes in scratch, fused epilogue, split over `threads`.
    ConvStem {
        threads: usize,
    },
    Act(Activation),
    /// `x * scale[c] + bias[c]`; scale/bias are extras 0/1 for BatchNorm, inputs 1/2 for
    /// ChannelAffine.
    Affine {
        from_extras: bool,
    },
    Binary(BinaryOp),
    /// Mean over the trailing `inner` elements of each of `planes` rows.
    Mean {
        planes: usize,
        inner: usize,
    },
    /// SqueezeExcite through the per-ISA kernel (geometry in extra 0), split over `threads`.
    SqueezeExcite {
        threads: usize,
    },
    /// Max or average pooling (generated window loops); average pooling divides by a row
    /// factor times a column factor (extras 0 and 1).
    Pool,
    /// Gemm / MatMul with the constant B packed in 16-column panels (extra 0).
    Gemm,
    /// Gemm / MatMul of one row through the matrix-vector kernel: `alpha B` (k x n) in extra
    /// 0, `beta C` per output feature in extra 1 when the op has C, then the [`GemvCall`].
    GemmVec {
        threads: usize,
    },
    Concat {
        axis: usize,
    },
    /// Data movement and Softmax (Transpose, Slice, Pad, Gather, Softmax): see
    /// [`super::lower_data`].
    Data(super::lower_data::DataKind),
    /// LRN through the Rust kernel ([`super::kernels::lrn`], geometry in extra 0), split
    /// over `threads`.
    Lrn {
        threads: usize,
    },
    /// A quantized op through the ISA's int8 kernel set ([`super::lower_int8`]): the entry,
    /// its symbol in the chosen set, split over `threads`.
    Int8 {
        entry: super::lower_int8::Int8Entry,
        symbol: &'static str,
        threads: usize,
    },
}

/// Short name of the strategy, for reports.
impl Kind {
    /// Whether the strategy's multiply-adds are 8-bit integer ones (the int8 convs), which
    /// the profile places under the int8 peak.
    pub fn int8_macs(&self) -> bool {
        use super::lower_int8::Int8Entry;
        matches!(
            self,
            Kind::Int8 {
                entry: Int8Entry::Conv | Int8Entry::Depthwise,
                ..
            }
        )
    }

    pub fn label(&self) -> &'static str {
        match self {
            Kind::ConvGemm {
                im2col: true,
                rows_in_lanes: false,
                ..
            } => "conv-im2col-gemm",
            Kind::ConvGemm {
                im2col: true,
                rows_in_lanes: true,
                ..
            } => "conv-im2col-gemm-rows",
            Kind::ConvGemm {
                im2col: false,
                rows_in_lanes: false,
                ..
            } => "conv-gemm",
            Kind::ConvGemm {
                im2col: false,
                rows_in_lanes: true,
                ..
            } => "conv-gemm-rows",
            Kind::ConvDirect {
                kernel: Some(path), ..
            } => match path {
                DwPath::Padded => "conv-dw-padded",
                DwPath::Unpadded => "conv-dw-unpadded",
                DwPath::Lanes => "conv-dw-lanes",
            },
            Kind::ConvDirect { kernel: None, .. } => "conv-direct",
            Kind::ConvStem { .. } => "conv-stem-kernel",
            Kind::Act(_) => "act",
            Kind::Affine { .. } => "affine",
            Kind::Binary(_) => "binary",
            Kind::Mean { .. } => "mean",
            Kind::SqueezeExcite { .. } => "squeeze-excite",
            Kind::Pool => "pool",
            Kind::Gemm => "gemm",
            Kind::GemmVec { .. } => "gemm-kernel",
            Kind::Concat { .. } => "concat",
            Kind::Data(d) => d.label(),
            Kind::Lrn { .. } => "lrn-kernel",
            Kind::Int8 { entry, .. } => entry.label(),
        }
    }
}

pub(crate) fn jit(kind: Kind, extras: Vec<Vec<f32>>, scratch_bytes: usize, flops: u64) -> Plan {
    Plan::Jit(JitPlan {
        kind,
        extras,
        scratch_bytes,
        flops,
    })
}

/// Conv geometry, in elements.
pub struct Geo {
    n: usize,
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    cig: usize,
    cog: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
}

fn geo(c: &Conv, info: &OpInfo) -> Geo {
    let (xs, ws, ys) = (
        &info.inputs[0].shape,
        &info.inputs[1].shape,
        &info.out.shape,
    );
    Geo {
        n: xs[0],
        ci: xs[1],
        h: xs[2],
        w: xs[3],
        co: ws[0],
        cig: ws[1],
        cog: ws[0] / c.group.max(1),
        kh: ws[2],
        kw: ws[3],
        oh: ys[2],
        ow: ys[3],
    }
}

/// Chooses how `info.op` runs on the ISA `isa` (its kernel set), with `threads`
/// threads per run. Fails (with the reason) when a size the op's code needs, such as its
/// scratch area, overflows or exceeds [`super::MAX_ARENA_BYTES`].
pub fn plan_op(info: &OpInfo, isa: &IsaDesc, threads: usize) -> Result<Plan, String> {
    let threads = threads.max(1);
    // Gather's indices are i64 (read at compile time when constant, see `lower_data`).
    let all_f32 = info.out.dtype == DType::F32
        && info.inputs.iter().enumerate().all(|(k, t)| {
            t.dtype == DType::F32 || (k == 1 && matches!(info.op, Op::Gather { .. }))
        });
    if info
        .inputs
        .first()
        .is_some_and(|t| facts::is_view(info.op, t.dtype))
    {
        return Ok(Plan::View);
    }
    if let Some(plan) = super::lower_int8::plan(info, isa, threads) {
        return plan;
    }
    if !all_f32 {
        return Ok(Plan::Fallback("non-f32 operands".into()));
    }
    let numel = info.out.numel();
    Ok(match info.op {
        Op::Conv(c) => plan_conv(c, info, isa, threads)?,
        Op::Act(a) => jit(Kind::Act(*a), vec![], 0, numel as u64),
        Op::ChannelAffine => {
            if info.inputs[0].shape.len() < 2 {
                return Ok(Plan::Fallback("affine input has rank < 2".into()));
            }
            jit(
                Kind::Affine { from_extras: false },
                vec![],
                0,
                2 * numel as u64,
            )
        }
        Op::BatchNorm { epsilon } => {
            if info.inputs[0].shape.len() < 2 {
                return Ok(Plan::Fallback("BatchNorm input has rank < 2".into()));
            }
            let vals: Option<Vec<&[f32]>> = (1..5)
                .map(|i| info.consts[i].and_then(|t| t.as_f32()))
                .collect();
            let Some(v) = vals else {
                return Ok(Plan::Fallback(
                    "BatchNorm parameters are not constant".into(),
                ));
            };
            let (scale, bias, mean, var) = (v[0], v[1], v[2], v[3]);
            let s: Vec<f32> = (0..scale.len())
                .map(|c| scale[c] / (var[c] + epsilon).sqrt())
                .collect();
            let b: Vec<f32> = (0..scale.len()).map(|c| bias[c] - mean[c] * s[c]).collect();
            jit(
                Kind::Affine { from_extras: true },
                vec![s, b],
                0,
                2 * numel as u64,
            )
        }
        Op::Binary(b) => jit(Kind::Binary(*b), vec![], 0, numel as u64),
        Op::GlobalAveragePool => {
            let s = &info.inputs[0].shape;
            jit(
                Kind::Mean {
                    planes: s[0] * s[1],
                    inner: s[2] * s[3],
                },
                vec![],
                0,
                info.inputs[0].numel() as u64,
            )
        }
        Op::ReduceMean { axes, .. } => {
            let s = &info.inputs[0].shape;
            let r = s.len();
            let trailing = !axes.is_empty()
                && axes
                    .iter()
                    .enumerate()
                    .all(|(i, &a)| a == r - axes.len() + i);
            if !trailing {
                return Ok(Plan::Fallback("ReduceMean over non-trailing axes".into()));
            }
            let inner: usize = s[r - axes.len()..].iter().product();
            let planes: usize = s[..r - axes.len()].iter().product();
            if inner == 0 {
                return Ok(Plan::Fallback("ReduceMean over an empty axis".into()));
            }
            jit(
                Kind::Mean { planes, inner },
                vec![],
                0,
                info.inputs[0].numel() as u64,
            )
        }
        Op::SqueezeExcite(se) => {
            let s = &info.inputs[0].shape;
            if s.len() != 4 {
                return Ok(Plan::Fallback("SqueezeExcite input is not 4-D".into()));
            }
            let r = info.inputs[1].shape[0];
            let flops = (s.iter().product::<usize>() * 2 + 4 * s[0] * s[1] * r) as u64;
            let geom = SeGeom {
                n: s[0] as u64,
                c: s[1] as u64,
                hw: (s[2] * s[3]) as u64,
                r: r as u64,
                hidden: Epilogue::new(true, false, Some(se.act)),
                gate: Epilogue::new(true, false, Some(se.gate)),
            };
            jit(
                Kind::SqueezeExcite { threads },
                vec![geom.to_blob()],
                geom.scratch_floats() * 4,
                flops,
            )
        }
        Op::Pool(p) => plan_pool(p, info),
        Op::Gemm(_) | Op::MatMul => plan_gemm(info, isa, threads),
        Op::Concat { axis } => jit(Kind::Concat { axis: *axis }, vec![], 0, 0),
        Op::Transpose { .. }
        | Op::Slice(_)
        | Op::Pad { .. }
        | Op::Gather { .. }
        | Op::Softmax { .. } => super::lower_data::plan(info),
        Op::Lrn(l) => {
            let s = &info.inputs[0].shape;
            if s.len() < 2 {
                return Ok(Plan::Fallback("LRN input has rank < 2".into()));
            }
            let inner: usize = s[2..].iter().product();
            let geom = super::kernels::lrn::LrnGeom::new(l, s[0], s[1], inner);
            // Per element: the window's squares (mult-adds), the scale (mult-add), the
            // power (counted as 2) and the division.
            let per = 2 * l.size.min(s[1]) as u64 + 5;
            jit(
                Kind::Lrn { threads },
                vec![geom.to_blob()],
                0,
                per * numel as u64,
            )
        }
        // Views returned above; a cast between types has non-f32 operands.
        Op::Identity
        | Op::Dropout
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Cast { .. }
        | Op::Input { .. }
        | Op::Constant(_)
        | Op::Quantize(_)
        | Op::Dequantize(_)
        | Op::QConv(_)
        | Op::QLut(_)
        | Op::QGlobalAveragePool(_)
        | Op::QBinary(_) => Plan::Fallback(format!("{} is not lowered", info.op.kind())),
    })
}

/// Windows with more taps than this are not unrolled into generated code (im2col, the
/// direct conv, pooling): such ops run on the reference kernel, reported as a fallback, so
/// the code size of every generated function stays bounded.
pub const MAX_UNROLLED_TAPS: usize = 16 * 16;

/// `floats` f32 of scratch in bytes, refused when the count overflowed (`None`) or the bytes
/// exceed the arena limit [`super::MAX_ARENA_BYTES`].
pub fn scratch_bytes(floats: Option<usize>, what: &str) -> Result<usize, String> {
    floats
        .and_then(|f| f.checked_mul(4))
        .filter(|&b| b <= super::MAX_ARENA_BYTES)
        .ok_or_else(|| {
            format!(
                "the {what} scratch area would exceed the {} GiB arena limit",
                super::MAX_ARENA_BYTES >> 30
            )
        })
}

/// The fallback reason for a window that is too large to unroll, if it is.
fn too_many_taps(kh: usize, kw: usize) -> Option<Plan> {
    (kh.saturating_mul(kw) > MAX_UNROLLED_TAPS).then(|| {
        Plan::Fallback(format!(
            "window {kh}x{kw} has more than {MAX_UNROLLED_TAPS} taps (not unrolled)"
        ))
    })
}

/// The geometry the depthwise and stem kernels read (`tasks`: scratch planes of the
/// depthwise kernel; the stem kernel ignores it and `cog`).
fn direct_geom(g: &Geo, c: &Conv, hp: usize, wp: usize, tasks: usize) -> DwGeom {
    let u = |v: usize| v as u64;
    DwGeom {
        planes: u(g.n * g.co),
        co: u(g.co),
        ci: u(g.ci),
        cog: u(g.cog),
        h: u(g.h),
        w: u(g.w),
        pt: u(c.pads[0]),
        pl: u(c.pads[1]),
        kh: u(g.kh),
        kw: u(g.kw),
        sy: u(c.strides[0]),
        sx: u(c.strides[1]),
        dy: u(c.dilations[0]),
        dx: u(c.dilations[1]),
        oh: u(g.oh),
        ow: u(g.ow),
        hp: u(hp),
        wp: u(wp),
        epi: Epilogue::of_op(c.has_bias, &c.epilogue),
        tasks: u(tasks),
    }
}

/// The plan of a conv ([`plan_op`]).
fn plan_conv(c: &Conv, info: &OpInfo, isa: &IsaDesc, threads: usize) -> Result<Plan, String> {
    if info.inputs[0].shape.len() != 4 {
        return Ok(Plan::Fallback("conv input is not 4-D".into()));
    }
    let g = geo(c, info);
    let flops = 2 * (g.n * g.co * g.oh * g.ow * g.cig * g.kh * g.kw) as u64;
    if g.cig == 1 {
        let (hp, wp) = direct_padded(&g, c)?;
        if isa.dw.is_none() {
            if let Some(p) = too_many_taps(g.kh, g.kw) {
                return Ok(p);
            }
            let kind = Kind::ConvDirect {
                kernel: None,
                threads: 1,
            };
            let scratch = scratch_bytes(hp.checked_mul(wp), "padded plane")?;
            return Ok(jit(kind, vec![], scratch, flops));
        }
        let geom = direct_geom(&g, c, hp, wp, dw_tasks(threads).min(g.n * g.co).max(1));
        let kind = Kind::ConvDirect {
            kernel: Some(geom.path(isa.lanes)),
            threads,
        };
        let scratch = scratch_bytes(geom.scratch_floats(isa.lanes), "padded planes")?;
        return Ok(jit(kind, vec![geom.to_blob()], scratch, flops));
    }
    let Some(wt) = info.consts[1] else {
        return Ok(Plan::Fallback("conv weights are not constant".into()));
    };
    let Some(wv) = wt.as_f32() else {
        return Ok(Plan::Fallback("conv weights are not f32".into()));
    };
    let pointwise = g.kh == 1
        && g.kw == 1
        && c.strides == [1, 1]
        && c.pads == [0; 4]
        && g.oh == g.h
        && g.ow == g.w;
    if isa.stem.is_some() && c.group == 1 && g.ci <= STEM_MAX_CI && !pointwise {
        let (hp, wp) = direct_padded(&g, c)?;
        let geom = direct_geom(&g, c, hp, wp, 1);
        let scratch = scratch_bytes(stem::scratch_floats(&geom), "padded input planes")?;
        // Weights tap-major, `[(c, ky, kx)][o]`: a tap's weights for a block of output
        // channels are contiguous (broadcasts at immediate offsets). That is `pack_a` with
        // all `co` rows in one block.
        let packed = pack_a(wv, g.co, g.ci * g.kh * g.kw, g.co.max(1));
        return Ok(jit(
            Kind::ConvStem { threads },
            vec![geom.to_blob(), packed],
            scratch,
            flops,
        ));
    }
    let k = g.cig * g.kh * g.kw;
    if !pointwise {
        if let Some(p) = too_many_taps(g.kh, g.kw) {
            return Ok(p);
        }
    }
    let scratch = if pointwise {
        0
    } else {
        scratch_bytes(k.checked_mul(g.oh * g.ow), "im2col")?
    };
    let mut packed = Vec::new();
    let mr = isa.gemm.a_block_rows(g.cog, g.oh * g.ow);
    for grp in 0..c.group {
        let rows = &wv[grp * g.cog * k..(grp + 1) * g.cog * k];
        packed.extend(pack_a(rows, g.cog, k, mr));
    }
    // One call per batch element and group: B (the input plane or the im2col rows) and C
    // are `oh * ow` columns wide.
    let nn = (g.oh * g.ow) as u64;
    let call = GemmCall {
        m: g.cog as u64,
        n: nn,
        k: k as u64,
        ldb: nn,
        ldc: nn,
        epi: Epilogue::of_op(c.has_bias, &c.epilogue),
    };
    Ok(jit(
        Kind::ConvGemm {
            im2col: !pointwise,
            rows_in_lanes: isa.gemm.rows_in_lanes(g.cog, g.oh * g.ow),
            threads,
        },
        vec![packed, call.to_blob()],
        scratch,
        flops,
    ))
}

/// Per output position along one pooling axis: how many taps fall inside the input, and how
/// many inside the padded input, each in O(1) (`O(out)` in all; the divisor of output
/// `(oy, ox)` is the product of its row's and its column's counts).
fn pool_axis_counts(
    input: usize,
    out: usize,
    kernel: usize,
    stride: usize,
    dil: usize,
    pads: (usize, usize),
) -> Vec<(usize, usize)> {
    // Sizes were checked by shape inference: padded extents are at most 2^32.
    let (input, pb, pe) = (input as i64, pads.0 as i64, pads.1 as i64);
    let (kernel, dil) = (kernel as i64, dil as i64);
    // Taps `k` in `0..kernel` with `lo <= start + k * dil < hi`.
    let taps_in = |start: i64, lo: i64, hi: i64| -> usize {
        let first = (lo - start).div_euclid(dil) + i64::from((lo - start).rem_euclid(dil) != 0);
        let last = (hi - 1 - start).div_euclid(dil);
        (last.min(kernel - 1) - first.max(0) + 1).max(0) as usize
    };
    (0..out)
        .map(|o| {
            let start = (o * stride) as i64 - pb;
            (taps_in(start, 0, input), taps_in(start, -pb, input + pe))
        })
        .collect()
}

/// The plan of a pooling op ([`plan_op`]): generated code with the divisor table of average
/// pooling as extra 0.
fn plan_pool(p: &mnc_ir::Pool, info: &OpInfo) -> Plan {
    if let Some(plan) = too_many_taps(p.kernel[0], p.kernel[1]) {
        return plan;
    }
    let (s, o) = (&info.inputs[0].shape, &info.out.shape);
    let rows = pool_axis_counts(
        s[2],
        o[2],
        p.kernel[0],
        p.strides[0],
        p.dilations[0],
        (p.pads[0], p.pads[2]),
    );
    let cols = pool_axis_counts(
        s[3],
        o[3],
        p.kernel[1],
        p.strides[1],
        p.dilations[1],
        (p.pads[1], p.pads[3]),
    );
    let empty_row = rows.iter().position(|r| r.0 == 0);
    let empty_col = cols.iter().position(|c| c.0 == 0);
    if empty_row.is_some() || empty_col.is_some() {
        return Plan::Fallback(format!(
            "a pooling window (output row {empty_row:?}, column {empty_col:?}) covers no input cell"
        ));
    }
    let flops = (info.out.numel() * p.kernel[0] * p.kernel[1]) as u64;
    // Average pooling: the divisor of output (oy, ox) is row factor oy times column factor
    // ox (extras 0 and 1; each count is at most 256, so the product is exact in f32).
    let extras = if p.kind == PoolKind::Avg {
        let factors = |counts: &[(usize, usize)]| -> Vec<f32> {
            let pick = |&(valid, padded): &(usize, usize)| {
                if p.count_include_pad {
                    padded
                } else {
                    valid
                }
            };
            counts.iter().map(|c| pick(c) as f32).collect()
        };
        vec![factors(&rows), factors(&cols)]
    } else {
        vec![]
    };
    jit(Kind::Pool, extras, 0, flops)
}

/// The input whose buffer the output of a planned op may take over when that input dies
/// at this op (in-place execution), with whether the input's buffer must feed no other input
/// slot of the op: the first of the op's in-place inputs ([`facts::OpFacts::in_place`]) whose
/// type is the output's, when the op's strategy `kind` is [`in_place_capable`] (every
/// strategy [`plan_op`] picks for those ops is: a unit test checks it).
pub fn in_place_input(kind: &Kind, info: &OpInfo) -> Option<(usize, bool)> {
    if !in_place_capable(kind) {
        return None;
    }
    let first = facts::in_place_candidates(info.op, &info.inputs, &info.out)
        .into_iter()
        .next()?;
    Some((first.slot, first.exclusive))
}

/// Whether the code of `kind` reads each element of an in-place input just before writing
/// the same output element and never again (what [`facts::OpFacts::in_place`] promises for
/// the ops this strategy runs).
pub fn in_place_capable(kind: &Kind) -> bool {
    match kind {
        Kind::Act(_)
        | Kind::Affine { .. }
        | Kind::Binary(_)
        | Kind::ConvGemm { .. }
        | Kind::ConvDirect { .. }
        | Kind::ConvStem { .. }
        | Kind::SqueezeExcite { .. } => true,
        // Table lookups (portable and vector) read each byte (or 64-byte block) just before
        // writing it; the other int8 entries do not run in place.
        Kind::Int8 { entry, .. } => *entry == super::lower_int8::Int8Entry::Lut,
        // The generated GEMM stores each accumulated row before its epilogue reads C or the
        // residual; the others read their input across the output.
        Kind::Gemm
        | Kind::GemmVec { .. }
        | Kind::Mean { .. }
        | Kind::Pool
        | Kind::Concat { .. }
        | Kind::Data(_)
        | Kind::Lrn { .. } => false,
    }
}

/// Gemm (any transposes, C, epilogue) and MatMul with a rank-2 B, when B is constant.
///
/// Up to `GEMV_MAX_ROWS` rows of A (the classifier, one row per image) with C absent or one
/// value per output feature: `y = a (alpha B) + beta C` through the matrix-vector kernel
/// (`GemmVec`; `alpha B` stored by `pack_gemv_b`), split over the threads by output features. Otherwise B is packed into panels of 16 columns,
/// `[n/16][k][16]`, zero-padded, for generated code.
fn plan_gemm(info: &OpInfo, isa: &IsaDesc, threads: usize) -> Plan {
    let (m, k, n, trans_b) = match info.op {
        Op::Gemm(g) => {
            let (a, b) = (&info.inputs[0].shape, &info.inputs[1].shape);
            let (m, k) = if g.trans_a {
                (a[1], a[0])
            } else {
                (a[0], a[1])
            };
            let n = if g.trans_b { b[0] } else { b[1] };
            (m, k, n, g.trans_b)
        }
        Op::MatMul => {
            let (a, b) = (&info.inputs[0].shape, &info.inputs[1].shape);
            if b.len() != 2 || a.len() < 2 {
                return Plan::Fallback("MatMul with a batched B".into());
            }
            (a[..a.len() - 1].iter().product(), b[0], b[1], false)
        }
        _ => return Plan::Fallback("not a matrix product".into()),
    };
    let Some(bv) = info.consts[1].and_then(|t| t.as_f32()) else {
        return Plan::Fallback("B operand is not constant".into());
    };
    if let Some(p) = plan_gemm_vec(info, isa, threads, (m, k, n, trans_b), bv) {
        return p;
    }
    let np = n.div_ceil(16);
    let mut packed = vec![0.0f32; np * k * 16];
    for p in 0..k {
        for j in 0..n {
            packed[((j / 16) * k + p) * 16 + j % 16] = b_elem(bv, trans_b, k, n, p, j);
        }
    }
    jit(Kind::Gemm, vec![packed], 0, 2 * (m * n * k) as u64)
}

/// Element `(p, j)` of the `k x n` matrix B stored as given (`n x k` when `trans_b`).
fn b_elem(bv: &[f32], trans_b: bool, k: usize, n: usize, p: usize, j: usize) -> f32 {
    if trans_b {
        bv[j * k + p]
    } else {
        bv[p * n + j]
    }
}

/// The `GemmVec` plan of [`plan_gemm`] when it applies.
fn plan_gemm_vec(
    info: &OpInfo,
    isa: &IsaDesc,
    threads: usize,
    (m, k, n, trans_b): (usize, usize, usize, bool),
    bv: &[f32],
) -> Option<Plan> {
    let (alpha, beta, has_c, epi, trans_a) = match info.op {
        Op::Gemm(g) => (
            g.alpha,
            g.beta,
            g.has_c,
            Epilogue::of_op(g.has_c, &g.epilogue),
            g.trans_a,
        ),
        _ => (1.0, 0.0, false, Epilogue::NONE, false),
    };
    // A few rows of A, row-major (one row is either way).
    if m == 0 || m > GEMV_MAX_ROWS || m > 1 && trans_a {
        return None;
    }
    // B as k x n row-major, scaled by alpha (read along the stored rows).
    let mut bk = vec![0.0f32; n * k];
    if trans_b {
        for (j, col) in bv.chunks_exact(k.max(1)).take(n).enumerate() {
            for (p, &v) in col.iter().enumerate() {
                bk[p * n + j] = alpha * v;
            }
        }
    } else {
        for (d, &v) in bk.iter_mut().zip(bv) {
            *d = alpha * v;
        }
    }
    let mut extras = vec![pack_gemv_b(&bk, k, n, isa.lanes)];
    if has_c {
        let c = info.consts[2]?.as_f32()?;
        let bias: Vec<f32> = match c.len() {
            1 => vec![beta * c[0]; n],
            len if len == n && info.inputs[2].shape.last() == Some(&n) => {
                c.iter().map(|&v| beta * v).collect()
            }
            _ => return None,
        };
        extras.push(bias);
    }
    extras.push(
        GemvCall {
            m: m as u64,
            n: n as u64,
            k: k as u64,
            epi,
        }
        .to_blob(),
    );
    Some(jit(
        Kind::GemmVec { threads },
        extras,
        0,
        2 * (m * n * k) as u64,
    ))
}

/// The `std::arch` kernels imported into one generated function.
#[derive(Clone, Default)]
pub struct KernelRefs {
    /// GEMM with fused epilogue ([`super::kernels::GemmFn`]).
    pub gemm: Option<FuncRef>,
    /// Depthwise op ([`super::kernels::DwFn`]; AVX2/AVX-512 only).
    pub dw: Option<FuncRef>,
    /// Stem conv ([`super::kernels::stem::StemFn`]; AVX2/AVX-512 only).
    pub stem: Option<FuncRef>,
    /// Matrix-vector product ([`super::kernels::GemvFn`]).
    pub gemv: Option<FuncRef>,
    /// SqueezeExcite ([`super::kernels::SeFn`]).
    pub se: Option<FuncRef>,
    /// The [`super::kernels::shared_kernels`] by symbol.
    pub shared: Vec<(&'static str, FuncRef)>,
}

impl KernelRefs {
    /// The shared kernel called `symbol`.
    fn shared(&self, symbol: &str) -> Result<FuncRef, String> {
        self.shared
            .iter()
            .find(|(s, _)| *s == symbol)
            .map(|&(_, f)| f)
            .ok_or_else(|| format!("the kernel {symbol} is not imported"))
    }
}

/// Emits the body of `plan` for `info` (the function's entry block is current; the caller
/// adds the return). `kernel` describes the imported GEMM kernel. Fails (naming what is
/// missing) when the plan needs a kernel that was not imported or does not fit the op.
pub fn emit_op(
    e: &mut Emitter,
    info: &OpInfo,
    plan: &JitPlan,
    kernel: &Kernel,
    refs: KernelRefs,
) -> Result<(), String> {
    let missing = |what: &str| format!("the {what} kernel is not imported for this target");
    let kref = refs.gemm.ok_or_else(|| missing("GEMM"));
    let n_in = info.inputs.len();
    let extra = |j: usize| 1 + n_in + j;
    let scratch_slot = 1 + n_in + plan.extras.len();
    match (&plan.kind, info.op) {
        (
            Kind::ConvGemm {
                im2col, threads, ..
            },
            Op::Conv(c),
        ) => emit_conv_gemm(
            e,
            info,
            c,
            *im2col,
            *threads,
            extra(0),
            extra(1),
            scratch_slot,
            kernel,
            kref?,
        ),
        (
            Kind::ConvDirect {
                kernel: Some(_),
                threads,
            },
            Op::Conv(c),
        ) => {
            let dref = refs.dw.ok_or_else(|| missing("depthwise"))?;
            emit_conv_op_kernel(e, c, 2, extra(0), scratch_slot, *threads, dref)
        }
        (Kind::ConvStem { threads }, Op::Conv(c)) => {
            let sref = refs.stem.ok_or_else(|| missing("stem"))?;
            emit_conv_op_kernel(e, c, extra(1), extra(0), scratch_slot, *threads, sref)
        }
        (Kind::ConvDirect { kernel: None, .. }, Op::Conv(c)) => {
            emit_conv_direct(e, info, c, scratch_slot)?
        }
        (Kind::Act(a), _) => {
            let (y, x) = (e.arg(0), e.arg(1));
            let a = *a;
            e.map(info.out.numel(), y, &[Operand::Contig(x)], &mut |e, v| {
                e.act(a, v[0])
            });
        }
        (Kind::Affine { from_extras }, _) => {
            let (ss, bs) = if *from_extras {
                (extra(0), extra(1))
            } else {
                (2, 3)
            };
            let (y, x, sc, bi) = (e.arg(0), e.arg(1), e.arg(ss), e.arg(bs));
            let s = &info.inputs[0].shape;
            let c = s[1];
            let inner: usize = s[2..].iter().product();
            e.for_range(0, (s[0] * c) as i64, 1, |e, plane| {
                let ch = e.b.ins().urem_imm_u(plane, c as i64);
                let sv = load_splat(e, sc, ch);
                let bv = load_splat(e, bi, ch);
                let off = e.b.ins().imul_imm_s(plane, (inner * 4) as i64);
                let xp = e.b.ins().iadd(x, off);
                let yp = e.b.ins().iadd(y, off);
                e.map(inner, yp, &[Operand::Contig(xp)], &mut |e, v| {
                    e.mul_add(v[0], sv, bv)
                });
            });
        }
        (Kind::Binary(op), _) => emit_binary(e, info, *op),
        (Kind::Mean { planes, inner }, _) => {
            let (y, x) = (e.arg(0), e.arg(1));
            let (planes, inner) = (*planes, *inner);
            e.for_range(0, planes as i64, 1, |e, p| {
                let xp = e.add_scaled(x, p, (inner * 4) as i64);
                let s = e.sum(xp, inner);
                let r = e.b.ins().f32const(1.0 / inner as f32);
                let m = e.b.ins().fmul(s, r);
                let yp = e.add_scaled(y, p, 4);
                e.b.ins().store(super::emit::mf(), m, yp, 0);
            });
        }
        (Kind::SqueezeExcite { threads }, Op::SqueezeExcite(_)) => {
            let sref = refs.se.ok_or_else(|| missing("SqueezeExcite"))?;
            let mut args: Vec<Value> = (1..=5).map(|i| e.arg(i)).collect();
            args.push(e.arg(0));
            args.push(e.arg(scratch_slot));
            args.push(e.arg(extra(0)));
            let th = e.c64(*threads as i64);
            args.push(th);
            e.b.ins().call(sref, &args);
        }
        (Kind::Lrn { threads }, Op::Lrn(_)) => {
            let lref = refs.shared(super::kernels::lrn::LRN_SYMBOL)?;
            let (x, y, geom) = (e.arg(1), e.arg(0), e.arg(extra(0)));
            let th = e.c64(*threads as i64);
            e.b.ins().call(lref, &[x, y, geom, th]);
        }
        (
            Kind::Int8 {
                entry,
                symbol,
                threads,
            },
            _,
        ) => {
            use super::lower_int8::Int8Entry;
            let f = refs.shared(symbol)?;
            let (y, x) = (e.arg(0), e.arg(1));
            let th = e.c64(*threads as i64);
            let geom = e.arg(extra(0));
            match entry {
                Int8Entry::Conv => {
                    let (w, scratch) = (e.arg(extra(1)), e.arg(scratch_slot));
                    // The fused residual: the last input (slot 3, after x, w and a bias).
                    let res = match info.op {
                        Op::QConv(q) if q.residual.is_some() => e.arg(3 + q.conv.has_bias as usize),
                        _ => e.c64(0),
                    };
                    e.b.ins().call(f, &[x, w, y, res, scratch, geom, th]);
                }
                Int8Entry::Depthwise => {
                    let (w, scratch) = (e.arg(extra(1)), e.arg(scratch_slot));
                    e.b.ins().call(f, &[x, w, y, scratch, geom, th]);
                }
                Int8Entry::Quantize | Int8Entry::Dequantize | Int8Entry::Lut | Int8Entry::Mean => {
                    e.b.ins().call(f, &[x, y, geom, th]);
                }
                Int8Entry::Binary => {
                    let b = e.arg(2);
                    e.b.ins().call(f, &[x, b, y, geom, th]);
                }
            }
        }
        (Kind::Pool, Op::Pool(p)) => emit_pool(e, info, p, extra(0)),
        (Kind::Gemm, _) => emit_gemm(e, info, extra(0)),
        (Kind::GemmVec { threads }, _) => {
            let vref = refs.gemv.ok_or_else(|| missing("matrix-vector"))?;
            let (y, a, w) = (e.arg(0), e.arg(1), e.arg(extra(0)));
            let has_c = matches!(info.op, Op::Gemm(g) if g.has_c);
            let residual = matches!(info.op, Op::Gemm(g) if g.epilogue.residual);
            let null = e.c64(0);
            let bias = if has_c { e.arg(extra(1)) } else { null };
            let res = if residual {
                e.arg(3 + has_c as usize)
            } else {
                null
            };
            // The call description follows B and the bias (`plan_gemm_vec`).
            let call = e.arg(extra(1 + has_c as usize));
            let th = e.c64(*threads as i64);
            e.b.ins().call(vref, &[a, w, y, bias, res, call, th]);
        }
        (Kind::Concat { axis }, _) => {
            let y = e.arg(0);
            let outer: usize = info.out.shape[..*axis].iter().product();
            let inner: usize = info.out.shape[axis + 1..].iter().product();
            let total = info.out.shape[*axis] * inner;
            let mut at = 0;
            for (i, t) in info.inputs.iter().enumerate() {
                let chunk = t.shape[*axis] * inner;
                let x = e.arg(1 + i);
                e.for_range(0, outer as i64, 1, |e, o| {
                    let xp = e.add_scaled(x, o, (chunk * 4) as i64);
                    let yb = e.add_scaled(y, o, (total * 4) as i64);
                    let yp = e.add_c(yb, (at * 4) as i64);
                    e.copy(chunk, yp, xp);
                });
                at += chunk;
            }
        }
        (Kind::Data(d), _) => super::lower_data::emit(e, info, d, &|j| extra(j), scratch_slot),
        (kind, op) => {
            return Err(format!(
                "strategy {} does not apply to a {} op",
                kind.label(),
                op.kind()
            ))
        }
    }
    Ok(())
}

/// Loads `base[idx]` (f32) and broadcasts it.
fn load_splat(e: &mut Emitter, base: Value, idx: Value) -> Value {
    let a = e.add_scaled(base, idx, 4);
    let s = e.b.ins().load(types::F32, super::emit::mf(), a, 0);
    e.splat_v(s)
}

#[allow(clippy::too_many_arguments)]
fn emit_conv_gemm(
    e: &mut Emitter,
    info: &OpInfo,
    c: &Conv,
    im2col: bool,
    threads: usize,
    packed_slot: usize,
    call_slot: usize,
    scratch_slot: usize,
    kernel: &Kernel,
    kref: FuncRef,
) {
    let g = geo(c, info);
    let k = g.cig * g.kh * g.kw;
    let nn = g.oh * g.ow;
    let plane_in = g.h * g.w;
    let mr = kernel.a_block_rows(g.cog, nn);
    let a_group = g.cog.div_ceil(mr) * k * mr;
    let (y, x, a) = (e.arg(0), e.arg(1), e.arg(packed_slot));
    let bias = if c.has_bias { Some(e.arg(3)) } else { None };
    let res = if c.epilogue.residual {
        Some(e.arg(3 + c.has_bias as usize))
    } else {
        None
    };
    let scratch = if im2col {
        Some(e.arg(scratch_slot))
    } else {
        None
    };
    let call = e.arg(call_slot);
    e.for_range(0, g.n as i64, 1, |e, b| {
        e.for_range(0, c.group as i64, 1, |e, grp| {
            // Input channels of this group: plane index b*ci + grp*cig.
            let bi = e.b.ins().imul_imm_s(b, g.ci as i64);
            let gi = e.b.ins().imul_imm_s(grp, g.cig as i64);
            let pin = e.b.ins().iadd(bi, gi);
            let xg = e.add_scaled(x, pin, (plane_in * 4) as i64);
            let src = match scratch {
                Some(s) => {
                    emit_im2col(e, &g, c, xg, s);
                    s
                }
                None => xg,
            };
            let ag = e.add_scaled(a, grp, (a_group * 4) as i64);
            let bo = e.b.ins().imul_imm_s(b, g.co as i64);
            let go = e.b.ins().imul_imm_s(grp, g.cog as i64);
            let pout = e.b.ins().iadd(bo, go);
            let yg = e.add_scaled(y, pout, (nn * 4) as i64);
            let null = e.c64(0);
            let bg = bias.map_or(null, |bb| e.add_scaled(bb, go, 4));
            let rg = res.map_or(null, |r| e.add_scaled(r, pout, (nn * 4) as i64));
            let th = e.c64(threads as i64);
            e.b.ins().call(kref, &[ag, src, yg, bg, rg, call, th]);
        });
    });
}

/// A depthwise (or stem) conv through the per-ISA op kernel ([`super::kernels::DwFn`] and
/// [`super::kernels::stem::StemFn`] take the same arguments): one call, weights from
/// `weight_slot` (the raw constant or a packed extra), geometry in the blob.
fn emit_conv_op_kernel(
    e: &mut Emitter,
    c: &Conv,
    weight_slot: usize,
    geom_slot: usize,
    scratch_slot: usize,
    threads: usize,
    dref: FuncRef,
) {
    let (y, x, w) = (e.arg(0), e.arg(1), e.arg(weight_slot));
    let null = e.c64(0);
    let bias = if c.has_bias { e.arg(3) } else { null };
    let res = if c.epilogue.residual {
        e.arg(3 + c.has_bias as usize)
    } else {
        null
    };
    let (sp, geom) = (e.arg(scratch_slot), e.arg(geom_slot));
    let th = e.c64(threads as i64);
    e.b.ins().call(dref, &[x, w, bias, res, y, sp, geom, th]);
}

/// im2col of one group: row `(icg, ky, kx)` of `dst` (length `oh*ow`) holds the input cells
/// that tap reads for every output pixel, zero where the tap falls into padding.
fn emit_im2col(e: &mut Emitter, g: &Geo, c: &Conv, xg: Value, dst: Value) {
    let nn = g.oh * g.ow;
    let plane_in = g.h * g.w;
    let taps = g.kh * g.kw;
    let zero = e.splat(0.0);
    e.for_range(0, g.cig as i64, 1, |e, icg| {
        let xp = e.add_scaled(xg, icg, (plane_in * 4) as i64);
        let dst_c = e.add_scaled(dst, icg, (taps * nn * 4) as i64);
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = e.add_c(dst_c, (((ky * g.kw + kx) * nn) * 4) as i64);
                let offy = (ky * c.dilations[0]) as i64 - c.pads[0] as i64;
                let offx = (kx * c.dilations[1]) as i64 - c.pads[1] as i64;
                let (oy0, oy1) = valid_range(g.oh, g.h, c.strides[0], offy);
                let (ox0, ox1) = valid_range(g.ow, g.w, c.strides[1], offx);
                if oy0 > 0 {
                    e.fill(oy0 * g.ow, row, zero);
                }
                if oy1 < g.oh {
                    let p = e.add_c(row, (oy1 * g.ow * 4) as i64);
                    e.fill((g.oh - oy1) * g.ow, p, zero);
                }
                if oy1 <= oy0 {
                    continue;
                }
                let sx = c.strides[1];
                e.for_range(oy0 as i64, oy1 as i64, 1, |e, oy| {
                    let dr = e.add_scaled(row, oy, (g.ow * 4) as i64);
                    // iy = oy*sy + offy
                    let iy = e.b.ins().imul_imm_s(oy, c.strides[0] as i64);
                    let iy = e.b.ins().iadd_imm_s(iy, offy);
                    let sr = e.add_scaled(xp, iy, (g.w * 4) as i64);
                    if ox0 > 0 {
                        e.fill(ox0, dr, zero);
                    }
                    if ox1 < g.ow {
                        let p = e.add_c(dr, (ox1 * 4) as i64);
                        e.fill(g.ow - ox1, p, zero);
                    }
                    if ox1 > ox0 {
                        let s0 = e.add_c(sr, (ox0 as i64 * sx as i64 + offx) * 4);
                        let d0 = e.add_c(dr, (ox0 * 4) as i64);
                        if sx == 1 {
                            e.copy(ox1 - ox0, d0, s0);
                        } else {
                            strided_copy(e, ox1 - ox0, d0, s0, sx);
                        }
                    }
                });
            }
        }
    });
}

/// Copies `n` f32 from `src` with element stride `stride` to contiguous `dst`.
fn strided_copy(e: &mut Emitter, n: usize, dst: Value, src: Value, stride: usize) {
    e.for_range(0, n as i64, 1, |e, i| {
        let s = e.add_scaled(src, i, (stride * 4) as i64);
        let v = e.b.ins().load(types::F32, super::emit::mf(), s, 0);
        let d = e.add_scaled(dst, i, 4);
        e.b.ins().store(super::emit::mf(), v, d, 0);
    });
}

/// Loads `lanes` (4 or 1) f32 at element stride `stride` from `src` as an f32x4 (a splat
/// when `lanes == 1`).
fn load_strided(e: &mut Emitter, src: Value, stride: usize, lanes: usize) -> Value {
    if stride == 1 || lanes == 1 {
        return e.load_lanes(src, lanes);
    }
    let s0 = e.b.ins().load(types::F32, super::emit::mf(), src, 0);
    let mut v = e.splat_v(s0);
    for l in 1..4u8 {
        let s = e.load_at(types::F32, src, (l as usize * stride * 4) as i64);
        v = e.b.ins().insertlane(v, s, l);
    }
    v
}

/// Sliding-window row accumulation for pooling: for every output
/// row `oy` of one plane, `init` the row, combine every valid tap's input row into it, then
/// `finish` it.
struct Window {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    dil: [usize; 2],
    pads: [usize; 2],
}

enum Combine {
    Max,
    Add,
}

fn emit_window(
    e: &mut Emitter,
    win: &Window,
    xp: Value,
    yp: Value,
    init: Value,
    comb: Combine,
    finish: &mut dyn FnMut(&mut Emitter, Value, Value),
) {
    e.for_range(0, win.oh as i64, 1, |e, oy| {
        let yrow = e.add_scaled(yp, oy, (win.ow * 4) as i64);
        e.fill(win.ow, yrow, init);
        for ky in 0..win.kh {
            let offy = (ky * win.dil[0]) as i64 - win.pads[0] as i64;
            let iy = e.b.ins().imul_imm_s(oy, win.stride[0] as i64);
            let iy = e.b.ins().iadd_imm_s(iy, offy);
            let ok = e.in_range(iy, win.h as i64);
            e.if_then(ok, |e| {
                let xrow = e.add_scaled(xp, iy, (win.w * 4) as i64);
                for kx in 0..win.kw {
                    let offx = (kx * win.dil[1]) as i64 - win.pads[1] as i64;
                    let (ox0, ox1) = valid_range(win.ow, win.w, win.stride[1], offx);
                    if ox1 <= ox0 {
                        continue;
                    }
                    let sx = win.stride[1];
                    let ya = e.add_c(yrow, (ox0 * 4) as i64);
                    let xa = e.add_c(xrow, (ox0 as i64 * sx as i64 + offx) * 4);
                    let len = ox1 - ox0;
                    // Combine `lanes` inputs at element stride `sx` into the row at `yo`.
                    let combine = |e: &mut Emitter, yo: Value, xo: Value, lanes: usize| {
                        let acc = e.load_lanes(yo, lanes);
                        let xv = load_strided(e, xo, sx, lanes);
                        let r = if matches!(comb, Combine::Max) {
                            e.fmax_nan(acc, xv)
                        } else {
                            e.b.ins().fadd(acc, xv)
                        };
                        e.store_lanes(r, yo, lanes);
                    };
                    // Whole f32x4 chunks, then the tail lanes one by one.
                    let nv = len / 4;
                    if nv > 0 {
                        e.for_range(0, nv as i64, 1, |e, vi| {
                            let yo = e.add_scaled(ya, vi, 16);
                            let xo = e.add_scaled(xa, vi, (4 * sx * 4) as i64);
                            combine(e, yo, xo, 4);
                        });
                    }
                    for i in nv * 4..len {
                        let yo = e.add_c(ya, (i * 4) as i64);
                        let xo = e.add_c(xa, (i * sx * 4) as i64);
                        combine(e, yo, xo, 1);
                    }
                }
            });
        }
        finish(e, yrow, oy);
    });
}

fn emit_conv_direct(
    e: &mut Emitter,
    info: &OpInfo,
    c: &Conv,
    scratch_slot: usize,
) -> Result<(), String> {
    let g = geo(c, info);
    let (y, x, w) = (e.arg(0), e.arg(1), e.arg(2));
    let bias = if c.has_bias { Some(e.arg(3)) } else { None };
    let res = if c.epilogue.residual {
        Some(e.arg(3 + c.has_bias as usize))
    } else {
        None
    };
    let nn = g.oh * g.ow;
    let zero = e.splat(0.0);
    let act = c.epilogue.act;
    let (hp, pw) = direct_padded(&g, c)?;
    let sp = e.arg(scratch_slot);
    e.fill(hp * pw, sp, zero);
    e.for_range(0, (g.n * g.co) as i64, 1, |e, bo| {
        // b = bo / co, o = bo % co; the input plane is b*ci + o / cog (one channel per group).
        let b = e.b.ins().udiv_imm_u(bo, g.co as i64);
        let o = e.b.ins().urem_imm_u(bo, g.co as i64);
        let ic = e.b.ins().udiv_imm_u(o, g.cog as i64);
        let bci = e.b.ins().imul_imm_s(b, g.ci as i64);
        let pin = e.b.ins().iadd(bci, ic);
        let xp = e.add_scaled(x, pin, (g.h * g.w * 4) as i64);
        let yp = e.add_scaled(y, bo, (nn * 4) as i64);
        let wp = e.add_scaled(w, o, (g.kh * g.kw * 4) as i64);
        let n_taps = g.kh * g.kw;
        let taps: Vec<Value> = (0..n_taps)
            .map(|t| {
                let s = e.load_at(types::F32, wp, (t * 4) as i64);
                e.splat_v(s)
            })
            .collect();
        let bv = bias.map(|bb| load_splat(e, bb, o));
        let rp = res.map(|r| e.add_scaled(r, bo, (nn * 4) as i64));
        // Copy the plane into the interior of the padded buffer (its border stays zero).
        e.for_range(0, g.h as i64, 1, |e, iy| {
            let src = e.add_scaled(xp, iy, (g.w * 4) as i64);
            let d0 = e.add_c(sp, (((c.pads[0] * pw) + c.pads[1]) * 4) as i64);
            let dst = e.add_scaled(d0, iy, (pw * 4) as i64);
            e.copy(g.w, dst, src);
        });
        emit_direct_plane(e, &g, c, pw, sp, yp, rp, &taps, bv, act);
    });
    Ok(())
}

/// Geometry of the zero-padded copy of one input plane the direct conv reads: `(hp, wp)`,
/// large enough that every tap of every f32x4 output chunk (the last one partial) reads
/// inside it (a stride-2 chunk loads 8 consecutive inputs per tap). Checked arithmetic: an
/// overflow is an error, never a wrapped (small) plane.
pub fn direct_padded(g: &Geo, c: &Conv) -> Result<(usize, usize), String> {
    let (sy, sx) = (c.strides[0], c.strides[1]);
    let (dy, dx) = (c.dilations[0], c.dilations[1]);
    let extent =
        |pad: usize, input: usize, last: usize, s: usize, k: usize, d: usize, extra: usize| {
            let span = last
                .checked_mul(s)?
                .checked_add((k - 1).checked_mul(d)?)?
                .checked_add(1 + extra)?;
            Some(pad.checked_add(input)?.max(span))
        };
    let overflow = || "the padded plane of the direct conv overflows".to_string();
    let hp = extent(c.pads[0], g.h, g.oh - 1, sy, g.kh, dy, 0).ok_or_else(overflow)?;
    let last_col = g.ow.div_ceil(4) * 4 - 1;
    let extra = if sx == 2 { 1 } else { 0 };
    let wp = extent(c.pads[1], g.w, last_col, sx, g.kw, dx, extra).ok_or_else(overflow)?;
    Ok((hp, wp))
}

/// Loads the 4 inputs of an f32x4 output chunk at element stride `sx` from `addr`.
fn load_chunk(e: &mut Emitter, addr: Value, off: i64, sx: usize) -> Value {
    match sx {
        1 => e.load_at(types::F32X4, addr, off),
        2 => {
            use cranelift_codegen::ir::{Endianness, MemFlagsData};
            let le = MemFlagsData::new().with_endianness(Endianness::Little);
            let a = e.load_at(types::F32X4, addr, off);
            let b = e.load_at(types::F32X4, addr, off + 16);
            let ab = e.b.ins().bitcast(types::I8X16, le, a);
            let bb = e.b.ins().bitcast(types::I8X16, le, b);
            let bytes: Vec<u8> = [0u8, 2, 4, 6]
                .iter()
                .flat_map(|&l| (0..4).map(move |i| l * 4 + i))
                .collect();
            let mask = e.b.func.dfg.immediates.push(bytes.into());
            let sh = e.b.ins().shuffle(ab, bb, mask);
            e.b.ins().bitcast(types::F32X4, le, sh)
        }
        _ => {
            let s0 = e.load_at(types::F32, addr, off);
            let mut v = e.splat_v(s0);
            for l in 1..4u8 {
                let s = e.load_at(types::F32, addr, off + (l as usize * sx * 4) as i64);
                v = e.b.ins().insertlane(v, s, l);
            }
            v
        }
    }
}

/// One output plane of a direct conv from its zero-padded input copy `sp` (`wp` floats per
/// row): for every output row, f32x4 chunks of columns (the last one partial) accumulate
/// every tap in registers, then bias, residual and activation are applied before the single
/// store.
#[allow(clippy::too_many_arguments)]
fn emit_direct_plane(
    e: &mut Emitter,
    g: &Geo,
    c: &Conv,
    wp: usize,
    sp: Value,
    yp: Value,
    rp: Option<Value>,
    taps: &[Value],
    bias: Option<Value>,
    act: Option<Activation>,
) {
    let (sy, sx) = (c.strides[0], c.strides[1]);
    let (dy, dx) = (c.dilations[0], c.dilations[1]);
    let mf = super::emit::mf();
    let full = g.ow / 4;
    let rem = g.ow % 4;
    e.for_range(0, g.oh as i64, 1, |e, oy| {
        let yrow = e.add_scaled(yp, oy, (g.ow * 4) as i64);
        let rrow = rp.map(|r| e.add_scaled(r, oy, (g.ow * 4) as i64));
        let srow = e.add_scaled(sp, oy, (sy * wp * 4) as i64);
        let chunk = |e: &mut Emitter, ox_bytes: Value, lanes: usize| {
            let mut acc = e.splat(0.0);
            let base = e.add_scaled(srow, ox_bytes, sx as i64);
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let off = ((ky * dy * wp + kx * dx) * 4) as i64;
                    let v = load_chunk(e, base, off, sx);
                    acc = e.mul_add(v, taps[ky * g.kw + kx], acc);
                }
            }
            if let Some(b) = bias {
                acc = e.b.ins().fadd(acc, b);
            }
            if let Some(r) = rrow {
                let a = e.b.ins().iadd(r, ox_bytes);
                let rv = if lanes == 4 {
                    e.b.ins().load(types::F32X4, mf, a, 0)
                } else {
                    let s0 = e.b.ins().load(types::F32, mf, a, 0);
                    let mut v = e.splat_v(s0);
                    for l in 1..lanes {
                        let s = e.load_at(types::F32, a, (l * 4) as i64);
                        v = e.b.ins().insertlane(v, s, l as u8);
                    }
                    v
                };
                acc = e.b.ins().fadd(acc, rv);
            }
            if let Some(a) = act {
                acc = e.act(a, acc);
            }
            let a = e.b.ins().iadd(yrow, ox_bytes);
            if lanes == 4 {
                e.b.ins().store(mf, acc, a, 0);
            } else {
                for l in 0..lanes {
                    let s = e.b.ins().extractlane(acc, l as u8);
                    e.store_at(s, a, (l * 4) as i64);
                }
            }
        };
        e.for_range(0, (full * 16) as i64, 16, |e, ob| chunk(e, ob, 4));
        if rem > 0 {
            let ob = e.c64((full * 16) as i64);
            chunk(e, ob, rem);
        }
    });
}

fn emit_pool(e: &mut Emitter, info: &OpInfo, p: &mnc_ir::Pool, div_slot: usize) {
    let (s, o) = (&info.inputs[0].shape, &info.out.shape);
    let (y, x) = (e.arg(0), e.arg(1));
    let div = if p.kind == PoolKind::Avg {
        Some((e.arg(div_slot), e.arg(div_slot + 1)))
    } else {
        None
    };
    let win = Window {
        h: s[2],
        w: s[3],
        oh: o[2],
        ow: o[3],
        kh: p.kernel[0],
        kw: p.kernel[1],
        stride: p.strides,
        dil: p.dilations,
        pads: [p.pads[0], p.pads[1]],
    };
    let (plane_in, plane_out) = (s[2] * s[3], o[2] * o[3]);
    let (init, comb) = match p.kind {
        PoolKind::Max => (e.splat(f32::NEG_INFINITY), Combine::Max),
        PoolKind::Avg => (e.splat(0.0), Combine::Add),
    };
    let ow = o[3];
    e.for_range(0, (s[0] * s[1]) as i64, 1, |e, pl| {
        let xp = e.add_scaled(x, pl, (plane_in * 4) as i64);
        let yp = e.add_scaled(y, pl, (plane_out * 4) as i64);
        let comb = match comb {
            Combine::Max => Combine::Max,
            _ => Combine::Add,
        };
        emit_window(e, &win, xp, yp, init, comb, &mut |e, yrow, oy| {
            if let Some((rows, cols)) = div {
                let r = load_splat(e, rows, oy);
                e.map(
                    ow,
                    yrow,
                    &[Operand::Contig(yrow), Operand::Contig(cols)],
                    &mut |e, v| {
                        let d = e.b.ins().fmul(v[1], r);
                        e.b.ins().fdiv(v[0], d)
                    },
                );
            }
        });
    });
}

fn emit_binary(e: &mut Emitter, info: &OpInfo, op: BinaryOp) {
    let out = &info.out.shape;
    let r = out.len();
    let bstr = |shape: &[usize]| -> Vec<usize> {
        let mut s = vec![0; r];
        let lead = r - shape.len();
        let mut acc = 1;
        for i in (0..shape.len()).rev() {
            s[lead + i] = if shape[i] == 1 { 0 } else { acc };
            acc *= shape[i];
        }
        s
    };
    let sa = bstr(&info.inputs[0].shape);
    let sb = bstr(&info.inputs[1].shape);
    // Inner block: trailing dims over which each operand is contiguous or constant.
    #[derive(Clone, Copy, PartialEq)]
    enum M {
        Any,
        Contig,
        Zero,
    }
    let fits = |m: M, s: usize, len: usize, dim: usize| -> Option<M> {
        if dim == 1 {
            return Some(m);
        }
        match m {
            M::Any if s == 0 => Some(M::Zero),
            M::Any if s == 1 => Some(M::Contig),
            M::Zero if s == 0 => Some(M::Zero),
            M::Contig if s == len => Some(M::Contig),
            _ => None,
        }
    };
    let (mut ma, mut mb, mut len, mut split) = (M::Any, M::Any, 1usize, r);
    for d in (0..r).rev() {
        match (fits(ma, sa[d], len, out[d]), fits(mb, sb[d], len, out[d])) {
            (Some(a), Some(b)) => {
                ma = a;
                mb = b;
                len *= out[d];
                split = d;
            }
            _ => break,
        }
    }
    let (y, a, b) = (e.arg(0), e.arg(1), e.arg(2));
    let out_strides: Vec<usize> = (0..r).map(|d| out[d + 1..].iter().product()).collect();
    fn rec(
        e: &mut Emitter,
        d: usize,
        split: usize,
        out: &[usize],
        ptrs: [Value; 3],
        strides: [&[usize]; 3],
        leaf: &mut dyn FnMut(&mut Emitter, [Value; 3]),
    ) {
        if d == split {
            leaf(e, ptrs);
            return;
        }
        e.for_range(0, out[d] as i64, 1, |e, i| {
            let p = [0, 1, 2].map(|k| {
                if strides[k][d] == 0 {
                    ptrs[k]
                } else {
                    e.add_scaled(ptrs[k], i, (strides[k][d] * 4) as i64)
                }
            });
            rec(e, d + 1, split, out, p, strides, leaf);
        });
    }
    let mut leaf = |e: &mut Emitter, p: [Value; 3]| {
        let mk = |e: &mut Emitter, m: M, ptr: Value| match m {
            M::Zero | M::Any => {
                let s = e.b.ins().load(types::F32, super::emit::mf(), ptr, 0);
                Operand::Splat(e.splat_v(s))
            }
            M::Contig => Operand::Contig(ptr),
        };
        let oa = mk(e, ma, p[1]);
        let ob = mk(e, mb, p[2]);
        e.map(len, p[0], &[oa, ob], &mut |e, v| match op {
            BinaryOp::Add => e.b.ins().fadd(v[0], v[1]),
            BinaryOp::Sub => e.b.ins().fsub(v[0], v[1]),
            BinaryOp::Mul => e.b.ins().fmul(v[0], v[1]),
            BinaryOp::Div => e.b.ins().fdiv(v[0], v[1]),
        });
    };
    if info.out.numel() == 0 {
        return;
    }
    rec(
        e,
        0,
        split,
        out,
        [y, a, b],
        [&out_strides, &sa, &sb],
        &mut leaf,
    );
}

fn emit_gemm(e: &mut Emitter, info: &OpInfo, packed_slot: usize) {
    let a_shape = &info.inputs[0].shape;
    let (m, k, n, sam, sak, alpha, beta, c_slot, res_slot, act) = match info.op {
        Op::Gemm(g) => {
            let (m, k) = if g.trans_a {
                (a_shape[1], a_shape[0])
            } else {
                (a_shape[0], a_shape[1])
            };
            let (sam, sak) = if g.trans_a { (1, m) } else { (k, 1) };
            let n = info.out.shape[1];
            let c_slot = if g.has_c { Some(3) } else { None };
            let res_slot = if g.epilogue.residual {
                Some(3 + g.has_c as usize)
            } else {
                None
            };
            (
                m,
                k,
                n,
                sam,
                sak,
                g.alpha,
                g.beta,
                c_slot,
                res_slot,
                g.epilogue.act,
            )
        }
        _ => {
            let k = a_shape[a_shape.len() - 1];
            let m: usize = a_shape[..a_shape.len() - 1].iter().product();
            let n = info.out.shape[info.out.shape.len() - 1];
            (m, k, n, k, 1, 1.0, 0.0, None, None, None)
        }
    };
    let (y, a, bp) = (e.arg(0), e.arg(1), e.arg(packed_slot));
    let mf = super::emit::mf();
    let np_full = n / 16;
    let tail = n % 16;
    e.for_range(0, m as i64, 1, |e, i| {
        let arow = e.add_scaled(a, i, (sam * 4) as i64);
        let yrow = e.add_scaled(y, i, (n * 4) as i64);
        let panel = |e: &mut Emitter, jp: Value, cols: usize| {
            let pb = e.add_scaled(bp, jp, (k * 16 * 4) as i64);
            let z = e.splat(0.0);
            let accs = e.for_acc(0, k as i64, 1, vec![z; 4], |e, p, acc| {
                let ap = e.add_scaled(arow, p, (sak * 4) as i64);
                let av = e.b.ins().load(types::F32, mf, ap, 0);
                let av = e.splat_v(av);
                let bb = e.add_scaled(pb, p, 64);
                (0..4)
                    .map(|v| {
                        let bv = e.load_at(types::F32X4, bb, (v * 16) as i64);
                        e.mul_add(av, bv, acc[v])
                    })
                    .collect()
            });
            let yp = e.add_scaled(yrow, jp, 64);
            for (v, &acc) in accs.iter().enumerate() {
                let valid = cols.saturating_sub(v * 4).min(4);
                if valid == 4 {
                    e.store_at(acc, yp, (v * 16) as i64);
                } else {
                    for l in 0..valid {
                        let s = e.b.ins().extractlane(acc, l as u8);
                        e.store_at(s, yp, ((v * 4 + l) * 4) as i64);
                    }
                }
            }
        };
        e.for_range(0, np_full as i64, 1, |e, jp| panel(e, jp, 16));
        if tail > 0 {
            let jp = e.c64(np_full as i64);
            panel(e, jp, tail);
        }
        // Epilogue: alpha * acc + beta * C + residual, then the activation.
        let needs = alpha != 1.0 || c_slot.is_some() || res_slot.is_some() || act.is_some();
        if needs {
            let al = e.splat(alpha);
            let be = e.splat(beta);
            let mut ops = vec![Operand::Contig(yrow)];
            let mut c_at = None;
            if let Some(cs) = c_slot {
                let ct = &info.inputs[2].shape;
                let rank = ct.len();
                // Broadcast strides of C against [m, n].
                let (c0, c1) = match rank {
                    0 => (0, 0),
                    1 => (0, if ct[0] == 1 { 0 } else { 1 }),
                    _ => (
                        if ct[0] == 1 { 0 } else { ct[1] },
                        if ct[1] == 1 { 0 } else { 1 },
                    ),
                };
                let cb = e.arg(cs);
                let crow = e.add_scaled(cb, i, (c0 * 4) as i64);
                c_at = Some(ops.len());
                ops.push(if c1 == 1 {
                    Operand::Contig(crow)
                } else {
                    let s = e.b.ins().load(types::F32, mf, crow, 0);
                    Operand::Splat(e.splat_v(s))
                });
            }
            let mut r_at = None;
            if let Some(rs) = res_slot {
                let rb = e.arg(rs);
                let rrow = e.add_scaled(rb, i, (n * 4) as i64);
                r_at = Some(ops.len());
                ops.push(Operand::Contig(rrow));
            }
            e.map(n, yrow, &ops, &mut |e, v| {
                let mut x = if alpha != 1.0 {
                    e.b.ins().fmul(v[0], al)
                } else {
                    v[0]
                };
                if let Some(ci) = c_at {
                    let t = e.b.ins().fmul(v[ci], be);
                    x = e.b.ins().fadd(x, t);
                }
                if let Some(ri) = r_at {
                    x = e.b.ins().fadd(x, v[ri]);
                }
                if let Some(a) = act {
                    x = e.act(a, x);
                }
                x
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::isa::ISAS;
    use mnc_ir::{Epilogue, Gemm, Graph, SqueezeExcite};

    /// The CPU lowering takes over exactly the buffer the op facts name
    /// ([`facts::OpFacts::in_place`], first candidate of the output's type) for every op that
    /// has one, on every ISA's strategies, and none for a Gemm's residual.
    #[test]
    fn in_place_follows_the_op_facts_on_every_isa() {
        let f = |s: &[usize]| TensorType::f32(s.to_vec());
        let mut g = Graph::new("t");
        let x = g.add_input("x", f(&[1, 4, 6, 6]));
        let stem_in = g.add_input("s", f(&[1, 3, 6, 6]));
        let k = |g: &mut Graph, name: &str, s: &[usize]| {
            let n = s.iter().product();
            let v = (0..n).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
            g.add_constant(name, Tensor::from_f32(s.to_vec(), v).unwrap())
        };
        let c4 = k(&mut g, "c4", &[4]);
        let mut nodes = Vec::new();
        let mut add = |g: &mut Graph, op: Op, ins: &[mnc_ir::NodeId]| {
            let id = g
                .add_node_inferred(format!("n{}", nodes.len()), op, ins)
                .unwrap();
            nodes.push(id);
            id
        };
        add(&mut g, Op::Act(Activation::Relu), &[x]);
        add(&mut g, Op::ChannelAffine, &[x, c4, c4]);
        add(
            &mut g,
            Op::BatchNorm { epsilon: 1e-5 },
            &[x, c4, c4, c4, c4],
        );
        add(&mut g, Op::Binary(BinaryOp::Add), &[x, x]);
        let row = k(&mut g, "row", &[4, 1, 1]);
        add(&mut g, Op::Binary(BinaryOp::Mul), &[row, x]);
        let (w1, b1, w2) = (
            k(&mut g, "w1", &[2, 4, 1, 1]),
            k(&mut g, "b1", &[2]),
            k(&mut g, "w2", &[4, 2, 1, 1]),
        );
        let se = SqueezeExcite {
            act: Activation::Relu,
            gate: Activation::Sigmoid,
        };
        add(&mut g, Op::SqueezeExcite(se), &[x, w1, b1, w2, c4]);
        let residual = Epilogue {
            residual: true,
            act: None,
        };
        for (cig, group, kernel, data) in [(4, 1, 1, x), (1, 4, 3, x), (3, 1, 3, stem_in)] {
            let w = k(
                &mut g,
                &format!("w{group}{kernel}"),
                &[4, cig, kernel, kernel],
            );
            let p = kernel / 2;
            let conv = |has_bias| {
                Op::Conv(Conv {
                    kernel: [kernel; 2],
                    pads: [p; 4],
                    group,
                    has_bias,
                    epilogue: residual,
                    ..Default::default()
                })
            };
            add(&mut g, conv(false), &[data, w, x]);
            add(&mut g, conv(true), &[data, w, c4, x]);
        }
        let a = g.add_input("a", f(&[1, 5]));
        // More rows than the matrix-vector kernel takes: the generated GEMM.
        let rows = GEMV_MAX_ROWS + 1;
        let a2 = g.add_input("a2", f(&[rows, 5]));
        let bw = k(&mut g, "bw", &[5, 4]);
        let res = g.add_input("r", f(&[1, 4]));
        let res2 = g.add_input("r2", f(&[rows, 4]));
        let gemm = Op::Gemm(Gemm {
            epilogue: residual,
            ..Default::default()
        });
        let gemms = [
            add(&mut g, gemm.clone(), &[a, bw, res]),
            add(&mut g, gemm, &[a2, bw, res2]),
        ];
        for isa in ISAS {
            let mut kinds = Vec::new();
            for &id in &nodes {
                let info = OpInfo::of(&g, id);
                let Ok(Plan::Jit(jp)) = plan_op(&info, isa, 2) else {
                    panic!("{} not planned as generated code", info.op.kind());
                };
                let want = facts::in_place_candidates(info.op, &info.inputs, &info.out)
                    .first()
                    .map(|c| (c.slot, c.exclusive));
                assert_eq!(in_place_input(&jp.kind, &info), want, "{:?}", jp.kind);
                if gemms.contains(&id) {
                    assert_eq!(want, None);
                } else {
                    assert!(want.is_some(), "{:?}", info.op);
                }
                kinds.push(jp.kind.label());
            }
            // Every conv strategy and both GEMM strategies were planned.
            for label in ["conv-gemm", "gemm", "gemm-kernel"] {
                assert!(kinds.contains(&label), "{}: {kinds:?}", isa.target.name());
            }
        }
    }

    #[test]
    fn pool_axis_counts_match_counting_every_tap() {
        for input in 1..9usize {
            for kernel in 1..5usize {
                for dil in 1..4usize {
                    for stride in 1..4usize {
                        for (pb, pe) in [(0, 0), (1, 0), (0, 2), (2, 3)] {
                            let out =
                                (input + pb + pe).saturating_sub(dil * (kernel - 1)) / stride + 1;
                            let got = pool_axis_counts(input, out, kernel, stride, dil, (pb, pe));
                            for (o, &(valid, padded)) in got.iter().enumerate() {
                                let taps =
                                    (0..kernel).map(|k| (o * stride + k * dil) as i64 - pb as i64);
                                let want_valid = taps
                                    .clone()
                                    .filter(|&i| (0..input as i64).contains(&i))
                                    .count();
                                let want_padded = taps
                                    .filter(|&i| (-(pb as i64)..(input + pe) as i64).contains(&i))
                                    .count();
                                assert_eq!((valid, padded), (want_valid, want_padded));
                            }
                        }
                    }
                }
            }
        }
    }
}
