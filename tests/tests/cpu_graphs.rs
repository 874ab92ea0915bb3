//! The CPU backend on whole graphs: the hand-built MobileNetV2 / MobileNetV3 / EfficientNet
//! blocks of `mnc_passes::samples` and every committed ONNX fixture, imported and optimized
//! with `mnc_passes::optimize`, on every JIT target the host runs (Cranelift's verifier on).
//! Each output matches the reference executor on the same optimized graph to
//! `max|y - y_ref| <= 1e-4 * max|y_ref|` per element, and the exporter's `output.npy` to the
//! same tolerance. The fixtures must compile without a single fallback op. A compiled model
//! run from several threads at once gives identical results.

mod cpu_common;

use cpu_common::*;
use mnc::onnx::{import_file, ImportOptions};
use mnc_ir::{Graph, Tensor};
use mnc_runtime::cpu::{CompiledModel, Target};
use mnc_tests::fixtures;
use std::path::Path;

const TOL: f32 = 1e-4;

/// The full pipeline as `mnc run --target x86_64-avx2` runs it (verified after every pass).
fn optimized(g: Graph) -> Graph {
    mnc::exec::optimized(g, Target::X86_64Avx2).unwrap()
}

/// Compiles `g` for every host JIT target, checks it against `want`, returns the fallbacks.
fn check_graph(what: &str, g: &Graph, x: &[Tensor], want: &[Tensor]) -> usize {
    let mut fallbacks = 0;
    for t in Target::jit_targets_for_test(what) {
        let m =
            CompiledModel::compile(g, t, &verified()).unwrap_or_else(|e| panic!("{what} {t}: {e}"));
        fallbacks += m.report().fallbacks();
        let got = m.run(x).unwrap_or_else(|e| panic!("{what} {t}: {e}"));
        assert_eq!(got.len(), want.len());
        for (k, (y, r)) in got.iter().zip(want).enumerate() {
            check_close(&format!("{what} {t} output {k}"), y, r, TOL)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    fallbacks
}

#[test]
fn sample_blocks() {
    for (name, g) in mnc_tests::sample_blocks() {
        let x = feeds(&g, 5);
        let want = mnc_runtime::reference::run(&g, &x).unwrap();
        // unoptimized graph (BatchNorm, standalone activations, Add, Mul...) and optimized one
        check_graph(&format!("{name} raw"), &g, &x, &want);
        let fb = check_graph(&format!("{name} optimized"), &optimized(g), &x, &want);
        assert_eq!(fb, 0, "{name}");
    }
}

fn fixture_input(g: &Graph, dir: &Path) -> Vec<Tensor> {
    let npy = dir.join("input.npy");
    if npy.is_file() {
        vec![mnc::io::read_npy(&npy).unwrap()]
    } else {
        feeds(g, 3)
    }
}

#[test]
fn committed_fixtures() {
    let all = fixtures();
    assert!(!all.is_empty(), "no fixtures found");
    for dir in all {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let g = import_file(&dir.join("model.onnx"), &ImportOptions::default()).unwrap();
        let g = optimized(g);
        let x = fixture_input(&g, &dir);
        let want = mnc_runtime::reference::run(&g, &x).unwrap();
        let fb = check_graph(&name, &g, &x, &want);
        assert_eq!(fb, 0, "{name}: fallback ops");
        // and the exporter's own output
        let npy = dir.join("output.npy");
        if npy.is_file() {
            let torch = mnc::io::read_npy(&npy).unwrap();
            let m = CompiledModel::compile(&g, Target::detect_host(), &Default::default()).unwrap();
            if m.target().is_jit() {
                let got = m.run(&x).unwrap();
                check_close(&format!("{name} vs output.npy"), &got[0], &torch, TOL).unwrap();
            }
        }
    }
}

#[test]
fn fixture_respecialized_to_batch_2() {
    let dir = mnc_tests::fixtures_dir().join("mnv2_w035_op13");
    let g = import_file(&dir.join("model.onnx"), &ImportOptions { batch: Some(2) }).unwrap();
    let g = optimized(g);
    assert_eq!(g.node(g.inputs[0]).ty.shape[0], 2);
    let x = feeds(&g, 9);
    let want = mnc_runtime::reference::run(&g, &x).unwrap();
    assert_eq!(check_graph("mnv2 batch 2", &g, &x, &want), 0);
}

#[test]
fn concurrent_runs_are_identical() {
    let g = optimized(mnc_passes::samples::efficientnet_mbconv_block(3).unwrap());
    let m = CompiledModel::compile(&g, Target::detect_host(), &Default::default()).unwrap();
    if !m.target().is_jit() {
        eprintln!("SKIPPED concurrent_runs_are_identical: no JIT target runs on this CPU");
        return;
    }
    let inputs: Vec<Vec<Tensor>> = (0..4).map(|s| feeds(&g, 100 + s)).collect();
    let serial: Vec<Vec<Tensor>> = inputs.iter().map(|x| m.run(x).unwrap()).collect();
    std::thread::scope(|s| {
        let hs: Vec<_> = inputs
            .iter()
            .map(|x| {
                let m = &m;
                s.spawn(move || (0..5).map(|_| m.run(x).unwrap()).collect::<Vec<_>>())
            })
            .collect();
        for (h, want) in hs.into_iter().zip(&serial) {
            for got in h.join().unwrap() {
                assert_eq!(&got, want);
            }
        }
    });
}

#[test]
fn every_thread_count_gives_identical_results() {
    // The kernels split their work into tasks run by the caller and pool threads; every
    // element is still computed by the same code, so outputs must match the 1-thread run bit
    // for bit, whatever the thread count and however many runs share the pool.
    let dir = mnc_tests::fixtures_dir().join("mnv2_w035_op13");
    let g =
        optimized(import_file(&dir.join("model.onnx"), &ImportOptions { batch: Some(2) }).unwrap());
    let x = feeds(&g, 21);
    for t in Target::jit_targets_for_test("cpu_graphs::every_thread_count_gives_identical_results")
    {
        let single = mnc_runtime::cpu::CpuOptions {
            threads: 1,
            ..verified()
        };
        let one = CompiledModel::compile(&g, t, &single).unwrap();
        let want = one.run(&x).unwrap();
        // An absurd thread count is capped at what the pool can seat (no overflow).
        let absurd = mnc_runtime::cpu::CpuOptions {
            threads: usize::MAX,
            ..verified()
        };
        let capped = CompiledModel::compile(&g, t, &absurd).unwrap();
        assert_eq!(
            capped.report().threads,
            mnc_targets::cpu::par::MAX_HELPERS + 1
        );
        for threads in [2, 3, 5] {
            let opts = mnc_runtime::cpu::CpuOptions {
                threads,
                ..verified()
            };
            let many = CompiledModel::compile(&g, t, &opts).unwrap();
            assert_eq!(many.report().threads, threads);
            // several runs, also from two threads at once (one of them then finds the pool
            // busy and runs its tasks serially)
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..2)
                    .map(|_| s.spawn(|| (0..3).map(|_| many.run(&x).unwrap()).collect::<Vec<_>>()))
                    .collect();
                for h in hs {
                    for got in h.join().unwrap() {
                        assert_eq!(got, want, "{t}, {threads} threads");
                    }
                }
            });
        }
    }
}

#[test]
fn a_batch_split_by_image_matches_the_whole_batch_run() {
    // Batch 5: with 2 threads, 4 images run two at a time and the fifth on its own with the
    // ops split across threads; with 3, 3 at once and 2 after. Every split run must equal
    // the 1-thread split run bit for bit, and match the reference and the unsplit run.
    let dir = mnc_tests::fixtures_dir().join("mnv2_w035_op13");
    let g =
        optimized(import_file(&dir.join("model.onnx"), &ImportOptions { batch: Some(5) }).unwrap());
    let x = feeds(&g, 31);
    let want = mnc_runtime::reference::run(&g, &x).unwrap();
    let plain = |threads, split_batch| mnc_runtime::cpu::CpuOptions {
        threads,
        split_batch,
        guards: false,
        ..verified()
    };
    for t in Target::jit_targets_for_test("cpu_graphs::a_batch_split_by_image") {
        let whole = CompiledModel::compile(&g, t, &plain(2, false)).unwrap();
        assert_eq!(whole.report().images, 1);
        assert!(
            whole.report().batch_plan.contains("split off"),
            "{}",
            whole.report().batch_plan
        );
        let unsplit = whole.run(&x).unwrap();
        check_close(&format!("{t} unsplit"), &unsplit[0], &want[0], TOL).unwrap();
        let one = CompiledModel::compile(&g, t, &plain(1, true)).unwrap();
        assert_eq!(one.report().images, 5);
        assert!(one.report().to_text().contains("5 one-image runs"));
        let first = one.run(&x).unwrap();
        // The classifier (the ops after the flatten) runs once over the batch: the same
        // FMA chains as per image, so the same bits; canaries and guard pages hold.
        let head: Vec<&str> = one
            .report()
            .ops
            .iter()
            .filter(|o| o.per_batch)
            .map(|o| o.op)
            .collect();
        assert!(head.contains(&"Gemm"), "{}", one.report().to_text());
        assert!(one
            .report()
            .batch_plan
            .contains("the head after it once over the batch"));
        let per_image = mnc_runtime::cpu::CpuOptions {
            batch_head: false,
            ..plain(1, true)
        };
        let no_head = CompiledModel::compile(&g, t, &per_image).unwrap();
        assert!(no_head.report().ops.iter().all(|o| !o.per_batch));
        assert_eq!(
            no_head.run(&x).unwrap(),
            first,
            "{t}: head once vs per image"
        );
        let guarded = CompiledModel::compile(&g, t, &verified()).unwrap();
        assert_eq!(guarded.run(&x).unwrap(), first, "{t}: guarded");
        assert_eq!(
            guarded
                .run_guarded(&x, mnc_runtime::cpu::GuardPlacement::AgainstEnd)
                .unwrap(),
            first,
            "{t}: guard pages"
        );
        check_close(&format!("{t} split"), &first[0], &want[0], TOL).unwrap();
        check_close(
            &format!("{t} split vs unsplit"),
            &first[0],
            &unsplit[0],
            TOL,
        )
        .unwrap();
        for threads in [2, 3] {
            let m = CompiledModel::compile(&g, t, &plain(threads, true)).unwrap();
            for _ in 0..3 {
                assert_eq!(m.run(&x).unwrap(), first, "{t}, {threads} threads");
            }
            // Profiled runs (images in order) give the same outputs, one time per step.
            let (got, times) = m.run_profiled(&x).unwrap();
            assert_eq!(got, first);
            assert_eq!(
                times.len(),
                m.report()
                    .ops
                    .iter()
                    .filter(|o| o.strategy != "view")
                    .count()
            );
        }
    }
}

#[test]
fn a_graph_that_mixes_images_or_is_small_runs_the_whole_batch() {
    // Softmax over the batch axis: every image's output depends on the others.
    let mut g = Graph::new("mix");
    let x = g.add_input("x", mnc_ir::TensorType::f32(vec![3, 4]));
    let s = g
        .add_node_inferred("softmax", mnc_ir::Op::Softmax { axis: 0 }, &[x])
        .unwrap();
    g.add_output("y", s);
    let x = feeds(&g, 5);
    let want = mnc_runtime::reference::run(&g, &x).unwrap();
    for t in Target::jit_targets_for_test("cpu_graphs::a_graph_that_mixes_images") {
        let m = CompiledModel::compile(&g, t, &verified()).unwrap();
        assert_eq!(m.report().images, 1);
        let plan = &m.report().batch_plan;
        assert!(
            plan.contains("not split") && plan.contains("'softmax'"),
            "{plan}"
        );
        check_close(&format!("{t}"), &m.run(&x).unwrap()[0], &want[0], TOL).unwrap();
    }
    // Over axis 1 the images are apart, but one image is too little work for a run of its
    // own.
    g.node_mut(s).op = mnc_ir::Op::Softmax { axis: 1 };
    let want = mnc_runtime::reference::run(&g, &x).unwrap();
    for t in Target::jit_targets_for_test("cpu_graphs::a_graph_that_mixes_images") {
        let m = CompiledModel::compile(&g, t, &verified()).unwrap();
        assert_eq!(m.report().images, 1);
        let plan = &m.report().batch_plan;
        assert!(plan.contains("that pay for a run per image"), "{plan}");
        check_close(&format!("{t}"), &m.run(&x).unwrap()[0], &want[0], TOL).unwrap();
    }
}

#[test]
fn in_place_execution_changes_nothing_but_the_arena() {
    // Every committed fixture: in-place on (the default) gives bit-identical outputs to off,
    // and does take over buffers (residual convs, SqueezeExcite).
    let mut taken = 0;
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let g = optimized(import_file(&dir.join("model.onnx"), &ImportOptions::default()).unwrap());
        let x = fixture_input(&g, &dir);
        for t in Target::jit_targets_for_test(
            "cpu_graphs::in_place_execution_changes_nothing_but_the_arena",
        ) {
            let on = CompiledModel::compile(&g, t, &verified()).unwrap();
            let off_opts = mnc_runtime::cpu::CpuOptions {
                in_place: false,
                ..verified()
            };
            let off = CompiledModel::compile(&g, t, &off_opts).unwrap();
            assert_eq!(off.report().in_place_ops, 0);
            assert!(
                on.report().arena_bytes <= off.report().arena_bytes,
                "{name} {t}"
            );
            taken += on.report().in_place_ops;
            assert_eq!(on.run(&x).unwrap(), off.run(&x).unwrap(), "{name} {t}");
        }
    }
    assert!(taken > 0, "no fixture ran any op in place");
}

#[test]
fn in_place_is_refused_where_the_op_still_reads_the_input() {
    use mnc_ir::{Activation, BinaryOp, Conv, Epilogue, Op};
    // conv(x) + x with the residual fused: the residual is the conv's own input, which the
    // GEMM kernel reads across all tiles, so the output must not overwrite it. Then x + x (same
    // buffer in both slots, elementwise: in place is fine) and an activation of the result.
    let mut g = Graph::new("self_residual");
    let x = g.add_input("x", mnc_ir::TensorType::f32(vec![1, 16, 9, 9]));
    // 1x1: the GEMM reads x in place (a 3x3 conv would read an im2col copy of it).
    let w = g.add_constant("w", rand_tensor(&[16, 16, 1, 1], 3));
    let c = Conv {
        kernel: [1, 1],
        epilogue: Epilogue {
            residual: true,
            act: Some(Activation::Relu),
        },
        ..Default::default()
    };
    let y = g
        .add_node_inferred("conv", Op::Conv(c), &[x, w, x])
        .unwrap();
    let s = g
        .add_node_inferred("double", Op::Binary(BinaryOp::Add), &[y, y])
        .unwrap();
    let a = g
        .add_node_inferred("act", Op::Act(Activation::Silu), &[s])
        .unwrap();
    g.add_output("y", a);
    let xs = feeds(&g, 7);
    let want = mnc_runtime::reference::run(&g, &xs).unwrap();
    assert_eq!(check_graph("self_residual", &g, &xs, &want), 0);
    for t in Target::jit_targets_for_test(
        "cpu_graphs::in_place_is_refused_where_the_op_still_reads_the_input",
    ) {
        let m = CompiledModel::compile(&g, t, &verified()).unwrap();
        // The Add and the activation run in place; the conv does not.
        assert_eq!(m.report().in_place_ops, 2, "{t}");
    }
}

/// Replays `p`'s steps over its arena, byte range by byte range: graph inputs are written
/// first, each step reads its arena inputs and then writes its output. Every range a step
/// reads (and every output at the end) must still hold the value the graph says it reads (a
/// view holds what its source holds): a plan that gives two values live at the same time
/// overlapping bytes fails here. Activations must also stay below the scratch area.
fn replay_arena(what: &str, g: &Graph, p: &mnc_targets::cpu::CpuProgram) {
    use mnc_targets::cpu::Loc;
    let id_of = |name: &str| {
        let ids: Vec<_> = g
            .node_ids()
            .into_iter()
            .filter(|&i| g.node(i).name == name)
            .collect();
        assert_eq!(ids.len(), 1, "{what}: node name '{name}' is not unique");
        ids[0]
    };
    let stepped: std::collections::HashSet<_> = p.steps.iter().map(|s| id_of(&s.node)).collect();
    // The value whose bytes `id` reads: itself, or a view's source.
    let holder = |mut id: mnc_ir::NodeId| {
        while !stepped.contains(&id) && !g.inputs.contains(&id) {
            id = g.inputs(id)[0];
        }
        id
    };
    let mut held: Vec<(usize, usize, mnc_ir::NodeId)> = Vec::new();
    let write = |held: &mut Vec<(usize, usize, mnc_ir::NodeId)>, lo: usize, hi: usize, v| {
        let mut next = Vec::new();
        for &(a, b, w) in held.iter() {
            if b <= lo || hi <= a {
                next.push((a, b, w));
            } else {
                if a < lo {
                    next.push((a, lo, w));
                }
                if hi < b {
                    next.push((hi, b, w));
                }
            }
        }
        next.push((lo, hi, v));
        *held = next;
    };
    let read = |held: &[(usize, usize, mnc_ir::NodeId)], lo: usize, hi: usize, v, at: &str| {
        let covered: usize = held
            .iter()
            .filter(|&&(a, b, _)| a < hi && lo < b)
            .map(|&(a, b, w)| {
                assert_eq!(
                    w,
                    v,
                    "{what}: {at} reads '{}' at [{lo}, {hi}) but bytes [{a}, {b}) hold '{}'",
                    g.node(v).name,
                    g.node(w).name
                );
                b.min(hi) - a.max(lo)
            })
            .sum();
        assert_eq!(covered, hi - lo, "{what}: {at} reads unwritten bytes");
    };
    let scratch = p.scratch.0;
    for ((_, ty, loc), &id) in p.inputs.iter().zip(&g.inputs) {
        if let Loc::Arena(o) = *loc {
            assert!(
                o + ty.bytes() <= scratch,
                "{what}: input reaches the scratch"
            );
            write(&mut held, o, o + ty.bytes(), id);
        }
    }
    for s in &p.steps {
        let id = id_of(&s.node);
        for (k, &i) in g.inputs(id).iter().enumerate() {
            if let Loc::Arena(o) = s.args[1 + k] {
                read(&held, o, o + s.arg_bytes[1 + k], holder(i), &s.node);
            }
        }
        if let Loc::Arena(o) = s.args[0] {
            assert!(
                o + s.arg_bytes[0] <= scratch,
                "{what}: '{}' reaches the scratch",
                s.node
            );
            write(&mut held, o, o + s.arg_bytes[0], id);
        }
    }
    for ((_, ty, loc), out) in p.outputs.iter().zip(&g.outputs) {
        if let Loc::Arena(o) = *loc {
            read(&held, o, o + ty.bytes(), holder(out.node), "the end");
        }
    }
}

#[test]
fn the_cpu_arena_never_overwrites_a_live_value() {
    // Every committed fixture and sample block, in place on and off, canaries on and off: the
    // program's arena locations replay correctly, and they are the offsets of the shared
    // memory plan in its report, which passes its own check.
    let mut graphs: Vec<(String, Graph)> = mnc_tests::sample_blocks()
        .into_iter()
        .flat_map(|(name, g)| {
            [
                (format!("{name} raw"), g.clone()),
                (name.to_string(), optimized(g)),
            ]
        })
        .collect();
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let g = import_file(&dir.join("model.onnx"), &ImportOptions::default()).unwrap();
        graphs.push((name, optimized(g)));
    }
    assert!(graphs.len() > 6);
    for (name, g) in &graphs {
        for (in_place, guards) in [(true, false), (true, true), (false, false)] {
            let opts = mnc_runtime::cpu::CpuOptions {
                in_place,
                guards,
                ..Default::default()
            };
            let what = format!("{name} in_place={in_place} guards={guards}");
            let p = mnc_targets::cpu::compile(g, Target::X86_64Avx2, &opts).unwrap();
            assert_eq!(p.images, 1, "{what}");
            replay_arena(&what, g, &p);
            let m = &p.report.memory;
            m.check().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(m.padding, p.guard, "{what}");
            for v in &m.values {
                let name = &g.node(v.node).name;
                if let Some(s) = p.steps.iter().find(|s| &s.node == name) {
                    let want = mnc_targets::cpu::Loc::Arena(m.buffers[v.buffer].offset);
                    assert_eq!(s.args[0], want, "{what}: {name}");
                }
            }
        }
    }
}
