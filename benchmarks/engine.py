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
from core.devices import weight_bytes as model_weight_bytes
from core.generation import ModelRunner

from .baseline import PlainGenerate
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
        llm._runner.reset()  # a cold prompt: no reuse from the previous run
        result = llm.complete(prompt, max_length=new, temperature=0, repetition_penalty=1.0)
        decode_ms = result.total_ms - result.time_to_first_token_ms
        ttfts.append(result.time_to_first_token_ms)
        rates.append((result.generated_tokens - 1) / (decode_ms / 1000) if decode_ms > 0 else float("nan"))
    return {"ttft_ms": statistics.median(ttfts), "decode_tok_s": statistics.median(rates)}


def measure_baseline(base: PlainGenerate, ids: list[int], new: int, repeats: int) -> dict:
    ttfts, rates = [], []
    for _ in range(repeats):
        first = base.run(ids, max_new_tokens=1)
        whole = base.run(ids, max_new_tokens=new, min_new_tokens=new)
        ttfts.append(first["ms"])
        rates.append((whole["tokens"] - 1) / ((whole["ms"] - first["ms"]) / 1000))
    return {"ttft_ms": statistics.median(ttfts), "decode_tok_s": statistics.median(rates)}


def measure_int8(llm: OptimizedLLM, ids: list[int], new: int, repeats: int) -> tuple[dict, int] | None:
    """The same engine decoding through int8 weight copies (``int8_decode``), on the same model."""
    exact = llm._runner
    try:
        llm._runner = ModelRunner(llm.model, int8_decode=True)
    except ValueError:
        return None
    try:
        int8_bytes = sum(w.q.numel() + 2 * w.scales.numel() for w in llm._runner.backend.int8_weights())
        return measure_ours(llm, ids, new, repeats), int8_bytes
    finally:
        llm._runner = exact


def run(models: list[str], prompt_lengths: list[int], new: int = 64, repeats: int = 3,
        with_llamacpp: bool = True) -> dict:
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
        weight_bytes = model_weight_bytes(llm.model)
        params = sum(p.numel() for p in llm.model.parameters())
        base = PlainGenerate(llm.model, llm.tokenizer)
        cpp = cpp_q8 = None
        if with_llamacpp and llamacpp.available() and llm.model.dtype == torch.float32:
            threads = torch.get_num_threads()
            cpp = llamacpp.load(llamacpp.gguf_for(model_dir(name)), llm.context_length, threads)
            cpp_q8 = llamacpp.load(llamacpp.gguf_for(model_dir(name), "q8_0"), llm.context_length, threads)
        llm.warmup()
        for n in prompt_lengths:
            if n + new > llm.context_length:
                continue
            ids = prompt_ids(llm.tokenizer, n)
            ours = measure_ours(llm, ids, new, repeats)
            plain = measure_baseline(base, ids, new, repeats)
            measured = [("deepshiva", ours), ("plain-generate", plain)]
            if cpp is not None:
                measured.append(("llama.cpp", llamacpp.measure(cpp, ids, new, repeats)))
            int8 = measure_int8(llm, ids, new, repeats)
            extra = []
            if int8 is not None:
                extra.append(("deepshiva-int8-decode", int8[0], int8[1], "int8 (decode)"))
            if cpp_q8 is not None:
                extra.append(("llama.cpp-q8_0", llamacpp.measure(cpp_q8, ids, new, repeats), params * 34 // 32, "q8_0"))
            for label, m in measured:
                achieved = weight_bytes * m["decode_tok_s"] / 1e9
                prefill_gflops = 2 * params * n / (m["ttft_ms"] / 1000) / 1e9
                rows.append({
                    "model": name, "engine": label, "prompt_tokens": n, "new_tokens": new,
                    "dtype": str(llm.model.dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
                    "ttft_ms": round(m["ttft_ms"], 1), "decode_tok_s": round(m["decode_tok_s"], 1),
                    "ms_per_token": round(1000 / m["decode_tok_s"], 2),
                    "bandwidth_share": round(achieved / bandwidth, 3),
                    "prefill_flops_share": round(prefill_gflops / peak, 3),
                })
            ours_row = rows[-len(measured)]
            ours_row["decode_speedup_vs_plain"] = round(ours["decode_tok_s"] / plain["decode_tok_s"], 2)
            ours_row["ttft_speedup_vs_plain"] = round(plain["ttft_ms"] / ours["ttft_ms"], 2)
            if cpp is not None:
                cpp_m = measured[-1][1]
                ours_row["decode_vs_llamacpp"] = round(ours["decode_tok_s"] / cpp_m["decode_tok_s"], 2)
                ours_row["ttft_vs_llamacpp"] = round(cpp_m["ttft_ms"] / ours["ttft_ms"], 2)
            for label, m, nbytes, dtype in extra:
                rows.append({
                    "model": name, "engine": label, "prompt_tokens": n, "new_tokens": new, "dtype": dtype,
                    "threads": torch.get_num_threads(), "ttft_ms": round(m["ttft_ms"], 1),
                    "decode_tok_s": round(m["decode_tok_s"], 1), "ms_per_token": round(1000 / m["decode_tok_s"], 2),
                    "bandwidth_share": round(nbytes * m["decode_tok_s"] / 1e9 / bandwidth, 3),
                    "decode_speedup_vs_plain": round(m["decode_tok_s"] / plain["decode_tok_s"], 2),
                    "decode_vs_deepshiva_fp": round(m["decode_tok_s"] / ours["decode_tok_s"], 2),
                })
            if int8 is not None and cpp_q8 is not None:
                rows[-2]["decode_vs_llamacpp"] = round(int8[0]["decode_tok_s"] / extra[1][1]["decode_tok_s"], 2)
        del llm, base, cpp, cpp_q8
    return {"memory_bandwidth_gbs": round(bandwidth, 1), "rows": rows}
