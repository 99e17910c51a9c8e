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

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the product's GEMM reads its activations in."""
        return self.weight.dtype

    def row_blocks(self, x: torch.Tensor, rows: int):
        """(first row, product) for ``x`` a block of ``rows`` rows at a time."""
        for start in range(0, x.shape[0], rows):
            yield start, self(x[start : start + rows])


class WideningBuffer:
    """The memory prompts widen quantized matrices into, one after another (``CompactWeight.dense``
    ``out=``): one matrix's worth, the largest that used it, kept for the next prompt. The
    model is never held twice, and a prompt does not allocate (and fault in) a fresh matrix for
    every product. One forward at a time uses it (the engine serializes requests)."""

    def __init__(self):
        self.memory: torch.Tensor | None = None

    def take(self, shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        """A (rows, cols) tensor of ``dtype`` over the buffer, grown when it is too small."""
        count = shape[0] * shape[1]
        if self.memory is None or self.memory.dtype != dtype or self.memory.numel() < count:
            self.memory = None  # the old buffer goes before the new one is allocated
            self.memory = torch.empty(count, dtype=dtype)
        return self.memory[:count].view(shape)

    @property
    def nbytes(self) -> int:
        return 0 if self.memory is None else self.memory.nbytes


class CompactProjection:
    """One product whose only storage is a compact weight (``core.compact_weights``): decode steps
    hand it to the C kernels, prompts multiply it in PyTorch in ``compute_dtype`` (the stored
    16-bit matrix itself where that is its dtype, else widened one matrix at a time), so the
    model is held once, at the decode precision."""

    int8 = None
    transposed = False

    def __init__(
        self,
        compact,
        compute_dtype: torch.dtype,
        bias: torch.Tensor | None = None,
        buffer: WideningBuffer | None = None,
    ):
        """``buffer``: where a quantized matrix is widened for a prompt (shared by a model's
        layers; None: a temporary each time)."""
        self.compact, self.compute_dtype, self.bias = compact, compute_dtype, bias
        self.buffer = buffer

    @property
    def out_features(self) -> int:
        return self.compact.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The matrix (out, in) PyTorch multiplies: the stored one, or widened into the buffer."""
        stored = self.storage()
        if self.buffer is None or (stored is not None and stored.dtype == self.compute_dtype):
            return self.compact.dense(self.compute_dtype)
        shape = (self.compact.out_features, self.compact.in_features)
        return self.compact.dense(
            self.compute_dtype, out=self.buffer.take(shape, self.compute_dtype)
        )

    def storage(self) -> torch.Tensor | None:
        """The tensor this product keeps (16-bit), or None (quantized: NumPy arrays)."""
        return getattr(self.compact, "tensor", None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] <= compact_weights.MAX_ROWS and x.dtype == torch.float32:
            # a few rows (a prompt's last row through the output matrix): the kernels read the
            # stored bytes, where widening would build the whole matrix for one row
            y = torch.from_numpy(self.compact(x.numpy(), torch.get_num_threads()))
        else:
            y = F.linear(x.to(self.compute_dtype), self.weight).to(x.dtype)
        return y if self.bias is None else y + self.bias

    def row_blocks(self, x: torch.Tensor, rows: int):
        """(first row, product) for ``x`` a block of ``rows`` rows at a time, the matrix widened
        once for all the blocks."""
        if x.shape[0] <= rows:
            yield 0, self(x)
            return
        weight = self.weight
        for start in range(0, x.shape[0], rows):
            y = F.linear(x[start : start + rows].to(self.compute_dtype), weight).to(x.dtype)
            yield start, y if self.bias is None else y + self.bias


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
    qkv: Projection | CompactProjection
    o: Projection | CompactProjection
    post_norm: torch.Tensor
    gate_up: Projection | CompactProjection
    down: Projection | CompactProjection
    input_norm_bias: torch.Tensor | None = None  # LayerNorm families
    post_norm_bias: torch.Tensor | None = None

    def projections(self) -> tuple[Projection, ...]:
        return (self.qkv, self.o, self.gate_up, self.down)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor this layer keeps (to tell which of the model's own it still reads)."""
        held = [self.input_norm, self.post_norm, self.input_norm_bias, self.post_norm_bias]
        held += [t for p in self.projections() for t in held_tensors(p)]
        return [t for t in held if t is not None]


def held_tensors(projection) -> list[torch.Tensor]:
    """The tensors a product keeps: its weight storage (none for quantized compact weights, whose
    arrays are NumPy's) and its bias."""
    if isinstance(projection, CompactProjection):
        held = [projection.storage()]
    else:
        held = [projection.weight]
    return [t for t in held + [projection.bias] if t is not None]
