"""A decode step at a long context with one KV cache format against another (16-bit, int8, fp32), interleaved in one process.

The engine's default (the model's 16-bit checkpoint held once, the fused C step) is loaded once;
its KV cache is then rebuilt in each format in turn, filled with random keys and values for
``--context`` positions (a step's cost does not depend on the values, and a prompt that long takes
minutes here), and one-token steps are timed on it. Rounds alternate the formats, each followed
by a plain read of memory (``benchmarks.paths.read_bandwidth_gbs``) so every step time has the
bandwidth of its moment beside it. Prints per format the median ms a step, the bytes a step reads
(the decode weights plus the cache over the context), the GB/s that makes, its share of the plain
read in the same round, and the process's peak RSS.

    .venv/bin/python -m benchmarks.kv_decode_step --model stablelm-3b --context 1024
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def _fill_cache(backend, kv_dtype, end: int) -> None:
    """A fresh cache of ``kv_dtype`` holding ``end`` random positions."""
    import torch

    backend.kv_dtype = kv_dtype
    backend.k_cache = backend.v_cache = None
    backend.capacity = backend.length = 0
    backend._reserve(end + 64)
    for cache in (backend.k_cache, backend.v_cache):
        if kv_dtype == torch.int8:  # rows of int8 values and their scale (core.kv_int8)
            from core import kv_int8

            shape = cache[..., :end, :].shape[:-1] + (backend.head_dim,)
            cache[..., :end, :] = kv_int8.quantize_torch(torch.randn(shape))
        else:
            cache[..., :end, :] = torch.randn(cache[..., :end, :].shape).to(kv_dtype)
    backend.length = end


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="stablelm-3b", help="a benchmarks/shapes.py name")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="steps a format a round")
    parser.add_argument("--formats", nargs="+", default=["bf16", "fp32"])
    args = parser.parse_args(argv)

    from core import OptimizedLLM  # before torch: core sets OpenMP's spin count as it loads
    from core.backends import select

    import torch

    from benchmarks.paths import _peak_rss_mb, read_bandwidth_gbs
    from benchmarks.shapes import model_dir

    llm = OptimizedLLM(str(model_dir(args.model)))
    backend = llm.runner.backend
    threads = torch.get_num_threads()
    weights = backend.blas.compact_bytes()
    times = {f: [] for f in args.formats}
    shares = {f: [] for f in args.formats}
    reads = []
    for r in range(args.rounds):
        order = args.formats if r % 2 == 0 else list(reversed(args.formats))
        for fmt in order:
            _fill_cache(backend, select.KV_FORMATS[fmt], args.context)
            backend.forward([7])  # warm: the cache's pages, the step's buffers
            steps = []
            for i in range(args.steps):
                started = time.perf_counter()
                backend.forward([11 + i])
                steps.append(time.perf_counter() - started)
            step = statistics.median(steps)
            read = read_bandwidth_gbs(threads)
            torch.set_num_threads(threads)
            kv = 2 * backend.k_cache[..., : args.context, :].nbytes
            times[fmt].append(step * 1e3)
            shares[fmt].append((weights + kv) / step / 1e9 / read)
            reads.append(read)
            print(
                json.dumps(
                    {"round": r, "kv": fmt, "ms": round(step * 1e3, 1), "read_gb_s": round(read, 1)}
                ),
                flush=True,
            )
    summary = {}
    for fmt in args.formats:
        _fill_cache(backend, select.KV_FORMATS[fmt], args.context)
        kv = 2 * backend.k_cache[..., : args.context, :].nbytes
        ms = statistics.median(times[fmt])
        summary[fmt] = {
            "ms_per_step": round(ms, 1),
            "per_round_ms": [round(t, 1) for t in times[fmt]],
            "bytes_per_step_mb": round((weights + kv) / 2**20),
            "kv_mb": round(kv / 2**20),
            "decode_gb_s": round((weights + kv) / ms * 1e3 / 1e9, 1),
            "share_of_plain_read": round(statistics.median(shares[fmt]), 2),
        }
    if len(args.formats) == 2:
        a, b = args.formats
        ratios = [y / x for x, y in zip(times[a], times[b])]
        summary[f"{b} / {a} per round"] = [round(x, 3) for x in ratios]
    summary["plain_read_gb_s"] = [round(x, 1) for x in reads]
    summary["peak_rss_mb"] = round(_peak_rss_mb())
    summary["threads"] = threads
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
