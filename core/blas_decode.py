"""Short forward passes (decode steps, draft checks) of the lean Llama through NumPy, on the CPU.

A decode step multiplies one row by every weight matrix and does about a hundred small ops
around those products. On the CPU, PyTorch's wheel multiplies with Intel MKL and pays several
microseconds of dispatch per op; NumPy multiplies with OpenBLAS and pays about one. On this
project's AMD (Zen 3) machine OpenBLAS's one-row products ran 1.3-3.3x faster than PyTorch's
on the shipped model's matrices, and on two threads it splits a large matrix-vector product
where PyTorch does not (benchmarks/RESULTS.md). So passes of at most ``MAX_ROWS`` tokens run
here, over the same weights and the same KV cache (NumPy views of the backend's tensors, no
copies); prefill stays in PyTorch, whose fused attention and matrix products suit many rows.

The arithmetic is the backend's: fp32 throughout, q and k rotated as complex numbers with
their rows paired at load, softmax attention with the causal mask for the pass's own rows.
Logits agree with PyTorch's to within float rounding (tests compare both with transformers).
"""

from __future__ import annotations

import os

import numpy as np
import torch

MAX_ROWS = 8  # passes of at most this many tokens (a decode step, a prompt-lookup draft check)


def enabled_by_default() -> bool:
    """On unless ``DEEPSHIVA_BLAS_DECODE=0`` (for comparing against the PyTorch path)."""
    return os.environ.get("DEEPSHIVA_BLAS_DECODE", "1") != "0"


def applies_to(backend) -> bool:
    """True for fp32 weights on the CPU without int8 copies: the only case computed here."""
    return (
        backend.device.type == "cpu"
        and backend.dtype == torch.float32
        and backend.complex_rope
        and not backend.int8_weights()
    )


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """Llama's RMSNorm over the last axis of ``x`` (rows, hidden)."""
    if x.shape[0] == 1:  # a decode step: a dot product is a third of einsum's cost
        row = x[0]
        return x * (1.0 / np.sqrt(np.dot(row, row) / row.shape[0] + eps)) * weight
    mean_square = np.einsum("ij,ij->i", x, x) / x.shape[1]
    return x * (1.0 / np.sqrt(mean_square + eps))[:, None] * weight


class BlasDecoder:
    """The lean backend's forward pass for a few rows, in NumPy over the backend's own memory."""

    def __init__(self, backend):
        self.backend = backend
        self.embed = backend.embed.numpy()
        # (norm, qkv as (in, out), o as (out, in), norm, gate/up as (in, out), down as (out, in))
        self.layers = [
            (ln1.numpy(), wqkv.weight.numpy(), wo.weight.numpy(), ln2.numpy(), wgu.weight.numpy(), wdown.weight.numpy())
            for ln1, wqkv, wo, ln2, wgu, wdown in backend.layers
        ]
        self.lm_head = backend.lm_head.weight.numpy()  # (vocab, hidden)
        self.norm = backend.norm.numpy()

    def forward(self, ids: list[int], all_logits: bool = False) -> torch.Tensor:
        """Run ``ids`` after the backend's cached positions and write their keys and values."""
        b = self.backend
        count, start = len(ids), b.length
        end = start + count
        heads, kv_heads, dim = b.heads, b.kv_heads, b.head_dim
        group = heads // kv_heads  # query heads per key/value head
        half = self.layers[0][4].shape[1] // 2  # the MLP's width: gate and up side by side
        q_size, qk_size = heads * dim, (heads + kv_heads) * dim
        k_cache, v_cache = b.k_cache.numpy(), b.v_cache.numpy()
        rope = b.rope[start:end].numpy()  # (T, 1, dim / 2) complex64
        # The pass's own rows see keys up to their own position; earlier positions are all visible.
        mask = None
        if count > 1:
            future = np.arange(end)[None, :] > (start + np.arange(count))[:, None]
            mask = np.where(future, -np.inf, 0.0).astype(np.float32)  # (T, end)
        x = self.embed[ids]  # (T, hidden), a copy
        with np.errstate(over="ignore"):  # exp(-gate) overflows to inf for very negative gates: silu -> -0
            for i, (ln1, wqkv, wo, ln2, wgu, wdown) in enumerate(self.layers):
                qkv = _rms_norm(x, ln1, b.eps) @ wqkv  # (T, q + k + v)
                pairs = np.ascontiguousarray(qkv[:, :qk_size]).view(np.complex64)
                qk = (pairs.reshape(count, heads + kv_heads, dim // 2) * rope).view(np.float32)
                k_cache[i, 0, :, start:end] = qk[:, heads:].transpose(1, 0, 2)
                v_cache[i, 0, :, start:end] = qkv[:, qk_size:].reshape(count, kv_heads, dim).transpose(1, 0, 2)
                # Query heads grouped under their key/value head: (kv_heads, group * T, dim).
                q = qk[:, :heads].transpose(1, 0, 2).reshape(kv_heads, group * count, dim)
                scores = q @ k_cache[i, 0, :, :end].transpose(0, 2, 1)
                scores *= b.scale
                if mask is not None:
                    scores = (scores.reshape(kv_heads, group, count, end) + mask).reshape(kv_heads, group * count, end)
                scores -= scores.max(axis=-1, keepdims=True)
                probs = np.exp(scores, out=scores)
                probs /= probs.sum(axis=-1, keepdims=True)
                attn = (probs @ v_cache[i, 0, :, :end]).reshape(heads, count, dim)
                x = x + attn.transpose(1, 0, 2).reshape(count, q_size) @ wo.T
                gate_up = _rms_norm(x, ln2, b.eps) @ wgu
                gate, up = gate_up[:, :half], gate_up[:, half:]
                x = x + (gate / (1.0 + np.exp(-gate)) * up) @ wdown.T
        if all_logits:
            return torch.from_numpy(_rms_norm(x, self.norm, b.eps) @ self.lm_head.T)
        return torch.from_numpy(_rms_norm(x[-1:], self.norm, b.eps) @ self.lm_head.T)[0]
