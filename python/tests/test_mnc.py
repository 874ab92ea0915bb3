"""Tests of the mnc Python package (run by .ci/run after `pip install ./python`).

The committed fixtures (tests/fixtures/) carry onnxruntime's output for a fixed input; the
`mnc` CLI binary (built with `cargo build -p mnc`) is the reference for bit-identical output.
"""

import json
import os
import pathlib
import subprocess
import threading
import time

import numpy as np
import pytest

import mnc

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
MNV2 = FIXTURES / "mnv2_w035_op13"
MNV3 = FIXTURES / "mnv3s_w035_b3_op17"


@pytest.fixture(scope="session")
def cli():
    """The mnc CLI binary of this checkout (built if needed; a no-op after `cargo test`)."""
    subprocess.run(["cargo", "build", "-q", "-p", "mnc", "--bin", "mnc"], cwd=ROOT, check=True)
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                          cwd=ROOT, check=True, capture_output=True, text=True).stdout
    exe = pathlib.Path(json.loads(meta)["target_directory"]) / "debug" / "mnc"
    assert exe.exists(), exe
    return exe


def fixture_io(d):
    return np.load(d / "input.npy"), np.load(d / "output.npy")


def close(y, y_ref, tol):
    """Per element: |y - y_ref| <= tol * max|y_ref|."""
    bound = tol * float(np.max(np.abs(y_ref)))
    err = float(np.max(np.abs(y - y_ref)))
    assert err <= bound, f"max error {err} > {bound}"


def test_fixture_matches_onnxruntime_on_every_host_target():
    x, y_ort = fixture_io(MNV2)
    for target in mnc.host_targets():
        m = mnc.compile(MNV2 / "model.onnx", target=target)
        (y,) = m.run(x)
        assert y.dtype == np.float32 and y.shape == y_ort.shape
        close(y, y_ort, 1e-4)


def test_output_is_bit_identical_to_the_cli(cli, tmp_path):
    for d in (MNV2, MNV3):
        x, _ = fixture_io(d)
        for threads in (1, 2):
            out = tmp_path / f"{d.name}-{threads}.npy"
            subprocess.run(
                [cli, "run", d / "model.onnx", "--input", d / "input.npy", "-o", out,
                 "--target", "host", "--threads", str(threads)],
                check=True, capture_output=True,
            )
            (y,) = mnc.compile(str(d / "model.onnx"), threads=threads).run(x)
            assert np.array_equal(y, np.load(out)), (d.name, threads)


def test_model_sources_agree():
    path = MNV2 / "model.onnx"
    x, _ = fixture_io(MNV2)
    ys = [mnc.compile(src, threads=1).run(x)[0]
          for src in (str(path), path, path.read_bytes())]
    onnx = pytest.importorskip("onnx")
    ys.append(mnc.compile(onnx.load(str(path)), threads=1).run(x)[0])
    for y in ys[1:]:
        assert np.array_equal(ys[0], y)


def test_nchw_input_takes_a_channels_last_model_channels_first():
    """A tiny NHWC model (input transposed to NCHW before a conv, as tf2onnx writes):
    `nchw_input=True` takes NCHW data, gives the same output and leaves no transpose."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["xt", "w"], ["y"], pads=[1, 1, 1, 1]),
    ]
    g = helper.make_graph(
        nodes, "nhwc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 6, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 6])],
        [w],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    x = rng.standard_normal((1, 5, 6, 3)).astype(np.float32)
    want = mnc.compile(model, threads=1).run(x)[0]
    m = mnc.compile(model, threads=1, nchw_input=True)
    assert m.inputs[0].shape == [1, 3, 5, 6]
    assert "Transpose" not in m.report()["ops"]
    got = m.run(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))[0]
    close(got, want, 1e-6)


def test_zoo_model_and_zoo_bytes():
    assert "mobilenet_v2" in mnc.zoo_names()
    m = mnc.compile("zoo:mobilenet_v3_small", batch=2)
    assert m.batch == 2 and m.inputs[0].shape == [2, 3, 224, 224]
    assert m.outputs[0].shape == [2, 1000] and m.outputs[0].dtype == "float32"
    b = mnc.zoo("mobilenet_v3_small", num_classes=7, resolution=64)
    assert isinstance(b, bytes)
    m2 = mnc.compile(b)
    assert m2.inputs[0].shape == [1, 3, 64, 64] and m2.outputs[0].shape == [1, 7]
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    close(m2.run(x)[0], mnc.compile(b, target="reference").run(x)[0], 1e-4)


def test_inputs_by_position_dict_and_keyword():
    m = mnc.compile(MNV2 / "model.onnx", threads=1)
    x, _ = fixture_io(MNV2)
    name = m.inputs[0].name
    assert name == "input"
    (a,) = m.run(x)
    (b,) = m.run({name: x})
    (c,) = m.run(**{name: x})
    (d,) = m(x)
    for y in (b, c, d):
        assert np.array_equal(a, y)


def test_non_contiguous_inputs_are_read_in_logical_order():
    m = mnc.compile(MNV2 / "model.onnx", threads=1)
    x, _ = fixture_io(MNV2)
    (y,) = m.run(x)
    fortran = np.asfortranarray(x)
    assert not fortran.flags.c_contiguous
    assert np.array_equal(m.run(fortran)[0], y)
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), np.float32)
    wide[..., ::2] = x
    strided = wide[..., ::2]
    assert not strided.flags.c_contiguous
    assert np.array_equal(m.run(strided)[0], y)
    # A float32 field of a packed record array: byte strides that are not multiples of 4.
    rec = np.zeros(x.shape, dtype=np.dtype([("a", "<f4"), ("b", "<i2")], align=False))
    rec["a"] = x
    assert rec["a"].strides[-1] == 6
    assert np.array_equal(m.run(rec["a"])[0], y)
    # A misaligned but C-contiguous buffer.
    buf = np.zeros(x.size * 4 + 1, np.uint8)
    mis = np.frombuffer(buf.data, np.float32, count=x.size, offset=1).reshape(x.shape)
    assert mis.flags.c_contiguous and not mis.flags.aligned
    mis[...] = x
    assert np.array_equal(m.run(mis)[0], y)


def test_bad_inputs_raise_input_error():
    m = mnc.compile(MNV2 / "model.onnx", threads=1)
    x, _ = fixture_io(MNV2)
    with pytest.raises(mnc.InputError, match="float32"):
        m.run(x.astype(np.float64))
    with pytest.raises(ValueError, match="expected shape"):
        m.run(x[:, :2])
    with pytest.raises(mnc.InputError, match="1 input"):
        m.run(x, x)
    with pytest.raises(mnc.InputError, match="missing input 'input'"):
        m.run({"nope": x})
    with pytest.raises(mnc.InputError, match="float32"):
        m.run([1.0, 2.0])
    with pytest.raises(mnc.InputError, match=">f4"):
        m.run(x.astype(">f4"))
    with pytest.raises(mnc.InputError, match="unknown input"):
        m.run({"input": x, "extra": x})
    with pytest.raises(mnc.InputError, match="not both"):
        m.run(x, input=x)
    with pytest.raises(mnc.InputError, match="iters"):
        m.bench(iters=0)
    with pytest.raises(mnc.InputError, match="target"):
        mnc.compile("zoo:mobilenet_v2", target="riscv")
    with pytest.raises(mnc.InputError, match="model must be"):
        mnc.compile(42)


def test_errors_are_typed_and_carry_the_cli_message(cli, tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(mnc.ModelError) as e:
        mnc.compile(missing)
    r = subprocess.run([cli, "run", missing, "--input", MNV2 / "input.npy"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == f"mnc: error: {e.value}"
    with pytest.raises(mnc.ModelError, match="zoo"):
        mnc.compile("zoo:resnet9000")
    with pytest.raises(mnc.ModelError):
        mnc.compile(b"not an onnx model")
    bad = tmp_path / "bad.mnc"
    bad.write_bytes(b"MNC\x00ART\n" + b"\x00" * 10)
    with pytest.raises(mnc.ModelError):
        mnc.load(bad)
    with pytest.raises(mnc.CompileError, match="allow-tf32"):
        mnc.compile("zoo:mobilenet_v2", allow_tf32=True)
    assert issubclass(mnc.RunError, mnc.Error)


def test_report():
    m = mnc.compile(MNV2 / "model.onnx")
    r = m.report()
    assert r["target"] == mnc.host_target()
    assert r["nodes_imported"] > r["nodes_optimized"] > 0
    assert r["changes_by_pass"]["act-fusion"] > 0
    assert sum(v for k, v in r["ops"].items() if k.startswith("Conv")) == 52
    assert r["codegen"]["fallbacks"] == 0 and r["codegen"]["code_bytes"] > 0
    assert r["mult_adds"] > 0 and r["times"]["passes_ms"] >= 0
    assert "compiled for target" in m.report_text()
    assert json.dumps(r)


def test_report_text_is_what_mnc_compile_prints(cli):
    path = str(MNV2 / "model.onnx")
    text = mnc.compile(path).report_text()
    out = subprocess.run([cli, "compile", path], check=True, capture_output=True,
                         text=True).stdout

    def strip(t):  # phase times differ from run to run
        return [line for line in t.splitlines() if not line.startswith("time: ")]

    assert strip(text) == strip(out)
    assert len(strip(text)) >= 5


def test_save_and_load_round_trip(cli, tmp_path):
    x, _ = fixture_io(MNV2)
    m = mnc.compile(MNV2 / "model.onnx", threads=1)
    (y,) = m.run(x)
    art = tmp_path / "m.mnc"
    m.save(art)
    m2 = mnc.load(art, threads=1)
    assert (m2.target, m2.batch) == (m.target, m.batch)
    assert np.array_equal(m2.run(x)[0], y)
    # The CLI runs the artifact written from Python, bit for bit.
    out = tmp_path / "y.npy"
    subprocess.run([cli, "run", art, "--input", MNV2 / "input.npy", "-o", out,
                    "--target", m.target, "--threads", "1"], check=True, capture_output=True)
    assert np.array_equal(np.load(out), y)
    assert mnc.compile(str(art), target=m.target, threads=1).run(x)[0].tobytes() == y.tobytes()


def test_cost_report_seed_figures():
    onnx_bytes = mnc.zoo("efficientnet_b0", num_classes=3, keep_bn=True)
    r = mnc.cost_report(onnx_bytes, batch=32, freeze=["features"])
    assert r["total_params"] == 4_011_391
    assert r["trainable_params"] == 3_843
    assert r["non_trainable_params"] == 4_007_548
    assert round(r["total_mult_adds"] / 1e9, 2) == 12.31
    assert round(r["estimated_total_size_mb"], 2) == 3487.41
    layers = r["layers"]
    assert isinstance(layers, list) and all(isinstance(row, dict) for row in layers)
    assert sum(row["params"] for row in layers) == r["total_params"]


def test_cost_report_equals_the_cli_json(cli):
    for stage in ("imported", "optimized"):
        py = mnc.cost_report(str(MNV2 / "model.onnx"), freeze=["features"], stage=stage)
        out = subprocess.run(
            [cli, "cost-report", MNV2 / "model.onnx", "--freeze", "features",
             "--stage", stage, "--format", "json"],
            check=True, capture_output=True, text=True,
        ).stdout
        assert py == json.loads(out), stage
    with pytest.raises(mnc.InputError, match="stage"):
        mnc.cost_report("zoo:mobilenet_v2", stage="final")


def test_bench_has_the_cli_json_fields(cli):
    r = mnc.bench("zoo:mobilenet_v3_small", iters=3, warmup=1, threads=1, profile=True)
    out = subprocess.run(
        [cli, "bench", "zoo:mobilenet_v3_small", "--iters", "3", "--warmup", "1",
         "--threads", "1", "--profile", "--format", "json"],
        check=True, capture_output=True, text=True,
    ).stdout
    c = json.loads(out)
    assert set(r) == set(c)
    assert r["iters"] == 3 and r["median_ms"] > 0 and r["mult_adds"] == c["mult_adds"]
    assert len(r["profile"]) == len(c["profile"]) > 0
    m = mnc.compile("zoo:mobilenet_v3_small", threads=1)
    assert set(m.bench(iters=2, warmup=0)) == set(c)


def test_threads_share_one_model():
    m = mnc.compile(MNV3 / "model.onnx", threads=2)
    x, _ = fixture_io(MNV3)
    (expected,) = m.run(x)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(m.run(x)[0])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 20
    for y in results:
        assert np.array_equal(y, expected)


def test_the_gil_is_released_while_running():
    m = mnc.compile("zoo:mobilenet_v3_small", threads=1)
    span = {}

    def work():
        span["t0"] = time.perf_counter()
        m.bench(iters=20, warmup=0)
        span["t1"] = time.perf_counter()

    t = threading.Thread(target=work)
    ticks = []
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
    t.join()
    t0, t1 = span["t0"], span["t1"]
    middle = [x for x in ticks if t0 + 0.25 * (t1 - t0) < x < t0 + 0.75 * (t1 - t0)]
    # Holding the GIL for the whole call would leave the main thread no tick in between.
    assert len(middle) > 10, (len(middle), t1 - t0)


def test_module_reads_well():
    doc = mnc.__doc__
    assert "compile" in doc and "cost_report" in doc
    for f in (mnc.compile, mnc.load, mnc.bench, mnc.cost_report, mnc.zoo,
              mnc.CompiledModel.run, mnc.CompiledModel.report):
        assert f.__doc__ and len(f.__doc__) > 40, f
    assert mnc.__version__
    assert repr(mnc.compile("zoo:mobilenet_v3_small").inputs[0]).startswith("TensorInfo(")
    stubs = pathlib.Path(mnc.__file__).with_name("_mnc.pyi")
    assert stubs.exists() and pathlib.Path(mnc.__file__).with_name("py.typed").exists()
