#!/usr/bin/env python3
"""Draws the roofline of a profiled `mnc bench` run as a PNG.

    target/release/mnc bench zoo:mobilenet_v2 --profile --format json --iters 20 > mnv2.json
    .venv/bin/python scripts/roofline.py mnv2.json -o mnv2_roofline.png

Log-log axes: arithmetic intensity (FLOP per byte of compulsory traffic: each input read and
the output written once, as the compile report counts it) against attained GFLOP/s. The roofs
are the run's measured figures: the peak (a multiply-add loop x the cores used) and the memory
bandwidth (a triad over 192 MiB), with the L2 bandwidth as a dashed second roof. One point per
fused op, colored by lowering strategy, its area proportional to its share of the run's time;
the ops taking the most time are labelled. Ops without FLOPs (pure data movement) have no place
on the GFLOP/s axis: their count and time share are given in the caption.

Needs matplotlib (scripts/requirements.txt).
"""
import argparse
import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    with (sys.stdin if path == "-" else open(path)) as f:
        r = json.load(f)
    missing = [k for k in ("profile", "peak_gflops", "bandwidth_gbs") if r.get(k) is None]
    if missing:
        sys.exit(
            f"{path}: no {', '.join(missing)}: give the output of "
            "`mnc bench MODEL --profile --format json` on an x86-64 target"
        )
    return r


def draw(r, out, labels):
    ops = r["profile"]
    peak, bw = r["peak_gflops"], r["bandwidth_gbs"]
    l2 = r.get("cache_bandwidth_gbs")
    total_ms = sum(o["mean_ms"] for o in ops) or 1.0
    shown = [o for o in ops if o["flops"] > 0 and o["bytes"] > 0 and o["gflops"] > 0]
    hidden = [o for o in ops if o not in shown]

    ridge = peak / bw
    ais = [o["arithmetic_intensity"] for o in shown] or [ridge]
    x_lo = min(min(ais), ridge, peak / l2 if l2 else ridge) / 4
    x_hi = max(max(ais), ridge) * 4
    xs = [x_lo * (x_hi / x_lo) ** (i / 200) for i in range(201)]

    fig, ax = plt.subplots(figsize=(11, 7))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.plot(xs, [min(peak, x * bw) for x in xs], color="black", lw=2,
            label=f"roof: peak {peak:.0f} GFLOP/s, memory {bw:.1f} GB/s")
    if l2:
        ax.plot(xs, [min(peak, x * l2) for x in xs], color="gray", lw=1.2, ls="--",
                label=f"L2 roof: {l2:.0f} GB/s")
    ax.axvline(ridge, color="black", lw=0.6, ls=":")
    ax.annotate(f"ridge {ridge:.1f} FLOP/B", (ridge, peak), textcoords="offset points",
                xytext=(4, -12), fontsize=8)

    strategies = sorted({o["strategy"] for o in shown})
    cmap = plt.get_cmap("tab10" if len(strategies) <= 10 else "tab20")
    for k, s in enumerate(strategies):
        pts = [o for o in shown if o["strategy"] == s]
        ms = sum(o["mean_ms"] for o in pts)
        ax.scatter(
            [o["arithmetic_intensity"] for o in pts],
            [o["gflops"] for o in pts],
            s=[15 + 1500 * o["mean_ms"] / total_ms for o in pts],
            color=cmap(k % cmap.N), alpha=0.65, edgecolors="black", linewidths=0.4,
            label=f"{s} ({len(pts)} op{'s' * (len(pts) != 1)}, {100 * ms / total_ms:.0f}% of time)",
        )
    # Labels alternate above and below their points, so that neighbours overlap less.
    for k, o in enumerate(sorted(shown, key=lambda o: -o["mean_ms"])[:labels]):
        ax.annotate(o["node"], (o["arithmetic_intensity"], o["gflops"]), fontsize=7,
                    textcoords="offset points", xytext=(6, 4 if k % 2 == 0 else -10),
                    alpha=0.8)

    ys = [o["gflops"] for o in shown] or [peak]
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(min(min(ys), x_lo * bw) / 2, peak * 2)
    ax.set_xlabel("arithmetic intensity (FLOP per byte of compulsory traffic)")
    ax.set_ylabel("attained GFLOP/s")
    cores = r.get("peak_cores")
    ax.set_title(
        f"{r['model']} on {r['target']}, batch {r['batch']}, "
        f"{cores} core(s): median {r['median_ms']:.2f} ms, {r['gflops']:.1f} GFLOP/s"
    )
    ax.grid(True, which="major", lw=0.5, alpha=0.5)
    ax.grid(True, which="minor", lw=0.3, alpha=0.2)
    ax.legend(loc="lower right", fontsize=8, markerscale=0.5)
    hidden_ms = sum(o["mean_ms"] for o in hidden)
    fig.text(
        0.01, 0.01,
        f"{len(shown)} ops shown (area ~ time); {len(hidden)} without FLOPs not shown "
        f"({100 * hidden_ms / total_ms:.1f}% of time). Profiled over {r['iters']} runs.",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out, dpi=130)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", help="output of `mnc bench MODEL --profile --format json` (- for stdin)")
    ap.add_argument("-o", "--out", help="PNG to write (default: the JSON's name with .png)")
    ap.add_argument("--labels", type=int, default=6, help="label the N ops taking the most time")
    a = ap.parse_args()
    out = a.out
    if out is None:
        if a.json == "-":
            ap.error("-o is needed when reading stdin")
        out = (a.json[:-5] if a.json.endswith(".json") else a.json) + ".png"
    r = load(a.json)
    if not math.isfinite(r["bandwidth_gbs"]) or r["bandwidth_gbs"] <= 0:
        sys.exit(f"{a.json}: bandwidth_gbs is {r['bandwidth_gbs']}")
    draw(r, out, a.labels)
    print(out)


if __name__ == "__main__":
    main()
