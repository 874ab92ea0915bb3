"""Exceptions raised by mnc. Each carries the one-line message the `mnc` CLI prints."""


class Error(Exception):
    """Base class of every mnc error."""


class ModelError(Error):
    """The model could not be read: a bad or unsupported ONNX file, a damaged .mnc artifact,
    an unknown zoo name, a missing file."""


class CompileError(Error):
    """The model was read but could not be optimized or compiled for the target (for
    example a target this CPU cannot run, an option the target does not take, a CUDA target
    without a GPU)."""


class RunError(Error):
    """Running (or benchmarking) a compiled model failed."""


class InputError(Error, ValueError):
    """A bad argument from Python: an array of the wrong dtype or shape, a missing or
    unknown input name, an unknown target or stage."""
