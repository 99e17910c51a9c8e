"""Give memory back to the system after large requests.

Tokenizing a large prompt allocates tens of megabytes in many small blocks from whichever glibc
malloc arena the worker thread uses; freed, they stay in that arena, so RSS climbed with every
distinct large prompt (12 prompts of 1 MB: 404 -> 2,230 MB) and never came down.
``malloc_trim(0)`` returns the free pages of every arena to the system. It walks the heap (a few
milliseconds), so it runs only after a request whose body was large, once its response is closed.
On a C library without ``malloc_trim`` (musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Callable, Optional

from werkzeug.wsgi import ClosingIterator

log = logging.getLogger("deepshiva.server")

LARGE_BODY_BYTES = 64 << 10  # a request this large is followed by a trim


def find_malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class TrimAfterLargeRequests:
    """WSGI middleware: after a request with a body of ``threshold`` bytes or more, ``trim(0)``."""

    def __init__(
        self, app, threshold: int = LARGE_BODY_BYTES, trim: Optional[Callable[[int], int]] = None
    ):
        self.app = app
        self.threshold = threshold
        self.trim = trim if trim is not None else find_malloc_trim()
        self.trims = 0

    def __call__(self, environ, start_response):
        body = self.app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if self.trim is None or length < self.threshold:
            return body
        return ClosingIterator(body, [self._trim])

    def _trim(self) -> None:
        self.trims += 1
        self.trim(0)
