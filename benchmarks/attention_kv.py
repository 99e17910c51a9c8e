"""Time the C attention of one decode step over an fp32, bf16 or fp16 KV cache, per kernel variant.

A decode step at a long context reads every cached key and value of every layer; this times
``core.cpu_attention.attend`` alone on a model's attention shape (default: stable-code-3b's 32
heads of 80 dims, no grouped-query sharing, 1024 cached keys), over as many layers' caches as
the model has, so each call reads its cache from memory as a decode step does. It prints ms a
layer (the best of ``--repeats`` passes over the layers), the bytes a layer's cache holds and the
GB/s that makes, and the process's peak RSS. Run it from another checkout (``PYTHONPATH=/work/main``)
with ``--kinds fp32`` to time that tree's loops on the same shape (before 16-bit caches existed
``attend`` read fp32 only).

    .venv/bin/python -m benchmarks.attention_kv --heads 32 --kv-heads 32 --dim 80 --keys 1024
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np


def caches(kind: str, kv_heads: int, capacity: int, dim: int, rng) -> tuple:
    """Random keys and values of one layer, stored as ``kind`` (bf16 as its bits, uint16)."""
    import torch

    k, v = (rng.standard_normal((kv_heads, capacity, dim), dtype=np.float32) for _ in range(2))
    if kind == "fp16":
        return k.astype(np.float16), v.astype(np.float16)
    if kind == "bf16":
        return tuple(
            torch.from_numpy(a).bfloat16().view(torch.int16).numpy().view(np.uint16) for a in (k, v)
        )
    return k, v


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=32)
    parser.add_argument("--dim", type=int, default=80)
    parser.add_argument("--keys", type=int, default=1024, help="cached keys a query attends to")
    parser.add_argument("--layers", type=int, default=32, help="caches read in turn (a model's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kinds", nargs="+", default=["fp32", "bf16", "fp16"])
    parser.add_argument("--variants", nargs="*", default=None, help="default: every one here")
    args = parser.parse_args(argv)

    from core import compact_weights, cpu_attention

    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, args.heads, args.dim), dtype=np.float32)
    start = args.keys - 1
    rows = []
    for variant in args.variants or compact_weights.variants():
        compact_weights.use_variant(variant)
        for kind in args.kinds:
            layers = [
                caches(kind, args.kv_heads, args.keys, args.dim, rng) for _ in range(args.layers)
            ]
            best = float("inf")
            for _ in range(args.repeats):
                started = time.perf_counter()
                for k, v in layers:
                    cpu_attention.attend(q, k, v, start, args.dim**-0.5, args.threads)
                best = min(best, (time.perf_counter() - started) / args.layers)
            layer_bytes = 2 * layers[0][0].nbytes
            rows.append(
                {
                    "variant": variant,
                    "kv": kind,
                    "ms_per_layer": round(best * 1e3, 3),
                    "cache_mb_per_layer": round(layer_bytes / 1e6, 2),
                    "gb_s": round(layer_bytes / best / 1e9, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            del layers
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": round(peak), "threads": args.threads}))


if __name__ == "__main__":
    main()
