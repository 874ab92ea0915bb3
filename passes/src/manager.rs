//! The pass manager: named passes, pipelines of stages (a pass run once, or a group of
//! rewrites looped to a fixed point under an explicit iteration cap), verification after
//! every pass, per-pass timing and change counts, and print-after hooks.

use crate::error::PassError;
use crate::target::TargetFacts;
use mnc_ir::Graph;
use std::fmt;
use std::time::{Duration, Instant};

/// Read-only facts every pass may consult.
#[derive(Clone, Debug, Default)]
pub struct PassContext {
    pub target: TargetFacts,
}

/// A graph rewrite (or annotation): rewrites `g` in place and returns how many changes it
/// made (0 means the graph is unchanged).
pub trait Pass {
    /// Stable name used by `--print-after`, reports and errors.
    fn name(&self) -> &'static str;
    /// Runs the pass once over the whole graph.
    fn run(&self, g: &mut Graph, ctx: &PassContext) -> Result<usize, PassError>;
}

/// One step of a pipeline.
pub enum Stage {
    /// Run the pass once.
    Once(Box<dyn Pass>),
    /// Run the passes in order, repeatedly, until one whole round changes nothing; more than
    /// `max_iterations` rounds is an error.
    FixedPoint {
        name: &'static str,
        passes: Vec<Box<dyn Pass>>,
        max_iterations: usize,
    },
}

impl Stage {
    fn pass_names(&self) -> Vec<&'static str> {
        match self {
            Stage::Once(p) => vec![p.name()],
            Stage::FixedPoint { passes, .. } => passes.iter().map(|p| p.name()).collect(),
        }
    }
    fn describe(&self) -> String {
        match self {
            Stage::Once(p) => p.name().to_string(),
            Stage::FixedPoint { passes, .. } => format!(
                "({})*",
                passes
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// Which IR dumps to collect while the pipeline runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PrintAfter {
    #[default]
    Nothing,
    /// After every pass run.
    All,
    /// After every run of the named passes.
    Passes(Vec<String>),
}

/// One run of one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct PassRecord {
    pub pass: &'static str,
    /// Round of the enclosing fixed-point group (0 for a pass run once).
    pub round: usize,
    pub changes: usize,
    pub time: Duration,
    /// Node count after the pass.
    pub nodes_after: usize,
}

/// What a pipeline run did: every pass run, the IR dumps asked for, and the layout analysis.
#[derive(Clone, Debug, Default)]
pub struct PipelineReport {
    /// The pipeline header line (`# pipeline: ... target: ...`).
    pub header: String,
    pub records: Vec<PassRecord>,
    /// `(pass name, IR text)` after each pass selected by [`PrintAfter`].
    pub dumps: Vec<(String, String)>,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub total_time: Duration,
}

impl PipelineReport {
    /// Total changes made by the named pass over all its runs.
    pub fn changes_of(&self, pass: &str) -> usize {
        self.records
            .iter()
            .filter(|r| r.pass == pass)
            .map(|r| r.changes)
            .sum()
    }
}

impl fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.header)?;
        writeln!(
            f,
            "{:<22} {:>5} {:>8} {:>7} {:>10}",
            "pass", "round", "changes", "nodes", "time(us)"
        )?;
        for r in &self.records {
            writeln!(
                f,
                "{:<22} {:>5} {:>8} {:>7} {:>10}",
                r.pass,
                r.round,
                r.changes,
                r.nodes_after,
                r.time.as_micros()
            )?;
        }
        writeln!(
            f,
            "nodes: {} -> {}   total time: {} us",
            self.nodes_before,
            self.nodes_after,
            self.total_time.as_micros()
        )?;
        Ok(())
    }
}

/// A named sequence of stages plus the options that govern running it.
pub struct PassManager {
    pub name: String,
    pub stages: Vec<Stage>,
    /// Run the IR verifier after every pass (the input graph is always verified).
    pub verify: bool,
    pub print_after: PrintAfter,
    pub ctx: PassContext,
}

impl PassManager {
    /// An empty pipeline; verification defaults to on in debug builds and tests.
    pub fn new(name: impl Into<String>, ctx: PassContext) -> Self {
        PassManager {
            name: name.into(),
            stages: Vec::new(),
            verify: cfg!(debug_assertions),
            print_after: PrintAfter::Nothing,
            ctx,
        }
    }

    /// Appends a pass run once.
    pub fn once(mut self, p: impl Pass + 'static) -> Self {
        self.stages.push(Stage::Once(Box::new(p)));
        self
    }

    /// Appends a group of passes looped to a fixed point (at most `max_iterations` rounds).
    pub fn fixed_point(
        mut self,
        name: &'static str,
        passes: Vec<Box<dyn Pass>>,
        max_iterations: usize,
    ) -> Self {
        self.stages.push(Stage::FixedPoint {
            name,
            passes,
            max_iterations,
        });
        self
    }

    /// Names of every pass in the pipeline, in order.
    pub fn pass_names(&self) -> Vec<&'static str> {
        self.stages.iter().flat_map(|s| s.pass_names()).collect()
    }

    /// The header line printed above IR dumps:
    /// `# pipeline: NAME = STAGES target: TARGET`.
    pub fn header(&self) -> String {
        format!(
            "# pipeline: {} = {} target: {}",
            self.name,
            self.stages
                .iter()
                .map(|s| s.describe())
                .collect::<Vec<_>>()
                .join(","),
            self.ctx.target
        )
    }

    /// Checks that every pass named in `print_after` exists in this pipeline.
    fn check_print_after(&self) -> Result<(), PassError> {
        if let PrintAfter::Passes(names) = &self.print_after {
            let known = self.pass_names();
            for n in names {
                if !known.contains(&n.as_str()) {
                    return Err(PassError::UnknownPass(
                        n.clone(),
                        format!("{} in pipeline '{}'", known.join(", "), self.name),
                    ));
                }
            }
        }
        Ok(())
    }

    fn wants_dump(&self, pass: &str) -> bool {
        match &self.print_after {
            PrintAfter::Nothing => false,
            PrintAfter::All => true,
            PrintAfter::Passes(v) => v.iter().any(|n| n == pass),
        }
    }

    fn run_pass(
        &self,
        p: &dyn Pass,
        round: usize,
        g: &mut Graph,
        report: &mut PipelineReport,
    ) -> Result<usize, PassError> {
        let t0 = Instant::now();
        let changes = p.run(g, &self.ctx)?;
        let time = t0.elapsed();
        if self.verify {
            mnc_ir::verify::verify(g).map_err(|source| PassError::Verify {
                pass: p.name(),
                source,
            })?;
        }
        report.records.push(PassRecord {
            pass: p.name(),
            round,
            changes,
            time,
            nodes_after: g.node_count(),
        });
        if self.wants_dump(p.name()) {
            let text = mnc_ir::print::print_graph(g).map_err(PassError::ir(p.name()))?;
            let title = if round == 0 {
                p.name().to_string()
            } else {
                format!("{} (round {round})", p.name())
            };
            report.dumps.push((title, text));
        }
        Ok(changes)
    }

    /// Runs the pipeline on `g`.
    pub fn run(&self, g: &mut Graph) -> Result<PipelineReport, PassError> {
        self.check_print_after()?;
        let start = Instant::now();
        let mut report = PipelineReport {
            header: self.header(),
            nodes_before: g.node_count(),
            ..Default::default()
        };
        // The input is always verified: passes rely on its invariants (arity, types).
        mnc_ir::verify::verify(g).map_err(|source| PassError::Verify {
            pass: "(input)",
            source,
        })?;
        for stage in &self.stages {
            match stage {
                Stage::Once(p) => {
                    self.run_pass(p.as_ref(), 0, g, &mut report)?;
                }
                Stage::FixedPoint {
                    name,
                    passes,
                    max_iterations,
                } => {
                    let mut converged = false;
                    for round in 1..=*max_iterations {
                        let mut changed = 0;
                        for p in passes {
                            changed += self.run_pass(p.as_ref(), round, g, &mut report)?;
                        }
                        if changed == 0 {
                            converged = true;
                            break;
                        }
                    }
                    if !converged {
                        return Err(PassError::NoFixedPoint {
                            group: name,
                            iterations: *max_iterations,
                        });
                    }
                }
            }
        }
        report.nodes_after = g.node_count();
        report.total_time = start.elapsed();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    /// Removes one Identity per run (to exercise fixed-point looping).
    struct OneIdentity;
    impl Pass for OneIdentity {
        fn name(&self) -> &'static str {
            "one-identity"
        }
        fn run(&self, g: &mut Graph, _: &PassContext) -> Result<usize, PassError> {
            for id in g.topo_order().map_err(PassError::ir("one-identity"))? {
                if g.node(id).op == mnc_ir::Op::Identity {
                    let x = g.inputs(id)[0];
                    g.replace_all_uses(id, x);
                    g.remove_node(id);
                    return Ok(1);
                }
            }
            Ok(0)
        }
    }

    /// Breaks the graph (retypes a node) to check that the verifier runs after passes.
    struct Breaker;
    impl Pass for Breaker {
        fn name(&self) -> &'static str {
            "breaker"
        }
        fn run(&self, g: &mut Graph, _: &PassContext) -> Result<usize, PassError> {
            let id = g.outputs[0].node;
            g.node_mut(id).ty = mnc_ir::TensorType::f32(vec![7]);
            Ok(1)
        }
    }

    fn identity_chain(n: usize) -> Graph {
        let mut g = Graph::new("chain");
        let mut x = g.add_input("x", mnc_ir::TensorType::f32(vec![1, 2, 3, 3]));
        for i in 0..n {
            x = g
                .add_node_inferred(format!("id{i}"), mnc_ir::Op::Identity, &[x])
                .unwrap();
        }
        let y = act(&mut g, "relu", mnc_ir::Activation::Relu, x);
        g.add_output("y", y);
        g
    }

    #[test]
    fn fixed_point_loops_until_no_change() {
        let mut g = identity_chain(3);
        let pm = PassManager::new("t", PassContext::default()).fixed_point(
            "ids",
            vec![Box::new(OneIdentity)],
            10,
        );
        let r = pm.run(&mut g).unwrap();
        // 3 changing rounds + 1 round that finds nothing.
        assert_eq!(r.records.len(), 4);
        assert_eq!(r.changes_of("one-identity"), 3);
        assert_eq!(r.nodes_before, 5);
        assert_eq!(r.nodes_after, 2);
    }

    #[test]
    fn iteration_cap_is_an_error() {
        let mut g = identity_chain(5);
        let pm = PassManager::new("t", PassContext::default()).fixed_point(
            "ids",
            vec![Box::new(OneIdentity)],
            2,
        );
        let e = pm.run(&mut g).unwrap_err();
        assert_eq!(
            e,
            PassError::NoFixedPoint {
                group: "ids",
                iterations: 2
            }
        );
    }

    #[test]
    fn verifier_runs_after_each_pass() {
        let mut g = identity_chain(1);
        let mut pm = PassManager::new("t", PassContext::default()).once(Breaker);
        pm.verify = true;
        match pm.run(&mut g) {
            Err(PassError::Verify {
                pass: "breaker", ..
            }) => {}
            other => panic!("expected a verifier error, got {other:?}"),
        }
        let mut g = identity_chain(1);
        let mut pm = PassManager::new("t", PassContext::default()).once(Breaker);
        pm.verify = false;
        assert!(pm.run(&mut g).is_ok());
    }

    #[test]
    fn invalid_input_is_rejected_even_without_per_pass_verification() {
        let mut g = identity_chain(1);
        let id = g.outputs[0].node;
        g.node_mut(id).ty = mnc_ir::TensorType::f32(vec![3]);
        let mut pm = PassManager::new("t", PassContext::default()).fixed_point(
            "ids",
            vec![Box::new(OneIdentity)],
            3,
        );
        pm.verify = false;
        match pm.run(&mut g) {
            Err(PassError::Verify {
                pass: "(input)", ..
            }) => {}
            other => panic!("expected the input to be rejected, got {other:?}"),
        }
    }

    #[test]
    fn print_after_collects_dumps_and_rejects_unknown_names() {
        let mut g = identity_chain(2);
        let mut pm = PassManager::new("t", PassContext::default()).fixed_point(
            "ids",
            vec![Box::new(OneIdentity)],
            10,
        );
        pm.print_after = PrintAfter::Passes(vec!["one-identity".into()]);
        let r = pm.run(&mut g).unwrap();
        assert_eq!(r.dumps.len(), 3);
        assert_eq!(r.dumps[0].0, "one-identity (round 1)");
        assert!(r.dumps[2].1.contains("Act[relu](%0)"));
        pm.print_after = PrintAfter::Passes(vec!["nope".into()]);
        assert!(matches!(
            pm.run(&mut identity_chain(1)),
            Err(PassError::UnknownPass(..))
        ));
    }

    #[test]
    fn header_names_stages_and_target() {
        let pm = PassManager::new("demo", PassContext::default())
            .once(Breaker)
            .fixed_point("ids", vec![Box::new(OneIdentity)], 3);
        assert_eq!(
            pm.header(),
            "# pipeline: demo = breaker,(one-identity)* target: x86_64-avx2 int8"
        );
    }
}
