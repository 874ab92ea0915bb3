#!/usr/bin/env python3
"""mnc against onnxruntime and OpenVINO on CPU: one interleaved run, one table.

Times every (model, batch, threads) configuration with

  * onnxruntime   (in-process, CPU execution provider, intra_op_num_threads = T,
                   inter_op_num_threads = 1, sequential execution, default graph optimizations),
  * OpenVINO      (in-process, CPU plugin, INFERENCE_PRECISION_HINT f32, INFERENCE_NUM_THREADS = T,
                   PERFORMANCE_HINT LATENCY, one infer request),
  * OpenVINO AVX2 (the same in a worker process started with ONEDNN_MAX_CPU_ISA=AVX2, which caps
                   the plugin's oneDNN kernels at AVX2: the like-for-like baseline of mnc's
                   `x86_64-avx2` target on an AVX-512 machine, where onnxruntime has no such
                   switch; the worker records the conv primitives the plugin picked, and the
                   script stops if any is not an AVX2 one),
  * mnc           (`mnc bench MODEL --format json --threads T --batch B --target TARGET`, a
                   separate process per measurement, once per --targets entry),

and prints / writes the medians and the ratios. Interleaving: each round visits every
configuration; for each, every engine does --warmup untimed and --iters timed runs, the engine
order rotated by one place per round; an engine's figure for the round is the median of its
timed runs. The table reports the median over rounds, so load from other work on a shared
machine hits every engine alike. onnxruntime and OpenVINO keep one session per configuration
for the whole run; mnc starts a fresh process per round (`mnc bench`), whose first runs carry
its start-up (pool threads spawned and placed, first touches of the arena and the weights,
the run-level thread choice's first comparison of pool and serial runs): --mnc-startup extra
untimed runs (default 10) in each mnc round cover it, so that every engine's timed runs
start from a warm session.

    python3 scripts/bench_vs_ort.py --mnc target/release/mnc --out /tmp/bench

Models: positional arguments, each a zoo name (default: mobilenet_v2 efficientnet_b0
mobilenet_v3_small mobilenet_v3_large; written with `mnc zoo NAME --batch B -o FILE.onnx`, the
BN-folded form with random weights and non-default BatchNorm statistics) or a path to an .onnx
file. Every engine runs the same file (one per batch). A file whose batch dimension is static
and differs from the requested batch is copied with a symbolic batch dimension.

Before timing, every engine runs the same seeded input once per (model, batch) and the outputs
are compared with onnxruntime's (OpenVINO and each mnc target via `mnc run --input/--output`);
a difference above --tolerance * max(1, max|y_ort|) stops the script (--no-check skips it).

--busy-core CPU keeps one core busy (`taskset -c CPU sh -c 'while :; do :; done'`) for the
whole run, to measure how the 2-thread figures degrade under load; it is killed at the end,
also on Ctrl-C, SIGTERM or an error.

Needs numpy, onnx, onnxruntime and openvino (scripts/requirements.txt) and a release mnc
(`cargo build --release -p mnc`). --engines drops engines (e.g. `--engines ort mnc` without
OpenVINO installed).
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ZOO_DEFAULT = ["mobilenet_v2", "efficientnet_b0", "mobilenet_v3_small", "mobilenet_v3_large"]
LABELS = {
    "mobilenet_v1": "MobileNetV1",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_small": "MobileNetV3-Small",
    "mobilenet_v3_large": "MobileNetV3-Large",
    **{f"efficientnet_b{i}": f"EfficientNet-B{i}" for i in range(8)},
}
ENGINE_NAMES = {"ort": "onnxruntime", "openvino": "OpenVINO f32", "openvino-avx2": "OpenVINO f32 AVX2"}
# The environment of the OpenVINO AVX2 worker: oneDNN's ISA cap (read when the library loads).
OPENVINO_AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2"}


# ---------------------------------------------------------------------------------------------
# Models and inputs


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_label(spec):
    if spec in LABELS or not spec.endswith(".onnx"):
        return LABELS.get(spec, spec)
    base = os.path.basename(spec)
    if base == "model.onnx":  # fixtures-full/NAME/model.onnx
        return os.path.basename(os.path.dirname(os.path.abspath(spec)))
    return base[: -len(".onnx")]


def is_quantized(path):
    """Whether the model holds QuantizeLinear nodes (QDQ or operator-form int8)."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    return any(n.op_type == "QuantizeLinear" for n in m.graph.node)


def onnx_batch(path):
    """The first input's first dimension: an int when static, None when symbolic."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    inp = [i for i in m.graph.input if i.name not in inits][0]
    d = inp.type.tensor_type.shape.dim[0]
    return d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None


def input_shape(path, batch):
    """The first graph input's shape with `batch` as its first dimension (other symbolic
    dimensions are refused: the zoo and torchvision exports have none)."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    inp = [i for i in m.graph.input if i.name not in inits][0]
    shape = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if None in shape[1:]:
        raise RuntimeError(f"{path}: input {inp.name} has a symbolic dimension other than the batch")
    return [batch] + shape[1:]


def with_symbolic_batch(src, dst):
    """Copies an ONNX file with the first dimension of every graph input and output symbolic."""
    import onnx

    m = onnx.load(src)
    inits = {i.name for i in m.graph.initializer}
    for v in list(m.graph.input) + list(m.graph.output):
        if v.name in inits or not v.type.tensor_type.shape.dim:
            continue
        d = v.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_param = "batch"
    del m.graph.value_info[:]
    onnx.save(m, dst)


def prepare_files(a, spec, work):
    """Returns {batch: info} with the ONNX file every engine runs for that batch."""
    files = {}
    for b in a.batch:
        if spec.endswith(".onnx"):
            static = onnx_batch(spec)
            if static is None or static == b:
                path, how = spec, "as given"
            else:
                path = os.path.join(work, f"{model_label(spec)}_b{b}_symbolic.onnx")
                with_symbolic_batch(spec, path)
                how = f"copy of {spec} with a symbolic batch dimension (the file's is {static})"
            files[b] = {"path": path, "source": how}
        else:
            path = os.path.join(work, f"{spec}_b{b}.onnx")
            cmd = [a.mnc, "zoo", spec, "--batch", str(b), "--seed", str(a.zoo_seed), "-o", path]
            if a.keep_bn:
                cmd.append("--keep-bn")
            run_checked(cmd)
            files[b] = {"path": path, "source": "mnc " + shlex.join(cmd[1:])}
        files[b]["sha256"] = sha256(files[b]["path"])
        files[b]["bytes"] = os.path.getsize(files[b]["path"])
    return files


def make_input(shape, seed):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Engines


def run_checked(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"`{shlex.join(cmd)}` failed (exit {p.returncode}): {p.stderr.strip()}")
    return p.stdout


def timed_median_ms(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


class OrtEngine:
    key = "ort"

    def __init__(self, path, threads, x):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.path = path
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.feed = {self.sess.get_inputs()[0].name: x}
        self.settings = {
            "provider": self.sess.get_providers()[0],
            "intra_op_num_threads": threads,
            "inter_op_num_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": str(so.graph_optimization_level),
        }

    def output(self):
        return self.sess.run(None, self.feed)[0]

    def round_ms(self, iters, warmup):
        return timed_median_ms(lambda: self.sess.run(None, self.feed), iters, warmup), {}


class OpenVinoEngine:
    key = "openvino"
    core = None

    def __init__(self, path, threads, x, pinning=None):
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hint

        if OpenVinoEngine.core is None:
            OpenVinoEngine.core = ov.Core()
        config = {
            hint.inference_precision: ov.Type.f32,
            props.inference_num_threads: threads,
            hint.performance_mode: hint.PerformanceMode.LATENCY,
        }
        if pinning is not None:
            config[hint.enable_cpu_pinning] = pinning
        model = self.core.read_model(path)
        self.compiled = self.core.compile_model(model, "CPU", config)
        self.req = self.compiled.create_infer_request()
        self.x = x  # kept alive: the tensor shares its memory
        self.req.set_input_tensor(ov.Tensor(x, shared_memory=True))
        # What the plugin actually uses, as it reports it.
        def text(v):
            return v.get_type_name() if isinstance(v, ov.Type) else str(v)

        self.settings = {
            name: text(self.compiled.get_property(name))
            for name in ["INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "PERFORMANCE_HINT",
                         "NUM_STREAMS", "ENABLE_CPU_PINNING", "EXECUTION_DEVICES"]
        }
        # The kernels the plugin picked for the convolutions (e.g. brgconv_avx512_dw_f32).
        prims = set()
        for op in self.compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "primitiveType" in info:
                prim = str(info["primitiveType"].astype(str))
                if "conv" in prim:
                    prims.add(prim)
        self.settings["conv_primitives"] = sorted(prims)

    def output(self):
        self.req.infer()
        return self.req.get_output_tensor(0).data.copy()

    def round_ms(self, iters, warmup):
        return timed_median_ms(self.req.infer, iters, warmup), {}


class OpenVinoAvx2Engine:
    """OpenVINO with oneDNN capped at AVX2 (`OPENVINO_AVX2_ENV`), in a worker process of this
    script (`--openvino-worker`): the cap is read when the library loads, so it cannot apply to
    the in-process OpenVINO. Line protocol on the worker's stdin/stdout: `time ITERS WARMUP` ->
    the median ms; `output PATH` -> the output written to PATH (.npy); one JSON line per
    answer."""

    key = "openvino-avx2"

    def __init__(self, path, threads, x, work, pinning=None):
        x_path = os.path.join(work, f"ovx_{os.getpid()}_{id(self)}.npy")
        np.save(x_path, x)
        cmd = [sys.executable, os.path.abspath(__file__), "--openvino-worker", path, str(threads),
               x_path, "-" if pinning is None else str(int(pinning))]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **OPENVINO_AVX2_ENV})
        self.settings = {**self.ask("settings"), "env": OPENVINO_AVX2_ENV}
        os.remove(x_path)
        wide = [p for p in self.settings["conv_primitives"] if "avx2" not in p]
        if wide:
            raise RuntimeError(f"{path}: OpenVINO with {OPENVINO_AVX2_ENV} still runs conv primitives "
                               f"{wide}: not an AVX2 baseline")

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"OpenVINO AVX2 worker exited (code {self.proc.wait()}) on `{line}`")
        return json.loads(reply)

    def output(self):
        with tempfile.TemporaryDirectory() as d:
            y_path = os.path.join(d, "y.npy")
            self.ask(f"output {y_path}")
            return np.load(y_path)

    def round_ms(self, iters, warmup):
        return self.ask(f"time {iters} {warmup}")["median_ms"], {}

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def openvino_worker(path, threads, x_path, pinning):
    """The OpenVINO AVX2 worker's loop (see `OpenVinoAvx2Engine`)."""
    e = OpenVinoEngine(path, int(threads), np.load(x_path),
                       pinning=None if pinning == "-" else pinning == "1")
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "settings":
            reply = e.settings
        elif cmd[0] == "time":
            reply = {"median_ms": e.round_ms(int(cmd[1]), int(cmd[2]))[0]}
        elif cmd[0] == "output":
            np.save(cmd[1], e.output())
            reply = {}
        else:
            raise SystemExit(f"openvino worker: unknown command {line!r}")
        print(json.dumps(reply), flush=True)


class MncEngine:
    def __init__(self, mnc, path, threads, batch, target, startup=0):
        self.key = f"mnc:{target}"
        self.mnc, self.path, self.threads, self.batch, self.target = mnc, path, threads, batch, target
        self.startup = startup
        self.settings = {"target": target, "threads": threads, "batch": batch, "startup_runs": startup}

    def common(self):
        return ["--threads", str(self.threads), "--batch", str(self.batch), "--target", self.target]

    def output_from(self, x_path, work):
        y_path = os.path.join(work, f"y_{os.getpid()}.npy")
        run_checked([self.mnc, "run", self.path, "--input", x_path, "-o", y_path, *self.common()])
        y = np.load(y_path)
        os.remove(y_path)
        return y

    def round_ms(self, iters, warmup):
        out = run_checked([self.mnc, "bench", self.path, "--format", "json", "--iters", str(iters),
                           "--warmup", str(warmup + self.startup), *self.common()])
        j = json.loads(out)
        return j["median_ms"], {"resolved_target": j["target"], "device": j["device"],
                                "build_ms": j["build_ms"], "min_ms": j["min_ms"], "p90_ms": j["p90_ms"],
                                "pool_stalls": j.get("pool_stalls"),
                                "serial_runs": j.get("serial_runs"),
                                "core_round_trip_ns": j.get("core_round_trip_ns")}


# ---------------------------------------------------------------------------------------------
# Machine, versions, busy core


def machine_info():
    info = {"platform": platform.platform(), "logical_cpus": os.cpu_count(),
            "affinity": sorted(os.sched_getaffinity(0)), "cpu_model": None}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "Flags"):
                if k.strip() == "Model name":
                    info["cpu_model"] = v.strip()
                else:
                    flags = set(v.split())
                    info["isa_flags"] = sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return info


def versions(a):
    v = {"python": platform.python_version(), "numpy": np.__version__}
    if "ort" in a.engines:
        import onnxruntime

        v["onnxruntime"] = onnxruntime.__version__
    if "openvino" in a.engines or "openvino-avx2" in a.engines:
        import openvino

        v["openvino"] = openvino.get_version()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    git = ["git", "-C", repo]
    try:
        v["mnc_commit"] = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True,
                                         text=True).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        v["mnc_worktree_dirty"] = bool(dirty)
    except OSError:
        v["mnc_commit"] = None
    if os.path.exists(a.mnc):
        v["mnc_binary"] = os.path.abspath(a.mnc)
        v["mnc_binary_mtime_utc"] = datetime.datetime.fromtimestamp(
            os.path.getmtime(a.mnc), datetime.timezone.utc).isoformat(timespec="seconds")
    return v


class BusyCore:
    """A busy loop pinned to one CPU for the lifetime of the `with` block."""

    def __init__(self, cpu):
        self.cpu, self.proc = cpu, None

    def __enter__(self):
        if self.cpu is None:
            return self
        if shutil.which("taskset") is None:
            raise RuntimeError("--busy-core needs taskset (util-linux)")
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(self.cpu), "sh", "-c", "while :; do :; done"], start_new_session=True)
        time.sleep(0.2)
        if self.proc.poll() is not None:
            raise RuntimeError(f"the busy loop on CPU {self.cpu} exited at once "
                               f"(exit {self.proc.returncode})")
        return self

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return False

    def record(self):
        if self.cpu is None:
            return None
        return {"cpu": self.cpu, "command": f"taskset -c {self.cpu} sh -c 'while :; do :; done'",
                "pid": self.proc.pid if self.proc else None}


# ---------------------------------------------------------------------------------------------
# Reporting


def fmt_ms(v):
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def short(key):
    return key.split(":", 1)[1].replace("x86_64-", "") if key.startswith("mnc:") else key


def columns(keys):
    """(engine columns, ratio columns) of the table for the engine keys in run order."""
    cols = [(k, ENGINE_NAMES.get(k, f"mnc {k[4:]}")) for k in keys]
    mncs = [k for k in keys if k.startswith("mnc:")]
    ratios = []
    if mncs:
        first = mncs[0]
        for base in ("ort", "openvino"):
            if base in keys:
                name = "ort" if base == "ort" else "OpenVINO"
                ratios.append((first, base, f"mnc {short(first)} / {name}"))
        if "ort" in keys:
            ratios += [(k, "ort", f"{short(k)} / ort") for k in mncs[1:]]
        if "openvino-avx2" in keys:
            ratios += [(k, "openvino-avx2", f"{short(k)} / OpenVINO AVX2")
                       for k in mncs if short(k) == "avx2"]
    return cols, ratios


def markdown(res):
    cols, ratios = columns(res["engine_keys"])
    s = res["settings"]
    lines = [
        "# mnc vs onnxruntime vs OpenVINO (CPU)",
        "",
        f"- machine: {res['machine']['cpu_model']}, {res['machine']['logical_cpus']} logical CPUs, "
        f"load average at start {res['loadavg_start'][0]:.2f}, at end "
        f"{(res.get('loadavg_end') or [float('nan')])[0]:.2f}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()
                                   if k in ("onnxruntime", "openvino", "mnc_commit", "python", "numpy"))
        + (" (with uncommitted changes)" if res["versions"].get("mnc_worktree_dirty") else ""),
    ]
    if res["resolved_targets"]:
        lines.append("- mnc targets: " + ", ".join(f"{k[4:]} = {v}" for k, v in res["resolved_targets"].items()))
    lines += [
        f"- {s['rounds']} rounds x {s['iters']} timed runs (+{s['warmup']} warm-up) per engine, "
        + (f"mnc +{s['mnc_startup']} start-up runs per round (a fresh process each), "
           if s.get("mnc_startup") else "")
        + "engines interleaved, order rotated per round; median over rounds of the per-round medians, ms",
        f"- busy core: {res['busy_core']['command'] if res['busy_core'] else 'none'}",
        f"- command: `{res['command']}`",
        f"- started {res['started_utc']}, {res.get('duration_s', 0):.0f} s"
        + ("" if res.get("complete") else f" (INCOMPLETE: {res['rounds_done']} of {s['rounds']} rounds)"),
        "",
        "| " + " | ".join(["model", "batch", "threads"] + [c[1] for c in cols] + [r[2] for r in ratios])
        + " |",
        "|---|---:|---:|" + "---:|" * (len(cols) + len(ratios)),
    ]
    for c in res["configs"]:
        med = c.get("median_ms", {})
        cells = [c["label"], str(c["batch"]), str(c["threads"])]
        cells += [fmt_ms(med.get(k)) for k, _ in cols]
        rat = c.get("ratios", {})
        cells += [f"{rat[r[2]]:.2f}" if rat.get(r[2]) is not None else "-" for r in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    paired = [c for c in res["configs"] if c.get("median_of_round_ratios")]
    if paired and s["rounds"] > 1:
        lines += ["", "Paired: the median over rounds of each round's ratio (both engines of a ratio "
                  "timed minutes apart at most, so a disturbance that lasts a round moves one "
                  "ratio, not one engine's column):", "",
                  "| model | batch | threads | " + " | ".join(r[2] for r in ratios) + " |",
                  "|---|---:|---:|" + "---:|" * len(ratios)]
        for c in paired:
            mr = c["median_of_round_ratios"]
            lines.append(f"| {c['label']} | {c['batch']} | {c['threads']} | "
                         + " | ".join(f"{mr[r[2]]:.2f}" if mr.get(r[2]) is not None else "-"
                                      for r in ratios) + " |")
    stalled = []
    for c in res["configs"]:
        for k, runs in c.get("mnc_details", {}).items():
            n = sum(d.get("pool_stalls") or 0 for d in runs)
            if n:
                stalled.append(f"{c['label']} b{c['batch']} t{c['threads']} {short(k)}: {n}")
    if stalled:
        lines += ["", "mnc thread-pool stalls in the timed runs, summed over rounds (after 3 within "
                  "50 ms or in a row mnc runs the kernels on its calling thread alone for a while; "
                  "docs/CPU_BACKEND.md, Threads): " + "; ".join(stalled)]
    trips = sorted(d["core_round_trip_ns"] for c in res["configs"]
                   for runs in c.get("mnc_details", {}).values() for d in runs
                   if d.get("core_round_trip_ns") is not None)
    if trips:
        slow = sum(t > SLOW_TRIP_NS for t in trips)
        lines += ["", f"Core-to-core round trip after mnc's multi-thread rounds (`mnc bench`): "
                  f"{trips[0]:.0f}-{trips[-1]:.0f} ns, median {statistics.median(trips):.0f}; "
                  f"{slow} of {len(trips)} above {SLOW_TRIP_NS} ns (the VM's slow state, docs/BENCHMARKS.md)"]
    state_rows = state_table(res, ratios)
    if state_rows:
        lines += ["", "Multi-thread rows by the VM's state (a round counts as slow when the core-to-core "
                  f"round trip `mnc bench` measured after its runs was above {SLOW_TRIP_NS} ns; the "
                  "other engines of the round may have run in the other state): median of the "
                  "per-round ratios, rounds in parentheses", "",
                  "| model | batch | threads | ratio | normal state | slow state |",
                  "|---|---:|---:|---|---:|---:|"] + state_rows
    if res.get("checks"):
        lines += ["", "Output check (same input, max |y - y_ort|, max |y_ort|):", ""]
        for ch in res["checks"]:
            diffs = ", ".join(f"{short(k) if k.startswith('mnc:') else ENGINE_NAMES.get(k, k)} {v:.2e}"
                              for k, v in ch["max_abs_diff_vs_ort"].items())
            lines.append(f"- {ch['label']} batch {ch['batch']}: {diffs} (max |y_ort| {ch['max_abs_ort']:.3g})")
    return "\n".join(lines) + "\n"


SLOW_TRIP_NS = 250


def state_table(res, ratios):
    """Rows of the per-state table: for every multi-thread config and every ratio whose
    numerator is an mnc engine, the median per-round ratio over normal-state and slow-state
    rounds (by that engine's round trip of the round)."""
    rows = []
    for c in res["configs"]:
        if c["threads"] < 2:
            continue
        for num, den, label in ratios:
            runs = c.get("mnc_details", {}).get(num)
            nums, dens = c["rounds_ms"].get(num, []), c["rounds_ms"].get(den, [])
            if not runs or not nums or not dens:
                continue
            groups = {False: [], True: []}
            for d, n, m in zip(runs, nums, dens):
                trip = d.get("core_round_trip_ns")
                if trip is not None:
                    groups[trip > SLOW_TRIP_NS].append(n / m)

            def cell(v):
                return f"{statistics.median(v):.2f} ({len(v)})" if v else "- (0)"
            if groups[False] or groups[True]:
                rows.append(f"| {c['label']} | {c['batch']} | {c['threads']} | {label} | "
                            f"{cell(groups[False])} | {cell(groups[True])} |")
    return rows


def summarize(cfg, keys):
    cfg["median_ms"] = {k: statistics.median(v) for k, v in cfg["rounds_ms"].items() if v}
    _, ratios = columns(keys)
    cfg["ratios"], cfg["median_of_round_ratios"] = {}, {}
    for num, den, label in ratios:
        if num in cfg["median_ms"] and den in cfg["median_ms"]:
            cfg["ratios"][label] = cfg["median_ms"][num] / cfg["median_ms"][den]
            cfg["median_of_round_ratios"][label] = statistics.median(
                n / d for n, d in zip(cfg["rounds_ms"][num], cfg["rounds_ms"][den]))


def write_out(res, prefix):
    if not prefix:
        return
    d = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(d, exist_ok=True)
    for ext, text in ((".json", json.dumps(res, indent=1) + "\n"), (".md", markdown(res))):
        tmp = prefix + ext + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, prefix + ext)


# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", metavar="MODEL",
                    help=f"zoo names or .onnx files (default: {' '.join(ZOO_DEFAULT)})")
    ap.add_argument("--mnc", default="target/release/mnc", help="the mnc binary (cargo build --release -p mnc)")
    ap.add_argument("--targets", "--target", nargs="+", default=["host", "x86_64-avx2"], dest="targets",
                    help="mnc targets, one column each (default: host x86_64-avx2)")
    ap.add_argument("--engines", nargs="+", default=["ort", "openvino", "openvino-avx2", "mnc"],
                    choices=["ort", "openvino", "openvino-avx2", "mnc"])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30, help="timed runs per engine per round")
    ap.add_argument("--warmup", type=int, default=5, help="untimed runs before each engine's timed runs")
    ap.add_argument("--mnc-startup", type=int, default=10,
                    help="extra untimed runs per mnc round: its fresh process's start-up, which the "
                         "other engines' persistent sessions paid before the first round")
    ap.add_argument("--seed", type=int, default=0, help="seed of the input (uniform in [-1, 1))")
    ap.add_argument("--zoo-seed", type=int, default=0, help="`mnc zoo --seed` of the zoo models' weights")
    ap.add_argument("--keep-bn", action="store_true",
                    help="zoo models with Conv -> BatchNormalization instead of the BN-folded form")
    ap.add_argument("--busy-core", type=int, default=None, metavar="CPU",
                    help="keep this CPU busy with a pinned shell loop during the whole run")
    ap.add_argument("--openvino-pinning", choices=["on", "off"], default=None,
                    help="OpenVINO's ENABLE_CPU_PINNING (default: the plugin's; it pins its worker threads "
                         "in the latency mode, which matters with --busy-core)")
    ap.add_argument("--tolerance", type=float, default=1e-3,
                    help="output check: max |y - y_ort| <= TOL * max(1, max |y_ort|)")
    ap.add_argument("--int8-tolerance", type=float, default=0.05,
                    help="the output check's TOL for quantized models (files with QuantizeLinear nodes: "
                         "engines may round differently, by up to a quantization step per layer)")
    ap.add_argument("--no-check", action="store_true", help="skip the output check")
    ap.add_argument("--out", default=None, metavar="PREFIX", help="write PREFIX.md and PREFIX.json")
    ap.add_argument("--work-dir", default=None,
                    help="where the zoo .onnx files go (default: a temporary folder, removed at the end)")
    a = ap.parse_args(argv)
    a.models = a.models or ZOO_DEFAULT
    labels = [model_label(m) for m in a.models]
    if len(set(labels)) != len(labels):
        ap.error(f"two models with the same name in the table: {labels}")
    a.openvino_pinning = None if a.openvino_pinning is None else a.openvino_pinning == "on"
    for n, v in (("--rounds", a.rounds), ("--iters", a.iters)):
        if v < 1:
            ap.error(f"{n} must be at least 1")
    if min(a.batch) < 1 or min(a.threads) < 1:
        ap.error("--batch and --threads must be at least 1")
    if a.busy_core is not None and a.busy_core not in os.sched_getaffinity(0):
        ap.error(f"--busy-core {a.busy_core}: not a CPU this process may use")
    needs_mnc = "mnc" in a.engines or any(not m.endswith(".onnx") for m in a.models)
    if needs_mnc and not os.access(a.mnc, os.X_OK):
        ap.error(f"{a.mnc}: no mnc binary (cargo build --release -p mnc, or --mnc PATH)")
    if "ort" not in a.engines and not a.no_check:
        ap.error("the output check compares with onnxruntime: keep ort in --engines or give --no-check")
    return a


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--openvino-worker"]:
        return openvino_worker(*argv[1:])
    a = parse_args(argv)
    # SIGTERM ends like Ctrl-C, so the busy loop and the temporary folder are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_start = time.time()
    res = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(a),
        "loadavg_start": list(os.getloadavg()),
        "settings": {k: getattr(a, k) for k in (
            "models", "batch", "threads", "targets", "engines", "rounds", "iters", "warmup", "seed",
            "zoo_seed", "keep_bn", "tolerance", "openvino_pinning", "mnc_startup")},
        "complete": False,
        "rounds_done": 0,
    }
    work = a.work_dir or tempfile.mkdtemp(prefix="bench_vs_ort_")
    os.makedirs(work, exist_ok=True)
    try:
        with BusyCore(a.busy_core) as busy:
            res["busy_core"] = busy.record()
            run(a, res, work, t_start)
    finally:
        if a.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def run(a, res, work, t_start):
    engine_keys = [k for k in ("ort", "openvino", "openvino-avx2") if k in a.engines]
    if "mnc" in a.engines:
        engine_keys += [f"mnc:{t}" for t in a.targets]
    res["engine_keys"] = engine_keys
    res["resolved_targets"] = {}
    print(f"engines: {', '.join(engine_keys)}; {a.rounds} rounds x {a.iters} runs (+{a.warmup} warm-up)",
          flush=True)
    if res["busy_core"]:
        print(f"busy loop on CPU {a.busy_core} (pid {res['busy_core']['pid']})", flush=True)

    # Setup: files, inputs, sessions, output check.
    configs, engines, res["models"], res["checks"], res["engine_settings"] = [], {}, [], [], {}
    for spec in a.models:
        label = model_label(spec)
        print(f"preparing {label}: files, sessions, output check", flush=True)
        files = prepare_files(a, spec, work)
        res["models"].append({"spec": spec, "label": label,
                              "files": {str(b): f for b, f in files.items()}})
        for b in a.batch:
            path = files[b]["path"]
            x = make_input(input_shape(path, b), a.seed)
            for t in a.threads:
                es = []
                if "ort" in a.engines:
                    es.append(OrtEngine(path, t, x))
                if "openvino" in a.engines:
                    es.append(OpenVinoEngine(path, t, x, pinning=a.openvino_pinning))
                if "openvino-avx2" in a.engines:
                    es.append(OpenVinoAvx2Engine(path, t, x, work, pinning=a.openvino_pinning))
                if "mnc" in a.engines:
                    es += [MncEngine(a.mnc, path, t, b, tg, a.mnc_startup) for tg in a.targets]
                key = f"{label} b{b} t{t}"
                engines[key] = es
                for e in es:
                    res["engine_settings"].setdefault(key, {})[e.key] = e.settings
                configs.append({"key": key, "model": spec, "label": label, "batch": b, "threads": t,
                                "file": path, "rounds_ms": {e.key: [] for e in es},
                                "round_order": [], "mnc_details": {e.key: [] for e in es if e.key.startswith("mnc:")}})
                if t == a.threads[0] and not a.no_check:
                    res["checks"].append(check_outputs(a, label, b, x, es, work))

    res["configs"] = configs
    write_out(res, a.out)
    for r in range(a.rounds):
        for cfg in configs:
            es = engines[cfg["key"]]
            k = r % len(es)
            order = es[k:] + es[:k]
            cfg["round_order"].append([e.key for e in order])
            line = []
            for e in order:
                ms, details = e.round_ms(a.iters, a.warmup)
                cfg["rounds_ms"][e.key].append(ms)
                if details:
                    cfg["mnc_details"][e.key].append(details)
                    res["resolved_targets"][e.key] = details["resolved_target"]
                line.append(f"{short(e.key) if e.key.startswith('mnc:') else e.key} {ms:.3f}")
            print(f"round {r + 1}/{a.rounds} {cfg['key']}: " + ", ".join(line) + " ms", flush=True)
            summarize(cfg, engine_keys)
        res["rounds_done"] = r + 1
        res["duration_s"] = time.time() - t_start
        res["loadavg_end"] = list(os.getloadavg())
        write_out(res, a.out)
    for es in engines.values():
        for e in es:
            if isinstance(e, OpenVinoAvx2Engine):
                e.close()
    res["complete"] = True
    res["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    res["duration_s"] = time.time() - t_start
    write_out(res, a.out)
    print()
    print(markdown(res), end="")
    if a.out:
        print(f"\nwrote {a.out}.md and {a.out}.json")


def check_outputs(a, label, batch, x, es, work):
    """Runs every engine once on x; compares with onnxruntime. Raises on a mismatch."""
    by_key = {e.key: e for e in es}
    ref = by_key["ort"].output()
    x_path = os.path.join(work, f"x_{os.getpid()}.npy")
    np.save(x_path, x)
    diffs = {}
    for e in es:
        if e.key == "ort":
            continue
        y = e.output_from(x_path, work) if isinstance(e, MncEngine) else e.output()
        if y.shape != ref.shape:
            raise RuntimeError(f"{label} batch {batch}: {e.key} output shape {y.shape}, onnxruntime {ref.shape}")
        diffs[e.key] = float(np.max(np.abs(y.astype(np.float64) - ref)))
    os.remove(x_path)
    scale = float(np.max(np.abs(ref)))
    tol = a.int8_tolerance if is_quantized(by_key["ort"].path) else a.tolerance
    ch = {"label": label, "batch": batch, "threads": es[0].settings.get("intra_op_num_threads"),
          "max_abs_ort": scale, "max_abs_diff_vs_ort": diffs, "tolerance": tol * max(1.0, scale)}
    print(f"check {label} batch {batch}: max |y - y_ort| "
          + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()) + f" (max |y_ort| {scale:.3g})", flush=True)
    bad = {k: v for k, v in diffs.items() if not v <= ch["tolerance"]}
    if bad:
        raise RuntimeError(f"{label} batch {batch}: outputs differ from onnxruntime's by more than "
                           f"{ch['tolerance']:.2e}: {bad} (--no-check to time anyway)")
    return ch


if __name__ == "__main__":
    main()
