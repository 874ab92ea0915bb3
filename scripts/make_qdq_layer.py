#!/usr/bin/env python3
"""Writes a one-conv QDQ ONNX model, to time a single int8 layer with `mnc bench --profile`.

    .venv/bin/python scripts/make_qdq_layer.py exp16.onnx --ci 16 --co 96 --hw 112
    .venv/bin/python scripts/make_qdq_layer.py proj144.onnx --ci 144 --co 24 --hw 56 --no-relu6
    .venv/bin/python scripts/make_qdq_layer.py dw144.onnx --ci 144 --co 144 --hw 56 --k 3 --group 144
    target/release/mnc bench exp16.onnx --threads 1 --iters 2000 --profile   # the QConv row

The graph: QuantizeLinear -> DequantizeLinear on the f32 input (scale 0.05, zero point 10),
int8 weights per output channel (seeded random, zero points 0) through DequantizeLinear, the
Conv (`k x k`, stride, padding `k // 2`, groups) with a float bias, an optional Clip(0, 6),
then QuantizeLinear -> DequantizeLinear (scale 0.03, zero point 0): mnc folds it into one
`QConv`, as it does the layers of onnxruntime's `quantize_static` models. Used for the
per-layer figures of docs/BENCHMARKS.md (session 16).
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def model(ci, co, hw, k=1, stride=1, group=1, relu6=True, seed=0):
    rng = np.random.default_rng(seed)
    inits = []

    def const(name, arr):
        inits.append(numpy_helper.from_array(arr, name))
        return name

    xs, xz = const("xs", np.array(0.05, np.float32)), const("xz", np.array(10, np.uint8))
    w = rng.integers(-127, 128, (co, ci // group, k, k)).astype(np.int8)
    ws = const("ws", rng.random(co).astype(np.float32) * 0.01 + 0.001)
    wz = const("wz", np.zeros(co, np.int8))
    b = const("b", (rng.standard_normal(co) * 0.1).astype(np.float32))
    ys, yz = const("ys", np.array(0.03, np.float32)), const("yz", np.array(0, np.uint8))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", xs, xz], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", xs, xz], ["xd"]),
        helper.make_node("DequantizeLinear", [const("wq", w), ws, wz], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", b], ["c"], kernel_shape=[k, k],
                         strides=[stride, stride], pads=[k // 2] * 4, group=group),
    ]
    last = "c"
    if relu6:
        lo, hi = const("lo", np.array(0, np.float32)), const("hi", np.array(6, np.float32))
        nodes.append(helper.make_node("Clip", ["c", lo, hi], ["r"]))
        last = "r"
    nodes += [
        helper.make_node("QuantizeLinear", [last, ys, yz], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", ys, yz], ["y"]),
    ]
    oh = (hw + 2 * (k // 2) - k) // stride + 1
    g = helper.make_graph(nodes, "qdq_layer",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, ci, hw, hw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, co, oh, oh])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--ci", type=int, required=True)
    ap.add_argument("--co", type=int, required=True)
    ap.add_argument("--hw", type=int, required=True, help="input height = width")
    ap.add_argument("--k", type=int, default=1, help="window (k x k)")
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--group", type=int, default=1)
    ap.add_argument("--no-relu6", action="store_true", help="no Clip(0, 6) (a projection)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    onnx.save(model(a.ci, a.co, a.hw, a.k, a.stride, a.group, not a.no_relu6, a.seed), a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
