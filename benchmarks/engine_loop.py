"""What the engine's per-token loop costs beyond the model: OptimizedLLM against a bare decode loop.

Greedy completions of one prompt through ``llm.complete`` (the token picker, incremental
decoding, the text pipeline: regrown healing text, stop matcher, loop guard; with ``--language
python`` the layout rules too, the prompt then ending at a line's end where they apply) against
the same runner driven bare: ``runner.prefill``, then ``decode_one_token`` and an argmax as many
steps as the engine took. The prompt stays cached between rounds in both, so nearly all of it is
the decode loop; the engine's figure also carries its per-request work (tokenizing the prompt)
spread over the tokens. Process CPU time (a busy machine slows both alike), interleaved rounds,
medians; prints JSON with the peak RSS.

    .venv/bin/python -m benchmarks.engine_loop
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from core import OptimizedLLM

from .engine import prompt_ids
from .shapes import model_dir


def engine_ms(llm: OptimizedLLM, prompt: str, new: int, language: str | None) -> tuple[float, int]:
    """CPU ms per decode step of one engine completion, and its steps."""
    started = time.process_time()
    result = llm.complete(
        prompt,
        max_length=new,
        temperature=0,
        repetition_penalty=1.0,
        stop_sequences=["\n\n\n\n"],
        language=language,
    )
    spent = time.process_time() - started
    return spent / max(result.decode_steps, 1) * 1000, result.decode_steps


def bare_ms(llm: OptimizedLLM, ids: list[int], steps: int) -> float:
    """CPU ms per step of the same runner with nothing around it but an argmax."""
    runner = llm.runner
    started = time.process_time()
    with torch.inference_mode():
        token = int(runner.prefill(ids).argmax())
        for _ in range(steps):
            token = int(runner.decode_one_token(token).argmax())
    return (time.process_time() - started) / max(steps, 1) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shipped")
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--language", default=None)
    args = parser.parse_args(argv)
    llm = OptimizedLLM(str(model_dir(args.model)), device="cpu")
    llm.prompt_lookup = False  # one token per step in both loops
    prompt = llm.tokenizer.decode(prompt_ids(llm.tokenizer, args.prompt_tokens))
    if args.language:  # at a line's end, where the layout rules apply
        prompt = prompt[: prompt.rfind("\n") + 1]
    ids = llm.tokenizer.encode(prompt, add_special_tokens=False)
    llm.warmup()
    engine_rounds, bare = [], []
    steps = 0
    for _ in range(args.rounds):
        ms, steps = engine_ms(llm, prompt, args.new, args.language)
        engine_rounds.append(ms)
        bare.append(bare_ms(llm, ids, steps))
    engine_median, bare_median = statistics.median(engine_rounds), statistics.median(bare)
    print(
        json.dumps(
            {
                "model": args.model,
                "threads": torch.get_num_threads(),
                "steps": steps,
                "engine_ms_per_token": round(engine_median, 3),
                "bare_ms_per_token": round(bare_median, 3),
                "loop_ms_per_token": round(engine_median - bare_median, 3),
                "ratio": round(engine_median / bare_median, 3),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
