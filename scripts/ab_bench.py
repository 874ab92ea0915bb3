#!/usr/bin/env python3
"""Alternating A/B timing of two (or more) mnc binaries on one model.

    scripts/ab_bench.py MODEL --bins A B [--target host] [--threads 2] [--rounds 11] [--iters 50]
                        [--per-node] [-- EXTRA mnc bench ARGS]

Each round runs `mnc bench MODEL --format json` once per binary, in the same order, so both
see the same machine state. Without `--per-node` it prints, per binary, the median of the
round medians over the rounds in the VM's normal state (`core_round_trip_ns` below 250, see
docs/BENCHMARKS.md) and, for two binaries, the median ratio B / A over the rounds where both
ran in that state and in how many B was faster. With `--per-node` it adds `--profile` and
prints, per node, the median over rounds of each binary's mean time (ms) and the ratio.
The per-op and whole-model A/B figures of docs/BENCHMARKS.md (sessions 21-22) were taken
this way.
"""
import argparse
import json
import statistics
import subprocess
import sys

SLOW_NS = 250


def bench(binary, a, extra, profile):
    cmd = [binary, "bench", a.model, "--target", a.target, "--threads", str(a.threads),
           "--iters", str(a.iters), "--format", "json"] + (["--profile"] if profile else []) + extra
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--bins", nargs="+", required=True)
    ap.add_argument("--target", default="host")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--per-node", action="store_true")
    a = ap.parse_args(argv)
    rounds = []
    for _ in range(a.rounds):
        rounds.append([bench(b, a, extra, a.per_node) for b in a.bins])
    if a.per_node:
        order = [p["node"] for p in rounds[0][0]["profile"]]
        times = {(i, p["node"]): [] for r in rounds for i, d in enumerate(r) for p in d["profile"]}
        for r in rounds:
            for i, d in enumerate(r):
                for p in d["profile"]:
                    times[(i, p["node"])].append(p["mean_ms"])
        for n in order:
            v = [statistics.median(times.get((i, n), [0.0])) for i in range(len(a.bins))]
            ratio = v[-1] / v[0] if v[0] else 0.0
            print(f"{n[:40]:40}" + "".join(f" {x:8.3f}" for x in v) + f" {ratio:5.2f}")
        return
    for i, b in enumerate(a.bins):
        normal = [r[i]["median_ms"] for r in rounds if (r[i].get("core_round_trip_ns") or 0) < SLOW_NS]
        slow = len(rounds) - len(normal)
        if normal:
            print(f"{b}: normal n={len(normal)} median {statistics.median(normal):.3f} ms, "
                  f"min {min(normal):.3f}; slow n={slow}")
        else:
            print(f"{b}: no round in the normal state; slow n={slow}")
        every = [r[i]["median_ms"] for r in rounds]
        trips = [r[i].get("core_round_trip_ns") or 0 for r in rounds]
        print(f"{b}: every round n={len(every)} median {statistics.median(every):.3f} ms, "
              f"min {min(every):.3f}; round trips {min(trips)}-{max(trips)} ns")
    if len(a.bins) == 2:
        rat = [r[1]["median_ms"] / r[0]["median_ms"] for r in rounds]
        print(f"every round: B / A median {statistics.median(rat):.3f}, "
              f"B faster in {sum(x < 1 for x in rat)} of {len(rat)}")
        both = [r for r in rounds if all((d.get("core_round_trip_ns") or 0) < SLOW_NS for d in r)]
        if both:
            rat = [r[1]["median_ms"] / r[0]["median_ms"] for r in both]
            print(f"rounds both normal: {len(both)}, B / A median {statistics.median(rat):.3f}, "
                  f"B faster in {sum(x < 1 for x in rat)}")


if __name__ == "__main__":
    main()
