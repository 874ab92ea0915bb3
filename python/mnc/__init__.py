"""mnc: a model compiler for ONNX convolutional networks (MobileNet, EfficientNet).

Compile a model for this CPU (Cranelift JIT) or an NVIDIA GPU (PTX), run it on NumPy
arrays, benchmark it, and read torchinfo-style cost reports, from the same Rust code the
`mnc` command-line tool runs.

    >>> import mnc, numpy as np
    >>> m = mnc.compile("zoo:mobilenet_v2")            # or a path, ONNX bytes, onnx.ModelProto
    >>> x = np.zeros(m.inputs[0].shape, np.float32)
    >>> y, = m.run(x)                                  # list of numpy arrays, one per output
    >>> m.report()["ops"]                              # the compile report as a dict
    >>> mnc.bench("zoo:mobilenet_v2")["median_ms"]     # `mnc bench --format json` fields
    >>> mnc.cost_report("zoo:efficientnet_b0", freeze=["features"])["total_params"]

Functions: compile, load, bench, cost_report, zoo, zoo_names, host_target, host_targets.
Classes: CompiledModel, TensorInfo. Exceptions: Error and its subclasses ModelError,
CompileError, RunError, InputError (also a ValueError).

Targets: "host" (the widest x86-64 ISA this CPU runs), "x86_64", "x86_64-avx2",
"x86_64-avx512", "reference" (the naive oracle), "cuda" / "cuda-sm80" / "cuda-sm90".
"""

from .errors import CompileError, Error, InputError, ModelError, RunError
from ._mnc import (
    CompiledModel,
    TensorInfo,
    __version__,
    bench,
    compile,
    cost_report,
    host_target,
    host_targets,
    load,
    zoo,
    zoo_names,
)

__all__ = [
    "CompiledModel",
    "TensorInfo",
    "Error",
    "ModelError",
    "CompileError",
    "RunError",
    "InputError",
    "compile",
    "load",
    "bench",
    "cost_report",
    "zoo",
    "zoo_names",
    "host_target",
    "host_targets",
    "__version__",
]
