#!/usr/bin/env python3
"""Generate the "other exporters" fixtures: Keras applications converted by tf2onnx (NHWC),
and the classic CNNs of the `onnx` package's light model zoo with random weights.

Every fixture is a folder ``OUT/<name>/`` holding

* ``model.onnx``,
* ``input.npy``  -- a seeded standard-normal float32 input (NHWC for the Keras models),
* ``output.npy`` -- onnxruntime's output for that input (the first graph output),
* ``meta.json``  -- source, exporter, opset, shapes, op histogram, the torchvision
  counterpart (Keras models) and the magnitude of the output.

Keras models (``keras_*``): ``tf.keras.applications.<Model>(weights=None,
classifier_activation=None)``, every BatchNormalization given random affine parameters and
running statistics away from the defaults (gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1),
moving mean ~ N(0, 0.1), moving variance ~ U(0.5, 1.5)), converted with
``tf2onnx.convert.from_keras(..., opset=13)`` with a dynamic batch.

Light zoo models (``zoo_*``): the ``onnx`` package ships ResNet50, SqueezeNet, ShuffleNet,
DenseNet121, Inception v1/v2, VGG19, AlexNet (and ZFNet) with every weight replaced by a
``ConstantOfShape``; this script replaces each of those by a seeded random initializer (He
init for conv/Gemm weights, random BatchNorm statistics) so the outputs mean something, and
adds the input of the final Softmax as a second graph output (the logits are a far more
sensitive check than a saturated softmax).

Usage:
    python scripts/make_exporter_fixtures.py OUT            # the CI set (small Keras inputs)
    python scripts/make_exporter_fixtures.py OUT --full     # Keras at 224x224, alpha 1.0
    python scripts/make_exporter_fixtures.py OUT --only keras_mobilenet_v2 zoo_resnet50
    python scripts/make_exporter_fixtures.py --list

Needs tensorflow-cpu and tf2onnx for the Keras set (scripts/requirements-ci.txt pins them);
numpy, onnx and onnxruntime for both. A development tool only: mnc never depends on Python.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

# (fixture name, tf.keras.applications constructor, kwargs, torchvision counterpart)
KERAS = [
    ("keras_mobilenet_v2", "MobileNetV2", {"alpha": 0.35}, {"alpha": 1.0}, "mobilenet_v2"),
    ("keras_mobilenet_v3_small", "MobileNetV3Small", {"alpha": 0.75}, {"alpha": 1.0}, "mobilenet_v3_small"),
    ("keras_efficientnet_b0", "EfficientNetB0", {}, {}, "efficientnet_b0"),
    ("keras_mobilenet_v3_large", "MobileNetV3Large", {"alpha": 0.75}, {"alpha": 1.0}, "mobilenet_v3_large"),
    ("keras_efficientnet_b3", "EfficientNetB3", {}, {}, "efficientnet_b3"),
]
KERAS_SIZE = {"small": 64, "full": 224}

# (fixture name, file in onnx/backend/test/data/light)
ZOO = [
    ("zoo_resnet50", "light_resnet50.onnx"),
    ("zoo_squeezenet", "light_squeezenet.onnx"),
    ("zoo_shufflenet", "light_shufflenet.onnx"),
    ("zoo_densenet121", "light_densenet121.onnx"),
    ("zoo_inception_v1", "light_inception_v1.onnx"),
    ("zoo_inception_v2", "light_inception_v2.onnx"),
    ("zoo_vgg19", "light_vgg19.onnx"),
    ("zoo_alexnet", "light_bvlc_alexnet.onnx"),
]


def ort_run(model_path: Path, x: np.ndarray) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    # ORT_DISABLE_ALL: onnxruntime's own graph rewrites stay out of the reference.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})


def write(out: Path, name: str, model: onnx.ModelProto, x: np.ndarray, meta: dict) -> None:
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(model)
    onnx.save(model, str(d / "model.onnx"))
    ys = ort_run(d / "model.onnx", x)
    y = np.ascontiguousarray(ys[0], dtype=np.float32)
    if not np.all(np.isfinite(y)):
        raise SystemExit(f"{name}: onnxruntime output is not finite")
    np.save(d / "input.npy", np.ascontiguousarray(x, dtype=np.float32))
    np.save(d / "output.npy", y)
    meta.update(
        name=name,
        opset=max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        input_shape=list(x.shape),
        output_shape=list(y.shape),
        output_max_abs=float(np.abs(y).max()),
        output_std=float(y.std()),
        ops=dict(sorted(Counter(n.op_type for n in model.graph.node).items())),
    )
    (d / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{name}: {len(model.graph.node)} nodes, output {tuple(y.shape)} max|y| {meta['output_max_abs']:.3g}")


def keras_fixture(out: Path, name: str, ctor: str, kw: dict, size: int, tv: str, seed: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf2onnx

    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    m = getattr(tf.keras.applications, ctor)(
        weights=None, input_shape=(size, size, 3), classifier_activation=None, **kw
    )
    n_bn = 0
    for layer in m.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            c = layer.get_weights()[0].shape[0]
            layer.set_weights([
                rng.uniform(0.5, 1.5, c).astype(np.float32),
                rng.normal(0, 0.1, c).astype(np.float32),
                rng.normal(0, 0.1, c).astype(np.float32),
                rng.uniform(0.5, 1.5, c).astype(np.float32),
            ])
            n_bn += 1
    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="input"),)
    model, _ = tf2onnx.convert.from_keras(m, input_signature=spec, opset=13)
    model.producer_name = "tf2onnx"
    x = rng.standard_normal((1, size, size, 3)).astype(np.float32)
    write(out, name, model, x, {
        "source": f"tf.keras.applications.{ctor}(weights=None, input_shape=({size},{size},3), "
                  f"classifier_activation=None, {', '.join(f'{k}={v}' for k, v in kw.items())})",
        "exporter": f"tf2onnx {tf2onnx.__version__} (tensorflow {tf.__version__})",
        "layout": "NHWC",
        "batchnorms_randomized": n_bn,
        "torchvision_counterpart": tv,
    })


def zoo_fixture(out: Path, name: str, file: str, seed: int) -> None:
    src = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / file
    model = onnx.load(str(src))
    g = model.graph
    rng = np.random.default_rng(seed)
    inits = {t.name: t for t in g.initializer}
    # How each ConstantOfShape output is consumed: (op_type, input slot) of its first user.
    use = {}
    for n in g.node:
        for slot, i in enumerate(n.input):
            use.setdefault(i, (n.op_type, slot))
    keep, new_inits = [], []
    for n in g.node:
        if n.op_type != "ConstantOfShape" or n.input[0] not in inits:
            keep.append(n)
            continue
        shape = tuple(int(v) for v in numpy_helper.to_array(inits[n.input[0]]))
        op, slot = use.get(n.output[0], ("", -1))
        if op in ("Conv", "Gemm") and slot == 1:
            fan_in = int(np.prod(shape[1:])) if op == "Conv" else int(shape[-1])
            v = rng.normal(0, np.sqrt(2.0 / max(fan_in, 1)), shape)
        elif op == "BatchNormalization" and slot in (1, 4):  # scale, variance
            v = rng.uniform(0.5, 1.5, shape)
        else:  # biases, BN bias and mean, Mul/Add scale layers
            v = rng.normal(0, 0.1, shape) + (1.0 if op == "Mul" else 0.0)
        new_inits.append(numpy_helper.from_array(v.astype(np.float32), n.output[0]))
    del g.node[:]
    g.node.extend(keep)
    # Drop the shape initializers and graph inputs that only fed the removed nodes.
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    init_keep = [t for t in g.initializer if t.name in used] + new_inits
    del g.initializer[:]
    g.initializer.extend(init_keep)
    names = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name in used and i.name not in names]
    del g.input[:]
    g.input.extend(inputs)
    if len(g.input) != 1:
        raise SystemExit(f"{name}: expected one data input, found {[i.name for i in g.input]}")
    # The logits (the final Softmax's input) as a second output.
    sm = [n for n in g.node if n.op_type == "Softmax" and n.output[0] in {o.name for o in g.output}]
    if sm:
        # Softmax keeps its input's shape: the logits are typed like the graph output.
        out0 = [o for o in g.output if o.name == sm[0].output[0]][0]
        logits = onnx.ValueInfoProto()
        logits.CopyFrom(out0)
        logits.name = sm[0].input[0]
        g.output.append(logits)
    model.ir_version = max(model.ir_version, 4)
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    x = rng.standard_normal(dims).astype(np.float32)
    write(out, name, model, x, {
        "source": f"onnx {onnx.__version__} backend/test/data/light/{file}, ConstantOfShape weights "
                  "replaced by seeded random initializers",
        "exporter": "onnx light model zoo (Caffe2 exports)",
        "layout": "NCHW",
    })
    # The logits, for a check that does not saturate.
    if sm:
        ys = ort_run(out / name / "model.onnx", x)
        np.save(out / name / "logits.npy", np.ascontiguousarray(ys[1], dtype=np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", type=Path)
    ap.add_argument("--full", action="store_true", help="Keras models at 224x224 and alpha 1.0")
    ap.add_argument("--only", nargs="+", default=None)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--skip-keras", action="store_true", help="only the light zoo models")
    a = ap.parse_args()
    names = [k[0] for k in KERAS] + [z[0] for z in ZOO]
    if a.list:
        print("\n".join(names))
        return
    if a.out is None:
        ap.error("OUT is required")
    unknown = set(a.only or []) - set(names)
    if unknown:
        ap.error(f"unknown fixtures {sorted(unknown)}; known: {names}")
    want = lambda n: (a.only is None or n in a.only)  # noqa: E731
    t0 = time.time()
    for i, (name, ctor, small_kw, full_kw, tv) in enumerate(KERAS):
        if want(name) and not a.skip_keras:
            size = KERAS_SIZE["full" if a.full else "small"]
            keras_fixture(a.out, name, ctor, full_kw if a.full else small_kw, size, tv, 100 + i)
    for i, (name, file) in enumerate(ZOO):
        if want(name):
            zoo_fixture(a.out, name, file, 200 + i)
    print(f"done in {time.time() - t0:.1f} s -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
