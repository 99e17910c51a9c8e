"""Settings (flags and DEEPSHIVA_* variables), the loopback rule, auth on and off, metrics, the queue."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import ValidationError
from server_helpers import make_config

from server import ServerConfig, create_app
from server.admission import AdmissionQueue, ClientGone, QueueFull
from server.cli import load_config


def test_defaults_are_safe():
    config = ServerConfig()
    assert (config.host, config.port, config.model) == ("127.0.0.1", 5005, "deepshiva/tiny-python")
    assert config.api_key is None and not config.allow_remote and not config.trust_remote_code
    assert config.worker_threads > config.queue_size


def test_environment_variables_and_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPSHIVA_PORT", "7000")
    monkeypatch.setenv("DEEPSHIVA_API_KEY", "from-env")
    monkeypatch.setenv("DEEPSHIVA_ALLOWED_MODELS", f"a/b, {tmp_path}")
    monkeypatch.setenv("DEEPSHIVA_QUEUE_SIZE", "2")
    config = load_config([])
    assert config.port == 7000 and config.api_key.get_secret_value() == "from-env"
    assert config.allowed_models == ["a/b", str(tmp_path)] and config.queue_size == 2
    flagged = load_config(
        ["--port", "6001", "--api-key", "flag", "--model", "none", "--queue-size", "5"]
    )
    assert flagged.port == 6001 and flagged.api_key.get_secret_value() == "flag"
    assert flagged.model is None and flagged.queue_size == 5
    assert "from-env" not in repr(config)  # the key never shows in logs or reprs


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "localhost", "::1"])
def test_loopback_hosts_need_no_flag(host):
    assert ServerConfig(host=host).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_other_hosts_need_allow_remote(host):
    with pytest.raises(ValidationError, match="--allow-remote"):
        ServerConfig(host=host)
    assert ServerConfig(host=host, allow_remote=True).host == host


def test_allow_list_matches_names_and_directories(tmp_path):
    inside = tmp_path / "models" / "one"
    inside.mkdir(parents=True)
    config = ServerConfig(
        allowed_models=["org/model", str(tmp_path / "models")], model="shipped/model"
    )
    assert config.model_allowed("org/model") and config.model_allowed(str(inside))
    assert config.model_allowed("shipped/model")  # the preloaded model is always allowed
    assert not config.model_allowed("org/other") and not config.model_allowed(str(tmp_path))
    assert not config.model_allowed(str(inside / ".." / ".." / ".."))
    assert ServerConfig().model_allowed("anything")  # no list: any


def test_auth_on(engine):
    client = create_app(make_config(api_key="k3y"), engine=engine).test_client()
    assert client.get("/health").status_code == 200
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer "},
        {"Authorization": "k3y"},
    ):
        response = client.get("/model_status", headers=headers)
        assert response.status_code == 401 and response.get_json()["status"] == "error"
    for scheme in ("Bearer", "bearer"):
        assert (
            client.get("/model_status", headers={"Authorization": f"{scheme} k3y"}).status_code
            == 200
        )
    ok = client.post(
        "/generate", headers={"Authorization": "Bearer k3y"}, json={"prompt": "x", "max_length": 2}
    )
    assert ok.status_code == 200
    assert client.get("/nowhere").status_code == 401  # unknown paths reveal nothing without the key


def test_non_ascii_key_over_a_real_socket(engine):
    """Clients send a non-ASCII key as UTF-8 bytes; WSGI decodes header values as latin-1."""
    import httpx
    from server_helpers import running

    key = "schlüssel-✓"
    app = create_app(make_config(api_key=key), engine=engine)
    with running(app) as url:

        def status(value: str) -> int:
            headers = {"Authorization": ("Bearer " + value).encode("utf-8")}
            return httpx.get(url + "/model_status", headers=headers, timeout=5).status_code

        assert status(key) == 200
        assert (
            status(key[:-1]) == 401 and status(key.upper()) == 401 and status("schlussel-?") == 401
        )


def test_auth_off(client):
    for path in ("/model_status", "/health", "/openapi.json", "/metrics"):
        assert client.get(path).status_code == 200


def test_metrics_count_requests_and_tokens(client):
    # The werkzeug test client finishes (closes) a response only when told to, as waitress does.
    client.post("/generate", json={"prompt": "x", "max_length": 3, "seed": 1}).close()
    client.post("/generate", json={"prompt": 1}).close()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'deepshiva_requests_total{method="POST",path="/generate",status="200"} 1.0' in text
    assert 'deepshiva_requests_total{method="POST",path="/generate",status="400"} 1.0' in text
    assert "deepshiva_generated_tokens_total" in text and "deepshiva_model_loaded 1.0" in text
    assert "deepshiva_queue_waiting 0.0" in text


def test_access_log_line(client, caplog):
    caplog.set_level("INFO", logger="deepshiva.access")
    client.post("/generate", json={"prompt": "x", "max_length": 2}).close()
    streamed = client.post("/stream", json={"prompt": "x", "max_length": 2})
    streamed.get_data()
    streamed.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "deepshiva.access"]
    assert len(lines) == 2
    assert lines[0].startswith("POST /generate 200 ") and "ms tokens=" in lines[0]
    assert lines[1].startswith("POST /stream 200 ") and not lines[1].endswith("tokens=-")


# ---- the admission queue on its own ----


def test_queue_is_fifo_bounded_and_drops_vanished_clients():
    queue = AdmissionQueue(capacity=2, poll_s=0.01)
    first = queue.acquire()
    order, gone = [], threading.Event()

    def wait(name, client_gone=lambda: False):
        try:
            with queue.acquire(client_gone):
                order.append(name)
        except ClientGone:
            order.append(f"{name} gone")

    a = threading.Thread(target=wait, args=("a", gone.is_set))
    a.start()
    time.sleep(0.05)
    b = threading.Thread(target=wait, args=("b",))
    b.start()
    time.sleep(0.05)
    with pytest.raises(QueueFull):
        queue.acquire()
    assert queue.snapshot() == {"running": 1, "waiting": 2, "capacity": 2, "concurrency": 1}
    gone.set()  # a's client hangs up while waiting
    a.join(2)
    first.release()
    b.join(2)
    assert order == ["a gone", "b"] and queue.abandoned == 1 and queue.rejected == 1
    assert queue.snapshot() == {"running": 0, "waiting": 0, "capacity": 2, "concurrency": 1}


def test_queue_lets_its_running_limit_generate_at_once_in_order():
    """With an upstream engine, admission lets N through; the rest wait in FIFO order, then 429."""
    queue = AdmissionQueue(capacity=1, poll_s=0.01, running_limit=2)
    first, second = queue.acquire(), queue.acquire()  # neither waits
    assert queue.snapshot() == {"running": 2, "waiting": 0, "capacity": 1, "concurrency": 2}
    got = []
    waiter = threading.Thread(target=lambda: got.append(queue.acquire()))
    waiter.start()
    time.sleep(0.05)
    assert not got and queue.snapshot()["waiting"] == 1
    with pytest.raises(QueueFull):
        queue.acquire()
    first.release()
    waiter.join(2)
    assert got and queue.snapshot() == {"running": 2, "waiting": 0, "capacity": 1, "concurrency": 2}
    second.release()
    got[0].release()
    assert queue.snapshot()["running"] == 0


def test_backend_openai_needs_an_upstream_and_keeps_the_local_engine_at_one(capsys):
    from server.cli import main

    assert load_config([]).running_limit == 1
    assert load_config(["--concurrency", "8"]).running_limit == 1  # the local engine: one at a time
    config = load_config(
        ["--backend", "openai", "--upstream", "http://127.0.0.1:8000", "--concurrency", "8"]
    )
    assert config.running_limit == 8 and config.model == "" and config.default_model == ""
    named = load_config(
        ["--backend", "openai", "--upstream", "http://h:1", "--upstream-model", "m"]
    )
    assert named.model == "m" and named.default_model == "m"
    assert main(["--backend", "openai"]) == 2
    assert "needs --upstream URL" in capsys.readouterr().err


def test_queue_cap_holds_between_a_release_and_the_next_start():
    """Once the runner releases, its successor needs a moment to wake; requests arriving in that
    moment saw "not busy" and joined a full line (429s reported 9 and 10 waiting with a limit of
    8). The lock is held here to freeze that moment."""
    queue = AdmissionQueue(capacity=1, poll_s=10)
    runner = queue.acquire()
    started = threading.Event()

    def successor():
        with queue.acquire():
            started.set()

    waiter = threading.Thread(target=successor)
    waiter.start()
    deadline = time.monotonic() + 5
    while queue.snapshot()["waiting"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    seen = []

    def second_arrival():  # runs inside the first arrival's acquire, while it stands in line
        try:
            queue.acquire(client_gone=lambda: True)
        except (QueueFull, ClientGone) as exc:
            seen.append((type(exc).__name__, str(exc)))
        return True  # then the first arrival leaves too

    with queue._cond:  # the successor is notified but cannot run yet
        runner.release()
        with pytest.raises(ClientGone):
            queue.acquire(client_gone=second_arrival)  # one place behind the successor: admitted
    waiter.join(5)
    assert seen == [("QueueFull", "1 requests are already waiting for the model")]
    assert started.is_set() and queue.rejected == 1
    assert queue.snapshot() == {"running": 0, "waiting": 0, "capacity": 1, "concurrency": 1}


@pytest.mark.parametrize("queue_size", [0, 8, 100])
def test_worker_threads_never_fall_below_the_queue_it_promises(monkeypatch, queue_size):
    """The server answers /health and 429s while the queue is full only with queue_size +
    running + 3 WSGI threads: no setting lowers that. DEEPSHIVA_THREADS is the engine's CPU
    threads (its documented meaning), not the server's: it once set both, and 2 left 2 workers."""
    monkeypatch.setenv("DEEPSHIVA_THREADS", "2")
    floor = queue_size + 1 + 3
    config = load_config(["--queue-size", str(queue_size), "--model", "none"])
    assert config.worker_threads == floor and config.cpu_threads == 2
    config = load_config(["--queue-size", str(queue_size), "--http-threads", "2"])
    assert config.worker_threads == floor
    monkeypatch.setenv("DEEPSHIVA_HTTP_THREADS", "1")
    assert load_config(["--queue-size", str(queue_size)]).worker_threads == floor
    config = load_config(["--queue-size", str(queue_size), "--http-threads", str(floor + 10)])
    assert config.worker_threads == floor + 10
    upstream = ["--backend", "openai", "--upstream", "http://127.0.0.1:9", "--concurrency", "4"]
    config = load_config([*upstream, "--queue-size", str(queue_size), "--http-threads", "2"])
    assert config.worker_threads == queue_size + 4 + 3


def test_cpu_threads_setting_reaches_the_engine(tiny_model_dir, monkeypatch):
    from server.app import default_factory

    monkeypatch.delenv("DEEPSHIVA_THREADS", raising=False)
    config = load_config(["--cpu-threads", "2", "--model", "none"])
    assert config.cpu_threads == 2 and config.http_threads == 0
    import torch

    from core.devices import use_cpu_threads

    before = torch.get_num_threads()
    try:
        assert default_factory(config)(str(tiny_model_dir)).info()["cpu_threads"] == 2
    finally:
        use_cpu_threads(before)  # the count is the process's: leave it as the other tests had it
    with pytest.raises(ValidationError, match="cpu_threads"):
        load_config(["--cpu-threads", "0"])


def test_decode_weights_setting_reaches_the_engine_and_bad_values_are_named(
    tiny_model_dir, monkeypatch, capsys
):
    from server.app import default_factory

    assert load_config(["--model", "none"]).decode_weights == "auto"
    config = load_config(["--decode-weights", "fp32", "--model", "none"])
    assert default_factory(config)(str(tiny_model_dir)).info()["decode_weights"] == "fp32"
    monkeypatch.setenv("DEEPSHIVA_DECODE_WEIGHTS", "int8")
    assert load_config(["--model", "none"]).decode_weights == "int8"
    with pytest.raises(SystemExit):
        load_config(["--decode-weights", "fp8"])
    assert "invalid choice: 'fp8'" in capsys.readouterr().err
    monkeypatch.setenv("DEEPSHIVA_DECODE_WEIGHTS", "fp8")
    with pytest.raises(ValidationError, match="decode_weights"):
        load_config(["--model", "none"])


def test_fim_order_setting_reaches_the_engine_and_bad_values_are_named(tiny_model_dir, monkeypatch):
    from server.app import default_factory

    engine = default_factory(load_config(["--fim-order", "spm", "--model", "none"]))(
        str(tiny_model_dir)
    )
    assert engine.info()["fim_order"] == "spm"
    monkeypatch.setenv("DEEPSHIVA_FIM_ORDER", "sideways")
    with pytest.raises(ValidationError, match="fim_order"):
        load_config(["--model", "none"])
