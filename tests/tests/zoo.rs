//! Integration tests of the model zoo and the ONNX writer: the written ONNX re-imports to
//! the identical IR, onnxruntime agrees with the reference executor on written zoo models,
//! activations stay O(1), and the BN-folded form computes what the `--keep-bn` form does.

use mnc::zoo::{build, names, ZooOptions};
use mnc_ir::print::print_graph;
use mnc_ir::{Graph, NodeId, Tensor};
use mnc_tests::{assert_close, python_with_onnxruntime, repo_root};
use std::path::{Path, PathBuf};

fn opts(keep_bn: bool, resolution: usize) -> ZooOptions {
    ZooOptions {
        keep_bn,
        resolution: Some(resolution),
        ..Default::default()
    }
}

fn tmp_dir(test: &str) -> PathBuf {
    mnc_tests::tmp_dir(&format!("zoo-{test}"))
}

/// A deterministic unit-variance input for `g`'s first input.
fn input_for(g: &Graph, seed: u64) -> Tensor {
    let shape = g.node(g.inputs[0]).ty.shape.clone();
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let data = (0..n)
        .map(|_| {
            // xorshift64*, then a sum of 4 uniforms (approximately normal, unit variance)
            let mut acc = 0.0f64;
            for _ in 0..4 {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                let u = (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
                acc += u - 0.5;
            }
            (acc * 3.0f64.sqrt()) as f32
        })
        .collect();
    Tensor::from_f32(shape, data).unwrap()
}

fn std_of(t: &Tensor) -> f64 {
    let v = t.as_f32().unwrap();
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

#[test]
fn written_onnx_reimports_to_identical_ir() {
    let dir = tmp_dir("roundtrip");
    for &name in names() {
        for keep_bn in [false, true] {
            let g = build(name, &opts(keep_bn, 64)).unwrap();
            let path = dir.join(format!("{name}-{keep_bn}.onnx"));
            mnc::export::write_onnx(&g, &path).unwrap();
            let back = mnc::onnx::import_file(&path, &Default::default()).unwrap();
            let (a, b) = (print_graph(&g).unwrap(), print_graph(&back).unwrap());
            if a != b {
                let diff = a
                    .lines()
                    .zip(b.lines())
                    .find(|(x, y)| x != y)
                    .map(|(x, y)| format!("built:    {x}\nimported: {y}"))
                    .unwrap_or_else(|| "lengths differ".into());
                panic!("{name} keep_bn={keep_bn}: IR differs after the ONNX round trip\n{diff}");
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Per-stage standard deviations of a zoo model under the reference executor.
fn stage_stds(g: &Graph, x: &Tensor) -> Vec<(String, f64)> {
    let all = mnc_runtime::reference::run_all(g, std::slice::from_ref(x)).unwrap();
    let mut v: Vec<(String, f64)> = Vec::new();
    let mut ids: Vec<NodeId> = all.keys().copied().collect();
    ids.sort();
    for id in ids {
        let name = &g.node(id).name;
        // Stage outputs: the last node of each `features.N` / `blocks.N` stage, and the logits.
        let stage = name.split('.').take(2).collect::<Vec<_>>().join(".");
        if matches!(
            g.node(id).op,
            mnc_ir::Op::Constant(_) | mnc_ir::Op::Input { .. }
        ) {
            continue;
        }
        if g.node(id).ty.rank() == 4 && g.node(id).ty.shape[2] == 1 {
            continue; // SE squeeze path
        }
        match v.last_mut() {
            Some((s, sd)) if *s == stage => *sd = std_of(&all[&id]),
            _ => v.push((stage, std_of(&all[&id]))),
        }
    }
    v
}

#[test]
fn activations_stay_order_one() {
    // B7 (55 MBConv blocks, 13 in one stage) at a reduced resolution, plus the MobileNets.
    for (name, res) in [
        ("efficientnet_b7", 96),
        ("efficientnet_b0", 128),
        ("mobilenet_v2", 128),
        ("mobilenet_v3_large", 128),
        ("mobilenet_v3_small", 128),
        ("mobilenet_v1", 128),
    ] {
        let g = build(name, &opts(false, res)).unwrap();
        let x = input_for(&g, 1);
        let stds = stage_stds(&g, &x);
        eprintln!(
            "{name}@{res}: {}",
            stds.iter()
                .map(|(s, v)| format!("{s}={v:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for (s, v) in &stds {
            assert!(
                (0.1..=10.0).contains(v),
                "{name}: std of {s} is {v}, not O(1)"
            );
        }
    }
}

#[test]
fn folded_form_computes_the_keep_bn_form() {
    for name in [
        "mobilenet_v2",
        "mobilenet_v3_small",
        "efficientnet_b0",
        "mobilenet_v1",
    ] {
        let keep = build(name, &opts(true, 64)).unwrap();
        let fold = build(name, &opts(false, 64)).unwrap();
        let x = input_for(&keep, 2);
        let a = mnc_runtime::reference::run(&keep, std::slice::from_ref(&x)).unwrap();
        let b = mnc_runtime::reference::run(&fold, std::slice::from_ref(&x)).unwrap();
        assert_close(name, b[0].as_f32().unwrap(), a[0].as_f32().unwrap(), 1e-4);
    }
}

#[test]
fn folded_param_count_is_keep_bn_minus_bn_channels() {
    // Folding replaces each BatchNorm's weight+bias (2C) by the conv bias (C).
    for &name in names() {
        let keep = build(name, &opts(true, 32)).unwrap();
        let fold = build(name, &opts(false, 32)).unwrap();
        let bn_channels: u64 = keep
            .node_ids()
            .into_iter()
            .filter(|&id| matches!(keep.node(id).op, mnc_ir::Op::BatchNorm { .. }))
            .map(|id| keep.node(id).ty.shape[1] as u64)
            .sum();
        let p = |g: &Graph| {
            mnc::cost::analyze(g, &Default::default())
                .unwrap()
                .total_params
        };
        assert_eq!(p(&fold), p(&keep) - bn_channels, "{name}");
        let no_bn = fold
            .node_ids()
            .into_iter()
            .all(|id| !matches!(fold.node(id).op, mnc_ir::Op::BatchNorm { .. }));
        assert!(no_bn, "{name}: folded form has a BatchNorm");
    }
}

/// Runs `ort_run.py` on `model`; `None` when the run was skipped (no Python).
fn onnxruntime_output(py: &Path, model: &Path, x: &Tensor, dir: &Path) -> Vec<f32> {
    let xin = dir.join("x.npy");
    let yout = dir.join("y.npy");
    npyz::to_file_1d(&xin, x.as_f32().unwrap().iter().copied()).unwrap();
    let script = repo_root().join("tests/zoo/ort_run.py");
    let out = std::process::Command::new(py)
        .arg(&script)
        .arg(model)
        .arg(&xin)
        .arg(&yout)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnxruntime failed on {}:\n{}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&yout).unwrap();
    npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<f32>()
        .unwrap()
}

#[test]
fn onnxruntime_matches_reference_executor_on_zoo_models() {
    let Some(py) = python_with_onnxruntime("onnxruntime_matches_reference_executor_on_zoo_models")
    else {
        return;
    };
    let dir = tmp_dir("ort");
    // Every model BN-folded; the --keep-bn form (BatchNormalization nodes) for one model of
    // each family.
    let keep_bn_too = [
        "mobilenet_v1",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "efficientnet_b0",
    ];
    for &name in names() {
        let forms: &[bool] = if keep_bn_too.contains(&name) {
            &[false, true]
        } else {
            &[false]
        };
        for &keep_bn in forms {
            let mut o = opts(keep_bn, 64);
            o.num_classes = 10;
            o.batch = 2;
            let g = build(name, &o).unwrap();
            let model = dir.join(format!("{name}-{keep_bn}.onnx"));
            mnc::export::write_onnx(&g, &model).unwrap();
            let x = input_for(&g, 3);
            let y_ref = mnc_runtime::reference::run(&g, std::slice::from_ref(&x)).unwrap();
            let y = onnxruntime_output(&py, &model, &x, &dir);
            assert_close(
                &format!("{name} keep_bn={keep_bn}"),
                &y,
                y_ref[0].as_f32().unwrap(),
                1e-4,
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A graph using every IR op the writer maps (fused epilogues included), on batch 2.
fn all_ops_graph() -> Graph {
    use mnc_ir::{
        Activation as A, BinaryOp, Conv, DType, Epilogue, Gemm, Op, Pool, PoolKind, Slice,
        SqueezeExcite, TensorType,
    };
    let mut g = Graph::new("all_ops");
    let mut k = 0u32;
    let mut c = |g: &mut Graph, name: &str, shape: Vec<usize>, lo: f32, hi: f32| {
        let n: usize = shape.iter().product();
        k += 1;
        let data = (0..n)
            .map(|i| lo + (hi - lo) * (0.5 + 0.5 * ((i as f32 + 1.0) * 0.731 * k as f32).sin()))
            .collect();
        g.add_constant(name, Tensor::from_f32(shape, data).unwrap())
    };
    let add = |g: &mut Graph, name: &str, op: Op, ins: &[NodeId]| {
        g.add_node_inferred(name, op, ins).unwrap()
    };
    let x = g.add_input("x", TensorType::f32(vec![2, 4, 6, 6]));
    let w = c(&mut g, "conv.weight", vec![4, 2, 3, 3], -0.4, 0.4);
    let b = c(&mut g, "conv.bias", vec![4], -0.1, 0.1);
    let conv = Conv {
        kernel: [3, 3],
        pads: [1, 1, 1, 1],
        group: 2,
        has_bias: true,
        epilogue: Epilogue {
            residual: true,
            act: Some(A::HardSwish),
        },
        ..Default::default()
    };
    let y = add(&mut g, "conv", Op::Conv(conv), &[x, w, b, x]);
    let bn: Vec<NodeId> = [
        ("bn.weight", 0.5, 1.5),
        ("bn.bias", -0.2, 0.2),
        ("bn.mean", -0.1, 0.1),
        ("bn.var", 0.5, 2.0),
    ]
    .iter()
    .map(|&(n, lo, hi)| c(&mut g, n, vec![4], lo, hi))
    .collect();
    let y = add(
        &mut g,
        "bn",
        Op::BatchNorm { epsilon: 1e-3 },
        &[y, bn[0], bn[1], bn[2], bn[3]],
    );
    let s = c(&mut g, "aff.scale", vec![4], 0.5, 1.5);
    let bb = c(&mut g, "aff.bias", vec![4], -0.3, 0.3);
    let y = add(&mut g, "aff", Op::ChannelAffine, &[y, s, bb]);
    let w1 = c(&mut g, "se.fc1.weight", vec![2, 4, 1, 1], -1.0, 1.0);
    let b1 = c(&mut g, "se.fc1.bias", vec![2], -0.1, 0.1);
    let w2 = c(&mut g, "se.fc2.weight", vec![4, 2, 1, 1], -1.0, 1.0);
    let b2 = c(&mut g, "se.fc2.bias", vec![4], -0.1, 0.1);
    let se = SqueezeExcite {
        act: A::Silu,
        gate: A::Sigmoid,
    };
    let y = add(&mut g, "se", Op::SqueezeExcite(se), &[y, w1, b1, w2, b2]);
    let a1 = add(
        &mut g,
        "clip",
        Op::Act(A::Clip {
            min: -1.0,
            max: 1.0,
        }),
        &[y],
    );
    let mp = Pool {
        kind: PoolKind::Max,
        kernel: [3, 3],
        strides: [2, 2],
        pads: [1, 1, 1, 1],
        ceil_mode: true,
        ..Default::default()
    };
    let y = add(&mut g, "maxpool", Op::Pool(mp), &[a1]);
    let ap = Pool {
        kind: PoolKind::Avg,
        kernel: [2, 2],
        strides: [2, 2],
        pads: [1, 1, 0, 0],
        count_include_pad: true,
        ..Default::default()
    };
    let y = add(&mut g, "avgpool", Op::Pool(ap), &[y]);
    let y = add(
        &mut g,
        "reducemean",
        Op::ReduceMean {
            axes: vec![2, 3],
            keepdims: false,
        },
        &[y],
    );
    let gp = add(&mut g, "gap", Op::GlobalAveragePool, &[a1]);
    let gp = add(&mut g, "flatten", Op::Flatten { axis: 1 }, &[gp]);
    let y = add(&mut g, "sub", Op::Binary(BinaryOp::Sub), &[y, gp]);
    let two = c(&mut g, "two", vec![4], 2.0, 2.0);
    let y = add(&mut g, "div", Op::Binary(BinaryOp::Div), &[y, two]);
    let gw1 = c(&mut g, "g1.w", vec![4, 3], -1.0, 1.0);
    let gc1 = c(&mut g, "g1.c", vec![3], -0.5, 0.5);
    let g1 = Gemm {
        alpha: 0.5,
        beta: 2.0,
        has_c: true,
        epilogue: Epilogue {
            residual: false,
            act: Some(A::Relu),
        },
        ..Default::default()
    };
    let y1 = add(&mut g, "gemm1", Op::Gemm(g1), &[y, gw1, gc1]);
    let gw2 = c(&mut g, "g2.w", vec![3, 4], -1.0, 1.0);
    let g2 = Gemm {
        trans_b: true,
        epilogue: Epilogue {
            residual: true,
            act: Some(A::Sigmoid),
        },
        ..Default::default()
    };
    let y = add(&mut g, "gemm2", Op::Gemm(g2), &[y, gw2, y1]);
    let y = add(&mut g, "unsqueeze", Op::Unsqueeze { axes: vec![0] }, &[y]);
    let mw = c(&mut g, "mm.w", vec![3, 5], -1.0, 1.0);
    let y = add(&mut g, "matmul", Op::MatMul, &[y, mw]);
    let y = add(&mut g, "squeeze", Op::Squeeze { axes: vec![0] }, &[y]);
    let y = add(
        &mut g,
        "transpose",
        Op::Transpose { perm: vec![1, 0] },
        &[y],
    );
    let extra = c(&mut g, "extra", vec![1, 2], -1.0, 1.0);
    let y = add(&mut g, "concat", Op::Concat { axis: 0 }, &[y, extra]);
    let sl = Slice {
        axes: vec![0],
        starts: vec![5],
        ends: vec![-1],
        steps: vec![-2],
    };
    let y = add(&mut g, "slice", Op::Slice(sl), &[y]);
    let idx = g.add_constant("idx", Tensor::from_i64(vec![2], vec![1, -2]).unwrap());
    let y = add(&mut g, "gather", Op::Gather { axis: 1 }, &[y, idx]);
    let y = add(
        &mut g,
        "pad",
        Op::Pad {
            pads: vec![1, 0, 0, 2],
            value: 0.5,
        },
        &[y],
    );
    let y = add(&mut g, "reshape", Op::Reshape { shape: vec![2, 8] }, &[y]);
    let y = add(
        &mut g,
        "hsig",
        Op::Act(A::HardSigmoid {
            alpha: 0.3,
            beta: 0.4,
        }),
        &[y],
    );
    let y = add(&mut g, "silu", Op::Act(A::Silu), &[y]);
    let y = add(&mut g, "softmax", Op::Softmax { axis: 1 }, &[y]);
    let y = add(&mut g, "identity", Op::Identity, &[y]);
    let y = add(&mut g, "dropout", Op::Dropout, &[y]);
    let y = add(&mut g, "cast", Op::Cast { to: DType::F32 }, &[y]);
    let z = add(&mut g, "relu", Op::Act(A::Relu), &[a1]);
    g.add_output("y", y);
    g.add_output("z", z);
    mnc_ir::verify::verify(&g).unwrap();
    g
}

#[test]
fn onnxruntime_matches_reference_executor_on_every_op() {
    let Some(py) = python_with_onnxruntime("onnxruntime_matches_reference_executor_on_every_op")
    else {
        return;
    };
    let dir = tmp_dir("allops");
    let g = all_ops_graph();
    let model = dir.join("all_ops.onnx");
    mnc::export::write_onnx(&g, &model).unwrap();
    let x = input_for(&g, 4);
    let y_ref = mnc_runtime::reference::run(&g, std::slice::from_ref(&x)).unwrap();
    let y = onnxruntime_output(&py, &model, &x, &dir);
    assert_close("all_ops", &y, y_ref[0].as_f32().unwrap(), 1e-5);
    // The second output (the clipped SE block through Relu) checks the conv/BN/affine/SE chain
    // directly rather than through pooling.
    let z_model = dir.join("all_ops_z.onnx");
    let mut gz = g.clone();
    gz.outputs.reverse();
    mnc::export::write_onnx(&gz, &z_model).unwrap();
    let z = onnxruntime_output(&py, &z_model, &x, &dir);
    assert_close("all_ops z", &z, y_ref[1].as_f32().unwrap(), 1e-5);
    std::fs::remove_dir_all(&dir).ok();
}
