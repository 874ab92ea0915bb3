#!/usr/bin/env python3
"""Per-op times of onnxruntime on a model, beside mnc's own per-op profile.

    .venv/bin/python scripts/ort_op_profile.py model.onnx --threads 1
    target/release/mnc bench model.onnx --threads 1 --profile      # mnc's side

Runs the model in onnxruntime (CPU execution provider, all graph optimizations, the given
intra-op threads) with `enable_profiling`, and prints, per executed node, the median of its
`kernel_time` over the timed runs, in execution order, then the total and the sum per op type.
onnxruntime names the nodes it rewrites after the originals (`features.2.conv.1.0_nchwc` for
the NCHWc form of `features.2.conv.1.0`), so the rows line up with mnc's by node name.

Profiling adds a few microseconds per node to onnxruntime's times (the per-op sum is larger
than its unprofiled latency): compare large ops, not the total. Used for the per-op comparison
in docs/BENCHMARKS.md ("Where the remaining gap is").
"""
import argparse
import collections
import json
import os
import statistics
import tempfile

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=20, help="timed runs (after 5 warm-up)")
    a = ap.parse_args()

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="ort_prof_"), "ort")
    s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(5 + a.runs):
        s.run(None, {inp.name: x})
    events = json.load(open(s.end_profiling()))

    times = collections.OrderedDict()
    for e in events:
        name = e.get("name", "")
        if e.get("cat") == "Node" and name.endswith("_kernel_time"):
            key = (name[: -len("_kernel_time")], e["args"].get("op_name", "?"))
            times.setdefault(key, []).append(e["dur"])
    # The last `runs` samples of each node are the timed runs.
    rows = [(k, statistics.median(v[-a.runs:])) for k, v in times.items()]
    by_type = collections.Counter()
    print(f"{'us':>9}  {'op':<20} node")
    for (node, op), us in rows:
        by_type[op] += us
        print(f"{us:9.1f}  {op:<20} {node}")
    print(f"{sum(us for _, us in rows):9.1f}  total (profiled; above the unprofiled latency)")
    for op, us in by_type.most_common():
        print(f"{us:9.1f}  {op}")


if __name__ == "__main__":
    main()
