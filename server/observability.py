"""One access-log line per request and Prometheus metrics, as a WSGI middleware.

It wraps the whole app, so 401s, 404s and 413s are counted too, and it finishes a streamed
response only when the stream is closed (its status, duration and tokens are then known).
Views report generated tokens through ``environ['deepshiva.tokens']``.
"""

from __future__ import annotations

import http
import logging
import re
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from werkzeug.wsgi import ClosingIterator

TOKENS_KEY = "deepshiva.tokens"
KNOWN_PATHS = {
    "/generate",
    "/stream",
    "/load_model",
    "/model_status",
    "/health",
    "/openapi.json",
    "/metrics",
}
# Label values are bounded: anything a client invents (a 10 KB method, a random path) is "other",
# so requests cannot grow /metrics or the server's memory.
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
KNOWN_STATUSES = {str(int(status)) for status in http.HTTPStatus} | {"499"}
LOGGED_CHARS = 500  # longer paths are cut in the log
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

access_log = logging.getLogger("deepshiva.access")


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self, queue, manager):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deepshiva_requests",
            "HTTP requests answered",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "deepshiva_request_duration_seconds",
            "Time to answer a request",
            ["path"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.tokens = Counter(
            "deepshiva_generated_tokens", "Tokens generated", registry=self.registry
        )
        self.cancelled = Counter(
            "deepshiva_cancelled_generations",
            "Generations stopped because the client went away",
            registry=self.registry,
        )
        Gauge(
            "deepshiva_queue_waiting", "Requests waiting for the model", registry=self.registry
        ).set_function(lambda: queue.snapshot()["waiting"])
        Gauge(
            "deepshiva_queue_running", "Requests generating now", registry=self.registry
        ).set_function(lambda: queue.snapshot()["running"])
        Gauge(
            "deepshiva_queue_rejected_requests",
            "Requests answered 429 (queue full) since start",
            registry=self.registry,
        ).set_function(lambda: queue.rejected)
        Gauge(
            "deepshiva_model_loaded", "1 while a model is loaded", registry=self.registry
        ).set_function(lambda: int(manager.loaded))


class AccessLog:
    """WSGI middleware: log ``METHOD PATH STATUS MSms tokens=N`` and update metrics when a response ends."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    def __call__(self, environ, start_response):
        start = time.perf_counter()
        seen = {"status": 500}

        def recording_start_response(status, headers, exc_info=None):
            seen["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        def finish():
            self._record(environ, seen["status"], time.perf_counter() - start)

        try:
            body = self.app(environ, recording_start_response)
        except BaseException:
            finish()
            raise
        return ClosingIterator(body, [finish])

    def _record(self, environ, status: int, seconds: float) -> None:
        method = environ.get("REQUEST_METHOD", "-")
        path = environ.get("PATH_INFO", "-")
        tokens = environ.get(TOKENS_KEY)
        label = path if path in KNOWN_PATHS else "other"
        self.metrics.requests.labels(
            method if method in KNOWN_METHODS else "other",
            label,
            str(status) if str(status) in KNOWN_STATUSES else "other",
        ).inc()
        self.metrics.latency.labels(label).observe(seconds)
        if tokens:
            self.metrics.tokens.inc(tokens)
        access_log.info(
            "%s %s %d %.1fms tokens=%s",
            printable(method, 40),
            printable(_as_utf8(path)),
            status,
            seconds * 1000.0,
            "-" if tokens is None else tokens,
        )


def printable(text: str, limit: int = LOGGED_CHARS) -> str:
    """``text`` safe for a log line: control characters (newlines, ESC, C1) escaped as ``\\n``,
    ``\\x1b``..., so a request cannot forge a line or drive a terminal; cut after ``limit``."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _as_utf8(path: str) -> str:
    """WSGI hands the path over decoded as latin-1; the client meant UTF-8."""
    try:
        return path.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return path
