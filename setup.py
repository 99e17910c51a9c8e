"""Build the optional C kernels (core/_kernels*.c); everything else is declared in pyproject.toml.

One build holds every CPU variant of the loops (portable C, AVX2, AVX512-BF16; see core/_kernels.h)
and picks the fastest the CPU runs when it loads, so the package's baseline flags are enough: no
``-march=native``, and the build runs on any x86-64 machine. ``DEEPSHIVA_MARCH`` adds ``-march=...``
(for example ``x86-64`` for a deliberately plain build, as the kernel tests' portable build does),
``DEEPSHIVA_PORTABLE_ONLY=1`` leaves the SIMD variants out. OpenMP on Linux. The extension is
optional: where it does not build, decode steps keep the NumPy fp32 path and
``compact_weights.available()`` says why.
"""

import os
import sys

from setuptools import Extension, setup

SOURCES = [
    "core/_kernels.c",
    "core/_kernels_portable.c",
    "core/_kernels_avx2.c",
    "core/_kernels_avx512.c",
]
HEADERS = ["core/_kernels.h", "core/_kernels_body.h"]


def _flags() -> tuple[list[str], list[str]]:
    if sys.platform == "win32":
        return ["/O2"], []
    compile_args, link_args = ["-O3"], []
    if os.environ.get("DEEPSHIVA_MARCH"):
        compile_args.append(f"-march={os.environ['DEEPSHIVA_MARCH']}")
    if os.environ.get("DEEPSHIVA_PORTABLE_ONLY") == "1":
        compile_args.append("-DDS_PORTABLE_ONLY")
    if sys.platform.startswith("linux"):
        compile_args.append("-fopenmp")
        link_args.append("-fopenmp")
    return compile_args, link_args


_compile, _link = _flags()
setup(
    ext_modules=[
        Extension(
            "core._kernels",
            SOURCES,
            depends=HEADERS,
            extra_compile_args=_compile,
            extra_link_args=_link,
            optional=True,
        )
    ]
)
