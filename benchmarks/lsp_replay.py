"""The editing replay through the language server, driven like VS Code drives it.

Every keystroke is an incremental ``didChange`` followed by an automatic
``textDocument/inlineCompletion`` request; the previous request is cancelled
(``$/cancelRequest``) as VS Code does. deepshiva-lsp debounces, lets the newest request win and
closes superseded HTTP streams. At each line end the typist waits for the suggestion.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from lsprotocol import types
from pytest_lsp.client import make_test_lsp_client

from .common import print_table, process_cpu_s, start_server, write_report
from .replay import build_schedule

CAPABILITIES = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(
        synchronization=types.TextDocumentSyncClientCapabilities(dynamic_registration=False),
        inline_completion=types.InlineCompletionClientCapabilities(dynamic_registration=False),
    ),
)


def _position(text: str) -> types.Position:
    line = text.count("\n")
    column = len(text) - (text.rfind("\n") + 1)
    return types.Position(
        line=line, character=len(text[len(text) - column :].encode("utf-16-le")) // 2
    )


async def _replay(
    api_url: str, file_name: str, first_line: int, lines: int, debounce_ms: int, adaptive: bool
) -> dict:
    schedule = build_schedule(file_name, first_line, lines, context_chars=10**9)
    before = schedule[0].prefix[:-1]
    after = schedule[0].suffix
    client = make_test_lsp_client()
    await client.start_io(sys.executable, "-m", "lsp", "--log-level", "WARNING")
    settings = {
        "apiUrl": api_url,
        "debounceMs": debounce_ms,
        "adaptiveDebounce": adaptive,
        "temperature": 0,
        "maxTokens": 48,
        "multiline": "never",
        "requestTimeoutMs": 15000,
        "slowThresholdMs": 15000,
    }
    await client.initialize_session(
        types.InitializeParams(capabilities=CAPABILITIES, initialization_options=settings)
    )
    uri = "file:///replay.py"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=before + after
            )
        )
    )
    latencies, shown, version = [], 0, 1
    typed = before
    inflight: asyncio.Future | None = None
    inflight_id = ""
    started_cpu, started = time.process_time(), time.perf_counter()
    for key in schedule:
        char = key.prefix[-1]
        pos = _position(typed)
        version += 1
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(start=pos, end=pos), text=char
                    )
                ],
            )
        )
        typed += char
        pressed = time.perf_counter()
        if inflight is not None and not inflight.done():
            # Cancelling a client future sends nothing: say it explicitly, as VS Code does.
            client.protocol.notify("$/cancelRequest", types.CancelParams(id=inflight_id))
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=_position(typed),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
        inflight_id = f"replay-{version}"
        inflight = asyncio.wrap_future(
            client.protocol.send_request(
                "textDocument/inlineCompletion", params, msg_id=inflight_id
            )
        )
        inflight.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        if key.line_end:
            try:
                result = await asyncio.wait_for(asyncio.shield(inflight), 15)
                items = result.items if hasattr(result, "items") else (result or [])
                if items:
                    shown += 1
                latencies.append((time.perf_counter() - pressed) * 1000)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001 - counted as no suggestion
                pass
        await asyncio.sleep(max(key.gap_s - (time.perf_counter() - pressed), 0))
    stats = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="deepshiva.stats")
    )
    cpu = time.process_time() - started_cpu
    await client.shutdown_session()
    await client.stop()
    lat = sorted(latencies)
    return {
        "engine": "deepshiva-lsp",
        "suggestions_timed": len(lat),
        "suggestions_shown": shown,
        "p50_ms": round(statistics.median(lat), 1) if lat else None,
        "p95_ms": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 1) if lat else None,
        "requests": len(schedule),
        "api_calls": stats.get("apiCalls") if isinstance(stats, dict) else None,
        "lsp_cancelled": stats.get("cancelled") if isinstance(stats, dict) else None,
        "client_cpu_s": round(cpu, 1),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def replay_through_lsp(
    api_url: str,
    file_name: str,
    first_line: int,
    lines: int,
    debounce_ms: int = 150,
    adaptive: bool = True,
) -> dict:
    """Run the replay against deepshiva-lsp talking to the API at ``api_url`` (``debounceMs``
    the most it waits; with ``adaptive``, the language server's default, less for a fast API)."""
    return asyncio.run(_replay(api_url, file_name, first_line, lines, debounce_ms, adaptive))


def main(argv: list[str] | None = None) -> int:
    """The LSP replay at several debounce settings against one API server: latency against work."""
    from .shapes import model_dir

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "--debounce-ms",
        default="150,50,0",
        help="comma list of fixed debounceMs (adaptiveDebounce off); 'adaptive' for the default",
    )
    parser.add_argument("--model", default="shipped")
    parser.add_argument("--replay-file", default="tokenize.py")
    parser.add_argument("--replay-start", type=int, default=300)
    parser.add_argument("--replay-lines", type=int, default=25)
    parser.add_argument("--port", type=int, default=5078)
    parser.add_argument("--out", default="benchmarks/results/lsp-debounce.json")
    args = parser.parse_args(argv)
    server = start_server(str(model_dir(args.model)), args.port)
    rows = []
    try:
        for setting in args.debounce_ms.split(","):
            adaptive = setting == "adaptive"
            debounce = 150 if adaptive else int(setting)
            before = process_cpu_s(server.pid)
            row = replay_through_lsp(
                f"http://127.0.0.1:{args.port}",
                args.replay_file,
                args.replay_start,
                args.replay_lines,
                debounce_ms=debounce,
                adaptive=adaptive,
            )
            after = process_cpu_s(server.pid)
            row.update(
                debounce_ms="adaptive, at most 150" if adaptive else debounce,
                server_cpu_s=round(after - before, 1)
                if before is not None and after is not None
                else None,
            )
            rows.append(row)
    finally:
        server.terminate()
        server.wait(30)
    print_table(
        rows,
        [
            "debounce_ms",
            "suggestions_timed",
            "suggestions_shown",
            "p50_ms",
            "p95_ms",
            "api_calls",
            "lsp_cancelled",
            "server_cpu_s",
            "client_cpu_s",
            "wall_s",
        ],
    )
    return write_report(
        {
            "command": "python -m benchmarks.lsp_replay "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "rows": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    raise SystemExit(main())
