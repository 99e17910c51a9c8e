"""A bounded FIFO in front of the single model: one request generates, at most N wait, the rest get 429.

Waiting requests poll their client's connection, so a request whose client has gone is dropped
from the line and never reaches the model.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Callable, Optional


class QueueFull(Exception):
    """The line is full; the client should retry later."""


class ClientGone(Exception):
    """The client disconnected while waiting; nothing was run for it."""


class Slot:
    """The right to use the model; release it exactly once (extra releases are ignored)."""

    def __init__(self, queue: "AdmissionQueue", ticket: int, waited_ms: float):
        self._queue = queue
        self._ticket = ticket
        self.waited_ms = waited_ms
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._queue._release(self._ticket)

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class AdmissionQueue:
    """FIFO admission: ``acquire`` blocks until it is this request's turn."""

    def __init__(self, capacity: int, poll_s: float = 0.05):
        self.capacity = capacity  # requests allowed to wait behind the running one
        self._poll_s = poll_s
        self._cond = threading.Condition()
        self._waiting: deque[int] = deque()
        self._running: Optional[int] = None
        self._tickets = itertools.count()
        self.rejected = 0
        self.abandoned = 0

    def snapshot(self) -> dict:
        with self._cond:
            return {"running": int(self._running is not None), "waiting": len(self._waiting),
                    "capacity": self.capacity}

    def acquire(self, client_gone: Callable[[], bool] = lambda: False) -> Slot:
        """Wait for the model; raise QueueFull at once if the line is full, ClientGone if the client leaves."""
        start = time.monotonic()
        with self._cond:
            # Between a release and its successor waking up nothing runs, yet the line's head is
            # as good as running: it counts as the runner, not as one of the waiting.
            waiting = len(self._waiting) - (self._running is None and bool(self._waiting))
            if (self._running is not None or self._waiting) and waiting >= self.capacity:
                self.rejected += 1
                raise QueueFull(f"{waiting} requests are already waiting for the model")
            ticket = next(self._tickets)
            self._waiting.append(ticket)
            try:
                while True:
                    if client_gone():
                        self.abandoned += 1
                        raise ClientGone()
                    if self._running is None and self._waiting[0] == ticket:
                        break
                    self._cond.wait(self._poll_s)
            except BaseException:
                self._waiting.remove(ticket)
                self._cond.notify_all()
                raise
            self._waiting.popleft()
            self._running = ticket
        return Slot(self, ticket, (time.monotonic() - start) * 1000.0)

    def _release(self, ticket: int) -> None:
        with self._cond:
            if self._running == ticket:
                self._running = None
            self._cond.notify_all()
