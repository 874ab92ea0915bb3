#!/usr/bin/env python3
"""Writes the int8 quantization fixtures of ``tests/fixtures/quant/``.

A small MobileNetV2-style network (3x3 stem, inverted-residual blocks with depthwise and
pointwise convolutions, ReLU6, a residual Add, GlobalAveragePool, Gemm) with random weights
and BatchNorm-like channel scales, exported with the legacy TorchScript exporter at opset 13
(BatchNorm folded), then quantized by onnxruntime's ``quantize_static`` in the QDQ format
(per-channel int8 weights, uint8 activations, MinMax calibration) on a fixed calibration set.

Written files (all float32 ``.npy`` in C order):

* ``model_f32.onnx``      the float model
* ``model_qdq_ort.onnx``  onnxruntime's QDQ model of it
* ``calib.npy``           the calibration set, ``[N, 3, 32, 32]`` (one image per row)
* ``input.npy``           a test input ``[1, 3, 32, 32]`` (not in the calibration set)
* ``output_f32.npy``      onnxruntime's output of ``model_f32.onnx`` on ``input.npy``
* ``output_qdq_ort.npy``  onnxruntime's output of ``model_qdq_ort.onnx`` on ``input.npy``
* ``meta.json``           settings, versions, sizes, the agreement of the two outputs

The file names differ from the other fixtures' ``model.onnx`` on purpose: the fixture tests
that compare every ``tests/fixtures/*/model.onnx`` with ``output.npy`` do not pick this folder up.

Usage: ``.venv/bin/python scripts/make_quant_fixtures.py [--out tests/fixtures/quant]``.
Deterministic: fixed seeds, single-threaded onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from torch import nn

SEED = 14
RES = 32
CALIB_IMAGES = 12
MAX_FILE_BYTES = 200_000


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1))
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=False)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.residual else y


class TinyMobileNet(nn.Module):
    """Stem 3x3/2, four inverted-residual blocks (two with a residual Add), a 1x1 head,
    GlobalAveragePool, Linear."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 16, 3, 2),
            InvertedResidual(16, 16, 1, 1),
            InvertedResidual(16, 24, 2, 4),
            InvertedResidual(24, 24, 1, 4),
            InvertedResidual(24, 32, 2, 3),
            conv_bn(32, 64, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def init_weights(model: nn.Module, g: torch.Generator) -> None:
    """BatchNorm-like channel scales: gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1), running
    statistics from random inputs (cumulative average); Linear ~ N(0, 1/fan_in), bias N(0, 0.1).
    Convolutions keep torch's default init. Per-channel gamma spread is what makes
    per-channel weight scales matter once BatchNorm is folded."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.1)
            bn.reset_running_stats()
            bn.momentum = None
        lin = model.classifier
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) / lin.in_features**0.5)
        lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 0.1)
    model.eval()
    for bn in bns:
        bn.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn((16, 3, RES, RES), generator=g))
    model.eval()


class Reader(CalibrationDataReader):
    def __init__(self, name: str, images: np.ndarray):
        self.items = iter([{name: images[i : i + 1]} for i in range(images.shape[0])])

    def get_next(self):
        return next(self.items, None)


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run(path: Path, x: np.ndarray) -> np.ndarray:
    s = session(path)
    return np.ascontiguousarray(s.run(None, {s.get_inputs()[0].name: x})[0], dtype=np.float32)


def sqnr_db(ref: np.ndarray, y: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - y) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests/fixtures/quant")
    a = ap.parse_args(argv)
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    model = TinyMobileNet()
    init_weights(model, g)

    # Calibration images and a held-out test input: smooth random "images" (low-resolution
    # noise upsampled), normalized like ImageNet inputs, so activations have image-like ranges.
    def images(n: int) -> np.ndarray:
        lo = torch.randn((n, 3, RES // 4, RES // 4), generator=g)
        x = torch.nn.functional.interpolate(lo, size=(RES, RES), mode="bilinear", align_corners=False)
        return (x + 0.3 * torch.randn(x.shape, generator=g)).numpy().astype(np.float32)

    calib = images(CALIB_IMAGES)
    x = images(1)

    f32_path = out / "model_f32.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), str(f32_path), dynamo=False, opset_version=13,
                          input_names=["input"], output_names=["output"])
    onnx.checker.check_model(onnx.load(str(f32_path)))

    qdq_path = out / "model_qdq_ort.onnx"
    quantize_static(
        str(f32_path),
        str(qdq_path),
        Reader("input", calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    onnx.checker.check_model(onnx.load(str(qdq_path)))

    y_f32 = run(f32_path, x)
    y_qdq = run(qdq_path, x)
    np.save(out / "calib.npy", calib)
    np.save(out / "input.npy", x)
    np.save(out / "output_f32.npy", y_f32)
    np.save(out / "output_qdq_ort.npy", y_qdq)
    with torch.no_grad():
        y_torch = model(torch.from_numpy(x)).numpy()

    f32_model = onnx.load(str(f32_path))
    qdq_model = onnx.load(str(qdq_path))
    ops = lambda m: dict(sorted(__import__("collections").Counter(n.op_type for n in m.graph.node).items()))  # noqa: E731
    meta = {
        "source": "scripts/make_quant_fixtures.py TinyMobileNet (stem 3x3/2, 4 inverted-residual blocks, "
        "1x1 head, GlobalAveragePool, Linear(64, 10))",
        "exporter": "torch.onnx.export(dynamo=False), opset 13, BatchNorm folded",
        "input_shape": list(x.shape),
        "calibration": f"{CALIB_IMAGES} images in calib.npy, one per calibration batch",
        "quantize_static": {
            "quant_format": "QDQ",
            "per_channel": True,
            "activation_type": "QUInt8",
            "weight_type": "QInt8",
            "calibrate_method": "MinMax",
        },
        "seed": SEED,
        "op_types_f32": ops(f32_model),
        "op_types_qdq": ops(qdq_model),
        "max_abs_err_torch_vs_ort_f32": float(np.abs(y_torch - y_f32).max()),
        "top1_f32": int(y_f32.argmax()),
        "top1_qdq_ort": int(y_qdq.argmax()),
        "sqnr_db_qdq_ort_vs_f32": sqnr_db(y_f32, y_qdq),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                     "numpy": np.__version__},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    print(json.dumps({k: meta[k] for k in ("op_types_qdq", "top1_f32", "top1_qdq_ort", "sqnr_db_qdq_ort_vs_f32")}))
    print(f"wrote {out} ({sum(sizes.values())} bytes)")
    big = {k: v for k, v in sizes.items() if v > MAX_FILE_BYTES}
    if big:
        print(f"error: files over {MAX_FILE_BYTES} bytes: {big}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
