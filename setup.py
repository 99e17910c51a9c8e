"""Build the optional C kernels (core/_kernels.c); everything else is declared in pyproject.toml.

The kernels are compiled for the machine that installs them (``-march=native``: a self-hosted
server runs where it is built) with OpenMP on Linux. The extension is optional: where it does
not build, decode steps keep the NumPy fp32 path and ``compact_weights.available()`` says why.
"""

import platform
import sys

from setuptools import Extension, setup


def _flags() -> tuple[list[str], list[str]]:
    if sys.platform == "win32":
        return ["/O2"], []
    compile_args, link_args = ["-O3"], []
    if platform.machine().lower() in ("x86_64", "amd64"):
        compile_args.append("-march=native")
    if sys.platform.startswith("linux"):
        compile_args.append("-fopenmp")
        link_args.append("-fopenmp")
    return compile_args, link_args


_compile, _link = _flags()
setup(
    ext_modules=[
        Extension(
            "core._kernels",
            ["core/_kernels.c"],
            extra_compile_args=_compile,
            extra_link_args=_link,
            optional=True,
        )
    ]
)
