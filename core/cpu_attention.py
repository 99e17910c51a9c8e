"""Causal softmax attention of a few query rows over the KV cache, in C (``core/_kernels.c``).

A decode step's attention is small arithmetic over many keys: in NumPy it was a dozen passes
over (heads, keys) arrays, each with a temporary, about 0.43 ms a layer on the 1B shape at 1024
cached tokens. The C loop makes one pass per (row, head): scores, max, exponentials, weighted
values, with the key and value rows of a head shared through the cache by the query heads of
its group. ``core.blas_decode`` uses it wherever the compact-weight kernels are available.

The cache holds fp32, or 16-bit keys and values (bf16 or fp16, ``core.backends.select`` decides),
which the loop widens to fp32 as it reads them: sums, softmax and output stay fp32. NumPy has no
bf16, so a bf16 cache is seen here through its bits (uint16). An int8 cache (``core.kv_int8``)
holds each head's row as dim int8 values and an fp32 scale: (kv_heads, capacity, dim + 4) int8.
"""

from __future__ import annotations

import numpy as np

from . import compact_weights


def available() -> bool:
    """True where the C kernels are built and vectorized (the same condition as compact weights)."""
    return compact_weights.available()


# The C loop's code for a cache's NumPy dtype: bf16 caches are viewed as their bits (uint16/int16).
KV_KINDS = {
    np.dtype(np.float32): 0,
    np.dtype(np.uint16): 1,
    np.dtype(np.int16): 1,
    np.dtype(np.float16): 2,
    np.dtype(np.int8): 3,  # rows of int8 values, each followed by its fp32 scale (core.kv_int8)
}


def kv_kind(cache: np.ndarray) -> int:
    """The C loops' code for the elements of ``cache`` (0 fp32, 1 bf16 bits, 2 fp16, 3 int8 rows)."""
    try:
        return KV_KINDS[cache.dtype]
    except KeyError:
        raise ValueError(f"a KV cache of {cache.dtype} is not one the C loops read") from None


def attend(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int, scale: float, threads: int = 1
) -> np.ndarray:
    """Attention of ``q`` (count, heads, dim) at positions ``start``.. over ``k``/``v`` (kv_heads,
    capacity, dim), one layer's cache (fp32, fp16, bf16 bits as uint16, or int8 rows of dim + 4
    with their scale) with the rows' own keys
    already written; row r sees keys up to ``start + r``. Returns (count, heads * dim) fp32, the
    rows the output projection takes."""
    from . import _kernels  # built where available() is true

    count, heads, dim = q.shape
    q = np.ascontiguousarray(q, dtype=np.float32)
    out = np.empty((count, heads * dim), dtype=np.float32)
    _kernels.attend(q, k, v, out, count, heads, k.shape[0], dim, start, scale, threads, kv_kind(k))
    return out
