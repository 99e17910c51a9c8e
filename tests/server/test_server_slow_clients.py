"""Slow clients cannot lock everyone out: 101+ connections that trickle a byte now and then once
filled waitress's connection limit (100) and /health stopped answering until they left. Raw
sockets, every wait bounded."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from server_helpers import make_config, running

from server import create_app

pytestmark = pytest.mark.timeout(120)


def _slow_connections(url: str, count: int) -> list[socket.socket]:
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
        sockets.append(sock)
    return sockets


def _trickle(sockets: list[socket.socket]) -> int:
    """Send one more byte on each; returns how many were still open."""
    alive = 0
    for sock in sockets:
        try:
            sock.sendall(b"a")
            alive += 1
        except OSError:
            pass
    return alive


def test_health_answers_with_more_slow_connections_than_the_limit(engine):
    app = create_app(make_config(), engine=engine)
    with running(app) as url:
        sockets = _slow_connections(url, 110)
        try:
            for _ in range(3):
                _trickle(sockets)
                started = time.monotonic()
                health = httpx.get(url + "/health", timeout=5)
                assert health.status_code == 200 and time.monotonic() - started < 5
                answer = httpx.post(
                    url + "/generate", json={"prompt": "x", "max_length": 2}, timeout=30
                )
                assert answer.status_code == 200, answer.text
                time.sleep(0.3)
        finally:
            for sock in sockets:
                sock.close()


def test_a_request_must_arrive_within_the_receive_timeout(engine):
    app = create_app(make_config(receive_timeout=1.5), engine=engine)
    with running(app) as url:
        sockets = _slow_connections(url, 3)
        try:
            deadline = time.monotonic() + 10
            while _trickle(sockets) and time.monotonic() < deadline:
                time.sleep(0.3)  # a byte every 0.3 s: never idle, never complete
            assert _trickle(sockets) == 0, "slow connections still open after 10 s"
            assert time.monotonic() < deadline
            # a client that sends its request at once is not affected
            with httpx.Client(base_url=url, timeout=10) as http:
                for _ in range(3):
                    assert http.get("/health").status_code == 200
                    time.sleep(1.0)  # idle between requests on a kept-alive connection: allowed
        finally:
            for sock in sockets:
                sock.close()
