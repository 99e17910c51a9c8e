"""End to end with the real vLLM: DeepShiva's API (a deepshiva-server subprocess, --backend openai)
in front of vLLM serving the shipped model (a subprocess from .venv-vllm), no mock anywhere.

The spec's contract must hold unchanged; completions must be the local engine's (greedy parity);
a client that hangs up must stop the generation in vLLM (its /metrics count the abort);
admission lets --concurrency requests through at once and answers 429 beyond the queue.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import time

import httpx
import pytest
from httpx_sse import connect_sse
from live_server import start_live_server
from vllm_server import upstream_server_args

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

PLAIN = "def fibonacci(n):\n    "
PROMPT_CASES = [
    {"prompt": "def fibonacci(n):\n    "},
    {
        "prompt": "import os\n\n\ndef list_python_files(path):\n    return [f for f in os.listdir(path) if f.en"
    },
    {
        "prompt": "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
        "suffix": "\n\n    def pop(self):\n        return self.items.pop()\n",
    },
    {"prompt": "def add(a, b):\n    return a", "suffix": "\n\nprint(add(1, 2))\n"},
    # An editor at a line end: healing regrows the prompt's "\n", which must not meet the stop.
    {
        "prompt": "import os\n\n\ndef list_python_files(path):\n",
        "suffix": "\n\nprint(1)\n",
        "stop": ["\n"],
    },
    {"prompt": "class Point:\n    def __init__(self, x, y):\n        self.x = x\n", "stop": ["\n"]},
    # Python's layout rules, kept inside vLLM: without them the model writes "    else:" here
    # (a block opener with no block below) and leaves a docstring open in the next one.
    {
        "prompt": "def f(x):\n    if x:\n        return 1\n",
        "suffix": "\n    return 2\n",
        "stop": ["\n"],
        "language": "python",
    },
    {
        "prompt": "for i in range(3):\n",
        "suffix": "\nprint(i)\n",
        "stop": ["\n"],
        "language": "python",
    },
]


@pytest.fixture(scope="module")
def front(vllm_upstream):
    """deepshiva-server in front of vLLM."""
    server = start_live_server(
        vllm_upstream.model, args=upstream_server_args(vllm_upstream), timeout=180
    )
    yield server
    server.stop()


def _post(url: str, path: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=120, **kw)


def test_generate_and_stream_keep_the_spec_contract(front):
    body = {"prompt": PLAIN, "max_length": 24, "temperature": 0}
    answer = _post(front.url, "/generate", body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert set(data) >= {"status", "response", "usage", "finish_reason", "truncated", "model_name"}
    assert data["status"] == "success" and data["response"].strip()
    assert data["finish_reason"] in ("stop", "length")
    usage = data["usage"]
    assert 0 < usage["completion_tokens"] <= 24 and usage["prompt_tokens"] > 5
    assert usage["total_ms"] > 0 and usage["time_to_first_token_ms"] is not None

    chunks, done = [], None
    with (
        httpx.Client(timeout=120) as client,
        connect_sse(client, "POST", front.url + "/stream", json=body) as events,
    ):
        assert events.response.headers["content-type"].startswith("text/event-stream")
        for event in events.iter_sse():
            if event.event == "done":
                done = json.loads(event.data)
                break
            assert event.event == "message", event.data
            chunks.append(json.loads(event.data)["text"])
    assert len(chunks) > 1, "the stream arrived in one piece"
    assert "".join(chunks) == data["response"] == done["response"]
    assert done["usage"]["completion_tokens"] == usage["completion_tokens"]


def test_stop_sequences_fill_in_the_middle_and_echo(front):
    stopped = _post(
        front.url,
        "/generate",
        {"prompt": PLAIN, "max_length": 64, "temperature": 0, "stop": ["\n"]},
    ).json()
    assert stopped["finish_reason"] == "stop" and "\n" not in stopped["response"]
    fim = _post(
        front.url, "/generate", {**PROMPT_CASES[2], "max_length": 48, "temperature": 0}
    ).json()
    assert fim["status"] == "success" and fim["response"].strip(), fim
    echoed = _post(
        front.url, "/generate", {"prompt": PLAIN, "max_length": 4, "temperature": 0, "echo": True}
    ).json()
    assert echoed["response"].startswith(PLAIN)


def test_bad_requests_get_the_spec_errors(front):
    bad = _post(front.url, "/generate", {"prompt": PLAIN, "temperature": 5})
    assert (
        bad.status_code == 400
        and bad.json()["status"] == "error"
        and "temperature" in bad.json()["message"]
    )
    too_long = _post(front.url, "/generate", {"prompt": PLAIN, "max_length": 5000})
    assert too_long.status_code == 400


def test_model_status_says_what_the_upstream_serves_and_can_do(front, vllm_upstream):
    status = httpx.get(front.url + "/model_status", timeout=10).json()
    assert status["status"] == "success" and status["model_loaded"] and status["state"] == "ready"
    assert status["model_name"] == vllm_upstream.model
    assert status["context_length"] == 1024 and status["fim_dialect"] == "starcoder"
    upstream = status["upstream"]
    assert upstream["url"] == vllm_upstream.url + "/v1" and upstream["kind"] == "vllm"
    assert upstream["prompt"] == "token ids"
    # DeepShiva's logits processor (scripts/serve-vllm loads it into vLLM) heals and keeps the rules
    assert upstream["token_healing"].startswith("on (DeepShiva's logits processor")
    assert upstream["python_rules"].startswith("on (DeepShiva's logits processor")
    assert status["queue"]["concurrency"] == 16


def test_load_model_selects_among_the_upstream_models_or_says_which_exist(front, vllm_upstream):
    loaded = _post(front.url, "/load_model", {"model_name": vllm_upstream.model})
    assert loaded.status_code == 200 and loaded.json()["model_name"] == vllm_upstream.model
    default = _post(front.url, "/load_model", {})
    assert default.status_code == 200 and default.json()["model_name"] == vllm_upstream.model
    missing = _post(front.url, "/load_model", {"model_name": "bigcode/starcoder2-15b"})
    assert missing.status_code == 404, missing.text
    message = missing.json()["message"]
    assert "bigcode/starcoder2-15b" in message and vllm_upstream.model in message
    still = _post(front.url, "/generate", {"prompt": PLAIN, "max_length": 4, "temperature": 0})
    assert still.status_code == 200  # a failed selection leaves the served model serving


def test_greedy_completions_are_the_local_engines(front, shipped_model_dir):
    """Same prompt layout (FIM, healing), same tokens out: DeepShiva in front of vLLM answers
    what the local engine answers, greedy, for plain and fill-in-the-middle prompts."""
    from core import OptimizedLLM

    local = OptimizedLLM(str(shipped_model_dir))
    for case in PROMPT_CASES:
        params = {"max_length": 32, "temperature": 0.0, "repetition_penalty": 1.0}
        expected = local.complete(
            case["prompt"],
            suffix=case.get("suffix"),
            stop_sequences=case.get("stop"),
            language=case.get("language"),
            **params,
        ).text
        got = _post(
            front.url,
            "/generate",
            {**case, "max_length": 32, "temperature": 0, "repetition_penalty": 1.0},
        ).json()
        assert got["response"] == expected, case
        if case.get("stop"):
            assert expected.strip(), "the case should give a line to compare"


@pytest.fixture(scope="module")
def endless_front(vllm_endless):
    """deepshiva-server in front of vLLM serving the endless tiny model."""
    server = start_live_server(
        vllm_endless.model, args=upstream_server_args(vllm_endless), timeout=180
    )
    yield server
    server.stop()


def test_a_client_that_hangs_up_stops_the_generation_in_vllm(endless_front, vllm_endless):
    """The request cannot end early (the endless model samples no end-of-text: without the
    hang-up it writes all 1000 tokens), so what stops it is the client leaving. vLLM 0.32 counts
    no abort in request_success_total{finished_reason="abort"} for a closed stream (checked
    against vLLM directly), so its /metrics show the abort this way: the request left the running
    batch without finishing (no stop/length counted) and generated a small part of its tokens."""
    vllm = vllm_endless
    deadline = time.monotonic() + 60  # the shared vLLM may still be writing another test's request
    while _vllm_metric(vllm, "vllm:num_requests_running") > 0:
        assert time.monotonic() < deadline, "vLLM stayed busy with earlier requests"
        time.sleep(0.5)
    time.sleep(1.0)  # its counters are refreshed a step or more behind
    finished_before = _vllm_metric(vllm, "vllm:request_success_total")
    tokens_before = _vllm_metric(vllm, "vllm:generation_tokens_total")
    body = {"prompt": "x = [", "max_length": 1000, "temperature": 1.0, "seed": 3}
    host, port = endless_front.url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST /stream HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n".encode()
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        received = b""
        while received.count(b"data:") < 3:
            received += sock.recv(4096)
    # hung up after the first events, with ~1000 tokens still to go
    deadline = time.monotonic() + 30
    while True:  # vLLM's gauges and counters are refreshed a step or more behind its events
        running = _vllm_metric(vllm, "vllm:num_requests_running")
        generated = _vllm_metric(vllm, "vllm:generation_tokens_total") - tokens_before
        time.sleep(0.5)
        if running == 0 and generated == (
            _vllm_metric(vllm, "vllm:generation_tokens_total") - tokens_before
        ):
            break
        assert time.monotonic() < deadline, "the request kept running in vLLM after the hang-up"
    assert _vllm_metric(vllm, "vllm:request_success_total") == finished_before, (
        "it finished, not aborted"
    )
    assert 3 <= generated < 500, generated
    assert float(_prometheus(endless_front.url, "deepshiva_cancelled_generations_total")) >= 1


def test_vllm_on_a_cpu_leaves_the_last_core_to_deepshiva(vllm_endless):
    """scripts/serve-vllm keeps vLLM's processes off the last core: its engine core spins on
    sched_yield() while the worker runs, and on a shared core it starved DeepShiva for the whole
    of a completion (a cancel went unseen until vLLM had finished). On a one-core machine there
    is nothing to leave, and vLLM gets the core."""
    import os

    import psutil

    allowed = sorted(os.sched_getaffinity(0))
    expected = allowed[:-1] if len(allowed) > 1 else allowed
    root = psutil.Process(vllm_endless.process.pid)
    for process in [root, *root.children(recursive=True)]:
        assert sorted(process.cpu_affinity()) == expected, (process.name(), process.cpu_affinity())


def _vllm_metric(vllm, name: str) -> float:
    """The sum of a metric's samples in vLLM's /metrics."""
    return float(_prometheus(vllm.url, name))


def _prometheus(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_admission_lets_the_concurrency_through_and_answers_429_beyond_the_queue(vllm_upstream):
    server = start_live_server(
        vllm_upstream.model,
        args=upstream_server_args(vllm_upstream, "--concurrency", "3", "--queue-size", "2"),
        timeout=180,
    )
    try:
        # ~570 tokens, about 4 s each on a quiet machine: all eight arrive while the first three run
        # (200 tokens ended in a fraction of a second there, before the last ones came).
        body = {
            "prompt": PLAIN,
            "max_length": 900,
            "temperature": 1.0,
            "seed": 1,
            "repetition_penalty": 1.0,
        }
        seen_running = []

        def watch():
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                seen_running.append(
                    httpx.get(server.url + "/model_status", timeout=5).json()["queue"]["running"]
                )
                if max(seen_running) >= 3:
                    return

        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            watcher = pool.submit(watch)
            answers = list(pool.map(lambda _: _post(server.url, "/generate", body), range(8)))
            watcher.result()
        codes = sorted(a.status_code for a in answers)
        # 3 running + 2 waiting are served; the rest of those that arrive while 5 are in are
        # refused (exactly 3 when all eight arrive before the first ends, fewer when one ends early)
        assert codes.count(200) >= 5 and codes.count(429) >= 1 and set(codes) == {200, 429}, codes
        assert all(a.headers.get("Retry-After") for a in answers if a.status_code == 429)
        assert max(seen_running) == 3, seen_running
    finally:
        server.stop()
