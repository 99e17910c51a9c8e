"""Causal softmax attention of a few query rows over the fp32 KV cache, in C (``core/_kernels.c``).

A decode step's attention is small arithmetic over many keys: in NumPy it was a dozen passes
over (heads, keys) arrays, each with a temporary, about 0.43 ms a layer on the 1B shape at 1024
cached tokens. The C loop makes one pass per (row, head): scores, max, exponentials, weighted
values, with the key and value rows of a head shared through the cache by the query heads of
its group. ``core.blas_decode`` uses it wherever the compact-weight kernels are available.
"""

from __future__ import annotations

import numpy as np

from . import compact_weights


def available() -> bool:
    """True where the C kernels are built and vectorized (the same condition as compact weights)."""
    return compact_weights.available()


def attend(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int, scale: float, threads: int = 1
) -> np.ndarray:
    """Attention of ``q`` (count, heads, dim) at positions ``start``.. over ``k``/``v`` (kv_heads,
    capacity, dim), one layer's cache with the rows' own keys already written; row r sees keys
    up to ``start + r``. Returns (count, heads * dim) fp32, the rows the output projection takes."""
    from . import _kernels  # built where available() is true

    count, heads, dim = q.shape
    q = np.ascontiguousarray(q, dtype=np.float32)
    out = np.empty((count, heads * dim), dtype=np.float32)
    _kernels.attend(q, k, v, out, count, heads, k.shape[0], dim, start, scale, threads)
    return out
