"""Weight matrices kept in fewer bytes for decode steps: fp16, bf16 or int8, multiplied in fp32.

A decode step streams every weight once, so on the CPU its time is bytes over memory bandwidth.
A 16-bit copy halves those bytes and an int8 copy (one fp32 scale per output row) quarters
them; the C loops in ``core/_kernels.c`` widen each weight to fp32 in registers as they stream
it. Measured here on the 1B shape's 11264x2048 gate/up matrix, 2 threads, twelve matrices in
turn so none stays in cache (``python -m benchmarks.matvec``): fp32 (OpenBLAS) 2.6-2.7 ms, fp16
1.4, bf16 1.5, int8 0.7-0.8. Activations and sums stay fp32, except that an int8 decode step also
rounds its activations to int8 in blocks of 32, as llama.cpp's Q8_0 does.

``fp16``/``bf16`` are exact for a checkpoint stored in that format (its fp32 weights were
widened from it); for an fp32 checkpoint they round each weight (fp16: 11 significant bits,
bf16: 8). ``int8`` always rounds (symmetric, per output row).
"""

from __future__ import annotations

import numpy as np
import torch

from . import cpu_capabilities, page_memory
from .devices import DTYPE_NAMES

try:
    from . import _kernels
except ImportError:  # not compiled on this machine (setup.py builds it where a C compiler is)
    _kernels = None

PRECISIONS = ("fp16", "bf16", "int8")
BLOCK = 32  # the kernels' column block: rows are stored in fours, interleaved by blocks
_KINDS = {"fp16": 0, "bf16": 1, "int8": 2}


def unavailable_reason() -> str | None:
    """Why compact decode weights cannot run here, or None when they can."""
    if _kernels is None:
        return "the C kernels (core/_kernels.c) are not compiled on this machine: rerun scripts/install"
    if _kernels.simd() == "portable":
        return "the C kernels are built without AVX2/FMA/F16C here, slower than fp32 NumPy"
    if not cpu_capabilities.current().avx2:
        return "this CPU has no AVX2/FMA/F16C (core.cpu_capabilities), so the kernels are slower than fp32 NumPy"
    return None


def available() -> bool:
    return unavailable_reason() is None


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 rows with one fp32 scale per row (per output channel): (values, scales)."""
    w = weight.detach().to(torch.float32)
    scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    return torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8), scales


def fits(weight: torch.Tensor) -> bool:
    """True when the kernels' layout holds ``weight`` (out, in): out in fours, in in blocks."""
    out, cols = weight.shape
    return out % 4 == 0 and cols % BLOCK == 0 and out > 0 and cols > 0


def _interleave(values: torch.Tensor) -> np.ndarray:
    """(out, in) -> the kernels' layout (rows in fours, block b of row 4g + k at (4g, 4b + k)),
    written straight into huge-page memory where the OS offers it (``core.page_memory``)."""
    out, cols = values.shape
    laid_out = page_memory.empty((out, cols), values.numpy().dtype)
    torch.from_numpy(laid_out).view(out // 4, cols // BLOCK, 4, BLOCK).copy_(
        values.reshape(out // 4, 4, cols // BLOCK, BLOCK).transpose(1, 2))
    return laid_out


def _deinterleave(values: torch.Tensor) -> torch.Tensor:
    out, cols = values.shape
    return values.reshape(out // 4, cols // BLOCK, 4, BLOCK).transpose(1, 2).reshape(out, cols)


class CompactWeight:
    """``x @ W.T`` for a few rows of fp32 activations, from W (out, in) kept in ``precision``."""

    def __init__(self, weight: torch.Tensor, precision: str):
        if precision not in _KINDS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if not fits(weight):
            raise ValueError(f"a {tuple(weight.shape)} matrix does not fit the kernels' layout "
                             f"(rows in fours, columns in blocks of {BLOCK})")
        self.precision = precision
        self.kind = _KINDS[precision]
        self.out_features, self.in_features = weight.shape
        with torch.no_grad():
            if precision == "int8":
                values, scales = quantize_rows(weight)
                self.scales = scales.numpy()
            else:  # torch rounds to nearest even; the bits travel as int16 (NumPy has no bfloat16)
                values = weight.detach().to(DTYPE_NAMES[precision]).view(torch.int16)
                self.scales = b""
            self.values = _interleave(values)

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + getattr(self.scales, "nbytes", 0)

    def __call__(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        """``x`` (rows, in) fp32, at most 8 rows; returns (rows, out) fp32."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.empty((x.shape[0], self.out_features), dtype=np.float32)
        _kernels.matmul(self.kind, self.values, self.scales, x, y, self.out_features, self.in_features,
                        x.shape[0], threads)
        return y

    def widened(self) -> torch.Tensor:
        """The fp32 matrix (out, in) these bytes stand for (for tests and error estimates)."""
        values = _deinterleave(torch.from_numpy(self.values))
        if self.precision == "int8":
            return values.to(torch.float32) * torch.from_numpy(self.scales)[:, None]
        return values.view(DTYPE_NAMES[self.precision]).to(torch.float32)
