"""Compact decode weights: the C kernels' products, the backend's use of them, and the choice."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core import OptimizedLLM, compact_weights, cpu_capabilities
from core.compact_weights import CompactWeight
from core.devices import available_memory_bytes, choose_decode_weights
from core.errors import InvalidParameter
from core.generation import ModelRunner
from core.lean_llama import LeanLlamaBackend

needs_kernels = pytest.mark.skipif(
    not compact_weights.available(), reason=str(compact_weights.unavailable_reason())
)
# The products themselves run in any variant, the portable one included (a build without SIMD).
needs_build = pytest.mark.skipif(
    compact_weights._kernels is None, reason="the C kernels are not built here"
)
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64"),
    reason="the vectorized kernels are built for x86-64 Linux by scripts/install",
)
def test_the_install_builds_the_kernels_here():
    """scripts/install compiles core/_kernels.c; without it every compact-weight path is skipped."""
    assert compact_weights.unavailable_reason() is None


@needs_build
@pytest.mark.parametrize("precision", ["fp16", "bf16", "int8", "int4"])
@pytest.mark.parametrize("shape", [(2560, 2048), (768, 256), (12, 64)])
def test_products_match_the_matrix_the_bytes_stand_for(precision, shape, kernel_variant):
    """Every variant's products against float64 sums over the weights the bytes stand for."""
    torch.manual_seed(0)
    weight = torch.randn(*shape)
    compact = CompactWeight(weight, precision)
    widened = compact.widened().double().numpy()
    # relative to the largest weight: fp16 and bf16 round each weight; int8 a row, int4 a block
    rounding = {"fp16": 1e-3, "bf16": 8e-3, "int8": 8e-3, "int4": 0.13}[precision]
    assert np.abs(widened - weight.numpy()).max() <= rounding * np.abs(weight.numpy()).max()
    rng = np.random.default_rng(1)
    for rows in (1, 2, 5, 8):
        x = rng.standard_normal((rows, shape[1]), dtype=np.float32)
        expected = x.astype(np.float64) @ widened.T
        magnitude = np.abs(x.astype(np.float64)) @ np.abs(widened).T  # what rounding x can move
        for threads in (1, 2):
            got = compact(x, threads)
            assert got.shape == (rows, shape[0]) and got.dtype == np.float32
            error = np.abs(got - expected)
            if precision in ("int8", "int4") and rows == 1:
                # One quantized row also rounds the activations to int8 (blocks of 32, like Q8_0).
                assert error.max() <= 2e-2 * np.abs(expected).max()
            elif precision == "bf16" and kernel_variant == "avx512bf16":
                # The CPU's bf16 dot products: activations rounded to bf16 (2^-9 relative at most).
                assert (error <= 2.0**-8 * magnitude + 1e-5).all()
                assert error.max() > 0  # it did round: this is not the widening loop
            else:
                assert (error <= 1e-5 * magnitude).all()


def q8_0(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (in,) rounded as llama.cpp's Q8_0, in fp32 as the kernels do: (values, block scales)."""
    blocks = x.reshape(-1, 32)
    d = np.abs(blocks).max(axis=1) / np.float32(127)
    inverse = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d > 0)
    return np.rint(blocks * inverse[:, None]), d


@needs_build
@pytest.mark.parametrize("precision", ["int8", "int4"])
@pytest.mark.parametrize("cols", [96, 512])
def test_one_row_rounds_its_activations_as_q8_0(precision, cols, kernel_variant):
    """One int8 or int4 row rounds x to int8 in blocks of 32 (Q8_0) once, in registers in the SIMD
    variants: the products equal the sums over exactly Q8_0's values up to fp32 rounding, which a
    single value rounded one step off (a wrong lane order, rounding mode or scale) would exceed.
    Ties and zero blocks included."""
    torch.manual_seed(5)
    compact = CompactWeight(torch.randn(64, cols), precision)
    widened = compact.widened().double().numpy().reshape(64, -1, 32)
    x = np.random.default_rng(5).standard_normal(cols, dtype=np.float32)
    x[:32] = np.arange(32, dtype=np.float32) - 15.5  # halves after scaling: ties to even
    x[32:64] = 0.0  # a block with no scale
    values, scales = q8_0(x)
    expected = np.einsum(
        "rbi,bi,b->r", widened, values.astype(np.float64), scales.astype(np.float64)
    )
    magnitude = np.einsum("rbi,bi,b->r", np.abs(widened), np.abs(values), scales.astype(np.float64))
    for threads in (1, 2):
        got = compact(x[None], threads)[0]
        assert (np.abs(got - expected) <= 1e-5 * magnitude).all()


@needs_build
def test_variants_agree_where_they_sum_alike():
    """int8 and int4 rows against int8-rounded activations are integer sums in every variant, so
    portable C and SIMD agree to fp32 rounding: a wrong nibble or scale order would not."""
    torch.manual_seed(3)
    x = np.random.default_rng(3).standard_normal((1, 512), dtype=np.float32)
    before = compact_weights.variant()
    try:
        for precision in ("int8", "int4"):
            compact = CompactWeight(torch.randn(64, 512), precision)
            results = {}
            for name in compact_weights.variants():
                compact_weights.use_variant(name)
                results[name] = compact(x)
            for name, got in results.items():
                np.testing.assert_allclose(
                    got, results["portable"], rtol=1e-5, atol=1e-5, err_msg=name
                )
    finally:
        compact_weights.use_variant(before)


def test_the_variant_choice_takes_the_fastest_the_cpu_runs_or_the_one_asked_for():
    choose = compact_weights.choose_variant
    assert choose(("portable",)) == "portable"
    assert choose(("portable", "avx2")) == "avx2"
    assert choose(("portable", "avx2", "avx512bf16")) == "avx512bf16"
    assert choose(("portable", "avx2", "avx512bf16"), "avx2") == "avx2"
    with pytest.raises(
        ValueError, match="cannot run the avx512bf16 kernels; it runs portable, avx2"
    ):
        choose(("portable", "avx2"), "avx512bf16")
    with pytest.raises(ValueError, match="must be one of portable, avx2, avx512bf16, not 'sse9'"):
        choose(("portable",), "sse9")


@needs_build
def test_the_cpu_kind_a_server_is_told_picks_the_kernels_too(tmp_path):
    """DEEPSHIVA_CPU moves the kernel variant with the path decision (one description of the
    CPU decides both); a bad name warns at import and keeps the fastest variant."""
    script = (
        "import warnings; warnings.simplefilter('always')\n"
        "from core import compact_weights as c\n"
        "print(c.variant(), c.available())"
    )
    runs = compact_weights.variants()
    expected = {
        "portable": ["portable", "False"],
        "avx2": ["avx2", "True"] if "avx2" in runs else ["portable", "False"],
    }
    for preset, want in expected.items():
        env = dict(os.environ, DEEPSHIVA_CPU=preset, PYTHONPATH=str(ROOT))
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.stdout.split() == want, (preset, done.stderr)
    env = dict(os.environ, DEEPSHIVA_CPU="sse9", PYTHONPATH=str(ROOT))
    script = script.replace("c.variant(), c.available()", "c.variant()")  # paths would refuse it
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split() == [runs[-1]], done.stderr
    assert "DEEPSHIVA_CPU must be one of native-bf16, avx2, portable" in done.stderr


@needs_build
def test_an_injected_cpu_kind_runs_its_kernels_and_the_probe_comes_back():
    """A test that injects a CPU kind gets that kind's kernels (where this CPU executes them)
    with its path decision, and the probed machine's variant when the block ends."""
    runs = compact_weights.variants()
    before = compact_weights.variant()
    assert before == cpu_capabilities.current().kernels or before == runs[-1]
    for preset, want in (("avx2", "avx2"), ("portable", "portable"), ("native-bf16", "avx512bf16")):
        with cpu_capabilities.inject(preset) as described:
            assert described.kernels == want
            assert compact_weights.variant() == (want if want in runs else runs[-1])
            assert compact_weights.available() == (compact_weights.variant() != "portable")
        assert compact_weights.variant() == before
    assert compact_weights.choose_variant(runs, allowed="avx2") == (
        "avx2" if "avx2" in runs else "portable"
    )


@needs_build
def test_int4_blocks_round_as_q4_0():
    """Each block of 32 keeps its largest magnitude (as -8 * scale, up to the fp16 scale's rounding)
    and every weight within one step (half a step but at the clamped end); fp16 scales, one a block."""
    torch.manual_seed(0)
    weight = torch.randn(8, 96) * torch.linspace(0.01, 10, 96)  # blocks of very different sizes
    compact = CompactWeight(weight, "int4")
    assert compact.nbytes == 8 * 96 // 2 + 8 * 3 * 2  # 4.5 bits a weight
    widened = compact.widened()
    for b in range(3):
        block, got = weight[:, 32 * b : 32 * b + 32], widened[:, 32 * b : 32 * b + 32]
        step = block.abs().amax(dim=1, keepdim=True) / 8
        assert (got - block).abs().le(step * 1.01).all()
        largest = block.abs().amax(dim=1)  # exact but for the fp16 scale's rounding (2^-11)
        assert (got.abs().amax(dim=1) - largest).abs().le(largest * 2.0**-10).all()
    assert torch.equal(CompactWeight(torch.zeros(4, 32), "int4").widened(), torch.zeros(4, 32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int4_quantizing_in_place_gives_the_same_bytes(dtype):
    """The load's in-place quantizer (one fp32 copy, packed as it rounds) stores exactly the bytes
    of rounding the blocks and packing them step by step: ties of +x and -x (the first one found
    sets the scale's sign), an all-zero block, halves and the clamped end included."""
    from core.compact_weights import _pack_int4, quantize_blocks_int4, quantize_packed_int4

    torch.manual_seed(0)
    weight = (torch.randn(64, 256) * torch.linspace(0.01, 10, 256)).to(dtype)
    weight[1, :32] = 0
    weight[2, 32:64] = 0.5
    weight[2, 40] = -0.5
    weight[3, 64:96] = torch.arange(32) / 4 - 4  # -4 .. 3.75: halves of the step
    weight[4, 96:128] = -weight[4, 96:128]
    q, scales = quantize_blocks_int4(weight)
    packed, scales_in_place = quantize_packed_int4(weight)
    assert torch.equal(packed, _pack_int4(q))
    assert torch.equal(scales_in_place.view(torch.int16), scales.view(torch.int16))


@needs_build
def test_a_16_bit_checkpoint_is_held_exactly():
    torch.manual_seed(0)
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        stored = (
            torch.randn(64, 96).to(dtype).to(torch.float32)
        )  # what loading a 16-bit checkpoint gives
        assert torch.equal(CompactWeight(stored, precision).widened(), stored)


@needs_build
def test_bad_shapes_and_buffers_are_refused_by_name():
    with pytest.raises(ValueError, match="rows in fours"):
        CompactWeight(torch.randn(10, 64), "fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        CompactWeight(torch.randn(8, 64), "fp8")
    compact = CompactWeight(torch.randn(8, 64), "bf16")
    with pytest.raises(ValueError, match="between 1 and 8 activation rows"):
        compact(np.zeros((9, 64), np.float32))
    with pytest.raises(ValueError, match="activations are not n x in"):
        compact(np.zeros((1, 32), np.float32))


@pytest.fixture(scope="module")
def shipped(shipped_model_dir):
    """The shipped model as an AVX2 CPU without native bf16 loads it: its bf16 checkpoint held
    once, decode steps in C and prompts' fp32 GEMMs over the same bf16 numbers."""
    with cpu_capabilities.inject("avx2"):
        return OptimizedLLM(str(shipped_model_dir))


@pytest.fixture(scope="module")
def shipped_fp32(shipped_model_dir, load_transformers):
    """The shipped model widened to fp32 by transformers: what these tests compare against."""
    return load_transformers(shipped_model_dir)


@needs_kernels
def test_bf16_decode_of_the_bf16_shipped_model_matches_fp32(
    shipped, shipped_fp32, widening_kernels, monkeypatch
):
    """The shipped checkpoint is stored in bf16: bf16 decode weights are the same numbers (with
    the kernels that widen them to fp32; the AVX512-BF16 ones round activations, next test), and
    so are prompts' fp32 GEMMs over them, widened a matrix at a time (a CPU without native bf16).
    Exact with an fp32 KV cache (auto's bf16 cache rounds the keys and values: the test after)."""
    monkeypatch.setenv("DEEPSHIVA_KV_CACHE", "fp32")
    ids = shipped.tokenizer.encode("def mean(values):\n    total = sum(values)\n    return total /")
    # Inside the block: an injected AVX2 CPU runs the AVX2 kernels, and the probe's come back after.
    with cpu_capabilities.inject("avx2"):
        exact, compact = (
            ModelRunner(shipped_fp32, decode_weights="fp32"),
            ModelRunner(shipped_fp32, decode_weights="bf16"),
        )
        assert compact.decode_weights == "bf16" and compact.decode_path == "numpy"
        assert compact.backend.blas.compact_bytes() > 0
        assert compact.backend.prefill_dtype == torch.float32
        a, b = exact.prefill(ids), compact.prefill(ids)
        assert float((a - b).abs().max()) < 1e-4
        for token in (7, 99, 1234):
            a, b = exact.decode_one_token(token), compact.decode_one_token(token)
            assert float((a - b).abs().max()) < 1e-4
        # A draft check (several rows at once) reads the same compact weights as single steps.
        a, b = exact.verify_draft(5, [6, 7, 8]), compact.verify_draft(5, [6, 7, 8])
        assert float((a - b).abs().max()) < 1e-4


@needs_kernels
def test_a_bf16_kv_cache_moves_the_shipped_models_logits_by_its_rounding_only(
    shipped, shipped_fp32, widening_kernels
):
    """auto's bf16 KV cache (compact decode weights, SIMD kernels) rounds each key and value to
    8 significant bits, widened back to fp32 as attention reads them, every sum in fp32: the
    logits move by well under 1% of their scale (0.044 of about 6 measured), no more. (Greedy
    tokens can differ at near ties: 1 of 8 completions of 60 tokens of this model did, where
    the top two logits of the exact run were 0.004 apart; benchmarks/RESULTS.md, kv16.)"""
    ids = shipped.tokenizer.encode("def mean(values):\n    total = sum(values)\n    return total /")
    with cpu_capabilities.inject("avx2"):
        exact, compact = (
            ModelRunner(shipped_fp32, decode_weights="fp32"),
            ModelRunner(shipped_fp32, decode_weights="bf16"),
        )
        assert compact.backend.kv_dtype == torch.bfloat16
        assert any(r.startswith("bf16 KV cache") for r in compact.path.reasons)
        exact.prefill(ids), compact.prefill(ids)
        for token in (7, 99, 1234):
            a, b = exact.decode_one_token(token), compact.decode_one_token(token)
            assert float((a - b).abs().max()) < 0.01 * float(a.abs().max())
            assert int(a.argmax()) == int(b.argmax())


@needs_kernels
def test_an_int8_kv_cache_moves_the_shipped_models_logits_by_its_rounding_only(
    shipped, shipped_fp32, widening_kernels, monkeypatch
):
    """DEEPSHIVA_KV_CACHE=int8 on the shipped model's real weights: each key and value row rounded
    to int8 with its own scale, dequantized as attention reads it: the logits of decode steps
    stay within 2% of their scale of the exact ones and greedy picks agree (measured: 0.05-0.08
    on logits of 11-14, where the bf16 cache moves them 0.01-0.04)."""
    ids = shipped.tokenizer.encode("def mean(values):\n    total = sum(values)\n    return total /")
    with cpu_capabilities.inject("avx2"):
        monkeypatch.setenv("DEEPSHIVA_KV_CACHE", "fp32")
        exact = ModelRunner(shipped_fp32, decode_weights="fp32")
        monkeypatch.setenv("DEEPSHIVA_KV_CACHE", "int8")
        compact = ModelRunner(shipped_fp32, decode_weights="bf16")
        assert exact.backend.kv_dtype == torch.float32
        assert compact.backend.kv_dtype == torch.int8
        exact.prefill(ids), compact.prefill(ids)
        for token in (7, 99, 1234):
            a, b = exact.decode_one_token(token), compact.decode_one_token(token)
            assert float((a - b).abs().max()) < 0.02 * float(a.abs().max())
            assert int(a.argmax()) == int(b.argmax())


@pytest.fixture
def widening_kernels():
    """The kernels that widen 16-bit weights to fp32 (AVX2, else portable), for exactness checks."""
    before = compact_weights.variant()
    compact_weights.use_variant("avx2" if "avx2" in compact_weights.variants() else "portable")
    yield
    compact_weights.use_variant(before)


@needs_kernels
def test_bf16_dot_product_kernels_stay_within_bf16_rounding(shipped, shipped_fp32):
    """The AVX512-BF16 kernels round activations to bf16 (as llama.cpp does): their logits stay
    within that rounding of the exact ones, and greedy picks agree."""
    if "avx512bf16" not in compact_weights.variants():
        pytest.skip("this CPU has no AVX512-BF16")
    before = compact_weights.variant()
    ids = shipped.tokenizer.encode("def mean(values):\n    total = sum(values)\n    return total /")
    try:
        compact_weights.use_variant("avx512bf16")
        exact, compact = (
            ModelRunner(shipped_fp32, decode_weights="fp32"),
            ModelRunner(shipped_fp32, decode_weights="bf16"),
        )
        exact.prefill(ids), compact.prefill(ids)
        for token in (7, 99, 1234):
            a, b = exact.decode_one_token(token), compact.decode_one_token(token)
            assert 0 < float((a - b).abs().max()) < 0.1
            assert int(a.argmax()) == int(b.argmax())
    finally:
        compact_weights.use_variant(before)


@needs_kernels
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_rounded_decode_weights_stay_close(shipped, shipped_fp32, precision):
    ids = shipped.tokenizer.encode("import os\n\nfor name in os.listdir('.'):\n    print(")
    exact, compact = (
        ModelRunner(shipped_fp32, decode_weights="fp32"),
        ModelRunner(shipped_fp32, decode_weights=precision),
    )
    exact.prefill(ids), compact.prefill(ids)
    for token in (7, 99):
        a, b = exact.decode_one_token(token), compact.decode_one_token(token)
        assert 0 < float((a - b).abs().max())
        assert float(torch.nn.functional.cosine_similarity(a, b, dim=0)) > 0.99


@needs_kernels
def test_the_shipped_model_decodes_from_its_own_bf16_with_the_same_text(shipped_model_dir, shipped):
    """auto picks bf16 for the shipped model (saved in bf16): greedy text as with fp32 weights."""
    with cpu_capabilities.inject("avx2"):
        exact = OptimizedLLM(str(shipped_model_dir), decode_weights="fp32")
    assert shipped.info()["decode_weights"] == "bf16" and exact.info()["decode_weights"] == "fp32"
    prompt = "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    assert shipped.generate(prompt, max_length=40, temperature=0) == exact.generate(
        prompt, max_length=40, temperature=0
    )


@needs_kernels
def test_matrices_the_kernels_cannot_hold_stay_fp32():
    """A vocabulary of 1001 rows does not fit the kernels' groups of four: that matrix stays fp32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1001,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    model = LlamaForCausalLM(config).eval()
    exact, compact = LeanLlamaBackend(model), LeanLlamaBackend(model, decode_weights="fp16")
    assert not isinstance(compact.blas.lm_head, CompactWeight)
    assert isinstance(compact.blas.layers[0].qkv, CompactWeight)
    exact.forward([1, 2, 3]), compact.forward([1, 2, 3])
    a, b = exact.forward([4]), compact.forward([4])
    assert a.shape == b.shape == (1001,) and float((a - b).abs().max()) < 1e-2


def test_auto_picks_the_checkpoints_own_16_bit_format_where_it_pays():
    big, small, plenty = 4 * 2**30, 8 * 2**20, 20 * 2**30
    assert choose_decode_weights("auto", "cpu", torch.bfloat16, big, plenty, kernels=True) == "bf16"
    assert (
        choose_decode_weights("auto", "cpu", torch.bfloat16, small, plenty, kernels=True) == "bf16"
    )
    assert choose_decode_weights("auto", "cpu", torch.float16, big, plenty, kernels=True) == "fp16"
    assert choose_decode_weights("auto", "cpu", torch.float16, big, None, kernels=True) == "fp16"
    # fp32 where 16 bits would round, without kernels, off the CPU, or where the copy would
    # crowd memory.
    assert choose_decode_weights("auto", "cpu", torch.float32, big, plenty, kernels=True) == "fp32"
    assert choose_decode_weights("auto", "cpu", None, big, plenty, kernels=True) == "fp32"
    assert (
        choose_decode_weights("auto", "cpu", torch.bfloat16, big, plenty, kernels=False) == "fp32"
    )
    assert (
        choose_decode_weights("auto", "cuda", torch.bfloat16, big, plenty, kernels=True) == "fp32"
    )
    assert (
        choose_decode_weights("auto", "cpu", torch.bfloat16, big, 3 * 2**30, kernels=True) == "fp32"
    )
    # An explicit choice is kept; the engine reports what cannot run.
    assert (
        choose_decode_weights("int8", "cpu", torch.float32, small, plenty, kernels=True) == "int8"
    )
    with pytest.raises(InvalidParameter, match="decode_weights must be one of"):
        choose_decode_weights("fp8", "cpu", None, big, plenty, kernels=True)
    if sys.platform.startswith("linux"):  # what the engine passes as free_bytes
        assert 0 < available_memory_bytes() < 2**50


def test_the_engine_reports_and_refuses_decode_weights_clearly(tiny_model_dir):
    # The tiny test model is saved in fp32: with fp32 masters auto keeps fp32.
    with cpu_capabilities.inject("avx2"):
        assert OptimizedLLM(str(tiny_model_dir)).info()["decode_weights"] == "fp32"
    with pytest.raises(InvalidParameter, match="decode_weights must be one of") as err:
        OptimizedLLM(str(tiny_model_dir), decode_weights="fp8")
    assert err.value.param == "decode_weights"
    # 16-bit decode weights need the NumPy decode path (here: the probe says no AVX2).
    with (
        cpu_capabilities.inject("portable"),
        pytest.raises(
            InvalidParameter, match="fp16 decode weights cannot run here: this CPU has no AVX2"
        ) as err,
    ):
        OptimizedLLM(str(tiny_model_dir), torch_dtype=torch.bfloat16, decode_weights="fp16")
    assert err.value.param == "decode_weights"


@needs_kernels
def test_the_same_prompt_again_starts_from_the_same_logits(shipped, shipped_fp32):
    """A repeated prompt must not re-run its last token through the decode step: compact weights
    (and bf16-rounded activations) give slightly different logits from prefill's, and a seeded
    request then sampled different text the second time (a server test saw it)."""
    ids = shipped.tokenizer.encode("import os\n\ndef walk(path):\n    for root, dirs, files in")
    runner = ModelRunner(shipped_fp32, decode_weights="bf16")
    first = runner.prefill(ids)
    for token in (7, 99, 1234):
        runner.decode_one_token(token)
    computed = runner.prefill_tokens
    again = runner.prefill(ids)
    assert torch.equal(first, again) and runner.prefill_tokens == computed
    assert runner.decode_one_token(7) is not None  # the cache was cut back to the prompt
    shorter = runner.prefill(ids[:-1])  # another prompt runs its last token as before
    assert runner.prefill_tokens == computed + 1 and shorter.shape == first.shape


@needs_kernels
@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_prompts_widen_quantized_matrices_into_one_shared_buffer(precision):
    """A prompt's product over int8/int4 weights equals the product over the matrix they stand
    for (rounded to the GEMM's dtype), and every layer's matrix is widened into the same memory:
    the buffer grows to the largest matrix, never to a second copy of the model."""
    from core.backends.layers import CompactProjection, WideningBuffer

    torch.manual_seed(0)
    buffer = WideningBuffer()
    shapes = [(256, 128), (512, 128), (128, 256)]
    projections = [
        CompactProjection(CompactWeight(torch.randn(*s), precision), torch.bfloat16, buffer=buffer)
        for s in shapes
    ]
    x = torch.randn(16, 128)  # more rows than the kernels take: PyTorch's GEMM runs
    for projection in projections[:2]:
        alone = CompactProjection(projection.compact, torch.bfloat16)
        assert torch.equal(projection(x), alone(x))
        expected = x.to(torch.bfloat16).float() @ projection.compact.dense(torch.bfloat16).float().T
        torch.testing.assert_close(projection(x), expected, rtol=2e-2, atol=2e-2)
    projections[2](torch.randn(16, 256))
    assert buffer.nbytes == 512 * 128 * 2  # the largest matrix in bf16, once
