"""One-token decode steps in a single C call: the same logits and cache as the op-by-op NumPy path."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from core import compact_weights
from core.blas_decode import cache_view
from core.cpu_attention import kv_kind
from core.lean_llama import LeanLlamaBackend
from test_families import FAMILIES, SHAPE

pytestmark = pytest.mark.skipif(
    not compact_weights.available(), reason="the C kernels are not built here"
)


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.mark.parametrize("precision", ["bf16", "fp16", "int8", "int4"])
def test_fused_steps_give_the_op_by_op_logits_and_cache(hf_model, precision, kernel_variant):
    """In every kernel variant (the fused step's C loops are compiled once per variant)."""
    compact_weights.use_variant()  # built where compact weights are offered (not portable), then run in each
    fused, op_by_op = (LeanLlamaBackend(hf_model, decode_weights=precision) for _ in range(2))
    compact_weights.use_variant(kernel_variant)
    assert fused.blas.fused is not None
    op_by_op.blas.fused = None
    prompt = list(range(5, 300))
    fused.forward(prompt), op_by_op.forward(prompt)
    for token in (11, 12, 13):
        a, b = fused.forward([token]), op_by_op.forward([token])
        assert a.shape == b.shape == (hf_model.config.vocab_size,)
        assert float((a - b).abs().max()) < 1e-4
    a, b = fused.forward([14], all_logits=True), op_by_op.forward([14], all_logits=True)
    assert a.shape == b.shape == (1, hf_model.config.vocab_size)
    assert_caches_agree(fused, op_by_op)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_fused_steps_write_and_read_an_int8_cache_as_op_by_op(hf_model, precision, kernel_variant):
    """An int8 KV cache (rows of int8 values and an fp32 scale) written by the fused C step and by
    NumPy (kv_int8.quantize_numpy) holds the same rows, up to one step of a value where sums in
    another order land it across a rounding boundary; the logits agree within that rounding."""
    from core import kv_int8

    compact_weights.use_variant()
    fused, op_by_op = (
        LeanLlamaBackend(hf_model, decode_weights=precision, kv_cache="int8") for _ in range(2)
    )
    compact_weights.use_variant(kernel_variant)
    assert fused.kv_dtype == torch.int8 and fused.blas.fused is not None
    op_by_op.blas.fused = None
    fused.forward(list(range(5, 300))), op_by_op.forward(list(range(5, 300)))
    for token in (11, 12, 13):
        a, b = fused.forward([token]), op_by_op.forward([token])
        assert float((a - b).abs().max()) < 1e-2 * max(1.0, float(b.abs().max()))
    n, dim = fused.length, fused.head_dim
    for cache in ("k_cache", "v_cache"):
        rows_a, rows_b = getattr(fused, cache)[..., :n, :], getattr(op_by_op, cache)[..., :n, :]
        assert rows_a.shape[-1] == dim + 4
        a, b = kv_int8.dequantize_torch(rows_a), kv_int8.dequantize_torch(rows_b)
        scale = rows_b[..., dim:].contiguous().view(torch.float32)
        assert bool(((a - b).abs() <= 1.01 * scale + 1e-5).all()), cache


def assert_caches_agree(fused, op_by_op):
    """The caches written by both paths agree: within fp32 rounding, or (a 16-bit cache) within
    two steps of its format: sums taken in another order land a value on the other side of a
    rounding boundary (one step), and a later layer's keys see that step in their input."""
    n = fused.length
    assert fused.kv_dtype == op_by_op.kv_dtype
    step = 2 * torch.finfo(fused.kv_dtype).eps if fused.kv_dtype != torch.float32 else 0.0
    for cache in ("k_cache", "v_cache"):
        a = getattr(fused, cache)[..., :n, :].float()
        b = getattr(op_by_op, cache)[..., :n, :].float()
        assert bool(((a - b).abs() <= 1e-5 + step * b.abs()).all()), cache


def family_model(family: str):
    """A tiny random model of ``family`` (test_families' configs), norm and bias weights
    randomized too, so a norm or bias the fused step gets wrong shows in the logits."""
    config_cls, model_cls, extra = FAMILIES[family][:3]
    torch.manual_seed(2)
    model = model_cls(config_cls(**{**SHAPE, **extra}, vocab_size=512)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.uniform_(-0.5, 0.5) if family == "gemma" else p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
    return model


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_every_family_steps_fused_as_op_by_op(family, precision, kernel_variant):
    """Each family's layer (LayerNorm with bias, q/k/v and MLP biases, GELU, a plain MLP, partial
    RoPE, (1 + w) RMSNorm, a sliding window) in the fused C step: the op-by-op NumPy path's
    logits and cache, in every kernel variant, before and past the window (48 keys here)."""
    model = family_model(family)
    compact_weights.use_variant()
    fused, op_by_op = (LeanLlamaBackend(model, decode_weights=precision) for _ in range(2))
    compact_weights.use_variant(kernel_variant)
    assert fused.blas.fused is not None, fused.blas.fused_why_not
    op_by_op.blas.fused = None
    prompt = list(range(5, 45))
    fused.forward(prompt), op_by_op.forward(prompt)
    for token in range(11, 23):  # positions 40..51: across the window's edge
        a, b = fused.forward([token]), op_by_op.forward([token])
        assert float((a - b).abs().max()) < 1e-4 * max(1.0, float(b.abs().max()))
    assert_caches_agree(fused, op_by_op)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_steps_fused_as_op_by_op_over_an_int8_cache(family, kernel_variant):
    """The same across the window's edge with DEEPSHIVA_KV_CACHE=int8: the fused C step and the
    op-by-op path (NumPy attention past a sliding window) write and read the same int8 rows, the
    logits within int8's rounding of each other."""
    from core import kv_int8

    model = family_model(family)
    compact_weights.use_variant()
    fused, op_by_op = (
        LeanLlamaBackend(model, decode_weights="bf16", kv_cache="int8") for _ in range(2)
    )
    compact_weights.use_variant(kernel_variant)
    assert fused.blas.fused is not None and fused.kv_dtype == torch.int8
    op_by_op.blas.fused = None
    prompt = list(range(5, 45))
    fused.forward(prompt), op_by_op.forward(prompt)
    for token in range(11, 23):  # positions 40..51: across the window's edge
        a, b = fused.forward([token]), op_by_op.forward([token])
        assert float((a - b).abs().max()) < 1e-2 * max(1.0, float(b.abs().max()))
    n, dim = fused.length, fused.head_dim
    for cache in ("k_cache", "v_cache"):
        rows_a, rows_b = getattr(fused, cache)[..., :n, :], getattr(op_by_op, cache)[..., :n, :]
        a, b = kv_int8.dequantize_torch(rows_a), kv_int8.dequantize_torch(rows_b)
        scale = rows_b[..., dim:].contiguous().view(torch.float32)
        assert bool(((a - b).abs() <= 1.01 * scale + 1e-5).all()), cache


def test_fp32_decode_weights_keep_the_numpy_path(hf_model):
    assert LeanLlamaBackend(hf_model, decode_weights="fp32").blas.fused is None


def test_draft_checks_still_match_after_fused_steps(hf_model):
    fused, op_by_op = (LeanLlamaBackend(hf_model, decode_weights="bf16") for _ in range(2))
    op_by_op.blas.fused = None
    for backend in (fused, op_by_op):
        backend.forward(list(range(5, 100)))
        backend.forward([7])
    a, b = (
        fused.forward([8, 9, 10, 11], all_logits=True),
        op_by_op.forward([8, 9, 10, 11], all_logits=True),
    )
    assert float((a - b).abs().max()) < 1e-4


def test_bad_buffers_are_refused_by_name(hf_model):
    from core import _kernels

    backend = LeanLlamaBackend(hf_model, decode_weights="bf16")
    backend.forward([5, 6])
    fused, shape = backend.blas.fused, backend.blas.fused.shape
    k, v = cache_view(backend.k_cache), cache_view(backend.v_cache)
    rope = backend.rope[2].numpy()

    def call(x=None, layers=None, start=2, ops=()):
        x = np.zeros(shape["hidden"], np.float32) if x is None else x
        _kernels.decode_layers(
            fused.kind,
            x,
            fused.layers if layers is None else layers,
            rope,
            k,
            v,
            shape["hidden"],
            shape["heads"],
            shape["kv_heads"],
            shape["dim"],
            shape["mlp"],
            start,
            shape["eps"],
            shape["scale"],
            1,
            *(ops or fused.ops + (kv_kind(k),)),
        )

    call()  # the real buffers pass
    with pytest.raises(ValueError, match="kv_kind must be"):
        call(ops=fused.ops + (4,))
    with pytest.raises(ValueError, match="x is not hidden fp32"):
        call(x=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="start is outside the cache"):
        call(start=k.shape[3])
    with pytest.raises(ValueError, match="not a tuple of ten buffers"):
        call(layers=[fused.layers[0][:9]] + fused.layers[1:])
    swapped = list(fused.layers[0])
    swapped[1], swapped[3] = swapped[3], swapped[1]  # o where qkv belongs
    with pytest.raises(ValueError, match="qkv is not"):
        call(layers=[tuple(swapped)] + fused.layers[1:])
    short_bias = fused.layers[0][:10] + (None, None, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="a bias is not fp32 of its product's"):
        call(layers=[short_bias] + fused.layers[1:])
    norm_bias = fused.layers[0][:10] + (np.zeros(shape["hidden"], np.float32),)
    with pytest.raises(ValueError, match="RMSNorm has no bias"):
        call(layers=[norm_bias] + fused.layers[1:])
    with pytest.raises(ValueError, match="rotary_dims must be even"):
        call(ops=(0, 0, 1, 3, 0))
    with pytest.raises(ValueError, match="activation must be"):
        call(ops=(0, 7))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_draft_checks_run_where_they_measured_fastest(hf_model, precision):
    """A one-token step always runs in NumPy/C; a draft check (several rows) too from compact
    copies, but from fp32 weights in PyTorch, whose few-row GEMMs beat OpenBLAS's
    (benchmarks/RESULTS.md); both give the same logits as a plain pass."""
    backend = LeanLlamaBackend(hf_model, decode_weights=precision)
    reference = LeanLlamaBackend(hf_model, decode_weights="fp32", blas=False)  # PyTorch only
    rows_seen = []
    numpy_forward = backend.blas.forward
    backend.blas.forward = lambda ids, all_logits=False: (
        rows_seen.append(len(ids)) or numpy_forward(ids, all_logits)
    )
    for b in (backend, reference):
        b.forward(list(range(5, 60)))
    backend.forward([7]), reference.forward([7])
    a, b = (
        backend.forward([8, 9, 10], all_logits=True),
        reference.forward([8, 9, 10], all_logits=True),
    )
    assert rows_seen == ([1] if precision == "fp32" else [1, 3])
    tolerance = 1e-4 if precision == "fp32" else 2e-2  # bf16 copies round the fp32 weights
    assert float((a - b).abs().max()) < tolerance * max(1.0, float(b.abs().max()))
