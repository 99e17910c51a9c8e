"""deepshiva-lsp in a subprocess, driven by pytest-lsp's client, for the reliability tests.

``LspThread`` runs the client's event loop in a background thread so that synchronous tests
(hypothesis examples) can drive one long-lived language server: ``lsp.call(coro)`` runs a
coroutine there and returns its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from pathlib import Path
from typing import Any, AsyncIterator

from lsprotocol import types
from pytest_lsp.client import LanguageClient, make_test_lsp_client

ROOT = Path(__file__).resolve().parents[2]


def capabilities(encoding: str = "utf-16") -> types.ClientCapabilities:
    """An editor like VS Code or Neovim 0.12 (pytest-lsp's snapshots predate inline completion)."""
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind(encoding)]
        ),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(dynamic_registration=False),
            inline_completion=types.InlineCompletionClientCapabilities(dynamic_registration=False),
        ),
        window=types.WindowClientCapabilities(work_done_progress=False),
    )


class Session:
    """A connected client, the statuses the server announced, and small helpers for documents."""

    def __init__(self, client: LanguageClient):
        self.client = client
        self.statuses: list[dict] = []
        self.versions: dict[str, int] = {}

    def open(self, uri: str, text: str, language: str = "python") -> None:
        self.versions[uri] = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id=language, version=1, text=text
                )
            )
        )

    def change(self, uri: str, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
        self.versions[uri] = self.versions.get(uri, 0) + 1
        rng = types.Range(
            start=types.Position(line=start[0], character=start[1]),
            end=types.Position(line=end[0], character=end[1]),
        )
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(
                    uri=uri, version=self.versions[uri]
                ),
                content_changes=[types.TextDocumentContentChangePartial(range=rng, text=text)],
            )
        )

    def close(self, uri: str) -> None:
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )

    async def inline(self, uri: str, line: int, character: int, invoked: bool = True):
        kind = (
            types.InlineCompletionTriggerKind.Invoked
            if invoked
            else types.InlineCompletionTriggerKind.Automatic
        )
        return await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
                context=types.InlineCompletionContext(trigger_kind=kind),
            )
        )

    async def command(self, name: str, *arguments: Any) -> Any:
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(arguments))
        )

    async def wait_status(self, state: str, timeout: float = 20.0, after: int = 0) -> dict:
        """The first deepshiva/status with ``state`` among those announced from index ``after`` on."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for status in self.statuses[after:]:
                if status["state"] == state:
                    return status
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no status {state!r}; seen {self.statuses}")
            await asyncio.sleep(0.02)

    def alive(self) -> bool:
        server = getattr(self.client, "_server", None)
        return server is None or server.returncode is None


@contextlib.asynccontextmanager
async def lsp_session(settings: Any, encoding: str = "utf-16") -> AsyncIterator[Session]:
    client = make_test_lsp_client()
    session = Session(client)

    @client.feature("deepshiva/status")
    def _on_status(params):
        session.statuses.append(
            params
            if isinstance(params, dict)
            else {"state": params.state, "message": params.message}
        )

    await client.start_io(sys.executable, "-m", "lsp", "--log-level", "WARNING", cwd=str(ROOT))
    try:
        session.initialize_result = await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities(encoding),
                initialization_options=settings,
                root_uri=ROOT.as_uri(),
            )
        )
        yield session
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_session(), 10)
        await client.stop()


class LspThread:
    """One language-server session whose event loop runs in a background thread."""

    def __init__(self, settings: Any, encoding: str = "utf-16"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="lsp-client", daemon=True
        )
        self._thread.start()
        self._cm = lsp_session(settings, encoding)
        self.session: Session = self.call(self._cm.__aenter__(), timeout=60)

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn, *args):
        """Run a plain function on the client's loop (notifications must be sent from there)."""

        async def _do():
            return fn(*args)

        return self.call(_do())

    def close(self) -> None:
        try:
            self.call(self._cm.__aexit__(None, None, None), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
