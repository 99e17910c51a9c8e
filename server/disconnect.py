"""Stop generating for clients that hang up.

Waitress exposes ``environ['waitress.client_disconnected']`` (with channel_request_lookahead > 0):
a cheap callable that turns true once the socket has closed. ``CancelOnDisconnect`` is the
engine's cancel event that also consults it, and the engine asks ``is_set()`` at every decode
step, so a vanished client stops generation at the next step, streamed or not, with no polling
thread.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

NEVER_GONE: Callable[[], bool] = lambda: False  # noqa: E731  (servers without the waitress hook)


def on_channel_close(environ: dict, callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` the moment waitress's main loop sees the client's connection close (a
    ``GuardedChannel``, server/slow_clients.py); returns the call that takes it off again. Where
    the server is not waitress, nothing is hooked (the cancel event's polling still notices)."""
    checker = environ.get("waitress.client_disconnected")
    channel = getattr(checker, "__self__", None)
    hooks = getattr(channel, "close_hooks", None)
    if hooks is None:
        return lambda: None
    hooks.append(callback)

    def remove() -> None:
        try:
            hooks.remove(callback)
        except ValueError:
            pass

    return remove


class CancelOnDisconnect(threading.Event):
    """A cancel event that is also set when the client has gone; ``on_gone`` runs once when noticed."""

    def __init__(
        self,
        client_gone: Callable[[], bool] = NEVER_GONE,
        on_gone: Optional[Callable[[], None]] = None,
    ):
        super().__init__()
        self._client_gone = client_gone
        self._on_gone = on_gone
        self.client_left = False
        self._listeners: list[Callable[[], None]] = []
        self._listeners_lock = threading.Lock()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` once when the event is set (at once if it already is): what waits
        on a socket rather than on this event (core.upstream.HangUps) stops without polling."""
        with self._listeners_lock:
            if not super().is_set():
                self._listeners.append(listener)
                return
        listener()

    def set(self) -> None:
        super().set()
        with self._listeners_lock:
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener()

    def is_set(self) -> bool:
        if super().is_set():
            return True
        if self._client_gone():
            self.client_left = True
            if self._on_gone is not None:
                self._on_gone()
            self.set()
            return True
        return False
