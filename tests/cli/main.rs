//! End-to-end tests of the `mnc` binary: exit codes and one-line errors on bad input, and
//! the commands a user types. (Compiled as an integration test of the `mnc` crate, so that
//! `CARGO_BIN_EXE_mnc` points at the built binary; see compiler/Cargo.toml.)

use mnc_tests::{assert_close, fixtures_dir, repo_root};
use std::path::PathBuf;
use std::process::{Command, Output};

fn mnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mnc"))
        .args(args)
        .output()
        .expect("mnc runs")
}

fn tmpdir(tag: &str) -> PathBuf {
    mnc_tests::tmp_dir(&format!("cli-{tag}"))
}

/// Asserts a clean failure: exit code 1 or 2, one line on stderr naming `needle`, no panic.
fn assert_clean_failure(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    let code = o.status.code();
    assert!(
        matches!(code, Some(1) | Some(2)),
        "exit code {code:?}, stderr: {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one line, got: {err}"
    );
    assert!(
        err.contains(needle),
        "stderr does not name '{needle}': {err}"
    );
}

fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

#[test]
fn bad_model_files_fail_cleanly() {
    let d = tmpdir("bad");
    let x = fixture("mnv2_w035_op13").join("input.npy");
    let x = x.to_str().unwrap();
    let full = std::fs::read(fixture("mnv2_w035_op13").join("model.onnx")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.onnx", vec![]),
        (
            "random.onnx",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
        ("truncated.onnx", full[..full.len() / 3].to_vec()),
        // A valid protobuf message that is not a model: one varint field.
        ("not_a_model.onnx", vec![0x08, 0x01]),
    ];
    for (name, bytes) in cases {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        let o = mnc(&["run", p.to_str().unwrap(), "--input", x]);
        assert_clean_failure(&o, name);
    }
    let o = mnc(&[
        "run",
        d.join("missing.onnx").to_str().unwrap(),
        "--input",
        x,
    ]);
    assert_clean_failure(&o, "missing.onnx");
}

#[test]
fn bad_inputs_fail_cleanly() {
    let d = tmpdir("npy");
    let model = fixture("mnv2_w035_op13").join("model.onnx");
    let model = model.to_str().unwrap();
    let corrupt = d.join("corrupt.npy");
    std::fs::write(&corrupt, b"\x93NUMPY\x01\x00garbage").unwrap();
    assert_clean_failure(
        &mnc(&["run", model, "--input", corrupt.to_str().unwrap()]),
        "corrupt.npy",
    );
    // A valid .npy of the wrong shape: the input of another fixture.
    let other = fixture("mnv3s_w035_b3_op17").join("input.npy");
    assert_clean_failure(
        &mnc(&["run", model, "--input", other.to_str().unwrap()]),
        "input",
    );
    let o = mnc(&[
        "run",
        model,
        "--input",
        other.to_str().unwrap(),
        "--target",
        "nonsense",
    ]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn run_writes_the_output_npy() {
    let d = tmpdir("out");
    let f = fixture("effnet_w025_op11");
    let out = d.join("y.npy");
    let o = mnc(&[
        "run",
        f.join("model.onnx").to_str().unwrap(),
        "--input",
        f.join("input.npy").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let y = mnc::io::read_npy(&out).unwrap();
    let y_ref = mnc::io::read_npy(&f.join("output.npy")).unwrap();
    assert_eq!(y.shape, y_ref.shape);
    assert_close(
        "mnc run",
        y.as_f32().unwrap(),
        y_ref.as_f32().unwrap(),
        1e-4,
    );
}

#[test]
fn run_an_image_prints_top5_class_names() {
    let img = repo_root().join("compiler/data/cat.jpg");
    let o = mnc(&["run", "zoo:mobilenet_v2", "--image", img.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("output [1, 1000]"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("  ")).count(),
        5,
        "{out}"
    );
    // Every top-5 line ends with an ImageNet class name.
    let names = mnc::io::imagenet_classes();
    for l in out.lines().filter(|l| l.starts_with("  ")) {
        let idx: usize = l.split_whitespace().next().unwrap().parse().unwrap();
        assert!(l.trim_end().ends_with(names[idx]), "{l}");
    }
}

/// `--emit onnx` writes the graph after cleanup and BN folding as standard ONNX: onnxruntime
/// loads it, it has no BatchNormalization/Identity/Dropout left, and its output matches the
/// input model's (onnxruntime's reference output of the fixture) to 1e-4 * max|y|.
#[test]
fn emit_onnx_is_loadable_and_equivalent() {
    let Some(py) = mnc_tests::python_with_onnxruntime("emit_onnx_is_loadable_and_equivalent")
    else {
        return;
    };
    let d = tmpdir("emit");
    for fx in [
        "mnv2_w035_bn_op13",
        "effnet_w025_op11",
        "tf_effb0_same_op13",
    ] {
        let f = fixture(fx);
        let out = d.join(format!("{fx}.onnx"));
        let o = mnc(&[
            "compile",
            f.join("model.onnx").to_str().unwrap(),
            "--emit",
            "onnx",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "{fx}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let script = r#"
import sys, onnx, numpy as np, onnxruntime as ort
m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True)
bad = [n.op_type for n in m.graph.node if n.op_type in ("BatchNormalization", "Identity", "Dropout")]
assert not bad, f"left in the graph: {bad}"
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2]); r = np.load(sys.argv[3])
y = s.run(None, {s.get_inputs()[0].name: x})[0]
err, scale = float(np.abs(y - r).max()), float(np.abs(r).max())
assert err <= 1e-4 * scale, f"max err {err} > 1e-4 * {scale}"
print(f"ok err={err:.3e} scale={scale:.3e}")
"#;
        let o = Command::new(&py)
            .arg("-c")
            .arg(script)
            .arg(&out)
            .arg(f.join("input.npy"))
            .arg(f.join("output.npy"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{fx}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn compile_reports_and_emits_ir() {
    let f = fixture("mnv2_w035_bn_op13").join("model.onnx");
    let o = mnc(&[
        "compile",
        f.to_str().unwrap(),
        "-v",
        "--emit",
        "ir",
        "--print-after",
        "bn-fold",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(out.starts_with("# pipeline: optimize"), "{out}");
    assert!(
        !out.contains("= BatchNorm["),
        "BatchNorm op left after the pipeline"
    );
    assert!(out.contains("= Conv["), "{out}");
    assert!(err.contains("# IR after bn-fold"), "{err}");
    assert!(!err.contains("activation arena:"), "{err}");
    assert!(err.contains("bn-fold"), "{err}");
    if mnc_targets::Target::host_default().is_jit() {
        // The default target is the host: the report covers code generation too, and -v the
        // arena plan the CPU backend runs with (the passes plan none).
        assert!(err.contains("codegen: "), "{err}");
        assert!(err.contains("0 fallback op(s)"), "{err}");
        assert!(err.contains(", codegen "), "{err}");
        assert!(err.contains("memory: arena "), "{err}");
        assert!(err.contains("(the CPU backend's arena)"), "{err}");
    } else {
        assert!(!err.contains("memory: arena"), "{err}");
    }
    // CLIF of the x86-64 JIT and PTX of the CUDA target: both need no special hardware.
    let o = mnc(&[
        "compile",
        f.to_str().unwrap(),
        "--emit",
        "clif",
        "--target",
        "x86_64",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let clif = String::from_utf8_lossy(&o.stdout);
    assert!(
        clif.contains("function ") && clif.contains("(Conv)"),
        "{clif}"
    );
    let d = tmpdir("ptx");
    let o = mnc(&[
        "compile",
        f.to_str().unwrap(),
        "--emit",
        "ptx",
        "--target",
        "cuda-sm90",
        "-o",
        d.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ptx = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.path().extension().is_some_and(|x| x == "ptx"));
    let ptx = std::fs::read_to_string(ptx.expect("a .ptx file").path()).unwrap();
    assert!(
        ptx.contains(".target sm_90") && ptx.contains(".entry"),
        "{}",
        &ptx[..ptx.len().min(400)]
    );
    let o = mnc(&[
        "compile",
        f.to_str().unwrap(),
        "--emit",
        "ptx",
        "--target",
        "x86_64",
        "-o",
        d.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "--emit ptx");
    let o = mnc(&[
        "compile",
        f.to_str().unwrap(),
        "--print-after",
        "no-such-pass",
    ]);
    assert_clean_failure(&o, "no-such-pass");
}

#[test]
fn bench_reports_latency_and_a_per_op_profile() {
    let f = fixture("mnv2_trunc_dynbatch_op10").join("model.onnx");
    let o = mnc(&[
        "bench",
        f.to_str().unwrap(),
        "--iters",
        "3",
        "--warmup",
        "1",
        "--profile",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("bench --format json prints JSON");
    for key in [
        "median_ms",
        "min_ms",
        "p90_ms",
        "throughput_per_s",
        "gflops",
        "mult_adds",
    ] {
        assert!(j[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {j}");
    }
    let ops = j["profile"].as_array().expect("a per-op profile");
    assert!(
        ops.iter()
            .any(|r| r["op"] == "Conv" && r["mean_ms"].as_f64().is_some()),
        "{j}"
    );
    // The roofline: measured roofs, and every op's traffic, intensity and bound.
    for key in ["peak_gflops", "bandwidth_gbs", "cache_bandwidth_gbs"] {
        assert!(j[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {j}");
    }
    for r in ops {
        assert!(r["bytes"].as_u64().is_some_and(|b| b > 0), "{r}");
        for key in ["gbytes_per_s", "arithmetic_intensity", "roof_gflops"] {
            assert!(r[key].as_f64().is_some(), "{key}: {r}");
        }
        assert!(r["bound"] == "memory" || r["bound"] == "compute", "{r}");
    }
    // The reference executor has no per-op profile.
    let o = mnc(&[
        "bench",
        f.to_str().unwrap(),
        "--target",
        "reference",
        "--profile",
    ]);
    assert_clean_failure(&o, "--profile");
}
/// `mnc compile -o X.mnc` writes an artifact; `run` and `bench` take it and give the ONNX
/// model's results (the reference executor and the host's JIT target).
#[test]
fn compiled_artifact_runs_and_benches() {
    let d = tmpdir("mnc-artifact");
    let f = fixture("effnet_w025_op11");
    let x = f.join("input.npy");
    let y_ref = mnc::io::read_npy(&f.join("output.npy")).unwrap();
    for target in ["reference", "host"] {
        let art = d.join(format!("m-{target}.mnc"));
        let o = mnc(&[
            "compile",
            f.join("model.onnx").to_str().unwrap(),
            "--target",
            target,
            "-o",
            art.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            mnc::artifact::is_artifact(&art),
            "{target}: no artifact written"
        );
        let out = d.join(format!("y-{target}.npy"));
        let o = mnc(&[
            "run",
            art.to_str().unwrap(),
            "--target",
            target,
            "--input",
            x.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let y = mnc::io::read_npy(&out).unwrap();
        assert_eq!(y.shape, y_ref.shape);
        assert_close(target, y.as_f32().unwrap(), y_ref.as_f32().unwrap(), 1e-4);
        let o = mnc(&[
            "bench",
            art.to_str().unwrap(),
            "--target",
            target,
            "--iters",
            "2",
            "--warmup",
            "0",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // An artifact runs only on the target it was compiled for.
    let art = d.join("m-reference.mnc");
    let o = mnc(&[
        "run",
        art.to_str().unwrap(),
        "--target",
        "x86_64",
        "--input",
        x.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "compiled for target reference");
}

/// Corrupt, truncated, foreign and wrong-version artifacts fail with one clear line.
#[test]
fn bad_artifacts_fail_cleanly() {
    let d = tmpdir("bad-mnc");
    let f = fixture("mnv2_w035_op13");
    let x = f.join("input.npy");
    let good = d.join("good.mnc");
    let o = mnc(&[
        "compile",
        f.join("model.onnx").to_str().unwrap(),
        "--target",
        "reference",
        "-o",
        good.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&good).unwrap();
    let mut flipped = bytes.clone();
    let mid = bytes.len() / 2;
    flipped[mid] ^= 1;
    let mut old = bytes.clone();
    old[8..12].copy_from_slice(&0u32.to_le_bytes());
    let onnx = std::fs::read(f.join("model.onnx")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "flipped",
            flipped,
            "corrupt mnc artifact: checksum mismatch",
        ),
        (
            "truncated",
            bytes[..bytes.len() - 1000].to_vec(),
            "truncated mnc artifact",
        ),
        ("onnx", onnx, "not an mnc artifact"),
        (
            "random",
            (0..4096u32).map(|i| (i * 131 % 251) as u8).collect(),
            "not an mnc artifact",
        ),
        ("old", old, "format version 0 is not supported"),
    ];
    for (name, data, needle) in cases {
        let p = d.join(format!("{name}.mnc"));
        std::fs::write(&p, data).unwrap();
        for cmd in ["run", "bench"] {
            let mut args = vec![cmd, p.to_str().unwrap(), "--target", "reference"];
            if cmd == "run" {
                args.extend(["--input", x.to_str().unwrap()]);
            } else {
                args.extend(["--iters", "1"]);
            }
            let o = mnc(&args);
            assert_clean_failure(&o, needle);
            assert!(
                String::from_utf8_lossy(&o.stderr).contains(&format!("{name}.mnc")),
                "{name}: the error does not name the file"
            );
        }
    }
}

/// Options that would be silently dropped are refused instead: `compile --allow-tf32`
/// without `--emit ptx` (neither the report nor the artifact depends on it) and
/// `zoo NAME --format` (the format applies to `zoo list` only).
#[test]
fn options_that_would_be_dropped_are_refused() {
    let o = mnc(&[
        "compile",
        "zoo:mobilenet_v3_small",
        "--target",
        "cuda",
        "--allow-tf32",
    ]);
    assert_clean_failure(&o, "--emit ptx");
    let o = mnc(&[
        "compile",
        "zoo:mobilenet_v3_small",
        "--target",
        "cuda-sm80",
        "--allow-tf32",
        "-o",
        "x.mnc",
    ]);
    assert_clean_failure(&o, "--emit ptx");
    let out = mnc_tests::tmp_dir("cli-zoo-format").join("m.onnx");
    let o = mnc(&[
        "zoo",
        "mobilenet_v3_small",
        "--format",
        "markdown",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "zoo list");
    assert!(
        !out.exists(),
        "nothing is written when the command is refused"
    );
    let o = mnc(&["zoo", "list", "--format", "markdown"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `mnc quantize` on the quantization fixture, calibrated on its test input: the QDQ file is
/// written, runs in mnc (reference target), the report prints the per-layer SQNR and the
/// output's top-1 agreement, and `--report-json` has every layer.
#[test]
fn quantize_writes_a_qdq_model_and_reports_sqnr() {
    let d = tmpdir("quantize");
    let f = fixture("quant");
    let out = d.join("int8.onnx");
    let json = d.join("report.json");
    let o = mnc(&[
        "quantize",
        f.join("model_f32.onnx").to_str().unwrap(),
        "--calibrate",
        f.join("input.npy").to_str().unwrap(),
        "--method",
        "percentile",
        "-o",
        out.to_str().unwrap(),
        "--report-json",
        json.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("14 layers") && text.contains("calibration percentile 99.99 on 1 samples"),
        "{text}"
    );
    assert!(
        text.contains("/features/features.0/features.0.0/Conv"),
        "{text}"
    );
    assert!(
        text.contains("output 'output': SQNR") && text.contains("top-1 agreement 1/1"),
        "{text}"
    );
    assert!(text.contains("lowest accumulated SQNR"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["layers"].as_array().unwrap().len(), 14);
    assert_eq!(report["method"], "percentile");
    let y = d.join("y.npy");
    let o = mnc(&[
        "run",
        out.to_str().unwrap(),
        "--target",
        "reference",
        "--input",
        f.join("input.npy").to_str().unwrap(),
        "-o",
        y.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(mnc::io::read_npy(&y).unwrap().shape, vec![1, 10]);
}

#[test]
fn quantize_errors_are_one_line() {
    let d = tmpdir("quantize-bad");
    let f = fixture("quant");
    let model = f.join("model_f32.onnx");
    let out = d.join("q.onnx");
    let bad = d.join("bad.npy");
    mnc::io::write_npy(
        &bad,
        &mnc_ir::Tensor::from_f32(vec![2, 2], vec![0.0; 4]).unwrap(),
    )
    .unwrap();
    for (calib, needle) in [
        (bad.to_str().unwrap(), "does not fit the model input"),
        (d.join("none.npy").to_str().unwrap(), "none.npy"),
    ] {
        let o = mnc(&[
            "quantize",
            model.to_str().unwrap(),
            "--calibrate",
            calib,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_clean_failure(&o, needle);
    }
    let o = mnc(&[
        "quantize",
        d.join("missing.onnx").to_str().unwrap(),
        "--calibrate",
        bad.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "missing.onnx");
}

/// onnxruntime loads and runs the model `mnc quantize` writes, and with the fixture's
/// calibration set (minmax) it is onnxruntime's own quantize_static model: the same scales and
/// zero points (to float rounding) and outputs within a small fraction of a quantization step
/// (both files through onnxruntime's int8 kernels); the model's own arithmetic (QDQ pairs
/// kept, `scripts/check_quantize.py`) keeps every top-1 class of the float model.
#[test]
fn quantize_output_runs_in_onnxruntime_like_quantize_static() {
    let Some(py) = mnc_tests::python_with_onnxruntime(
        "quantize_output_runs_in_onnxruntime_like_quantize_static",
    ) else {
        return;
    };
    let d = tmpdir("quantize-ort");
    let f = fixture("quant");
    let out = d.join("int8.onnx");
    let o = mnc(&[
        "quantize",
        f.join("model_f32.onnx").to_str().unwrap(),
        "--calibrate",
        f.join("calib.npy").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = d.join("check.json");
    let o = Command::new(&py)
        .arg(repo_root().join("scripts/check_quantize.py"))
        .arg(f.join("model_f32.onnx"))
        .arg(&out)
        .arg("--inputs")
        .arg(f.join("calib.npy"))
        .arg("--ort-qdq")
        .arg(f.join("model_qdq_ort.onnx"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["onnx_checker"], "ok", "{r}");
    assert_eq!(r["op_types"], r["ort_op_types"], "{r}");
    let p = &r["params"];
    assert_eq!(p["common"], 92, "{r}");
    assert!(p["max_scale_rel_diff"].as_f64().unwrap() < 2e-6, "{r}");
    assert_eq!(p["max_zero_point_diff"], 0, "{r}");
    assert!(
        r["qdq_vs_ort_qdq"]["max_abs_diff_in_steps"]
            .as_f64()
            .unwrap()
            < 0.01,
        "{r}"
    );
    assert_eq!(r["qdq_vs_float"]["top1_agree"][0], 12, "{r}");
}

/// `mnc quantize` on every committed float fixture (calibrated on its test input): the file
/// is written and the int8 output keeps more than 3 dB SQNR (random weights and one sample:
/// 5-23 dB; quantizing timm's float "same"-padding arithmetic once gave 0 dB); onnxruntime
/// runs every file to the SQNR mnc reports within 1 dB. The opset-10 fixture is refused.
#[test]
fn quantize_every_committed_fixture() {
    let py = mnc_tests::python_with_onnxruntime("quantize_every_committed_fixture");
    let d = tmpdir("quantize-all");
    for f in mnc_tests::fixtures() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let (out, json) = (
            d.join(format!("{name}.onnx")),
            d.join(format!("{name}.json")),
        );
        let o = mnc(&[
            "quantize",
            f.join("model.onnx").to_str().unwrap(),
            "--calibrate",
            f.join("input.npy").to_str().unwrap(),
            "--report-samples",
            "1",
            "--report-json",
            json.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        if name == "mnv2_trunc_dynbatch_op10" {
            assert_clean_failure(&o, "opset 10 cannot be raised to 13");
            continue;
        }
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let db = r["outputs"][0]["sqnr_db"].as_f64().unwrap();
        assert!(db > 3.0, "{name}: output SQNR {db} dB");
        let Some(py) = &py else { continue };
        let o = Command::new(py)
            .arg(repo_root().join("scripts/check_quantize.py"))
            .arg(f.join("model.onnx"))
            .arg(&out)
            .arg("--inputs")
            .arg(f.join("input.npy"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let ort_db = c["qdq_vs_float"]["sqnr_db"].as_f64().unwrap();
        assert!(
            (ort_db - db).abs() < 1.0,
            "{name}: onnxruntime {ort_db} dB, mnc {db} dB"
        );
    }
}
