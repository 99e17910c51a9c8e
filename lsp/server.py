"""The pygls language server: thin LSP handlers over :class:`~lsp.completer.Completer`.

Handlers translate LSP positions and settings into plain values and back; everything else
(suggestions, cache, status, post-processing) lives in its own module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument, Workspace

from . import __version__
from .api import ApiError
from .completer import Completer
from .context import ContextGatherer, changed_lines, folders_from
from .options import SECTION, Options, merge
from .protocol import EditorProtocol
from .status import Transition
from .text import UTF16, CursorContext, LineIndex, cursor_context

log = logging.getLogger(__name__)

STATUS_NOTIFICATION = "deepshiva/status"
CMD_LOAD_MODEL = "deepshiva.loadModel"
CMD_STATS = "deepshiva.stats"
CMD_ACCEPTED = "deepshiva.accepted"
CMD_STATUS = "deepshiva.status"
CMD_CONTEXT = "deepshiva.context"


class RequestFailed(JsonRpcException):
    """LSP's RequestFailed (-32803): the request was valid but the API refused or failed it."""

    CODE = -32803


class EditorDocument(TextDocument):
    """pygls's document with incremental changes applied by LSP's rules (``text.LineIndex``).

    pygls splits lines with ``str.splitlines()``, which also breaks at form feed, vertical tab,
    U+2028 and more (editors do not), and moves a position past the end of a line onto the next
    line: either way its copy of the document drifted from the editor's. The document keeps its
    line index up to date edit by edit, so a keystroke in a large file does not rescan it."""

    _index: LineIndex | None = None

    @property
    def line_index(self) -> LineIndex:
        """The index of the current text (built once, then updated by each incremental change)."""
        if self._index is None or self._index.text is not self._source:
            self._index = LineIndex(self._source or "")
            self._source = self._index.text
        return self._index

    def _apply_incremental_change(self, change: types.TextDocumentContentChangePartial) -> None:
        encoding = self.position_codec.encoding
        encoding = str(getattr(encoding, "value", encoding) or UTF16)
        start, end = change.range.start, change.range.end
        self._index = self.line_index.apply_change(
            (start.line, start.character), (end.line, end.character), change.text, encoding
        )
        self._source = self._index.text


class EditorWorkspace(Workspace):
    """The workspace pygls builds, holding :class:`EditorDocument` documents."""

    def _create_text_document(self, doc_uri, source=None, version=None, language_id=None):
        return EditorDocument(
            doc_uri,
            source=source,
            version=version,
            language_id=language_id,
            sync_kind=self._sync_kind,
            position_codec=self.position_codec,
        )


class DeepShivaServer(LanguageServer):
    """A LanguageServer carrying the current options and the completer."""

    def __init__(self) -> None:
        super().__init__(
            "deepshiva-lsp",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=EditorProtocol,
        )
        self.options = Options()
        self.init_options: Any = None
        self.completer = Completer(self.options, self.announce)
        self.context = ContextGatherer()
        self._background: set[asyncio.Task] = set()

    # -- helpers used by the handlers ----------------------------------------------------------

    @property
    def encoding(self) -> str:
        try:
            kind = self.workspace.position_encoding
        except RuntimeError:
            return UTF16
        return str(getattr(kind, "value", kind) or UTF16)

    def client_has(self, path: str) -> bool:
        """True if the client capability at dotted ``path`` is present and truthy."""
        node: Any = self.client_capabilities
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                return False
        return bool(node)

    def completion_fallback_wanted(self) -> bool:
        """The completion fallback is on when asked for, or by default for clients that cannot
        show inline completions (so capable editors do not get the suggestion twice)."""
        if not self.options.enabled:
            return False
        if self.options.completion_enabled is not None:
            return self.options.completion_enabled
        return not self.client_has("text_document.inline_completion")

    def announce(self, transition: Transition) -> None:
        """Tell the editor about a change of the API's status (once per change)."""
        try:
            self.protocol.notify(STATUS_NOTIFICATION, transition.notification())
            if transition.show and self.options.show_messages:
                self.window_show_message(
                    types.ShowMessageParams(
                        type=types.MessageType(transition.severity),
                        message=f"DeepShiva: {transition.message}",
                    )
                )
        except Exception:  # no client attached (yet): the state is still kept for deepshiva.status
            log.debug("could not announce %s", transition, exc_info=True)

    async def apply_settings(self, data: Any) -> None:
        options, problems = merge(self.options, data)
        for problem in problems:
            log.warning(problem)
            self.window_show_message(
                types.ShowMessageParams(
                    type=types.MessageType.Warning, message=f"DeepShiva: {problem}"
                )
            )
        if options != self.options:
            self.options = options
            await self.completer.reconfigure(options)

    async def pull_settings(self) -> None:
        """Ask the client for the ``deepshiva`` section (workspace/configuration)."""
        if not self.client_has("workspace.configuration"):
            return
        try:
            result = await self.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
            )
        except Exception as exc:
            log.warning("workspace/configuration failed: %s", exc)
            return
        if result and isinstance(result[0], dict):
            await self.apply_settings(result[0])

    def background(self, coro) -> None:
        """Run ``coro`` without awaiting it (a reference is kept so it is not collected)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def prefetch_after_accept(self, info: dict) -> None:
        """Compute the suggestion at the end of an accepted one before the editor asks, so it
        appears at once (the editor's request joins it, or finds it cached). Waits for the
        editor's didChange that inserts the text, and gives up if it never comes."""
        uri, text = info.get("uri"), info.get("text")
        line, character = info.get("line"), info.get("character")
        if not (isinstance(uri, str) and isinstance(text, str) and text):
            return
        if not (isinstance(line, int) and isinstance(character, int)):
            return
        for _ in range(40):
            doc = self.workspace.text_documents.get(uri)
            if not isinstance(doc, EditorDocument) or not self.options.language_enabled(
                doc.language_id
            ):
                return
            index = doc.line_index
            source = index.text
            start = index.offset_at(line, character, self.encoding)
            if source[start : start + len(text)] == text:
                window = self.options.context_chars
                ctx = cursor_context(
                    source, start + len(text), window.before, window.after, doc.language_id or ""
                )
                await self.completer.suggest((uri, "inline"), ctx, invoked=True, prefetch=True)
                return
            await asyncio.sleep(0.05)

    def open_document(self, uri: str) -> EditorDocument | None:
        """The editor's copy of an open document; None for one it never opened (pygls would read
        it from disk, on the event loop: a FIFO froze the server, /dev/zero filled its memory, and
        a file's text was sent as a prompt though the editor never showed it to us)."""
        doc = self.workspace.text_documents.get(uri)
        return doc if isinstance(doc, EditorDocument) else None

    def context_at(
        self, uri: str, position: types.Position, replace: types.Range | None = None, text: str = ""
    ) -> tuple[CursorContext, types.Range, str] | None:
        """The cursor context at ``position`` (after replacing ``replace`` with ``text``, for a
        selected completion item), the range a suggestion goes in: the cursor (or ``replace``)
        clamped to the document, as the prompt was built from it, and the document's text (with
        that replacement). None if the language is off or the document is not open."""
        doc = self.open_document(uri)
        if doc is None:
            log.info("no completion for %s: the editor has not opened it", uri)
            return None
        if not self.options.language_enabled(doc.language_id):
            return None
        enc = self.encoding
        index = doc.line_index
        source = index.text
        offset = index.offset_at(position.line, position.character, enc)
        if replace is not None:
            start = index.offset_at(replace.start.line, replace.start.character, enc)
            end = max(start, index.offset_at(replace.end.line, replace.end.character, enc))
            rng = types.Range(start=_position(index, start, enc), end=_position(index, end, enc))
            source = source[:start] + text + source[end:]
            offset = start + len(text)
        else:
            at = _position(index, offset, enc)
            rng = types.Range(start=at, end=at)
        window = self.options.context_chars
        return (
            cursor_context(source, offset, window.before, window.after, doc.language_id or ""),
            rng,
            source,
        )

    async def with_project_context(
        self, uri: str, ctx: CursorContext, source: str
    ) -> CursorContext:
        """``ctx`` with the other files' context the settings ask for (lsp/context.py)."""
        found = source.find(ctx.prefix + ctx.suffix)  # the windows are one contiguous piece of it
        offset = found + len(ctx.prefix) if found >= 0 else len(ctx.prefix)
        items = await self.context.gather(
            uri, source, offset, ctx.language_id, self.options.project_context
        )
        return dataclasses.replace(
            ctx, project_context=tuple((i["path"], i["text"]) for i in items)
        )


def _position(index: LineIndex, offset: int, encoding: str) -> types.Position:
    line, character = index.position_at(offset, encoding)
    return types.Position(line=line, character=character)


server = DeepShivaServer()


def _accept_command(uri: str, kind: str, text: str, start: types.Position) -> types.Command:
    """``item.command``: the editor runs it on accept; the arguments say what was inserted
    where, so the next suggestion can be computed ahead."""
    return types.Command(
        title="DeepShiva: suggestion accepted",
        command=CMD_ACCEPTED,
        arguments=[
            {
                "uri": uri,
                "kind": kind,
                "length": len(text),
                "text": text,
                "line": start.line,
                "character": start.character,
            }
        ],
    )


@server.feature(types.INITIALIZE)
async def initialize(ls: DeepShivaServer, params: types.InitializeParams) -> None:
    ls.workspace.__class__ = EditorWorkspace  # pygls creates the workspace just before this handler
    ls.init_options = params.initialization_options
    options, problems = merge(Options(), params.initialization_options)
    for problem in problems:  # no messages before initialize has answered: log only
        log.warning(problem)
    ls.options = options
    ls.context.set_folders(
        folders_from(params.workspace_folders, params.root_uri, params.root_path)
    )
    await ls.completer.reconfigure(options)


@server.feature(types.INITIALIZED)
async def initialized(ls: DeepShivaServer, params: types.InitializedParams) -> None:
    await ls.pull_settings()
    await ls.completer.probe()


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def did_change_configuration(
    ls: DeepShivaServer, params: types.DidChangeConfigurationParams
) -> None:
    settings = params.settings
    if isinstance(settings, dict) and settings:
        await ls.apply_settings(settings)
    else:  # the pull model: settings is null, ask for them
        await ls.pull_settings()


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: DeepShivaServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.completer.forget(params.text_document.uri)
    ls.context.closed(params.text_document.uri)


# The context gatherer's index follows the documents (pygls has applied the change already).
@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: DeepShivaServer, params: types.DidOpenTextDocumentParams) -> None:
    doc = params.text_document
    ls.context.opened(doc.uri, doc.text, doc.version)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: DeepShivaServer, params: types.DidChangeTextDocumentParams) -> None:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    ls.context.changed(doc.uri, doc.source, doc.version or 0, changed_lines(params.content_changes))


@server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
def did_save(ls: DeepShivaServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.context.saved(params.text_document.uri)


@server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
def did_change_folders(ls: DeepShivaServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
    folders = [p for p in ls.context.folders]
    removed = {f.uri for f in params.event.removed}
    kept = [p for p in folders if p.as_uri() not in removed]
    ls.context.set_folders(kept + folders_from(params.event.added, None, None))


@server.feature(types.SHUTDOWN)
async def shutdown(ls: DeepShivaServer, *args) -> None:
    await ls.completer.aclose()


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(
    ls: DeepShivaServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList | None:
    if not (ls.options.enabled and ls.options.inline_completion_enabled):
        return None
    uri, position = params.text_document.uri, params.position
    selected = params.context.selected_completion_info
    replace = selected.range if selected else None
    prefix_text = selected.text if selected else ""
    found = ls.context_at(uri, position, replace, prefix_text)
    if found is None:
        return None
    ctx, rng, source = found
    ctx = await ls.with_project_context(uri, ctx, source)
    invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    version = ls.open_document(uri).version
    text = await ls.completer.suggest((uri, "inline"), ctx, invoked=invoked)
    doc = ls.open_document(uri)
    if not text or doc is None or doc.version != version:
        return types.InlineCompletionList(items=[])  # nothing, or made for text that has changed
    ls.completer.stats.shown += 1
    # Without a selected item: insert at the cursor (an explicit empty range, or VS Code would
    # replace the word at the cursor). With one: extend its text over its range, as the spec says.
    # Either is clamped to the document, as the prompt was.
    insert = prefix_text + text
    item = types.InlineCompletionItem(
        insert_text=insert, range=rng, command=_accept_command(uri, "inline", insert, rng.start)
    )
    return types.InlineCompletionList(items=[item])


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False))
async def completion(
    ls: DeepShivaServer, params: types.CompletionParams
) -> types.CompletionList | None:
    if not ls.completion_fallback_wanted():
        return None
    uri, position = params.text_document.uri, params.position
    found = ls.context_at(uri, position)
    if found is None:
        return None
    ctx, rng, source = found
    ctx = await ls.with_project_context(uri, ctx, source)
    version = ls.open_document(uri).version
    text = await ls.completer.suggest((uri, "completion"), ctx, invoked=False)
    doc = ls.open_document(uri)
    if not text or doc is None or doc.version != version:
        return types.CompletionList(is_incomplete=True, items=[])  # nothing, or made for old text
    ls.completer.stats.shown += 1
    first = text.strip().split("\n")[0]
    label = (first[:60] + "…") if len(first) > 60 or "\n" in text.strip() else first
    item = types.CompletionItem(
        label=label or text.strip()[:60],
        kind=types.CompletionItemKind.Text,
        detail="DeepShiva",
        documentation=text,  # a plain string: every client accepts it
        sort_text="0",
        filter_text=text,
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=rng, new_text=text),
        command=_accept_command(uri, "completion", text, rng.start),
    )
    return types.CompletionList(is_incomplete=True, items=[item])


@server.command(CMD_ACCEPTED)
def accepted(ls: DeepShivaServer, *args: Any) -> None:
    ls.completer.stats.accepted += 1
    info = next((a for a in args if isinstance(a, dict)), None)
    if info and ls.options.enabled and ls.options.prefetch_on_accept:
        ls.background(ls.prefetch_after_accept(info))


@server.command(CMD_STATS)
def stats(ls: DeepShivaServer, *args: Any) -> dict:
    fim = ls.completer.fim
    return {
        **ls.completer.stats.as_dict(),
        "debounceMs": round(ls.completer.debounce_ms(), 1),
        "model": fim.model,
        "fillInTheMiddle": fim.sends_suffix,
    }


@server.command(CMD_STATUS)
def status(ls: DeepShivaServer, *args: Any) -> dict:
    tracker = ls.completer.status
    return {"state": tracker.state.value if tracker.state else None, "message": tracker.message}


@server.command(CMD_CONTEXT)
def context(ls: DeepShivaServer, *args: Any) -> list[dict]:
    """The context items last sent for a document (argument: its URI): path, text and source."""
    uri = next((a for a in args if isinstance(a, str)), None)
    return ls.context.last.get(uri, []) if uri else []


@server.command(CMD_LOAD_MODEL)
async def load_model(ls: DeepShivaServer, *args: Any) -> dict:
    """Load a model on the API (argument: a name, or ``{"modelName": ...}``; default: the
    ``model`` setting, else the API's default), reporting work-done progress meanwhile."""
    name = _model_argument(args) or ls.options.model
    label = name or "the default model"
    token: str | None = None
    if ls.client_has("window.work_done_progress"):
        token = f"deepshiva-load-{uuid.uuid4()}"
        try:
            await ls.work_done_progress.create_async(token)
        except Exception as exc:
            log.warning("window/workDoneProgress/create failed: %s", exc)
            token = None
    if token:
        ls.work_done_progress.begin(
            token, types.WorkDoneProgressBegin(title="DeepShiva", message=f"Loading {label}")
        )
    ticker = asyncio.get_running_loop().create_task(_tick(ls, token, label))
    try:
        result = await ls.completer.load_model(name)
    except ApiError as exc:
        if token:
            ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=exc.message))
        raise RequestFailed(
            f"DeepShiva could not load {label}: {exc.message}", data={"status": exc.status_code}
        ) from exc
    finally:
        ticker.cancel()
    if token:
        ls.work_done_progress.end(
            token, types.WorkDoneProgressEnd(message=str(result.get("message") or "loaded"))
        )
    return result


async def _tick(ls: DeepShivaServer, token: str | None, label: str) -> None:
    """Report elapsed time every second while a model loads (the API gives no percentage)."""
    if not token:
        return
    seconds = 0
    while True:
        await asyncio.sleep(1)
        seconds += 1
        ls.work_done_progress.report(
            token, types.WorkDoneProgressReport(message=f"Loading {label} ({seconds} s)")
        )


def _model_argument(args: tuple) -> str | None:
    for arg in args:
        if isinstance(arg, str) and arg:
            return arg
        if isinstance(arg, dict):
            value = arg.get("modelName") or arg.get("model_name") or arg.get("model")
            if value:
                return str(value)
    return None
