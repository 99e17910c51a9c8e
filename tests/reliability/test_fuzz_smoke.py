"""A short run of ``python -m reliability.fuzz`` (schemathesis from the live /openapi.json): the
same code as the long run, with a few inputs per operation and mode."""

from __future__ import annotations

import json

import pytest

from reliability import fuzz

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def test_fuzz_smoke(tmp_path, tiny_model_dir):
    out = tmp_path / "fuzz.json"
    code = fuzz.main(["--examples", "8", "--model", str(tiny_model_dir), "--out", str(out)])
    figures = json.loads(out.read_text())
    assert figures["inputs_tried"] >= 40
    assert figures["server_errors_5xx"] == 0, figures["failures"]
    assert figures["failures_by_kind"] == {}, figures["failures"]
    assert figures["still_serving_after"] and figures["server_exit_code"] == 0
    assert {"200", "400", "401"} <= set(
        figures["statuses"]
    )  # valid, invalid and unauthenticated inputs
    assert code == 0
