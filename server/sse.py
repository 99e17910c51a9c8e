"""Server-Sent Events framing: every event's data is one line of JSON.

JSON escapes CR and LF inside strings, so generated text with newlines can never split an event
or end it early (the seed sent raw text and broke its own framing).
"""

from __future__ import annotations

import json
from typing import Optional

HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-style proxies not to buffer the stream
}
MIMETYPE = "text/event-stream"


def event(data: dict, name: Optional[str] = None) -> bytes:
    """One SSE event: optional ``event:`` line, one ``data:`` line of JSON, blank line."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {payload}\n\n".encode("utf-8")
