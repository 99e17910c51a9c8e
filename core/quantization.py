"""8-bit loading through bitsandbytes: what it buys on each device, and its per-call log notice.

Importing this module imports neither torch nor bitsandbytes, so the server can describe a model
without loading either.
"""

from __future__ import annotations

import logging
import warnings

# bitsandbytes casts a bf16/fp32 model's activations to fp16 for its int8 kernels and says so on
# every call of every 8-bit layer (154 lines for one 16-token request of a 2-layer model): through
# this logger in current versions, through warnings.warn in older ones.
INT8_CAST_NOTICE = "MatMul8bitLt: inputs will be cast"
INT8_CAST_LOGGER = "bitsandbytes.autograd._functions"

# What load_in_8bit buys, by device type (/model_status's quantization_note). CPU: measured with
# benchmarks/load_in_8bit.py (weights 0.51x, RSS once loaded 1.07x on a 146 MB model, requests 2-3x
# slower). CUDA: bitsandbytes' own maintainers say LLM.int8's kernels were made for memory, not for
# fast single-stream decoding (not measured here: no GPU).
INT8_TRADE = {
    "cpu": "load_in_8bit saves memory, not time, on the CPU: int8 weights take half the bytes of bf16 ones "
    "(a net saving for models above a few hundred MB: bitsandbytes itself takes about 120 MB), and "
    "decoding runs through transformers, slower than the default path (decode_weights=int8 is "
    "DeepShiva's fast int8 path on the CPU)",
    "cuda": "load_in_8bit saves GPU memory, so a larger model fits: int8 weights (bitsandbytes LLM.int8) take "
    "about half the memory of fp16/bf16 ones; token-by-token decoding is usually slower than fp16/bf16",
}


class _DropInt8CastNotice(logging.Filter):
    """Drops bitsandbytes' per-call cast notice; every other record of its logger passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(INT8_CAST_NOTICE)


def quiet_int8_cast_notice() -> None:
    """Silence only bitsandbytes' "inputs will be cast" notice, whichever way it is emitted."""
    logger = logging.getLogger(INT8_CAST_LOGGER)
    if not any(isinstance(f, _DropInt8CastNotice) for f in logger.filters):
        logger.addFilter(_DropInt8CastNotice())
    warnings.filterwarnings("ignore", message=INT8_CAST_NOTICE)


def int8_trade(quantization: str | None, device: str | None) -> str | None:
    """What a loaded model's 8-bit weights buy on its device; None when it is not 8-bit."""
    if quantization != "int8" or not device:
        return None
    return INT8_TRADE.get(str(device).split(":", 1)[0])
