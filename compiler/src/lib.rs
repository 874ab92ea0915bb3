//! `mnc`: the ONNX frontend, the pipeline driver and the CLI of the mnc model compiler.
//!
//! - [`onnx`]: ONNX import (protobuf -> `mnc_ir::Graph`), one file per op family.
//! - [`export`]: writes an IR graph back to a standard ONNX model.
//! - [`zoo`]: built-in MobileNet / EfficientNet architectures as IR graphs.
//! - [`model`]: loads a model from a file or the zoo; [`io`]: .npy and image input.
//! - [`exec`]: builds the executable for a target (reference executor or compiled backend).
//! - [`cost`]: torchinfo-compatible parameter, mult-add and memory accounting.

pub mod cost;
pub mod exec;
pub mod export;
pub mod io;
pub mod model;
pub mod onnx;
pub mod zoo;
