"""The backend seam: the path chosen on each CPU kind and why, the KV cache's size, RoPE
variants and sliding windows, each on a tiny random-weight model built here."""

import shutil

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
)

from core import OptimizedLLM, compact_weights, cpu_capabilities
from core.backends import Backend
from core.generation import HFBackend, ModelRunner
from core.lean_llama import CACHE_STEP, LeanLlamaBackend

needs_kernels = pytest.mark.skipif(
    not compact_weights.available(), reason=str(compact_weights.unavailable_reason())
)


@needs_kernels
@pytest.mark.parametrize("preset", ["native-bf16", "avx2", "portable"])
def test_each_cpu_kind_keeps_an_fp32_checkpoint_in_fp32(tiny_model_dir, preset):
    """The tiny model is saved in fp32: every CPU kind keeps fp32 (a 16-bit copy would round it)
    and says so."""
    with cpu_capabilities.inject(preset):
        llm = OptimizedLLM(str(tiny_model_dir))
    info = llm.info()
    assert info["path"]["summary"] == "prefill: torch fp32; decode: NumPy/OpenBLAS, fp32 weights"
    assert info["cpu"] == cpu_capabilities.PRESETS[preset].describe()
    assert "the checkpoint is fp32" in " | ".join(info["path"]["reasons"])
    assert llm.generate("def f(x):\n", max_length=6, temperature=0) is not None


@pytest.fixture(scope="module")
def bf16_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model saved in bf16, as most code models are published."""
    out = tmp_path_factory.mktemp("bf16-model")
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    model.save_pretrained(out)
    return out


@needs_kernels
@pytest.mark.parametrize(
    "preset, dtype, summary, reason",
    [
        (
            "native-bf16",
            "bfloat16",
            "prefill: torch bf16 GEMMs over the decode weights, fp32 activations; "
            "decode: fused C step, bf16 weights",
            "the model's one copy",
        ),
        (
            "avx2",
            "bfloat16",
            "prefill: torch fp32 GEMMs from the bf16 decode weights, widened a matrix at a time, "
            "fp32 activations; decode: fused C step, bf16 weights",
            "emulates bf16 GEMMs",
        ),
        (
            "portable",
            "float32",
            "prefill: torch fp32; decode: NumPy/OpenBLAS, fp32 weights",
            "this CPU has no AVX2/FMA/F16C",
        ),
    ],
)
def test_each_cpu_kind_gets_its_path_for_a_bf16_checkpoint_and_says_why(
    bf16_model_dir, preset, dtype, summary, reason
):
    """A bf16 checkpoint is held once at bf16 where the kernels run (prefill in bf16 GEMMs on a
    native-bf16 CPU, widened to fp32 a matrix at a time elsewhere), in fp32 where they do not;
    the greedy text is the same on each path."""
    with cpu_capabilities.inject(preset):
        llm = OptimizedLLM(str(bf16_model_dir))
    info = llm.info()
    assert (info["dtype"], info["path"]["summary"]) == (dtype, summary)
    assert reason in " | ".join(info["path"]["reasons"]), info["path"]["reasons"]
    text = llm.generate("def f(x):\n", max_length=12, temperature=0)
    with cpu_capabilities.inject("portable"):  # fp32 arithmetic over the same bf16 numbers
        assert (
            OptimizedLLM(str(bf16_model_dir)).generate("def f(x):\n", max_length=12, temperature=0)
            == text
        )


@needs_kernels
def test_a_bf16_checkpoint_through_transformers_runs_fp32_where_bf16_is_emulated(
    bf16_model_dir, monkeypatch
):
    """bf16 masters are for the lean path: where transformers runs the model instead, a CPU
    without native bf16 gets fp32 masters back (its bf16 GEMMs would be many times slower)."""
    monkeypatch.setenv("DEEPSHIVA_LEAN", "0")
    with cpu_capabilities.inject("avx2"):
        llm = OptimizedLLM(str(bf16_model_dir))
    info = llm.info()
    assert (info["backend"], info["dtype"]) == ("transformers", "float32")
    assert "emulates 16-bit GEMMs" in " | ".join(info["path"]["reasons"])
    assert llm.generate("def f(x):\n", max_length=6, temperature=0) is not None


def test_the_fallback_says_it_is_the_fallback_and_why(tiny_model_dir):
    llm = OptimizedLLM(str(tiny_model_dir), max_memory={"cpu": "200KB"})
    path = llm.info()["path"]
    assert path["backend"] == "transformers" and path["decode"].startswith("transformers")
    assert any("always-correct fallback" in r and "offloaded" in r for r in path["reasons"])


def test_both_backends_keep_the_protocol(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    for backend in (LeanLlamaBackend(model), HFBackend(model)):
        assert isinstance(backend, Backend)
        assert set(backend.describe()) == {"backend", "prefill", "decode"}


def _llama(**overrides) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        **overrides,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms randomized too, or a wrong norm would pass
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def test_the_kv_cache_grows_with_the_prompts_not_the_context():
    """A 4096-position config allocates what a short prompt needs, grows (keeping what it
    holds) when a longer one comes, and gives transformers' logits throughout."""
    model = _llama()
    lean, hf = ModelRunner(model, lean=True), ModelRunner(model, lean=False)
    ids = [(i * 7) % 250 + 3 for i in range(40)]
    lean.prefill(ids), hf.prefill(ids)
    assert lean.backend.capacity == CACHE_STEP and lean.backend.k_cache.shape[3] == CACHE_STEP
    longer = ids + [(i * 11) % 250 + 3 for i in range(600)]
    a, b = lean.prefill(longer), hf.prefill(longer)
    # the whole prompt (640 tokens and the first new one) reserved at once, rounded up
    assert lean.reused_tokens == len(ids) - 0 and lean.backend.capacity == 768
    assert float((a - b).abs().max()) < 1e-4
    a, b = lean.decode_one_token(5), hf.decode_one_token(5)
    assert float((a - b).abs().max()) < 1e-4
    with pytest.raises(ValueError, match="exceeds the context of 4096"):
        lean.backend.forward(list(range(5000)))


def test_a_long_prompt_grows_the_kv_cache_once_before_its_first_chunk():
    """Each growth holds the old cache beside the new one: a prompt run in chunks grows it once,
    for all its tokens, and its first new token needs no other (grown chunk by chunk, a
    1024-token prompt and its first token grew stable-code-3b's cache three times, the last
    holding 640 MB twice: the peak of issue 21's memory bound)."""
    runner = ModelRunner(_llama(), lean=True)
    runner.prefill_chunk = 128
    runner.prefill([5, 6, 7])  # a first short request, as the engine's warmup
    grown = []
    reserve = runner.backend._reserve

    def recording(end):
        before = runner.backend.capacity
        reserve(end)
        if runner.backend.capacity != before:
            grown.append(runner.backend.capacity)

    runner.backend._reserve = recording
    ids = [(i * 7) % 250 + 3 for i in range(1024)]
    runner.prefill(ids)
    runner.decode_one_token(5)
    assert grown == [1280]


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "linear", "factor": 4.0, "rope_theta": 100000.0},  # DeepSeek-Coder
        {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
        {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 128,
            "rope_theta": 500000.0,
        },
        {
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 128,
            "rope_theta": 10000.0,
        },
    ],
)
def test_rope_variants_run_on_the_lean_path_exactly(rope):
    model = _llama(rope_parameters=rope)
    lean, hf = ModelRunner(model), ModelRunner(model, lean=False)
    assert lean.backend_name == "lean-llama"
    ids = [(i * 13) % 250 + 3 for i in range(300)]
    diffs = [float((lean.prefill(ids) - hf.prefill(ids)).abs().max())]
    for token in (9, 10, 11):
        diffs.append(float((lean.decode_one_token(token) - hf.decode_one_token(token)).abs().max()))
    edited = ids[:250] + [4, 5]  # a keystroke: the cache is cropped and reused
    diffs.append(float((lean.prefill(edited) - hf.prefill(edited)).abs().max()))
    assert max(diffs) < 1e-4, diffs


def test_an_unknown_rope_variant_falls_back_and_says_so():
    model = _llama(
        rope_parameters={
            "rope_type": "longrope",
            "short_factor": [1.0] * 8,
            "long_factor": [2.0] * 8,
            "original_max_position_embeddings": 128,
            "rope_theta": 10000.0,
        }
    )
    runner = ModelRunner(model)
    assert runner.backend_name == "transformers"
    assert any("RoPE 'longrope'" in r for r in runner.path.reasons)


@pytest.fixture(scope="module")
def sliding_window_dir(tiny_model_dir, tmp_path_factory):
    """A tiny Mistral with a 48-token sliding window and the test tokenizer (StarCoder FIM tokens)."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("mistral-window")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.save_pretrained(out)
    torch.manual_seed(1)
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        sliding_window=48,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    MistralForCausalLM(config).save_pretrained(out)
    yield out
    shutil.rmtree(out, ignore_errors=True)


def test_sliding_window_models_stay_exact_past_the_window_with_reuse(sliding_window_dir):
    """A 130-token prompt on a 48-token window, then a keystroke: the cache is cropped and
    reused (it used to raise 'crop was called...' here) and every logit is what a fresh
    transformers pass over the whole prompt gives."""
    model = AutoModelForCausalLM.from_pretrained(sliding_window_dir, dtype=torch.float32)
    ids = [(i * 17) % 900 + 5 for i in range(130)]

    def fresh(tokens):
        with torch.inference_mode():
            return model(input_ids=torch.tensor([tokens])).logits[0, -1]

    for lean in (True, False):  # the lean mask applies the window; transformers' own masks do
        runner = ModelRunner(model, lean=lean)
        assert runner.backend_name == ("lean-mistral" if lean else "transformers")
        assert float((runner.prefill(ids) - fresh(ids)).abs().max()) < 1e-4
        token = 7
        assert float((runner.decode_one_token(token) - fresh(ids + [token])).abs().max()) < 1e-4
        keystroke = ids[:-1] + [33, 34]
        assert float((runner.prefill(keystroke) - fresh(keystroke)).abs().max()) < 1e-4
        assert runner.reused_tokens >= 129
        runner.verify_draft(5, [6, 7, 8]), runner.drop_last(2)  # a rejected draft is cropped too
        assert float((runner.decode_one_token(9) - fresh(keystroke + [5, 6, 9])).abs().max()) < 1e-4
    # And through the engine: two requests a keystroke apart, past the window, greedy.
    prompt = "def add(a, b):\n    return a + b\n" * 12
    llm = OptimizedLLM(str(sliding_window_dir), torch_dtype=torch.float32)
    first = llm.complete(prompt, max_length=8, temperature=0)
    second = llm.complete(prompt + "x", max_length=8, temperature=0)
    assert first.prompt_tokens > 48 and second.reused_prompt_tokens > 48


@needs_kernels
@pytest.mark.parametrize(
    "decode_weights, expected",
    [("bf16", {"portable": "fp32", "avx2": "bf16", "avx512bf16": "bf16"}), ("fp32", None)],
)
def test_the_kv_cache_is_16_bit_where_the_simd_kernels_read_compact_weights(
    decode_weights, expected, kernel_variant
):
    """bf16 keys and values where the SIMD loops widen them as they read (half the bytes a long
    context streams); fp32 for fp32 decode weights (the exact path) and for the portable loops,
    which widen one value at a time, slower than they read fp32; an explicit request wins."""
    from core.backends import select

    chosen, why = select.kv_cache_format(decode_weights, "auto")
    assert chosen == (expected[kernel_variant] if expected else "fp32"), why
    assert why.startswith(f"{chosen} KV cache")
    assert select.kv_cache_format(decode_weights, "fp16") == (
        "fp16",
        "fp16 KV cache: asked for (DEEPSHIVA_KV_CACHE)",
    )


@needs_kernels
@pytest.mark.parametrize("kv", ["bf16", "fp16"])
def test_a_16_bit_kv_cache_keeps_the_tokens_and_is_said_in_the_path(
    bf16_model_dir, kv, monkeypatch
):
    """With a 16-bit KV cache (asked for, or auto's bf16) the cache is half of fp32's bytes, the
    path report says why, and greedy tokens, a reused prefix and a draft check give what an fp32
    cache gives on the same weights (within the rounding of the cached values)."""
    monkeypatch.setenv("DEEPSHIVA_KV_CACHE", kv)
    sixteen = ModelRunner(
        AutoModelForCausalLM.from_pretrained(bf16_model_dir), decode_weights="bf16"
    )
    monkeypatch.setenv("DEEPSHIVA_KV_CACHE", "fp32")
    full = ModelRunner(AutoModelForCausalLM.from_pretrained(bf16_model_dir), decode_weights="bf16")
    assert sixteen.backend.kv_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[kv]
    assert full.backend.kv_dtype == torch.float32
    assert f"{kv} KV cache: asked for" in " | ".join(sixteen.path.reasons)
    ids = [(i * 7) % 250 + 3 for i in range(60)]
    tokens = {}
    for name, runner in (("16", sixteen), ("32", full)):
        logits, out = runner.prefill(ids), []
        for _ in range(20):
            out.append(int(logits.argmax()))
            logits = runner.decode_one_token(out[-1])
        tokens[name] = out
    assert tokens["16"] == tokens["32"]
    assert sixteen.backend.k_cache.nbytes * 2 == full.backend.k_cache.nbytes
    # A keystroke that adds more tokens than a draft check: PyTorch's prefill over the cached
    # (16-bit, widened) positions; then a draft check of a few rows in NumPy/C.
    longer = ids + tokens["32"] + [(i * 11) % 250 + 3 for i in range(30)]
    a, b = sixteen.prefill(longer), full.prefill(longer)
    assert sixteen.reused_tokens >= len(ids) + 19
    assert float((a - b).abs().max()) < 2e-2 * max(1.0, float(b.abs().max()))
    a, b = sixteen.verify_draft(9, [10, 11, 12]), full.verify_draft(9, [10, 11, 12])
    assert float((a - b).abs().max()) < 2e-2 * max(1.0, float(b.abs().max()))


def test_a_kv_cache_format_not_offered_is_refused_by_name():
    from core.backends import select

    assert select.kv_cache_format("bf16", "int8") == (
        "int8",
        "int8 KV cache: asked for (DEEPSHIVA_KV_CACHE)",
    )
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16, int8, not 'int4'"):
        select.kv_cache_format("bf16", "int4")


@needs_kernels
@pytest.mark.parametrize("threads", [1, 2])
def test_an_int8_kv_cache_keeps_the_top_token_and_is_said_in_the_path(
    bf16_model_dir, threads, kernel_variant, monkeypatch
):
    """DEEPSHIVA_KV_CACHE=int8 (in each kernel variant, on one and two threads): the cache holds
    a byte a value and a scale a head's row, the path report says so, and on a short prompt the
    logits of prefill, decode steps (the fused C step writes int8 rows), a prefill over cached
    positions and a draft check stay within int8's rounding of an fp32 cache's, with the same
    greedy top token at each step."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    compact_weights.use_variant()  # built where compact weights are offered, then run in each
    monkeypatch.setenv("DEEPSHIVA_KV_CACHE", "int8")
    int8 = ModelRunner(AutoModelForCausalLM.from_pretrained(bf16_model_dir), decode_weights="bf16")
    monkeypatch.setenv("DEEPSHIVA_KV_CACHE", "fp32")
    full = ModelRunner(AutoModelForCausalLM.from_pretrained(bf16_model_dir), decode_weights="bf16")
    compact_weights.use_variant(kernel_variant)
    assert int8.backend.kv_dtype == torch.int8 and full.backend.kv_dtype == torch.float32
    assert "int8 KV cache: asked for" in " | ".join(int8.path.reasons)
    dim = int8.backend.head_dim
    ids = [(i * 7) % 250 + 3 for i in range(40)]
    a, b = int8.prefill(ids), full.prefill(ids)
    assert int8.backend.k_cache.nbytes * 4 * dim == full.backend.k_cache.nbytes * (dim + 4)

    def close(a, b):
        bound = 0.05 * max(1.0, float(b.abs().max()))
        return float((a - b).abs().max()) < bound and int(a.argmax()) == int(b.argmax())

    assert close(a, b)
    token = int(b.argmax())
    for _ in range(8):
        a, b = int8.decode_one_token(token), full.decode_one_token(token)
        assert close(a, b)
        token = int(b.argmax())
    longer = ids + [(i * 11) % 250 + 3 for i in range(30)]
    a, b = int8.prefill(longer), full.prefill(longer)
    assert int8.reused_tokens >= len(ids) and close(a, b)
    a, b = int8.verify_draft(9, [10, 11, 12]), full.verify_draft(9, [10, 11, 12])
    assert float((a - b).abs().max()) < 0.05 * max(1.0, float(b.abs().max()))
