"""Decode speed of one model with two or more decode-weight formats, in interleaved rounds.

The same engine holds a runner per format (``--dtype bfloat16`` checkpoint by default), each
built from a model of its own and holding its weights once (the 1B shape's int8 and int4 runners
beside one another peak under 3 GB); each round decodes the same
prompt once with every format, the order turning each round, and the ratio to the first format
is taken per round: on a machine others share, load and memory bandwidth drift between rounds
but hardly within one. Peak RSS of the process is printed beside the table.

    .venv/bin/python -m benchmarks.decode_weight_pairs --model llama-1b --formats int8,int4 --rounds 7
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys

import torch

from core import OptimizedLLM, compact_weights
from core.generation import ModelRunner

from .baseline import transformers_model
from .engine import measure_ours, prompt_ids
from .shapes import model_dir
from benchmarks.common import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-1b", help="shipped, a shape name or a directory")
    parser.add_argument("--formats", default="int8,int4", help="the first is the baseline")
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens")
    parser.add_argument("--new", type=int, default=32, help="tokens decoded per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dtype", default="bfloat16", help="the masters' torch_dtype")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    formats = args.formats.split(",")
    llm = OptimizedLLM(
        str(model_dir(args.model)), torch_dtype=args.dtype, decode_weights=formats[0]
    )
    llm.prompt_lookup = False  # random weights repeat themselves: measure the plain decode loop
    llm.loop_guard = False
    runners = {formats[0]: llm.runner}
    for fmt in formats[1:]:  # a model of its own each: the engine empties what it does not read
        model = transformers_model(model_dir(args.model), llm.dtype)
        runners[fmt] = ModelRunner(model, decode_weights=fmt, release_model=True)
        del model
    ids = prompt_ids(llm.tokenizer, args.prompt)
    rates: dict[str, list[float]] = {fmt: [] for fmt in formats}
    for fmt in formats:  # warm-up: first calls pay lazy set-up
        llm.runner = runners[fmt]
        measure_ours(llm, ids[:8], 2, 1)
    for r in range(args.rounds):
        order = formats if r % 2 == 0 else formats[::-1]
        for fmt in order:
            llm.runner = runners[fmt]
            rates[fmt].append(measure_ours(llm, ids, args.new, 1)["decode_tok_s"])
        print(f"round {r + 1}: " + ", ".join(f"{f} {rates[f][-1]:.2f} tok/s" for f in formats))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    base = rates[formats[0]]
    results = {
        "model": args.model,
        "masters": str(llm.dtype),
        "kernels": compact_weights.variant(),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "peak_rss_gb": round(peak_gb, 2),
        "formats": {},
    }
    print(
        f"{args.model}: masters {llm.dtype}, kernels {compact_weights.variant()}, "
        f"{torch.get_num_threads()} threads, {args.rounds} rounds, peak RSS {peak_gb:.2f} GB, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"| decode weights | decode tok/s (median) | per-round ratio to {formats[0]} (median, range) |"
    )
    print("|---|---|---|")
    for fmt in formats:
        ratios = [a / b for a, b in zip(rates[fmt], base)]
        results["formats"][fmt] = {
            "tok_s": [round(x, 2) for x in rates[fmt]],
            "ratio_median": round(statistics.median(ratios), 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        }
        print(
            f"| {fmt} | {statistics.median(rates[fmt]):.1f} | {statistics.median(ratios):.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f}) |"
        )
    return write_report(results, args.out) if args.out else 0


if __name__ == "__main__":
    sys.exit(main())
