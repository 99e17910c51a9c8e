"""What one editor request costs before and around the model: tokenizing, lookup index, one step.

    .venv/bin/python -m benchmarks.request_overhead

Per keystroke of the editing replay's schedule: tokenizing its prompt whole (the tokenizer)
against line by line with pieces remembered (``core.prompt_encoding``); building the prompt-lookup
index token by token against in one pass; and the lean decode step's CPU time after 300 and
1000 cached tokens. Medians; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.generation import PromptLookup
from core.lean_llama import LeanLlamaBackend
from core.prompt_encoding import PromptEncoder

from .replay import build_schedule
from .shapes import model_dir


def per_keystroke_ms(fn, keys, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for key in keys:
            fn(key)
        times.append((time.perf_counter() - started) / len(keys) * 1000)
    return statistics.median(times)


def lookup_token_by_token(context: list[int]) -> PromptLookup:
    lookup = PromptLookup([])
    for token in context:
        lookup.add(token)
    return lookup


def step_cpu_ms(backend: LeanLlamaBackend, cached: int, steps: int = 200, rounds: int = 5) -> float:
    backend.reset()
    backend.forward(list(range(5, 5 + cached)))
    times = []
    for _ in range(rounds):
        started = time.process_time()
        for i in range(steps):
            backend.crop(cached)
            backend.forward([i % 1000])
        times.append((time.process_time() - started) / steps * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shipped")
    parser.add_argument("--keystrokes", type=int, default=300)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # what the engine picks for a model this small
    path = model_dir(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    keys = build_schedule("tokenize.py", 300, 25)[: args.keystrokes]
    encoder = PromptEncoder(tokenizer)
    whole = per_keystroke_ms(
        lambda k: (
            tokenizer.encode(k.prefix, add_special_tokens=False),
            tokenizer.encode(k.suffix, add_special_tokens=False),
        ),
        keys,
    )
    by_line = per_keystroke_ms(lambda k: (encoder.encode(k.prefix), encoder.encode(k.suffix)), keys)
    context = encoder.encode(keys[-1].prefix)[-1000:]
    contexts = [context] * 50
    fed = per_keystroke_ms(lookup_token_by_token, contexts)
    built = per_keystroke_ms(PromptLookup, contexts)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    backend = LeanLlamaBackend(model)
    report = {
        "tokenize_whole_ms": round(whole, 3),
        "tokenize_by_line_ms": round(by_line, 3),
        "lookup_token_by_token_ms": round(fed, 3),
        "lookup_one_pass_ms": round(built, 3),
        "lookup_context_tokens": len(context),
        "decode_step_cpu_ms_300": round(step_cpu_ms(backend, 300), 3),
        "decode_step_cpu_ms_1000": round(step_cpu_ms(backend, 1000), 3),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
