"""Importing the server's error types and configuration does not import torch (seconds, ~1 GB)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_server_errors_and_config_import_without_torch():
    code = (
        "import json, sys\n"
        "import server.errors, server.config, core\n"
        "from core import DEFAULT_MODEL, FIMNotSupported, is_out_of_memory\n"
        "print(json.dumps({'torch': sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3],\n"
        "                  'models': [DEFAULT_MODEL, server.config.DEFAULT_MODEL, server.config.ServerConfig().model]}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("DEEPSHIVA_")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["torch"] == []
    assert seen["models"] == ["deepshiva/tiny-python"] * 3  # one DEFAULT_MODEL


def test_one_out_of_memory_rule_for_engine_and_server():
    import core.loading
    import server.errors
    from core.errors import OutOfMemory, is_out_of_memory

    assert core.loading.is_out_of_memory is is_out_of_memory
    assert server.errors.from_engine(OutOfMemory("x")).status == server.errors.OOM_STATUS

    class OutOfMemoryError(RuntimeError):  # torch.OutOfMemoryError's name, without torch
        pass

    for exc in (
        MemoryError(),
        OutOfMemoryError("CUDA"),
        RuntimeError("DefaultCPUAllocator: out of memory"),
    ):
        assert is_out_of_memory(exc)
        assert server.errors.from_engine(exc).status == server.errors.OOM_STATUS
    assert not is_out_of_memory(ValueError("bad value"))
