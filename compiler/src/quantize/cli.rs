//! The `mnc quantize` subcommand.

use super::calibrate::{Method, DEFAULT_PERCENTILE};
use super::{quantize, QuantizeError, QuantizeOptions};
use anyhow::{bail, Context};
use protobuf::Message;
use std::path::PathBuf;

/// Arguments of `mnc quantize`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    about = "Post-training int8 quantization: calibrate on the reference executor, write a QDQ ONNX model, report the per-layer SQNR",
    long_about = "Post-training int8 quantization of an ONNX model. The float model runs on mnc's \
reference executor over the calibration samples to find the range of every activation; the \
output is a standard QDQ ONNX model (QuantizeLinear/DequantizeLinear pairs around float ops, \
int8 weights per output channel, int32 biases, uint8 activations: onnxruntime's \
quantize_static conventions) that mnc and onnxruntime both run. The report compares the int8 \
model with the float model: SQNR per quantized layer and of the outputs, top-1 agreement, and \
the layers worth keeping in float. See docs/QUANTIZATION.md."
)]
pub struct QuantizeArgs {
    /// The float ONNX model.
    #[arg(value_name = "MODEL.onnx")]
    pub model: PathBuf,
    /// Calibration data: a .npy file (one input, or a stack [k, ...] of them) or a folder of
    /// .npy files and PNG/JPEG photos (photos get `mnc run --image`'s preprocessing).
    #[arg(long, value_name = "DIR_OR_NPY")]
    pub calibrate: PathBuf,
    /// How activation ranges are chosen.
    #[arg(long, value_enum, default_value_t = Method::Minmax)]
    pub method: Method,
    /// The percentile of `--method percentile` (in percent of |x|).
    #[arg(long, default_value_t = DEFAULT_PERCENTILE)]
    pub percentile: f64,
    /// One weight scale per output channel (the default).
    #[arg(long, overrides_with = "no_per_channel")]
    pub per_channel: bool,
    /// One weight scale per weight tensor.
    #[arg(long)]
    pub no_per_channel: bool,
    /// Leave nodes whose name contains PATTERN (or matches it as a glob with * and ?) in
    /// float (repeatable).
    #[arg(long = "keep-f32", value_name = "PATTERN")]
    pub keep_f32: Vec<String>,
    /// Bias correction: shift each quantized layer's bias by the mean error of its int8
    /// weights on the calibration samples (E[(W_q - W) x], with x's per-channel mean).
    #[arg(long)]
    pub bias_correction: bool,
    /// Batch size the model is imported with; each calibration sample is one batch
    /// (default: the model's static batch, or 1).
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// Compare with the float model on the first N calibration samples.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub report_samples: usize,
    /// Leave-one-out over the quantized layers on the first N calibration samples: the
    /// output SQNR with each layer in turn kept in float, to choose --keep-f32 (one
    /// reference run per layer and sample; 0: off).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub sensitivity: usize,
    /// Also write the report as JSON (every layer, output and calibrated tensor).
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// The quantized ONNX model to write.
    #[arg(short, long, value_name = "OUT.onnx")]
    pub output: PathBuf,
}

/// Runs `mnc quantize`.
pub fn run(a: &QuantizeArgs) -> anyhow::Result<()> {
    if !(a.percentile > 0.0 && a.percentile <= 100.0) {
        bail!("--percentile must be in (0, 100], not {}", a.percentile);
    }
    let opts = QuantizeOptions {
        method: a.method,
        percentile: a.percentile,
        per_channel: !a.no_per_channel,
        keep_f32: a.keep_f32.clone(),
        batch: a.batch,
        bias_correction: a.bias_correction,
    };
    let q = quantize(&a.model, &a.calibrate, &opts).with_context(|| "mnc quantize".to_string())?;
    let bytes = q
        .written
        .model
        .write_to_bytes()
        .map_err(QuantizeError::from)?;
    std::fs::write(&a.output, bytes)
        .with_context(|| format!("{}: cannot write", a.output.display()))?;
    let mut report = super::report::evaluate(
        &q,
        &a.model.display().to_string(),
        &a.output.display().to_string(),
        a.report_samples,
    )
    .context("comparing the int8 model with the float model")?;
    if a.sensitivity > 0 {
        report.sensitivity = Some(
            super::report::sensitivity(&q, a.sensitivity)
                .context("leave-one-out over the quantized layers")?,
        );
    }
    print!("{}", report.text());
    if let Some(p) = &a.report_json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(p, json + "\n").with_context(|| format!("{}: cannot write", p.display()))?;
    }
    Ok(())
}
