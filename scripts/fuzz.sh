#!/usr/bin/env bash
# Builds mnc's libFuzzer targets (fuzz/) on stable Rust and runs each for a bounded time.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 20 s each; targets: onnx_compile
#                                              artifact npy image)
#   scripts/fuzz.sh --build-only              (the build alone: .ci/run starts it early)
#
# No nightly and no cargo-fuzz: the targets link libFuzzer through the libfuzzer-sys crate and
# get their coverage instrumentation from LLVM's sanitizer-coverage pass, which stable rustc
# runs with -Cpasses=sancov-module. Overflow checks and debug assertions are on (fuzz/Cargo.toml).
# Each target starts from the committed corpus fuzz/corpus/<target>/ plus seeds generated from
# the fixtures into fuzz/seeds/<target>/; new inputs go to fuzz/work/<target>/ and crashes to
# fuzz/artifacts/<target>/ (all three git-ignored). The mutation seed is fixed (-seed=1), so a
# run of the same code over the same corpus is repeatable (CI must not fail by chance). Exits 1 if any target found a crash, a
# timeout (an input taking > 10 s), a resident size over 2 GiB or a single allocation over
# 2 GiB (the fuzz binaries' allocator aborts on one: fuzz/src/lib.rs). fuzz/README.md says how to
# run longer and how to turn a finding into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=0
if [ "${1:-}" = --build-only ]; then
  build_only=1
  shift
fi
secs=${1:-20}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(onnx_compile artifact npy image)
fi

# An explicit --target keeps RUSTFLAGS away from build scripts and proc macros (which must
# not be instrumented: nothing links libFuzzer into them).
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing"
# Code generation libraries are built without the instrumentation (scripts/fuzz-rustc.sh
# says which and why).
export RUSTC_WRAPPER="$PWD/scripts/fuzz-rustc.sh"
start=$(date +%s)
cargo build --release --manifest-path fuzz/Cargo.toml --target "$host" --bins
bin=fuzz/target/$host/release
echo "fuzz.sh: build took $(( $(date +%s) - start )) s"
if [ "$build_only" = 1 ]; then
  exit 0
fi

rm -rf fuzz/seeds
"$bin/make_seeds" fuzz/seeds

# One target per CPU at a time (each is one process; time-bounded, so the wall time is
# ceil(targets / CPUs) x SECONDS).
run_one() {
  local t=$1
  mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t" "fuzz/corpus/$t"
  local extra=()
  # The largest fixture models are ~1.8 MB: keep them whole as seeds.
  if [ "$t" = onnx_compile ]; then extra=(-max_len=2000000); fi
  "$bin/$t" "fuzz/work/$t" "fuzz/corpus/$t" "fuzz/seeds/$t" \
    -max_total_time="$secs" -seed=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 "${extra[@]}" \
    2> "fuzz/artifacts/$t.log"
}
jobs=$(nproc 2>/dev/null || echo 1)
failed=()
for ((k = 0; k < ${#targets[@]}; k += jobs)); do
  batch=("${targets[@]:k:jobs}")
  pids=()
  for t in "${batch[@]}"; do
    echo "fuzz.sh: $t for ${secs} s"
    run_one "$t" &
    pids+=($!)
  done
  for i in "${!batch[@]}"; do
    t=${batch[$i]}
    if ! wait "${pids[$i]}"; then
      failed+=("$t")
      tail -n 60 "fuzz/artifacts/$t.log"
    fi
    grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)" \
      "fuzz/artifacts/$t.log" | sed "s/^/fuzz.sh: $t: /" || true
  done
done
echo "fuzz.sh: total $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in fuzz/artifacts/<target>.log)"
  exit 1
fi
echo "fuzz.sh: no finding in ${#targets[@]} targets"
