"""Where a compact decode step's time goes, by weight format: each kind of matrix, the output
head and the rest of the fused C step, beside the GB/s a plain read of memory gets in the same
round.

The matrices have a model's shape (its ``config.json``: every layer's q/k/v, o, gate/up and down,
and the output head) and random bytes in the kernels' layout (speed does not depend on the
values, and no quantization runs). Each round, every format in turn (the order turning each
round): a plain read of 512 MB, each kind of matrix over all layers (one product each, as a step
does), the head, then the whole fused step (``decode_layers``: norms, RoPE, attention over
``--context`` cached positions, the same products) followed by the head. ``other`` in the step
column is the fused step less its products measured alone: the norms, attention and the
activation quantization's share. ``--hot`` also times one small matrix over and over (it stays
in the CPU's cache): the kernels' compute rate, the ceiling where memory is not the limit.

    .venv/bin/python -m benchmarks.step_profile --model llama-1b --formats int8,int4 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from core import compact_weights, page_memory
from core.compact_weights import BLOCK, CompactWeight

from .paths import read_bandwidth_gbs
from .shapes import model_dir
from benchmarks.common import write_report

KINDS = ("qkv", "o", "gate_up", "down")


def random_compact(out: int, cols: int, precision: str, rng: np.random.Generator) -> CompactWeight:
    """A CompactWeight of ``precision`` with random bytes in the kernels' layout (no rounding)."""
    weight = CompactWeight.__new__(CompactWeight)
    weight.precision, weight.kind = precision, compact_weights._KINDS[precision]
    weight.out_features, weight.in_features = out, cols
    if precision == "int8":
        weight.values = page_memory.empty((out, cols), np.int8)
        weight.values[:] = rng.integers(-127, 128, (out, cols), dtype=np.int8)
        weight.scales = np.full(out, 1e-3, np.float32)
    elif precision == "int4":
        weight.values = page_memory.empty((out, cols // 2), np.uint8)
        weight.values[:] = rng.integers(0, 256, (out, cols // 2), dtype=np.uint8)
        weight.scales = page_memory.empty((out, cols // BLOCK), np.int16)
        weight.scales[:] = np.full((out, cols // BLOCK), 1e-3, np.float16).view(np.int16)
    else:
        weight.values = page_memory.empty((out, cols), np.int16)
        weight.values[:] = np.full((out, cols), 1e-3, np.float32).view(np.int32) >> 16
        weight.scales = b""
    return weight


class Model:
    """One format's matrices of every layer, the head, and what the fused step needs."""

    def __init__(self, config: dict, precision: str, context: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        hidden, mlp = config["hidden_size"], config["intermediate_size"]
        heads = config["num_attention_heads"]
        kv_heads = config.get("num_key_value_heads") or heads
        dim = config.get("head_dim") or hidden // heads
        self.shape = dict(hidden=hidden, heads=heads, kv_heads=kv_heads, dim=dim, mlp=mlp)
        shapes = {
            "qkv": ((heads + 2 * kv_heads) * dim, hidden),
            "o": (hidden, heads * dim),
            "gate_up": (2 * mlp, hidden),
            "down": (hidden, mlp),
        }
        self.layers = [
            {kind: random_compact(*shapes[kind], precision, rng) for kind in KINDS}
            for _ in range(config["num_hidden_layers"])
        ]
        self.head = random_compact(config["vocab_size"], hidden, precision, rng)
        self.precision, self.kind = precision, self.head.kind
        norm = np.ones(hidden, np.float32)
        self.fused = [
            (
                norm,
                *(a for kind in KINDS[:2] for a in (m[kind].values, m[kind].scales)),
                norm,
                *(a for kind in KINDS[2:] for a in (m[kind].values, m[kind].scales)),
            )
            for m in self.layers
        ]
        cache = (len(self.layers), 1, kv_heads, context + 1, dim)
        self.k_cache = rng.standard_normal(cache, dtype=np.float32) * 0.1
        self.v_cache = rng.standard_normal(cache, dtype=np.float32) * 0.1
        angles = rng.uniform(0, 6.28, dim // 2)
        self.rope = (np.cos(angles) + 1j * np.sin(angles)).astype(np.complex64)
        self.context = context
        self.x = rng.standard_normal(hidden, dtype=np.float32)

    def bytes_of(self, kind: str) -> int:
        if kind == "head":
            return self.head.nbytes
        return sum(m[kind].nbytes for m in self.layers)

    def products(self, kind: str, threads: int) -> float:
        """Seconds for one product of every layer's ``kind`` matrix (or the head)."""
        matrices = [self.head] if kind == "head" else [m[kind] for m in self.layers]
        xs = {m.in_features: self.x_of(m.in_features) for m in matrices}
        started = time.perf_counter()
        for m in matrices:
            m(xs[m.in_features], threads)
        return time.perf_counter() - started

    def x_of(self, cols: int) -> np.ndarray:
        return np.resize(self.x, cols)[None].copy()

    def step(self, threads: int) -> float:
        """Seconds for the fused step over every layer at ``context`` cached positions, then the
        head (what an engine's one-token step runs in C)."""
        from core import _kernels

        s = self.shape
        x = self.x.copy()
        started = time.perf_counter()
        _kernels.decode_layers(
            self.kind,
            x,
            self.fused,
            self.rope,
            self.k_cache,
            self.v_cache,
            s["hidden"],
            s["heads"],
            s["kv_heads"],
            s["dim"],
            s["mlp"],
            self.context,
            1e-6,
            float(s["dim"]) ** -0.5,
            threads,
        )
        self.head(x[None] / np.sqrt(np.mean(x * x) + 1e-6), threads)
        return time.perf_counter() - started


def hot_rate(model: Model, threads: int, repeats: int = 200) -> float:
    """GB/s of one o matrix multiplied over and over (in the CPU's cache: the compute rate)."""
    m = model.layers[0]["o"]
    x = model.x_of(m.in_features)
    for _ in range(5):
        m(x, threads)
    started = time.perf_counter()
    for _ in range(repeats):
        m(x, threads)
    return m.nbytes * repeats / (time.perf_counter() - started) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-1b", help="a shape name or a directory")
    parser.add_argument("--formats", default="int8,int4", help="the first is the baseline")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--context", type=int, default=160, help="cached positions")
    parser.add_argument("--repeats", type=int, default=3, help="timings a part a round (median)")
    parser.add_argument("--hot", action="store_true", help="also the in-cache compute rate")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    config = json.loads((Path(model_dir(args.model)) / "config.json").read_text())
    formats = args.formats.split(",")
    models = {f: Model(config, f, args.context) for f in formats}
    parts = [*KINDS, "head"]
    ms: dict[str, dict[str, list[float]]] = {f: {p: [] for p in [*parts, "step"]} for f in formats}
    reads, hot = [], {f: [] for f in formats}
    for f in formats:  # warm-up: OpenMP's threads, first touches
        models[f].step(args.threads)
    for r in range(args.rounds):
        reads.append(read_bandwidth_gbs(args.threads))
        torch.set_num_threads(args.threads)
        for f in formats if r % 2 == 0 else formats[::-1]:
            m = models[f]
            for p in parts:
                ms[f][p].append(
                    1e3
                    * statistics.median(m.products(p, args.threads) for _ in range(args.repeats))
                )
            ms[f]["step"].append(
                1e3 * statistics.median(m.step(args.threads) for _ in range(args.repeats))
            )
            if args.hot:
                hot[f].append(hot_rate(m, args.threads))
        print(
            f"round {r + 1}: read {reads[-1]:.1f} GB/s, "
            + ", ".join(f"{f} step {ms[f]['step'][-1]:.2f} ms" for f in formats),
            flush=True,
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    read = statistics.median(reads)
    print(
        f"\n{args.model}: kernels {compact_weights.variant()}, {args.threads} threads, "
        f"{args.rounds} rounds, context {args.context}, plain read {read:.1f} GB/s "
        f"(per round {', '.join(f'{x:.1f}' for x in reads)}), peak RSS {peak_mb:.0f} MB, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    base = formats[0]
    print(
        f"| part | MB ({', '.join(formats)}) | "
        + " | ".join(f"{f} ms (GB/s, share of read)" for f in formats)
        + f" | ratio to {base} per round (median) |"
    )
    print("|---|---|" + "---|" * len(formats) + "---|")
    results = {
        "model": args.model,
        "kernels": compact_weights.variant(),
        "threads": args.threads,
        "context": args.context,
        "read_gbs": reads,
        "peak_rss_mb": round(peak_mb),
        "load_average": os.getloadavg(),
        "ms": ms,
        "hot_gbs": hot,
    }
    for p in [*parts, "products", "step", "other"]:
        row = []
        series = {}
        for f in formats:
            if p == "products":
                series[f] = [sum(ms[f][q][i] for q in parts) for i in range(args.rounds)]
            elif p == "other":
                total = [sum(ms[f][q][i] for q in parts) for i in range(args.rounds)]
                series[f] = [s - t for s, t in zip(ms[f]["step"], total)]
            else:
                series[f] = ms[f][p]
        for f in formats:
            med = statistics.median(series[f])
            if p in parts or p in ("products", "step"):
                nbytes = (
                    sum(models[f].bytes_of(q) for q in parts)
                    if p in ("products", "step")
                    else models[f].bytes_of(p)
                )
                gbs = nbytes / med / 1e6
                row.append(f"{med:.2f} ({gbs:.1f}, {gbs / read:.0%})")
            else:
                row.append(f"{med:.2f}")
        sizes = (
            ""
            if p == "other"
            else ", ".join(
                f"{(sum(models[f].bytes_of(q) for q in parts) if p in ('products', 'step') else models[f].bytes_of(p)) / 1e6:.0f}"
                for f in formats
            )
        )
        ratios = [
            statistics.median(a / b for a, b in zip(series[base], series[f]) if b > 0)
            for f in formats[1:]
        ]
        print(
            f"| {p} | {sizes} | "
            + " | ".join(row)
            + " | "
            + ", ".join(f"{x:.2f}x" for x in ratios)
            + " |"
        )
    if args.hot:
        print(
            "in-cache compute rate, GB/s (one o matrix over and over): "
            + ", ".join(f"{f} {statistics.median(hot[f]):.1f}" for f in formats)
        )
    return write_report(results, args.out) if args.out else 0


if __name__ == "__main__":
    sys.exit(main())
