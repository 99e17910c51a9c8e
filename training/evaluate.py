"""Measure a trained model on the held-out stdlib files: loss, single-line infilling, speed.

- Validation loss and perplexity, plain (all tokens) and FIM (middle + EOS tokens), over the
  whole held-out set (``training/heldout.txt``), chunked exactly as in training.
- Single-line infilling: one non-empty line is blanked at a time (fixed seed, ``--samples``),
  greedy completion from prefix + suffix in the StarCoder PSM layout, stopped at a newline, EOS
  or any FIM token. Reports exact match (trailing whitespace ignored), the share of filled files
  that still ``ast.parse``, and the share of fills that are empty; raw, token-healed, and
  token-healed with the line's indentation already typed (an editor's auto-indent). For a
  model trained on SPM (``fim_order`` in its config) also healed in SPM order; and through
  DeepShiva's engine (its own order, healing and budget), which is what an editor gets.
- Greedy plain completions of a few fixed prompts, checked for looping (for the model card):
  through the model alone, and through the engine with and without its loop guard.
- Decoding speed on this CPU: ms per generated token and time to first token at 512 and 1500
  prompt tokens.

    python -m training.evaluate models/tiny-python training/runs/sweep-A/model \\
        --labels shipped short --out models/tiny-python/eval.json

``--carry LABEL ...`` keeps those labels' results from the existing ``--out`` file, so models
measured before need not be run again.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import random
import re
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList

from core.fim import DIALECTS, choose_order
from training import data, tokenizer as tk
from training.train import evaluate as val_loss, val_sets

STARCODER = next(d for d in DIALECTS if d.name == "starcoder")  # the shipped model's FIM tokens
PREFIX_TOKENS = 400  # kept small so 300 fills run in minutes on a shared 2-core CPU
SUFFIX_TOKENS = 150
VAL_WINDOWS = 24  # plain windows; FIM gets twice as many (its loss counts only the middle)
SAMPLE_PROMPTS = [
    "import os\n\n\ndef list_python_files(root):\n",
    'class Stack:\n    """A simple LIFO stack."""\n\n    def __init__(self):\n',
    "def parse_args(argv=None):\n    parser = argparse.ArgumentParser(",
    "    def __repr__(self):\n",
    "try:\n    import json\nexcept ImportError:\n",
]


def load(path: str, dtype=torch.float32):
    """Model and tokenizer from a local directory, offline."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    return model, tok


class StopOnIds(StoppingCriteria):
    """Stop a batch-1 generation when the last token is in a given id set (after min_len)."""

    def __init__(self, ids: set[int], min_len: int = 0):
        self.ids, self.min_len = ids, min_len

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return input_ids.shape[1] > self.min_len and int(input_ids[0, -1]) in self.ids


def newline_ids(tok) -> set[int]:
    """Ids of tokens whose text contains a newline (byte-level 'Ċ')."""
    return {
        i for i, t in enumerate(tok.convert_ids_to_tokens(list(range(len(tok))))) if t and "Ċ" in t
    }


def special_ids(tok) -> list[int]:
    return [tok.convert_tokens_to_ids(t) for t in tk.SPECIAL_TOKENS]


@torch.no_grad()
def greedy(
    model,
    tok,
    ids: list[int],
    max_new: int,
    stop: set[int],
    repetition_penalty: float = 1.0,
    first_allowed: list[int] | None = None,
) -> list[int]:
    """Greedy continuation of ids (ends at an EOS/FIM token or a token in stop).

    first_allowed restricts the first generated token (token healing)."""
    x = torch.tensor([ids])
    everything = list(range(len(tok)))
    allow = (
        None
        if first_allowed is None
        else (lambda b, s: first_allowed if s.shape[0] == len(ids) else everything)
    )
    out = model.generate(
        x,
        attention_mask=torch.ones_like(x),
        do_sample=False,
        repetition_penalty=repetition_penalty,
        prefix_allowed_tokens_fn=allow,
        max_new_tokens=max_new,
        eos_token_id=special_ids(tok),
        pad_token_id=tok.pad_token_id,
        stopping_criteria=StoppingCriteriaList(
            [StopOnIds(stop, len(ids) + (first_allowed is not None))]
        ),
    )
    return out[0, len(ids) :].tolist()


def fim_ids(tok, prefix: str, suffix: str, heal: bool = False, order: str = "psm"):
    """FIM prompt ids (PSM, or StarCoder's SPM) with the prefix kept at its end and the suffix
    at its start.

    With heal, the prefix's last token is backed off and returned as (text, allowed first
    ids): a prefix ending in a bare newline is a token boundary the model rarely saw in
    training (newlines merge with the indentation that follows), so it regrows it itself."""
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    c = tok.convert_tokens_to_ids
    p = enc(prefix)[-PREFIX_TOKENS:]
    heal_text, allowed = "", None
    if heal and p:
        pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
        last, heal_text = pieces[p[-1]], tok.decode(p[-1:])
        specials = set(special_ids(tok))
        allowed = [i for i, t in enumerate(pieces) if t.startswith(last) and i not in specials]
        p = p[:-1]
    text_ids = {"prefix": p, "suffix": enc(suffix)[:SUFFIX_TOKENS]}
    ids = []
    for kind, marker in STARCODER.layout(order):  # the core's layout, so both agree
        ids.extend([c(marker)] if kind == "token" else text_ids[kind])
    return ids, heal_text, allowed


def fim_order(model) -> str:
    """The FIM order the engine picks for a model by default (its config's, else PSM)."""
    return choose_order("auto", STARCODER, model.config)


def infill_cases(files: list[data.SourceFile], n: int, seed: int):
    """n (file, line index) pairs of non-empty lines, from files that parse, fixed seed."""
    cands = []
    for f in files:
        try:
            ast.parse(f.text)
        except SyntaxError:
            continue
        lines = f.text.splitlines(keepends=True)
        cands += [(f, i) for i, ln in enumerate(lines) if ln.strip()]
    return random.Random(seed).sample(cands, min(n, len(cands)))


def single_line_infill(
    model,
    tok,
    cases,
    max_new: int = 48,
    heal: bool = False,
    indented: bool = False,
    order: str = "psm",
) -> dict:
    """Exact match and parse rate of greedy single-line fills (optionally token-healed).

    ``indented`` puts the line's own indentation at the end of the prefix, as an editor's
    auto-indent does before the user asks: the model then writes only the statement, which
    separates "wrong depth" from "wrong code" in the parse rate."""
    nl = newline_ids(tok)
    specials = set(special_ids(tok))

    def fill(prefix: str, suffix: str, indent: str) -> str:
        ids, heal_text, allowed = fim_ids(tok, prefix + indent, suffix, heal, order)
        new = greedy(model, tok, ids, max_new + 1, nl, first_allowed=allowed)
        return tok.decode([t for t in new if t not in specials])[len(heal_text) :]

    return score_fills(cases, fill, indented)


def score_fills(cases, fill, indented: bool = False) -> dict:
    """Exact match, parse rate and empty share of ``fill(prefix, suffix, indent) -> text`` over
    the blanked lines (the fill's first line is kept, after the typed indentation)."""
    exact = parsed = empty = 0
    examples = []
    for f, i in cases:
        lines = f.text.splitlines(keepends=True)
        target = lines[i].rstrip("\r\n")
        prefix, suffix = "".join(lines[:i]), "\n" + "".join(lines[i + 1 :])
        indent = target[: len(target) - len(target.lstrip())] if indented else ""
        text = indent + fill(prefix, suffix, indent).split("\n")[0]
        exact += text.rstrip() == target.rstrip()
        empty += not text.strip()
        try:
            ast.parse(prefix + text + suffix)
            parsed += 1
        except (SyntaxError, ValueError):
            pass
        if len(examples) < 12:
            examples.append({"file": f.rel, "line": i + 1, "target": target, "fill": text})
    n = len(cases)
    return {
        "samples": n,
        "exact_match": exact / n,
        "parse_rate": parsed / n,
        "empty_fill_rate": empty / n,
        "examples": examples,
    }


def engine_infill(
    path: str,
    cases,
    max_new: int = 48,
    language: str | None = None,
    decode_weights: str | None = None,
) -> dict:
    """The same fills through DeepShiva's engine, greedy and stopped at the line end: what an
    editor gets from the server (its own FIM order, healing and prompt budget). With
    ``language="python"`` (what the language server sends for a Python file) the engine keeps
    each fill within Python's layout rules (core/layout_rules.py). ``decode_weights`` as the
    engine takes it (None: its own choice)."""
    with engine(path, decode_weights) as llm:

        def fill(prefix: str, suffix: str, indent: str) -> str:
            return llm.generate(
                prefix + indent,
                suffix=suffix,
                max_length=max_new,
                temperature=0,
                repetition_penalty=1.0,
                stop_sequences=["\n"],
                language=language,
            )

        result = score_fills(cases, fill)
        result["fim_order"] = llm.info()["fim_order"]
    return result


def loops(text: str) -> bool:
    """True when a non-blank line repeats 3+ times, a 20-char span 4+ times, or a short unit
    (3-20 chars, e.g. ``'w', ``) 4+ times in a row."""
    lines = [ln.strip() for ln in text.splitlines() if len(ln.strip()) > 3]
    if any(lines.count(ln) >= 3 for ln in set(lines)):
        return True
    if re.search(r"(.{3,20}?)\1{3,}", text, re.S):
        return True
    return any(text.count(text[j : j + 20]) >= 4 for j in range(0, max(0, len(text) - 20), 5))


def samples(model, tok, max_new: int = 96, repetition_penalty: float = 1.0) -> list[dict]:
    """Greedy plain completions of the fixed prompts, each flagged for looping.

    Run with no penalty (pure greedy) and with the core's default repetition_penalty 1.1."""
    out = []
    for p in SAMPLE_PROMPTS:
        ids = tok(p, add_special_tokens=False)["input_ids"]
        new = greedy(model, tok, ids, max_new, set(), repetition_penalty)
        text = tok.decode(new, skip_special_tokens=True)
        out.append({"prompt": p, "completion": text, "loops": loops(text)})
    return out


@contextlib.contextmanager
def engine(path: str, decode_weights: str | None = None):
    """DeepShiva's engine on ``path``; it picks its own CPU thread count, restored afterwards."""
    from core import OptimizedLLM

    threads = torch.get_num_threads()
    try:
        yield OptimizedLLM(path, decode_weights=decode_weights)
    finally:
        torch.set_num_threads(threads)


def engine_samples(path: str, max_new: int = 96, loop_guard: bool = True) -> list[dict]:
    """The same prompts through DeepShiva's engine, greedy: what a user of the server gets
    (the engine heals a prompt's last token, so prompts ending in a newline are not read as
    the end of a document). With ``loop_guard=False`` the engine's loop guard is off: the
    model's own greedy behaviour."""
    out = []
    with engine(path) as llm:
        llm.loop_guard = loop_guard
        for p in SAMPLE_PROMPTS:
            text = llm.generate(p, max_length=max_new, temperature=0, repetition_penalty=1.0)
            out.append({"prompt": p, "completion": text, "loops": loops(text)})
    return out


@torch.no_grad()
def speed(model, tok, files: list[data.SourceFile]) -> dict:
    """ms/token of greedy decode and time to first token at 512 and 1500 prompt tokens."""
    ids = tok("".join(f.text for f in files), add_special_tokens=False)["input_ids"]
    res = {}
    for n in (512, 1500):
        x = torch.tensor([ids[:n]])
        best = math.inf
        for _ in range(2):
            t = time.perf_counter()
            model(input_ids=x, use_cache=True)
            best = min(best, time.perf_counter() - t)
        res[f"ttft_ms_{n}"] = round(best * 1000, 1)
    x = torch.tensor([ids[:512]])
    kw = dict(attention_mask=torch.ones_like(x), do_sample=False, pad_token_id=0, eos_token_id=None)
    model.generate(x, max_new_tokens=4, min_new_tokens=4, **kw)  # warm-up
    t = time.perf_counter()
    model.generate(x, max_new_tokens=1, min_new_tokens=1, **kw)
    one = time.perf_counter() - t
    t = time.perf_counter()
    model.generate(x, max_new_tokens=33, min_new_tokens=33, **kw)
    res["ms_per_token"] = round((time.perf_counter() - t - one) / 32 * 1000, 2)
    return res


def engine_speed(path: str, files: list[data.SourceFile]) -> dict:
    """The same measurements through DeepShiva's engine (what the server uses): cold time to
    first token at 512 and 1500 prompt tokens (the engine keeps the 1500-token prompt's last
    part that fits the context) and ms per decoded token, greedy, no prompt lookup."""
    with engine(path) as llm:
        return _time_engine(llm, files)


def _time_engine(llm, files: list[data.SourceFile]) -> dict:
    llm.prompt_lookup = False
    llm.warmup()
    ids = llm.tokenizer.encode("".join(f.text for f in files), add_special_tokens=False)
    res = {"threads": torch.get_num_threads(), "backend": llm.info()["backend"]}
    for n in (512, 1500):
        prompt = llm.tokenizer.decode(ids[:n])
        best = math.inf
        for _ in range(3):
            llm.runner.reset()
            best = min(best, llm.complete(prompt, max_length=1, temperature=0).total_ms)
        res[f"ttft_ms_{n}"] = round(best, 1)
    prompt = llm.tokenizer.decode(ids[:512])
    rates = []
    for _ in range(3):
        llm.runner.reset()
        r = llm.complete(
            prompt, max_length=65, temperature=0, repetition_penalty=1.0, stop_sequences=[]
        )
        if r.generated_tokens > 1:
            rates.append((r.total_ms - r.time_to_first_token_ms) / (r.generated_tokens - 1))
    res["ms_per_token"] = round(min(rates), 2) if rates else None
    return res


def run(path: str, cases, val_files, do_speed: bool) -> dict:
    model, tok = load(path)
    args = SimpleNamespace(seq_len=1024, val_windows=VAL_WINDOWS)
    losses = val_loss(model, val_sets(tok, val_files, args), autocast=False)
    res = {
        "model": path,
        "parameters": sum(p.numel() for p in model.parameters()),
        "val_loss_plain": losses["plain"],
        "val_ppl_plain": math.exp(losses["plain"]),
        "val_loss_fim": losses["fim"],
        "val_ppl_fim": math.exp(losses["fim"]),
    }
    res["infill"] = single_line_infill(model, tok, cases)
    res["infill_healed"] = single_line_infill(model, tok, cases, heal=True)
    res["infill_indented"] = single_line_infill(model, tok, cases, heal=True, indented=True)
    if fim_order(model) == "spm":  # the same fills in the order the engine uses for this model
        res["infill_spm_healed"] = single_line_infill(model, tok, cases, heal=True, order="spm")
    res["infill_engine"] = engine_infill(path, cases)
    res["infill_engine_python"] = engine_infill(path, cases, language="python")
    res["samples"] = samples(model, tok)
    res["samples_rep1.1"] = samples(model, tok, repetition_penalty=1.1)
    res["samples_engine"] = engine_samples(path)
    res["samples_engine_unguarded"] = engine_samples(path, loop_guard=False)
    if do_speed:
        res["speed_fp32"] = speed(model, tok, val_files)
        model_bf16, _ = load(path, torch.bfloat16)
        res["speed_bf16"] = speed(model_bf16, tok, val_files)
        res["speed_engine"] = engine_speed(path, val_files)
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Evaluate models on the held-out stdlib files.")
    ap.add_argument("models", nargs="+", help="model directories")
    ap.add_argument("--labels", nargs="*", default=None)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed", action="store_true", help="also measure decode speed (1st model)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--carry",
        nargs="*",
        default=[],
        metavar="LABEL",
        help="copy these labels' results unchanged from the existing --out file "
        "(models measured before, with the same cases)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    labels = args.labels or args.models
    _, val_files = data.split()
    cases = infill_cases(val_files, args.samples, args.seed)
    earlier = (
        json.loads(args.out.read_text()) if args.carry and args.out and args.out.exists() else {}
    )
    missing = [label for label in args.carry if label not in earlier]
    if missing:
        ap.error(f"--carry: {', '.join(missing)} not in {args.out}")
    results = {}
    for i, (label, path) in enumerate(zip(labels, args.models)):
        results[label] = run(path, cases, val_files, args.speed and i == 0)
        print(f"done {label}", flush=True)
    results.update({label: earlier[label] for label in args.carry})
    print(
        f"\n{'model':<10}{'params':>9}{'loss':>7}{'ppl':>7}{'fim loss':>9}{'fim ppl':>8}"
        f"{'exact':>8}{'parse':>8}{'empty':>8}{'healed exact':>13}{'healed parse':>13}"
        f"{'engine parse':>13}{'py parse':>9}{'py exact':>9}{'loops':>7}{'loops@1.1':>10}{'engine loops':>13}"
    )
    for label, r in results.items():
        inf = r["infill"]
        print(
            f"{label:<10}{r['parameters'] / 1e6:>8.2f}M{r['val_loss_plain']:>7.3f}"
            f"{r['val_ppl_plain']:>7.1f}{r['val_loss_fim']:>9.3f}{r['val_ppl_fim']:>8.1f}"
            f"{inf['exact_match']:>8.1%}{inf['parse_rate']:>8.1%}{inf['empty_fill_rate']:>8.1%}"
            f"{r['infill_healed']['exact_match']:>13.1%}{r['infill_healed']['parse_rate']:>13.1%}"
            f"{r.get('infill_engine', {}).get('parse_rate', float('nan')):>13.1%}"
            f"{r.get('infill_engine_python', {}).get('parse_rate', float('nan')):>9.1%}"
            f"{r.get('infill_engine_python', {}).get('exact_match', float('nan')):>9.1%}"
            f"{sum(s['loops'] for s in r['samples']):>5}/{len(r['samples'])}"
            f"{sum(s['loops'] for s in r['samples_rep1.1']):>8}/{len(r['samples'])}"
            f"{sum(s['loops'] for s in r['samples_engine']):>11}/{len(r['samples'])}"
        )
        for k in ("speed_fp32", "speed_bf16", "speed_engine"):
            if k in r:
                print(f"  {k}: {r[k]}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
