#!/usr/bin/env bash
# RUSTC_WRAPPER of scripts/fuzz.sh: runs rustc with the coverage instrumentation of RUSTFLAGS
# removed for the crates whose inside no fuzz target is about: the Cranelift code generator
# and its register allocator and DWARF writer (they see only graphs mnc's verifier accepted),
# the CUDA driver bindings (no GPU runs in a fuzz target) and the CLI parser. Instrumenting
# them took most of the fuzz build (cranelift-codegen alone ~300 s of a ~580 s build on a
# 2-core machine) and added coverage feedback from code the inputs do not steer. They are
# still built with the fuzz profile (overflow checks, debug assertions): a crash in them is
# still a finding. Everything else (mnc, protobuf, onnx-protobuf, npyz, image and its
# decoders, ...) stays instrumented.
set -euo pipefail
rustc=$1
shift
crate=
prev=
for a in "$@"; do
  if [ "$prev" = --crate-name ]; then crate=$a; break; fi
  prev=$a
done
case "$crate" in
  cranelift_* | regalloc2 | gimli | cudarc | clap_builder)
    args=()
    for a in "$@"; do
      case "$a" in
        -Cpasses=sancov-module | -Cllvm-args=-sanitizer-coverage-*) ;;
        *) args+=("$a") ;;
      esac
    done
    exec "$rustc" "${args[@]}"
    ;;
  *) exec "$rustc" "$@" ;;
esac
