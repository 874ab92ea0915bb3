"""Export torchvision's MobileNetV2 with torch.onnx.export, compile it with mnc, compare the
output with PyTorch's and time both (batch 1, interleaved rounds).

    pip install torch torchvision onnx
    python python/examples/torchvision_mobilenet_v2.py [--threads 2] [--rounds 3] [--iters 20]

Weights are torchvision's random initialization (nothing is downloaded); BatchNorm running
statistics are set away from their defaults so that BN folding is exercised.
"""

import argparse
import io
import statistics
import time

import numpy as np
import torch
import torchvision

import mnc


def median_ms(f, iters):
    t = []
    for _ in range(iters):
        s = time.perf_counter()
        f()
        t.append(time.perf_counter() - s)
    return statistics.median(t) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    net = torchvision.models.mobilenet_v2().eval()
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 224, 224)
    buf = io.BytesIO()
    torch.onnx.export(net, (x,), buf, input_names=["input"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    m = mnc.compile(buf.getvalue(), threads=a.threads)
    print(m.report_text(), end="")
    xn = x.numpy()
    with torch.no_grad():
        y_torch = net(x).numpy()
    (y,) = m.run(xn)
    rel = float(np.max(np.abs(y - y_torch)) / np.max(np.abs(y_torch)))
    print(f"max |mnc - torch| / max |torch| = {rel:.2e}; top-1 equal: "
          f"{int(np.argmax(y)) == int(np.argmax(y_torch))}")
    tm, tt = [], []
    for _ in range(a.rounds):
        tm.append(median_ms(lambda: m.run(xn), a.iters))
        with torch.no_grad():
            tt.append(median_ms(lambda: net(x), a.iters))
    print(f"{a.threads} thread(s), batch 1: mnc {statistics.median(tm):.2f} ms ({m.target}), "
          f"PyTorch eager {statistics.median(tt):.2f} ms "
          f"(medians of {a.rounds} interleaved rounds x {a.iters} runs)")


if __name__ == "__main__":
    main()
