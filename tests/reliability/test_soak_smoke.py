"""A short run of ``python -m reliability.soak``: the same code as the long soak, for seconds."""

from __future__ import annotations

import json

import pytest

from reliability import soak

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_soak_smoke(tmp_path, tiny_model_dir):
    out = tmp_path / "soak.json"
    code = soak.main(
        [
            "--minutes",
            "0.25",
            "--clients",
            "4",
            "--max-length",
            "16",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(out),
        ]
    )
    figures = json.loads(out.read_text())
    assert figures["requests_answered"] >= 10
    assert figures["requests_lost_without_answer"] == 0, figures["error_examples"]
    assert not [k for k in figures["errors_by_kind"] if k.startswith("http_5")], figures[
        "error_examples"
    ]
    assert figures["idle_after"] and figures["healthy_after"] and figures["server_exit_code"] == 0
    assert set(figures["answered_by_kind"]) == set(soak.KINDS)
    assert code == 0, figures
