//! Unit tests of the ONNX writer: the structure of the written protobuf. (Numerical checks
//! against onnxruntime are in `tests/tests/zoo.rs`.)

use super::*;
use mnc_ir::{BinaryOp, Conv, SqueezeExcite, Tensor};

fn f32c(g: &mut Graph, name: &str, shape: Vec<usize>) -> NodeId {
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    g.add_constant(name, Tensor::from_f32(shape, data).unwrap())
}

fn op_types(m: &ModelProto) -> Vec<&str> {
    m.graph.node.iter().map(|n| n.op_type.as_str()).collect()
}

/// input -> Conv(bias, +residual, silu) -> output "y".
fn conv_epilogue_graph() -> Graph {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::f32(vec![1, 2, 4, 4]));
    let w = f32c(&mut g, "conv.weight", vec![2, 2, 3, 3]);
    let b = f32c(&mut g, "conv.bias", vec![2]);
    let conv = Conv {
        kernel: [3, 3],
        pads: [1, 1, 1, 1],
        has_bias: true,
        epilogue: Epilogue {
            residual: true,
            act: Some(Activation::Silu),
        },
        ..Default::default()
    };
    let c = g
        .add_node_inferred("conv", Op::Conv(conv), &[x, w, b, x])
        .unwrap();
    g.add_output("y", c);
    g
}

#[test]
fn model_header_and_io() {
    let m = to_model_proto(&conv_epilogue_graph()).unwrap();
    assert_eq!(m.ir_version, 8);
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(m.opset_import[0].version, 17);
    assert_eq!(m.opset_import[0].domain, "");
    let gp = &m.graph;
    assert_eq!(gp.input.len(), 1);
    assert_eq!(gp.input[0].name, "x");
    let t = gp.input[0].type_.tensor_type();
    assert_eq!(t.elem_type, DataType::FLOAT as i32);
    let dims: Vec<i64> = t
        .shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(dimension::Value::DimValue(v)) => v,
            _ => -1,
        })
        .collect();
    assert_eq!(dims, vec![1, 2, 4, 4]);
    assert_eq!(gp.output.len(), 1);
    assert_eq!(gp.output[0].name, "y");
}

#[test]
fn conv_epilogue_expands_to_conv_add_activation() {
    let m = to_model_proto(&conv_epilogue_graph()).unwrap();
    assert_eq!(op_types(&m), vec!["Conv", "Add", "Sigmoid", "Mul"]);
    let nodes = &m.graph.node;
    // The conv reads x, weight and bias; the add reads the residual x.
    assert_eq!(nodes[0].input, vec!["x", "conv.weight", "conv.bias"]);
    assert_eq!(nodes[1].input[1], "x");
    // The last node carries the IR node's name and writes the graph output.
    assert_eq!(nodes[3].name, "conv");
    assert_eq!(nodes[3].output, vec!["y"]);
    let attrs: Vec<&str> = nodes[0].attribute.iter().map(|a| a.name.as_str()).collect();
    for a in ["kernel_shape", "strides", "dilations", "pads", "group"] {
        assert!(attrs.contains(&a), "missing {a}");
    }
    // Initializers: f32 raw data, named after the constants.
    let w = m
        .graph
        .initializer
        .iter()
        .find(|t| t.name == "conv.weight")
        .unwrap();
    assert_eq!(w.dims, vec![2, 2, 3, 3]);
    assert_eq!(w.raw_data.len(), 2 * 2 * 3 * 3 * 4);
    assert_eq!(
        f32::from_le_bytes(w.raw_data[4..8].try_into().unwrap()),
        0.37f32.sin()
    );
}

#[test]
fn channel_affine_clip_and_se() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::f32(vec![1, 4, 3, 3]));
    let s = f32c(&mut g, "s", vec![4]);
    let b = f32c(&mut g, "b", vec![4]);
    let a = g
        .add_node_inferred("aff", Op::ChannelAffine, &[x, s, b])
        .unwrap();
    let c = g
        .add_node_inferred(
            "clip",
            Op::Act(Activation::Clip { min: 0.0, max: 6.0 }),
            &[a],
        )
        .unwrap();
    let w1 = f32c(&mut g, "se.fc1.weight", vec![2, 4, 1, 1]);
    let b1 = f32c(&mut g, "se.fc1.bias", vec![2]);
    let w2 = f32c(&mut g, "se.fc2.weight", vec![4, 2, 1, 1]);
    let b2 = f32c(&mut g, "se.fc2.bias", vec![4]);
    let se = SqueezeExcite {
        act: Activation::Relu,
        gate: Activation::HardSigmoid {
            alpha: 1.0 / 6.0,
            beta: 0.5,
        },
    };
    let y = g
        .add_node_inferred("se", Op::SqueezeExcite(se), &[c, w1, b1, w2, b2])
        .unwrap();
    g.add_output("se", y);
    let m = to_model_proto(&g).unwrap();
    assert_eq!(
        op_types(&m),
        vec![
            "Mul",
            "Add",
            "Clip",
            "GlobalAveragePool",
            "Conv",
            "Relu",
            "Conv",
            "HardSigmoid",
            "Mul"
        ]
    );
    let scale = m
        .graph
        .initializer
        .iter()
        .find(|t| t.name == "aff/scale")
        .unwrap();
    assert_eq!(scale.dims, vec![4, 1, 1]);
    // Every initializer is read by some node: the [C] scale and bias are written only in
    // their reshaped form.
    let used: std::collections::HashSet<&str> = m
        .graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    for t in &m.graph.initializer {
        assert!(
            used.contains(t.name.as_str()),
            "unused initializer {}",
            t.name
        );
    }
    let clip = &m.graph.node[2];
    assert_eq!(clip.input.len(), 3);
    let lo = m
        .graph
        .initializer
        .iter()
        .find(|t| t.name == clip.input[1])
        .unwrap();
    assert!(lo.dims.is_empty());
    assert_eq!(lo.raw_data, 0.0f32.to_le_bytes().to_vec());
    let hi = m
        .graph
        .initializer
        .iter()
        .find(|t| t.name == clip.input[2])
        .unwrap();
    assert_eq!(hi.raw_data, 6.0f32.to_le_bytes().to_vec());
}

#[test]
fn shape_ops_take_int64_inputs() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::f32(vec![2, 3, 1]));
    let sq = g
        .add_node_inferred("sq", Op::Squeeze { axes: vec![2] }, &[x])
        .unwrap();
    let r = g
        .add_node_inferred("r", Op::Reshape { shape: vec![3, 2] }, &[sq])
        .unwrap();
    let rm = g
        .add_node_inferred(
            "rm",
            Op::ReduceMean {
                axes: vec![1],
                keepdims: true,
            },
            &[r],
        )
        .unwrap();
    g.add_output("rm", rm);
    let m = to_model_proto(&g).unwrap();
    assert_eq!(op_types(&m), vec!["Squeeze", "Reshape", "ReduceMean"]);
    let shape = m
        .graph
        .initializer
        .iter()
        .find(|t| t.name == m.graph.node[1].input[1])
        .unwrap();
    assert_eq!(shape.data_type, DataType::INT64 as i32);
    assert_eq!(shape.int64_data, vec![3, 2]);
    // ReduceMean at opset 17 takes its axes as an attribute.
    assert!(m.graph.node[2].input.len() == 1);
    assert!(m.graph.node[2]
        .attribute
        .iter()
        .any(|a| a.name == "axes" && a.ints == vec![1]));
}

#[test]
fn lrn_round_trips_through_the_importer() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::f32(vec![1, 6, 3, 3]));
    let l = mnc_ir::Lrn {
        size: 4,
        alpha: 2e-4,
        beta: 0.6,
        bias: 1.5,
    };
    let y = g.add_node_inferred("lrn", Op::Lrn(l), &[x]).unwrap();
    g.add_output("y", y);
    let m = to_model_proto(&g).unwrap();
    assert_eq!(op_types(&m), vec!["LRN"]);
    let back = crate::onnx::import_bytes(&to_bytes(&g).unwrap(), None, "mem", &Default::default())
        .unwrap();
    let id = back.outputs[0].node;
    assert_eq!(back.node(id).op, Op::Lrn(l));
}

#[test]
fn output_names_and_clashes() {
    // An output naming an input needs an Identity; a value whose name another output takes
    // is an error, not a panic.
    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::f32(vec![2]));
    let y = g
        .add_node_inferred("y", Op::Binary(BinaryOp::Add), &[x, x])
        .unwrap();
    g.add_output("out_x", x);
    g.add_output("out_y", y);
    let m = to_model_proto(&g).unwrap();
    assert_eq!(op_types(&m), vec!["Add", "Identity"]);
    assert_eq!(m.graph.node[0].output, vec!["out_y"]);
    let outs: Vec<&str> = m.graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outs, vec!["out_x", "out_y"]);

    let mut g = Graph::new("t");
    let x = g.add_input("x", TensorType::f32(vec![2]));
    let y = g
        .add_node_inferred("y", Op::Binary(BinaryOp::Add), &[x, x])
        .unwrap();
    g.add_output("x", y);
    assert!(matches!(
        to_model_proto(&g),
        Err(ExportError::NameClash { .. })
    ));
}

#[test]
fn write_error_names_the_path() {
    let g = conv_epilogue_graph();
    let p = Path::new("/nonexistent-dir-for-mnc-test/m.onnx");
    let e = write_onnx(&g, p).unwrap_err().to_string();
    assert!(e.contains("/nonexistent-dir-for-mnc-test/m.onnx"), "{e}");
}
