//! `mnc`: the ONNX frontend, the pipeline driver and the CLI of the mnc model compiler.
//!
//! - [`onnx`]: ONNX import (protobuf -> `mnc_ir::Graph`), one file per op family.
//! - [`export`]: writes an IR graph back to a standard ONNX model.
//! - [`zoo`]: built-in MobileNet / EfficientNet architectures as IR graphs.
//! - [`model`]: loads a model from a file or the zoo; [`io`]: .npy and image input.
//! - [`artifact`]: the `.mnc` compiled-model file (optimized IR for one target and batch).
//! - [`exec`]: builds the executable for a target (reference executor or compiled backend).
//! - [`cost`]: torchinfo-compatible parameter, mult-add and memory accounting.
//! - [`quantize`]: post-training int8 quantization (`mnc quantize`): calibration, the QDQ
//!   ONNX writer, the SQNR report.
//! - [`compiled`]: a compiled model as one object (load, optimize, codegen, run, bench, save),
//!   with its compile report ([`report`]) and benchmark ([`bench`]); the CLI and the Python
//!   binding share it.
//!
//! # Example: compile a model for this CPU and run it
//!
//! ```
//! use mnc_ir::Tensor;
//! use mnc_targets::Target;
//!
//! # fn main() -> anyhow::Result<()> {
//! // An ONNX file path, or a built-in architecture (random weights).
//! let graph = mnc::model::load("zoo:mobilenet_v3_small", Some(1))?;
//! let target = Target::detect_host();
//! let input = Tensor::from_f32(vec![1, 3, 224, 224], vec![0.5; 3 * 224 * 224])?;
//! let outputs = if target.is_jit() {
//!     // Optimize (BN folding, fusion, scheduling), then JIT-compile with Cranelift.
//!     let graph = mnc::exec::optimized(graph, target)?;
//!     let opts = mnc_runtime::cpu::CpuOptions { threads: 2, ..Default::default() };
//!     let model = mnc_runtime::cpu::CompiledModel::compile(&graph, target, &opts)?;
//!     // `CompiledModel` is `Send + Sync`: threads may share it, each run has its own arena.
//!     std::thread::scope(|s| {
//!         let a = s.spawn(|| model.run(std::slice::from_ref(&input)));
//!         let b = model.run(std::slice::from_ref(&input));
//!         assert_eq!(a.join().unwrap().unwrap(), b.as_ref().unwrap().clone());
//!         b
//!     })?
//! } else {
//!     mnc_runtime::reference::run(&graph, &[input])?
//! };
//! assert_eq!(outputs[0].shape, vec![1, 1000]);
//! # Ok(())
//! # }
//! ```

pub mod artifact;
pub mod bench;
pub mod compiled;
pub mod cost;
pub mod cuda_worker;
pub mod exec;
pub mod export;
pub mod io;
pub mod model;
pub mod onnx;
pub mod quantize;
pub mod report;
pub mod zoo;

/// The one-line message of an error, as the CLI prints it (after `mnc: error: `) and the
/// Python package raises it: the context chain joined by `: `, where a link whose text the
/// previous link already ends with is skipped (typed errors that both print their source and
/// return it as `source()` would otherwise repeat it).
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for link in e.chain() {
        let text = link.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_line_joins_the_chain_without_repeating_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("inner problem")]
        struct Inner;
        #[derive(Debug, thiserror::Error)]
        #[error("compiling: {source}")]
        struct Outer {
            #[source]
            source: Inner,
        }
        let e = anyhow::Error::new(Outer { source: Inner }).context("model.onnx");
        assert_eq!(
            format!("{e:#}"),
            "model.onnx: compiling: inner problem: inner problem"
        );
        assert_eq!(
            super::error_line(&e),
            "model.onnx: compiling: inner problem"
        );
        let plain = anyhow::anyhow!("a").context("b");
        assert_eq!(super::error_line(&plain), "b: a");
    }
}
