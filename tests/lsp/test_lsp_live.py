"""End to end: deepshiva-lsp (subprocess, pytest-lsp client) against the real API server
(subprocess, waitress) running a real model (the tiny random Llama of tests/conftest.py), and a
second time against the API server in front of the real vLLM serving the shipped model
(``--backend openai``; those runs are marked ``vllm``: ``-m vllm`` selects them).

The tiny model's text is noise, so the tests check mechanics (what arrives, where, when, what
the API saw), not the quality of the code.
"""

from __future__ import annotations

import asyncio

import httpx

import pytest
from conftest import free_port, lsp_session, metric
from live_server import LiveServer, start_live_server
from vllm_server import upstream_server_args
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from lsp.text import UTF8, UTF16, width

pytestmark = pytest.mark.slow

CANCELLED = "deepshiva_cancelled_generations_total"
RUNNING = "deepshiva_queue_running"


class Api:
    """The live API server of these tests, with its Prometheus metrics at hand."""

    def __init__(self, server: LiveServer):
        self.server, self.url = server, server.url

    def metric(self, name: str) -> float:
        return metric(self.url, name)


@pytest.fixture(scope="session", params=["local", pytest.param("vllm", marks=pytest.mark.vllm)])
def api(request, tiny_model_dir):
    if request.param == "local":
        server = start_live_server(tiny_model_dir, timeout=180)
    else:
        vllm = request.getfixturevalue("vllm_upstream")
        server = start_live_server(vllm.model, args=upstream_server_args(vllm), timeout=180)
    yield Api(server)
    server.stop()


@pytest.fixture(scope="session", params=["local", pytest.param("vllm", marks=pytest.mark.vllm)])
def endless_api(request, endless_model_dir):
    """A second API whose model never samples end-of-text: its long generations are still running
    when a test supersedes, cancels or times them out. Run with the local engine, and in front of
    vLLM serving the same model."""
    if request.param == "local":
        server = start_live_server(endless_model_dir, timeout=180)
    else:
        vllm = request.getfixturevalue("vllm_endless")
        server = start_live_server(vllm.model, args=upstream_server_args(vllm), timeout=180)
    yield Api(server)
    server.stop()


def settings(api: Api, **extra) -> dict:
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


# 900 tokens: in front of vLLM on a quiet machine the endless model wrote 400 in about half a
# second, and a superseded or cancelled stream had ended before the language server closed it.
LONG = {"maxTokens": 900, "multiline": "always", "maxLines": 1000, "temperature": 1.0}


async def wait_until(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_completion_arrives_and_accepts_are_counted(api):
    async with lsp_session(settings(api)) as s:
        await s.wait_status("ready")
        docs = [
            (f"def {name}(a, b):\n    \n", 1, 4) for name in ("add", "sub", "mul", "div", "mod")
        ]
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

        # stream off: the same through POST /generate
        s.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"deepshiva": {"stream": False}})
        )
        await asyncio.sleep(0.2)
        calls = (await s.command("deepshiva.stats"))["apiCalls"]
        s.open(uri, "def other(a, b):\n    \n")
        result = await s.inline(uri, 1, 4)
        assert (await s.command("deepshiva.stats"))["apiCalls"] == calls + 1
        assert result.items and result.items[0].insert_text.strip()


async def test_latest_request_wins_and_the_older_stream_is_closed(endless_api):
    # The endless model runs to all 900 tokens, so the older request is still streaming when the
    # newer one supersedes it (a seed picked for a tiny model that can end its text only held on
    # one kind of CPU: rounding differs between CPU kinds and so do the sampled tokens).
    api = endless_api
    async with lsp_session(settings(api, **{**LONG, "seed": 2})) as s:
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
        await wait_until(
            lambda: api.metric(CANCELLED) == before + 1, what="the API to see the close"
        )
        assert api.metric(RUNNING) == 0
        stats = await s.command("deepshiva.stats")
        assert stats["cancelled"] == 1


async def test_cancel_request_stops_the_generation(endless_api):
    # The endless model writes all 900 tokens, long enough to be seen running and cancelled.
    api = endless_api
    async with lsp_session(settings(api, **{**LONG, "seed": 8})) as s:
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
        await wait_until(
            lambda: api.metric(CANCELLED) == before + 1, what="the API to see the close"
        )
        stats = await s.command("deepshiva.stats")
        assert stats["cancelled"] == 1

        # closing the document stops its generation too
        pending = asyncio.ensure_future(s.inline(uri, 1, 0))
        await wait_until(lambda: api.metric(RUNNING) == 1, what="the stream to run")
        s.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        assert not (await asyncio.wait_for(pending, 10)).items
        await wait_until(
            lambda: api.metric(CANCELLED) == before + 2, what="the API to see the close"
        )


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
        docs = [
            (doc.replace("name", n), 2, width(line_text.replace("name", n), encoding))
            for n in ("name", "nom", "nm", "n", "title")
        ]
        # The cursor inside the string, just after the emoji: where the shipped model (behind
        # vLLM) writes on, while after the closing quote it starts a new line (no inline text).
        docs += [
            (doc.replace("name", n), 2, width(line_text.replace("name", n)[:-4], encoding))
            for n in ("name", "label", "s")
        ]
        uri, line, char, item = await _first_suggestion(s, docs)
        assert item.range.start == types.Position(line=line, character=char)
        text = item.insert_text
        s.insert(uri, line, char, text[0])
        result = await s.inline(uri, line, char + width(text[0], encoding))
        assert result.items and result.items[0].insert_text == text[1:]


async def test_selected_completion_info_is_extended_over_its_range(api):
    """The editor's completion menu has "path" selected for "os.pa": the suggestion must
    start with "path" and replace the same range, or editors do not show it."""
    async with lsp_session(settings(api)) as s:
        for i, line in enumerate(("os.pa", "p = os.pa", "print(os.pa", "x = os.pa")):
            uri = f"file:///tmp/selected{i}.py"
            s.open(uri, f"import os\n{line}\n")
            end = len(line)
            rng = types.Range(
                start=types.Position(line=1, character=end - 2),
                end=types.Position(line=1, character=end),
            )
            selected = types.SelectedCompletionInfo(range=rng, text="path")
            result = await s.inline(uri, 1, end, selected=selected)
            if result.items:
                break
        assert result.items, "no suggestion after the selected item"
        item = result.items[0]
        assert (
            item.range == rng and item.insert_text.startswith("path") and len(item.insert_text) > 4
        )


async def test_down_then_no_model_then_bad_key_then_recovery(tiny_model_dir_no_fim):
    """The whole story an editor sees when the API is not there yet: one status (and one
    message) per change, and it recovers by itself once the API is back. The model loaded at
    the end cannot fill in the middle: suggestions must still come (from the prefix alone)."""
    tiny_model_dir = tiny_model_dir_no_fim
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    lsp_settings = {
        "apiUrl": url,
        "apiKey": "wrong",
        "healthPollMs": 200,
        "debounceMs": 0,
        "seed": 2,
        "temperature": 0.8,
        "maxTokens": 16,
        "requestTimeoutMs": 30000,
    }
    async with lsp_session(lsp_settings) as s:
        await s.wait_status("unreachable")
        uri = "file:///tmp/story.py"
        s.open(uri, "total = + 1\n")
        assert not (await s.inline(uri, 0, 8)).items  # a clean empty answer, no JSON-RPC error

        # the API comes up on the port the language server already points at, without a model
        api = start_live_server(None, api_key="secret", args=["--port", str(port)])
        try:
            await s.wait_status("no_model")  # found by the health poll, nobody typed
            with pytest.raises(Exception, match="API key"):
                await s.command("deepshiva.loadModel", str(tiny_model_dir))
            await s.wait_status("unauthorized")

            s.client.workspace_did_change_configuration(
                types.DidChangeConfigurationParams(settings={"deepshiva": {"apiKey": "secret"}})
            )
            # a new key makes the server look again at once: no model, but no longer refused
            await wait_until(
                lambda: [x["state"] for x in s.statuses][-1] == "no_model", what="re-probe"
            )
            result = await s.command("deepshiva.loadModel", {"modelName": str(tiny_model_dir)})
            assert result["status"] == "success"
            await s.wait_status("ready")
            reports = [r for rs in s.client.progress_reports.values() for r in rs]
            assert isinstance(reports[0], types.WorkDoneProgressBegin)
            assert isinstance(reports[-1], types.WorkDoneProgressEnd)

            states = [x["state"] for x in s.statuses]
            expected = ["unreachable", "no_model", "unauthorized", "no_model", "loading", "ready"]
            if "loading" not in states:  # a load quicker than 0.3 s is not announced
                expected.remove("loading")
            assert states == expected
            assert len(s.messages) == len(states)  # one message per change, incl. "ready" again
            assert (await s.command("deepshiva.status"))["state"] == "ready"

            for line_text in ("total = + 1\n", "count = + 1\n", "name = + 1\n"):
                s.open(uri, line_text)
                result = await s.inline(uri, 0, line_text.index("+"))
                if result.items:
                    break
            assert result.items, "no suggestion after recovery"
            stats = await s.command("deepshiva.stats")
            assert stats["errors"] == 1  # the one unreachable request; the FIM refusal is retried
        finally:
            api.stop()


async def test_debounce_sends_only_the_last_of_quick_automatic_triggers(api):
    async with lsp_session(settings(api, debounceMs=300)) as s:
        await s.wait_status("ready")
        uri = "file:///tmp/debounce.py"
        s.open(uri, "import os\n\n")
        typing = []
        for column in range(4):  # four quick keystrokes, each followed by a request
            s.insert(uri, 1, column, "x")
            typing.append(asyncio.ensure_future(s.inline(uri, 1, column + 1, invoked=False)))
        results = await asyncio.gather(*typing)
        stats = await s.command("deepshiva.stats")
        assert stats["requests"] == 4 and stats["apiCalls"] == 1 and stats["cancelled"] == 3
        assert all(not r.items for r in results[:3])  # the superseded ones answer empty
        # the same request twice (editors repeat themselves) shares one generation
        s.insert(uri, 1, 4, "y")
        twice = [asyncio.ensure_future(s.inline(uri, 1, 5, invoked=False)) for _ in range(2)]
        first, second = await asyncio.gather(*twice)
        assert first == second
        stats = await s.command("deepshiva.stats")
        assert stats["apiCalls"] == 2 and stats["joined"] == 1
        # an explicitly invoked request is not debounced
        s.open("file:///tmp/debounce2.py", "import sys\n\n")
        await s.inline("file:///tmp/debounce2.py", 1, 0, invoked=True)
        assert (await s.command("deepshiva.stats"))["apiCalls"] == 3


@pytest.mark.parametrize("adaptive", [True, False])
async def test_automatic_requests_wait_no_longer_than_the_api_takes_to_answer(api, adaptive):
    configured = 8000
    async with lsp_session(settings(api, debounceMs=configured, adaptiveDebounce=adaptive)) as s:
        await s.wait_status("ready")
        uri = f"file:///tmp/adaptive-{adaptive}.py"
        s.open(uri, "import os\n\n")
        assert (await s.command("deepshiva.stats"))[
            "debounceMs"
        ] == configured  # nothing answered yet
        column = 0
        while (await s.command("deepshiva.stats"))["apiCalls"] < 3:  # explicitly invoked: never
            assert column < 12, "the API was never asked"  # debounced, but their answers are timed
            s.insert(uri, 1, column, "x" if column % 2 else "1")  # (a typed-ahead hit asks nothing)
            column += 1
            await s.inline(uri, 1, column, invoked=True)
        stats = await s.command("deepshiva.stats")
        if not adaptive:
            assert stats["debounceMs"] == configured
            return
        # the wait is now the median answer time: the tiny model answers far under 8 s
        assert stats["debounceMs"] == stats["latencyP50Ms"] < configured
        s.insert(uri, 1, column, "(")
        started = asyncio.get_running_loop().time()
        await s.inline(uri, 1, column + 1, invoked=False)
        assert asyncio.get_running_loop().time() - started < configured / 1000
        assert (await s.command("deepshiva.stats"))["apiCalls"] == 4


async def test_no_wait_while_the_api_answers_faster_than_the_user_types(api):
    configured = 8000
    async with lsp_session(settings(api, debounceMs=configured)) as s:
        await s.wait_status("ready")
        uri = "file:///tmp/no-wait.py"
        s.open(uri, "import os\n\n")
        for column in range(3):  # explicit requests: their answers time the API
            s.insert(uri, 1, column, "x")
            await s.inline(uri, 1, column + 1, invoked=True)
        for column in range(3, 7):  # typing slower than the API answers: a key a second
            await asyncio.sleep(1.0)
            s.insert(uri, 1, column, "y")
            await s.inline(uri, 1, column + 1, invoked=False)
        stats = await s.command("deepshiva.stats")
        assert stats["typingGapP50Ms"] >= 1000 > stats["latencyP50Ms"]
        assert stats["debounceMs"] == 0
        s.insert(uri, 1, 7, "z")
        started = asyncio.get_running_loop().time()
        result = await s.inline(uri, 1, 8, invoked=False)
        assert asyncio.get_running_loop().time() - started < 1.0  # not the wait for 8 s of quiet
        assert result is not None


async def test_time_cap_reports_slow_and_closes_the_stream(endless_api):
    """A 50 ms cap is hit whatever the machine's speed: the suggestion is a generation that cannot
    end early (the endless model, 900 tokens), and with the local engine another client keeps the
    one model busy, so it waits in the queue besides. Whether the API counts a cancelled
    generation depends on whether it had started when the stream closed, so this test checks the
    API is left idle; latest-wins and $/cancelRequest check the counter on the same closing path.

    The answer must come at the cap, not when the generation ends: 5 s is 100 times the cap and a
    fraction of the 900 tokens' time on this kind of machine. (In front of vLLM this once took 6 s
    with the shipped model: its suggestion and the other client's 1000 tokens were sampled through
    vLLM's structured outputs, about 20 ms a token on two loaded cores, and the whole machine
    stalled; the endless tiny model needs neither.)"""
    api = endless_api
    async with lsp_session(
        settings(api, **{**LONG, "maxTokens": 900, "requestTimeoutMs": 50})
    ) as s:
        await s.wait_status("ready")
        uri = "file:///tmp/slow.py"
        s.open(uri, "import os\n\n")
        # Only now, with the session ready, the other client's ~1000-token generation (about a
        # second even on a fast machine) starts: the suggestion is sure to queue behind it.
        busy = asyncio.get_running_loop().run_in_executor(
            None,
            lambda: httpx.post(
                api.url + "/generate",
                json={"prompt": "x = [", "max_length": 1000, "temperature": 1.0, "seed": 1},
                timeout=120,
            ),
        )
        await wait_until(
            lambda: api.metric(RUNNING) == 1, what="the other client's generation to start"
        )
        started = asyncio.get_running_loop().time()
        await s.inline(uri, 1, 0)  # whole lines that arrived in time may be shown
        assert asyncio.get_running_loop().time() - started < 5
        status = await s.wait_status("slow")
        assert "50 ms" in status["message"]
        await busy
        await wait_until(lambda: api.metric(RUNNING) == 0, what="the API to stop generating")
        warnings = [m for m in s.messages if m.type == types.MessageType.Warning]
        assert len(warnings) == 1


async def test_after_an_accept_the_next_suggestion_is_ready_before_the_editor_asks(api):
    async with lsp_session(settings(api)) as s:
        docs = [(f"{name} = + 1\n", 0, len(name) + 3) for name in ("value", "a", "b", "c", "d")]
        uri, line, char, item = await _first_suggestion(s, docs)
        text = item.insert_text
        calls = (await s.command("deepshiva.stats"))["apiCalls"]
        # the editor inserts the suggestion, then runs the item's command
        s.insert(uri, line, char, text)
        await s.command(item.command.command, *item.command.arguments)
        # ... and asks again at the end of what it inserted
        await s.inline(uri, line, char + width(text, UTF16), invoked=False)
        stats = await s.command("deepshiva.stats")
        assert stats["prefetches"] == 1 and stats["apiCalls"] == calls + 1  # one generation
        assert stats["joined"] + stats["cacheHits"] == 1  # the editor's request used it
