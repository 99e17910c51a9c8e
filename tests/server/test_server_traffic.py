"""Under load and faults, on real waitress and the real engine: disconnects, the queue, many clients.

Generation stops are measured with the engine's own decode-step counter (``OptimizedLLM.decode_steps``).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from server_helpers import make_config, running, wait_idle

from server import create_app

LONG = {"prompt": "def long():\n", "max_length": 900, "seed": 11, "temperature": 1.0}


@pytest.fixture(scope="module")
def engine(endless_model_dir):
    """The engine of these tests runs a model that cannot end its text: a long /stream holds the
    model for its 900 tokens on any CPU (a seed picked for a model that can end ended early once
    the CPU's rounding changed, and the queue tests then had nothing to queue behind)."""
    from core import OptimizedLLM

    llm = OptimizedLLM(str(endless_model_dir))
    llm.complete("def warm():\n", max_length=2, temperature=0)  # first call pays lazy init
    return llm


def _read_events(lines, count: int) -> list[dict]:
    """Read ``count`` data events from a live ``iter_lines()`` iterator.

    Keep the iterator alive while the stream should stay open: when httpx's line iterator is
    dropped unfinished, httpcore closes the connection (which the server sees as a hang-up).
    """
    events = []
    for line in lines:
        if line.startswith("data: "):
            events.append(json.loads(line[6:]))
            if len(events) == count:
                break
    return events


class _Holder:
    """A long /stream that holds the model until closed (its first event already read). With
    ``realistic_steps`` its 900 tokens take 18 s; the tiny model alone writes them in 0.4 s."""

    def __init__(self, session: httpx.Client):
        self._cm = session.stream("POST", "/stream", json=LONG)
        self.response = self._cm.__enter__()
        assert self.response.status_code == 200
        self.lines = self.response.iter_lines()
        assert _read_events(self.lines, 1)

    def close(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = None


@pytest.fixture
def realistic_steps(engine, monkeypatch):
    """Make each decode step of the real engine last 20 ms more, as a real-size model's step does
    (the 3B model takes ~100 ms here). The tiny model's ~4 ms steps are shorter than a scheduling
    hiccup on a busy 2-core machine, which would make 'steps after the hang-up' measure the OS."""
    real = engine.runner.decode_one_token

    def step(token_id):
        time.sleep(0.02)
        return real(token_id)

    monkeypatch.setattr(engine.runner, "decode_one_token", step)


def test_stream_disconnect_stops_generation_within_a_decode_step(
    app, live, engine, realistic_steps
):
    with httpx.Client(base_url=live, timeout=30) as session:
        with session.stream("POST", "/stream", json=LONG) as response:
            lines = response.iter_lines()
            assert len(_read_events(lines, 3)) == 3
            del lines  # httpcore closes the connection here: the client hangs up mid-stream
            steps_at_close = engine.decode_steps  # (the server runs ahead of the reader until then)
        # leaving the block closes the unfinished response, and so the connection
    wait_idle(app)
    after_close = engine.decode_steps - steps_at_close
    record = app.extensions["deepshiva"].recent[-1]
    assert record["path"] == "/stream" and record["finish_reason"] == "cancelled"
    # The server stopped at once: no step after it noticed the hang-up beyond the one in flight,
    # and from the client's close at most that step plus one before waitress's loop read the EOF.
    assert record["steps_after_disconnect"] is not None and record["steps_after_disconnect"] <= 1, (
        record
    )
    assert after_close <= 2, (after_close, record)
    assert record["decode_steps"] < 100  # far from the 900 asked for


def test_generate_disconnect_stops_generation(app, live, engine, realistic_steps):
    """A client that gives up on a non-streamed /generate also stops the model at the next step."""
    with httpx.Client(base_url=live, timeout=0.5) as session:
        with pytest.raises(httpx.ReadTimeout):
            session.post("/generate", json=LONG)
        steps_at_close = engine.decode_steps
    wait_idle(app)
    record = app.extensions["deepshiva"].recent[-1]
    assert record["path"] == "/generate" and record["client_left"] is True
    assert record["finish_reason"] == "cancelled" and record["completion_tokens"] < 100
    # the step in flight when the client left, and at most one more before the server noticed
    assert engine.decode_steps - steps_at_close <= 2


def test_queued_request_of_a_vanished_client_never_runs(app, live, realistic_steps):
    state = app.extensions["deepshiva"]
    with httpx.Client(base_url=live, timeout=30) as holder:
        stream = _Holder(holder)
        try:
            with httpx.Client(base_url=live, timeout=0.4) as quitter:
                with pytest.raises(httpx.ReadTimeout):
                    quitter.post("/generate", json={"prompt": "never", "max_length": 5})
            deadline = time.monotonic() + 3
            while state.queue.snapshot()["waiting"] and time.monotonic() < deadline:
                time.sleep(0.02)
            assert state.queue.snapshot() == {
                "running": 1,
                "waiting": 0,
                "capacity": 4,
                "concurrency": 1,
            }
            assert state.queue.abandoned == 1
        finally:
            stream.close()
    wait_idle(app)
    assert [r["path"] for r in state.recent] == ["/stream"]  # the /generate never reached the model


def test_full_queue_answers_429(engine, realistic_steps):
    app = create_app(make_config(queue_size=1), engine=engine)
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as session:
        stream = _Holder(session)
        try:
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(
                    httpx.post, url + "/generate", json={"prompt": "x", "max_length": 3}, timeout=30
                )
                deadline = time.monotonic() + 3
                while app.extensions["deepshiva"].queue.snapshot()["waiting"] < 1:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                rejected = httpx.post(url + "/generate", json={"prompt": "x", "max_length": 3})
                assert rejected.status_code == 429
                assert rejected.json()["status"] == "error" and "busy" in rejected.json()["message"]
                assert rejected.headers["Retry-After"] == "1"
                assert httpx.post(url + "/stream", json={"prompt": "x"}).status_code == 429
                # /health and /model_status are never stuck behind the queue
                assert httpx.get(url + "/health", timeout=2).status_code == 200
                assert httpx.get(url + "/model_status", timeout=2).json()["queue"]["waiting"] == 1
                stream.close()
                assert (
                    waiting.result().status_code == 200
                )  # the queued one runs once the model is free
        finally:
            stream.close()
        metrics = httpx.get(url + "/metrics").text
        assert (
            'deepshiva_requests_total{method="POST",path="/generate",status="429"} 1.0' in metrics
        )
        assert "deepshiva_queue_rejected_requests 2.0" in metrics


def test_many_concurrent_clients_each_get_an_answer_or_a_clear_error(engine):
    app = create_app(make_config(queue_size=3), engine=engine)
    with running(app) as url:

        def one(i: int):
            path = "/stream" if i % 2 else "/generate"
            response = httpx.post(
                url + path, json={"prompt": f"x{i} = ", "max_length": 4, "seed": i}, timeout=60
            )
            return path, response

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one, range(12)))
        statuses = [r.status_code for _, r in results]
        assert set(statuses) <= {200, 429} and statuses.count(200) >= 4, statuses
        for path, response in results:
            if response.status_code == 429:
                assert response.json()["status"] == "error"
            elif path == "/generate":
                assert response.json()["status"] == "success"
            else:
                assert response.text.rstrip("\n").split("\n\n")[-1].startswith("event: done")
        wait_idle(app)
        assert httpx.get(url + "/health").json()["model_loaded"] is True
