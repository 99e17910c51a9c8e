"""DeepShiva's inference engine: load a Hugging Face causal LM and generate, streamed or whole."""

from . import openmp_waits  # noqa: F401  (first: OpenMP reads its wait settings when torch loads it)
from .engine import Completion, CompletionStream, OptimizedLLM
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
)
from .loading import DEFAULT_MODEL

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
]
