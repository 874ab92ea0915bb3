//! Test-only builder of small ONNX models, so that every op family can be tested without
//! fixture files.

use super::{import_bytes, ImportError, ImportOptions};
use mnc_ir::{Graph, Op, TensorType};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension::Value as DimValue, Dimension};
use onnx_protobuf::type_proto::{Tensor as TypeTensor, Value as TypeValue};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf::EnumOrUnknown;
use std::path::Path;

/// A model under construction.
pub(crate) struct Model {
    pub m: ModelProto,
}

fn graph(m: &mut ModelProto) -> &mut GraphProto {
    m.graph.mut_or_insert_default()
}

/// A float value-info with the given dims (`None`: a symbolic dim named "N").
pub(crate) fn value_info(name: &str, elem: DataType, dims: &[Option<i64>]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for d in dims {
        let mut dim = Dimension::new();
        dim.value = Some(match d {
            Some(v) => DimValue::DimValue(*v),
            None => DimValue::DimParam("N".into()),
        });
        shape.dim.push(dim);
    }
    let mut tt = TypeTensor::new();
    tt.elem_type = elem as i32;
    tt.shape = Some(shape).into();
    let mut tp = TypeProto::new();
    tp.value = Some(TypeValue::TensorType(tt));
    let mut vi = ValueInfoProto::new();
    vi.name = name.into();
    vi.type_ = Some(tp).into();
    vi
}

/// A float tensor proto (values `0.01 * k` when `data` is `None`).
pub(crate) fn tensor_f32(name: &str, dims: &[i64], data: Option<Vec<f32>>) -> TensorProto {
    let n: i64 = dims.iter().product();
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.to_vec();
    t.data_type = DataType::FLOAT as i32;
    t.float_data = data.unwrap_or_else(|| (0..n).map(|k| 0.01 * k as f32).collect());
    t
}

pub(crate) fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.to_vec();
    t.data_type = DataType::INT64 as i32;
    t.int64_data = data.to_vec();
    t
}

impl Model {
    pub fn new(opset: i64) -> Self {
        let mut m = ModelProto::new();
        m.ir_version = 8;
        let mut o = OperatorSetIdProto::new();
        o.version = opset;
        m.opset_import.push(o);
        graph(&mut m).name = "test".into();
        Model { m }
    }

    /// A float32 input with static dims.
    pub fn input(self, name: &str, dims: &[i64]) -> Self {
        let d: Vec<Option<i64>> = dims.iter().map(|&x| Some(x)).collect();
        self.input_dims(name, DataType::FLOAT, &d)
    }

    pub fn input_dims(mut self, name: &str, elem: DataType, dims: &[Option<i64>]) -> Self {
        graph(&mut self.m).input.push(value_info(name, elem, dims));
        self
    }

    pub fn init(mut self, t: TensorProto) -> Self {
        graph(&mut self.m).initializer.push(t);
        self
    }

    pub fn init_f32(self, name: &str, dims: &[i64], data: Option<Vec<f32>>) -> Self {
        self.init(tensor_f32(name, dims, data))
    }

    pub fn init_i64(self, name: &str, dims: &[i64], data: &[i64]) -> Self {
        self.init(tensor_i64(name, dims, data))
    }

    /// An initializer of a small integer type (`UINT8`, `INT8`, `INT32`), stored in
    /// `int32_data` as ONNX does for those types.
    pub fn init_int(self, name: &str, elem: DataType, dims: &[i64], data: &[i32]) -> Self {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.dims = dims.to_vec();
        t.data_type = elem as i32;
        t.int32_data = data.to_vec();
        self.init(t)
    }

    pub fn node(
        mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> Self {
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = outputs.iter().map(|s| s.to_string()).collect();
        n.attribute = attrs;
        graph(&mut self.m).node.push(n);
        self
    }

    /// Like [`Model::node`] with a node name and domain.
    pub fn node_named(
        mut self,
        name: &str,
        domain: &str,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
    ) -> Self {
        self = self.node(op, inputs, outputs, vec![]);
        let n = graph(&mut self.m).node.last_mut().expect("just pushed");
        n.name = name.into();
        n.domain = domain.into();
        self
    }

    pub fn output(mut self, name: &str) -> Self {
        let mut vi = ValueInfoProto::new();
        vi.name = name.into();
        graph(&mut self.m).output.push(vi);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.m.write_to_bytes().expect("serializable")
    }

    pub fn import(&self) -> Result<Graph, ImportError> {
        self.import_with(&ImportOptions::default())
    }

    pub fn import_with(&self, opts: &ImportOptions) -> Result<Graph, ImportError> {
        import_bytes(&self.bytes(), None, "test.onnx", opts)
    }

    pub fn import_in(&self, dir: &Path) -> Result<Graph, ImportError> {
        import_bytes(
            &self.bytes(),
            Some(dir),
            "test.onnx",
            &ImportOptions::default(),
        )
    }
}

fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = EnumOrUnknown::new(ty);
    a
}

pub(crate) fn a_int(name: &str, v: i64) -> AttributeProto {
    let mut a = attr(name, AttributeType::INT);
    a.i = v;
    a
}

pub(crate) fn a_ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = attr(name, AttributeType::INTS);
    a.ints = v.to_vec();
    a
}

pub(crate) fn a_float(name: &str, v: f32) -> AttributeProto {
    let mut a = attr(name, AttributeType::FLOAT);
    a.f = v;
    a
}

pub(crate) fn a_floats(name: &str, v: &[f32]) -> AttributeProto {
    let mut a = attr(name, AttributeType::FLOATS);
    a.floats = v.to_vec();
    a
}

pub(crate) fn a_str(name: &str, v: &str) -> AttributeProto {
    let mut a = attr(name, AttributeType::STRING);
    a.s = v.as_bytes().to_vec();
    a
}

pub(crate) fn a_tensor(name: &str, t: TensorProto) -> AttributeProto {
    let mut a = attr(name, AttributeType::TENSOR);
    a.t = Some(t).into();
    a
}

/// The op and type of the IR node that the graph output `name` refers to.
pub(crate) fn op_of(g: &Graph, output: &str) -> (Op, TensorType) {
    let o = g
        .outputs
        .iter()
        .find(|o| o.name == output)
        .expect("output exists");
    let n = g.node(o.node);
    (n.op.clone(), n.ty.clone())
}

/// The i64 values of a constant graph output.
pub(crate) fn const_i64(g: &Graph, output: &str) -> Vec<i64> {
    match op_of(g, output).0 {
        Op::Constant(t) => t.as_i64().expect("i64 constant").to_vec(),
        other => panic!("output {output} is {other:?}, not a constant"),
    }
}

/// The f32 values of a constant graph output.
pub(crate) fn const_f32(g: &Graph, output: &str) -> Vec<f32> {
    match op_of(g, output).0 {
        Op::Constant(t) => t.as_f32().expect("f32 constant").to_vec(),
        other => panic!("output {output} is {other:?}, not a constant"),
    }
}

/// A fresh empty directory under the system temp dir.
pub(crate) fn temp_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "mnc-onnx-test-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}
