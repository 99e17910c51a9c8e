"""The lean forward's decode implementations against each other, in one process, interleaved.

Issue 26 asks to keep only the forward implementations that win a measured case. Each
candidate is one ``LeanLlamaBackend`` over the same loaded model (fp32 masters), timed in turn
within every round (a drift of the shared machine's speed touches each alike); the medians and
their ratios to the first candidate are the result:

- ``numpy fp32``: one-token steps in NumPy/OpenBLAS from the fp32 masters (``core.blas_decode``,
  what fp32 decode runs; its draft checks ran there too until they measured slower than
  PyTorch's, and now run in the lean PyTorch forward, as ``torch fp32``'s);
- ``torch fp32``: the same passes through the lean PyTorch forward (``blas=False``);
- ``torch int8``: PyTorch's int8 weight kernel (``torch._weight_int8pack_mm``), what int8
  decode ran where the C kernels are not available;
- ``op-by-op C bf16``: one-token steps op by op in NumPy with the C products (what every family
  but Llama's and Mistral's ran before the fused step computed their layers);
- ``fused C bf16`` / ``fused C int8``: the fused C step from compact copies (the default's path).

A step is one token after a prompt; a draft check is ``--draft`` tokens in one pass with every
row's logits (prompt-lookup verification), then cropped back. ``--clock cpu`` times the process's
CPU time instead of the wall (on a saturated machine the wall mostly measures the wait for a
core; with one thread, CPU time is the work itself).

    .venv/bin/python -m benchmarks.forward_variants --model llama-30m --rounds 5 [--threads 1 --clock cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from core import cpu_capabilities
from core.devices import choose_cpu_threads, use_cpu_threads, weight_bytes
from core.lean_llama import LeanLlamaBackend

from .shapes import model_dir


def candidates(model) -> dict[str, LeanLlamaBackend]:
    built = {
        "numpy fp32": LeanLlamaBackend(model, decode_weights="fp32"),
        "torch fp32": LeanLlamaBackend(model, decode_weights="fp32", blas=False),
    }
    with cpu_capabilities.inject("portable"):  # no C kernels: int8 runs in PyTorch
        built["torch int8"] = LeanLlamaBackend(model, decode_weights="int8")
    built["op-by-op C bf16"] = LeanLlamaBackend(model, decode_weights="bf16")
    built["op-by-op C bf16"].blas.fused = None  # what non-Llama families ran before this branch
    built["fused C bf16"] = LeanLlamaBackend(model, decode_weights="bf16")
    built["fused C int8"] = LeanLlamaBackend(model, decode_weights="int8")
    assert built["torch int8"].describe()["decode"] == "torch int8 kernel"
    assert built["numpy fp32"].blas is not None and built["torch fp32"].blas is None
    return built


def time_backend(
    backend, prompt: list[int], steps: int, draft: int, clock=time.perf_counter
) -> tuple[float, float]:
    """(ms per one-token step, ms per draft check of ``draft`` tokens) after ``prompt``."""
    backend.reset()
    with torch.inference_mode():
        backend.forward(prompt)
        started = clock()
        for i in range(steps):
            backend.forward([5 + i])
        step_ms = (clock() - started) * 1000 / steps
        length = backend.length
        started = clock()
        for i in range(steps // 2):
            backend.forward([7 + i + j for j in range(draft)], all_logits=True)
            backend.crop(length)
        draft_ms = (clock() - started) * 1000 / max(1, steps // 2)
    return step_ms, draft_ms


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-30m")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--draft", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="default: the engine's choice")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args(argv)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir(args.model)), dtype=torch.float32
    ).eval()
    use_cpu_threads(args.threads or choose_cpu_threads(weight_bytes(model)))
    built = candidates(model)
    prompt = list(range(10, 10 + args.prompt_tokens))
    for backend in built.values():  # warm up
        time_backend(backend, prompt[:16], 2, args.draft)
    steps: dict[str, list[float]] = {name: [] for name in built}
    drafts: dict[str, list[float]] = {name: [] for name in built}
    for r in range(args.rounds):
        order = list(built) if r % 2 == 0 else list(reversed(built))
        for name in order:
            step_ms, draft_ms = time_backend(built[name], prompt, args.steps, args.draft, clock)
            steps[name].append(step_ms)
            drafts[name].append(draft_ms)
    first = next(iter(built))
    print(
        f"model {args.model}, prompt {args.prompt_tokens}, {args.steps} steps, drafts of "
        f"{args.draft}, median of {args.rounds} interleaved rounds, {torch.get_num_threads()} "
        f"threads, {args.clock} time, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
        "(the process, every candidate loaded)"
    )
    print(f"| candidate | step ms | vs {first} | draft check ms | vs {first} |")
    print("|---|---|---|---|---|")
    base_step, base_draft = statistics.median(steps[first]), statistics.median(drafts[first])
    for name in built:
        s, d = statistics.median(steps[name]), statistics.median(drafts[name])
        print(f"| {name} | {s:.2f} | {s / base_step:.2f} | {d:.2f} | {d / base_draft:.2f} |")
    print(json.dumps({"steps": steps, "drafts": drafts}))


if __name__ == "__main__":
    main()
