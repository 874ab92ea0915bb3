//! The typed error of the runtime crate.

use mnc_ir::{IrError, TensorType};
use thiserror::Error;

/// Errors raised while executing a model. Input errors name the graph input; evaluation
/// errors carry the node name (through [`IrError::at_node`]).
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RuntimeError {
    /// The caller passed the wrong number of input tensors.
    #[error("graph '{graph}' takes {expected} input(s), got {got}")]
    InputCount {
        graph: String,
        expected: usize,
        got: usize,
    },
    /// An input tensor's dtype or shape differs from the graph input's type.
    #[error("input '{name}' must be {expected}, got {got}")]
    InputType {
        name: String,
        expected: TensorType,
        got: TensorType,
    },
    /// An input tensor's data length does not match its own shape.
    #[error("input '{name}' holds {len} elements but its shape is {shape:?}")]
    InputData {
        name: String,
        shape: Vec<usize>,
        len: usize,
    },
    /// A node produced a value whose type differs from the type stored on it (a graph that
    /// was not re-inferred or verified after a rewrite).
    #[error("node '{node}' ({op}) produced {got}, but the graph types it {expected}")]
    NodeType {
        node: String,
        op: String,
        expected: TensorType,
        got: TensorType,
    },
    /// Code called by a step (a `std::arch` kernel, possibly on a pool thread) panicked: an
    /// internal error, caught at the kernel's `extern "C"` boundary instead of aborting the
    /// process. The model's other runs are not affected.
    #[error("node '{node}' ({op}): a kernel panicked: {message}")]
    KernelPanic {
        node: String,
        op: String,
        message: String,
    },
    /// Shape inference or op evaluation failed (node-level errors name the node), or the
    /// graph is malformed (cycle, dangling input).
    #[error(transparent)]
    Ir(#[from] IrError),
}
