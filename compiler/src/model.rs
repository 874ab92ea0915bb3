//! Model loading for the CLI: a model is named by an ONNX file path or by `zoo:NAME` (a
//! built-in architecture from [`crate::zoo`], with deterministic random weights).

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
