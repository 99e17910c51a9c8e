"""Shared by the fuzz and soak commands: a server to run against, percentiles, results files."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "reliability" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # tests/live_server.py and tests/tiny_model.py

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # never reach for the network


def model_or_tiny(model: Optional[str]) -> str:
    """The model to serve: the one given, else the shipped model if present, else the tests' tiny
    random Llama (built into a temporary directory)."""
    if model:
        return model
    shipped = ROOT / "models" / "tiny-python"
    if (shipped / "config.json").exists():
        return str(shipped)
    from tiny_model import build_tiny_model

    return str(build_tiny_model(Path(tempfile.mkdtemp(prefix="deepshiva-reliability-"))))


def start_server(model: str, *, api_key: Optional[str] = None, args: Sequence[str] = ()):
    """A deepshiva-server subprocess on 127.0.0.1 (tests/live_server.py), offline."""
    from live_server import start_live_server

    return start_live_server(model, api_key=api_key, args=list(args), env=OFFLINE, timeout=180)


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100 * len(ordered) + 0.5))))
    return round(ordered[rank - 1], 2)


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_results(name: str, data: dict, out: Optional[str] = None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
