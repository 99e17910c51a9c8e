"""Short forward passes (decode steps, draft checks) of the lean Llama through NumPy, on the CPU.

A decode step multiplies one row by every weight matrix and does about a hundred small ops
around those products. On the CPU, PyTorch's wheel multiplies with Intel MKL and pays several
microseconds of dispatch per op; NumPy multiplies with OpenBLAS and pays about one. On this
project's AMD (Zen 3) machine OpenBLAS's one-row products ran 1.3-3.3x faster than PyTorch's
on the shipped model's matrices, and on two threads it splits a large matrix-vector product
where PyTorch does not (benchmarks/RESULTS.md). So one-token steps, and draft checks of at most
``MAX_ROWS`` tokens from compact copies, run here, over the same weights and the same KV cache
(NumPy views of the backend's tensors, no copies); prefill, and draft checks from fp32 weights
(where PyTorch's few-row GEMMs measured faster: ``benchmarks.forward_variants``), stay in
PyTorch.

The matrix products read the backend's fp32 weights, or compact copies of them (fp16, bf16,
int8 or int4, ``backend.decode_weights``) through the C kernels of ``core.compact_weights``, which
halve, quarter or (int4) nearly eighth the bytes a step streams. The rest of the arithmetic is the backend's: fp32
throughout (a 16-bit KV cache is widened as it is read, ``cache_view``), q and k rotated as complex numbers with their rows paired at load, softmax attention
with the causal mask for the pass's own rows. With fp32 weights, logits agree with PyTorch's to
within float rounding (tests compare both with transformers). Where the C kernels are built,
attention runs in C (``core.cpu_attention``), and a one-token step whose products are all
compact runs every layer in one C call (``core.fused_decode``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from . import compact_weights, cpu_attention, kv_int8
from .backends.layers import CompactProjection
from .fused_decode import FusedLayers

MAX_ROWS = 8  # passes of at most this many tokens (a decode step, a prompt-lookup draft check)


def cache_view(cache: torch.Tensor) -> np.ndarray:
    """A NumPy view of a KV cache tensor: fp32, fp16 or int8 rows (``core.kv_int8``) as they
    are, bf16 as its bits (uint16), which ``core.cpu_attention`` and the fused step read as bf16."""
    if cache.dtype == torch.bfloat16:
        return cache.view(torch.int16).numpy().view(np.uint16)
    return cache.numpy()


def store_in_cache(cache: np.ndarray, values: np.ndarray) -> None:
    """Write fp32 ``values`` into a slice of a cache view, rounded to nearest even as PyTorch
    rounds (fp16 by NumPy's cast; bf16 bits: the top half of the fp32, rounded, NaN kept NaN;
    int8: rows of int8 values and their scale, ``core.kv_int8``)."""
    if cache.dtype == np.int8:
        cache[...] = kv_int8.quantize_numpy(values)
        return
    if cache.dtype != np.uint16:
        cache[...] = values
        return
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    cache[...] = np.where(nan, (bits >> 16) | np.uint32(0x40), rounded).astype(np.uint16)


def widen_cache(cache: np.ndarray) -> np.ndarray:
    """A slice of a cache view as fp32 (a copy where the cache is 16-bit or int8)."""
    if cache.dtype == np.int8:
        return kv_int8.dequantize_numpy(cache)
    if cache.dtype == np.uint16:
        return (cache.astype(np.uint32) << 16).view(np.float32)
    return cache.astype(np.float32, copy=False)


def _norm(
    x: np.ndarray, weight: np.ndarray, eps: float, bias: np.ndarray | None, layer_norm: bool
) -> np.ndarray:
    """The family's norm: LayerNorm with bias, else RMSNorm."""
    if not layer_norm:
        return _rms_norm(x, weight, eps)
    centred = x - x.mean(axis=-1, keepdims=True)
    var = np.einsum("ij,ij->i", centred, centred)[:, None] / x.shape[1]
    out = centred / np.sqrt(var + eps) * weight
    return out if bias is None else out + bias


def _activation(x: np.ndarray, name: str) -> np.ndarray:
    """SiLU, or GELU (tanh approximation or exact) as transformers computes them."""
    if name == "silu":
        return x / (1.0 + np.exp(-x))
    if name == "gelu_tanh":
        return (
            0.5
            * x
            * (
                1.0
                + np.tanh(np.float32(0.7978845608028654) * (x + np.float32(0.044715) * x * x * x))
            )
        )
    return torch.nn.functional.gelu(torch.from_numpy(x)).numpy()


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """Llama's RMSNorm over the last axis of ``x`` (rows, hidden)."""
    if x.shape[0] == 1:  # a decode step: a dot product is a third of einsum's cost
        row = x[0]
        return x * (1.0 / np.sqrt(np.dot(row, row) / row.shape[0] + eps)) * weight
    mean_square = np.einsum("ij,ij->i", x, x) / x.shape[1]
    return x * (1.0 / np.sqrt(mean_square + eps))[:, None] * weight


MatMul = Callable[[np.ndarray, int], np.ndarray]  # (rows, in) fp32, threads -> (rows, out)


class _Biased:
    """A product followed by its bias (families with biased projections)."""

    def __init__(self, matmul: MatMul, bias: np.ndarray):
        self.matmul, self.bias = matmul, bias

    def __call__(self, x: np.ndarray, threads: int) -> np.ndarray:
        y = self.matmul(x, threads)
        y += self.bias
        return y


def _product(projection, transposed: bool, precision: str) -> MatMul:
    """One of the backend's ``Projection``s as a NumPy-side product, with its bias if it has one."""
    if isinstance(projection, CompactProjection):  # the backend's one storage of this product
        matmul = projection.compact
    else:
        matmul = _matmul(projection.weight, projection.transposed, precision)
    return matmul if projection.bias is None else _Biased(matmul, projection.bias.numpy())


def _matmul(weight: torch.Tensor, transposed: bool, precision: str) -> MatMul:
    """``x @ W.T`` for one of the backend's matrices, in fp32 or from a compact copy (a matrix
    whose shape the C kernels cannot hold stays fp32)."""
    original = weight.t() if transposed else weight
    if precision != "fp32" and compact_weights.fits(original):
        return compact_weights.CompactWeight(original, precision)
    w = weight.numpy()  # a view of the backend's tensor
    if transposed:  # already stored as W.T
        return lambda x, threads: x @ w
    return lambda x, threads: x @ w.T


class _Layer(NamedTuple):
    """``LayerWeights`` as NumPy arrays and products (what this module and the fused C step read)."""

    input_norm: np.ndarray
    qkv: MatMul
    o: MatMul
    post_norm: np.ndarray
    gate_up: MatMul
    down: MatMul
    input_norm_bias: np.ndarray | None = None
    post_norm_bias: np.ndarray | None = None


def _numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.numpy()


def fused_reason(backend) -> str | None:
    """Why one-token steps of ``backend`` cannot run in the fused C step (None: they can, given
    compact weights of one format). The step computes every family's ops (``FamilySpec``);
    only an odd rotary width is beyond it."""
    if backend.rotary_dims % 2 or backend.rotary_dims < 2:
        return f"the fused C step turns pairs of dims: rotary_dims {backend.rotary_dims} is odd"
    return None


class BlasDecoder:
    """The lean backend's forward pass for a few rows, in NumPy over the backend's own memory.

    With ``backend.decode_weights`` other than fp32 the matrix products read compact copies
    (``core.compact_weights``); everything else is unchanged.
    """

    def __init__(self, backend):
        self.backend = backend
        precision = backend.decode_weights
        self.embed = backend.embed
        # Rows are read through a NumPy view of the embedding and 16-bit ones widened in NumPy:
        # a PyTorch op here wakes PyTorch's OpenMP threads, which then spin on the cores the C
        # step's threads need (bf16 masters decoded 2x slower on 2 cores with a torch lookup).
        dtype = backend.embed.dtype
        if dtype == torch.bfloat16:
            self._embed_rows = backend.embed.view(torch.int16).numpy()
        elif dtype in (torch.float32, torch.float16):
            self._embed_rows = backend.embed.numpy()
        else:
            self._embed_rows = None
        self.spec = backend.spec
        self.layers = [
            _Layer(
                layer.input_norm.numpy(),
                _product(layer.qkv, True, precision),
                _product(layer.o, False, precision),
                layer.post_norm.numpy(),
                _product(layer.gate_up, True, precision),
                _product(layer.down, False, precision),
                _numpy(layer.input_norm_bias),
                _numpy(layer.post_norm_bias),
            )
            for layer in backend.layers
        ]
        width = backend.layers[0].gate_up.out_features
        self.mlp_width = width // 2 if self.spec.gated else width  # gate and up side by side
        self.lm_head = _product(backend.lm_head, False, precision)
        self.norm, self.norm_bias = backend.norm.numpy(), _numpy(backend.norm_bias)
        self.compact = self.compact_bytes() > 0
        self._blas_threads = ThreadpoolController() if self.compact else None
        self.c_attention = cpu_attention.available()
        # One-token steps run every layer in one C call where all products are compact (the C
        # step computes every family's ops: the norm, biases, activation, partial RoPE, window).
        self.fused_why_not = fused_reason(backend)
        self.fused = (
            None
            if self.fused_why_not
            else FusedLayers.build(
                self.layers,
                self.spec,
                backend.rotary_dims,
                backend.window,
                hidden=self.embed.shape[1],
                heads=backend.heads,
                kv_heads=backend.kv_heads,
                dim=backend.head_dim,
                mlp=self.mlp_width,
                eps=float(backend.eps),
                scale=float(backend.scale),
            )
        )

    def _embed(self, ids: list[int]) -> np.ndarray:
        """The embedding rows of ``ids`` in fp32, (T, hidden): a copy."""
        if self._embed_rows is None:
            rows = self.embed[ids].to(torch.float32).numpy()
        elif self.embed.dtype == torch.bfloat16:  # bf16 is the top half of an fp32
            rows = (self._embed_rows[ids].astype(np.int32) << 16).view(np.float32)
        else:
            rows = self._embed_rows[ids].astype(np.float32, copy=self.embed.dtype == torch.float32)
        if self.backend.embed_scale != 1.0:
            rows *= np.float32(self.backend.embed_scale)
        return rows

    def compact_bytes(self) -> int:
        """Bytes held in compact copies (0 in fp32, which reads the backend's own tensors)."""
        matmuls = [
            m for layer in self.layers for m in (layer.qkv, layer.o, layer.gate_up, layer.down)
        ]
        return sum(
            m.nbytes
            for m in matmuls + [self.lm_head]
            if isinstance(m, compact_weights.CompactWeight)
        )

    def forward(self, ids: list[int], all_logits: bool = False) -> torch.Tensor:
        """Run ``ids`` after the backend's cached positions and write their keys and values."""
        if not self.compact or torch.get_num_threads() == 1:  # one thread: OpenBLAS already has one
            return self._forward(ids, all_logits)
        # The kernels' OpenMP threads and OpenBLAS's (attention here) spin while idle, so on a
        # 2-core machine each pool kept stealing the other's core: a 1B step at 1024 cached
        # tokens took 380-500 ms with both on 2 threads, 105-135 ms with OpenBLAS on one.
        with self._blas_threads.limit(limits=1, user_api="blas"):
            return self._forward(ids, all_logits)

    def _attention(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        start: int,
        mask: np.ndarray | None,
        threads: int,
        c_attention: bool = True,
    ) -> np.ndarray:
        """Causal attention of q (T, heads, dim) over one layer's cache (kv_heads, capacity, dim),
        the pass's own keys written: (T, heads * dim). In C where the kernels are built (on the
        kernels' OpenMP threads only while OpenBLAS is held to one, see ``forward``), else NumPy."""
        b = self.backend
        if self.c_attention and c_attention:
            return cpu_attention.attend(q, k, v, start, b.scale, threads if self.compact else 1)
        count, heads, dim = q.shape
        kv_heads, end = b.kv_heads, start + count
        group = heads // kv_heads
        # Query heads grouped under their key/value head: (kv_heads, group * T, dim).
        q = q.transpose(1, 0, 2).reshape(kv_heads, group * count, dim)
        scores = q @ widen_cache(k[:, :end]).transpose(0, 2, 1)
        scores *= b.scale
        if mask is not None:
            scores = (scores.reshape(kv_heads, group, count, end) + mask).reshape(
                kv_heads, group * count, end
            )
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores, out=scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        attn = (probs @ widen_cache(v[:, :end])).reshape(heads, count, dim)
        return attn.transpose(1, 0, 2).reshape(count, heads * dim)

    def _forward(self, ids: list[int], all_logits: bool) -> torch.Tensor:
        b = self.backend
        count, start = len(ids), b.length
        end = start + count
        heads, kv_heads, dim = b.heads, b.kv_heads, b.head_dim
        half = self.mlp_width
        threads = torch.get_num_threads()  # the engine's setting (devices.use_cpu_threads)
        qk_size = (heads + kv_heads) * dim
        k_cache, v_cache = cache_view(b.k_cache), cache_view(b.v_cache)
        rope = b.rope[start:end].numpy()  # (T, 1, dim / 2) complex64
        spec, rot = self.spec, b.rotary_dims
        layer_norm = spec.norm == "layer"
        if count == 1 and self.fused is not None:
            x = self.fused(self._embed(ids)[0], rope, k_cache, v_cache, start, threads)[None]
            norm = _norm(x, self.norm, b.eps, self.norm_bias, layer_norm)
            logits = self.lm_head(norm, threads)
            return torch.from_numpy(logits if all_logits else logits[0])
        windowed = b.window is not None and end > b.window
        c_attention = self.c_attention and not windowed  # the C loop has no window
        # The pass's own rows see keys up to their own position (and within the window).
        mask = None
        if (count > 1 or windowed) and not c_attention:  # the C loop applies causality itself
            keys, rows = np.arange(end)[None, :], (start + np.arange(count))[:, None]
            hidden = keys > rows
            if windowed:
                hidden |= keys <= rows - b.window
            mask = np.where(hidden, -np.inf, 0.0).astype(np.float32)  # (T, end)
        x = self._embed(ids)  # (T, hidden), a copy
        with np.errstate(
            over="ignore"
        ):  # exp(-gate) overflows to inf for very negative gates: silu -> -0
            for i, layer in enumerate(self.layers):
                h = _norm(x, layer.input_norm, b.eps, layer.input_norm_bias, layer_norm)
                qkv = layer.qkv(h, threads)  # (T, q + k + v)
                qk = np.ascontiguousarray(qkv[:, :qk_size]).reshape(count, heads + kv_heads, dim)
                if rot == dim:
                    qk = (qk.view(np.complex64) * rope).view(np.float32)
                else:  # partial RoPE: the first ``rot`` dims of each head turn, the rest stay
                    turned = np.ascontiguousarray(qk[..., :rot]).view(np.complex64) * rope
                    qk[..., :rot] = turned.view(np.float32)
                store_in_cache(k_cache[i, 0, :, start:end], qk[:, heads:].transpose(1, 0, 2))
                store_in_cache(
                    v_cache[i, 0, :, start:end],
                    qkv[:, qk_size:].reshape(count, kv_heads, dim).transpose(1, 0, 2),
                )
                attn = self._attention(
                    qk[:, :heads], k_cache[i, 0], v_cache[i, 0], start, mask, threads, c_attention
                )
                x = x + layer.o(attn, threads)
                h = _norm(x, layer.post_norm, b.eps, layer.post_norm_bias, layer_norm)
                if spec.gated:
                    gate_up = layer.gate_up(h, threads)
                    gate, up = gate_up[:, :half], gate_up[:, half:]
                    x = x + layer.down(_activation(gate, spec.activation) * up, threads)
                else:
                    x = x + layer.down(
                        _activation(layer.gate_up(h, threads), spec.activation), threads
                    )
        rows = x if all_logits else x[-1:]
        logits = self.lm_head(_norm(rows, self.norm, b.eps, self.norm_bias, layer_norm), threads)
        return torch.from_numpy(logits if all_logits else logits[0])
