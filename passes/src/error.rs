//! The typed error of the pass crate.

use mnc_ir::IrError;
use thiserror::Error;

/// Errors raised by passes and the pass manager. Every variant names the pass (and, where
/// there is one, the node) so that a failure points back at the user's model.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PassError {
    /// An IR operation (shape inference, evaluation, topological sort) failed inside a pass.
    #[error("pass '{pass}': {source}")]
    Ir {
        pass: &'static str,
        #[source]
        source: IrError,
    },
    /// The verifier rejected the graph a pass produced.
    #[error("the IR verifier failed after pass '{pass}': {source}")]
    Verify {
        pass: &'static str,
        #[source]
        source: IrError,
    },
    /// A rewrite group still changed the graph after its iteration cap.
    #[error("rewrite group '{group}' did not reach a fixed point within {iterations} iterations")]
    NoFixedPoint {
        group: &'static str,
        iterations: usize,
    },
    /// A pass found a node it cannot handle.
    #[error("pass '{pass}', node '{node}': {msg}")]
    Node {
        pass: &'static str,
        node: String,
        msg: String,
    },
    /// A pass name given to `--print-after` (or similar) does not exist.
    #[error("unknown pass '{0}' (known passes: {1})")]
    UnknownPass(String, String),
    /// The memory plan failed its own overlap check (an internal bug, reported not hidden).
    #[error("memory plan invalid: {0}")]
    MemoryPlan(String),
}

impl PassError {
    /// Wraps an IR error raised inside `pass`.
    pub fn ir(pass: &'static str) -> impl FnOnce(IrError) -> PassError {
        move |source| PassError::Ir { pass, source }
    }
}
