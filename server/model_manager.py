"""Holds the one served model and swaps it safely while requests run.

A load builds the new engine beside the old one, then swaps a reference: requests in flight keep
the engine they started with and finish normally; a failed load leaves the previous model
serving. Loads are serialized by a lock, so two concurrent loads cannot interleave.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any, Callable, Optional

from core.errors import ModelNotLoaded
from core.quantization import int8_trade

EngineFactory = Callable[[str], Any]


class ModelStillLoading(ModelNotLoaded):
    """A request came while the first model is still loading: it will be served shortly."""


class ModelManager:
    def __init__(self, factory: EngineFactory, engine: Any = None):
        self._factory = factory
        self._engine = engine
        self._info: dict = _info_of(engine) if engine is not None else {}
        self._load_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._loading: Optional[str] = None
        self._last_error: Optional[str] = None
        self.loads = 0

    def engine(self) -> Any:
        """The engine serving now; ModelNotLoaded when there is none (or it was cleared)."""
        with self._state_lock:  # both read at one moment: a load swaps them together
            engine, loading = self._engine, self._loading
        if engine is None and loading is not None:
            raise ModelStillLoading(f"{loading} is still loading")
        if engine is None or not getattr(engine, "is_loaded", True):
            raise ModelNotLoaded(
                "no model has been loaded" if engine is None else "the model was unloaded"
            )
        return engine

    @property
    def loaded(self) -> bool:
        engine = self._engine
        return engine is not None and bool(getattr(engine, "is_loaded", True))

    @property
    def state(self) -> str:
        if self._loading is not None:
            return "loading"
        return "ready" if self.loaded else "not_loaded"

    def load(self, name: str) -> tuple[Any, float]:
        """Load ``name`` and make it the served model; returns (engine, milliseconds). Raises on failure."""
        with self._load_lock:
            with self._state_lock:
                self._loading = name
            start = time.monotonic()
            try:
                engine = self._factory(name)
                info = _info_of(engine)
            except BaseException as exc:
                with self._state_lock:
                    self._last_error = f"{name}: {type(exc).__name__}: {exc}"
                    self._loading = None
                gc.collect()  # a failed load's tensors go now, not at some later GC
                raise
            # One step from "loading" to "serving the new engine": no request may see neither.
            with self._state_lock:
                previous = self._engine
                self._engine, self._info = engine, info
                self._loading = None
                self._last_error = None
                self.loads += 1
            del previous  # requests still holding it finish; its memory goes with the last of them
            gc.collect()
            return engine, (time.monotonic() - start) * 1000.0

    def status(self) -> dict:
        """What /model_status reports: the served model's facts and the loading state."""
        with self._state_lock:
            info = dict(self._info) if self.loaded else {}
            return {
                "model_loaded": self.loaded,
                "model_name": info.get("model_name"),
                "device": info.get("device"),
                "dtype": info.get("dtype"),
                "quantization": info.get("quantization"),
                "quantization_note": int8_trade(info.get("quantization"), info.get("device")),
                "context_length": info.get("context_length"),
                "fim_dialect": info.get("fim_dialect"),
                "parameters": info.get("parameters"),
                "decode_weights": info.get("decode_weights"),
                "backend": info.get("backend"),
                "decode_path": info.get("decode_path"),
                "path": info.get(
                    "path"
                ),  # what runs prefill and decode, and why (core.backends.select)
                "cpu": info.get("cpu"),
                **({"upstream": info["upstream"]} if info.get("upstream") else {}),
                "state": self.state,
                "loading_model_name": self._loading,
                "last_load_error": self._last_error,
            }


def _info_of(engine: Any) -> dict:
    """The engine's info() with plain JSON values (dtype objects become strings)."""
    info = dict(engine.info()) if hasattr(engine, "info") else {}
    info.setdefault("model_name", getattr(engine, "model_name", None))
    info.setdefault("device", getattr(engine, "device", None))
    for key in ("dtype", "device"):
        if info.get(key) is not None and not isinstance(info[key], str):
            info[key] = str(info[key]).replace("torch.", "")
    return info
