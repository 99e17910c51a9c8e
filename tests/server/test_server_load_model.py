"""POST /load_model: success, every failure, and safety under traffic (real engines, real files)."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from server_helpers import make_config, running, wait_idle

from server import create_app


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path):
    """A second, distinct directory holding the tiny model."""
    return shutil.copytree(tiny_model_dir, tmp_path / "second-model")


@pytest.fixture
def broken_model(tiny_model_dir, tmp_path):
    """The tiny model with its weights file overwritten by garbage."""
    path = shutil.copytree(tiny_model_dir, tmp_path / "broken-model")
    (path / "model.safetensors").write_bytes(b"not a safetensors file" * 10)
    return path


def _status(client) -> dict:
    return client.get("/model_status").get_json()


def test_load_then_generate(tiny_model_dir):
    client = create_app(make_config()).test_client()
    response = client.post("/load_model", json={"model_name": str(tiny_model_dir)})
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "success"
    assert body["message"] == f"Model {tiny_model_dir} loaded successfully" and body["load_ms"] > 0
    assert _status(client)["model_name"] == str(tiny_model_dir)
    assert client.post("/generate", json={"prompt": "x", "max_length": 2}).status_code == 200


def test_status_names_the_weights_decode_reads(tiny_model_dir, shipped_model_dir, monkeypatch):
    """The shipped model is saved in bf16 and decodes from bf16 copies; the tiny test model is
    fp32 and, on a CPU without native bf16 (named as a server is told it), decodes in fp32."""
    from core import compact_weights

    monkeypatch.setenv("DEEPSHIVA_CPU", "avx2")
    client = create_app(make_config()).test_client()
    assert _status(client)["decode_weights"] is None
    assert client.post("/load_model", json={"model_name": str(tiny_model_dir)}).status_code == 200
    assert _status(client)["decode_weights"] == "fp32"
    assert (
        client.post("/load_model", json={"model_name": str(shipped_model_dir)}).status_code == 200
    )
    assert _status(client)["decode_weights"] == ("bf16" if compact_weights.available() else "fp32")
    status = _status(client)  # which path runs, and why, are shown too
    assert status["backend"] == "lean-llama" and status["decode_path"] == "numpy" and status["cpu"]
    assert status["path"]["summary"].startswith("prefill: torch fp32") and status["path"]["reasons"]
    # With native bf16 too the fp32 checkpoint stays fp32, and the status says why.
    monkeypatch.setenv("DEEPSHIVA_CPU", "native-bf16")
    assert client.post("/load_model", json={"model_name": str(tiny_model_dir)}).status_code == 200
    status = _status(client)
    assert status["decode_weights"] == "fp32" and status["cpu"] == "native bf16"
    assert any("the checkpoint is fp32" in reason for reason in status["path"]["reasons"])


def test_default_model_name_is_the_shipped_model(engine, monkeypatch):
    """An empty body loads the default model (the factory is a spy that records the name and then
    builds the real engine on the tiny model, since the shipped weights may not be present)."""
    names = []

    def factory(name):
        names.append(name)
        return engine

    client = create_app(make_config(), engine_factory=factory).test_client()
    assert client.post("/load_model").status_code == 200
    assert client.post("/load_model", json={}).status_code == 200
    assert names == ["deepshiva/tiny-python"] * 2


def test_failed_loads_leave_the_previous_model_serving(
    engine, tiny_model_dir, broken_model, tmp_path
):
    client = create_app(make_config(), engine=engine).test_client()
    cases = [
        ({"model_name": str(tmp_path / "missing")}, 404, "not found"),
        ({"model_name": "no-such-org/no-such-model"}, 404, "not found"),
        ({"model_name": str(broken_model)}, 422, "could not be loaded"),
        ({"model_name": ""}, 400, "model_name"),
        ({"model_name": 5}, 400, "model_name"),
    ]
    for body, status, words in cases:
        response = client.post("/load_model", json=body)
        assert response.status_code == status, (body, response.get_json())
        assert response.get_json()["status"] == "error" and words in response.get_json()["message"]
        now = _status(client)
        assert now["model_loaded"] is True and now["model_name"] == str(tiny_model_dir)
        assert now["state"] == "ready"
        assert client.post("/generate", json={"prompt": "x", "max_length": 2}).status_code == 200
    assert "broken-model" in _status(client)["last_load_error"]  # the 400s never reached a load


def test_out_of_memory_while_loading(engine, tiny_model_dir):
    """Out of memory cannot be provoked safely here: the factory raises the engine's OutOfMemory."""
    from core.errors import OutOfMemory

    def factory(name):
        raise OutOfMemory(f"out of memory while loading {name!r}: tried to allocate 40 GiB")

    client = create_app(make_config(), engine=engine, engine_factory=factory).test_client()
    response = client.post("/load_model", json={"model_name": "huge/model"})
    assert response.status_code == 507 and "Out of memory" in response.get_json()["message"]
    status = _status(client)
    assert status["model_name"] == str(tiny_model_dir) and "huge/model" in status["last_load_error"]
    assert client.post("/generate", json={"prompt": "x", "max_length": 2}).status_code == 200


def test_allow_list(engine, tiny_model_dir, model_copy):
    from core import OptimizedLLM

    config = make_config(allowed_models=[str(tiny_model_dir)])
    client = create_app(config, engine=engine, engine_factory=OptimizedLLM).test_client()
    refused = client.post("/load_model", json={"model_name": str(model_copy)})
    assert refused.status_code == 403 and "allow-list" in refused.get_json()["message"]
    assert client.post("/load_model", json={"model_name": str(tiny_model_dir)}).status_code == 200


def test_loading_state_is_reported_while_the_old_model_serves(engine, tiny_model_dir, model_copy):
    """The factory waits on an event before building the real engine, so the test can look at
    /model_status and generate while the load is in progress."""
    from core import OptimizedLLM

    release = threading.Event()

    def slow_factory(name):
        assert release.wait(10)
        return OptimizedLLM(name)

    app = create_app(make_config(), engine=engine, engine_factory=slow_factory)
    with running(app) as url, ThreadPoolExecutor(1) as pool:
        load = pool.submit(
            httpx.post, url + "/load_model", json={"model_name": str(model_copy)}, timeout=30
        )
        deadline = time.monotonic() + 5
        while httpx.get(url + "/model_status").json()["state"] != "loading":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status = httpx.get(url + "/model_status").json()
        assert status["loading_model_name"] == str(model_copy)
        assert status["model_loaded"] is True and status["model_name"] == str(tiny_model_dir)
        assert httpx.get(url + "/health").json()["state"] == "loading"
        served = httpx.post(url + "/generate", json={"prompt": "x", "max_length": 2}, timeout=30)
        assert served.status_code == 200 and served.json()["model_name"] == str(tiny_model_dir)
        release.set()
        assert load.result().status_code == 200
        status = httpx.get(url + "/model_status").json()
        assert status["state"] == "ready" and status["model_name"] == str(model_copy)


def test_concurrent_loads_are_serialized(tiny_model_dir, model_copy):
    """Two loads at once: the factory (the real engine, wrapped to count how many builds overlap)
    never runs twice at the same time, both succeed, and the status names the last one loaded."""
    from core import OptimizedLLM

    active, peak, lock = [0], [0], threading.Lock()

    def counting_factory(name):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.2)
            return OptimizedLLM(name)
        finally:
            with lock:
                active[0] -= 1

    app = create_app(make_config(), engine_factory=counting_factory)
    client_a, client_b = app.test_client(), app.test_client()
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(client_a.post, "/load_model", json={"model_name": str(tiny_model_dir)})
        b = pool.submit(client_b.post, "/load_model", json={"model_name": str(model_copy)})
        assert a.result().status_code == 200 and b.result().status_code == 200
    assert peak[0] == 1
    state = app.extensions["deepshiva"]
    assert state.manager.loads == 2
    assert state.manager.status()["model_name"] in (str(tiny_model_dir), str(model_copy))
    assert (
        app.test_client().post("/generate", json={"prompt": "x", "max_length": 2}).status_code
        == 200
    )


def test_load_under_traffic(engine, tiny_model_dir, model_copy, broken_model):
    """Clients generate continuously while models are swapped and bad loads fail: every request
    gets a complete answer, and /model_status is truthful after each load."""
    from core import OptimizedLLM

    app = create_app(make_config(queue_size=8), engine=engine, engine_factory=OptimizedLLM)
    stop = threading.Event()
    outcomes: list[tuple[int, str]] = []

    with running(app) as url:

        def traffic(i: int):
            with httpx.Client(base_url=url, timeout=60) as session:
                n = 0
                while not stop.is_set():
                    n += 1
                    path = "/stream" if n % 2 else "/generate"
                    response = session.post(path, json={"prompt": f"v{i}_{n} = ", "max_length": 6})
                    if path == "/stream" and response.status_code == 200:
                        last = response.text.rstrip("\n").split("\n\n")[-1]
                        outcomes.append((200, "done" if last.startswith("event: done") else last))
                    else:
                        outcomes.append((response.status_code, response.json()["status"]))

        with ThreadPoolExecutor(3) as pool:
            workers = [pool.submit(traffic, i) for i in range(3)]
            time.sleep(0.3)
            for name, status, expected_model in [
                (str(model_copy), 200, str(model_copy)),
                (str(broken_model), 422, str(model_copy)),
                (str(tiny_model_dir), 200, str(tiny_model_dir)),
                ("/nonexistent/dir", 404, str(tiny_model_dir)),
            ]:
                response = httpx.post(url + "/load_model", json={"model_name": name}, timeout=60)
                assert response.status_code == status, response.text
                now = httpx.get(url + "/model_status").json()
                assert now["model_name"] == expected_model and now["model_loaded"] is True
                time.sleep(0.2)
            stop.set()
            for worker in workers:
                worker.result()
        wait_idle(app)
    assert len(outcomes) >= 6
    assert all(outcome in ((200, "success"), (200, "done")) for outcome in outcomes), outcomes


def test_first_load_has_no_window_without_a_model(engine, monkeypatch):
    """The manager once cleared "loading" and collected garbage before swapping the engine in: a
    request in that window heard "No model is loaded ... POST /load_model first" (6 starts in 8)
    and /health said not_loaded. Every moment of a load, including its garbage collections
    (where the probe looks), must read "loading" or "ready"."""
    from types import SimpleNamespace

    from server import model_manager

    manager = model_manager.ModelManager(lambda name: engine)
    seen = []

    def probe():
        try:
            manager.engine()
            seen.append((manager.state, "served"))
        except model_manager.ModelNotLoaded as exc:
            seen.append((manager.state, type(exc).__name__))

    monkeypatch.setattr(model_manager, "gc", SimpleNamespace(collect=probe))
    manager.load("first")
    probe()
    assert seen and set(seen) <= {("loading", "ModelStillLoading"), ("ready", "served")}, seen


def test_health_is_503_while_the_first_model_loads(engine):
    """A readiness probe sees a loading server (as llama.cpp and TGI answer); once a model serves,
    a later /load_model keeps /health at 200 since requests are still served."""
    release = threading.Event()

    def slow_factory(name):
        assert release.wait(10)
        return engine

    app = create_app(make_config(), engine_factory=slow_factory)
    client = app.test_client()
    assert client.get("/health").get_json() == {
        "status": "ok",
        "model_loaded": False,
        "state": "not_loaded",
    }
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(app.extensions["deepshiva"].manager.load, "first")
        deadline = time.monotonic() + 5
        while app.extensions["deepshiva"].manager.state != "loading":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        health = client.get("/health")
        assert health.status_code == 503 and health.headers["Retry-After"]
        body = health.get_json()
        assert (
            body["status"] == "error"
            and "loading" in body["message"]
            and "first" in body["message"]
        )
        release.set()
        load.result()
    assert client.get("/health").get_json() == {
        "status": "ok",
        "model_loaded": True,
        "state": "ready",
    }
    release.clear()
    with ThreadPoolExecutor(1) as pool:
        swap = pool.submit(app.extensions["deepshiva"].manager.load, "second")
        while app.extensions["deepshiva"].manager.state != "loading":
            time.sleep(0.01)
        assert client.get("/health").get_json() == {
            "status": "ok",
            "model_loaded": True,
            "state": "loading",
        }
        release.set()
        swap.result()


def test_not_found_does_not_say_which_paths_exist(engine, tmp_path):
    """Without an allow-list, /load_model's 404 once told an existing directory ("model directory
    /root has no config.json") from a missing one: a map of the disk for anyone who can reach the
    port. Every not-found now reads the same, here and in /model_status; the detail goes to the
    server log only."""
    (tmp_path / "a-file").write_text("x")
    client = create_app(make_config(), engine=engine).test_client()
    names = [
        str(tmp_path),
        str(tmp_path / "missing"),
        str(tmp_path / "a-file"),
        "~",
        "/",
        "/etc/passwd",
        "/no/such/dir",
        ".",
        "no-such-org/no-such-model",
    ]
    messages, errors = set(), set()
    for name in names:
        response = client.post("/load_model", json={"model_name": name})
        assert response.status_code == 404, (name, response.get_json())
        messages.add(response.get_json()["message"].replace(repr(name), "NAME"))
        errors.add(
            _status(client)["last_load_error"].replace(repr(name), "NAME").removeprefix(f"{name}: ")
        )
    assert len(messages) == 1 and len(errors) == 1, (messages, errors)
    assert "config.json" in messages.pop()  # it still says what a model directory needs
