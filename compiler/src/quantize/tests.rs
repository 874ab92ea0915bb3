//! Tests of `mnc quantize` on the committed fixture `tests/fixtures/quant/` (a small
//! MobileNetV2-style network and onnxruntime's `quantize_static` QDQ model of it, calibrated
//! on `calib.npy`).

use super::calibrate::{self, Method};
use super::qdq::{self, matches, ActParams};
use super::*;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{NodeProto, TensorProto};
use protobuf::Enum;
use std::collections::HashMap;

fn fixture() -> PathBuf {
    mnc_tests::fixtures_dir().join("quant")
}

fn quantized(opts: &QuantizeOptions) -> Quantized {
    let f = fixture();
    quantize(&f.join("model_f32.onnx"), &f.join("calib.npy"), opts).unwrap()
}

fn producers(m: &ModelProto) -> HashMap<&str, &NodeProto> {
    m.graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
        .collect()
}

fn inits(m: &ModelProto) -> HashMap<&str, &TensorProto> {
    m.graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect()
}

fn axis(n: &NodeProto) -> Option<i64> {
    n.attribute.iter().find(|a| a.name == "axis").map(|a| a.i)
}

/// The values of an int8/uint8/int32 initializer (raw data or `int32_data`).
fn ints(t: &TensorProto) -> Vec<i32> {
    if t.raw_data.is_empty() {
        return t.int32_data.clone();
    }
    match DataType::from_i32(t.data_type) {
        Some(DataType::UINT8) => t.raw_data.iter().map(|&b| b as i32).collect(),
        Some(DataType::INT8) => t.raw_data.iter().map(|&b| b as i8 as i32).collect(),
        _ => t
            .raw_data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

/// Every Conv/Gemm reads int8 weights through a per-channel DequantizeLinear (axis 0), an
/// int32 bias through a DequantizeLinear, and its activation through a
/// QuantizeLinear -> DequantizeLinear pair (u8); the ReLU6 Clips are gone; the model output
/// is a DequantizeLinear output; the opset stays 13.
#[test]
fn written_model_has_onnxruntime_structure() {
    let q = quantized(&QuantizeOptions::default());
    let m = &q.written.model;
    let (prod, init) = (producers(m), inits(m));
    let dq_of = |t: &str| -> &NodeProto {
        let n = prod[t];
        assert_eq!(n.op_type, "DequantizeLinear", "{t} is not dequantized");
        n
    };
    let mut layers = 0;
    for n in m
        .graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv" || n.op_type == "Gemm")
    {
        layers += 1;
        let w = dq_of(&n.input[1]);
        assert_eq!(axis(w), Some(0), "{}", n.name);
        assert_eq!(init[w.input[0].as_str()].data_type, DataType::INT8 as i32);
        assert_eq!(init[w.input[2].as_str()].data_type, DataType::INT8 as i32);
        let b = dq_of(&n.input[2]);
        assert_eq!(init[b.input[0].as_str()].data_type, DataType::INT32 as i32);
        let x = dq_of(&n.input[0]);
        assert_eq!(prod[x.input[0].as_str()].op_type, "QuantizeLinear");
        assert_eq!(init[x.input[2].as_str()].data_type, DataType::UINT8 as i32);
        assert_eq!(axis(x), None);
    }
    assert_eq!(layers, 14);
    assert!(m.graph.node.iter().all(|n| n.op_type != "Clip"));
    assert_eq!(dq_of("output").input[0], "output_QuantizeLinear_Output");
    assert_eq!(m.opset_import[0].version, 13);
    // No float weight is left behind.
    assert!(m
        .graph
        .initializer
        .iter()
        .all(|t| t.data_type != DataType::FLOAT as i32 || t.dims.len() <= 1));
    assert_eq!(q.plan.removed.len(), 9);
    assert_eq!(q.written.opset_raised, None);
}

/// With the same calibration set and the minmax method, every scale and zero point (weights,
/// biases, activations) is the one onnxruntime's quantize_static wrote, and the node
/// counts are the same.
#[test]
fn parameters_match_onnxruntime_quantize_static() {
    let q = quantized(&QuantizeOptions::default());
    let ort = read_model(&fixture().join("model_qdq_ort.onnx")).unwrap();
    let (mine, theirs) = (inits(&q.written.model), inits(&ort));
    let mut compared = 0;
    for (name, t) in &theirs {
        if !(name.ends_with("_scale") || name.ends_with("_zero_point")) {
            continue;
        }
        let m = mine
            .get(name)
            .unwrap_or_else(|| panic!("no initializer {name}"));
        assert_eq!((m.data_type, &m.dims), (t.data_type, &t.dims), "{name}");
        if name.ends_with("_scale") {
            let (a, b) = (qdq::f32_values(m), qdq::f32_values(t));
            assert_eq!(a.len(), b.len().max(1), "{name}");
            for (a, b) in a.iter().zip(b) {
                assert!((a - b).abs() <= 2e-6 * b.abs(), "{name}: {a} vs {b}");
            }
        } else {
            assert_eq!(ints(m), ints(t), "{name}");
        }
        compared += 1;
    }
    assert_eq!(compared, 92);
    let count = |m: &ModelProto, op: &str| m.graph.node.iter().filter(|n| n.op_type == op).count();
    for op in [
        "QuantizeLinear",
        "DequantizeLinear",
        "Conv",
        "Gemm",
        "Add",
        "Clip",
    ] {
        assert_eq!(count(&q.written.model, op), count(&ort, op), "{op}");
    }
}

/// The written model imports back into mnc; on the fixture's input its reference output is
/// onnxruntime's output of its own QDQ model to within one quantization step of the output
/// (the two models' parameters agree to float rounding, see above).
#[test]
fn written_model_reimports_and_matches_onnxruntime_within_a_step() {
    let q = quantized(&QuantizeOptions::default());
    let bytes = q.written.model.write_to_bytes().unwrap();
    let g = import_bytes(&bytes, None, "q.onnx", &ImportOptions::default()).unwrap();
    let x = crate::io::read_npy(&fixture().join("input.npy")).unwrap();
    let y = mnc_runtime::reference::run(&g, &[x]).unwrap();
    let want = crate::io::read_npy(&fixture().join("output_qdq_ort.npy")).unwrap();
    let step = q
        .ranges
        .iter()
        .find(|r| r.tensor == "output")
        .unwrap()
        .scale;
    let (y, want) = (y[0].as_f32().unwrap(), want.as_f32().unwrap());
    assert_eq!(y.len(), want.len());
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() <= step * 1.001, "{a} vs {b} (step {step})");
    }
}

#[test]
fn report_compares_every_layer_and_the_output() {
    let q = quantized(&QuantizeOptions::default());
    let r = report::evaluate(&q, "m.onnx", "q.onnx", 4).unwrap();
    assert_eq!(r.evaluated_samples, 4);
    assert_eq!(r.layers.len(), 14);
    for l in &r.layers {
        let db = l.sqnr_db.unwrap();
        assert!((10.0..60.0).contains(&db), "{}: {db}", l.node);
    }
    let o = &r.outputs[0];
    assert_eq!(o.name, "output");
    assert_eq!(o.top1_agree.unwrap().1, 4);
    assert!(o.sqnr_db.unwrap() > 20.0);
    assert_eq!(r.worst.len(), report::WORST);
    let text = r.text();
    assert!(
        text.contains("SQNR") && text.contains("lowest accumulated SQNR"),
        "{text}"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["tensors"].as_array().unwrap().len(), 18);
}

/// Leave-one-out: one entry per quantized layer, best first, each a file that differs from
/// the all-int8 one (keeping a layer in float changes the output), and the best one closer
/// to the float model than the all-int8 file; the report names the best three.
#[test]
fn sensitivity_keeps_each_layer_in_float_in_turn() {
    let q = quantized(&QuantizeOptions::default());
    let s = report::sensitivity(&q, 2).unwrap();
    assert_eq!(s.samples, 2);
    assert_eq!(s.layers.len(), q.plan.layers.len());
    let db: Vec<f64> = s
        .layers
        .iter()
        .map(|l| l.output_sqnr_db.unwrap_or(f64::INFINITY))
        .collect();
    assert!(db.windows(2).all(|w| w[0] >= w[1]), "{db:?}");
    let base = s.baseline_sqnr_db.unwrap();
    assert!(db.iter().all(|&d| d != base), "{db:?} vs {base}");
    assert!(db[0] > base, "{db:?} vs {base}");
    let mut r = report::evaluate(&q, "m.onnx", "q.onnx", 2).unwrap();
    r.sensitivity = Some(s.clone());
    let text = r.text();
    assert!(
        text.contains("keeping one layer in float helps most for"),
        "{text}"
    );
    assert!(text.contains(&s.layers[0].node), "{text}");
}

/// A `--keep-f32` node keeps its float weight and reads the float tensor, not the
/// dequantized one; the other layers are still quantized.
#[test]
fn keep_f32_leaves_matching_nodes_in_float() {
    let opts = QuantizeOptions {
        keep_f32: vec!["*features.5/*".into(), "/classifier/Gemm".into()],
        ..Default::default()
    };
    let q = quantized(&opts);
    assert_eq!(q.plan.kept_f32.len(), 3); // the head conv, its Clip, the Gemm
    let m = &q.written.model;
    let prod = producers(m);
    let gemm = m.graph.node.iter().find(|n| n.op_type == "Gemm").unwrap();
    assert_eq!(prod[gemm.input[0].as_str()].op_type, "Flatten");
    assert!(inits(m).contains_key(gemm.input[1].as_str()));
    let head = m
        .graph
        .node
        .iter()
        .find(|n| n.name == "/features/features.5/features.5.0/Conv")
        .unwrap();
    assert_eq!(prod[head.input[0].as_str()].op_type, "Conv");
    assert!(inits(m).contains_key(head.input[1].as_str()));
    assert_eq!(q.plan.layers.len(), 12);
    let bytes = q.written.model.write_to_bytes().unwrap();
    import_bytes(&bytes, None, "q.onnx", &ImportOptions::default()).unwrap();
}

#[test]
fn patterns_are_substrings_or_globs() {
    assert!(matches("features.5", "/features/features.5/Conv"));
    assert!(!matches("features.5", "/features/features.4/Conv"));
    assert!(matches("*/Conv", "/a/b/Conv"));
    assert!(!matches("*/Conv", "/a/b/Conv_1"));
    assert!(matches("/a/?/Conv", "/a/b/Conv"));
    assert!(!matches("/a/?/Conv", "/a/bc/Conv"));
}

/// Percentile and entropy ranges lie inside the minmax ranges, and the per-tensor weight
/// option writes one scale per weight.
#[test]
fn methods_narrow_the_ranges_and_per_tensor_weights_have_one_scale() {
    let minmax = quantized(&QuantizeOptions::default());
    let by_name: HashMap<&str, &TensorRange> = minmax
        .ranges
        .iter()
        .map(|r| (r.tensor.as_str(), r))
        .collect();
    for method in [Method::Percentile, Method::Entropy] {
        let q = quantized(&QuantizeOptions {
            method,
            percentile: 99.9,
            per_channel: false,
            ..Default::default()
        });
        let mut narrower = 0;
        for r in &q.ranges {
            let m = by_name[r.tensor.as_str()];
            assert!(
                r.rmin >= m.rmin && r.rmax <= m.rmax,
                "{method:?} {r:?} vs {m:?}"
            );
            narrower += usize::from(r.rmax - r.rmin < 0.999 * (m.rmax - m.rmin));
        }
        assert!(narrower > 0, "{method:?} narrowed nothing");
        for w in q.written.weight_scales.values() {
            assert_eq!(w.len(), 1);
        }
        let dq = q
            .written
            .model
            .graph
            .node
            .iter()
            .find(|n| n.name.ends_with("weight_DequantizeLinear"))
            .unwrap();
        assert_eq!(axis(dq), None);
    }
}

#[test]
fn opset_is_raised_from_11_and_refused_when_ops_changed() {
    let mut model = read_model(&fixture().join("model_f32.onnx")).unwrap();
    model.opset_import[0].version = 11;
    let plan = qdq::plan(&model, true, &[]);
    let params: HashMap<String, ActParams> = plan
        .calibrated()
        .map(|t| {
            (
                t.clone(),
                ActParams {
                    scale: 0.1,
                    zero_point: 0,
                },
            )
        })
        .collect();
    let g = import_bytes(
        &std::fs::read(fixture().join("model_f32.onnx")).unwrap(),
        None,
        "m",
        &ImportOptions::default(),
    )
    .unwrap();
    let value = |n: &str| {
        g.find(n).and_then(|id| match &g.node(id).op {
            Op::Constant(t) => Some(t.clone()),
            _ => None,
        })
    };
    let w = qdq::write(&model, &plan, &params, &value, &HashMap::new()).unwrap();
    assert_eq!(w.opset_raised, Some((11, 13)));
    assert_eq!(w.model.opset_import[0].version, 13);
    let mut sq = NodeProto::new();
    sq.op_type = "Squeeze".into();
    model.graph.mut_or_insert_default().node.push(sq);
    let e = qdq::write(&model, &plan, &params, &value, &HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("Squeeze changed in opset 13"), "{e}");
    model.opset_import[0].version = 10;
    let e = qdq::write(&model, &plan, &params, &value, &HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("opset 10 cannot be raised"), "{e}");
}

#[test]
fn calibration_samples_from_stacks_items_and_photos() {
    let d = mnc_tests::tmp_dir("quant-samples");
    let shape = [2, 3, 8, 8];
    let item = |v: f32| Tensor::from_f32(vec![3, 8, 8], vec![v; 192]).unwrap();
    let stack = Tensor::from_f32(vec![3, 3, 8, 8], vec![1.0; 3 * 192]).unwrap();
    crate::io::write_npy(&d.join("a.npy"), &stack).unwrap();
    crate::io::write_npy(&d.join("b.npy"), &item(2.0)).unwrap();
    image::RgbImage::from_pixel(20, 10, image::Rgb([255, 0, 0]))
        .save(d.join("c.png"))
        .unwrap();
    std::fs::write(d.join("notes.txt"), "ignored").unwrap();
    let (s, notes) = load_samples(&d, &shape).unwrap();
    // 3 + 1 + 1 items in batches of 2: two samples, one item left out.
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].shape, shape);
    assert_eq!(s[1].as_f32().unwrap()[192], 2.0);
    assert!(
        notes[0].contains("1 calibration items left out"),
        "{notes:?}"
    );
    let (s, _) = load_samples(&d.join("a.npy"), &[1, 3, 8, 8]).unwrap();
    assert_eq!(s.len(), 3);
    // The photo: red, ImageNet-normalized.
    let (s, _) = load_samples(&d.join("c.png"), &[1, 3, 8, 8]).unwrap();
    let v = s[0].as_f32().unwrap();
    assert!((v[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
    let e = load_samples(&d.join("a.npy"), &[1, 3, 4, 4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("a.npy") && e.contains("does not fit"), "{e}");
    let e = load_samples(&d.join("b.npy"), &[4, 3, 8, 8])
        .unwrap_err()
        .to_string();
    assert!(e.contains("fewer than the batch"), "{e}");
    let e = load_samples(&d.join("missing.npy"), &shape)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.npy"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

fn n(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    let mut p = NodeProto::new();
    p.op_type = op.into();
    p.name = name.into();
    p.input = inputs.iter().map(|s| s.to_string()).collect();
    p.output = outputs.iter().map(|s| s.to_string()).collect();
    p
}

/// An empty model of IR version 8, default-domain opset 13.
fn opset13_model() -> ModelProto {
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut o = onnx_protobuf::OperatorSetIdProto::new();
    o.version = 13;
    m.opset_import.push(o);
    m
}

/// Pad -> Conv -> Relu -> HardSwish -> MaxPool -> Conv, a shape subgraph (Shape, Concat, and
/// a float Mul of the shape, as timm's "same" padding computes), and a residual Add that is
/// the graph output; `x` is [1, 3, 6, 6].
fn hand_built() -> (ModelProto, HashMap<String, Tensor>) {
    use crate::export::tensor_initializer;
    let mut vals = HashMap::new();
    let w: Vec<f32> = (0..4 * 3 * 9)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
        .collect();
    vals.insert(
        "w".to_string(),
        Tensor::from_f32(vec![4, 3, 3, 3], w).unwrap(),
    );
    vals.insert(
        "b".to_string(),
        Tensor::from_f32(vec![4], vec![0.1, -0.2, 0.3, 0.0]).unwrap(),
    );
    let w2: Vec<f32> = (0..16).map(|i| (i as f32 - 7.5) / 8.0).collect();
    vals.insert(
        "w2".to_string(),
        Tensor::from_f32(vec![4, 4, 1, 1], w2).unwrap(),
    );
    let mut m = opset13_model();
    let g = m.graph.mut_or_insert_default();
    for (k, t) in &vals {
        g.initializer.push(tensor_initializer(k, t));
    }
    g.initializer.push(tensor_initializer(
        "pads",
        &Tensor::from_i64(vec![8], vec![0, 0, 1, 1, 0, 0, 1, 1]).unwrap(),
    ));
    let ty = mnc_ir::TensorType::f32(vec![1, 3, 6, 6]);
    let vi = crate::export::value_info("x", &ty);
    g.input.push(vi);
    g.node = vec![
        n("Pad", "pad", &["x", "pads"], &["xp"]),
        n("Conv", "conv1", &["xp", "w", "b"], &["c"]),
        n("Relu", "relu", &["c"], &["r"]),
        n("HardSwish", "hs", &["r"], &["h"]),
        n("MaxPool", "pool", &["h"], &["mp"]),
        n("Conv", "conv2", &["mp", "w2"], &["c2"]),
        n("Shape", "shape", &["c2"], &["s"]),
        n("Concat", "cat", &["s", "s"], &["cs"]),
        n("Cast", "cast", &["s"], &["sf"]),
        n("Mul", "shape_mul", &["sf", "sf"], &["sm"]),
        n("Add", "add", &["c2", "r"], &["out"]),
    ];
    g.node[8].attribute.push({
        let mut a = onnx_protobuf::AttributeProto::new();
        a.name = "to".into();
        a.type_ = protobuf::EnumOrUnknown::new(onnx_protobuf::attribute_proto::AttributeType::INT);
        a.i = DataType::FLOAT as i64;
        a
    });
    g.node[4].attribute.push({
        let mut a = onnx_protobuf::AttributeProto::new();
        a.name = "kernel_shape".into();
        a.type_ = protobuf::EnumOrUnknown::new(onnx_protobuf::attribute_proto::AttributeType::INTS);
        a.ints = vec![1, 1];
        a
    });
    g.node[7].attribute.push({
        let mut a = onnx_protobuf::AttributeProto::new();
        a.name = "axis".into();
        a.type_ = protobuf::EnumOrUnknown::new(onnx_protobuf::attribute_proto::AttributeType::INT);
        a.i = 0;
        a
    });
    let mut out = ValueInfoProto::new();
    out.name = "out".into();
    g.output.push(out);
    (m, vals)
}

/// The QDQ model of the [`hand_built`] model `m` (initializer values `vals`) for plan `p`,
/// calibrated (minmax) on the one input `x` it returns.
fn calibrate_and_write(
    m: &ModelProto,
    vals: &HashMap<String, Tensor>,
    p: &qdq::Plan,
) -> (Tensor, qdq::Written) {
    let x = Tensor::from_f32(
        vec![1, 3, 6, 6],
        (0..108).map(|i| ((i % 13) as f32 - 6.0) / 3.0).collect(),
    )
    .unwrap();
    let names: Vec<&str> = p.calibrated().map(String::as_str).collect();
    let cg = import_bytes(
        &with_outputs(m, &names).unwrap(),
        None,
        "c",
        &ImportOptions::default(),
    )
    .unwrap();
    let seen = run_named(&cg, &x, "float", 0).unwrap();
    let params: HashMap<String, ActParams> = p
        .calibrated()
        .map(|t| {
            let mut o = calibrate::Observer::new(false);
            o.add(seen[t].as_f32().unwrap());
            let (scale, zero_point) = calibrate::activation_params(o.min, o.max);
            (t.clone(), ActParams { scale, zero_point })
        })
        .collect();
    let value = |k: &str| vals.get(k).cloned();
    let w = qdq::write(m, p, &params, &value, &HashMap::new()).unwrap();
    (x, w)
}

/// The outputs of `model` on `x` (the reference executor).
fn run_ref(model: &ModelProto, x: &Tensor) -> Vec<Tensor> {
    let g = import_bytes(
        &model.write_to_bytes().unwrap(),
        None,
        "m",
        &ImportOptions::default(),
    )
    .unwrap();
    mnc_runtime::reference::run(&g, std::slice::from_ref(x)).unwrap()
}

/// The SQNR (dB) of the first output of the quantized `q` against the float `m` on `x`,
/// both on the reference executor.
fn sqnr_vs_float(m: &ModelProto, q: &ModelProto, x: &Tensor) -> f64 {
    let (yf, yq) = (run_ref(m, x), run_ref(q, x));
    let mut e = report::Energy::default();
    e.add(yf[0].as_f32().unwrap(), yq[0].as_f32().unwrap());
    e.sqnr_db().unwrap()
}

/// The planner on a hand-built graph: a zero Pad shares its input's parameters, a Relu after
/// a conv is removed, HardSwish stays float (so the MaxPool after it is not a pass-through
/// and the next conv quantizes its own input), shape tensors (integer, and the float Mul of
/// the shape) are left alone, and the
/// written model imports and runs in mnc like the float model within the quantization error.
#[test]
fn plan_of_pad_relu_hardswish_pool_and_shape_ops() {
    let (m, vals) = hand_built();
    let p = qdq::plan(&m, true, &[]);
    assert_eq!(p.activations, ["x", "xp", "r", "mp", "c2", "out"]);
    assert_eq!(p.shared.get("xp").map(String::as_str), Some("x"));
    assert_eq!(p.shared.len(), 1);
    assert_eq!(p.removed, [(2, "c".to_string(), "r".to_string())]);
    let layers: Vec<(&str, &str)> = p
        .layers
        .iter()
        .map(|l| (l.node.as_str(), l.output.as_str()))
        .collect();
    assert_eq!(layers, [("conv1", "r"), ("conv2", "c2")]);
    assert_eq!(p.biases.len(), 1);
    let (x, w) = calibrate_and_write(&m, &vals, &p);
    let wm = &w.model;
    // The Pad's output reuses x's scale and zero point.
    let q_xp = wm
        .graph
        .node
        .iter()
        .find(|n| n.name == "xp_QuantizeLinear")
        .unwrap();
    assert_eq!(q_xp.input[1], "x_scale");
    assert!(wm.graph.node.iter().all(|n| n.op_type != "Relu"));
    let db = sqnr_vs_float(&m, wm, &x);
    assert!(db > 25.0, "{db}");
}

/// A `--keep-f32` node that reads the output of a removed Relu reads it through the Relu,
/// kept in float for it: the conv writes the unclamped value into the Relu's output tensor
/// (on EfficientNet-Lite0, keeping one project conv that read it gave -1.3 dB and top-1 0
/// of 54). Not removing the Relu would quantize the conv's unclamped output with its own,
/// much wider, range; reading the dequantized copy would put the float node between a
/// DequantizeLinear and a QuantizeLinear, where onnxruntime quantizes its float weights
/// itself.
#[test]
fn keep_f32_reader_of_a_removed_relu_reads_the_clamped_tensor() {
    let (m, vals) = hand_built();
    let p = qdq::plan(&m, true, &["hs".to_string()]);
    assert_eq!(p.kept_f32, ["hs"]);
    assert_eq!(p.removed, [(2, "c".to_string(), "r".to_string())]);
    let (x, w) = calibrate_and_write(&m, &vals, &p);
    let hs = w.model.graph.node.iter().find(|n| n.name == "hs").unwrap();
    assert_eq!(hs.input[0], "r_clamped");
    let relu = producers(&w.model)["r_clamped"];
    assert_eq!(
        (relu.op_type.as_str(), relu.input[0].as_str()),
        ("Relu", "r")
    );
    assert_eq!(producers(&w.model)["r"].name, "conv1");
    let db = sqnr_vs_float(&m, &w.model, &x);
    assert!(db > 25.0, "{db}");
}

/// x [1, 16, 4, 4] (values near 1) -> 1x1 Conv (2 output channels, bias) -> y. Output
/// channel 0 has one weight of 1.0 and fifteen of 0.0049, which its int8 step (1/127) rounds
/// up to 0.0079 each: a mean error of about 15 * 0.003 * E[x] = 0.045 that bias correction
/// removes; channel 1's weights are exact.
fn biased_conv() -> (ModelProto, Tensor) {
    use crate::export::tensor_initializer;
    let mut w = vec![0.0049f32; 32];
    w[0] = 1.0;
    w[16..].iter_mut().for_each(|v| *v = 0.5);
    let mut m = opset13_model();
    let g = m.graph.mut_or_insert_default();
    g.initializer.push(tensor_initializer(
        "w",
        &Tensor::from_f32(vec![2, 16, 1, 1], w).unwrap(),
    ));
    g.initializer.push(tensor_initializer(
        "b",
        &Tensor::from_f32(vec![2], vec![0.1, -0.2]).unwrap(),
    ));
    let ty = mnc_ir::TensorType::f32(vec![1, 16, 4, 4]);
    g.input.push(crate::export::value_info("x", &ty));
    g.node = vec![n("Conv", "conv", &["x", "w", "b"], &["y"])];
    let mut out = ValueInfoProto::new();
    out.name = "y".into();
    g.output.push(out);
    let x: Vec<f32> = (0..256).map(|i| 1.0 + 0.1 * (i as f32).sin()).collect();
    (m, Tensor::from_f32(vec![1, 16, 4, 4], x).unwrap())
}

/// `--bias-correction` cancels the mean error of the int8 weights: the quantized output
/// channel 0 is off by about 0.045 on average without it, and within the output's
/// quantization step (about 0.005) with it; the exact channel 1 stays as it was.
#[test]
fn bias_correction_cancels_the_mean_weight_error() {
    let (m, x) = biased_conv();
    let d = mnc_tests::tmp_dir("quant-bias-correction");
    std::fs::write(d.join("m.onnx"), m.write_to_bytes().unwrap()).unwrap();
    crate::io::write_npy(&d.join("x.npy"), &x).unwrap();
    let yf = run_ref(&m, &x);
    let mean_err = |bias_correction: bool| -> [f64; 2] {
        let opts = QuantizeOptions {
            bias_correction,
            ..Default::default()
        };
        let q = quantize(&d.join("m.onnx"), &d.join("x.npy"), &opts).unwrap();
        assert_eq!(q.written.biases_corrected, usize::from(bias_correction));
        let yq = run_ref(&q.written.model, &x);
        let (a, b) = (yf[0].as_f32().unwrap(), yq[0].as_f32().unwrap());
        let mut e = [0f64; 2];
        for (i, (u, v)) in a.iter().zip(b).enumerate() {
            e[i / 16] += (*v as f64 - *u as f64) / 16.0;
        }
        e
    };
    let without = mean_err(false);
    let with = mean_err(true);
    assert!(without[0] > 0.03, "{without:?}");
    assert!(with[0].abs() < 0.005, "{with:?}");
    assert!(
        with[1].abs() < 0.005 && without[1].abs() < 0.005,
        "{with:?} {without:?}"
    );
    std::fs::remove_dir_all(&d).ok();
}
