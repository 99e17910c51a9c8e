"""The lean Llama forward pass must give transformers' own logits, step for step."""

import random

import pytest
import torch

from core import OptimizedLLM, compact_weights, cpu_capabilities
from core.generation import ModelRunner, PromptLookup


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    # fp32 masters asked for: these tests compare logits with transformers' fp32 ones to 1e-4
    # (whatever a future default on some CPU may be).
    llm = OptimizedLLM(str(tiny_model_dir), torch_dtype=torch.float32)
    assert llm.info()["backend"] == "lean-llama"
    return llm


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir, load_transformers):
    """The same checkpoint in fp32 as transformers runs it (the engine's own is emptied)."""
    return load_transformers(tiny_model_dir)


def run_both(hf_model, steps):
    lean, hf = ModelRunner(hf_model, lean=True), ModelRunner(hf_model, lean=False)
    assert lean.backend_name == "lean-llama" and hf.backend_name == "transformers"
    diffs = []
    for kind, value in steps:
        a, b = (
            (lean.prefill(value), hf.prefill(value))
            if kind == "prefill"
            else (lean.decode_one_token(value), hf.decode_one_token(value))
        )
        diffs.append(float((a - b).abs().max()))
    return diffs, lean, hf


def test_prefill_decode_and_prefix_reuse_match_transformers(model, hf_model):
    ids = model.tokenizer.encode("def fibonacci(n):\n    if n < 2:\n        return n\n" * 3)
    edited = ids[:20] + ids[25:40]
    diffs, lean, hf = run_both(
        hf_model,
        [
            ("prefill", ids),
            ("decode", 7),
            ("decode", 99),
            ("prefill", edited),
            ("decode", 3),
            ("prefill", ids),
        ],
    )
    assert max(diffs) < 1e-4, diffs
    assert lean.reused_tokens == hf.reused_tokens > 0


def test_greedy_text_is_the_same_on_both_backends(model, hf_model, monkeypatch):
    prompt = "import os\n\ndef main():\n"
    lean_text = model.generate(prompt, max_length=30, temperature=0)
    engines_runner, model.runner = model.runner, ModelRunner(hf_model, lean=False)
    try:
        assert model.generate(prompt, max_length=30, temperature=0) == lean_text
    finally:
        model.runner = engines_runner


def test_bf16_weights_match_too(tiny_model_dir, model, load_transformers):
    ids = model.tokenizer.encode("class Stack:\n    def push(self, item):\n")
    bf16 = load_transformers(tiny_model_dir, torch.bfloat16)
    diffs, _, _ = run_both(bf16, [("prefill", ids), ("decode", 11), ("decode", 12)])
    assert max(diffs) < 0.1, diffs  # bf16 rounding differs only in the order of additions


def test_other_architectures_and_offloaded_models_use_transformers(tiny_model_dir):
    llm = OptimizedLLM(str(tiny_model_dir), max_memory={"cpu": "200KB"})
    assert llm.info()["backend"] == "transformers"


def test_prompt_lookup_gives_exactly_the_greedy_text_in_fewer_steps(model):
    prompt = "def add(a, b):\n    return a + b\n\n\ndef add(a, b):\n    return a + b\n\n\ndef add("
    outputs, steps = {}, {}
    for lookup in (False, True):
        model.prompt_lookup = lookup
        model.runner.reset()
        result = model.complete(prompt, max_length=40, temperature=0, repetition_penalty=1.0)
        outputs[lookup], steps[lookup] = result.text, result.decode_steps
    model.prompt_lookup = True
    assert outputs[True] == outputs[False]
    assert steps[True] <= steps[False]


def test_prompt_lookup_proposes_what_followed_the_last_ngram():
    from core.generation import PromptLookup

    lookup = PromptLookup([1, 2, 3, 4, 5, 9, 1, 2], ngram=2, max_draft=3)
    assert lookup.propose() == [3, 4, 5]
    lookup.add(7)
    assert lookup.propose() == []


@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_int8_decode_keeps_prefill_exact_and_decode_close(model, hf_model, path, monkeypatch):
    """int8 decode runs in the C kernels (numpy path), or in PyTorch's int8 kernel without them."""
    from core import compact_weights

    if path == "numpy" and not compact_weights.available():
        pytest.skip(str(compact_weights.unavailable_reason()))
    if path == "torch":
        monkeypatch.setenv("DEEPSHIVA_BLAS_DECODE", "0")
    ids = model.tokenizer.encode("def fibonacci(n):\n    if n < 2:\n        return n\n" * 2)
    exact = ModelRunner(hf_model, lean=True)
    int8 = ModelRunner(hf_model, lean=True, decode_weights="int8")
    assert int8.decode_path == path and int8.decode_weights == "int8"
    if path == "torch":
        assert {w.q.dtype for w in int8.backend.int8_weights()} == {torch.int8}
    else:
        assert int8.backend.blas.compact_bytes() > 0 and not int8.backend.int8_weights()
    # Through PyTorch's int8 kernel a long pass (prefill) uses the full-precision weights: the
    # same KV cache. With the C kernels the int8 weights are the model's only copy, so prompts
    # multiply them too (widened a matrix at a time): a close cache, not the same one.
    a, b = exact.prefill(ids), int8.prefill(ids)
    n = len(ids)
    for cache in ("k_cache", "v_cache"):
        reference = getattr(exact.backend, cache)[..., :n, :]
        diff = reference - getattr(int8.backend, cache)[..., :n, :]
        if path == "torch":
            assert float(diff.abs().max()) < 1e-5
        else:
            assert 0 < float(diff.abs().max()) < 0.05 * float(reference.abs().max())
    assert float(torch.nn.functional.cosine_similarity(a, b, dim=0)) > 0.99
    # A one-token pass goes through the int8 weights: close, but not the same numbers.
    for token in (7, 99):
        a, b = exact.decode_one_token(token), int8.decode_one_token(token)
        assert 0 < float((a - b).abs().max())
        assert float(torch.nn.functional.cosine_similarity(a, b, dim=0)) > 0.99


def test_int8_decode_generates_and_is_reported(tiny_model_dir):
    llm = OptimizedLLM(str(tiny_model_dir), decode_weights="int8")
    assert llm.info()["decode_weights"] == "int8" and llm.info()["backend"] == "lean-llama"
    result = llm.complete("import os\n\ndef main():\n", max_length=12, temperature=0)
    assert result.generated_tokens > 0


def test_int8_decode_is_refused_clearly_where_it_cannot_run(tiny_model_dir):
    from core.errors import InvalidParameter

    # Offloaded (sharded) models run through transformers, where there is no int8 decode path.
    with pytest.raises(InvalidParameter, match="int8 decode weights need a plain Llama") as err:
        OptimizedLLM(str(tiny_model_dir), max_memory={"cpu": "200KB"}, decode_weights="int8")
    assert err.value.param == "decode_weights"


def test_prompt_lookup_built_from_a_context_proposes_as_if_fed_token_by_token():
    rng = random.Random(0)
    for _ in range(200):
        context = [rng.randrange(6) for _ in range(rng.randrange(0, 50))]
        built, fed = PromptLookup(context), PromptLookup([])
        for token in context:
            fed.add(token)
        for token in [rng.randrange(6) for _ in range(8)]:
            assert built.propose() == fed.propose()
            built.add(token), fed.add(token)


def test_draft_checks_match_transformers(model, hf_model):
    """A prompt-lookup draft check runs several rows through the NumPy decode path at once."""
    ids = model.tokenizer.encode("for item in items:\n    total += item\n" * 2)
    lean, hf = ModelRunner(hf_model, lean=True), ModelRunner(hf_model, lean=False)
    assert lean.decode_path == "numpy" and hf.decode_path == "torch"
    lean.prefill(ids), hf.prefill(ids)
    a, b = lean.verify_draft(ids[3], ids[4:9]), hf.verify_draft(ids[3], ids[4:9])
    assert a.shape == b.shape == (6, hf_model.config.vocab_size)
    assert float((a - b).abs().max()) < 1e-4
    # A rejected draft is dropped and decoding goes on from the kept positions.
    lean.drop_last(3), hf.drop_last(3)
    a, b = lean.decode_one_token(42), hf.decode_one_token(42)
    assert float((a - b).abs().max()) < 1e-4


@pytest.mark.parametrize("attention", ["c", "numpy"])
def test_numpy_and_torch_decode_steps_write_the_same_cache(model, hf_model, attention):
    from core import cpu_attention
    from core.lean_llama import LeanLlamaBackend

    if attention == "c" and not cpu_attention.available():
        pytest.skip("the C kernels are not built here")
    ids = model.tokenizer.encode(
        "class Stack:\n    def push(self, item):\n        self.items.append(item)\n"
    )
    numpy_path, torch_path = (
        LeanLlamaBackend(hf_model, blas=True),
        LeanLlamaBackend(hf_model, blas=False),
    )
    assert numpy_path.blas is not None and torch_path.blas is None
    numpy_path.blas.c_attention = (
        attention == "c"
    )  # the C loop wherever it is built; NumPy otherwise
    for backend in (numpy_path, torch_path):
        backend.forward(ids)
    for step in ([5], [6, 7, 8], [9]):
        a, b = numpy_path.forward(step, all_logits=True), torch_path.forward(step, all_logits=True)
        assert float((a - b).abs().max()) < 1e-4
    n = numpy_path.length
    assert n == torch_path.length == len(ids) + 5
    for cache in ("k_cache", "v_cache"):
        diff = getattr(numpy_path, cache)[..., :n, :] - getattr(torch_path, cache)[..., :n, :]
        assert float(diff.abs().max()) < 1e-5


def test_numpy_decode_only_where_it_computes_the_same(tiny_model_dir, monkeypatch):
    with cpu_capabilities.inject("avx2"):  # fp32 masters by default
        assert OptimizedLLM(str(tiny_model_dir)).info()["decode_path"] == "numpy"
    # 16-bit masters decode from their own weights in PyTorch unless a compact copy is asked for
    # (auto asks for one where the kernels run, see test_bf16_masters_decode_in_c_from_themselves).
    bf16_model = OptimizedLLM(
        str(tiny_model_dir), torch_dtype=torch.bfloat16, decode_weights="fp32"
    ).info()
    assert (
        bf16_model["decode_path"] == "torch" and bf16_model["decode_weights"] == "bf16"
    )  # its own weights
    # So does DEEPSHIVA_BLAS_DECODE=0, where int8 decode falls back to PyTorch's int8 kernel.
    monkeypatch.setenv("DEEPSHIVA_BLAS_DECODE", "0")
    assert OptimizedLLM(str(tiny_model_dir)).info()["decode_path"] == "torch"
    int8 = OptimizedLLM(str(tiny_model_dir), decode_weights="int8")
    assert int8.info()["decode_path"] == "torch"


@pytest.mark.skipif(not compact_weights.available(), reason="the C kernels are not built here")
def test_bf16_masters_decode_in_c_from_themselves(tiny_model_dir, load_transformers):
    """bf16 masters run their GEMMs for prompts and decode through the C step over the same bf16
    bytes (one copy): the tokens fp32 arithmetic over those numbers gives, and the bf16 model's
    own logits to bf16 rounding."""
    with cpu_capabilities.inject("native-bf16"):
        fast = OptimizedLLM(str(tiny_model_dir), torch_dtype=torch.bfloat16)
    info = fast.info()
    assert (info["dtype"], info["backend"], info["decode_path"], info["decode_weights"]) == (
        "bfloat16",
        "lean-llama",
        "numpy",
        "bf16",
    )
    assert (
        info["path"]["summary"]
        == "prefill: torch bf16 GEMMs over the decode weights, fp32 activations; "
        "decode: fused C step, bf16 weights"
    )
    backend = fast.runner.backend
    assert backend.blas.fused is not None  # one C call a token
    prefill_bytes = backend.layers[0].gate_up.weight.data_ptr()
    assert prefill_bytes == backend.blas.layers[0].gate_up.values.ctypes.data  # the same memory
    ids = fast.tokenizer.encode("class Stack:\n    def push(self, item):\n")
    bf16 = load_transformers(tiny_model_dir, torch.bfloat16)
    lean, hf = ModelRunner(bf16, decode_weights="bf16"), ModelRunner(bf16, lean=False)
    for a, b in (
        (lean.prefill(ids), hf.prefill(ids)),
        (lean.decode_one_token(11), hf.decode_one_token(11)),
        (lean.decode_one_token(12), hf.decode_one_token(12)),
    ):
        assert float(torch.nn.functional.cosine_similarity(a, b, dim=0)) > 0.999
    # The same bf16 numbers widened to fp32 masters decode to the same greedy text.
    widened = OptimizedLLM(str(tiny_model_dir), torch_dtype=torch.float32)
    rounded = load_transformers(tiny_model_dir).to(torch.bfloat16).to(torch.float32)
    widened._install(rounded, widened.tokenizer)
    for prompt in ("import os\n\ndef main():\n", "def add(a, b):\n    return"):
        assert fast.generate(prompt, max_length=24, temperature=0) == widened.generate(
            prompt, max_length=24, temperature=0
        )


def test_a_small_model_keeps_numpy_to_the_engines_thread_count(tiny_model_dir):
    """OpenBLAS starts a thread per core unless told; the engine gives it PyTorch's count."""
    from threadpoolctl import threadpool_info

    llm = OptimizedLLM(str(tiny_model_dir))
    assert llm.info()["cpu_threads"] == 1
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)


def test_long_prompts_run_in_chunks_with_the_same_logits(model, hf_model):
    from core.generation import PREFILL_CHUNK

    text = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n"
    ids = model.tokenizer.encode(text * 40)[: PREFILL_CHUNK + 37]
    assert len(ids) == PREFILL_CHUNK + 37
    with torch.inference_mode():
        whole = hf_model(input_ids=torch.tensor([ids])).logits[0, -1]
    for lean in (True, False):
        runner = ModelRunner(hf_model, lean=lean)
        assert float((runner.prefill(ids) - whole).abs().max()) < 1e-4
        assert runner.prefill_tokens == len(ids)


def test_a_cancelled_prompt_stops_after_one_chunk_and_keeps_it_cached(model, hf_model):
    import threading

    from core import generation

    runner = ModelRunner(hf_model)
    PREFILL_CHUNK = runner.prefill_chunk
    assert PREFILL_CHUNK == generation.SMALL_MODEL_PREFILL_CHUNK  # a small model: short chunks
    ids = model.tokenizer.encode("import os\nimport sys\n" * 80)[: 3 * PREFILL_CHUNK]
    cancel = threading.Event()
    cancel.set()  # superseded before it started: one chunk still runs, so typing always advances the cache
    assert runner.prefill(ids, cancel) is None
    assert runner.prefill_tokens == PREFILL_CHUNK
    # The next prompt (the same text, one key later) starts from the chunk already computed.
    runner.prefill(ids + ids[:1])
    assert runner.reused_tokens == PREFILL_CHUNK
    assert runner.prefill_tokens == len(ids) + 1


def test_the_reused_prefix_is_the_longest_common_one_leaving_a_token_to_run(model, hf_model):
    rng = random.Random(3)
    runner = ModelRunner(hf_model)
    for _ in range(3000):
        cached = [rng.randrange(3) for _ in range(rng.randrange(0, 30))]
        ids = cached[: rng.randrange(0, len(cached) + 1)] + [
            rng.randrange(3) for _ in range(rng.randrange(0, 30))
        ]
        runner._cached_ids = cached
        common = 0
        while common < min(len(cached), len(ids)) and cached[common] == ids[common]:
            common += 1
        assert runner.reusable_prefix(ids) == max(min(common, len(ids) - 1), 0)


def test_prompt_lookup_reusing_the_last_prompts_index_proposes_as_a_fresh_one():
    """Keystrokes reuse the index of the previous prompt's front (other files, the suffix): the
    guesses are those of an index built from scratch, whether the prompt grew at its end, lost
    its end, or changed at its front."""
    from core.generation import NgramIndexCache

    rng = random.Random(1)
    cache = NgramIndexCache()
    cache.TAIL = 20
    prompt = [rng.randrange(8) for _ in range(120)]
    for _ in range(300):
        change = rng.random()
        if change < 0.6:  # typed at the end
            prompt = prompt + [rng.randrange(8) for _ in range(rng.randrange(1, 4))]
        elif change < 0.8:  # deleted at the end
            prompt = prompt[: max(3, len(prompt) - rng.randrange(1, 30))]
        else:  # the front changed (new context, a truncation step)
            prompt = [rng.randrange(8) for _ in range(rng.randrange(1, 10))] + prompt[5:]
        cached, fresh = PromptLookup(prompt, cache=cache), PromptLookup(prompt)
        for token in [rng.randrange(8) for _ in range(5)]:
            assert cached.propose() == fresh.propose()
            assert cached.index == fresh.index
            cached.add(token), fresh.add(token)


@pytest.mark.parametrize("decode_weights", ["fp32", "bf16", "int8", "int4"])
def test_a_long_pass_computes_its_mlp_in_row_blocks_with_the_same_logits(
    tiny_model_dir, load_transformers, decode_weights, monkeypatch
):
    """A pass longer than ``MLP_ROWS`` computes its MLP's inner rows a block at a time into
    one buffer (bounding a big model's prompt transients): every position's logits are those of
    the pass done whole, at each decode-weight format (int8/int4: widened once for all the
    blocks)."""
    from core import lean_llama

    if decode_weights != "fp32" and not compact_weights.available():
        pytest.skip(str(compact_weights.unavailable_reason()))
    dtype = torch.float32 if decode_weights == "fp32" else torch.bfloat16
    model = load_transformers(tiny_model_dir, dtype)
    ids = [(i * 13) % 250 + 3 for i in range(300)]
    logits = {}
    for rows in (lean_llama.MLP_ROWS, 10**6):
        monkeypatch.setattr(lean_llama, "MLP_ROWS", rows)
        runner = ModelRunner(model, lean=True, decode_weights=decode_weights)
        logits[rows] = runner.backend.forward(ids, all_logits=True)
    blocked, whole = logits.values()
    assert blocked.shape == (300, model.config.vocab_size)
    torch.testing.assert_close(blocked, whole, rtol=1e-5, atol=1e-5)
