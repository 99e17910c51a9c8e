"""Neovim in a real terminal (a tmux pane), as a user runs it: the ghost text must look different
from typed text without 'termguicolors', in 256 and in 16 colours; and Neovim versions the plugin
does not support (Debian 12's 0.7) get one message saying what is needed, not a Lua error.

tmux keeps what the terminal was told: `capture-pane -e` gives each cell's colours and
attributes as SGR sequences, which is what the test reads. The 16-colour terminal is a copy of
tmux's terminfo entry with `colors#16` (compiled with tic into the test's own directory), and
$TMUX is unset in the pane so that Neovim believes the terminfo entry.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from editor_helpers import ROOT

pytestmark = pytest.mark.editor

PLUGIN = ROOT / "editors" / "neovim"
# The fake server suggests "total = alpha + beta" after "    tot": the ghost text starts here.
GHOST = "al = alpha + beta"
SGR_RUN = re.compile(r"((?:\x1b\[[0-9;]*m)*)")
# What the grey italic fallback looks like through tmux: italic, and colour 244 (256 colours) or
# 90 / bright black (16 colours).
GREY = {256: "38;5;244", 16: "90"}


class Pane:
    """One tmux server (its own socket) with one pane running `argv`."""

    def __init__(self, tmux: Path, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.tmux = str(tmux)
        self.socket = f"deepshiva-test-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={json.dumps(v)}" for k, v in env.items())
        command = f"env -u TMUX {exports} " + " ".join(json.dumps(a) for a in argv)
        self.run("new-session", "-d", "-x", "100", "-y", "16", "-c", str(cwd), command)

    def run(self, *args: str) -> str:
        return subprocess.run(
            [self.tmux, "-L", self.socket, "-f", "/dev/null", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "0", *keys)

    def screen(self, escapes: bool = False) -> list[str]:
        return self.run(
            "capture-pane", "-t", "0", "-p", "-J", *(["-e"] if escapes else [])
        ).splitlines()

    def text(self) -> str:
        """The screen as one string: Neovim wraps long messages itself, at the pane's width."""
        return "".join(self.screen())

    def wait_text(self, text: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.text():
                return self.screen(escapes=True)
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared on the screen:\n" + "\n".join(self.screen()))

    def close(self) -> None:
        subprocess.run(
            [self.tmux, "-L", self.socket, "kill-server"], capture_output=True, timeout=20
        )


@pytest.fixture
def pane(tmux, tmp_path):
    made: list[Pane] = []

    def make(argv: list[str], env: dict[str, str]) -> Pane:
        p = Pane(tmux, argv, env, tmp_path)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def terminal_env(colours: int, tmp_path: Path) -> dict[str, str]:
    """TERM (and TERMINFO) of a terminal with `colours` colours and no true colour."""
    env = {"TERM": "tmux-256color", "COLORTERM": ""}
    if colours == 16:
        source = subprocess.run(
            ["infocmp", "-x", "tmux-256color"], capture_output=True, text=True, check=True
        ).stdout
        source = re.sub(
            r"^tmux-256color\|[^,]*,", "deepshiva-16color|tmux with 16 colours,", source, flags=re.M
        )
        source = re.sub(r"colors#(0x100|256)", "colors#16", source)
        source = re.sub(r"pairs#(0x10000|65536|32767|0x7fff)", "pairs#256", source)
        (tmp_path / "terminfo.src").write_text(source)
        subprocess.run(
            ["tic", "-x", "-o", str(tmp_path / "terminfo"), str(tmp_path / "terminfo.src")],
            check=True,
            capture_output=True,
        )
        env = {"TERM": "deepshiva-16color", "TERMINFO": str(tmp_path / "terminfo"), "COLORTERM": ""}
    return env


def write_init(tmp_path: Path, setup: dict) -> Path:
    init = tmp_path / "init.lua"
    init.write_text(
        f"vim.opt.rtp:prepend({json.dumps(str(PLUGIN))})\n"
        "vim.o.termguicolors = false\n"  # what a terminal without true colour gets
        "vim.cmd('filetype indent off')\n"
        "vim.o.autoindent = false\n"
        f"require('deepshiva').setup(vim.json.decode({json.dumps(json.dumps(setup))}))\n"
        "vim.o.statusline = \"%f %=%{v:lua.require'deepshiva'.status()} \"\n"
    )
    return init


def sgr_before(line: str, text: str) -> set[str]:
    """The SGR parameters in effect right where `text` starts on a captured line (since the last reset)."""
    before = line[: line.index(text)]
    params: list[str] = []
    for seq in re.findall(r"\x1b\[([0-9;]*)m", before):
        if seq in ("", "0"):
            params = []
        else:
            params.append(seq)
    return set(params)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("colours", [256, 16])
@pytest.mark.parametrize("fixture", ["nvim_012", "nvim_011", "nvim_010"])
def test_ghost_text_is_grey_italic_without_termguicolors(
    request, pane, fixture, colours, fake_lsp_command, tmp_path
):
    exe = request.getfixturevalue(fixture)
    init = write_init(tmp_path, {"cmd": fake_lsp_command})
    env = {**terminal_env(colours, tmp_path), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    p = pane([str(exe), "-n", "-u", str(init), "a.py"], env)
    p.wait_text("DeepShiva: ready", 30)
    p.keys("i", "def f(alpha, beta):", "Enter", "    tot")
    lines = p.wait_text(GHOST, 30)
    line = next(ln for ln in lines if GHOST in ln)
    ghost = sgr_before(line, GHOST)
    typed = sgr_before(line, "tot")
    assert "3" in ghost, f"ghost text is not italic: {line!r}"
    assert GREY[colours] in ghost, f"ghost text is not grey ({GREY[colours]}): {line!r}"
    assert not ({"3", GREY[colours]} & typed), f"typed text looks like ghost text: {line!r}"


@pytest.mark.timeout(120)
def test_a_colour_scheme_with_terminal_colours_keeps_them(
    pane, nvim_011, fake_lsp_command, tmp_path
):
    """The fallback never overrides a colour scheme's own terminal colour for the ghost text."""
    init = write_init(tmp_path, {"cmd": fake_lsp_command})
    init.write_text(
        init.read_text() + "vim.api.nvim_set_hl(0, 'DeepShivaSuggestion', { ctermfg = 33 })\n"
        "vim.cmd('doautocmd ColorScheme')\n"
    )
    p = pane([str(nvim_011), "-n", "-u", str(init), "a.py"], terminal_env(256, tmp_path))
    p.wait_text("DeepShiva: ready", 30)
    p.keys("i", "def f(alpha, beta):", "Enter", "    tot")
    line = next(ln for ln in p.wait_text(GHOST, 30) if GHOST in ln)
    assert "38;5;33" in sgr_before(line, GHOST), line


@pytest.mark.timeout(60)
def test_debian12_neovim_gets_one_message_naming_what_is_needed(
    pane, nvim_07, fake_lsp_command, tmp_path
):
    """`apt install neovim` on Debian 12 gives 0.7.2: the README's set-up must not die with a Lua
    error, and :checkhealth deepshiva must report instead of crashing."""
    init = write_init(tmp_path, {"cmd": fake_lsp_command})
    p = pane([str(nvim_07), "-n", "-u", str(init), "a.py"], terminal_env(256, tmp_path))
    p.wait_text("needs Neovim 0.10 or later", 20)
    screen = p.text()
    assert "this is 0.7.2" in screen and "github.com/neovim/neovim/releases" in screen, screen
    assert "E5113" not in screen and "stack traceback" not in screen, screen
    p.keys("Enter")
    p.wait_text("DeepShiva: needs Neovim 0.10+", 10)  # the statusline says it too
    p.keys(":checkhealth deepshiva", "Enter")
    p.wait_text("too old", 20)
    report = p.text()
    assert "ERROR" in report and "Failed to run healthcheck" not in report, report


@pytest.mark.timeout(60)
def test_debian12_neovim_checkhealth_headless(nvim_07, fake_lsp_command, tmp_path):
    """The same through --headless, where the whole report can be read back."""
    init = write_init(tmp_path, {"cmd": fake_lsp_command})
    out = subprocess.run(
        [
            str(nvim_07),
            "--headless",
            "-n",
            "-u",
            str(init),
            "+checkhealth deepshiva",
            "+lua io.stdout:write(table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n'))",
            "+qa!",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert "needs Neovim 0.10 or later" in out.stderr + out.stdout
    assert "E5113" not in out.stderr
    assert "ERROR" in out.stdout and "too old" in out.stdout, out.stdout
    assert "Failed to run healthcheck" not in out.stdout and "attempt to index" not in out.stdout, (
        out.stdout
    )
