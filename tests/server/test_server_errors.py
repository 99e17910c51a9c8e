"""Every error of the API answers the documented shape (docs/API.md) with the documented status code."""

from __future__ import annotations

import json

import pytest

from server import create_app

from server_helpers import make_config


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "error" and set(body) == {"status", "message"}
    for word in words:
        assert word in body["message"], body["message"]


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("max_length", 0, ["max_length", "1 to 4096", "got 0"]),
        ("max_length", -5, ["max_length", "got -5"]),
        ("max_length", 5000, ["max_length", "1 to 4096"]),
        ("max_length", 1.5, ["max_length", "integer"]),
        ("max_length", "12", ["max_length", "integer"]),
        ("max_length", True, ["max_length"]),
        ("temperature", -0.1, ["temperature", "0 to 2"]),
        ("temperature", 2.5, ["temperature", "0 to 2"]),
        ("temperature", "hot", ["temperature"]),
        ("top_p", 0, ["top_p", "greater than 0 and at most 1"]),
        ("top_p", 1.01, ["top_p"]),
        ("top_k", -1, ["top_k", ">= 0"]),
        ("repetition_penalty", 0, ["repetition_penalty"]),
        ("stop", [""], ["stop", "non-empty"]),
        ("stop", [1, 2], ["stop"]),
        ("stop", ["x"] * 17, ["stop", "16"]),
        ("suffix", 7, ["suffix"]),
        ("seed", -1, ["seed"]),
        ("seed", "x", ["seed"]),
        ("echo", "yes", ["echo", "boolean"]),
        ("language", 3, ["language", "python"]),
        ("language", "", ["language"]),
    ],
)
@pytest.mark.parametrize("path", ["/generate", "/stream"])
def test_bad_parameter_is_400_naming_field_and_range(client, path, field, value, words):
    assert_error(client.post(path, json={"prompt": "x", field: value}), 400, *words)


@pytest.mark.parametrize("prompt", [None, 5, ["a"], {"a": 1}])
def test_prompt_must_be_a_string(client, prompt):
    assert_error(client.post("/generate", json={"prompt": prompt}), 400, "prompt", "string")


def test_missing_prompt(client):
    assert_error(client.post("/generate", json={"max_length": 5}), 400, "Missing", "prompt")


@pytest.mark.parametrize("path", ["/generate", "/stream", "/load_model"])
def test_invalid_json_and_non_object(client, path):
    assert_error(
        client.post(path, data="{not json", content_type="application/json"), 400, "Invalid JSON"
    )
    assert_error(client.post(path, json=[1, 2]), 400, "JSON object")
    assert_error(client.post(path, data=b"\xff\xfe", content_type="application/json"), 400, "JSON")


def test_fim_on_model_without_fim_tokens_is_400(tiny_model_dir_no_fim):
    """The engine's own validation (FIMNotSupported, an InvalidParameter) also comes back as 400."""
    from core import OptimizedLLM

    app = create_app(make_config(), engine=OptimizedLLM(str(tiny_model_dir_no_fim)))
    response = app.test_client().post(
        "/generate", json={"prompt": "a = ", "suffix": "\n", "max_length": 2}
    )
    assert_error(response, 400, "suffix")


def test_oversized_body_is_413(engine):
    app = create_app(make_config(max_body_bytes=2048), engine=engine)
    response = app.test_client().post("/generate", json={"prompt": "x" * 5000})
    assert_error(response, 413, "2048")


def test_generate_before_any_model_is_503(tiny_model_dir):
    client = create_app(make_config()).test_client()
    for path in ("/generate", "/stream"):
        response = client.post(path, json={"prompt": "x"})
        assert_error(response, 503, "No model is loaded", "/load_model")
        assert response.headers["Retry-After"]
    status = client.get("/model_status").get_json()
    assert status["model_loaded"] is False and status["state"] == "not_loaded"


def test_generate_while_the_first_model_loads_says_so(tiny_model_dir):
    """scripts/serve answers at once and loads in the background: an early request is told to
    retry, not to POST /load_model (which is already happening)."""
    import threading

    from core import OptimizedLLM

    release = threading.Event()

    def slow_factory(name):
        release.wait(30)
        return OptimizedLLM(str(tiny_model_dir))

    app = create_app(make_config(), engine_factory=slow_factory)
    loader = threading.Thread(
        target=app.extensions["deepshiva"].manager.load, args=("tiny-python",)
    )
    loader.start()
    client = app.test_client()
    try:
        while client.get("/model_status").get_json()["state"] != "loading":
            pass
        response = client.post("/generate", json={"prompt": "x"})
        assert_error(response, 503, "not ready yet", "tiny-python is still loading", "retry")
        assert "/load_model" not in response.get_json()["message"]
        assert response.headers["Retry-After"] == "2"
    finally:
        release.set()
        loader.join()
    assert client.post("/generate", json={"prompt": "x", "max_length": 2}).status_code == 200


def test_cleared_model_is_503(tiny_model_dir):
    from core import OptimizedLLM

    llm = OptimizedLLM(str(tiny_model_dir))
    client = create_app(make_config(), engine=llm).test_client()
    llm.clear_memory()
    assert_error(client.post("/generate", json={"prompt": "x"}), 503, "No model")
    assert client.get("/model_status").get_json()["model_loaded"] is False


def test_unknown_path_and_wrong_method(client):
    assert_error(client.get("/nowhere"), 404)
    response = client.get("/generate")
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_bug_is_500_with_the_error_shape(engine):
    """An unexpected exception inside a view (injected: the engine's complete() is replaced by one
    that raises KeyError) is a 500 in the error shape, without a traceback in the body."""

    class Broken:
        model_name, is_loaded = "broken", True

        def info(self):
            return {"model_name": "broken"}

        def complete(self, *a, **k):
            raise KeyError("boom")

    client = create_app(make_config(), engine=Broken()).test_client()
    assert_error(client.post("/generate", json={"prompt": "x"}), 500, "KeyError", "server log")
    assert client.get("/health").status_code == 200  # and the server still answers


def test_out_of_memory_during_generation_is_clear_and_server_stays_up(tiny_model_dir, monkeypatch):
    """Out of memory cannot be provoked safely on this machine, so the real engine's decode step is
    made to raise torch.OutOfMemoryError; the engine maps it to OutOfMemory, the API to 507."""
    import torch
    from core import OptimizedLLM

    llm = OptimizedLLM(str(tiny_model_dir))
    client = create_app(make_config(), engine=llm).test_client()
    runner = llm.runner
    real = runner.decode_one_token

    def oom(token_id):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(runner, "decode_one_token", oom)
    assert_error(
        client.post("/generate", json={"prompt": "x", "max_length": 5}),
        507,
        "Out of memory",
        "still up",
    )
    monkeypatch.setattr(runner, "decode_one_token", real)
    ok = client.post("/generate", json={"prompt": "x", "max_length": 3})
    assert ok.status_code == 200 and ok.get_json()["status"] == "success"


@pytest.mark.parametrize(
    "field, value",
    [
        ("prompt", "x\ud800"),
        ("prompt", "\udfff def f():"),
        ("suffix", "\ud83d"),
        ("stop", "\udc00"),
        ("stop", ["ok", "a\ud800b"]),
        ("language", "py\ud800"),
    ],
)
@pytest.mark.parametrize("path", ["/generate", "/stream"])
def test_lone_surrogate_is_400_naming_the_field(client, path, field, value):
    """JSON may escape half a UTF-16 pair (``"\\ud800"``); that is no text, and the tokenizer
    raised TypeError on it (a 500)."""
    body = {"prompt": "x", "max_length": 2, field: value}
    raw = json.dumps(body)  # ASCII-escaped: the body carries the lone surrogate as \\ud800
    response = client.post(path, data=raw, content_type="application/json")
    assert_error(response, 400, f"'{field}'", "surrogate")


def test_lone_surrogate_in_model_name_is_400(client):
    response = client.post(
        "/load_model",
        data=json.dumps({"model_name": "org/m\udc80"}),
        content_type="application/json",
    )
    assert_error(response, 400, "'model_name'", "surrogate")


def test_escaped_surrogate_pairs_are_text(client):
    response = client.post(
        "/generate",
        data=json.dumps({"prompt": "# \U0001f600\n", "max_length": 2}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def _post_while_busy(engine, body: dict, path: str = "/generate", queue_size: int = 4):
    """POST ``body`` while another request holds the model (and with ``queue_size=0`` the line
    is full); the answer, or None when it did not come within 10 s (it waited for the model)."""
    import threading

    app = create_app(make_config(queue_size=queue_size), engine=engine)
    slot = app.extensions["deepshiva"].queue.acquire()
    answers = []
    asker = threading.Thread(
        target=lambda: answers.append(app.test_client().post(path, json=body)), daemon=True
    )
    try:
        asker.start()
        asker.join(timeout=10)
    finally:
        slot.release()
        asker.join(timeout=30)
    return answers[0] if answers and not asker.is_alive() else None, answers


@pytest.mark.parametrize("queue_size", [0, 4])
@pytest.mark.parametrize("path", ["/generate", "/stream"])
def test_a_too_long_stop_sequence_is_400_before_waiting_for_the_model(engine, path, queue_size):
    """The 256-character limit of a stop string is checked before the request joins the queue:
    a busy model (a waiting line, or a full one) answers the 400 at once, never a 429 or a wait."""
    response, _ = _post_while_busy(
        engine, {"prompt": "x", "stop": ["ok", "s" * 257]}, path, queue_size
    )
    assert response is not None, "the bad request waited for the model"
    assert_error(response, 400, "'stop'", "at most 256 characters", "257 characters at index 1")
    response, _ = _post_while_busy(engine, {"prompt": "x", "stop": "s" * 256}, path, 0)
    assert response.status_code == 429  # 256 is allowed: that one would have queued


def test_what_the_model_cannot_do_is_400_before_waiting_for_it(engine, tiny_model_dir_no_fim):
    """max_length beyond the model's context length (within the server's limit) and a suffix
    for a model without FIM tokens are refused before the queue too."""
    too_long = {"prompt": "x", "max_length": engine.context_length + 1}
    response, _ = _post_while_busy(engine, too_long)
    assert response is not None, "the bad request waited for the model"
    assert_error(response, 400, "max_length", f"1 to {engine.context_length}", "context length")
    from core import OptimizedLLM

    no_fim = OptimizedLLM(str(tiny_model_dir_no_fim))
    response, _ = _post_while_busy(no_fim, {"prompt": "a = ", "suffix": "\n"})
    assert response is not None, "the bad request waited for the model"
    assert_error(response, 400, "suffix", "fill-in-the-middle")
