"""DeepShiva's inference engine: load a Hugging Face causal LM and generate, streamed or whole.

Importing ``core`` (or its error types) does not import torch: the engine is imported on first
use of ``OptimizedLLM``, ``Completion`` or ``CompletionStream``, so the server's error mapping,
its configuration and ``--help`` stay quick.
"""

from . import openmp_waits  # noqa: F401  (first: OpenMP reads its wait settings when torch loads it)
from .errors import (
    DeepShivaError,
    DeviceUnavailable,
    FIMNotSupported,
    InvalidParameter,
    ModelLoadFailed,
    ModelNotFound,
    ModelNotLoaded,
    OutOfMemory,
    QuantizationUnavailable,
    is_out_of_memory,
)
from .shipped import DEFAULT_MODEL

_FROM_ENGINE = ("Completion", "CompletionStream", "OptimizedLLM")

__all__ = [
    "DEFAULT_MODEL",
    "Completion",
    "CompletionStream",
    "DeepShivaError",
    "DeviceUnavailable",
    "FIMNotSupported",
    "InvalidParameter",
    "ModelLoadFailed",
    "ModelNotFound",
    "ModelNotLoaded",
    "OptimizedLLM",
    "OutOfMemory",
    "QuantizationUnavailable",
    "is_out_of_memory",
]


def __getattr__(name: str):
    if name in _FROM_ENGINE:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'core' has no attribute {name!r}")
