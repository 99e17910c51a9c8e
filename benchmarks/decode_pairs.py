"""Decode speed against llama.cpp at the same precision, in interleaved rounds.

This VM's memory bandwidth drifts by a quarter within minutes (26-36 GB/s in one hour here), and
``benchmarks.engine`` measures each engine in turn, so a drift between two rows moves their ratio
as much as any change of ours. Here the two engines alternate: each round decodes the same
prompt once with DeepShiva and once with llama.cpp (the same model in GGUF at the same
precision), both loaded at once, and the ratio is taken per round; the median of those ratios
is the result. Needs llama-cpp-python (``scripts/install-llamacpp``). ``int4`` is compared with
llama.cpp's Q4_0 (the same blocks of 32 with one 16-bit scale each), quantized by llama.cpp from
the BF16 file. ``--dtype float32`` keeps fp32 masters (what the NumPy decode path reads today on
a CPU with native bf16, where the automatic dtype would be bf16); ``DEEPSHIVA_CPU=avx2`` runs
the AVX2 kernels (and decides paths as on a CPU without native bf16).

    .venv/bin/python -m benchmarks.decode_pairs --model llama-1b --rounds 7 [--dtype float32]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys

import torch

from core import OptimizedLLM

from . import llamacpp
from .baseline import decode_through
from .engine import LLAMACPP_TYPES, measure_ours, prompt_ids
from .shapes import model_dir
from benchmarks.common import write_report

PRECISIONS = ("bf16", "fp16", "int8")
CPP_TYPES = dict(LLAMACPP_TYPES, int4="q4_0")


def pair_rounds(llm: OptimizedLLM, cpp, ids: list[int], new: int, rounds: int) -> dict:
    """Decode tokens/s of both engines, alternating which goes first, and their per-round ratios."""
    ours, theirs, their_tokens = [], [], []
    for r in range(rounds):
        order = ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")
        for engine in order:
            if engine == "ours":
                ours.append(measure_ours(llm, ids, new, 1)["decode_tok_s"])
            else:
                measured = llamacpp.measure(cpp, ids, new, 1)
                theirs.append(measured["decode_tok_s"])
                their_tokens.append(measured["tokens"])
    ratios = [a / b for a, b in zip(ours, theirs)]
    return {
        "deepshiva_tok_s": [round(x, 2) for x in ours],
        "llamacpp_tok_s": [round(x, 2) for x in theirs],
        "llamacpp_tokens": their_tokens,  # under ``new``: llama.cpp stopped at an end token
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-1b", help="shipped, llama-1b or a directory")
    parser.add_argument("--prompt", type=int, default=256, help="prompt tokens")
    parser.add_argument("--new", type=int, default=64, help="tokens decoded per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--out", help="write the results here as JSON")
    parser.add_argument(
        "--dtype", default=None, help="the engine's torch_dtype (default: its automatic choice)"
    )
    parser.add_argument(
        "--llamacpp-plain",
        action="store_true",
        help="load llama.cpp without its extra buffer types (AMX, repacked weights); its "
        "Q8_0/Q4_0 crash in them on some CPUs (benchmarks.llamacpp.load)",
    )
    args = parser.parse_args(argv)
    if not llamacpp.available():
        print("llama-cpp-python is not installed: run scripts/install-llamacpp", file=sys.stderr)
        return 2
    directory = model_dir(args.model)
    llm = OptimizedLLM(str(directory), torch_dtype=args.dtype)
    llm.prompt_lookup = False  # random weights repeat themselves: measure the plain decode loop
    llm.loop_guard = False
    ids = prompt_ids(llm.tokenizer, args.prompt)
    # One runner at a time: each holds its own fused fp32 matrices, compact copies and KV cache
    # (about 4.5 GB on the 1B shape), and three at once would not fit beside the model.
    llm.runner.release()
    llm.runner = None
    gc.collect()
    from core import compact_weights

    results = {
        "model": args.model,
        "prompt_tokens": args.prompt,
        "new_tokens": args.new,
        "threads": torch.get_num_threads(),
        "dtype": str(llm.dtype),
        "kernels": compact_weights.variant(),
        "llamacpp_extra_buffers": not args.llamacpp_plain,
        "precisions": {},
    }
    print(
        f"{args.model}: masters {llm.dtype}, kernels {compact_weights.variant()}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )
    for precision in args.precisions.split(","):
        decode_through(llm, directory, precision)
        llm.warmup()
        cpp = llamacpp.load(
            llamacpp.gguf_for(directory, CPP_TYPES[precision]),
            llm.context_length,
            torch.get_num_threads(),
            extra_buffers=not args.llamacpp_plain,
        )
        try:
            measured = pair_rounds(llm, cpp, ids, args.new, args.rounds)
        finally:
            del cpp
            llm.runner.release()
            llm.runner = None
            gc.collect()
        results["precisions"][precision] = measured
        print(
            f"{precision:5} vs llama.cpp {CPP_TYPES[precision]:5}: DeepShiva "
            f"{statistics.median(measured['deepshiva_tok_s']):6.1f} tok/s, llama.cpp "
            f"{statistics.median(measured['llamacpp_tok_s']):6.1f}; ratio per round median "
            f"{measured['ratio_median']:.2f} (range {measured['ratio_range'][0]:.2f}-"
            f"{measured['ratio_range'][1]:.2f}); llama.cpp tokens per round "
            f"{measured['llamacpp_tokens']}",
            flush=True,
        )
    return write_report(results, args.out) if args.out else 0


if __name__ == "__main__":
    sys.exit(main())
