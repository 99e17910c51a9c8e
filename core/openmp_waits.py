"""How long OpenMP's idle threads spin before they sleep, set before OpenMP loads.

The C kernels (and PyTorch) share one OpenMP runtime (libgomp). After each parallel region its idle
threads spin, by default for 300,000 pause loops (milliseconds), waiting for the next region. On
a quiet machine that is free; on a busy one (a build, a browser, other language servers) a
spinning thread holds a core that the thread the region waits for needs: a ~30M Llama's decode
step took 170-390 ms beside other work against 3-13 ms with short spins (benchmarks/RESULTS.md,
``python -m benchmarks.contention``). 1000 loops (tens of microseconds) still bridge the gaps
between the regions of one fused decode step, so a quiet machine loses nothing measurable.

libgomp reads its settings once, when it loads (``import torch`` loads it), so ``core`` applies
this first thing; a setting the user made (``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY``) wins, and
``DEEPSHIVA_OMP_SPIN`` sets another count.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

from . import options

SPIN_COUNT = 1000


def settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The OpenMP variables to add to ``environ``: none where the user chose a wait policy."""
    if "GOMP_SPINCOUNT" in environ or "OMP_WAIT_POLICY" in environ:
        return {}
    return {"GOMP_SPINCOUNT": options.read("omp_spin", environ) or str(SPIN_COUNT)}


def apply(
    environ: MutableMapping[str, str] = os.environ, modules: Mapping = sys.modules
) -> str | None:
    """Set ``settings(environ)`` unless OpenMP already loaded; returns why nothing was set, or None."""
    if "torch" in modules:
        return "torch was imported before core: OpenMP keeps its own spin settings"
    environ.update(settings(environ))
    return None


NOT_APPLIED = apply()
