"""The shipped model (models/tiny-python): loads offline, FIM output is clean, tokenizer exact."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

FIM_TOKENS = ("<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<file_sep>", "<|endoftext|>")
STDLIB = Path(sysconfig.get_paths()["stdlib"])
ROUNDTRIP_FILES = ["os.py", "textwrap.py", "json/__init__.py", "functools.py", "ast.py"]
PREFIX = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n'
SUFFIX = "\n    return fibonacci(n - 1) + fibonacci(n - 2)\n"


@pytest.fixture(scope="module")
def tokenizer(shipped_model_dir):
    return AutoTokenizer.from_pretrained(shipped_model_dir, local_files_only=True)


@pytest.fixture(scope="module")
def model(shipped_model_dir):
    return AutoModelForCausalLM.from_pretrained(
        shipped_model_dir, local_files_only=True, dtype=torch.float32
    ).eval()


def test_directory_is_small_and_complete(shipped_model_dir):
    names = {p.name for p in shipped_model_dir.iterdir()}
    for needed in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "MODEL_CARD.md",
    ):
        assert needed in names
    assert sum(p.stat().st_size for p in shipped_model_dir.iterdir()) < 40 * 2**20


def test_loads_offline_by_directory(model, tokenizer):
    assert model.config.model_type == "llama"
    assert model.config.tie_word_embeddings
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token_id is not None
    for tok in FIM_TOKENS:
        assert (
            tokenizer.convert_tokens_to_ids(tok) != tokenizer.unk_token_id or tok == "<|endoftext|>"
        )
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)


@pytest.mark.parametrize("rel", ROUNDTRIP_FILES)
def test_tokenizer_round_trips_stdlib_source(tokenizer, rel):
    text = (STDLIB / rel).read_text(encoding="utf-8")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_tokenizer_round_trips_awkward_whitespace(tokenizer):
    text = "\tif x:  \r\n\t\treturn 'é ∑ 🐍'  # trailing  \n\n\n   \x0c\nclass  A : pass"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert (
        tokenizer("x", add_special_tokens=True)["input_ids"]
        == tokenizer("x", add_special_tokens=False)["input_ids"]
    )


def test_fim_greedy_output_has_no_fim_tokens(model, tokenizer):
    c = tokenizer.convert_tokens_to_ids
    ids = (
        [c("<fim_prefix>")]
        + tokenizer(PREFIX, add_special_tokens=False)["input_ids"]
        + [c("<fim_suffix>")]
        + tokenizer(SUFFIX, add_special_tokens=False)["input_ids"]
        + [c("<fim_middle>")]
    )
    x = torch.tensor([ids])
    out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=24)
    new = out[0, len(ids) :].tolist()
    specials = {c(t) for t in FIM_TOKENS}
    # Generation ends at the first special token (generation_config's eos ids).
    assert not any(t in specials for t in new[:-1])
    text = tokenizer.decode([t for t in new if t not in specials])
    assert not any(tok in text for tok in FIM_TOKENS)


def test_loads_by_name_through_core_and_fills_the_middle():
    core = pytest.importorskip("core")
    llm = core.OptimizedLLM(core.DEFAULT_MODEL)
    try:
        assert core.DEFAULT_MODEL == "deepshiva/tiny-python"
        assert llm.info()["fim_dialect"] == "starcoder"
        text = llm.generate(PREFIX, suffix=SUFFIX, max_length=24, temperature=0)
        assert isinstance(text, str)
        assert not any(tok in text for tok in FIM_TOKENS)
        # Trained on SPM too and saying so, it runs suffix-first: typing at the cursor only
        # computes the new characters' tokens.
        assert llm.info()["fim_order"] == "spm"
        typed = llm.complete(PREFIX + "        ret", suffix=SUFFIX, max_length=4, temperature=0)
        assert typed.prompt_tokens - typed.reused_prompt_tokens <= 4
    finally:
        llm.clear_memory()
