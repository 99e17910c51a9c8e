"""--backend openai when the upstream is down or misnamed: clear errors, no hang (no vLLM needed:
nothing listens on the port, which is the failure itself)."""

from __future__ import annotations

import socket

from server_helpers import make_config

from server import create_app


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_an_unreachable_upstream_is_a_503_naming_it_and_nothing_hangs():
    url = _dead_url()
    app = create_app(make_config(backend="openai", upstream=url, upstream_wait_s=0))
    client = app.test_client()
    loaded = client.post("/load_model", json={})
    assert loaded.status_code == 503 and loaded.headers["Retry-After"]
    assert "cannot be reached" in loaded.json["message"] and url in loaded.json["message"]
    generated = client.post("/generate", json={"prompt": "def f():"})
    assert generated.status_code == 503 and "No model is loaded" in generated.json["message"]
    status = client.get("/model_status").json
    assert status["model_loaded"] is False and "cannot be reached" in status["last_load_error"]
    assert status["queue"]["concurrency"] == 16
