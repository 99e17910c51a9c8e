"""The language server under requests for documents it does not have and malformed configuration:
it never crashes, answers the editor cleanly (no JSON-RPC error), and keeps working."""

from __future__ import annotations

import asyncio

import pytest
from fake_api import FakeApi
from lsp_harness import ROOT, lsp_session
from lsprotocol import types

pytestmark = pytest.mark.timeout(120)

BASE = {"debounceMs": 0, "cacheSize": 0, "maxTokens": 8, "requestTimeoutMs": 5000}


def _empty(result) -> bool:
    return result is None or not result.items


async def test_unknown_and_closed_documents_get_a_clean_answer():
    """Inline requests for documents the editor never opened or has closed: an empty answer
    without asking the API (the file on disk is never read), never a JSON-RPC error; changes to
    unknown documents are ignored, and the server keeps serving."""
    with FakeApi() as api:
        api.answer = lambda body: ("value = 1", 0.0)
        async with lsp_session({**BASE, "apiUrl": api.url}) as s:
            for uri in (
                "file:///nonexistent/dir/never_opened.py",
                "untitled:Untitled-1",
                "file:///tmp/reliability/%ZZ%00bad.py",
                "not a uri at all",
            ):
                assert _empty(await s.inline(uri, 3, 7)), uri
            closed = "file:///tmp/reliability/closed.py"
            s.open(closed, "import os\n")
            s.close(closed)
            assert _empty(await s.inline(closed, 1, 0))
            s.change("file:///tmp/reliability/ghost.py", (0, 0), (0, 0), "x")  # never opened
            s.change(closed, (0, 0), (0, 0), "x")  # already closed
            assert api.bodies == [], "the API was asked about documents nobody has"
            on_disk = (ROOT / "pyproject.toml").as_uri()  # on disk, never opened: not read
            assert _empty(await s.inline(on_disk, 0, 0))
            assert api.bodies == [], "an unopened file's text was sent to the API"
            live = "file:///tmp/reliability/live.py"
            s.open(live, "x = \n")
            result = await s.inline(live, 0, 4)
            assert result.items and result.items[0].insert_text == "value = 1"
            assert api.bodies[-1]["prompt"] == "x = "
            assert s.alive()


BAD_SETTINGS = [
    ["not", "a", "dict"],
    "a string",
    42,
    {"deepshiva": "not a dict"},
    {"deepshiva": {"maxTokens": "lots", "temperature": float("inf"), "apiUrl": 5}},
    {
        "maxTokens": -3,
        "contextChars": "everything",
        "stop": [1, None, {}],
        "multiline": "sometimes",
    },
    {
        "contextChars": {"before": -1, "after": 10**12},
        "debounceMs": None,
        "requestTimeoutMs": "soon",
    },
    {"enabledLanguages": "python", "disabledLanguages": [None], "cacheSize": 1.5, "seed": "x"},
    {"deepshiva": {"deepshiva": {"deepshiva": {}}}, "": 1, "\u2028": [], "apiKey": 7},
]


@pytest.mark.parametrize("initial", [None, "x", BAD_SETTINGS[4]])
async def test_malformed_configuration_never_breaks_the_server(initial):
    """Malformed initializationOptions and didChangeConfiguration payloads: each bad value is
    ignored (and reported), the rest applies, and suggestions keep coming."""
    with FakeApi() as api:
        api.answer = lambda body: ("value = 1", 0.0)
        async with lsp_session(initial) as s:
            s.client.workspace_did_change_configuration(
                types.DidChangeConfigurationParams(
                    settings={"deepshiva": {**BASE, "apiUrl": api.url}}
                )
            )
            await asyncio.sleep(0.2)
            uri = "file:///tmp/reliability/config.py"
            s.open(uri, "x = \n")
            for n, bad in enumerate(BAD_SETTINGS):
                s.client.workspace_did_change_configuration(
                    types.DidChangeConfigurationParams(settings=bad)
                )
                s.change(uri, (0, 0), (0, 0), f"# {n}\n")
                result = await asyncio.wait_for(s.inline(uri, n + 1, 4), 10)
                assert result.items and result.items[0].insert_text == "value = 1", bad
            assert s.alive()
            body = api.bodies[-1]
            assert (
                body["max_length"] == 8
                and 0 <= body["temperature"] <= 2
                and isinstance(body["prompt"], str)
            )
