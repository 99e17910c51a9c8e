"""The language server under requests an editor should not send: documents it never opened (no
disk read: a FIFO once froze it), malformed params (an answer, -32602, instead of silence), and
positions past the end or inside a surrogate pair (the returned range is the clamped position the
prompt was built from).

The API here is tests/reliability/fake_api.py: these tests need a suggestion to come back for any
prompt, which the tiny random model cannot promise; what they check is the language server's own
behaviour.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import pytest
from fake_api import FakeApi
from lsp_harness import ROOT, lsp_session

pytestmark = pytest.mark.timeout(120)

BASE = {"debounceMs": 0, "cacheSize": 0, "maxTokens": 8, "requestTimeoutMs": 5000}


async def test_unopened_documents_get_nothing_and_are_never_read(tmp_path):
    """Files the editor never opened are not read from disk: not a FIFO (it blocked the event
    loop for good), not an ordinary file (its text would go to the API as a prompt)."""
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    secret = tmp_path / "secret.py"
    secret.write_text("API_TOKEN = 'do-not-send'\n")
    with FakeApi() as api:
        api.answer = lambda body: ("value = 1", 0.0)
        async with lsp_session({**BASE, "apiUrl": api.url}) as s:
            for path in (fifo, secret, ROOT / "pyproject.toml"):
                result = await s.inline(path.as_uri(), 0, 0)
                assert result is None or not result.items, path
            assert api.bodies == [], "an unopened document's text reached the API"
            live = "file:///tmp/reliability/live.py"
            s.open(live, "x = \n")
            result = await s.inline(live, 0, 4)
            assert result.items and result.items[0].insert_text == "value = 1"
            assert s.alive()


async def test_positions_are_clamped_in_the_answer_too():
    """The prompt is built at the clamped position; the returned range says that position, not
    the raw one (an editor would otherwise insert the text somewhere else)."""
    with FakeApi() as api:
        api.answer = lambda body: ("1", 0.0)
        async with lsp_session({**BASE, "apiUrl": api.url}) as s:
            uri = "file:///tmp/reliability/clamp.py"
            s.open(uri, "s = '😀'\nx = \n")
            cases = [((1, 99), (1, 4), "x = "), ((9, 3), (2, 0), "\n"), ((0, 6), (0, 5), "s = '")]
            for (line, character), (want_line, want_char), prompt_end in cases:
                result = await s.inline(uri, line, character)
                assert result.items, (line, character)
                rng = result.items[0].range
                assert (rng.start.line, rng.start.character) == (want_line, want_char), (
                    line,
                    character,
                    rng,
                )
                assert (rng.end.line, rng.end.character) == (want_line, want_char)
                assert api.bodies[-1]["prompt"].endswith(prompt_end), api.bodies[-1]["prompt"]


class RawLsp:
    """deepshiva-lsp over stdio with hand-written JSON-RPC: a client that may send anything."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lsp", "--log-level", "ERROR"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.buffer = b""

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def response(self, msg_id, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            while b"\r\n\r\n" in self.buffer:
                head, rest = self.buffer.split(b"\r\n\r\n", 1)
                length = int(head.split(b"Content-Length:")[1].split(b"\r\n")[0])
                if len(rest) < length:
                    break
                self.buffer = rest[length:]
                message = json.loads(rest[:length])
                if message.get("id") == msg_id and "method" not in message:
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise AssertionError(f"no answer to request {msg_id} within {timeout} s")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            assert chunk, "the language server exited"
            self.buffer += chunk

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_requests_with_invalid_params_get_an_answer():
    lsp = RawLsp()
    try:
        lsp.send(
            {"id": 1, "method": "initialize", "params": {"capabilities": {}, "processId": None}}
        )
        assert "result" in lsp.response(1)
        lsp.send({"method": "initialized", "params": {}})
        uri = "file:///tmp/reliability/raw.py"
        lsp.send(
            {
                "method": "textDocument/didOpen",
                "params": {
                    "textDocument": {
                        "uri": uri,
                        "languageId": "python",
                        "version": 1,
                        "text": "x = 1\n",
                    }
                },
            }
        )
        context = {"triggerKind": 1}
        bad = [
            {
                "textDocument": {"uri": uri},
                "position": {"line": -1, "character": 0},
                "context": context,
            },
            {
                "textDocument": {"uri": uri},
                "position": {"line": "zero", "character": 0},
                "context": context,
            },
            {
                "textDocument": {"uri": uri},
                "position": {"line": 0, "character": -5},
                "context": context,
            },
            {
                "textDocument": {"uri": uri},
                "position": {"line": 0, "character": 0},
                "context": {"triggerKind": "x"},
            },
            {
                "textDocument": {"uri": uri},
                "position": {"line": [0], "character": 0},
                "context": context,
            },
            {"position": {"line": 0, "character": 0}, "context": context},
            [1, 2, 3],
        ]
        for n, params in enumerate(bad, start=10):
            lsp.send({"id": n, "method": "textDocument/inlineCompletion", "params": params})
            answer = lsp.response(n)
            assert answer.get("error", {}).get("code") == -32602, (params, answer)
            assert "inlineCompletion" in answer["error"]["message"]
        lsp.send(
            {
                "id": "s",
                "method": "textDocument/completion",
                "params": {
                    "textDocument": {"uri": uri},
                    "position": {"line": 0, "character": "end"},
                },
            }
        )
        assert lsp.response("s")["error"]["code"] == -32602
        lsp.send({"id": 99, "method": "shutdown"})  # and it still answers valid requests
        assert "error" not in lsp.response(99)
    finally:
        lsp.close()
