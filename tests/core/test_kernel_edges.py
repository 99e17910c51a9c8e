"""The C kernels' lines the product tests leave out (found with a gcov build, issue 22): an odd
number of 32-wide blocks in a row, fp16 values outside the normal range (as weights and as int4
block scales), the build's OpenMP, and the refusals of arguments the Python wrappers never pass."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from core import compact_weights
from core.compact_weights import CompactWeight

pytestmark = pytest.mark.skipif(
    compact_weights._kernels is None, reason="the C kernels are not built here"
)


def _check_product(compact: CompactWeight, x: np.ndarray, kernel_variant: str) -> None:
    """``compact(x)`` against float64 sums over the weights its bytes stand for."""
    widened = compact.widened().double().numpy()
    expected = x.astype(np.float64) @ widened.T
    magnitude = np.abs(x.astype(np.float64)) @ np.abs(widened).T
    got = compact(x)
    if compact.precision in ("int8", "int4") and x.shape[0] == 1:
        # one quantized row also rounds the activations to int8 in blocks of 32
        assert np.abs(got - expected).max() <= 2e-2 * np.abs(expected).max()
    elif compact.precision == "bf16" and kernel_variant == "avx512bf16":
        assert (np.abs(got - expected) <= 2.0**-8 * magnitude + 1e-5).all()
    else:
        assert (np.abs(got - expected) <= 1e-5 * magnitude + 1e-30).all()


@pytest.mark.parametrize("precision", ["fp16", "bf16", "int8", "int4"])
@pytest.mark.parametrize("blocks", [1, 3, 5])
def test_rows_of_an_odd_number_of_blocks(precision, blocks, kernel_variant):
    """A row of 3 x 32 columns: the AVX512 bf16 loop takes two blocks a pass and the third in its
    tail loop, which rows of an even count (every shape of the product tests) never reach."""
    torch.manual_seed(blocks)
    compact = CompactWeight(torch.randn(8, 32 * blocks), precision)
    rng = np.random.default_rng(blocks)
    for rows in (1, 3):
        _check_product(
            compact, rng.standard_normal((rows, 32 * blocks), dtype=np.float32), kernel_variant
        )


def test_fp16_weights_below_the_normal_range_and_zero_keep_their_values(kernel_variant):
    """fp16 subnormals (below 6.1e-5) and zeros widen to the values they stand for: the portable
    loop converts them bit by bit."""
    weight = torch.zeros(4, 32)
    weight[0] = torch.linspace(-6e-5, 6e-5, 32)  # subnormal in fp16
    weight[1, ::2] = 3e-8  # the smallest fp16 subnormals
    weight[2] = torch.linspace(-2, 2, 32)
    compact = CompactWeight(weight, "fp16")
    assert (compact.widened()[0].abs() < 6.2e-5).all() and compact.widened()[1, 0] > 0
    x = np.random.default_rng(0).standard_normal((2, 32), dtype=np.float32)
    _check_product(compact, x, kernel_variant)


def test_infinite_fp16_weights_give_infinite_products(kernel_variant):
    """An fp16 infinity stays infinite in every variant (the portable loop's exponent 31 branch)."""
    weight = torch.ones(4, 32)
    weight[1, 5] = float("inf")
    weight[2, 7] = float("-inf")
    compact = CompactWeight(weight, "fp16")
    y = compact(np.ones((1, 32), np.float32))
    assert y[0, 1] == np.inf and y[0, 2] == -np.inf and np.isfinite(y[0, [0, 3]]).all()


def test_int4_blocks_too_small_for_a_normal_fp16_scale(kernel_variant):
    """Blocks whose largest weight is under 5e-4 get a subnormal fp16 scale, all-zero blocks a zero
    one: every variant reads those scales as the values they stand for."""
    torch.manual_seed(0)
    weight = torch.randn(8, 96) * 1e-5
    weight[:, 32:64] = 0.0
    compact = CompactWeight(weight, "int4")
    scales = torch.from_numpy(compact.scales).view(torch.float16).float()
    assert (scales == 0).any() and ((scales > 0) & (scales < 6.1e-5)).any()
    rng = np.random.default_rng(0)
    for rows in (1, 2):
        _check_product(compact, rng.standard_normal((rows, 96), dtype=np.float32), kernel_variant)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="setup.py adds OpenMP on Linux")
def test_the_linux_build_shares_rows_among_threads():
    """setup.py compiles with -fopenmp on Linux; a build without it would run every product on one
    core whatever ``threads`` says."""
    assert compact_weights._kernels.openmp() is True


def test_the_extension_refuses_what_its_python_wrappers_never_pass():
    kernels = compact_weights._kernels
    with pytest.raises(ValueError, match="no kernel variant sse9 in this build"):
        kernels.set_variant("sse9")
    assert kernels.simd() == compact_weights.variant()  # the refusal changed nothing
    compact = CompactWeight(torch.randn(4, 64), "int8")
    x, y = np.zeros((1, 64), np.float32), np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match="int8 needs out fp32 scales"):
        kernels.matmul(compact.kind, compact.values, b"", x, y, 4, 64, 1, 1)
    with pytest.raises(TypeError):
        kernels.matmul(compact.kind, compact.values, compact.scales, x, y, 4, 64, 1)  # no threads
    q = np.zeros((1, 1, 32), np.float32)
    with pytest.raises(TypeError):
        kernels.attend(q, q, q, q.copy(), 1, 1, 1, 32, 0, 1.0)  # no threads
    with pytest.raises(TypeError):
        kernels.decode_layers(0, np.zeros(32, np.float32), [])  # too few arguments


def test_the_fused_step_refuses_a_shape_or_scales_that_do_not_fit():
    """One int8 layer of hidden 32: the right buffers pass; a hidden size off the 32-wide blocks,
    or int8 matrices without their row scales, are refused by name before any arithmetic."""
    kernels, hidden, mlp, dim, capacity = compact_weights._kernels, 32, 32, 32, 4
    norm = np.ones(hidden, np.float32)

    def int8(rows: int, cols: int) -> tuple[bytes, np.ndarray]:
        return np.zeros(rows * cols, np.int8).tobytes(), np.ones(rows, np.float32)

    (qkv, qkv_s), (o, o_s) = int8(3 * dim, hidden), int8(hidden, dim)
    (gate_up, gate_up_s), (down, down_s) = int8(2 * mlp, hidden), int8(hidden, mlp)
    layer = (norm, qkv, qkv_s, o, o_s, norm, gate_up, gate_up_s, down, down_s)
    rope = np.ones(dim, np.float32)
    k, v = np.zeros((1, 1, capacity, dim), np.float32), np.zeros((1, 1, capacity, dim), np.float32)

    def call(layers, hidden=hidden):
        x = np.ones(hidden, np.float32)
        kernels.decode_layers(2, x, layers, rope, k, v, hidden, 1, 1, dim, mlp, 0, 1e-6, 0.2, 1)
        return x

    assert np.isfinite(call([layer])).all()  # zero weights: the residual stream passes through
    with pytest.raises(ValueError, match="shape does not fit the kernels"):
        call([layer], hidden=33)
    with pytest.raises(ValueError, match="int8 matrices need one fp32 scale a row"):
        call([layer[:2] + (b"",) + layer[3:]])
