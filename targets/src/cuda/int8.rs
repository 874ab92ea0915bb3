//! The int8 kernels of the CUDA target (issue 14) and the compile-time packing of their
//! constants. Every kernel is bit-exact against the integer reference executor
//! (`mnc_ir::eval::quant`): integer arithmetic is exact (or wraps like the reference's), and
//! each f32 step of a requantization is the reference's operation, in its order, with its
//! rounding (`mul.rn`/`add.rn`/`div.rn` never contracted, `fma.rn` where the reference calls
//! `mul_add`, `cvt.rni` for round-half-to-even, `max`/`min` without `.NaN`: the non-NaN
//! operand wins, as Rust's `f32::max`).
//!
//! Storage: a `u8`/`i8` tensor is `numel` bytes in the (f32-word addressed) arena or weights
//! buffer, starting at its buffer's 128-byte aligned offset; an `i32` tensor is one word per
//! element.
//!
//! A pointwise integer convolution (16+ input channels, one group) runs on tensor cores
//! ([`qconv_imma`], `mma.m16n8k32`, weights packed in fragment order by
//! [`pack_qconv_imma`]); every other one on `dp4a` ([`QConvSpec::kernel`] chooses): activations (`u8` or `i8`, the type of the
//! instruction's first operand) times `i8` weights, four products per instruction summed
//! into an `i32`. The weights are packed at compile time in 4-byte quads ([`pack_qconv`]):
//! four input channels of one tap ([`qconv`]), or four taps of the one input channel of a
//! depthwise conv ([`qdwconv`]); a quad past the channels (taps) is padded with zero
//! weights. Padding cells and padded quad lanes read the input's zero point, and the zero
//! point's contribution `x_zp * sum(w)` is subtracted from the bias at compile time, so the
//! accumulator is `bias[o] + sum (x - x_zp) * w` exactly as the reference's (mod 2^32, like
//! the reference's wrapping sum).

use super::kernels::{
    finish, finish_warps, lane_loop, mma_accumulators, per_element, per_warp, taps, warp_tile,
    ConvSpec, Gen, WarpTile,
};
use super::ptx::{fimm, Kernel, Reg};
use super::tiles::ELEMENTWISE_BLOCK;
use mnc_ir::quant::{BinaryRequant, Requant};
use mnc_ir::QType;

/// The PTX load type of a stored quantized value (sign- or zero-extended to 32 bits).
fn ld_ty(q: QType) -> &'static str {
    match q {
        QType::U8 => "u8",
        QType::I8 => "s8",
    }
}

/// The `dp4a` operand type of packed activations of type `q`.
fn dp4a_ty(q: QType) -> &'static str {
    match q {
        QType::U8 => "u32",
        QType::I8 => "s32",
    }
}

/// Loads the quantized value `ptr[elem]` (one byte) into a 32-bit register.
fn ld_q(k: &mut Kernel, ptr: Reg, elem: Reg, q: QType) -> Reg {
    let a = k.addr_sized(ptr, elem, 1);
    let r = k.r();
    k.ins(format!("ld.global.nc.{} {r}, [{a}]", ld_ty(q)));
    r
}

/// Stores the low byte of `v` at `ptr[elem]`.
fn st_q(k: &mut Kernel, ptr: Reg, elem: Reg, v: Reg) {
    let a = k.addr_sized(ptr, elem, 1);
    k.ins(format!("st.global.u8 [{a}], {v}"));
}

/// `round_half_even(clamp(acc as f32 * mult, lo - zp, hi - zp)) + zp` as
/// `mnc_ir::quant::Requant::apply` computes it: `cvt.rn` (exact below 2^24, ties to even
/// above, as Rust's `as f32`), one `mul.rn`, `max`/`min` against the exact bounds, `cvt.rni`.
fn requant(k: &mut Kernel, acc: Reg, mult: Reg, zp: i32, lo: i32, hi: i32) -> Reg {
    let f = k.f();
    k.ins(format!("cvt.rn.f32.s32 {f}, {acc}"));
    let t = k.fop("mul", f, mult);
    let t = k.fop_imm("max", t, (lo - zp) as f32);
    let t = k.fop_imm("min", t, (hi - zp) as f32);
    let r = k.r();
    k.ins(format!("cvt.rni.s32.f32 {r}, {t}"));
    let y = k.r();
    k.ins(format!("add.s32 {y}, {r}, {zp}"));
    y
}

/// Quantization parameters of a quantize/dequantize kernel: one scale and zero point
/// (immediates), or one per index of an axis (a table in the weights buffer: the scales as
/// f32, then the zero points as i32, [`axis_table`]).
#[derive(Clone, Debug, PartialEq)]
pub enum QuantParams {
    PerTensor {
        scale: f32,
        zp: i32,
    },
    /// Elements `i` use index `(i / inner) % dim` of the table.
    PerAxis {
        dim: usize,
        inner: usize,
    },
}

/// The weights-buffer table of per-axis parameters: `scale[dim]` (f32), `zp[dim]` (i32 bits).
pub fn axis_table(scale: &[f32], zp: &[i32]) -> Vec<f32> {
    let mut v = scale.to_vec();
    v.extend(zp.iter().map(|&z| f32::from_bits(z as u32)));
    v
}

/// The scale (f32 register) and zero point (s32 register) of element `i`. `table` is the
/// kernel's table parameter for per-axis parameters.
fn params_of(k: &mut Kernel, p: &QuantParams, i: Reg, table: Option<Reg>) -> (Reg, Reg) {
    match (p, table) {
        (QuantParams::PerTensor { scale, zp }, _) => {
            let s = k.imm_f32(*scale);
            let z = k.r();
            k.ins(format!("mov.s32 {z}, {zp}"));
            (s, z)
        }
        (QuantParams::PerAxis { dim, inner }, Some(t)) => {
            let q = k.u32_op_imm("div", i, (*inner).max(1) as u32);
            let c = k.u32_op_imm("rem", q, (*dim).max(1) as u32);
            let s = k.ld(t, c);
            let zi = k.u32_op_imm("add", c, *dim as u32);
            let a = k.addr(t, zi);
            let z = k.r();
            k.ins(format!("ld.global.nc.s32 {z}, [{a}]"));
            (s, z)
        }
        (QuantParams::PerAxis { .. }, None) => unreachable!("per-axis parameters without a table"),
    }
}

/// ONNX `QuantizeLinear` over `n` f32 elements ([`mnc_ir::quant::quantize`]):
/// `t = x / scale` (`div.rn`, IEEE), `max(t, qmin - zp)`, `min(.., qmax - zp)` (NaN takes the
/// lower bound, infinities the bounds), `cvt.rni` (half to even), `+ zp`, one byte stored.
/// Params: x, [table], y.
pub fn quantize(n: usize, p: &QuantParams, qt: QType) -> Gen {
    let per_axis = matches!(p, QuantParams::PerAxis { .. });
    let nparams = 2 + per_axis as usize;
    let (mut k, i, exit) = per_element(nparams, n);
    let ptrs: Vec<Reg> = (0..nparams).map(|j| k.param_ptr(j)).collect();
    let table = per_axis.then(|| ptrs[1]);
    let x = k.ld(ptrs[0], i);
    let (s, zp) = params_of(&mut k, p, i, table);
    let t = k.fop("div", x, s);
    let (lo, hi) = (k.r(), k.r());
    k.ins(format!("sub.s32 {lo}, {}, {zp}", qt.min()));
    k.ins(format!("sub.s32 {hi}, {}, {zp}", qt.max()));
    let (flo, fhi) = (k.f(), k.f());
    k.ins(format!("cvt.rn.f32.s32 {flo}, {lo}"));
    k.ins(format!("cvt.rn.f32.s32 {fhi}, {hi}"));
    let t = k.fop("max", t, flo);
    let t = k.fop("min", t, fhi);
    let r = k.r();
    k.ins(format!("cvt.rni.s32.f32 {r}, {t}"));
    let y = k.r();
    k.ins(format!("add.s32 {y}, {r}, {zp}"));
    st_q(&mut k, ptrs[nparams - 1], i, y);
    finish(k, &exit, n, "quantize")
}

/// The stored type of a dequantized tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DequantInput {
    Q(QType),
    /// `i32` (a bias): one word per element.
    I32,
}

/// ONNX `DequantizeLinear` over `n` elements ([`mnc_ir::quant::dequantize`]):
/// `((q - zp) as f32) * scale`, the subtraction in s32, `cvt.rn`, one `mul.rn`.
/// Params: x, [table], y (f32).
pub fn dequantize(n: usize, p: &QuantParams, input: DequantInput) -> Gen {
    let per_axis = matches!(p, QuantParams::PerAxis { .. });
    let nparams = 2 + per_axis as usize;
    let (mut k, i, exit) = per_element(nparams, n);
    let ptrs: Vec<Reg> = (0..nparams).map(|j| k.param_ptr(j)).collect();
    let table = per_axis.then(|| ptrs[1]);
    let q = match input {
        DequantInput::Q(qt) => ld_q(&mut k, ptrs[0], i, qt),
        DequantInput::I32 => {
            let a = k.addr(ptrs[0], i);
            let r = k.r();
            k.ins(format!("ld.global.nc.s32 {r}, [{a}]"));
            r
        }
    };
    let (s, zp) = params_of(&mut k, p, i, table);
    let d = k.r();
    k.ins(format!("sub.s32 {d}, {q}, {zp}"));
    let f = k.f();
    k.ins(format!("cvt.rn.f32.s32 {f}, {d}"));
    let y = k.fop("mul", f, s);
    k.st(ptrs[nparams - 1], i, y);
    finish(k, &exit, n, "dequantize")
}

/// The weights-buffer form of a [`mnc_ir::QLut`] table: its 256 outputs as bytes (the low
/// byte of each value: two's complement for `i8`), indexed by `x - x_type.min()`.
pub fn lut_table(table: &[i32]) -> Vec<f32> {
    let bytes: Vec<u8> = table.iter().map(|&v| v as u8).collect();
    crate::bytes_to_words(&bytes)
}

/// A table lookup per element ([`mnc_ir::QLut`]): the stored byte `b` indexes the table
/// directly for `u8` inputs, as `b ^ 0x80` (`x + 128`) for `i8`. Params: x, table, y.
pub fn lut(n: usize, x: QType) -> Gen {
    let (mut k, i, exit) = per_element(3, n);
    let (px, pt, py) = (k.param_ptr(0), k.param_ptr(1), k.param_ptr(2));
    let b = ld_q(&mut k, px, i, QType::U8);
    let idx = match x {
        QType::U8 => b,
        QType::I8 => k.u32_op_imm("xor", b, 0x80),
    };
    let v = ld_q(&mut k, pt, idx, QType::U8);
    st_q(&mut k, py, i, v);
    finish(k, &exit, n, "qlut")
}

/// The quantized global average pool (`mnc_ir::eval::quant::qmean`): one warp per plane of
/// `pixels` values, lane partial sums in s32 and a butterfly sum (exact: the op guarantees
/// `255 * pixels < 2^31`), then `requant(sum - pixels * x_zp)` with the op's multiplier.
/// Params: x, y.
pub fn qmean(planes: usize, pixels: usize, qt: QType, x_zp: i32, rq: &Requant) -> Gen {
    let (mut k, wid, lane, exit) = per_warp(2, planes);
    let (x, y) = (k.param_ptr(0), k.param_ptr(1));
    let zero = k.imm_u32(0);
    let base = k.mad_imm(wid, pixels as u32, zero);
    let acc = k.r();
    k.ins(format!("mov.s32 {acc}, 0"));
    lane_loop(&mut k, lane, pixels, |k, r| {
        let e = k.u32_op("add", base, r);
        let v = ld_q(k, x, e, qt);
        k.ins(format!("add.s32 {acc}, {acc}, {v}"));
    });
    let mut s = acc;
    for off in [16, 8, 4, 2, 1] {
        let t = k.r();
        k.ins(format!("shfl.sync.bfly.b32 {t}, {s}, {off}, 31, -1"));
        let u = k.r();
        k.ins(format!("add.s32 {u}, {s}, {t}"));
        s = u;
    }
    let d = k.r();
    k.ins(format!(
        "sub.s32 {d}, {s}, {}",
        (pixels as i32).wrapping_mul(x_zp)
    ));
    let m = k.imm_f32(rq.mult[0]);
    let v = requant(&mut k, d, m, rq.zero_point, rq.lo, rq.hi);
    let p = k.p();
    k.ins(format!("setp.eq.u32 {p}, {lane}, 0"));
    let a = k.addr_sized(y, wid, 1);
    k.ins(format!("@{p} st.global.u8 [{a}], {v}"));
    finish_warps(k, &exit, planes, "qmean")
}

/// The quantized sum or product per element ([`BinaryRequant::apply`]), `b[i / inner]` read for `a[i]`. Add: `fma.rn(a, ra, fma.rn(b, rb,
/// fixed))`; Mul: the s32 product of the zero-point differences, `mul.rn` by the ratio,
/// `add.rn` of the zero point; both `cvt.rni` then an integer clamp. Params: a, b, y.
pub fn qbinary(n: usize, inner: usize, qt: QType, f: &BinaryRequant) -> Gen {
    let (mut k, i, exit) = per_element(3, n);
    let (pa, pb, py) = (k.param_ptr(0), k.param_ptr(1), k.param_ptr(2));
    let ib = if inner == 1 {
        i
    } else {
        k.u32_op_imm("div", i, inner.max(1) as u32)
    };
    let a = ld_q(&mut k, pa, i, qt);
    let b = ld_q(&mut k, pb, ib, qt);
    let (t, lo, hi, kind) = match f {
        BinaryRequant::Add(r) => {
            let (fa, fb) = (k.f(), k.f());
            k.ins(format!("cvt.rn.f32.s32 {fa}, {a}"));
            k.ins(format!("cvt.rn.f32.s32 {fb}, {b}"));
            let u = k.f();
            k.ins(format!(
                "fma.rn.f32 {u}, {fb}, {}, {}",
                fimm(r.rb),
                fimm(r.fixed)
            ));
            let t = k.f();
            k.ins(format!("fma.rn.f32 {t}, {fa}, {}, {u}", fimm(r.ra)));
            (t, r.lo, r.hi, "qadd")
        }
        BinaryRequant::Mul(r) => {
            let (da, db, p) = (k.r(), k.r(), k.r());
            k.ins(format!("sub.s32 {da}, {a}, {}", r.a_zp));
            k.ins(format!("sub.s32 {db}, {b}, {}", r.b_zp));
            k.ins(format!("mul.lo.s32 {p}, {da}, {db}"));
            let fp = k.f();
            k.ins(format!("cvt.rn.f32.s32 {fp}, {p}"));
            let t = k.fop_imm("mul", fp, r.ratio);
            let t = k.fop_imm("add", t, r.y_zp as f32);
            (t, r.lo, r.hi, "qmul")
        }
    };
    let r = k.r();
    k.ins(format!("cvt.rni.s32.f32 {r}, {t}"));
    let c = k.r();
    k.ins(format!("max.s32 {c}, {r}, {lo}"));
    k.ins(format!("min.s32 {c}, {c}, {hi}"));
    st_q(&mut k, py, i, c);
    finish(k, &exit, n, kind)
}

/// Constant padding of a byte tensor (the integer `Pad` of `qdq-fold`): `out` has
/// `in_shape[d] + begin[d] + end[d]` per axis, padding cells hold the byte `value`.
/// Params: x, y.
pub fn pad_bytes(in_shape: &[usize], out_shape: &[usize], begin: &[usize], value: u8) -> Gen {
    let n: usize = out_shape.iter().product();
    let (mut k, i, exit) = per_element(2, n);
    let (x, y) = (k.param_ptr(0), k.param_ptr(1));
    let (src, valid) = super::kernels::pad_source(&mut k, i, in_shape, out_shape, begin);
    let v = k.imm_u32(value as u32);
    let a = k.addr_sized(x, src, 1);
    k.ins(format!("@{valid} ld.global.nc.u8 {v}, [{a}]"));
    st_q(&mut k, y, i, v);
    finish(k, &exit, n, "pad8")
}

/// Static description of an integer convolution.
#[derive(Clone, Debug, PartialEq)]
pub struct QConvSpec {
    /// The geometry (its `epi` is ignored: the bias is packed, the activation is the output
    /// range).
    pub conv: ConvSpec,
    /// The input's type and zero point.
    pub x: QType,
    pub x_zp: i32,
    /// The output's zero point and range (after a fused ReLU/Clip).
    pub y_zp: i32,
    pub lo: i32,
    pub hi: i32,
}

impl QConvSpec {
    /// Input channels per group.
    fn cig(&self) -> usize {
        self.conv.ci / self.conv.group
    }
    /// Output channels per group.
    fn cog(&self) -> usize {
        self.conv.co / self.conv.group
    }
    fn taps(&self) -> usize {
        self.conv.kh * self.conv.kw
    }
    /// Whether the depthwise form runs it (one input channel per group: the quads run over
    /// the taps).
    pub fn depthwise(&self) -> bool {
        self.cig() == 1
    }
    /// 4-byte weight words per output channel.
    pub fn words_per_channel(&self) -> usize {
        if self.depthwise() {
            self.taps().div_ceil(4)
        } else {
            self.cig().div_ceil(4) * self.taps()
        }
    }
    /// Output channels one thread of [`qconv`] computes: the largest of 4, 2, 1 dividing the
    /// channels per group (they share every packed activation word).
    pub fn channels_per_thread(&self) -> usize {
        if self.depthwise() {
            return 1;
        }
        [4, 2, 1]
            .into_iter()
            .find(|&b| self.cog().is_multiple_of(b))
            .unwrap_or(1)
    }
}

/// Checks the constants of a conv against its shape (`w` OIHW with `cig` channels per group,
/// one bias and one multiplier per output channel) and returns the folded biases
/// `bias[o] - x_zp * sum(w[o])` as f32 words holding the i32 bits (wrapping, like the
/// reference's sum), one per output channel: what every int8 conv kernel adds to its
/// accumulator of unshifted `x * w` products.
fn folded_biases(s: &QConvSpec, w: &[i8], bias: &[i32], mult: &[f32]) -> Result<Vec<f32>, String> {
    let (co, per) = (s.conv.co, s.cig() * s.taps());
    if w.len() != co * per || bias.len() != co || mult.len() != co {
        return Err(format!(
            "QConv constants do not match the shape: {} weights for {co}x{}x{}, {} biases, {} multipliers",
            w.len(),
            s.cig(),
            s.taps(),
            bias.len(),
            mult.len()
        ));
    }
    Ok((0..co)
        .map(|o| {
            let sum = w[o * per..][..per]
                .iter()
                .fold(0i32, |a, &v| a.wrapping_add(v as i32));
            f32::from_bits(bias[o].wrapping_sub(s.x_zp.wrapping_mul(sum)) as u32)
        })
        .collect())
}

/// The constants of an integer convolution, as weights-buffer words: the folded biases
/// `bias[o] - x_zp * sum(w[o])` (i32 bits, `co` words), the multipliers (f32, `co` words),
/// then the packed weights (`words_per_channel` words per output channel; see the module
/// docs). `w` is OIHW, `bias` and `mult` one per output channel.
pub fn pack_qconv(s: &QConvSpec, w: &[i8], bias: &[i32], mult: &[f32]) -> Result<Vec<f32>, String> {
    let (co, cig, taps) = (s.conv.co, s.cig(), s.taps());
    let mut out = folded_biases(s, w, bias, mult)?;
    out.extend_from_slice(mult);
    let wt = |o: usize, c: usize, t: usize| -> u8 {
        if c < cig && t < taps {
            w[(o * cig + c) * taps + t] as u8
        } else {
            0
        }
    };
    let mut bytes = Vec::with_capacity(co * s.words_per_channel() * 4);
    for o in 0..co {
        if s.depthwise() {
            for q in 0..taps.div_ceil(4) {
                bytes.extend((0..4).map(|j| wt(o, 0, 4 * q + j)));
            }
        } else {
            for q in 0..cig.div_ceil(4) {
                for t in 0..taps {
                    bytes.extend((0..4).map(|j| wt(o, 4 * q + j, t)));
                }
            }
        }
    }
    out.extend(crate::bytes_to_words(&bytes));
    Ok(out)
}

/// Packs the four bytes `b[0..4]` (zero-extended) into one word, `b[0]` lowest.
fn pack4(k: &mut Kernel, b: &[Reg]) -> Reg {
    let mut w = b[0];
    for (j, &v) in b.iter().enumerate().skip(1) {
        let r = k.r();
        k.ins(format!("bfi.b32 {r}, {v}, {w}, {}, 8", 8 * j));
        w = r;
    }
    w
}

/// One byte of the input at `[addr + imm]` into a fresh register when `p` holds, else the
/// zero point's byte.
fn ld_byte_or_zp(k: &mut Kernel, p: Reg, addr: Reg, imm: usize, zp_byte: u32) -> Reg {
    let v = k.r();
    k.ins(format!("mov.u32 {v}, {zp_byte}"));
    k.ins(format!("@{p} ld.global.nc.u8 {v}, [{addr}+{imm}]"));
    v
}

/// `ptr + 4 * word` as a 64-bit address.
fn word_addr(k: &mut Kernel, ptr: Reg, word: Reg) -> Reg {
    k.addr(ptr, word)
}

/// The requantizing epilogue of output channel `o` (register) with accumulator `acc`:
/// stores one byte at `y + out` (`out` a 64-bit address).
fn qconv_store(k: &mut Kernel, s: &QConvSpec, wp: Reg, o: Reg, acc: Reg, out: Reg) {
    let mi = k.u32_op_imm("add", o, s.conv.co as u32);
    let m = k.ld(wp, mi);
    let v = requant(k, acc, m, s.y_zp, s.lo, s.hi);
    k.ins(format!("st.global.u8 [{out}], {v}"));
}

/// The accumulator of output channel `o` initialized with its folded bias.
fn qconv_bias(k: &mut Kernel, wp: Reg, o: Reg) -> Reg {
    let a = word_addr(k, wp, o);
    let acc = k.r();
    k.ins(format!("ld.global.nc.s32 {acc}, [{a}]"));
    acc
}

/// The integer convolution with one or more input channels per group: one thread per output
/// pixel and [`QConvSpec::channels_per_thread`] output channels of one group; a loop over
/// the group's input channels four at a time, taps unrolled, each tap's four channel bytes
/// (the zero point on padding cells and past the channels) packed into one word and
/// multiplied into every channel's accumulator with `dp4a`; then the requantization of
/// `mnc_ir::quant::Requant::apply`. Params: x, packed constants ([`pack_qconv`]), y.
pub fn qconv(s: &QConvSpec) -> Gen {
    let c = &s.conv;
    let ocb = s.channels_per_thread();
    let (cig, cog, taps_n) = (s.cig(), s.cog(), s.taps());
    let nq = cig.div_ceil(4);
    let hw = c.h * c.w;
    let ohw = c.oh * c.ow;
    let n = c.n * (c.co / ocb) * ohw;
    let (mut k, i, exit) = per_element(3, n);
    let (x, wp, y) = (k.param_ptr(0), k.param_ptr(1), k.param_ptr(2));
    let idx = k.decode(i, &[c.n, c.co / ocb, c.oh, c.ow]);
    let (b, ob, oy, ox) = (idx[0], idx[1], idx[2], idx[3]);
    let o0 = k.u32_op_imm("mul.lo", ob, ocb as u32);
    let g = k.u32_op_imm("div", o0, cog as u32);
    let zero = k.imm_u32(0);
    let p0 = k.mad_imm(b, c.ci as u32, zero);
    let p1 = k.mad_imm(g, cig as u32, p0);
    let xplane = k.mad_imm(p1, hw as u32, zero);
    // x row pointer (advanced by four planes per quad) and weight pointer of channel o0
    // (advanced by one quad's taps per quad).
    let xrow = k.addr_sized(x, xplane, 1);
    let wfirst = k.u32_op_imm("add", o0, 2 * c.co as u32);
    let wword = k.mad_imm(o0, (nq * taps_n) as u32 - 1, wfirst);
    let wrow = word_addr(&mut k, wp, wword);
    let tl = taps(&mut k, c, oy, ox);
    let accs: Vec<Reg> = (0..ocb)
        .map(|j| {
            let o = k.u32_op_imm("add", o0, j as u32);
            qconv_bias(&mut k, wp, o)
        })
        .collect();
    let q = k.imm_u32(0);
    let top = k.label("quad");
    k.place(&top);
    // Lanes past the channels (the last quad of a group whose width is not a multiple of
    // 4): `None` never loads (the lane is past the channels in every quad), `Some(None)`
    // always loads, `Some(Some(p))` loads when `q + j < cig`.
    let lane_ok: Vec<Option<Option<Reg>>> = (0..4)
        .map(|j| {
            if j >= cig {
                None
            } else if j == 0 || cig.is_multiple_of(4) {
                Some(None)
            } else {
                let p = k.p();
                k.ins(format!("setp.lt.u32 {p}, {q}, {}", (cig - j) as u32));
                Some(Some(p))
            }
        })
        .collect();
    let zp_byte = (s.x_zp as u32) & 0xff;
    for (t, &(tp, off)) in tl.iter().enumerate() {
        let addr = k.addr_sized(xrow, off, 1);
        let bytes: Vec<Reg> = (0..4)
            .map(|j| match lane_ok[j] {
                None => k.imm_u32(zp_byte),
                Some(None) => ld_byte_or_zp(&mut k, tp, addr, j * hw, zp_byte),
                Some(Some(lp)) => {
                    let p = k.p();
                    k.ins(format!("and.pred {p}, {tp}, {lp}"));
                    ld_byte_or_zp(&mut k, p, addr, j * hw, zp_byte)
                }
            })
            .collect();
        let word = pack4(&mut k, &bytes);
        for (j, &acc) in accs.iter().enumerate() {
            let wv = k.r();
            k.ins(format!(
                "ld.global.nc.u32 {wv}, [{wrow}+{}]",
                4 * (j * nq * taps_n + t)
            ));
            k.ins(format!(
                "dp4a.{}.s32 {acc}, {word}, {wv}, {acc}",
                dp4a_ty(s.x)
            ));
        }
    }
    k.ins(format!("add.s64 {xrow}, {xrow}, {}", 4 * hw));
    k.ins(format!("add.s64 {wrow}, {wrow}, {}", 4 * taps_n));
    k.ins(format!("add.u32 {q}, {q}, 4"));
    let more = k.p();
    k.ins(format!("setp.lt.u32 {more}, {q}, {}", 4 * nq));
    k.ins(format!("@{more} bra {top}"));
    // Output (b, o0 + j, oy, ox): y + ((b * co + o0) * oh + oy) * ow + ox + j * ohw.
    let pix = k.mad_imm(oy, c.ow as u32, ox);
    let bo = k.mad_imm(b, c.co as u32, o0);
    let e = k.mad_imm(bo, ohw as u32, pix);
    let out0 = k.addr_sized(y, e, 1);
    for (j, &acc) in accs.iter().enumerate() {
        let o = k.u32_op_imm("add", o0, j as u32);
        let out = k.rd();
        k.ins(format!("add.s64 {out}, {out0}, {}", j * ohw));
        qconv_store(&mut k, s, wp, o, acc, out);
    }
    finish(k, &exit, n, "qconv")
}

/// The integer convolution with one input channel per group (depthwise): one thread per
/// output; the taps, four at a time, packed into one word (the zero point on padding cells
/// and past the taps) and multiplied with `dp4a` by the channel's packed tap weights; then
/// the requantization. Params: x, packed constants ([`pack_qconv`]), y.
pub fn qdwconv(s: &QConvSpec) -> Gen {
    let c = &s.conv;
    let (cog, taps_n) = (s.cog(), s.taps());
    let nq = taps_n.div_ceil(4);
    let hw = c.h * c.w;
    let n = c.n * c.co * c.oh * c.ow;
    let (mut k, i, exit) = per_element(3, n);
    let (x, wp, y) = (k.param_ptr(0), k.param_ptr(1), k.param_ptr(2));
    let idx = k.decode(i, &[c.n * c.co, c.oh, c.ow]);
    let (plane, oy, ox) = (idx[0], idx[1], idx[2]);
    let o = k.u32_op_imm("rem", plane, c.co as u32);
    let b = k.u32_op_imm("div", plane, c.co as u32);
    let g = k.u32_op_imm("div", o, cog as u32);
    let xp = k.mad_imm(b, c.ci as u32, g);
    let zero = k.imm_u32(0);
    let xplane = k.mad_imm(xp, hw as u32, zero);
    let xrow = k.addr_sized(x, xplane, 1);
    let wfirst = k.u32_op_imm("add", o, 2 * c.co as u32);
    let wword = k.mad_imm(o, nq as u32 - 1, wfirst);
    let wrow = word_addr(&mut k, wp, wword);
    let tl = taps(&mut k, c, oy, ox);
    let acc = qconv_bias(&mut k, wp, o);
    let zp_byte = (s.x_zp as u32) & 0xff;
    for qi in 0..nq {
        let bytes: Vec<Reg> = (0..4)
            .map(|j| match tl.get(4 * qi + j) {
                Some(&(tp, off)) => {
                    let addr = k.addr_sized(xrow, off, 1);
                    ld_byte_or_zp(&mut k, tp, addr, 0, zp_byte)
                }
                None => k.imm_u32(zp_byte),
            })
            .collect();
        let word = pack4(&mut k, &bytes);
        let wv = k.r();
        k.ins(format!("ld.global.nc.u32 {wv}, [{wrow}+{}]", 4 * qi));
        k.ins(format!(
            "dp4a.{}.s32 {acc}, {word}, {wv}, {acc}",
            dp4a_ty(s.x)
        ));
    }
    let out = k.addr_sized(y, i, 1);
    qconv_store(&mut k, s, wp, o, acc, out);
    finish(k, &exit, n, "qdwconv")
}

/// Which kernel runs an integer convolution: a pure function of its geometry
/// ([`QConvSpec::kernel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QConvKernel {
    /// [`qconv_imma`]: tensor-core `mma.m16n8k32` (a pointwise conv of one group with at
    /// least [`IMMA_MIN_CHANNELS`] input channels).
    Imma,
    /// [`qconv`]: `dp4a`, one thread per output pixel.
    Dp4a,
    /// [`qdwconv`]: `dp4a` over the taps of one input channel.
    Depthwise,
}

/// Fewest input channels of a conv [`qconv_imma`] runs: each `mma.m16n8k32` reduces 32
/// channels, so below 16 more than half of every product would be padding.
pub const IMMA_MIN_CHANNELS: usize = 16;

/// Block tile of [`qconv_imma`]: output channels x pixels per block of 4 warps (2x2, each
/// 32x32 = 2x4 `mma.m16n8k32` tiles), and the input channels of one reduction step.
pub const IMMA_TILE: (usize, usize, usize) = (64, 64, 32);

/// Words per staged pixel in [`qconv_imma`]'s shared tile: the 8 channel quads of a step
/// and 4 words of padding, so that the B-fragment reads (pixel `gid`, quad `tig` of each
/// lane) fall in 32 distinct banks.
const IMMA_LDB: usize = 12;

impl QConvSpec {
    /// Whether the conv is a 1x1 stride-1 unpadded conv of one group (a GEMM over pixels).
    fn pointwise(&self) -> bool {
        let c = &self.conv;
        c.group == 1
            && (c.kh, c.kw) == (1, 1)
            && c.stride == [1, 1]
            && c.pad == [0, 0]
            && (c.oh, c.ow) == (c.h, c.w)
    }
    /// The kernel that runs this conv.
    pub fn kernel(&self) -> QConvKernel {
        if self.depthwise() {
            QConvKernel::Depthwise
        } else if self.pointwise() && self.cig() >= IMMA_MIN_CHANNELS {
            QConvKernel::Imma
        } else {
            QConvKernel::Dp4a
        }
    }
}

/// Output channels of a [`pack_qconv_imma`] pack: `co` rounded up to the block tile.
fn imma_rows(s: &QConvSpec) -> usize {
    s.conv.co.next_multiple_of(IMMA_TILE.0)
}

/// Reduction steps of [`qconv_imma`]: input channels in steps of 32.
fn imma_steps(s: &QConvSpec) -> usize {
    s.conv.ci.div_ceil(IMMA_TILE.2)
}

/// The word (in the pack, [`pack_qconv_imma`]) of A-fragment register 0 of lane `lane` for
/// the 16-row tile `mtile` and reduction step `step`; registers 1..3 follow it.
pub fn imma_a_word(s: &QConvSpec, mtile: usize, step: usize, lane: usize) -> usize {
    2 * imma_rows(s) + ((mtile * imma_steps(s) + step) * 32 + lane) * 4
}

/// The weight `(row, channel)` of byte `j` of A-fragment register `r` of lane `lane` of an
/// `mma.m16n8k32` with 8-bit operands, within its 16x32 tile (PTX ISA, "Matrix Fragments
/// for mma.m16n8k32": element `i = 4 r + j` is in row `groupID` for `i < 4` and `8 <= i <
/// 12`, else `groupID + 8`; column `4 threadID_in_group + (i & 3)`, plus 16 for `i >= 8`).
fn imma_a_at(lane: usize, r: usize, j: usize) -> (usize, usize) {
    (lane / 4 + 8 * (r % 2), 4 * (lane % 4) + j + 16 * (r / 2))
}

/// The constants of a [`qconv_imma`] conv, as weights-buffer words: the folded biases
/// `bias[o] - x_zp * sum(w[o])` (i32 bits), then the multipliers (f32), each padded with
/// zeros to [`imma_rows`] words; then the weights in `mma` fragment order
/// ([`imma_a_word`]): per 16-row tile and 32-channel step, each lane's four A registers
/// (16 bytes, one `ld.v4`), zero past the channels and rows. `w` is OI11 (one group).
pub fn pack_qconv_imma(
    s: &QConvSpec,
    w: &[i8],
    bias: &[i32],
    mult: &[f32],
) -> Result<Vec<f32>, String> {
    let (co, ci) = (s.conv.co, s.conv.ci);
    if s.kernel() != QConvKernel::Imma {
        return Err(format!("not a tensor-core conv: {:?}", s.kernel()));
    }
    let rows = imma_rows(s);
    let steps = imma_steps(s);
    let mut out = folded_biases(s, w, bias, mult)?;
    out.resize(rows, 0.0);
    out.extend_from_slice(mult);
    out.resize(2 * rows, 0.0);
    let mut bytes = Vec::with_capacity(rows * steps * IMMA_TILE.2);
    for mtile in 0..rows / 16 {
        for step in 0..steps {
            for lane in 0..32 {
                for r in 0..4 {
                    for j in 0..4 {
                        let (row, col) = imma_a_at(lane, r, j);
                        let (o, c) = (16 * mtile + row, IMMA_TILE.2 * step + col);
                        bytes.push(if o < co && c < ci {
                            w[o * ci + c] as u8
                        } else {
                            0
                        });
                    }
                }
            }
        }
    }
    out.extend(crate::bytes_to_words(&bytes));
    Ok(out)
}

/// The integer pointwise convolution on tensor cores (sm_80+): per image, the GEMM `y[o][p]
/// = sum_c w[o][c] x[c][p]` in [`IMMA_TILE`] blocks of 4 warps. Each step, the block
/// stages 32 input channels of its 64 pixels in shared memory as 4-channel words per pixel
/// (zero past the channels and pixels: their weights are zero or their outputs unstored),
/// each warp loads its A fragments straight from the pack (one `ld.v4` per lane and tile)
/// and runs 2x4 `mma.sync.aligned.m16n8k32.row.col.s32.s8.{u8,s8}.s32` (integer, wrapping
/// like the reference's sum); the folded bias is added and the result requantized as in
/// [`qconv`]. Bit-exact like the `dp4a` kernels. Params: x, packed constants
/// ([`pack_qconv_imma`]), y.
pub fn qconv_imma(s: &QConvSpec) -> Gen {
    let c = &s.conv;
    let (bm, bn, bk) = IMMA_TILE;
    let (co, ci) = (c.co, c.ci);
    let pix = c.h * c.w;
    let rows = imma_rows(s);
    let steps = imma_steps(s);
    let threads = 128usize;
    let mut k = Kernel::new(3, threads as u32);
    let (x, wp, y) = (k.param_ptr(0), k.param_ptr(1), k.param_ptr(2));
    let WarpTile {
        tid,
        bx,
        by,
        lane,
        gid,
        tig,
        wmi,
        wni,
    } = warp_tile(&mut k);
    let bz = k.special("%ctaid.z");
    let p0 = k.u32_op_imm("mul.lo", bx, bn as u32);
    let m0 = k.u32_op_imm("mul.lo", by, bm as u32);
    let sb = k.shared(bn * IMMA_LDB);
    // The image's input planes.
    let zero = k.imm_u32(0);
    let xoff = k.mad_imm(bz, (ci * pix) as u32, zero);
    let ximg = k.addr_sized(x, xoff, 1);
    // Staging slots: element e = tid + 128 l of the step's 64 pixels x 8 channel quads
    // (pixel e % 64, quad e / 64): four bytes of one pixel packed into one shared word.
    struct Slot {
        quad: usize,
        ok: Reg,
        src: Reg,
        saddr: Reg,
    }
    let mut slots = Vec::new();
    for l in 0..(bn * bk / 4) / threads {
        let e = k.u32_op_imm("add", tid, (l * threads) as u32);
        let nn = k.u32_op_imm("and", e, bn as u32 - 1);
        // (e / 64 is l * 2 + tid / 64: the quad index is a register only through tid.)
        let q = k.u32_op_imm("shr", e, bn.trailing_zeros());
        let gp = k.u32_op("add", p0, nn);
        let ok = k.p();
        k.ins(format!("setp.lt.u32 {ok}, {gp}, {pix}"));
        let elem = k.r();
        k.ins(format!("mad.lo.u32 {elem}, {q}, {}, {gp}", 4 * pix));
        let src = k.addr_sized(ximg, elem, 1);
        let si = k.mad_imm(nn, IMMA_LDB as u32, q);
        let saddr = k.r();
        k.ins(format!("mad.lo.u32 {saddr}, {si}, 4, {sb}"));
        slots.push(Slot {
            quad: l * (threads / bn),
            ok,
            src,
            saddr,
        });
    }
    // The quad of each slot is `quad + tid / 64` (tid / 64 is 0 or 1).
    let qhi = k.u32_op_imm("shr", tid, bn.trailing_zeros());
    // A fragments: the pack's word of (tile by * 4 + wmi * 2 + mi, step, lane).
    let t0 = k.u32_op_imm("mul.lo", by, (bm / 16) as u32);
    let t1 = k.mad_imm(wmi, 2, t0);
    let tl = k.mad_imm(t1, (steps * 32) as u32, lane);
    let wfirst = k.imm_u32(2 * rows as u32);
    let aw = k.mad_imm(tl, 4, wfirst);
    let apos = k.addr(wp, aw);
    let tile_bytes = steps * 32 * 16;
    // B fragments: shared word of (pixel wn + 8 ni + gid, quad tig [+ 4]).
    let wn = k.u32_op_imm("mul.lo", wni, 32);
    let bpix = k.u32_op("add", wn, gid);
    let bw = k.mad_imm(bpix, IMMA_LDB as u32, tig);
    let rb = k.r();
    k.ins(format!("mad.lo.u32 {rb}, {bw}, 4, {sb}"));
    let acc = mma_accumulators(&mut k, |k| k.imm_u32(0));
    let k0 = k.imm_u32(0);
    let top = k.label("kstep");
    k.place(&top);
    for sl in &slots {
        // channel of byte j: k0 + 4 (quad + tid / 64) + j
        let kq = k.u32_op_imm("add", qhi, sl.quad as u32);
        let kb = k.mad_imm(kq, 4, k0);
        let bytes: Vec<Reg> = (0..4)
            .map(|j| {
                let p = k.p();
                k.ins(format!(
                    "setp.lt.u32 {p}, {kb}, {}",
                    (ci - j.min(ci)) as u32
                ));
                k.ins(format!("and.pred {p}, {p}, {}", sl.ok));
                let v = k.imm_u32(0);
                k.ins(format!(
                    "@{p} ld.global.nc.u8 {v}, [{}+{}]",
                    sl.src,
                    j * pix
                ));
                v
            })
            .collect();
        let word = pack4(&mut k, &bytes);
        k.ins(format!("st.shared.b32 [{}], {word}", sl.saddr));
    }
    k.ins("bar.sync 0");
    let afr: Vec<Vec<Reg>> = (0..2)
        .map(|mi| {
            let regs: Vec<Reg> = (0..4).map(|_| k.r()).collect();
            k.ins(format!(
                "ld.global.nc.v4.u32 {{{}, {}, {}, {}}}, [{apos}+{}]",
                regs[0],
                regs[1],
                regs[2],
                regs[3],
                mi * tile_bytes
            ));
            regs
        })
        .collect();
    let bfr: Vec<Vec<Reg>> = (0..4)
        .map(|ni| {
            (0..2)
                .map(|r| {
                    let reg = k.r();
                    let off = (ni * 8 * IMMA_LDB + 4 * r) * 4;
                    k.ins(format!("ld.shared.b32 {reg}, [{rb}+{off}]"));
                    reg
                })
                .collect()
        })
        .collect();
    for mi in 0..2 {
        for ni in 0..4 {
            let (cr, a, b) = (&acc[mi][ni], &afr[mi], &bfr[ni]);
            k.ins(format!(
                "mma.sync.aligned.m16n8k32.row.col.s32.s8.{}.s32 {{{}, {}, {}, {}}}, {{{}, {}, {}, {}}}, {{{}, {}}}, {{{}, {}, {}, {}}}",
                ld_ty(s.x),
                cr[0], cr[1], cr[2], cr[3], a[0], a[1], a[2], a[3], b[0], b[1], cr[0], cr[1], cr[2], cr[3]
            ));
        }
    }
    k.ins("bar.sync 0");
    k.ins(format!("add.u32 {k0}, {k0}, {bk}"));
    k.ins(format!("add.s64 {apos}, {apos}, 512"));
    for sl in &slots {
        k.ins(format!("add.s64 {}, {}, {}", sl.src, sl.src, bk * pix));
    }
    let more = k.p();
    k.ins(format!("setp.lt.u32 {more}, {k0}, {ci}"));
    k.ins(format!("@{more} bra {top}"));

    // Epilogue: element r of tile (mi, ni) is (o = m0 + 32 wmi + 16 mi + gid + 8 (r / 2),
    // p = p0 + wn + 8 ni + 2 tig + r % 2).
    let wm = k.u32_op_imm("mul.lo", wmi, 32);
    let mrow0 = k.u32_op("add", m0, wm);
    let mrow = k.u32_op("add", mrow0, gid);
    let ncol0 = k.u32_op("add", p0, wn);
    let ncol = k.mad_imm(tig, 2, ncol0);
    let yimg = k.u32_op_imm("mul.lo", bz, co as u32);
    for (mi, per_m) in acc.iter().enumerate() {
        for half in 0..2 {
            let o = k.u32_op_imm("add", mrow, (16 * mi + 8 * half) as u32);
            // o < rows: the padded bias and multiplier words are there.
            let bias = qconv_bias(&mut k, wp, o);
            let mi_word = k.u32_op_imm("add", o, rows as u32);
            let mult = k.ld(wp, mi_word);
            let po = k.p();
            k.ins(format!("setp.lt.u32 {po}, {o}, {co}"));
            let orow = k.u32_op("add", yimg, o);
            let obase = k.mad_imm(orow, pix as u32, zero);
            for (ni, regs) in per_m.iter().enumerate() {
                for col in 0..2 {
                    let v0 = regs[2 * half + col];
                    let n = k.u32_op_imm("add", ncol, (8 * ni + col) as u32);
                    let (pn, p) = (k.p(), k.p());
                    k.ins(format!("setp.lt.u32 {pn}, {n}, {pix}"));
                    k.ins(format!("and.pred {p}, {po}, {pn}"));
                    let a = k.r();
                    k.ins(format!("add.s32 {a}, {v0}, {bias}"));
                    let v = requant(&mut k, a, mult, s.y_zp, s.lo, s.hi);
                    let e = k.u32_op("add", obase, n);
                    let addr = k.addr_sized(y, e, 1);
                    k.ins(format!("@{p} st.global.u8 [{addr}], {v}"));
                }
            }
        }
    }
    k.ins("ret");
    Gen {
        kernel: k,
        grid: [pix.div_ceil(bn) as u32, co.div_ceil(bm) as u32, c.n as u32],
        kind: "qconvmma",
    }
}

/// Threads per block of the int8 kernels (all one thread per output or one warp per plane).
pub const INT8_BLOCK: usize = ELEMENTWISE_BLOCK;
