"""editors/README.md's "Use it in your editor" sections, run as written (placeholder path and
API URL replaced), against the real API server and language server."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
from readme_blocks import blocks, localise
from test_neovim import wait_for
from test_vscode import CodeServer

pytestmark = pytest.mark.editor


def start_nvim(pynvim, exe, init_text: str, tmp_path):
    init = tmp_path / "init.lua"
    init.write_text(init_text)
    return pynvim.attach(
        "child", argv=[str(exe), "--embed", "--headless", "--clean", "-n", "-u", str(init)]
    )


# Bounds include starting the API server (a session fixture) for the first test that needs it.
@pytest.mark.timeout(400)
@pytest.mark.parametrize("fixture", ["nvim_012", "nvim_011"])
def test_readme_neovim_setup(request, fixture, pynvim_mod, api_server, tmp_path):
    exe = request.getfixturevalue(fixture)
    setup_block = blocks("Neovim", "lua")[0]
    assert "require('deepshiva').setup" in setup_block
    n = start_nvim(pynvim_mod, exe, localise(setup_block, api_server), tmp_path)
    try:
        src = tmp_path / "hello.py"
        src.write_text("print('hi')\n")
        n.command(f"edit {src}")
        wait_for(
            lambda: n.exec_lua("return require('deepshiva').status()") == "DeepShiva: ready",
            60,
            "the README's Neovim set-up to reach the server",
        )
        line = n.api.eval_statusline(n.eval("&statusline"), {})
        assert "DeepShiva: ready" in line["str"]
        n.command("checkhealth deepshiva")
        report = "\n".join(n.current.buffer[:])
        assert "server status: ready" in report, report
    finally:
        n.close()


@pytest.mark.timeout(400)
def test_readme_neovim_lsp_config(nvim_012, pynvim_mod, api_server, tmp_path):
    block = blocks("Neovim", "lua")[1]
    assert "vim.lsp.enable('deepshiva')" in block
    n = start_nvim(pynvim_mod, nvim_012, localise(block, api_server), tmp_path)
    try:
        src = tmp_path / "hello.py"
        src.write_text("print('hi')\n")
        n.command(f"edit {src}")
        wait_for(
            lambda: n.exec_lua("return require('deepshiva').status()") == "DeepShiva: ready",
            60,
            "the README's vim.lsp.config set-up to reach the server",
        )
        assert n.exec_lua("return vim.lsp.inline_completion.is_enabled({bufnr = 0})")
    finally:
        n.close()


@pytest.mark.timeout(180)
def test_readme_vscode_install(code_server, vsix, tmp_path):
    """The README's `code --install-extension ...` line, with code-server as `code`."""
    lines = [ln for ln in blocks("VS Code", "sh")[0].splitlines() if ln.startswith("code ")]
    assert lines, "no `code --install-extension` line in the README"
    cs = CodeServer(code_server, vsix, tmp_path, {})
    from editor_helpers import ROOT

    for line in lines:
        args = shlex.split(line.split("#")[0])[1:]
        out = subprocess.run(
            [*cs.common(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stdout + out.stderr
    installed = [p.name for p in cs.extensions.iterdir()]
    assert any(name.startswith("deepshiva.deepshiva-") for name in installed), installed
    settings = json.loads(blocks("VS Code", "json")[0])
    package = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text())
    known = package["contributes"]["configuration"]["properties"]
    assert set(settings) <= set(known), (
        f"README names unknown settings: {set(settings) - set(known)}"
    )


@pytest.mark.timeout(300)
def test_readme_vscode_build_needs_node_only(tmp_path):
    """The README's build line makes the .vsix with Node and npm alone: no code-server, no browser."""
    from editor_helpers import ROOT

    block = blocks("VS Code", "sh")[0]
    builds = [ln.split("#")[0].strip() for ln in block.splitlines() if ln.startswith("scripts/")]
    assert builds == ["scripts/build-vscode-extension"], block
    commands = [
        ln
        for ln in (ROOT / "scripts" / "build-vscode-extension").read_text().splitlines()
        if not ln.lstrip().startswith("#")
    ]
    for heavy in ("code-server", "chromium", "playwright", "install-editors"):
        assert not [ln for ln in commands if heavy in ln.lower()], heavy
    out = subprocess.run(
        ["scripts/build-vscode-extension"], cwd=ROOT, capture_output=True, text=True, timeout=280
    )
    assert out.returncode == 0, out.stderr
    assert (ROOT / "editors" / ".tools" / "deepshiva.vsix").resolve().stat().st_size > 10_000
    assert "install it: code --install-extension editors/.tools/deepshiva.vsix" in out.stderr
