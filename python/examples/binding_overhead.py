"""What the Python binding adds per call over `mnc bench`'s Rust loop, at batch 1.

    python python/examples/binding_overhead.py [--rounds 7] [--iters 300] [--threads 1]

For each model, rounds alternate between the Rust loop (`CompiledModel.bench`, which times
`Model::run` in Rust) and a Python loop calling `CompiledModel.run` on a NumPy array; the
overhead is the median over rounds of (Python median - Rust median). Both time the same
compiled model, so the difference is the binding: argument parsing, the input copy into a
tensor, the GIL release and the output arrays.
"""

import argparse
import statistics
import time

import numpy as np

import mnc


def python_median_ms(m, x, iters):
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        m.run(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    small = mnc.zoo("mobilenet_v3_small", resolution=32, num_classes=10)
    for name, model in (("MobileNetV3-Small 32px", small), ("MobileNetV3-Small 224px", "zoo:mobilenet_v3_small")):
        m = mnc.compile(model, threads=a.threads)
        x = np.random.default_rng(0).standard_normal(m.inputs[0].shape, dtype=np.float32)
        diffs = []
        for _ in range(a.rounds):
            rust = m.bench(iters=a.iters, warmup=10)["median_ms"]
            py = python_median_ms(m, x, a.iters)
            diffs.append((py - rust) * 1e3)
        print(f"{name} on {m.target}, {a.threads} thread(s): Python run() - Rust loop = "
              f"{statistics.median(diffs):.1f} us per call (median of {a.rounds} rounds; "
              f"rounds {min(diffs):.1f} .. {max(diffs):.1f} us)")


if __name__ == "__main__":
    main()
