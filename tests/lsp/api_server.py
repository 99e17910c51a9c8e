"""Run the real deepshiva-server (the Flask API on waitress) as a subprocess for the lsp tests.

Used until tests/live_server.py exists; the lsp tests must meet the API exactly as editors do:
over loopback HTTP, with a real model generating.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


class ApiServer:
    """``python -m server`` on 127.0.0.1:``port``; ``model`` None starts it without a model."""

    def __init__(self, port: int, model: str | None, log_path: Path, api_key: str | None = None):
        self.port, self.model, self.log_path, self.api_key = port, model, log_path, api_key
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, wait_ready: bool = True, timeout: float = 180.0) -> "ApiServer":
        cmd = [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--model", self.model or "none", "--queue-size", "4"]
        if self.api_key:
            cmd += ["--api-key", self.api_key]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        self.wait(lambda h: h is not None and (h["state"] == "ready" or not wait_ready), timeout)
        return self

    def health(self) -> dict | None:
        try:
            return httpx.get(self.url + "/health", timeout=2).json()
        except httpx.HTTPError:
            return None

    def wait(self, predicate, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"deepshiva-server exited; see {self.log_path}")
            health = self.health()
            if predicate(health):
                return health
            time.sleep(0.1)
        raise TimeoutError(f"deepshiva-server not ready after {timeout}s; see {self.log_path}")

    def metric(self, name: str) -> float:
        """A value from GET /metrics (Prometheus text), 0 when absent."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        text = httpx.get(self.url + "/metrics", timeout=5, headers=headers).text
        match = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        self.proc = None
