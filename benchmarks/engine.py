"""Engine speed: time to first token and decode tokens/s at several prompt lengths.

For each model: DeepShiva's engine (OptimizedLLM) against the plain-generate baseline on the
same weights, plus the bandwidth the decode achieves (weight bytes x tokens/s) as a share of the
machine's measured memory bandwidth and the prefill FLOP/s as a share of a measured matmul peak.
"""

from __future__ import annotations

import statistics
import sysconfig
from pathlib import Path

import torch

from core import OptimizedLLM

from . import llamacpp
from core.generation import ModelRunner

from .baseline import PlainGenerate, transformers_model
from .hardware import matmul_peak_gflops, memory_bandwidth_gbs
from .shapes import model_dir


def prompt_ids(tokenizer, n: int) -> list[int]:
    """``n`` tokens of real Python source (the standard library's own code)."""
    text = (Path(sysconfig.get_paths()["stdlib"]) / "argparse.py").read_text()
    ids = tokenizer.encode(text, add_special_tokens=False)
    while len(ids) < n:
        ids = ids + ids
    return ids[:n]


def measure_ours(llm: OptimizedLLM, ids: list[int], new: int, repeats: int) -> dict:
    prompt = llm.tokenizer.decode(ids)
    ttfts, rates = [], []
    for _ in range(repeats):
        llm.runner.reset()  # a cold prompt: no reuse from the previous run
        result = llm.complete(prompt, max_length=new, temperature=0, repetition_penalty=1.0)
        decode_ms = result.total_ms - result.time_to_first_token_ms
        ttfts.append(result.time_to_first_token_ms)
        rates.append(
            (result.generated_tokens - 1) / (decode_ms / 1000) if decode_ms > 0 else float("nan")
        )
    return {"ttft_ms": statistics.median(ttfts), "decode_tok_s": statistics.median(rates)}


def measure_baseline(base: PlainGenerate, ids: list[int], new: int, repeats: int) -> dict:
    ttfts, rates = [], []
    for _ in range(repeats):
        first = base.run(ids, max_new_tokens=1)
        whole = base.run(ids, max_new_tokens=new, min_new_tokens=new)
        ttfts.append(first["ms"])
        rates.append((whole["tokens"] - 1) / ((whole["ms"] - first["ms"]) / 1000))
    return {"ttft_ms": statistics.median(ttfts), "decode_tok_s": statistics.median(rates)}


# Decode weights measured beside the engine's own choice, each against llama.cpp at the same
# precision (int8 against Q8_0, which also rounds activations to int8 in blocks of 32).
DECODE_WEIGHTS = ("fp32", "fp16", "bf16", "int8")
LLAMACPP_TYPES = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "q8_0"}
BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 34 / 32}  # q8_0: a 2-byte scale per 32


def measure_decode_weights(
    llm: OptimizedLLM, precision: str, prompts: dict, new: int, repeats: int
) -> dict | None:
    """The same engine with a runner decoding through ``precision`` weights, at every prompt."""
    own = llm.runner
    try:
        model = transformers_model(llm.model.name_or_path, llm.dtype)
        llm.runner = ModelRunner(model, decode_weights=precision, release_model=True)
    except ValueError:
        llm.runner = own
        return None
    try:
        llm.warmup()
        return {n: measure_ours(llm, ids, new, repeats) for n, ids in prompts.items()}
    finally:
        llm.runner = own


def measure_llamacpp(
    directory: Path, out_type: str, context: int, prompts: dict, new: int, repeats: int
) -> dict:
    """llama.cpp on the same model converted to ``out_type``, loaded only while it is measured."""
    cpp = llamacpp.load(llamacpp.gguf_for(directory, out_type), context, torch.get_num_threads())
    try:
        return {n: llamacpp.measure(cpp, ids, new, repeats) for n, ids in prompts.items()}
    finally:
        del cpp


def run(
    models: list[str],
    prompt_lengths: list[int],
    new: int = 64,
    repeats: int = 3,
    with_llamacpp: bool = True,
) -> dict:
    bandwidth = memory_bandwidth_gbs()
    rows = []
    for name in models:
        llm = OptimizedLLM(str(model_dir(name)))
        # Random weights repeat themselves, which would flatter prompt-lookup decoding: measure
        # the plain decode loop here; the replay on real code measures lookup.
        llm.prompt_lookup = False
        # Every engine here decodes the same fixed number of tokens: no early end at a loop.
        llm.loop_guard = False
        peak = matmul_peak_gflops(llm.model.dtype)
        params = llm.info()["parameters"]
        threads = torch.get_num_threads()
        llm.warmup()
        prompts = {
            n: prompt_ids(llm.tokenizer, n) for n in prompt_lengths if n + new <= llm.context_length
        }
        # engine label -> (weights read per decode step, {prompt: measurement})
        measured: dict[str, tuple[str, dict]] = {}
        own = llm.decode_weights
        measured["deepshiva"] = (
            own,
            {n: measure_ours(llm, ids, new, repeats) for n, ids in prompts.items()},
        )
        base = PlainGenerate(transformers_model(model_dir(name), llm.dtype), llm.tokenizer)
        measured["plain-generate"] = (
            "fp32",
            {n: measure_baseline(base, ids, new, repeats) for n, ids in prompts.items()},
        )
        del base
        for precision in DECODE_WEIGHTS:
            if precision != own and (
                m := measure_decode_weights(llm, precision, prompts, new, repeats)
            ):
                measured[f"deepshiva-{precision}-decode"] = (precision, m)
        if with_llamacpp and llamacpp.available() and llm.model.dtype == torch.float32:
            for precision, out_type in LLAMACPP_TYPES.items():
                measured[f"llama.cpp-{out_type}"] = (
                    precision,
                    measure_llamacpp(
                        model_dir(name), out_type, llm.context_length, prompts, new, repeats
                    ),
                )
        for n in prompts:
            plain = measured["plain-generate"][1][n]
            for label, (precision, by_prompt) in measured.items():
                m = by_prompt[n]
                achieved = params * BYTES_PER_WEIGHT[precision] * m["decode_tok_s"] / 1e9
                row = {
                    "model": name,
                    "engine": label,
                    "prompt_tokens": n,
                    "new_tokens": new,
                    "dtype": str(llm.model.dtype).replace("torch.", ""),
                    "decode_weights": precision,
                    "threads": threads,
                    "ttft_ms": round(m["ttft_ms"], 1),
                    "decode_tok_s": round(m["decode_tok_s"], 1),
                    "ms_per_token": round(1000 / m["decode_tok_s"], 2),
                    "bandwidth_share": round(achieved / bandwidth, 3),
                    "prefill_flops_share": round(
                        2 * params * n / (m["ttft_ms"] / 1000) / 1e9 / peak, 3
                    ),
                }
                if label.startswith("deepshiva"):
                    row["decode_speedup_vs_plain"] = round(
                        m["decode_tok_s"] / plain["decode_tok_s"], 2
                    )
                    row["ttft_speedup_vs_plain"] = round(plain["ttft_ms"] / m["ttft_ms"], 2)
                    if label != "deepshiva":
                        row["decode_vs_deepshiva"] = round(
                            m["decode_tok_s"] / measured["deepshiva"][1][n]["decode_tok_s"], 2
                        )
                    same = measured.get(f"llama.cpp-{LLAMACPP_TYPES[precision]}")
                    if same is not None:
                        row["decode_vs_llamacpp"] = round(
                            m["decode_tok_s"] / same[1][n]["decode_tok_s"], 2
                        )
                        row["ttft_vs_llamacpp"] = round(same[1][n]["ttft_ms"] / m["ttft_ms"], 2)
                rows.append(row)
        del llm
    return {"memory_bandwidth_gbs": round(bandwidth, 1), "rows": rows}
