"""Decode speed of each CPU variant of the C kernels on one model, in interleaved rounds.

The kernels hold a variant per kind of CPU (``core.compact_weights.variants()``: portable C, AVX2,
AVX512-BF16) and switch between them at run time, so one process loads the model once and, per
decode-weight format, alternates the variants round by round (the order rotates), each decoding
the same prompt. Reports tokens/s per variant and, per round, each variant's ratio to the default
(the fastest the CPU runs). Peak RSS is printed beside the figures.

    .venv/bin/python -m benchmarks.kernel_variants --model llama-1b --dtype float32 --rounds 5 \\
        [--precisions bf16,int8,int4] [--variants avx2,avx512bf16]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys

import torch

from core import OptimizedLLM, compact_weights

from .baseline import decode_through
from .engine import measure_ours, prompt_ids
from .shapes import model_dir
from benchmarks.common import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-1b", help="shipped, llama-1b or a directory")
    parser.add_argument(
        "--dtype", default="float32", help="masters' torch_dtype (the NumPy decode path reads fp32)"
    )
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precisions", default="bf16,int8,int4")
    parser.add_argument(
        "--variants", help="default: every variant this CPU runs but the portable one"
    )
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    default = compact_weights.variant()
    variants = (
        args.variants.split(",")
        if args.variants
        else [v for v in compact_weights.variants() if v != "portable"]
    )
    llm = OptimizedLLM(str(model_dir(args.model)), torch_dtype=args.dtype)
    llm.prompt_lookup = False  # random weights repeat themselves: measure the plain decode loop
    llm.loop_guard = False
    ids = prompt_ids(llm.tokenizer, args.prompt)
    llm.runner.release()  # one runner at a time (the 1B shape's copies are gigabytes)
    llm.runner = None
    gc.collect()
    results = {
        "model": args.model,
        "dtype": str(llm.dtype),
        "threads": torch.get_num_threads(),
        "default_variant": default,
        "precisions": {},
    }
    print(
        f"{args.model}: masters {llm.dtype}, {torch.get_num_threads()} threads, {args.prompt}-token prompt, "
        f"{args.new} new tokens, default kernels {default}",
        flush=True,
    )
    for precision in args.precisions.split(","):
        decode_through(llm, model_dir(args.model), precision)
        llm.warmup()
        rates: dict[str, list[float]] = {v: [] for v in variants}
        try:
            for r in range(args.rounds):
                order = variants[r % len(variants) :] + variants[: r % len(variants)]
                for variant in order:
                    compact_weights.use_variant(variant)
                    rates[variant].append(measure_ours(llm, ids, args.new, 1)["decode_tok_s"])
        finally:
            compact_weights.use_variant(default)
            llm.runner.release()
            llm.runner = None
            gc.collect()
        base = rates.get(default) or rates[variants[-1]]
        row = {}
        for variant in variants:
            ratios = [a / b for a, b in zip(rates[variant], base)]
            row[variant] = {
                "tok_s": [round(x, 2) for x in rates[variant]],
                "ratio_to_default_median": round(statistics.median(ratios), 3),
            }
            print(
                f"{precision:5} {variant:10} {statistics.median(rates[variant]):6.1f} tok/s "
                f"(rounds {min(rates[variant]):.1f}-{max(rates[variant]):.1f}), per-round ratio to "
                f"{default}: {statistics.median(ratios):.2f}",
                flush=True,
            )
        results["precisions"][precision] = row
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    results["peak_rss_gb"] = round(peak_gb, 2)
    print(f"peak RSS {peak_gb:.2f} GB", flush=True)
    return write_report(results, args.out) if args.out else 0


if __name__ == "__main__":
    sys.exit(main())
