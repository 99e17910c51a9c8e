"""Notice clients that hang up while their request waits for or runs on the model.

Waitress exposes ``environ['waitress.client_disconnected']`` (with channel_request_lookahead > 0).
One background thread polls the registered callables and fires the request's cancel callback,
so generation stops at the engine's next decode step even when no bytes are being written
(a non-streamed /generate, or a long prefill).
"""

from __future__ import annotations

import threading
from typing import Callable

NEVER_GONE: Callable[[], bool] = lambda: False  # noqa: E731  (servers without the waitress hook)


class _Watch:
    def __init__(self, watcher: "DisconnectWatcher", client_gone, on_gone):
        self.client_gone = client_gone
        self.on_gone = on_gone
        self._watcher = watcher
        self.fired = False

    def check(self) -> bool:
        """Fire ``on_gone`` once if the client is gone; returns whether it is."""
        if self.fired:
            return True
        if self.client_gone():
            self.fired = True
            self.on_gone()
            return True
        return False

    def stop(self) -> None:
        self._watcher._remove(self)

    def __enter__(self) -> "_Watch":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class DisconnectWatcher:
    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self._watches: set[_Watch] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, client_gone: Callable[[], bool], on_gone: Callable[[], None]) -> _Watch:
        watch = _Watch(self, client_gone, on_gone)
        if client_gone is NEVER_GONE:
            return watch  # nothing to poll
        with self._lock:
            self._watches.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deepshiva-disconnect", daemon=True)
                self._thread.start()
        return watch

    def _remove(self, watch: _Watch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.interval_s):
            with self._lock:
                watches = list(self._watches)
                if not watches:
                    self._thread = None  # restarted by the next watch()
                    return
            for watch in watches:
                try:
                    if watch.check():
                        self._remove(watch)
                except Exception:  # a broken callable must not kill the watcher for everyone
                    self._remove(watch)
