"""The int8 KV cache's rows: each head's keys (or values) at a position as ``dim`` int8 values
followed by their fp32 scale (max |x| / 127), ``dim + 4`` bytes where fp32 takes ``4 * dim``.

A decode step at a long context streams the whole cache, so a model with full multi-head attention
(stable-code-3b: 32 heads of 80 dims in 32 layers) reads almost as many bytes of keys and values
at 2,800 tokens as a fifth of its bf16 weights. One scale per (layer, position, head), symmetric,
rounded to nearest even, halves bf16's bytes; the C loops (``core/_kernels_body.h``) widen the
int8 values to fp32 and apply the row's scale to the score (keys) or the softmax weight (values).

Prefill writes rows here (PyTorch), the NumPy decode path through ``quantize_numpy``, the fused C
step in C with the same arithmetic: scale = max|x| / 127 in fp32, q = round(x * (1 / scale)).
"""

from __future__ import annotations

import numpy as np
import torch

SCALE_BYTES = 4  # one fp32 scale after each row's int8 values


def row_bytes(dim: int) -> int:
    """Bytes of one head's row (one position) in an int8 cache."""
    return dim + SCALE_BYTES


def quantize_torch(x: torch.Tensor) -> torch.Tensor:
    """Rows of fp32 ``x`` (..., dim) as int8 cache rows (..., dim + 4)."""
    x = x.float()
    scale = x.abs().amax(dim=-1, keepdim=True) / 127.0
    inverse = torch.where(scale > 0, 1.0 / scale, torch.zeros_like(scale))
    values = torch.round(x * inverse).clamp_(-127, 127).to(torch.int8)
    return torch.cat([values, scale.contiguous().view(torch.int8)], dim=-1)


def dequantize_torch(rows: torch.Tensor) -> torch.Tensor:
    """Int8 cache rows (..., dim + 4) back to fp32 (..., dim)."""
    dim = rows.shape[-1] - SCALE_BYTES
    scale = rows[..., dim:].contiguous().view(torch.float32)
    return rows[..., :dim].float() * scale


def quantize_numpy(x: np.ndarray) -> np.ndarray:
    """Rows of fp32 ``x`` (..., dim) as int8 cache rows (..., dim + 4), as the C step writes them."""
    x = np.asarray(x, dtype=np.float32)
    scale = (np.abs(x).max(axis=-1, keepdims=True) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inverse = np.where(scale > 0, np.float32(1) / scale, np.float32(0)).astype(np.float32)
    values = np.clip(np.rint(x * inverse), -127, 127).astype(np.int8)
    return np.concatenate([values, np.ascontiguousarray(scale).view(np.int8)], axis=-1)


def dequantize_numpy(rows: np.ndarray) -> np.ndarray:
    """Int8 cache rows (..., dim + 4) back to fp32 (..., dim)."""
    dim = rows.shape[-1] - SCALE_BYTES
    scale = np.ascontiguousarray(rows[..., dim:]).view(np.float32)
    return rows[..., :dim].astype(np.float32) * scale
