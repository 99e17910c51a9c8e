"""End-to-end harness: deepshiva-lsp in a subprocess, driven by pytest-lsp's LanguageClient.

pytest-lsp's bundled client-capability snapshots predate inline completion, so the capabilities
are written out here by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
from lsprotocol import types
from pytest_lsp.client import LanguageClient, make_test_lsp_client

sys.path.insert(0, str(Path(__file__).resolve().parent))


def client_capabilities(encodings: tuple[str, ...] = ("utf-16",)) -> types.ClientCapabilities:
    """A client like VS Code / Neovim 0.12: inline completion, completion, incremental sync,
    work-done progress, pull configuration."""
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind(e) for e in encodings]
        ),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(dynamic_registration=False),
            inline_completion=types.InlineCompletionClientCapabilities(dynamic_registration=False),
            completion=types.CompletionClientCapabilities(
                completion_item=types.ClientCompletionItemOptions(snippet_support=False)
            ),
        ),
        window=types.WindowClientCapabilities(work_done_progress=True),
        workspace=types.WorkspaceClientCapabilities(
            configuration=True,
            did_change_configuration=types.DidChangeConfigurationClientCapabilities(
                dynamic_registration=False
            ),
        ),
    )


def metric(url: str, name: str) -> float:
    """A value from the API's GET /metrics (Prometheus text), 0 when absent."""
    text = httpx.get(url + "/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Session:
    """A connected client plus what the server sent it."""

    def __init__(self, client: LanguageClient):
        self.client = client
        self.statuses: list[dict] = []
        self._status_event = asyncio.Event()
        self._versions: dict[str, int] = {}

    def on_status(self, params: Any) -> None:
        self.statuses.append(_plain(params))
        self._status_event.set()

    @property
    def messages(self) -> list[types.ShowMessageParams]:
        return self.client.messages

    async def wait_status(self, state: str, timeout: float = 30.0) -> dict:
        """Wait for a deepshiva/status notification with ``state`` (seen before or later)."""

        async def _wait() -> dict:
            while True:
                for status in self.statuses:
                    if status["state"] == state:
                        return status
                self._status_event.clear()
                await self._status_event.wait()

        return await asyncio.wait_for(_wait(), timeout)

    def open(self, uri: str, text: str, language: str = "python") -> None:
        self._versions[uri] = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id=language, version=1, text=text
                )
            )
        )

    def insert(self, uri: str, line: int, character: int, text: str) -> None:
        """An incremental change: insert ``text`` at (line, character)."""
        self._versions[uri] += 1
        pos = types.Position(line=line, character=character)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=uri, version=self._versions[uri]
                ),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(start=pos, end=pos), text=text
                    )
                ],
            )
        )

    def inline_params(
        self, uri: str, line: int, character: int, invoked: bool = True, selected=None
    ):
        kind = (
            types.InlineCompletionTriggerKind.Invoked
            if invoked
            else types.InlineCompletionTriggerKind.Automatic
        )
        return types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(
                trigger_kind=kind, selected_completion_info=selected
            ),
        )

    async def inline(self, uri: str, line: int, character: int, **kw):
        return await self.client.text_document_inline_completion_async(
            self.inline_params(uri, line, character, **kw)
        )

    async def command(self, name: str, *arguments: Any) -> Any:
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(arguments))
        )


def _plain(params: Any) -> dict:
    if isinstance(params, dict):
        return params
    return {k: getattr(params, k) for k in ("state", "message")}


@contextlib.asynccontextmanager
async def lsp_session(
    settings: dict,
    *,
    encodings: tuple[str, ...] = ("utf-16",),
    capabilities: types.ClientCapabilities | None = None,
    configuration: dict | None = None,
    root: Path | None = None,
) -> AsyncIterator[Session]:
    """Start deepshiva-lsp (``python -m lsp``), initialize it with ``settings`` as
    initializationOptions and ``root`` (default: the current directory) as its workspace
    folder, and shut it down afterwards."""
    client = make_test_lsp_client()
    if configuration is not None:
        client.set_configuration(configuration, section="deepshiva")
    session = Session(client)

    def on_status(params):
        session.on_status(params)

    client.feature("deepshiva/status")(on_status)
    await client.start_io(sys.executable, "-m", "lsp", "--log-level", "DEBUG")
    try:
        result = await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities or client_capabilities(encodings),
                initialization_options=settings,
                root_uri=(root or Path.cwd()).as_uri(),
            )
        )
        session.initialize_result = result
        yield session
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_session(), 10)
        await client.stop()
