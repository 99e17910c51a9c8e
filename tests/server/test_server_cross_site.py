"""Web pages the user opens cannot drive the server: a POST body must be ``application/json``
(a "simple" cross-site request cannot send that type without a CORS preflight, which the server
never grants), and a Host or Origin that is not this server's own is refused (DNS rebinding).

The language server and the editors keep working: they send ``application/json`` and
``Host: 127.0.0.1:PORT`` (checked over a real socket with httpx, the LSP's client)."""

from __future__ import annotations

import httpx
import pytest
from server_helpers import make_config, running

from server import create_app


def _assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"status", "message"} and body["status"] == "error", body
    for word in words:
        assert word in body["message"], body["message"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
@pytest.mark.parametrize("path", ["/load_model", "/generate", "/stream"])
def test_post_body_that_is_not_json_is_415(client, path, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    body = '{"model_name": "x/y"}' if path == "/load_model" else '{"prompt": "x", "max_length": 1}'
    _assert_error(client.post(path, data=body, headers=headers), 415, "application/json")


def test_json_with_charset_and_empty_bodies_are_served(client):
    ok = client.post(
        "/generate",
        data='{"prompt": "x", "max_length": 1}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 200, ok.get_data(as_text=True)
    # An empty body carries nothing a page could forge: still the "missing field" 400.
    _assert_error(client.post("/generate"), 400, "prompt")


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:5005",
        "127.0.0.1.evil.example",
        "localhost.evil.example:5005",
        "0.0.0.0:5005",
        "192.168.1.5",
    ],
)
def test_foreign_host_is_refused(client, host):
    """A DNS-rebound page reaches 127.0.0.1 with its own name in Host: every path refuses it."""
    for method, path in (("GET", "/health"), ("GET", "/model_status"), ("POST", "/generate")):
        response = client.open(
            path, method=method, json={"prompt": "x", "max_length": 1}, headers={"Host": host}
        )
        _assert_error(response, 403, "Host", "--allowed-hosts")


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:5005", "localhost:5005", "LOCALHOST", "[::1]:5005", "127.0.0.1", "localhost"],
)
def test_loopback_hosts_are_served(client, host):
    assert client.get("/health", headers={"Host": host}).status_code == 200


def test_foreign_origin_is_refused(client):
    body = {"prompt": "x", "max_length": 1}
    for origin in ("https://evil.example", "null", "http://evil.example:5005"):
        _assert_error(
            client.post("/generate", json=body, headers={"Origin": origin}), 403, "Origin"
        )
    assert (
        client.post("/generate", json=body, headers={"Origin": "http://127.0.0.1:5005"}).status_code
        == 200
    )


def test_names_from_settings_are_accepted(engine):
    app = create_app(make_config(allowed_hosts="gpu-box.lan, Proxy.Example"), engine=engine)
    client = app.test_client()
    for host in ("gpu-box.lan:5005", "proxy.example", "127.0.0.1:5005"):
        assert client.get("/health", headers={"Host": host}).status_code == 200, host
    _assert_error(client.get("/health", headers={"Host": "other.lan"}), 403, "Host")


def test_remote_access_allowed_turns_the_host_check_off(engine):
    app = create_app(make_config(host="0.0.0.0", allow_remote=True), engine=engine)
    assert (
        app.test_client().get("/health", headers={"Host": "my-server.lan:5005"}).status_code == 200
    )


def test_language_server_requests_pass_over_a_real_socket(app):
    """httpx with ``json=`` is what lsp/api.py sends: application/json and Host 127.0.0.1:PORT."""
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        answer = http.post("/generate", json={"prompt": "def f():\n", "max_length": 2})
        assert answer.status_code == 200, answer.text
        with http.stream("POST", "/stream", json={"prompt": "x", "max_length": 2}) as stream:
            assert stream.status_code == 200 and "event: done" in stream.read().decode()
        plain = http.post(
            "/generate", content=b'{"prompt": "x"}', headers={"Content-Type": "text/plain"}
        )
        assert plain.status_code == 415 and plain.json()["status"] == "error"
