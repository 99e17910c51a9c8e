"""Every code-model family on the lean path: the same greedy tokens as transformers in fp32, KV
reuse across a keystroke, FIM through the engine, and the engine's features, each on a tiny
random-weight model of the family built here (norm and bias weights randomized too, or a wrong
norm or a dropped bias would pass)."""

import threading

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GemmaConfig,
    GemmaForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    StableLmConfig,
    StableLmForCausalLM,
    Starcoder2Config,
    Starcoder2ForCausalLM,
)

from core import OptimizedLLM, compact_weights
from core.generation import ModelRunner
from tiny_model import build_tiny_model

SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
)
# family -> (config class, model class, extra config, the FIM tokens its tokenizer carries, FIM dialect)
FAMILIES = {
    "llama": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 100000.0}),
        "deepseek",
        "deepseek",
    ),  # DeepSeek-Coder: a Llama with linear RoPE scaling
    "mistral": (
        MistralConfig,
        MistralForCausalLM,
        dict(sliding_window=48),
        "codestral",
        "codestral",
    ),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, dict(tie_word_embeddings=True), "qwen", "qwen"),
    "stablelm": (
        StableLmConfig,
        StableLmForCausalLM,
        dict(use_qkv_bias=True, partial_rotary_factor=0.25),
        "starcoder",
        "starcoder",
    ),
    "starcoder2": (
        Starcoder2Config,
        Starcoder2ForCausalLM,
        dict(use_bias=True, sliding_window=48),
        "starcoder",
        "starcoder",
    ),
    "gemma": (
        GemmaConfig,
        GemmaForCausalLM,
        dict(head_dim=16, num_key_value_heads=1),
        "qwen",
        "qwen",
    ),
}


def build_family(out, family: str):
    config_cls, model_cls, extra, fim_family, _ = FAMILIES[family]
    build_tiny_model(
        out, family=fim_family, vocab_size=600
    )  # the tokenizer with this family's FIM tokens
    tokenizer = AutoTokenizer.from_pretrained(out)
    eos = tokenizer.eos_token_id
    config = config_cls(
        **{**SHAPE, **extra},
        vocab_size=len(tokenizer),
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    torch.manual_seed(1)
    model = model_cls(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.uniform_(-0.5, 0.5) if family == "gemma" else p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=list(FAMILIES))
def family_dir(request, tmp_path_factory):
    return request.param, build_family(
        tmp_path_factory.mktemp(f"family-{request.param}"), request.param
    )


def _greedy(runner, ids, n):
    tokens, logits = [], runner.prefill(ids)
    for _ in range(n):
        tokens.append(int(logits.argmax()))
        logits = runner.decode_one_token(tokens[-1])
    return tokens


def test_the_family_runs_lean_with_transformers_greedy_tokens(family_dir, load_transformers):
    family, path = family_dir
    llm = OptimizedLLM(str(path), torch_dtype=torch.float32)
    model = load_transformers(path)  # the engine's own copy is emptied as its backend is built
    assert llm.info()["backend"] == f"lean-{family}", llm.info()["path"]
    ids = llm.tokenizer.encode("def fibonacci(n):\n    if n < 2:\n        return n\n" * 4)[:100]
    with torch.inference_mode():
        expected = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=20,
            min_new_tokens=20,
            do_sample=False,
        )[0, len(ids) :].tolist()
    assert _greedy(llm.runner, ids, 20) == expected
    # Past a sliding window (mistral, starcoder2: 48 tokens) and after a keystroke, with the
    # cache reused: the logits of a fresh transformers pass over the whole prompt.
    runner = ModelRunner(model)
    runner.prefill(ids + expected[:10])
    keystroke = ids + expected[:9] + [7]
    logits = runner.prefill(keystroke)
    with torch.inference_mode():
        fresh = model(input_ids=torch.tensor([keystroke])).logits[0, -1]
    assert runner.reused_tokens >= len(keystroke) - 1
    assert float((logits - fresh).abs().max()) < 1e-4
    # A draft check (several rows at once) gives every row's logits too.
    all_logits = runner.verify_draft(9, [10, 11, 12])
    with torch.inference_mode():
        fresh = model(input_ids=torch.tensor([keystroke + [9, 10, 11, 12]])).logits[0, -4:]
    assert float((all_logits - fresh).abs().max()) < 1e-4


@pytest.mark.skipif(
    not compact_weights.available(), reason=str(compact_weights.unavailable_reason())
)
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_compact_decode_weights_run_every_family(family_dir, precision, load_transformers):
    family, path = family_dir
    llm = OptimizedLLM(str(path), torch_dtype=torch.float32, decode_weights=precision)
    info = llm.info()
    assert info["decode_weights"] == precision and info["decode_path"] == "numpy"
    # the fused C step computes every family's layer (its norm, biases, MLP, RoPE, window)
    assert info["path"]["decode"] == f"fused C step, {precision} weights", info["path"]
    ids = llm.tokenizer.encode("import os\n\nfor name in os.listdir('.'):\n    print(")
    exact = ModelRunner(load_transformers(path), decode_weights="fp32")
    compact = llm.runner
    exact.prefill(ids), compact.prefill(ids)
    for token in (7, 99):
        a, b = exact.decode_one_token(token), compact.decode_one_token(token)
        assert float(torch.nn.functional.cosine_similarity(a, b, dim=0)) > 0.99


@pytest.mark.skipif(
    "avx2" not in compact_weights.variants(), reason="the AVX2 kernels do not run here"
)
def test_the_fused_step_gives_transformers_greedy_tokens(family_dir):
    """The fused C step from bf16 copies of weights that are bf16 values already: transformers'
    fp32 greedy tokens on the same weights, over 40 steps (past the 48-key windows). The AVX2
    kernels multiply in fp32 (the avx512bf16 ones round activations to bf16: compared by
    cosine in the test above)."""
    family, path = family_dir
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    ids = list(range(40, 60))
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=40,
            min_new_tokens=40,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    expected = out.sequences[0, len(ids) :].tolist()
    before = compact_weights.variant()
    compact_weights.use_variant("avx2")
    try:
        runner = ModelRunner(model, decode_weights="bf16")
        assert runner.path.decode == "fused C step, bf16 weights", runner.path
        tokens, logits = [], runner.prefill(ids)
        for step in range(40):
            tokens.append(int(logits.argmax()))
            if step > 0:  # a tiny random model's argmax hides small errors: the logits too
                assert float((logits - out.logits[step][0]).abs().max()) < 1e-3
            logits = runner.decode_one_token(tokens[-1])
        assert tokens == expected
    finally:
        compact_weights.use_variant(before)


def test_the_engine_fills_in_the_middle_and_keeps_its_features(family_dir):
    """FIM with the family's own tokens, prompt lookup (exact), the Python rules, token healing,
    SPM reuse across a keystroke and cancellation within a step, all on the lean path."""
    family, path = family_dir
    llm = OptimizedLLM(str(path))  # the default path on this CPU
    assert llm.info()["backend"] == f"lean-{family}"
    assert llm.fim_dialect is not None and llm.fim_dialect.name == FAMILIES[family][4]
    prefix, suffix = "def add(a, b):\n    ret", "\n\nprint(add(1, 2))\n"
    first = llm.complete(prefix, suffix=suffix, max_length=8, temperature=0)
    again = llm.complete(prefix + "u", suffix=suffix, max_length=8, temperature=0)
    assert first.prompt_tokens > 0 and again.reused_prompt_tokens > 0
    text = "def add(a, b):\n    return a + b\n\n\ndef add(a, b):\n    return a + b\n\n\ndef add("
    outputs = {}
    for lookup in (False, True):
        llm.prompt_lookup = lookup
        llm.runner.reset()
        outputs[lookup] = llm.complete(
            text, max_length=24, temperature=0, repetition_penalty=1.0
        ).text
    assert outputs[True] == outputs[False]
    assert isinstance(
        llm.complete("x = [1, 2,", max_length=8, temperature=0, language="python").text, str
    )
    cancel = threading.Event()
    stream = llm.stream("import os\n", cancel_event=cancel, max_length=200, temperature=0.8, seed=3)
    next(iter(stream), None)
    cancel.set()
    list(stream)
    assert stream.result.finish_reason in ("cancelled", "stop")
    assert stream.result.generated_tokens < 200
