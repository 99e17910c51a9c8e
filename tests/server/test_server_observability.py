"""What the server writes about requests cannot be steered by them: Prometheus labels take only
known values (an invented method or path cannot grow /metrics), and the logs escape control
characters (a path cannot forge a log line or send escape sequences to a terminal)."""

from __future__ import annotations

import logging
import socket

import httpx
from server_helpers import running


def _raw_request(url: str, request_line: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_invented_methods_paths_and_statuses_do_not_become_labels(app):
    with running(app) as url:
        for i in range(30):
            answer = _raw_request(url, b"X" * 2000 + str(i).encode() + b" /health HTTP/1.1")
            assert answer.startswith(b"HTTP/1.1 405"), answer[:100]
            _raw_request(url, f"GET /invented-{i} HTTP/1.1".encode())
        text = httpx.get(url + "/metrics", timeout=10).text
    assert "XXXX" not in text and "invented" not in text
    assert 'deepshiva_requests_total{method="other",path="/health",status="405"} 30.0' in text
    assert 'deepshiva_requests_total{method="GET",path="other",status="404"} 30.0' in text
    label_lines = [
        line for line in text.splitlines() if line.startswith("deepshiva_requests_total{")
    ]
    assert len(label_lines) <= 3, label_lines


def test_access_log_escapes_control_characters(app, caplog):
    """Waitress decodes %0a in the path to a newline: the raw path once forged a whole log line."""
    caplog.set_level("INFO", logger="deepshiva.access")
    forged = b"/x%0a2026-12-06%2005:00:00,000%20INFO%20deepshiva.access:%20POST%20/load_model%20200%0d%1b[2J%07%c2%9b"
    with running(app) as url:
        assert _raw_request(url, b"GET " + forged + b" HTTP/1.1").startswith(b"HTTP/1.1 404")
    lines = [r.getMessage() for r in caplog.records if r.name == "deepshiva.access"]
    assert len(lines) == 1
    line = lines[0]
    assert all(ch >= " " and not ("\x7f" <= ch <= "\x9f") for ch in line), repr(line)
    assert line.startswith("GET /x\\n2026-12-06") and "\\r\\x1b[2J\\x07" in line and " 404 " in line


def test_client_leaving_a_stream_is_a_quiet_cancellation(app, caplog):
    """Waitress logs each vanished client at INFO as "Client disconnected while serving /stream",
    with the raw path: every LSP cancellation looked like a problem. Now it is never above DEBUG.
    (Where the server's close hook ends the stream first, waitress does not log it at all: the
    filter itself is checked on waitress's own line below.)"""
    caplog.set_level("DEBUG")
    with running(app) as url:
        host, port = url.removeprefix("http://").split(":")
        body = b'{"prompt": "def f():\\n", "max_length": 1000, "temperature": 0.0}'
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
        from server_helpers import wait_idle

        wait_idle(app, timeout=30)
    loud = [
        r
        for r in caplog.records
        if "disconnected" in r.getMessage().lower() and r.levelno > logging.DEBUG
    ]
    assert not loud, [(r.levelname, r.getMessage()) for r in loud]
    assert any(r.getMessage().startswith("POST /stream 200") for r in caplog.records)


def test_waitress_line_for_a_vanished_client_becomes_an_escaped_debug_line(caplog):
    from server.serve import DISCONNECTED, WaitressLogFilter

    caplog.set_level("DEBUG")
    record = logging.LogRecord(
        "waitress", logging.INFO, __file__, 1, DISCONNECTED + "/stream\x1b[2J", None, None
    )
    assert WaitressLogFilter().filter(record) is False  # waitress's INFO line is dropped
    quiet = [r for r in caplog.records if "client disconnected during" in r.getMessage()]
    assert len(quiet) == 1 and quiet[0].levelno == logging.DEBUG
    assert "\x1b" not in quiet[0].getMessage()  # the control character is escaped
