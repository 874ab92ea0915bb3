"""Writes tests/zoo/state_dict_keys.txt: the state-dict keys and shapes of the models the mnc
zoo reproduces (torchvision; timm's mobilenetv1_100 for mobilenet_v1), one
`model key dim,dim,...` per line, `num_batches_tracked` counters left out (they are training
bookkeeping, not part of the inference graph). The zoo test compares the zoo's --keep-bn
constants against this file.

Run: /work/pyenv/bin/python tests/zoo/state_dict_keys.py
"""
import os

import timm
import torchvision.models as tvm

MODELS = [
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
] + [f"efficientnet_b{i}" for i in range(8)]


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "state_dict_keys.txt")
    lines = []
    for name in MODELS:
        if name == "mobilenet_v1":
            m = timm.create_model("mobilenetv1_100", pretrained=False)
        else:
            m = getattr(tvm, name)(weights=None)
        for k, v in m.state_dict().items():
            if k.endswith("num_batches_tracked"):
                continue
            lines.append(f"{name} {k} {','.join(str(d) for d in v.shape)}")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} keys to {out}")


if __name__ == "__main__":
    main()
