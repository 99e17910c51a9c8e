"""Run the app on waitress, a production WSGI server (never Flask's development server).

Waitress settings that matter here:
- ``channel_request_lookahead=1`` makes waitress keep reading the socket while a request runs,
  so it notices a client that hung up and exposes ``waitress.client_disconnected``;
- its default ``send_bytes=1`` writes each SSE event to the socket as soon as it is yielded
  (no output buffering), and a response without Content-Length is sent chunked;
- more worker threads than the admission queue holds, so /health, /model_status and 429 answers
  never wait behind generations;
- waitress's own body limit is kept well above the app's, so oversized bodies get the app's
  JSON 413 (only bodies over 16x the limit meet waitress's plain-text one).
"""

from __future__ import annotations

from waitress import create_server

from .config import ServerConfig


def make_server(app, config: ServerConfig, *, port: int | None = None):
    """A waitress server bound to config.host:port (port 0 = any free port; see ``effective_port``)."""
    return create_server(
        app,
        host=config.host,
        port=config.port if port is None else port,
        threads=config.worker_threads,
        channel_request_lookahead=1,
        max_request_body_size=max(config.max_body_bytes * 16, 1 << 20),
        connection_limit=max(100, config.worker_threads * 4),
        ident="deepshiva",
        clear_untrusted_proxy_headers=True,
    )
