"""Choose the device and dtype a model runs on.

``auto`` prefers CUDA, then Apple's MPS, then the CPU. The dtype follows the device: bf16 on CUDA
where the GPU supports it (else fp16), fp16 on MPS, and on the CPU bf16 only where the processor
has native bf16 arithmetic (AVX512-BF16 or AMX); elsewhere bf16 is emulated and many times
slower than fp32.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

from . import cpu_capabilities, options
from .errors import DeviceUnavailable, InvalidParameter

DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPE_NAMES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}
SHORT_NAMES = {
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
}  # dtype -> its short name


def cuda_available() -> bool:
    return torch.cuda.is_available()


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has native bf16 arithmetic: the given /proc/cpuinfo text lists
    AVX512-BF16, AMX-BF16 (x86) or BF16 (Arm); without a text, ``cpu_capabilities.current()``
    (the probe, or what a test injected)."""
    if cpuinfo is None:
        return cpu_capabilities.current().native_bf16
    return cpu_capabilities.from_cpuinfo(cpuinfo).native_bf16


def select_device(requested: str = "auto") -> str:
    """Resolve ``requested`` to ``cuda``, ``mps`` or ``cpu``; an unavailable explicit choice is an error."""
    name = (requested or "auto").lower()
    base = name.split(":", 1)[0]
    if base not in DEVICES:
        raise InvalidParameter(
            "device", f"device must be one of {', '.join(DEVICES)} (got {requested!r})"
        )
    if base == "auto":
        if cuda_available():
            return "cuda"
        if mps_available():
            return "mps"
        return "cpu"
    if base == "cuda" and not cuda_available():
        raise DeviceUnavailable(
            "device 'cuda' was requested but CUDA is not available on this machine"
        )
    if base == "mps" and not mps_available():
        raise DeviceUnavailable(
            "device 'mps' was requested but Apple MPS is not available on this machine"
        )
    return name


def select_dtype(
    device: str,
    requested: object = None,
    stored: torch.dtype | None = None,
    decode_weights: str = "auto",
) -> torch.dtype:
    """The dtype for ``device``: the caller's choice if given, else the fastest one.

    On the CPU: fp32 masters on every CPU kind (``core.backends.select.master_dtype`` says why)."""
    if isinstance(requested, torch.dtype):
        return requested
    if isinstance(requested, str) and requested.lower() != "auto":
        try:
            return DTYPE_NAMES[requested.lower()]
        except KeyError:
            allowed = "bfloat16, float16, float32, auto or a torch.dtype"
            raise InvalidParameter(
                "torch_dtype", f"torch_dtype must be {allowed} (got {requested!r})"
            ) from None
    if requested is not None and not isinstance(requested, str):
        raise InvalidParameter(
            "torch_dtype", f"torch_dtype must be a torch.dtype or a string (got {requested!r})"
        )
    base = device.split(":", 1)[0]
    if base == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if base == "mps":
        return torch.float16
    from .backends import select  # the one place that decides the CPU's path

    return select.master_dtype(stored, decode_weights)[0]


# Below this many bytes of weights a forward pass is too short to split across threads: on a
# busy 2-core machine two threads made a 0.5 MB model's decode step 7x slower than one thread
# (their barriers wait on each other), see benchmarks/RESULTS.md.
SMALL_MODEL_BYTES = 64 * 2**20


def weight_bytes(model) -> int:
    """Bytes of a model's parameters: what sizes its thread count and prefill chunks."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def choose_cpu_threads(weight_bytes: int, requested: int | None = None) -> int:
    """Intra-op threads for CPU inference: one for small models, every core for large ones.

    ``DEEPSHIVA_CPU_THREADS`` (or ``requested``) overrides the choice.
    """
    override = requested or options.read("cpu_threads")
    if override:
        try:
            value = int(override)
        except ValueError:
            raise InvalidParameter(
                "threads", f"threads must be a positive integer (got {override!r})"
            ) from None
        if value < 1:
            raise InvalidParameter(
                "threads", f"threads must be a positive integer (got {override!r})"
            )
        return value
    return 1 if weight_bytes < SMALL_MODEL_BYTES else available_cores()


def use_cpu_threads(count: int) -> None:
    """Run PyTorch's ops and NumPy's OpenBLAS products (the decode step, core.blas_decode) on
    ``count`` threads: OpenBLAS would otherwise start one per core whatever PyTorch uses."""
    torch.set_num_threads(count)
    threadpool_limits(limits=count, user_api="blas")


DECODE_WEIGHTS = ("auto", "fp32", "fp16", "bf16", "int8", "int4")


def check_decode_weights(requested: str) -> str:
    """``requested`` if it names a decode-weight format, else an InvalidParameter naming them."""
    if requested not in DECODE_WEIGHTS:
        raise InvalidParameter(
            "decode_weights",
            f"decode_weights must be one of {', '.join(DECODE_WEIGHTS)} (got {requested!r})",
        )
    return requested


def available_memory_bytes() -> int | None:
    """Memory available for new allocations (Linux's MemAvailable, which counts page cache that
    can be dropped, such as the checkpoint just read), or None where the system does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def choose_decode_weights(
    requested: str,
    device: str,
    stored_dtype: torch.dtype | None,
    model_bytes: int,
    free_bytes: int | None,
    kernels: bool,
    master_dtype: torch.dtype = torch.float32,
) -> str:
    """The bytes a CPU decode step reads: ``core.backends.select.decode_weights``'s choice."""
    from .backends import select

    return select.decode_weights(
        requested, device, stored_dtype, model_bytes, free_bytes, kernels, master_dtype
    )[0]
