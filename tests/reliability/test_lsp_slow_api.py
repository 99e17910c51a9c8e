"""A slow API never blocks the editor, and answers that arrive late or for old text are never shown.

The API here is fake_api.FakeApi: each answer names the request it answers (``v1``, ``v2``, ...)
and comes after a delay the test chooses, which the real server cannot be made to do on purpose.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from fake_api import FakeApi
from lsp_harness import lsp_session

pytestmark = pytest.mark.timeout(120)

BASE = {"debounceMs": 0, "cacheSize": 100, "maxTokens": 8, "slowThresholdMs": 100_000}


def numbered(delays: dict[int, float]):
    """Answer request n with 'vn' after delays.get(n, 0) seconds."""
    counter = itertools.count(1)

    def answer(body):
        n = next(counter)
        return f"v{n}", delays.get(n, 0.0)

    return answer


def _texts(result) -> list[str]:
    return [item.insert_text for item in (result.items if result else [])]


async def test_a_slow_answer_never_blocks_the_editor():
    """While a suggestion waits on a 5 s API, commands, document changes and other documents are
    handled at once, and the waiting request itself ends at its time cap."""
    with FakeApi() as api:
        api.answer = numbered({1: 5.0})
        async with lsp_session({**BASE, "apiUrl": api.url, "requestTimeoutMs": 1000}) as s:
            slow_uri, other_uri = "file:///tmp/rel/slow.py", "file:///tmp/rel/other.py"
            s.open(slow_uri, "x = \n")
            s.open(other_uri, "y = \n")
            started = time.monotonic()
            pending = asyncio.ensure_future(s.inline(slow_uri, 0, 4))
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            status = await asyncio.wait_for(s.command("deepshiva.status"), 2)
            assert time.monotonic() - t0 < 0.5 and status["state"] is not None
            other = await asyncio.wait_for(
                s.inline(other_uri, 0, 4), 2
            )  # another document: not held up
            assert _texts(other) == ["v2"]
            s.change(slow_uri, (0, 4), (0, 4), "1")
            result = await asyncio.wait_for(pending, 3)
            assert time.monotonic() - started < 2.5, "the time cap did not hold"
            assert _texts(result) in ([], [""]), "the late answer was shown"
            await s.wait_status("slow")


async def test_stale_answers_are_never_shown():
    with FakeApi() as api:
        async with lsp_session({**BASE, "apiUrl": api.url, "requestTimeoutMs": 800}) as s:
            uri = "file:///tmp/rel/stale.py"
            s.open(uri, "a = \n")

            # 1. superseded: the user typed and the editor asked again; the first answer is dropped
            api.answer = numbered({1: 1.5})
            first = asyncio.ensure_future(s.inline(uri, 0, 4))
            await asyncio.sleep(0.2)
            s.change(uri, (0, 4), (0, 4), "b")
            second = await s.inline(uri, 0, 5)
            assert _texts(second) == ["v2"]
            assert _texts(await first) == []

            # 2. timed out: the late answer is not cached and never shown for the same context
            api.answer = numbered({1: 2.0})
            s.change(uri, (0, 5), (0, 5), "c")
            timed_out = await s.inline(uri, 0, 6)
            assert _texts(timed_out) == []
            await asyncio.sleep(2.0)  # the late answer has arrived at the language server by now
            again = await s.inline(uri, 0, 6)
            assert _texts(again) == ["v2"], "the timed-out answer came back"

            # 3. the document changed while the answer was on its way (no new request yet): the
            # answer was computed for text the user no longer has, so it is not shown
            api.answer = numbered({1: 0.6})
            s.change(uri, (0, 6), (0, 6), "d")
            pending = asyncio.ensure_future(s.inline(uri, 0, 7))
            await asyncio.sleep(0.2)
            s.change(uri, (0, 0), (0, 0), "# moved\n")
            assert _texts(await pending) == []
            assert api.bodies[-1]["prompt"] == "a = bcd"
