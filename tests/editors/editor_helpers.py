"""Shared helpers of the editor tests (paths, skip-or-fail, free ports)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "editors" / ".tools"
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "tests" / "artifacts"
IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> None:
    """Skip (fail under CI=true) because `what` is not installed."""
    reason = f"{what} is not installed: run scripts/install-editors"
    if IN_CI:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool(path: Path, what: str) -> Path:
    if not path.exists():
        missing(what)
    return path


def lsp_probe(
    lsp_command: list[str],
    settings: dict,
    text: str,
    line: int,
    character: int,
    seeds: list[int],
    timeout: float = 60.0,
) -> int | None:
    """The first seed in `seeds` for which deepshiva-lsp suggests something at (line, character)
    of a Python document `text`, asking it directly over stdio (no editor), or None.

    For the tiny test model, whose random weights often produce text the server filters out.
    """
    import json
    import subprocess
    import time

    proc = subprocess.Popen(
        lsp_command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    next_id = [0]
    current = dict(settings)

    def send(msg: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **msg}).encode()
        proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        proc.stdin.flush()

    def read() -> dict:
        length = 0
        while True:
            header = proc.stdout.readline()
            if not header:
                raise EOFError("deepshiva-lsp closed its output")
            if header in (b"\r\n", b"\n"):
                break
            if header.lower().startswith(b"content-length:"):
                length = int(header.split(b":")[1])
        return json.loads(proc.stdout.read(length))

    def request(method: str, params: dict) -> dict:
        next_id[0] += 1
        my_id = next_id[0]
        send({"id": my_id, "method": method, "params": params})
        while True:
            msg = read()
            if msg.get("id") == my_id and "method" not in msg:
                return msg
            if "method" in msg and "id" in msg:  # a request from the server
                if msg["method"] == "workspace/configuration":
                    send({"id": msg["id"], "result": [current for _ in msg["params"]["items"]]})
                else:
                    send({"id": msg["id"], "result": None})

    deadline = time.monotonic() + timeout
    try:
        uri = "file:///tmp/deepshiva-probe.py"
        request(
            "initialize",
            {
                "processId": None,
                "rootUri": None,
                "capabilities": {"textDocument": {"inlineCompletion": {}}},
                "initializationOptions": current,
            },
        )
        send({"method": "initialized", "params": {}})
        send(
            {
                "method": "textDocument/didOpen",
                "params": {
                    "textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}
                },
            }
        )
        for seed in seeds:
            if time.monotonic() > deadline:
                break
            current = {**settings, "seed": seed, "cacheSize": 0}
            send(
                {
                    "method": "workspace/didChangeConfiguration",
                    "params": {"settings": {"deepshiva": current}},
                }
            )
            answer = request(
                "textDocument/inlineCompletion",
                {
                    "textDocument": {"uri": uri},
                    "position": {"line": line, "character": character},
                    "context": {"triggerKind": 1},
                },
            )
            result = answer.get("result") or {}
            items = result.get("items", []) if isinstance(result, dict) else result
            if items and items[0].get("insertText", "").strip():
                return seed
        return None
    finally:
        proc.kill()
        proc.wait(timeout=10)
