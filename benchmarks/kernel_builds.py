"""One matrix product of a decode step from two builds of the C kernels: this tree's and another
(``--other``, e.g. the main branch's ``core/_kernels*.so``), in interleaved rounds in one process.

The other build is loaded beside this one under its own module object, and both multiply the
same compact matrices (the layout is the same), eight distinct ones in turn so none stays in
cache. ``--baseline`` (int8 by default, this tree's build) runs in the same rounds, so each
format's speed is also a ratio to it. Reports the median ms per product, the ratio to the
baseline and the largest difference between the two builds' results.

    .venv/bin/python -m benchmarks.kernel_builds --other MAIN/core/_kernels.cpython-311-x86_64-linux-gnu.so \\
        [--format int4] [--out 11264] [--in 2048] [--threads 2] [--rounds 11]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

from core import compact_weights


def load_build(path: str):
    """The kernels module compiled at ``path`` (its own module object, beside this tree's)."""
    spec = importlib.util.spec_from_file_location("_kernels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def product(module, weight, x: np.ndarray, threads: int) -> np.ndarray:
    y = np.empty((x.shape[0], weight.out_features), np.float32)
    module.matmul(
        weight.kind,
        weight.values,
        weight.scales,
        x,
        y,
        weight.out_features,
        weight.in_features,
        x.shape[0],
        threads,
    )
    return y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", required=True, help="the other build's .so")
    parser.add_argument("--format", default="int4")
    parser.add_argument("--baseline", default="int8")
    parser.add_argument("--out", type=int, default=11264, help="rows (the 1B shape's gate/up)")
    parser.add_argument("--in", dest="cols", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args(argv)
    other = load_build(args.other)
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((1, args.cols), dtype=np.float32)
    weights = [torch.randn(args.out, args.cols) for _ in range(8)]
    tested = [compact_weights.CompactWeight(w, args.format) for w in weights]
    base = [compact_weights.CompactWeight(w, args.baseline) for w in weights]
    del weights
    this = compact_weights._kernels
    difference = float(
        np.abs(product(this, tested[0], x, 1) - product(other, tested[0], x, 1)).max()
    )
    cases = {
        f"{args.baseline}, this tree": (this, base),
        f"{args.format}, other build": (other, tested),
        f"{args.format}, this tree": (this, tested),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(args.rounds):
        names = list(cases) if r % 2 == 0 else list(cases)[::-1]
        for name in names:
            module, matrices = cases[name]
            started = time.perf_counter()
            for m in matrices:
                product(module, m, x, args.threads)
            times[name].append((time.perf_counter() - started) / len(matrices))
    baseline = times[f"{args.baseline}, this tree"]
    print(
        f"{args.out}x{args.cols}, {args.threads} threads, kernels {compact_weights.variant()}, "
        f"{args.rounds} interleaved rounds, peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB, load average "
        f"{os.getloadavg()[0]:.1f}; largest |difference| between the builds' {args.format} "
        f"results {difference:.2g}"
    )
    print(f"| kernels | ms a product (median) | per-round speed-up over {args.baseline} (median) |")
    print("|---|---|---|")
    for name, values in times.items():
        ratios = [b / v for b, v in zip(baseline, values)]
        print(
            f"| {name} | {statistics.median(values) * 1e3:.3f} | {statistics.median(ratios):.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
