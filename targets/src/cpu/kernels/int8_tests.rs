//! The int8 kernels against an integer reference written from `mnc_ir::quant` (accumulate
//! `(x - x_zp) * w` in `i32` from the bias, then `Requant::apply`): `==` on every byte, for
//! every kernel set the host runs, thread counts 1..8, nothing written outside the outputs.

use super::super::{best_giga_rate, dw_kernel, gemm_kernel, pack_a, take_panic, DwGeom};
use super::*;
use mnc_ir::quant::{quantize, Requant};
use mnc_ir::Activation;

/// A small integer generator on top of the passes' LCG.
struct Rng(mnc_passes::samples::Lcg);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mnc_passes::samples::Lcg::new(seed))
    }
    /// Uniform in `lo..=hi`.
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        let u = self.0.uniform(0.0, 1.0) as f64;
        (lo + ((hi - lo + 1) as f64 * u) as i64).min(hi)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.int(0, v.len() as i64 - 1) as usize]
    }
    fn f(&mut self, lo: f32, hi: f32) -> f32 {
        self.0.uniform(lo, hi)
    }
}

/// Every int8 kernel set of the ISA table that this host runs (each once); the others are
/// reported as skipped.
fn sets(test: &str) -> Vec<&'static Int8Kernels> {
    let mut seen: Vec<&'static Int8Kernels> = Vec::new();
    let mut run = Vec::new();
    for d in crate::cpu::isa::ISAS {
        for &k in d.int8 {
            let ok = d.target.runs_on_host()
                && k.features.iter().all(|f| crate::host_has(f) == Some(true));
            if !seen.iter().any(|s| s.name == k.name) {
                seen.push(k);
            }
            if ok && !run.iter().any(|s: &&Int8Kernels| s.name == k.name) {
                run.push(k);
            }
        }
    }
    for k in seen {
        if !run.iter().any(|s| s.name == k.name) {
            eprintln!(
                "SKIPPED {test}: int8 set {} not supported by this CPU",
                k.name
            );
        }
    }
    run
}

const THREADS: [usize; 5] = [1, 2, 3, 5, 8];

/// Quantization of one random case: input and output types and zero points, the
/// requantization (random scales, a fused ReLU / ReLU6 / nothing).
struct Quant {
    xq: QType,
    x_zp: i32,
    rq: Requant,
    yq: QType,
}

fn zero_point(r: &mut Rng, qt: QType) -> i32 {
    match (qt, r.int(0, 2)) {
        (QType::U8, 0) => 0,
        (QType::U8, 1) => 128,
        (QType::I8, 0) => 0,
        (QType::I8, 1) => -128,
        (qt, _) => r.int(qt.min() as i64, qt.max() as i64) as i32,
    }
}

fn quant(r: &mut Rng, co: usize, taps: usize) -> Quant {
    let xq = r.pick(&[QType::U8, QType::I8]);
    let yq = r.pick(&[QType::U8, QType::I8]);
    let (x_zp, y_zp) = (zero_point(r, xq), zero_point(r, yq));
    let act = r.pick(&[
        None,
        Some(Activation::Relu),
        Some(Activation::Clip { min: 0.0, max: 6.0 }),
    ]);
    let xs = 0.02;
    let ws: Vec<f32> = (0..co).map(|_| r.f(0.004, 0.02)).collect();
    // Outputs spread over about +-60 steps (some saturate).
    let ys = (taps as f32).sqrt() * 5500.0 * xs * 0.012 / 60.0 * r.f(0.5, 2.0);
    let mut rq = Requant::new(xs, &ws, (ys, y_zp, yq), act).unwrap();
    if r.int(0, 3) == 0 {
        // Powers of two: many exact ties, which round to even; and multipliers of 1 and 2
        // (saturating most outputs).
        for m in rq.mult.iter_mut() {
            *m = r.pick(&[0.5, 0.25, 0.125, 1.0 / 64.0, 1.0, 2.0]);
        }
    }
    Quant { xq, x_zp, rq, yq }
}

/// The bytes of `n` random values of `qt`.
fn bytes(r: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| r.int(0, 255) as u8).collect()
}

fn value(b: u8, qt: QType) -> i32 {
    match qt {
        QType::U8 => b as i32,
        QType::I8 => b as i8 as i32,
    }
}

/// The reference conv: `Requant::apply(bias + sum (x - x_zp) * w)`, padding contributing 0.
fn ref_conv(g: &QConvGeom, q: &Quant, x: &[u8], w: &[i8], bias: &[i32]) -> Vec<u8> {
    let u = |v: u64| v as usize;
    let (n, ci, h, wd, co, groups) = (u(g.n), u(g.ci), u(g.h), u(g.w), u(g.co), u(g.groups));
    let (kh, kw, oh, ow) = (u(g.kh), u(g.kw), u(g.oh), u(g.ow));
    let (cig, cog) = (ci / groups, co / groups);
    let mut y = vec![0u8; n * co * oh * ow];
    for b in 0..n {
        for o in 0..co {
            let gi = o / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias[o];
                    for c in 0..cig {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * u(g.sy) + ky * u(g.dy)) as i64 - g.pt as i64;
                                let ix = (ox * u(g.sx) + kx * u(g.dx)) as i64 - g.pl as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                let xi =
                                    ((b * ci + gi * cig + c) * h + iy as usize) * wd + ix as usize;
                                let wv = w[((o * cig + c) * kh + ky) * kw + kx] as i32;
                                acc += (value(x[xi], q.xq) - q.x_zp) * wv;
                            }
                        }
                    }
                    y[((b * co + o) * oh + oy) * ow + ox] = q.rq.apply(acc, o) as u8;
                }
            }
        }
    }
    y
}

/// A random conv geometry (kind 0: pointwise, 1: stem-like 3x3/2, 2: any window, 3:
/// depthwise-shaped grouped conv).
fn conv_geom(r: &mut Rng, kind: usize, q: &Quant, big: bool) -> QConvGeom {
    let groups = match kind {
        1 | 3 => 1,
        _ => r.pick(&[1, 1, 1, 2, 3]),
    };
    let (ci, co) = match kind {
        1 => (3, r.pick(&[8, 16, 24, 32])),
        3 => {
            let c = r.int(1, 40) as u64;
            (c, c * r.pick(&[1, 1, 2]))
        }
        _ if big => (groups * r.int(30, 70) as u64, groups * r.int(30, 70) as u64),
        _ => (
            groups * r.int(1, 70 / groups as i64) as u64,
            groups * r.int(1, 70 / groups as i64) as u64,
        ),
    };
    let groups = if kind == 3 { ci } else { groups };
    let (kh, kw, sy, sx, dy, dx) = match kind {
        0 => (1, 1, 1, 1, 1, 1),
        1 => (3, 3, 2, 2, 1, 1),
        _ => (
            r.int(1, 5),
            r.int(1, 5),
            r.int(1, 3),
            r.int(1, 3),
            r.int(1, 2),
            r.int(1, 2),
        ),
    };
    let (pt, pl, pb, pr) = match kind {
        0 => (0, 0, 0, 0),
        _ => (r.int(0, 2), r.int(0, 2), r.int(0, 2), r.int(0, 2)),
    };
    let (h, w) = if big {
        (r.int(12, 30), r.int(12, 30))
    } else {
        (r.int(1, 19), r.int(1, 19))
    };
    let (h, w) = (h.max((kh - 1) * dy + 1), w.max((kw - 1) * dx + 1));
    let oh = (h + pt + pb - ((kh - 1) * dy + 1)) / sy + 1;
    let ow = (w + pl + pr - ((kw - 1) * dx + 1)) / sx + 1;
    let u = |v: i64| v as u64;
    let (x_zp, x_i8) = u8_domain(q.xq, q.x_zp);
    QConvGeom {
        n: r.pick(&[1, 1, 2, 3, 5]) as u64,
        ci,
        h: u(h),
        w: u(w),
        co,
        groups,
        kh: u(kh),
        kw: u(kw),
        sy: u(sy),
        sx: u(sx),
        dy: u(dy),
        dx: u(dx),
        pt: u(pt),
        pl: u(pl),
        oh: u(oh),
        ow: u(ow),
        x_zp,
        x_i8,
        y_zp: q.rq.zero_point as i64,
        lo: q.rq.lo as i64,
        hi: q.rq.hi as i64,
        tasks: 1,
        res: 0,
        res_conv_a: 0,
    }
}

/// A pointwise conv `ci -> co` over `h x w` with the quantization of `q`.
fn pw_geom(ci: usize, co: usize, h: usize, w: usize, q: &Quant) -> QConvGeom {
    square_geom(ci, co, h, w, (1, 1, 0), q)
}

/// A dense conv `ci -> co` over `h x w` with a `k x k` window, stride `s` and padding `p` on
/// every side (`(k, s, p)`), with the quantization of `q`.
fn square_geom(
    ci: usize,
    co: usize,
    h: usize,
    w: usize,
    (k, s, p): (usize, usize, usize),
    q: &Quant,
) -> QConvGeom {
    let (x_zp, x_i8) = u8_domain(q.xq, q.x_zp);
    let u = |v: usize| v as u64;
    QConvGeom {
        n: 1,
        ci: u(ci),
        h: u(h),
        w: u(w),
        co: u(co),
        groups: 1,
        kh: u(k),
        kw: u(k),
        sy: u(s),
        sx: u(s),
        dy: 1,
        dx: 1,
        pt: u(p),
        pl: u(p),
        oh: u((h + 2 * p - k) / s + 1),
        ow: u((w + 2 * p - k) / s + 1),
        x_zp,
        x_i8,
        y_zp: q.rq.zero_point as i64,
        lo: q.rq.lo as i64,
        hi: q.rq.hi as i64,
        tasks: 1,
        res: 0,
        res_conv_a: 0,
    }
}

/// Output bytes plus a guard that must stay untouched.
const GUARD: usize = 64;

/// An elementwise kernel's output: no panic, nothing written past `want.len()` bytes, and
/// every byte's value (as `qt`) equal to `want`.
fn check_values(y: &[u8], want: &[i32], qt: QType, what: &dyn Fn() -> String) {
    assert_eq!(take_panic(), None);
    check_guard(y, want.len(), what);
    if let Some(j) = (0..want.len()).find(|&j| value(y[j], qt) != want[j]) {
        panic!(
            "{}: element {j} is {} want {}",
            what(),
            value(y[j], qt),
            want[j]
        );
    }
}

fn check_guard(y: &[u8], len: usize, what: &dyn Fn() -> String) {
    assert!(
        y[len..].iter().all(|&b| b == 0xA5),
        "wrote past the output: {}",
        what()
    );
}

fn run_conv(k: &Int8Kernels, g: &QConvGeom, x: &[u8], packed: &[u8], threads: usize) -> Vec<u8> {
    run_conv_res(k, g, x, packed, threads, None)
}

/// [`run_conv`] with a fused residual sum: the residual bytes and the sum's geometry
/// (`g.res` set).
fn run_conv_res(
    k: &Int8Kernels,
    g: &QConvGeom,
    x: &[u8],
    packed: &[u8],
    threads: usize,
    res: Option<(&[u8], &super::super::qbinary::QBinaryGeom)>,
) -> Vec<u8> {
    let g = QConvGeom {
        tasks: qconv_tasks(threads) as u64,
        ..*g
    };
    let blob = g.to_blob_with(res.map(|r| r.1));
    let len = (g.n * g.co * g.oh * g.ow) as usize;
    let mut y = vec![0xA5u8; len + GUARD];
    let mut scratch = vec![0x5Au8; g.scratch_bytes().unwrap()];
    // SAFETY: buffers sized by the geometry, the residual of the output's length, the
    // geometry blob holding the sum's after the conv's; the host runs the set (see `sets`).
    unsafe {
        (k.conv.func)(
            x.as_ptr(),
            packed.as_ptr(),
            y.as_mut_ptr(),
            res.map_or(std::ptr::null(), |r| r.0.as_ptr()),
            scratch.as_mut_ptr(),
            blob.as_ptr() as *const QConvGeom,
            threads,
        )
    };
    assert_eq!(take_panic(), None);
    check_guard(&y, len, &|| format!("{} {g:?}", k.conv.symbol));
    y.truncate(len);
    y
}

/// A random conv of `kind` ([`conv_geom`]) with random quantization, input, weights and
/// biases: `(geometry, quantization, x, w, bias)`.
fn conv_case(
    r: &mut Rng,
    kind: usize,
    big: bool,
) -> (QConvGeom, Quant, Vec<u8>, Vec<i8>, Vec<i32>) {
    let q0 = quant(r, 1, 1);
    let g0 = conv_geom(r, kind, &q0, big);
    let k = g0.k();
    let q = quant(r, g0.co as usize, k);
    let (x_zp, x_i8) = u8_domain(q.xq, q.x_zp);
    let g = QConvGeom {
        x_zp,
        x_i8,
        y_zp: q.rq.zero_point as i64,
        lo: q.rq.lo as i64,
        hi: q.rq.hi as i64,
        ..g0
    };
    let x = bytes(r, (g.n * g.ci * g.h * g.w) as usize);
    let w: Vec<i8> = (0..g.co as usize * k)
        .map(|_| r.int(-128, 127) as i8)
        .collect();
    let bias: Vec<i32> = (0..g.co).map(|_| r.int(-20000, 20000) as i32).collect();
    (g, q, x, w, bias)
}

/// Runs the conv on every set in `ks` and every thread count in `threads`; panics at the
/// first output byte that differs from `want`, naming the set, the threads and `what`.
fn assert_conv_eq(
    ks: &[&Int8Kernels],
    g: &QConvGeom,
    x: &[u8],
    packed: &[u8],
    want: &[u8],
    threads: &[usize],
    what: &str,
) {
    for kset in ks {
        for &t in threads {
            let got = run_conv(kset, g, x, packed, t);
            if let Some(j) = (0..want.len()).find(|&j| got[j] != want[j]) {
                panic!(
                    "{} threads {t} {what}: y[{j}] = {} want {}\n{g:?}",
                    kset.conv.symbol, got[j], want[j]
                );
            }
        }
    }
}

fn conv_cases(kind: usize, cases: usize, seed: u64) {
    let ks = sets("int8_conv");
    let mut r = Rng::new(seed);
    for i in 0..cases {
        let (g, q, x, w, bias) = conv_case(&mut r, kind, i % 4 == 3);
        let want = ref_conv(&g, &q, &x, &w, &bias);
        let packed = pack_qconv(&g, &w, &bias, &q.rq.mult).unwrap();
        assert_eq!(packed.len(), g.packed_bytes());
        let distinct = want.iter().collect::<std::collections::HashSet<_>>().len();
        let what = format!("case {i} ({:?} {:?}, {distinct} distinct)", q.xq, q.yq);
        assert_conv_eq(&ks, &g, &x, &packed, &want, &THREADS, &what);
    }
}

#[test]
fn pointwise_conv_matches_the_reference() {
    conv_cases(0, 24, 1);
}

/// A fused residual sum ([`QConvGeom::res`]): pointwise and general convs, u8 and i8, the
/// conv's value first or second, against the reference conv followed by the sum's function
/// (`AddRequant::apply`) element by element, on every set and thread count.
#[test]
fn conv_with_residual_sum_matches_the_conv_then_the_add() {
    use super::super::qbinary::QBinaryGeom;
    use mnc_ir::{QBinary, QBinaryOp, QParams};
    let ks = sets("conv_with_residual_sum_matches_the_conv_then_the_add");
    let mut r = Rng::new(31);
    for i in 0..24 {
        let kind = [0, 2, 1][i % 3];
        let (g, q, x, w, bias) = conv_case(&mut r, kind, i % 6 == 5);
        let conv_is_a = i % 2 == 0;
        let g = QConvGeom {
            res: 1,
            res_conv_a: conv_is_a as u64,
            ..g
        };
        let mid = ref_conv(&g, &q, &x, &w, &bias);
        let packed = pack_qconv(&g, &w, &bias, &q.rq.mult).unwrap();
        let dt = q.yq.dtype();
        let pc = QParams::per_tensor(dt, r.f(0.01, 0.2), q.rq.zero_point);
        let pr = QParams::per_tensor(dt, r.f(0.01, 0.2), zero_point(&mut r, q.yq));
        let (pa, pb) = if conv_is_a { (pc, pr) } else { (pr, pc) };
        let sum = QBinary {
            op: QBinaryOp::Add,
            a: pa,
            b: pb,
            y: QParams::per_tensor(dt, r.f(0.02, 0.3), zero_point(&mut r, q.yq)),
        };
        let shape = [g.n as usize, g.co as usize, g.oh as usize, g.ow as usize];
        let sg = QBinaryGeom::new(&sum, &shape, &shape).unwrap();
        let f = sg.function();
        let res = bytes(&mut r, mid.len());
        let want: Vec<u8> = mid
            .iter()
            .zip(&res)
            .map(|(&m, &b)| {
                let (c, b) = (sg.value(m), sg.value(b));
                let (fa, fb) = if conv_is_a { (c, b) } else { (b, c) };
                f.apply(fa, fb) as u8
            })
            .collect();
        for kset in &ks {
            for t in THREADS {
                let got = run_conv_res(kset, &g, &x, &packed, t, Some((&res, &sg)));
                if let Some(j) = (0..want.len()).find(|&j| got[j] != want[j]) {
                    panic!(
                        "{} threads {t} case {i}: y[{j}] = {} want {} (conv {}, residual {})\n{g:?}",
                        kset.conv.symbol, got[j], want[j], mid[j], res[j]
                    );
                }
            }
        }
    }
}

/// Wide rows (the 16-pixel im2col groups, the last one overlapping the one before): stride 1
/// and 2, windows whose taps start inside and outside the row, input bytes `u8` and `i8`
/// (flipped), a last input row read to its last byte.
#[test]
fn wide_im2col_rows_match_the_reference() {
    let ks = sets("wide_im2col_rows_match_the_reference");
    let mut r = Rng::new(41);
    // (ci, co, h, w, k, stride, pad)
    for (i, &(ci, co, h, w, k, s, p)) in [
        (3usize, 16usize, 7usize, 224usize, 3usize, 2usize, 1usize),
        (3, 8, 5, 225, 3, 2, 0),
        (5, 9, 4, 150, 3, 1, 1),
        (4, 24, 6, 201, 5, 2, 2),
        (3, 32, 3, 130, 2, 2, 0),
        (2, 8, 3, 300, 3, 1, 0),
    ]
    .iter()
    .enumerate()
    {
        for xq in [QType::U8, QType::I8] {
            let mut q = quant(&mut r, co, ci * k * k);
            q.xq = xq;
            q.x_zp = zero_point(&mut r, xq);
            let g = QConvGeom {
                tasks: 4,
                ..square_geom(ci, co, h, w, (k, s, p), &q)
            };
            let x = bytes(&mut r, ci * h * w);
            let wt: Vec<i8> = (0..co * g.k()).map(|_| r.int(-128, 127) as i8).collect();
            let bias: Vec<i32> = (0..co).map(|_| r.int(-20000, 20000) as i32).collect();
            let want = ref_conv(&g, &q, &x, &wt, &bias);
            let packed = pack_qconv(&g, &wt, &bias, &q.rq.mult).unwrap();
            let what = format!("case {i} {xq:?}");
            assert_conv_eq(&ks, &g, &x, &packed, &want, &[1, 2], &what);
        }
    }
}

#[test]
fn stem_conv_matches_the_reference() {
    conv_cases(1, 8, 2);
}

#[test]
fn general_conv_matches_the_reference() {
    conv_cases(2, 24, 3);
}

#[test]
fn grouped_depthwise_shaped_conv_matches_the_reference() {
    conv_cases(3, 12, 4);
}

#[test]
fn pointwise_panel_edges_match_the_reference() {
    // Depths around multiples of 4 and pixel counts around the 16-pixel vectors, the 48-pixel
    // tile and the chunk, channels around the 8-channel block.
    let ks = sets("pointwise_panel_edges_match_the_reference");
    let mut r = Rng::new(5);
    for (ci, co, hw) in [
        (1, 1, 1),
        (4, 8, 16),
        (5, 9, 47),
        (7, 7, 48),
        (8, 16, 49),
        (3, 17, 95),
        (12, 15, 97),
        (96, 24, 3136 + 5),
        // One pixel (the classifier at batch 1: channels in lanes), odd and even quad
        // counts, partial blocks.
        (9, 8, 1),
        (20, 3, 1),
        (1283, 13, 1),
        (1280, 1000, 1),
    ] {
        let q = quant(&mut r, co, ci);
        let g = pw_geom(ci, co, 1, hw, &q);
        assert!(g.pointwise());
        let x = bytes(&mut r, ci * hw);
        let w: Vec<i8> = (0..co * ci).map(|_| r.int(-128, 127) as i8).collect();
        let bias: Vec<i32> = (0..co).map(|_| r.int(-20000, 20000) as i32).collect();
        let want = ref_conv(&g, &q, &x, &w, &bias);
        let packed = pack_qconv(&g, &w, &bias, &q.rq.mult).unwrap();
        for kset in &ks {
            for t in [1, 4] {
                assert!(
                    run_conv(kset, &g, &x, &packed, t) == want,
                    "{} {ci}x{co}x{hw} threads {t}",
                    kset.conv.symbol
                );
            }
        }
    }
}

/// The VNNI tile's packed epilogue ([`super::vnni::Packed`]): taken for a block whose
/// multipliers are all below 0.5 in magnitude and not otherwise, and equal to the reference
/// either way, at the edges of its reasoning: multipliers just below 0.5 (the largest
/// `|acc * m|`), ties (powers of two), `u8` and `i8` outputs, clamps as wide as the type and
/// narrower (ReLU6-like), zero points at the ends of the range.
#[test]
fn packed_epilogue_matches_the_reference() {
    let ks = sets("packed_epilogue_matches_the_reference");
    let mut r = Rng::new(77);
    let (ci, co, hw) = (40usize, 16usize, 96 + 5);
    for case in 0..16 {
        let mut q = quant(&mut r, co, ci);
        let (tmin, tmax) = (q.yq.min(), q.yq.max());
        q.rq.zero_point = [tmin, tmax, (tmin + tmax) / 2, tmin + 3][case % 4];
        (q.rq.lo, q.rq.hi) = if case % 8 < 4 {
            (tmin, tmax)
        } else {
            let lo = q.rq.zero_point.clamp(tmin + 2, tmax - 42);
            (lo, lo + 40)
        };
        let fast = case % 3 != 2;
        for (o, m) in q.rq.mult.iter_mut().enumerate() {
            *m = match (fast, o % 4) {
                (true, 0) => 0.499_999_97,
                (true, 1) => 0.25,
                (true, 2) => -0.125,
                (true, _) => r.f(0.000_1, 0.01),
                // One multiplier of 0.5 sends its block to the lane-by-lane epilogue.
                (false, 0) => 0.5,
                (false, _) => r.f(0.000_1, 0.4),
            };
        }
        let g = pw_geom(ci, co, 1, hw, &q);
        let x = bytes(&mut r, ci * hw);
        let w: Vec<i8> = (0..co * ci).map(|_| r.int(-128, 127) as i8).collect();
        let bias: Vec<i32> = (0..co).map(|_| r.int(-300_000, 300_000) as i32).collect();
        let want = ref_conv(&g, &q, &x, &w, &bias);
        let packed = pack_qconv(&g, &w, &bias, &q.rq.mult).unwrap();
        #[cfg(target_arch = "x86_64")]
        if ks.iter().any(|k| k.name == "vnni") {
            // SAFETY: the host runs the vnni set; the block holds `MR` biases and multipliers.
            let pk = unsafe { super::vnni::Packed::new(&g, packed.as_ptr()) };
            assert_eq!(pk.is_some(), fast, "case {case}");
        }
        assert_conv_eq(
            &ks,
            &g,
            &x,
            &packed,
            &want,
            &[1, 2],
            &format!("case {case}"),
        );
    }
}

#[test]
fn extreme_values_stay_exact() {
    // Every input at the far end from its zero point and every weight -128: the largest
    // accumulators `accumulator_fits` allows for the depth, and saturating outputs.
    let ks = sets("extreme_values_stay_exact");
    let (ci, co, hw) = (300usize, 9usize, 37usize);
    for (xq, x_zp, xb) in [
        (QType::U8, 0, 255u8),
        (QType::U8, 255, 0),
        (QType::I8, -128, 127),
        (QType::I8, 127, 0x80),
    ] {
        let rq = Requant {
            mult: vec![1e-4; co],
            zero_point: 3,
            lo: 0,
            hi: 255,
        };
        let q = Quant {
            xq,
            x_zp,
            rq,
            yq: QType::U8,
        };
        let g = pw_geom(ci, co, 1, hw, &q);
        let x = vec![xb; ci * hw];
        let w = vec![-128i8; co * ci];
        let bias = vec![i32::MAX / 2; co];
        let want = ref_conv(&g, &q, &x, &w, &bias);
        let packed = pack_qconv(&g, &w, &bias, &q.rq.mult).unwrap();
        for kset in &ks {
            assert!(
                run_conv(kset, &g, &x, &packed, 1) == want,
                "{} {xq:?}",
                kset.conv.symbol
            );
        }
    }
}

#[test]
fn accumulators_near_the_i32_limits_saturate() {
    // Inputs at the zero point: each channel's accumulator is its bias, near `i32::MAX` or
    // `i32::MIN`; with multipliers above 0.5 `round(acc * m) + zp` leaves `i32` (a
    // requantization that rounds before it clamps would wrap), at 0.5 and below it stays
    // inside.
    let ks = sets("accumulators_near_the_i32_limits_saturate");
    let (ci, hw) = (8usize, 21usize);
    let bias = [
        i32::MAX,
        i32::MAX - 64,
        i32::MIN + 1,
        i32::MIN + 200,
        i32::MAX,
        i32::MIN + 1,
        i32::MAX,
        7,
    ];
    let mult = vec![1.0, 0.6, 1.0, 0.6, 0.5, 0.5, 2.0, 1e-9];
    let co = bias.len();
    for (yq, zp, lo, hi) in [
        (QType::U8, 3, 0, 255),
        (QType::I8, -5, -128, 127),
        (QType::U8, 0, 0, 200),
    ] {
        let q = Quant {
            xq: QType::U8,
            x_zp: 17,
            rq: Requant {
                mult: mult.clone(),
                zero_point: zp,
                lo,
                hi,
            },
            yq,
        };
        let g = pw_geom(ci, co, 1, hw, &q);
        let x = vec![17u8; ci * hw];
        let w: Vec<i8> = (0..co * ci).map(|i| (i as i8).wrapping_mul(37)).collect();
        let want = ref_conv(&g, &q, &x, &w, &bias);
        let packed = pack_qconv(&g, &w, &bias, &q.rq.mult).unwrap();
        for kset in &ks {
            assert!(
                run_conv(kset, &g, &x, &packed, 1) == want,
                "{} {yq:?}",
                kset.conv.symbol
            );
        }
    }
}

/// A random depthwise geometry (fast 3x3 / 5x5 windows half the time).
fn dw_geom(r: &mut Rng, big: bool) -> QDwGeom {
    let ci = r.int(1, if big { 70 } else { 24 }) as u64;
    let cog = r.pick(&[1, 1, 1, 2]);
    let (kh, kw, dy, dx) = match r.int(0, 3) {
        0 => (3, 3, 1, 1),
        1 => (5, 5, 1, 1),
        2 => (7, 7, 1, 1),
        _ => (r.int(1, 4), r.int(1, 4), r.int(1, 2), r.int(1, 2)),
    };
    let (sy, sx) = match r.int(0, 3) {
        0 | 1 => {
            let s = r.int(1, 2);
            (s, s)
        }
        _ => (r.int(1, 3), r.int(1, 3)),
    };
    let (pt, pl, pb, pr) = (r.int(0, 3), r.int(0, 3), r.int(0, 3), r.int(0, 3));
    let (h, w) = if big {
        (r.int(20, 40), r.int(20, 40))
    } else {
        (r.int(1, 20), r.int(1, 37))
    };
    let (h, w) = (h.max((kh - 1) * dy + 1), w.max((kw - 1) * dx + 1));
    let oh = (h + pt + pb - ((kh - 1) * dy + 1)) / sy + 1;
    let ow = (w + pl + pr - ((kw - 1) * dx + 1)) / sx + 1;
    let n = r.int(1, 2) as u64;
    let u = |v: i64| v as u64;
    QDwGeom {
        planes: n * ci * cog,
        co: ci * cog,
        ci,
        cog,
        h: u(h),
        w: u(w),
        pt: u(pt),
        pl: u(pl),
        kh: u(kh),
        kw: u(kw),
        sy: u(sy),
        sx: u(sx),
        dy: u(dy),
        dx: u(dx),
        oh: u(oh),
        ow: u(ow),
        x_zp: 0,
        x_i8: 0,
        y_zp: 0,
        lo: 0,
        hi: 0,
        tasks: 1,
    }
}

#[test]
fn depthwise_conv_matches_the_reference() {
    let ks = sets("depthwise_conv_matches_the_reference");
    let mut r = Rng::new(6);
    for i in 0..40 {
        let g0 = dw_geom(&mut r, i % 5 == 4);
        // Every third case biases too large to start the f32 sums (added in i32 instead).
        check_dw(&ks, g0, &mut r, i % 3 == 0, i);
    }
}

/// A depthwise geometry of `c` input channels (`cog` outputs each, `n` images) with a
/// `k x k` window, stride `s`, dilation `d` and padding `p` on every side over `h x w`
/// planes; quantization fields zero (set by [`check_dw`]).
fn square_dw(c: u64, cog: u64, n: u64, [h, w, k, s, d, p]: [u64; 6]) -> QDwGeom {
    let span = (k - 1) * d + 1;
    QDwGeom {
        planes: n * c * cog,
        co: c * cog,
        ci: c,
        cog,
        h,
        w,
        pt: p,
        pl: p,
        kh: k,
        kw: k,
        sy: s,
        sx: s,
        dy: d,
        dx: d,
        oh: (h + 2 * p - span) / s + 1,
        ow: (w + 2 * p - span) / s + 1,
        x_zp: 0,
        x_i8: 0,
        y_zp: 0,
        lo: 0,
        hi: 0,
        tasks: 1,
    }
}

/// The byte-quad kernel's layouts ([`dw_quads`]): several rows per vector (narrow planes),
/// 16-column segments, two quads per window row, dilation, and geometries it refuses (the
/// f32 planes then run), each checked on every set against the reference.
#[test]
fn depthwise_quad_layouts_match_the_reference() {
    let ks = sets("depthwise_quad_layouts_match_the_reference");
    let mut r = Rng::new(16);
    // (c, h, w, k, stride, dilation, pad), want (rows, seg) or None
    type Case = ([u64; 7], Option<(usize, usize)>);
    let cases: [Case; 10] = [
        ([5, 7, 7, 3, 1, 1, 1], Some((2, 7))),
        ([3, 4, 4, 3, 2, 1, 1], Some((2, 2))),
        ([3, 9, 9, 3, 2, 1, 1], Some((3, 5))),
        ([4, 14, 14, 3, 1, 1, 1], Some((1, 14))),
        ([2, 35, 37, 3, 2, 1, 1], Some((1, 16))),
        ([3, 20, 23, 5, 2, 1, 2], Some((1, 12))),
        ([2, 9, 30, 7, 1, 2, 3], Some((1, 16))),
        ([2, 3, 2, 3, 1, 1, 1], Some((3, 2))),
        ([2, 40, 70, 7, 4, 1, 3], None),
        ([2, 12, 12, 9, 1, 1, 4], None),
    ];
    for (i, ([c, h, w, k, s, d, p], want)) in cases.into_iter().enumerate() {
        let g0 = square_dw(c, 1, 1, [h, w, k, s, d, p]);
        let got = dw_quads(&g0).map(|l| (l.rows, l.seg));
        assert_eq!(got, want, "case {i}: {g0:?}");
        check_dw(&ks, g0, &mut r, false, 100 + i);
    }
}

/// The small-plane kernel's layouts ([`dw_small`]): planes of up to 127 bytes (two
/// registers), up to 255 (four), the first ones refused (256 bytes), strides, dilations,
/// 5x5 and 7x7 windows (two row quads), uneven padding, a channel multiplier and batch 2;
/// the table's entries checked against the geometry by hand for one case, then each case
/// run on every set against the reference.
#[test]
fn depthwise_small_planes_match_the_reference() {
    let ks = sets("depthwise_small_planes_match_the_reference");
    let mut r = Rng::new(26);
    // (h, w, k, stride, dilation, pad, cog, n), want Some(wide) or None
    type Case = ([u64; 8], Option<bool>);
    let cases: [Case; 13] = [
        ([7, 7, 3, 1, 1, 1, 1, 1], Some(false)),
        ([14, 14, 3, 1, 1, 1, 1, 1], Some(true)),
        ([14, 14, 3, 2, 1, 1, 1, 2], Some(true)),
        ([14, 14, 5, 1, 1, 2, 1, 1], Some(true)),
        ([7, 7, 5, 1, 1, 2, 2, 1], Some(false)),
        ([7, 7, 7, 1, 1, 3, 1, 1], Some(false)),
        ([11, 11, 3, 1, 2, 2, 1, 1], Some(false)),
        ([15, 17, 3, 3, 1, 1, 1, 1], Some(true)),
        ([17, 15, 3, 1, 1, 1, 1, 1], Some(true)),
        ([1, 1, 3, 1, 1, 1, 1, 2], Some(false)),
        ([9, 14, 4, 2, 1, 0, 1, 1], Some(false)),
        ([16, 16, 3, 1, 1, 1, 1, 1], None),
        ([28, 28, 3, 2, 1, 1, 1, 1], None),
    ];
    for (i, ([h, w, k, s, d, p, cog, n], want)) in cases.into_iter().enumerate() {
        let g0 = square_dw(3, cog, n, [h, w, k, s, d, p]);
        let (oh, ow) = (g0.oh, g0.ow);
        let got = dw_small(&g0);
        assert_eq!(got.map(|s| s.wide), want, "case {i}: {g0:?}");
        if let Some(sm) = got {
            let t = dw_small_table(&g0, &sm);
            assert_eq!(t.len(), sm.table_bytes());
            assert_eq!(sm.vecs, ((oh * ow) as usize).div_ceil(16));
            if i == 0 {
                // 7x7, 3x3, pad 1: output 0's row-0 taps are padding; row 1 reads (0, 0),
                // (0, 1) and a padding column; output 8 = (1, 1) reads (0..3, 0..3).
                let at =
                    |v: usize, ky: usize, j: usize, b: usize| t[((v * 3 + ky) * 16 + j) * 4 + b];
                assert_eq!([at(0, 0, 0, 0), at(0, 0, 0, 1), at(0, 0, 0, 2)], [127; 3]);
                assert_eq!(
                    [at(0, 1, 0, 0), at(0, 1, 0, 1), at(0, 1, 0, 2)],
                    [127, 0, 1]
                );
                assert_eq!(
                    [at(0, 2, 8, 0), at(0, 2, 8, 1), at(0, 2, 8, 2)],
                    [14, 15, 16]
                );
                // The fourth byte of each quad (past kw) and lanes past the plane.
                assert_eq!(at(0, 1, 0, 3), 127);
                assert_eq!(at(3, 0, 15, 0), 127);
            }
        }
        // Large biases (outputs mostly saturated) on two cases only.
        check_dw(&ks, g0, &mut r, i % 5 == 4, 200 + i);
    }
}

/// The channel-lanes kernel's geometries ([`dw_lanes`], the AVX2 set): whole and partial
/// groups of eight planes, channel multipliers, strides, dilation, 5x5 windows, padding wider
/// than the window's reach, the size limits, each checked on every set against the
/// reference (the other sets run their own kernels on the same cases).
#[test]
fn depthwise_channel_lanes_match_the_reference() {
    let ks = sets("depthwise_channel_lanes_match_the_reference");
    let mut r = Rng::new(31);
    // (channels, outputs per channel, images, [h, w, k, stride, dilation, pad]), dw_lanes
    type Case = (u64, u64, u64, [u64; 6], bool);
    let cases: [Case; 15] = [
        (24, 1, 1, [7, 7, 3, 1, 1, 1], true),
        (13, 1, 2, [14, 14, 3, 1, 1, 1], true),
        (5, 1, 1, [14, 14, 5, 2, 1, 2], true),
        (9, 2, 1, [9, 9, 3, 2, 1, 1], true),
        (3, 1, 3, [6, 6, 3, 1, 2, 2], true),
        (16, 1, 1, [16, 16, 3, 1, 1, 1], true),
        (8, 1, 1, [1, 1, 1, 1, 1, 0], true),
        (7, 1, 1, [5, 5, 3, 1, 1, 0], true),
        (11, 1, 1, [4, 4, 3, 1, 1, 2], true),
        (10, 1, 1, [28, 28, 3, 2, 1, 1], true),
        (3, 1, 1, [56, 56, 3, 2, 1, 1], false),
        (2, 1, 1, [17, 17, 3, 1, 1, 1], false),
        (2, 1, 1, [33, 33, 3, 1, 1, 1], false),
        (2, 1, 1, [80, 80, 3, 4, 1, 1], false),
        (2, 1, 1, [12, 12, 7, 1, 1, 3], false),
    ];
    for (i, (c, cog, n, geo, want)) in cases.into_iter().enumerate() {
        let g0 = square_dw(c, cog, n, geo);
        assert_eq!(dw_lanes(&g0), want, "case {i}: {g0:?}");
        check_dw(&ks, g0, &mut r, i % 4 == 3, 300 + i);
    }
}

/// Runs the depthwise geometry `g0` (random quantization, input, weights and biases, the
/// biases up to `2^28` when `big_bias`) on every set `ks` at several thread counts and
/// compares each output byte with the reference conv.
fn check_dw(ks: &[&'static Int8Kernels], g0: QDwGeom, r: &mut Rng, big_bias: bool, i: usize) {
    {
        let taps = (g0.kh * g0.kw) as usize;
        let q = quant(r, g0.co as usize, taps);
        let (x_zp, x_i8) = u8_domain(q.xq, q.x_zp);
        let g = QDwGeom {
            x_zp,
            x_i8,
            y_zp: q.rq.zero_point as i64,
            lo: q.rq.lo as i64,
            hi: q.rq.hi as i64,
            ..g0
        };
        let n = g.planes / g.co;
        let cg = QConvGeom {
            n,
            ci: g.ci,
            h: g.h,
            w: g.w,
            co: g.co,
            groups: g.ci,
            kh: g.kh,
            kw: g.kw,
            sy: g.sy,
            sx: g.sx,
            dy: g.dy,
            dx: g.dx,
            pt: g.pt,
            pl: g.pl,
            oh: g.oh,
            ow: g.ow,
            x_zp,
            x_i8,
            y_zp: g.y_zp,
            lo: g.lo,
            hi: g.hi,
            tasks: 1,
            res: 0,
            res_conv_a: 0,
        };
        let x = bytes(r, (n * g.ci * g.h * g.w) as usize);
        let w: Vec<i8> = (0..g.co as usize * taps)
            .map(|_| r.int(-128, 127) as i8)
            .collect();
        let big_bias = if big_bias { 1 << 28 } else { 20000 };
        let bias: Vec<i32> = (0..g.co)
            .map(|_| r.int(-big_bias, big_bias) as i32)
            .collect();
        let want = ref_conv(&cg, &q, &x, &w, &bias);
        let packed = pack_qdw(&g, &w, &bias, &q.rq.mult).unwrap();
        let len = (g.planes * g.oh * g.ow) as usize;
        for kset in ks {
            for t in THREADS {
                let g = QDwGeom {
                    tasks: super::super::dw_tasks(t) as u64,
                    ..g
                };
                let mut y = vec![0xA5u8; len + GUARD];
                let mut scratch = vec![f32::NAN; g.scratch_floats().unwrap()];
                // SAFETY: buffers sized by the geometry; the host runs the set.
                unsafe {
                    (kset.dw.func)(
                        x.as_ptr(),
                        packed.as_ptr(),
                        y.as_mut_ptr(),
                        scratch.as_mut_ptr(),
                        &g,
                        t,
                    )
                };
                assert_eq!(take_panic(), None);
                check_guard(&y, len, &|| format!("{} {g:?}", kset.dw.symbol));
                if let Some(j) = (0..len).find(|&j| y[j] != want[j]) {
                    panic!(
                        "{} threads {t} case {i}: y[{j}] = {} want {}\n{g:?}",
                        kset.dw.symbol, y[j], want[j]
                    );
                }
            }
        }
    }
}

/// Each set's table lookup against the table, element by element: every input and output
/// type, ragged lengths (the vector kernel's masked tail), several thread counts, separate
/// and in-place buffers.
#[test]
fn table_lookup_matches_the_table_on_every_set() {
    use super::super::lut::LutGeom;
    use mnc_ir::QLut;
    let ks = sets("table_lookup_matches_the_table_on_every_set");
    let mut r = Rng::new(21);
    for (xt, yt) in [
        (QType::U8, QType::U8),
        (QType::I8, QType::U8),
        (QType::U8, QType::I8),
        (QType::I8, QType::I8),
    ] {
        let (a, b) = (r.int(-5, 5) as i32, r.int(-300, 300) as i32);
        let l = QLut::of(xt, yt, |v| v * a + b);
        for n in [1usize, 63, 64, 65, 1000, 100_003] {
            let x = bytes(&mut r, n);
            let want: Vec<i32> = x.iter().map(|&v| l.get(value(v, xt))).collect();
            let g = LutGeom::new(&l, n);
            for kset in &ks {
                for t in [1, 3] {
                    for in_place in [false, true] {
                        let mut y = vec![0xA5u8; n + GUARD];
                        if in_place {
                            y[..n].copy_from_slice(&x);
                        }
                        let src = if in_place { y.as_ptr() } else { x.as_ptr() };
                        // SAFETY: n bytes each (or one buffer), valid geometry; the host
                        // runs the set.
                        unsafe { (kset.lut.func)(src, y.as_mut_ptr(), &g, t) };
                        check_values(&y, &want, yt, &|| {
                            format!(
                                "{} {xt}->{yt} n {n} threads {t} in place {in_place}",
                                kset.name
                            )
                        });
                    }
                }
            }
        }
    }
}

/// Each set's quantized mean against the IR's evaluation, byte for byte: u8 and i8, planes
/// from 1 to 3000 pixels (the vector kernel's masked tails), several thread counts.
#[test]
fn quantized_mean_matches_the_ir_on_every_set() {
    use super::super::qmean::QMeanGeom;
    use mnc_ir::{eval::eval_op, Op, QMean, QParams, Tensor};
    let ks = sets("quantized_mean_matches_the_ir_on_every_set");
    let mut r = Rng::new(23);
    for (i, (n, c, h, w)) in [
        (1, 3, 1, 1),
        (2, 7, 7, 7),
        (1, 5, 8, 8),
        (1, 3, 50, 60),
        (3, 9, 13, 5),
    ]
    .into_iter()
    .enumerate()
    {
        for qt in [QType::U8, QType::I8] {
            let zp = |r: &mut Rng| r.int(qt.min() as i64, qt.max() as i64) as i32;
            let m = QMean {
                x: QParams::per_tensor(qt.dtype(), r.f(0.01, 0.1), zp(&mut r)),
                y: QParams::per_tensor(qt.dtype(), r.f(0.002, 0.05), zp(&mut r)),
            };
            let x = bytes(&mut r, n * c * h * w);
            let vals: Vec<i32> = x.iter().map(|&b| value(b, qt)).collect();
            let xt = Tensor::from_i32_values(vec![n, c, h, w], qt.dtype(), vals).unwrap();
            let want = eval_op(&Op::QGlobalAveragePool(m.clone()), &[&xt]).unwrap();
            let want: Vec<i32> = want
                .to_i64_vec()
                .unwrap()
                .iter()
                .map(|&v| v as i32)
                .collect();
            let g = QMeanGeom::new(&m, n * c, h * w).unwrap();
            for kset in &ks {
                for t in [1, 3] {
                    let mut y = vec![0xA5u8; n * c + GUARD];
                    // SAFETY: buffers sized by the geometry; the host runs the set.
                    unsafe { (kset.mean.func)(x.as_ptr(), y.as_mut_ptr(), &g, t) };
                    check_values(&y, &want, qt, &|| {
                        format!("{} mean case {i} {qt} threads {t}", kset.name)
                    });
                }
            }
        }
    }
}

/// Each set's quantized sum and product against [`mnc_ir::quant::BinaryRequant::apply`],
/// byte for byte: u8 and i8, random scales and zero points, `b` per element or one value per
/// run of `inner` (the SE scale), ragged lengths and runs (the vector kernel's scalar tails),
/// several thread counts.
#[test]
fn quantized_sums_and_products_match_the_ir_on_every_set() {
    use super::super::qbinary::QBinaryGeom;
    use mnc_ir::{QBinary, QBinaryOp, QParams};
    let ks = sets("quantized_sums_and_products_match_the_ir_on_every_set");
    let mut r = Rng::new(29);
    for (c, hw, per_channel) in [
        (1usize, 1usize, false),
        (1, 15, false),
        (1, 17, false),
        (3, 1000, false),
        (7, 10_001, false),
        (5, 1, true),
        (9, 17, true),
        (40, 49, true),
        (16, 784, true),
    ] {
        let n = c * hw;
        for op in [QBinaryOp::Add, QBinaryOp::Mul] {
            if op == QBinaryOp::Add && per_channel {
                continue;
            }
            for qt in [QType::U8, QType::I8] {
                let p = |r: &mut Rng, lo: f32, hi: f32| {
                    let zp = r.int(qt.min() as i64, qt.max() as i64) as i32;
                    QParams::per_tensor(qt.dtype(), r.f(lo, hi), zp)
                };
                let q = QBinary {
                    op,
                    a: p(&mut r, 0.002, 0.1),
                    b: p(&mut r, 0.002, 0.1),
                    y: p(&mut r, 0.0005, 0.1),
                };
                let (a_shape, b_shape) = (
                    vec![1, c, hw],
                    if per_channel {
                        vec![1, c, 1]
                    } else {
                        vec![1, c, hw]
                    },
                );
                let nb = b_shape.iter().product();
                let (a, b) = (bytes(&mut r, n), bytes(&mut r, nb));
                let f = q.requant().unwrap();
                let inner = if per_channel { hw } else { 1 };
                let want: Vec<i32> = (0..n)
                    .map(|i| f.apply(value(a[i], qt), value(b[i / inner], qt)))
                    .collect();
                let g = QBinaryGeom::new(&q, &a_shape, &b_shape).unwrap();
                for kset in &ks {
                    for t in [1, 3] {
                        let mut y = vec![0xA5u8; n + GUARD];
                        // SAFETY: buffers sized by the geometry; the host runs the set.
                        unsafe {
                            (kset.binary.func)(a.as_ptr(), b.as_ptr(), y.as_mut_ptr(), &g, t)
                        };
                        check_values(&y, &want, qt, &|| {
                            format!(
                                "{} {op:?} {c}x{hw} per channel {per_channel} {qt} threads {t}",
                                kset.name
                            )
                        });
                    }
                }
            }
        }
    }
}

#[test]
fn geometry_checks_refuse_inconsistent_fields() {
    let mut r = Rng::new(7);
    let q = quant(&mut r, 4, 4);
    let g = conv_geom(&mut r, 0, &q, false);
    assert!(g.check().is_ok());
    assert!(QConvGeom { groups: 0, ..g }.check().is_err());
    assert!(QConvGeom { sx: 0, ..g }.check().is_err());
    assert!(QConvGeom { x_zp: 256, ..g }.check().is_err());
    assert!(QConvGeom { lo: 10, hi: 9, ..g }.check().is_err());
    let err = pack_qconv(&g, &[1, 2, 3], &[0], &[1.0]).unwrap_err();
    assert!(err.contains("weights"), "{err}");
    let d = QDwGeom {
        x_zp: 0,
        y_zp: 0,
        lo: 0,
        hi: 255,
        ..dw_geom(&mut r, false)
    };
    assert!(d.check().is_ok());
    assert!(
        QDwGeom {
            kh: 23,
            kw: 23,
            ..d
        }
        .check()
        .is_err(),
        "over QDW_MAX_TAPS"
    );
    assert!(QDwGeom { cog: 0, ..d }.check().is_err());
}

#[test]
fn requant1_is_requant_apply() {
    let mut r = Rng::new(8);
    for _ in 0..20000 {
        let taps = r.int(1, 500) as usize;
        let q = quant(&mut r, 1, taps);
        let acc = r.int(-3_000_000, 3_000_000) as i32;
        let (lo, hi, zp) = (q.rq.lo, q.rq.hi, q.rq.zero_point);
        assert_eq!(requant1(acc, q.rq.mult[0], lo, hi, zp), q.rq.apply(acc, 0));
    }
}

/// Floats that exercise quantization: ties at `scale * (k + 0.5)`, saturation, infinities,
/// NaN, zeros, denormals, random values.
fn probe_floats(r: &mut Rng, scale: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| match i % 8 {
            0 => scale * (r.int(-300, 300) as f32 + 0.5),
            1 => r.pick(&[
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.0,
                -0.0,
                1e-40,
                -1e30,
                1e30,
            ]),
            2 => scale * r.int(-300, 300) as f32,
            _ => r.f(-200.0, 200.0) * scale,
        })
        .collect()
}

#[test]
fn quantize_and_dequantize_match_the_ir() {
    let ks = sets("quantize_and_dequantize_match_the_ir");
    let mut r = Rng::new(9);
    for i in 0..30 {
        let qt = r.pick(&[QType::U8, QType::I8]);
        let zp = zero_point(&mut r, qt);
        let any = r.f(1e-3, 2.0);
        let scale = r.pick(&[0.1, 0.0173, 1.0, 3.5e-3, any]);
        let len = if i % 10 == 9 {
            100_003
        } else {
            r.int(0, 100) as usize
        };
        let x = probe_floats(&mut r, scale, len);
        let want: Vec<u8> = x
            .iter()
            .map(|&v| quantize(v, scale, zp, qt) as u8)
            .collect();
        let b = bytes(&mut r, len);
        let want_f: Vec<u32> = b
            .iter()
            .map(|&v| mnc_ir::quant::dequantize(value(v, qt), scale, zp).to_bits())
            .collect();
        let g = QLinGeom::new(len, scale, zp, qt);
        for kset in &ks {
            for t in THREADS {
                let mut y = vec![0xA5u8; len + GUARD];
                // SAFETY: `len` floats in, `len` bytes out; the host runs the set.
                unsafe { (kset.quantize.func)(x.as_ptr(), y.as_mut_ptr(), &g, t) };
                check_guard(&y, len, &|| kset.quantize.symbol.to_string());
                if let Some(j) = (0..len).find(|&j| y[j] != want[j]) {
                    panic!(
                        "{} {qt:?} zp {zp} scale {scale}: q({}) = {} want {}",
                        kset.quantize.symbol, x[j], y[j], want[j]
                    );
                }
                let mut f = vec![f32::NAN; len + 1];
                // SAFETY: `len` bytes in, `len` floats out; the host runs the set.
                unsafe { (kset.dequantize.func)(b.as_ptr(), f.as_mut_ptr(), &g, t) };
                assert!(
                    f[len].is_nan(),
                    "{}: wrote past the output",
                    kset.dequantize.symbol
                );
                let got: Vec<u32> = f[..len].iter().map(|v| v.to_bits()).collect();
                assert!(
                    got == want_f,
                    "{} {qt:?} zp {zp} scale {scale}",
                    kset.dequantize.symbol
                );
            }
        }
    }
}

/// The feature lists of the `#[target_feature]` attributes (and body macro literals) in the
/// kernel-set module `module` of `int8.rs`.
fn module_features(src: &str, module: &str) -> Vec<String> {
    let start = src
        .find(&format!("pub mod {module} {{"))
        .unwrap_or_else(|| panic!("no module {module}"));
    let rest = &src[start + 1..];
    let body = &rest[..rest.find("\npub mod ").unwrap_or(rest.len())];
    body.lines()
        .filter_map(|l| {
            let l = l.trim();
            let i = l
                .find("enable = \"")
                .map(|i| i + 10)
                .or_else(|| l.find("_body!(\"").map(|i| i + 8))?;
            Some(l[i..i + l[i..].find('"').unwrap()].to_string())
        })
        .collect()
}

#[test]
fn int8_sets_lie_in_their_isas_feature_tables() {
    let src = include_str!("int8.rs");
    let shared = &src[..src.find("pub mod scalar {").unwrap()];
    assert!(
        !shared.contains("enable = \""),
        "a literal feature list outside the kernel-set modules"
    );
    for d in crate::cpu::isa::ISAS {
        let last = d.int8.last().expect("every ISA has an int8 set");
        assert!(
            last.features.is_empty(),
            "{}: the last int8 set needs extra features",
            d.target
        );
        for k in d.int8 {
            let module = k.name;
            let lists = module_features(src, module);
            assert!(
                module == "scalar" || lists.len() >= 3,
                "{module}: found only {lists:?}"
            );
            for f in lists.iter().flat_map(|l| l.split(',')) {
                assert!(
                    d.features.contains(&f) || k.features.contains(&f),
                    "{module} enables {f}, which neither {} nor the set lists",
                    d.target
                );
            }
            for f in k.features {
                assert!(crate::host_has(f).is_some(), "{f} is not detectable");
            }
        }
    }
}

/// The rate (GOP/s of `ops` per call) of `run(set)` for each set, appended to `line` as
/// `name rate`; the best one.
fn set_rates(
    ks: &[&'static Int8Kernels],
    ops: f64,
    line: &mut String,
    mut run: impl FnMut(&Int8Kernels),
) -> f64 {
    let mut best = 0.0f64;
    for kset in ks {
        let rate = best_giga_rate(20, ops, || run(kset));
        best = best.max(rate);
        *line += &format!(" {} {rate:.1}", kset.name);
    }
    best
}

/// Pointwise throughput on MobileNetV2-like layers, one thread: int8 (each set the host
/// runs) against the f32 GEMM of the widest f32 ISA. Not a test of speed (no assertion):
/// `cargo test --release -p mnc-targets --lib int8 -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_pointwise_int8_vs_f32() {
    let ks = sets("bench_pointwise_int8_vs_f32");
    let f32_target = *Target::host_jit_targets().last().unwrap();
    let gemm = gemm_kernel(f32_target).unwrap();
    let mut r = Rng::new(10);
    let layers = [
        (96, 24, 56),
        (24, 144, 56),
        (144, 24, 56),
        (32, 192, 28),
        (192, 32, 28),
        (64, 384, 14),
        (384, 64, 14),
        (96, 576, 14),
        (576, 96, 14),
        (576, 576, 14),
    ];
    println!("K -> M at HxW: GOP/s int8 per set | f32 ({f32_target}) | ratio");
    for (k, m, s) in layers {
        let p = s * s;
        let ops = 2.0 * (k * m * p) as f64;
        let q = quant(&mut r, m, k);
        let g = pw_geom(k, m, s, s, &q);
        let x = bytes(&mut r, k * p);
        let w: Vec<i8> = (0..m * k).map(|_| r.int(-128, 127) as i8).collect();
        let bias = vec![0i32; m];
        let packed = pack_qconv(&g, &w, &bias, &q.rq.mult).unwrap();
        let mut y = vec![0u8; m * p];
        let mut scratch = vec![0u8; g.scratch_bytes().unwrap()];
        let mut line = format!("{k:>4} -> {m:>4} at {s}x{s}:");
        let best_int8 = set_rates(&ks, ops, &mut line, |kset| {
            // SAFETY: buffers sized by the geometry; the host runs the set.
            unsafe {
                (kset.conv.func)(
                    x.as_ptr(),
                    packed.as_ptr(),
                    y.as_mut_ptr(),
                    std::ptr::null(),
                    scratch.as_mut_ptr(),
                    &g,
                    1,
                )
            }
        });
        let a: Vec<f32> = (0..m * k).map(|_| r.f(-1.0, 1.0)).collect();
        let ap = pack_a(&a, m, k, gemm.a_block_rows(m, p));
        let b: Vec<f32> = (0..k * p).map(|_| r.f(-1.0, 1.0)).collect();
        let mut c = vec![0.0f32; m * p];
        let (mu, pu, ku) = (m as u64, p as u64, k as u64);
        let call = crate::cpu::kernels::GemmCall {
            m: mu,
            n: pu,
            k: ku,
            ldb: pu,
            ldc: pu,
            epi: crate::cpu::kernels::Epilogue::NONE,
        };
        let f = best_giga_rate(20, ops, || {
            // SAFETY: the GEMM contract: `ap` packed for m x k, `b` k x p, `c` m x p.
            unsafe {
                (gemm.func)(
                    ap.as_ptr(),
                    b.as_ptr(),
                    c.as_mut_ptr(),
                    std::ptr::null(),
                    std::ptr::null(),
                    &call,
                    1,
                )
            }
        });
        println!("{line} | f32 {f:.1} | best int8 / f32 {:.2}", best_int8 / f);
    }
}

#[test]
fn int8_symbols_name_one_function_each() {
    // Sets are shared between ISA entries (the AVX2 set serves AVX-512 hosts without VNNI):
    // one symbol must always name the same function, and no int8 symbol an f32 kernel's.
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    for d in crate::cpu::isa::ISAS {
        for k in d.int8 {
            for (s, f) in [
                (k.conv.symbol, k.conv.func as usize),
                (k.dw.symbol, k.dw.func as usize),
                (k.quantize.symbol, k.quantize.func as usize),
                (k.dequantize.symbol, k.dequantize.func as usize),
                (k.lut.symbol, k.lut.func as usize),
                (k.mean.symbol, k.mean.func as usize),
                (k.binary.symbol, k.binary.func as usize),
            ] {
                assert_eq!(*seen.entry(s).or_insert(f), f, "{s} names two functions");
            }
        }
    }
    let funcs: std::collections::HashSet<usize> = seen.values().copied().collect();
    assert_eq!(funcs.len(), seen.len(), "a function under two symbols");
    for d in crate::cpu::isa::ISAS {
        for s in [d.gemm.symbol, d.gemv.symbol, d.se.symbol] {
            assert!(!seen.contains_key(s), "{s}");
        }
    }
}

/// The rate (GOP/s of `ops` per call) of the f32 depthwise or stem kernel `f` (one
/// thread) on random data of geometry `fg` (`weights` floats, `scratch` floats of scratch).
fn f32_window_rate(
    f: super::super::DwFn,
    fg: &DwGeom,
    weights: usize,
    scratch: usize,
    ops: f64,
    r: &mut Rng,
) -> f64 {
    let xf: Vec<f32> = (0..(fg.planes / fg.co * fg.ci * fg.h * fg.w) as usize)
        .map(|_| r.f(-1.0, 1.0))
        .collect();
    let wf: Vec<f32> = (0..weights).map(|_| r.f(-1.0, 1.0)).collect();
    let mut yf = vec![0.0f32; (fg.planes * fg.oh * fg.ow) as usize];
    let mut sf = vec![0.0f32; scratch];
    best_giga_rate(20, ops, || {
        // SAFETY: the depthwise / stem contract for `fg`, buffers sized by it.
        unsafe {
            f(
                xf.as_ptr(),
                wf.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                yf.as_mut_ptr(),
                sf.as_mut_ptr(),
                fg,
                1,
            )
        }
    })
}

/// Depthwise and stem throughput, one thread: int8 (each set the host runs) against the f32
/// depthwise / stem kernels of the widest f32 ISA (MobileNetV2's 3x3 depthwise layers and
/// its stem). No assertion; run as [`bench_pointwise_int8_vs_f32`].
#[test]
#[ignore]
fn bench_depthwise_and_stem_int8_vs_f32() {
    let ks = sets("bench_depthwise_and_stem_int8_vs_f32");
    let t = *Target::host_jit_targets().last().unwrap();
    let mut r = Rng::new(11);
    println!("C x HxW, stride: GOP/s int8 per set | f32 ({t}) | ratio");
    for (c, s, stride) in [
        (96, 112, 2),
        (144, 56, 1),
        (144, 56, 2),
        (192, 28, 1),
        (384, 14, 1),
        (576, 14, 2),
        (960, 7, 1),
    ] {
        let o = (s - 1) / stride + 1;
        let ops = 2.0 * (c * o * o * 9) as f64;
        let q = quant(&mut r, c, 9);
        let (x_zp, x_i8) = u8_domain(q.xq, q.x_zp);
        let (cu, su, stu) = (c as u64, s as u64, stride as u64);
        let g = QDwGeom {
            x_zp,
            x_i8,
            y_zp: q.rq.zero_point as i64,
            lo: q.rq.lo as i64,
            hi: q.rq.hi as i64,
            ..square_dw(cu, 1, 1, [su, su, 3, stu, 1, 1])
        };
        let x = bytes(&mut r, c * s * s);
        let w: Vec<i8> = (0..c * 9).map(|_| r.int(-128, 127) as i8).collect();
        let packed = pack_qdw(&g, &w, &vec![0; c], &q.rq.mult).unwrap();
        let mut y = vec![0u8; c * o * o];
        let mut scratch = vec![0.0f32; g.scratch_floats().unwrap()];
        let mut line = format!("{c:>4} x {s}x{s}, /{stride}:");
        let best = set_rates(&ks, ops, &mut line, |kset| {
            // SAFETY: buffers sized by the geometry; the host runs the set.
            unsafe {
                (kset.dw.func)(
                    x.as_ptr(),
                    packed.as_ptr(),
                    y.as_mut_ptr(),
                    scratch.as_mut_ptr(),
                    &g,
                    1,
                )
            }
        });
        let f = dw_kernel(t).map_or(0.0, |(_, dwf)| {
            let fg = super::super::tests::square_dw(c, s, 3, stride);
            let scratch = fg
                .scratch_floats(super::super::isa(t).unwrap().lanes)
                .unwrap();
            f32_window_rate(dwf, &fg, c * 9, scratch, ops, &mut r)
        });
        println!("{line} | f32 {f:.1} | best int8 / f32 {:.2}", best / f);
    }
    // The stem: 3 -> 32, 3x3 stride 2 at 224x224, through the general conv (im2col panel).
    let q = quant(&mut r, 32, 27);
    let g = QConvGeom {
        kh: 3,
        kw: 3,
        sy: 2,
        sx: 2,
        pt: 1,
        pl: 1,
        oh: 112,
        ow: 112,
        ..pw_geom(3, 32, 224, 224, &q)
    };
    let ops = 2.0 * (32 * 27 * 112 * 112) as f64;
    let x = bytes(&mut r, 3 * 224 * 224);
    let w: Vec<i8> = (0..32 * 27).map(|_| r.int(-128, 127) as i8).collect();
    let packed = pack_qconv(&g, &w, &[0; 32], &q.rq.mult).unwrap();
    let mut y = vec![0u8; 32 * 112 * 112];
    let mut scratch = vec![0u8; g.scratch_bytes().unwrap()];
    let mut line = "stem 3 -> 32, 3x3/2 at 224x224:".to_string();
    let best = set_rates(&ks, ops, &mut line, |kset| {
        // SAFETY: buffers sized by the geometry; the host runs the set.
        unsafe {
            (kset.conv.func)(
                x.as_ptr(),
                packed.as_ptr(),
                y.as_mut_ptr(),
                std::ptr::null(),
                scratch.as_mut_ptr(),
                &g,
                1,
            )
        }
    });
    // The f32 direct stem kernel on the same shape (padded planes 225 x 225).
    let f = super::super::stem::stem_kernel(t).map_or(0.0, |(_, stem)| {
        let fg = DwGeom {
            planes: 32,
            co: 32,
            ci: 3,
            cog: 1,
            h: 224,
            w: 224,
            pt: 1,
            pl: 1,
            kh: 3,
            kw: 3,
            sy: 2,
            sx: 2,
            dy: 1,
            dx: 1,
            oh: 112,
            ow: 112,
            hp: 225,
            wp: 225,
            epi: crate::cpu::kernels::Epilogue::NONE,
            tasks: 1,
        };
        let scratch = super::super::stem::scratch_floats(&fg).unwrap();
        f32_window_rate(stem, &fg, 27 * 32, scratch, ops, &mut r)
    });
    println!("{line} | f32 {f:.1} | best int8 / f32 {:.2}", best / f);
}

#[test]
fn pointwise_chunks_leave_no_sliver_of_pixels() {
    // (ci, co, plane, tasks, chunk): MobileNetV2's pointwise convs at 2 threads (4 tasks):
    // 7x7 in one chunk (not 48 + 1), 14x14 in 2 x 98 (two tiles each at least, not 4 x 49
    // nor 4 x 48 + 4), 28x28 in 4 x 196
    // (not 4 x 192 + 16), 56x56 in 4 x 784 (not 4 x 768 + 64); one task: one chunk.
    let mut r = Rng::new(3);
    let q = quant(&mut r, 8, 8);
    for (ci, co, s, tasks, want) in [
        (960, 160, 7, 4, 49),
        (576, 96, 14, 4, 98),
        (384, 64, 28, 4, 196),
        (24, 144, 56, 4, 784),
        // 5 chunks of 672 would leave one thread 3 of them: 4 x 784 (a panel of 113 KB).
        (144, 24, 56, 4, 784),
        (960, 160, 7, 1, 49),
    ] {
        let mut g = pw_geom(ci, co, s, s, &q);
        g.tasks = tasks;
        assert_eq!(g.chunk(), want, "{ci}->{co} at {s}x{s}, {tasks} tasks");
        let n = g.pixels().div_ceil(g.chunk());
        let last = g.pixels() - (n - 1) * g.chunk();
        assert!(
            n == 1 || last * 4 >= g.chunk(),
            "{s}x{s}: last chunk {last}"
        );
    }
}

#[test]
fn expansions_split_by_channels_match_the_reference() {
    // Pointwise expansions that split their output channels one range per thread at 2
    // threads (`qconv_by_channels`), and a projection and a grouped conv that do not; every
    // thread count against the reference (3, 5 and 8 threads cut the channel blocks unevenly).
    let ks = sets("int8_conv");
    let mut r = Rng::new(17);
    for (ci, co, s, by_channels) in [
        (16, 96, 56, true),
        (24, 144, 28, true),
        (12, 40, 48, true),
        (96, 24, 28, false),
    ] {
        let q = quant(&mut r, co, ci);
        let mut g = pw_geom(ci, co, s, s, &q);
        g.tasks = qconv_tasks(2) as u64;
        let units = g.pixels().div_ceil(g.chunk());
        assert_eq!(
            qconv_by_channels(&g, units, g.blocks(), 2),
            by_channels,
            "{ci}->{co} at {s}x{s}"
        );
        let x = bytes(&mut r, ci * s * s);
        let w: Vec<i8> = (0..co * ci).map(|_| r.int(-128, 127) as i8).collect();
        let bias: Vec<i32> = (0..co).map(|_| r.int(-20000, 20000) as i32).collect();
        let want = ref_conv(&g, &q, &x, &w, &bias);
        let packed = pack_qconv(&g, &w, &bias, &q.rq.mult).unwrap();
        let what = format!("{ci}->{co} at {s}x{s}");
        assert_conv_eq(&ks, &g, &x, &packed, &want, &THREADS, &what);
    }
    let q = quant(&mut r, 96, 16);
    let mut g = pw_geom(32, 96, 56, 56, &q);
    g.groups = 2;
    assert!(!qconv_by_channels(&g, 4, g.blocks(), 2), "grouped");
}

#[test]
fn chunks_put_vector_rests_where_they_cost_least() {
    // The VNNI blocks' rest costs: 14x14 at 64 channels (16 quads) in 2 chunks of 98 on 2
    // threads: a 2-pixel rest each by `gemv` beats one chunk holding a 4-pixel vector;
    // 28x28 at 32 channels in 4 chunks of 196: one 16-pixel rest beats four 4-pixel ones
    // (the first chunk takes the extra vector, see `part`).
    let vnni = |k4: usize| move |r: usize| super::vnni::rest_cost(r, k4);
    let s = ChunkSplit::new(196, 98, 1, 2, vnni(16));
    assert!(!s.by_vectors);
    assert_eq!((s.pixels(0), s.pixels(1)), ((0, 98), (98, 196)));
    let s = ChunkSplit::new(784, 196, 1, 2, vnni(8));
    assert!(s.by_vectors);
    let px: Vec<_> = (0..4).map(|c| s.pixels(c)).collect();
    assert_eq!(px, [(0, 208), (208, 400), (400, 592), (592, 784)]);
    // A set whose rest costs a vector whatever its pixels splits by vectors where a thread
    // gets more than one chunk.
    assert!(ChunkSplit::new(784, 196, 1, 2, |_| 100).by_vectors);
    assert!(ChunkSplit::new(196, 98, 1, 1, |_| 100).by_vectors);
    // Every split covers the image once, no chunk over the panel's padded stride.
    for p in [1, 15, 49, 196, 784, 3136, 12544, 1000] {
        for chunk in [48, 49, 98, 196, 784, 1536] {
            for threads in 1..4 {
                for k4 in [4, 16, 40, 144] {
                    let s = ChunkSplit::new(p, chunk.min(p), 1, threads, vnni(k4));
                    let mut next = 0;
                    for c in 0..s.chunks {
                        let (p0, p1) = s.pixels(c);
                        assert_eq!(p0, next, "p {p} chunk {chunk} threads {threads}");
                        assert!(p1 >= p0 && p1 - p0 <= chunk.min(p).next_multiple_of(16));
                        next = p1;
                    }
                    assert_eq!(next, p);
                }
            }
        }
    }
}
