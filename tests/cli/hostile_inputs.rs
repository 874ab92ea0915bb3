//! Hostile inputs through the `mnc` binary: tiny crafted ONNX models with absurd conv/pool
//! geometry and images with extreme sizes. Each ends with exit code 1 and one line naming
//! the problem (or, where the geometry is merely unusual, a correct result), never a crash,
//! a hang, an abort or a multi-GB allocation. (A test of the `mnc` crate, like `tests/cli/`,
//! so that `CARGO_BIN_EXE_mnc` points at the built binary; see compiler/Cargo.toml.)

use mnc_ir::Tensor;
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension::Value as DimValue, Dimension};
use onnx_protobuf::type_proto::{Tensor as TypeTensor, Value as TypeValue};
use onnx_protobuf::{
    AttributeProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mnc"))
        .args(args)
        .output()
        .expect("mnc runs")
}

/// Exit code 1, one line on stderr containing every needle, no panic.
fn assert_refused(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr does not say '{n}': {err}");
    }
    // Each part of the message once (a typed error's source is not repeated).
    let parts: Vec<&str> = err.trim_end().split(": ").collect();
    for (k, p) in parts.iter().enumerate().skip(1) {
        assert!(
            !parts[..k].contains(p) || p.len() < 12,
            "'{p}' repeated in: {err}"
        );
    }
}

fn assert_ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "stderr: {err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for &d in dims {
        let mut dim = Dimension::new();
        dim.value = Some(DimValue::DimValue(d));
        shape.dim.push(dim);
    }
    let mut tt = TypeTensor::new();
    tt.elem_type = DataType::FLOAT as i32;
    tt.shape = Some(shape).into();
    let mut tp = TypeProto::new();
    tp.value = Some(TypeValue::TensorType(tt));
    let mut vi = ValueInfoProto::new();
    vi.name = name.into();
    vi.type_ = Some(tp).into();
    vi
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

fn int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

/// A one-node model `y = op(x[, w])` (opset 13) written to `dir/name`; `w` is an
/// initializer of ones.
fn one_node_model(
    dir: &Path,
    name: &str,
    op: &str,
    x: &[i64],
    w: Option<&[i64]>,
    attrs: Vec<AttributeProto>,
) -> PathBuf {
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut o = OperatorSetIdProto::new();
    o.version = 13;
    m.opset_import.push(o);
    let g = m.graph.mut_or_insert_default();
    g.name = "hostile".into();
    g.input.push(value_info("x", x));
    let mut n = NodeProto::new();
    n.name = "victim".into();
    n.op_type = op.into();
    n.input.push("x".into());
    if let Some(ws) = w {
        let mut t = TensorProto::new();
        t.name = "w".into();
        t.dims = ws.to_vec();
        t.data_type = DataType::FLOAT as i32;
        t.float_data = vec![1.0; ws.iter().product::<i64>() as usize];
        g.initializer.push(t);
        n.input.push("w".into());
    }
    n.output.push("y".into());
    n.attribute = attrs;
    g.node.push(n);
    let mut out = ValueInfoProto::new();
    out.name = "y".into();
    g.output.push(out);
    let p = dir.join(name);
    std::fs::write(&p, m.write_to_bytes().unwrap()).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn hostile_conv_and_pool_geometry() {
    let d = mnc_tests::tmp_dir("cli-hostile-geometry");
    // The depthwise 1x1 conv on a 1x1 input with stride 2^62 (and an exporter's
    // stride-2 1x1 conv on a 1x1 map): one window either way, canonicalized at import, and
    // the result is the input times the weight (ones).
    let x = d.join("x.npy");
    let xv: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
    mnc::io::write_npy(&x, &Tensor::from_f32(vec![1, 8, 1, 1], xv.clone()).unwrap()).unwrap();
    for (name, strides) in [("s62.onnx", [1, 1i64 << 62]), ("s2.onnx", [2, 2])] {
        let m = one_node_model(
            &d,
            name,
            "Conv",
            &[1, 8, 1, 1],
            Some(&[8, 1, 1, 1]),
            vec![int("group", 8), ints("strides", &strides)],
        );
        let y = d.join("y.npy");
        assert_ok(&mnc(&["run", s(&m), "--input", s(&x), "--output", s(&y)]));
        let got = mnc::io::read_npy(&y).unwrap();
        assert_eq!(got.shape, vec![1, 8, 1, 1], "{name}");
        assert_eq!(got.as_f32().unwrap(), xv.as_slice(), "{name}");
    }
    // Pads that reach the window; pads past 2^32; a 2^62 pad.
    let cases: [(&str, &[i64], &[i64], &str); 3] = [
        (
            "pad_window.onnx",
            &[1, 1, 4, 4],
            &[0, 5, 0, 0],
            "smaller than the window",
        ),
        (
            "pad_huge.onnx",
            &[1, 1, 4, 4],
            &[0, 0, 0, 1 << 62],
            "exceeds the limit of 2^32",
        ),
        ("pad_ok.onnx", &[1, 1, 4, 4], &[0, 0, 0, 0], ""),
    ];
    for (name, xs, pads, msg) in cases {
        let m = one_node_model(
            &d,
            name,
            "Conv",
            xs,
            Some(&[1, 1, 1, 1]),
            vec![ints("pads", pads)],
        );
        let o = mnc(&["compile", s(&m)]);
        if msg.is_empty() {
            assert_ok(&o);
        } else {
            assert_refused(&o, &[name, "victim", msg]);
        }
    }
    // The issue's ~200-byte model: MaxPool 4096x4096 (16.7M taps the old backend unrolled).
    let m = one_node_model(
        &d,
        "pool4096.onnx",
        "MaxPool",
        &[1, 1, 4096, 4096],
        None,
        vec![ints("kernel_shape", &[4096, 4096])],
    );
    assert!(std::fs::metadata(&m).unwrap().len() < 256);
    assert_refused(
        &mnc(&["compile", s(&m)]),
        &["pool4096.onnx", "victim", "256x256"],
    );
    // A 74 KB model whose im2col scratch would be 18 GiB (3x3 conv over 2048 channels of
    // 512x512): refused at compile time, before any arena exists.
    let m = one_node_model(
        &d,
        "im2col.onnx",
        "Conv",
        &[1, 2048, 512, 512],
        Some(&[1, 2048, 3, 3]),
        vec![ints("pads", &[1, 1, 1, 1])],
    );
    assert_refused(
        &mnc(&["compile", s(&m)]),
        &["im2col.onnx", "victim", "16 GiB arena limit"],
    );
    // A 64x64 window is allowed: the reference kernel runs it, shown as a fallback.
    let m = one_node_model(
        &d,
        "pool64.onnx",
        "MaxPool",
        &[1, 1, 64, 64],
        None,
        vec![ints("kernel_shape", &[64, 64])],
    );
    let out = assert_ok(&mnc(&["compile", s(&m)]));
    assert!(out.contains("1 fallback op(s)"), "{out}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn hostile_images() {
    let d = mnc_tests::tmp_dir("cli-hostile-images");
    let m = one_node_model(
        &d,
        "gap.onnx",
        "GlobalAveragePool",
        &[1, 3, 224, 224],
        None,
        vec![],
    );
    // 1 x 40000: over the decoder's side limit (the old loader resized it to 256 x
    // 10,240,000 pixels: 7.9 GB). 30000 x 2: decodable, but 3,840,000 x 256 once resized.
    let cases = [
        ("tall.png", 1, 40_000, "limit"),
        ("strip.png", 30_000, 2, "aspect ratio"),
    ];
    for (name, w, h, msg) in cases {
        let p = d.join(name);
        image::RgbImage::new(w, h).save(&p).unwrap();
        assert_refused(&mnc(&["run", s(&m), "--image", s(&p)]), &[name, msg]);
    }
    let p = d.join("ok.png");
    image::RgbImage::new(320, 240).save(&p).unwrap();
    assert_ok(&mnc(&["run", s(&m), "--image", s(&p)]));
    std::fs::remove_dir_all(&d).ok();
}
