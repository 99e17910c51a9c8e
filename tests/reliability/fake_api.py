"""A scriptable stand-in for the DeepShiva HTTP API, on a free loopback port, for language-server tests.

It speaks the same wire format as ``deepshiva-server`` (/health, /model_status, /generate and
/stream with JSON-per-event SSE) but answers what the test tells it to, when it tells it to:

    with FakeApi() as api:
        api.answer = lambda body: ("text", 2.0)   # (completion, seconds before the first byte)
        ...
        api.bodies                                # every /generate and /stream body received

It exists for what the real server cannot be made to do on purpose: answer slowly, answer with a
text that names the request it answers, record the exact prompt the language server sent.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class FakeApi:
    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.answer: Callable[[dict], tuple[str, float]] = lambda body: ("", 0.0)
        self.closed_early = 0  # streams whose client hung up before the end
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # close-delimited bodies: no chunking to get wrong

            def log_message(self, *args):  # keep test output clean
                pass

            def _json(self, status: int, data: dict) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                if self.path == "/health":
                    self._json(200, {"status": "ok", "model_loaded": True, "state": "ready"})
                elif self.path == "/model_status":
                    self._json(
                        200,
                        {
                            "status": "success",
                            "model_loaded": True,
                            "model_name": "fake",
                            "state": "ready",
                        },
                    )
                else:
                    self._json(404, {"status": "error", "message": "not found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with api._lock:
                    api.bodies.append(body)
                text, delay = api.answer(body)
                if self.path == "/generate":
                    time.sleep(delay)
                    self._json(200, {"status": "success", "response": text})
                    return
                if self.path != "/stream":
                    self._json(404, {"status": "error", "message": "not found"})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    self.wfile.flush()
                    deadline = time.monotonic() + delay
                    while time.monotonic() < deadline:  # wait, but notice a client that hung up
                        time.sleep(0.02)
                    for piece in _pieces(text):
                        self.wfile.write(f"data: {json.dumps({'text': piece})}\n\n".encode())
                        self.wfile.flush()
                    done = {"status": "success", "response": text, "finish_reason": "stop"}
                    self.wfile.write(f"event: done\ndata: {json.dumps(done)}\n\n".encode())
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    with api._lock:
                        api.closed_early += 1

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-api",
            daemon=True,
        )

    def __enter__(self) -> "FakeApi":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _pieces(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or []
