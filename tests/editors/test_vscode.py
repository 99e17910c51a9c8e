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
        # Only what keeps a test run quiet and offline (no welcome page, tips, telemetry or
        # updates). Editing behaves as VS Code's defaults make it, workspace trust included:
        # the settings a user adds are the README's, and nothing else.
        base = {
            "workbench.startupEditor": "none",
            "workbench.tips.enabled": False,
            "telemetry.telemetryLevel": "off",
            "extensions.autoUpdate": False,
            "extensions.autoCheckUpdates": False,
            "extensions.ignoreRecommendations": True,
            "update.mode": "none",
            "window.restoreWindows": "none",
        }
        base.update(settings)
        (self.user_data / "User" / "settings.json").write_text(json.dumps(base, indent=2))
        self.proc: subprocess.Popen | None = None
        self.port = free_port()

    def common(self) -> list[str]:
        return [
            str(self.exe),
            "--user-data-dir",
            str(self.user_data),
            "--extensions-dir",
            str(self.extensions),
            "--disable-telemetry",
            "--disable-update-check",
        ]

    def install_extension(self) -> None:
        out = subprocess.run(
            [*self.common(), "--install-extension", str(self.vsix), "--force"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert any(p.name.startswith("deepshiva.deepshiva") for p in self.extensions.iterdir()), (
            out.stdout + out.stderr
        )

    def start(self) -> str:
        env = dict(os.environ)
        env.pop("VSCODE_IPC_HOOK_CLI", None)
        with open(self.log, "wb") as log:
            # setsid: its own process group, killed as a whole in stop().
            self.proc = subprocess.Popen(
                [
                    *self.common(),
                    "--bind-addr",
                    f"127.0.0.1:{self.port}",
                    "--auth",
                    "none",
                    "--disable-getting-started-override",
                    str(self.project),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
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


def drive(
    cs_url: str,
    file: str,
    text: str,
    shot: Path,
    playwright_core: Path,
    chromium: Path,
    timeout_ms: int = 60000,
    **extra,
) -> dict:
    cfg = {
        "url": cs_url,
        "file": file,
        "type": text,
        "screenshot": str(shot),
        "timeoutMs": timeout_ms,
        "playwright": str(playwright_core),
        "chromium": str(chromium),
        **extra,
    }
    out = subprocess.run(
        ["node", str(DRIVER), json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=timeout_ms / 1000 * 3 + 60,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"driver printed no result: {out.stdout[-2000:]} {out.stderr[-2000:]}"
    return json.loads(lines[-1])


def run_vscode(
    tmp_path,
    code_server,
    vsix,
    playwright_core,
    chromium,
    settings,
    shot_name,
    source: str,
    typed: str,
    project_files: dict[str, str] | None = None,
    **extra,
) -> tuple[dict, CodeServer]:
    cs = CodeServer(code_server, vsix, tmp_path, settings)
    (cs.project / "main.py").write_text(source)
    for name, text in (project_files or {}).items():
        target = cs.project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if "/bin/" in name or name.endswith(".sh"):
            target.chmod(0o755)
    cs.install_extension()
    url = cs.start()
    try:
        result = drive(
            url, "main.py", typed, ARTIFACTS / shot_name, playwright_core, chromium, **extra
        )
    finally:
        cs.stop()
    return result, cs


@pytest.mark.timeout(300)
def test_vscode_ghost_text_with_fake_server_in_restricted_mode(
    tmp_path, code_server, vsix, playwright_core, chromium, fake_lsp_command, artifacts
):
    """The extension's plumbing, with a language server whose answer is known in advance, in a
    workspace the user does not trust (Restricted Mode): suggestions still come, and the programs
    the workspace names (its .venv's deepshiva-lsp, its deepshiva.serverPath) are never started."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "deepshiva-lsp"  # the fake server, named in the user's settings
    wrapper.write_text(f'#!/bin/sh\nexec {fake_lsp_command[0]} {fake_lsp_command[1]} "$@"\n')
    wrapper.chmod(0o755)
    started = tmp_path / "workspace-program-started"
    evil = f'#!/bin/sh\necho "$0" >> {started}\nexit 1\n'
    project_files = {
        ".venv/bin/deepshiva-lsp": evil,
        "tools/lsp.sh": evil,
        # A workspace that names a program to start and a server to send the code to.
        ".vscode/settings.json": json.dumps(
            {
                "deepshiva.serverPath": str(tmp_path / "project" / "tools" / "lsp.sh"),
                "deepshiva.apiUrl": "http://203.0.113.1:9",
            }
        ),
    }
    result, cs = run_vscode(
        tmp_path,
        code_server,
        vsix,
        playwright_core,
        chromium,
        {"deepshiva.serverPath": str(wrapper)},
        "vscode-fake.png",
        "def f(alpha, beta):\n    ",
        "tot",
        project_files=project_files,
        trust="no",
        acceptWordFirst=True,
        toggle=True,
    )
    assert result["ok"], (
        f"{result.get('error')}\nsteps: {result['steps']}\n{cs.log.read_text()[-2000:]}"
    )
    assert result.get("restricted"), (
        f"the workspace did not open in Restricted Mode: {result['steps']}"
    )
    assert not started.exists(), f"a program of the untrusted workspace ran: {started.read_text()}"
    assert result["ghost"].startswith("al = alpha + beta"), result
    # Ctrl+Right (VS Code's own partial accept) inserts the start of the suggestion.
    word_line = result["afterWord"].split("\n")[1]
    assert word_line.startswith("    total") and "    total = alpha + beta".startswith(word_line), (
        result
    )
    assert result["after"].split("\n")[1:3] == ["    total = alpha + beta", "return total"], result
    assert result["statusText"] and "DeepShiva: ready" in result["statusText"], result
    assert result["statusAfterToggle"] == "DeepShiva: off", result


@pytest.mark.timeout(600)  # includes starting the API server when it is the first to need it
def test_vscode_ghost_text_real_servers(
    tmp_path,
    code_server,
    vsix,
    playwright_core,
    chromium,
    lsp_command,
    api_server,
    tuned_settings,
    artifacts,
):
    """Real API server with the model, real deepshiva-lsp, the packaged extension in code-server,
    set up with the settings block of editors/README.md as written and VS Code's defaults
    otherwise (suggest widget, auto-indent, workspace trust: the user trusts their project)."""
    settings = json.loads(localise(blocks("VS Code", "json")[0], api_server))
    assert settings["deepshiva.apiUrl"] == api_server
    source = "import os\n\n\ndef add(a, b):\n    return a + b\n\n\n"
    typed = "def mul(a, b):\n"  # Enter: VS Code's auto-indent puts the cursor at column 4
    tuned = tuned_settings(source + typed + "    ", 8, 4)
    settings.update(
        {
            "deepshiva.debounceMs": tuned["debounceMs"],
            "deepshiva.maxTokens": tuned["maxTokens"],
            "deepshiva.temperature": tuned["temperature"],
            "deepshiva.advanced": {k: v for k, v in tuned.items() if k == "seed"},
        }
    )
    result, cs = run_vscode(
        tmp_path,
        code_server,
        vsix,
        playwright_core,
        chromium,
        settings,
        "vscode.png",
        source,
        typed,
        trust="yes",
    )
    assert result["ok"], (
        f"{result.get('error')}\nsteps: {result['steps']}\n{cs.log.read_text()[-2000:]}"
    )
    assert result["ghost"].strip(), result
    # Tab inserted the suggestion at the cursor (its first line at least: the rest is below).
    first = result["ghost"].split("\n")[0]
    after = result["after"].split("\n")
    row = after.index("def mul(a, b):") + 1
    assert after[row].startswith("    " + first) and after[row].strip(), result
    assert len(result["after"]) > len(result["beforeAccept"]), result
    assert result["statusText"] and "DeepShiva: ready" in result["statusText"], result
    assert (ARTIFACTS / "vscode.png").stat().st_size > 10_000
