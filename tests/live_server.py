"""Run ``deepshiva-server`` as a real subprocess for end-to-end tests (server, language server, editors).

    from live_server import live_server

    with live_server(model_dir, api_key="secret") as url:   # e.g. "http://127.0.0.1:38211"
        httpx.post(url + "/generate", headers={"Authorization": "Bearer secret"}, json={...})

The server listens on a free loopback port (it is started with ``--port 0`` and reports the port
it got), the helper waits until /health answers and the model is loaded, and on exit stops the
process with SIGTERM (SIGKILL if it does not stop within 30 s: a busy 2-core machine can take
that long to finalize torch). ``start_live_server`` returns a
``LiveServer`` with the process and its captured output, for tests that need more.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import httpx

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"DeepShiva API on (http://\S+?:\d+)")


def server_command() -> list[str]:
    """The installed console script if there is one, else ``python -m server`` from this checkout."""
    script = shutil.which("deepshiva-server", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "server"]


class LiveServer:
    """A running deepshiva-server subprocess and everything it printed."""

    def __init__(self, process: subprocess.Popen, api_key: Optional[str]):
        self.process = process
        self.api_key = api_key
        self.url: Optional[str] = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, name="live-server-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and self.url is None:
                self.url = match.group(1)
                self._ready.set()
        self._ready.set()  # the process ended

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def wait_ready(self, timeout: float, model_expected: bool) -> None:
        """Wait for the listening line, /health, and (if a model was asked for) the loaded model."""
        deadline = time.monotonic() + timeout
        if not self._ready.wait(timeout) or self.url is None:
            raise RuntimeError(f"deepshiva-server did not start:\n{self.output}")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"deepshiva-server exited with {self.process.returncode}:\n{self.output}"
                )
            try:
                health = httpx.get(self.url + "/health", timeout=2)
                if health.status_code == 200:
                    if not model_expected:
                        return
                    status = httpx.get(
                        self.url + "/model_status", headers=self.headers, timeout=2
                    ).json()
                    if status.get("state") == "ready" and status.get("model_loaded"):
                        return
                    if status.get("state") != "loading" and status.get("last_load_error"):
                        raise RuntimeError(
                            f"model failed to load: {status['last_load_error']}\n{self.output}"
                        )
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"deepshiva-server not ready after {timeout} s:\n{self.output}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL if needed; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(5)
        return self.process.returncode


def start_live_server(
    model: Optional[str | os.PathLike],
    *,
    api_key: Optional[str] = None,
    args: Sequence[str] = (),
    env: Optional[dict] = None,
    timeout: float = 90.0,
) -> LiveServer:
    """Start deepshiva-server on 127.0.0.1 and a free port; return once it is ready to serve."""
    command = server_command() + [
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--model",
        str(model) if model is not None else "none",
        *args,
    ]
    if api_key:
        command += ["--api-key", api_key]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSHIVA_")}
    child_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), child_env.get("PYTHONPATH")])
    )
    child_env["PYTHONUNBUFFERED"] = "1"
    child_env.update(env or {})
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    server = LiveServer(process, api_key)
    try:
        server.wait_ready(timeout, model_expected=model is not None)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def live_server(
    model: Optional[str | os.PathLike],
    *,
    api_key: Optional[str] = None,
    args: Sequence[str] = (),
    env: Optional[dict] = None,
    timeout: float = 90.0,
) -> Iterator[str]:
    """Context manager: a ready deepshiva-server; yields its base URL and stops it on exit."""
    server = start_live_server(model, api_key=api_key, args=args, env=env, timeout=timeout)
    try:
        yield server.url
    finally:
        server.stop()
