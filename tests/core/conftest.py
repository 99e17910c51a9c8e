"""Fixtures of the core tests: each CPU variant of the C kernels, forced in turn."""

from __future__ import annotations

import pytest
import torch

from core import compact_weights


@pytest.fixture(params=compact_weights.VARIANTS)
def kernel_variant(request):
    """Runs the test once per kernel variant this CPU runs (portable, avx2, avx512bf16), skipping
    the others by name, and puts the default back afterwards."""
    if request.param not in compact_weights.variants():
        pytest.skip(f"this build or CPU does not run the {request.param} kernels")
    before = compact_weights.variant()
    compact_weights.use_variant(request.param)
    yield request.param
    compact_weights.use_variant(before)


@pytest.fixture(scope="session")
def load_transformers():
    """Loads a checkpoint as transformers builds it, for runners and reference logits: an engine
    keeps each weight once and empties its own transformers model, which cannot run afterwards."""
    from core.loading import load_model

    def load(directory, dtype=torch.float32):
        return load_model(str(directory), "cpu", dtype).model

    return load
