"""Weight matrices kept in fewer bytes for decode steps: fp16, bf16, int8 or int4, multiplied in fp32.

A decode step streams every weight once, so on the CPU its time is bytes over memory bandwidth.
fp16/bf16 weights are kept as the plain (out, in) matrix, so PyTorch's prefill GEMMs read the same
bytes and a model needs one copy; int8/int4 rows are interleaved for the kernels (``dense``
widens one matrix at a time for PyTorch).
A 16-bit copy halves those bytes, an int8 copy (one fp32 scale per output row) quarters them and
an int4 copy (one fp16 scale per 32 weights of a row, as llama.cpp's Q4_0) takes 4.5 bits a
weight. The C loops in ``core/_kernels*.c`` read them; one build holds a variant per kind of CPU
(``variants()``: ``portable`` C, ``avx2``, ``avx512bf16``) and runs the fastest that both the
CPU description of ``core.cpu_capabilities`` allows (probed, injected by a test, or
``DEEPSHIVA_CPU``) and the hardware executes; ``use_variant(name)`` forces one (tests and
benchmarks comparing the loops). Measured
here on the 1B shape's 11264x2048 gate/up matrix, 2 threads, twelve matrices in turn so none stays
in cache: see benchmarks/RESULTS.md (``python -m benchmarks.matvec``).

Activations and sums stay fp32, except that an int8 or int4 decode step (one row) rounds its
activations to int8 in blocks of 32, as llama.cpp's Q8_0 does, and the ``avx512bf16`` variant
rounds them to bf16 for bf16 weights (the CPU's bf16 dot products, as llama.cpp uses them): its
results differ from the other variants' within that rounding (about 2^-9 relative per value).

``fp16``/``bf16`` are exact for a checkpoint stored in that format (its fp32 weights were
widened from it); for an fp32 checkpoint they round each weight (fp16: 11 significant bits,
bf16: 8). ``int8`` and ``int4`` always round (symmetric; int4 to 16 levels a block).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from . import cpu_capabilities, page_memory
from .devices import DTYPE_NAMES

try:
    from . import _kernels
except ImportError:  # not compiled on this machine (setup.py builds it where a C compiler is)
    _kernels = None

PRECISIONS = ("fp16", "bf16", "int8", "int4")
SIXTEEN_BIT = ("fp16", "bf16")  # stored as the plain (out, in) matrix, which PyTorch reads too
MAX_ROWS = 8  # the most activation rows one kernel call multiplies
BLOCK = 32  # the kernels' column block: int8/int4 rows are stored in fours, interleaved by blocks
_KINDS = {"fp16": 0, "bf16": 1, "int8": 2, "int4": 3}
VARIANTS = ("portable", "avx2", "avx512bf16")  # slowest first


def choose_variant(
    runnable: tuple[str, ...], requested: str | None = None, allowed: str = VARIANTS[-1]
) -> str:
    """The kernel variant to run: ``requested`` (a name from VARIANTS) where the CPU runs it, else
    the fastest of ``runnable`` (what the hardware executes) no faster than ``allowed`` (what the
    CPU description allows, ``CpuCapabilities.kernels``). A request it cannot honour raises
    ValueError naming what this CPU runs."""
    if requested:
        if requested not in VARIANTS:
            raise ValueError(
                f"the kernel variant must be one of {', '.join(VARIANTS)}, not {requested!r}"
            )
        if requested not in runnable:
            raise ValueError(
                f"this CPU cannot run the {requested} kernels; it runs {', '.join(runnable)}"
            )
        return requested
    ceiling = VARIANTS.index(allowed)
    return max((v for v in runnable if VARIANTS.index(v) <= ceiling), key=VARIANTS.index)


def variants() -> tuple[str, ...]:
    """The kernel variants this build and CPU run, slowest first (empty without the kernels)."""
    return tuple(_kernels.variants()) if _kernels is not None else ()


def variant() -> str | None:
    """The kernel variant the products run now, or None without the kernels."""
    return _kernels.simd() if _kernels is not None else None


def use_variant(name: str | None = None) -> str:
    """Run the kernel variant ``name`` from now on (None: the one the CPU description allows,
    ``use_variant_of(cpu_capabilities.current())``); returns it."""
    if _kernels is None:
        raise RuntimeError(unavailable_reason())
    if name is None:
        return use_variant_of(cpu_capabilities.current())
    chosen = choose_variant(variants(), name)
    _kernels.set_variant(chosen)
    return chosen


def use_variant_of(capabilities: cpu_capabilities.CpuCapabilities) -> str | None:
    """Run the fastest variant that ``capabilities`` allow and this CPU executes (None without
    the kernels). ``cpu_capabilities.inject`` calls it, so an injected CPU kind moves the path
    decision and the kernels together."""
    if _kernels is None:
        return None
    chosen = choose_variant(variants(), allowed=capabilities.kernels)
    _kernels.set_variant(chosen)
    return chosen


def _follow_the_cpu_description() -> None:
    try:
        use_variant_of(cpu_capabilities.current())
    except ValueError as error:  # a bad DEEPSHIVA_CPU: named again where paths are chosen
        warnings.warn(f"{error}; running the {variant()} kernels", RuntimeWarning, stacklevel=2)


if _kernels is not None:
    _follow_the_cpu_description()


def unavailable_reason() -> str | None:
    """Why compact decode weights cannot run here, or None when they can."""
    if _kernels is None:
        return "the C kernels (core/_kernels.c) are not compiled on this machine: rerun scripts/install"
    if not cpu_capabilities.current().avx2:
        return "this CPU has no AVX2/FMA/F16C (core.cpu_capabilities), so the kernels are slower than fp32 NumPy"
    if _kernels.simd() == "portable":
        return (
            "the C kernels run their portable loops here (built without SIMD, or forced with "
            "use_variant): slower than fp32 NumPy"
        )
    return None


def available() -> bool:
    return unavailable_reason() is None


QUANTIZE_ROWS = 1024  # rows widened to fp32 at a time while quantizing (bounds the temporaries)
# Weights quantized, or widened for a prompt, in one slice: 1M fp32 values are 4 MB, so the
# temporaries of a vocabulary-sized matrix or a 3B model's MLP stay a few MB (int4's rounding
# takes about ten of them at once).
SLICE_WEIGHTS = 1 << 20


def _slice_rows(cols: int) -> int:
    """Rows of a slice of ``cols`` columns: about SLICE_WEIGHTS weights, a whole group of four."""
    return max(4, SLICE_WEIGHTS // cols // 4 * 4)


def row_slices(parts: list[torch.Tensor]):
    """(first row, slice) over the rows of ``parts`` stacked, each slice inside one part and a
    whole number of the kernels' groups of four rows (every part's rows are a multiple of 4)."""
    first = 0
    for part in parts:
        step = _slice_rows(part.shape[1])
        for start in range(0, part.shape[0], step):
            yield first + start, part[start : start + step]
        first += part.shape[0]


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 rows with one fp32 scale per row (per output channel): (values, scales).
    Rows are rounded a slice at a time, so a vocabulary-sized matrix never exists in fp32."""
    weight = weight.detach()
    values = torch.empty(weight.shape, dtype=torch.int8)
    scales = torch.empty(weight.shape[0], dtype=torch.float32)
    for start in range(0, weight.shape[0], QUANTIZE_ROWS):
        w = weight[start : start + QUANTIZE_ROWS].to(torch.float32, copy=True)
        part = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        scales[start : start + QUANTIZE_ROWS] = part
        values[start : start + QUANTIZE_ROWS] = w.div_(part[:, None]).round_().clamp_(-127, 127)
    return values, scales


def fits(weight: torch.Tensor) -> bool:
    """True when the kernels' layout holds ``weight`` (out, in): out in fours, in in blocks."""
    out, cols = weight.shape
    return out % 4 == 0 and cols % BLOCK == 0 and out > 0 and cols > 0


def quantize_blocks_int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows in blocks of 32 weights, each ``scale * q`` with q in [-8, 7] and an fp16 scale, as
    llama.cpp's Q4_0 rounds (the value of largest magnitude becomes -8 * scale): (q, scales) with
    q int8 (out, in) and scales fp16 (out, in / 32)."""
    w = weight.detach().to(torch.float32)
    out, cols = w.shape
    blocks = w.reshape(out, cols // BLOCK, BLOCK)
    extreme = blocks.gather(2, blocks.abs().argmax(dim=2, keepdim=True))[..., 0]
    scales = (extreme / -8.0).to(torch.float16)
    divisor = scales.to(torch.float32)
    divisor = torch.where(divisor == 0, torch.ones_like(divisor), divisor)
    q = torch.round(blocks / divisor[..., None]).clamp(-8, 7).to(torch.int8).reshape(out, cols)
    return q, scales


def quantize_packed_int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``quantize_blocks_int4`` and ``_pack_int4`` in one: the same bytes (packed (out, in / 2)
    uint8 and fp16 scales), computed in place in one fp32 copy of ``weight`` (no int8, int16
    or boolean temporaries of its size): about half the time, which is most of an int4 load
    (stable-code-3b: 2.8B weights quantized on two cores)."""
    out, cols = weight.shape
    # in the weights' own dtype up to the division (16-bit values are exact in fp32: the same
    # largest magnitude, found first, and the same quotients), which writes the fp32 copy
    blocks = weight.detach().reshape(out, cols // BLOCK, BLOCK)
    extreme = blocks.gather(2, blocks.abs().argmax(dim=2, keepdim=True))[..., 0]
    scales = (extreme.to(torch.float32) / -8.0).to(torch.float16)
    divisor = scales.to(torch.float32).masked_fill_(scales == 0, 1.0)
    q = torch.div(blocks, divisor[..., None]).round_().clamp_(-8, 7).add_(8)  # 0..15 in fp32
    packed = torch.add(q[..., : BLOCK // 2], q[..., BLOCK // 2 :], alpha=16)  # i + 16 high
    return packed.to(torch.uint8).view(out, cols // 2), scales


def _pack_int4(q: torch.Tensor) -> torch.Tensor:
    """(out, in) values in [-8, 7] -> (out, in / 2) bytes: byte i of a block of 32 holds value i
    (low nibble) and value i + 16 (high nibble), each plus 8."""
    out, cols = q.shape
    u = (q.to(torch.int16) + 8).reshape(out, cols // BLOCK, 2, BLOCK // 2)
    return (u[:, :, 0] | (u[:, :, 1] << 4)).to(torch.uint8).reshape(out, cols // 2)


def _unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    out, half = packed.shape
    p = packed.to(torch.int16).reshape(out, half // (BLOCK // 2), BLOCK // 2)
    return (torch.stack((p & 0x0F, p >> 4), dim=2) - 8).reshape(out, half * 2).to(torch.int8)


def _write_interleaved(laid_out: np.ndarray, first: int, rows: torch.Tensor, block: int) -> None:
    """Write plain ``rows`` (whole groups of four) as rows ``first`` on of ``laid_out``, an array in
    the kernels' layout (block b of row 4g + k at (4g, 4b + k); ``block`` columns a block)."""
    out, cols = laid_out.shape
    count = rows.shape[0]
    groups = torch.from_numpy(laid_out).view(out // 4, cols // block, 4, block)
    groups[first // 4 : (first + count) // 4].copy_(
        rows.reshape(count // 4, 4, cols // block, block).transpose(1, 2)
    )


def _deinterleave(values: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    out, cols = values.shape
    return values.reshape(out // 4, cols // block, 4, block).transpose(1, 2).reshape(out, cols)


def _interleaved_view(laid_out: np.ndarray, block: int) -> torch.Tensor:
    """``laid_out`` (kernels' layout) as (groups, 4, blocks, block) in plain row order: a view."""
    out, cols = laid_out.shape
    return torch.from_numpy(laid_out).view(out // 4, cols // block, 4, block).transpose(1, 2)


def _interleaved_rows(plain: torch.Tensor, block: int) -> torch.Tensor:
    """A plain (out, in) tensor as (groups, 4, blocks, block): a view."""
    out, cols = plain.shape
    return plain.view(out // 4, 4, cols // block, block)


def _plain_copy(weight: torch.Tensor, dtype: torch.dtype) -> tuple[np.ndarray, torch.Tensor]:
    """``weight`` rounded to ``dtype`` (nearest even), written straight into huge-page memory where
    the OS offers it (``core.page_memory``), no full-size temporary: (the bits as int16, the
    same memory as a ``dtype`` tensor)."""
    laid_out = page_memory.empty(tuple(weight.shape), np.int16)
    tensor = torch.from_numpy(laid_out).view(dtype)
    tensor.copy_(weight)
    return laid_out, tensor


class CompactWeight:
    """``x @ W.T`` for a few rows of fp32 activations, from W (out, in) kept in ``precision``.

    fp16 and bf16 are kept as the plain (out, in) matrix (``tensor``), which PyTorch's GEMMs read
    as they are: a prompt's products and a decode step's read the same bytes. With ``share`` a
    ``weight`` already in that format is used where it lies (no copy at all). int8 and int4 are
    interleaved for the kernels; PyTorch reads them through ``dense``, one matrix at a time."""

    def __init__(
        self,
        weight: torch.Tensor | list[torch.Tensor],
        precision: str,
        share: bool = False,
        release_source: bool = False,
    ):
        """``weight``: the (out, in) matrix, or int8/int4 only, its parts stacked by rows (q, k
        and v; gate and up), quantized a slice at a time straight from them, so neither the
        stacked matrix nor a full-size fp32 or int8 temporary ever exists. ``release_source``
        (int8/int4): nothing reads ``weight`` afterwards, so each slice's pages of a
        memory-mapped checkpoint leave the process's memory as soon as it is quantized."""
        if precision not in _KINDS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        parts = list(weight) if isinstance(weight, (list, tuple)) else [weight]
        if len(parts) > 1 and (
            precision in SIXTEEN_BIT or any(p.shape[0] % 4 for p in parts)
        ):  # stacked whole: 16-bit matrices are kept as one tensor anyway
            parts = [torch.cat([p.detach() for p in parts])]
        weight = parts[0]
        shape = (sum(p.shape[0] for p in parts), weight.shape[1])
        if not fits(torch.empty(shape, device="meta")):
            raise ValueError(
                f"a {shape} matrix does not fit the kernels' layout "
                f"(rows in fours, columns in blocks of {BLOCK})"
            )
        self.precision = precision
        self.kind = _KINDS[precision]
        self.out_features, self.in_features = shape
        with torch.no_grad():
            if precision in ("int8", "int4"):
                self._quantize([p.detach() for p in parts], release_source)
                return
            else:  # torch rounds to nearest even; the bits travel as int16 (NumPy has no bfloat16)
                dtype = DTYPE_NAMES[precision]
                weight = weight.detach()
                if share and weight.dtype == dtype and weight.is_contiguous():
                    self.tensor = weight
                    self.values = weight.view(torch.int16).numpy()
                else:
                    self.values, self.tensor = _plain_copy(weight, dtype)
                self.scales = b""

    def _quantize(self, parts: list[torch.Tensor], release_source: bool = False) -> None:
        """int8 rows (one fp32 scale each) or int4 blocks (one fp16 scale a block), quantized a
        slice of rows at a time and written straight into the kernels' interleaved layout."""
        out, cols = self.out_features, self.in_features
        # read once a matrix, not once a slice (parsing them took 8% of a 3B model's int4
        # load); ``parts`` keep their mappings alive meanwhile
        spans = page_memory.file_mappings() if release_source else None
        if self.precision == "int8":
            self.values = page_memory.empty((out, cols), np.int8)
            self.scales = np.empty(out, np.float32)
            for first, rows in row_slices(parts):
                values, scales = quantize_rows(rows)
                _write_interleaved(self.values, first, values, BLOCK)
                self.scales[first : first + len(rows)] = scales.numpy()
                if release_source:
                    page_memory.drop_file_pages([rows], whole_storage=False, spans=spans)
            return
        # the block scales in the weights' order too: group of four rows, block, row
        self.values = page_memory.empty((out, cols // 2), np.uint8)
        self.scales = page_memory.empty((out, cols // BLOCK), np.int16)
        for first, rows in row_slices(parts):
            packed, scales = quantize_packed_int4(rows)
            _write_interleaved(self.values, first, packed, BLOCK // 2)
            _write_interleaved(self.scales, first, scales.view(torch.int16), 1)
            if release_source:
                page_memory.drop_file_pages([rows], whole_storage=False, spans=spans)

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + getattr(self.scales, "nbytes", 0)

    def __call__(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        """``x`` (rows, in) fp32, at most 8 rows; returns (rows, out) fp32."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.empty((x.shape[0], self.out_features), dtype=np.float32)
        _kernels.matmul(
            self.kind,
            self.values,
            self.scales,
            x,
            y,
            self.out_features,
            self.in_features,
            x.shape[0],
            threads,
        )
        return y

    def dense(self, dtype: torch.dtype, out: torch.Tensor | None = None) -> torch.Tensor:
        """The matrix (out, in) in ``dtype`` for PyTorch's products: the stored tensor itself when
        it is 16-bit in ``dtype``, else widened from it into ``out`` (a buffer the caller reuses
        from matrix to matrix; a new tensor when None), with no full-size temporary:
        int8 rows times their scale (in ``dtype``), int4 nibbles times their block's scale."""
        if self.precision in SIXTEEN_BIT and self.tensor.dtype == dtype:
            return self.tensor
        shape = (self.out_features, self.in_features)
        if out is None:
            out = torch.empty(shape, dtype=dtype)
        if self.precision in SIXTEEN_BIT:
            return out.copy_(self.tensor)
        if self.precision == "int8":  # widened in place (int8 is exact in 16 bits), then scaled
            # read in the interleaved order (no deinterleaved int8 copy of the matrix first)
            scales = torch.from_numpy(self.scales).to(dtype)[:, None]
            _interleaved_rows(out, BLOCK).copy_(_interleaved_view(self.values, BLOCK))
            return out.mul_(scales)
        rows, cols = shape
        blocks = out.view(rows, cols // BLOCK, 2, BLOCK // 2)  # byte i: values i and i + 16
        step = _slice_rows(cols)
        for start in range(0, rows, step):
            # deinterleaved a slice at a time (whole groups of four rows): no full-size copy
            nibbles = _deinterleave(
                torch.from_numpy(self.values[start : start + step]), block=BLOCK // 2
            ).reshape(-1, cols // BLOCK, BLOCK // 2)
            scale = _deinterleave(torch.from_numpy(self.scales[start : start + step]), block=1)
            scale = scale.view(torch.float16)[:, :, None].to(torch.float32)
            offset = scale * -8.0  # (nibble - 8) * scale, computed in fp32, rounded once
            for half, values in enumerate((nibbles & 0x0F, nibbles >> 4)):
                torch.addcmul(offset, values, scale, out=blocks[start : start + step, :, half])
        return out

    def widened(self) -> torch.Tensor:
        """The fp32 matrix (out, in) these bytes stand for (for tests and error estimates)."""
        if self.precision in SIXTEEN_BIT:
            return self.tensor.to(torch.float32)
        if self.precision == "int4":
            q = _unpack_int4(_deinterleave(torch.from_numpy(self.values), block=BLOCK // 2))
            scales = (
                _deinterleave(torch.from_numpy(self.scales), block=1)
                .view(torch.float16)
                .to(torch.float32)
            )
            return (
                q.to(torch.float32).reshape(self.out_features, -1, BLOCK) * scales[..., None]
            ).reshape(self.out_features, self.in_features)
        values = _deinterleave(torch.from_numpy(self.values))
        if self.precision == "int8":
            return values.to(torch.float32) * torch.from_numpy(self.scales)[:, None]
        return values.view(DTYPE_NAMES[self.precision]).to(torch.float32)
