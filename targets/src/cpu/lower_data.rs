//! Lowering of the data-movement ops and Softmax: Transpose, Slice, Pad, Gather, Softmax
//! (f32 data only; everything is specialized to the op's static shapes).
//!
//! - Transpose and Slice become one [`Strided`] copy: nested counted loops over the output
//!   (axes of size 1 dropped, adjacent axes that stay adjacent merged), the innermost one a
//!   vector copy when the source run is contiguous, else 4 strided scalar loads assembled into
//!   one vector store. Slice steps (negative too) are source strides; starts a constant offset.
//!   A transposing copy whose innermost axis is long is cache-blocked ([`Strided::tile`]).
//! - Pad (constant mode, the only mode of the IR) fills the padding regions with the value and
//!   copies the interior, recursing only down to the last padded axis (trailing unpadded axes
//!   are contiguous blocks).
//! - Gather needs constant indices: negative indices are normalized at compile time; up to
//!   [`UNROLL_INDICES`] indices become immediate offsets, more a table of indices packed as an
//!   extra (f32 holding integers, exact below 2^24).
//! - Softmax over one axis: max-subtract, the emitter's vector `exp`, sum (f32), multiply by
//!   the reciprocal of the sum. Rows along the last axis use f32x4 over the row, other axes
//!   f32x4 across the trailing elements. The reference sums and divides in f64 and its `exp`
//!   is exact to the ulp: results agree to a few 1e-7 relative (a `-inf` entry gives about
//!   1e-38 instead of 0, since the vector `exp` clamps its argument at -87.3).
//!
//! Data movement is bit-exact. What the reference kernel would report as an error (a Slice
//! axis given twice, a Gather index out of range) and non-constant Gather indices stay visible
//! fallbacks, as does non-f32 data.

use super::emit::{mf, Emitter, Operand};
use super::lower::{jit, Kind, OpInfo, Plan};
use cranelift_codegen::ir::{types, InstBuilder, Value};
use mnc_ir::{DType, Op};

/// Gather index lists up to this length are emitted as immediate offsets; longer ones read a
/// packed index table.
pub const UNROLL_INDICES: usize = 8;

/// Largest Gather axis size whose indices the f32 index table carries exactly (2^24).
const MAX_TABLE_INDEX: usize = 1 << 24;

/// A strided element copy: for every index `i` in the box `dims`,
/// `y[dst_off + Σ i_k dst_k] = x[src_off + Σ i_k src_k]` (element units; source strides may be
/// negative).
#[derive(Clone, Debug, PartialEq)]
pub struct Strided {
    pub dims: Vec<usize>,
    pub dst: Vec<i64>,
    pub src: Vec<i64>,
    pub dst_off: i64,
    pub src_off: i64,
    /// Cache blocking of a transposing copy: `(q, b)` runs the innermost axis (contiguous in
    /// the destination, strided in the source) in blocks of `b`, the block loop placed just
    /// outside axis `q` (the source's contiguous axis), so that the source lines a block
    /// touches are reused by the following iterations of `q` while still in L1.
    pub tile: Option<(usize, usize)>,
}

impl Strided {
    /// The same copy with size-1 axes dropped and adjacent axes merged where both strides
    /// allow it (an empty box stays as it is).
    fn simplified(self) -> Self {
        if self.dims.contains(&0) {
            return self;
        }
        // Kept axes, innermost first.
        let mut kept: Vec<(usize, i64, i64)> = Vec::new();
        for k in (0..self.dims.len()).rev() {
            let (n, ds, ss) = (self.dims[k], self.dst[k], self.src[k]);
            if n == 1 {
                continue;
            }
            match kept.last_mut() {
                Some((m, di, si)) if *di * *m as i64 == ds && *si * *m as i64 == ss => *m *= n,
                _ => kept.push((n, ds, ss)),
            }
        }
        kept.reverse();
        Strided {
            dims: kept.iter().map(|t| t.0).collect(),
            dst: kept.iter().map(|t| t.1).collect(),
            src: kept.iter().map(|t| t.2).collect(),
            dst_off: self.dst_off,
            src_off: self.src_off,
            tile: None,
        }
    }

    /// Chooses [`Strided::tile`]: when the innermost axis reads one cache line per element
    /// (source stride of 16 floats or more) and is longer than a block, and an outer axis
    /// reads contiguously.
    fn tiled(mut self) -> Self {
        let Some(last) = self.dims.len().checked_sub(1) else {
            return self;
        };
        let row_gathers = self.dst[last] == 1 && self.src[last].abs() >= 16;
        let q = (0..last).rev().find(|&k| self.src[k].abs() == 1);
        if let (true, Some(q)) = (row_gathers && self.dims[last] > TILE, q) {
            self.tile = Some((q, TILE));
        }
        self
    }
}

/// Block length (elements) of a tiled transposing copy.
const TILE: usize = 64;

/// The lowering strategy of a data-movement op.
#[derive(Clone, Debug, PartialEq)]
pub enum DataKind {
    /// Transpose as a strided copy.
    Transpose(Strided),
    /// Slice as a strided copy.
    Slice(Strided),
    /// Constant padding: fills and interior copies.
    Pad,
    /// Gather with constant indices (normalized, non-negative); `table` when they are read
    /// from the packed index table (extra 0) instead of immediates.
    Gather { indices: Vec<usize>, table: bool },
    /// Softmax over `d` elements `inner` apart, for each of `outer` blocks.
    Softmax {
        outer: usize,
        d: usize,
        inner: usize,
    },
}

impl DataKind {
    /// Short name of the strategy, for reports.
    pub fn label(&self) -> &'static str {
        match self {
            DataKind::Transpose(Strided { tile: Some(_), .. }) => "transpose-tiled",
            DataKind::Transpose(_) => "transpose",
            DataKind::Slice(Strided { tile: Some(_), .. }) => "slice-tiled",
            DataKind::Slice(_) => "slice",
            DataKind::Pad => "pad",
            DataKind::Gather { table: false, .. } => "gather",
            DataKind::Gather { table: true, .. } => "gather-table",
            DataKind::Softmax { inner: 1, .. } => "softmax-rows",
            DataKind::Softmax { .. } => "softmax-strided",
        }
    }
}

/// Row-major strides (elements) of `shape`.
fn row_major(shape: &[usize]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1] as i64;
    }
    s
}

fn data(kind: DataKind, extras: Vec<Vec<f32>>, flops: u64) -> Plan {
    jit(Kind::Data(kind), extras, 0, flops)
}

/// Chooses how a Transpose, Slice, Pad, Gather or Softmax runs.
pub fn plan(info: &OpInfo) -> Plan {
    if info.out.dtype != DType::F32 || info.inputs.first().map(|t| t.dtype) != Some(DType::F32) {
        return Plan::Fallback(format!("{} on non-f32 data", info.op.kind()));
    }
    let xs = &info.inputs[0].shape;
    let out = &info.out.shape;
    let r = xs.len();
    // Shape inference guarantees these; checked so that a malformed op falls back to the
    // reference kernel (which reports it) instead of making the lowering index out of range.
    let attrs_ok = match info.op {
        Op::Transpose { perm } => perm.len() == r && perm.iter().all(|&p| p < r),
        Op::Pad { pads, .. } => pads.len() == 2 * r,
        Op::Gather { axis } | Op::Softmax { axis } => *axis < r,
        _ => true,
    };
    if !attrs_ok {
        return Plan::Fallback(format!(
            "{} attributes do not fit the input",
            info.op.kind()
        ));
    }
    match info.op {
        Op::Transpose { perm } => {
            let is = row_major(xs);
            let s = Strided {
                dims: out.clone(),
                dst: row_major(out),
                src: perm.iter().map(|&p| is[p]).collect(),
                dst_off: 0,
                src_off: 0,
                tile: None,
            };
            data(DataKind::Transpose(s.simplified().tiled()), vec![], 0)
        }
        Op::Slice(sl) => {
            let r = xs.len();
            let mut start = vec![0i64; r];
            let mut step = vec![1i64; r];
            let mut seen = vec![false; r];
            for (k, &a) in sl.axes.iter().enumerate() {
                if a >= r || std::mem::replace(&mut seen[a], true) {
                    return Plan::Fallback(format!("Slice axis {a} repeated or out of range"));
                }
                start[a] = sl.starts[k];
                step[a] = sl.steps[k];
            }
            // Every source index must be in range (shape inference guarantees it; checked so
            // that a malformed slice can never make the generated code read out of bounds).
            for a in 0..r {
                if out[a] == 0 {
                    continue;
                }
                let last = start[a] + (out[a] as i64 - 1) * step[a];
                let dim = xs[a] as i64;
                if !(0..dim).contains(&start[a]) || !(0..dim).contains(&last) {
                    return Plan::Fallback(format!("Slice bounds out of range on axis {a}"));
                }
            }
            let is = row_major(xs);
            let s = Strided {
                dims: out.clone(),
                dst: row_major(out),
                src: (0..r).map(|a| step[a] * is[a]).collect(),
                dst_off: 0,
                src_off: (0..r).map(|a| start[a] * is[a]).sum(),
                tile: None,
            };
            data(DataKind::Slice(s.simplified().tiled()), vec![], 0)
        }
        Op::Pad { .. } => data(DataKind::Pad, vec![], 0),
        Op::Gather { axis } => {
            let Some(idx) = info.consts.get(1).copied().flatten() else {
                return Plan::Fallback("Gather indices are not constant".into());
            };
            let Some(iv) = idx.as_i64() else {
                return Plan::Fallback("Gather indices are not i64".into());
            };
            let dim = xs[*axis];
            let mut indices = Vec::with_capacity(iv.len());
            for &i in iv {
                let j = if i < 0 { i + dim as i64 } else { i };
                if j < 0 || j >= dim as i64 {
                    return Plan::Fallback(format!(
                        "Gather index {i} out of range for axis {axis} of size {dim}"
                    ));
                }
                indices.push(j as usize);
            }
            if indices.len() <= UNROLL_INDICES {
                return data(
                    DataKind::Gather {
                        indices,
                        table: false,
                    },
                    vec![],
                    0,
                );
            }
            if dim > MAX_TABLE_INDEX {
                return Plan::Fallback(format!(
                    "Gather axis of size {dim} exceeds the index table's exact range"
                ));
            }
            let t: Vec<f32> = indices.iter().map(|&j| j as f32).collect();
            data(
                DataKind::Gather {
                    indices,
                    table: true,
                },
                vec![t],
                0,
            )
        }
        Op::Softmax { axis } => {
            let kind = DataKind::Softmax {
                outer: xs[..*axis].iter().product(),
                d: xs[*axis],
                inner: xs[axis + 1..].iter().product(),
            };
            // Per element: max, subtract, exp (counted once), add, divide.
            data(kind, vec![], 5 * info.out.numel() as u64)
        }
        op => Plan::Fallback(format!("{} is not a data-movement op", op.kind())),
    }
}

/// Emits the body of a data-movement op planned by [`plan`]. `extra(j)` is the pointer-table
/// slot of packed constant `j`; `scratch_slot` that of the scratch area (unused here).
pub fn emit(
    e: &mut Emitter,
    info: &OpInfo,
    kind: &DataKind,
    extra: &dyn Fn(usize) -> usize,
    _scratch_slot: usize,
) {
    if info.out.numel() == 0 {
        return;
    }
    let (y, x) = (e.arg(0), e.arg(1));
    match (kind, info.op) {
        (DataKind::Transpose(s), _) | (DataKind::Slice(s), _) => emit_strided(e, y, x, s),
        (DataKind::Pad, Op::Pad { pads, value }) => {
            emit_pad(e, y, x, &info.inputs[0].shape, pads, *value)
        }
        (DataKind::Gather { indices, table }, Op::Gather { axis }) => {
            let xs = &info.inputs[0].shape;
            let g = GatherGeo {
                outer: xs[..*axis].iter().product(),
                dim: xs[*axis],
                inner: xs[axis + 1..].iter().product(),
            };
            let tab = if *table { Some(e.arg(extra(0))) } else { None };
            emit_gather(e, y, x, &g, indices, tab)
        }
        (&DataKind::Softmax { outer, d, inner }, _) => {
            if inner == 1 {
                emit_softmax_rows(e, y, x, outer, d)
            } else {
                emit_softmax_strided(e, y, x, outer, d, inner)
            }
        }
        // plan pairs kinds with ops; a mismatch emits nothing (the caller never builds it).
        _ => {}
    }
}

/// `base + off` bytes as an address usable with a zero immediate offset, or the immediate
/// itself when it fits the load/store offset field.
fn addr(e: &mut Emitter, base: Value, off: i64) -> (Value, i32) {
    match i32::try_from(off) {
        Ok(o) => (base, o),
        Err(_) => (e.add_c(base, off), 0),
    }
}

fn load_f32(e: &mut Emitter, base: Value, off: i64) -> Value {
    let (a, o) = addr(e, base, off);
    e.b.ins().load(types::F32, mf(), a, o)
}

fn store_f32(e: &mut Emitter, v: Value, base: Value, off: i64) {
    let (a, o) = addr(e, base, off);
    e.b.ins().store(mf(), v, a, o);
}

/// Emits the copy described by `s` from `x` to `y`.
fn emit_strided(e: &mut Emitter, y: Value, x: Value, s: &Strided) {
    if s.dims.contains(&0) {
        return;
    }
    let y0 = e.add_c(y, s.dst_off * 4);
    let x0 = e.add_c(x, s.src_off * 4);
    let Some(last) = s.dims.len().checked_sub(1) else {
        let v = load_f32(e, x0, 0);
        store_f32(e, v, y0, 0);
        return;
    };
    let loops: Vec<Loop> = (0..last).map(|k| (s.dims[k], s.dst[k], s.src[k])).collect();
    let (n, ds, ss) = (s.dims[last], s.dst[last], s.src[last]);
    match s.tile {
        None => nest(e, &loops, (n, ds, ss), y0, x0),
        Some((q, b)) => {
            // Blocks of `b` innermost elements, the block loop just outside axis `q`.
            let nb = n / b;
            let mut tiled = loops.clone();
            tiled.insert(q, (nb, b as i64 * ds, b as i64 * ss));
            nest(e, &tiled, (b, ds, ss), y0, x0);
            let rem = n % b;
            if rem > 0 {
                let done = (nb * b) as i64;
                let yt = e.add_c(y0, done * ds * 4);
                let xt = e.add_c(x0, done * ss * 4);
                nest(e, &loops, (rem, ds, ss), yt, xt);
            }
        }
    }
}

/// One loop of a copy nest: trip count, destination and source strides (elements).
type Loop = (usize, i64, i64);

/// Counted loops over `loops` (outermost first) around one innermost `row`.
fn nest(e: &mut Emitter, loops: &[Loop], row: Loop, yp: Value, xp: Value) {
    let Some((&(n, ds, ss), rest)) = loops.split_first() else {
        strided_row(e, row.0, row.1, row.2, yp, xp);
        return;
    };
    e.for_range(0, n as i64, 1, |e, i| {
        let ya = e.add_scaled(yp, i, ds * 4);
        let xa = e.add_scaled(xp, i, ss * 4);
        nest(e, rest, row, ya, xa);
    });
}

/// One innermost run of `n` elements with destination stride `ds` and source stride `ss`.
fn strided_row(e: &mut Emitter, n: usize, ds: i64, ss: i64, yp: Value, xp: Value) {
    if ds == 1 && ss == 1 {
        e.copy(n, yp, xp);
        return;
    }
    if ds == 1 {
        // Four strided loads assembled into one vector store.
        let full = n / 4;
        e.for_range(0, full as i64, 1, |e, c| {
            let xa = e.add_scaled(xp, c, ss * 16);
            let ya = e.add_scaled(yp, c, 16);
            let v0 = load_f32(e, xa, 0);
            let mut v = e.splat_v(v0);
            for l in 1..4u8 {
                let s = load_f32(e, xa, ss * 4 * l as i64);
                v = e.b.ins().insertlane(v, s, l);
            }
            e.b.ins().store(mf(), v, ya, 0);
        });
        for i in full * 4..n {
            let v = load_f32(e, xp, ss * 4 * i as i64);
            store_f32(e, v, yp, 4 * i as i64);
        }
        return;
    }
    e.for_range(0, n as i64, 1, |e, i| {
        let xa = e.add_scaled(xp, i, ss * 4);
        let ya = e.add_scaled(yp, i, ds * 4);
        let v = load_f32(e, xa, 0);
        store_f32(e, v, ya, 0);
    });
}

/// Constant padding: `pads` holds the begin pads of every axis, then the end pads.
fn emit_pad(e: &mut Emitter, y: Value, x: Value, xs: &[usize], pads: &[usize], value: f32) {
    let r = xs.len();
    let out: Vec<usize> = (0..r).map(|a| xs[a] + pads[a] + pads[a + r]).collect();
    let Some(k) = (0..r).rev().find(|&a| pads[a] != 0 || pads[a + r] != 0) else {
        e.copy(xs.iter().product(), y, x);
        return;
    };
    let ostr: Vec<usize> = (0..r).map(|a| out[a + 1..].iter().product()).collect();
    let istr: Vec<usize> = (0..r).map(|a| xs[a + 1..].iter().product()).collect();
    let fill = e.splat(value);
    pad_rec(
        e,
        &PadGeo {
            xs,
            pads,
            ostr: &ostr,
            istr: &istr,
            k,
            fill,
        },
        0,
        y,
        x,
    );
}

struct PadGeo<'a> {
    xs: &'a [usize],
    pads: &'a [usize],
    ostr: &'a [usize],
    istr: &'a [usize],
    /// The last axis with a nonzero pad.
    k: usize,
    fill: Value,
}

fn pad_rec(e: &mut Emitter, g: &PadGeo, d: usize, yp: Value, xp: Value) {
    let r = g.xs.len();
    let (before, after, n) = (g.pads[d], g.pads[d + r], g.xs[d]);
    let unit = g.ostr[d];
    e.fill(before * unit, yp, g.fill);
    let yi = e.add_c(yp, (before * unit * 4) as i64);
    if d == g.k {
        e.copy(n * unit, yi, xp);
    } else {
        e.for_range(0, n as i64, 1, |e, i| {
            let ya = e.add_scaled(yi, i, (unit * 4) as i64);
            let xa = e.add_scaled(xp, i, (g.istr[d] * 4) as i64);
            pad_rec(e, g, d + 1, ya, xa);
        });
    }
    let ye = e.add_c(yp, ((before + n) * unit * 4) as i64);
    e.fill(after * unit, ye, g.fill);
}

struct GatherGeo {
    outer: usize,
    dim: usize,
    inner: usize,
}

/// `y[o, t, :] = x[o, indices[t], :]`; the indices from the table `tab` (f32 integers) when
/// given, else as immediates.
fn emit_gather(
    e: &mut Emitter,
    y: Value,
    x: Value,
    g: &GatherGeo,
    indices: &[usize],
    tab: Option<Value>,
) {
    let nt = indices.len();
    let inner = g.inner;
    let row = (inner * 4) as i64;
    e.for_range(0, g.outer as i64, 1, |e, o| {
        let xo = e.add_scaled(x, o, g.dim as i64 * row);
        let yo = e.add_scaled(y, o, nt as i64 * row);
        match tab {
            None => {
                for (t, &j) in indices.iter().enumerate() {
                    let xa = e.add_c(xo, j as i64 * row);
                    let ya = e.add_c(yo, t as i64 * row);
                    e.copy(inner, ya, xa);
                }
            }
            Some(tab) => {
                e.for_range(0, nt as i64, 1, |e, t| {
                    let ta = e.add_scaled(tab, t, 4);
                    let jf = e.b.ins().load(types::F32, mf(), ta, 0);
                    let j = e.b.ins().fcvt_to_sint_sat(types::I64, jf);
                    let xa = e.add_scaled(xo, j, row);
                    let ya = e.add_scaled(yo, t, row);
                    e.copy(inner, ya, xa);
                });
            }
        }
    });
}

/// Softmax of `outer` contiguous rows of `d` elements: vector max, `exp(x - max)` stored and
/// summed, then one pass multiplying by the reciprocal of the sum.
fn emit_softmax_rows(e: &mut Emitter, y: Value, x: Value, outer: usize, d: usize) {
    let vec_bytes = (d / 4 * 16) as i64;
    e.for_range(0, outer as i64, 1, |e, o| {
        let xr = e.add_scaled(x, o, (d * 4) as i64);
        let yr = e.add_scaled(y, o, (d * 4) as i64);
        let ninf = e.splat(f32::NEG_INFINITY);
        let mv = e.for_acc(0, vec_bytes, 16, vec![ninf], |e, off, acc| {
            let a = e.b.ins().iadd(xr, off);
            let v = e.b.ins().load(types::F32X4, mf(), a, 0);
            vec![e.b.ins().fmax(acc[0], v)]
        })[0];
        let lanes: Vec<Value> = (0..4).map(|l| e.b.ins().extractlane(mv, l)).collect();
        let m01 = e.b.ins().fmax(lanes[0], lanes[1]);
        let m23 = e.b.ins().fmax(lanes[2], lanes[3]);
        let mut m = e.b.ins().fmax(m01, m23);
        for i in d / 4 * 4..d {
            let v = load_f32(e, xr, (i * 4) as i64);
            m = e.b.ins().fmax(m, v);
        }
        let m = e.splat_v(m);
        let z = e.splat(0.0);
        let sv = e.for_acc(0, vec_bytes, 16, vec![z], |e, off, acc| {
            let a = e.b.ins().iadd(xr, off);
            let v = e.b.ins().load(types::F32X4, mf(), a, 0);
            let t = e.b.ins().fsub(v, m);
            let ex = e.exp(t);
            let ya = e.b.ins().iadd(yr, off);
            e.b.ins().store(mf(), ex, ya, 0);
            vec![e.b.ins().fadd(acc[0], ex)]
        })[0];
        let mut s = e.hsum(sv);
        for i in d / 4 * 4..d {
            let xa = e.add_c(xr, (i * 4) as i64);
            let v = e.load_lanes(xa, 1);
            let t = e.b.ins().fsub(v, m);
            let ex = e.exp(t);
            let ya = e.add_c(yr, (i * 4) as i64);
            e.store_lanes(ex, ya, 1);
            let ex0 = e.b.ins().extractlane(ex, 0);
            s = e.b.ins().fadd(s, ex0);
        }
        let one = e.b.ins().f32const(1.0);
        let inv = e.b.ins().fdiv(one, s);
        let inv = e.splat_v(inv);
        e.map(
            d,
            yr,
            &[Operand::Contig(yr), Operand::Splat(inv)],
            &mut |e, v| e.b.ins().fmul(v[0], v[1]),
        );
    });
}

/// Softmax over a non-last axis: `d` elements `inner` apart, f32x4 across the trailing
/// elements (then single-lane tails), three passes over the axis per chunk.
fn emit_softmax_strided(e: &mut Emitter, y: Value, x: Value, outer: usize, d: usize, inner: usize) {
    let stride = (inner * 4) as i64;
    e.for_range(0, outer as i64, 1, |e, o| {
        let xo = e.add_scaled(x, o, d as i64 * stride);
        let yo = e.add_scaled(y, o, d as i64 * stride);
        let chunk = |e: &mut Emitter, off: Value, lanes: usize| {
            let xb = e.b.ins().iadd(xo, off);
            let yb = e.b.ins().iadd(yo, off);
            let ninf = e.splat(f32::NEG_INFINITY);
            let m = e.for_acc(0, d as i64, 1, vec![ninf], |e, k, acc| {
                let a = e.add_scaled(xb, k, stride);
                let v = e.load_lanes(a, lanes);
                vec![e.b.ins().fmax(acc[0], v)]
            })[0];
            let z = e.splat(0.0);
            let s = e.for_acc(0, d as i64, 1, vec![z], |e, k, acc| {
                let a = e.add_scaled(xb, k, stride);
                let v = e.load_lanes(a, lanes);
                let t = e.b.ins().fsub(v, m);
                let ex = e.exp(t);
                let ya = e.add_scaled(yb, k, stride);
                e.store_lanes(ex, ya, lanes);
                vec![e.b.ins().fadd(acc[0], ex)]
            })[0];
            let one = e.splat(1.0);
            let inv = e.b.ins().fdiv(one, s);
            e.for_range(0, d as i64, 1, |e, k| {
                let ya = e.add_scaled(yb, k, stride);
                let v = e.load_lanes(ya, lanes);
                let q = e.b.ins().fmul(v, inv);
                e.store_lanes(q, ya, lanes);
            });
        };
        e.for_range(0, (inner / 4 * 16) as i64, 16, |e, off| chunk(e, off, 4));
        for i in inner / 4 * 4..inner {
            let off = e.c64((i * 4) as i64);
            chunk(e, off, 1);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strided(dims: &[usize], dst: &[i64], src: &[i64]) -> Strided {
        Strided {
            dims: dims.to_vec(),
            dst: dst.to_vec(),
            src: src.to_vec(),
            dst_off: 0,
            src_off: 0,
            tile: None,
        }
    }

    #[test]
    fn simplify_drops_unit_axes_and_merges_adjacent_ones() {
        // Transpose [2,3,4,5] perm [0,3,1,2] -> out [2,5,3,4]: (3,4) stay adjacent.
        let s = strided(&[2, 5, 3, 4], &[60, 12, 4, 1], &[60, 1, 20, 5]).simplified();
        assert_eq!(s.dims, vec![2, 5, 12]);
        assert_eq!(s.src, vec![60, 1, 5]);
        assert_eq!(s.dst, vec![60, 12, 1]);
        // Identity permutation with unit axes: one contiguous run.
        let s = strided(&[1, 3, 1, 4], &[12, 4, 4, 1], &[12, 4, 4, 1]).simplified();
        assert_eq!((s.dims, s.dst, s.src), (vec![12], vec![1], vec![1]));
        // Negative source strides merge only when consistent.
        let s = strided(&[3, 4], &[4, 1], &[-4, -1]).simplified();
        assert_eq!(s.dims, vec![12]);
        let s = strided(&[3, 4], &[4, 1], &[-4, 1]).simplified();
        assert_eq!(s.dims, vec![3, 4]);
        // An empty box is left alone (nothing is emitted for it).
        let s = strided(&[3, 0], &[0, 1], &[1, 3]).simplified();
        assert_eq!(s.dims, vec![3, 0]);
    }

    #[test]
    fn tiling_only_for_long_gathered_rows() {
        // NHWC -> NCHW [112*112, 32] -> [32, 12544]: tiled outside axis 0.
        let s = strided(&[32, 12544], &[12544, 1], &[1, 32]).tiled();
        assert_eq!(s.tile, Some((0, TILE)));
        // Source stride below a cache line per element, or a short row: not tiled.
        assert_eq!(strided(&[8, 1000], &[1000, 1], &[1, 8]).tiled().tile, None);
        assert_eq!(strided(&[32, 40], &[40, 1], &[1, 32]).tiled().tile, None);
        // No contiguous source axis: not tiled.
        assert_eq!(strided(&[3, 100], &[100, 1], &[2, 30]).tiled().tile, None);
    }
}
