"""What each decode-weight format (bf16, int8, int4) costs a model in quality, measured the way
the engine computes: held-out perplexity through its decode steps, and single-line fills.

- Perplexity, plain: every token of the held-out windows (``training.evaluate``'s, chunked as
  in training) through the engine's decode step with the format's weights, one token at a time
  (the pessimistic case: a real prompt is prefilled from the masters).
- Perplexity, FIM: the prompt (prefix, suffix, middle marker) prefilled from the masters as the
  engine does, then the middle and its end token through decode steps.
- Fills: ``training.evaluate.engine_infill`` (the engine's own FIM order, healing and budget,
  greedy, one line) with the format's decode weights.

    python -m training.decode_weights_quality models/tiny-python --formats bf16 int8 int4 \\
        --out models/tiny-python/eval_decode_weights.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from training import data
from training.evaluate import VAL_WINDOWS, engine_infill, infill_cases, load
from training.train import val_sets


@torch.no_grad()
def decode_loss(runner, rows: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cross-entropy (nats/token) of ``labels`` (-100: not scored) over ``rows``: tokens up
    to the first scored one are prefilled, every later one goes through a decode step."""
    total, count = 0.0, 0
    for ids, marks in zip(rows.tolist(), labels.tolist()):
        scored = [i for i, label in enumerate(marks) if label != -100 and i > 0]
        if not scored:
            continue
        first, last = scored[0], scored[-1]
        runner.reset()
        logits = runner.prefill(ids[:first])
        for i in range(first, last + 1):
            if marks[i] != -100:
                total -= float(torch.log_softmax(logits.float(), dim=-1)[ids[i]])
                count += 1
            if i < last:
                logits = runner.decode_one_token(ids[i])
    return total / max(count, 1)


def measure(path: str, formats: list[str], samples: int, seed: int) -> dict:
    from core import OptimizedLLM
    from core.generation import ModelRunner

    model, tok = load(path)
    _, val_files = data.split()
    sets = val_sets(tok, val_files, SimpleNamespace(seq_len=1024, val_windows=VAL_WINDOWS))
    cases = infill_cases(val_files, samples, seed)
    llm = OptimizedLLM(path, decode_weights="fp32")  # masters as the engine loads them
    results = {"model": path, "formats": {}}
    for fmt in formats:
        started = time.perf_counter()
        runner = ModelRunner(llm.model, decode_weights=fmt)
        plain = decode_loss(runner, *sets["plain"])
        fim = decode_loss(runner, *sets["fim"])
        runner.release()
        infill = engine_infill(path, cases, decode_weights=fmt)
        results["formats"][fmt] = {
            "val_loss_plain": plain,
            "val_ppl_plain": math.exp(plain),
            "val_loss_fim": fim,
            "val_ppl_fim": math.exp(fim),
            "infill_engine": {k: v for k, v in infill.items() if k != "examples"},
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"{fmt}: {results['formats'][fmt]}", flush=True)
    del model
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="model directory")
    ap.add_argument("--formats", nargs="+", default=["bf16", "int8", "int4"])
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="results JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = measure(args.model, args.formats, args.samples, args.seed)
    base = results["formats"][args.formats[0]]
    print(
        f"\n| decode weights | ppl plain | ppl FIM | fill exact | fill parses | vs {args.formats[0]} |"
    )
    print("|---|---|---|---|---|---|")
    for fmt, r in results["formats"].items():
        print(
            f"| {fmt} | {r['val_ppl_plain']:.3f} | {r['val_ppl_fim']:.3f} "
            f"| {r['infill_engine']['exact_match']:.1%} | {r['infill_engine']['parse_rate']:.1%} "
            f"| ppl {r['val_ppl_plain'] / base['val_ppl_plain'] - 1:+.2%} plain, "
            f"{r['val_ppl_fim'] / base['val_ppl_fim'] - 1:+.2%} FIM |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
