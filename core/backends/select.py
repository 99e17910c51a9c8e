"""The one place that decides how a model runs on this machine, and says why.

Five choices, each returned with its reason (and, where a faster path was not taken, why not):

- the master weights' dtype on the CPU (``master_dtype``): a 16-bit checkpoint's own format where
  the C kernels run (the model's one copy), else fp32;
- the bytes a CPU decode step reads (``decode_weights``): the 16-bit masters themselves, or a
  compact format asked for (int8, int4), where the C kernels run, else the masters;
- the dtype of prompts' GEMMs over those weights (``prefill_dtype``): bf16 where the CPU has it,
  else fp32 with each matrix widened in turn (never a second copy of the model);
- the KV cache's elements on the CPU's NumPy/C decode path (``kv_cache_format``): bf16 with
  compact decode weights where the SIMD kernels read it, else fp32;
- the backend and its decode path (``backend``): the lean forward (``core.lean_llama``) where it
  computes the model exactly, with decode steps in NumPy and the C kernels (one fused C call a
  token where every layer product is compact) on the CPU; transformers (``HFBackend``), the
  always-correct fallback, for everything else.

The CPU's capabilities come from ``core.cpu_capabilities`` (injectable), so tests run every branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import compact_weights, cpu_capabilities, options
from ..devices import SHORT_NAMES, check_decode_weights


@dataclass
class PathChoice:
    """What runs a model's prefill and decode steps, and why."""

    backend: str  # "lean-llama" | "transformers"
    prefill: str  # e.g. "torch bf16 GEMMs, fp32 activations"
    decode: str  # e.g. "fused C step, bf16 weights"
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"prefill: {self.prefill}; decode: {self.decode}"

    def as_dict(self) -> dict:
        return {
            "summary": self.summary(),
            "backend": self.backend,
            "prefill": self.prefill,
            "decode": self.decode,
            "reasons": list(self.reasons),
        }


# -- master weights -------------------------------------------------------------------------
def master_dtype(
    stored: torch.dtype | None = None, decode_weights: str = "auto", kernels: bool | None = None
) -> tuple[torch.dtype, str]:
    """The CPU's master dtype when the user did not choose one, and why.

    A 16-bit checkpoint loads in its own format wherever the C kernels run: it is then the
    model's one copy, which decode steps read in C and prompts' GEMMs read in PyTorch (bf16 GEMMs
    where the CPU has native bf16, else each matrix widened to fp32 in turn, see
    ``prefill_dtype``); int8/int4 decode weights replace it layer by layer as they are built. An
    fp32 checkpoint, fp32 decode weights, or a machine without the kernels keep fp32 masters
    (NumPy/OpenBLAS decodes from them; bf16 GEMMs are emulated and many times slower on a CPU
    without native bf16). ``kernels``: whether the C kernels run here (default: probed)."""
    if kernels is None:
        kernels = compact_weights.available()
    stored_name = SHORT_NAMES.get(stored)
    if decode_weights == "fp32":
        return torch.float32, "fp32 masters: fp32 decode weights were asked for"
    if stored not in (torch.bfloat16, torch.float16):
        return torch.float32, (
            f"fp32 masters: the checkpoint is {stored_name or 'of unknown dtype'}, "
            "so a 16-bit copy would round it"
        )
    if not kernels:
        why = compact_weights.unavailable_reason() or "the C kernels do not run here"
        return torch.float32, f"fp32 masters, decoded through NumPy/OpenBLAS: {why}"
    if decode_weights in ("int8", "int4"):
        return stored, (
            f"{stored_name} masters, the checkpoint's own, replaced layer by layer by the "
            f"{decode_weights} decode weights (one copy)"
        )
    return stored, (
        f"{stored_name} masters, the checkpoint's own: the model's one copy, read by prompts' "
        "GEMMs and the C decode step alike"
    )


def prefill_dtype(decode_weights: str) -> tuple[torch.dtype, str]:
    """The dtype of prompts' GEMMs over weights kept at ``decode_weights`` (a compact format), and
    why: bf16 where the CPU multiplies bf16 natively (bf16 weights read as they are, others widened
    a matrix at a time), else fp32 (each matrix widened in turn: a temporary of one matrix, where a
    second, fp32 copy of the model would double its memory)."""
    caps = cpu_capabilities.current()
    if caps.native_bf16 and decode_weights != "fp16":
        how = "as they are" if decode_weights == "bf16" else "widened a matrix at a time"
        return torch.bfloat16, (
            f"prefill: torch bf16 GEMMs ({caps.describe()}) over the {decode_weights} weights {how}"
        )
    why = (
        "fp16 GEMMs are slow on CPUs"
        if decode_weights == "fp16"
        else f"this CPU ({caps.describe()}) emulates bf16 GEMMs, many times slower"
    )
    return torch.float32, (
        f"prefill: torch fp32 GEMMs, the {decode_weights} weights widened a matrix at a time "
        f"({why}; no second copy of the model)"
    )


# -- decode weights -------------------------------------------------------------------------
def decode_weights(
    requested: str,
    device: str,
    stored: torch.dtype | None,
    model_bytes: int,
    free_bytes: int | None,
    kernels: bool,
    master: torch.dtype = torch.float32,
) -> tuple[str, str]:
    """The bytes a CPU decode step reads: ``requested`` unless it is auto, and why.

    auto picks a compact copy in the format that is exact: the masters' own 16-bit format when
    they are 16-bit, else the checkpoint's (the fp32 masters were widened from it). It needs the
    C kernels and at most half the free memory for the copy (2 bytes a parameter). Everything
    else decodes from the masters ("fp32"). Size does not matter: the kernels beat OpenBLAS's
    fp32 products on the 8.5 MB shipped model too (decode 0.94 against 1.50 ms a token).
    """
    if check_decode_weights(requested) != "auto":
        return requested, f"{requested} decode weights: asked for"
    if master in (torch.bfloat16, torch.float16):  # the masters are the decode weights: no copy
        lossless, copy_bytes = SHORT_NAMES[master], 0
    else:
        lossless = SHORT_NAMES.get(stored) if stored != torch.float32 else None
        copy_bytes = model_bytes // 2
    if device != "cpu":
        return "fp32", "decode reads the model's own weights: compact copies are for the CPU"
    if lossless is None:
        return (
            "fp32",
            "decode reads the fp32 masters: the checkpoint is fp32, so a 16-bit copy would round it",
        )
    if not kernels:
        return "fp32", f"decode reads the masters: {compact_weights.unavailable_reason()}"
    if free_bytes is not None and copy_bytes > free_bytes // 2:
        return "fp32", (
            f"decode reads the masters: a {lossless} copy ({copy_bytes >> 20} MiB) would take over "
            f"half the free memory ({free_bytes >> 20} MiB)"
        )
    if copy_bytes == 0:
        return lossless, f"{lossless} decode weights: the masters themselves (one copy)"
    return (
        lossless,
        f"{lossless} decode weights: a compact copy exact for the {SHORT_NAMES.get(master)} masters",
    )


def decode_weights_refusal(requested: str, device: str) -> str | None:
    """Why the decode weights asked for cannot run on ``device`` at all (said before the slow
    load), or None. Compact copies are for the CPU; all but int8 (which has PyTorch's int8
    kernel to fall back on) need the C kernels."""
    if requested in ("auto", "fp32"):
        return None
    if device.split(":", 1)[0] != "cpu":
        return (
            f"{requested} decode weights are for the CPU only (the model is on {device}; "
            "load_in_8bit saves memory there)"
        )
    why = None if requested == "int8" else compact_weights.unavailable_reason()
    return None if why is None else f"{requested} decode weights cannot run here: {why}"


# -- KV cache -------------------------------------------------------------------------------
# int8: rows of int8 values each followed by its fp32 scale (core.kv_int8), in an int8 tensor.
KV_FORMATS = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "int8": torch.int8,
}
KV_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}  # a value (int8 adds a scale a row)


def kv_cache_format(decode_weights: str, requested: str | None = None) -> tuple[str, str]:
    """The elements of the KV cache that the CPU's NumPy/C decode path reads and writes, and why:
    ``requested`` (default DEEPSHIVA_KV_CACHE) unless it is auto.

    auto: bf16 with compact decode weights where the SIMD kernels run. At long contexts a decode
    step streams the whole cache (stable-code-3b: 0.67 GB of fp32 keys and values at 1024 tokens
    beside 5.6 GB of bf16 weights), and the kernels widen 16-bit keys as they read them (a shift
    for bf16) with every sum in fp32: at 1024 keys on the 3B shape attention took 0.76 against
    0.98 ms a layer on this project's machine (AVX2 and AVX512 loops alike; benchmarks/RESULTS.md,
    "kv16" section). bf16 rather than fp16: the range of fp32 (a large key cannot overflow) and
    the same numbers on every CPU kind. fp32 stays where decode weights are fp32 (every value of
    the step at full precision: the exactness tests' path) and for the portable C loops, which
    widen scalar by scalar (bf16 keys took 2.35 against 1.82 ms a layer there)."""
    from .. import compact_weights

    requested = requested or options.read("kv_cache")
    if requested != "auto":
        if requested not in KV_FORMATS:
            raise ValueError(
                f"the KV cache must be auto, {', '.join(KV_FORMATS)}, not {requested!r}"
            )
        return requested, f"{requested} KV cache: asked for (DEEPSHIVA_KV_CACHE)"
    if decode_weights == "fp32":
        return "fp32", "fp32 KV cache: fp32 decode weights keep the whole step at full precision"
    variant = compact_weights.variant() or cpu_capabilities.current().kernels
    if variant == "portable":
        return "fp32", (
            "fp32 KV cache: the portable C loops widen 16-bit keys one at a time, slower than "
            "they read fp32 ones"
        )
    return "bf16", (
        f"bf16 KV cache ({variant} kernels): half the bytes attention reads at long contexts, "
        "widened to fp32 as read, every sum in fp32"
    )


# -- backend and decode path ----------------------------------------------------------------
def lean_enabled() -> bool:
    """The lean path is on unless ``DEEPSHIVA_LEAN=0``."""
    return options.read("lean")


def numpy_decode_reason(backend, switch: bool = True) -> str | None:
    """Why the lean backend's short passes cannot run through NumPy and the C kernels, or None
    (``switch``: whether DEEPSHIVA_BLAS_DECODE=0 may turn it off)."""
    if switch and not options.read("blas_decode"):
        return "DEEPSHIVA_BLAS_DECODE=0 turns the NumPy/C decode path off"
    if backend.device.type != "cpu":
        return f"the NumPy/C decode path is for the CPU (the model is on {backend.device.type})"
    if backend.act_dtype != torch.float32 or not backend.complex_rope:
        return "the NumPy/C decode path needs fp32 activations"
    if backend.decode_weights == "fp32":
        if backend.dtype != torch.float32:
            return (
                f"{SHORT_NAMES.get(backend.dtype)} masters without a compact copy decode in PyTorch"
            )
        return None
    return compact_weights.unavailable_reason()


def backend(
    model, lean: bool | None = None, decode_weights: str = "fp32", release_model: bool = False
):
    """The backend for ``model`` and the reasons for it: the lean path where it is exact (and
    not turned off), else transformers. ``decode_weights`` other than fp32 needs the lean path
    on the CPU; asking for it elsewhere is a ValueError. ``release_model`` lets the lean backend
    empty the model's tensors it does not read (the engine's one copy)."""
    from .. import lean_llama
    from .hf import HFBackend

    if lean is None:
        lean = lean_enabled()
    why_not = (
        "DEEPSHIVA_LEAN=0 turns the lean path off"
        if not lean
        else lean_llama.unsupported_reason(model)
    )
    if why_not is None:
        reasons, gemm_dtype = [], None
        if decode_weights != "fp32":
            gemm_dtype, why = prefill_dtype(decode_weights)
            reasons.append(why)
        runner_backend = lean_llama.LeanLlamaBackend(
            model,
            decode_weights=decode_weights,
            prefill_dtype=gemm_dtype,
            release_model=release_model,
        )
        if not runner_backend.compact:  # compact weights without the C kernels: PyTorch's int8
            reasons.clear()
        reasons.append(runner_backend.kv_cache_reason)
        return runner_backend, reasons
    if decode_weights != "fp32":
        raise ValueError(
            f"{decode_weights} decode weights need a plain Llama-architecture model on the CPU "
            f"({model.config.model_type} is served through transformers: {why_not}; use load_in_8bit instead)"
        )
    return HFBackend(model), [f"transformers, the always-correct fallback: {why_not}"]


def explain(runner_backend, reasons: list[str]) -> PathChoice:
    """The path ``runner_backend`` runs, described, with ``reasons`` and why faster ones were not taken."""
    described = runner_backend.describe()
    reasons = list(reasons)
    blas = getattr(runner_backend, "blas", None)
    if described["backend"].startswith("lean-"):
        if blas is None:
            reasons.append(f"decode in PyTorch, not NumPy/C: {runner_backend.numpy_decode_why_not}")
        elif blas.fused is None and blas.compact:
            why = (
                blas.fused_why_not
                or "not every layer product fits the kernels' layout in one format"
            )
            reasons.append(
                f"decode op by op in NumPy and the C kernels, not one fused C call: {why}"
            )
        elif not blas.compact:
            reasons.append(
                "decode in NumPy/OpenBLAS from fp32 weights, not the fused C step: no compact copy"
            )
    return PathChoice(described["backend"], described["prefill"], described["decode"], reasons)
