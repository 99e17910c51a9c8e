"""Suggestions already computed: exact reuse and typed-ahead reuse.

Exact: the same text before and after the cursor gives the same suggestion. Typed-ahead: when the
user types the first characters of a suggestion that was shown, the rest of it is still right,
so it is served without asking the model again (the text after the cursor must be unchanged).
"""

from __future__ import annotations

from collections import OrderedDict

# Typed-ahead needs the new prefix to agree with the cached one over at least this many
# characters (or all of it when shorter), so a tiny prefix cannot match by accident.
MIN_AGREEMENT = 256


class SuggestionCache:
    """An LRU of ``(prefix, suffix) -> suggestion`` (suggestions may be "": nothing to show)."""

    def __init__(self, size: int = 100):
        self.size = size
        self._entries: OrderedDict[tuple[str, str], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def put(self, prefix: str, suffix: str, suggestion: str) -> None:
        if self.size <= 0:
            return
        key = (prefix, suffix)
        self._entries[key] = suggestion
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def get(self, prefix: str, suffix: str) -> str | None:
        """The suggestion for this cursor context, or None when a request is needed."""
        key = (prefix, suffix)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        for (old_prefix, old_suffix), suggestion in reversed(self._entries.items()):
            if old_suffix != suffix or len(suggestion) < 2:
                continue
            typed = _typed_ahead(old_prefix, suggestion, prefix)
            if typed:
                rest = suggestion[typed:]
                if rest.strip():
                    return rest
        return None


def _typed_ahead(old_prefix: str, suggestion: str, prefix: str) -> int:
    """How many characters of ``suggestion`` the user has typed since ``old_prefix`` (0: none,
    or ``prefix`` is not ``old_prefix`` followed by the start of ``suggestion``)."""
    if not prefix:
        return 0
    last = prefix[-1]
    for count in range(1, len(suggestion)):
        if suggestion[count - 1] != last:
            continue
        typed = suggestion[:count]
        if not prefix.endswith(typed):
            continue
        expected = old_prefix + typed
        # the window before the cursor may have slid down by whole lines as the user typed
        if expected.endswith(prefix) and len(prefix) >= min(len(expected), MIN_AGREEMENT):
            return count
    return 0
