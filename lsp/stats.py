"""Local usage statistics for the `deepshiva.stats` command (nothing leaves the machine)."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100, nearest rank) of ``values``, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass
class Stats:
    """Counters since the server started, and the latencies of the last 1000 API calls."""

    requests: int = 0  # inline/completion requests received
    api_calls: int = 0  # of which went to the API
    cache_hits: int = 0
    joined: int = 0  # waited for a generation already running for the same context
    prefetches: int = 0  # suggestions computed ahead, after an accept
    cancelled: int = 0  # superseded by a newer request or $/cancelRequest
    errors: int = 0
    shown: int = 0  # non-empty suggestions returned
    accepted: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=1000))
    typing_gaps_ms: deque = field(
        default_factory=lambda: deque(maxlen=8)
    )  # between automatic requests
    _last_typed: float | None = None

    def recent_latency_ms(self, count: int = 8) -> float | None:
        """Median time of the last ``count`` answered API calls (None before three)."""
        recent = list(self.latencies_ms)[-count:]
        return percentile(recent, 50) if len(recent) >= 3 else None

    def note_typing(self) -> None:
        """An automatic request came (the editor asks as the user types): time the gap."""
        now = time.monotonic()
        if self._last_typed is not None:
            self.typing_gaps_ms.append((now - self._last_typed) * 1000)
        self._last_typed = now

    def typing_gap_ms(self) -> float | None:
        """Median gap between the last automatic requests (None before three gaps)."""
        return percentile(list(self.typing_gaps_ms), 50) if len(self.typing_gaps_ms) >= 3 else None

    def as_dict(self) -> dict:
        lat = list(self.latencies_ms)
        return {
            "requests": self.requests,
            "apiCalls": self.api_calls,
            "cacheHits": self.cache_hits,
            "joined": self.joined,
            "prefetches": self.prefetches,
            "cancelled": self.cancelled,
            "errors": self.errors,
            "shown": self.shown,
            "accepted": self.accepted,
            "acceptRate": round(self.accepted / self.shown, 4) if self.shown else None,
            "latencyP50Ms": _round(percentile(lat, 50)),
            "latencyP95Ms": _round(percentile(lat, 95)),
            "typingGapP50Ms": _round(self.typing_gap_ms()),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
