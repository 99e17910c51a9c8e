"""What a prompt pays to widen one int8/int4 matrix to bf16, beside the GEMM it feeds.

Prompts over int8/int4 decode weights multiply in PyTorch, so each layer matrix is widened to
bf16 once per prompt chunk (``CompactWeight.dense``). This times that widening, into the shared
buffer the engine uses, against the formulas main used before the memory branch (int8:
``.to(bf16).mul_(scales)``; int4: ``widened().to(bf16)``, through fp32) and against the bf16
GEMM of a prompt's rows over the same matrix, in interleaved rounds, one process. The results of
old and new are checked equal first.

    .venv/bin/python -m benchmarks.widening --rows 8192 --cols 1536 --prompt 256 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import core  # noqa: F401  (before torch: sets OpenMP's spin count)
import torch
import torch.nn.functional as F

from core import compact_weights
from core.backends.layers import WideningBuffer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8192)  # llama-400m's gate/up
    parser.add_argument("--cols", type=int, default=1536)
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    shape = (args.rows, args.cols)
    weight = torch.randn(*shape).to(torch.bfloat16)
    x = torch.randn(args.prompt, args.cols).to(torch.bfloat16)
    int8 = compact_weights.CompactWeight(weight, "int8")
    int4 = compact_weights.CompactWeight(weight, "int4")
    buffer = WideningBuffer()

    def int8_before():
        rows = compact_weights._deinterleave(torch.from_numpy(int8.values)).to(torch.bfloat16)
        return rows.mul_(torch.from_numpy(int8.scales).to(torch.bfloat16)[:, None])

    cases = {
        f"bf16 GEMM, {args.prompt} rows (reference)": lambda: F.linear(x, weight),
        "int8 widen, before": int8_before,
        "int8 widen, now": lambda: int8.dense(torch.bfloat16, buffer.take(shape, torch.bfloat16)),
        "int4 widen, before": lambda: int4.widened().to(torch.bfloat16),
        "int4 widen, now": lambda: int4.dense(torch.bfloat16, buffer.take(shape, torch.bfloat16)),
    }
    assert torch.equal(cases["int8 widen, before"](), cases["int8 widen, now"]())
    assert torch.equal(cases["int4 widen, before"](), cases["int4 widen, now"]())
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, run in cases.items():
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) * 1000)
    print(f"{args.rows}x{args.cols}, {args.rounds} interleaved rounds, ms")
    print("| product | ms, median (range) |\n|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f}) |")


if __name__ == "__main__":
    main()
