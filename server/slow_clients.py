"""Keep slow or silent clients from locking everyone out of waitress.

Waitress serves at most ``connection_limit`` connections and closes only connections that were
*idle* for ``channel_timeout``: one that sends a byte every few seconds is never idle, so 101 of
them (no API key needed) once kept every other client, /health included, out until they closed.
Two bounds fix that:

- **receive timeout**: a request (headers and body) must arrive within ``receive_timeout``
  seconds of its first byte (of the connection's opening, for a new one); past that the
  connection is closed;
- **eviction at the limit**: when the limit is reached, the connection that has been receiving
  its request longest is closed to make room, instead of refusing everyone new. Connections whose
  request is being served, or that wait idle between requests, are never evicted.

The guard is a mixin put in front of waitress's server and channel classes (``install``).
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from waitress.channel import HTTPChannel

log = logging.getLogger("deepshiva.server")

MIN_AGE_TO_EVICT_S = 0.25  # a client that connected just now gets a moment to send its request


class GuardedChannel(HTTPChannel):
    """A channel that remembers since when it has been receiving its current request."""

    receiving_since: Optional[float] = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.receiving_since = self.creation_time  # a new connection owes us a request
        self.close_hooks: list = []  # run when the client's connection closes (disconnect.py)

    def handle_close(self):
        hooks, self.close_hooks = self.close_hooks, []
        for hook in hooks:  # the running request stops now, not at its next poll
            try:
                hook()
            except Exception:  # noqa: BLE001 - a hook's failure must not keep the socket open
                log.exception("a close hook failed")
        super().handle_close()

    def received(self, data):
        if data and self.request is None and self.receiving_since is None:
            self.receiving_since = time.time()
        result = super().received(data)
        if self.request is None:  # every request in this data is complete (or none began)
            self.receiving_since = None
        return result

    def receiving_for(self, now: float) -> Optional[float]:
        """Seconds spent receiving an incomplete request; None while served or idle."""
        if self.receiving_since is None or self.requests or self.will_close:
            return None
        return now - self.receiving_since


class SlowClientGuard:
    """Mixin for waitress's server: the receive timeout and eviction at the connection limit."""

    receive_timeout: float = 30.0

    def maintenance(self, now):
        super().maintenance(now)
        for channel in list(self.active_channels.values()):
            age = channel.receiving_for(now) if isinstance(channel, GuardedChannel) else None
            if age is not None and age > self.receive_timeout:
                log.info(
                    "closing a connection from %s: no complete request after %.0f s",
                    channel.addr[0] if channel.addr else "?",
                    age,
                )
                channel.will_close = True

    def readable(self):
        if self.accepting and len(self._map) >= self.adj.connection_limit:
            self._evict_slowest(time.time())
        return super().readable()

    def _evict_slowest(self, now: float) -> None:
        slowest, oldest = None, MIN_AGE_TO_EVICT_S
        for channel in self.active_channels.values():
            if not isinstance(channel, GuardedChannel):
                continue
            if channel.will_close and channel.receiving_since is not None:
                return  # an eviction is already under way: it frees the slot on this loop turn
            age = channel.receiving_for(now)
            if age is not None and age >= oldest:
                slowest, oldest = channel, age
        if slowest is not None:
            log.debug(
                "connection limit reached: closing the slowest incomplete request (%.1f s)", oldest
            )
            slowest.will_close = True


def listeners(server) -> list:
    """The listening servers behind ``waitress.create_server``'s answer (several for a host name
    that resolves to more than one address)."""
    inner = getattr(server, "map", None)  # MultiSocketServer holds its servers in .map
    servers = list(inner.values()) if isinstance(inner, dict) else [server]
    return [each for each in servers if hasattr(each, "active_channels")]


def install(server, receive_timeout: float) -> None:
    """Guard every listening socket of a server from ``waitress.create_server``."""
    for each in listeners(server):
        if not isinstance(each, SlowClientGuard):
            each.__class__ = type(
                f"Guarded{type(each).__name__}", (SlowClientGuard, type(each)), {}
            )
        each.receive_timeout = receive_timeout
        if not issubclass(each.channel_class, GuardedChannel):
            each.channel_class = type(
                f"Guarded{each.channel_class.__name__}", (GuardedChannel, each.channel_class), {}
            )
