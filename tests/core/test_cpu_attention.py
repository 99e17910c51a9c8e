"""The C attention of decode steps: the same numbers as softmax attention written out in NumPy."""

import numpy as np
import pytest

from core import compact_weights, cpu_attention

# Attention runs in every kernel variant, the portable one included (a build without SIMD).
pytestmark = pytest.mark.skipif(
    compact_weights._kernels is None, reason="the C kernels are not built here"
)


def reference(q, k, v, start, scale):
    """Causal softmax attention, one (row, head) at a time."""
    count, heads, dim = q.shape
    group = heads // k.shape[0]
    out = np.zeros((count, heads, dim), np.float64)
    for r in range(count):
        for h in range(heads):
            keys, values = k[h // group, : start + r + 1], v[h // group, : start + r + 1]
            scores = keys.astype(np.float64) @ q[r, h] * scale
            weights = np.exp(scores - scores.max())
            out[r, h] = weights @ values / weights.sum()
    return out.reshape(count, heads * dim)


@pytest.mark.parametrize(
    "heads, kv_heads, dim, capacity, start, count",
    [
        (32, 4, 64, 2048, 1023, 1),  # the 1B shape's decode step: grouped query heads
        (4, 4, 64, 1024, 300, 7),  # the shipped model's shape, a draft check of 7 rows
        (6, 2, 20, 64, 0, 3),  # a head size the vector loops do not divide
        (4, 2, 24, 64, 12, 2),  # 8s but not 16s: the 8-wide loop in the AVX512 build, 13 keys
        (8, 8, 128, 512, 37, 8),
        (2, 1, 64, 16, 5, 1),  # fewer keys than one vector
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_matches_softmax_attention_with_the_causal_mask(
    heads, kv_heads, dim, capacity, start, count, threads, kernel_variant
):
    rng = np.random.default_rng(heads * dim + start)
    q = rng.standard_normal((count, heads, dim), dtype=np.float32) * 3
    k = rng.standard_normal((kv_heads, capacity, dim), dtype=np.float32)
    v = rng.standard_normal((kv_heads, capacity, dim), dtype=np.float32)
    k[:, start + count :] = 1e4  # beyond the rows' own positions: must not be seen
    out = cpu_attention.attend(q, k, v, start, dim**-0.5, threads)
    assert out.shape == (count, heads * dim) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference(q, k, v, start, dim**-0.5), rtol=0, atol=2e-5)


def test_peaked_and_flat_scores_stay_finite(kernel_variant):
    q = np.zeros((1, 2, 64), np.float32)
    q[0, 0] = 100.0  # scores in the thousands: exponentials far below e^-87 for all but one key
    k = np.random.default_rng(0).standard_normal((2, 40, 64)).astype(np.float32)
    v = np.random.default_rng(1).standard_normal((2, 40, 64)).astype(np.float32)
    out = cpu_attention.attend(q, k, v, 39, 1.0)
    np.testing.assert_allclose(out, reference(q, k, v, 39, 1.0), rtol=0, atol=2e-5)
    np.testing.assert_allclose(out[0, 64:], v[1].mean(axis=0), atol=1e-5)  # q = 0: every key alike


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(start=64), "exceeds the cache's capacity"),
        (dict(q=np.zeros((1, 3, 8), np.float32)), "multiple of kv_heads"),
        (dict(v=np.zeros((2, 32, 8), np.float32)), "k and v must be"),
        (dict(threads=0), "threads must be positive"),
    ],
)
def test_bad_shapes_are_refused_by_name(change, message):
    args = dict(
        q=np.zeros((1, 4, 8), np.float32),
        k=np.zeros((2, 64, 8), np.float32),
        v=np.zeros((2, 64, 8), np.float32),
        start=3,
        scale=1.0,
        threads=1,
    )
    args.update(change)
    with pytest.raises(ValueError, match=message):
        cpu_attention.attend(**args)


def sixteen_bit(cache: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``cache`` rounded to ``kind`` as the engine stores it (bf16 as its bits), and its values."""
    import torch

    if kind == "fp16":
        stored = cache.astype(np.float16)
        return stored, stored.astype(np.float32)
    rounded = torch.from_numpy(cache).bfloat16()
    return rounded.view(torch.int16).numpy().view(np.uint16), rounded.float().numpy()


@pytest.mark.parametrize("kind", ["bf16", "fp16"])
@pytest.mark.parametrize(
    "heads, kv_heads, dim, capacity, start, count",
    [
        (32, 32, 80, 1100, 1023, 1),  # stable-code-3b's decode step: heads of 80 dims
        (4, 4, 64, 1024, 300, 7),
        (6, 2, 20, 64, 0, 3),  # a head size the vector loops do not divide
        (8, 2, 96, 64, 40, 2),  # 96 dims: vectors of 8, then 4
    ],
)
def test_a_16_bit_cache_is_attended_as_its_values_widened(
    kind, heads, kv_heads, dim, capacity, start, count, kernel_variant
):
    """Keys and values stored in 16 bits are read as exactly the fp32 numbers they hold: the
    result is softmax attention over the rounded cache, to fp32 accuracy (sums stay fp32)."""
    rng = np.random.default_rng(dim + start)
    q = rng.standard_normal((count, heads, dim), dtype=np.float32) * 3
    k = rng.standard_normal((kv_heads, capacity, dim), dtype=np.float32)
    v = rng.standard_normal((kv_heads, capacity, dim), dtype=np.float32)
    k[:, start + count :] = 1e4  # beyond the rows' own positions: must not be seen
    (k16, k_values), (v16, v_values) = sixteen_bit(k, kind), sixteen_bit(v, kind)
    assert cpu_attention.kv_kind(k16) == {"bf16": 1, "fp16": 2}[kind]
    out = cpu_attention.attend(q, k16, v16, start, dim**-0.5, 2)
    expected = reference(q, k_values, v_values, start, dim**-0.5)
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-5)


def test_a_cache_of_another_dtype_is_refused_by_name():
    q = np.zeros((1, 2, 8), np.float32)
    with pytest.raises(ValueError, match="float64 is not one the C loops read"):
        cpu_attention.attend(q, np.zeros((2, 4, 8)), np.zeros((2, 4, 8)), 0, 1.0)


@pytest.mark.parametrize(
    "heads, kv_heads, dim, capacity, start, count",
    [
        (32, 32, 80, 1100, 1023, 1),  # stable-code-3b's decode step: heads of 80 dims (16s, 8s)
        (4, 4, 64, 1024, 300, 7),  # the shipped model's shape, a draft check of 7 rows
        (32, 4, 64, 2048, 1023, 1),  # grouped query heads
        (4, 2, 24, 64, 12, 2),  # 8s but not 16s: the 8-wide loop in the AVX512 build, 13 keys
        (8, 2, 96, 64, 40, 2),  # 96 dims: vectors of 8, then 4
        (6, 2, 20, 64, 0, 3),  # a head size the vector loops do not divide
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_an_int8_cache_is_attended_as_its_rows_times_their_scales(
    heads, kv_heads, dim, capacity, start, count, threads, kernel_variant
):
    """Int8 keys and values (one fp32 scale a head's row) are read as int8 * scale: the result is
    softmax attention over the dequantized cache to fp32 accuracy, and within int8's rounding of
    attention over the fp32 keys and values they came from."""
    from core import kv_int8

    rng = np.random.default_rng(dim + start + heads)
    q = rng.standard_normal((count, heads, dim), dtype=np.float32) * 3
    k = rng.standard_normal((kv_heads, capacity, dim), dtype=np.float32)
    v = rng.standard_normal((kv_heads, capacity, dim), dtype=np.float32)
    k[:, start + count :] = 1e4  # beyond the rows' own positions: must not be seen
    k8, v8 = kv_int8.quantize_numpy(k), kv_int8.quantize_numpy(v)
    assert k8.shape == (kv_heads, capacity, dim + 4) and cpu_attention.kv_kind(k8) == 3
    out = cpu_attention.attend(q, k8, v8, start, dim**-0.5, threads)
    assert out.shape == (count, heads * dim) and out.dtype == np.float32
    k_values, v_values = kv_int8.dequantize_numpy(k8), kv_int8.dequantize_numpy(v8)
    dequantized = reference(q, k_values, v_values, start, dim**-0.5)
    np.testing.assert_allclose(out, dequantized, rtol=0, atol=2e-5)
    exact = reference(q, k, v, start, dim**-0.5)
    assert np.abs(out - exact).max() < 0.05  # outputs of about unit size: int8 rounding only


def test_int8_rows_round_to_nearest_with_the_largest_value_at_127():
    from core import kv_int8

    rows = np.array([[0.5, -1.0, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    packed = kv_int8.quantize_numpy(rows)
    assert packed.dtype == np.int8 and packed.shape == (2, 8)
    assert packed[0, :4].tolist() == [64, -127, 32, 0]  # 63.5 -> 64 (even), 31.75 -> 32
    assert packed[1, :4].tolist() == [0, 0, 0, 0]  # a zero row: scale 0, no division by zero
    scales = np.ascontiguousarray(packed[:, 4:]).view(np.float32)[:, 0]
    assert scales.tolist() == [np.float32(1.0) / np.float32(127), 0.0]
    import torch

    assert torch.equal(kv_int8.quantize_torch(torch.from_numpy(rows)), torch.from_numpy(packed))
    np.testing.assert_allclose(kv_int8.dequantize_numpy(packed), rows, atol=0.5 / 127)
