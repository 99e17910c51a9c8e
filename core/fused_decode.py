"""A one-token decode step through every layer in a single C call (``decode_layers`` in ``core/_kernels.c``).

Op by op from NumPy a Llama layer is about twenty calls of a few microseconds each; on a model as
small as the shipped one that is as much time as the matrix products. When every product of every
layer reads compact weights of one format, the C loop runs the whole layer stack for a token:
the same arithmetic as ``core.blas_decode`` (RMSNorm, fused q/k/v, RoPE on paired rows, the
cache write, attention, fused gate/up, SiLU) with sums taken in another order. Draft checks (more
than one row) and fp32 weights keep the NumPy path.
"""

from __future__ import annotations

import numpy as np

from . import compact_weights


class FusedLayers:
    """The decoder's layers as the C step takes them; built only where they all fit (``build``)."""

    def __init__(self, layers, shape: dict):
        self.kind = layers[0].qkv.kind  # every product's (build checks they agree)
        self.shape = shape  # hidden, heads, kv_heads, dim, mlp, eps, scale
        self.layers = [
            (
                layer.input_norm,
                layer.qkv.values,
                layer.qkv.scales,
                layer.o.values,
                layer.o.scales,
                layer.post_norm,
                layer.gate_up.values,
                layer.gate_up.scales,
                layer.down.values,
                layer.down.scales,
            )
            for layer in layers
        ]

    @classmethod
    def build(cls, layers, **shape) -> FusedLayers | None:
        """The fused step for ``layers`` (blas_decode's), or None unless every product is a
        compact weight of one format (which also means the kernels are built)."""
        products = [p for layer in layers for p in (layer.qkv, layer.o, layer.gate_up, layer.down)]
        if not all(isinstance(p, compact_weights.CompactWeight) for p in products):
            return None
        if len({p.precision for p in products}) != 1:
            return None
        return cls(layers, shape)

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
        and value into the caches (layers, 1, kv_heads, capacity, dim) and returns the residual stream."""
        from . import _kernels  # built wherever build() returned an instance

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
        )
        return x
