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
    label_lines = [line for line in text.splitlines() if line.startswith("deepshiva_requests_total{")]
    assert len(label_lines) <= 3, label_lines
