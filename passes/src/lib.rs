//! `mnc-passes`: the graph rewrites and analyses of mnc, and the pass manager that runs them.
//!
//! - [`manager`]: the [`Pass`] trait, pipelines of passes and fixed-point groups, verification
//!   after every pass, timing/change reports, print-after hooks.
//! - [`target`]: the target facts the target-dependent passes read (GPU numbers, buffer
//!   alignment, int8 kernels).
//! - Rewrites, one file each: [`cleanup`], [`canon`] (canonicalization: `transpose-sink`,
//!   `simplify`, `act-canon`, `affine-merge`, one file each), [`bn_fold`], [`act_fusion`],
//!   [`residual`], [`se`], [`schedule`], [`qdq`] (QDQ convs into integer convs).
//! - Analyses: [`memory`] (arena planning, which the backends call).
//!   (A channel-blocked layout analysis that only the pipeline report printed, inserting
//!   nothing and read by no backend, was deleted.)
//! - [`samples`]: small hand-built MobileNet/EfficientNet blocks for tests and examples.
//!
//! Entry points: [`optimize`] (the full pipeline), [`cleanup_and_fold`] (target-independent
//! part, used for `--emit onnx`), [`run_single_pass`] (one pass alone, for differential
//! tests), [`dump`] (the IR text with the pipeline header).

pub mod act_fusion;
pub mod bn_fold;
pub mod canon;
pub mod cleanup;
pub mod error;
pub mod manager;
pub mod memory;
pub mod qdq;
pub mod residual;
pub mod samples;
pub mod schedule;
pub mod se;
pub mod target;
mod util;

#[cfg(test)]
mod testutil;

pub use error::PassError;
pub use manager::{Pass, PassContext, PassManager, PassRecord, PipelineReport, PrintAfter};
pub use memory::{
    facts_storage, plan_arena, plan_memory, ArenaOptions, BufferPlan, MemoryPlan, Storage,
    ValuePlan,
};
pub use target::TargetFacts;

use mnc_ir::Graph;

/// Options of the pipelines: target facts, verification, IR dumps, iteration cap.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    pub target: TargetFacts,
    /// Run the IR verifier after every pass (default: on in debug builds); the input graph
    /// is always verified.
    pub verify: bool,
    pub print_after: PrintAfter,
    /// Iteration cap of the fixed-point fusion group.
    pub max_iterations: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            target: TargetFacts::default(),
            verify: cfg!(debug_assertions),
            print_after: PrintAfter::Nothing,
            max_iterations: 8,
        }
    }
}

/// Every pass name, in pipeline order (for `--print-after` validation and help text).
pub const PASS_NAMES: &[&str] = &[
    "qdq-fold",
    "cleanup",
    "transpose-sink",
    "simplify",
    "act-canon",
    "bn-fold",
    "affine-merge",
    "act-fusion",
    "residual-fusion",
    "se-fusion",
    "schedule",
];

/// A fresh instance of the pass called `name`.
pub fn pass_by_name(name: &str) -> Option<Box<dyn Pass>> {
    Some(match name {
        "qdq-fold" => Box::new(qdq::QdqFold),
        "cleanup" => Box::new(cleanup::Cleanup::default()),
        "transpose-sink" => Box::new(canon::transpose::TransposeSink),
        "simplify" => Box::new(canon::simplify::Simplify),
        "act-canon" => Box::new(canon::activation::ActCanon),
        "bn-fold" => Box::new(bn_fold::BnFold),
        "affine-merge" => Box::new(canon::affine::AffineMerge),
        "act-fusion" => Box::new(act_fusion::ActFusion),
        "residual-fusion" => Box::new(residual::ResidualFusion),
        "se-fusion" => Box::new(se::SeFusion),
        "schedule" => Box::new(schedule::Schedule),
        _ => return None,
    })
}

fn manager(name: &str, opts: &PipelineOptions) -> PassManager {
    let mut pm = PassManager::new(
        name,
        PassContext {
            target: opts.target.clone(),
        },
    );
    pm.verify = opts.verify;
    pm.print_after = opts.print_after.clone();
    pm
}

/// The canonicalization group (see [`canon`]): layout, algebra and activation rewrites with
/// cleanup, looped to a fixed point.
fn canonicalize(pm: PassManager, opts: &PipelineOptions) -> PassManager {
    pm.fixed_point(
        "canonicalize",
        vec![
            Box::new(canon::transpose::TransposeSink),
            Box::new(canon::simplify::Simplify),
            Box::new(canon::activation::ActCanon),
            Box::new(cleanup::Cleanup::default()),
        ],
        opts.max_iterations,
    )
}

/// The target-independent pipeline: cleanup, canonicalization, BatchNorm folding, affine
/// merging.
pub fn cleanup_pipeline(opts: &PipelineOptions) -> PassManager {
    let pm = manager("cleanup-fold", opts).once(cleanup::Cleanup::default());
    canonicalize(pm, opts)
        .once(bn_fold::BnFold)
        .once(canon::affine::AffineMerge)
}

/// The full pipeline: QDQ folding (targets with int8 convs), cleanup, canonicalization, BatchNorm folding, affine merging, the
/// fusion group (activation, residual, SE) to a fixed point, then scheduling.
pub fn optimize_pipeline(opts: &PipelineOptions) -> PassManager {
    let pm = manager("optimize", opts)
        .once(qdq::QdqFold)
        .once(cleanup::Cleanup::default());
    canonicalize(pm, opts)
        .once(bn_fold::BnFold)
        .once(canon::affine::AffineMerge)
        .fixed_point(
            "fusion",
            vec![
                Box::new(act_fusion::ActFusion),
                Box::new(residual::ResidualFusion),
                Box::new(se::SeFusion),
            ],
            opts.max_iterations,
        )
        .once(schedule::Schedule)
}

/// Runs the full pipeline on `g`. (The activation arena is planned by the backend that runs
/// the graph: [`memory::plan_arena`].)
pub fn optimize(g: &mut Graph, opts: &PipelineOptions) -> Result<PipelineReport, PassError> {
    optimize_pipeline(opts).run(g)
}

/// Runs only the target-independent passes (cleanup, canonicalization, BatchNorm folding,
/// affine merging): the graph stays
/// expressible in standard ONNX ops except for `ChannelAffine` (a BatchNorm with no conv).
pub fn cleanup_and_fold(
    g: &mut Graph,
    opts: &PipelineOptions,
) -> Result<PipelineReport, PassError> {
    cleanup_pipeline(opts).run(g)
}

/// Runs the one pass called `name` alone (verified), e.g. for "each pass alone"
/// differential tests.
pub fn run_single_pass(
    g: &mut Graph,
    name: &str,
    opts: &PipelineOptions,
) -> Result<PipelineReport, PassError> {
    let pass = pass_by_name(name)
        .ok_or_else(|| PassError::UnknownPass(name.into(), PASS_NAMES.join(", ")))?;
    let mut pm = manager(name, opts);
    pm.stages.push(manager::Stage::Once(pass));
    pm.run(g)
}

/// The IR text of `g` preceded by the pipeline header line of `report`.
pub fn dump(g: &Graph, report: &PipelineReport) -> Result<String, PassError> {
    let text = mnc_ir::print::print_graph(g).map_err(PassError::ir("dump"))?;
    Ok(format!("{}\n{}", report.header, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use mnc_ir::Op;

    fn opts() -> PipelineOptions {
        PipelineOptions {
            verify: true,
            ..Default::default()
        }
    }

    fn blocks() -> Vec<(&'static str, Graph)> {
        vec![
            ("mbv2", samples::mobilenet_v2_block(11).unwrap()),
            ("mbv3", samples::mobilenet_v3_block(12).unwrap()),
            ("effnet", samples::efficientnet_mbconv_block(13).unwrap()),
        ]
    }

    fn kinds(g: &Graph) -> Vec<&'static str> {
        g.topo_order()
            .unwrap()
            .into_iter()
            .map(|i| g.node(i).op.kind())
            .filter(|k| *k != "Constant")
            .collect()
    }

    #[test]
    fn full_pipeline_and_each_pass_alone_preserve_outputs() {
        for (_, g) in blocks() {
            let x = random_inputs(&g, 5);
            let want = run(&g, &x);
            let mut h = g.clone();
            optimize(&mut h, &opts()).unwrap();
            assert_close(&run(&h, &x), &want, 1e-5);
            for pass in PASS_NAMES {
                let mut h = g.clone();
                run_single_pass(&mut h, pass, &opts()).unwrap();
                assert_close(&run(&h, &x), &want, 1e-5);
            }
        }
    }

    #[test]
    fn blocks_fuse_completely() {
        let expect: [(&str, &[&str]); 3] = [
            ("mbv2", &["Input", "Conv", "Conv", "Conv", "Conv"]),
            ("mbv3", &["Input", "Conv", "Conv", "SqueezeExcite", "Conv"]),
            (
                "effnet",
                &["Input", "Conv", "Conv", "SqueezeExcite", "Conv"],
            ),
        ];
        for ((name, g), (n2, want)) in blocks().into_iter().zip(expect) {
            assert_eq!(name, n2);
            let mut h = g.clone();
            optimize(&mut h, &opts()).unwrap();
            assert_eq!(kinds(&h), want, "{name}");
            // The last conv carries the residual; every conv has a schedule.
            let out = h.outputs[0].node;
            match &h.node(out).op {
                Op::Conv(c) => assert!(c.epilogue.residual && c.schedule.is_some()),
                other => panic!("{name}: output is {other:?}"),
            }
        }
    }

    #[test]
    fn block_snapshots() {
        for (name, g) in blocks() {
            let mut h = g.clone();
            let report = optimize(&mut h, &opts()).unwrap();
            let memory = plan_memory(&h, opts().target.alignment).unwrap();
            let snap = format!(
                "nodes: {} -> {} (non-constant: {} -> {})\n{}\n{}\n--- after\n{}{}",
                g.node_count(),
                h.node_count(),
                kinds(&g).len(),
                kinds(&h).len(),
                "--- before",
                text(&g),
                dump(&h, &report).unwrap(),
                memory.to_text()
            );
            insta::assert_snapshot!(format!("block_{name}"), snap);
        }
    }

    #[test]
    fn report_counts_changes_and_prints() {
        let mut g = samples::efficientnet_mbconv_block(3).unwrap();
        let mut o = opts();
        o.print_after = PrintAfter::Passes(vec!["bn-fold".into(), "se-fusion".into()]);
        let r = optimize(&mut g, &o).unwrap();
        assert_eq!(r.changes_of("bn-fold"), 3);
        assert_eq!(r.changes_of("se-fusion"), 1);
        assert_eq!(r.changes_of("residual-fusion"), 1);
        // cleanup: the Dropout.
        assert_eq!(r.changes_of("cleanup"), 1);
        // act-fusion: SiLU x3 (expand, depthwise, SE reduce) + the SE gate.
        assert_eq!(r.changes_of("act-fusion"), 4);
        // bn-fold once, se-fusion in rounds 1 and 2 (fixed point).
        assert_eq!(r.dumps.len(), 3);
        assert_eq!(r.dumps[0].0, "bn-fold");
        let shown = r.to_string();
        assert!(shown.starts_with("# pipeline: optimize = qdq-fold,cleanup,(transpose-sink,simplify,act-canon,cleanup)*,bn-fold,affine-merge,(act-fusion,residual-fusion,se-fusion)*,schedule target: x86_64-avx2"));
        // No memory plan: the backend plans its arena.
        assert!(!shown.contains("memory:"), "{shown}");
    }

    #[test]
    fn cleanup_and_fold_leaves_only_standard_ops() {
        let mut g = samples::mobilenet_v3_block(4).unwrap();
        let x = random_inputs(&g, 1);
        let want = run(&g, &x);
        cleanup_and_fold(&mut g, &opts()).unwrap();
        assert_close(&run(&g, &x), &want, 1e-5);
        let k = kinds(&g);
        assert!(!k.contains(&"BatchNorm") && !k.contains(&"SqueezeExcite"));
        assert!(g.node_ids().iter().all(|&i| match &g.node(i).op {
            Op::Conv(c) => c.epilogue == mnc_ir::Epilogue::default() && c.schedule.is_none(),
            _ => true,
        }));
    }

    #[test]
    fn pipeline_is_idempotent() {
        for (name, g) in blocks() {
            let mut h = g.clone();
            optimize(&mut h, &opts()).unwrap();
            let once = text(&h);
            let r = optimize(&mut h, &opts()).unwrap();
            assert_eq!(text(&h), once, "{name}");
            assert!(r.records.iter().all(|p| p.changes == 0), "{name}: {r}");
        }
    }

    #[test]
    fn unknown_single_pass_is_an_error() {
        let mut g = samples::mobilenet_v2_block(1).unwrap();
        assert!(matches!(
            run_single_pass(&mut g, "nope", &opts()),
            Err(PassError::UnknownPass(..))
        ));
    }
}
