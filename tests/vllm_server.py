"""Run the real vLLM (from .venv-vllm, made by scripts/install-vllm) as a subprocess for tests.

    from vllm_server import start_vllm
    vllm = start_vllm(model_dir)      # waits until /v1/models answers; vllm.url = "http://127.0.0.1:PORT"
    ...
    vllm.stop()

A vLLM that is not installed or does not come up is a test failure naming the cause and the last
lines it printed, never a skip: the tests marked ``vllm`` are part of the suite (scripts/test
installs vLLM first). Deselect them with ``-m "not vllm"`` on a machine without its venv.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

import httpx

ROOT = Path(__file__).resolve().parent.parent
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
START_TIMEOUT_S = float(
    os.environ.get("DEEPSHIVA_TEST_VLLM_START_S", "420")
)  # 35-60 s alone; a busy 2-core CI is slower


class VllmNotAvailable(RuntimeError):
    """vLLM is not installed or did not start; the message says why and what to run."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VllmServer:
    """A running vLLM OpenAI-compatible server and what it printed."""

    def __init__(self, process: subprocess.Popen, url: str):
        self.process, self.url = process, url
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, name="vllm-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            del self.lines[:-400]

    @property
    def model(self) -> str:
        return httpx.get(self.url + "/v1/models", timeout=10).json()["data"][0]["id"]

    def metric(self, name: str) -> float:
        """The sum of a Prometheus metric's samples from vLLM's /metrics (0 when absent)."""
        total = 0.0
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise VllmNotAvailable(
                    f"vLLM exited with {self.process.returncode}:\n{self.tail()}"
                )
            try:
                if httpx.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise VllmNotAvailable(f"vLLM did not answer within {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to its process group (vLLM runs an engine-core child), SIGKILL if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._reader.join(5)


def start_vllm(
    model: str | os.PathLike, *, extra_args: tuple[str, ...] = (), timeout: Optional[float] = None
) -> VllmServer:
    """Start scripts/serve-vllm's settings for ``model`` on a free loopback port; return when it answers."""
    if not VLLM_PYTHON.exists():
        raise VllmNotAvailable(
            f"vLLM's venv is missing ({VLLM_PYTHON}): run scripts/install-vllm, "
            "or deselect these tests with -m 'not vllm'"
        )
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPSHIVA_", "PYTHONPATH"))}
    env.update(
        VLLM_CPU_KVCACHE_SPACE=env.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        VLLM_HOST_IP="127.0.0.1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
    )
    # scripts/serve-vllm's command, without its install check (scripts/test installs first).
    command = [str(ROOT / "scripts" / "serve-vllm"), str(model), "--port", str(port), *extra_args]
    env["DEEPSHIVA_VLLM_SKIP_INSTALL"] = "1"
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    server = VllmServer(process, f"http://127.0.0.1:{port}")
    try:
        server.wait_ready(timeout or START_TIMEOUT_S)
    except BaseException:
        server.stop()
        raise
    return server


def attach_vllm(url: str) -> VllmServer:
    """A vLLM someone else started (it is not stopped by the tests)."""
    server = VllmServer.__new__(VllmServer)
    server.process, server.url, server.lines = None, url.rstrip("/"), []
    server.wait_ready = lambda timeout: None
    return server


def upstream_server_args(vllm: VllmServer, *extra: str) -> list[str]:
    """deepshiva-server's arguments to serve through ``vllm``."""
    return ["--backend", "openai", "--upstream", vllm.url, *extra]
