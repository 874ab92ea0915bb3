#!/usr/bin/env python3
"""Compute torchinfo's cost figures for the models mnc's cost report and zoo are checked against.

Writes scripts/reference_figures.json (or --out) and prints a summary, comparing the headline
figures with the ones quoted in the cost-report and zoo issues. Exit status 1 if any differs.

Figures (torchinfo 1.8 conventions, all integers exact):
  * efficientnet_b0 with classifier = Sequential(Dropout(0.2), Linear(1280, 3)), batch 32,
    3x224x224, `features` frozen (requires_grad False) -- the transfer-learning recipe;
  * every zoo model at batch 1 and its native resolution: mobilenet_v1 (timm mobilenetv1_100),
    mobilenet_v2, mobilenet_v3_small/large (224), efficientnet_b0..b7 (224, 240, 260, 300, 380,
    456, 528, 600);
  * per-layer rows (module path, class, params, mult-adds, input/output shape) of every leaf
    module for mobilenet_v2 (batch 1) and the efficientnet_b0 3-class model (batch 32).

Weights are library defaults (no download); torchinfo's figures depend only on shapes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torchinfo
from torchinfo.model_statistics import ModelStatistics

HERE = Path(__file__).resolve().parent

SETTINGS = {
    "function": "torchinfo.summary",
    "input_size": "(batch, 3, R, R), float32 (torchinfo's default dtype), random input",
    "col_names": ["input_size", "output_size", "num_params", "mult_adds", "trainable"],
    "depth": 10,
    "row_settings": ["var_names"],
    "mode": "eval",
    "device": "cpu",
    "verbose": 0,
    "note": "depth only affects printing; the totals are sums over all leaf modules",
}

UNIT_LABELS = {"Units.TERABYTES": "T", "Units.GIGABYTES": "G", "Units.MEGABYTES": "M"}

# (name, builder, resolution) for the zoo list of the model-zoo issue.
EFFNET_RES = {0: 224, 1: 240, 2: 260, 3: 300, 4: 380, 5: 456, 6: 528, 7: 600}

# Figures quoted in the cost-report issue (torchinfo's printed strings).
EXPECTED_PRINTED = {
    "efficientnet_b0_head3_b32_freeze_features": {
        "Total params": "4,011,391",
        "Trainable params": "3,843",
        "Non-trainable params": "4,007,548",
        "Total mult-adds (G)": "12.31",
        "Input size (MB)": "19.27",
        "Forward/backward pass size (MB)": "3452.09",
        "Params size (MB)": "16.05",
        "Estimated Total Size (MB)": "3487.41",
    },
    "mobilenet_v2": {
        "Total params": "3,504,872",
        "Total mult-adds (M)": "300.81",
        "Forward/backward pass size (MB)": "106.86",
        "Estimated Total Size (MB)": "121.48",
    },
}
# Figures quoted in the zoo issue: (params, mult-adds in M with 2 decimals or None).
EXPECTED_ZOO = {
    "mobilenet_v1": (4231976, "568.74"),
    "mobilenet_v2": (3504872, "300.81"),
    "mobilenet_v3_small": (2542856, "56.53"),
    "mobilenet_v3_large": (5483032, "216.62"),
    "efficientnet_b0": (5288548, "385.87"),
    "efficientnet_b1": (7794184, "686.88"),
    "efficientnet_b2": (9109994, None),
    "efficientnet_b3": (12233232, "1,827.25"),
    "efficientnet_b4": (19341616, "4,393.93"),
    "efficientnet_b5": (30389784, "10,266.60"),
    "efficientnet_b6": (43040704, "19,067.87"),
    "efficientnet_b7": (66347960, "37,746.27"),
}


def efficientnet_b0_head3() -> nn.Module:
    import torchvision

    m = torchvision.models.efficientnet_b0(weights=None)
    m.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True), nn.Linear(1280, 3))
    for p in m.features.parameters():
        p.requires_grad = False
    return m


def zoo() -> list[tuple[str, str, object, int]]:
    import timm
    import torchvision.models as tvm

    out = [
        ("mobilenet_v1", "timm.create_model('mobilenetv1_100')",
         lambda: timm.create_model("mobilenetv1_100", pretrained=False), 224),
        ("mobilenet_v2", "torchvision.models.mobilenet_v2()", lambda: tvm.mobilenet_v2(weights=None), 224),
        ("mobilenet_v3_small", "torchvision.models.mobilenet_v3_small()",
         lambda: tvm.mobilenet_v3_small(weights=None), 224),
        ("mobilenet_v3_large", "torchvision.models.mobilenet_v3_large()",
         lambda: tvm.mobilenet_v3_large(weights=None), 224),
    ]
    for b, res in EFFNET_RES.items():
        out.append((f"efficientnet_b{b}", f"torchvision.models.efficientnet_b{b}()",
                    (lambda b=b: getattr(tvm, f"efficientnet_b{b}")(weights=None)), res))
    return out


def summarize(model: nn.Module, shape: tuple[int, ...]) -> ModelStatistics:
    return torchinfo.summary(
        model, input_size=shape, col_names=SETTINGS["col_names"], depth=SETTINGS["depth"],
        row_settings=SETTINGS["row_settings"], mode=SETTINGS["mode"], device=SETTINGS["device"],
        verbose=SETTINGS["verbose"],
    )


def printed(stats: ModelStatistics) -> dict[str, str]:
    """The totals exactly as torchinfo prints them (label -> value string)."""
    out = {}
    for line in str(stats).splitlines():
        for label in ("Total params", "Trainable params", "Non-trainable params", "Total mult-adds",
                      "Input size (MB)", "Forward/backward pass size (MB)", "Params size (MB)",
                      "Estimated Total Size (MB)"):
            if line.startswith(label) and ":" in line:
                key, value = line.rsplit(":", 1)
                # torchinfo 1.8 on Python >= 3.11 prints the unit enum as "Units.GIGABYTES";
                # normalize to the "(G)" / "(M)" / "(T)" labels it prints on older Pythons.
                for long, short in UNIT_LABELS.items():
                    key = key.replace(long, short)
                out[key.strip()] = value.strip()
    return out


def figures(name: str, source: str, stats: ModelStatistics, shape, frozen=None) -> dict:
    total_bytes = stats.total_input + stats.total_output_bytes + stats.total_param_bytes
    return {
        "model": name,
        "source": source,
        "input_shape": list(shape),
        "batch": shape[0],
        "frozen_prefix": frozen,
        "total_params": stats.total_params,
        "trainable_params": stats.trainable_params,
        "non_trainable_params": stats.total_params - stats.trainable_params,
        "total_mult_adds": stats.total_mult_adds,
        "input_bytes": stats.total_input,
        "forward_backward_pass_bytes": stats.total_output_bytes,
        "params_bytes": stats.total_param_bytes,
        "estimated_total_bytes": total_bytes,
        "mult_adds_M": round(stats.total_mult_adds / 1e6, 2),
        "input_size_mb": round(stats.total_input / 1e6, 2),
        "forward_backward_pass_size_mb": round(stats.total_output_bytes / 1e6, 2),
        "params_size_mb": round(stats.total_param_bytes / 1e6, 2),
        "estimated_total_size_mb": round(total_bytes / 1e6, 2),
        "printed": printed(stats),
    }


def layer_rows(model: nn.Module, stats: ModelStatistics) -> list[dict]:
    """Every leaf module torchinfo visited, in execution order."""
    names = {id(m): n for n, m in model.named_modules()}
    rows = []
    for li in stats.summary_list:
        if not li.is_leaf_layer:
            continue
        rows.append({
            "path": names.get(id(li.module), li.var_name),
            "class": li.class_name,
            "params": li.num_params,
            "trainable_params": li.trainable_params,
            "mult_adds": li.macs,
            "input_shape": li.input_size,
            "output_shape": li.output_size,
            "output_bytes": li.output_bytes,
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "reference_figures.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    import timm
    import torchvision

    doc = {
        "generated_by": "scripts/torchinfo_reference.py",
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "timm": timm.__version__, "torchinfo": torchinfo.__version__},
        "settings": SETTINGS,
        "conventions": {
            "mult_adds": "Conv: (weight+bias elements) x N x output spatial size; other layers with "
                         "parameters (Linear, BatchNorm): N x params (Linear with 2-D input); "
                         "parameter-free layers: 0. Leaf modules only.",
            "forward_backward_pass_bytes": "2 x output bytes of every leaf module with parameters",
            "params": "nn.Parameters only (BatchNorm running mean/var are buffers)",
            "input_bytes": "torchinfo's sys.getsizeof of the input: tensor bytes + 64 (object header)",
            "MB": "10^6 bytes",
        },
        "models": {},
        "layers": {},
    }
    ok = True

    name = "efficientnet_b0_head3_b32_freeze_features"
    model = efficientnet_b0_head3()
    shape = (32, 3, 224, 224)
    stats = summarize(model, shape)
    doc["models"][name] = figures(
        name, "torchvision.models.efficientnet_b0() with classifier = Sequential(Dropout(0.2), "
        "Linear(1280, 3)); features.* requires_grad=False", stats, shape, frozen="features")
    doc["layers"][name] = layer_rows(model, stats)
    print(f"== {name}\n" + "\n".join(str(stats).splitlines()[-13:]), flush=True)
    del model, stats

    for zname, source, build, res in zoo():
        model = build()
        shape = (1, 3, res, res)
        stats = summarize(model, shape)
        doc["models"][zname] = figures(zname, source, stats, shape)
        if zname == "mobilenet_v2":
            doc["layers"][zname] = layer_rows(model, stats)
            print(f"== {zname}\n" + "\n".join(str(stats).splitlines()[-13:]), flush=True)
        f = doc["models"][zname]
        exp_params, exp_macs = EXPECTED_ZOO[zname]
        got_macs = f"{f['total_mult_adds'] / 1e6:,.2f}"
        status = "ok" if f["total_params"] == exp_params and exp_macs in (None, got_macs) else "MISMATCH"
        ok &= status == "ok"
        print(f"{zname:20s} {res:4d}px  params {f['total_params']:>11,} (expected {exp_params:,})  "
              f"mult-adds {f['total_mult_adds']:>15,} = {got_macs} M (expected {exp_macs or '-'} M)  "
              f"F/B {f['forward_backward_pass_size_mb']:.2f} MB  total {f['estimated_total_size_mb']:.2f} MB"
              f"  {status}", flush=True)
        del model, stats

    for mname, expected in EXPECTED_PRINTED.items():
        got = doc["models"][mname]["printed"]
        for label, value in expected.items():
            match = got.get(label) == value
            ok &= match
            print(f"{mname}: {label}: {got.get(label)} (expected {value}) {'ok' if match else 'MISMATCH'}")

    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
