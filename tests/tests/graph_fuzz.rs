//! Structured fuzzing at the graph level: random valid CNN graphs
//! ([`mnc_tests::graphgen::random_graph`]: standard, depthwise, grouped, strided, dilated and
//! padded convs with rectangular kernels, max/average pools, BatchNorm, activations,
//! per-channel and residual elementwise ops, Pad, Concat, a Gemm head) go through the
//! optimization pipeline for every JIT target this host runs and through the JIT itself
//! (Cranelift verifier on, guard canaries around every buffer, one or two threads, in-place
//! outputs on or off), and every output is compared element by element with the reference
//! executor on the unoptimized graph. Complements the per-op property tests
//! (`cpu_conv_props.rs`): here ops meet each other and the fusion passes.

use mnc_ir::Tensor;
use mnc_passes::samples::Lcg;
use mnc_runtime::cpu::{CompiledModel, CpuOptions};
use mnc_targets::Target;
use mnc_tests::graphgen::random_graph;

/// Number of random graphs (seeds `0..GRAPHS`).
const GRAPHS: u64 = 200;
/// Per element: `|y - y_ref| <= TOL * max|y_ref|` (f32 accumulation order differs between
/// the reference's loops, the passes' folded weights and the vector kernels).
const TOL: f32 = 1e-4;

fn feeds(g: &mnc_ir::Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = Lcg::new(seed ^ 0x5eed);
    g.inputs
        .iter()
        .map(|&i| rng.tensor(&g.node(i).ty.shape, -2.0, 2.0))
        .collect()
}

/// `None` when `got` matches `want` within [`TOL`], else what differs.
fn mismatch(got: &[Tensor], want: &[Tensor]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{} outputs, want {}", got.len(), want.len()));
    }
    for (k, (y, r)) in got.iter().zip(want).enumerate() {
        if y.shape != r.shape {
            return Some(format!(
                "output {k}: shape {:?}, want {:?}",
                y.shape, r.shape
            ));
        }
        let (a, b) = (y.as_f32().unwrap(), r.as_f32().unwrap());
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (p, q)) in a.iter().zip(b).enumerate() {
            // NaN differences fail too.
            let close = (p - q).abs() <= TOL * scale;
            if !close {
                return Some(format!(
                    "output {k} element {i}: {p}, want {q} (tolerance {TOL} * {scale})"
                ));
            }
        }
    }
    None
}

#[test]
fn random_graphs_match_the_reference_on_every_host_target() {
    let targets = Target::jit_targets_for_test("graph_fuzz");
    let mut failures = Vec::new();
    let mut cases = 0;
    // Compilations that split a batch by image (batch-2 graphs with the split on).
    let mut splits = 0;
    let mut heads = 0;
    for seed in 0..GRAPHS {
        let g = random_graph(seed);
        let x = feeds(&g, seed);
        let want = mnc_runtime::reference::run(&g, &x)
            .unwrap_or_else(|e| panic!("seed {seed}: reference: {e}"));
        for &t in &targets {
            let what = format!("seed {seed}, {t}");
            let opt = mnc::exec::optimized(g.clone(), t)
                .unwrap_or_else(|e| panic!("{what}: passes: {e:#}"));
            // The passes alone (reference executor on the optimized graph).
            let passes = mnc_runtime::reference::run(&opt, &x)
                .unwrap_or_else(|e| panic!("{what}: reference on the optimized graph: {e}"));
            if let Some(m) = mismatch(&passes, &want) {
                failures.push(format!("{what}, passes: {m}"));
            }
            let opts = CpuOptions {
                verify: true,
                keep_clif: false,
                // Without canaries a split batch runs its images on the threads at once.
                guards: seed % 4 != 0,
                in_place: seed % 3 != 0,
                flush_denormals: seed % 5 != 0,
                split_batch: seed % 7 != 0,
                // Graphs ending in a matrix product after a [2, F] value run it once over
                // the batch (or per image).
                batch_head: seed % 13 != 0,
                // Any separable batch-2 graph splits (these graphs are far below the
                // default work threshold), so `per_image` meets every op shape drawn here.
                min_image_flops: 0,
                threads: 1 + (seed % 2) as usize,
                // Runs on the pool or on the caller alone: the same results.
                thread_choice: seed % 11 != 0,
            };
            let m = CompiledModel::compile(&opt, t, &opts)
                .unwrap_or_else(|e| panic!("{what}: compile: {e}"));
            splits += usize::from(m.report().images > 1);
            heads += usize::from(m.report().ops.iter().any(|o| o.per_batch));
            let got = m.run(&x).unwrap_or_else(|e| panic!("{what}: run: {e}"));
            if let Some(m) = mismatch(&got, &want) {
                failures.push(format!("{what}, JIT: {m}"));
            }
            cases += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches (passes and JIT counted apart) in {cases} graph x target cases:\n{}\nfirst failing graph:\n{}",
        failures.len(),
        failures.join("\n"),
        failures
            .first()
            .and_then(|f| f.strip_prefix("seed ")?.split(',').next()?.parse().ok())
            .map(|s: u64| mnc_ir::print::print_graph(&random_graph(s)).unwrap_or_default())
            .unwrap_or_default()
    );
    assert!(splits > 0, "no random graph was split by image");
    eprintln!("graph_fuzz: {GRAPHS} graphs, {cases} graph x target cases ({splits} split by image, {heads} of them with a head once over the batch), all within {TOL:e}");
}
