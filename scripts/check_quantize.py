#!/usr/bin/env python3
"""Checks a QDQ model written by ``mnc quantize`` with onnxruntime.

    check_quantize.py FLOAT.onnx QDQ.onnx --inputs X.npy [--ort-qdq ORT_QDQ.onnx] [--json OUT]

* onnxruntime must load and run QDQ.onnx (``onnx.checker`` must accept it too);
* on every row of ``--inputs`` (one model input, or a stack ``[k, ...]`` of them, run in
  batches of the model's static batch, 1 when it is symbolic) it compares QDQ.onnx with FLOAT.onnx: SQNR in dB, mean |difference|,
  top-1 agreement of an ``[N, C]`` output;
* with ``--ort-qdq`` (onnxruntime's own ``quantize_static`` model of the same float model and
  calibration set), it also compares the two quantized models: the scale and zero point of
  every quantized tensor both have (by initializer name; weights, activations and biases),
  the op counts, and their outputs (SQNR, max |difference| in units of the output's scale).

The quantized models run with onnxruntime's basic graph optimizations, which keep every
QuantizeLinear/DequantizeLinear pair: the QDQ model's defined arithmetic (float ops between
the pairs), the same on every CPU. onnxruntime's full optimizations fuse the pairs into its
int8 kernels, whose ``u8 x s8`` products on x86-64 without VNNI (AVX2 ``vpmaddubsw``) sum
pairs in saturating 16 bits: on such a CPU (the Zen 3 CI machine) its own quantize_static
model of the test fixture kept 7 of 12 top-1 classes (12.9 dB) against 12 of 12 (29.8 dB)
with the pairs kept. Those figures are reported too (``qdq_vs_float_ort_int8``), not judged.
The comparison of the two quantized files (``qdq_vs_ort_qdq``) runs both through the int8
kernels: the same parameters give the same integers there, while the float QDQ arithmetic
turns a 1e-7 relative scale difference into a whole-step rounding flip now and then.

Prints one JSON object (also written to ``--json``); exit status 1 when onnxruntime cannot
load or run the model, 0 otherwise (the caller judges the numbers).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def session(path: str, int8_kernels: bool = False) -> ort.InferenceSession:
    """One-thread session; ``int8_kernels`` turns on the optimizations that fuse QDQ pairs
    into onnxruntime's integer kernels (off: basic optimizations, the pairs kept)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if int8_kernels
                                   else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run_rows(sess: ort.InferenceSession, xs: np.ndarray) -> np.ndarray:
    """Runs the rows of xs in batches of the model's static batch (1 when symbolic)."""
    inp = sess.get_inputs()[0]
    b = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else 1
    return np.concatenate([sess.run(None, {inp.name: xs[i : i + b]})[0] for i in range(0, xs.shape[0] - b + 1, b)])


def sqnr_db(ref: np.ndarray, y: np.ndarray) -> float | None:
    ref = ref.astype(np.float64)
    noise = float(np.sum((ref - y) ** 2))
    return None if noise == 0 else 10 * float(np.log10(float(np.sum(ref**2)) / noise))


def compare(ref: np.ndarray, y: np.ndarray) -> dict:
    out = {"sqnr_db": sqnr_db(ref, y), "mean_abs_diff": float(np.abs(ref - y).mean())}
    if ref.ndim == 2 and ref.shape[1] > 1:
        agree = int((ref.argmax(1) == y.argmax(1)).sum())
        out["top1_agree"] = [agree, int(ref.shape[0])]
    return out


def params(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
            if t.name.endswith("_scale") or t.name.endswith("_zero_point")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("float_model")
    ap.add_argument("qdq_model")
    ap.add_argument("--inputs", required=True, help=".npy: one input or a stack [k, ...]")
    ap.add_argument("--ort-qdq", help="onnxruntime's quantize_static model of the same float model")
    ap.add_argument("--json", help="also write the result here")
    a = ap.parse_args(argv)

    qdq = onnx.load(a.qdq_model)
    result: dict = {"qdq_model": a.qdq_model, "onnxruntime": ort.__version__}
    try:
        onnx.checker.check_model(qdq)
        result["onnx_checker"] = "ok"
    except Exception as e:  # noqa: BLE001 - reported, not fatal: ORT is the judge below
        result["onnx_checker"] = str(e).splitlines()[0]
    try:
        s_q = session(a.qdq_model)
    except Exception as e:  # noqa: BLE001
        result["error"] = f"onnxruntime cannot load {a.qdq_model}: {e}"
        print(json.dumps(result, indent=1))
        return 1
    s_f = session(a.float_model)
    shape = s_f.get_inputs()[0].shape
    xs = np.load(a.inputs).astype(np.float32)
    if xs.ndim == len(shape) - 1:
        xs = xs[None]
    y_f = run_rows(s_f, xs)
    y_q = run_rows(s_q, xs)
    result["inputs"] = int(xs.shape[0])
    result["qdq_vs_float"] = compare(y_f, y_q)
    y_q8 = run_rows(session(a.qdq_model, int8_kernels=True), xs)
    result["qdq_vs_float_ort_int8"] = compare(y_f, y_q8)
    result["op_types"] = dict(sorted(collections.Counter(n.op_type for n in qdq.graph.node).items()))

    if a.ort_qdq:
        ref = onnx.load(a.ort_qdq)
        result["ort_op_types"] = dict(sorted(collections.Counter(n.op_type for n in ref.graph.node).items()))
        p_m, p_o = params(qdq), params(ref)
        common = sorted(set(p_m) & set(p_o))
        scale_rel, zp_diff = 0.0, 0
        for k in common:
            m, o = p_m[k].astype(np.float64), p_o[k].astype(np.float64)
            if m.shape != o.shape:
                scale_rel = float("inf")
                continue
            if k.endswith("_scale"):
                scale_rel = max(scale_rel, float(np.max(np.abs(m - o) / np.abs(o))))
            else:
                zp_diff = max(zp_diff, int(np.max(np.abs(m - o))))
        result["params"] = {
            "common": len(common),
            "only_mnc": sorted(set(p_m) - set(p_o)),
            "only_ort": sorted(set(p_o) - set(p_m)),
            "max_scale_rel_diff": scale_rel,
            "max_zero_point_diff": zp_diff,
        }
        y_o = run_rows(session(a.ort_qdq), xs)
        out_name = ref.graph.output[0].name
        scale = p_o.get(f"{out_name}_scale")
        result["ort_qdq_vs_float"] = compare(y_f, y_o)
        # The two files through the same integer kernels: equal parameters give equal
        # integers (the float QDQ arithmetic turns a 1e-7 scale difference into a
        # rounding flip of a whole step now and then).
        y_o8 = run_rows(session(a.ort_qdq, int8_kernels=True), xs)
        result["qdq_vs_ort_qdq"] = compare(y_o8, y_q8)
        if scale is not None:
            result["qdq_vs_ort_qdq"]["max_abs_diff_in_steps"] = float(np.abs(y_o8 - y_q8).max() / float(scale))
    print(json.dumps(result, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
