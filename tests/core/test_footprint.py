"""The memory estimate made before a load (core.backends.footprint) is what the engine then holds,
and a model over the limit is refused before anything is allocated."""

import pytest
import torch
from transformers import AutoConfig

from core import OptimizedLLM, compact_weights
from core.backends import footprint
from core.errors import InvalidParameter, OutOfMemory


@pytest.mark.skipif(
    not compact_weights.available(), reason=str(compact_weights.unavailable_reason())
)
@pytest.mark.parametrize("master", ["fp32", "bf16"])
@pytest.mark.parametrize("fmt", ["fp32", "bf16", "int8", "int4"])
def test_the_estimate_is_the_bytes_the_engine_holds(tiny_model_dir, master, fmt):
    if (master, fmt) == ("bf16", "fp32"):
        pytest.skip("bf16 masters decode from themselves: the bf16 row")
    shape = footprint.shape_of(AutoConfig.from_pretrained(tiny_model_dir))
    estimate = footprint.footprint(shape, footprint.Settings(master, fmt))
    dtype = torch.float32 if master == "fp32" else torch.bfloat16
    llm = OptimizedLLM(str(tiny_model_dir), torch_dtype=dtype, decode_weights=fmt)
    backend = llm.runner.backend
    if fmt != "fp32":
        assert estimate.decode_copy == backend.blas.compact_bytes()
    # Each weight once; the norms stay fp32 under bf16 masters (a few hundred bytes here).
    held = backend.weight_bytes()
    assert abs(estimate.masters + estimate.decode_copy - held) <= 0.01 * held, (estimate, held)
    # The KV cache in the elements the engine writes: bf16 with compact decode weights (half
    # of fp32's bytes), fp32 with fp32 ones.
    backend.forward([1, 2, 3])
    held_per_token = 2 * backend.k_cache.nbytes // backend.capacity  # keys and values
    tokens = min(shape.context, footprint.KV_TOKENS)
    assert estimate.kv_cache == held_per_token * tokens
    assert estimate.kv_cache == shape.kv_bytes_per_token * tokens // (1 if fmt == "fp32" else 2)


def test_a_model_over_the_limit_is_refused_before_loading(tiny_model_dir, monkeypatch):
    from core import engine

    monkeypatch.setattr(engine, "load_model", lambda *a, **k: pytest.fail("loaded anyway"))
    monkeypatch.setenv(footprint.MEMORY_ENV, str(2**20))
    with pytest.raises(OutOfMemory, match=r"needs about .* but 1\.0 MiB \(1048576 bytes\)"):
        OptimizedLLM(str(tiny_model_dir))
    monkeypatch.setenv(footprint.MEMORY_ENV, "lots")
    with pytest.raises(InvalidParameter, match="must be a number of bytes"):
        OptimizedLLM(str(tiny_model_dir))


# A 1B-parameter model's shape in round numbers: 0.9B in compact (decode) matrices, a million
# rows of them, 100 kB of K/V a token, 2,048 positions.
ONE_B_SHAPE = footprint.Shape(
    parameters=10**9,
    compact_weights=9 * 10**8,
    compact_rows=10**6,
    tied_head_weights=0,
    kv_bytes_per_token=10**5,
    context=2048,
)


def test_smaller_settings_are_offered_largest_first():
    shape = ONE_B_SHAPE
    settings = footprint.Settings("fp32", "fp32")
    needed = footprint.footprint(shape, settings).total
    assert footprint.refusal(shape, settings, needed, kernels=True) is None
    why = footprint.refusal(shape, settings, 1.5 * 2**30, kernels=True)
    assert f"needs about 4.17 GiB ({needed} bytes" in why
    assert "1.50 GiB (1610612736 bytes) are available" in why
    offered = why.split("would fit: ")[1]
    # bf16 weights with int8 layers (1.47 GiB), then int4 with fp32 (1.28) and bf16 (1.10) rest
    assert offered.index("decode_weights='int8'") < offered.index("decode_weights='int4'")
    assert "decode_weights='bf16'" not in offered and "decode_weights='fp32'" not in offered
    # Without the kernels only int8 copies (PyTorch's int8 kernel) are offered.
    assert "int4" not in footprint.refusal(shape, settings, 1.5 * 2**30, kernels=False)


def test_the_kv_cache_is_counted_in_the_elements_the_engine_will_write(monkeypatch):
    """fp32 keys and values for fp32 decode weights or without the kernels (the NumPy/C path
    that reads a 16-bit cache does not run), else what select.kv_cache_format picks; asked for
    with DEEPSHIVA_KV_CACHE, the estimate follows."""
    from core.backends import select

    shape = ONE_B_SHAPE
    fp32_cache = 10**5 * 2048

    def kv(fmt, kernels):
        return footprint.footprint(shape, footprint.Settings("bf16", fmt), kernels).kv_cache

    assert kv("fp32", True) == kv("int8", False) == fp32_cache
    chosen = select.kv_cache_format("bf16")[0]
    assert kv("bf16", True) == fp32_cache * select.KV_BYTES[chosen] // 4
    monkeypatch.setenv("DEEPSHIVA_KV_CACHE", "fp16")
    assert kv("int4", True) == fp32_cache // 2
    monkeypatch.setenv("DEEPSHIVA_KV_CACHE", "fp32")
    assert kv("int4", True) == fp32_cache


def test_an_int8_kv_cache_counts_a_byte_a_value_and_a_scale_a_row(monkeypatch):
    """DEEPSHIVA_KV_CACHE=int8: each head's row at a position is dim bytes and an fp32 scale
    (stable-code-3b's shape: 80 + 4 bytes where fp32 takes 320), and the estimate is the bytes
    the engine allocates for that many positions."""
    from core.lean_llama import LeanLlamaBackend
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=160,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    shape = footprint.shape_of(config)
    assert shape.kv_rows_per_token == 2 * 3 * 2 and shape.kv_bytes_per_token == 2 * 3 * 160 * 4
    monkeypatch.setenv("DEEPSHIVA_KV_CACHE", "int8")
    int8 = footprint.footprint(shape, footprint.Settings("bf16", "bf16"), True).kv_cache
    assert int8 == 256 * (2 * 3 * 2) * (80 + 4)
    # What the engine holds for the whole context is that many bytes.
    backend = LeanLlamaBackend(LlamaForCausalLM(config), decode_weights="bf16")
    if backend.blas is not None:
        backend.reserve(256)
        assert backend.kv_dtype == torch.int8
        assert backend.k_cache.nbytes + backend.v_cache.nbytes == int8
