"""The seam every forward pass goes through: a ``Backend`` protocol, one ``LayerWeights``
description (``layers``) and one ``select`` module that decides which backend and decode path
run and says why.

Backends: ``core.lean_llama.LeanLlamaBackend`` (the lean forward, with the NumPy/C decode step of
``core.blas_decode`` and ``core.fused_decode`` on the CPU) and ``hf.HFBackend`` (transformers,
the always-correct fallback).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Backend(Protocol):
    """Forward passes over one model with a KV cache of ``length`` positions."""

    length: int

    def forward(self, ids: list[int], all_logits: bool = False) -> torch.Tensor:
        """Run ``ids`` after the cached positions; the last position's logits (or every one's)."""

    def crop(self, keep: int) -> None:
        """Keep the first ``keep`` cached positions."""

    def reset(self) -> None:
        """Forget the cache (its memory may stay allocated for reuse)."""

    def release(self) -> None:
        """Free the cache's memory."""

    def describe(self) -> dict:
        """{"backend": name, "prefill": what runs prompts, "decode": what runs one-token steps}."""
