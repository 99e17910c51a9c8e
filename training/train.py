"""Train DeepShiva's shipped model: a small Llama causal LM with FIM, on the Python stdlib.

Time-budgeted: ``--minutes`` fixes the time spent in training steps (data preparation and
validation are not counted) and the cosine learning-rate schedule follows that time, so runs of
different sizes compare at equal compute on this CPU.
Validation loss (plain and FIM) on the held-out files is logged to ``<out>/train.log`` and
``<out>/metrics.jsonl``. The result is saved with ``save_pretrained`` (bf16 safetensors)
together with the tokenizer and a generation config.

    python -m training.train --out training/runs/main --minutes 75

``--init-from`` continues a saved model with a fresh warmup and cosine: more compute for a model
that is already shipped, without redoing the first run.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from core.devices import cpu_has_native_bf16
from training import data, fim, repo_samples, tokenizer as tk

CHARS_PER_CHUNK = 3400  # ~1000 tokens at ~3.8 bytes/token: one FIM sample fits one window


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Train the tiny Python FIM model.")
    ap.add_argument("--out", type=Path, required=True, help="output directory (model + logs)")
    ap.add_argument("--minutes", type=float, default=75.0, help="wall-clock training budget")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4, help="sequences per optimizer step")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup-steps", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--fim-rate", type=float, default=0.5)
    ap.add_argument(
        "--line-share",
        type=float,
        default=fim.LINE_MIDDLE_SHARE,
        help="share of FIM samples whose middle ends at a line end (0: v1-v3 mix)",
    )
    ap.add_argument(
        "--spm-share",
        type=float,
        default=fim.SPM_SHARE,
        help="share of FIM samples in SPM order (0: PSM only, as v1-v3)",
    )
    ap.add_argument(
        "--repo-rate",
        type=float,
        default=0.0,
        help="repository samples per file of a multi-file package per epoch, on average "
        "(training/repo_samples.py; 0: none, as v1-v5)",
    )
    ap.add_argument(
        "--extra-packages",
        nargs="*",
        default=list(data.EXTRA_PACKAGES),
        help="installed packages whose sources join the stdlib (none: stdlib only)",
    )
    ap.add_argument(
        "--stdlib-weight",
        type=int,
        default=2,
        help="times the stdlib (the evaluation's domain) is seen per epoch",
    )
    ap.add_argument("--eval-every", type=float, default=5.0, help="minutes between val evals")
    ap.add_argument("--val-windows", type=int, default=32, help="val windows per kind")
    ap.add_argument(
        "--snapshot-at",
        type=float,
        nargs="*",
        default=[],
        help="also save the model after these many minutes (<out>/snapshot-<m>min)",
    )
    ap.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="existing tokenizer dir; default: train one into <out>/tokenizer",
    )
    ap.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="continue from a saved model dir (its weights, config and tokenizer; "
        "--layers/--hidden/--tokenizer are then ignored)",
    )
    ap.add_argument(
        "--dtype",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="autocast dtype; auto uses bf16 only where the CPU has native bf16",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    return ap.parse_args(argv)


class Log:
    """Appends human-readable lines to train.log and records to metrics.jsonl."""

    def __init__(self, out: Path):
        self.text = open(out / "train.log", "a", buffering=1)
        self.jsonl = open(out / "metrics.jsonl", "a", buffering=1)

    def __call__(self, msg: str, **record) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        self.text.write(line + "\n")
        if record:
            self.jsonl.write(json.dumps(record) + "\n")


def encode_samples(tok: PreTrainedTokenizerFast, samples) -> list[list[int]]:
    """Token ids of each sample; special-token pieces map straight to their ids."""
    special = {t: tok.convert_tokens_to_ids(t) for t in tk.SPECIAL_TOKENS}
    texts = [p for pieces, _ in samples for p in pieces if p not in special]
    encoded = iter(tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False))
    out = []
    for pieces, _ in samples:
        ids = []
        for p in pieces:
            ids.extend([special[p]] if p in special else next(encoded).ids)
        out.append(ids)
    return out


def pack(seqs: list[list[int]], seq_len: int) -> torch.Tensor:
    """Concatenate sequences and cut into full windows of seq_len tokens."""
    flat = [i for s in seqs for i in s]
    n = len(flat) // seq_len
    return torch.tensor(flat[: n * seq_len], dtype=torch.long).view(n, seq_len)


def pack_aligned(
    aligned: list[list[int]], stream: list[list[int]], seq_len: int, sep: int
) -> torch.Tensor:
    """Windows that each start with one of ``aligned`` (a sample longer than the window loses its
    front), filled up from ``stream`` after a ``sep`` token; the rest of ``stream`` packed after.

    A repository sample packed into the stream like any other would usually straddle two windows
    and leave its context in one and the file that uses it in the other: at a median of 818
    tokens (one epoch's draw at --repo-rate 6), 24% fit whole in a 1,024-token window. Starting a
    window with one keeps the context and the completion that needs it in one attention span."""
    flat = [i for s in stream for i in s]
    rows, pos = [], 0
    for ids in aligned:
        ids = ids[-seq_len:]
        fill = seq_len - len(ids)
        if fill:
            filler = [sep, *flat[pos : pos + fill - 1]]
            pos += fill - 1
            filler += [sep] * (fill - len(filler))
            ids = ids + filler
        rows.append(ids)
    rest = pack([flat[pos:]], seq_len)
    if not rows:
        return rest
    return torch.cat([torch.tensor(rows, dtype=torch.long), rest])


def val_sets(tok, val_files, args) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Fixed validation windows: plain (loss on all tokens) and FIM (loss on middle + EOS)."""
    rng = random.Random(0)
    texts = [f.text for f in val_files]
    plain = pack(
        encode_samples(tok, fim.make_samples(texts, rng, 0.0, CHARS_PER_CHUNK)), args.seq_len
    )[: args.val_windows]
    fim_samples = fim.make_samples(texts, rng, 1.0, CHARS_PER_CHUNK, line_share=0.0, spm_share=0.0)
    mid_id = tok.convert_tokens_to_ids(tk.FIM_MIDDLE)
    rows, masks = [], []
    for ids in encode_samples(tok, fim_samples):
        ids = ids[: args.seq_len]
        if mid_id not in ids or ids.index(mid_id) >= len(ids) - 1:
            continue
        m = ids.index(mid_id)
        labels = [-100] * (m + 1) + ids[m + 1 :]
        pad = args.seq_len - len(ids)
        rows.append(ids + [0] * pad)
        masks.append(labels + [-100] * pad)
        if len(rows) >= args.val_windows * 2:
            break
    plain_labels = plain.clone()
    return {"plain": (plain, plain_labels), "fim": (torch.tensor(rows), torch.tensor(masks))}


@torch.no_grad()
def evaluate(model, sets, autocast: bool, bs: int = 4) -> dict[str, float]:
    """Token-weighted mean cross-entropy (nats/token) for each validation set."""
    model.eval()
    result = {}
    for name, (x, y) in sets.items():
        tot, n = 0.0, 0
        for i in range(0, len(x), bs):
            xb, yb = x[i : i + bs], y[i : i + bs]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model(input_ids=xb).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)),
                yb[:, 1:].reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            tot += loss.item()
            n += int((yb[:, 1:] != -100).sum())
        result[name] = tot / max(n, 1)
    model.train()
    return result


def repo_sizes(seq_len: int) -> tuple[int, int]:
    """Characters of context and of target chunk per repository sample for this window."""
    if seq_len >= 2048:
        return repo_samples.LONG_WINDOW_CHARS
    return repo_samples.CONTEXT_CHARS, repo_samples.TARGET_CHARS


def build_model(args, tok) -> LlamaForCausalLM:
    """A Llama with tied embeddings, SwiGLU width ~8/3 of hidden, context seq_len."""
    heads = max(1, args.hidden // args.head_dim)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=args.hidden,
        intermediate_size=int(round(args.hidden * 8 / 3 / 64)) * 64,
        num_hidden_layers=args.layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=args.seq_len,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.02,
    )
    return LlamaForCausalLM(cfg)


def lr_at(args, step: int, frac: float) -> float:
    """Linear warmup by steps, then cosine by elapsed fraction of the time budget."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    cos = 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * cos)


def save(model, tok, out: Path) -> None:
    """save_pretrained in bf16 safetensors, plus tokenizer and generation config."""
    out.mkdir(parents=True, exist_ok=True)
    m = copy.deepcopy(model).to(torch.bfloat16)
    m.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=[tok.convert_tokens_to_ids(t) for t in tk.SPECIAL_TOKENS],
        do_sample=False,
        max_new_tokens=64,
    )
    m.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out)
    autocast = args.dtype == "bf16" or (args.dtype == "auto" and cpu_has_native_bf16())
    log(f"args: {vars(args)} autocast_bf16={autocast}")

    train_files, val_files = data.split()
    stdlib_texts = [f.text for f in train_files]
    if args.init_from or args.tokenizer:
        tok = PreTrainedTokenizerFast.from_pretrained(args.init_from or args.tokenizer)
    else:
        tok = tk.build(args.out / "tokenizer", stdlib_texts, args.vocab_size)
    extra_files = [f for name in args.extra_packages for f in data.collect_package(name)]
    extra = [f.text for f in extra_files]
    texts = stdlib_texts * args.stdlib_weight + extra
    manifest = {
        "stdlib_files": len(train_files),
        "stdlib_weight": args.stdlib_weight,
        "stdlib_bytes": sum(len(t.encode()) for t in stdlib_texts),
        "packages": data.package_manifest(args.extra_packages),
    }
    (args.out / "data.json").write_text(json.dumps(manifest, indent=2))
    log(
        f"data: {len(train_files)} stdlib train files (x{args.stdlib_weight}), {len(extra)} "
        f"package files, {len(val_files)} held-out; vocab {len(tok)}"
    )

    sets = val_sets(tok, val_files, args)
    if args.init_from:
        model = LlamaForCausalLM.from_pretrained(args.init_from, dtype=torch.float32)
    else:
        model = build_model(args, tok)
    if model.config.max_position_embeddings < args.seq_len:  # a continued run on longer windows
        model.config.max_position_embeddings = args.seq_len
    tok.model_max_length = max(tok.model_max_length or 0, args.seq_len)
    eos_id = tok.convert_tokens_to_ids(tk.EOS)
    if args.fim_rate > 0 and args.spm_share > 0:
        model.config.fim_order = "spm"  # the engine's fim_order=auto then lays prompts out SPM
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"model: {model.config.num_hidden_layers}x{model.config.hidden_size}, {n_params / 1e6:.2f}M parameters"
    )

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )

    if args.init_from:  # where the continued model starts, on the same windows as every check
        v = evaluate(model, sets, autocast)
        log(f"val step 0 plain {v['plain']:.3f} fim {v['fim']:.3f}", step=0, tokens=0, **v)

    budget = args.minutes * 60
    snapshots = sorted(args.snapshot_at)
    wall = time.time()
    elapsed = 0.0  # seconds spent in training steps only
    next_eval = args.eval_every * 60
    step, tokens, epoch = 0, 0, 0
    windows, pos = None, 0
    ema = None
    model.train()
    while True:
        if elapsed >= budget:
            break
        if windows is None or pos + args.batch > len(windows):
            # A new epoch: fresh shuffle and fresh FIM split points.
            order = texts[:]
            rng.shuffle(order)
            samples = fim.make_samples(
                order, rng, args.fim_rate, CHARS_PER_CHUNK, args.line_share, args.spm_share
            )
            repo = []
            if args.repo_rate:
                repo = repo_samples.make_repo_samples(
                    train_files + extra_files,
                    rng,
                    args.repo_rate,
                    args.fim_rate,
                    args.line_share,
                    args.spm_share,
                    repo_sizes(args.seq_len),
                )
            windows = pack_aligned(
                encode_samples(tok, repo), encode_samples(tok, samples), args.seq_len, eos_id
            )
            pos = 0
            windows = windows[torch.randperm(len(windows))]
            epoch += 1
            log(f"epoch {epoch}: {len(windows)} windows of {args.seq_len} tokens")
        t0 = time.time()
        x = windows[pos : pos + args.batch]
        pos += args.batch
        lr = lr_at(args, step, elapsed / budget)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens += x.numel()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        elapsed += time.time() - t0
        if step % 20 == 0:
            log(
                f"step {step} tok {tokens} loss {ema:.3f} lr {lr:.2e} "
                f"{tokens / elapsed:.0f} tok/s {elapsed / 60:.1f} min"
            )
        if elapsed >= next_eval:
            v = evaluate(model, sets, autocast)
            log(
                f"val step {step} plain {v['plain']:.3f} fim {v['fim']:.3f}",
                step=step,
                tokens=tokens,
                minutes=elapsed / 60,
                train_loss=ema,
                **v,
            )
            next_eval += args.eval_every * 60
        while snapshots and elapsed >= snapshots[0] * 60:
            save(model, tok, args.out / f"snapshot-{snapshots.pop(0):g}min")

    v = evaluate(model, sets, autocast)
    minutes = elapsed / 60
    final = dict(
        step=step,
        tokens=tokens,
        minutes=minutes,
        train_loss=ema,
        epochs=epoch,
        wall_minutes=(time.time() - wall) / 60,
        parameters=n_params,
        final=True,
        **v,
    )
    log(
        f"final step {step} tokens {tokens} plain {v['plain']:.3f} "
        f"(ppl {math.exp(v['plain']):.1f}) fim {v['fim']:.3f} (ppl {math.exp(v['fim']):.1f})",
        **final,
    )
    save(model, tok, args.out / "model")
    (args.out / "final.json").write_text(json.dumps(final, indent=2))


if __name__ == "__main__":
    main()
