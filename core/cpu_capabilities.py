"""What the CPU can do, read once, in one place, and replaceable by tests.

The fastest CPU path depends on two facts about the processor: whether it multiplies bf16
natively (AVX512-BF16 or AMX on x86, BF16 on Arm: PyTorch's bf16 GEMMs are then 2.6x faster
than its fp32 ones; without it bf16 is emulated and many times slower), and whether it has the
AVX2/FMA/F16C vectors the compact-weight kernels (``core/_kernels.c``) are written for. Every
decision that depends on them asks ``current()``, the C kernels' variant included
(``CpuCapabilities.kernels``: ``core.compact_weights`` runs the fastest variant the description
allows and the hardware runs). Tests and benchmarks describe another machine with
``inject(...)`` (or ``DEEPSHIVA_CPU=native-bf16|avx2|portable`` for a server process), so each
branch of the path decision and each kernel variant runs on any machine that can execute it.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from . import options


@dataclass(frozen=True)
class CpuCapabilities:
    """The facts about a CPU that choose its path."""

    native_bf16: bool  # bf16 arithmetic in hardware (AVX512-BF16, AMX-BF16, Arm BF16)
    avx2: bool  # AVX2 + FMA + F16C: the compact kernels' vector loops can run
    source: str = "probed"  # "probed" (/proc/cpuinfo), "injected", or the DEEPSHIVA_CPU preset

    @property
    def kernels(self) -> str:
        """The fastest C kernel variant this CPU allows (``core.compact_weights.VARIANTS``): the
        AVX512 one with bf16 dot products where bf16 is native (on x86), AVX2, else portable C."""
        if self.avx2:
            return "avx512bf16" if self.native_bf16 else "avx2"
        return "portable"

    def describe(self) -> str:
        if self.native_bf16:
            return "native bf16"
        return "AVX2 without native bf16" if self.avx2 else "no SIMD the kernels use"


PRESETS = {
    "native-bf16": CpuCapabilities(native_bf16=True, avx2=True, source="preset native-bf16"),
    "avx2": CpuCapabilities(native_bf16=False, avx2=True, source="preset avx2"),
    "portable": CpuCapabilities(native_bf16=False, avx2=False, source="preset portable"),
}
NATIVE_BF16, AVX2, PORTABLE = PRESETS["native-bf16"], PRESETS["avx2"], PRESETS["portable"]

_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def from_cpuinfo(cpuinfo: str, source: str = "probed") -> CpuCapabilities:
    """The capabilities listed in a /proc/cpuinfo text ("flags" on x86, "Features" on Arm)."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return CpuCapabilities(
        native_bf16=bool(flags & _BF16_FLAGS),
        avx2={"avx2", "fma", "f16c"} <= flags,
        source=source,
    )


def probe() -> CpuCapabilities:
    """This machine's capabilities (nothing known where /proc/cpuinfo cannot be read)."""
    try:
        return from_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return CpuCapabilities(native_bf16=False, avx2=False, source="unknown (no /proc/cpuinfo)")


_probed: CpuCapabilities | None = None
_injected: CpuCapabilities | None = None


def current() -> CpuCapabilities:
    """What the path decision assumes: an injected description, else DEEPSHIVA_CPU, else the probe."""
    global _probed
    if _injected is not None:
        return _injected
    preset = (options.read("cpu") or "").strip().lower()
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"DEEPSHIVA_CPU must be one of {', '.join(PRESETS)} (got {preset!r})")
        return PRESETS[preset]
    if _probed is None:
        _probed = probe()
    return _probed


@contextlib.contextmanager
def inject(capabilities: CpuCapabilities | str | None):
    """Within the block, decide paths as on a CPU with ``capabilities`` (a preset name or a
    description); None restores the probe."""
    global _injected
    if isinstance(capabilities, str):
        capabilities = PRESETS[capabilities]
    previous, _injected = _injected, capabilities
    _kernels_follow()
    try:
        yield capabilities
    finally:
        _injected = previous
        _kernels_follow()


def _kernels_follow() -> None:
    """Point the C kernels at the variant ``current()`` allows (where they are loaded already;
    ``core.compact_weights`` does the same when it loads)."""
    compact_weights = sys.modules.get(f"{__package__}.compact_weights")
    if compact_weights is not None:
        compact_weights.use_variant_of(current())
