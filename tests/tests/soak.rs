//! Concurrency soak: 8 threads share compiled models (several models, several batch sizes,
//! one and two kernel threads per run) for a bounded time; every output must be
//! bit-identical to the same model's single-threaded run, and resident memory must not grow
//! over the second of two steady phases (after the allocator has levelled off).

use mnc_ir::Tensor;
use mnc_passes::samples::Lcg;
use mnc_runtime::cpu::{CompiledModel, CpuOptions};
use mnc_targets::Target;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const THREADS: usize = 8;
const WARM_UP: Duration = Duration::from_millis(1500);
const STEADY: Duration = Duration::from_secs(5);
/// Resident memory may grow this much over the second of two equal steady phases. The
/// allocator's per-thread arenas keep growing for several seconds before they level off (on
/// the 2-core CI machine: from about 35 MB to about 70 MB over the first 5-10 s, whatever
/// the number of runs: 66k runs grew it no more than 16k), so the first steady phase is not
/// measured. Over the second phase, 8 runs on that machine moved between -16 and +12 MB;
/// a leak of 1.5 KiB per run (about 16k runs per phase) would exceed the limit.
const RSS_GROWTH_LIMIT_KB: i64 = 24 * 1024;

struct Case {
    name: String,
    model: CompiledModel,
    input: Vec<Tensor>,
    want: Vec<Tensor>,
}

/// Resident set size of this process in KiB (`VmRSS` of /proc/self/status).
fn rss_kb() -> i64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

fn bits(ts: &[Tensor]) -> Vec<Vec<u32>> {
    ts.iter()
        .map(|t| t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// The models: a MobileNetV2 fixture at batch 1 and 3 (dynamic batch), the MobileNetV3
/// fixture (batch 3, SE blocks), the EfficientNet MBConv sample block; alternately one and
/// two kernel threads per run.
fn cases(t: Target) -> Vec<Case> {
    let fx = mnc_tests::fixtures_dir();
    let mut graphs = Vec::new();
    for (dir, batch) in [
        ("mnv2_trunc_dynbatch_op10", 1),
        ("mnv2_trunc_dynbatch_op10", 3),
        ("mnv3s_w035_b3_op17", 3),
    ] {
        let opts = mnc::onnx::ImportOptions { batch: Some(batch) };
        let g = mnc::onnx::import_file(&fx.join(dir).join("model.onnx"), &opts).unwrap();
        graphs.push((format!("{dir} batch {batch}"), g));
    }
    let (name, g) = mnc_tests::sample_blocks().pop().unwrap();
    graphs.push((name.to_string(), g));
    graphs
        .into_iter()
        .enumerate()
        .map(|(k, (name, g))| {
            let g = mnc::exec::optimized(g, t).unwrap();
            let opts = CpuOptions {
                threads: 1 + k % 2,
                ..Default::default()
            };
            let model = CompiledModel::compile(&g, t, &opts).unwrap();
            let mut rng = Lcg::new(k as u64 + 1);
            let input: Vec<Tensor> = g
                .inputs
                .iter()
                .map(|&i| rng.tensor(&g.node(i).ty.shape, -1.0, 1.0))
                .collect();
            let want = model.run(&input).unwrap();
            Case {
                name,
                model,
                input,
                want,
            }
        })
        .collect()
}

/// Runs every case from [`THREADS`] threads (each starting at a different case) for `time`;
/// returns the number of runs. Panics on the first output that differs from the case's
/// single-threaded run.
fn hammer(cases: &Arc<Vec<Case>>, time: Duration) -> usize {
    let runs = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + time;
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (cases, runs, stop) = (cases.clone(), runs.clone(), stop.clone());
            std::thread::spawn(move || {
                let want: Vec<Vec<Vec<u32>>> = cases.iter().map(|c| bits(&c.want)).collect();
                let mut k = i;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let c = &cases[k % cases.len()];
                    let got = c.model.run(&c.input).unwrap();
                    if bits(&got) != want[k % cases.len()] {
                        stop.store(true, Ordering::Relaxed);
                        panic!(
                            "thread {i}: {}: output differs from the single-threaded run",
                            c.name
                        );
                    }
                    runs.fetch_add(1, Ordering::Relaxed);
                    k += 1 + i % 3;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a soak thread failed");
    }
    runs.load(Ordering::Relaxed)
}

#[test]
fn threads_sharing_models_get_identical_outputs_and_memory_stays_flat() {
    let t = Target::detect_host();
    if !t.is_jit() {
        eprintln!("SKIPPED soak: no JIT target runs on this CPU");
        return;
    }
    let cases = Arc::new(cases(t));
    let warm = hammer(&cases, WARM_UP);
    let rss0 = rss_kb();
    let settle = hammer(&cases, STEADY);
    let rss1 = rss_kb();
    let steady = hammer(&cases, STEADY);
    let rss2 = rss_kb();
    let growth = rss2 - rss1;
    eprintln!(
        "soak: {t}, {THREADS} threads, {} models: {warm} warm-up runs, {settle} + {steady} \
         steady runs; resident {rss0} KiB -> {rss1} KiB -> {rss2} KiB (second phase \
         {growth:+} KiB)",
        cases.len()
    );
    assert!(warm > 0 && settle > 0 && steady > 0);
    assert!(
        growth <= RSS_GROWTH_LIMIT_KB,
        "resident memory grew {growth} KiB over {steady} runs (limit {RSS_GROWTH_LIMIT_KB} KiB)"
    );
}
