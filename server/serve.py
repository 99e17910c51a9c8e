"""Run the app on waitress, a production WSGI server (never Flask's development server).

Waitress settings that matter here:
- ``channel_request_lookahead=1`` makes waitress keep reading the socket while a request runs,
  so it notices a client that hung up and exposes ``waitress.client_disconnected``;
- its default ``send_bytes=1`` writes each SSE event to the socket as soon as it is yielded
  (no output buffering), and a response without Content-Length is sent chunked;
- a request must arrive within ``receive_timeout`` seconds, and at the connection limit the
  slowest incomplete request is dropped to make room (``slow_clients``): slow clients cannot
  lock everyone out;
- more worker threads than the admission queue holds, so /health, /model_status and 429 answers
  never wait behind generations;
- waitress's own body limit is kept well above the app's, so oversized bodies get the app's
  JSON 413; bodies over 16x the limit are refused by waitress before they are read, and its
  refusals (413, 400 for a malformed request) use the same JSON error shape (``JsonErrorTask``).
"""

from __future__ import annotations

import json
import logging

from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from . import slow_clients
from .config import ServerConfig
from .observability import printable

log = logging.getLogger("deepshiva.server")
DISCONNECTED = "Client disconnected while serving "


class WaitressLogFilter(logging.Filter):
    """Waitress's own log lines: a client that hung up is a normal cancellation (every LSP
    keystroke cancels a stream), logged at DEBUG; every other line gets its control characters
    escaped (waitress writes the decoded request path as it came)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(DISCONNECTED):
            log.debug(
                "client disconnected during %s: generation cancelled (normal when an editor "
                "moves on)",
                printable(message[len(DISCONNECTED) :]),
            )
            return False
        record.msg, record.args = printable(message, 4000), None
        return True


class JsonErrorTask(ErrorTask):
    """Waitress's own refusals (a body past its limit, a malformed request line or header) in
    the API's error shape instead of waitress's plain text."""

    def execute(self):
        error = self.request.error
        message = f"{error.reason}: {error.body}"
        if error.code == 413:
            message = (
                f"Request body too large: the limit is {self.channel.server.app_body_limit} bytes."
            )
        body = json.dumps({"status": "error", "message": message}).encode("utf-8")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def quiet_waitress_logs() -> None:
    """Install :class:`WaitressLogFilter` on waitress's logger (once)."""
    logger = logging.getLogger("waitress")
    if not any(isinstance(f, WaitressLogFilter) for f in logger.filters):
        logger.addFilter(WaitressLogFilter())


def make_server(app, config: ServerConfig, *, port: int | None = None):
    """A waitress server bound to config.host:port (port 0 = any free port; see ``effective_port``)."""
    quiet_waitress_logs()
    server = create_server(
        app,
        host=config.host,
        port=config.port if port is None else port,
        threads=config.worker_threads,
        channel_request_lookahead=1,
        max_request_body_size=max(config.max_body_bytes * 16, 1 << 20),
        connection_limit=max(100, config.worker_threads * 4),
        ident="deepshiva",
        clear_untrusted_proxy_headers=True,
        cleanup_interval=1,  # how often slow_clients checks its receive timeout (and idle channels)
    )
    for listener in slow_clients.listeners(server):
        listener.channel_class = JsonErrorChannel
        listener.app_body_limit = config.max_body_bytes
    slow_clients.install(server, config.receive_timeout)
    return server
