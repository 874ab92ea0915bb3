//! ONNX export: writes an IR [`Graph`] as a standard ONNX model (opset 17, IR version 8)
//! using the `onnx-protobuf` message types.
//!
//! Owns the mapping of every IR op to standard ONNX ops. Ops that ONNX has 1:1 keep the IR
//! node's name as the ONNX node name and the value name; ops without an ONNX equivalent
//! expand into a few standard nodes whose extra values are named `<node>/<part>`:
//! fused conv/Gemm epilogues become `Conv -> Add -> activation`, `ChannelAffine` becomes
//! `Mul + Add` with `[C,1,1]` constants, `SqueezeExcite` becomes `GlobalAveragePool -> Conv ->
//! act -> Conv -> gate -> Mul`, SiLU becomes `Sigmoid + Mul`. Constants become initializers
//! named after the constant node (f32 as `raw_data`, i64 as `int64_data`). Graph inputs,
//! outputs and every IR value get `value_info` types, so viewers show shapes.

use mnc_ir::tensor::{Tensor, TensorData};
use mnc_ir::{
    Activation, DType, Epilogue, Graph, IrError, NodeId, Op, PoolKind, QBinaryOp, QParams,
    TensorType,
};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf::{EnumOrUnknown, Message, MessageField};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// ONNX opset version written.
pub const OPSET: i64 = 17;
/// ONNX IR version written.
pub const IR_VERSION: i64 = 8;

/// Errors of the ONNX writer.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error("cannot export graph '{graph}': {source}")]
    Ir {
        graph: String,
        #[source]
        source: IrError,
    },
    #[error("cannot export node '{node}' ({op}): {msg}")]
    Node {
        node: String,
        op: String,
        msg: String,
    },
    #[error("graph output '{output}' clashes with the name of another value")]
    NameClash { output: String },
    #[error("cannot serialize the ONNX model: {0}")]
    Encode(#[from] protobuf::Error),
    #[error("cannot write '{path}': {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Serializes `g` as an ONNX model (the bytes [`write_onnx`] writes).
pub fn to_bytes(g: &Graph) -> Result<Vec<u8>, ExportError> {
    Ok(to_model_proto(g)?.write_to_bytes()?)
}

/// Writes `g` as an ONNX model file at `path`.
pub fn write_onnx(g: &Graph, path: &Path) -> Result<(), ExportError> {
    let bytes = to_bytes(g)?;
    std::fs::write(path, bytes).map_err(|source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Converts `g` to an ONNX `ModelProto` (opset 17, IR version 8).
pub fn to_model_proto(g: &Graph) -> Result<ModelProto, ExportError> {
    let graph = Writer::new(g)?.run()?;
    let mut m = ModelProto::new();
    m.ir_version = IR_VERSION;
    m.producer_name = "mnc".into();
    m.producer_version = env!("CARGO_PKG_VERSION").into();
    let mut opset = OperatorSetIdProto::new();
    opset.domain = String::new();
    opset.version = OPSET;
    m.opset_import.push(opset);
    m.graph = MessageField::some(graph);
    Ok(m)
}

fn elem_type(d: DType) -> i32 {
    match d {
        DType::F32 => DataType::FLOAT as i32,
        DType::I64 => DataType::INT64 as i32,
        DType::U8 => DataType::UINT8 as i32,
        DType::I8 => DataType::INT8 as i32,
        DType::I32 => DataType::INT32 as i32,
    }
}

/// A `ValueInfoProto` with a static tensor type.
pub(crate) fn value_info(name: &str, ty: &TensorType) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for &d in &ty.shape {
        let mut dim = Dimension::new();
        dim.value = Some(dimension::Value::DimValue(d as i64));
        shape.dim.push(dim);
    }
    let mut t = type_proto::Tensor::new();
    t.elem_type = elem_type(ty.dtype);
    t.shape = MessageField::some(shape);
    let mut tp = TypeProto::new();
    tp.value = Some(type_proto::Value::TensorType(t));
    let mut vi = ValueInfoProto::new();
    vi.name = name.to_string();
    vi.type_ = MessageField::some(tp);
    vi
}

fn f32_initializer(name: &str, shape: &[usize], data: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = usizes(shape);
    t.data_type = DataType::FLOAT as i32;
    let mut raw = Vec::with_capacity(data.len() * 4);
    for v in data {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    t.raw_data = raw;
    t
}

/// An initializer of any dtype, its elements as little-endian `raw_data`.
pub(crate) fn tensor_initializer(name: &str, t: &Tensor) -> TensorProto {
    let mut p = TensorProto::new();
    p.name = name.to_string();
    p.dims = usizes(&t.shape);
    p.data_type = elem_type(t.dtype());
    p.raw_data = t.le_bytes();
    p
}

fn i64_initializer(name: &str, shape: &[usize], data: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = usizes(shape);
    t.data_type = DataType::INT64 as i32;
    t.int64_data = data.to_vec();
    t
}

/// The attributes of `Conv` and `QLinearConv` for a conv's geometry.
fn conv_attributes(c: &mnc_ir::Conv) -> Vec<AttributeProto> {
    vec![
        attr_ints("kernel_shape", &usizes(&c.kernel)),
        attr_ints("strides", &usizes(&c.strides)),
        attr_ints("dilations", &usizes(&c.dilations)),
        attr_ints("pads", &pads4(&c.pads)),
        attr_i("group", c.group as i64),
    ]
}

fn attr_i(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = EnumOrUnknown::new(AttributeType::INT);
    a.i = v;
    a
}

fn attr_f(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = EnumOrUnknown::new(AttributeType::FLOAT);
    a.f = v;
    a
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = EnumOrUnknown::new(AttributeType::INTS);
    a.ints = v.to_vec();
    a
}

/// Dimensions, axes and window sizes as ONNX's `int64` lists.
fn usizes(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// IR pads `[top, left, bottom, right]` are already ONNX's `[x1_begin, x2_begin, x1_end,
/// x2_end]` order.
fn pads4(p: &[usize; 4]) -> Vec<i64> {
    usizes(p)
}

struct Writer<'a> {
    g: &'a Graph,
    order: Vec<NodeId>,
    /// ONNX value name of each IR node's output.
    value: HashMap<NodeId, String>,
    /// Every value, node and initializer name taken so far.
    taken: HashSet<String>,
    out: GraphProto,
}

impl<'a> Writer<'a> {
    fn new(g: &'a Graph) -> Result<Self, ExportError> {
        let order = g.topo_order().map_err(|source| ExportError::Ir {
            graph: g.name.clone(),
            source,
        })?;
        let mut value: HashMap<NodeId, String> = HashMap::new();
        let mut taken: HashSet<String> = HashSet::new();
        for &id in &order {
            let name = g.node(id).name.clone();
            if !taken.insert(name.clone()) {
                return Err(ExportError::Node {
                    node: name,
                    op: g.node(id).op.kind().into(),
                    msg: "duplicate node name".into(),
                });
            }
            value.insert(id, name);
        }
        // A computed node that is a graph output (the first time) gets the output's name as
        // its value name, so that no Identity is needed and the names round-trip.
        let mut renamed: HashSet<NodeId> = HashSet::new();
        for o in &g.outputs {
            if !g.contains(o.node) {
                return Err(ExportError::Node {
                    node: o.name.clone(),
                    op: "output".into(),
                    msg: "graph output refers to a removed node".into(),
                });
            }
            let node = g.node(o.node);
            let computed = !matches!(node.op, Op::Input { .. } | Op::Constant(_));
            if value[&o.node] == o.name {
                continue;
            }
            // Either the node's value gets the output's name, or an Identity node will
            // write it; both need the name free.
            if taken.contains(&o.name) {
                return Err(ExportError::NameClash {
                    output: o.name.clone(),
                });
            }
            taken.insert(o.name.clone());
            if computed && !renamed.contains(&o.node) {
                value.insert(o.node, o.name.clone());
                renamed.insert(o.node);
            }
        }
        let mut out = GraphProto::new();
        out.name = g.name.clone();
        Ok(Writer {
            g,
            order,
            value,
            taken,
            out,
        })
    }

    /// A fresh name derived from `base`.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.taken.contains(&name) {
            name = format!("{base}.{i}");
            i += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    fn push_node(
        &mut self,
        name: &str,
        op_type: &str,
        inputs: Vec<String>,
        output: &str,
        attrs: Vec<AttributeProto>,
    ) {
        let mut n = NodeProto::new();
        n.name = name.to_string();
        n.op_type = op_type.to_string();
        n.input = inputs;
        n.output = vec![output.to_string()];
        n.attribute = attrs;
        self.out.node.push(n);
    }

    fn err(&self, id: NodeId, msg: impl Into<String>) -> ExportError {
        let n = self.g.node(id);
        ExportError::Node {
            node: n.name.clone(),
            op: n.op.kind().into(),
            msg: msg.into(),
        }
    }

    fn run(mut self) -> Result<GraphProto, ExportError> {
        let g = self.g;
        for &id in &g.inputs {
            let n = g.node(id);
            self.out.input.push(value_info(&self.value[&id], &n.ty));
        }
        for k in 0..self.order.len() {
            let id = self.order[k];
            self.node(id)?;
        }
        for o in &g.outputs {
            let node = g.node(o.node);
            let v = self.value[&o.node].clone();
            let name = if v == o.name {
                v
            } else {
                // The node's value already has another name (reserved for this output in
                // `new`): an Identity gives the output its own name.
                let node_name = self.fresh(&format!("{}/output", o.name));
                self.push_node(&node_name, "Identity", vec![v], &o.name, vec![]);
                o.name.clone()
            };
            self.out.output.push(value_info(&name, &node.ty));
        }
        let outputs: HashSet<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
        for &id in &self.order {
            let n = g.node(id);
            if matches!(n.op, Op::Input { .. } | Op::Constant(_)) {
                continue;
            }
            let v = &self.value[&id];
            if !outputs.contains(v.as_str()) {
                self.out.value_info.push(value_info(v, &n.ty));
            }
        }
        Ok(self.out)
    }

    /// Emits the ONNX nodes of one IR node.
    fn node(&mut self, id: NodeId) -> Result<(), ExportError> {
        let g = self.g;
        let n = g.node(id);
        let name = n.name.clone();
        let out = self.value[&id].clone();
        let ins: Vec<String> = g.inputs(id).iter().map(|i| self.value[i].clone()).collect();
        let (lo, hi) = n.op.arity();
        if ins.len() < lo || hi.is_some_and(|h| ins.len() > h) {
            return Err(self.err(id, format!("has {} inputs", ins.len())));
        }
        match &n.op {
            Op::Input { .. } => {}
            // A constant read only as a ChannelAffine's scale or bias is written reshaped by
            // `per_channel` instead (an unused initializer would make onnxruntime warn).
            Op::Constant(_)
                if !g.is_output(id)
                    && g.users(id).iter().all(|&(u, slot)| {
                        matches!(g.node(u).op, Op::ChannelAffine) && slot > 0
                    }) => {}
            Op::Constant(t) => {
                self.out.initializer.push(tensor_initializer(&out, t));
            }
            Op::Identity => self.push_node(&name, "Identity", ins, &out, vec![]),
            Op::Dropout => self.push_node(&name, "Dropout", ins, &out, vec![]),
            Op::Conv(c) => {
                let attrs = conv_attributes(c);
                let n_main = 2 + c.has_bias as usize;
                let residual = ins.get(n_main).cloned();
                self.with_epilogue(
                    id,
                    "Conv",
                    ins[..n_main].to_vec(),
                    attrs,
                    &c.epilogue,
                    residual,
                )?;
            }
            Op::Gemm(gm) => {
                let attrs = vec![
                    attr_i("transA", gm.trans_a as i64),
                    attr_i("transB", gm.trans_b as i64),
                    attr_f("alpha", gm.alpha),
                    attr_f("beta", gm.beta),
                ];
                let n_main = 2 + gm.has_c as usize;
                let residual = ins.get(n_main).cloned();
                self.with_epilogue(
                    id,
                    "Gemm",
                    ins[..n_main].to_vec(),
                    attrs,
                    &gm.epilogue,
                    residual,
                )?;
            }
            Op::BatchNorm { epsilon } => self.push_node(
                &name,
                "BatchNormalization",
                ins,
                &out,
                vec![attr_f("epsilon", *epsilon)],
            ),
            Op::ChannelAffine => {
                let rank = n.ty.rank();
                let scale = self.per_channel(id, 1, rank)?;
                let bias = self.per_channel(id, 2, rank)?;
                let mul = self.fresh(&format!("{name}/mul"));
                self.push_node(&mul, "Mul", vec![ins[0].clone(), scale], &mul, vec![]);
                self.push_node(&name, "Add", vec![mul, bias], &out, vec![]);
            }
            Op::SqueezeExcite(se) => {
                let pool = self.fresh(&format!("{name}/pool"));
                self.push_node(
                    &pool,
                    "GlobalAveragePool",
                    vec![ins[0].clone()],
                    &pool,
                    vec![],
                );
                let conv_attrs = || {
                    vec![
                        attr_ints("kernel_shape", &[1, 1]),
                        attr_ints("strides", &[1, 1]),
                        attr_ints("pads", &[0, 0, 0, 0]),
                    ]
                };
                let fc1 = self.fresh(&format!("{name}/fc1"));
                self.push_node(
                    &fc1,
                    "Conv",
                    vec![pool, ins[1].clone(), ins[2].clone()],
                    &fc1,
                    conv_attrs(),
                );
                let a1 = self.fresh(&format!("{name}/act"));
                self.act(&a1, se.act, &fc1, &a1);
                let fc2 = self.fresh(&format!("{name}/fc2"));
                self.push_node(
                    &fc2,
                    "Conv",
                    vec![a1, ins[3].clone(), ins[4].clone()],
                    &fc2,
                    conv_attrs(),
                );
                let gate = self.fresh(&format!("{name}/gate"));
                self.act(&gate, se.gate, &fc2, &gate);
                self.push_node(&name, "Mul", vec![ins[0].clone(), gate], &out, vec![]);
            }
            Op::Act(a) => {
                let x = ins[0].clone();
                self.act(&name, *a, &x, &out);
            }
            Op::Binary(b) => {
                let t = match b {
                    mnc_ir::BinaryOp::Add => "Add",
                    mnc_ir::BinaryOp::Sub => "Sub",
                    mnc_ir::BinaryOp::Mul => "Mul",
                    mnc_ir::BinaryOp::Div => "Div",
                };
                self.push_node(&name, t, ins, &out, vec![]);
            }
            Op::MatMul => self.push_node(&name, "MatMul", ins, &out, vec![]),
            Op::GlobalAveragePool => self.push_node(&name, "GlobalAveragePool", ins, &out, vec![]),
            Op::ReduceMean { axes, keepdims } => self.push_node(
                &name,
                "ReduceMean",
                ins,
                &out,
                vec![
                    attr_ints("axes", &usizes(axes)),
                    attr_i("keepdims", *keepdims as i64),
                ],
            ),
            Op::Pool(p) => {
                let mut attrs = vec![
                    attr_ints("kernel_shape", &usizes(&p.kernel)),
                    attr_ints("strides", &usizes(&p.strides)),
                    attr_ints("pads", &pads4(&p.pads)),
                    attr_i("ceil_mode", p.ceil_mode as i64),
                ];
                let t = match p.kind {
                    PoolKind::Max => {
                        attrs.push(attr_ints("dilations", &usizes(&p.dilations)));
                        "MaxPool"
                    }
                    PoolKind::Avg => {
                        if p.dilations != [1, 1] {
                            return Err(
                                self.err(id, "average pooling with dilation has no opset-17 form")
                            );
                        }
                        attrs.push(attr_i("count_include_pad", p.count_include_pad as i64));
                        "AveragePool"
                    }
                };
                self.push_node(&name, t, ins, &out, attrs);
            }
            Op::Flatten { axis } => self.push_node(
                &name,
                "Flatten",
                ins,
                &out,
                vec![attr_i("axis", *axis as i64)],
            ),
            Op::Reshape { shape } => {
                let s = self.i64_const(&format!("{name}/shape"), &usizes(shape));
                self.push_node(&name, "Reshape", vec![ins[0].clone(), s], &out, vec![]);
            }
            Op::Squeeze { axes } | Op::Unsqueeze { axes } => {
                let a = self.i64_const(&format!("{name}/axes"), &usizes(axes));
                let t = if matches!(n.op, Op::Squeeze { .. }) {
                    "Squeeze"
                } else {
                    "Unsqueeze"
                };
                self.push_node(&name, t, vec![ins[0].clone(), a], &out, vec![]);
            }
            Op::Transpose { perm } => self.push_node(
                &name,
                "Transpose",
                ins,
                &out,
                vec![attr_ints("perm", &usizes(perm))],
            ),
            Op::Concat { axis } => self.push_node(
                &name,
                "Concat",
                ins,
                &out,
                vec![attr_i("axis", *axis as i64)],
            ),
            Op::Slice(s) => {
                // IR ends are normalized: for a negative step, -1 means "before index 0",
                // which ONNX spells as any end below -dim (i64::MIN is clamped to -1).
                let ends: Vec<i64> = s
                    .ends
                    .iter()
                    .zip(&s.steps)
                    .map(|(&e, &st)| if st < 0 && e < 0 { i64::MIN } else { e })
                    .collect();
                let starts = self.i64_const(&format!("{name}/starts"), &s.starts);
                let ends = self.i64_const(&format!("{name}/ends"), &ends);
                let axes = self.i64_const(&format!("{name}/axes"), &usizes(&s.axes));
                let steps = self.i64_const(&format!("{name}/steps"), &s.steps);
                self.push_node(
                    &name,
                    "Slice",
                    vec![ins[0].clone(), starts, ends, axes, steps],
                    &out,
                    vec![],
                );
            }
            Op::Gather { axis } => self.push_node(
                &name,
                "Gather",
                ins,
                &out,
                vec![attr_i("axis", *axis as i64)],
            ),
            Op::Cast { to } => self.push_node(
                &name,
                "Cast",
                ins,
                &out,
                vec![attr_i("to", elem_type(*to) as i64)],
            ),
            Op::Pad { pads, value } => {
                let p = self.i64_const(&format!("{name}/pads"), &usizes(pads));
                let in_ty = &g.node(g.inputs(id)[0]).ty;
                let v = self.fresh(&format!("{name}/value"));
                let init = match in_ty.dtype {
                    DType::F32 => f32_initializer(&v, &[], &[*value]),
                    // The importer and eval accept only integral pad values for integer
                    // tensors, so the cast is exact.
                    DType::I64 | DType::U8 | DType::I8 | DType::I32 => tensor_initializer(
                        &v,
                        &Tensor {
                            shape: vec![],
                            data: TensorData::I64(vec![*value as i64]),
                        },
                    ),
                };
                self.out.initializer.push(init);
                self.push_node(
                    &name,
                    "Pad",
                    vec![ins[0].clone(), p, v],
                    &out,
                    vec![attr_s("mode", "constant")],
                );
            }
            Op::Softmax { axis } => self.push_node(
                &name,
                "Softmax",
                ins,
                &out,
                vec![attr_i("axis", *axis as i64)],
            ),
            Op::Lrn(l) => self.push_node(
                &name,
                "LRN",
                ins,
                &out,
                vec![
                    attr_i("size", l.size as i64),
                    attr_f("alpha", l.alpha),
                    attr_f("beta", l.beta),
                    attr_f("bias", l.bias),
                ],
            ),
            Op::Quantize(q) | Op::Dequantize(q) => {
                let (scale, zp) = self.qparams(id, &name, q)?;
                let kind = if matches!(n.op, Op::Quantize(_)) {
                    "QuantizeLinear"
                } else {
                    "DequantizeLinear"
                };
                let attrs = q
                    .axis
                    .map(|a| vec![attr_i("axis", a as i64)])
                    .unwrap_or_default();
                self.push_node(&name, kind, vec![ins[0].clone(), scale, zp], &out, attrs);
            }
            Op::QLut(l) => {
                // ONNX has no lookup op: Gather over the table, indexed by the input
                // widened to int64 (plus 128 for i8 inputs).
                let idx = self.fresh(&format!("{name}/index"));
                self.push_node(
                    &format!("{name}/cast"),
                    "Cast",
                    vec![ins[0].clone()],
                    &idx,
                    vec![attr_i("to", DataType::INT64 as i64)],
                );
                let idx = if l.x.min() != 0 {
                    let off = self.i64_const(&format!("{name}/offset"), &[-(l.x.min() as i64)]);
                    let shifted = self.fresh(&format!("{name}/shifted"));
                    self.push_node(
                        &format!("{name}/add"),
                        "Add",
                        vec![idx, off],
                        &shifted,
                        vec![],
                    );
                    shifted
                } else {
                    idx
                };
                let table = self.fresh(&format!("{name}/table"));
                let t = Tensor::from_i32_values(vec![l.table.len()], l.y.dtype(), l.table.clone())
                    .map_err(|e| self.err(id, e.to_string()))?;
                self.out.initializer.push(tensor_initializer(&table, &t));
                self.push_node(
                    &name,
                    "Gather",
                    vec![table, idx],
                    &out,
                    vec![attr_i("axis", 0)],
                );
            }
            Op::QBinary(q) => {
                // DequantizeLinear (both) -> Add | Mul -> QuantizeLinear, which onnxruntime
                // fuses back into QLinearAdd / QLinearMul (this op exactly); a float op may
                // differ by one step on rounding ties.
                let mut deq = Vec::new();
                for (k, p) in [("a", &q.a), ("b", &q.b)] {
                    let (s, z) = self.qparams(id, &format!("{name}/{k}"), p)?;
                    let d = self.fresh(&format!("{name}/{k}_dequantized"));
                    let input = ins[if k == "a" { 0 } else { 1 }].clone();
                    self.push_node(
                        &format!("{name}/{k}_dequantize"),
                        "DequantizeLinear",
                        vec![input, s, z],
                        &d,
                        vec![],
                    );
                    deq.push(d);
                }
                let (ys, yz) = self.qparams(id, &format!("{name}/y"), &q.y)?;
                let (kind, sum) = match q.op {
                    QBinaryOp::Add => ("Add", self.fresh(&format!("{name}/sum"))),
                    QBinaryOp::Mul => ("Mul", self.fresh(&format!("{name}/product"))),
                };
                self.push_node(
                    &format!("{name}/{}", kind.to_lowercase()),
                    kind,
                    deq,
                    &sum,
                    vec![],
                );
                self.push_node(&name, "QuantizeLinear", vec![sum, ys, yz], &out, vec![]);
            }
            Op::QGlobalAveragePool(m) => {
                // Standard ONNX has no integer mean: DequantizeLinear -> GlobalAveragePool ->
                // QuantizeLinear, which onnxruntime fuses back into QLinearGlobalAveragePool
                // (this op exactly); a float mean may differ by one step on rounding ties.
                let (xs, xz) = self.qparams(id, &format!("{name}/x"), &m.x)?;
                let (ys, yz) = self.qparams(id, &format!("{name}/y"), &m.y)?;
                let (deq, mean) = (
                    self.fresh(&format!("{name}/dequantized")),
                    self.fresh(&format!("{name}/mean")),
                );
                self.push_node(
                    &format!("{name}/dequantize"),
                    "DequantizeLinear",
                    vec![ins[0].clone(), xs, xz],
                    &deq,
                    vec![],
                );
                self.push_node(
                    &format!("{name}/pool"),
                    "GlobalAveragePool",
                    vec![deq],
                    &mean,
                    vec![],
                );
                self.push_node(&name, "QuantizeLinear", vec![mean, ys, yz], &out, vec![]);
            }
            Op::QConv(q) => {
                // QLinearConv has no fused clamp nor sum: only a plain requantization exports
                // (the optimized graph's fused forms are written before fusion).
                if q.conv.epilogue.act.is_some() || q.conv.epilogue.residual {
                    return Err(self.err(
                        id,
                        "a QConv with a fused activation or residual sum has no QLinearConv form",
                    ));
                }
                let c = &q.conv;
                let attrs = conv_attributes(c);
                let (xs, xz) = self.qparams(id, &format!("{name}/x"), &q.x)?;
                let (ws, wz) = self.qparams(id, &format!("{name}/w"), &q.w)?;
                let (ys, yz) = self.qparams(id, &format!("{name}/y"), &q.y)?;
                let mut inputs = vec![ins[0].clone(), xs, xz, ins[1].clone(), ws, wz, ys, yz];
                if c.has_bias {
                    inputs.push(ins[2].clone());
                }
                self.push_node(&name, "QLinearConv", inputs, &out, attrs);
            }
        }
        Ok(())
    }

    /// Scale and zero-point initializers of quantization parameters (scalars per tensor,
    /// 1-D per axis), named after `base`.
    fn qparams(
        &mut self,
        id: NodeId,
        base: &str,
        q: &QParams,
    ) -> Result<(String, String), ExportError> {
        let dims = if q.axis.is_some() {
            vec![q.scale.len()]
        } else {
            vec![]
        };
        let scale = self.fresh(&format!("{base}_scale"));
        self.out
            .initializer
            .push(f32_initializer(&scale, &dims, &q.scale));
        let zp = self.fresh(&format!("{base}_zero_point"));
        let t = Tensor::from_i32_values(dims, q.dtype, q.zero_point.clone())
            .map_err(|e| self.err(id, e.to_string()))?;
        self.out.initializer.push(tensor_initializer(&zp, &t));
        Ok((scale, zp))
    }

    /// A 1-D int64 initializer with a fresh name derived from `base`.
    fn i64_const(&mut self, base: &str, v: &[i64]) -> String {
        let name = self.fresh(base);
        self.out
            .initializer
            .push(i64_initializer(&name, &[v.len()], v));
        name
    }

    /// Input `slot` of a `ChannelAffine` node (a `[C]` vector) as a value of shape
    /// `[C,1,..]` broadcasting over axis 1 of a rank-`rank` tensor: a reshaped initializer
    /// for a constant, else a Reshape node.
    fn per_channel(&mut self, id: NodeId, slot: usize, rank: usize) -> Result<String, ExportError> {
        let g = self.g;
        let src = g.inputs(id)[slot];
        let c = g.node(src).ty.shape.first().copied().unwrap_or(0);
        let mut shape = vec![c];
        shape.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
        let part = if slot == 1 { "scale" } else { "bias" };
        let base = format!("{}/{part}", g.node(id).name);
        if let Op::Constant(t) = &g.node(src).op {
            let v = t
                .as_f32()
                .ok_or_else(|| self.err(id, format!("{part} must be f32")))?;
            let name = self.fresh(&base);
            self.out.initializer.push(f32_initializer(&name, &shape, v));
            Ok(name)
        } else {
            let s = self.i64_const(&format!("{base}_shape"), &usizes(&shape));
            let name = self.fresh(&base);
            let x = self.value[&src].clone();
            self.push_node(&name, "Reshape", vec![x, s], &name, vec![]);
            Ok(name)
        }
    }

    /// Emits `op_type(inputs)` followed by the epilogue's residual Add and activation; the
    /// last node gets the IR node's name and value.
    fn with_epilogue(
        &mut self,
        id: NodeId,
        op_type: &str,
        inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
        e: &Epilogue,
        residual: Option<String>,
    ) -> Result<(), ExportError> {
        let name = self.g.node(id).name.clone();
        let out = self.value[&id].clone();
        if e.residual && residual.is_none() {
            return Err(self.err(id, "residual epilogue without a residual input"));
        }
        let steps = e.residual as usize + e.act.is_some() as usize;
        if steps == 0 {
            self.push_node(&name, op_type, inputs, &out, attrs);
            return Ok(());
        }
        let main = self.fresh(&format!("{name}/{}", op_type.to_lowercase()));
        self.push_node(&main, op_type, inputs, &main, attrs);
        let mut cur = main;
        if let Some(r) = residual.filter(|_| e.residual) {
            if e.act.is_some() {
                let add = self.fresh(&format!("{name}/add"));
                self.push_node(&add, "Add", vec![cur, r], &add, vec![]);
                cur = add;
            } else {
                self.push_node(&name, "Add", vec![cur, r], &out, vec![]);
                return Ok(());
            }
        }
        if let Some(a) = e.act {
            self.act(&name, a, &cur, &out);
        }
        Ok(())
    }

    /// Emits activation `a` of value `x` as standard ONNX nodes; the last is called
    /// `name` and writes value `out`.
    fn act(&mut self, name: &str, a: Activation, x: &str, out: &str) {
        let x = x.to_string();
        match a {
            Activation::Relu => self.push_node(name, "Relu", vec![x], out, vec![]),
            Activation::Sigmoid => self.push_node(name, "Sigmoid", vec![x], out, vec![]),
            Activation::HardSwish => self.push_node(name, "HardSwish", vec![x], out, vec![]),
            Activation::HardSigmoid { alpha, beta } => self.push_node(
                name,
                "HardSigmoid",
                vec![x],
                out,
                vec![attr_f("alpha", alpha), attr_f("beta", beta)],
            ),
            Activation::Clip { min, max } => {
                let lo = self.fresh(&format!("{name}/min"));
                let hi = self.fresh(&format!("{name}/max"));
                self.out.initializer.push(f32_initializer(&lo, &[], &[min]));
                self.out.initializer.push(f32_initializer(&hi, &[], &[max]));
                self.push_node(name, "Clip", vec![x, lo, hi], out, vec![]);
            }
            Activation::Silu => {
                let s = self.fresh(&format!("{name}/sigmoid"));
                self.push_node(&s, "Sigmoid", vec![x.clone()], &s, vec![]);
                self.push_node(name, "Mul", vec![x, s], out, vec![]);
            }
        }
    }
}

fn attr_s(name: &str, v: &str) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = EnumOrUnknown::new(AttributeType::STRING);
    a.s = v.as_bytes().to_vec();
    a
}

#[cfg(test)]
mod tests;
