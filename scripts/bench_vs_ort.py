#!/usr/bin/env python3
"""Times one ONNX model with onnxruntime and with mnc, interleaved, and prints the medians and
the ratio mnc / onnxruntime.

Both run the same file at the same batch and thread count. Each round runs onnxruntime for
--iters timed runs, then `mnc bench` (a separate process, --iters timed runs after its warm-up)
for the same count; the per-round medians are collected and their medians reported, so load
from other work on a shared machine hits both sides alike.

    python3 scripts/bench_vs_ort.py fixtures-full/mobilenet_v2_op13/model.onnx \
        --mnc target/release/mnc --threads 1 --rounds 5 --iters 20

Needs numpy and onnxruntime (scripts/requirements.txt). Batch: the model's own (1 for a
symbolic batch) unless --batch is given, which mnc also receives.
"""
import argparse
import json
import statistics
import subprocess
import time

import numpy as np
import onnxruntime as ort


def ort_session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def input_for(sess, batch):
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    if batch:
        shape[0] = batch
    rng = np.random.default_rng(0)
    return inp.name, rng.uniform(-1, 1, size=shape).astype(np.float32)


def ort_median_ms(sess, name, x, iters, warmup):
    for _ in range(warmup):
        sess.run(None, {name: x})
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, {name: x})
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def mnc_median_ms(args, batch):
    cmd = [args.mnc, "bench", args.model, "--format", "json", "--iters", str(args.iters),
           "--warmup", str(args.warmup), "--threads", str(args.threads)]
    if args.target:
        cmd += ["--target", args.target]
    if batch:
        cmd += ["--batch", str(batch)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--mnc", default="target/release/mnc", help="the mnc binary (build with cargo build --release)")
    ap.add_argument("--target", default=None, help="mnc target (default: mnc's default, the host JIT)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()

    sess = ort_session(args.model, args.threads)
    name, x = input_for(sess, args.batch)
    ort_ms, mnc_ms, target = [], [], None
    for r in range(args.rounds):
        ort_ms.append(ort_median_ms(sess, name, x, args.iters, args.warmup))
        j = mnc_median_ms(args, args.batch)
        mnc_ms.append(j["median_ms"])
        target = j["target"]
        print(f"round {r + 1}: onnxruntime {ort_ms[-1]:.3f} ms, mnc ({target}) {mnc_ms[-1]:.3f} ms", flush=True)
    o, m = statistics.median(ort_ms), statistics.median(mnc_ms)
    print(f"\nmodel {args.model}, batch {x.shape[0]}, {args.threads} thread(s), "
          f"{args.rounds} rounds x {args.iters} runs")
    print(f"onnxruntime {ort.__version__}: median {o:.3f} ms")
    print(f"mnc {target}: median {m:.3f} ms")
    print(f"ratio mnc / onnxruntime: {m / o:.2f}")


if __name__ == "__main__":
    main()
