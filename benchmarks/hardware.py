"""What this machine can do at best: memory bandwidth and matmul throughput, measured now."""

from __future__ import annotations

import time

import numpy as np
import torch


def memory_bandwidth_gbs(size_mb: int = 512, repeats: int = 5) -> float:
    """Median copy bandwidth (bytes read + written per second), in GB/s."""
    src = np.ones(size_mb * 2**20 // 8)
    dst = np.empty_like(src)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(dst, src)
        rates.append(2 * src.nbytes / (time.perf_counter() - started) / 1e9)
    return float(np.median(rates))


def matmul_peak_gflops(
    dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 5
) -> float:
    """Median GFLOP/s of an n x n matrix product in ``dtype`` with torch's current threads."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - started) / 1e9)
    return float(np.median(rates))
