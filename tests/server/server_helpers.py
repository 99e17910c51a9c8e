"""Helpers for the server tests: configs, an in-process waitress server, waiting for idle."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

from waitress import wasyncore

from server import ServerConfig
from server.serve import make_server


def make_config(**overrides) -> ServerConfig:
    values = {"model": None, "queue_size": 4}
    values.update(overrides)
    return ServerConfig(**values)


@contextlib.contextmanager
def running(app, config: ServerConfig | None = None) -> Iterator[str]:
    """Serve ``app`` on waitress on a free loopback port in this process; yield the base URL."""
    config = config or app.extensions["deepshiva"].config
    server = make_server(app, config, port=0)
    stop = threading.Event()

    def loop():  # waitress's own run(), in slices, so the test can stop it between polls
        while not stop.is_set():
            wasyncore.loop(timeout=0.05, map=server._map, count=1)

    thread = threading.Thread(target=loop, name="test-waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(server._map)


def wait_idle(app, timeout: float = 10.0) -> None:
    """Wait until no request holds or waits for the model."""
    queue = app.extensions["deepshiva"].queue
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = queue.snapshot()
        if not snap["running"] and not snap["waiting"]:
            return
        time.sleep(0.01)
    raise AssertionError(f"server still busy: {queue.snapshot()}")
