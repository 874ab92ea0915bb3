//! Post-training int8 quantization of an ONNX model (`mnc quantize`): calibration on mnc's
//! reference executor, a standard QDQ ONNX model as output (onnxruntime's
//! `quantize_static(quant_format=QDQ)` conventions), and a per-layer error report.
//!
//! - [`calibrate`]: observers, the `minmax` / `percentile` / `entropy` ranges, and the
//!   parameters derived from them (u8 asymmetric activations per tensor, i8 symmetric
//!   weights per output channel, i32 biases).
//! - [`qdq`]: which tensors are quantized ([`qdq::plan`]) and the rewritten `ModelProto`
//!   ([`qdq::write`]).
//! - [`report`]: SQNR per quantized layer and of the outputs, the int8 model (imported back
//!   into mnc) against the float model, both on the reference executor.
//! - [`cli`]: the `mnc quantize` subcommand.
//!
//! The value of every ONNX tensor is read by importing a copy of the model whose graph
//! outputs list the tensors wanted (the importer keeps graph outputs by name) and running it
//! on the reference executor ([`with_outputs`]).

pub mod calibrate;
pub mod cli;
pub mod qdq;
pub mod report;
#[cfg(test)]
mod tests;

use crate::onnx::{import_bytes, ImportError, ImportOptions};
use calibrate::{activation_params, ChannelMeans, Method, Observer};
use mnc_ir::{Graph, Op, Tensor};
use onnx_protobuf::{Message, ModelProto, ValueInfoProto};
use qdq::{ActParams, Plan, Written};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why quantization failed.
#[derive(Debug, Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("{0}")]
    Model(String),
    #[error("calibration data {path}: {msg}")]
    Calibration { path: PathBuf, msg: String },
    #[error("running the {what} model on sample {sample}: {source}")]
    Run {
        what: &'static str,
        sample: usize,
        #[source]
        source: Box<mnc_runtime::RuntimeError>,
    },
    #[error("cannot serialize the ONNX model: {0}")]
    Encode(#[from] protobuf::Error),
    /// A broken invariant of the planner or writer (a bug, reported instead of a panic).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Options of [`quantize`].
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    pub method: Method,
    /// The percentile of `Method::Percentile`, in percent.
    pub percentile: f64,
    /// Per-output-channel weight scales (else one per weight tensor).
    pub per_channel: bool,
    /// Node-name patterns left in float ([`qdq::matches`]).
    pub keep_f32: Vec<String>,
    /// The batch the model is imported with (each calibration sample is one batch).
    pub batch: Option<usize>,
    /// Bias correction: shift each quantized layer's bias by the mean error its int8
    /// weights add, measured with the mean of its input over the calibration samples
    /// ([`calibrate::weight_error_shift`]).
    pub bias_correction: bool,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            method: Method::Minmax,
            percentile: calibrate::DEFAULT_PERCENTILE,
            per_channel: true,
            keep_f32: Vec::new(),
            batch: None,
            bias_correction: false,
        }
    }
}

/// The calibrated range and parameters of one activation tensor.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TensorRange {
    pub tensor: String,
    /// Smallest and largest finite value seen.
    pub min: f32,
    pub max: f32,
    /// The range the method chose (includes 0).
    pub rmin: f32,
    pub rmax: f32,
    pub scale: f32,
    pub zero_point: i32,
    /// NaN or infinite values seen (left out of the range).
    pub non_finite: u64,
}

/// A quantized model with what the report needs.
pub struct Quantized {
    pub written: Written,
    pub plan: Plan,
    /// The float model as read, the activation parameters and the per-channel input means
    /// of bias correction: what [`qdq::write`] needs to write variants of the file
    /// ([`report::sensitivity`]).
    pub model: ModelProto,
    pub params: HashMap<String, ActParams>,
    pub input_means: HashMap<String, Vec<f64>>,
    pub ranges: Vec<TensorRange>,
    /// The float model, imported with the tensors of the plan as extra graph outputs.
    pub float_graph: Graph,
    /// The calibration samples (one batch each).
    pub samples: Vec<Tensor>,
    /// Notes for the user (dropped samples, and so on).
    pub notes: Vec<String>,
    pub options: QuantizeOptions,
}

/// `model` with `names` (tensors of its graph) added to its graph outputs, serialized.
pub fn with_outputs(model: &ModelProto, names: &[&str]) -> Result<Vec<u8>, QuantizeError> {
    let mut m = model.clone();
    let g = m.graph.mut_or_insert_default();
    let mut have: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    for n in names {
        if have.insert(n.to_string()) {
            let mut vi = ValueInfoProto::new();
            vi.name = n.to_string();
            g.output.push(vi);
        }
    }
    Ok(m.write_to_bytes()?)
}

/// The outputs of one run of `g`, by graph-output name.
pub fn run_named(
    g: &Graph,
    x: &Tensor,
    what: &'static str,
    sample: usize,
) -> Result<HashMap<String, Tensor>, QuantizeError> {
    let outs = mnc_runtime::reference::run(g, std::slice::from_ref(x)).map_err(|source| {
        QuantizeError::Run {
            what,
            sample,
            source: Box::new(source),
        }
    })?;
    Ok(g.outputs.iter().map(|o| o.name.clone()).zip(outs).collect())
}

/// Reads and parses an ONNX file.
pub fn read_model(path: &Path) -> Result<ModelProto, QuantizeError> {
    let bytes = std::fs::read(path).map_err(|e| {
        QuantizeError::Model(format!("{}: cannot read the file: {e}", path.display()))
    })?;
    ModelProto::parse_from_bytes(&bytes).map_err(|e| {
        QuantizeError::Model(format!(
            "{}: not a valid ONNX protobuf: {e}",
            path.display()
        ))
    })
}

/// Quantizes the ONNX model at `model_path`, calibrating on the samples at `calibration`
/// ([`load_samples`]).
pub fn quantize(
    model_path: &Path,
    calibration: &Path,
    opts: &QuantizeOptions,
) -> Result<Quantized, QuantizeError> {
    let model = read_model(model_path)?;
    let plan = qdq::plan(&model, opts.per_channel, &opts.keep_f32);
    if plan.layers.is_empty() && plan.activations.is_empty() {
        return Err(QuantizeError::Model(format!(
            "{}: nothing to quantize (no Conv, Gemm, MatMul, Add, Mul, Concat, pooling or Sigmoid node outside --keep-f32)",
            model_path.display()
        )));
    }
    let mut wanted: Vec<&str> = plan.calibrated().map(String::as_str).collect();
    wanted.extend(plan.layers.iter().map(|l| l.output.as_str()));
    // Bias correction needs the per-channel mean of every biased layer's input.
    let mut means: Vec<(String, ChannelMeans)> = Vec::new();
    if opts.bias_correction {
        for b in &plan.biases {
            if !means.iter().any(|(t, _)| *t == b.input) {
                means.push((b.input.clone(), ChannelMeans::default()));
            }
        }
        wanted.extend(means.iter().map(|(t, _)| t.as_str()));
    }
    let bytes = with_outputs(&model, &wanted)?;
    let dir = match model_path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => Path::new("."),
    };
    let display = model_path.display().to_string();
    let float_graph = import_bytes(
        &bytes,
        Some(dir),
        &display,
        &ImportOptions { batch: opts.batch },
    )?;
    let [input] = float_graph.inputs[..] else {
        return Err(QuantizeError::Model(format!(
            "{display}: the model has {} inputs; `mnc quantize` calibrates models with one",
            float_graph.inputs.len()
        )));
    };
    let shape = float_graph.node(input).ty.shape.clone();
    let (samples, mut notes) = load_samples(calibration, &shape)?;

    let mut observers: Vec<(String, Observer)> = plan
        .calibrated()
        .map(|t| (t.clone(), Observer::new(opts.method.needs_histogram())))
        .collect();
    let missing = |name: &str| {
        QuantizeError::Internal(format!(
            "tensor '{name}' is missing from the calibration run"
        ))
    };
    for (k, x) in samples.iter().enumerate() {
        let values = run_named(&float_graph, x, "float", k)?;
        for (name, obs) in observers.iter_mut() {
            let v = values.get(name).and_then(|t| t.as_f32());
            obs.add(v.ok_or_else(|| missing(name))?);
        }
        for (name, m) in means.iter_mut() {
            let t = values.get(name).ok_or_else(|| missing(name))?;
            m.add(t.as_f32().ok_or_else(|| missing(name))?, &t.shape);
        }
    }
    let mut ranges = Vec::new();
    let mut params = HashMap::new();
    for (name, o) in &observers {
        let (rmin, rmax) = o.range(opts.method, opts.percentile);
        let (scale, zero_point) = activation_params(rmin, rmax);
        if o.non_finite > 0 {
            notes.push(format!(
                "tensor '{name}': {} NaN/infinite values left out of its range",
                o.non_finite
            ));
        }
        ranges.push(TensorRange {
            tensor: name.clone(),
            min: o.min,
            max: o.max,
            rmin,
            rmax,
            scale,
            zero_point,
            non_finite: o.non_finite,
        });
        params.insert(name.clone(), ActParams { scale, zero_point });
    }

    let constants: HashMap<&str, &Tensor> = float_graph
        .node_ids()
        .into_iter()
        .filter_map(|id| {
            let n = float_graph.node(id);
            match &n.op {
                Op::Constant(t) => Some((n.name.as_str(), t)),
                _ => None,
            }
        })
        .collect();
    let value = |name: &str| constants.get(name).map(|t| (*t).clone());
    let input_means: HashMap<String, Vec<f64>> =
        means.into_iter().map(|(t, m)| (t, m.means())).collect();
    let written = qdq::write(&model, &plan, &params, &value, &input_means)?;
    if written.biases_corrected > 0 {
        notes.push(format!(
            "bias correction: {} biases shifted by the mean error of their int8 weights",
            written.biases_corrected
        ));
    }
    if let Some((from, to)) = written.opset_raised {
        notes.push(format!("opset raised from {from} to {to}"));
    }
    if !written.weights_enlarged.is_empty() {
        let channels: usize = written.weights_enlarged.iter().map(|w| w.1).sum();
        notes.push(format!(
            "the scales of {channels} weight channels (in {} weights, first '{}') were enlarged so that their biases fit int32",
            written.weights_enlarged.len(),
            written.weights_enlarged[0].0
        ));
    }
    for (b, n) in &written.bias_saturated {
        notes.push(format!(
            "bias '{b}': {n} values saturated at the int32 range of their scale (x_scale * w_scale)"
        ));
    }
    Ok(Quantized {
        written,
        plan,
        model,
        params,
        input_means,
        ranges,
        float_graph,
        samples,
        notes,
        options: opts.clone(),
    })
}

/// Image file extensions read as calibration photos.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Loads calibration samples for a model input of `shape` (`[batch, ...]`) from a `.npy`
/// file or a folder of `.npy` files and PNG/JPEG photos (read in file-name order; other
/// files are ignored). A `.npy` array holds one item (`shape[1..]` or `[1, shape[1..]]`) or
/// a stack of them (`[k, shape[1..]]`); a photo gets `mnc run --image`'s ImageNet
/// preprocessing at the input's size (shorter side to `size * 256 / 224`, center crop,
/// mean/std), which needs a square `[batch, 3, size, size]` input. Items are grouped into
/// samples of `batch`; a last incomplete group is left out (and said so in the notes).
pub fn load_samples(
    path: &Path,
    shape: &[usize],
) -> Result<(Vec<Tensor>, Vec<String>), QuantizeError> {
    let err = |msg: String| QuantizeError::Calibration {
        path: path.to_path_buf(),
        msg,
    };
    let Some((&batch, item)) = shape.split_first() else {
        return Err(err("the model input is a scalar".into()));
    };
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| err(format!("cannot list the folder: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    e.eq_ignore_ascii_case("npy")
                        || IMAGE_EXTENSIONS.iter().any(|i| e.eq_ignore_ascii_case(i))
                })
            })
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(err("no .npy, .png or .jpg files".into()));
    }
    let item_len: usize = item.iter().product();
    let mut items: Vec<f32> = Vec::new();
    for f in &files {
        let is_npy = f
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        let t = if is_npy {
            crate::io::read_npy(f).map_err(|e| err(crate::error_line(&e)))?
        } else {
            let size = match item {
                [3, h, w] if h == w => *h as u32,
                _ => {
                    return Err(err(format!(
                        "{}: photos need a [N, 3, S, S] model input, not {shape:?}",
                        f.display()
                    )))
                }
            };
            let resize = (size * 256).div_ceil(224);
            crate::io::load_image(f, resize, size).map_err(|e| err(crate::error_line(&e)))?
        };
        let ok = t.shape[..] == item[..]
            || (t.shape.len() == item.len() + 1 && t.shape[1..] == item[..]);
        if !ok {
            return Err(err(format!(
                "{}: shape {:?} does not fit the model input {shape:?} (one item {item:?} or a stack [k, ...])",
                f.display(),
                t.shape
            )));
        }
        let data = t
            .as_f32()
            .ok_or_else(|| err(format!("{}: not float32", f.display())))?;
        items.extend_from_slice(data);
    }
    let count = items.len() / item_len.max(1);
    let full = count / batch.max(1);
    let mut notes = Vec::new();
    if full == 0 {
        return Err(err(format!(
            "{count} items, fewer than the batch of {batch}"
        )));
    }
    if full * batch < count {
        notes.push(format!(
            "{} calibration items left out (not a whole batch of {batch})",
            count - full * batch
        ));
    }
    let per = batch * item_len;
    let samples = (0..full)
        .map(|k| Tensor::from_f32(shape.to_vec(), items[k * per..(k + 1) * per].to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    Ok((samples, notes))
}
