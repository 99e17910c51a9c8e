"""One decoder layer described once, with named fields, for every forward path of the engine.

The lean forward (``core.lean_llama``), the NumPy/C decode step (``core.blas_decode``) and the
fused C step (``core.fused_decode``) all read a layer as a ``LayerWeights``; a family differs by
data here (which weights exist, which ops they name), not by another forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import compact_weights

INT8_MAX_ROWS = 8  # passes of at most this many tokens use the int8 weights (decode, drafts)


class Int8Weight:
    """A matrix as int8 rows with a bf16 scale per row (symmetric, per output channel)."""

    def __init__(self, weight: torch.Tensor):
        q, scales = compact_weights.quantize_rows(weight)
        self.q = q.contiguous()
        self.scales = scales.to(torch.bfloat16)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T`` from the int8 rows; computed in bf16, returned in x's dtype."""
        return torch._weight_int8pack_mm(x.to(torch.bfloat16), self.q, self.scales).to(x.dtype)

    def dequantized(self) -> torch.Tensor:
        return self.q.to(torch.float32) * self.scales.to(torch.float32)[:, None]


class Projection:
    """One weight matrix of the forward pass (``x @ W.T``), kept in the layout that runs fastest.

    ``transposed`` stores W.T contiguously: for a short, wide matrix (out > in) a one-row product
    over it is about 20% faster on this CPU than ``F.linear``'s (see benchmarks/RESULTS.md). Only
    matrices that are copies anyway (the fused q/k/v and gate/up) are stored so; the others stay
    the model's own tensors, so the lean path costs no extra memory. With ``int8``, passes of at
    most ``INT8_MAX_ROWS`` tokens read an int8 copy instead.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        transposed: bool = False,
        int8: bool = False,
        bias: torch.Tensor | None = None,
    ):
        self.int8 = Int8Weight(weight) if int8 else None
        self.transposed = transposed
        self.weight = weight.t().contiguous() if transposed else weight
        self.bias = bias  # added after the product, in the activations' dtype (None: no bias)

    @property
    def out_features(self) -> int:
        return self.weight.shape[1] if self.transposed else self.weight.shape[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The product in the weight's dtype, returned in ``x``'s (16-bit weights under fp32
        activations: the GEMM runs in bf16 where the CPU has it, everything around it in fp32)."""
        if self.int8 is not None and x.shape[0] <= INT8_MAX_ROWS:
            y = self.int8.linear(x)
        else:
            h = x.to(self.weight.dtype)
            y = (h @ self.weight if self.transposed else F.linear(h, self.weight)).to(x.dtype)
        return y if self.bias is None else y + self.bias


class StackedProjection:
    """Several of the model's own matrices (q, k, v or gate, up) applied as one, without a copy.

    Where decode steps read compact copies (``core.compact_weights``), PyTorch runs only prompts,
    whose many-row products gain nothing from the stacked, transposed copy ``Projection`` keeps
    for one-row speed: that copy would be a second full set of these weights. Here each matrix is
    multiplied where it lies and the outputs are put side by side (in ``order``, the paired-row
    order RoPE wants, where given).
    """

    int8 = None
    transposed = False

    def __init__(
        self,
        weights: list[torch.Tensor],
        order: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ):
        self.weights, self.order, self.bias = weights, order, bias

    @property
    def out_features(self) -> int:
        return sum(w.shape[0] for w in self.weights)

    @property
    def weight(self) -> torch.Tensor:
        """The stacked matrix (out, in): a temporary copy, for building compact copies from."""
        stacked = torch.cat(self.weights)
        return stacked if self.order is None else stacked[self.order]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h = x.to(self.weights[0].dtype)
        y = torch.cat([F.linear(h, w) for w in self.weights], dim=-1)
        if self.order is not None:
            y = y[:, self.order]
        y = y.to(x.dtype)
        return y if self.bias is None else y + self.bias


@dataclass
class LayerWeights:
    """One decoder layer's weights as the forward paths read them.

    ``qkv`` holds q, k and v stacked (q and k rows paired per head where RoPE rotates complex
    pairs); ``gate_up`` the MLP's gate and up stacked (a gated MLP) or its one input matrix (a
    plain one, Starcoder2's c_fc). Norm weights and biases are in the activations' dtype; a bias
    is None where the family has none. The ops that read them are named by the model's
    ``core.backends.families.FamilySpec``.
    """

    input_norm: torch.Tensor
    qkv: Projection | StackedProjection
    o: Projection
    post_norm: torch.Tensor
    gate_up: Projection | StackedProjection
    down: Projection
    input_norm_bias: torch.Tensor | None = None  # LayerNorm families
    post_norm_bias: torch.Tensor | None = None

    def projections(self) -> tuple[Projection, ...]:
        return (self.qkv, self.o, self.gate_up, self.down)
