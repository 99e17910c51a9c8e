"""POST /generate and POST /stream: admit through the queue, run the engine, answer JSON or SSE.

Everything that can fail before the first token (bad parameters, no model, full queue, a FIM
request to a model without FIM) fails with a proper status code. Once the SSE stream has
started, a failure is an ``error`` event and the stream ends.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from . import sse
from .admission import ClientGone, QueueFull, Slot
from .disconnect import CancelOnDisconnect, on_channel_close
from .errors import ApiError, error_body, from_engine
from .observability import TOKENS_KEY
from .schemas import GenerationRequestBody, parse
from .state import AppState, client_gone, json_body, state

bp = Blueprint("generation", __name__)
log = logging.getLogger("deepshiva.server")

CLIENT_CLOSED = 499  # logged for requests whose client left while queued (nobody reads the answer)


def _parse_request() -> GenerationRequestBody:
    """The request, checked in full before it may wait for the model: its body (a 400 names the
    field), a loaded model (else 503) and what that model can do (its context length, FIM)."""
    app_state = state()
    req = parse(
        GenerationRequestBody, json_body(), max_length_limit=app_state.config.max_length_limit
    )
    engine = app_state.manager.engine()
    check = getattr(engine, "check_request", None)  # engines of tests may have none
    if check is not None:
        check(req.prompt, **req.engine_kwargs())
    return req


def _admit(app_state: AppState, gone) -> Slot:
    """Wait for the model; 429 when the queue is full, 499 (logged) when the client left meanwhile."""
    try:
        return app_state.queue.acquire(gone)
    except QueueFull as exc:
        raise ApiError(
            429,
            f"Server busy: {exc} (limit {app_state.queue.capacity}). Retry shortly.",
            {"Retry-After": "1"},
        ) from None
    except ClientGone:
        raise ApiError(CLIENT_CLOSED, "Client closed the connection while queued.") from None


def _result_body(
    req: GenerationRequestBody, completion: Any, text: str, model_name: str, waited_ms: float
) -> dict:
    return {
        "status": "success",
        "response": (req.prompt + text) if req.echo else text,
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.generated_tokens,
            "time_to_first_token_ms": completion.time_to_first_token_ms,
            "total_ms": completion.total_ms,
            "queue_ms": round(waited_ms, 3),
        },
        "finish_reason": completion.finish_reason,
        "truncated": bool(completion.truncated),
        "model_name": model_name,
    }


@bp.post("/generate")
def generate():
    app_state = state()
    req = _parse_request()
    gone = client_gone()
    slot = _admit(app_state, gone)
    with slot:
        engine = app_state.manager.engine()  # a load may have swapped models while we waited
        cancel = CancelOnDisconnect(gone)
        completion = engine.complete(req.prompt, cancel_event=cancel, **req.engine_kwargs())
    request.environ[TOKENS_KEY] = completion.generated_tokens
    if cancel.client_left:
        app_state.metrics.cancelled.inc()
    _remember(app_state, "/generate", completion, client_left=cancel.client_left)
    return jsonify(
        _result_body(req, completion, completion.text, engine.model_name, slot.waited_ms)
    )


@bp.post("/stream")
def stream():
    app_state = state()
    req = _parse_request()
    gone = client_gone()
    slot = _admit(app_state, gone)
    run = _StreamRun(app_state, req, slot, gone, request.environ)
    try:
        engine = app_state.manager.engine()
        run.start(engine, engine.stream(req.prompt, cancel_event=run.cancel, **req.engine_kwargs()))
    except BaseException:
        slot.release()
        raise
    response = Response(run.events(), mimetype=sse.MIMETYPE, headers=sse.HEADERS)
    response.call_on_close(run.cleanup)  # also when the body is never iterated
    return response


class _StreamRun:
    """One /stream generation: yields SSE events, stops the engine when the client leaves."""

    def __init__(self, app_state, req, slot, gone, environ):
        self.app_state, self.req, self.slot, self.gone, self.environ = (
            app_state,
            req,
            slot,
            gone,
            environ,
        )
        self.cancel = CancelOnDisconnect(gone, self._client_left)
        self._unhook = on_channel_close(environ, self._client_left)
        self.engine = self.chunks = None
        self.sent = 0  # chunks handed to the server so far
        self.first_step = 0
        self.noticed_at = None  # the engine's decode-step counter when the disconnect was noticed
        self._done = False
        self.finished = False  # the engine ran to its own end (length or stop)
        self._lock = threading.Lock()

    def start(self, engine, chunks) -> None:
        self.engine, self.chunks = engine, chunks
        self.first_step = _decode_steps(engine)

    def _client_left(self) -> None:
        if self.noticed_at is None:
            self.noticed_at = _decode_steps(self.engine)
        self.cancel.set()

    def events(self):
        parts: list[str] = []
        try:
            try:
                for chunk in self.chunks:
                    if self.cancel.is_set():  # true as soon as the client has gone
                        break
                    if not chunk:
                        continue
                    parts.append(chunk)
                    self.sent += 1
                    yield sse.event({"text": chunk})
                else:
                    self.finished = True
                if self.cancel.is_set() and self.noticed_at is not None:
                    return  # the client is gone: nobody to tell (cleanup closes the engine's stream)
                completion = self.chunks.result
                self.environ[TOKENS_KEY] = completion.generated_tokens
                body = _result_body(
                    self.req,
                    completion,
                    "".join(parts),
                    self.engine.model_name,
                    self.slot.waited_ms,
                )
                yield sse.event(body, name="done")
            except GeneratorExit:
                self._client_left()  # the server could not write: the client hung up
                raise
            except Exception as exc:  # the stream has started: report in-band and end it
                mapped = from_engine(exc)
                if mapped is None:
                    log.exception("error during /stream")
                    message = f"Internal server error ({type(exc).__name__}); see the server log."
                    status = 500
                else:
                    message, status = mapped.message, mapped.status
                yield sse.event({**error_body(message), "code": status}, name="error")
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        """Stop the engine (if still running), record the run, then free the model for the next request."""
        with self._lock:
            if self._done:
                return
            self._done = True
        self._unhook()
        try:
            if not self.finished:  # closing a finished stream would relabel it "cancelled"
                self.chunks.close()
            completion = getattr(self.chunks, "result", None)
            if completion is not None:
                self.environ.setdefault(TOKENS_KEY, completion.generated_tokens)
            if self.noticed_at is not None and self.app_state.metrics is not None:
                self.app_state.metrics.cancelled.inc()
            last_step = _decode_steps(self.engine)
            _remember(
                self.app_state,
                "/stream",
                completion,
                sent=self.sent,
                decode_steps=last_step - self.first_step,
                steps_after_disconnect=None
                if self.noticed_at is None
                else last_step - self.noticed_at,
            )
        finally:
            self.slot.release()


def _decode_steps(engine: Any) -> int:
    """The engine's running count of decode steps (0 for engines without one)."""
    value = getattr(engine, "decode_steps", 0)
    return value if isinstance(value, int) else 0


def _remember(app_state: AppState, path: str, completion: Any, **extra: Any) -> None:
    """Keep a short record of a finished generation (what tests and operators inspect)."""
    app_state.recent.append(
        {
            "path": path,
            "time": time.time(),
            "finish_reason": getattr(completion, "finish_reason", None),
            "completion_tokens": getattr(completion, "generated_tokens", None),
            **extra,
        }
    )
