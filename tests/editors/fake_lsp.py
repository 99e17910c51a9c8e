"""A stand-in for deepshiva-lsp with fixed answers, to test the editor plugins' mechanics
(ghost text, partial accepts, dismiss, status) quickly and deterministically.

Every inline completion request gets one item that replaces the line up to the cursor with that
text followed by SUGGESTION (so clients must handle `range`). Accepted items run the command
`deepshiva.accepted`, which is counted; `deepshiva.stats` returns the count.
"""

from __future__ import annotations

import sys

from lsprotocol import types
from pygls.lsp.server import LanguageServer

SUGGESTION = "total = alpha + beta\nreturn total"

server = LanguageServer("fake-deepshiva-lsp", "0.0.1")
accepted = {"count": 0}


@server.feature(types.INITIALIZED)
def initialized(ls: LanguageServer, params: types.InitializedParams) -> None:
    ls.protocol.notify("deepshiva/status", {"state": "ready", "message": "fake server ready"})


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
def inline_completion(
    ls: LanguageServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList:
    doc = ls.workspace.get_text_document(params.text_document.uri)
    lines = doc.lines
    line = lines[params.position.line] if params.position.line < len(lines) else ""
    before = line.rstrip("\n")[: params.position.character]
    start = types.Position(line=params.position.line, character=0)
    typed = before.lstrip()
    # Continue SUGGESTION from what is already typed on the line (typed-ahead).
    rest = SUGGESTION[len(typed) :] if SUGGESTION.startswith(typed) else SUGGESTION
    if not rest:
        return types.InlineCompletionList(items=[])
    return types.InlineCompletionList(
        items=[
            types.InlineCompletionItem(
                insert_text=before + rest,
                range=types.Range(start=start, end=params.position),
                command=types.Command(
                    title="accepted", command="deepshiva.accepted", arguments=["x"]
                ),
            )
        ]
    )


@server.command("deepshiva.accepted")
def on_accepted(ls: LanguageServer, *args) -> None:
    accepted["count"] += 1


@server.command("deepshiva.stats")
def stats(ls: LanguageServer, *args) -> dict:
    return {"accepted": accepted["count"]}


if __name__ == "__main__":
    server.start_io(sys.stdin.buffer, sys.stdout.buffer)
