//! ONNX export (being written).
