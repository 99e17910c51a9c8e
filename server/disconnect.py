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
