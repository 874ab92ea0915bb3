//! The QDQ writer: which tensors of an ONNX model are quantized ([`plan`]) and the rewritten
//! `ModelProto` in the QDQ form onnxruntime's `quantize_static(quant_format=QDQ)` writes
//! ([`write`]).
//!
//! Conventions (onnxruntime's, names included, so both tools' files look alike):
//! - **Layers** `Conv`, `Gemm` (with `transA = 0`) and `MatMul` whose weight is a float
//!   initializer: the weight `W` becomes the int8 initializer `W_quantized` (symmetric, zero
//!   point 0, scale `max|w| / 127` per output channel: axis 0 for `Conv` and for `Gemm` with
//!   `transB = 1`, axis 1 for `Gemm` with `transB = 0` and for `MatMul`; one scale with
//!   `--no-per-channel`) and `DequantizeLinear(W_quantized, W_scale, W_zero_point, axis)`
//!   produces `W_DequantizeLinear_Output`; the bias `B` (a float initializer of one value
//!   per output channel, used by this layer only; a `Gemm` bias only with `beta = 1`) becomes
//!   the int32 `B_quantized` with scale `x_scale * w_scale[c]` and zero point 0, dequantized
//!   into a tensor named `B` again. The layer's activation input and its output are quantized.
//! - **Other quantized ops** `Add`, `Mul`, `Concat`, `GlobalAveragePool`, `Sigmoid`: every
//!   float input that is not a constant, and the output (constant inputs stay float). Tensors
//!   computed only from constants and `Shape`/`Size` outputs (shape arithmetic, such as
//!   timm's float "same"-padding subgraph) count as constants: never quantized.
//! - **Removable activations** `Relu` and `Clip` after a quantized tensor with no other
//!   consumer are removed: the producer writes the activation's output directly, and that
//!   tensor's range (calibrated after the activation) makes the u8 saturation do the clamp.
//!   Otherwise their input and output are quantized.
//! - **Pass-through ops** `MaxPool`, `AveragePool`, `Flatten`, `Reshape`, `Squeeze`,
//!   `Unsqueeze`, `Transpose` whose input is quantized: the output is quantized with the
//!   input's parameters (shared `scale`/`zero_point` initializers). `Pad` quantizes its
//!   input, and its output with the input's parameters when it pads with 0 (or in `reflect`
//!   / `edge` mode), else with its own.
//! - `HardSwish`, `HardSigmoid` and every other op stay float (onnxruntime does not quantize
//!   them either); their quantized neighbours put Q/DQ pairs around them.
//! - Each quantized activation `T` (u8, asymmetric, per tensor) gets
//!   `QuantizeLinear(T, T_scale, T_zero_point) -> T_QuantizeLinear_Output ->
//!   DequantizeLinear -> T_DequantizeLinear_Output`, placed right after `T`'s producer, and
//!   every consumer reads the dequantized tensor (nodes kept in float by `--keep-f32` read `T`
//!   itself; where `T` is the output of a removed Relu/Clip, which the producer now writes
//!   unclamped, the activation stays for them in float, writing `T_clamped`). A graph output `T` keeps its name: the producer writes
//!   `T_QuantizeLinear_Input` and the `DequantizeLinear` writes `T`.
//! - `--keep-f32 PATTERN` (a substring of the node name, or a glob with `*` and `?` on the
//!   whole name) leaves the matching nodes unquantized.
//! - The default-domain opset is kept when it is at least 13 (per-axis `DequantizeLinear`
//!   needs 13) and raised to 13 from 11 or 12 unless the model uses an op whose signature
//!   changed in 13 (`Squeeze`, `Unsqueeze`, `Split`, `Softmax`, `LogSoftmax`, `Hardmax`,
//!   `ReduceSum`); older models are refused. The IR version becomes at least 7.
//! - Initializers stored as external data are written inline.

use super::calibrate::{
    enlarge_for_bias, max_abs_along, quantize_bias, quantize_weights, weight_error_shift,
    weight_scale,
};
use super::QuantizeError;
use crate::export::tensor_initializer;
use mnc_ir::{DType, Tensor};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::{AttributeProto, ModelProto, NodeProto, TensorProto};
use protobuf::{Enum, EnumOrUnknown};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Ops whose output is quantized with their input's parameters.
const PASS_THROUGH: [&str; 7] = [
    "MaxPool",
    "AveragePool",
    "Flatten",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
];
/// Ops whose float inputs and output are all quantized.
const GENERIC: [&str; 5] = ["Add", "Mul", "Concat", "GlobalAveragePool", "Sigmoid"];
/// Ops whose inputs or attributes changed in opset 13: a model using them is not raised to 13.
const CHANGED_IN_13: [&str; 7] = [
    "Squeeze",
    "Unsqueeze",
    "Split",
    "Softmax",
    "LogSoftmax",
    "Hardmax",
    "ReduceSum",
];

/// A weight to quantize to int8.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightPlan {
    pub tensor: String,
    /// The per-channel axis (`None`: one scale).
    pub axis: Option<usize>,
}

/// A bias to quantize to int32 with the scales of `input` and `weight`.
#[derive(Clone, Debug, PartialEq)]
pub struct BiasPlan {
    pub tensor: String,
    pub input: String,
    pub weight: String,
    /// The weight's output-channel axis (0: Conv, Gemm with `transB`; 1: Gemm without).
    pub out_axis: usize,
}

/// A quantized layer (Conv, Gemm, MatMul), whose output the report compares.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Layer {
    pub node: String,
    pub op: String,
    /// The tensor the layer writes (after a removed Relu/Clip: the activation's output).
    pub output: String,
}

/// What [`plan`] decided for a model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Activation tensors that get a QuantizeLinear -> DequantizeLinear pair, in the order
    /// onnxruntime would request them.
    pub activations: Vec<String>,
    /// Activations quantized with another tensor's parameters (pass-through outputs), to
    /// the tensor that owns the parameters.
    pub shared: BTreeMap<String, String>,
    pub weights: Vec<WeightPlan>,
    pub biases: Vec<BiasPlan>,
    pub layers: Vec<Layer>,
    /// Removed Relu/Clip nodes: (node index, its input, its output).
    pub removed: Vec<(usize, String, String)>,
    /// Nodes kept in float by `--keep-f32`.
    pub kept_f32: Vec<String>,
    /// Quantizable nodes left in float, with the reason.
    pub skipped: Vec<(String, String)>,
}

impl Plan {
    /// The tensor whose parameters `t` uses.
    pub fn owner<'a>(&'a self, t: &'a str) -> &'a str {
        self.shared.get(t).map(String::as_str).unwrap_or(t)
    }
    /// The activations with parameters of their own (what calibration must measure).
    pub fn calibrated(&self) -> impl Iterator<Item = &String> {
        self.activations
            .iter()
            .filter(|t| !self.shared.contains_key(*t))
    }
}

/// Whether `name` matches a `--keep-f32` pattern: a glob (`*`, `?`) on the whole name when
/// the pattern has one, else a substring.
pub fn matches(pattern: &str, name: &str) -> bool {
    fn glob(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).any(|k| glob(rest, &s[k..])),
            Some(('?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
        }
    }
    if pattern.contains(['*', '?']) {
        let p: Vec<char> = pattern.chars().collect();
        let s: Vec<char> = name.chars().collect();
        glob(&p, &s)
    } else {
        name.contains(pattern)
    }
}

/// A node's name, or `OpType_k` (its index) when it has none.
pub fn node_label(k: usize, n: &NodeProto) -> String {
    if n.name.is_empty() {
        format!("{}_{k}", n.op_type)
    } else {
        n.name.clone()
    }
}

fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    n.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(default, |a| a.i)
}

fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    n.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(default, |a| a.f)
}

/// The values of a float initializer stored inline (raw or `float_data`).
pub(crate) fn f32_values(t: &TensorProto) -> Vec<f32> {
    if t.raw_data.is_empty() {
        return t.float_data.clone();
    }
    t.raw_data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn is_default_domain(n: &NodeProto) -> bool {
    n.domain.is_empty() || n.domain == "ai.onnx"
}

/// The element type (ONNX `DataType` number) of every tensor whose type follows from the
/// graph: initializers, `Constant` values, graph inputs, and node outputs (`Shape`-like
/// ops are int64, `Cast` its `to`, other ops the type of their first input).
fn elem_types(model: &ModelProto) -> HashMap<String, i32> {
    let g = &model.graph;
    let mut ty: HashMap<String, i32> = HashMap::new();
    for t in &g.initializer {
        ty.insert(t.name.clone(), t.data_type);
    }
    for vi in g.input.iter().chain(&g.value_info) {
        if let Some(onnx_protobuf::type_proto::Value::TensorType(t)) =
            vi.type_.as_ref().and_then(|t| t.value.as_ref())
        {
            ty.entry(vi.name.clone()).or_insert(t.elem_type);
        }
    }
    let int64 = DataType::INT64 as i32;
    for n in &g.node {
        let out = match n.op_type.as_str() {
            "Shape" | "Size" | "NonZero" | "ArgMax" | "ArgMin" => Some(int64),
            "Cast" => Some(attr_i(n, "to", 0) as i32),
            "Constant" | "ConstantOfShape" => n
                .attribute
                .iter()
                .find(|a| a.name == "value")
                .and_then(|a| a.t.as_ref())
                .map(|t| t.data_type)
                .or(Some(DataType::FLOAT as i32)),
            _ => n
                .input
                .iter()
                .find(|s| !s.is_empty())
                .and_then(|s| ty.get(s).copied()),
        };
        if let Some(t) = out {
            for o in &n.output {
                ty.entry(o.clone()).or_insert(t);
            }
        }
    }
    ty
}

/// Decides which tensors are quantized (see the module docs).
pub fn plan(model: &ModelProto, per_channel: bool, keep_f32: &[String]) -> Plan {
    plan_with(model, per_channel, &|label| {
        keep_f32.iter().any(|pat| matches(pat, label))
    })
}

/// [`plan`] with the nodes to keep in float chosen by `keep` (on [`node_label`]).
pub fn plan_with(model: &ModelProto, per_channel: bool, keep: &dyn Fn(&str) -> bool) -> Plan {
    let g = &model.graph;
    let inits: HashMap<&str, &TensorProto> =
        g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    // Constants, and tensors computed from shapes and constants only (timm's TF-"same"
    // padding computes its pads in float: Shape -> Cast -> Sub/Mul/Add -> ... -> Pad), which
    // the importer folds and which must not be quantized.
    let mut consts: HashSet<&str> = inits.keys().copied().collect();
    for n in &g.node {
        let from_consts = n
            .input
            .iter()
            .filter(|i| !i.is_empty())
            .all(|i| consts.contains(i.as_str()));
        if matches!(n.op_type.as_str(), "Constant" | "Shape" | "Size") || from_consts {
            consts.extend(n.output.iter().map(String::as_str));
        }
    }
    let types = elem_types(model);
    let float = DataType::FLOAT as i32;
    let is_float = |t: &str| types.get(t) == Some(&float);
    let mut consumers: HashMap<&str, usize> = HashMap::new();
    for n in &g.node {
        for i in n.input.iter().filter(|s| !s.is_empty()) {
            *consumers.entry(i.as_str()).or_default() += 1;
        }
    }
    let graph_io: HashSet<&str> = g
        .input
        .iter()
        .chain(&g.output)
        .map(|v| v.name.as_str())
        .collect();
    let float_weight = |name: &str, rank: &[usize]| -> bool {
        inits
            .get(name)
            .is_some_and(|t| t.data_type == float && rank.contains(&t.dims.len()))
    };
    let mut p = Plan::default();
    let has = |p: &Plan, t: &str| p.activations.iter().any(|a| a == t);
    let request = |p: &mut Plan, t: &str| {
        if !t.is_empty() && !consts.contains(t) && is_float(t) && !has(p, t) {
            p.activations.push(t.to_string());
        }
    };
    let mut weights_seen: HashSet<String> = HashSet::new();
    for (k, n) in g.node.iter().enumerate() {
        if !is_default_domain(n) {
            continue;
        }
        let label = node_label(k, n);
        if n.op_type != "Constant" && keep(&label) {
            p.kept_f32.push(label);
            continue;
        }
        let input = |i: usize| n.input.get(i).map(String::as_str).unwrap_or("");
        let output = n.output.first().map(String::as_str).unwrap_or("");
        let op = n.op_type.as_str();
        match op {
            "Conv" | "Gemm" | "MatMul" => {
                let (axis, ranks): (usize, &[usize]) = match op {
                    "Conv" => (0, &[3, 4, 5]),
                    "Gemm" => (if attr_i(n, "transB", 0) != 0 { 0 } else { 1 }, &[2]),
                    _ => (1, &[2]),
                };
                if op == "Gemm" && attr_i(n, "transA", 0) != 0 {
                    p.skipped.push((label, "Gemm with transA = 1".into()));
                    continue;
                }
                let w = input(1);
                if !float_weight(w, ranks) {
                    if op == "MatMul" {
                        // Two activations: quantized like any binary op.
                        request(&mut p, input(0));
                        request(&mut p, input(1));
                        request(&mut p, output);
                    } else {
                        p.skipped
                            .push((label, format!("weight '{w}' is not a float initializer")));
                    }
                    continue;
                }
                request(&mut p, input(0));
                request(&mut p, output);
                if weights_seen.insert(w.to_string()) {
                    p.weights.push(WeightPlan {
                        tensor: w.to_string(),
                        axis: per_channel.then_some(axis),
                    });
                }
                let b = input(2);
                let channels = inits[w].dims[axis];
                let bias_ok = !b.is_empty()
                    && inits.get(b).is_some_and(|t| {
                        t.data_type == float
                            && t.dims.iter().product::<i64>() == channels
                            && t.dims.iter().filter(|&&d| d != 1).count() <= 1
                    })
                    && consumers.get(b) == Some(&1)
                    && (op != "Gemm" || attr_f(n, "beta", 1.0) == 1.0);
                if bias_ok {
                    p.biases.push(BiasPlan {
                        tensor: b.to_string(),
                        input: input(0).to_string(),
                        weight: w.to_string(),
                        out_axis: axis,
                    });
                } else if !b.is_empty() {
                    p.skipped
                        .push((label.clone(), format!("bias '{b}' stays float")));
                }
                p.layers.push(Layer {
                    node: label,
                    op: op.to_string(),
                    output: output.to_string(),
                });
            }
            _ if GENERIC.contains(&op) => {
                for i in &n.input {
                    request(&mut p, i);
                }
                request(&mut p, output);
            }
            "Relu" | "Clip" => {
                let x = input(0);
                if !has(&p, x) {
                    continue;
                }
                let removable = consumers.get(x) == Some(&1)
                    && !graph_io.contains(x)
                    && !p.shared.contains_key(x)
                    && g.node.iter().any(|m| m.output.iter().any(|o| o == x));
                if removable {
                    p.activations.retain(|t| t != x);
                    for l in p.layers.iter_mut().filter(|l| l.output == x) {
                        l.output = output.to_string();
                    }
                    p.removed.push((k, x.to_string(), output.to_string()));
                } else {
                    request(&mut p, x);
                }
                request(&mut p, output);
            }
            "Pad" => {
                // onnxruntime's QDQPad: the input is quantized; the output shares its
                // parameters when the padding value is 0 (in every range) or copied
                // from the input (reflect, edge), else it gets its own.
                let x = input(0);
                request(&mut p, x);
                let mode = n
                    .attribute
                    .iter()
                    .find(|a| a.name == "mode")
                    .map_or(&b"constant"[..], |a| a.s.as_slice());
                let value = input(2);
                let zero_pad = value.is_empty()
                    || inits.get(value).is_some_and(|t| {
                        t.data_type == float && f32_values(t).iter().all(|v| *v == 0.0)
                    });
                if has(&p, x) && (mode != b"constant" || zero_pad) && !has(&p, output) {
                    let owner = p.owner(x).to_string();
                    request(&mut p, output);
                    if has(&p, output) {
                        p.shared.insert(output.to_string(), owner);
                    }
                } else {
                    request(&mut p, output);
                }
            }
            _ if PASS_THROUGH.contains(&op) => {
                let x = input(0);
                if has(&p, x) && !output.is_empty() && !has(&p, output) {
                    let owner = p.owner(x).to_string();
                    request(&mut p, output);
                    if has(&p, output) {
                        p.shared.insert(output.to_string(), owner);
                    }
                }
            }
            _ => {}
        }
    }
    p
}

/// The parameters of a quantized activation: u8, per tensor.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ActParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// What [`write`] produced besides the model.
#[derive(Clone, Debug, Default)]
pub struct Written {
    pub model: ModelProto,
    /// The tensor each quantized activation's consumers read (its `DequantizeLinear` output).
    pub dequantized: HashMap<String, String>,
    /// `(from, to)` when the opset was raised.
    pub opset_raised: Option<(i64, i64)>,
    /// Biases with values beyond the int32 range of their scale (saturated), and how many.
    pub bias_saturated: Vec<(String, usize)>,
    /// Per-channel weight scales, by weight tensor.
    pub weight_scales: BTreeMap<String, Vec<f32>>,
    /// Weights with channel scales enlarged so that their bias fits int32, and how many.
    pub weights_enlarged: Vec<(String, usize)>,
    /// Biases shifted by bias correction.
    pub biases_corrected: usize,
}

fn scalar_or_vec(
    name: &str,
    dtype: DType,
    v: Vec<i32>,
    per: bool,
) -> Result<TensorProto, QuantizeError> {
    let shape = if per { vec![v.len()] } else { vec![] };
    let t = Tensor::from_i32_values(shape, dtype, v)
        .map_err(|e| QuantizeError::Internal(format!("{name}: {e}")))?;
    Ok(tensor_initializer(name, &t))
}

fn f32_tensor(name: &str, v: Vec<f32>, per: bool) -> Result<TensorProto, QuantizeError> {
    let shape = if per { vec![v.len()] } else { vec![] };
    let t =
        Tensor::from_f32(shape, v).map_err(|e| QuantizeError::Internal(format!("{name}: {e}")))?;
    Ok(tensor_initializer(name, &t))
}

fn node(op: &str, name: &str, inputs: [&str; 3], output: &str, axis: Option<usize>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = name.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![output.to_string()];
    if let Some(a) = axis {
        let mut at = AttributeProto::new();
        at.name = "axis".into();
        at.type_ = EnumOrUnknown::new(AttributeType::INT);
        at.i = a as i64;
        n.attribute.push(at);
    }
    n
}

/// Fresh names: the base name when nobody uses it, else `base_1`, `base_2`, ...
struct Names(HashSet<String>);

impl Names {
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 0;
        while self.0.contains(&name) {
            k += 1;
            name = format!("{base}_{k}");
        }
        self.0.insert(name.clone());
        name
    }
}

/// Writes the QDQ model of `model` for `plan` (see the module docs). `params` holds the
/// parameters of every activation that owns them ([`Plan::calibrated`]); `value` returns
/// the value of an initializer (float weights and biases, external data). `input_means`
/// (by layer input tensor, per channel) turns on bias correction for the layers it has:
/// their float bias is shifted by [`weight_error_shift`] before it is quantized.
pub fn write(
    model: &ModelProto,
    plan: &Plan,
    params: &HashMap<String, ActParams>,
    value: &dyn Fn(&str) -> Option<Tensor>,
    input_means: &HashMap<String, Vec<f64>>,
) -> Result<Written, QuantizeError> {
    let mut m = model.clone();
    let mut out = Written::default();
    raise_opset(&mut m, &mut out)?;
    let g = m.graph.mut_or_insert_default();
    let mut names = Names(HashSet::new());
    for t in &g.initializer {
        names.0.insert(t.name.clone());
    }
    for v in g.input.iter().chain(&g.output).chain(&g.value_info) {
        names.0.insert(v.name.clone());
    }
    for n in &g.node {
        names.0.insert(n.name.clone());
        names.0.extend(n.input.iter().chain(&n.output).cloned());
    }
    let kept: HashSet<&str> = plan.kept_f32.iter().map(String::as_str).collect();
    let labels: Vec<String> = g
        .node
        .iter()
        .enumerate()
        .map(|(k, n)| node_label(k, n))
        .collect();

    // Removed activations: the producer writes the activation's output. Kept-f32 nodes
    // that read such an output read `{output}_clamped`, written by the activation itself
    // (kept in float for them, after the producer).
    let mut removed: HashSet<usize> = plan.removed.iter().map(|r| r.0).collect();
    let kept_reads: HashSet<&str> = g
        .node
        .iter()
        .enumerate()
        .filter(|(k, _)| kept.contains(labels[*k].as_str()))
        .flat_map(|(_, n)| n.input.iter().map(String::as_str))
        .collect();
    let mut clamped: HashMap<String, String> = HashMap::new();
    for (k, _, y) in &plan.removed {
        if kept_reads.contains(y.as_str()) {
            clamped.insert(y.clone(), names.fresh(&format!("{y}_clamped")));
            removed.remove(k);
        }
    }
    for (_, x, y) in &plan.removed {
        for n in g.node.iter_mut() {
            for o in n.output.iter_mut().filter(|o| *o == x) {
                *o = y.clone();
            }
        }
    }
    let graph_inputs: HashSet<String> = g.input.iter().map(|v| v.name.clone()).collect();
    let graph_outputs: HashSet<String> = g.output.iter().map(|v| v.name.clone()).collect();

    let mut front: Vec<NodeProto> = Vec::new();
    let mut new_inits: Vec<TensorProto> = Vec::new();
    // Renames of node inputs, applied to every node except the kept-f32 ones.
    let mut renamed: HashMap<String, String> = HashMap::new();

    // Weight scales, enlarged where a bias would not fit int32 (onnxruntime's adjustment).
    let mut weight_values: HashMap<String, Tensor> = HashMap::new();
    for w in &plan.weights {
        let t = value(&w.tensor).ok_or_else(|| {
            QuantizeError::Internal(format!("weight '{}' has no value", w.tensor))
        })?;
        let data = t.as_f32().ok_or_else(|| {
            QuantizeError::Internal(format!("weight '{}' is not float", w.tensor))
        })?;
        let scales: Vec<f32> = max_abs_along(data, &t.shape, w.axis)
            .into_iter()
            .map(weight_scale)
            .collect();
        out.weight_scales.insert(w.tensor.clone(), scales);
        weight_values.insert(w.tensor.clone(), t);
    }
    let mut bias_values: HashMap<String, Tensor> = HashMap::new();
    for b in &plan.biases {
        let t = value(&b.tensor)
            .ok_or_else(|| QuantizeError::Internal(format!("bias '{}' has no value", b.tensor)))?;
        let data = t
            .as_f32()
            .ok_or_else(|| QuantizeError::Internal(format!("bias '{}' is not float", b.tensor)))?;
        let x = params.get(plan.owner(&b.input)).ok_or_else(|| {
            QuantizeError::Internal(format!(
                "input '{}' of bias '{}' was not calibrated",
                b.input, b.tensor
            ))
        })?;
        let ws = out.weight_scales.get_mut(&b.weight).ok_or_else(|| {
            QuantizeError::Internal(format!(
                "weight '{}' of bias '{}' not planned",
                b.weight, b.tensor
            ))
        })?;
        let n = enlarge_for_bias(x.scale, ws, data);
        if n > 0 {
            out.weights_enlarged.push((b.weight.clone(), n));
        }
        bias_values.insert(b.tensor.clone(), t);
    }

    // Weights: int8 + DequantizeLinear.
    for w in &plan.weights {
        let t = &weight_values[&w.tensor];
        let data = t.as_f32().unwrap_or_default();
        let scales = out.weight_scales[&w.tensor].clone();
        let q = quantize_weights(data, &t.shape, w.axis, &scales);
        let qt = Tensor::from_i32_values(t.shape.clone(), DType::I8, q)
            .map_err(|e| QuantizeError::Internal(format!("{}: {e}", w.tensor)))?;
        let per = w.axis.is_some();
        let (qn, sn, zn) = (
            names.fresh(&format!("{}_quantized", w.tensor)),
            names.fresh(&format!("{}_scale", w.tensor)),
            names.fresh(&format!("{}_zero_point", w.tensor)),
        );
        new_inits.push(tensor_initializer(&qn, &qt));
        new_inits.push(f32_tensor(&sn, scales.clone(), per)?);
        new_inits.push(scalar_or_vec(&zn, DType::I8, vec![0; scales.len()], per)?);
        let dq_out = names.fresh(&format!("{}_DequantizeLinear_Output", w.tensor));
        let dq = names.fresh(&format!("{}_DequantizeLinear", w.tensor));
        front.push(node(
            "DequantizeLinear",
            &dq,
            [&qn, &sn, &zn],
            &dq_out,
            w.axis,
        ));
        renamed.insert(w.tensor.clone(), dq_out);
    }

    // Biases: int32 with scale x_scale * w_scale, dequantized into a tensor of the old name.
    let mut dropped: HashSet<String> = HashSet::new();
    for b in &plan.biases {
        let t = &bias_values[&b.tensor];
        let mut data = t.as_f32().unwrap_or_default().to_vec();
        let x = &params[plan.owner(&b.input)];
        let ws = &out.weight_scales[&b.weight];
        if let Some(mean) = input_means.get(&b.input) {
            let w = &weight_values[&b.weight];
            let wd = w.as_f32().unwrap_or_default();
            let axis = (ws.len() > 1).then_some(b.out_axis);
            let q = quantize_weights(wd, &w.shape, axis, ws);
            let shift = weight_error_shift(wd, &w.shape, b.out_axis, &q, ws, mean)
                .filter(|s| s.len() == data.len())
                .ok_or_else(|| {
                    QuantizeError::Internal(format!(
                        "bias correction of '{}': weight {:?} does not fit {} input channels",
                        b.tensor,
                        w.shape,
                        mean.len()
                    ))
                })?;
            for (v, d) in data.iter_mut().zip(shift) {
                *v = (*v as f64 - d) as f32;
            }
            out.biases_corrected += 1;
        }
        let (q, scales, saturated) = quantize_bias(&data, x.scale, ws);
        if saturated > 0 {
            out.bias_saturated.push((b.tensor.clone(), saturated));
        }
        let per = ws.len() > 1;
        let qt = Tensor::from_i32_values(t.shape.clone(), DType::I32, q)
            .map_err(|e| QuantizeError::Internal(format!("{}: {e}", b.tensor)))?;
        let qn = names.fresh(&format!("{}_quantized", b.tensor));
        let (sn, zn) = (
            names.fresh(&format!("{qn}_scale")),
            names.fresh(&format!("{qn}_zero_point")),
        );
        new_inits.push(tensor_initializer(&qn, &qt));
        new_inits.push(f32_tensor(&sn, scales, per)?);
        new_inits.push(scalar_or_vec(&zn, DType::I32, vec![0; ws.len()], per)?);
        let dq = names.fresh(&format!("{}_DequantizeLinear", b.tensor));
        front.push(node(
            "DequantizeLinear",
            &dq,
            [&qn, &sn, &zn],
            &b.tensor,
            per.then_some(0),
        ));
        dropped.insert(b.tensor.clone());
    }

    // Activations: QuantizeLinear -> DequantizeLinear after the producer.
    let mut param_names: HashMap<String, (String, String)> = HashMap::new();
    let mut after: HashMap<String, Vec<NodeProto>> = HashMap::new();
    let mut output_renames: HashMap<String, String> = HashMap::new();
    for t in &plan.activations {
        let owner = plan.owner(t).to_string();
        let (sn, zn) = match param_names.get(&owner) {
            Some(p) => p.clone(),
            None => {
                let p = params.get(&owner).ok_or_else(|| {
                    QuantizeError::Internal(format!("activation '{owner}' was not calibrated"))
                })?;
                let sn = names.fresh(&format!("{owner}_scale"));
                let zn = names.fresh(&format!("{owner}_zero_point"));
                new_inits.push(f32_tensor(&sn, vec![p.scale], false)?);
                new_inits.push(scalar_or_vec(&zn, DType::U8, vec![p.zero_point], false)?);
                param_names.insert(owner.clone(), (sn.clone(), zn.clone()));
                (sn, zn)
            }
        };
        let q_out = names.fresh(&format!("{t}_QuantizeLinear_Output"));
        let (q_in, dq_out) = if graph_outputs.contains(t) {
            let q_in = names.fresh(&format!("{t}_QuantizeLinear_Input"));
            output_renames.insert(t.clone(), q_in.clone());
            (q_in, t.clone())
        } else {
            let dq_out = names.fresh(&format!("{t}_DequantizeLinear_Output"));
            renamed.insert(t.clone(), dq_out.clone());
            (t.clone(), dq_out)
        };
        let qn = names.fresh(&format!("{t}_QuantizeLinear"));
        let dqn = names.fresh(&format!("{t}_DequantizeLinear"));
        let pair = vec![
            node("QuantizeLinear", &qn, [&q_in, &sn, &zn], &q_out, None),
            node("DequantizeLinear", &dqn, [&q_out, &sn, &zn], &dq_out, None),
        ];
        out.dequantized.insert(t.clone(), dq_out);
        let key = if graph_inputs.contains(t) {
            String::new() // placed before every node
        } else {
            t.clone()
        };
        after.entry(key).or_default().extend(pair);
    }

    // Rebuild the node list: weight and bias DQs, graph-input Q/DQs, then every node
    // followed by the Q/DQ pairs of its outputs.
    let old = std::mem::take(&mut g.node);
    let mut nodes = front;
    nodes.extend(after.remove("").unwrap_or_default());
    for (k, mut n) in old.into_iter().enumerate() {
        if removed.contains(&k) {
            continue;
        }
        if let Some((_, _, y)) = plan.removed.iter().find(|r| r.0 == k) {
            // A removed activation kept for kept-f32 readers: it reads the producer's
            // float output (renamed when it is a graph output).
            n.input[0] = output_renames.get(y).unwrap_or(y).clone();
            n.output = vec![clamped[y].clone()];
            nodes.push(n);
            continue;
        }
        if kept.contains(labels[k].as_str()) {
            for i in n.input.iter_mut() {
                if let Some(c) = clamped.get(i.as_str()) {
                    *i = c.clone();
                }
            }
        } else {
            for i in n.input.iter_mut() {
                if let Some(r) = renamed.get(i.as_str()) {
                    *i = r.clone();
                }
            }
        }
        let outs = n.output.clone();
        for o in n.output.iter_mut() {
            if let Some(r) = output_renames.get(o.as_str()) {
                *o = r.clone();
            }
        }
        nodes.push(n);
        for o in outs {
            nodes.extend(after.remove(&o).unwrap_or_default());
        }
    }
    if let Some(t) = after.keys().next() {
        return Err(QuantizeError::Internal(format!(
            "activation '{t}' has no producer"
        )));
    }
    g.node = nodes;

    // Drop float initializers nobody reads any more; inline external data.
    let used: HashSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(g.output.iter().map(|o| o.name.clone()))
        .collect();
    let before: HashSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    g.initializer
        .retain(|t| !dropped.contains(&t.name) && used.contains(&t.name));
    let after_names: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    // An initializer also listed as a graph input (IR version < 4) leaves the inputs too.
    let gone: HashSet<String> = before
        .into_iter()
        .filter(|n| !after_names.contains(n.as_str()))
        .collect();
    g.input.retain(|v| !gone.contains(&v.name));
    for t in g.initializer.iter_mut() {
        if t.data_location.enum_value() == Ok(DataLocation::EXTERNAL) {
            let v = value(&t.name).ok_or_else(|| {
                QuantizeError::Internal(format!(
                    "initializer '{}' is stored as external data that cannot be inlined",
                    t.name
                ))
            })?;
            *t = tensor_initializer(&t.name, &v);
        }
    }
    g.initializer.extend(new_inits);
    out.model = m;
    Ok(out)
}

/// Raises the default-domain opset to 13 where needed (see the module docs).
fn raise_opset(m: &mut ModelProto, out: &mut Written) -> Result<(), QuantizeError> {
    let uses: HashSet<&str> = m.graph.node.iter().map(|n| n.op_type.as_str()).collect();
    let changed: Vec<&str> = CHANGED_IN_13
        .iter()
        .copied()
        .filter(|o| uses.contains(o))
        .collect();
    let Some(o) = m
        .opset_import
        .iter_mut()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
    else {
        return Err(QuantizeError::Model(
            "no opset is imported for the default ONNX domain".into(),
        ));
    };
    if o.version < 13 {
        if o.version < 11 || !changed.is_empty() {
            return Err(QuantizeError::Model(format!(
                "opset {} cannot be raised to 13 (per-axis DequantizeLinear needs it){}; re-export the model at opset 13 or later",
                o.version,
                if changed.is_empty() {
                    String::new()
                } else {
                    format!(": {} changed in opset 13", changed.join(", "))
                }
            )));
        }
        out.opset_raised = Some((o.version, 13));
        o.version = 13;
    }
    m.ir_version = m.ir_version.max(7);
    Ok(())
}

/// Checks the element type number of an initializer (used by tests and the report).
pub fn data_type(t: &TensorProto) -> Option<DataType> {
    DataType::from_i32(t.data_type)
}
