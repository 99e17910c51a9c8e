"""Shared helpers of the editor tests (paths, skip-or-fail, free ports)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "editors" / ".tools"
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "tests" / "artifacts"
IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> None:
    """Skip (fail under CI=true) because `what` is not installed."""
    reason = f"{what} is not installed: run scripts/install-editors"
    if IN_CI:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool(path: Path, what: str) -> Path:
    if not path.exists():
        missing(what)
    return path
