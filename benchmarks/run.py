"""One command for every benchmark: prints tables and writes JSON.

    .venv/bin/python -m benchmarks.run                      # shipped model: engine + replay
    .venv/bin/python -m benchmarks.run --models shipped,llama-1b --prompts 256,1024,2048
    .venv/bin/python -m benchmarks.run --http               # also the replay through the HTTP API

Ratios compare against the plain-generate baseline measured in the same run, so a busy machine
slows both sides alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

from .common import ROOT, print_table, process_cpu_s, start_server, write_report


def ratio_rows(results: dict[str, dict], plain: str, llamacpp: str) -> list[dict]:
    """Summaries as rows, with p50 ratios against the plain baseline and llama.cpp of the same run."""
    base_p50 = results.get(plain, {}).get("p50_ms")
    cpp_p50 = results.get(llamacpp, {}).get("p50_ms")
    rows = []
    for name, summary in results.items():
        summary = dict(summary, engine=name)
        if base_p50 and summary["p50_ms"]:
            summary["p50_speedup_vs_plain"] = round(base_p50 / summary["p50_ms"], 2)
        if cpp_p50 and summary["p50_ms"]:
            summary["p50_vs_llamacpp"] = round(cpp_p50 / summary["p50_ms"], 2)
        rows.append(summary)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        default="shipped",
        help="comma list: shipped, llama-1b, stablelm-3b or a directory",
    )
    parser.add_argument("--prompts", default="256,1024,2048", help="prompt lengths in tokens")
    parser.add_argument("--new", type=int, default=64, help="new tokens per engine measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--replay-model", default="shipped")
    parser.add_argument(
        "--replay-file", default="tokenize.py", help="standard-library file to retype"
    )
    parser.add_argument("--replay-lines", type=int, default=25)
    parser.add_argument("--replay-start", type=int, default=300)
    parser.add_argument(
        "--http",
        action="store_true",
        help="also replay through the HTTP API and the language server",
    )
    parser.add_argument(
        "--burst",
        action="store_true",
        help="also replay with no debounce (a request at every keystroke, superseded in bursts)",
    )
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument(
        "--no-llamacpp",
        action="store_true",
        help="engine table without llama.cpp (a 3B fp32 model and its f32 GGUF do not "
        "both fit in 24 GiB)",
    )
    parser.add_argument("--skip-replay", action="store_true", help="engine table only")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latest.json"))
    args = parser.parse_args(argv)

    from core import OptimizedLLM

    from . import engine, replay
    from .shapes import model_dir

    report: dict = {
        "command": "python -m benchmarks.run "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg": os.getloadavg(),
        },
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if not args.skip_engine:
        prompts = [int(p) for p in args.prompts.split(",")]
        report["engine"] = engine.run(
            args.models.split(","),
            prompts,
            args.new,
            args.repeats,
            with_llamacpp=not args.no_llamacpp,
        )
        print(f"\nEngine (memory bandwidth {report['engine']['memory_bandwidth_gbs']} GB/s)")
        print_table(
            report["engine"]["rows"],
            [
                "model",
                "engine",
                "prompt_tokens",
                "decode_weights",
                "threads",
                "ttft_ms",
                "decode_tok_s",
                "ms_per_token",
                "bandwidth_share",
                "prefill_flops_share",
                "decode_speedup_vs_plain",
                "ttft_speedup_vs_plain",
                "decode_vs_llamacpp",
                "ttft_vs_llamacpp",
                "decode_vs_deepshiva",
            ],
        )

    if args.skip_replay:
        return write_report(report, args.out)
    schedule = replay.build_schedule(args.replay_file, args.replay_start, args.replay_lines)
    llm = OptimizedLLM(str(model_dir(args.replay_model)))
    llm.warmup()
    results = {}
    results["plain-generate"] = replay.summary(
        replay.replay(replay.plain_generate_engine(llm), schedule)
    )
    llm.prompt_lookup = False
    results["deepshiva-no-lookup"] = replay.summary(
        replay.replay(replay.deepshiva_engine(llm), schedule)
    )
    llm.prompt_lookup = True
    drafted, accepted = llm.runner.drafted_tokens, llm.runner.accepted_tokens
    results["deepshiva"] = replay.summary(replay.replay(replay.deepshiva_engine(llm), schedule))
    drafted, accepted = llm.runner.drafted_tokens - drafted, llm.runner.accepted_tokens - accepted
    results["deepshiva"]["lookup_acceptance"] = round(accepted / drafted, 3) if drafted else None
    from . import llamacpp

    if llamacpp.available():
        cpp = llamacpp.load(
            llamacpp.gguf_for(model_dir(args.replay_model)),
            llm.context_length,
            torch.get_num_threads(),
        )
        results["llama.cpp"] = replay.summary(
            replay.replay(llamacpp.replay_engine(cpp, llm), schedule)
        )
        del cpp
    if args.http:
        port = 5077
        server = start_server(str(model_dir(args.replay_model)), port)
        try:
            url = f"http://127.0.0.1:{port}"
            from .lsp_replay import replay_through_lsp

            cpu = process_cpu_s(server.pid)
            results["deepshiva-http"] = replay.summary(
                replay.replay(replay.http_engine(url), schedule)
            )
            cpu_after = process_cpu_s(server.pid)
            results["deepshiva-lsp"] = replay_through_lsp(
                url, args.replay_file, args.replay_start, args.replay_lines
            )
            if cpu is not None:
                results["deepshiva-http"]["server_cpu_s"] = round(cpu_after - cpu, 1)
                results["deepshiva-lsp"]["server_cpu_s"] = round(
                    process_cpu_s(server.pid) - cpu_after, 1
                )
        finally:
            server.terminate()
            server.wait(30)
    rows = ratio_rows(results, "plain-generate", "llama.cpp")
    if args.burst:
        burst = {}
        llm.prompt_lookup = True
        burst["plain-generate"] = replay.summary(
            replay.replay(
                replay.plain_generate_engine(llm, drop_queued=True), schedule, debounce_s=0
            )
        )
        burst["deepshiva"] = replay.summary(
            replay.replay(replay.deepshiva_engine(llm), schedule, debounce_s=0)
        )
        if llamacpp.available():
            cpp = llamacpp.load(
                llamacpp.gguf_for(model_dir(args.replay_model)),
                llm.context_length,
                torch.get_num_threads(),
            )
            burst["llama.cpp"] = replay.summary(
                replay.replay(llamacpp.replay_engine(cpp, llm), schedule, debounce_s=0)
            )
            del cpp
        report["replay_no_debounce"] = {"rows": ratio_rows(burst, "plain-generate", "llama.cpp")}
    report["replay"] = {
        "file": args.replay_file,
        "lines": args.replay_lines,
        "keystrokes": len(schedule),
        "rows": rows,
    }
    print(
        f"\nEditing replay: {args.replay_lines} lines of {args.replay_file}, {len(schedule)} keystrokes"
    )
    columns = [
        "engine",
        "suggestions_timed",
        "suggestions_shown",
        "p50_ms",
        "p95_ms",
        "p50_speedup_vs_plain",
        "p50_vs_llamacpp",
        "requests",
        "superseded",
        "prefill_per_superseded",
        "decode_per_superseded",
        "stop_ms_mean",
        "stop_ms_p50",
        "lookup_acceptance",
        "api_calls",
        "cpu_s",
        "server_cpu_s",
        "wall_s",
    ]
    print_table(rows, columns)
    if args.burst:
        print("\nThe same replay with no debounce: a request at every keystroke")
        print_table(report["replay_no_debounce"]["rows"], columns)
    return write_report(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
