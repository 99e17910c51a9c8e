"""The C kernels built the plain way (``-march=x86-64``, portable loops only, no SIMD variant) still
compile and pass the kernel tests: the build a CPU without AVX2, or a compiler without per-function
targets, gets. Built into a temporary copy of the package so the tree's own build stays as it is."""

import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COPIED = [
    "setup.py",
    "pyproject.toml",
    "core",
    "languages",  # the layout rules the engine imports read its table
    "tests/conftest.py",
    "tests/tiny_model.py",
    "tests/core/conftest.py",
    "tests/core/test_compact_weights.py",
    "tests/core/test_cpu_attention.py",
]
# the kernel tests proper (the engine's choices need the vectorized kernels, skipped in this build)
KERNEL_TESTS = "products or held_exactly or bad_shapes or agree or int4 or choice or environment or softmax or finite"


def _run(command, cwd, env, timeout):
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64")
    or shutil.which(sysconfig.get_config_var("CC").split()[0] or "cc") is None,
    reason="the portable build is checked on x86-64 Linux with a C compiler",
)
def test_a_portable_build_without_simd_compiles_and_passes_the_kernel_tests(tmp_path):
    for name in COPIED:
        source, target = ROOT / name, tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        else:
            shutil.copy(source, target)
    env = dict(
        os.environ, DEEPSHIVA_MARCH="x86-64", DEEPSHIVA_PORTABLE_ONLY="1", PYTHONPATH=str(tmp_path)
    )
    env.pop("DEEPSHIVA_CPU", None)
    built = _run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], tmp_path, env, 600)
    assert built.returncode == 0, built.stderr[-3000:]
    library = next((tmp_path / "core").glob("_kernels*.so"))

    probe = _run(
        [
            sys.executable,
            "-c",
            "from core import compact_weights as c; "
            "print(c.variants(), c.variant(), c.unavailable_reason())",
        ],
        tmp_path,
        env,
        120,
    )
    assert probe.stdout.startswith(
        "('portable',) portable the C kernels run their portable loops"
    ), probe.stderr
    if shutil.which("objdump"):  # no AVX instruction anywhere: 256- and 512-bit registers unused
        code = _run(
            ["objdump", "-d", "--no-show-raw-insn", str(library)], tmp_path, env, 120
        ).stdout
        assert "%ymm" not in code and "%zmm" not in code

    tests = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            KERNEL_TESTS,
            "tests/core/test_compact_weights.py",
            "tests/core/test_cpu_attention.py",
        ],
        tmp_path,
        env,
        900,
    )
    summary = tests.stdout.strip().splitlines()[-1]
    assert tests.returncode == 0 and " passed" in summary and "failed" not in summary, tests.stdout[
        -3000:
    ]
    assert (
        int(summary.split(" passed")[0].split()[-1]) >= 30
    )  # the products and attention ran, not skipped
