"""Typed errors of the engine, so callers (the HTTP layer) can map each to a status code."""

from __future__ import annotations


class DeepShivaError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidParameter(DeepShivaError, ValueError):
    """A generation or load parameter is out of its allowed range; ``param`` names it."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


class FIMNotSupported(InvalidParameter):
    """A ``suffix`` was given but the model has no fill-in-the-middle tokens."""

    def __init__(self, message: str):
        super().__init__("suffix", message)


class ModelNotFound(DeepShivaError):
    """The model name is neither a local directory, a shipped model nor a reachable hub id."""


class ModelNotLoaded(DeepShivaError):
    """Generation was asked for while no model is loaded (never loaded, or cleared)."""


class OutOfMemory(DeepShivaError):
    """The device ran out of memory while loading or generating."""


class ModelTooLarge(OutOfMemory):
    """A model refused before loading: its estimated memory (core.backends.footprint) is more
    than is available; the message names both and the settings that would fit."""


class DeviceUnavailable(InvalidParameter):
    """An explicitly requested device (cuda, mps) is not available on this machine."""

    def __init__(self, message: str):
        super().__init__("device", message)


class QuantizationUnavailable(InvalidParameter):
    """8-bit loading was asked for but bitsandbytes cannot run it here."""

    def __init__(self, message: str):
        super().__init__("load_in_8bit", message)


class ModelLoadFailed(DeepShivaError):
    """The model's files were found but could not be loaded (corrupt weights, bad config, ...)."""


class UpstreamError(DeepShivaError):
    """The upstream serving engine (core/upstream.py) failed, refused, or cannot be reached;
    ``status`` is the HTTP status to answer with (502: it answered badly, 503: unreachable)."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the engine's OutOfMemory, MemoryError, torch's OutOfMemoryError (CUDA's too, told
    by name so this module needs no torch) and any allocator failure whose message says so."""
    if isinstance(exc, (OutOfMemory, MemoryError)):
        return True
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()
