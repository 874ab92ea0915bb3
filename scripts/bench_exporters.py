#!/usr/bin/env python3
"""Same network, two exporters: times mnc on a Keras/tf2onnx export and on the torchvision
architecture of the same network (mnc's built-in zoo model, or any ONNX file), interleaved,
and prints the medians and the ratio keras / torchvision.

Each round runs `mnc bench --format json` on every model of every pair in turn (separate
processes, --iters timed runs after the warm-up); the medians of the per-round medians are
reported, so load from other work on a shared machine hits both sides alike.

    python3 scripts/make_exporter_fixtures.py fixtures-full --full --only keras_mobilenet_v2 \\
        keras_mobilenet_v3_small keras_efficientnet_b0
    python3 scripts/bench_exporters.py --mnc target/release/mnc --threads 2 --batch 1 8

Pairs default to the three Keras applications of the fixture script against zoo:NAME.
Needs only the Python standard library.
"""
import argparse
import json
import statistics
import subprocess

PAIRS = [
    ("fixtures-full/keras_mobilenet_v2/model.onnx", "zoo:mobilenet_v2"),
    ("fixtures-full/keras_mobilenet_v3_small/model.onnx", "zoo:mobilenet_v3_small"),
    ("fixtures-full/keras_efficientnet_b0/model.onnx", "zoo:efficientnet_b0"),
]


def bench(mnc, model, batch, threads, iters, target, extra=()):
    out = subprocess.run(
        [mnc, "bench", model, "--format", "json", "--iters", str(iters), "--batch", str(batch),
         "--threads", str(threads), "--target", target, *extra],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)["median_ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnc", default="target/release/mnc")
    ap.add_argument("--target", default="x86_64-avx512")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--nchw-input", action="store_true",
                    help="pass --nchw-input for the Keras models (no input transpose)")
    ap.add_argument("--pair", nargs=2, action="append", metavar=("KERAS", "TORCHVISION"),
                    help="a pair of models (repeatable; default: the three Keras applications)")
    a = ap.parse_args()
    pairs = a.pair or PAIRS
    print(f"target {a.target}, {a.threads} thread(s), {a.rounds} rounds x {a.iters} runs, "
          f"median of round medians (ms){', Keras models with --nchw-input' if a.nchw_input else ''}")
    print(f"{'keras model':<52} {'batch':>5} {'keras':>9} {'torchvision':>12} {'ratio':>6}")
    for batch in a.batch:
        rounds = {p: ([], []) for p in map(tuple, pairs)}
        for _ in range(a.rounds):
            for k, t in rounds:
                extra = ["--nchw-input"] if a.nchw_input else []
                rounds[(k, t)][0].append(bench(a.mnc, k, batch, a.threads, a.iters, a.target, extra))
                rounds[(k, t)][1].append(bench(a.mnc, t, batch, a.threads, a.iters, a.target))
        for (k, t), (ks, ts) in rounds.items():
            mk, mt = statistics.median(ks), statistics.median(ts)
            print(f"{k:<52} {batch:>5} {mk:>9.3f} {mt:>12.3f} {mk / mt:>6.3f}")


if __name__ == "__main__":
    main()
