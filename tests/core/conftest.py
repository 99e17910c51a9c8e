"""Fixtures of the core tests: each CPU variant of the C kernels, forced in turn."""

from __future__ import annotations

import pytest

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
