"""The one place that decides how a model runs on this machine, and says why.

Three choices, each returned with its reason (and, where a faster path was not taken, why not):

- the master weights' dtype on the CPU (``master_dtype``): fp32 (bf16 masters only when asked
  for: see ``master_dtype`` for the measurement);
- the bytes a CPU decode step reads (``decode_weights``): a compact copy of the masters in a
  format that is exact for them, where the C kernels run, else the masters themselves;
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
    stored: torch.dtype | None = None, decode_weights: str = "auto"
) -> tuple[torch.dtype, str]:
    """The CPU's master dtype when the user did not choose one, and why.

    fp32 on every CPU kind. Without native bf16, bf16 GEMMs are emulated and many times slower.
    With it, bf16 masters make prompts' GEMMs faster, but decode (most of a completion's time)
    reads a compact bf16 copy in C either way, and measured slower behind bf16 masters on this
    project's native-bf16 CPU (llama-30m, in-process interleaved rounds: 77 against 220 ms a
    token median, 44 against 60 best; benchmarks/RESULTS.md). ``torch_dtype="bfloat16"`` asks
    for bf16 masters (half the master bytes), which then also decode in C."""
    caps = cpu_capabilities.current()
    if not caps.native_bf16:
        return (
            torch.float32,
            f"fp32 masters: this CPU ({caps.describe()}) emulates bf16 GEMMs, many times slower",
        )
    if stored == torch.float16:
        return (
            torch.float32,
            "fp32 masters: bf16 would round the fp16 checkpoint (decode reads an fp16 copy)",
        )
    if decode_weights in ("fp32", "fp16"):
        return torch.float32, f"fp32 masters: {decode_weights} decode weights were asked for"
    return torch.float32, (
        "fp32 masters: on this native-bf16 CPU decode from a bf16 copy measured faster behind "
        "fp32 masters than bf16 ones (torch_dtype=bfloat16 halves the masters' memory)"
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
    if master in (torch.bfloat16, torch.float16):
        lossless, copy_bytes = SHORT_NAMES[master], model_bytes
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


def backend(model, lean: bool | None = None, decode_weights: str = "fp32"):
    """The backend for ``model`` and the reasons for it: the lean path where it is exact (and
    not turned off), else transformers. ``decode_weights`` other than fp32 needs the lean path
    on the CPU; asking for it elsewhere is a ValueError."""
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
        return lean_llama.LeanLlamaBackend(model, decode_weights=decode_weights), []
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
