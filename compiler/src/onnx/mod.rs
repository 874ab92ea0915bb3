//! The ONNX frontend: reads an ONNX `ModelProto` (via the `onnx-protobuf` crate) and builds an
//! [`mnc_ir::Graph`] with fully static shapes.
//!
//! This module owns parsing, initializer decoding (including external data, see [`data`]),
//! graph-input specialization (batch), the topological ordering of ONNX nodes, the folding of
//! shape-computing subgraphs to constants, and the mapping of every supported ONNX op to
//! [`mnc_ir::Op`] (one file per op family: [`conv`], [`norm`], [`activation`],
//! [`elementwise`], [`pool`], [`linear`], [`shape`], [`misc`], [`quant`]).
//!
//! Folding rule: `Shape` of a typed value and `ConstantOfShape` become constants; any node
//! whose inputs are all constants and which is integer-valued (an `i64` input or output) or
//! consumes a value that was itself folded from a shape computation is evaluated with
//! [`mnc_ir::eval::eval_op`]. Float weight computations (an `Identity` on a weight, a
//! `BatchNormalization` of constants) are left to the cleanup pass.

mod activation;
mod attrs;
mod conv;
mod data;
mod elementwise;
mod linear;
mod misc;
mod norm;
mod pool;
mod quant;
mod shape;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use attrs::OnnxNode;
use mnc_ir::tensor::TensorData;
use mnc_ir::{DType, Graph, NodeId, Op, Tensor, TensorType};
use onnx_protobuf::{GraphProto, Message, ModelProto, NodeProto};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use thiserror::Error;

/// Options of the import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Batch size given to the graph inputs' first dimension. `None`: a symbolic (or zero)
    /// first dimension becomes 1 and a static one is kept; `Some(n)` sets it to `n` in
    /// every case (re-specializing a batch-1 export).
    pub batch: Option<usize>,
}

/// Why an import failed. Every variant names the model file; node-level errors name the
/// ONNX node (name and op type).
#[derive(Debug, Error)]
pub enum ImportError {
    /// The reason is part of the message (not a `source`), so a context chain prints it once.
    #[error("{file}: cannot read the file: {reason}")]
    Io {
        file: String,
        reason: std::io::Error,
    },
    #[error("{file}: not a valid ONNX protobuf: {msg}")]
    Parse { file: String, msg: String },
    #[error("{file}: not an ONNX model: {msg}")]
    NotAModel { file: String, msg: String },
    #[error("{file}: graph input '{input}': {msg}")]
    Input {
        file: String,
        input: String,
        msg: String,
    },
    #[error("{file}: initializer '{tensor}': {msg}")]
    Initializer {
        file: String,
        tensor: String,
        msg: String,
    },
    #[error("{file}: node '{node}' ({op}): {msg}")]
    Node {
        file: String,
        node: String,
        op: String,
        msg: String,
    },
    #[error("{file}: node '{node}': operator {op} (domain '{domain}', opset {opset}) is not supported by mnc")]
    Unsupported {
        file: String,
        node: String,
        op: String,
        domain: String,
        opset: i64,
    },
    #[error("{file}: {msg}")]
    Graph { file: String, msg: String },
}

/// Reads and imports the ONNX model at `path`; external data is resolved relative to the
/// model's directory.
pub fn import_file(path: &Path, opts: &ImportOptions) -> Result<Graph, ImportError> {
    let display = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|reason| ImportError::Io {
        file: display.clone(),
        reason,
    })?;
    let dir = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => Path::new("."),
    };
    import_bytes(&bytes, Some(dir), &display, opts)
}

/// Imports a serialized ONNX model. `model_dir` is the folder external data is read from
/// (`None`: a model with external data is refused); `display_name` names the model in
/// errors.
pub fn import_bytes(
    bytes: &[u8],
    model_dir: Option<&Path>,
    display_name: &str,
    opts: &ImportOptions,
) -> Result<Graph, ImportError> {
    let file = display_name.to_string();
    if bytes.is_empty() {
        return Err(ImportError::NotAModel {
            file,
            msg: "the file is empty".into(),
        });
    }
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| ImportError::Parse {
        file: file.clone(),
        msg: e.to_string(),
    })?;
    let Some(graph) = model.graph.as_ref() else {
        return Err(ImportError::NotAModel {
            file,
            msg: "the protobuf has no graph".into(),
        });
    };
    let opset = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max();
    let Some(opset) = opset else {
        return Err(ImportError::NotAModel {
            file,
            msg: "no opset is imported for the default ONNX domain".into(),
        });
    };
    if opset < 1 {
        return Err(ImportError::NotAModel {
            file,
            msg: format!("invalid default-domain opset version {opset}"),
        });
    }
    if graph.output.is_empty() {
        return Err(ImportError::NotAModel {
            file,
            msg: "the graph has no outputs".into(),
        });
    }
    let name = if graph.name.is_empty() {
        display_name.to_string()
    } else {
        graph.name.clone()
    };
    let mut cx = Ctx::new(name, file, opset, model_dir);
    cx.add_initializers(graph)?;
    cx.add_inputs(graph, opts)?;
    let order = topo_sort(&cx, graph)?;
    cx.used = used_names(graph);
    for k in order {
        cx.convert_node(&graph.node[k])?;
    }
    for o in &graph.output {
        let id = *cx.values.get(&o.name).ok_or_else(|| ImportError::Graph {
            file: cx.file.clone(),
            msg: format!("graph output '{}' is not produced by any node", o.name),
        })?;
        cx.g.add_output(o.name.clone(), id);
    }
    cx.g.remove_dead();
    mnc_ir::verify::verify(&cx.g).map_err(|e| ImportError::Graph {
        file: cx.file.clone(),
        msg: format!("imported graph does not verify: {e}"),
    })?;
    Ok(cx.g)
}

/// Names consumed by some node or listed as graph outputs.
fn used_names(graph: &GraphProto) -> HashSet<String> {
    let mut used: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().filter(|s| !s.is_empty()).cloned())
        .collect();
    used.extend(graph.output.iter().map(|o| o.name.clone()));
    used
}

/// Orders the nodes topologically (Kahn, ties by file order), checking that every input
/// names an initializer, a graph input or a node output.
fn topo_sort(cx: &Ctx, graph: &GraphProto) -> Result<Vec<usize>, ImportError> {
    let nodes = &graph.node;
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (k, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if cx.values.contains_key(o.as_str()) || producer.insert(o.as_str(), k).is_some() {
                return Err(
                    cx.node_err(n, format!("output tensor '{o}' is defined more than once"))
                );
            }
        }
    }
    let mut indeg = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (k, n) in nodes.iter().enumerate() {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            if let Some(&p) = producer.get(i.as_str()) {
                indeg[k] += 1;
                users[p].push(k);
            } else if !cx.values.contains_key(i.as_str()) {
                return Err(cx.node_err(
                    n,
                    format!("input tensor '{i}' is not an initializer, a graph input or the output of any node"),
                ));
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..nodes.len()).filter(|&k| indeg[k] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(k) = ready.pop_first() {
        order.push(k);
        for &u in &users[k] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != nodes.len() {
        let k = (0..nodes.len()).find(|&k| indeg[k] > 0).unwrap_or(0);
        let n = &nodes[k];
        let tensor = n
            .input
            .iter()
            .find(|i| producer.get(i.as_str()).is_some_and(|&p| indeg[p] > 0))
            .cloned()
            .unwrap_or_default();
        return Err(cx.node_err(
            n,
            format!("the graph has a cycle: this node depends (through tensor '{tensor}') on its own output"),
        ));
    }
    Ok(order)
}

/// Largest constant (in elements) the importer creates by folding or `ConstantOfShape`
/// (2^27, 512 MiB of f32): real shape computations are tiny, so anything bigger is refused
/// before it is allocated.
pub(crate) const FOLD_LIMIT: usize = 1 << 27;

/// Result of an op converter: the message is wrapped into [`ImportError::Node`].
pub(crate) type OpResult<T> = Result<T, String>;

/// Import state: the graph being built and the map from ONNX tensor names to IR nodes.
pub(crate) struct Ctx<'a> {
    pub g: Graph,
    /// ONNX tensor name -> IR node producing it.
    pub values: HashMap<String, NodeId>,
    /// Default-domain opset of the model.
    pub opset: i64,
    /// Display name of the model file.
    pub file: String,
    model_dir: Option<&'a Path>,
    /// Names of all IR nodes (kept here so that uniquifying is O(1)).
    names: HashSet<String>,
    /// Constants folded from shape computations (they taint their float consumers too).
    derived: HashSet<NodeId>,
    /// Tensor names consumed by a node or listed as graph outputs.
    used: HashSet<String>,
    /// `(static batch in the file, batch requested)` when `--batch` re-specialized a static
    /// first dimension.
    pub batch_override: Option<(usize, usize)>,
}

impl<'a> Ctx<'a> {
    fn new(name: String, file: String, opset: i64, model_dir: Option<&'a Path>) -> Self {
        Ctx {
            g: Graph::new(name),
            values: HashMap::new(),
            opset,
            file,
            model_dir,
            names: HashSet::new(),
            derived: HashSet::new(),
            used: HashSet::new(),
            batch_override: None,
        }
    }

    fn node_err(&self, n: &NodeProto, msg: String) -> ImportError {
        ImportError::Node {
            file: self.file.clone(),
            node: display_node_name(n),
            op: n.op_type.clone(),
            msg,
        }
    }

    /// A node name not used yet (same scheme as `Graph::unique_name`), reserved.
    pub fn unique(&mut self, base: &str) -> String {
        let name = if self.names.contains(base) {
            (1..)
                .map(|i| format!("{base}.{i}"))
                .find(|c| !self.names.contains(c))
                .unwrap_or_default()
        } else {
            base.to_string()
        };
        self.names.insert(name.clone());
        name
    }

    fn add_initializers(&mut self, graph: &GraphProto) -> Result<(), ImportError> {
        for t in &graph.initializer {
            let err = |msg: String| ImportError::Initializer {
                file: self.file.clone(),
                tensor: t.name.clone(),
                msg,
            };
            if t.name.is_empty() {
                return Err(err("initializer without a name".into()));
            }
            if self.values.contains_key(&t.name) {
                return Err(err("defined more than once".into()));
            }
            let tensor = data::tensor_from_proto(t, self.model_dir).map_err(err)?;
            let name = self.unique(&t.name);
            let id = self.g.add_constant(name, tensor);
            self.values.insert(t.name.clone(), id);
        }
        if !graph.sparse_initializer.is_empty() {
            return Err(ImportError::Graph {
                file: self.file.clone(),
                msg: "sparse initializers are not supported".into(),
            });
        }
        Ok(())
    }

    fn add_inputs(&mut self, graph: &GraphProto, opts: &ImportOptions) -> Result<(), ImportError> {
        if opts.batch == Some(0) {
            return Err(ImportError::Graph {
                file: self.file.clone(),
                msg: "the batch size must be at least 1".into(),
            });
        }
        for vi in &graph.input {
            if self.values.contains_key(&vi.name) {
                continue; // an initializer listed as an input (IR version < 4)
            }
            let err = |msg: String| ImportError::Input {
                file: self.file.clone(),
                input: vi.name.clone(),
                msg,
            };
            let (ty, orig) = data::input_type(vi, opts.batch).map_err(err)?;
            if let (Some(orig), Some(b)) = (orig, opts.batch) {
                if orig != b {
                    self.batch_override = Some((orig, b));
                }
            }
            let name = self.unique(&vi.name);
            let id = self.g.add_input(name, ty);
            self.values.insert(vi.name.clone(), id);
        }
        Ok(())
    }

    fn convert_node(&mut self, n: &NodeProto) -> Result<(), ImportError> {
        let unsupported = |cx: &Self| ImportError::Unsupported {
            file: cx.file.clone(),
            node: display_node_name(n),
            op: n.op_type.clone(),
            domain: if n.domain.is_empty() {
                "ai.onnx".into()
            } else {
                n.domain.clone()
            },
            opset: cx.opset,
        };
        let conv = match n.domain.as_str() {
            "" | "ai.onnx" => converter(&n.op_type),
            "com.microsoft" => contrib_converter(&n.op_type),
            _ => None,
        };
        let Some(conv) = conv else {
            return Err(unsupported(self));
        };
        let Some(first) = n.output.first().filter(|o| !o.is_empty()) else {
            return Err(self.node_err(n, "the node has no output".into()));
        };
        let base = if n.name.is_empty() {
            first.clone()
        } else {
            n.name.clone()
        };
        let name = self.unique(&base);
        let node = OnnxNode {
            proto: n,
            name,
            opset: self.opset,
        };
        let id = conv(self, &node).map_err(|msg| self.node_err(n, msg))?;
        self.g.node_mut(id).sources = vec![display_node_name(n)];
        // Secondary outputs (MaxPool indices, Dropout mask, BatchNorm training statistics)
        // have no IR value: refuse a model that uses them.
        for o in n.output.iter().skip(1).filter(|o| !o.is_empty()) {
            if self.used.contains(o) {
                return Err(self.node_err(
                    n,
                    format!(
                        "output '{o}' is used, but only the first output of {} is supported",
                        n.op_type
                    ),
                ));
            }
        }
        self.values.insert(first.clone(), id);
        Ok(())
    }

    /// The IR node producing ONNX tensor `name`.
    pub fn value(&self, name: &str) -> OpResult<NodeId> {
        self.values
            .get(name)
            .copied()
            .ok_or_else(|| format!("input tensor '{name}' is not defined"))
    }

    /// Required input `k` of `n`.
    pub fn input(&self, n: &OnnxNode, k: usize) -> OpResult<NodeId> {
        match n.input_name(k) {
            Some(s) => self.value(s),
            None => Err(format!("required input {k} is missing")),
        }
    }

    /// Optional input `k` of `n` (absent or empty name: `None`).
    pub fn opt_input(&self, n: &OnnxNode, k: usize) -> OpResult<Option<NodeId>> {
        n.input_name(k).map(|s| self.value(s)).transpose()
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.g.node(id).ty
    }

    /// The constant value of `id`, following Identity/Dropout chains.
    pub fn const_of(&self, mut id: NodeId) -> Option<&Tensor> {
        loop {
            match &self.g.node(id).op {
                Op::Constant(t) => return Some(t),
                Op::Identity | Op::Dropout => id = *self.g.inputs(id).first()?,
                _ => return None,
            }
        }
    }

    /// The integer values of constant input `k` (an attribute that must be static).
    pub fn static_ints(&self, n: &OnnxNode, k: usize, what: &str) -> OpResult<Vec<i64>> {
        let id = self.input(n, k)?;
        let t = self.const_of(id).ok_or_else(|| {
            format!(
                "{what} (input {k}, '{}') must be a constant (after folding shape computations)",
                n.input_name(k).unwrap_or_default()
            )
        })?;
        t.to_i64_vec()
            .ok_or_else(|| format!("{what} (input {k}) must be an integer tensor"))
    }

    /// [`Self::static_ints`] of an optional input: `None` when input `k` is absent.
    pub fn opt_static_ints(
        &self,
        n: &OnnxNode,
        k: usize,
        what: &str,
    ) -> OpResult<Option<Vec<i64>>> {
        match self.opt_input(n, k)? {
            Some(_) => self.static_ints(n, k, what).map(Some),
            None => Ok(None),
        }
    }

    /// The value of `id` when it is a constant, or a quantize/dequantize round trip of one
    /// (quantizers write a `Pad`'s constant value as `DequantizeLinear(QuantizeLinear(c))`):
    /// evaluated here for an attribute that must be static. The graph keeps the nodes (a
    /// dequantized weight must stay one for `qdq-fold`); they are dead once the attribute is
    /// read.
    fn static_value(&self, id: NodeId) -> Option<Tensor> {
        if let Some(t) = self.const_of(id) {
            return Some(t.clone());
        }
        match &self.g.node(id).op {
            Op::Quantize(_) | Op::Dequantize(_) => {
                let x = self.static_value(*self.g.inputs(id).first()?)?;
                mnc_ir::eval::eval_op(&self.g.node(id).op, &[&x]).ok()
            }
            _ => None,
        }
    }

    /// The value of an optional constant scalar float input `k` (`None` when absent).
    pub fn static_scalar(&self, n: &OnnxNode, k: usize, what: &str) -> OpResult<Option<f32>> {
        let Some(id) = self.opt_input(n, k)? else {
            return Ok(None);
        };
        let t = self
            .static_value(id)
            .ok_or_else(|| format!("{what} (input {k}) must be a constant"))?;
        if t.numel() != 1 {
            return Err(format!(
                "{what} (input {k}) must be a scalar, got shape {:?}",
                t.shape
            ));
        }
        Ok(Some(match &t.data {
            TensorData::F32(v) => v[0],
            TensorData::I64(_) | TensorData::U8(_) | TensorData::I8(_) | TensorData::I32(_) => {
                t.to_i64_vec().expect("integer")[0] as f32
            }
        }))
    }

    /// Adds a constant produced by folding (named after `n`).
    pub fn add_folded(&mut self, n: &OnnxNode, t: Tensor) -> NodeId {
        let id = self.g.add_constant(n.name.clone(), t);
        self.derived.insert(id);
        id
    }

    /// Adds `op` on `inputs` as the IR node for `n`, inferring its type. When every input is
    /// a constant and the computation is integer-valued or shape-derived, the op is
    /// evaluated now and a constant is added instead.
    pub fn emit(&mut self, n: &OnnxNode, op: Op, inputs: &[NodeId]) -> OpResult<NodeId> {
        let tys: Vec<&TensorType> = inputs.iter().map(|&i| self.ty(i)).collect();
        let ty = mnc_ir::infer::infer(&op, &tys).map_err(|e| e.to_string())?;
        let consts: Option<Vec<&Tensor>> = inputs
            .iter()
            .map(|&i| match &self.g.node(i).op {
                Op::Constant(t) => Some(t),
                _ => None,
            })
            .collect();
        if let Some(consts) = consts.filter(|c| !c.is_empty()) {
            let fold = ty.dtype == DType::I64
                || consts.iter().any(|t| t.dtype() == DType::I64)
                || inputs.iter().any(|i| self.derived.contains(i));
            if fold {
                if ty.numel() > FOLD_LIMIT {
                    return Err(format!(
                        "folding would create a constant of type {ty}, more than {FOLD_LIMIT} elements"
                    ));
                }
                let t = mnc_ir::eval::eval_op(&op, &consts)
                    .map_err(|e| format!("cannot fold this shape computation: {e}"))?;
                if t.ty() != ty {
                    return Err(format!(
                        "folding produced {} where {} was inferred",
                        t.ty(),
                        ty
                    ));
                }
                return Ok(self.add_folded(n, t));
            }
        }
        Ok(self.g.add_node_typed(n.name.clone(), op, inputs, ty))
    }
}

/// The name used for an ONNX node in messages: its name, else its first output.
fn display_node_name(n: &NodeProto) -> String {
    if !n.name.is_empty() {
        n.name.clone()
    } else if let Some(o) = n.output.first().filter(|o| !o.is_empty()) {
        o.clone()
    } else {
        format!("<unnamed {}>", n.op_type)
    }
}

/// An op converter: maps one ONNX node to one IR node (possibly folded to a constant).
type Converter = fn(&mut Ctx, &OnnxNode) -> OpResult<NodeId>;

/// The converter for a default-domain op type.
fn converter(op_type: &str) -> Option<Converter> {
    Some(match op_type {
        "Conv" => conv::conv,
        "BatchNormalization" => norm::batch_norm,
        "LRN" => norm::lrn,
        "QuantizeLinear" => quant::quantize_linear,
        "DequantizeLinear" => quant::dequantize_linear,
        "QLinearConv" => quant::qlinear_conv,
        "QLinearMatMul" => quant::qlinear_matmul,
        "Relu" => activation::relu,
        "Clip" => activation::clip,
        "Sigmoid" => activation::sigmoid,
        "HardSigmoid" => activation::hard_sigmoid,
        "HardSwish" => activation::hard_swish,
        "Add" | "Sub" | "Mul" | "Div" => elementwise::binary,
        "Ceil" | "Floor" => elementwise::round_fold,
        "Sum" => elementwise::sum,
        "Mean" => elementwise::mean,
        "Max" | "Min" => elementwise::max_min,
        "GlobalAveragePool" => pool::global_average_pool,
        "ReduceMean" => pool::reduce_mean,
        "AveragePool" | "MaxPool" => pool::pool,
        "Gemm" => linear::gemm,
        "MatMul" => linear::matmul,
        "Flatten" => shape::flatten,
        "Reshape" => shape::reshape,
        "Squeeze" => shape::squeeze,
        "Unsqueeze" => shape::unsqueeze,
        "Transpose" => shape::transpose,
        "Concat" => shape::concat,
        "Slice" => shape::slice,
        "Gather" => shape::gather,
        "Cast" => shape::cast,
        "Pad" => shape::pad,
        "Shape" => shape::shape,
        "ConstantOfShape" => shape::constant_of_shape,
        "Identity" => misc::identity,
        "Dropout" => misc::dropout,
        "Constant" => misc::constant,
        "Softmax" => misc::softmax,
        _ => return None,
    })
}

/// The converter for an op of onnxruntime's `com.microsoft` domain (the quantized operators
/// `quantize_static` writes in its operator format).
fn contrib_converter(op_type: &str) -> Option<Converter> {
    Some(match op_type {
        "QLinearAdd" | "QLinearMul" => quant::qlinear_binary,
        "QLinearGlobalAveragePool" => quant::qlinear_global_average_pool,
        "QLinearSigmoid" => quant::qlinear_sigmoid,
        "QGemm" => quant::qgemm,
        _ => return None,
    })
}

/// Normalizes a possibly negative axis into `0..rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize, what: &str) -> OpResult<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("{what} {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Normalizes a list of axes for rank `rank`: negative wrap, sorted, duplicates refused.
pub(crate) fn norm_axes(axes: &[i64], rank: usize, what: &str) -> OpResult<Vec<usize>> {
    let mut v = norm_axes_in_order(axes, rank, what)?;
    v.sort_unstable();
    Ok(v)
}

/// Normalizes a list of axes for rank `rank` keeping their order (for lists paired with
/// per-axis values): negative wrap, duplicates refused.
pub(crate) fn norm_axes_in_order(axes: &[i64], rank: usize, what: &str) -> OpResult<Vec<usize>> {
    let v = axes
        .iter()
        .map(|&a| norm_axis(a, rank, what))
        .collect::<OpResult<Vec<_>>>()?;
    let mut seen = vec![false; rank];
    if v.iter().any(|&a| std::mem::replace(&mut seen[a], true)) {
        return Err(format!("axes {axes:?} repeat an axis"));
    }
    Ok(v)
}
