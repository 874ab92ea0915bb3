//! A compiled model as one object: load (ONNX file or bytes, `.mnc` artifact, zoo), run the
//! optimization pipeline, generate code, then run, benchmark, report and save. The CLI's
//! `run`/`bench` and the Python binding both use it, so they share one code path.

use crate::exec::{ExecOptions, Executable};
use crate::report::{CodegenSummary, CompileSummary, PhaseTimes};
use anyhow::{Context, Result};
use mnc_ir::{DType, Graph, Tensor};
use mnc_targets::Target;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where a model comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// An ONNX file path, a `.mnc` artifact path or `zoo:NAME` (see [`crate::model::load_any`]).
    Spec(&'a str),
    /// A serialized ONNX model in memory; `name` names it in errors and reports. External
    /// data is refused (there is no folder to read it from).
    OnnxBytes { bytes: &'a [u8], name: &'a str },
}

/// What to compile for.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    pub target: Target,
    /// Batch size (default: the model's static batch, or 1). An artifact's batch is fixed.
    pub batch: Option<usize>,
    /// Backend options (threads for x86-64, TF32 for CUDA).
    pub exec: ExecOptions,
    /// Take the model's 4-D (NHWC) inputs as NCHW (`--nchw-input`, see
    /// [`crate::model::inputs_to_nchw`]). Refused for an artifact, whose inputs are fixed.
    pub nchw_inputs: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            target: Target::detect_host(),
            batch: None,
            exec: ExecOptions::default(),
            nchw_inputs: false,
        }
    }
}

/// Name, element type and shape of a model input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// A model compiled for one target and batch, ready to run. `Send + Sync`: runs take `&self`
/// (each CPU run has its own arena; CUDA runs are served one at a time by the model's worker).
pub struct Model {
    name: String,
    target: Target,
    /// The graph the executable was built from (what an artifact stores): optimized for a
    /// compiled target, as imported for the reference target.
    optimized: Graph,
    header: String,
    exe: Executable,
    inputs: Vec<PortInfo>,
    outputs: Vec<PortInfo>,
    summary: CompileSummary,
    mult_adds: u64,
    build_time: Duration,
}

/// The graph's inputs and outputs, in order (outputs under their graph-output names).
fn ports(g: &Graph) -> (Vec<PortInfo>, Vec<PortInfo>) {
    let port = |name: &str, id: mnc_ir::NodeId| {
        let ty = &g.node(id).ty;
        PortInfo {
            name: name.to_string(),
            dtype: ty.dtype,
            shape: ty.shape.clone(),
        }
    };
    let inputs = g.inputs.iter().map(|&id| port(&g.node(id).name, id));
    let outputs = g.outputs.iter().map(|o| port(&o.name, o.node));
    (inputs.collect(), outputs.collect())
}

impl Model {
    /// Loads `source`, optimizes it for `opts.target` (unless it is an artifact, whose graph
    /// is already optimized for its target) and generates code.
    pub fn compile(source: Source<'_>, opts: &CompileOptions) -> Result<Model> {
        let target = opts.target;
        opts.exec.check(target)?;
        let t0 = Instant::now();
        let (name, mut graph, stored) = match source {
            Source::Spec(spec) => {
                let (g, stored) = crate::model::load_any(spec, opts.batch)?;
                (spec.to_string(), g, stored)
            }
            Source::OnnxBytes { bytes, name } => {
                let iopts = crate::onnx::ImportOptions { batch: opts.batch };
                let g = crate::onnx::import_bytes(bytes, None, name, &iopts)?;
                (name.to_string(), g, None)
            }
        };
        if opts.nchw_inputs {
            if stored.is_some() {
                anyhow::bail!(
                    "{name}: --nchw-input does not apply to an artifact (its input layout was fixed when it was compiled)"
                );
            }
            crate::model::inputs_to_nchw(&mut graph).with_context(|| name.clone())?;
        }
        Self::build(name, graph, stored, target, &opts.exec, t0)
    }

    /// Loads a `.mnc` artifact and generates code for the target it was compiled for.
    pub fn load_artifact(path: &Path, exec: &ExecOptions) -> Result<Model> {
        let t0 = Instant::now();
        let art = crate::artifact::read(path)?;
        exec.check(art.target)?;
        let name = path.display().to_string();
        Self::build(name, art.graph, Some(art.target), art.target, exec, t0)
    }

    /// Optimizes (unless `stored` says the graph is an artifact's, already optimized for
    /// that target) and generates code; `t0` is when loading started.
    fn build(
        name: String,
        graph: Graph,
        stored: Option<Target>,
        target: Target,
        exec: &ExecOptions,
        t0: Instant,
    ) -> Result<Model> {
        let t_import = t0.elapsed();
        let nodes_imported = graph.node_count();
        let mult_adds = crate::cost::analyze(&graph, &Default::default())
            .map(|c| c.total_mult_adds)
            .unwrap_or(0);
        let (inputs, outputs) = ports(&graph);
        let t1 = Instant::now();
        let (optimized, passes) = match stored {
            Some(stored) => {
                crate::model::check_artifact_target(stored, target)
                    .with_context(|| name.clone())?;
                (graph, None)
            }
            // The reference target runs the imported graph as it is (it is the oracle, and
            // must keep working when a pass fails): no pipeline.
            None if target == Target::Reference => (graph, None),
            None => {
                let mut g = graph;
                let report = mnc_passes::optimize(&mut g, &crate::exec::pipeline_options(target))
                    .with_context(|| format!("{name}: optimizing"))?;
                (g, Some(report))
            }
        };
        let t_passes = t1.elapsed();
        let t2 = Instant::now();
        let exe =
            Executable::from_optimized(&optimized, target, exec).with_context(|| name.clone())?;
        let t_codegen = t2.elapsed();
        let codegen = match &exe {
            Executable::Cpu(m) => Some(CodegenSummary::of_cpu(m)),
            _ => None,
        };
        let times = PhaseTimes::new(t_import, t_passes, codegen.as_ref().map(|_| t_codegen));
        let summary = CompileSummary::new(
            &name,
            target,
            &optimized,
            nodes_imported,
            passes.as_ref(),
            codegen,
            times,
        );
        let header = match (&passes, stored) {
            (Some(p), _) => p.header.clone(),
            (None, Some(_)) => format!("# loaded from the artifact {name}"),
            (None, None) => "# reference target: the imported graph, no passes".to_string(),
        };
        Ok(Model {
            name,
            target,
            optimized,
            header,
            exe,
            inputs,
            outputs,
            summary,
            mult_adds,
            build_time: t0.elapsed(),
        })
    }

    /// Runs the model: one tensor per input, in order; returns one tensor per output.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.exe
            .run(inputs)
            .with_context(|| format!("{}: running on {}", self.name, self.exe.describe()))
    }

    /// [`Model::run`] on inputs shared between calls (a benchmark's): a CUDA model takes them
    /// without copying.
    pub fn run_shared(&self, inputs: &std::sync::Arc<[Tensor]>) -> Result<Vec<Tensor>> {
        self.exe
            .run_shared(inputs)
            .with_context(|| format!("{}: running on {}", self.name, self.exe.describe()))
    }

    /// [`Model::run`] on borrowed inputs (no copy before the backend's own).
    pub fn run_views(&self, inputs: &[mnc_ir::TensorView<'_>]) -> Result<Vec<Tensor>> {
        self.exe
            .run_views(inputs)
            .with_context(|| format!("{}: running on {}", self.name, self.exe.describe()))
    }

    /// Writes the `.mnc` artifact (optimized IR and schedules for this target and batch).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::artifact::write(
            path,
            &self.optimized,
            self.target,
            self.batch(),
            &self.header,
        )?;
        Ok(())
    }

    /// The model as its user named it (path, `zoo:NAME`, or the name given with bytes).
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn target(&self) -> Target {
        self.target
    }
    pub fn inputs(&self) -> &[PortInfo] {
        &self.inputs
    }
    pub fn outputs(&self) -> &[PortInfo] {
        &self.outputs
    }
    /// The batch: the first dimension of the first input (1 for a scalar input).
    pub fn batch(&self) -> usize {
        self.inputs
            .first()
            .and_then(|p| p.shape.first().copied())
            .unwrap_or(1)
            .max(1)
    }
    /// Mult-adds of one run of the loaded graph (torchinfo conventions).
    pub fn mult_adds(&self) -> u64 {
        self.mult_adds
    }
    /// The compile report.
    pub fn summary(&self) -> &CompileSummary {
        &self.summary
    }
    /// Load + passes + code generation wall time.
    pub fn build_time(&self) -> Duration {
        self.build_time
    }
    /// The optimized graph.
    pub fn optimized_graph(&self) -> &Graph {
        &self.optimized
    }
    /// The executable (reference executor, CPU JIT code or CUDA model).
    pub fn executable(&self) -> &Executable {
        &self.exe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _send_sync<T: Send + Sync>() {}

    #[test]
    fn model_is_send_and_sync() {
        _send_sync::<Model>();
    }

    /// File, bytes and artifact give the same outputs, bit for bit, and the artifact written
    /// by `save` loads back for the same target only.
    #[test]
    fn sources_agree_and_save_round_trips() {
        let path = mnc_tests::fixtures_dir().join("mnv2_w035_op13/model.onnx");
        let spec = path.to_str().unwrap();
        let target = Target::detect_host();
        let opts = CompileOptions {
            target,
            exec: ExecOptions {
                threads: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let a = Model::compile(Source::Spec(spec), &opts).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let b = Model::compile(
            Source::OnnxBytes {
                bytes: &bytes,
                name: "mem",
            },
            &opts,
        )
        .unwrap();
        assert_eq!(a.inputs(), b.inputs());
        assert_eq!(a.summary().ops, b.summary().ops);
        let x = mnc_passes::samples::Lcg::new(3).tensor(&a.inputs()[0].shape, -1.0, 1.0);
        let ya = a.run(std::slice::from_ref(&x)).unwrap();
        assert_eq!(ya, a.run_views(&[x.view()]).unwrap());
        assert_eq!(ya, b.run(std::slice::from_ref(&x)).unwrap());
        let art = mnc_tests::tmp_dir("compiled-save").join("m.mnc");
        a.save(&art).unwrap();
        let c = Model::compile(Source::Spec(art.to_str().unwrap()), &opts).unwrap();
        assert_eq!(ya, c.run(std::slice::from_ref(&x)).unwrap());
        assert!(c.summary().changes_by_pass.is_empty());
        let d = Model::load_artifact(&art, &opts.exec).unwrap();
        assert_eq!((d.target(), d.batch()), (target, a.batch()));
        assert_eq!(ya, d.run(std::slice::from_ref(&x)).unwrap());
        let other = CompileOptions {
            target: Target::Reference,
            ..Default::default()
        };
        let e = Model::compile(Source::Spec(art.to_str().unwrap()), &other)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("compiled for target"), "{e:#}");
        // The reference target runs the imported graph; compiled code agrees with it.
        let r = Model::compile(Source::Spec(spec), &other).unwrap();
        let yr = r.run(std::slice::from_ref(&x)).unwrap();
        mnc_tests::assert_close(
            "compiled vs reference",
            ya[0].as_f32().unwrap(),
            yr[0].as_f32().unwrap(),
            1e-4,
        );
    }

    #[test]
    fn options_that_do_not_apply_are_refused() {
        let opts = CompileOptions {
            target: Target::Reference,
            exec: ExecOptions {
                allow_tf32: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let e = Model::compile(Source::Spec("zoo:mobilenet_v2"), &opts)
            .err()
            .unwrap();
        assert!(e.to_string().contains("--allow-tf32"), "{e}");
    }
}
