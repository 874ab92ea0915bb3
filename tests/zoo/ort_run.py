"""Runs an ONNX model with onnxruntime for the mnc zoo/export tests.

usage: ort_run.py MODEL.onnx INPUT.npy OUTPUT.npy

Checks the model with onnx.checker (full check, with shape inference), reshapes the 1-D
float32 INPUT.npy to the model's (static) input shape, runs onnxruntime's CPU provider with
graph optimizations disabled and writes the first output, flattened, to OUTPUT.npy.
Exit status 0 on success; any failure raises.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main():
    model_path, in_path, out_path = sys.argv[1:4]
    onnx.checker.check_model(model_path, full_check=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.load(in_path).astype(np.float32).reshape(inp.shape)
    y = sess.run(None, {inp.name: x})[0]
    np.save(out_path, np.ascontiguousarray(y, dtype=np.float32).reshape(-1))


if __name__ == "__main__":
    main()
