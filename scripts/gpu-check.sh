#!/usr/bin/env bash
# One prepared command for a machine with an NVIDIA GPU, no network and no Rust toolchain.
#
# Beforehand (on the build machine), build the CUDA test executable and copy it into the
# self-ignoring folder .gpu-carry/:
#   cargo test --release -p mnc-tests --test cuda_gpu --no-run   # prints "Executable ... (PATH)"
#   mkdir -p .gpu-carry && printf '*\n' > .gpu-carry/.gitignore && cp PATH .gpu-carry/cuda_gpu
# then run this script from the repository root on the GPU machine (the committed fixtures
# under tests/fixtures travel with the tree). It
#   1. prints the GPU,
#   2. runs the GPU correctness tests (every fixture and zoo model against the reference
#      executor within 1e-4 * max|y_ref|, ragged-shape property tests; the int8 kernels,
#      dp4a and tensor-core mma, EQUAL to the reference),
#   3. benchmarks MobileNetV2 and EfficientNet-B0 at batch 1 and 256 with mnc (exact f32,
#      then allow_tf32),
#   4. benchmarks the same torchvision models with PyTorch eager (cuDNN; fp32 with TF32 off,
#      then TF32 on, like mnc's allow_tf32 rows) if python3 has torch and torchvision,
#      and prints a markdown table.
# Usage: scripts/gpu-check.sh [CARRY_DIR]   (default: .gpu-carry). Whole run: under 5 minutes.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
carry="${1:-.gpu-carry}"
bin="$carry/cuda_gpu"
status=0
if [ ! -x "$bin" ]; then
    echo "gpu-check: no test executable at $bin (build it first, see the header of this script)" >&2
    exit 2
fi
log="$(mktemp -d)"
echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader || true

echo "== GPU correctness tests (fixtures, zoo models, ragged shapes, int8)"
# One process per test (in parallel): a fault in one cannot poison the others' CUDA context.
tests="fixtures_match_reference zoo_models_match_reference ragged_convs_match_reference ragged_gemms_match_reference ragged_pools_se_softmax_match_reference tf32_gemms_and_models_close_to_reference int8_quant_fixture_equals_reference int8_ops_equal_reference ragged_qconvs_equal_reference ragged_pointwise_qconvs_equal_reference"
for t in $tests; do
    timeout 90 "$bin" --exact "$t" --nocapture > "$log/test-$t.txt" 2>&1 &
done
wait
for t in $tests; do
    if grep -q "test result: ok. 1 passed" "$log/test-$t.txt"; then
        echo "PASS $t"
        grep -E "max err|SKIPPED" "$log/test-$t.txt" | sed 's/^/    /'
    else
        echo "FAIL $t"
        grep -vE '^(running|$)' "$log/test-$t.txt" | grep -v '^   [0-9]*: \|^             at ' | tail -40 | sed 's/^/    /'
        status=1
    fi
done

echo "== mnc benchmark"
timeout 90 "$bin" --ignored bench_zoo_models --nocapture --test-threads 1 2>&1 | tee "$log/mnc.txt" \
    | grep -E 'BENCH|max err|panicked|error' || status=1

echo "== PyTorch eager benchmark"
if python3 -c 'import torch, torchvision; assert torch.cuda.is_available()' 2>/dev/null; then
    timeout 90 python3 - <<'PY' 2>&1 | tee "$log/torch.txt" | grep -E 'BENCH|Error|error'
import time, torch, torchvision
torch.backends.cudnn.benchmark = True
dev = torch.device("cuda")
for tf32 in [False, True]:
  torch.backends.cudnn.allow_tf32 = tf32
  torch.backends.cuda.matmul.allow_tf32 = tf32
  who = "torch-tf32" if tf32 else "torch"
  for name in ["mobilenet_v2", "efficientnet_b0"]:
    model = getattr(torchvision.models, name)(weights=None).eval().to(dev)
    for batch in [1, 256]:
        x = torch.randn(batch, 3, 224, 224, device=dev)
        iters = 200 if batch == 1 else 10
        with torch.inference_mode():
            for _ in range(5 if batch == 1 else 3):
                model(x)
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(iters):
                model(x)
            torch.cuda.synchronize()
            ms = (time.perf_counter() - t) * 1e3 / iters
        print(f"BENCH {who} {name} batch={batch} ms={ms:.3f} img_per_s={batch * 1e3 / ms:.1f} torch={torch.__version__} cudnn={torch.backends.cudnn.version()}", flush=True)
PY
else
    echo "SKIPPED PyTorch column: python3 has no torch/torchvision with CUDA on this machine"
fi

echo "== Table (fp32: mnc exact f32 FMA, PyTorch eager cuDNN with TF32 off; tf32: both allow TF32 tensor cores)"
python3 - "$log/mnc.txt" "$log/torch.txt" <<'PY' 2>/dev/null || grep -h BENCH "$log"/*.txt
import re, sys
rows = {}
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for l in lines:
        m = re.match(r"BENCH (\S+) (\S+) batch=(\d+) ms=([\d.]+) img_per_s=([\d.]+)", l)
        if m:
            who, model, batch, ms, ips = m.groups()
            system, _, prec = who.partition("-")
            rows.setdefault((model, prec or "fp32", int(batch)), {})[system] = (float(ms), float(ips))
print("| model | precision | batch | mnc ms | mnc img/s | PyTorch ms | PyTorch img/s | mnc / PyTorch throughput |")
print("|---|---|---|---|---|---|---|---|")
for (model, prec, batch), r in sorted(rows.items()):
    a = r.get("mnc"); b = r.get("torch")
    f = lambda v: f"{v[0]:.3f} | {v[1]:.1f}" if v else "- | -"
    ratio = f"{a[1] / b[1]:.2f}" if a and b else "-"
    print(f"| {model} | {prec} | {batch} | {f(a)} | {f(b)} | {ratio} |")
PY
rm -rf "$log"
exit $status
