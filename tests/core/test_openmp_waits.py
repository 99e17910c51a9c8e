"""OpenMP's idle threads spin briefly (core/openmp_waits.py), unless the user chose otherwise."""

import os
import subprocess
import sys
from pathlib import Path

from core import openmp_waits

ROOT = Path(__file__).resolve().parents[2]


def test_short_spins_unless_the_user_chose_a_wait_policy():
    assert openmp_waits.settings({}) == {"GOMP_SPINCOUNT": "1000"}
    assert openmp_waits.settings({"DEEPSHIVA_OMP_SPIN": "50"}) == {"GOMP_SPINCOUNT": "50"}
    assert openmp_waits.settings({"OMP_WAIT_POLICY": "ACTIVE"}) == {}
    assert openmp_waits.settings({"GOMP_SPINCOUNT": "infinite"}) == {}


def test_nothing_is_set_once_torch_has_loaded_openmp():
    environ = {}
    assert "torch was imported before core" in openmp_waits.apply(environ, {"torch": object()})
    assert environ == {}
    assert openmp_waits.apply(environ, {}) is None and environ == {"GOMP_SPINCOUNT": "1000"}


def test_importing_core_first_sets_the_spin_before_torch_loads_openmp():
    script = (
        "import os, core, torch\n"
        "print(os.environ.get('GOMP_SPINCOUNT'), core.openmp_waits.NOT_APPLIED)"
    )
    for extra, expected in (({}, "1000 None"), ({"OMP_WAIT_POLICY": "PASSIVE"}, "None None")):
        env = {
            k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")
        }
        env.update(extra, PYTHONPATH=str(ROOT))
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.stdout.strip().splitlines()[-1] == expected, done.stderr[-2000:]
