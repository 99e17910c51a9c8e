"""VS Code end to end: code-server with the packaged .vsix, driven in headless Chromium.

The extension starts the language server; the test types in a Python file, waits for the ghost
text (`.ghost-text-decoration`), accepts it with Tab and reads the status bar. Screenshots are kept
in tests/artifacts/.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from editor_helpers import ARTIFACTS, free_port
from readme_blocks import blocks, localise

pytestmark = pytest.mark.editor

DRIVER = Path(__file__).with_name("vscode_driver.js")


class CodeServer:
    """code-server in its own process group, with its own user data and extensions dirs."""

    def __init__(self, exe: Path, vsix: Path, workdir: Path, settings: dict) -> None:
        self.exe, self.vsix, self.workdir = exe, vsix, workdir
        self.user_data = workdir / "user-data"
        self.extensions = workdir / "extensions"
        self.project = workdir / "project"
        self.log = workdir / "code-server.log"
        for d in (self.user_data / "User", self.extensions, self.project):
            d.mkdir(parents=True, exist_ok=True)
        base = {
            "security.workspace.trust.enabled": False,
            "workbench.startupEditor": "none",
            "workbench.tips.enabled": False,
            "telemetry.telemetryLevel": "off",
            "extensions.autoUpdate": False,
            "extensions.autoCheckUpdates": False,
            "extensions.ignoreRecommendations": True,
            "update.mode": "none",
            "editor.inlineSuggest.enabled": True,
            # The word-based suggest widget would take Tab away from the ghost text.
            "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
            "editor.suggestOnTriggerCharacters": False,
            "editor.wordBasedSuggestions": "off",
            "editor.acceptSuggestionOnEnter": "off",
            "editor.autoClosingBrackets": "never",
            "editor.autoClosingQuotes": "never",
            "editor.autoIndent": "none",
            "window.restoreWindows": "none",
        }
        base.update(settings)
        (self.user_data / "User" / "settings.json").write_text(json.dumps(base, indent=2))
        self.proc: subprocess.Popen | None = None
        self.port = free_port()

    def common(self) -> list[str]:
        return [
            str(self.exe),
            "--user-data-dir", str(self.user_data),
            "--extensions-dir", str(self.extensions),
            "--disable-telemetry",
            "--disable-update-check",
        ]

    def install_extension(self) -> None:
        out = subprocess.run(
            [*self.common(), "--install-extension", str(self.vsix), "--force"],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert any(p.name.startswith("deepshiva.deepshiva") for p in self.extensions.iterdir()), (
            out.stdout + out.stderr)

    def start(self) -> str:
        env = dict(os.environ)
        env.pop("VSCODE_IPC_HOOK_CLI", None)
        with open(self.log, "wb") as log:
            # setsid: its own process group, killed as a whole in stop().
            self.proc = subprocess.Popen(
                [*self.common(), "--bind-addr", f"127.0.0.1:{self.port}", "--auth", "none",
                 "--disable-workspace-trust", "--disable-getting-started-override",
                 str(self.project)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
            )
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return f"{url}/?folder={self.project}"
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"code-server did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def drive(cs_url: str, file: str, text: str, shot: Path, playwright_core: Path, chromium: Path,
          timeout_ms: int = 60000, **extra) -> dict:
    cfg = {
        "url": cs_url, "file": file, "type": text, "screenshot": str(shot),
        "timeoutMs": timeout_ms, "playwright": str(playwright_core), "chromium": str(chromium),
        **extra,
    }
    out = subprocess.run(["node", str(DRIVER), json.dumps(cfg)], capture_output=True, text=True,
                         timeout=timeout_ms / 1000 * 3 + 60)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"driver printed no result: {out.stdout[-2000:]} {out.stderr[-2000:]}"
    return json.loads(lines[-1])


def run_vscode(tmp_path, code_server, vsix, playwright_core, chromium, settings, shot_name,
               source: str, typed: str, **extra) -> tuple[dict, CodeServer]:
    cs = CodeServer(code_server, vsix, tmp_path, settings)
    (cs.project / "main.py").write_text(source)
    cs.install_extension()
    url = cs.start()
    try:
        result = drive(url, "main.py", typed, ARTIFACTS / shot_name, playwright_core, chromium,
                       **extra)
    finally:
        cs.stop()
    return result, cs


@pytest.mark.timeout(300)
def test_vscode_ghost_text_with_fake_server(tmp_path, code_server, vsix, playwright_core, chromium,
                                            fake_lsp_command, artifacts):
    """The extension's plumbing, with a language server whose answer is known in advance."""
    settings = {"deepshiva.serverPath": fake_lsp_command[1]}
    # serverPath must be an executable: wrap the fake server in a tiny script.
    wrapper = tmp_path / "fake-deepshiva-lsp"
    wrapper.write_text(f"#!/bin/sh\nexec {fake_lsp_command[0]} {fake_lsp_command[1]} \"$@\"\n")
    wrapper.chmod(0o755)
    settings["deepshiva.serverPath"] = str(wrapper)
    result, cs = run_vscode(tmp_path, code_server, vsix, playwright_core, chromium, settings,
                            "vscode-fake.png", "def f(alpha, beta):\n    ", "tot",
                            acceptWordFirst=True, toggle=True)
    assert result["ok"], f"{result.get('error')}\nsteps: {result['steps']}\n{cs.log.read_text()[-2000:]}"
    assert result["ghost"].startswith("al = alpha + beta"), result
    # Ctrl+Right (VS Code's own partial accept) inserts the start of the suggestion.
    word_line = result["afterWord"].split("\n")[1]
    assert word_line.startswith("    total") and "    total = alpha + beta".startswith(word_line), result
    assert result["after"].split("\n")[1:3] == ["    total = alpha + beta", "return total"], result
    assert result["statusText"] and "DeepShiva: ready" in result["statusText"], result
    assert result["statusAfterToggle"] == "DeepShiva: off", result


@pytest.mark.timeout(600)  # includes starting the API server when it is the first to need it
def test_vscode_ghost_text_real_servers(tmp_path, code_server, vsix, playwright_core, chromium,
                                        lsp_command, api_server, tuned_settings, artifacts):
    """Real API server with the model, real deepshiva-lsp, the packaged extension in code-server,
    set up with the settings block of editors/README.md as written."""
    settings = json.loads(localise(blocks("VS Code", "json")[0], api_server))
    assert settings["deepshiva.apiUrl"] == api_server
    source = "import os\n\n\ndef add(a, b):\n    return a + b\n\n\n"
    typed = "def mul(a, b):\n    "
    tuned = tuned_settings(source + typed, 8, 4)
    settings.update({
        "deepshiva.debounceMs": tuned["debounceMs"],
        "deepshiva.maxTokens": tuned["maxTokens"],
        "deepshiva.temperature": tuned["temperature"],
        "deepshiva.advanced": {k: v for k, v in tuned.items() if k == "seed"},
    })
    result, cs = run_vscode(tmp_path, code_server, vsix, playwright_core, chromium, settings,
                            "vscode.png", source, typed)
    assert result["ok"], f"{result.get('error')}\nsteps: {result['steps']}\n{cs.log.read_text()[-2000:]}"
    assert result["ghost"].strip(), result
    # Tab inserted the suggestion at the cursor (its first line at least: the rest is below).
    first = result["ghost"].split("\n")[0]
    after = result["after"].split("\n")
    row = after.index("def mul(a, b):") + 1
    assert after[row].startswith("    " + first) and after[row].strip(), result
    assert len(result["after"]) > len(result["beforeAccept"]), result
    assert result["statusText"] and "DeepShiva: ready" in result["statusText"], result
    assert (ARTIFACTS / "vscode.png").stat().st_size > 10_000
