"""A one-token decode step through every layer in a single C call (``decode_layers`` in ``core/_kernels.c``).

Op by op from NumPy a layer is about twenty calls of a few microseconds each; on a model as small
as the shipped one that is as much time as the matrix products. When every product of every layer
reads compact weights of one format, the C loop runs the whole layer stack for a token: the same
arithmetic as ``core.blas_decode`` (the family's norm, fused q/k/v with its bias, RoPE on paired
rows over all or part of a head, the cache write, attention within the sliding window, the gated
or plain MLP with its activation) with sums taken in another order. What differs between the
families is data passed here (``NORMS``/``ACTIVATIONS`` codes, biases or None), not another
loop. Draft checks (more than one row) and fp32 weights keep the NumPy path.
"""

from __future__ import annotations

import numpy as np

from . import compact_weights

NORMS = {"rms": 0, "layer": 1}  # the C step's codes (core/_kernels.h)
ACTIVATIONS = {"silu": 0, "gelu_tanh": 1, "gelu": 2}


def _fp32(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else np.ascontiguousarray(array, dtype=np.float32)


class FusedLayers:
    """The decoder's layers as the C step takes them; built only where they all fit (``build``)."""

    def __init__(self, layers, shape: dict, spec, rotary_dims: int, window: int | None):
        self.kind = _unbiased(layers[0].qkv).kind  # every product's (build checks they agree)
        self.shape = shape  # hidden, heads, kv_heads, dim, mlp, eps, scale
        # The family's ops, in the C step's codes: norm, activation, gated, rotary dims, window.
        self.ops = (
            NORMS[spec.norm],
            ACTIVATIONS[spec.activation],
            int(spec.gated),
            rotary_dims,
            window or 0,
        )
        self.layers = [self._layer(layer) for layer in layers]

    @staticmethod
    def _layer(layer) -> tuple:
        """(input_norm, qkv, qkv_scales, o, o_scales, post_norm, gate_up, gate_up_scales, down,
        down_scales, input_norm_bias, post_norm_bias, qkv_bias, o_bias, gate_up_bias, down_bias)."""
        qkv, o, gate_up, down = (
            _unbiased(p) for p in (layer.qkv, layer.o, layer.gate_up, layer.down)
        )
        return (
            _fp32(layer.input_norm),
            qkv.values,
            qkv.scales,
            o.values,
            o.scales,
            _fp32(layer.post_norm),
            gate_up.values,
            gate_up.scales,
            down.values,
            down.scales,
            _fp32(layer.input_norm_bias),
            _fp32(layer.post_norm_bias),
            *(_fp32(_bias_of(p)) for p in (layer.qkv, layer.o, layer.gate_up, layer.down)),
        )

    @classmethod
    def build(
        cls, layers, spec, rotary_dims: int, window: int | None, **shape
    ) -> FusedLayers | None:
        """The fused step for ``layers`` (blas_decode's ``_Layer``s, a biased product wrapped
        with its bias), or None unless every product is a compact weight of one format (which
        also means the kernels are built)."""
        products = [
            _unbiased(p)
            for layer in layers
            for p in (layer.qkv, layer.o, layer.gate_up, layer.down)
        ]
        if not all(isinstance(p, compact_weights.CompactWeight) for p in products):
            return None
        if len({p.precision for p in products}) != 1:
            return None
        return cls(layers, shape, spec, rotary_dims, window)

    def __call__(
        self,
        x: np.ndarray,
        rope: np.ndarray,
        k_cache: np.ndarray,
        v_cache: np.ndarray,
        start: int,
        threads: int,
    ) -> np.ndarray:
        """Every layer for the token at ``start`` whose embedding is ``x`` (hidden,); writes its key
        and value into the caches (layers, 1, kv_heads, capacity, dim; fp32, fp16, or bf16 bits
        as uint16, rounded to nearest even) and returns the residual stream."""
        from . import _kernels  # built wherever build() returned an instance
        from .cpu_attention import kv_kind

        s = self.shape
        x = np.array(x, dtype=np.float32)  # a copy: updated in place
        _kernels.decode_layers(
            self.kind,
            x,
            self.layers,
            np.ascontiguousarray(rope),
            k_cache,
            v_cache,
            s["hidden"],
            s["heads"],
            s["kv_heads"],
            s["dim"],
            s["mlp"],
            start,
            s["eps"],
            s["scale"],
            threads,
            *self.ops,
            kv_kind(k_cache),
        )
        return x


def _unbiased(product):
    """The product under a bias wrapper (``blas_decode._Biased``), or the product itself."""
    return getattr(product, "matmul", product)


def _bias_of(product) -> np.ndarray | None:
    """The bias a ``blas_decode._Biased`` wrapper adds after its product (None: no wrapper)."""
    return product.bias if hasattr(product, "matmul") else None
