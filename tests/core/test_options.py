"""The engine's environment variables: declared once (core/options.py), read only there,
documented once (the README's options table)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from core import options
from core.errors import InvalidParameter

ROOT = Path(__file__).resolve().parents[2]


def test_every_variable_is_documented_once_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = "\n".join(line for line in readme.splitlines() if line.startswith("|"))
    for name in options.EngineOptions.model_fields:
        for variable in options.variables(name):
            assert len(re.findall(rf"`{variable}[`=]", table)) == 1, variable
    assert "DEEPSHIVA_INT8_DECODE" not in readme and "--int8-decode" not in readme


def test_core_reads_its_variables_only_through_options():
    """No module of core but options.py reads a DEEPSHIVA_* variable from the environment."""
    reading = re.compile(r"(environ|getenv)\b[^\n]*DEEPSHIVA_")
    files = subprocess.run(
        ["git", "ls-files", "core/*.py", "core/**/*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "core/engine.py" in files
    readers = [
        name
        for name in files
        if name != "core/options.py" and reading.search((ROOT / name).read_text(encoding="utf-8"))
    ]
    assert readers == []


def test_switches_and_values_are_typed_and_a_bad_one_is_named(monkeypatch):
    monkeypatch.delenv("DEEPSHIVA_LEAN", raising=False)
    assert options.read("lean") is True
    for off in ("0", "false", "off"):
        monkeypatch.setenv("DEEPSHIVA_LEAN", off)
        assert options.read("lean") is False
    monkeypatch.setenv("DEEPSHIVA_LEAN", "maybe")
    with pytest.raises(InvalidParameter, match="DEEPSHIVA_LEAN must be 1 or 0") as err:
        options.read("lean")
    assert err.value.param == "lean"
    monkeypatch.setenv("DEEPSHIVA_DECODE_WEIGHTS", "fp8")
    with pytest.raises(InvalidParameter, match="one of auto, fp32, fp16, bf16, int8"):
        options.read("decode_weights")
    monkeypatch.setenv("DEEPSHIVA_KV_CACHE", "int4")
    with pytest.raises(InvalidParameter, match="one of auto, fp32, bf16, fp16, int8"):
        options.read("kv_cache")
    monkeypatch.setenv("DEEPSHIVA_KV_CACHE", "int8")
    assert options.read("kv_cache") == "int8"
    assert options.read("omp_spin", {"DEEPSHIVA_OMP_SPIN": "50"}) == "50"
    assert options.read("omp_spin", {}) is None


def test_read_agrees_with_the_settings_object(monkeypatch):
    """options.read and EngineOptions() (what the server's config extends) see the same values."""
    monkeypatch.setenv("DEEPSHIVA_THREADS", "3")
    monkeypatch.setenv("DEEPSHIVA_PROMPT_LOOKUP", "0")
    monkeypatch.setenv("DEEPSHIVA_FIM_ORDER", "spm")
    settings = options.EngineOptions()
    for name in options.EngineOptions.model_fields:
        assert options.read(name) == getattr(settings, name), name
    assert settings.cpu_threads == 3 and settings.prompt_lookup is False


def test_decode_weight_choices_agree_with_the_engine():
    from typing import get_args

    from core.devices import DECODE_WEIGHTS

    assert get_args(options.DecodeWeights) == DECODE_WEIGHTS
