//! Whole-model tests of the importer: bad input of every kind, batch handling, node order,
//! naming and folding of shape-computing subgraphs. The committed fixtures are checked
//! against onnxruntime in `tests/tests/fixtures.rs`.

use super::testutil::*;
use super::{import_bytes, import_file, ImportError, ImportOptions};
use mnc_ir::{Op, TensorType};
use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::{Message, ModelProto, StringStringEntryProto, TensorProto};
use protobuf::EnumOrUnknown;
use std::path::Path;

fn small_model() -> Model {
    Model::new(13)
        .input("x", &[1, 3, 8, 8])
        .init_f32("features.0.0.weight", &[4, 3, 3, 3], None)
        .node(
            "Conv",
            &["x", "features.0.0.weight"],
            &["c"],
            vec![a_ints("pads", &[1, 1, 1, 1])],
        )
        .node("Relu", &["c"], &["y"], vec![])
        .output("y")
}

fn err_of(bytes: &[u8]) -> String {
    import_bytes(bytes, None, "bad.onnx", &ImportOptions::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn small_model_imports_with_names() {
    let g = small_model().import().unwrap();
    mnc_ir::verify::verify(&g).unwrap();
    assert!(
        g.find("features.0.0.weight").is_some(),
        "initializer keeps its name"
    );
    // unnamed nodes are named after their output
    assert!(g.find("c").is_some());
    assert_eq!(g.outputs[0].name, "y");
    assert_eq!(g.node(g.inputs[0]).ty, TensorType::f32(vec![1, 3, 8, 8]));
    // a node named like an initializer gets a unique name
    let g = Model::new(13)
        .input("x", &[2])
        .init_f32("w", &[2], None)
        .node_named("w", "", "Add", &["x", "w"], &["y"])
        .output("y")
        .import()
        .unwrap();
    assert_eq!(g.node(g.outputs[0].node).name, "w.1");
    assert_eq!(g.node(g.outputs[0].node).sources, vec!["w".to_string()]);
}

/// One xorshift64 step: the next pseudo-random state.
fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn empty_file() {
    let e = err_of(&[]);
    assert!(e.contains("bad.onnx") && e.contains("empty"), "{e}");
}

#[test]
fn random_bytes() {
    // xorshift bytes: either not a protobuf or a protobuf that is not a model
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..4096).map(|_| xorshift(&mut s) as u8).collect();
    let e = err_of(&bytes);
    assert!(e.starts_with("bad.onnx: not"), "{e}");
}

#[test]
fn truncated_protobuf() {
    let bytes = small_model().bytes();
    for cut in [bytes.len() / 2, bytes.len() - 1, 7] {
        let e = err_of(&bytes[..cut]);
        assert!(e.starts_with("bad.onnx: "), "{e}");
    }
    let e = err_of(&bytes[..bytes.len() / 2]);
    assert!(e.contains("not a valid ONNX protobuf"), "{e}");
}

#[test]
fn every_prefix_and_mutation_is_handled_without_panic() {
    let bytes = tf_same_model().bytes();
    for cut in 0..bytes.len() {
        let r = import_bytes(&bytes[..cut], None, "cut.onnx", &ImportOptions::default());
        if let Err(e) = r {
            assert!(e.to_string().starts_with("cut.onnx: "), "{e}");
        }
    }
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || xorshift(&mut s);
    for _ in 0..2000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let k = (next() % b.len() as u64) as usize;
            b[k] = next() as u8;
        }
        let _ = import_bytes(&b, None, "mutated.onnx", &ImportOptions::default());
    }
}

#[test]
fn protobuf_that_is_not_a_model() {
    // a serialized TensorProto parses as a ModelProto without graph
    let t = tensor_i64("t", &[2], &[1, 2]);
    let e = err_of(&t.write_to_bytes().unwrap());
    assert!(e.starts_with("bad.onnx: not"), "{e}");
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let e = err_of(&m.write_to_bytes().unwrap());
    assert!(e.contains("no graph"), "{e}");
    let mut m = small_model().m;
    m.opset_import.clear();
    let e = err_of(&m.write_to_bytes().unwrap());
    assert!(e.contains("no opset"), "{e}");
    let mut m = small_model().m;
    m.graph.as_mut().unwrap().output.clear();
    let e = err_of(&m.write_to_bytes().unwrap());
    assert!(e.contains("no outputs"), "{e}");
}

#[test]
fn cycle_is_an_error() {
    let e = Model::new(13)
        .input("x", &[2])
        .node_named("n1", "", "Add", &["x", "b"], &["a"])
        .node_named("n2", "", "Relu", &["a"], &["b"])
        .output("b")
        .import()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cycle") && e.contains("test.onnx") && e.contains("'n1' (Add)"),
        "{e}"
    );
}

#[test]
fn missing_tensor_is_an_error() {
    let e = Model::new(13)
        .input("x", &[2])
        .node_named("r", "", "Relu", &["nope"], &["y"])
        .output("y")
        .import()
        .unwrap_err()
        .to_string();
    assert!(e.contains("'r' (Relu)") && e.contains("'nope'"), "{e}");
    let e = Model::new(13)
        .input("x", &[2])
        .output("zzz")
        .import()
        .unwrap_err()
        .to_string();
    assert!(e.contains("'zzz'"), "{e}");
}

#[test]
fn nodes_out_of_order_are_sorted() {
    let g = Model::new(13)
        .input("x", &[2])
        .node("Relu", &["a"], &["y"], vec![])
        .node("Sigmoid", &["x"], &["a"], vec![])
        .output("y")
        .import()
        .unwrap();
    assert_eq!(g.node_count(), 3);
}

#[test]
fn unsupported_ops_and_domains() {
    let e = Model::new(17)
        .input("x", &[2])
        .node_named("my_lpn", "", "LpNormalization", &["x"], &["y"])
        .output("y")
        .import()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("LpNormalization")
            && e.contains("'my_lpn'")
            && e.contains("opset 17")
            && e.contains("not supported"),
        "{e}"
    );
    let e = Model::new(13)
        .input("x", &[2])
        .node_named("fg", "com.microsoft", "FusedGemm", &["x"], &["y"])
        .output("y")
        .import()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("FusedGemm") && e.contains("com.microsoft") && e.contains("not supported"),
        "{e}"
    );
    // an unknown attribute on a known op is refused rather than ignored
    let e = Model::new(13)
        .input("x", &[2])
        .node("Relu", &["x"], &["y"], vec![a_int("fancy", 1)])
        .output("y")
        .import()
        .unwrap_err()
        .to_string();
    assert!(e.contains("'fancy'"), "{e}");
    // an attribute of the wrong type is an error, not a silent default
    let e = Model::new(13)
        .input("x", &[1, 2])
        .node("Flatten", &["x"], &["y"], vec![a_float("axis", 1.0)])
        .output("y")
        .import()
        .unwrap_err()
        .to_string();
    assert!(e.contains("'axis' has type FLOAT, expected INT"), "{e}");
}

#[test]
fn batch_dimension() {
    let m = Model::new(13)
        .input_dims("x", DataType::FLOAT, &[None, Some(3), Some(4), Some(4)])
        .node("Relu", &["x"], &["y"], vec![])
        .output("y");
    let g = m.import().unwrap();
    assert_eq!(g.node(g.inputs[0]).ty.shape, vec![1, 3, 4, 4]);
    let g = m.import_with(&ImportOptions { batch: Some(5) }).unwrap();
    assert_eq!(g.node(g.inputs[0]).ty.shape, vec![5, 3, 4, 4]);
    assert_eq!(g.node(g.outputs[0].node).ty.shape, vec![5, 3, 4, 4]);
    // zero first dim is a batch too; a static first dim is overridden by --batch
    let m0 = Model::new(13)
        .input_dims("x", DataType::FLOAT, &[Some(0), Some(3)])
        .node("Relu", &["x"], &["y"], vec![])
        .output("y");
    assert_eq!(
        m0.import().unwrap().node(mnc_ir::NodeId::new(0)).ty.shape,
        vec![1, 3]
    );
    let g = small_model()
        .import_with(&ImportOptions { batch: Some(3) })
        .unwrap();
    assert_eq!(g.node(g.outputs[0].node).ty.shape, vec![3, 4, 8, 8]);
    let e = m
        .import_with(&ImportOptions { batch: Some(0) })
        .unwrap_err();
    assert!(e.to_string().contains("batch"), "{e}");
}

#[test]
fn bad_graph_inputs() {
    let e = Model::new(13)
        .input_dims("img", DataType::FLOAT, &[None, Some(3), None, None])
        .node("Relu", &["img"], &["y"], vec![])
        .output("y")
        .import()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'img'") && e.contains("dimension 2") && e.contains("symbolic"),
        "{e}"
    );
    let e = Model::new(13)
        .input_dims("ids", DataType::INT64, &[Some(1), Some(3)])
        .node("Identity", &["ids"], &["y"], vec![])
        .output("y")
        .import()
        .unwrap_err()
        .to_string();
    assert!(e.contains("'ids'") && e.contains("float32"), "{e}");
    let e = Model::new(13)
        .input("x", &[1 << 20, 1 << 20, 1 << 20])
        .node("Relu", &["x"], &["y"], vec![])
        .output("y")
        .import()
        .unwrap_err()
        .to_string();
    assert!(e.contains("'x'") && e.contains("too large"), "{e}");
}

fn raw_tensor(name: &str, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.to_vec();
    t.data_type = DataType::FLOAT as i32;
    t.raw_data = raw;
    t
}

fn with_init(t: TensorProto) -> Model {
    Model::new(13)
        .input("x", &[2])
        .init(t)
        .node("Identity", &["w"], &["y"], vec![])
        .output("y")
}

#[test]
fn initializer_encodings() {
    let raw: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let g = with_init(raw_tensor("w", &[2], raw)).import().unwrap();
    let w = g.find("w").unwrap();
    assert_eq!(
        g.node(w).op,
        Op::Constant(mnc_ir::Tensor::from_f32(vec![2], vec![1.5, -2.0]).unwrap())
    );
    // float16 and int32 and double
    let mut t = TensorProto::new();
    t.name = "w".into();
    t.dims = vec![3];
    t.data_type = DataType::FLOAT16 as i32;
    t.int32_data = vec![0x3c00, 0xc000, 0x0001];
    let g = with_init(t).import().unwrap();
    let Op::Constant(c) = &g.node(g.find("w").unwrap()).op else {
        panic!()
    };
    assert_eq!(c.as_f32().unwrap(), &[1.0, -2.0, 2f32.powi(-24)]);
    let mut t = TensorProto::new();
    t.name = "w".into();
    t.dims = vec![2];
    t.data_type = DataType::INT32 as i32;
    t.raw_data = [7i32, -8].iter().flat_map(|v| v.to_le_bytes()).collect();
    // an Identity of an integer constant is folded (the initializer itself is then dead)
    let g = with_init(t).import().unwrap();
    assert_eq!(const_i64(&g, "y"), vec![7, -8]);
    let mut t = TensorProto::new();
    t.name = "w".into();
    t.dims = vec![1];
    t.data_type = DataType::DOUBLE as i32;
    t.double_data = vec![0.25];
    let g = with_init(t).import().unwrap();
    let Op::Constant(c) = &g.node(g.find("w").unwrap()).op else {
        panic!()
    };
    assert_eq!(c.as_f32().unwrap(), &[0.25]);
}

#[test]
fn wrong_initializer_data_length() {
    let e = with_init(tensor_f32("w", &[2, 2], Some(vec![1.0; 3])))
        .import()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("initializer 'w'") && e.contains("needs 4 values"),
        "{e}"
    );
    let e = with_init(raw_tensor("w", &[2, 2], vec![0; 15]))
        .import()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("initializer 'w'") && e.contains("16 bytes"),
        "{e}"
    );
    let mut t = raw_tensor("w", &[2], vec![0; 2]);
    t.data_type = DataType::STRING as i32;
    let e = with_init(t).import().unwrap_err().to_string();
    assert!(e.contains("STRING") && e.contains("not supported"), "{e}");
}

#[test]
fn absurd_dims_are_refused_before_allocating() {
    for dims in [
        vec![1 << 20, 1 << 20, 1 << 20],
        vec![i64::MAX, i64::MAX],
        vec![1 << 31, 2],
    ] {
        let e = with_init(raw_tensor("w", &dims, vec![0; 16]))
            .import()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("initializer 'w'") && e.contains("too large"),
            "{e}"
        );
    }
    let e = with_init(raw_tensor("w", &[-1, 4], vec![]))
        .import()
        .unwrap_err()
        .to_string();
    assert!(e.contains("negative"), "{e}");
    // fits the element limit but the file holds far fewer bytes: refused by length
    let e = with_init(raw_tensor("w", &[1 << 28], vec![0; 16]))
        .import()
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs 1073741824 bytes"), "{e}");
}

fn external(
    name: &str,
    dims: &[i64],
    location: &str,
    offset: Option<u64>,
    length: Option<u64>,
) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.to_vec();
    t.data_type = DataType::FLOAT as i32;
    t.data_location = EnumOrUnknown::new(DataLocation::EXTERNAL);
    let mut kv = |k: &str, v: String| {
        let mut e = StringStringEntryProto::new();
        e.key = k.into();
        e.value = v;
        t.external_data.push(e);
    };
    kv("location", location.into());
    if let Some(o) = offset {
        kv("offset", o.to_string());
    }
    if let Some(l) = length {
        kv("length", l.to_string());
    }
    t
}

#[test]
fn external_data() {
    let dir = temp_dir("ext");
    let data: Vec<u8> = [9.0f32, 1.0, 2.0, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("m.onnx.data"), &data).unwrap();
    let g = with_init(external("w", &[3], "m.onnx.data", Some(4), Some(12)))
        .import_in(&dir)
        .unwrap();
    let Op::Constant(c) = &g.node(g.find("w").unwrap()).op else {
        panic!()
    };
    assert_eq!(c.as_f32().unwrap(), &[1.0, 2.0, 3.0]);
    // through import_file, with the model next to its data
    let m = with_init(external("w", &[2], "m.onnx.data", None, None));
    std::fs::write(dir.join("m.onnx"), m.bytes()).unwrap();
    let g = import_file(&dir.join("m.onnx"), &ImportOptions::default()).unwrap();
    let Op::Constant(c) = &g.node(g.find("w").unwrap()).op else {
        panic!()
    };
    assert_eq!(c.as_f32().unwrap(), &[9.0, 1.0]);

    let check = |t: TensorProto, want: &str| {
        let e = with_init(t).import_in(&dir).unwrap_err().to_string();
        assert!(
            e.contains("initializer 'w'") && e.contains(want),
            "{want}: {e}"
        );
    };
    check(
        external("w", &[3], "missing.data", None, None),
        "cannot be opened",
    );
    check(external("w", &[3], "/etc/passwd", None, None), "absolute");
    check(
        external("w", &[3], "m.onnx.data", Some(8), None),
        "too short",
    );
    check(
        external("w", &[3], "m.onnx.data", None, Some(8)),
        "length 8",
    );
    check(
        external("w", &[3], "m.onnx.data", Some(u64::MAX), None),
        "overflows",
    );
    check(
        external("w", &[1 << 20, 1 << 20, 1 << 20], "m.onnx.data", None, None),
        "too large",
    );
    // a file that exists outside the model's folder
    let sub = dir.join("model");
    std::fs::create_dir_all(&sub).unwrap();
    let e = with_init(external("w", &[3], "../m.onnx.data", None, None))
        .import_in(&sub)
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the model's folder"), "{e}");
    // a symlink inside the folder pointing outside is resolved and refused
    #[cfg(unix)]
    {
        let link = sub.join("link.data");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(dir.join("m.onnx.data"), &link).unwrap();
        let e = with_init(external("w", &[3], "link.data", None, None))
            .import_in(&sub)
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the model's folder"), "{e}");
    }
    // without a model folder, external data is refused
    let e = with_init(external("w", &[3], "m.onnx.data", None, None))
        .import()
        .unwrap_err();
    assert!(e.to_string().contains("folder is not known"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_file_is_an_io_error() {
    let e = import_file(
        Path::new("/nonexistent/mnc/model.onnx"),
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ImportError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/mnc/model.onnx"), "{e}");
}

/// The TF-"same" padding subgraph of timm exports, in the shape the legacy exporter writes
/// it: shape arithmetic on `Shape`/literal constants feeding a `Pad` of the activation.
fn tf_same_model() -> Model {
    Model::new(13)
        .input("x", &[1, 3, 9, 9])
        .init_f32("w", &[4, 3, 3, 3], None)
        .init_i64("i2", &[], &[2])
        .init_f32("s", &[], Some(vec![2.0]))
        .init_f32("one", &[], Some(vec![1.0]))
        .init_f32("k", &[], Some(vec![3.0]))
        .init_f32("zero", &[], Some(vec![0.0]))
        .init_i64("ax0", &[1], &[0])
        .init_i64("eight", &[], &[8])
        .init_i64("m12", &[2], &[-1, 2])
        .init_i64("m1", &[1], &[-1])
        .init_i64("big", &[1], &[-i64::MAX])
        .init_i64("zero_i", &[1], &[0])
        // ih = shape[2]; pad = max((ceil(ih / s) - 1) * s + k - ih, 0)
        .node("Shape", &["x"], &["shp"], vec![])
        .node("Gather", &["shp", "i2"], &["ih"], vec![a_int("axis", 0)])
        .node("Cast", &["ih"], &["ihf"], vec![a_int("to", 1)])
        .node("Div", &["ihf", "s"], &["q"], vec![])
        .node("Ceil", &["q"], &["qc"], vec![])
        .node("Sub", &["qc", "one"], &["q1"], vec![])
        .node("Mul", &["q1", "s"], &["q2"], vec![])
        .node("Add", &["q2", "k"], &["q3"], vec![])
        .node("Sub", &["q3", "ihf"], &["q4"], vec![])
        .node("Clip", &["q4", "zero"], &["pad"], vec![])
        // begin = pad // 2 (via float division and int cast), end = pad - begin
        .node("Div", &["pad", "s"], &["h"], vec![])
        .node("Cast", &["h"], &["hi"], vec![a_int("to", 7)])
        .node("Cast", &["hi"], &["hf"], vec![a_int("to", 1)])
        .node("Sub", &["pad", "hf"], &["e"], vec![])
        .node("Cast", &["e"], &["ei"], vec![a_int("to", 7)])
        .node("Unsqueeze", &["hi", "ax0"], &["u0"], vec![])
        .node("Unsqueeze", &["ei", "ax0"], &["u1"], vec![])
        // torch order: (w_begin, w_end, h_begin, h_end) padded to rank 4, reversed pairs
        .node(
            "Concat",
            &["u0", "u1", "u0", "u1"],
            &["p4"],
            vec![a_int("axis", 0)],
        )
        .node("Shape", &["p4"], &["p4s"], vec![])
        .node("Gather", &["p4s", "ax0"], &["p4n"], vec![a_int("axis", 0)])
        .node("Sub", &["eight", "p4n"], &["rest"], vec![])
        .node(
            "ConstantOfShape",
            &["rest"],
            &["zeros"],
            vec![a_tensor("value", tensor_i64("", &[1], &[0]))],
        )
        .node("Concat", &["p4", "zeros"], &["p8"], vec![a_int("axis", 0)])
        .node("Reshape", &["p8", "m12"], &["p42"], vec![])
        .node(
            "Slice",
            &["p42", "m1", "big", "zero_i", "m1"],
            &["rev"],
            vec![],
        )
        .node(
            "Transpose",
            &["rev"],
            &["tr"],
            vec![a_ints("perm", &[1, 0])],
        )
        .node("Reshape", &["tr", "m1"], &["flat"], vec![])
        .node("Cast", &["flat"], &["pads"], vec![a_int("to", 7)])
        .node(
            "Pad",
            &["x", "pads", "zero"],
            &["xp"],
            vec![a_str("mode", "constant")],
        )
        .node(
            "Conv",
            &["xp", "w"],
            &["y"],
            vec![a_ints("strides", &[2, 2])],
        )
        .output("y")
}

#[test]
fn tf_same_padding_subgraph_folds() {
    let g = match tf_same_model().import() {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    // ih 9, s 2, k 3: ceil(4.5)=5 -> (5-1)*2+3-9 = 2 -> begin 1, end 1
    let (op, ty) = op_of(&g, "y");
    assert!(matches!(op, Op::Conv(_)));
    assert_eq!(ty.shape, vec![1, 4, 5, 5]);
    let pad = g.find("xp").map(|id| g.node(id).op.clone());
    assert_eq!(
        pad,
        Some(Op::Pad {
            pads: vec![0, 0, 1, 1, 0, 0, 1, 1],
            value: 0.0
        })
    );
    // everything but input, weight, Pad and Conv was folded and then removed as dead
    assert_eq!(
        g.node_count(),
        4,
        "{}",
        mnc_ir::print::print_graph(&g).unwrap_or_default()
    );
}
