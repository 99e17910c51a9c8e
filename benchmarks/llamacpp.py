"""llama.cpp (through llama-cpp-python) as a same-run baseline, on the same model in GGUF.

llama-cpp-python builds llama.cpp from source (about 15 minutes on 2 cores); it is optional:
``scripts/install-llamacpp`` (see benchmarks/RESULTS.md). The prompt
token ids are DeepShiva's own (the GGUF carries the same vocabulary), so both engines see the
identical sequence. llama-cpp-python reuses the KV cache for a shared prompt prefix by itself.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

from .shapes import CACHE

SDIST = CACHE / "sdist" / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"


def available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return SDIST.is_dir()


def gguf_for(model_dir: Path, out_type: str = "f32") -> Path:
    """Convert ``model_dir`` once (cached) and return the GGUF file."""
    import subprocess
    import sys

    out = CACHE / "gguf" / f"{model_dir.name}-{out_type}.gguf"
    weights = max((p.stat().st_mtime for p in model_dir.glob("*.safetensors")), default=0.0)
    if not out.exists() or out.stat().st_mtime < weights:  # reconvert a retrained model
        out.parent.mkdir(parents=True, exist_ok=True)
        if (
            out_type in QUANTIZED_TYPES
        ):  # the conversion script writes 16-bit; llama.cpp rounds from it
            _quantize(gguf_for(model_dir, "bf16"), out, QUANTIZED_TYPES[out_type])
        else:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.gguf_convert",
                    str(SDIST),
                    str(model_dir),
                    str(out),
                    out_type,
                ],
                check=True,
                capture_output=True,
            )
    return out


# llama.cpp's own file types (llama_ftype) for types its conversion script does not write
QUANTIZED_TYPES = {"q4_0": 2}


def _quantize(source: Path, out: Path, ftype: int) -> None:
    """llama.cpp's quantizer (llama_model_quantize, as its llama-quantize tool runs it) over a GGUF."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {source} to {out.name}")


def load(gguf: Path, context: int, threads: int, extra_buffers: bool = True):
    """``extra_buffers=False`` loads without llama.cpp's extra buffer types (AMX, weights
    repacked for its GEMMs): its Q8_0/Q4_0 decode crashed in them on the native-bf16/AMX VM of
    2026-12-06 (segmentation fault in ``llama_decode``), and llama-cpp-python has no argument for
    it, so its default model parameters are swapped for the one call."""
    import llama_cpp.llama_cpp as low_level
    from llama_cpp import Llama

    defaults = low_level.llama_model_default_params

    def without_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    if not extra_buffers:
        low_level.llama_model_default_params = without_extra_buffers
    try:
        return Llama(
            model_path=str(gguf),
            n_ctx=context,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=512,
            verbose=False,
        )
    finally:
        low_level.llama_model_default_params = defaults


def measure(llm, ids: list[int], new: int, repeats: int) -> dict:
    """Cold time to first token and decode tokens/s, like benchmarks.engine measures DeepShiva."""
    ttfts, rates, counts = [], [], []
    for _ in range(repeats):
        llm.reset()
        started = time.perf_counter()
        first = None
        count = 0
        for _chunk in llm.create_completion(prompt=ids, max_tokens=new, temperature=0, stream=True):
            count += 1
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        ttfts.append((first - started) * 1000)
        rates.append((count - 1) / (end - first) if end > first else float("nan"))
        counts.append(count)
    return {
        "ttft_ms": statistics.median(ttfts),
        "decode_tok_s": statistics.median(rates),
        "tokens": statistics.median(counts),  # fewer than asked: it stopped at an end token
    }


def replay_engine(llm, deepshiva_llm, max_tokens: int = 48):
    """The replay's ``complete`` for llama.cpp: one slot, streamed, abandoned when superseded.

    It gets the same work as DeepShiva: the same healed prompt ids, the first tokens held to
    regrow the healed text (a logits processor, the one thing llama.cpp does not do itself), and
    a stop at the first newline after that text. Without the healing constraint the model, cut
    before its newline token, mostly answered with a newline and stopped: an empty suggestion.
    """
    import numpy as np
    from llama_cpp import LogitsProcessorList

    from core.request import GenerationRequest

    lock = threading.Lock()
    healer = deepshiva_llm.healer

    def complete(prefix: str, suffix: str, cancel: threading.Event) -> tuple[int, int, str]:
        request = GenerationRequest.checked(
            prefix,
            suffix=suffix,
            max_length=max_tokens,
            context_length=deepshiva_llm.context_length,
        )
        ids, heal, _, _ = deepshiva_llm.encode_prompt(request)
        state = {"heal": heal, "seen": len(ids)}

        def regrow_healed_text(input_ids, scores):
            for token in input_ids[state["seen"] :]:  # tokens generated since the last call
                state["heal"] = healer.advance(state["heal"], int(token)) if state["heal"] else ""
            state["seen"] = len(input_ids)
            if not state["heal"]:
                return scores
            masked = np.full_like(scores, -np.inf)
            allowed = healer.allowed(state["heal"]).numpy()
            masked[allowed] = scores[allowed]
            return masked

        steps = 0
        text = ""
        with lock:
            if cancel.is_set():
                return 0, 0, ""
            # llama-cpp-python keeps its cache and evaluates only what follows the longest
            # common prefix with the tokens it holds (at least one token, to refresh logits).
            reused = llm.longest_token_prefix(llm._input_ids.tolist(), ids)
            computed = max(len(ids) - reused, 1)
            for chunk in llm.create_completion(
                prompt=ids,
                max_tokens=max_tokens + (1 if heal else 0),
                temperature=0,
                stream=True,
                logits_processor=LogitsProcessorList([regrow_healed_text]),
            ):
                steps += 1
                text += chunk["choices"][0]["text"]
                if cancel.is_set() or "\n" in text[len(heal) :]:
                    break
        return computed, max(steps - 1, 0), text[len(heal) :].split("\n", 1)[0]

    return complete
