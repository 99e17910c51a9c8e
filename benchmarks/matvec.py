"""One decode step's matrix products by weight format: fp32 (NumPy's OpenBLAS) against the compact
kernels (fp16, bf16, int8, int4; core/compact_weights.py) in each CPU variant of the kernels this
machine runs (portable, avx2, avx512bf16), as GB/s of weights (and scales) streamed.

Twelve distinct matrices are multiplied in turn so that none stays in the CPU's cache, as in a
real decode step, and each format runs in a process of its own: OpenBLAS's and OpenMP's idle
threads spin for a while after a call and would slow whichever format ran next. Compact formats
run twice: on huge pages (``core.page_memory``, the default where the OS offers them) and on
ordinary 4 KiB pages (``DEEPSHIVA_HUGE_PAGES=0``) with ``--small-pages``. ``--rounds`` repeats the
whole sequence of processes (interleaved rounds, medians reported) on a machine others share.

    .venv/bin/python -m benchmarks.matvec [--out 11264] [--in 2048] [--threads 2] [--rounds 1]
        [--variants portable,avx2,avx512bf16] [--formats fp16,bf16,int8,int4] [--small-pages]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FORMATS = ("fp32", "fp16", "bf16", "int8", "int4")
# The CPU kind (core.cpu_capabilities preset) whose fastest kernels are each variant.
CPU_OF_VARIANT = {"portable": "portable", "avx2": "avx2", "avx512bf16": "native-bf16"}
BYTES = {
    "fp32": 4,
    "fp16": 2,
    "bf16": 2,
    "int8": 1,
    "int4": 0.5 + 2 / 32,
}  # int4: its fp16 block scales too


def measure(
    fmt: str, out: int, cols: int, threads: int, matrices: int = 12, rounds: int = 7
) -> dict:
    """Median ms per product and GB/s for one format, in this process."""
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from core.compact_weights import CompactWeight

    torch.manual_seed(0)
    weights = [torch.randn(out, cols) for _ in range(matrices)]
    if fmt == "fp32":
        arrays = [w.numpy() for w in weights]
        products = [lambda x, a=a: x @ a.T for a in arrays]
    else:
        compact = [CompactWeight(w, fmt) for w in weights]
        del weights
        products = [lambda x, c=c: c(x, threads) for c in compact]
    x = np.random.default_rng(0).standard_normal((1, cols), dtype=np.float32)
    times = []
    with threadpool_limits(threads):
        torch.set_num_threads(threads)
        for _ in range(rounds):
            start = time.perf_counter()
            for product in products:
                product(x)
            times.append((time.perf_counter() - start) / matrices)
    seconds = statistics.median(times)
    return {
        "format": fmt,
        "ms": round(seconds * 1e3, 3),
        "gb_s": round(out * cols * BYTES[fmt] / seconds / 1e9, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=int, default=11264, help="rows (the 1B shape's fused gate/up)"
    )
    parser.add_argument("--in", dest="cols", type=int, default=2048, help="columns")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--format", choices=FORMATS, help="measure one format here (used by the parent)"
    )
    parser.add_argument(
        "--formats", default=",".join(FORMATS[1:]), help="compact formats to compare with fp32"
    )
    parser.add_argument("--variants", help="kernel variants (default: every one this CPU runs)")
    parser.add_argument("--small-pages", action="store_true", help="also measure on 4 KiB pages")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of every process")
    args = parser.parse_args(argv)
    if args.format:
        print(json.dumps(measure(args.format, args.out, args.cols, args.threads)))
        return 0
    from core import compact_weights

    variants = args.variants.split(",") if args.variants else list(compact_weights.variants())
    pages_kinds = ("huge pages", "4 KiB pages") if args.small_pages else ("huge pages",)
    configs = [("fp32", "", "")] + [
        (fmt, variant, pages)
        for variant in variants
        for fmt in args.formats.split(",")
        for pages in pages_kinds
    ]
    times: dict[tuple, list[float]] = {config: [] for config in configs}
    for _ in range(args.rounds):
        for config in configs:
            fmt, variant, pages = config
            env = dict(
                os.environ,
                DEEPSHIVA_HUGE_PAGES="0" if pages == "4 KiB pages" else "1",
                **({"DEEPSHIVA_CPU": CPU_OF_VARIANT[variant]} if variant else {}),
            )
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.matvec",
                    "--format",
                    fmt,
                    "--out",
                    str(args.out),
                    "--in",
                    str(args.cols),
                    "--threads",
                    str(args.threads),
                ],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            )
            times[config].append(json.loads(done.stdout.strip().splitlines()[-1])["ms"])
    fp32 = statistics.median(times[configs[0]])
    print(
        f"{args.out}x{args.cols}, {args.threads} threads, median of {args.rounds} interleaved round(s)"
    )
    for (fmt, variant, pages), ms_list in times.items():
        ms = statistics.median(ms_list)
        print(
            f"{fmt:5} {variant or 'OpenBLAS':10} {pages:12} {ms:8.3f} ms "
            f"{args.out * args.cols * BYTES[fmt] / ms / 1e6:6.1f} GB/s  {fp32 / ms:.2f}x fp32"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
