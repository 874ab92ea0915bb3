#!/usr/bin/env python3
"""Quantizes an ONNX model with onnxruntime's `quantize_static` (the reference QDQ writer), for
benchmarks and fixtures:

    python3 scripts/quantize_ort.py IN.onnx OUT.onnx [--format qdq|qoperator] [--samples 16]

QDQ format (default) or the operator format, per-channel int8 weights, uint8 activations,
MinMax calibration on --samples inputs drawn uniformly from [-1, 1) with --seed (the
distribution bench_vs_ort.py times on: calibrated for latency measurements, not for accuracy;
`mnc quantize --calibrate` calibrates on real data). The input's batch dimension must be static
or symbolic; calibration runs at batch 1.

Needs numpy, onnx and onnxruntime (scripts/requirements.txt).
"""
import argparse

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--format", choices=["qdq", "qoperator"], default="qdq")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    m = onnx.load(a.src, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    inp = [i for i in m.graph.input if i.name not in inits][0]
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
             for d in inp.type.tensor_type.shape.dim]
    shape[0] = shape[0] or 1
    rng = np.random.default_rng(a.seed)
    samples = [rng.uniform(-1.0, 1.0, size=shape).astype(np.float32) for _ in range(a.samples)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {inp.name: x}

    quantize_static(
        a.src, a.dst, Reader(),
        quant_format=QuantFormat.QDQ if a.format == "qdq" else QuantFormat.QOperator,
        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    print(f"wrote {a.dst} ({a.format}, {a.samples} calibration samples, seed {a.seed})")


if __name__ == "__main__":
    main()
