"""The memory estimate made before a load (core.backends.footprint) is what the engine then holds,
and a model over the limit is refused before anything is allocated."""

import pytest
import torch
from transformers import AutoConfig

from core import OptimizedLLM, compact_weights
from core.backends import footprint
from core.devices import weight_bytes
from core.errors import InvalidParameter, OutOfMemory


@pytest.mark.skipif(
    not compact_weights.available(), reason=str(compact_weights.unavailable_reason())
)
@pytest.mark.parametrize("fmt", ["bf16", "int8", "int4"])
def test_the_estimate_is_the_bytes_the_engine_holds(tiny_model_dir, fmt):
    shape = footprint.shape_of(AutoConfig.from_pretrained(tiny_model_dir))
    estimate = footprint.footprint(shape, footprint.Settings("fp32", fmt))
    llm = OptimizedLLM(str(tiny_model_dir), torch_dtype=torch.float32, decode_weights=fmt)
    assert estimate.masters == weight_bytes(llm.model)
    assert estimate.decode_copy == llm._runner.backend.blas.compact_bytes()


def test_a_model_over_the_limit_is_refused_before_loading(tiny_model_dir, monkeypatch):
    from core import engine

    monkeypatch.setattr(engine, "load_model", lambda *a, **k: pytest.fail("loaded anyway"))
    monkeypatch.setenv(footprint.MEMORY_ENV, str(2**20))
    with pytest.raises(OutOfMemory, match=r"needs about .* but 1\.0 MiB \(1048576 bytes\)"):
        OptimizedLLM(str(tiny_model_dir))
    monkeypatch.setenv(footprint.MEMORY_ENV, "lots")
    with pytest.raises(InvalidParameter, match="must be a number of bytes"):
        OptimizedLLM(str(tiny_model_dir))


def test_smaller_settings_are_offered_largest_first():
    shape = footprint.Shape(
        parameters=10**9,
        compact_weights=9 * 10**8,
        compact_rows=10**6,
        stacked_weights=5 * 10**8,
        kv_bytes_per_token=10**5,
        context=2048,
    )
    settings = footprint.Settings("fp32", "fp32")
    needed = footprint.footprint(shape, settings).total
    assert footprint.refusal(shape, settings, needed, kernels=True) is None
    why = footprint.refusal(shape, settings, 3.5 * 2**30, kernels=True)
    assert f"needs about 6.03 GiB ({needed} bytes" in why
    assert "3.50 GiB (3758096384 bytes) are available" in why
    offered = why.split("would fit: ")[1]
    # bf16 masters with int8 (3.15 GiB) then int4 (2.77 GiB); fp32 masters never fit in 3.5 GiB
    assert offered.index("decode_weights='int8'") < offered.index("decode_weights='int4'")
    assert "float32" not in offered
    # Without the kernels only int8 copies (PyTorch's int8 kernel) are offered.
    assert "int4" not in footprint.refusal(shape, settings, 3.5 * 2**30, kernels=False)
