"""load_in_8bit on the CPU: a request is not drowned in bitsandbytes' per-call notices."""

import logging
import warnings

import pytest

from core import OptimizedLLM
from core.quantization import INT8_CAST_LOGGER, int8_trade

pytest.importorskip("bitsandbytes")


def test_an_8bit_request_logs_no_cast_notice_and_other_messages_still_pass(tiny_model_dir, caplog):
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        llm = OptimizedLLM(str(tiny_model_dir), load_in_8bit=True)
        assert "8bit" in type(llm.model.model.layers[0].self_attn.q_proj).__name__
        result = llm.complete("def add(a, b):\n", max_length=16, temperature=0, stop_sequences=[])
    assert (
        result.generated_tokens > 1 and result.decode_steps > 1
    )  # the 8-bit layers really ran, step after step
    casts = [r for r in caplog.records if "inputs will be cast" in r.getMessage()]
    casts += [w for w in warned if "inputs will be cast" in str(w.message)]
    assert casts == []
    # Only that notice is dropped: anything else bitsandbytes' logger says still shows.
    logging.getLogger(INT8_CAST_LOGGER).warning("MatMul8bitLt: something else went wrong")
    assert any("something else went wrong" in r.getMessage() for r in caplog.records)


def test_what_8bit_buys_is_said_per_device():
    assert "memory" in int8_trade("int8", "cpu") and "not time" in int8_trade("int8", "cpu")
    assert "GPU memory" in int8_trade("int8", "cuda:0")
    assert int8_trade(None, "cpu") is None
