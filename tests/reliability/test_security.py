"""Who gets in and what they can make the server do: loopback by default, the API key on every
path but /health (compared in constant time, never logged), no model code run unless the operator
allowed it at start-up, /load_model confined to the operator's allow-list.

tests/server/test_cli.py already checks the key on each documented endpoint and the refusal of a
non-loopback --host; tests/server/test_load_model.py an exact-name allow-list. These cover the rest.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import OFFLINE
from live_server import ROOT, server_command, start_live_server

pytestmark = pytest.mark.timeout(300)

KEY = "k3y-Secret-0123456789"
UNICODE_KEY = "schlüssel-✓-ключ"


def _listening_addresses(pid: int) -> set[str]:
    proc = psutil.Process(pid)
    return {c.laddr.ip for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


@pytest.mark.slow  # starts its own server process
def test_default_listens_on_loopback_only():
    """No --host at all: the server binds 127.0.0.1 and nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSHIVA_")}
    env.update(OFFLINE, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        server_command() + ["--port", "0", "--model", "none"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "DeepShiva API on" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        assert "DeepShiva API on http://127.0.0.1:" in line, line
        deadline = time.monotonic() + 10
        while not _listening_addresses(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _listening_addresses(proc.pid) == {"127.0.0.1"}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.10", "example.com"])
def test_non_loopback_hosts_from_the_environment_are_refused(host):
    """DEEPSHIVA_HOST is checked like --host: nothing beyond loopback without allow_remote. The
    refused server never binds (it exits before creating a socket), so no address is contacted."""
    from pydantic import ValidationError

    from server.config import ServerConfig

    os.environ["DEEPSHIVA_HOST"] = host
    try:
        with pytest.raises(ValidationError, match="allow-remote"):
            ServerConfig()
    finally:
        del os.environ["DEEPSHIVA_HOST"]
    for loopback in ("127.0.0.1", "127.5.6.7", "::1", "localhost"):
        assert ServerConfig(host=loopback).host == loopback


@pytest.fixture(scope="module")
def keyed(tiny_model_dir):
    server = start_live_server(
        tiny_model_dir,
        api_key=KEY,
        env=OFFLINE,
        args=["--allowed-models", str(tiny_model_dir), "--max-length-limit", "16"],
    )
    yield server
    server.stop()


def _raw_request(url: str, method: str, path: str, headers: dict | None = None) -> int:
    """Send the path exactly as given (httpx would normalise '..' and '//')."""
    host, port = url.rsplit("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(
            method,
            path,
            body=b"{}" if method == "POST" else None,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        return conn.getresponse().status
    finally:
        conn.close()


def test_no_path_or_method_trick_gets_past_the_key(keyed):
    url = keyed.url
    assert httpx.get(url + "/health", timeout=5).status_code == 200
    tricks = [
        ("GET", "/health/../model_status"),
        ("GET", "//model_status"),
        ("GET", "/model_status/"),
        ("GET", "/Model_Status"),
        ("GET", "/model_status?health"),
        ("GET", "/model_status#/health"),
        ("POST", "/health/../generate"),
        ("POST", "//generate"),
        ("POST", "/./generate"),
        ("POST", "/generate%2f"),
        ("OPTIONS", "/generate"),
        ("HEAD", "/model_status"),
        ("GET", "/nowhere"),
        ("GET", "/openapi.json"),
        ("GET", "/metrics"),
        ("POST", "/load_model"),
    ]
    for method, path in tricks:
        assert _raw_request(url, method, path) == 401, (method, path)
        assert _raw_request(url, method, path, {"Authorization": "Bearer"}) == 401, (method, path)
    for value in (
        "Bearer " + KEY[:-1],
        "Bearer " + KEY + "x",
        "Bearer " + KEY.upper(),
        "Token " + KEY,
        "Bearer\t" + KEY + "\x00",
        "Bearer " + "A" * 10_000,
        KEY,
    ):
        try:
            response = httpx.get(
                url + "/model_status", headers={"Authorization": value.encode("utf-8")}, timeout=5
            )
        except (httpx.LocalProtocolError, httpx.RemoteProtocolError):  # refused before the app
            continue
        assert response.status_code == 401, value[:40]
    good = {"Authorization": ("Bearer " + KEY).encode("utf-8")}
    assert httpx.get(url + "/model_status", headers=good, timeout=5).status_code == 200
    answer = httpx.post(
        url + "/generate", headers=good, json={"prompt": "x", "max_length": 2}, timeout=30
    )
    assert answer.status_code == 200


@pytest.mark.slow  # starts its own server process
def test_a_non_ascii_key_works_over_a_real_socket():
    """A key with non-ASCII characters: clients send it as UTF-8 bytes; the server must match it
    (WSGI decodes header values as latin-1) and still refuse near misses."""
    server = start_live_server(None, env=OFFLINE, args=["--api-key", UNICODE_KEY])
    try:

        def status(value: str) -> int:
            headers = {"Authorization": ("Bearer " + value).encode("utf-8")}
            return httpx.get(server.url + "/model_status", headers=headers, timeout=5).status_code

        assert status(UNICODE_KEY) == 200
        assert status(UNICODE_KEY[:-1]) == 401 and status(UNICODE_KEY.upper()) == 401
        latin1 = {
            "Authorization": ("Bearer " + UNICODE_KEY)
            .encode("utf-8")
            .decode("latin-1")
            .encode("latin-1")
        }
        assert httpx.get(server.url + "/model_status", headers=latin1, timeout=5).status_code == 200
    finally:
        server.stop()


def test_the_key_never_appears_in_logs_or_answers(keyed):
    good = {"Authorization": ("Bearer " + KEY).encode("utf-8")}
    bad = httpx.get(
        keyed.url + "/model_status", headers={"Authorization": "Bearer nope"}, timeout=5
    )
    assert KEY not in bad.text
    for path in ("/model_status", "/openapi.json", "/metrics"):
        assert KEY not in httpx.get(keyed.url + path, headers=good, timeout=5).text
    assert KEY not in keyed.output and "nope" not in keyed.output


def test_key_is_compared_in_constant_time(engine_app_factory):
    """Every check goes through hmac.compare_digest on bytes (constant time for equal lengths; the
    key's length is the only thing a timing attacker could learn)."""
    import server.auth as auth

    calls = []
    real = auth.hmac.compare_digest

    def spy(a, b):
        calls.append((type(a), type(b)))
        return real(a, b)

    auth.hmac.compare_digest = spy
    try:
        client = engine_app_factory(api_key=KEY).test_client()
        assert (
            client.get("/model_status", headers={"Authorization": "Bearer wrong"}).status_code
            == 401
        )
        assert client.get(
            "/model_status", headers={"Authorization": "Bearer " + KEY}
        ).status_code in (200, 401)
    finally:
        auth.hmac.compare_digest = real
    assert calls and all(pair == (bytes, bytes) for pair in calls)


@pytest.fixture
def engine_app_factory():
    from server import ServerConfig, create_app

    def make(**config):
        return create_app(ServerConfig(model=None, **config), engine_factory=_refuse)

    return make


def _refuse(name):
    raise AssertionError(f"the engine factory was called for {name!r}")


# ---- remote code -----------------------------------------------------------------------------

EVIL_CONFIG = """
from pathlib import Path
from transformers import LlamaConfig

Path(MARKER).write_text("the model's own code ran")


class EvilConfig(LlamaConfig):
    model_type = "llama"
"""


@pytest.fixture
def remote_code_model(tiny_model_dir, tmp_path):
    """The tiny model with an auto_map pointing at Python that leaves a marker file when imported."""
    path = Path(shutil.copytree(tiny_model_dir, tmp_path / "remote-code-model"))
    (path / "evil_config.py").write_text(
        EVIL_CONFIG.replace("MARKER", repr(str(path / "REMOTE_CODE_RAN")))
    )
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil_config.EvilConfig"}
    (path / "config.json").write_text(json.dumps(config))
    tok = json.loads((path / "tokenizer_config.json").read_text())
    tok["auto_map"] = {"AutoTokenizer": ["evil_config.EvilTokenizer", None]}
    (path / "tokenizer_config.json").write_text(json.dumps(tok))
    return path


@pytest.mark.slow  # starts its own server process
def test_remote_code_never_runs_unless_allowed_at_start(tiny_model_dir, remote_code_model):
    """A server started without --trust-remote-code loads (or refuses) a model whose files ask for
    custom code, without importing that code; clients have no way to switch it on per request."""
    marker = remote_code_model / "REMOTE_CODE_RAN"
    server = start_live_server(tiny_model_dir, env=OFFLINE)
    try:
        for body in (
            {"model_name": str(remote_code_model)},
            {"model_name": str(remote_code_model), "trust_remote_code": True},
        ):
            response = httpx.post(server.url + "/load_model", json=body, timeout=120)
            assert response.status_code in (200, 404, 422), response.text
            assert not marker.exists(), "the model's own Python code ran"
        status = httpx.get(server.url + "/model_status", timeout=5).json()
        assert status["model_loaded"] is True and status["state"] == "ready"
    finally:
        server.stop()
    assert not marker.exists()


def test_the_start_up_switch_is_what_gates_remote_code(remote_code_model, tmp_path):
    """Control for the test above: with trust_remote_code=True the same files' code does run, so
    the marker's absence there really means 'not run', not 'never asked for'."""
    from core import OptimizedLLM

    try:
        OptimizedLLM(str(remote_code_model), trust_remote_code=True)
    except Exception:  # the marker is written on import, whatever happens after
        pass
    assert (remote_code_model / "REMOTE_CODE_RAN").exists()


# ---- the allow-list ---------------------------------------------------------------------------


def test_allow_list_confines_loads_to_its_directories(tiny_model_dir, tmp_path):
    """--allowed-models with a directory: models inside it load; traversal out of it, symlinks
    pointing out of it, other absolute paths, hub ids and URLs are 403 before anything is read
    (the engine factory is never called for them)."""
    from server import ServerConfig, create_app

    root = tmp_path / "models"
    inside = Path(shutil.copytree(tiny_model_dir, root / "inside"))
    outside = Path(shutil.copytree(tiny_model_dir, tmp_path / "outside"))
    (root / "escape").symlink_to(outside, target_is_directory=True)
    loaded = []

    def factory(name):
        loaded.append(name)
        from core import OptimizedLLM

        return OptimizedLLM(name)

    app = create_app(ServerConfig(model=None, allowed_models=[str(root)]), engine_factory=factory)
    client = app.test_client()
    refused = [
        str(outside),
        str(root / ".." / "outside"),
        str(root / "escape"),
        str(root / "inside" / ".." / ".."),
        "/etc",
        "/",
        "org/model",
        "deepshiva/tiny-python",
        "https://huggingface.co/org/model",
        "file://" + str(inside),
        str(root) + "2",
        "~/" + str(inside),
        str(inside) + "\x00",
    ]
    for name in refused:
        response = client.post("/load_model", json={"model_name": name})
        assert response.status_code in (400, 403), (name, response.get_json())
    assert loaded == []
    assert client.post("/load_model", json={"model_name": str(inside)}).status_code == 200
    assert loaded == [str(inside)]
    status = client.get("/model_status").get_json()
    assert status["model_name"] == str(inside) and status["last_load_error"] is None
