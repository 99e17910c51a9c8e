"""Find a model by name and load it onto a device, with accelerate sharding and 8-bit options.

A name is, in order: one of the models DeepShiva ships, a local directory, or a Hugging Face hub
id (from the local HF cache first; from the hub only when it can be reached, checked with a short
connection attempt so a machine without internet fails in seconds instead of retrying).
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from .errors import (  # noqa: F401 - is_out_of_memory: the engine imports it from here
    InvalidParameter,
    ModelLoadFailed,
    ModelNotFound,
    OutOfMemory,
    QuantizationUnavailable,
    is_out_of_memory,
)
from .quantization import quiet_int8_cast_notice
from .shipped import DEFAULT_MODEL, SHIPPED_MODELS  # noqa: F401 - DEFAULT_MODEL: the engine's default

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
HUB_CONNECT_TIMEOUT_S = 3.0


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    source: str
    quantization: str | None
    stored_dtype: torch.dtype | None = None  # the checkpoint's own dtype (from its config)


def _hub_reachable() -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", constants.ENDPOINT))
    try:
        with socket.create_connection(
            (url.hostname, url.port or 443), timeout=HUB_CONNECT_TIMEOUT_S
        ):
            return True
    except OSError:
        return False


def _cached_snapshot(hub_id: str) -> str | None:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(hub_id, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure here just means "not in the cache"
        return None


def resolve_model_source(model_name: object) -> str:
    """Return a local directory or a downloadable hub id for ``model_name``, or raise ModelNotFound."""
    if not isinstance(model_name, str) or not model_name.strip():
        raise InvalidParameter("model_name", "model_name must be a non-empty string")
    name = model_name.strip()
    if name in SHIPPED_MODELS:
        path = SHIPPED_MODELS[name]
        if not (path / "config.json").exists():
            raise ModelNotFound(f"shipped model {name!r} is missing its files in {path}")
        return str(path)
    if "://" in name:
        raise ModelNotFound(
            f"model {name!r}: URLs are not model names; give a hub id or a local directory"
        )
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFound(f"model directory {path} has no config.json")
        return str(path)
    if not HUB_ID.match(name) or ".." in name:
        raise ModelNotFound(f"model {name!r} is not a local directory, a shipped model or a hub id")
    cached = _cached_snapshot(name)
    if cached:
        return cached
    if not _hub_reachable():
        raise ModelNotFound(
            f"model {name!r} not found: not a local directory, not a shipped model "
            f"({', '.join(SHIPPED_MODELS)}), not in the Hugging Face cache, and the hub is unreachable (offline). "
            f"To use it offline, download it on a machine with internet and copy the directory over "
            f"(README.md, 'Use a real code model')"
        )
    return name


def _check_int8_support(device: str) -> None:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken install is as unusable as a missing one
        raise QuantizationUnavailable(
            f"load_in_8bit needs bitsandbytes, which cannot be imported: {exc}"
        ) from None
    from packaging.version import Version

    version = Version(bitsandbytes.__version__)
    base = device.split(":", 1)[0]
    if base == "cpu" and version < Version("0.47"):
        raise QuantizationUnavailable(
            f"bitsandbytes {version} runs int8 only on CUDA; CPU needs >= 0.47"
        )
    if base == "mps":
        raise QuantizationUnavailable("load_in_8bit is not supported on MPS by bitsandbytes")


def load_model(
    source: str,
    device: str,
    dtype: torch.dtype,
    max_memory: dict | None = None,
    load_in_8bit: bool = False,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load model and tokenizer from a resolved ``source``; map failures to the engine's errors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    kwargs: dict = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    quantization = None
    if load_in_8bit:
        _check_int8_support(device)
        quiet_int8_cast_notice()
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        quantization = "int8"
    if max_memory:
        # accelerate places layers under these budgets, spilling what fits nowhere to disk.
        kwargs["device_map"] = "auto"
        kwargs["max_memory"] = max_memory
        kwargs["offload_folder"] = tempfile.mkdtemp(prefix="deepshiva-offload-")
    elif device != "cpu" or load_in_8bit:
        kwargs["device_map"] = {"": device}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        if Path(source).is_dir():  # the files are there but unreadable (bad config.json, ...)
            raise ModelLoadFailed(f"model {source!r} could not be loaded: {exc}") from exc
        raise ModelNotFound(f"model {source!r} could not be loaded: {exc}") from exc
    except Exception as exc:
        if is_out_of_memory(exc):
            raise OutOfMemory(f"out of memory while loading {source!r}: {exc}") from exc
        raise ModelLoadFailed(
            f"model {source!r} could not be loaded: {type(exc).__name__}: {exc}"
        ) from exc
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        source=source,
        quantization=quantization,
        stored_dtype=stored_dtype(source, trust_remote_code),
    )


def stored_dtype(source: str, trust_remote_code: bool = False) -> torch.dtype | None:
    """The dtype a checkpoint's config says its weights are saved in (loading overwrites it)."""
    from transformers import AutoConfig

    try:
        value = getattr(
            AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code), "dtype", None
        )
    except Exception:  # a config that loaded once loads again; anything else just means "unknown"
        return None
    if isinstance(value, str):
        value = getattr(torch, value, None)
    return value if isinstance(value, torch.dtype) else None
