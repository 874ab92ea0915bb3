//! Model loading for the CLI: a model is named by an ONNX file path, by a compiled `.mnc`
//! artifact ([`crate::artifact`], recognized by its magic bytes, see [`load_any`]) or by
//! `zoo:NAME` (a built-in architecture from [`crate::zoo`], with deterministic random weights).

use anyhow::{Context, Result};
use mnc_ir::Graph;
use std::path::Path;

/// Prefix that selects a built-in zoo model instead of a file.
pub const ZOO_PREFIX: &str = "zoo:";

/// Loads a model: `zoo:NAME` builds the zoo architecture; anything else is imported as an ONNX
/// file. `batch` overrides the batch dimension (default: the model's own static batch, or 1).
pub fn load(spec: &str, batch: Option<usize>) -> Result<Graph> {
    if let Some(name) = spec.strip_prefix(ZOO_PREFIX) {
        let opts = crate::zoo::ZooOptions {
            batch: batch.unwrap_or(1),
            ..Default::default()
        };
        return crate::zoo::build(name, &opts)
            .with_context(|| format!("building zoo model '{name}'"));
    }
    let opts = crate::onnx::ImportOptions { batch };
    Ok(crate::onnx::import_file(Path::new(spec), &opts)?)
}

/// Loads a model like [`load`], but also accepts a compiled `.mnc` artifact (recognized by its
/// magic bytes, whatever the file's extension; a `.mnc` file without them is refused as
/// "not an mnc artifact" instead of being parsed as ONNX). For an artifact it returns the stored optimized
/// graph and `Some(target)` it was compiled for; for ONNX files and zoo models the imported,
/// unoptimized graph and `None`. An artifact's batch is fixed: a different `batch` is refused.
pub fn load_any(spec: &str, batch: Option<usize>) -> Result<(Graph, Option<mnc_targets::Target>)> {
    let path = Path::new(spec);
    let named_mnc = path
        .extension()
        .is_some_and(|e| e == crate::artifact::EXTENSION);
    if !spec.starts_with(ZOO_PREFIX) && (named_mnc || crate::artifact::is_artifact(path)) {
        let art = crate::artifact::read(path)?;
        if let Some(b) = batch {
            if b != art.batch {
                anyhow::bail!(
                    "{spec}: the artifact was compiled for batch {}, not {b}; recompile it with \
                     --batch {b}",
                    art.batch
                );
            }
        }
        return Ok((art.graph, Some(art.target)));
    }
    Ok((load(spec, batch)?, None))
}

/// Refuses to run an artifact compiled for `stored` on another `target`.
pub fn check_artifact_target(
    stored: mnc_targets::Target,
    target: mnc_targets::Target,
) -> Result<()> {
    if stored != target {
        anyhow::bail!(
            "the artifact was compiled for target {stored}, not {target}; run it with \
             --target {stored} or compile the ONNX model for {target}"
        );
    }
    Ok(())
}

/// `--nchw-input`: every 4-D graph input, which the model reads channels-last (NHWC, as
/// Keras/tf2onnx exports do), is taken channels-first (NCHW) instead: its type becomes
/// `[N, C, H, W]` and a `Transpose(0,2,3,1)` after it restores what the model reads. The
/// canonicalization passes then cancel that transpose against the model's own input
/// transpose, so a compiled NHWC model runs with no transpose at all (the reference target
/// runs the graph as it is, transpose included). Returns how many inputs changed.
pub fn inputs_to_nchw(g: &mut Graph) -> Result<usize> {
    let mut n = 0;
    for id in g.inputs.clone() {
        let ty = g.node(id).ty.clone();
        if ty.rank() != 4 {
            continue;
        }
        let s = &ty.shape;
        let nchw = mnc_ir::TensorType::new(ty.dtype, vec![s[0], s[3], s[1], s[2]]);
        let name = g.unique_name(&format!("{}/from_nchw", g.node(id).name));
        g.node_mut(id).ty = nchw;
        let t = g
            .add_node_inferred(
                name,
                mnc_ir::Op::Transpose {
                    perm: vec![0, 2, 3, 1],
                },
                &[id],
            )
            .map_err(|e| anyhow::anyhow!("--nchw-input: {e}"))?;
        // Every use of the input (edges and graph outputs) now reads the transpose.
        g.replace_all_uses(id, t);
        g.set_inputs(t, &[id]);
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Executable;
    use mnc_targets::Target;

    /// An artifact loads through `load_any`, runs like the ONNX model, and is refused for
    /// another batch or target.
    #[test]
    fn load_any_reads_artifacts_and_onnx() {
        let dir = mnc_tests::fixtures_dir().join("mnv3s_w035_b3_op17");
        let onnx = dir.join("model.onnx");
        let onnx = onnx.to_str().unwrap();
        let (g, stored) = load_any(onnx, None).unwrap();
        assert_eq!(stored, None);
        let batch = g.node(g.inputs[0]).ty.shape[0];
        let target = Target::Reference;
        let opt = crate::exec::optimized(g.clone(), target).unwrap();
        let path = mnc_tests::tmp_dir("model-load-any").join("m.mnc");
        crate::artifact::write(&path, &opt, target, batch, "h").unwrap();
        let p = path.to_str().unwrap();
        let (g2, stored) = load_any(p, None).unwrap();
        assert_eq!(stored, Some(target));
        assert_eq!(
            mnc_ir::print::print_graph(&g2).unwrap(),
            mnc_ir::print::print_graph(&opt).unwrap()
        );
        let e = load_any(p, Some(batch + 1)).unwrap_err().to_string();
        assert!(e.contains("compiled for batch"), "{e}");
        let e = check_artifact_target(Target::Reference, Target::X86_64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("compiled for target reference"), "{e}");
        let ty = &g.node(g.inputs[0]).ty;
        let x = mnc_ir::Tensor::from_f32(
            ty.shape.clone(),
            (0..ty.numel()).map(|k| (k % 13) as f32 / 13.0).collect(),
        )
        .unwrap();
        let x = std::slice::from_ref(&x);
        let exec = crate::exec::ExecOptions::default();
        let y_ref = Executable::from_optimized(&g, target, &exec)
            .unwrap()
            .run(x)
            .unwrap();
        let y = Executable::from_optimized(&g2, target, &exec)
            .unwrap()
            .run(x)
            .unwrap();
        let (a, b) = (y[0].as_f32().unwrap(), y_ref[0].as_f32().unwrap());
        mnc_tests::assert_close("artifact vs onnx", a, b, 1e-4);
        // Every JIT target this host runs: the artifact's code matches the reference.
        for t in Target::jit_targets_for_test("model::load_any_reads_artifacts_and_onnx") {
            let opt = crate::exec::optimized(g2_src(onnx), t).unwrap();
            let path = mnc_tests::tmp_dir("model-load-any").join(format!("{t}.mnc"));
            crate::artifact::write(&path, &opt, t, batch, "h").unwrap();
            let (g3, stored) = load_any(path.to_str().unwrap(), Some(batch)).unwrap();
            assert_eq!(stored, Some(t));
            let y = Executable::from_optimized(&g3, t, &exec)
                .unwrap()
                .run(x)
                .unwrap();
            mnc_tests::assert_close(t.name(), y[0].as_f32().unwrap(), b, 1e-4);
        }
    }

    fn g2_src(onnx: &str) -> Graph {
        load(onnx, None).unwrap()
    }
}
