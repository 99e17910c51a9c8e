"""The real ``deepshiva-server`` process (through tests/live_server.py): startup, auth, logs, shutdown.

One subprocess for the module: starting one costs seconds (torch import). Auth off, and the
no-model 503, are covered in-process (test_server_config_auth.py, test_server_errors.py).
"""

from __future__ import annotations

import re
import time
import subprocess

import httpx
import pytest
from live_server import ROOT, server_command, start_live_server


@pytest.fixture(scope="module")
def keyed_server(tiny_model_dir):
    server = start_live_server(tiny_model_dir, api_key="s3cret")
    yield server
    assert server.stop() == 0, server.output  # SIGTERM is a clean shutdown


def test_health_is_open_and_everything_else_needs_the_key(keyed_server):
    url = keyed_server.url
    assert httpx.get(url + "/health").json()["model_loaded"] is True
    for method, path in [
        ("GET", "/model_status"),
        ("POST", "/generate"),
        ("POST", "/stream"),
        ("POST", "/load_model"),
        ("GET", "/openapi.json"),
        ("GET", "/metrics"),
    ]:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "s3cret"},
            {"Authorization": "Basic s3cret"},
        ):
            response = httpx.request(method, url + path, headers=headers, json={"prompt": "x"})
            assert response.status_code == 401, (path, headers)
            assert response.json()["status"] == "error" and "Bearer" in response.json()["message"]
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_generate_and_stream_with_the_key(keyed_server, tiny_model_dir):
    url, headers = keyed_server.url, keyed_server.headers
    status = httpx.get(url + "/model_status", headers=headers).json()
    assert status["model_name"] == str(tiny_model_dir) and status["state"] == "ready"
    body = httpx.post(
        url + "/generate", headers=headers, json={"prompt": "def f():\n", "max_length": 5}
    ).json()
    assert body["status"] == "success" and body["usage"]["completion_tokens"] > 0
    with httpx.stream(
        "POST", url + "/stream", headers=headers, json={"prompt": "x = ", "max_length": 5}
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    assert "\nevent: done\ndata: " in "\n" + text
    assert httpx.get(url + "/openapi.json", headers=headers).json()["openapi"].startswith("3.")
    reload = httpx.post(
        url + "/load_model", headers=headers, json={"model_name": str(tiny_model_dir)}, timeout=60
    )
    assert reload.status_code == 200


def test_one_log_line_per_request(keyed_server):
    url, headers = keyed_server.url, keyed_server.headers
    httpx.post(
        url + "/generate", headers=headers, json={"prompt": "log_me = ", "max_length": 3, "seed": 4}
    )
    httpx.get(url + "/nowhere", headers=headers)
    # The server's output is read by a thread: give the last lines a moment to arrive.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
        "GET /nowhere 404" in line for line in keyed_server.lines
    ):
        time.sleep(0.1)
    lines = keyed_server.lines
    generate = [
        line for line in lines if re.search(r"POST /generate 200 \d+\.\dms tokens=\d+$", line)
    ]
    assert generate, keyed_server.output
    assert any(re.search(r"GET /nowhere 404 \d+\.\dms tokens=-$", line) for line in lines)
    assert any(re.search(r"GET /model_status 401 ", line) for line in lines)


def test_listening_beyond_loopback_needs_the_flag():
    result = subprocess.run(
        server_command() + ["--host", "0.0.0.0", "--model", "none"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--allow-remote" in result.stderr


def test_help_lists_the_options():
    result = subprocess.run(
        server_command() + ["--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    for option in (
        "--host",
        "--port",
        "--model",
        "--api-key",
        "--allow-remote",
        "--queue-size",
        "--allowed-models",
        "--trust-remote-code",
    ):
        assert option in result.stdout


def test_a_port_in_use_is_one_line_naming_the_port_and_the_flag():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            server_command() + ["--port", str(port), "--model", "none"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f"port {port} is already in use" in lines[0] and "--port" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_a_bad_setting_is_one_line_naming_its_variable(capsys, monkeypatch):
    """A server checks the engine's variables too when it starts (ServerConfig extends
    core.options.EngineOptions), and says which one is wrong."""
    from server.cli import main

    for variable, value, words in (
        ("DEEPSHIVA_LEAN", "maybe", "lean (DEEPSHIVA_LEAN)"),
        ("DEEPSHIVA_THREADS", "0", "cpu_threads (DEEPSHIVA_CPU_THREADS or DEEPSHIVA_THREADS)"),
        ("DEEPSHIVA_HTTP_THREADS", "-1", "http_threads (DEEPSHIVA_HTTP_THREADS)"),
    ):
        with monkeypatch.context() as env:
            env.setenv(variable, value)
            assert main(["--model", "none"]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and words in lines[0] and repr(value) in lines[0], lines
