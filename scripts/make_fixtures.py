#!/usr/bin/env python3
"""Export ONNX test fixtures for mnc and record onnxruntime reference outputs.

Every fixture is a folder ``OUT/<name>/`` holding

* ``model.onnx`` (plus ``model.onnx.data`` for dynamo exports with external data),
* ``input.npy``  -- a seeded standard-normal float32 input, C order,
* ``output.npy`` -- onnxruntime's output for that input, float32, C order,
* ``meta.json``  -- source, exporter, opset, shapes, op histogram, error and std figures.

Weights are non-trivial: every BatchNorm gets random affine parameters
(weight ~ U(0.5, 1.5), bias ~ N(0, 0.1)) and running statistics calibrated by
cumulative averaging over a few random batches (BN layers alone in train mode,
momentum=None), so activations stay O(1) through the network instead of the
near-zero outputs a default-initialized export produces.

Usage:
    python scripts/make_fixtures.py                 # small set -> tests/fixtures/
    python scripts/make_fixtures.py --full          # full-size models -> fixtures-full/
    python scripts/make_fixtures.py --only NAME ... # a subset (names from --list)
    python scripts/make_fixtures.py --list [--full] # print fixture names

This script is a development tool only; mnc never depends on Python at runtime.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parent.parent
SMALL_OUT = REPO / "tests" / "fixtures"
FULL_OUT = REPO / "fixtures-full"

# Op types of the shape-computing "same"-padding subgraph that timm's TF-ported
# models (Conv2dSame / pad_same) produce under the legacy tracing exporter.
SAME_PAD_OPS = ("Shape", "Gather", "Slice", "Concat", "ConstantOfShape", "Pad")


@dataclass(frozen=True)
class Fixture:
    """One exported model variant."""

    name: str
    model_key: str  # fixtures sharing a key share weights and input
    source: str  # Python expression that builds the (un-calibrated) model
    build: Callable[[], nn.Module]
    input_shape: tuple[int, int, int, int]
    exporter: str  # "legacy" (TorchScript) or "dynamo" (torch.export)
    opset: int
    preserve_bn: bool = False
    dynamic_batch: bool = False
    required_ops: tuple[str, ...] = ()
    forbidden_ops: tuple[str, ...] = ()
    notes: str = ""


class FixtureError(Exception):
    """A fixture failed one of its checks."""


# --------------------------------------------------------------------------- builders


def tv(name: str, **kw) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None, **kw)

    return build


def tv_efficientnet(width_mult: float, depth_mult: float, num_classes: int) -> Callable[[], nn.Module]:
    """A reduced torchvision EfficientNet (B0's stage table scaled down)."""

    def build() -> nn.Module:
        from torchvision.models import efficientnet as E

        setting, last_channel = E._efficientnet_conf(
            "efficientnet_b0", width_mult=width_mult, depth_mult=depth_mult
        )
        return E.EfficientNet(setting, dropout=0.2, last_channel=last_channel, num_classes=num_classes)

    return build


def tv_efficientnet_b0_head3() -> nn.Module:
    """torchvision efficientnet_b0 with the transfer-learning head Dropout(0.2) + Linear(1280, 3)."""
    import torchvision

    m = torchvision.models.efficientnet_b0(weights=None)
    m.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True), nn.Linear(1280, 3))
    return m


def tv_mobilenet_v2_truncated() -> nn.Module:
    """mobilenet_v2(width 0.35) keeping only the first three stages of its table."""
    import torchvision

    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2]]
    return torchvision.models.MobileNetV2(
        num_classes=10, width_mult=0.35, inverted_residual_setting=setting
    )


def timm_model(name: str, **kw) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, **kw)

    return build


def timm_tf_efficientnet_b0_reduced() -> nn.Module:
    """timm tf_efficientnet_b0 (TF "same" padding) scaled by channel 0.25 / depth 0.34."""
    from timm.models import efficientnet as EF

    # Same keyword defaults as timm's registered tf_efficientnet_b0 (TF BN eps, "same" padding).
    return EF._gen_efficientnet("tf_efficientnet_b0", 0.25, 0.34, pretrained=False, num_classes=10,
                                bn_eps=EF.BN_EPS_TF_DEFAULT, pad_type="same")


# --------------------------------------------------------------------------- fixture lists


def small_fixtures() -> list[Fixture]:
    mnv2 = "torchvision.models.mobilenet_v2(width_mult=0.35, num_classes=10)"
    eff = (
        "torchvision EfficientNet(_efficientnet_conf('efficientnet_b0', width_mult=0.25, "
        "depth_mult=0.34), num_classes=10)"
    )
    return [
        Fixture(
            "mnv2_w035_op13", "mnv2_w035", mnv2, tv("mobilenet_v2", width_mult=0.35, num_classes=10),
            (1, 3, 96, 96), "legacy", 13, required_ops=("Conv", "Clip", "Add", "Gemm"),
            forbidden_ops=("BatchNormalization",),
            notes="BatchNorm folded into Conv by the exporter (default export).",
        ),
        Fixture(
            "mnv2_w035_bn_op13", "mnv2_w035", mnv2, tv("mobilenet_v2", width_mult=0.35, num_classes=10),
            (1, 3, 96, 96), "legacy", 13, preserve_bn=True,
            required_ops=("Conv", "BatchNormalization", "Clip"),
            notes="training=TrainingMode.PRESERVE, do_constant_folding=False: keeps BatchNormalization "
            "nodes (and would alias duplicate weights through Identity; with random BN statistics "
            "there are none here). Same weights and input as mnv2_w035_op13.",
        ),
        Fixture(
            "effnet_w025_dynamo_op18", "effnet_w025", eff, tv_efficientnet(0.25, 0.34, 10),
            (1, 3, 64, 64), "dynamo", 18, required_ops=("Conv", "Sigmoid", "Mul"),
            notes="dynamo exporter, weights in external model.onnx.data; SE blocks and SiLU.",
        ),
        Fixture(
            "effnet_w025_op11", "effnet_w025_75", eff, tv_efficientnet(0.25, 0.34, 10),
            (1, 3, 75, 75), "legacy", 11, required_ops=("Conv", "Sigmoid", "Mul", "GlobalAveragePool"),
            forbidden_ops=("BatchNormalization",),
            notes="Odd input size 75x75 (ragged stride-2 convs); SiLU exported as x*Sigmoid(x); SE blocks.",
        ),
        Fixture(
            "tf_effb0_same_op13", "tf_effb0_reduced",
            "timm.models.efficientnet._gen_efficientnet('tf_efficientnet_b0', 0.25, 0.34, num_classes=10, "
            "bn_eps=BN_EPS_TF_DEFAULT, pad_type='same')",
            timm_tf_efficientnet_b0_reduced, (1, 3, 64, 64), "legacy", 13,
            required_ops=SAME_PAD_OPS + ("Conv", "ReduceMean", "Sigmoid", "Identity"),
            notes="timm TF-ported model: 'same' padding exported as a shape-computing subgraph "
            "(Shape, Gather, Slice, Concat, ConstantOfShape, Pad, ...); asymmetric pads at 64x64. "
            "The SE convs' zero-initialized biases are deduplicated by the exporter into "
            "Identity-aliased initializers.",
        ),
        Fixture(
            "mnv3s_w035_b3_op17", "mnv3s_w035",
            "torchvision.models.mobilenet_v3_small(width_mult=0.35, num_classes=10)",
            tv("mobilenet_v3_small", width_mult=0.35, num_classes=10), (3, 3, 64, 64), "legacy", 17,
            required_ops=("Conv", "HardSwish", "HardSigmoid", "Relu", "Mul", "Gemm"),
            forbidden_ops=("BatchNormalization",),
            notes="Static batch 3. HardSwish, HardSigmoid, SE blocks.",
        ),
        Fixture(
            "mnv2_trunc_dynbatch_op10", "mnv2_trunc",
            "torchvision.models.MobileNetV2(num_classes=10, width_mult=0.35, "
            "inverted_residual_setting=[[1,16,1,1],[6,24,2,2],[6,32,3,2]])",
            tv_mobilenet_v2_truncated, (1, 3, 48, 48), "legacy", 10, dynamic_batch=True,
            required_ops=("Conv", "Clip", "Add", "Gemm"), forbidden_ops=("BatchNormalization",),
            notes="Opset 10: Clip min/max are attributes. Dynamic batch axis 'batch' on input and "
            "output; the reference input has batch 1.",
        ),
    ]


def full_fixtures() -> list[Fixture]:
    out: list[Fixture] = []

    def legacy(key, src, build, res, opsets, bn_opsets=(), dynamo=False, dynamic_batch=False,
               name_prefix=None, extra_required=()):
        prefix = name_prefix or key
        for op in opsets:
            out.append(Fixture(f"{prefix}_op{op}", key, src, build, (1, 3, res, res), "legacy", op,
                               dynamic_batch=dynamic_batch, required_ops=("Conv",) + extra_required,
                               forbidden_ops=("BatchNormalization",)))
        for op in bn_opsets:
            out.append(Fixture(f"{prefix}_bn_op{op}", key, src, build, (1, 3, res, res), "legacy", op,
                               preserve_bn=True, dynamic_batch=dynamic_batch,
                               required_ops=("Conv", "BatchNormalization") + extra_required))
        if dynamo:
            out.append(Fixture(f"{prefix}_dynamo_op18", key, src, build, (1, 3, res, res), "dynamo", 18,
                               required_ops=("Conv",) + extra_required))

    all3 = (11, 13, 17)
    legacy("mobilenet_v2", "torchvision.models.mobilenet_v2()", tv("mobilenet_v2"), 224, all3, (13,), True)
    legacy("mobilenet_v3_small", "torchvision.models.mobilenet_v3_small()", tv("mobilenet_v3_small"),
           224, all3, (17,), True)
    legacy("mobilenet_v3_large", "torchvision.models.mobilenet_v3_large()", tv("mobilenet_v3_large"),
           224, all3, (17,), True)
    legacy("efficientnet_b0", "torchvision.models.efficientnet_b0()", tv("efficientnet_b0"), 224, all3,
           (13,), True)
    for b, res in ((1, 240), (2, 260), (3, 300)):
        legacy(f"efficientnet_b{b}", f"torchvision.models.efficientnet_b{b}()", tv(f"efficientnet_b{b}"),
               res, (13, 17))
    for b, res in ((4, 380), (5, 456), (6, 528), (7, 600)):
        legacy(f"efficientnet_b{b}", f"torchvision.models.efficientnet_b{b}()", tv(f"efficientnet_b{b}"),
               res, (13,))
    # The transfer-learning model of the cost-report issue, in both forms, dynamic batch.
    legacy("efficientnet_b0_head3",
           "torchvision.models.efficientnet_b0() with classifier = Sequential(Dropout(0.2), Linear(1280, 3))",
           tv_efficientnet_b0_head3, 224, (13,), (13,), dynamic_batch=True)
    for name in ("mobilenetv1_100", "mobilenetv2_100", "mobilenetv3_large_100", "efficientnet_lite0"):
        legacy(f"timm_{name}", f"timm.create_model('{name}')", timm_model(name), 224, (13,))
    for name in ("tf_efficientnet_b0", "tf_mobilenetv3_small_100"):
        legacy(f"timm_{name}", f"timm.create_model('{name}')", timm_model(name), 224, (13, 17),
               extra_required=SAME_PAD_OPS)
    return out


# --------------------------------------------------------------------------- weights


def stable_seed(key: str) -> int:
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def init_weights(model: nn.Module, input_shape, seed: int, images: int, batch: int) -> int:
    """Make the weights non-trivial; returns the number of BatchNorm layers.

    * Linear: weight ~ N(0, 1/fan_in), bias ~ N(0, 0.1). torchvision's MobileNet heads are
      initialized N(0, 0.01) with zero bias, which gives near-zero logits.
    * BatchNorm: weight ~ U(0.5, 1.5), bias ~ N(0, 0.1), running statistics calibrated on
      random N(0, 1) inputs by cumulative averaging (momentum=None), BN layers alone in train
      mode; afterwards the original momentum is restored and the model is put in eval mode.
    * Convolutions keep the library's (variance-preserving) initialization, so zero-initialized
      conv biases (SE blocks) stay zero, as in a freshly built model.
    """
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved_momentum = []
    with torch.no_grad():
        for bn in bns:
            if bn.affine:
                bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
                bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.1)
            bn.reset_running_stats()
            saved_momentum.append(bn.momentum)
            bn.momentum = None  # cumulative moving average over all calibration batches
    # Only the BN layers run in train mode: dropout / stochastic depth stay off.
    model.eval()
    for bn in bns:
        bn.train()
    with torch.no_grad():
        done = 0
        while done < images:
            n = min(batch, images - done)
            model(torch.randn((n,) + tuple(input_shape[1:]), generator=g))
            done += n
    for bn, mom in zip(bns, saved_momentum):
        bn.momentum = mom
    model.eval()
    return len(bns)


# --------------------------------------------------------------------------- export and checks


def export(model: nn.Module, x: torch.Tensor, path: Path, fx: Fixture) -> None:
    if fx.exporter == "legacy":
        kw = dict(dynamo=False, opset_version=fx.opset, input_names=["input"], output_names=["output"])
        if fx.preserve_bn:
            kw.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
        if fx.dynamic_batch:
            kw["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), **kw)
    elif fx.exporter == "dynamo":
        if fx.preserve_bn or fx.dynamic_batch:
            raise FixtureError(f"{fx.name}: dynamo fixtures here are static and BN-folded")
        torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=fx.opset,
                          external_data=True, input_names=["input"], output_names=["output"],
                          verbose=False)
    else:
        raise FixtureError(f"{fx.name}: unknown exporter {fx.exporter!r}")


def op_histogram(model: onnx.ModelProto) -> Counter:
    ops: Counter = Counter()

    def walk(graph):
        for node in graph.node:
            ops[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)

    walk(model.graph)
    for fn in model.functions:
        for node in fn.node:
            ops[node.op_type] += 1
    return ops


def check_model_file(fx: Fixture, path: Path) -> tuple[onnx.ModelProto, Counter, bool]:
    model = onnx.load(str(path), load_external_data=False)
    ops = op_histogram(model)
    missing = [op for op in fx.required_ops if op not in ops]
    if missing:
        raise FixtureError(f"{fx.name}: expected op types missing from {path}: {missing}")
    present = [op for op in fx.forbidden_ops if op in ops]
    if present:
        raise FixtureError(f"{fx.name}: unexpected op types in {path}: {present}")
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if fx.exporter == "dynamo":
        data = path.with_name(path.name + ".data")
        if not data.is_file() or data.stat().st_size == 0:
            raise FixtureError(f"{fx.name}: external data file {data} missing or empty")
        if not external:
            raise FixtureError(f"{fx.name}: no initializer stored as external data")
        locations = {kv.value for t in external for kv in t.external_data if kv.key == "location"}
        if locations != {data.name}:
            raise FixtureError(f"{fx.name}: external data locations {locations}, expected {data.name}")
    elif external:
        raise FixtureError(f"{fx.name}: legacy export unexpectedly uses external data")
    onnx.checker.check_model(str(path))
    return model, ops, bool(external)


def run_ort(path: Path, x: np.ndarray, threads: int) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    outs = sess.run(None, {sess.get_inputs()[0].name: x})
    return np.ascontiguousarray(outs[0], dtype=np.float32)


def versions() -> dict:
    import torchvision

    v = {"torch": torch.__version__, "torchvision": torchvision.__version__, "onnx": onnx.__version__,
         "onnxruntime": ort.__version__}
    try:
        import timm

        v["timm"] = timm.__version__
    except ImportError:
        pass
    return v


# --------------------------------------------------------------------------- driver


class Prepared:
    """A built, calibrated model with its fixed input and torch reference output."""

    def __init__(self, fx: Fixture, calib_images: int, calib_batch: int):
        self.seed = stable_seed(fx.model_key)
        torch.manual_seed(self.seed)
        self.model = fx.build()
        self.n_bn = init_weights(self.model, fx.input_shape, self.seed, calib_images, calib_batch)
        self.params = sum(p.numel() for p in self.model.parameters())
        rng = np.random.default_rng(self.seed)
        self.x = rng.standard_normal(fx.input_shape, dtype=np.float32)
        # Record the std of every BatchNorm output on the reference input: evidence that
        # activations stay O(1) all the way down the network.
        stds: list[float] = []
        hooks = [m.register_forward_hook(lambda _m, _i, o: stds.append(float(o.std())))
                 for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        with torch.no_grad():
            self.y_torch = self.model(torch.from_numpy(self.x)).numpy()
        for h in hooks:
            h.remove()
        self.bn_std = (min(stds), max(stds), stds[-1]) if stds else None


def make_fixture(fx: Fixture, prep: Prepared, out_dir: Path, threads: int) -> dict:
    if tuple(prep.x.shape) != fx.input_shape:
        raise FixtureError(f"{fx.name}: fixtures sharing model_key {fx.model_key} need one input shape")
    d = out_dir / fx.name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    path = d / "model.onnx"
    t0 = time.time()
    export(prep.model, torch.from_numpy(prep.x), path, fx)
    t_export = time.time() - t0
    model, ops, external = check_model_file(fx, path)
    t0 = time.time()
    y = run_ort(path, prep.x, threads)
    t_ort = time.time() - t0
    if y.shape != prep.y_torch.shape:
        raise FixtureError(f"{fx.name}: ort output shape {y.shape} != torch {prep.y_torch.shape}")
    if not np.all(np.isfinite(y)):
        raise FixtureError(f"{fx.name}: non-finite onnxruntime output")
    max_err = float(np.max(np.abs(y - prep.y_torch)))
    max_ref = float(np.max(np.abs(y)))
    std = float(np.std(y))
    if std < 1e-2:
        raise FixtureError(f"{fx.name}: output std {std:.3g} is near zero; weights are degenerate")
    if max_err > 1e-3 * max(max_ref, 1.0):
        raise FixtureError(f"{fx.name}: torch vs onnxruntime max error {max_err:.3g} (max|y| {max_ref:.3g})")
    np.save(d / "input.npy", np.ascontiguousarray(prep.x))
    np.save(d / "output.npy", y)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    meta = {
        "name": fx.name,
        "source": fx.source,
        "exporter": "torch.onnx.export(dynamo=False) legacy TorchScript exporter"
        if fx.exporter == "legacy" else "torch.onnx.export(dynamo=True, external_data=True)",
        "opset": opset,
        "bn_preserved": fx.preserve_bn,
        "dynamic_batch": fx.dynamic_batch,
        "external_data": external,
        "input_name": model.graph.input[0].name,
        "input_shape": list(fx.input_shape),
        "output_shape": list(y.shape),
        "seed": prep.seed,
        "params": prep.params,
        "batchnorm_layers": prep.n_bn,
        "bn_output_std_min_max_last": list(prep.bn_std) if prep.bn_std else None,
        "op_types": dict(sorted(ops.items())),
        "max_abs_err_torch_vs_ort": max_err,
        "output_max_abs": max_ref,
        "output_std": std,
        "ort_graph_optimization_level": "ORT_ENABLE_BASIC",
        "versions": versions(),
        "notes": fx.notes,
    }
    (d / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    size = sum(f.stat().st_size for f in d.iterdir())
    print(f"{fx.name:34s} opset {opset:2d}  {size / 1e6:7.2f} MB  max|torch-ort| {max_err:.2e}  "
          f"max|y| {max_ref:8.3f}  std(y) {std:6.3f}  BN-out std min/max/last "
          + ("/".join(f"{v:.2f}" for v in prep.bn_std) if prep.bn_std else "-")
          + f"  export {t_export:5.1f}s ort {t_ort:5.1f}s",
          flush=True)
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="output folder (default tests/fixtures, or fixtures-full with --full)")
    ap.add_argument("--full", action="store_true", help="full-size models instead of the small committed set")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these fixtures")
    ap.add_argument("--list", action="store_true", help="print the fixture names and exit")
    ap.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads (default 2)")
    args = ap.parse_args(argv)

    fixtures = full_fixtures() if args.full else small_fixtures()
    if args.list:
        for fx in fixtures:
            print(fx.name)
        return 0
    if args.only:
        known = {fx.name for fx in fixtures}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            print(f"error: unknown fixture(s) {unknown}; see --list", file=sys.stderr)
            return 2
        fixtures = [fx for fx in fixtures if fx.name in args.only]
    out_dir = args.out or (FULL_OUT if args.full else SMALL_OUT)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    # Full-size models at native resolution: fewer, smaller calibration batches.
    calib_images, calib_batch = (8, 2) if args.full else (32, 8)

    failures = 0
    order: list[str] = []
    for fx in fixtures:
        if fx.model_key not in order:
            order.append(fx.model_key)
    for key in order:
        group = [fx for fx in fixtures if fx.model_key == key]
        try:
            prep = Prepared(group[0], calib_images, calib_batch)
        except Exception as e:  # report and continue with the other models
            print(f"FAILED {key}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            failures += len(group)
            continue
        for fx in group:
            try:
                make_fixture(fx, prep, out_dir, args.threads)
            except Exception as e:
                print(f"FAILED {fx.name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                shutil.rmtree(out_dir / fx.name, ignore_errors=True)  # never leave a half fixture
                failures += 1
        del prep
    print(f"{len(fixtures) - failures}/{len(fixtures)} fixtures written to {out_dir}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
