//! Lowering of the quantized ops (`QConv`, `QuantizeLinear`, `DequantizeLinear`) to the int8
//! kernel set of the ISA ([`super::kernels::int8`], chosen by [`int8_kernels`]): the choice of
//! kernel is a pure function of the op's shapes and parameters ([`plan`]); the weights,
//! biases and multipliers are packed here, once, into the weights blob.
//!
//! A `QConv` with one input channel per group and at most [`QDW_MAX_TAPS`] taps runs on the
//! depthwise kernel; every other one on the GEMM kernel (pointwise convs read their input
//! planes directly, others through an im2col panel). Per-axis quantize/dequantize (constant
//! weights, folded before code generation) stay on the reference kernel.

use super::isa::IsaDesc;
use super::kernels::int8::{
    int8_kernels, pack_qconv, pack_qdw, qconv_tasks, u8_domain, Int8Kernels, QConvGeom, QDwGeom,
    QLinGeom, QDW_MAX_TAPS,
};
use super::kernels::{
    dw_tasks, lut::LutGeom, qbinary::QBinaryGeom, qmean::QMeanGeom, SharedKernel,
};
use super::lower::{jit, scratch_bytes, Kind, OpInfo, Plan};
use mnc_ir::{Op, QConv, QType, TensorData};

/// Which int8 entry point an op calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Entry {
    /// [`super::kernels::int8::QConvFn`]: geometry (and a fused residual sum's) in extra 0,
    /// packed weights in extra 1.
    Conv,
    /// [`super::kernels::int8::QDwFn`]: geometry in extra 0, packed weights in extra 1.
    Depthwise,
    /// [`super::kernels::int8::QuantFn`]: geometry in extra 0.
    Quantize,
    /// [`super::kernels::int8::DequantFn`]: geometry in extra 0.
    Dequantize,
    /// [`super::kernels::lut::LutFn`]: geometry and table in extra 0.
    Lut,
    /// [`super::kernels::qmean::QMeanFn`]: geometry in extra 0.
    Mean,
    /// [`super::kernels::qbinary::QBinaryFn`]: geometry in extra 0.
    Binary,
}

impl Int8Entry {
    /// The strategy's name in reports.
    pub fn label(self) -> &'static str {
        match self {
            Int8Entry::Conv => "int8-conv",
            Int8Entry::Depthwise => "int8-depthwise",
            Int8Entry::Quantize => "quantize",
            Int8Entry::Dequantize => "dequantize",
            Int8Entry::Lut => "lut",
            Int8Entry::Mean => "int8-mean",
            Int8Entry::Binary => "int8-binary",
        }
    }

    /// Every entry.
    pub const ALL: [Int8Entry; 7] = [
        Int8Entry::Conv,
        Int8Entry::Depthwise,
        Int8Entry::Quantize,
        Int8Entry::Dequantize,
        Int8Entry::Lut,
        Int8Entry::Mean,
        Int8Entry::Binary,
    ];

    /// This entry of the kernel set `k`: its symbol, address and pointer-sized parameters.
    pub fn kernel(self, k: &Int8Kernels) -> SharedKernel {
        let (func, params) = match self {
            Int8Entry::Conv => (k.conv.func as *const u8, 7),
            Int8Entry::Depthwise => (k.dw.func as *const u8, 6),
            Int8Entry::Quantize => (k.quantize.func as *const u8, 4),
            Int8Entry::Dequantize => (k.dequantize.func as *const u8, 4),
            Int8Entry::Lut => (k.lut.func as *const u8, 4),
            Int8Entry::Mean => (k.mean.func as *const u8, 4),
            Int8Entry::Binary => (k.binary.func as *const u8, 5),
        };
        SharedKernel {
            symbol: self.symbol(k),
            func,
            params,
        }
    }

    /// The symbol of this entry in the kernel set `k`.
    pub fn symbol(self, k: &Int8Kernels) -> &'static str {
        match self {
            Int8Entry::Conv => k.conv.symbol,
            Int8Entry::Depthwise => k.dw.symbol,
            Int8Entry::Quantize => k.quantize.symbol,
            Int8Entry::Dequantize => k.dequantize.symbol,
            Int8Entry::Lut => k.lut.symbol,
            Int8Entry::Mean => k.mean.symbol,
            Int8Entry::Binary => k.binary.symbol,
        }
    }
}

/// The entry points of the kernel set `k`, for the JIT's symbol table.
pub fn kernels_of(k: &Int8Kernels) -> Vec<SharedKernel> {
    Int8Entry::ALL.iter().map(|e| e.kernel(k)).collect()
}

fn int8_plan(
    entry: Int8Entry,
    k: &Int8Kernels,
    extras: Vec<Vec<f32>>,
    scratch: usize,
    flops: u64,
    threads: usize,
) -> Plan {
    jit(
        Kind::Int8 {
            entry,
            symbol: entry.symbol(k),
            threads,
        },
        extras,
        scratch,
        flops,
    )
}

/// The plan of a quantized op on `isa`, or `None` when `info.op` is not one this module
/// lowers (then [`super::lower::plan_op`] decides).
pub fn plan(info: &OpInfo, isa: &IsaDesc, threads: usize) -> Option<Result<Plan, String>> {
    let numel = info.out.numel();
    // Only the quantized ops look up the kernel set (a host feature check).
    let kernels = || int8_kernels(isa.target);
    match info.op {
        Op::Quantize(q) | Op::Dequantize(q) if q.axis.is_none() => {
            let k = kernels()?;
            let quantize = matches!(info.op, Op::Quantize(_));
            let qt = QType::of(q.dtype)?;
            let (s, zp) = q.at(0);
            let geom = QLinGeom::new(numel, s, zp, qt);
            let entry = if quantize {
                Int8Entry::Quantize
            } else {
                Int8Entry::Dequantize
            };
            Some(Ok(int8_plan(
                entry,
                k,
                vec![geom.to_blob()],
                0,
                2 * numel as u64,
                threads,
            )))
        }
        Op::QConv(q) => Some(plan_qconv(q, info, kernels()?, threads)),
        Op::QLut(l) => {
            let geom = LutGeom::new(l, numel);
            Some(Ok(int8_plan(
                Int8Entry::Lut,
                kernels()?,
                vec![geom.to_blob()],
                0,
                0,
                threads,
            )))
        }
        Op::QBinary(q) => {
            let (a, b) = (&info.inputs[0].shape, &info.inputs[1].shape);
            let Some(geom) = QBinaryGeom::new(q, a, b) else {
                return Some(Err(format!("{} has no integer form", info.op.kind())));
            };
            Some(Ok(int8_plan(
                Int8Entry::Binary,
                kernels()?,
                vec![geom.to_blob()],
                0,
                numel as u64,
                threads,
            )))
        }
        Op::QGlobalAveragePool(m) => {
            let xs = &info.inputs[0].shape;
            let planes = xs.first()? * xs.get(1)?;
            let pixels = xs.iter().skip(2).product();
            let geom = match QMeanGeom::new(m, planes, pixels) {
                Some(g) => g,
                None => return Some(Err("QGlobalAveragePool has no requantization".into())),
            };
            Some(Ok(int8_plan(
                Int8Entry::Mean,
                kernels()?,
                vec![geom.to_blob()],
                0,
                (planes * pixels) as u64,
                threads,
            )))
        }
        _ => None,
    }
}

/// The integer values of constant input `k` (`None` when it is not a constant).
fn const_ints(info: &OpInfo, k: usize) -> Option<Vec<i32>> {
    Some(match &info.consts.get(k).copied()??.data {
        TensorData::I8(v) => v.iter().map(|&x| x as i32).collect(),
        TensorData::I32(v) => v.clone(),
        _ => return None,
    })
}

fn plan_qconv(q: &QConv, info: &OpInfo, k: &Int8Kernels, threads: usize) -> Result<Plan, String> {
    let c = &q.conv;
    let (xs, ws, ys) = (
        &info.inputs[0].shape,
        &info.inputs[1].shape,
        &info.out.shape,
    );
    let (n, ci, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let (co, cig, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let (oh, ow) = (ys[2], ys[3]);
    let (Some(wv), Some(xq)) = (const_ints(info, 1), QType::of(q.x.dtype)) else {
        return Ok(Plan::Fallback("QConv weights are not constant".into()));
    };
    let bias = if c.has_bias {
        match const_ints(info, 2) {
            Some(b) => b,
            None => return Ok(Plan::Fallback("QConv bias is not constant".into())),
        }
    } else {
        vec![0; co]
    };
    let rq = q
        .requant(co)
        .ok_or_else(|| "QConv parameters have no integer requantization".to_string())?;
    let (x_zp, x_i8) = u8_domain(xq, q.x.at(0).1);
    let w8: Vec<i8> = wv.iter().map(|&v| v as i8).collect();
    let flops = 2 * (n * co * oh * ow * cig * kh * kw) as u64;
    let geom = QConvGeom {
        n: n as u64,
        ci: ci as u64,
        h: h as u64,
        w: w as u64,
        co: co as u64,
        groups: c.group as u64,
        kh: kh as u64,
        kw: kw as u64,
        sy: c.strides[0] as u64,
        sx: c.strides[1] as u64,
        dy: c.dilations[0] as u64,
        dx: c.dilations[1] as u64,
        pt: c.pads[0] as u64,
        pl: c.pads[1] as u64,
        oh: oh as u64,
        ow: ow as u64,
        x_zp,
        x_i8,
        y_zp: rq.zero_point as i64,
        lo: rq.lo as i64,
        hi: rq.hi as i64,
        tasks: dw_tasks(threads).max(1) as u64,
        res: q.residual.is_some() as u64,
        res_conv_a: q.residual.as_ref().is_some_and(|r| r.conv_is_a) as u64,
    };
    // The fused residual sum: the geometry its `QAdd` would have.
    let sum = match q.residual_sum() {
        Some(s) => Some(
            QBinaryGeom::new(&s, ys, ys)
                .ok_or_else(|| "QConv residual sum has no integer form".to_string())?,
        ),
        None => None,
    };
    if cig == 1 && kh * kw <= QDW_MAX_TAPS {
        if sum.is_some() {
            // `residual-fusion` fuses sums into convs with several input channels per group
            // only.
            return Err("a depthwise QConv with a fused residual sum".into());
        }
        let geom = QDwGeom::of_conv(&geom);
        geom.check()?;
        let packed = pack_qdw(&geom, &w8, &bias, &rq.mult)?;
        let scratch = scratch_bytes(geom.scratch_floats(), "int8 depthwise planes")?;
        return Ok(int8_plan(
            Int8Entry::Depthwise,
            k,
            vec![geom.to_blob(), crate::bytes_to_words(&packed)],
            scratch,
            flops,
            threads,
        ));
    }
    let geom = QConvGeom {
        tasks: qconv_tasks(threads) as u64,
        ..geom
    };
    geom.check()?;
    let packed = pack_qconv(&geom, &w8, &bias, &rq.mult)?;
    let scratch = scratch_bytes(
        geom.scratch_bytes().map(|b| b.div_ceil(4)),
        "int8 conv panels",
    )?;
    Ok(int8_plan(
        Int8Entry::Conv,
        k,
        vec![
            geom.to_blob_with(sum.as_ref()),
            crate::bytes_to_words(&packed),
        ],
        scratch,
        flops,
        threads,
    ))
}
