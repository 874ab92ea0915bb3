//! The typed error of the IR crate.

use thiserror::Error;

/// Errors raised by IR construction, shape inference, verification and op evaluation.
/// Node-level errors name the node so that callers can point back at the user's model.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum IrError {
    #[error("tensor of shape {shape:?} is too large (more than 2^31 elements or overflowing)")]
    TooLarge { shape: Vec<usize> },
    #[error("data of length {len} does not match shape {shape:?}")]
    DataLength { shape: Vec<usize>, len: usize },
    #[error("node '{node}' ({op}): {msg}")]
    Node {
        node: String,
        op: String,
        msg: String,
    },
    #[error("the graph has a cycle through node '{node}'")]
    Cycle { node: String },
    #[error("graph invariant violated: {0}")]
    Invalid(String),
    #[error("{0}")]
    Op(String),
}

impl IrError {
    /// An op-level error without node context (added later by [`IrError::at_node`]).
    pub fn op(msg: impl Into<String>) -> Self {
        IrError::Op(msg.into())
    }
    /// Attaches the node name and op kind to an op-level error.
    pub fn at_node(self, node: &str, op: &str) -> Self {
        match self {
            IrError::Op(msg) => IrError::Node {
                node: node.to_string(),
                op: op.to_string(),
                msg,
            },
            IrError::TooLarge { shape } => IrError::Node {
                node: node.to_string(),
                op: op.to_string(),
                msg: format!("tensor of shape {shape:?} is too large (more than 2^31 elements or overflowing)"),
            },
            other => other,
        }
    }
}
