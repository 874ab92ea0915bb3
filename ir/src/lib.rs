//! `mnc-ir`: the graph IR of the mnc model compiler.
//!
//! Owns the data model every later stage works on: element types and constant tensors
//! ([`tensor`]), the closed [`op::Op`] enum with typed attributes, the dataflow [`graph::Graph`]
//! on a petgraph `StableDiGraph` (node ids survive rewrites), static shape inference
//! ([`infer`]), the [`verify`]er, the per-op [`facts`] every pass and backend reads (views,
//! in-place inputs, channel blocking, transposes, parameters), the stable text printer
//! ([`print`]) and the semantics of every op as naive reference kernels ([`eval`]), used by
//! the reference executor, by constant folding and by the importer.
//!
//! No ONNX/protobuf types appear here.

pub mod batch;
pub mod dot;
pub mod error;
pub mod eval;
pub mod facts;
pub mod graph;
pub mod infer;
pub mod op;
pub mod print;
pub mod quant;
pub mod schedule;
pub mod tensor;
pub mod verify;

pub use error::IrError;
pub use graph::{Graph, GraphOutput, Node, NodeId};
pub use op::{
    Activation, BinaryOp, Conv, Epilogue, Gemm, Lrn, Op, Pool, PoolKind, QBinary, QBinaryOp, QConv,
    QLut, QMean, QResidual, Slice, SqueezeExcite,
};
pub use quant::{QParams, QType};
pub use tensor::{DType, Tensor, TensorData, TensorDataRef, TensorType, TensorView};
