"""The engine's settings from ``DEEPSHIVA_*`` environment variables, declared and read here only.

``EngineOptions`` lists every variable ``core`` reads, with its type, default and meaning; the
README's options table documents the same names. The server's ``ServerConfig`` extends it, so a
server validates them all when it starts. Modules of ``core`` call ``read(name)`` at the moment
they decide (tests change a variable between calls), and a bad value raises InvalidParameter
naming the variable where it is used.

This module imports no torch: ``openmp_waits`` reads ``omp_spin`` before torch loads OpenMP.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Annotated, Literal, Optional, get_args

from pydantic import AliasChoices, Field, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import InvalidParameter

PREFIX = "DEEPSHIVA_"
DecodeWeights = Literal["auto", "fp32", "fp16", "bf16", "int8", "int4"]
FimOrder = Literal["auto", "psm", "spm"]
KvCache = Literal["auto", "fp32", "bf16", "fp16", "int8"]


class EngineOptions(BaseSettings):
    """Everything the engine reads from the environment (``DEEPSHIVA_<NAME>``)."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, extra="ignore", validate_default=True, populate_by_name=True
    )

    decode_weights: DecodeWeights = Field(
        "auto",
        description="CPU: the bytes a decode step reads (core/compact_weights.py); auto = the "
        "checkpoint's own 16-bit format where that is exact, else fp32",
    )
    kv_cache: KvCache = Field(
        "auto",
        description="CPU: the KV cache's elements on the NumPy/C decode path "
        "(core/backends/select.py); auto = bf16 with compact decode weights and SIMD kernels, "
        "else fp32",
    )
    fim_order: FimOrder = Field("auto", description="FIM prompt order; auto = the model's own")
    cpu_threads: Optional[int] = Field(
        None,
        ge=1,
        # DEEPSHIVA_THREADS is the older name, kept: it always meant the engine's CPU threads.
        validation_alias=AliasChoices(f"{PREFIX}CPU_THREADS", f"{PREFIX}THREADS"),
        description="the engine's CPU (torch and OpenBLAS) threads; unset = 1 for models under "
        "64 MiB, else every core",
    )
    prompt_lookup: bool = Field(True, description="prompt-lookup decoding for greedy requests")
    loop_guard: bool = Field(True, description="end completions that repeat themselves")
    lean: bool = Field(True, description="the engine's own forward pass (else transformers')")
    blas_decode: bool = Field(True, description="decode steps in NumPy/OpenBLAS and the C kernels")
    huge_pages: bool = Field(True, description="compact decode weights on transparent huge pages")
    cpu: Optional[str] = Field(
        None,
        description="the CPU kind the path decision assumes: native-bf16, avx2 or portable "
        "(core/cpu_capabilities.py); unset = probed",
    )
    omp_spin: Optional[str] = Field(
        None,
        description="GOMP_SPINCOUNT set before torch loads (core/openmp_waits.py); unset = 1000",
    )
    memory_available: Optional[int] = Field(
        None,
        ge=0,
        description="bytes the engine may allocate, a pretend limit for tests and trials below "
        "the system's (core/backends/footprint.py); unset = what the system has available",
    )


def variables(name: str) -> tuple[str, ...]:
    """The environment variables of option ``name``, the preferred first."""
    alias = EngineOptions.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    return (f"{PREFIX}{name.upper()}",)


def read(name: str, environ: Mapping[str, str] | None = None):
    """Option ``name`` from ``environ`` (default: the process's environment), checked alone."""
    environ = os.environ if environ is None else environ
    field = EngineOptions.model_fields[name]
    for variable in variables(name):
        raw = environ.get(variable)
        if raw:  # set and not empty
            break
    else:
        return field.default
    try:
        return _adapter(name).validate_python(raw)
    except ValidationError:
        raise InvalidParameter(name, f"{variable} must be {_words(name)} (got {raw!r})") from None


@functools.cache
def _adapter(name: str) -> TypeAdapter:
    """The validator of one option (its type and bounds), built once."""
    field = EngineOptions.model_fields[name]
    kind = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return TypeAdapter(kind)


def _words(name: str) -> str:
    field = EngineOptions.model_fields[name]
    choices = get_args(field.annotation)
    if field.annotation is bool:
        return "1 or 0 (also true/false, on/off, yes/no)"
    if choices and all(isinstance(c, str) for c in choices):
        return "one of " + ", ".join(choices)
    if int in choices:
        return "a number of bytes" if name == "memory_available" else "a positive integer"
    return "valid"
