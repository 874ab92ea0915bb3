//! Measurements of the CPU backend (ignored by default; run in release):
//! `cargo test --release -p mnc-tests --test cpu_bench -- --ignored --nocapture --test-threads 1`
//!
//! - `pointwise_gflops`: GFLOP/s of the pointwise-conv path (GEMM micro-kernel + generated
//!   epilogue) on MobileNetV2 shapes, per JIT target, median of many runs.
//! - `whole_models_vs_onnxruntime`: MobileNetV2 and EfficientNet-B0 (torchvision exports in
//!   `fixtures-full/`): compile time per phase, median latency per target, interleaved with
//!   onnxruntime (`/work/pyenv/bin/python`, one intra-op thread, like mnc) in the same run;
//!   outputs also checked against the exporter's `output.npy` (1e-4 * max|y|).

mod cpu_common;

use cpu_common::*;
use mnc::onnx::{import_file, ImportOptions};
use mnc_ir::{Activation, Conv, Epilogue, Op};
use mnc_runtime::cpu::{CompiledModel, CpuOptions, Target};
use std::process::Command;
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
#[ignore]
fn pointwise_gflops() {
    // (cin, cout, hw): MobileNetV2 expand/project 1x1 convs at 224x224 input.
    let shapes = [
        (16, 96, 112),
        (96, 24, 56),
        (24, 144, 56),
        (144, 24, 56),
        (32, 192, 28),
        (192, 32, 28),
        (64, 384, 14),
        (384, 64, 14),
        (96, 576, 14),
        (576, 96, 14),
        (160, 960, 7),
        (960, 160, 7),
        (320, 1280, 7),
    ];
    println!("pointwise conv (bias + ReLU6 epilogue), GFLOP/s, median of 200 runs, 1 thread (1t) and 2 threads (2t)");
    print!("{:>16}", "shape");
    for t in Target::jit_targets_for_test("cpu_bench::pointwise_gflops") {
        for th in [1, 2] {
            print!(" {:>18}", format!("{} {th}t", t.name()));
        }
    }
    println!();
    for (ci, co, hw) in shapes {
        let c = Conv {
            has_bias: true,
            epilogue: Epilogue {
                residual: false,
                act: Some(Activation::Clip { min: 0.0, max: 6.0 }),
            },
            ..Default::default()
        };
        let (g, feeds) = single_op_graph(
            &Op::Conv(c),
            &[
                (rand_tensor(&[1, ci, hw, hw], 1), false),
                (rand_tensor(&[co, ci, 1, 1], 2), true),
                (rand_tensor(&[co], 3), true),
            ],
        );
        let flops = 2.0 * (ci * co * hw * hw) as f64;
        print!("{:>16}", format!("{ci}->{co}@{hw}"));
        for (t, threads) in Target::jit_targets_for_test("cpu_bench::pointwise_gflops")
            .into_iter()
            .flat_map(|t| [(t, 1), (t, 2)])
        {
            let m = CompiledModel::compile(&g, t, &with_threads(threads)).unwrap();
            for _ in 0..10 {
                m.run(&feeds).unwrap();
            }
            let (_, prof) = m.run_profiled(&feeds).unwrap();
            assert_eq!(prof.len(), 1);
            let times: Vec<f64> = (0..200)
                .map(|_| m.run_profiled(&feeds).unwrap().1[0].1.as_secs_f64())
                .collect();
            print!(" {:>18.1}", flops / median(times) / 1e9);
        }
        println!();
    }
}

/// Options with an explicit thread count (the default is the physical cores).
fn with_threads(threads: usize) -> CpuOptions {
    CpuOptions {
        threads,
        ..Default::default()
    }
}

const ORT_SCRIPT: &str = r#"
import sys, time, numpy as np, onnxruntime as ort
path, inp, iters, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
x = np.load(inp); name = s.get_inputs()[0].name
for _ in range(5): s.run(None, {name: x})
ts = []
for _ in range(iters):
    t = time.perf_counter(); s.run(None, {name: x}); ts.append(time.perf_counter() - t)
print(" ".join(str(v) for v in ts))
"#;

fn ort_times(
    model: &std::path::Path,
    input: &std::path::Path,
    iters: usize,
    threads: usize,
) -> Option<Vec<f64>> {
    let out = Command::new("/work/pyenv/bin/python")
        .args(["-c", ORT_SCRIPT])
        .arg(model)
        .arg(input)
        .arg(iters.to_string())
        .arg(threads.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "onnxruntime failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|s| s.parse().ok())
        .collect()
}

#[test]
#[ignore]
fn whole_models_vs_onnxruntime() {
    let root = mnc_tests::repo_root().join("fixtures-full");
    for name in ["mobilenet_v2_op13", "efficientnet_b0_op13"] {
        let dir = root.join(name);
        let model = dir.join("model.onnx");
        if !model.is_file() {
            println!("{name}: not found, skipped");
            continue;
        }
        let x = mnc::io::read_npy(&dir.join("input.npy")).unwrap();
        let torch = mnc::io::read_npy(&dir.join("output.npy")).unwrap();
        let t0 = Instant::now();
        let mut g = import_file(&model, &ImportOptions::default()).unwrap();
        let t_import = t0.elapsed();
        let t1 = Instant::now();
        mnc_passes::optimize(&mut g, &Default::default()).unwrap();
        let t_passes = t1.elapsed();
        let gflop = {
            let m = CompiledModel::compile(&g, Target::X86_64, &with_threads(1)).unwrap();
            m.report().flops as f64 / 1e9
        };
        println!(
            "== {name}: {gflop:.3} GFLOP; import {:.1} ms, passes {:.1} ms",
            ms(t_import),
            ms(t_passes)
        );
        let mut models = Vec::new();
        for t in Target::jit_targets_for_test("cpu_bench::whole_models_vs_onnxruntime") {
            let m = CompiledModel::compile(&g, t, &with_threads(1)).unwrap();
            let r = m.report();
            println!(
                "  {t}: codegen {:.1} ms (setup {:.1}, plan {:.1}, clif {:.1}, compile {:.1}, finalize {:.1}, other {:.1}), code {} KiB, arena {:.2} MiB (naive {:.2}), {} fallback",
                ms(m.compile_time()),
                ms(r.time_setup),
                ms(r.time_plan),
                ms(r.time_clif),
                ms(r.time_compile),
                ms(r.time_finalize),
                ms(r.time_other),
                r.code_bytes / 1024,
                r.arena_bytes as f64 / 1048576.0,
                r.naive_bytes as f64 / 1048576.0,
                r.fallbacks()
            );
            let y = m.run(std::slice::from_ref(&x)).unwrap();
            let err = check_close(&format!("{name} {t}"), &y[0], &torch, 1e-4).unwrap();
            println!("    max|y - y_torch| = {err:.3e}");
            models.push((format!("{t} (1 thread)"), m));
        }
        if let Some(&host) =
            Target::jit_targets_for_test("cpu_bench::whole_models_vs_onnxruntime").last()
        {
            let opts = CpuOptions {
                threads: 2,
                ..Default::default()
            };
            let m = CompiledModel::compile(&g, host, &opts).unwrap();
            let y = m.run(std::slice::from_ref(&x)).unwrap();
            check_close(&format!("{name} {host} 2 threads"), &y[0], &torch, 1e-4).unwrap();
            models.push((format!("{host} (2 threads)"), m));
        }
        // Interleaved rounds: each target, then onnxruntime.
        let rounds = 3;
        let iters = 15;
        let mut mnc_t: Vec<Vec<f64>> = vec![Vec::new(); models.len()];
        let mut ort_t = Vec::new();
        let mut ort2_t = Vec::new();
        for _ in 0..rounds {
            for (k, (_, m)) in models.iter().enumerate() {
                m.run(std::slice::from_ref(&x)).unwrap();
                for _ in 0..iters {
                    let t = Instant::now();
                    m.run(std::slice::from_ref(&x)).unwrap();
                    mnc_t[k].push(t.elapsed().as_secs_f64());
                }
            }
            if let Some(v) = ort_times(&model, &dir.join("input.npy"), iters, 1) {
                ort_t.extend(v);
            }
            if let Some(v) = ort_times(&model, &dir.join("input.npy"), iters, 2) {
                ort2_t.extend(v);
            }
        }
        let ort_med = if ort_t.is_empty() {
            f64::NAN
        } else {
            median(ort_t)
        };
        println!("  onnxruntime (1 thread): median {:.2} ms", ort_med * 1e3);
        if !ort2_t.is_empty() {
            println!(
                "  onnxruntime (2 threads): median {:.2} ms",
                median(ort2_t) * 1e3
            );
        }
        for ((t, _), v) in models.iter().zip(mnc_t) {
            let med = median(v);
            println!(
                "  mnc {t}: median {:.2} ms = {:.1} GFLOP/s, {:.2}x onnxruntime (1 thread)",
                med * 1e3,
                gflop / med,
                med / ort_med
            );
        }
        // Per-op profile on the host target: the slowest ops.
        for (t, m) in models.iter().rev().take(2) {
            let mut acc: Vec<(String, Duration)> = Vec::new();
            for _ in 0..10 {
                let (_, p) = m.run_profiled(std::slice::from_ref(&x)).unwrap();
                if acc.is_empty() {
                    acc = p;
                } else {
                    for (a, b) in acc.iter_mut().zip(p) {
                        a.1 += b.1;
                    }
                }
            }
            let strategies: std::collections::HashMap<String, (String, u64)> = m
                .report()
                .ops
                .iter()
                .map(|o| (o.node.clone(), (o.strategy.clone(), o.flops)))
                .collect();
            let mut by_kind: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
            for (node, d) in &acc {
                let (s, f) = strategies.get(node).cloned().unwrap_or_default();
                let e = by_kind.entry(s).or_default();
                e.0 += d.as_secs_f64() / 10.0;
                e.1 += f as f64;
            }
            println!("  {t} time by strategy (mean of 10 runs):");
            for (s, (secs, f)) in by_kind {
                println!(
                    "    {s:<20} {:>8.2} ms {:>8.1} GFLOP/s",
                    secs * 1e3,
                    f / secs / 1e9
                );
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Every model under `fixtures-full/` (torchvision/timm exports, several opsets and
/// exporters): imported, optimized, compiled for the host target, run on the exporter's input
/// and compared with its `output.npy` at 1e-4 * max|y|; prints fallbacks and latency.
#[test]
#[ignore]
fn all_full_fixtures_on_host() {
    let root = mnc_tests::repo_root().join("fixtures-full");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    let t = Target::detect_host();
    let mut failures = Vec::new();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let (model, inp, out) = (
            dir.join("model.onnx"),
            dir.join("input.npy"),
            dir.join("output.npy"),
        );
        if !model.is_file() || !inp.is_file() || !out.is_file() {
            continue;
        }
        let mut g = import_file(&model, &ImportOptions::default()).unwrap();
        mnc_passes::optimize(&mut g, &Default::default()).unwrap();
        let m = CompiledModel::compile(&g, t, &with_threads(1)).unwrap();
        let x = mnc::io::read_npy(&inp).unwrap();
        let want = mnc::io::read_npy(&out).unwrap();
        let t0 = Instant::now();
        let y = m.run(std::slice::from_ref(&x)).unwrap();
        let run = t0.elapsed();
        let verdict = check_close(&name, &y[0], &want, 1e-4);
        println!(
            "{name:<36} {t}: {} fallback, compile {:.0} ms, run {:.1} ms, {}",
            m.report().fallbacks(),
            ms(m.compile_time()),
            ms(run),
            match &verdict {
                Ok(e) => format!("max err {e:.2e}"),
                Err(e) => e.clone(),
            }
        );
        if verdict.is_err() || m.report().fallbacks() > 0 {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
