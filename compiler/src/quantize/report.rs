//! The report of `mnc quantize`: how far the int8 model is from the float model.
//!
//! The written QDQ model is imported back into mnc (QuantizeLinear/DequantizeLinear as
//! `Quantize`/`Dequantize` ops, so the numbers are those of mnc's own quantized arithmetic,
//! [`mnc_ir::quant`]) with the dequantized output of every quantized layer added to its graph
//! outputs, and run on the reference executor next to the float model, sample by sample:
//!
//! - per quantized layer (Conv, Gemm, MatMul; the tensor after a removed Relu/Clip), the
//!   SQNR `10 log10(sum y^2 / sum (y - y_q)^2)` in dB over the evaluated samples: the error
//!   accumulated up to that layer, not the layer's own;
//! - per graph output, the SQNR, the mean `|y - y_q|`, and for an `[N, C]` output the top-1
//!   agreement (rows whose argmax is the same);
//! - the layers with the lowest accumulated SQNR: where the error has built up, not
//!   necessarily where it comes from (on EfficientNet-Lite0 keeping them in float changes
//!   nothing; the stem and the first block add most of the error, docs/QUANTIZATION.md);
//! - with `--sensitivity N` ([`sensitivity`]), leave-one-out: the output SQNR of the file
//!   written with each quantized layer in turn kept in float, the layers whose float
//!   version gains the most first (the candidates for `--keep-f32`).

use super::{run_named, with_outputs, QuantizeError, Quantized, TensorRange};
use crate::onnx::{import_bytes, ImportOptions};
use serde::Serialize;
use std::fmt::Write;

/// How many of the lowest-SQNR layers the report names.
pub const WORST: usize = 3;

/// Signal and noise energy of one compared tensor, summed over samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Energy {
    pub signal: f64,
    pub noise: f64,
    pub abs_diff: f64,
    pub count: u64,
}

impl Energy {
    pub fn add(&mut self, y: &[f32], yq: &[f32]) {
        for (a, b) in y.iter().zip(yq) {
            let (a, b) = (*a as f64, *b as f64);
            self.signal += a * a;
            self.noise += (a - b) * (a - b);
            self.abs_diff += (a - b).abs();
        }
        self.count += y.len() as u64;
    }
    /// SQNR in dB; `None` when the two are identical.
    pub fn sqnr_db(&self) -> Option<f64> {
        (self.noise > 0.0).then(|| 10.0 * (self.signal / self.noise).log10())
    }
}

/// The SQNR of one quantized layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerReport {
    pub node: String,
    pub op: String,
    pub output: String,
    /// `null`: identical to the float model.
    pub sqnr_db: Option<f64>,
}

/// The error of one graph output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutputReport {
    pub name: String,
    pub sqnr_db: Option<f64>,
    pub mean_abs_diff: f64,
    /// Rows of an `[N, C]` output with the same argmax, and the rows compared.
    pub top1_agree: Option<(usize, usize)>,
}

/// The output SQNR of the model written with one layer kept in float ([`sensitivity`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerSensitivity {
    pub node: String,
    /// `null`: identical to the float model.
    pub output_sqnr_db: Option<f64>,
}

/// Leave-one-out over the quantized layers (see [`sensitivity`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sensitivity {
    pub samples: usize,
    /// The output SQNR of the written file (every layer quantized) on the same samples.
    pub baseline_sqnr_db: Option<f64>,
    /// Per layer, the best first (the highest output SQNR when that layer is float).
    pub layers: Vec<LayerSensitivity>,
}

/// Everything `mnc quantize` reports (the JSON of `--report-json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub model: String,
    pub output: String,
    pub method: super::calibrate::Method,
    pub percentile: Option<f64>,
    pub per_channel: bool,
    pub calibration_samples: usize,
    pub evaluated_samples: usize,
    pub layers_quantized: usize,
    pub activations_quantized: usize,
    pub relu_clip_removed: usize,
    pub kept_f32: Vec<String>,
    pub skipped: Vec<(String, String)>,
    pub notes: Vec<String>,
    pub layers: Vec<LayerReport>,
    pub outputs: Vec<OutputReport>,
    /// The lowest-SQNR layers, worst first.
    pub worst: Vec<String>,
    /// `--sensitivity N`: leave-one-out over the layers.
    pub sensitivity: Option<Sensitivity>,
    pub tensors: Vec<TensorRange>,
}

/// A float tensor, its int8 counterpart and the float tensor's shape.
type Compared = (Vec<f32>, Vec<f32>, Vec<usize>);

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Compares the written model with the float model on the first `samples` calibration
/// samples (see the module docs).
pub fn evaluate(
    q: &Quantized,
    model: &str,
    output: &str,
    samples: usize,
) -> Result<Report, QuantizeError> {
    let plan = &q.plan;
    let dq = &q.written.dequantized;
    let layers: Vec<(usize, &str)> = plan
        .layers
        .iter()
        .enumerate()
        .filter_map(|(k, l)| dq.get(&l.output).map(|t| (k, t.as_str())))
        .collect();
    let names: Vec<&str> = layers.iter().map(|(_, t)| *t).collect();
    let bytes = with_outputs(&q.written.model, &names)?;
    let display = format!("{output} (the written int8 model)");
    let batch = q.samples.first().and_then(|s| s.shape.first().copied());
    let qgraph = import_bytes(&bytes, None, &display, &ImportOptions { batch })?;
    // The model's own outputs (the written model keeps them, by name).
    let graph_outputs: Vec<&str> = q
        .written
        .model
        .graph
        .output
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    let mut layer_e = vec![Energy::default(); plan.layers.len()];
    let mut out_e = vec![Energy::default(); graph_outputs.len()];
    let mut top1 = vec![(0usize, 0usize); graph_outputs.len()];
    let n = samples.min(q.samples.len());
    for (k, x) in q.samples[..n].iter().enumerate() {
        let yf = run_named(&q.float_graph, x, "float", k)?;
        let yq = run_named(&qgraph, x, "int8", k)?;
        let pair = |f: &str, i: &str| -> Result<Compared, QuantizeError> {
            let a = yf
                .get(f)
                .and_then(|t| t.as_f32().map(|v| (v.to_vec(), t.shape.clone())));
            let b = yq.get(i).and_then(|t| t.as_f32().map(<[f32]>::to_vec));
            match (a, b) {
                (Some((a, shape)), Some(b)) if a.len() == b.len() => Ok((a, b, shape)),
                _ => Err(QuantizeError::Internal(format!(
                    "tensor '{f}' / '{i}' missing or of another size in the comparison"
                ))),
            }
        };
        for &(li, t) in &layers {
            let (a, b, _) = pair(&plan.layers[li].output, t)?;
            layer_e[li].add(&a, &b);
        }
        for (oi, name) in graph_outputs.iter().enumerate() {
            let (a, b, shape) = pair(name, name)?;
            out_e[oi].add(&a, &b);
            if let [rows, cols] = shape[..] {
                if cols > 1 {
                    for r in 0..rows {
                        let s = r * cols..(r + 1) * cols;
                        top1[oi].0 += usize::from(argmax(&a[s.clone()]) == argmax(&b[s]));
                        top1[oi].1 += 1;
                    }
                }
            }
        }
    }
    let layer_reports: Vec<LayerReport> = plan
        .layers
        .iter()
        .zip(&layer_e)
        .map(|(l, e)| LayerReport {
            node: l.node.clone(),
            op: l.op.clone(),
            output: l.output.clone(),
            sqnr_db: e.sqnr_db(),
        })
        .collect();
    let mut order: Vec<&LayerReport> = layer_reports
        .iter()
        .filter(|l| l.sqnr_db.is_some())
        .collect();
    order.sort_by(|a, b| {
        a.sqnr_db
            .partial_cmp(&b.sqnr_db)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let opts = &q.options;
    Ok(Report {
        model: model.to_string(),
        output: output.to_string(),
        method: opts.method,
        percentile: (opts.method == super::calibrate::Method::Percentile)
            .then_some(opts.percentile),
        per_channel: opts.per_channel,
        calibration_samples: q.samples.len(),
        evaluated_samples: n,
        layers_quantized: plan.layers.len(),
        activations_quantized: plan.activations.len(),
        relu_clip_removed: plan.removed.len(),
        kept_f32: plan.kept_f32.clone(),
        skipped: plan.skipped.clone(),
        notes: q.notes.clone(),
        outputs: graph_outputs
            .iter()
            .zip(&out_e)
            .zip(&top1)
            .map(|((name, e), t)| OutputReport {
                name: name.to_string(),
                sqnr_db: e.sqnr_db(),
                mean_abs_diff: if e.count > 0 {
                    e.abs_diff / e.count as f64
                } else {
                    0.0
                },
                top1_agree: (t.1 > 0).then_some(*t),
            })
            .collect(),
        worst: order.iter().take(WORST).map(|l| l.node.clone()).collect(),
        sensitivity: None,
        layers: layer_reports,
        tensors: q.ranges.clone(),
    })
}

/// The summed energy of every graph output of `g` (the written model's outputs, by name)
/// against the float model on the first `n` samples.
fn output_energy(q: &Quantized, g: &mnc_ir::Graph, n: usize) -> Result<Energy, QuantizeError> {
    let names: Vec<&str> = q
        .written
        .model
        .graph
        .output
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    let mut e = Energy::default();
    for (k, x) in q.samples[..n].iter().enumerate() {
        let (yf, yq) = (
            run_named(&q.float_graph, x, "float", k)?,
            run_named(g, x, "int8", k)?,
        );
        for name in &names {
            let a = yf.get(*name).and_then(|t| t.as_f32());
            let b = yq.get(*name).and_then(|t| t.as_f32());
            match (a, b) {
                (Some(a), Some(b)) if a.len() == b.len() => e.add(a, b),
                _ => {
                    return Err(QuantizeError::Internal(format!(
                        "output '{name}' missing or of another size in the comparison"
                    )))
                }
            }
        }
    }
    Ok(e)
}

/// Leave-one-out sensitivity on the first `samples` calibration samples: for each quantized
/// layer, the file is written again (same ranges, same bias correction) with that layer
/// also kept in float (its input read unquantized: a first layer takes the input image's
/// quantization with it), and its outputs compared with the float model's. The layers whose
/// float version gains the most are the ones worth `--keep-f32`; the accumulated per-layer
/// SQNR of [`evaluate`] does not say that. Costs one reference run per layer and sample.
pub fn sensitivity(q: &Quantized, samples: usize) -> Result<Sensitivity, QuantizeError> {
    let n = samples.min(q.samples.len());
    let batch = q.samples.first().and_then(|s| s.shape.first().copied());
    let import =
        |m: &onnx_protobuf::ModelProto, what: &str| -> Result<mnc_ir::Graph, QuantizeError> {
            let bytes = onnx_protobuf::Message::write_to_bytes(m).map_err(QuantizeError::from)?;
            Ok(import_bytes(&bytes, None, what, &ImportOptions { batch })?)
        };
    let base = import(&q.written.model, "the written int8 model")?;
    let baseline = output_energy(q, &base, n)?.sqnr_db();
    let opts = &q.options;
    let constants: std::collections::HashMap<&str, &mnc_ir::Tensor> = q
        .float_graph
        .node_ids()
        .into_iter()
        .filter_map(|id| {
            let node = q.float_graph.node(id);
            match &node.op {
                mnc_ir::Op::Constant(t) => Some((node.name.as_str(), t)),
                _ => None,
            }
        })
        .collect();
    let value = |name: &str| constants.get(name).map(|t| (*t).clone());
    let mut layers = Vec::new();
    for l in &q.plan.layers {
        let keep = |label: &str| {
            label == l.node || opts.keep_f32.iter().any(|p| super::qdq::matches(p, label))
        };
        let plan = super::qdq::plan_with(&q.model, opts.per_channel, &keep);
        let written = super::qdq::write(&q.model, &plan, &q.params, &value, &q.input_means)?;
        let g = import(
            &written.model,
            &format!("the int8 model without '{}'", l.node),
        )?;
        layers.push(LayerSensitivity {
            node: l.node.clone(),
            output_sqnr_db: output_energy(q, &g, n)?.sqnr_db(),
        });
    }
    // Identical outputs (no noise) rank first.
    let key = |s: &LayerSensitivity| s.output_sqnr_db.unwrap_or(f64::INFINITY);
    layers.sort_by(|a, b| key(b).total_cmp(&key(a)));
    Ok(Sensitivity {
        samples: n,
        baseline_sqnr_db: baseline,
        layers,
    })
}

fn db(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v:.1}"),
        None => "exact".into(),
    }
}

impl Report {
    /// The text `mnc quantize` prints.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let method = match self.percentile {
            Some(p) => format!("percentile {p}"),
            None => format!("{:?}", self.method).to_lowercase(),
        };
        let _ = writeln!(
            s,
            "quantized {} -> {}: {} layers, {} activation tensors (u8 per tensor), weights i8 {}, {} removed Relu/Clip; calibration {method} on {} samples",
            self.model,
            self.output,
            self.layers_quantized,
            self.activations_quantized,
            if self.per_channel { "per channel" } else { "per tensor" },
            self.relu_clip_removed,
            self.calibration_samples
        );
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        if !self.kept_f32.is_empty() {
            let _ = writeln!(
                s,
                "kept in float (--keep-f32): {}",
                self.kept_f32.join(", ")
            );
        }
        for (node, why) in &self.skipped {
            let _ = writeln!(s, "not quantized: {node}: {why}");
        }
        let _ = writeln!(
            s,
            "SQNR of the int8 model (mnc reference executor) against float, {} samples:",
            self.evaluated_samples
        );
        let w = self
            .layers
            .iter()
            .map(|l| l.node.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(s, "  {:<w$}  {:<6}  {:>8}", "layer", "op", "SQNR dB");
        for l in &self.layers {
            let _ = writeln!(s, "  {:<w$}  {:<6}  {:>8}", l.node, l.op, db(l.sqnr_db));
        }
        for o in &self.outputs {
            let top1 = match o.top1_agree {
                Some((a, n)) => format!(", top-1 agreement {a}/{n}"),
                None => String::new(),
            };
            let _ = writeln!(
                s,
                "output '{}': SQNR {} dB, mean |difference| {:.4e}{top1}",
                o.name,
                db(o.sqnr_db),
                o.mean_abs_diff
            );
        }
        if !self.worst.is_empty() {
            let list: Vec<String> = self
                .worst
                .iter()
                .map(|n| {
                    let l = self.layers.iter().find(|l| &l.node == n);
                    format!("{n} ({} dB)", db(l.and_then(|l| l.sqnr_db)))
                })
                .collect();
            let _ = writeln!(
                s,
                "lowest accumulated SQNR (where the error has built up; the layers adding most of it are often earlier, see docs/QUANTIZATION.md before choosing --keep-f32): {}",
                list.join(", ")
            );
        }
        if let Some(sens) = &self.sensitivity {
            let best: Vec<String> = sens
                .layers
                .iter()
                .take(WORST)
                .map(|l| format!("{} ({} dB)", l.node, db(l.output_sqnr_db)))
                .collect();
            let _ = writeln!(
                s,
                "leave-one-out on {} samples (output SQNR {} dB with every layer int8): keeping one layer in float helps most for {}",
                sens.samples,
                db(sens.baseline_sqnr_db),
                best.join(", ")
            );
        }
        s
    }
}
