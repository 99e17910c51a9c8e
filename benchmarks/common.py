"""Helpers every benchmark entry point shares: tables, JSON reports, a server to measure.

``run.py`` (all benchmarks) and ``lsp_replay.py`` (the language server's debounce) both print
tables, write reports and start a ``deepshiva-server``; they import these from here rather than
from each other (they once imported each other, an import cycle).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Print ``rows`` as left-aligned columns, one line a row."""
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def write_report(report: dict, path: str) -> int:
    """Write ``report`` as JSON to ``path`` (folders made); 0, the exit status of a main."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {out}")
    return 0


def start_server(model: str, port: int) -> subprocess.Popen:
    """Start the venv's ``deepshiva-server`` with ``model`` on ``port``; return once loaded."""
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "deepshiva-server"), "--port", str(port), "--model", model],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if (
                httpx.get(f"http://127.0.0.1:{port}/model_status", timeout=2)
                .json()
                .get("model_loaded")
            ):
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise RuntimeError("deepshiva-server did not come up within 180 s")


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
