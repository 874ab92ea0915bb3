//! Cost report (`mnc cost-report`): torchinfo-compatible parameter, mult-add and memory
//! accounting of an IR graph, per layer and in total, plus a depthwise-separable analysis
//! and a breakdown by conv class.
//!
//! Owns: the accounting conventions ([`analyze`], documented per op in `docs/COST.md`),
//! the report data model ([`ModelCost`], serialized as the stable JSON schema), the
//! module-path naming of layers ([`naming`]), the text/JSON/CSV/markdown renderers
//! ([`format`]) and the command-line front end ([`cli`]).
//!
//! The conventions are those of torchinfo 1.8 (`layer_info.py`, `model_statistics.py`),
//! so that every figure can be checked against `torchinfo.summary` of the PyTorch model.

pub mod classify;
pub mod cli;
pub mod format;
pub mod naming;

use mnc_ir::facts::{self, Weights};
use mnc_ir::{Graph, IrError, NodeId, Op};
use serde::Serialize;
use std::collections::HashMap;

pub use classify::{ClassCost, LayerClass, SeparablePair, SeparableTotal};

/// Options of the analysis.
#[derive(Clone, Debug, Default)]
pub struct CostOptions {
    /// Parameter-name prefixes to mark non-trainable (`--freeze features`): a parameter is
    /// frozen when its tensor name starts with any of them.
    pub freeze: Vec<String>,
    /// Pipeline stage the graph comes from (`imported`, `optimized`), copied into the
    /// report; `None` when the caller does not say.
    pub stage: Option<String>,
}

/// Errors of the cost analysis; each names the model and, where relevant, the node.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("model '{model}': {source}")]
    Ir {
        model: String,
        #[source]
        source: IrError,
    },
    #[error("model '{model}' has no graph inputs")]
    NoInputs { model: String },
    #[error("model '{model}': node '{node}' ({op}): {msg}")]
    Node {
        model: String,
        node: String,
        op: String,
        msg: String,
    },
}

/// Whether a layer's parameters are trained (torchinfo's `trainable` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Trainable {
    /// Every parameter is trainable.
    #[serde(rename = "yes")]
    Yes,
    /// No parameter is trainable.
    #[serde(rename = "no")]
    No,
    /// Some parameters are frozen, some are not.
    #[serde(rename = "partial")]
    Partial,
    /// The layer has no parameters.
    #[serde(rename = "--")]
    NoParams,
}

impl Trainable {
    fn of(params: u64, trainable: u64) -> Self {
        if params == 0 {
            Trainable::NoParams
        } else if trainable == 0 {
            Trainable::No
        } else if trainable == params {
            Trainable::Yes
        } else {
            Trainable::Partial
        }
    }
    /// The text shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Trainable::Yes => "yes",
            Trainable::No => "no",
            Trainable::Partial => "partial",
            Trainable::NoParams => "--",
        }
    }
}

/// One row of the report: a graph node (or one of the two 1x1 convs of a fused
/// `SqueezeExcite`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerCost {
    /// Module path (`features.3.conv.1`) or node name, see [`naming::module_path`].
    pub name: String,
    /// The IR node the row comes from.
    pub node: String,
    /// Op kind (`Conv`, `BatchNorm`, ...; `SqueezeExcite.fc1` / `.fc2` for the halves of a
    /// fused SE block).
    pub op: String,
    /// Shape of the first non-parameter input.
    pub input_shape: Vec<usize>,
    pub output_shape: Vec<usize>,
    /// Parameter elements (constant weight/bias inputs; a shared weight counts once per
    /// consuming layer).
    pub params: u64,
    pub trainable_params: u64,
    pub param_bytes: u64,
    /// Buffer elements (BatchNorm running mean and variance): stored, not parameters.
    pub buffers: u64,
    pub mult_adds: u64,
    /// The part of `mult_adds` whose weights are quantized to 8 bits (all of a layer's or
    /// none): integer multiply-adds on a target with int8 kernels.
    pub int8_mult_adds: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub trainable: Trainable,
    /// Cost class of a layer with parameters (`null` for parameter-free layers).
    pub class: Option<LayerClass>,
}

/// The cost of one model. Serialized as the `--format json` schema (docs/COST.md).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelCost {
    pub model: String,
    /// Pipeline stage (`imported`, `optimized`) when known.
    pub stage: Option<String>,
    /// Leading dimension of the first graph input.
    pub batch: usize,
    pub total_params: u64,
    pub trainable_params: u64,
    pub non_trainable_params: u64,
    pub total_mult_adds: u64,
    /// The part of `total_mult_adds` on 8-bit quantized weights.
    pub int8_mult_adds: u64,
    /// Bytes of all graph inputs.
    pub input_bytes: u64,
    /// 2 x the output bytes of every layer with parameters (activations and gradients).
    pub forward_backward_pass_bytes: u64,
    pub params_bytes: u64,
    pub input_size_mb: f64,
    pub forward_backward_pass_size_mb: f64,
    pub params_size_mb: f64,
    pub estimated_total_size_mb: f64,
    pub layers: Vec<LayerCost>,
    /// Depthwise conv + pointwise conv pairs, per image (batch 1).
    pub separable: Vec<SeparablePair>,
    /// Model-wide saving of the separable pairs, per image.
    pub separable_total: SeparableTotal,
    /// Mult-adds, parameters and arithmetic intensity by layer class.
    pub classes: Vec<ClassCost>,
    /// Remarks on figures that differ from the training-time model (e.g. BN folding).
    pub notes: Vec<String>,
}

/// The note printed for graphs whose BatchNorms were folded into conv biases.
pub const BN_FOLDED_NOTE: &str = "BN-folded graph: BatchNorm parameters are folded into conv biases; parameter counts differ from the training-time model";

/// Bytes per megabyte, as torchinfo counts (10^6).
pub const MB: f64 = 1e6;

/// Follows `Identity` chains from `id` to a `Constant`; `None` when the value is not a
/// constant (an activation or a computed value).
pub(crate) fn constant_source(g: &Graph, mut id: NodeId) -> Option<NodeId> {
    loop {
        match g.node(id).op {
            Op::Constant(_) => return Some(id),
            // A quantized parameter: stored as its integer constant.
            Op::Identity | Op::Dequantize(_) => id = *g.inputs(id).first()?,
            _ => return None,
        }
    }
}

/// One parameter tensor consumed by a layer.
struct Param {
    numel: u64,
    bytes: u64,
    trainable: bool,
    /// Stored in 8 bits (a quantized weight).
    eight_bit: bool,
}

/// Prefix of the tensor names the PyTorch exporter makes up for computed tensors (e.g. conv
/// weights with BatchNorm folded in: `onnx::Conv_538`).
pub const EXPORTER_TENSOR_PREFIX: &str = "onnx::";

/// The tensor name of the parameter a layer reads from `value`: the constant's name,
/// except when the value reaches the layer through `Identity` nodes (a weight the exporter
/// shared between modules) or the constant has an exporter-made name (`onnx::Conv_538`, a
/// BN-folded weight): then it is the consuming layer's own parameter, `<layer>.<role>`
/// (`features.3.conv.1.weight`), as PyTorch names it. `None` if `value` is not a constant.
pub fn param_name(g: &Graph, layer: &str, role: &str, value: NodeId) -> Option<String> {
    let c = constant_source(g, value)?;
    let name = &g.node(c).name;
    if c != value || name.starts_with(EXPORTER_TENSOR_PREFIX) {
        Some(format!("{layer}.{role}"))
    } else {
        Some(name.clone())
    }
}

/// A layer's view of its inputs, to look up parameters by slot.
struct LayerInputs<'a> {
    g: &'a Graph,
    ins: Vec<NodeId>,
    layer: String,
    opts: &'a CostOptions,
}

impl LayerInputs<'_> {
    /// The parameter in `slot` (`role` is its PyTorch name, `weight` or `bias`), or `None`
    /// when that input is not a constant.
    fn param(&self, slot: usize, role: &str) -> Option<Param> {
        let v = *self.ins.get(slot)?;
        let name = param_name(self.g, &self.layer, role, v)?;
        let ty = &self.g.node(constant_source(self.g, v)?).ty;
        let frozen = self
            .opts
            .freeze
            .iter()
            .any(|p| name.starts_with(p.as_str()));
        Some(Param {
            numel: ty.numel() as u64,
            bytes: ty.bytes() as u64,
            trainable: !frozen,
            eight_bit: ty.dtype.size() == 1,
        })
    }
}

fn sum_params(ps: &[Option<Param>]) -> (u64, u64, u64) {
    ps.iter().flatten().fold((0, 0, 0), |(n, t, b), p| {
        (
            n + p.numel,
            t + if p.trainable { p.numel } else { 0 },
            b + p.bytes,
        )
    })
}

/// Builds a row from its parameter tensors and mult-add factor.
#[allow(clippy::too_many_arguments)]
fn row(
    name: String,
    node: &str,
    op: String,
    input: &mnc_ir::TensorType,
    output: &mnc_ir::TensorType,
    params: &[Option<Param>],
    buffers: u64,
    macs_per_param: u64,
) -> LayerCost {
    let (n, t, b) = sum_params(params);
    let int8 = params.iter().flatten().any(|p| p.eight_bit);
    LayerCost {
        name,
        node: node.to_string(),
        op,
        input_shape: input.shape.clone(),
        output_shape: output.shape.clone(),
        params: n,
        trainable_params: t,
        param_bytes: b,
        buffers,
        mult_adds: n * macs_per_param,
        int8_mult_adds: if int8 { n * macs_per_param } else { 0 },
        input_bytes: input.bytes() as u64,
        output_bytes: output.bytes() as u64,
        trainable: Trainable::of(n, t),
        class: None,
    }
}

/// Analyzes `g` with torchinfo's conventions: one row per computing node in topological
/// order (graph inputs, constants and `Identity` nodes are not rows; constant-only
/// subgraphs are not rows), parameters = the constant inputs of Conv, Gemm, MatMul,
/// BatchNorm (scale, bias), ChannelAffine and SqueezeExcite, then totals, the
/// depthwise-separable pairs and the class breakdown.
pub fn analyze(g: &Graph, opts: &CostOptions) -> Result<ModelCost, CostError> {
    let model = g.name.clone();
    let ir = |source: IrError| CostError::Ir {
        model: model.clone(),
        source,
    };
    let order = g.topo_order().map_err(ir)?;
    let first_input = *g.inputs.first().ok_or_else(|| CostError::NoInputs {
        model: model.clone(),
    })?;
    let batch = g.node(first_input).ty.shape.first().copied().unwrap_or(1);

    // Nodes that depend on a graph input (the others are constant subgraphs).
    let mut live: HashMap<NodeId, bool> = HashMap::new();
    for &id in &order {
        let l = matches!(g.node(id).op, Op::Input { .. })
            || g.inputs(id)
                .iter()
                .any(|i| live.get(i).copied().unwrap_or(false));
        live.insert(id, l);
    }

    let mut layers = Vec::new();
    let mut row_nodes = Vec::new();
    let mut has_bn = false;
    let mut conv_bias = false;
    for &id in &order {
        let node = g.node(id);
        if !live[&id] || matches!(node.op, Op::Input { .. } | Op::Constant(_) | Op::Identity) {
            continue;
        }
        let ins = g.inputs(id);
        let data_in = ins
            .iter()
            .find(|&&i| constant_source(g, i).is_none())
            .or(ins.first());
        let in_ty = data_in
            .map(|&i| g.node(i).ty.clone())
            .unwrap_or_else(|| node.ty.clone());
        let out = &node.ty;
        let name = naming::module_path(&node.name);
        let kind = match &node.op {
            Op::Act(a) => format!("Act({a})"),
            op => op.kind().to_string(),
        };
        let li = LayerInputs {
            g,
            ins: ins.clone(),
            layer: name.clone(),
            opts,
        };
        let err = |msg: String| CostError::Node {
            model: model.clone(),
            node: node.name.clone(),
            op: kind.clone(),
            msg,
        };
        let weights = facts::of(&node.op).weights;
        let Some(macs) = weights.macs_per_param(&out.shape) else {
            return Err(err(format!("conv output {out} is not NCHW")));
        };
        match weights {
            Weights::Conv { bias } => {
                let mut ps = vec![li.param(1, "weight")];
                if bias {
                    let b = li.param(2, "bias");
                    conv_bias |= b.is_some();
                    ps.push(b);
                }
                layers.push(row(name, &node.name, kind, &in_ty, out, &ps, 0, macs));
            }
            Weights::Matrix { c } => {
                let mut ps = vec![li.param(0, "weight"), li.param(1, "weight")];
                if c {
                    ps.push(li.param(2, "bias"));
                }
                layers.push(row(name, &node.name, kind, &in_ty, out, &ps, 0, macs));
            }
            Weights::Norm { running_stats } => {
                has_bn |= running_stats;
                let buffers = if running_stats {
                    [(3, "running_mean"), (4, "running_var")]
                        .iter()
                        .filter_map(|&(s, role)| li.param(s, role))
                        .map(|b| b.numel)
                        .sum()
                } else {
                    0
                };
                let ps = vec![li.param(1, "weight"), li.param(2, "bias")];
                layers.push(row(name, &node.name, kind, &in_ty, out, &ps, buffers, macs));
            }
            Weights::SqueezeExcite => {
                if in_ty.rank() != 4 || ins.len() != 5 {
                    return Err(err(format!("SqueezeExcite input {in_ty} is not NCHW")));
                }
                let (n, c) = (in_ty.shape[0], in_ty.shape[1]);
                let r = g.node(ins[1]).ty.shape.first().copied().unwrap_or(0);
                let pooled = mnc_ir::TensorType::new(in_ty.dtype, vec![n, c, 1, 1]);
                let reduced = mnc_ir::TensorType::new(in_ty.dtype, vec![n, r, 1, 1]);
                for (half, w, b, i, o) in [
                    ("fc1", 1, 2, &pooled, &reduced),
                    ("fc2", 3, 4, &reduced, &pooled),
                ] {
                    // The halves are named after their weights (`...block.2.fc1.weight`).
                    let wname = constant_source(g, ins[w]).map(|c| g.node(c).name.as_str());
                    let rname = match wname {
                        Some(t) if t.ends_with(".weight") => naming::param_owner(t).to_string(),
                        _ => format!("{name}.{half}"),
                    };
                    let half_inputs = LayerInputs {
                        g,
                        ins: ins.clone(),
                        layer: rname.clone(),
                        opts,
                    };
                    let ps = vec![half_inputs.param(w, "weight"), half_inputs.param(b, "bias")];
                    let op = format!("SqueezeExcite.{half}");
                    layers.push(row(rname, &node.name, op, i, o, &ps, 0, macs));
                    row_nodes.push(id);
                }
                continue;
            }
            Weights::None => {
                layers.push(row(name, &node.name, kind, &in_ty, out, &[], 0, macs));
            }
        }
        row_nodes.push(id);
    }

    classify::assign_classes(g, &order, &row_nodes, &mut layers);
    let classes = classify::class_breakdown(&layers);
    let separable = classify::separable_pairs(g, &order, &layers, &row_nodes);
    let separable_total = SeparableTotal::of(&separable);

    let total_params: u64 = layers.iter().map(|l| l.params).sum();
    let trainable_params: u64 = layers.iter().map(|l| l.trainable_params).sum();
    let total_mult_adds: u64 = layers.iter().map(|l| l.mult_adds).sum();
    let params_bytes: u64 = layers.iter().map(|l| l.param_bytes).sum();
    let int8_mult_adds: u64 = layers.iter().map(|l| l.int8_mult_adds).sum();
    let forward_backward_pass_bytes: u64 = layers
        .iter()
        .filter(|l| l.params > 0)
        .map(|l| 2 * l.output_bytes)
        .sum();
    let input_bytes: u64 = g.inputs.iter().map(|&i| g.node(i).ty.bytes() as u64).sum();
    let mut notes = Vec::new();
    if !has_bn && conv_bias {
        notes.push(BN_FOLDED_NOTE.to_string());
    }
    Ok(ModelCost {
        model,
        stage: opts.stage.clone(),
        batch,
        total_params,
        trainable_params,
        non_trainable_params: total_params - trainable_params,
        total_mult_adds,
        int8_mult_adds,
        input_bytes,
        forward_backward_pass_bytes,
        params_bytes,
        input_size_mb: input_bytes as f64 / MB,
        forward_backward_pass_size_mb: forward_backward_pass_bytes as f64 / MB,
        params_size_mb: params_bytes as f64 / MB,
        estimated_total_size_mb: (input_bytes + forward_backward_pass_bytes + params_bytes) as f64
            / MB,
        layers,
        separable,
        separable_total,
        classes,
        notes,
    })
}

#[cfg(test)]
mod tests;
