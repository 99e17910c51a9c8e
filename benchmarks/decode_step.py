"""CPU time of one lean decode step, eager against ``torch.compile``, in interleaved rounds.

The shipped model's decode step is overhead-bound (dozens of small ops around 17 small
matrix products), which is what a compiler that fuses ops could cut. Process CPU time, not
wall time, so a busy machine slows both variants alike; the ratio is the result.

    .venv/bin/python -m benchmarks.decode_step --model models/tiny-python
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from core.lean_llama import LeanLlamaBackend


def step_cpu_ms(backend, prompt: list[int], steps: int) -> float:
    """Mean CPU milliseconds per one-token forward after ``prompt``."""
    backend.reset()
    backend.forward(prompt)
    started = time.process_time()
    for i in range(steps):
        backend.forward([i % 1000])
    return (time.process_time() - started) / steps * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/tiny-python")
    parser.add_argument("--prompt-tokens", type=int, default=295)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # what the engine picks for a model this small
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    eager, compiled = LeanLlamaBackend(model), LeanLlamaBackend(model)
    compiled.forward = torch.compile(compiled.forward, dynamic=True)
    prompt = list(range(5, 5 + args.prompt_tokens))
    started = time.process_time()
    step_cpu_ms(compiled, prompt, 3)
    compile_s = time.process_time() - started
    eager.reset(), compiled.reset()
    eager.forward(prompt), compiled.forward(prompt)
    diff = (eager.forward([11]) - compiled.forward([11])).abs().max().item()
    times = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        for name, backend in (("eager", eager), ("compiled", compiled)):
            times[name].append(step_cpu_ms(backend, prompt, args.steps))
    report = {name: round(statistics.median(v), 3) for name, v in times.items()}
    report.update(
        compile_cpu_s=round(compile_s, 1),
        max_logit_diff=diff,
        compiled_vs_eager=round(report["compiled"] / report["eager"], 2),
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
