"""End-to-end protocol tests that need no model: capabilities, configuration, API down."""

from __future__ import annotations

import asyncio
import json
import sys

from conftest import free_port, lsp_session
from lsprotocol import types


async def test_capabilities_then_api_down_gives_one_status_one_message_and_empty_answers():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with lsp_session({"apiUrl": url, "healthPollMs": 200}) as s:
        caps = s.initialize_result.capabilities
        assert caps.inline_completion_provider is not None  # or editors never ask
        assert caps.completion_provider is not None
        assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental
        assert caps.position_encoding == types.PositionEncodingKind.Utf16
        assert set(caps.execute_command_provider.commands) >= {
            "deepshiva.loadModel",
            "deepshiva.stats",
            "deepshiva.accepted",
            "deepshiva.status",
        }
        assert s.initialize_result.server_info.name == "deepshiva-lsp"

        status = await s.wait_status("unreachable")
        assert url in status["message"]
        uri = "file:///tmp/down.py"
        s.open(uri, "def f(x):\n    ")
        for _ in range(3):  # keystroke after keystroke
            result = await s.inline(uri, 1, 4)
            assert result is not None and not result.items
        errors = [m for m in s.messages if m.type == types.MessageType.Error]
        assert len(errors) == 1, s.messages  # one message per change of state, not per keystroke
        assert [x["state"] for x in s.statuses].count("unreachable") == 1
        stats = await s.command("deepshiva.stats")
        assert stats["requests"] == 3 and stats["errors"] >= 1


async def test_settings_from_workspace_configuration_and_did_change():
    """Pulled configuration overrides initializationOptions; a pushed change applies too.
    (This client prefers UTF-32 positions, which the server also accepts.)"""
    init = {"apiUrl": f"http://127.0.0.1:{free_port()}", "enabledLanguages": ["python"]}
    conf = {"enabledLanguages": ["rust"]}
    async with lsp_session(init, configuration=conf, encodings=("utf-32", "utf-16")) as s:
        assert s.initialize_result.capabilities.position_encoding == "utf-32"
        await s.wait_status("unreachable")
        uri = "file:///tmp/conf.py"
        s.open(uri, "x = 1\n")
        assert await s.inline(uri, 0, 5) is None  # python is off: no API call at all
        assert (await s.command("deepshiva.stats"))["requests"] == 0
        s.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"deepshiva": {"enabledLanguages": ["*"]}})
        )
        await asyncio.sleep(0.3)
        assert (await s.inline(uri, 0, 5)).items == ()
        assert (await s.command("deepshiva.stats"))["requests"] == 1
        s.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"deepshiva": {"maxTokens": -1}})
        )
        await asyncio.sleep(0.3)
        assert any("maxTokens" in m.message for m in s.messages)  # a bad value is reported


async def test_tcp_mode():
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lsp", "--tcp", f"127.0.0.1:{port}", stderr=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(200):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"processId": None, "rootUri": None, "capabilities": {}},
            }
        )
        writer.write(f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
        await writer.drain()
        header = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        length = int(header.split(b"Content-Length:")[1].split(b"\r\n")[0])
        answer = json.loads(await reader.readexactly(length))
        assert answer["id"] == 1 and "inlineCompletionProvider" in answer["result"]["capabilities"]
        writer.close()
    finally:
        proc.terminate()
        await proc.wait()
