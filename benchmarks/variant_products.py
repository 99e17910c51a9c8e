"""CPU time of one decode-step product per kernel variant and weight format, interleaved.

Process CPU time on one thread, so that a machine shared with other work (which stretches wall
time by whatever share of the cores it takes) moves the figures less than wall time would; the
1B shape's fused gate/up matrix (11264 x 2048), four copies in turn so none stays in cache, five
rounds alternating the variants. ``benchmarks.matvec`` measures wall time and GB/s on a quiet one.

    .venv/bin/python -m benchmarks.variant_products [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from core import compact_weights
from core.compact_weights import CompactWeight

FORMATS = ("bf16", "fp16", "int8", "int4")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=int, default=11264)
    parser.add_argument("--in", dest="cols", type=int, default=2048)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    matrices = {
        f: [CompactWeight(torch.randn(args.out, args.cols), f) for _ in range(4)] for f in FORMATS
    }
    variants = [v for v in compact_weights.variants() if v != "portable"]
    x = np.random.default_rng(0).standard_normal((1, args.cols), dtype=np.float32)
    default, times = compact_weights.variant(), {}
    for _ in range(args.rounds):
        for fmt, ms in matrices.items():
            for variant in variants:
                compact_weights.use_variant(variant)
                started = time.process_time()
                for _ in range(5):
                    for m in ms:
                        m(x, 1)
                times.setdefault((fmt, variant), []).append(
                    (time.process_time() - started) / (5 * len(ms)) * 1e3
                )
    compact_weights.use_variant(default)
    print(
        f"{args.out}x{args.cols}, 1 thread, CPU ms per product, median of {args.rounds} rounds (min)"
    )
    for (fmt, variant), values in times.items():
        print(f"{fmt:5} {variant:10} {statistics.median(values):7.3f} ({min(values):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
