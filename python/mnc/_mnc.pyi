"""Type stubs of mnc's native module (see the docstrings of the functions for details)."""

import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

ModelLike = Union[str, "os.PathLike[str]", bytes, Any]  # Any: an onnx.ModelProto

__version__: str

class TensorInfo:
    """Name, shape and dtype of a model input or output."""

    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> List[int]: ...
    @property
    def dtype(self) -> str: ...
    def __eq__(self, other: object) -> bool: ...

class CompiledModel:
    """A model compiled for one target and batch."""

    @property
    def inputs(self) -> List[TensorInfo]: ...
    @property
    def outputs(self) -> List[TensorInfo]: ...
    @property
    def target(self) -> str: ...
    @property
    def batch(self) -> int: ...
    @property
    def name(self) -> str: ...
    def run(self, *arrays: Any, **named: npt.NDArray[np.float32]) -> List[np.ndarray]: ...
    def __call__(self, *arrays: Any, **named: npt.NDArray[np.float32]) -> List[np.ndarray]: ...
    def report(self) -> Dict[str, Any]: ...
    def report_text(self) -> str: ...
    def bench(self, iters: int = 50, warmup: int = 5, profile: bool = False) -> Dict[str, Any]: ...
    def save(self, path: Union[str, "os.PathLike[str]"]) -> None: ...

def compile(
    model: ModelLike,
    target: str = "host",
    batch: Optional[int] = None,
    threads: Optional[int] = None,
    allow_tf32: bool = False,
    nchw_input: bool = False,
) -> CompiledModel: ...
def load(
    path: Union[str, "os.PathLike[str]"],
    threads: Optional[int] = None,
    allow_tf32: bool = False,
) -> CompiledModel: ...
def bench(
    model: ModelLike,
    target: str = "host",
    batch: Optional[int] = None,
    threads: Optional[int] = None,
    iters: int = 50,
    warmup: int = 5,
    profile: bool = False,
    allow_tf32: bool = False,
    nchw_input: bool = False,
) -> Dict[str, Any]: ...
def cost_report(
    model: ModelLike,
    batch: Optional[int] = None,
    freeze: Sequence[str] = (),
    stage: str = "imported",
) -> Dict[str, Any]: ...
def zoo(
    name: str,
    num_classes: int = 1000,
    resolution: Optional[int] = None,
    width: Optional[float] = None,
    depth: Optional[float] = None,
    keep_bn: bool = False,
    seed: int = 0,
    batch: int = 1,
) -> bytes: ...
def zoo_names() -> List[str]: ...
def host_target() -> str: ...
def host_targets() -> List[str]: ...
