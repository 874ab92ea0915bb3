//! Kernel generators: each returns one PTX kernel specialized to static shapes, with its grid.
//! Every kernel takes only global pointers (in the order its doc comment gives); every shape,
//! stride and constant is an immediate in the code.

use super::ptx::{Kernel, Reg};
use super::tiles::{GemmTile, ELEMENTWISE_BLOCK};
use crate::epilogue::Epilogue;
use mnc_ir::{Activation, BinaryOp, Lrn};

/// A generated kernel and its launch grid (block size is `kernel.block`).
#[derive(Debug)]
pub struct Gen {
    pub kernel: Kernel,
    pub grid: [u32; 3],
    /// Short kind used in the kernel name (`gemm`, `dwconv`, ...).
    pub kind: &'static str,
}

fn blocks_for(threads: usize, block: usize) -> u32 {
    threads.div_ceil(block).max(1) as u32
}

/// One thread per element over `n` elements: the kernel, the linear index register and the
/// exit label (to be placed by [`finish`]).
pub(super) fn per_element(nparams: usize, n: usize) -> (Kernel, Reg, String) {
    let mut k = Kernel::new(nparams, ELEMENTWISE_BLOCK as u32);
    let exit = k.label("exit");
    let i = k.global_tid();
    k.exit_if_ge(i, n as u32, &exit);
    (k, i, exit)
}

pub(super) fn finish(mut k: Kernel, exit: &str, grid_threads: usize, kind: &'static str) -> Gen {
    k.place(exit);
    k.ins("ret");
    let block = k.block as usize;
    Gen {
        kernel: k,
        grid: [blocks_for(grid_threads, block), 1, 1],
        kind,
    }
}

/// `y = act(x)` over `n` elements. Params: x, y.
pub fn act(n: usize, a: Activation) -> Gen {
    let (mut k, i, exit) = per_element(2, n);
    let (x, y) = (k.param_ptr(0), k.param_ptr(1));
    let v = k.ld(x, i);
    let r = k.act(&Epilogue::act_only(a), v);
    k.st(y, i, r);
    finish(k, &exit, n, "act")
}

/// Most window offsets the LRN kernel unrolls (the window clipped to the channels).
pub const MAX_LRN_TAPS: usize = 64;

/// Window offsets `d` of an LRN over `c` channels that can be in range (`|d| < c`).
pub fn lrn_offsets(l: &Lrn, c: usize) -> std::ops::RangeInclusive<i64> {
    let before = l.before().min(c.saturating_sub(1)) as i64;
    let after = l.after().min(c.saturating_sub(1)) as i64;
    -before..=after
}

/// LRN across the channels of `[outer, c, inner]`: one thread per element; the window
/// ([`Lrn::window`]) is unrolled over its offsets (at most [`MAX_LRN_TAPS`]), each a load
/// predicated on the channel being in range, squares summed in window order with separate
/// multiply and add, then `x / (bias + alpha / size * sum)^beta` with the CPU kernel's
/// arithmetic (`sqrt(t) * sqrt(sqrt(t))` for beta 0.75, `sqrt` for 0.5, `t` for 1, else
/// `2^(beta * log2 t)` with the approximate `lg2`/`ex2`). Params: x, y.
pub fn lrn(outer: usize, c: usize, inner: usize, l: &Lrn) -> Gen {
    let n = outer * c * inner;
    let (mut k, i, exit) = per_element(2, n);
    let (x, y) = (k.param_ptr(0), k.param_ptr(1));
    let q = k.u32_op_imm("div", i, inner as u32);
    let ch = k.u32_op_imm("rem", q, c as u32);
    let s = k.imm_f32(0.0);
    let mut own = None;
    for d in lrn_offsets(l, c) {
        let dist = d.unsigned_abs() as u32;
        let v = if d == 0 {
            let v = k.ld(x, i);
            own = Some(v);
            v
        } else {
            let (e, p) = (
                k.u32_op_imm(if d < 0 { "sub" } else { "add" }, i, dist * inner as u32),
                k.p(),
            );
            if d < 0 {
                k.ins(format!("setp.ge.u32 {p}, {ch}, {dist}"));
            } else {
                k.ins(format!("setp.lt.u32 {p}, {ch}, {}", c as u32 - dist));
            }
            let v = k.imm_f32(0.0);
            let a = k.addr(x, e);
            k.ins(format!("@{p} ld.global.nc.f32 {v}, [{a}]"));
            v
        };
        let sq = k.fop("mul", v, v);
        k.ins(format!("add.rn.f32 {s}, {s}, {sq}"));
    }
    let own = own.unwrap_or_else(|| k.ld(x, i));
    let t = k.fop_imm("mul", s, l.alpha_over_size());
    let t = k.fop_imm("add", t, l.bias);
    let den = if l.beta == 0.75 {
        let r = k.f();
        k.ins(format!("sqrt.rn.f32 {r}, {t}"));
        let rr = k.f();
        k.ins(format!("sqrt.rn.f32 {rr}, {r}"));
        k.fop("mul", r, rr)
    } else if l.beta == 0.5 {
        let r = k.f();
        k.ins(format!("sqrt.rn.f32 {r}, {t}"));
        r
    } else if l.beta == 1.0 {
        t
    } else {
        let lg = k.f();
        k.ins(format!("lg2.approx.f32 {lg}, {t}"));
        let e = k.fop_imm("mul", lg, l.beta);
        let r = k.f();
        k.ins(format!("ex2.approx.f32 {r}, {e}"));
        r
    };
    let out = k.fop("div", own, den);
    k.st(y, i, out);
    finish(k, &exit, n, "lrn")
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Strides of `shape` broadcast to rank `rank` (0 along broadcast axes).
pub fn broadcast_strides(shape: &[usize], rank: usize) -> Vec<usize> {
    let s = strides(shape);
    let lead = rank - shape.len();
    (0..rank)
        .map(|i| {
            if i < lead || shape[i - lead] == 1 {
                0
            } else {
                s[i - lead]
            }
        })
        .collect()
}

/// Broadcasting `y = a op b`. Params: a, b, y.
pub fn binary(op: BinaryOp, a: &[usize], b: &[usize], out: &[usize]) -> Gen {
    let n: usize = out.iter().product();
    let (mut k, i, exit) = per_element(3, n);
    let (pa, pb, py) = (k.param_ptr(0), k.param_ptr(1), k.param_ptr(2));
    let need_decode = a != out || b != out;
    let idx = if need_decode {
        k.decode(i, out)
    } else {
        vec![]
    };
    let operand = |k: &mut Kernel, shape: &[usize]| {
        if shape == out {
            i
        } else {
            let s = broadcast_strides(shape, out.len());
            k.dot_strides(&idx, &s, 0)
        }
    };
    let ia = operand(&mut k, a);
    let ib = operand(&mut k, b);
    let va = k.ld(pa, ia);
    let vb = k.ld(pb, ib);
    let name = match op {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "sub",
        BinaryOp::Mul => "mul",
        BinaryOp::Div => "div",
    };
    let r = k.fop(name, va, vb);
    k.st(py, i, r);
    finish(k, &exit, n, "binary")
}

/// Per-channel affine over axis 1 of `shape`. With `bn_epsilon`: inference BatchNorm
/// `(x - mean) / sqrt(var + eps) * scale + bias` (params x, scale, bias, mean, var, y);
/// without: `x * scale + bias` (params x, scale, bias, y).
pub fn channel_affine(shape: &[usize], bn_epsilon: Option<f32>) -> Gen {
    let n: usize = shape.iter().product();
    let c = shape[1];
    let inner: usize = shape[2..].iter().product();
    let nparams = if bn_epsilon.is_some() { 6 } else { 4 };
    let (mut k, i, exit) = per_element(nparams, n);
    let ptrs: Vec<Reg> = (0..nparams).map(|p| k.param_ptr(p)).collect();
    let t = k.u32_op_imm("div", i, inner.max(1) as u32);
    let ch = k.u32_op_imm("rem", t, c.max(1) as u32);
    let x = k.ld(ptrs[0], i);
    let scale = k.ld(ptrs[1], ch);
    let bias = k.ld(ptrs[2], ch);
    let r = match bn_epsilon {
        Some(eps) => {
            let mean = k.ld(ptrs[3], ch);
            let var = k.ld(ptrs[4], ch);
            let ve = k.fop_imm("add", var, eps);
            let d = k.f();
            k.ins(format!("sqrt.rn.f32 {d}, {ve}"));
            let c0 = k.fop("sub", x, mean);
            let c1 = k.fop("div", c0, d);
            let c2 = k.fop("mul", c1, scale);
            k.fop("add", c2, bias)
        }
        None => {
            let c1 = k.fop("mul", x, scale);
            k.fop("add", c1, bias)
        }
    };
    k.st(ptrs[nparams - 1], i, r);
    finish(
        k,
        &exit,
        n,
        if bn_epsilon.is_some() {
            "batchnorm"
        } else {
            "affine"
        },
    )
}

/// One warp per output: returns (kernel, warp id, lane, exit label).
pub(super) fn per_warp(nparams: usize, outputs: usize) -> (Kernel, Reg, Reg, String) {
    let mut k = Kernel::new(nparams, ELEMENTWISE_BLOCK as u32);
    let exit = k.label("exit");
    let g = k.global_tid();
    let wid = k.u32_op_imm("shr", g, 5);
    let lane = k.u32_op_imm("and", g, 31);
    k.exit_if_ge(wid, outputs as u32, &exit);
    (k, wid, lane, exit)
}

/// A lane-strided loop `for r in (lane..len).step_by(32)`, calling `body` with `r`.
pub(super) fn lane_loop(
    k: &mut Kernel,
    lane: Reg,
    len: usize,
    mut body: impl FnMut(&mut Kernel, Reg),
) {
    let r = k.r();
    k.ins(format!("mov.u32 {r}, {lane}"));
    let top = k.label("loop");
    let done = k.label("done");
    k.place(&top);
    let p = k.p();
    k.ins(format!("setp.ge.u32 {p}, {r}, {len}"));
    k.ins(format!("@{p} bra {done}"));
    body(k, r);
    k.ins(format!("add.u32 {r}, {r}, 32"));
    k.ins(format!("bra {top}"));
    k.place(&done);
}

/// Mean over the middle extent of `[outer, red, inner]` (GlobalAveragePool, ReduceMean, the
/// squeeze of SE): one warp per output, lane partial sums then a butterfly sum.
/// Params: x, y (`[outer, inner]`).
pub fn mean(outer: usize, red: usize, inner: usize) -> Gen {
    let outputs = outer * inner;
    let (mut k, wid, lane, exit) = per_warp(2, outputs);
    let (x, y) = (k.param_ptr(0), k.param_ptr(1));
    let o = k.u32_op_imm("div", wid, inner as u32);
    let ii = k.u32_op_imm("rem", wid, inner as u32);
    let base = k.mad_imm(o, (red * inner) as u32, ii);
    let acc = k.imm_f32(0.0);
    lane_loop(&mut k, lane, red, |k, r| {
        let e = k.mad_imm(r, inner as u32, base);
        let v = k.ld(x, e);
        k.ins(format!("add.rn.f32 {acc}, {acc}, {v}"));
    });
    let s = k.warp_sum(acc);
    let m = k.fop_imm("div", s, red as f32);
    let p = k.p();
    k.ins(format!("setp.eq.u32 {p}, {lane}, 0"));
    let a = k.addr(y, wid);
    k.ins(format!("@{p} st.global.f32 [{a}], {m}"));
    finish_warps(k, &exit, outputs, "mean")
}

pub(super) fn finish_warps(k: Kernel, exit: &str, outputs: usize, kind: &'static str) -> Gen {
    finish(k, exit, outputs * 32, kind)
}

/// Softmax along the middle extent of `[outer, d, inner]`: one warp per row.
/// Params: x, y.
pub fn softmax(outer: usize, d: usize, inner: usize) -> Gen {
    let outputs = outer * inner;
    let (mut k, wid, lane, exit) = per_warp(2, outputs);
    let (x, y) = (k.param_ptr(0), k.param_ptr(1));
    let o = k.u32_op_imm("div", wid, inner as u32);
    let ii = k.u32_op_imm("rem", wid, inner as u32);
    let base = k.mad_imm(o, (d * inner) as u32, ii);
    let m = k.imm_f32(f32::NEG_INFINITY);
    lane_loop(&mut k, lane, d, |k, r| {
        let e = k.mad_imm(r, inner as u32, base);
        let v = k.ld(x, e);
        k.ins(format!("max.f32 {m}, {m}, {v}"));
    });
    let mx = k.warp_max(m);
    let s = k.imm_f32(0.0);
    lane_loop(&mut k, lane, d, |k, r| {
        let e = k.mad_imm(r, inner as u32, base);
        let v = k.ld(x, e);
        let t = k.fop("sub", v, mx);
        let ex = k.exp(t);
        k.ins(format!("add.rn.f32 {s}, {s}, {ex}"));
    });
    let tot = k.warp_sum(s);
    lane_loop(&mut k, lane, d, |k, r| {
        let e = k.mad_imm(r, inner as u32, base);
        let v = k.ld(x, e);
        let t = k.fop("sub", v, mx);
        let ex = k.exp(t);
        let q = k.fop("div", ex, tot);
        k.st(y, e, q);
    });
    finish_warps(k, &exit, outputs, "softmax")
}

/// `y[b, j] = act(sum_l w[j, l] * v[b, l] + bias[j])` for `b < nb`, `j < rows` with epilogue
/// `e` (bias where it has one, no residual): one warp per output (the two small
/// matrix-vector products of SE). Params: v, w, [bias], y.
pub fn matvec(nb: usize, rows: usize, len: usize, e: &Epilogue) -> Gen {
    debug_assert!(!e.residual(), "the matrix-vector kernel adds no residual");
    let outputs = nb * rows;
    let nparams = 3 + e.bias() as usize;
    let (mut k, wid, lane, exit) = per_warp(nparams, outputs);
    let (v, w) = (k.param_ptr(0), k.param_ptr(1));
    let bias = e.bias().then(|| k.param_ptr(2));
    let y = k.param_ptr(nparams - 1);
    let b = k.u32_op_imm("div", wid, rows as u32);
    let j = k.u32_op_imm("rem", wid, rows as u32);
    let zero = k.imm_u32(0);
    let vbase = k.mad_imm(b, len as u32, zero);
    let wbase = k.mad_imm(j, len as u32, zero);
    let acc = k.imm_f32(0.0);
    lane_loop(&mut k, lane, len, |k, l| {
        let vi = k.u32_op("add", vbase, l);
        let wi = k.u32_op("add", wbase, l);
        let vv = k.ld(v, vi);
        let wv = k.ld(w, wi);
        k.ins(format!("fma.rn.f32 {acc}, {wv}, {vv}, {acc}"));
    });
    let mut t = k.warp_sum(acc);
    if let Some(bias) = bias {
        let bv = k.ld(bias, j);
        t = k.fop("add", t, bv);
    }
    let r = k.act(e, t);
    let p = k.p();
    k.ins(format!("setp.eq.u32 {p}, {lane}, 0"));
    let addr = k.addr(y, wid);
    k.ins(format!("@{p} st.global.f32 [{addr}], {r}"));
    finish_warps(k, &exit, outputs, "matvec")
}

/// `y[i] = x[i] * g[i / inner]` over `n` elements (the excitation of SE). Params: x, g, y.
pub fn scale_rows(n: usize, inner: usize) -> Gen {
    let (mut k, i, exit) = per_element(3, n);
    let (x, g, y) = (k.param_ptr(0), k.param_ptr(1), k.param_ptr(2));
    let row = k.u32_op_imm("div", i, inner as u32);
    let xv = k.ld(x, i);
    let gv = k.ld(g, row);
    let r = k.fop("mul", xv, gv);
    k.st(y, i, r);
    finish(k, &exit, n, "scale")
}

/// Copies over the multi-index space `dims`: `y[dst_base + idx . dst_strides] =
/// x[src_base + idx . src_strides]` (strides may be negative: u32 arithmetic wraps, the
/// final offsets are in range). Transpose, Slice, Concat. Params: x, y.
pub fn copy_strided(
    dims: &[usize],
    src_strides: &[i64],
    src_base: i64,
    dst_strides: &[usize],
    dst_base: usize,
) -> Gen {
    let n: usize = dims.iter().product();
    let (mut k, i, exit) = per_element(2, n);
    let (x, y) = (k.param_ptr(0), k.param_ptr(1));
    let idx = k.decode(i, dims);
    let ss: Vec<usize> = src_strides
        .iter()
        .map(|&s| s as i32 as u32 as usize)
        .collect();
    let src = k.dot_strides(&idx, &ss, src_base as i32 as u32);
    let dst = k.dot_strides(&idx, dst_strides, dst_base as u32);
    let v = k.ld(x, src);
    k.st(y, dst, v);
    finish(k, &exit, n, "copy")
}

/// The input element a constant-padding kernel's output element `i` reads, and whether it
/// reads one (`false`: a padding cell), for `out` of `in_shape[d] + begin[d] + end[d]` per
/// axis.
pub(super) fn pad_source(
    k: &mut Kernel,
    i: Reg,
    in_shape: &[usize],
    out_shape: &[usize],
    begin: &[usize],
) -> (Reg, Reg) {
    let idx = k.decode(i, out_shape);
    let in_strides = strides(in_shape);
    let valid = k.p();
    let mut src_idx = Vec::new();
    for (d, &ix) in idx.iter().enumerate() {
        let s = k.r();
        k.ins(format!("sub.u32 {s}, {ix}, {}", begin[d]));
        if d == 0 {
            k.ins(format!("setp.lt.u32 {valid}, {s}, {}", in_shape[d]));
        } else {
            let q = k.p();
            k.ins(format!("setp.lt.u32 {q}, {s}, {}", in_shape[d]));
            k.ins(format!("and.pred {valid}, {valid}, {q}"));
        }
        src_idx.push(s);
    }
    (k.dot_strides(&src_idx, &in_strides, 0), valid)
}

/// Constant padding: `out` has `in_shape[d] + begin[d] + end[d]` per axis. Params: x, y.
pub fn pad(in_shape: &[usize], out_shape: &[usize], begin: &[usize], value: f32) -> Gen {
    let n: usize = out_shape.iter().product();
    let (mut k, i, exit) = per_element(2, n);
    let (x, y) = (k.param_ptr(0), k.param_ptr(1));
    let (src, valid) = pad_source(&mut k, i, in_shape, out_shape, begin);
    let v = k.imm_f32(value);
    let a = k.addr(x, src);
    k.ins(format!("@{valid} ld.global.nc.f32 {v}, [{a}]"));
    k.st(y, i, v);
    finish(k, &exit, n, "pad")
}

/// Static description of a convolution for the direct and depthwise kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvSpec {
    pub n: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// top, left
    pub pad: [usize; 2],
    pub group: usize,
    /// The fused epilogue (bias per output channel, residual, activation).
    pub epi: Epilogue,
}

/// Adds bias/residual/activation to `acc` and stores it at `y[i]`. `ptrs` are the kernel's
/// parameters after x and w: [bias], [residual], y.
fn conv_epilogue(k: &mut Kernel, s: &ConvSpec, ptrs: &[Reg], o: Reg, i: Reg, acc: Reg) {
    let mut v = acc;
    let mut next = 0;
    if s.epi.bias() {
        let b = k.ld(ptrs[next], o);
        v = k.fop("add", v, b);
        next += 1;
    }
    if s.epi.residual() {
        let r = k.ld(ptrs[next], i);
        v = k.fop("add", v, r);
        next += 1;
    }
    v = k.act(&s.epi, v);
    k.st(ptrs[next], i, v);
}

/// Per-tap validity predicates and input offsets `iy * W + ix` of one output position.
pub(super) fn taps(k: &mut Kernel, s: &ConvSpec, oy: Reg, ox: Reg) -> Vec<(Reg, Reg)> {
    // iy0 = oy * sy - pt (wrapping u32), likewise ix0.
    let iy0 = k.r();
    k.ins(format!(
        "mad.lo.u32 {iy0}, {oy}, {}, {}",
        s.stride[0],
        (s.pad[0] as u32).wrapping_neg()
    ));
    let ix0 = k.r();
    k.ins(format!(
        "mad.lo.u32 {ix0}, {ox}, {}, {}",
        s.stride[1],
        (s.pad[1] as u32).wrapping_neg()
    ));
    let mut rows = Vec::new();
    for ky in 0..s.kh {
        let iy = k.u32_op_imm("add", iy0, (ky * s.dilation[0]) as u32);
        let p = k.p();
        k.ins(format!("setp.lt.u32 {p}, {iy}, {}", s.h));
        rows.push((iy, p));
    }
    let mut cols = Vec::new();
    for kx in 0..s.kw {
        let ix = k.u32_op_imm("add", ix0, (kx * s.dilation[1]) as u32);
        let p = k.p();
        k.ins(format!("setp.lt.u32 {p}, {ix}, {}", s.w));
        cols.push((ix, p));
    }
    let mut out = Vec::new();
    for &(iy, py) in &rows {
        for &(ix, px) in &cols {
            let p = k.p();
            k.ins(format!("and.pred {p}, {py}, {px}"));
            let off = k.mad_imm(iy, s.w as u32, ix);
            out.push((p, off));
        }
    }
    out
}

/// Depthwise conv (group == in == out channels): one thread per output, taps unrolled.
/// Params: x, w, [bias], [residual], y.
pub fn depthwise(s: &ConvSpec) -> Gen {
    let n = s.n * s.co * s.oh * s.ow;
    let nparams = 3 + s.epi.bias() as usize + s.epi.residual() as usize;
    let (mut k, i, exit) = per_element(nparams, n);
    let ptrs: Vec<Reg> = (0..nparams).map(|p| k.param_ptr(p)).collect();
    let idx = k.decode(i, &[s.n * s.co, s.oh, s.ow]);
    let (plane, oy, ox) = (idx[0], idx[1], idx[2]);
    let o = k.u32_op_imm("rem", plane, s.co as u32);
    let zero = k.imm_u32(0);
    let xbase = k.mad_imm(plane, (s.h * s.w) as u32, zero);
    let wbase = k.mad_imm(o, (s.kh * s.kw) as u32, zero);
    let acc = k.imm_f32(0.0);
    for (t, (p, off)) in taps(&mut k, s, oy, ox).into_iter().enumerate() {
        let xi = k.u32_op("add", xbase, off);
        let a = k.addr(ptrs[0], xi);
        let xv = k.imm_f32(0.0);
        k.ins(format!("@{p} ld.global.nc.f32 {xv}, [{a}]"));
        let wi = k.u32_op_imm("add", wbase, t as u32);
        let wv = k.ld(ptrs[1], wi);
        k.ins(format!("fma.rn.f32 {acc}, {xv}, {wv}, {acc}"));
    }
    conv_epilogue(&mut k, s, &ptrs[2..], o, i, acc);
    finish(k, &exit, n, "dwconv")
}

/// Direct conv for any group count (stem, strided/padded 1x1, grouped): one thread per
/// output, a loop over the group's input channels, taps unrolled and their bounds hoisted.
/// Params: x, w, [bias], [residual], y.
pub fn direct_conv(s: &ConvSpec) -> Gen {
    let n = s.n * s.co * s.oh * s.ow;
    let nparams = 3 + s.epi.bias() as usize + s.epi.residual() as usize;
    let (mut k, i, exit) = per_element(nparams, n);
    let ptrs: Vec<Reg> = (0..nparams).map(|p| k.param_ptr(p)).collect();
    let idx = k.decode(i, &[s.n, s.co, s.oh, s.ow]);
    let (b, o, oy, ox) = (idx[0], idx[1], idx[2], idx[3]);
    let cig = s.ci / s.group;
    let cog = s.co / s.group;
    let g = k.u32_op_imm("div", o, cog as u32);
    // first input plane: b * ci + g * cig
    let zero = k.imm_u32(0);
    let p0 = k.mad_imm(b, s.ci as u32, zero);
    let p1 = k.mad_imm(g, cig as u32, p0);
    let hw = (s.h * s.w) as u32;
    let xbase = k.mad_imm(p1, hw, zero);
    let taps_n = (s.kh * s.kw) as u32;
    let wbase = k.mad_imm(o, cig as u32 * taps_n, zero);
    let tl = taps(&mut k, s, oy, ox);
    let acc = k.imm_f32(0.0);
    let c = k.imm_u32(0);
    let top = k.label("ic");
    k.place(&top);
    for (t, &(p, off)) in tl.iter().enumerate() {
        let xi = k.u32_op("add", xbase, off);
        let a = k.addr(ptrs[0], xi);
        let xv = k.imm_f32(0.0);
        k.ins(format!("@{p} ld.global.nc.f32 {xv}, [{a}]"));
        let wi = k.u32_op_imm("add", wbase, t as u32);
        let wv = k.ld(ptrs[1], wi);
        k.ins(format!("fma.rn.f32 {acc}, {xv}, {wv}, {acc}"));
    }
    k.ins(format!("add.u32 {xbase}, {xbase}, {hw}"));
    k.ins(format!("add.u32 {wbase}, {wbase}, {taps_n}"));
    k.ins(format!("add.u32 {c}, {c}, 1"));
    let more = k.p();
    k.ins(format!("setp.lt.u32 {more}, {c}, {cig}"));
    k.ins(format!("@{more} bra {top}"));
    conv_epilogue(&mut k, s, &ptrs[2..], o, i, acc);
    finish(k, &exit, n, "conv")
}

/// Static description of a pooling window for [`pool`].
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// top, left, bottom, right
    pub pads: [usize; 4],
    pub max: bool,
    pub count_include_pad: bool,
}

/// Max/average pooling, one thread per output, window unrolled. Params: x, y.
pub fn pool(s: &PoolSpec) -> Gen {
    let n = s.planes * s.oh * s.ow;
    let (mut k, i, exit) = per_element(2, n);
    let (x, y) = (k.param_ptr(0), k.param_ptr(1));
    let idx = k.decode(i, &[s.planes, s.oh, s.ow]);
    let (plane, oy, ox) = (idx[0], idx[1], idx[2]);
    let spec = ConvSpec {
        n: 1,
        ci: 1,
        h: s.h,
        w: s.w,
        co: 1,
        oh: s.oh,
        ow: s.ow,
        kh: s.kernel[0],
        kw: s.kernel[1],
        stride: s.stride,
        dilation: s.dilation,
        pad: [s.pads[0], s.pads[1]],
        group: 1,
        epi: Epilogue::NONE,
    };
    let zero = k.imm_u32(0);
    let xbase = k.mad_imm(plane, (s.h * s.w) as u32, zero);
    let tl = taps(&mut k, &spec, oy, ox);
    let acc = k.imm_f32(if s.max { f32::NEG_INFINITY } else { 0.0 });
    let cells = k.imm_u32(0);
    for &(p, off) in &tl {
        let xi = k.u32_op("add", xbase, off);
        let a = k.addr(x, xi);
        let v = k.imm_f32(0.0);
        k.ins(format!("@{p} ld.global.nc.f32 {v}, [{a}]"));
        if s.max {
            // take v when valid and (v > acc or v is NaN), as the reference does
            let (q1, q2) = (k.p(), k.p());
            k.ins(format!("setp.gt.f32 {q1}, {v}, {acc}"));
            k.ins(format!("setp.nan.f32 {q2}, {v}, {v}"));
            k.ins(format!("or.pred {q1}, {q1}, {q2}"));
            k.ins(format!("and.pred {q1}, {q1}, {p}"));
            k.ins(format!("@{q1} mov.f32 {acc}, {v}"));
        } else {
            k.ins(format!("@{p} add.rn.f32 {acc}, {acc}, {v}"));
            k.ins(format!("@{p} add.u32 {cells}, {cells}, 1"));
        }
    }
    let r = if s.max {
        acc
    } else {
        let count = if s.count_include_pad {
            // window cells inside the padded extent [-pad_begin, size + pad_end)
            let rows = k.imm_u32(0);
            let cols = k.imm_u32(0);
            let iy0 = k.r();
            k.ins(format!("mul.lo.u32 {iy0}, {oy}, {}", s.stride[0]));
            for ky in 0..s.kernel[0] {
                let t = k.u32_op_imm("add", iy0, (ky * s.dilation[0]) as u32);
                let p = k.p();
                k.ins(format!(
                    "setp.lt.u32 {p}, {t}, {}",
                    s.h + s.pads[0] + s.pads[2]
                ));
                k.ins(format!("@{p} add.u32 {rows}, {rows}, 1"));
            }
            let ix0 = k.r();
            k.ins(format!("mul.lo.u32 {ix0}, {ox}, {}", s.stride[1]));
            for kx in 0..s.kernel[1] {
                let t = k.u32_op_imm("add", ix0, (kx * s.dilation[1]) as u32);
                let p = k.p();
                k.ins(format!(
                    "setp.lt.u32 {p}, {t}, {}",
                    s.w + s.pads[1] + s.pads[3]
                ));
                k.ins(format!("@{p} add.u32 {cols}, {cols}, 1"));
            }
            k.u32_op("mul.lo", rows, cols)
        } else {
            cells
        };
        let cf = k.f();
        k.ins(format!("cvt.rn.f32.u32 {cf}, {count}"));
        k.fop("div", acc, cf)
    };
    k.st(y, i, r);
    finish(k, &exit, n, if s.max { "maxpool" } else { "avgpool" })
}

/// Static description of one GEMM `C[m, n] = sum_k A[m, k] * B[k, n]` with epilogue. The
/// column index `n` runs over `batch * ninner` (batch images of `ninner` columns each), so a
/// pointwise conv over a whole batch is one GEMM. Offsets (in elements):
/// `A = m*sam + k*sak`, `B = (n / ninner)*sbb + (n % ninner)*sbn + k*sbk`,
/// `C = (n / ninner)*scb + (n % ninner)*scn + m*scm` (the residual operand has C's layout),
/// bias `= m*bsm + n*bsn` scaled by `beta` (where the epilogue has a bias).
#[derive(Clone, Debug, PartialEq)]
pub struct GemmSpec {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub ninner: usize,
    pub sam: usize,
    pub sak: usize,
    pub sbk: usize,
    pub sbn: usize,
    pub sbb: usize,
    pub scm: usize,
    pub scn: usize,
    pub scb: usize,
    pub alpha: f32,
    /// The bias's strides `(bsm, bsn)` and scale `beta`, read where `epi` has a bias.
    pub bias: (usize, usize, f32),
    /// The fused epilogue (bias, residual, activation).
    pub epi: Epilogue,
    pub tile: GemmTile,
}

/// Column offset `(n / ninner) * sb + (n % ninner) * sn` of a batched operand.
fn col_offset(k: &mut Kernel, n: Reg, ninner: usize, sb: usize, sn: usize, total_n: usize) -> Reg {
    if ninner >= total_n {
        return k.u32_op_imm("mul.lo", n, sn as u32);
    }
    let b = k.u32_op_imm("div", n, ninner as u32);
    let r = k.u32_op_imm("rem", n, ninner as u32);
    let t = k.u32_op_imm("mul.lo", r, sn as u32);
    k.mad_imm(b, sb as u32, t)
}

/// The epilogue operands of a GEMM kernel (kernel parameters after A and B).
struct GemmOut {
    bias: Option<Reg>,
    res: Option<Reg>,
    out: Reg,
}

impl GemmOut {
    fn of(s: &GemmSpec, ptrs: &[Reg]) -> GemmOut {
        let mut next = 2;
        let bias = s.epi.bias().then(|| {
            next += 1;
            ptrs[next - 1]
        });
        let res = s.epi.residual().then(|| {
            next += 1;
            ptrs[next - 1]
        });
        GemmOut {
            bias,
            res,
            out: ptrs[next],
        }
    }

    /// Stores one accumulator `v` of output element (m, n), predicated on `p`: alpha, plus
    /// beta * bias, plus the residual, then the activation (the fused epilogue).
    #[allow(clippy::too_many_arguments)]
    fn store(&self, k: &mut Kernel, s: &GemmSpec, p: Reg, m: Reg, n: Reg, coff: Reg, v: Reg) {
        let mut v = v;
        if s.alpha != 1.0 {
            v = k.fop_imm("mul", v, s.alpha);
        }
        if let Some(bp) = self.bias {
            let (bsm, bsn, beta) = s.bias;
            let zero = k.imm_u32(0);
            let bi = k.mad_imm(m, bsm as u32, zero);
            let bi = k.mad_imm(n, bsn as u32, bi);
            let a = k.addr(bp, bi);
            let bvl = k.imm_f32(0.0);
            k.ins(format!("@{p} ld.global.nc.f32 {bvl}, [{a}]"));
            let bvl = if beta != 1.0 {
                k.fop_imm("mul", bvl, beta)
            } else {
                bvl
            };
            v = k.fop("add", v, bvl);
        }
        let oi = k.mad_imm(m, s.scm as u32, coff);
        if let Some(rp) = self.res {
            let a = k.addr(rp, oi);
            let rv = k.imm_f32(0.0);
            k.ins(format!("@{p} ld.global.nc.f32 {rv}, [{a}]"));
            v = k.fop("add", v, rv);
        }
        v = k.act(&s.epi, v);
        let a = k.addr(self.out, oi);
        k.ins(format!("@{p} st.global.f32 [{a}], {v}"));
    }
}

/// Shared-memory tiled GEMM with exact f32 FMA accumulation (k ascending, per output) and
/// the fused epilogue. Params: A, B, [bias], [residual], C.
pub fn gemm(s: &GemmSpec) -> Gen {
    let t = s.tile;
    let threads = t.threads();
    let (thx, thy) = (t.bn / t.tn, t.bm / t.tm);
    let nparams = 3 + s.epi.bias() as usize + s.epi.residual() as usize;
    let mut k = Kernel::new(nparams, threads as u32);
    let ptrs: Vec<Reg> = (0..nparams).map(|p| k.param_ptr(p)).collect();
    let (pa, pb) = (ptrs[0], ptrs[1]);
    let tid = k.special("%tid.x");
    let bx = k.special("%ctaid.x");
    let by = k.special("%ctaid.y");
    let n0 = k.u32_op_imm("mul.lo", bx, t.bn as u32);
    let m0 = k.u32_op_imm("mul.lo", by, t.bm as u32);
    let tx = k.u32_op_imm("rem", tid, thx as u32);
    let ty = k.u32_op_imm("div", tid, thx as u32);
    let sa = k.shared(t.bk * t.bm);
    let sb = k.shared(t.bk * t.bn);

    // Load slots of this thread: (k within tile, row/col offset, row/col predicate, smem addr).
    struct Slot {
        kk: Reg,
        off: Reg,
        ok: Reg,
        saddr: Reg,
    }
    let a_k_contig = s.sak == 1 && s.sam != 1;
    let mut a_slots = Vec::new();
    for l in 0..(t.bm * t.bk) / threads {
        let e = k.u32_op_imm("add", tid, (l * threads) as u32);
        let (kk, mm) = if a_k_contig {
            (
                k.u32_op_imm("rem", e, t.bk as u32),
                k.u32_op_imm("div", e, t.bk as u32),
            )
        } else {
            (
                k.u32_op_imm("div", e, t.bm as u32),
                k.u32_op_imm("rem", e, t.bm as u32),
            )
        };
        let gm = k.u32_op("add", m0, mm);
        let ok = k.p();
        k.ins(format!("setp.lt.u32 {ok}, {gm}, {}", s.m));
        let off = k.u32_op_imm("mul.lo", gm, s.sam as u32);
        let si = k.mad_imm(kk, t.bm as u32, mm);
        let saddr = k.r();
        k.ins(format!("mad.lo.u32 {saddr}, {si}, 4, {sa}"));
        a_slots.push(Slot { kk, off, ok, saddr });
    }
    let b_n_contig = s.sbn == 1 || s.sbk != 1;
    let mut b_slots = Vec::new();
    for l in 0..(t.bn * t.bk) / threads {
        let e = k.u32_op_imm("add", tid, (l * threads) as u32);
        let (kk, nn) = if b_n_contig {
            (
                k.u32_op_imm("div", e, t.bn as u32),
                k.u32_op_imm("rem", e, t.bn as u32),
            )
        } else {
            (
                k.u32_op_imm("rem", e, t.bk as u32),
                k.u32_op_imm("div", e, t.bk as u32),
            )
        };
        let gn = k.u32_op("add", n0, nn);
        let ok = k.p();
        k.ins(format!("setp.lt.u32 {ok}, {gn}, {}", s.n));
        let off = col_offset(&mut k, gn, s.ninner, s.sbb, s.sbn, s.n);
        let si = k.mad_imm(kk, t.bn as u32, nn);
        let saddr = k.r();
        k.ins(format!("mad.lo.u32 {saddr}, {si}, 4, {sb}"));
        b_slots.push(Slot { kk, off, ok, saddr });
    }
    // Compute-phase shared addresses: sa + ty*4, sb + tx*4.
    let ra = k.r();
    k.ins(format!("mad.lo.u32 {ra}, {ty}, 4, {sa}"));
    let rb = k.r();
    k.ins(format!("mad.lo.u32 {rb}, {tx}, 4, {sb}"));
    let acc: Vec<Vec<Reg>> = (0..t.tm)
        .map(|_| (0..t.tn).map(|_| k.imm_f32(0.0)).collect())
        .collect();
    let k0 = k.imm_u32(0);
    let top = k.label("ktile");
    k.place(&top);
    for (slots, ptr, sk) in [(&a_slots, pa, s.sak), (&b_slots, pb, s.sbk)] {
        for sl in slots.iter() {
            let gk = k.u32_op("add", k0, sl.kk);
            let p = k.p();
            k.ins(format!("setp.lt.u32 {p}, {gk}, {}", s.k));
            k.ins(format!("and.pred {p}, {p}, {}", sl.ok));
            let e = k.mad_imm(gk, sk as u32, sl.off);
            let a = k.addr(ptr, e);
            let v = k.imm_f32(0.0);
            k.ins(format!("@{p} ld.global.nc.f32 {v}, [{a}]"));
            k.ins(format!("st.shared.f32 [{}], {v}", sl.saddr));
        }
    }
    k.ins("bar.sync 0");
    for kk in 0..t.bk {
        let av: Vec<Reg> = (0..t.tm)
            .map(|i| {
                let r = k.f();
                k.ins(format!(
                    "ld.shared.f32 {r}, [{ra}+{}]",
                    (kk * t.bm + i * thy) * 4
                ));
                r
            })
            .collect();
        let bv: Vec<Reg> = (0..t.tn)
            .map(|j| {
                let r = k.f();
                k.ins(format!(
                    "ld.shared.f32 {r}, [{rb}+{}]",
                    (kk * t.bn + j * thx) * 4
                ));
                r
            })
            .collect();
        for i in 0..t.tm {
            for j in 0..t.tn {
                let c = acc[i][j];
                k.ins(format!("fma.rn.f32 {c}, {}, {}, {c}", av[i], bv[j]));
            }
        }
    }
    k.ins("bar.sync 0");
    k.ins(format!("add.u32 {k0}, {k0}, {}", t.bk));
    let more = k.p();
    k.ins(format!("setp.lt.u32 {more}, {k0}, {}", s.k));
    k.ins(format!("@{more} bra {top}"));

    // Epilogue.
    let e = GemmOut::of(s, &ptrs);
    let rows: Vec<(Reg, Reg)> = (0..t.tm)
        .map(|i| {
            let m = k.u32_op("add", m0, ty);
            let m = k.u32_op_imm("add", m, (i * thy) as u32);
            let p = k.p();
            k.ins(format!("setp.lt.u32 {p}, {m}, {}", s.m));
            (m, p)
        })
        .collect();
    let cols: Vec<(Reg, Reg, Reg)> = (0..t.tn)
        .map(|j| {
            let n = k.u32_op("add", n0, tx);
            let n = k.u32_op_imm("add", n, (j * thx) as u32);
            let p = k.p();
            k.ins(format!("setp.lt.u32 {p}, {n}, {}", s.n));
            let coff = col_offset(&mut k, n, s.ninner, s.scb, s.scn, s.n);
            (n, p, coff)
        })
        .collect();
    for (i, &(m, pm)) in rows.iter().enumerate() {
        for (j, &(n, pn, coff)) in cols.iter().enumerate() {
            let p = k.p();
            k.ins(format!("and.pred {p}, {pm}, {pn}"));
            e.store(&mut k, s, p, m, n, coff, acc[i][j]);
        }
    }
    k.ins("ret");
    Gen {
        kernel: k,
        grid: [s.n.div_ceil(t.bn) as u32, s.m.div_ceil(t.bm) as u32, 1],
        kind: "gemm",
    }
}

/// The thread coordinates of a block of 4 warps arranged 2x2 over a tensor-core block tile
/// (as [`gemm_tf32`] and `int8::qconv_imma` use it): block indices, warp row/column and each
/// lane's `mma` fragment group (`gid = lane / 4`) and index in it (`tig = lane % 4`).
pub(super) struct WarpTile {
    pub tid: Reg,
    pub bx: Reg,
    pub by: Reg,
    pub lane: Reg,
    pub gid: Reg,
    pub tig: Reg,
    /// Warp row (`warp / 2`) and column (`warp % 2`) in the block tile.
    pub wmi: Reg,
    pub wni: Reg,
}

/// Reads the [`WarpTile`] coordinates of the running thread.
pub(super) fn warp_tile(k: &mut Kernel) -> WarpTile {
    let tid = k.special("%tid.x");
    let bx = k.special("%ctaid.x");
    let by = k.special("%ctaid.y");
    let warp = k.u32_op_imm("shr", tid, 5);
    let lane = k.u32_op_imm("and", tid, 31);
    let gid = k.u32_op_imm("shr", lane, 2);
    let tig = k.u32_op_imm("and", lane, 3);
    let wmi = k.u32_op_imm("shr", warp, 1);
    let wni = k.u32_op_imm("and", warp, 1);
    WarpTile {
        tid,
        bx,
        by,
        lane,
        gid,
        tig,
        wmi,
        wni,
    }
}

/// A warp's accumulators `acc[mi][ni][r]` over its 2x4 `m16n8` tiles (4 registers each),
/// each initialized by `init`.
pub(super) fn mma_accumulators(
    k: &mut Kernel,
    mut init: impl FnMut(&mut Kernel) -> Reg,
) -> Vec<Vec<Vec<Reg>>> {
    (0..2)
        .map(|_| {
            (0..4)
                .map(|_| (0..4).map(|_| init(&mut *k)).collect())
                .collect()
        })
        .collect()
}

/// Block tile of [`gemm_tf32`]: 64x64 outputs per block of 4 warps (2x2, each 32x32 =
/// 2x4 `mma.m16n8k8` tiles), reduction step 16.
pub const TF32_TILE: (usize, usize, usize) = (64, 64, 16);

/// Tensor-core GEMM (`allow_tf32` only): operands rounded to TF32 (`cvt.rna`) when staged in
/// shared memory, products accumulated in f32 by `mma.sync.m16n8k8.tf32`, then the same
/// fused epilogue as [`gemm`]. About 3 decimal digits per product, not exact f32.
/// Params: A, B, [bias], [residual], C. `s.tile` is ignored.
pub fn gemm_tf32(s: &GemmSpec) -> Gen {
    let (bm, bn, bk) = TF32_TILE;
    let (lda, ldb) = (bm + 8, bn + 8); // padded rows: conflict-free fragment reads
    let threads = 128usize;
    let nparams = 3 + s.epi.bias() as usize + s.epi.residual() as usize;
    let mut k = Kernel::new(nparams, threads as u32);
    let ptrs: Vec<Reg> = (0..nparams).map(|p| k.param_ptr(p)).collect();
    let (pa, pb) = (ptrs[0], ptrs[1]);
    let WarpTile {
        tid,
        bx,
        by,
        gid,
        tig,
        wmi,
        wni,
        ..
    } = warp_tile(&mut k);
    let n0 = k.u32_op_imm("mul.lo", bx, bn as u32);
    let m0 = k.u32_op_imm("mul.lo", by, bm as u32);
    let wm = k.u32_op_imm("mul.lo", wmi, 32);
    let wn = k.u32_op_imm("mul.lo", wni, 32);
    let sa = k.shared(bk * lda);
    let sb = k.shared(bk * ldb);

    // Global -> shared staging slots (as in `gemm`, with padded shared rows).
    struct Slot {
        kk: Reg,
        off: Reg,
        ok: Reg,
        saddr: Reg,
    }
    let a_k_contig = s.sak == 1 && s.sam != 1;
    let mut a_slots = Vec::new();
    for l in 0..(bm * bk) / threads {
        let e = k.u32_op_imm("add", tid, (l * threads) as u32);
        let (kk, mm) = if a_k_contig {
            (
                k.u32_op_imm("rem", e, bk as u32),
                k.u32_op_imm("div", e, bk as u32),
            )
        } else {
            (
                k.u32_op_imm("div", e, bm as u32),
                k.u32_op_imm("rem", e, bm as u32),
            )
        };
        let gm = k.u32_op("add", m0, mm);
        let ok = k.p();
        k.ins(format!("setp.lt.u32 {ok}, {gm}, {}", s.m));
        let off = k.u32_op_imm("mul.lo", gm, s.sam as u32);
        let si = k.mad_imm(kk, lda as u32, mm);
        let saddr = k.r();
        k.ins(format!("mad.lo.u32 {saddr}, {si}, 4, {sa}"));
        a_slots.push(Slot { kk, off, ok, saddr });
    }
    let b_n_contig = s.sbn == 1 || s.sbk != 1;
    let mut b_slots = Vec::new();
    for l in 0..(bn * bk) / threads {
        let e = k.u32_op_imm("add", tid, (l * threads) as u32);
        let (kk, nn) = if b_n_contig {
            (
                k.u32_op_imm("div", e, bn as u32),
                k.u32_op_imm("rem", e, bn as u32),
            )
        } else {
            (
                k.u32_op_imm("rem", e, bk as u32),
                k.u32_op_imm("div", e, bk as u32),
            )
        };
        let gn = k.u32_op("add", n0, nn);
        let ok = k.p();
        k.ins(format!("setp.lt.u32 {ok}, {gn}, {}", s.n));
        let off = col_offset(&mut k, gn, s.ninner, s.sbb, s.sbn, s.n);
        let si = k.mad_imm(kk, ldb as u32, nn);
        let saddr = k.r();
        k.ins(format!("mad.lo.u32 {saddr}, {si}, 4, {sb}"));
        b_slots.push(Slot { kk, off, ok, saddr });
    }
    // Fragment base addresses: A at (k = tig, m = wm + gid), B at (k = tig, n = wn + gid).
    let ra0 = k.r();
    k.ins(format!("mad.lo.u32 {ra0}, {tig}, {lda}, {wm}"));
    let ra1 = k.u32_op("add", ra0, gid);
    let ra = k.r();
    k.ins(format!("mad.lo.u32 {ra}, {ra1}, 4, {sa}"));
    let rb0 = k.r();
    k.ins(format!("mad.lo.u32 {rb0}, {tig}, {ldb}, {wn}"));
    let rb1 = k.u32_op("add", rb0, gid);
    let rb = k.r();
    k.ins(format!("mad.lo.u32 {rb}, {rb1}, 4, {sb}"));
    let acc = mma_accumulators(&mut k, |k| k.imm_f32(0.0));
    let k0 = k.imm_u32(0);
    let top = k.label("ktile");
    k.place(&top);
    for (slots, ptr, sk) in [(&a_slots, pa, s.sak), (&b_slots, pb, s.sbk)] {
        for sl in slots.iter() {
            let gk = k.u32_op("add", k0, sl.kk);
            let p = k.p();
            k.ins(format!("setp.lt.u32 {p}, {gk}, {}", s.k));
            k.ins(format!("and.pred {p}, {p}, {}", sl.ok));
            let e = k.mad_imm(gk, sk as u32, sl.off);
            let a = k.addr(ptr, e);
            let v = k.imm_f32(0.0);
            k.ins(format!("@{p} ld.global.nc.f32 {v}, [{a}]"));
            let t = k.r();
            k.ins(format!("cvt.rna.tf32.f32 {t}, {v}"));
            k.ins(format!("st.shared.b32 [{}], {t}", sl.saddr));
        }
    }
    k.ins("bar.sync 0");
    for ks in 0..bk / 8 {
        let afr: Vec<Vec<Reg>> = (0..2)
            .map(|mi| {
                (0..4)
                    .map(|r| {
                        let reg = k.r();
                        let off = ((ks * 8 + 4 * (r / 2)) * lda + mi * 16 + 8 * (r % 2)) * 4;
                        k.ins(format!("ld.shared.b32 {reg}, [{ra}+{off}]"));
                        reg
                    })
                    .collect()
            })
            .collect();
        let bfr: Vec<Vec<Reg>> = (0..4)
            .map(|ni| {
                (0..2)
                    .map(|r| {
                        let reg = k.r();
                        let off = ((ks * 8 + 4 * r) * ldb + ni * 8) * 4;
                        k.ins(format!("ld.shared.b32 {reg}, [{rb}+{off}]"));
                        reg
                    })
                    .collect()
            })
            .collect();
        for mi in 0..2 {
            for ni in 0..4 {
                let c = &acc[mi][ni];
                let a = &afr[mi];
                let b = &bfr[ni];
                k.ins(format!(
                    "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {{{}, {}, {}, {}}}, {{{}, {}, {}, {}}}, {{{}, {}}}, {{{}, {}, {}, {}}}",
                    c[0], c[1], c[2], c[3], a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], c[2], c[3]
                ));
            }
        }
    }
    k.ins("bar.sync 0");
    k.ins(format!("add.u32 {k0}, {k0}, {bk}"));
    let more = k.p();
    k.ins(format!("setp.lt.u32 {more}, {k0}, {}", s.k));
    k.ins(format!("@{more} bra {top}"));

    // Epilogue: element r of tile (mi, ni) is (m = wm + 16 mi + gid + 8 (r / 2),
    // n = wn + 8 ni + 2 tig + r % 2).
    let e = GemmOut::of(s, &ptrs);
    let mrow = k.u32_op("add", m0, wm);
    let mrow = k.u32_op("add", mrow, gid);
    let ncol0 = k.u32_op("add", n0, wn);
    let ncol = k.mad_imm(tig, 2, ncol0);
    for (mi, per_m) in acc.iter().enumerate() {
        for (ni, regs) in per_m.iter().enumerate() {
            for (r, &v0) in regs.iter().enumerate() {
                let m = k.u32_op_imm("add", mrow, (16 * mi + 8 * (r / 2)) as u32);
                let n = k.u32_op_imm("add", ncol, (8 * ni + r % 2) as u32);
                let (pm, pn, p) = (k.p(), k.p(), k.p());
                k.ins(format!("setp.lt.u32 {pm}, {m}, {}", s.m));
                k.ins(format!("setp.lt.u32 {pn}, {n}, {}", s.n));
                k.ins(format!("and.pred {p}, {pm}, {pn}"));
                let coff = col_offset(&mut k, n, s.ninner, s.scb, s.scn, s.n);
                e.store(&mut k, s, p, m, n, coff, v0);
            }
        }
    }
    k.ins("ret");
    Gen {
        kernel: k,
        grid: [s.n.div_ceil(bn) as u32, s.m.div_ceil(bm) as u32, 1],
        kind: "gemmtf32",
    }
}
