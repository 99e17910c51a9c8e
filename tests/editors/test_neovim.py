"""Neovim end to end, headless through pynvim: Neovim 0.12 (native vim.lsp.inline_completion) and
Neovim 0.11 (the plugin's own extmark ghost text), with editors/neovim on the runtimepath.

The fake-server tests check the plugin's mechanics against known answers; the real-server tests
run the API server with the model and deepshiva-lsp.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pytest
from editor_helpers import ROOT

pytestmark = pytest.mark.editor

PLUGIN = ROOT / "editors" / "neovim"
NATIVE_NS = "nvim.lsp.inline_completion"
PLUGIN_NS = "deepshiva.ghost"


def wait_for(pred: Callable, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Nvim:
    """One headless Neovim with the plugin set up, driven through pynvim."""

    def __init__(self, pynvim, exe: Path, tmp: Path, setup: dict) -> None:
        init = tmp / "init.lua"
        init.write_text(
            f"vim.opt.rtp:prepend({json.dumps(str(PLUGIN))})\n"
            "vim.o.swapfile = false\n"
            # Typed text goes in literally: no auto-indent to second-guess the test.
            "vim.cmd('filetype indent off')\n"
            "vim.o.autoindent = false\n"
            f"require('deepshiva').setup(vim.json.decode({json.dumps(json.dumps(setup))}))\n"
        )
        self.n = pynvim.attach(
            "child", argv=[str(exe), "--embed", "--headless", "--clean", "-n", "-u", str(init)]
        )

    def lua(self, code: str, *args):
        return self.n.exec_lua(code, *args)

    def open(self, path: Path) -> None:
        self.n.command(f"edit {path}")
        wait_for(
            lambda: self.lua("return #vim.lsp.get_clients({name = 'deepshiva', bufnr = 0})") > 0,
            20,
            "the deepshiva client to attach",
        )

    def lines(self) -> list[str]:
        return self.n.current.buffer[:]

    def suggestion(self) -> str:
        return self.lua("return require('deepshiva').suggestion()")

    def marks(self, ns: str) -> int:
        return self.lua(
            "local ns = vim.api.nvim_get_namespaces()[...]; if not ns then return 0 end "
            "return #vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {})",
            ns,
        )

    def wait_suggestion(self, timeout: float = 30) -> str:
        return wait_for(self.suggestion, timeout, "ghost text")

    def status(self) -> str:
        return self.lua("return require('deepshiva').status()")

    def close(self) -> None:
        try:
            self.n.command("qa!")
        except Exception:
            pass
        try:
            self.n.close()
        except Exception:
            pass


VERSIONS = [
    pytest.param("nvim_012", NATIVE_NS, id="nvim-0.12-native"),
    pytest.param("nvim_011", PLUGIN_NS, id="nvim-0.11-plugin"),
    pytest.param("nvim_010", PLUGIN_NS, id="nvim-0.10-plugin"),  # the oldest the plugin supports
]


@pytest.fixture
def editor(request, pynvim_mod, tmp_path):
    made = []

    def make(fixture: str, setup: dict) -> Nvim:
        exe = request.getfixturevalue(fixture)
        nv = Nvim(pynvim_mod, exe, tmp_path, setup)
        made.append(nv)
        return nv

    yield make
    for nv in made:
        nv.close()


def check_version(nv: Nvim, fixture: str) -> None:
    if fixture == "nvim_012":
        assert nv.lua("return vim.fn.has('nvim-0.12')") == 1
        # sid moves: the native API must still be there.
        assert nv.lua("return vim.lsp.inline_completion ~= nil")
        assert nv.lua("return require('deepshiva').native()")
    else:
        assert nv.lua("return vim.version().minor") == {"nvim_011": 11, "nvim_010": 10}[fixture]
        assert not nv.lua("return require('deepshiva').native()")


# ---------------------------------------------------------------------------------------------
# Mechanics, against the fake server (answers known in advance)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fixture,ns", VERSIONS)
def test_plugin_mechanics_fake_server(editor, fixture, ns, fake_lsp_command, tmp_path):
    nv = editor(fixture, {"cmd": fake_lsp_command})
    check_version(nv, fixture)
    src = tmp_path / "a.py"
    src.write_text("")
    nv.open(src)
    wait_for(lambda: nv.status() == "DeepShiva: ready", 10, "status ready")

    nv.n.input("idef f(alpha, beta):<CR>    tot")
    assert nv.wait_suggestion(10) == "al = alpha + beta\nreturn total"
    assert nv.marks(ns) >= 1, f"no extmark in namespace {ns}"

    # Accept one word, then one line, then the rest.
    nv.n.input("<M-Right>")
    wait_for(lambda: nv.lines()[-1] == "    total", 5, "accept-word")
    assert nv.wait_suggestion(10).startswith(" = alpha + beta")
    nv.n.input("<M-Down>")
    wait_for(lambda: nv.lines()[-1] == "    total = alpha + beta", 5, "accept-line")
    assert nv.wait_suggestion(10) == "\nreturn total"
    nv.n.input("<Tab>")
    wait_for(lambda: nv.lines()[-2:] == ["    total = alpha + beta", "return total"], 5, "accept")
    assert nv.lines() == ["def f(alpha, beta):", "    total = alpha + beta", "return total"]

    # Dismiss hides the suggestion; a new one comes after typing again.
    nv.n.input("<CR>tot")
    nv.wait_suggestion(10)
    nv.n.input("<C-]>")
    wait_for(lambda: nv.suggestion() == "", 5, "dismiss")
    assert nv.marks(ns) == 0

    # Without a suggestion, Tab inserts a tab as usual.
    nv.n.input("<Esc>o<Tab>x")
    wait_for(lambda: nv.lines()[-1] in ("\tx", "    x", "        x"), 5, "plain Tab")

    # Toggling off: no suggestion, status says off.
    nv.lua("require('deepshiva').toggle()")
    assert nv.status() == "DeepShiva: off"
    nv.n.input("<CR>tot")
    time.sleep(1.0)
    assert nv.suggestion() == ""
    nv.lua("require('deepshiva').toggle()")
    assert nv.status() == "DeepShiva: ready"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fixture,ns", VERSIONS)
def test_checkhealth(editor, fixture, ns, fake_lsp_command, tmp_path):
    nv = editor(fixture, {"cmd": fake_lsp_command})
    src = tmp_path / "a.py"
    src.write_text("x = 1\n")
    nv.open(src)
    wait_for(lambda: nv.status() == "DeepShiva: ready", 10, "status ready")
    nv.n.command("checkhealth deepshiva")
    report = "\n".join(nv.lines())
    assert "DeepShiva" in report
    assert "server status: ready" in report, report
    assert "ERROR" not in report, report


@pytest.mark.timeout(60)
def test_lsp_config_file_alone(editor, fake_lsp_command, tmp_path):
    """lsp/deepshiva.lua works with plain vim.lsp.config/vim.lsp.enable (no setup())."""
    nv = editor("nvim_012", {"cmd": fake_lsp_command})  # loads the plugin; reset below
    nv.lua("vim.lsp.enable('deepshiva', false)")
    cfg = nv.lua(
        "local c = dofile(vim.api.nvim_get_runtime_file('lsp/deepshiva.lua', false)[1]) "
        "return {cmd = c.cmd, has_handler = c.handlers['deepshiva/status'] ~= nil}"
    )
    assert cfg["has_handler"]
    assert Path(cfg["cmd"][0]).name == "deepshiva-lsp"


# ---------------------------------------------------------------------------------------------
# End to end: real API server (with the model), real deepshiva-lsp


def real_setup(lsp_command: list[str], settings: dict) -> dict:
    return {"cmd": lsp_command, "api_url": settings["apiUrl"], "settings": settings}


SOURCE = "import os\n\n\ndef add(a, b):\n    return a + b\n\n\n"
# What Neovim's buffer holds after typing `Godef mul(a, b):<CR>    ` (cursor at line 8, col 4).
TYPED_DOC = SOURCE + "def mul(a, b):\n    \n"


@pytest.mark.timeout(400)  # includes starting the API server for the first test
@pytest.mark.parametrize("op", ["accept", "accept_word"])
@pytest.mark.parametrize("fixture,ns", VERSIONS)
def test_real_servers(editor, fixture, ns, op, lsp_command, tuned_settings, tmp_path):
    """Type in a Python file; the real model's suggestion shows as ghost text; Tab inserts it
    all, accept-word exactly its next word."""
    nv = editor(fixture, real_setup(lsp_command, tuned_settings(TYPED_DOC, 8, 4)))
    check_version(nv, fixture)
    src = tmp_path / "main.py"
    src.write_text(SOURCE)
    nv.open(src)
    wait_for(lambda: nv.status() == "DeepShiva: ready", 60, "status ready")

    nv.n.input("Godef mul(a, b):<CR>    ")
    wait_for(lambda: nv.lines()[-1] == "    ", 5, "typing")
    ghost = nv.wait_suggestion(60)
    assert nv.marks(ns) >= 1, f"no extmark in namespace {ns}"
    before = nv.lines()
    assert before[-2:] == ["def mul(a, b):", "    "]

    if op == "accept":
        nv.n.input("<Tab>")
        expected = before[:-1] + ("    " + ghost).split("\n")
    else:
        nv.n.input("<M-Right>")
        word = nv.lua("return require('deepshiva.util').next_word(...)", ghost)
        assert word.strip(), f"suggestion without a word: {ghost!r}"
        expected = before[:-1] + ("    " + word).split("\n")
    wait_for(lambda: nv.lines() == expected, 10, f"{op} to insert {expected[-1]!r}")
    assert nv.status() == "DeepShiva: ready"
