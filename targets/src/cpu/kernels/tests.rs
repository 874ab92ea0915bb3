//! Kernels against naive loops: ragged shapes, every epilogue form, several thread counts
//! (results must be bit-identical to one thread), nothing written outside the outputs.

use super::*;
use crate::Target;
use mnc_ir::op::optional_activation_examples;
use mnc_ir::Activation;

/// `n` pseudo-random values in [-1, 1).
fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut g = mnc_passes::samples::Lcg::new(seed);
    (0..n).map(|_| g.uniform(-1.0, 1.0)).collect()
}

/// The fused epilogue as the IR defines it: `act(sum + bias + residual)`.
fn epilogue(sum: f32, bias: Option<f32>, res: Option<f32>, act: Option<Activation>) -> f32 {
    let v = sum + bias.unwrap_or(0.0) + res.unwrap_or(0.0);
    act.map_or(v, |a| a.apply(v))
}

/// Which of bias and residual the `i`-th case uses (rotated with the activation, so every
/// activation meets every form across the shapes).
fn epilogue_form(i: usize) -> (bool, bool) {
    [(false, false), (true, false), (true, true), (false, true)][i % 4]
}

/// `v`'s pointer when `on`, else null (an absent bias or residual).
fn ptr_if(on: bool, v: &[f32]) -> *const f32 {
    if on {
        v.as_ptr()
    } else {
        std::ptr::null()
    }
}

/// Keeps the first thread count's output; later ones must equal it bit for bit.
fn same_as_first(first: &mut Option<Vec<f32>>, y: Vec<f32>, what: impl Fn() -> String) {
    match first {
        None => *first = Some(y),
        Some(f) => assert!(
            f.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{}",
            what()
        ),
    }
}

/// `|got - want| <= tol` with `tol` relative to the magnitude of the dot product's terms.
fn close(got: f32, want: f32, scale: f32) -> bool {
    (got - want).abs() <= 1e-5 * scale.max(1.0)
}

#[test]
fn activations_match_the_ir_definition() {
    let xs: Vec<f32> = mnc_ir::op::ACTIVATION_PROBES
        .iter()
        .copied()
        .chain(rand(200, 9).into_iter().map(|v| v * 12.0))
        .collect();
    for t in Target::jit_targets_for_test("activations_match_the_ir_definition") {
        let kern = gemm_kernel(t).unwrap();
        for a in optional_activation_examples() {
            // y = act(1 * x): a 1 x n GEMM with k = 1.
            let call = GemmCall {
                m: 1,
                n: xs.len() as u64,
                k: 1,
                ldb: xs.len() as u64,
                ldc: xs.len() as u64,
                epi: Epilogue::new(false, false, a),
            };
            let ap = pack_a(&[1.0], 1, 1, kern.a_block_rows(1, xs.len()));
            let mut y = vec![0.0f32; xs.len()];
            // SAFETY: the GEMM contract: `ap` is packed for m = k = 1, `xs` and `y` hold `xs.len()` floats, no bias or residual.
            unsafe {
                (kern.func)(
                    ap.as_ptr(),
                    xs.as_ptr(),
                    y.as_mut_ptr(),
                    std::ptr::null(),
                    std::ptr::null(),
                    &call,
                    1,
                )
            };
            for (&x, &got) in xs.iter().zip(&y) {
                let want = a.map_or(x, |a| a.apply(x));
                let ok = mnc_ir::op::agrees(got, want);
                assert!(ok, "{t} {a:?}({x}) = {got}, want {want}");
            }
        }
    }
}

#[test]
fn gemm_matches_naive_with_every_epilogue_and_thread_count() {
    for t in Target::jit_targets_for_test("gemm_matches_naive_with_every_epilogue_and_thread_count")
    {
        let kern = gemm_kernel(t).unwrap();
        let shapes: &[(usize, usize, usize)] = &[
            (1, 1, 1),
            (3, 7, 5),
            (9, 33, 17),
            (17, 50, 3),
            (8, 32, 64),
            (13, 100, 40),
            (40, 700, 24),
            (96, 300, 16),
            (160, 49, 200),
            // A 14x14 plane: the last column tile one vector of 4 columns.
            (12, 196, 20),
            // Output rows in the lanes (rows_in_lanes): on AVX-512 every tile width 1..=12,
            // on AVX2 every width 1..=6 (16-row tiles, A in 8-row blocks).
            (16, 49, 20),
            (48, 17, 9),
            (64, 1, 7),
            (32, 13, 9),
            (96, 25, 33),
            (320, 7, 50),
            (32, 100, 5),
            // Several column panels (long k), the last one partial.
            (17, 150, 700),
        ];
        for (si, &(m, n, k)) in shapes.iter().enumerate() {
            let a = rand(m * k, 1 + si as u64);
            // B's rows alternately misaligned (the tiles read a copied panel) and on cache
            // lines (the tiles read B itself).
            let ldb = if si % 2 == 0 {
                n + 3
            } else {
                n.div_ceil(16) * 16
            };
            let ldc = n + 2;
            let b = aligned(&rand(k * ldb, 2 + si as u64));
            let b = &b.0[b.1..];
            let bias = rand(m, 3);
            let res = rand(m * ldc, 4);
            let ap = pack_a(&a, m, k, kern.a_block_rows(m, n));
            for (ai, act) in optional_activation_examples().into_iter().enumerate() {
                // Rotate the bias/residual forms with the activation.
                let (with_bias, with_res) = epilogue_form(ai + si);
                let call = GemmCall {
                    m: m as u64,
                    n: n as u64,
                    k: k as u64,
                    ldb: ldb as u64,
                    ldc: ldc as u64,
                    epi: Epilogue::new(with_bias, with_res, act),
                };
                let mut first: Option<Vec<f32>> = None;
                for threads in [1, 2, 3] {
                    let mut c = vec![7.0f32; m * ldc + 5];
                    // SAFETY: the buffers are sized for this m x n x k call (leading dimensions ldb/ldc, bias m floats, residual like C); the host runs the target.
                    unsafe {
                        (kern.func)(
                            ap.as_ptr(),
                            b.as_ptr(),
                            c.as_mut_ptr(),
                            ptr_if(with_bias, &bias),
                            ptr_if(with_res, &res),
                            &call,
                            threads,
                        )
                    };
                    for i in 0..m {
                        for j in 0..ldc {
                            let got = c[i * ldc + j];
                            if j >= n {
                                assert_eq!(got, 7.0, "{t} wrote outside C at ({i},{j})");
                                continue;
                            }
                            let want = epilogue(
                                (0..k).map(|p| a[i * k + p] * b[p * ldb + j]).sum(),
                                with_bias.then(|| bias[i]),
                                with_res.then(|| res[i * ldc + j]),
                                act,
                            );
                            assert!(
                                close(got, want, k as f32),
                                "{t} {m}x{n}x{k} {act:?} threads {threads} at ({i},{j}): {got} vs {want}"
                            );
                        }
                    }
                    assert!(c[m * ldc..].iter().all(|&v| v == 7.0), "{t}: wrote past C");
                    same_as_first(&mut first, c, || {
                        format!("{t} {m}x{n}x{k}: {threads} threads differ from 1")
                    });
                }
            }
        }
    }
}

/// `C = A B` without an epilogue by `kern` on `threads`: `ap` packed for the `m x k` A, B
/// `k` rows of `ldb` floats (at least `n` readable) in `b`, C `m x n`.
fn gemm_plain(
    kern: &Kernel,
    ap: &[f32],
    b: &[f32],
    dims: (usize, usize, usize),
    ldb: usize,
    threads: usize,
) -> Vec<f32> {
    gemm_with(kern, ap, b, dims, ldb, Epilogue::NONE, (&[], &[]), threads)
}

/// [`gemm_plain`] with the epilogue `epi`, reading `bias` (`m` floats) and the residual
/// (`m x n`) where they are not empty (passed even where `epi` does not read them).
#[allow(clippy::too_many_arguments)]
fn gemm_with(
    kern: &Kernel,
    ap: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    ldb: usize,
    epi: Epilogue,
    operands: (&[f32], &[f32]),
    threads: usize,
) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    gemm_into(kern, ap, b, (m, n, k), ldb, epi, operands, threads, &mut c);
    c
}

/// [`gemm_with`] into `c` (`m x n`).
#[allow(clippy::too_many_arguments)]
fn gemm_into(
    kern: &Kernel,
    ap: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    ldb: usize,
    epi: Epilogue,
    (bias, res): (&[f32], &[f32]),
    threads: usize,
    c: &mut [f32],
) {
    assert!(c.len() >= m * n);
    assert!(ap.len() >= m.div_ceil(kern.a_block_rows(m, n)) * kern.a_block_rows(m, n) * k);
    assert!(k == 0 || b.len() >= (k - 1) * ldb + n);
    assert!((bias.is_empty() || bias.len() >= m) && (res.is_empty() || res.len() >= m * n));
    assert!((!epi.bias() || !bias.is_empty()) && (!epi.residual() || !res.is_empty()));
    let call = GemmCall {
        m: m as u64,
        n: n as u64,
        k: k as u64,
        ldb: ldb as u64,
        ldc: n as u64,
        epi,
    };
    // SAFETY: A packed for m x k, B k rows of ldb, bias and residual where the epilogue
    // reads them, C m x n (all checked above); the caller's target runs on the host.
    unsafe {
        (kern.func)(
            ap.as_ptr(),
            b.as_ptr(),
            c.as_mut_ptr(),
            ptr_if(!bias.is_empty(), bias),
            ptr_if(!res.is_empty(), res),
            &call,
            threads,
        )
    };
}

/// `v` copied into a buffer at a cache-line-aligned offset: `(buffer, offset)`.
fn aligned(v: &[f32]) -> (Vec<f32>, usize) {
    let mut buf = vec![0.0f32; v.len() + 16];
    let off = buf.as_ptr().align_offset(64);
    buf[off..off + v.len()].copy_from_slice(v);
    (buf, off)
}

/// A GEMM whose B rows are misaligned (the tiles read copied panels) gives the bits of the
/// same product with B's rows on cache lines (the tiles read B itself), at every thread count.
#[test]
fn gemm_copied_panels_give_the_bits_of_aligned_rows() {
    for t in Target::jit_targets_for_test("gemm_copied_panels_give_the_bits_of_aligned_rows") {
        let kern = gemm_kernel(t).unwrap();
        for (m, n, k) in [(64, 196, 384), (24, 196, 600), (9, 50, 33)] {
            let a = rand(m * k, 5);
            let ap = pack_a(&a, m, k, kern.a_block_rows(m, n));
            let b = rand(k * n, 6);
            let outputs: Vec<Vec<f32>> = [n + 1, n.div_ceil(16) * 16]
                .into_iter()
                .flat_map(|ldb| {
                    let mut rows = vec![0.0f32; k * ldb];
                    for p in 0..k {
                        rows[p * ldb..p * ldb + n].copy_from_slice(&b[p * n..(p + 1) * n]);
                    }
                    let (buf, off) = aligned(&rows);
                    [1, 2]
                        .into_iter()
                        .map(|threads| gemm_plain(&kern, &ap, &buf[off..], (m, n, k), ldb, threads))
                        .collect::<Vec<_>>()
                })
                .collect();
            for o in &outputs[1..] {
                assert!(
                    o.iter()
                        .zip(&outputs[0])
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{t} {m}x{n}x{k}: copied panels differ"
                );
            }
        }
    }
}

#[test]
fn gemm_tasks_split_rows_first_for_the_rows_in_lanes_tiles() {
    use gemm::Split::{Columns, Rows, RowsPerThread};
    // MobileNetV3-Large's 160 -> 960 at 7x7 on AVX-512, 2 threads (8 tasks): 15 row tiles of
    // 64, 9 column tiles of up to 6. Rows first: 8 row ranges, each task its own weights.
    assert_eq!(gemm::task_grid(15, 9, 8, 2, Rows), (8, 1));
    // The column tiles: columns first, as before.
    assert_eq!(gemm::task_grid(15, 9, 8, 2, Columns), (1, 8));
    // Few row blocks (960 -> 160: 3 of 64 rows): the columns take the rest.
    assert_eq!(gemm::task_grid(3, 9, 8, 2, Rows), (3, 3));
    assert_eq!(gemm::task_grid(1, 1, 8, 2, Rows), (1, 1));
    // MobileNetV2's 16 -> 96 expansion at 112x112 (16 blocks of 6 rows, 784 tiles of 16
    // columns): one row range per thread, each in 4 column ranges; with 3 threads, 3 x 3.
    assert_eq!(gemm::task_grid(16, 784, 8, 2, RowsPerThread), (2, 4));
    assert_eq!(gemm::task_grid(16, 784, 12, 3, RowsPerThread), (3, 4));
    // Fewer row blocks than threads: columns first.
    assert_eq!(gemm::task_grid(1, 784, 8, 2, RowsPerThread), (1, 8));
}

#[test]
fn expansions_split_rows_per_thread() {
    use gemm::Split::{Columns, Rows, RowsPerThread};
    // 16 -> 96 and 64 -> 384 (MobileNetV2), 40 -> 240 (EfficientNet-B0): expansions.
    assert_eq!(gemm::gemm_split(96, 16, false), RowsPerThread);
    assert_eq!(gemm::gemm_split(384, 64, false), RowsPerThread);
    assert_eq!(gemm::gemm_split(240, 40, false), RowsPerThread);
    // MobileNetV3's 2.3-3x expansions (80 -> 184, 24 -> 72) too.
    assert_eq!(gemm::gemm_split(184, 80, false), RowsPerThread);
    assert_eq!(gemm::gemm_split(72, 24, false), RowsPerThread);
    // Projections and the 3x3 im2col convs are not.
    assert_eq!(gemm::gemm_split(24, 144, false), Columns);
    assert_eq!(gemm::gemm_split(64, 3 * 3 * 32, false), Columns);
    // The rows-in-lanes tiles keep their own split.
    assert_eq!(gemm::gemm_split(960, 160, true), Rows);
}

#[test]
fn se_splits_on_the_weights_it_reads_too() {
    let g = |c: u64, hw: u64, r: u64| SeGeom {
        n: 1,
        c,
        hw,
        r,
        hidden: Epilogue::NONE,
        gate: Epilogue::NONE,
    };
    // 480 channels of 7x7, 120 hidden: 47K plane floats read (twice: below the split's
    // threshold alone) and 115K of weights.
    assert_eq!(se::se_tasks(&g(480, 49, 120), 2), 8);
    assert_eq!(se::se_tasks(&g(480, 49, 120), 1), 1);
    // MobileNetV3-Large's last SE blocks: 960 channels of 7x7, 240 hidden.
    assert_eq!(se::se_tasks(&g(960, 49, 240), 2), 8);
    // A small one stays on the calling thread.
    assert_eq!(se::se_tasks(&g(16, 49, 4), 2), 1);
}

#[test]
fn b_panels_are_copied_only_for_misaligned_rows_read_by_several_row_blocks() {
    let line = std::ptr::without_provenance::<f32>(64);
    assert!(copies_b_panels(line, 196, 16, 256, 8));
    assert!(!copies_b_panels(line, 208, 16, 256, 8));
    assert!(!copies_b_panels(line, 784, 16, 256, 8));
    // Fewer than COPY_MIN_ROW_BLOCKS blocks of rows read the panel: no copy.
    assert!(!copies_b_panels(line, 196, 16, 8, 8));
    assert!(!copies_b_panels(line, 196, 16, 15 * 6, 6));
    assert!(copies_b_panels(line, 196, 16, 16 * 6, 6));
    // A misaligned start.
    assert!(copies_b_panels(
        std::ptr::without_provenance(4),
        208,
        16,
        256,
        8
    ));
    // AVX2's vectors: 8 floats.
    assert!(!copies_b_panels(
        std::ptr::without_provenance(32),
        200,
        8,
        256,
        6
    ));
}

/// The rows-in-lanes tiles (A in blocks of a row tile, two vectors per `k` step) give exactly
/// one FMA chain over `k` ascending from zero per output, as the column tiles do.
#[test]
fn rows_in_lanes_tiles_give_one_fma_chain() {
    for t in Target::jit_targets_for_test("rows_in_lanes_tiles_give_one_fma_chain") {
        let kern = gemm_kernel(t).unwrap();
        if !isa(t).unwrap().fma {
            continue;
        }
        // (320, 49, 40): five 64-row tiles on AVX-512, twenty 16-row ones on AVX2, so the
        // tiles read B packed (`PACK_MIN_ROW_TILES`), at 1 thread at least.
        for (m, n, k) in [(32, 49, 200), (64, 13, 65), (96, 7, 3), (320, 49, 40)] {
            let (a, b) = (rand(m * k, 8), rand(k * n, 9));
            let ap = pack_a(&a, m, k, kern.a_block_rows(m, n));
            for threads in [1, 2] {
                let c = gemm_plain(&kern, &ap, &b, (m, n, k), n, threads);
                for i in 0..m {
                    for j in 0..n {
                        let want =
                            (0..k).fold(0.0f32, |s, p| a[i * k + p].mul_add(b[p * n + j], s));
                        assert_eq!(
                            c[i * n + j].to_bits(),
                            want.to_bits(),
                            "{t} {m}x{n}x{k} rows in lanes {} threads {threads} at ({i},{j})",
                            kern.rows_in_lanes(m, n)
                        );
                    }
                }
            }
        }
    }
}

/// The buffers of one depthwise or stem kernel call in a test (`bias`, `res`: absent when
/// `None`).
struct DirectCall<'a> {
    x: &'a [f32],
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    res: Option<&'a [f32]>,
}

/// Runs the [`DwFn`]-shaped kernel `f` at 1, 2 and 3 threads (geometry `geom(threads)`, a
/// NaN-filled scratch of `scratch(&geometry)` floats) and checks every output element against
/// `want` (tolerance scaled by `taps`), that nothing is written past the output, and that
/// every thread count gives the bits of 1 thread.
fn check_direct_kernel(
    f: DwFn,
    geom: impl Fn(usize) -> DwGeom,
    scratch: impl Fn(&DwGeom) -> usize,
    call: &DirectCall<'_>,
    want: &[f32],
    taps: usize,
    what: &dyn Fn() -> String,
) {
    let mut first: Option<Vec<f32>> = None;
    for threads in [1usize, 2, 3] {
        let g = geom(threads);
        let mut scratch = vec![f32::NAN; scratch(&g)];
        let mut y = vec![9.0f32; want.len() + 40];
        let opt = |v: Option<&[f32]>| v.map_or(std::ptr::null(), <[f32]>::as_ptr);
        // SAFETY: the buffers are sized as the geometry describes (the caller's `scratch` and
        // `want` are the kernel's scratch size and output size); the host runs the target.
        unsafe {
            f(
                call.x.as_ptr(),
                call.w.as_ptr(),
                opt(call.bias),
                opt(call.res),
                y.as_mut_ptr(),
                scratch.as_mut_ptr(),
                &g,
                threads,
            )
        };
        for (i, (&gv, &wv)) in y.iter().zip(want).enumerate() {
            assert!(
                close(gv, wv, taps as f32),
                "{} threads {threads} at {i}: {gv} vs {wv}",
                what()
            );
        }
        assert!(
            y[want.len()..].iter().all(|&v| v == 9.0),
            "{}: wrote past the output",
            what()
        );
        same_as_first(&mut first, y, || {
            format!("{}: {threads} threads differ from 1", what())
        });
    }
}

/// Naive depthwise conv with zero padding (top/left `pt`/`pl`), one input channel per group.
#[allow(clippy::too_many_arguments)]
fn dw_naive(
    x: &[f32],
    w: &[f32],
    g: &DwGeom,
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Option<Activation>,
) -> Vec<f32> {
    let u = |v: u64| v as usize;
    let (co, ci, cog, h, wd) = (u(g.co), u(g.ci), u(g.cog), u(g.h), u(g.w));
    let (kh, kw, oh, ow) = (u(g.kh), u(g.kw), u(g.oh), u(g.ow));
    let mut y = vec![0.0f32; u(g.planes) * oh * ow];
    for q in 0..u(g.planes) {
        let (b, o) = (q / co, q % co);
        let xp = &x[(b * ci + o / cog) * h * wd..];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut s = 0.0f32;
                for ky in 0..kh {
                    for kx in 0..kw {
                        let iy = (oy * u(g.sy) + ky * u(g.dy)) as i64 - g.pt as i64;
                        let ix = (ox * u(g.sx) + kx * u(g.dx)) as i64 - g.pl as i64;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                            s += w[o * kh * kw + ky * kw + kx] * xp[iy as usize * wd + ix as usize];
                        }
                    }
                }
                let i = q * oh * ow + oy * ow + ox;
                y[i] = epilogue(s, bias.map(|b| b[o]), res.map(|r| r[i]), act);
            }
        }
    }
    y
}

#[test]
fn dw_matches_naive_and_stays_in_bounds() {
    for t in Target::jit_targets_for_test("dw_matches_naive_and_stays_in_bounds") {
        let Some((_, f)) = dw_kernel(t) else { continue };
        // (batch, channels, multiplier, h, w, k, stride, dilation, pad)
        type Case = (
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
        );
        let cases: &[Case] = &[
            (1, 1, 1, 1, 1, 1, 1, 1, 0),
            (1, 3, 1, 7, 7, 3, 1, 1, 1),
            (2, 5, 1, 19, 21, 5, 2, 1, 2),
            (1, 4, 2, 9, 40, 3, 2, 2, 2),
            (1, 3, 1, 13, 17, 3, 3, 1, 1),
            (1, 2, 1, 33, 33, 7, 1, 1, 3),
            (1, 24, 1, 56, 56, 3, 1, 1, 1),
            (1, 16, 1, 38, 38, 3, 2, 1, 1),
            (1, 6, 1, 14, 14, 5, 1, 1, 2),
            (2, 3, 2, 7, 9, 5, 2, 1, 2),
            // Stride 2, 3x3 / 5x5 on planes above 64 outputs, and stride 1 with rows of at
            // most 16 outputs: with AVX-512 read straight from the input
            // (DwGeom::unpadded): no padding, several column vectors with a partial last
            // one, channel multipliers, planes shorter than the window, every rest of the
            // 8-row blocks.
            (1, 5, 1, 35, 70, 3, 2, 1, 0),
            (1, 3, 2, 23, 41, 5, 2, 1, 2),
            (2, 4, 1, 12, 100, 3, 2, 1, 1),
            (1, 2, 1, 3, 40, 5, 2, 1, 2),
            (1, 3, 1, 30, 33, 5, 2, 1, 1),
            (1, 4, 1, 11, 16, 3, 1, 1, 1),
            (2, 3, 2, 13, 10, 5, 1, 1, 2),
            (1, 2, 1, 20, 12, 5, 1, 1, 0),
            // Small planes: with AVX-512 and AVX2, channels in the lanes (DwGeom::in_lanes),
            // in full and partial groups of 16 / 8 planes, cut anywhere by the thread split;
            // with AVX2 also stride-2 planes of 65 to 196 outputs.
            (1, 40, 1, 7, 7, 3, 1, 1, 1),
            (2, 20, 2, 5, 6, 3, 1, 2, 2),
            (1, 24, 1, 14, 14, 3, 2, 1, 1),
            (1, 17, 1, 7, 7, 5, 1, 1, 2),
            (1, 3, 1, 7, 7, 7, 1, 1, 3),
            (1, 33, 1, 8, 8, 3, 1, 1, 1),
            (1, 33, 1, 9, 8, 3, 1, 1, 1),
            (1, 18, 1, 9, 4, 3, 3, 1, 0),
            (1, 11, 1, 28, 27, 3, 2, 1, 1),
            (2, 9, 1, 27, 25, 5, 2, 1, 2),
            // 5x5 windows in the lanes up to 784 outputs (stride 1 on both ISAs, stride 2
            // on AVX2), partial groups of planes; one plane just past the limit.
            (1, 21, 1, 28, 28, 5, 1, 1, 2),
            (1, 9, 1, 56, 55, 5, 2, 1, 2),
            (1, 5, 1, 29, 28, 5, 1, 1, 2),
            // 5x5 at stride 1 past 784 outputs with rows of at most 16: AVX-512 unpadded.
            (1, 3, 1, 60, 14, 5, 1, 1, 2),
        ];
        for (ci_, &(n, c, mult, h, w, k, s, d, p)) in cases.iter().enumerate() {
            let oh = (h + 2 * p - d * (k - 1) - 1) / s + 1;
            let ow = (w + 2 * p - d * (k - 1) - 1) / s + 1;
            let co = c * mult;
            let hp = (p + h).max((oh - 1) * s + (k - 1) * d + 1);
            let wp = (p + w).max((ow - 1) * s + (k - 1) * d + 1);
            for (ai, act) in optional_activation_examples().into_iter().enumerate() {
                let (with_bias, with_res) = epilogue_form(ai + ci_);
                let epi = Epilogue::new(with_bias, with_res, act);
                let geom = |threads: usize| DwGeom {
                    planes: (n * co) as u64,
                    co: co as u64,
                    ci: c as u64,
                    cog: mult as u64,
                    h: h as u64,
                    w: w as u64,
                    pt: p as u64,
                    pl: p as u64,
                    kh: k as u64,
                    kw: k as u64,
                    sy: s as u64,
                    sx: s as u64,
                    dy: d as u64,
                    dx: d as u64,
                    oh: oh as u64,
                    ow: ow as u64,
                    hp: hp as u64,
                    wp: wp as u64,
                    epi,
                    tasks: dw_tasks(threads) as u64,
                };
                let x = rand(n * c * h * w, 3 + ci_ as u64);
                let wt = rand(co * k * k, 4);
                let bias = rand(co, 5);
                let res = rand(n * co * oh * ow, 6);
                let call = DirectCall {
                    x: &x,
                    w: &wt,
                    bias: with_bias.then_some(&bias[..]),
                    res: with_res.then_some(&res[..]),
                };
                let want = dw_naive(&x, &wt, &geom(1), call.bias, call.res, act);
                check_direct_kernel(
                    f,
                    geom,
                    |g| g.scratch_floats(isa(t).unwrap().lanes).unwrap(),
                    &call,
                    &want,
                    k * k,
                    &|| format!("{t} case {ci_} {act:?}"),
                );
            }
        }
    }
}

#[test]
fn dw_geometry_round_trips_through_the_blob() {
    let g = DwGeom {
        planes: 1 << 40,
        co: 3,
        ci: 4,
        cog: 5,
        h: 6,
        w: 7,
        pt: 8,
        pl: 9,
        kh: 10,
        kw: 11,
        sy: 12,
        sx: 13,
        dy: 14,
        dx: 15,
        oh: 16,
        ow: 17,
        hp: 18,
        wp: 19,
        epi: Epilogue::new(
            true,
            true,
            Some(Activation::Clip {
                min: f32::NAN,
                max: -0.0,
            }),
        ),
        tasks: 22,
    };
    // SAFETY: `DwGeom` is u64 fields and a 16-byte `Epilogue`: no padding.
    unsafe { assert_blob_is_bytes(&g, &g.to_blob()) };
}

/// The blob words of a `repr(C)` call description are its bytes (the kernels read the blob
/// as the struct).
///
/// # Safety
/// `T` has no padding bytes (all of its bytes are initialized).
unsafe fn assert_blob_is_bytes<T: std::fmt::Debug>(v: &T, blob: &[f32]) {
    let bytes: Vec<u8> = blob.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(bytes.len(), std::mem::size_of::<T>(), "{v:?}");
    // SAFETY: `v` is a valid `T` without padding (contract): its `size_of` bytes are
    // initialized and readable.
    let want = unsafe {
        std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
    };
    assert_eq!(bytes, want, "{v:?}");
}

#[test]
fn call_descriptions_are_their_blob_words() {
    let act = Some(Activation::HardSigmoid {
        alpha: 0.25,
        beta: -0.5,
    });
    let g = GemmCall {
        m: 1,
        n: 2 << 33,
        k: 3,
        ldb: 4,
        ldc: 5,
        epi: Epilogue::new(true, false, act),
    };
    // SAFETY: u64 fields and a 16-byte `Epilogue`: no padding.
    unsafe { assert_blob_is_bytes(&g, &g.to_blob()) };
    let v = GemvCall {
        m: 5,
        n: 6,
        k: 7 << 40,
        epi: Epilogue::new(false, true, act),
    };
    // SAFETY: as above.
    unsafe { assert_blob_is_bytes(&v, &v.to_blob()) };
    let s = SeGeom {
        n: 8,
        c: 9,
        hw: 10,
        r: 11,
        hidden: Epilogue::new(true, false, Some(Activation::Relu)),
        gate: Epilogue::new(true, true, act),
    };
    // SAFETY: as above.
    unsafe { assert_blob_is_bytes(&s, &s.to_blob()) };
}

/// The epilogue's flags decide whether the bias and residual are read: with the flags off,
/// operands passed anyway leave the GEMM's and the matrix-vector kernel's output alone.
#[test]
fn epilogue_flags_gate_the_operands() {
    let (m, n, k) = (3, 5, 2);
    let (a, b) = (rand(m * k, 31), rand(k * n, 32));
    let (bias, res) = (rand(m.max(n), 33), rand(m * n, 34));
    let relu = Some(Activation::Relu);
    for t in Target::jit_targets_for_test("epilogue_flags_gate_the_operands") {
        let kern = gemm_kernel(t).unwrap();
        let ap = pack_a(&a, m, k, kern.a_block_rows(m, n));
        for (with_bias, with_res) in [(false, false), (true, false), (false, true)] {
            let u = |v: usize| v as u64;
            let epi = Epilogue::new(with_bias, with_res, relu);
            let c = gemm_with(&kern, &ap, &b, (m, n, k), n, epi, (&bias, &res), 1);
            for i in 0..m {
                for j in 0..n {
                    let want = epilogue(
                        (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum(),
                        with_bias.then(|| bias[i]),
                        with_res.then(|| res[i * n + j]),
                        relu,
                    );
                    let got = c[i * n + j];
                    assert!(
                        close(got, want, k as f32),
                        "{t} gemm {with_bias} {with_res}"
                    );
                }
            }
            let (_, f) = gemv_kernel(t).unwrap();
            let call = GemvCall {
                m: 1,
                n: u(n),
                k: u(k),
                epi: Epilogue::new(with_bias, with_res, relu),
            };
            let bp = pack_gemv_b(&b, k, n, crate::cpu::isa(t).unwrap().lanes);
            let mut y = vec![0.0f32; n];
            // SAFETY: `a` holds k floats, `bp` the packed k x n B, bias and residual at least n.
            unsafe {
                f(
                    a.as_ptr(),
                    bp.as_ptr(),
                    y.as_mut_ptr(),
                    bias.as_ptr(),
                    res.as_ptr(),
                    &call,
                    1,
                )
            };
            for j in 0..n {
                let want = epilogue(
                    (0..k).map(|p| a[p] * b[p * n + j]).sum(),
                    with_bias.then(|| bias[j]),
                    with_res.then(|| res[j]),
                    relu,
                );
                assert!(
                    close(y[j], want, k as f32),
                    "{t} gemv {with_bias} {with_res}"
                );
            }
        }
    }
}

#[test]
fn gemv_blocks_hold_the_columns_zero_padded() {
    // 3 x 5 at 1 lane per vector: blocks of 8 columns, one block, columns 5..8 zero.
    let b: Vec<f32> = (0..15).map(|v| v as f32).collect();
    let p = pack_gemv_b(&b, 3, 5, 1);
    assert_eq!(p.len(), 3 * 8);
    for r in 0..3 {
        assert_eq!(&p[r * 8..r * 8 + 5], &b[r * 5..r * 5 + 5]);
        assert!(p[r * 8 + 5..r * 8 + 8].iter().all(|&v| v == 0.0));
    }
    // 2 x 20 at 2 lanes: blocks of 16 columns; column 17 of row 1 is in block 1, row 1, lane 1.
    let b: Vec<f32> = (0..40).map(|v| v as f32).collect();
    let p = pack_gemv_b(&b, 2, 20, 2);
    assert_eq!(p.len(), 2 * 2 * 16);
    assert_eq!(p[(2 + 1) * 16 + 1], b[20 + 17]);
    assert_eq!(gemv_block_cols(16), 128);
}

#[test]
fn gemv_matches_naive_with_every_epilogue_and_thread_count() {
    for t in Target::jit_targets_for_test("gemv_matches_naive_with_every_epilogue_and_thread_count")
    {
        let (_, f) = gemv_kernel(t).unwrap();
        // (rows, n, k): one row (batch 1), and the multi-row tiles with every remainder.
        let shapes = [
            (1, 1, 1),
            (1, 7, 3),
            (1, 33, 17),
            (1, 200, 64),
            (1, 1000, 1280),
            (1, 129, 5),
            (2, 33, 17),
            (3, 200, 9),
            (4, 129, 5),
            (5, 70, 31),
            (8, 1000, 96),
            (GEMV_MAX_ROWS, 257, 7),
        ];
        for (si, &(m, n, k)) in shapes.iter().enumerate() {
            let x = rand(m * k, 10 + si as u64);
            let b = rand(k * n, 11 + si as u64);
            let bp = pack_gemv_b(&b, k, n, crate::cpu::isa(t).unwrap().lanes);
            let bias = rand(n, 12);
            let res = rand(m * n, 13);
            for (ai, act) in optional_activation_examples().into_iter().enumerate() {
                let (with_bias, with_res) = epilogue_form(ai + si);
                let call = GemvCall {
                    m: m as u64,
                    n: n as u64,
                    k: k as u64,
                    epi: Epilogue::new(with_bias, with_res, act),
                };
                let mut first: Option<Vec<f32>> = None;
                for threads in [1, 2, 3] {
                    let mut y = vec![7.0f32; m * n + 20];
                    // SAFETY: `x` holds m * k floats, `bp` the packed k x n B, `y` m * n (+
                    // slack), the bias n, the residual m * n; the host runs the target.
                    unsafe {
                        f(
                            x.as_ptr(),
                            bp.as_ptr(),
                            y.as_mut_ptr(),
                            ptr_if(with_bias, &bias),
                            ptr_if(with_res, &res),
                            &call,
                            threads,
                        )
                    };
                    for i in 0..m {
                        for j in 0..n {
                            let want = epilogue(
                                (0..k).map(|p| x[i * k + p] * b[p * n + j]).sum(),
                                with_bias.then(|| bias[j]),
                                with_res.then(|| res[i * n + j]),
                                act,
                            );
                            let got = y[i * n + j];
                            assert!(
                                close(got, want, k as f32),
                                "{t} gemv {m}x{n}x{k} {act:?} threads {threads} at ({i}, {j}): {got} vs {want}",
                            );
                        }
                    }
                    assert!(y[m * n..].iter().all(|&v| v == 7.0), "{t}: wrote past y");
                    // One row of a multi-row call is the one-row call on that row: the same
                    // FMA chain whatever the tile.
                    if m > 1 && threads == 1 {
                        let one = GemvCall { m: 1, ..call };
                        let last = m - 1;
                        let mut y1 = vec![0.0f32; n];
                        // SAFETY: row `last` of x (k floats), the residual's row `last` (n).
                        unsafe {
                            f(
                                x.as_ptr().add(last * k),
                                bp.as_ptr(),
                                y1.as_mut_ptr(),
                                ptr_if(with_bias, &bias),
                                ptr_if(with_res, &res).wrapping_add(last * n),
                                &one,
                                1,
                            )
                        };
                        let row = &y[last * n..m * n];
                        assert!(
                            row.iter().zip(&y1).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{t} gemv {m}x{n}x{k}: row {last} differs from the one-row call"
                        );
                    }
                    same_as_first(&mut first, y, || {
                        format!("{t} gemv {m}x{n}x{k}: {threads} threads differ from 1")
                    });
                }
            }
        }
    }
}

#[test]
fn peak_is_measured_for_host_targets_only() {
    for t in Target::jit_targets_for_test("peak_is_measured_for_host_targets_only") {
        let p = peak_gflops(t).unwrap();
        assert!(p.is_finite() && p > 0.1, "{t}: {p}");
    }
    assert_eq!(peak_gflops(Target::Reference), None);
}

#[test]
fn every_kernel_entry_catches_panics_at_its_boundary() {
    let null = std::ptr::null();
    let nullm = std::ptr::null_mut();
    // The injected panic fires before the body, so no buffer is touched: every ISA's entry
    // points can be called on any host.
    for t in [Target::X86_64, Target::X86_64Avx2, Target::X86_64Avx512] {
        let gemm = gemm_kernel(t).unwrap().func;
        let (_, gemv) = gemv_kernel(t).unwrap();
        let (_, se) = se_kernel(t).unwrap();
        type Call = (&'static str, Box<dyn Fn()>);
        let mut calls: Vec<Call> = vec![
            (
                "gemm",
                // SAFETY: the injected panic fires before the kernel body: no pointer is used.
                Box::new(move || unsafe {
                    gemm(null, null, nullm, null, null, std::ptr::null(), 2)
                }),
            ),
            (
                "gemv",
                // SAFETY: as above.
                Box::new(move || unsafe {
                    gemv(null, null, nullm, null, null, std::ptr::null(), 2)
                }),
            ),
            (
                "se",
                // SAFETY: as above.
                Box::new(move || unsafe {
                    se(
                        null,
                        null,
                        null,
                        null,
                        null,
                        nullm,
                        nullm,
                        std::ptr::null(),
                        2,
                    )
                }),
            ),
        ];
        if let Some((_, dw)) = dw_kernel(t) {
            calls.push((
                "dw",
                // SAFETY: as above.
                Box::new(move || unsafe {
                    dw(null, null, null, null, nullm, nullm, std::ptr::null(), 2)
                }),
            ));
        }
        if let Some((_, st)) = stem::stem_kernel(t) {
            calls.push((
                "stem",
                // SAFETY: as above.
                Box::new(move || unsafe {
                    st(null, null, null, null, nullm, nullm, std::ptr::null(), 2)
                }),
            ));
        }
        for (name, call) in calls {
            INJECT_PANIC.with(|i| i.set(true));
            call(); // returns normally instead of aborting the process
            assert_eq!(
                take_panic().as_deref(),
                Some("injected kernel panic"),
                "{t} {name}"
            );
        }
    }
    // A panic of a pool task is resumed on the caller and caught there too; while it is
    // pending, further kernel bodies on this thread do not run.
    at_boundary(|| {
        crate::cpu::par::for_each(2, 4, &|t| {
            if t == 1 {
                panic!("task {t} failed")
            }
        })
    });
    let ran = std::cell::Cell::new(false);
    at_boundary(|| ran.set(true));
    assert!(!ran.get());
    assert_eq!(take_panic().as_deref(), Some("task 1 failed"));
    at_boundary(|| ran.set(true));
    assert!(ran.get());
    assert_eq!(take_panic(), None);
}

/// The feature lists of the `#[target_feature]` attributes in the ISA module `module` of
/// `kernels.rs` (`enable = "..."` literals and the literal passed to the body macros).
fn kernel_features(src: &str, module: &str) -> Vec<String> {
    let start = src
        .find(&format!("pub mod {module} {{"))
        .unwrap_or_else(|| panic!("no module {module}"));
    let rest = &src[start + 1..];
    let end = rest
        .find("\npub mod ")
        .or_else(|| rest.find("\n#[cfg(test)]"));
    let body = &rest[..end.unwrap_or(rest.len())];
    let mut lists = Vec::new();
    let mut prev = "";
    for line in body.lines() {
        let l = line.trim();
        let lit = if let Some(i) = l.find("enable = \"") {
            Some(&l[i + 10..])
        } else if l.contains("_body!(\"") {
            l.find('"').map(|i| &l[i + 1..])
        } else if prev.ends_with("lane_ops!(") && l.starts_with('"') {
            Some(&l[1..])
        } else {
            None
        };
        if let Some(lit) = lit {
            lists.push(lit[..lit.find('"').unwrap()].to_string());
        }
        prev = l;
    }
    lists
}

#[test]
fn kernel_target_features_lie_in_the_targets_feature_table() {
    let src = include_str!("../kernels.rs");
    // The shared bodies take the feature list from the module (`$feat`): no literal there.
    let shared = &src[..src.find("pub mod sse {").unwrap()];
    assert!(
        !shared.contains("enable = \""),
        "a literal feature list outside the ISA modules"
    );
    let modules = [
        ("sse", Target::X86_64),
        ("avx2", Target::X86_64Avx2),
        ("avx512", Target::X86_64Avx512),
    ];
    assert_eq!(
        &modules.map(|m| m.1)[..],
        Target::JIT,
        "every JIT ISA's kernel module is checked here"
    );
    for (module, t) in modules {
        let lists = kernel_features(src, module);
        assert!(lists.len() >= 6, "{module}: found only {lists:?}");
        for list in &lists {
            for f in list.split(',') {
                assert!(
                    t.cpu_features().contains(&f),
                    "{module} enables {f}, which {t}'s feature table lacks"
                );
            }
        }
    }
}

#[test]
fn cranelift_enables_exactly_the_feature_table() {
    use std::collections::BTreeSet;
    for &t in Target::JIT {
        let isa = crate::cpu::isa_for(t).unwrap();
        let on: BTreeSet<String> = isa
            .isa_flags()
            .iter()
            .filter(|v| v.name.starts_with("has_") && v.as_bool() == Some(true))
            .map(|v| v.name.to_string())
            .collect();
        let want: BTreeSet<String> = t
            .cpu_features()
            .iter()
            .map(|f| crate::cpu::cranelift_flag(f))
            .collect();
        assert_eq!(on, want, "{t}");
    }
}

/// The stem conv by its definition: every output sums `w[o][c][ky][kx] * x[b][c][iy][ix]` over
/// the taps inside the input, then the epilogue.
fn stem_naive(
    x: &[f32],
    w: &[f32],
    g: &DwGeom,
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Option<Activation>,
) -> Vec<f32> {
    let u = |v: u64| v as usize;
    let (n, ci, co, h, wd) = (u(g.planes / g.co), u(g.ci), u(g.co), u(g.h), u(g.w));
    let (kh, kw, oh, ow) = (u(g.kh), u(g.kw), u(g.oh), u(g.ow));
    let mut y = vec![0.0f32; n * co * oh * ow];
    for b in 0..n {
        for o in 0..co {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0.0f32;
                    for c in 0..ci {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * u(g.sy) + ky * u(g.dy)) as i64 - g.pt as i64;
                                let ix = (ox * u(g.sx) + kx * u(g.dx)) as i64 - g.pl as i64;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    s += w[((o * ci + c) * kh + ky) * kw + kx]
                                        * x[((b * ci + c) * h + iy as usize) * wd + ix as usize];
                                }
                            }
                        }
                    }
                    let i = ((b * co + o) * oh + oy) * ow + ox;
                    y[i] = epilogue(s, bias.map(|v| v[o]), res.map(|r| r[i]), act);
                }
            }
        }
    }
    y
}

#[test]
fn stem_matches_naive_and_stays_in_bounds() {
    for t in Target::jit_targets_for_test("stem_matches_naive_and_stays_in_bounds") {
        let Some((_, f)) = stem::stem_kernel(t) else {
            continue;
        };
        // (batch, in channels, out channels, h, w, kh, kw, stride, dilation, pads t/l/b/r)
        type Case = (
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            [usize; 4],
        );
        let cases: &[Case] = &[
            (1, 3, 16, 32, 32, 3, 3, 2, 1, [1, 1, 1, 1]),
            (2, 3, 40, 23, 37, 3, 3, 2, 1, [0, 0, 1, 1]),
            (1, 1, 7, 9, 45, 5, 5, 1, 1, [2, 2, 2, 2]),
            (1, 4, 17, 15, 15, 3, 5, 3, 1, [1, 2, 0, 1]),
            (1, 2, 33, 20, 19, 3, 3, 1, 2, [2, 2, 2, 2]),
            (2, 3, 8, 1, 1, 1, 1, 2, 1, [0, 0, 0, 0]),
            (1, 3, 24, 17, 18, 7, 7, 2, 1, [3, 3, 3, 3]),
            // Rows of several column chunks (AVX-512: 48 + 48 + 24 of 120 columns; at stride
            // 2, 112 = 48 + 48 + 16 as in the networks' stems).
            (1, 3, 9, 4, 120, 3, 3, 1, 1, [1, 1, 1, 1]),
            (1, 3, 16, 8, 224, 3, 3, 2, 1, [0, 0, 1, 1]),
        ];
        for (ci_, &(n, ci, co, h, w, kh, kw, s, d, p)) in cases.iter().enumerate() {
            let oh = (h + p[0] + p[2] - d * (kh - 1) - 1) / s + 1;
            let ow = (w + p[1] + p[3] - d * (kw - 1) - 1) / s + 1;
            let hp = (p[0] + h).max((oh - 1) * s + (kh - 1) * d + 1);
            let wp = (p[1] + w).max((ow - 1) * s + (kw - 1) * d + 1 + (s == 2) as usize);
            for (ai, act) in optional_activation_examples().into_iter().enumerate() {
                let (with_bias, with_res) = epilogue_form(ai + ci_);
                let epi = Epilogue::new(with_bias, with_res, act);
                // `cog` and `tasks` are not read by the stem kernel: deliberately absurd here.
                let g = DwGeom {
                    planes: (n * co) as u64,
                    ci: ci as u64,
                    co: co as u64,
                    cog: u64::MAX,
                    tasks: u64::MAX,
                    h: h as u64,
                    w: w as u64,
                    pt: p[0] as u64,
                    pl: p[1] as u64,
                    kh: kh as u64,
                    kw: kw as u64,
                    sy: s as u64,
                    sx: s as u64,
                    dy: d as u64,
                    dx: d as u64,
                    oh: oh as u64,
                    ow: ow as u64,
                    hp: hp as u64,
                    wp: wp as u64,
                    epi,
                };
                let x = rand(n * ci * h * w, 13 + ci_ as u64);
                let wt = rand(co * ci * kh * kw, 14);
                // The kernel reads them tap-major (`[t][o]`), as the lowering packs them.
                let taps = ci * kh * kw;
                let wt_packed: Vec<f32> = (0..taps * co)
                    .map(|i| wt[(i % co) * taps + i / co])
                    .collect();
                let bias = rand(co, 15);
                let res = rand(n * co * oh * ow, 16);
                let call = DirectCall {
                    x: &x,
                    w: &wt_packed,
                    bias: with_bias.then_some(&bias[..]),
                    res: with_res.then_some(&res[..]),
                };
                let want = stem_naive(&x, &wt, &g, call.bias, call.res, act);
                check_direct_kernel(
                    f,
                    |_| g,
                    |g| stem::scratch_floats(g).unwrap(),
                    &call,
                    &want,
                    taps,
                    &|| format!("{t} case {ci_} {act:?}"),
                );
            }
        }
    }
}

#[test]
fn rows_in_lanes_where_column_vectors_leave_lanes_empty() {
    // 7x7 planes: 49 columns fill 49 of 64 lanes; 960 rows fill all of theirs.
    assert!(rows_in_lanes(960, 49, 16));
    assert!(rows_in_lanes(32, 1, 16));
    // Rows not a multiple of the row tile, or columns that fill their vectors.
    assert!(!rows_in_lanes(968, 49, 16));
    assert!(!rows_in_lanes(960, 196, 16));
    assert!(!rows_in_lanes(960, 14, 16));
    assert!(!rows_in_lanes(960, 48, 16));
    assert!(!rows_in_lanes(0, 49, 16));
    assert!(!rows_in_lanes(960, 0, 16));
    // AVX2 (8 lanes, 16-row tiles): its column tiles are two vectors, 16 columns, like
    // AVX-512's one: 49 columns fill 49 of 64 there too; 960 rows are 60 row tiles.
    assert!(rows_in_lanes(960, 49, 8));
    assert!(!rows_in_lanes(968, 49, 8));
    assert!(!rows_in_lanes(960, 196, 8));
    assert!(!rows_in_lanes(960, 48, 8));
}

#[test]
fn avx512_transpose_is_a_transpose() {
    if !Target::X86_64Avx512.runs_on_host() {
        eprintln!("SKIPPED: the host has no AVX-512");
        return;
    }
    use std::arch::x86_64::*;
    let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
    // SAFETY: the host runs AVX-512 (checked above); loads and stores of 16 floats each.
    let out = unsafe {
        let rows: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(m.as_ptr().add(16 * i)));
        let t = super::avx512::transpose(rows);
        let mut out = vec![0.0f32; 256];
        for (i, v) in t.iter().enumerate() {
            _mm512_storeu_ps(out.as_mut_ptr().add(16 * i), *v);
        }
        out
    };
    for i in 0..16 {
        for j in 0..16 {
            assert_eq!(out[16 * i + j], m[16 * j + i], "({i}, {j})");
        }
    }
}

#[test]
fn avx2_transpose_is_a_transpose() {
    if !Target::X86_64Avx2.runs_on_host() {
        eprintln!("SKIPPED: the host has no AVX2");
        return;
    }
    use std::arch::x86_64::*;
    let m: Vec<f32> = (0..64).map(|i| i as f32).collect();
    // SAFETY: the host runs AVX2 (checked above); loads and stores of 8 floats each.
    let out = unsafe {
        let rows: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(m.as_ptr().add(8 * i)));
        let t = super::avx2::transpose(rows);
        let mut out = vec![0.0f32; 64];
        for (i, v) in t.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), *v);
        }
        out
    };
    for i in 0..8 {
        for j in 0..8 {
            assert_eq!(out[8 * i + j], m[8 * j + i], "({i}, {j})");
        }
    }
}

/// The padded row layout: every padded column has its own place inside the row, the runs the
/// input is copied into start on a cache line, and with column stride 2 each parity's columns
/// are contiguous (one load per tap of a vector of outputs).
#[test]
fn padded_rows_align_the_copied_input_and_keep_columns_apart() {
    for sx in [1u64, 2, 3] {
        for pl in 0..4u64 {
            for w in [1u64, 2, 7, 15, 16, 17, 56, 112, 225] {
                let wp = w + 2 * pl + sx;
                let g = DwGeom {
                    planes: 1,
                    co: 1,
                    ci: 1,
                    cog: 1,
                    h: 1,
                    w,
                    pt: 0,
                    pl,
                    kh: 1,
                    kw: 1,
                    sy: 1,
                    sx,
                    dy: 1,
                    dx: 1,
                    oh: 1,
                    ow: 1,
                    hp: 1,
                    wp,
                    epi: Epilogue::NONE,
                    tasks: 1,
                };
                let pr = g.pad_row();
                let what = format!("sx {sx} pl {pl} w {w}: {pr:?}");
                assert_eq!(pr.stride % PAD_ALIGN, 0, "{what}");
                assert_eq!(pr.split, sx == 2, "{what}");
                let mut at: Vec<usize> = (0..wp as usize).map(|j| pr.at(j)).collect();
                assert!(at.iter().all(|&p| p < pr.stride), "{what}");
                assert_eq!(pr.at(pl as usize) % PAD_ALIGN, 0, "{what}");
                if sx == 2 {
                    assert_eq!(pr.at(pl as usize + 1) % PAD_ALIGN, 0, "{what}");
                    for j in 2..wp as usize {
                        assert_eq!(pr.at(j), pr.at(j - 2) + 1, "{what} at {j}");
                    }
                } else {
                    for j in 1..wp as usize {
                        assert_eq!(pr.at(j), pr.at(j - 1) + 1, "{what} at {j}");
                    }
                }
                at.sort_unstable();
                at.dedup();
                assert_eq!(at.len(), wp as usize, "{what}: columns share a place");
                assert_eq!(
                    g.plane_floats(),
                    Some(pr.stride),
                    "{what}: one row per padded row"
                );
            }
        }
    }
}

/// The geometry of a square depthwise conv for the benchmarks: `c` planes of `s x s`, a
/// `k x k` window, `stride`, padding `k / 2` on every side, no activation, one task.
pub(super) fn square_dw(c: usize, s: usize, k: usize, stride: usize) -> DwGeom {
    let (o, p) = ((s + 2 * (k / 2) - k) / stride + 1, k / 2);
    let hp = ((o - 1) * stride + k).max(s + p);
    let u = |v: usize| v as u64;
    DwGeom {
        planes: u(c),
        co: u(c),
        ci: u(c),
        cog: 1,
        h: u(s),
        w: u(s),
        pt: u(p),
        pl: u(p),
        kh: u(k),
        kw: u(k),
        sy: u(stride),
        sx: u(stride),
        dy: 1,
        dx: 1,
        oh: u(o),
        ow: u(o),
        hp: u(hp),
        wp: u(hp),
        epi: Epilogue::NONE,
        tasks: 1,
    }
}

/// Depthwise throughput, one thread, on the depthwise layers of MobileNetV2, MobileNetV3 and
/// EfficientNet-B0 (channels x plane, window, stride), per f32 target the host runs: GFLOP/s
/// (best of 20 calls, inputs in cache as far as they fit). No assertion (a benchmark, not a
/// timed test); run with `cargo test --release -p mnc-targets --lib bench_depthwise_f32 --
/// --ignored --nocapture`.
#[test]
#[ignore]
fn bench_depthwise_f32() {
    let shapes = [
        (96, 112, 3, 2),
        (144, 56, 3, 1),
        (144, 56, 3, 2),
        (72, 56, 5, 2),
        (192, 28, 3, 1),
        (120, 28, 5, 1),
        (240, 28, 5, 1),
        (240, 28, 3, 2),
        (240, 28, 5, 2),
        (384, 14, 3, 1),
        (480, 14, 5, 1),
        (672, 14, 5, 1),
        (576, 14, 3, 2),
        (672, 14, 5, 2),
        (960, 7, 3, 1),
        (1152, 7, 5, 1),
    ];
    let targets = Target::host_jit_targets();
    println!("C x HxW kK /S: GFLOP/s per target ({targets:?})");
    for (c, s, k, stride) in shapes {
        let g = square_dw(c, s, k, stride);
        let o = g.oh as usize;
        let (x, wt) = (rand(c * s * s, 1), rand(c * k * k, 2));
        let mut y = vec![0.0f32; c * o * o];
        let mut line = format!("{c:>5} x {s}x{s} k{k} /{stride}:");
        for &t in &targets {
            let Some((_, f)) = dw_kernel(t) else { continue };
            let mut scratch = vec![0.0f32; g.scratch_floats(isa(t).unwrap().lanes).unwrap()];
            let ops = 2.0 * (c * o * o * k * k) as f64;
            let rate = best_giga_rate(20, ops, || {
                // SAFETY: buffers sized by the geometry; the host runs the target.
                unsafe {
                    f(
                        x.as_ptr(),
                        wt.as_ptr(),
                        std::ptr::null(),
                        std::ptr::null(),
                        y.as_mut_ptr(),
                        scratch.as_mut_ptr(),
                        &g,
                        1,
                    )
                }
            });
            line += &format!(" {t} {rate:.1}");
        }
        println!("{line}");
    }
}

/// GEMM throughput, one thread, on pointwise shapes of the networks (`k x m x n`, B's rows
/// `n` floats apart as in an NCHW plane, A and B cache-line aligned) per f32 target the host
/// runs: GFLOP/s, best of 100 calls (inputs in cache as far as they fit). No assertion (a
/// benchmark, not a timed test); run with `cargo test --release -p mnc-targets --lib
/// bench_gemm_f32 -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_gemm_f32() {
    let shapes = [
        (576, 576, 196),
        (384, 64, 196),
        (672, 112, 196),
        (96, 576, 196),
        (64, 384, 196),
        (144, 24, 3136),
        (24, 144, 3136),
        (192, 32, 784),
        (32, 192, 784),
        (160, 960, 49),
        (960, 160, 49),
        (320, 1280, 49),
        (576, 160, 49),
    ];
    let targets = Target::host_jit_targets();
    println!("k x m x n: GFLOP/s per target ({targets:?})");
    for (k, m, n) in shapes {
        let mut line = format!("{k:>4} x {m:>4} x {n:>4}:");
        for &t in &targets {
            let kern = gemm_kernel(t).unwrap();
            let (ab, ao) = aligned(&pack_a(&rand(m * k, 1), m, k, kern.a_block_rows(m, n)));
            let (bb, bo) = aligned(&rand(k * n, 2));
            let mut c = vec![0.0f32; m * n];
            let (ap, b, none) = (&ab[ao..], &bb[bo..], (&[][..], &[][..]));
            let ops = 2.0 * (m * n * k) as f64;
            let rate = best_giga_rate(100, ops, || {
                gemm_into(&kern, ap, b, (m, n, k), n, Epilogue::NONE, none, 1, &mut c);
            });
            line += &format!(" {t} {rate:.1}");
        }
        println!("{line}");
    }
}

/// The unpadded depthwise path (AVX-512, `DwGeom::unpadded`: stride 1 or 2) computes exactly
/// what the padded-copy path computes (the AVX2 kernel runs that path for every geometry): the
/// same products in the same order, so the outputs are bit-identical. Rows of one vector and
/// of several with a partial last one, at both strides.
#[test]
fn unpadded_depthwise_equals_the_padded_copy() {
    let (Some((_, wide)), Some((_, narrow))) = (
        dw_kernel(Target::X86_64Avx512),
        dw_kernel(Target::X86_64Avx2),
    ) else {
        return;
    };
    if !Target::X86_64Avx512.runs_on_host() || !Target::X86_64Avx2.runs_on_host() {
        eprintln!("unpadded_depthwise_equals_the_padded_copy: skipped (no AVX-512)");
        return;
    }
    let shapes = [
        (8, 112, 3, 2),
        (6, 56, 5, 2),
        (5, 29, 3, 2),
        (4, 37, 5, 2),
        (7, 14, 3, 1),
        (3, 16, 3, 1),
        (2, 9, 3, 1),
        (4, 112, 3, 1),
        (3, 56, 5, 1),
        (5, 33, 3, 1),
        (2, 29, 5, 1),
    ];
    for (i, (c, s, k, stride)) in shapes.into_iter().enumerate() {
        for act in [None, Some(Activation::Relu)] {
            let mut g = square_dw(c, s, k, stride);
            // The calls below pass a bias and no residual.
            g.epi = Epilogue::new(true, false, act);
            assert!(g.unpadded(16) && !g.unpadded(8));
            let o = g.oh as usize;
            let (x, wt, bias) = (
                rand(c * s * s, 10 + i as u64),
                rand(c * k * k, 11),
                rand(c, 12),
            );
            let run = |f: DwFn, lanes: usize| {
                let mut y = vec![0.0f32; c * o * o];
                let mut scratch = vec![0.0f32; g.scratch_floats(lanes).unwrap()];
                // SAFETY: buffers sized by the geometry; the host runs both targets.
                unsafe {
                    f(
                        x.as_ptr(),
                        wt.as_ptr(),
                        bias.as_ptr(),
                        std::ptr::null(),
                        y.as_mut_ptr(),
                        scratch.as_mut_ptr(),
                        &g,
                        1,
                    )
                };
                y
            };
            let (a, b) = (run(wide, 16), run(narrow, 8));
            for (j, (p, q)) in a.iter().zip(&b).enumerate() {
                assert_eq!(
                    p.to_bits(),
                    q.to_bits(),
                    "case {i} {act:?} output {j}: {p} vs {q}"
                );
            }
        }
    }
}

/// The depthwise path of the nets' layers (a pure function of the shape and the vector
/// width): what the compile report names and the kernel runs.
#[test]
fn depthwise_paths_follow_the_shape_and_the_vector_width() {
    use DwPath::{Lanes, Padded, Unpadded};
    // (channels, plane, window, stride, AVX-512 path, AVX2 path)
    let cases = [
        (96, 112, 3, 2, Unpadded, Padded),
        (32, 112, 3, 1, Unpadded, Padded),
        (144, 56, 3, 1, Unpadded, Padded),
        (144, 56, 5, 2, Unpadded, Lanes),
        (72, 56, 5, 1, Unpadded, Padded),
        (240, 28, 5, 1, Lanes, Lanes),
        (240, 28, 3, 2, Unpadded, Lanes),
        (192, 28, 3, 1, Unpadded, Padded),
        (384, 14, 3, 1, Unpadded, Padded),
        (672, 14, 5, 1, Lanes, Lanes),
        (576, 14, 3, 2, Lanes, Lanes),
        (960, 7, 3, 1, Lanes, Lanes),
        (1152, 7, 5, 1, Lanes, Lanes),
    ];
    for (c, s, k, stride, want, want8) in cases {
        let g = square_dw(c, s, k, stride);
        assert_eq!(g.path(16), want, "{c}x{s} k{k}/{stride}");
        assert_eq!(g.path(8), want8, "{c}x{s} k{k}/{stride} on AVX2");
        assert_eq!(g.path(4), Padded);
    }
    // 7x7 windows and dilations keep the copy.
    let mut g = square_dw(8, 56, 7, 2);
    assert_eq!(g.path(16), Padded);
    g = square_dw(8, 56, 3, 2);
    g.dx = 2;
    g.dy = 2;
    assert_eq!(g.path(16), Padded);
}
