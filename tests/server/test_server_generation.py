"""/generate, /stream, /model_status and /health on the real engine: the core shapes of docs/API.md plus additions."""

from __future__ import annotations


import json
import time

import httpx
import sseclient
from httpx_sse import connect_sse

from server import sse

PROMPT = "def add(a, b):\n"


def test_generate_spec_shape_and_additions(client):
    body = client.post("/generate", json={"prompt": PROMPT, "max_length": 6, "seed": 3}).get_json()
    assert body["status"] == "success" and isinstance(body["response"], str)
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 7
    assert usage["total_ms"] > 0 and usage["queue_ms"] >= 0
    assert body["finish_reason"] in ("stop", "length")
    assert body["truncated"] is False


def test_defaults_apply_when_only_prompt_given(client, engine, monkeypatch):
    """The documented defaults (max_length 512, temperature 0.7) reach the engine."""
    seen = {}
    real = engine.complete

    def spy(prompt, **kwargs):
        seen.update(kwargs)
        kwargs["max_length"] = 2  # keep the test fast; the default was recorded above
        return real(prompt, **kwargs)

    monkeypatch.setattr(engine, "complete", spy)
    assert client.post("/generate", json={"prompt": PROMPT}).status_code == 200
    assert seen["max_length"] == 512 and seen["temperature"] == 0.7
    assert seen["top_p"] == 0.9 and seen["top_k"] == 50 and seen["repetition_penalty"] == 1.1


def test_seed_makes_sampling_reproducible(client):
    request = {"prompt": PROMPT, "max_length": 8, "seed": 42, "temperature": 1.0}
    first = client.post("/generate", json=request).get_json()["response"]
    second = client.post("/generate", json=request).get_json()["response"]
    assert first == second


def test_echo_prepends_the_prompt(client):
    request = {"prompt": PROMPT, "max_length": 4, "seed": 1}
    plain = client.post("/generate", json=request).get_json()["response"]
    echoed = client.post("/generate", json={**request, "echo": True}).get_json()["response"]
    assert echoed == PROMPT + plain


def test_stop_sequence_is_cut_from_output(client):
    request = {"prompt": PROMPT, "max_length": 12, "seed": 5, "temperature": 1.0}
    full = client.post("/generate", json=request).get_json()["response"]
    pairs = [
        full[i : i + 2]
        for i in range(1, len(full) - 1)
        if not full[i : i + 2].isspace() and len(full[i : i + 2].strip()) == 2
    ]
    assert pairs, f"pick another seed: {full!r}"
    stop = pairs[len(pairs) // 2]
    body = client.post("/generate", json={**request, "stop": [stop]}).get_json()
    assert stop not in body["response"] and body["finish_reason"] == "stop"
    assert full.startswith(body["response"])


def test_fill_in_the_middle_with_suffix(client):
    body = client.post(
        "/generate", json={"prompt": "x = ", "suffix": "\nprint(x)\n", "max_length": 4}
    ).get_json()
    assert body["status"] == "success" and body["usage"]["prompt_tokens"] > 4


def test_language_python_keeps_the_line_at_a_valid_indentation(client):
    body = {
        "prompt": "x = 1\n",
        "suffix": "\ny = 2\n",
        "max_length": 8,
        "temperature": 0,
        "stop": ["\n"],
        "language": "python",
    }
    text = client.post("/generate", json=body).get_json()["response"]
    assert not text[:1].isspace(), text  # top level, nothing opened: the line cannot be indented
    streamed = client.post("/stream", json=body)
    assert streamed.status_code == 200 and '"error"' not in streamed.get_data(as_text=True)


def test_long_prompt_is_truncated_and_says_so(client, engine):
    prompt = "a = 1\n" * (engine.context_length * 2)
    body = client.post("/generate", json={"prompt": prompt, "max_length": 2}).get_json()
    assert body["truncated"] is True and body["usage"]["prompt_tokens"] <= engine.context_length


def test_model_status_and_health(client, tiny_model_dir, engine):
    status = client.get("/model_status").get_json()
    assert status["status"] == "success" and status["model_loaded"] is True
    assert status["model_name"] == str(tiny_model_dir) and status["device"] == "cpu"
    assert status["dtype"] in ("float32", "bfloat16") and status["quantization"] is None
    assert (
        status["context_length"] == engine.context_length and status["fim_dialect"] == "starcoder"
    )
    assert status["state"] == "ready" and status["loading_model_name"] is None
    assert status["queue"] == {"running": 0, "waiting": 0, "capacity": 4, "concurrency": 1}
    assert client.get("/health").get_json() == {
        "status": "ok",
        "model_loaded": True,
        "state": "ready",
    }


# ---- /stream ----


def parse_sse(raw: bytes) -> list[tuple[str, dict]]:
    """Parse an SSE body by hand: events separated by a blank line, one JSON data line each."""
    events = []
    assert raw.endswith(b"\n\n")
    for block in raw.decode("utf-8").split("\n\n")[:-1]:
        name, data_lines = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            else:
                assert field == "data", f"unexpected line {line!r}"
                data_lines.append(value)
        assert len(data_lines) == 1, block
        events.append((name, json.loads(data_lines[0])))
    return events


def test_event_framing_keeps_multiline_text_in_one_data_line():
    text = "line one\nline two\r\n\n\rend: data: x"
    raw = sse.event({"text": text})
    assert raw.count(b"\n") == 2 and raw.startswith(b"data: {") and raw.endswith(b"}\n\n")
    assert parse_sse(raw) == [("message", {"text": text})]
    named = sse.event({"a": 1}, name="done")
    assert named == b'event: done\ndata: {"a":1}\n\n'


def _stream_with_newlines(http: httpx.Client) -> tuple[httpx.Response, bytes]:
    """A real stream whose chunks include a newline (the tiny model writes them often)."""
    for seed in range(20):
        response = http.post(
            "/stream",
            json={
                "prompt": "class A:\n    def f(self):\n",
                "max_length": 24,
                "seed": seed,
                "temperature": 1.0,
            },
        )
        if any("\n" in data.get("text", "") for _, data in parse_sse(response.content)):
            return response, response.content
    raise AssertionError("no seed produced a chunk containing a newline")


def test_stream_raw_bytes_framing_with_multiline_chunks(http):
    response, raw = _stream_with_newlines(http)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    events = parse_sse(raw)
    *chunks, (last_name, done) = events
    assert last_name == "done" and all(name == "message" for name, _ in chunks)
    text = "".join(data["text"] for _, data in chunks)
    assert "\n" in text and done["response"] == text
    assert done["status"] == "success" and done["usage"]["completion_tokens"] > 0
    assert done["finish_reason"] in ("stop", "length")


def test_stream_with_httpx_sse(http):
    request = {"prompt": PROMPT, "max_length": 10, "seed": 7}
    with connect_sse(http, "POST", "/stream", json=request) as source:
        events = [(e.event, json.loads(e.data)) for e in source.iter_sse()]
    chunks = [d["text"] for name, d in events if name == "message"]
    assert events[-1][0] == "done" and events[-1][1]["response"] == "".join(chunks)
    # The same request through /generate gives the same text (same seed).
    assert http.post("/generate", json=request).json()["response"] == "".join(chunks)


def test_stream_with_sseclient_py(http):
    with http.stream(
        "POST", "/stream", json={"prompt": PROMPT, "max_length": 10, "seed": 8}
    ) as response:
        events = list(sseclient.SSEClient(response.iter_bytes()).events())
    assert [e.event for e in events][-1] == "done"
    chunks = [json.loads(e.data)["text"] for e in events[:-1]]
    assert all(e.event == "message" for e in events[:-1])
    assert json.loads(events[-1].data)["response"] == "".join(chunks)


def test_stream_events_arrive_while_generating(http):
    """Waitress must not buffer the stream: the first event arrives long before the last."""
    times = []
    with connect_sse(
        http, "POST", "/stream", json={"prompt": PROMPT, "max_length": 40, "seed": 2}
    ) as source:
        start = time.monotonic()
        for event in source.iter_sse():
            times.append((event.event, time.monotonic() - start))
    assert times[-1][0] == "done" and len(times) > 5
    first, last = times[0][1], times[-1][1]
    assert first < last / 3, times  # buffered output would arrive all at once, at the end


def test_stream_error_event_mid_stream(app, http, engine, monkeypatch):
    """A failure after the stream began ends it with an error event (fault injected: the real engine's
    decode step raises after a few tokens, as a device error would)."""
    runner = engine.runner
    real = runner.decode_one_token
    calls = {"n": 0}

    def failing(token_id):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("device lost")
        return real(token_id)

    monkeypatch.setattr(runner, "decode_one_token", failing)
    response = http.post("/stream", json={"prompt": PROMPT, "max_length": 20, "seed": 1})
    events = parse_sse(response.content)
    name, data = events[-1]
    assert name == "error" and data["status"] == "error" and data["code"] == 500
    assert "RuntimeError" in data["message"]
    assert all(n == "message" for n, _ in events[:-1])
    monkeypatch.setattr(runner, "decode_one_token", real)
    assert http.post("/generate", json={"prompt": PROMPT, "max_length": 2}).status_code == 200


def test_stream_out_of_memory_mid_stream(http, engine, monkeypatch):
    """Out of memory mid-stream (injected: it cannot be provoked safely here) is an error event with
    code 507 and the server keeps serving."""
    import torch

    runner = engine.runner
    real = runner.decode_one_token

    def oom(token_id):
        raise torch.OutOfMemoryError("out of memory")

    monkeypatch.setattr(runner, "decode_one_token", oom)
    events = parse_sse(http.post("/stream", json={"prompt": PROMPT, "max_length": 5}).content)
    assert events[-1][0] == "error" and events[-1][1]["code"] == 507
    assert "Out of memory" in events[-1][1]["message"]
    monkeypatch.setattr(runner, "decode_one_token", real)
    assert http.post("/generate", json={"prompt": PROMPT, "max_length": 2}).status_code == 200
