"""End to end: deepshiva-lsp (subprocess, pytest-lsp client) against the real API server
(subprocess, waitress) running a real model (the tiny random Llama of tests/conftest.py).

The tiny model's text is noise, so the tests check mechanics (what arrives, where, when, what
the API saw), not the quality of the code.
"""

from __future__ import annotations

import asyncio

import pytest
from api_server import ApiServer
from conftest import free_port, lsp_session
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from lsp.text import UTF8, UTF16, width

pytestmark = pytest.mark.slow

CANCELLED = "deepshiva_cancelled_generations_total"
RUNNING = "deepshiva_queue_running"


@pytest.fixture(scope="session")
def api(tiny_model_dir, tmp_path_factory):
    server = ApiServer(free_port(), str(tiny_model_dir), tmp_path_factory.mktemp("api") / "api.log")
    server.start()
    yield server
    server.stop()


def settings(api: ApiServer, **extra) -> dict:
    base = {
        "apiUrl": api.url,
        "temperature": 0.8,
        "seed": 2,  # with this seed the tiny model starts with printable text
        "maxTokens": 24,
        "debounceMs": 0,
        "requestTimeoutMs": 30000,
        "slowThresholdMs": 30000,
    }
    return {**base, **extra}


LONG = {"maxTokens": 400, "multiline": "always", "maxLines": 500, "temperature": 1.0}


async def wait_until(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_completion_arrives_and_accepts_are_counted(api):
    async with lsp_session(settings(api)) as s:
        await s.wait_status("ready")
        docs = [(f"def {name}(a, b):\n    \n", 1, 4) for name in ("add", "sub", "mul", "div", "mod")]
        uri, line, char, item = await _first_suggestion(s, docs)
        assert item.insert_text.strip()
        assert item.range == types.Range(
            start=types.Position(line=1, character=4), end=types.Position(line=1, character=4)
        )
        assert item.command.command == "deepshiva.accepted"
        await s.command(item.command.command, *item.command.arguments)  # the editor, on accept
        stats = await s.command("deepshiva.stats")
        assert (stats["shown"], stats["accepted"], stats["acceptRate"]) == (1, 1, 1.0)
        assert stats["latencyP50Ms"] > 0 and stats["latencyP95Ms"] >= stats["latencyP50Ms"]

        # completion fallback: off for a client with inline completion, on when configured
        params = types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=char),
        )
        assert await s.client.text_document_completion_async(params) is None
        s.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"deepshiva": {"completionEnabled": True}})
        )
        await asyncio.sleep(0.2)
        listing = await s.client.text_document_completion_async(params)
        assert listing.is_incomplete and len(listing.items) == 1
        edit = listing.items[0].text_edit
        assert edit.new_text == item.insert_text  # same context: served from the cache
        assert edit.range.start == edit.range.end == params.position


async def test_latest_request_wins_and_the_older_stream_is_closed(api):
    async with lsp_session(settings(api, **LONG)) as s:
        uri = "file:///tmp/latest.py"
        s.open(uri, "import os\n\n\n")
        await s.inline(uri, 2, 0)  # warm the cache for the second position
        await wait_until(lambda: api.metric(RUNNING) == 0, what="an idle API")
        before = api.metric(CANCELLED)

        older = asyncio.ensure_future(s.inline(uri, 1, 0))  # a long generation
        await wait_until(lambda: api.metric(RUNNING) == 1, what="the older stream to run")
        newer = await s.inline(uri, 2, 0)  # same document, newer request
        assert newer is not None
        superseded = await asyncio.wait_for(older, 10)
        assert not superseded.items  # the older request gives way (an empty answer, no error)
        await wait_until(lambda: api.metric(CANCELLED) == before + 1, what="the API to see the close")
        assert api.metric(RUNNING) == 0
        stats = await s.command("deepshiva.stats")
        assert stats["cancelled"] == 1


async def test_cancel_request_stops_the_generation(api):
    async with lsp_session(settings(api, **LONG)) as s:
        uri = "file:///tmp/cancel.py"
        s.open(uri, "import os\n\n")
        await s.wait_status("ready")
        before = api.metric(CANCELLED)
        future = s.client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, s.inline_params(uri, 1, 0), msg_id="cancel-me"
        )
        await wait_until(lambda: api.metric(RUNNING) == 1, what="the stream to run")
        # pytest-lsp does not send $/cancelRequest when a future is cancelled: send it by hand
        s.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="cancel-me"))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(asyncio.wrap_future(future), 10)
        await wait_until(lambda: api.metric(CANCELLED) == before + 1, what="the API to see the close")
        stats = await s.command("deepshiva.stats")
        assert stats["cancelled"] == 1


async def _first_suggestion(s, docs):
    """Open documents until the model suggests at least two characters; (uri, line, char, text)."""
    for i, (text, line, char) in enumerate(docs):
        uri = f"file:///tmp/doc{i}.py"
        s.open(uri, text)
        result = await s.inline(uri, line, char)
        if result.items and len(result.items[0].insert_text) >= 2:
            return uri, line, char, result.items[0]
    raise AssertionError("the model never suggested two characters")


async def test_typed_ahead_is_served_from_the_cache(api):
    async with lsp_session(settings(api)) as s:
        docs = [(f"{name} = + 1\n", 0, len(name) + 3) for name in ("value", "a", "b", "c", "d")]
        uri, line, char, item = await _first_suggestion(s, docs)
        text = item.insert_text
        calls = (await s.command("deepshiva.stats"))["apiCalls"]
        s.insert(uri, line, char, text[0])  # the user types the suggestion's first character
        result = await s.inline(uri, line, char + width(text[0], UTF16))
        assert result.items[0].insert_text == text[1:]
        stats = await s.command("deepshiva.stats")
        assert stats["apiCalls"] == calls and stats["cacheHits"] >= 1


@pytest.mark.parametrize("encoding", [UTF16, UTF8])
async def test_positions_with_non_ascii_emoji_and_tabs(api, encoding):
    """The cursor stands after an emoji (two UTF-16 units, four UTF-8 bytes) on a tab-indented
    line. If the server misplaced it, the typed-ahead context would not match."""
    line_text = "\tname = '😀é ☃'"
    doc = "# naïve ☃ 😀 façade\ndef f():\n" + line_text + " + x\n\treturn name\n"
    async with lsp_session(settings(api), encodings=(encoding,)) as s:
        assert s.initialize_result.capabilities.position_encoding == encoding
        docs = [(doc.replace("name", n), 2, width(line_text.replace("name", n), encoding))
                for n in ("name", "nom", "nm", "n", "title")]
        uri, line, char, item = await _first_suggestion(s, docs)
        assert item.range.start == types.Position(line=line, character=char)
        text = item.insert_text
        s.insert(uri, line, char, text[0])
        result = await s.inline(uri, line, char + width(text[0], encoding))
        assert result.items and result.items[0].insert_text == text[1:]


async def test_selected_completion_info_is_extended_over_its_range(api):
    async with lsp_session(settings(api)) as s:
        uri = "file:///tmp/selected.py"
        s.open(uri, "import os\nos.pa\n")
        rng = types.Range(start=types.Position(line=1, character=3), end=types.Position(line=1, character=5))
        selected = types.SelectedCompletionInfo(range=rng, text="path")
        for _ in range(3):
            result = await s.inline(uri, 1, 5, selected=selected)
            if result.items:
                break
        assert result.items, "no suggestion after the selected item"
        item = result.items[0]
        assert item.range == rng and item.insert_text.startswith("path") and len(item.insert_text) > 4
