"""scripts/vllm-cpus: the cores scripts/serve-vllm gives vLLM on a CPU machine (all but the last,
which stays free for DeepShiva and the editor), run as the script runs, without vLLM. The
one-core branch runs on any machine by restricting the script to one core."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vllm-cpus"


def cores_for_vllm(only_core: int | None = None, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "DEEPSHIVA_VLLM_CPUS"}
    done = subprocess.run(
        [str(SCRIPT)],
        env={**environment, **env},
        capture_output=True,
        text=True,
        preexec_fn=None if only_core is None else lambda: os.sched_setaffinity(0, {only_core}),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_vllm_gets_every_core_but_the_last():
    allowed = sorted(os.sched_getaffinity(0))
    expected = ",".join(map(str, allowed[:-1]))  # one core: nothing to pin, vLLM gets it
    assert cores_for_vllm() == expected


def test_on_one_core_vllm_is_not_pinned():
    first = min(os.sched_getaffinity(0))
    assert cores_for_vllm(only_core=first) == ""


def test_the_cores_can_be_named_or_left_all_to_vllm():
    assert cores_for_vllm(DEEPSHIVA_VLLM_CPUS="0") == "0"
    assert cores_for_vllm(DEEPSHIVA_VLLM_CPUS="all") == ""
