//! Helpers shared by the CPU backend's integration tests: single-op graphs, deterministic
//! random tensors, and the per-element tolerance check against the reference kernels.

#![allow(dead_code)]

use mnc_ir::eval::eval_op;
use mnc_ir::{Graph, Op, Tensor, TensorType};
use mnc_runtime::cpu::{CompiledModel, CpuOptions, Target};

/// Deterministic values in [-1, 1) (the xorshift stream of `mnc_passes::samples::Lcg`).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = mnc_passes::samples::Lcg::new(seed);
    (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

pub fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32(shape.to_vec(), rand_vec(n, seed)).unwrap()
}

/// One random input per graph input (seeds `seed`, `seed + 1`, ...).
pub fn feeds(g: &Graph, seed: u64) -> Vec<Tensor> {
    g.inputs
        .iter()
        .enumerate()
        .map(|(k, &i)| rand_tensor(&g.node(i).ty.shape, seed + k as u64))
        .collect()
}

/// Options with Cranelift's verifier on every generated function and guard canaries around
/// every buffer (an out-of-bounds write fails the run); one thread, in-place execution and
/// the split of a batch by image with its head once over the batch on (the defaults; guard
/// mode runs the images in order).
pub fn verified() -> CpuOptions {
    CpuOptions {
        verify: true,
        keep_clif: false,
        guards: true,
        in_place: true,
        flush_denormals: true,
        split_batch: true,
        batch_head: true,
        min_image_flops: mnc_targets::cpu::MIN_IMAGE_FLOPS,
        threads: 1,
        thread_choice: true,
    }
}

/// `max|y - y_ref| <= rel * max|y_ref|` per element, with equal shapes; returns the error.
pub fn check_close(what: &str, y: &Tensor, y_ref: &Tensor, rel: f32) -> Result<f32, String> {
    if y.shape != y_ref.shape {
        return Err(format!("{what}: shape {:?} vs {:?}", y.shape, y_ref.shape));
    }
    let (a, b) = (y.as_f32().unwrap(), y_ref.as_f32().unwrap());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut worst = 0.0f32;
    for (i, (p, q)) in a.iter().zip(b).enumerate() {
        let d = (p - q).abs();
        let ok = d <= rel * scale || (p.is_nan() && q.is_nan());
        if !ok {
            return Err(format!(
                "{what}: element {i}: got {p}, want {q} (tol {rel} * {scale})"
            ));
        }
        worst = worst.max(d);
    }
    Ok(worst)
}

/// One op applied to `inputs`; each input is a graph input (`false`) or a constant (`true`).
pub fn single_op_graph(op: &Op, inputs: &[(Tensor, bool)]) -> (Graph, Vec<Tensor>) {
    let mut g = Graph::new("single");
    let mut ids = Vec::new();
    let mut feeds = Vec::new();
    for (k, (t, is_const)) in inputs.iter().enumerate() {
        if *is_const {
            ids.push(g.add_constant(format!("c{k}"), t.clone()));
        } else {
            ids.push(g.add_input(format!("x{k}"), TensorType::new(t.dtype(), t.shape.clone())));
            feeds.push(t.clone());
        }
    }
    let y = g.add_node_inferred("op", op.clone(), &ids).unwrap();
    g.add_output("y", y);
    mnc_ir::verify::verify(&g).unwrap();
    (g, feeds)
}

/// Compiles the single-op graph for every JIT target the host runs and compares the result
/// with `eval_op` under `rel`. Returns the number of fallback ops seen (per target summed).
pub fn check_op_all_targets(op: &Op, inputs: &[(Tensor, bool)], rel: f32) -> Result<usize, String> {
    check_op_all_targets_with(op, inputs, rel, &verified())
}

/// [`check_op_all_targets`] with the given compile options (e.g. another thread count).
pub fn check_op_all_targets_with(
    op: &Op,
    inputs: &[(Tensor, bool)],
    rel: f32,
    opts: &CpuOptions,
) -> Result<usize, String> {
    on_every_target(op, inputs, opts, |t, got, want| {
        check_close(&format!("{t} {op:?}"), got, want, rel).map(|_| ())
    })
}

/// Compiles the single-op graph for every JIT target the host runs, runs it and hands its
/// output and `eval_op`'s to `check`. Returns the number of fallback ops seen (summed).
fn on_every_target(
    op: &Op,
    inputs: &[(Tensor, bool)],
    opts: &CpuOptions,
    check: impl Fn(Target, &Tensor, &Tensor) -> Result<(), String>,
) -> Result<usize, String> {
    let refs: Vec<&Tensor> = inputs.iter().map(|(t, _)| t).collect();
    let want = eval_op(op, &refs).map_err(|e| e.to_string())?;
    let (g, feeds) = single_op_graph(op, inputs);
    let mut fallbacks = 0;
    for t in Target::jit_targets_for_test(op.kind()) {
        let m = CompiledModel::compile(&g, t, opts).map_err(|e| format!("{t}: {e}"))?;
        fallbacks += m.report().fallbacks();
        let got = m.run(&feeds).map_err(|e| format!("{t}: {e}"))?;
        check(t, &got[0], &want)?;
    }
    Ok(fallbacks)
}

/// [`check_op_all_targets_with`] for ops with one right answer (integer outputs): the
/// compiled result must equal `eval_op`'s element for element.
pub fn check_op_exact(
    op: &Op,
    inputs: &[(Tensor, bool)],
    opts: &CpuOptions,
) -> Result<usize, String> {
    on_every_target(op, inputs, opts, |t, got, want| {
        if got == want {
            return Ok(());
        }
        let (a, b) = (got.le_bytes(), want.le_bytes());
        let i = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(0);
        Err(format!(
            "{t} {}: output differs from the reference (first at byte {i}: {} vs {}; shape {:?})",
            op.kind(),
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
            want.shape
        ))
    })
}
