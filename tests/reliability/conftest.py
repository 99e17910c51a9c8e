"""Fixtures for the reliability tests: a real deepshiva-server subprocess on the tiny model.

Every server started here gets HF_HUB_OFFLINE=1, so no test can make it reach for the network;
traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from live_server import start_live_server  # noqa: E402  (tests/ is on sys.path via tests/conftest.py)

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def api(tiny_model_dir):
    """One real API server (tiny model, small limits) shared by a test module."""
    server = start_live_server(
        tiny_model_dir,
        env=OFFLINE,
        args=[
            "--max-length-limit",
            "64",
            "--queue-size",
            "4",
            "--allowed-models",
            str(tiny_model_dir),
        ],
    )
    yield server
    server.stop()
