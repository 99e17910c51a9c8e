"""A bounded FIFO in front of the model: ``running_limit`` requests generate, at most N wait, the rest get 429.

The local engine generates one request at a time (limit 1); an upstream serving engine batches
many, so admission lets as many through as it is set to (``--concurrency``).

Waiting requests poll their client's connection, so a request whose client has gone is dropped
from the line and never reaches the model.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Callable


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

    def __init__(self, capacity: int, poll_s: float = 0.05, running_limit: int = 1):
        self.capacity = capacity  # requests allowed to wait behind the running ones
        self.running_limit = running_limit  # requests allowed to generate at once
        self._poll_s = poll_s
        self._cond = threading.Condition()
        self._waiting: deque[int] = deque()
        self._running: set[int] = set()
        self._tickets = itertools.count()
        self.rejected = 0
        self.abandoned = 0

    def snapshot(self) -> dict:
        with self._cond:
            return {
                "running": len(self._running),
                "waiting": len(self._waiting),
                "capacity": self.capacity,
                "concurrency": self.running_limit,
            }

    def acquire(self, client_gone: Callable[[], bool] = lambda: False) -> Slot:
        """Wait for the model; raise QueueFull at once if the line is full, ClientGone if the client leaves."""
        start = time.monotonic()
        with self._cond:
            # Between a release and its successor waking up a slot is free, yet the line's head is
            # as good as running: the heads that fill free slots count as runners, not as waiting.
            free = max(self.running_limit - len(self._running), 0)
            waiting = max(len(self._waiting) - free, 0)
            must_wait = len(self._running) + len(self._waiting) >= self.running_limit
            if must_wait and waiting >= self.capacity:
                self.rejected += 1
                raise QueueFull(f"{waiting} requests are already waiting for the model")
            ticket = next(self._tickets)
            self._waiting.append(ticket)
            try:
                while True:
                    if client_gone():
                        self.abandoned += 1
                        raise ClientGone()
                    if len(self._running) < self.running_limit and self._waiting[0] == ticket:
                        break
                    self._cond.wait(self._poll_s)
            except BaseException:
                self._waiting.remove(ticket)
                self._cond.notify_all()
                raise
            self._waiting.popleft()
            self._running.add(ticket)
        return Slot(self, ticket, (time.monotonic() - start) * 1000.0)

    def _release(self, ticket: int) -> None:
        with self._cond:
            self._running.discard(ticket)
            self._cond.notify_all()
