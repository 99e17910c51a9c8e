"""Context from other files: validation, the layout of each family's repository format (token by
token), the budget, and the KV cache reused across keystrokes that send the same context."""

from __future__ import annotations

import re

import pytest
from tiny_model import _train_tokenizer

from core.errors import InvalidParameter
from core.prompt_encoding import PromptEncoder
from core.repo_context import (
    CONTEXT_SHARE,
    MAX_CONTEXT_ITEMS,
    ContextItem,
    ContextLayout,
    check_context,
    comment_prefix,
)

MODELS = ContextItem("app/models.py", "class User:\n    name: str\n")
VIEWS = ContextItem("app/views.py", "def show(user):\n    return user.name\n")


def _tokenizer(specials):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(600, specials),
        eos_token=specials[0],
        additional_special_tokens=specials[1:],
    )


@pytest.fixture(scope="module")
def tokenizers():
    return {
        "starcoder2": _tokenizer(
            [
                "<|endoftext|>",
                "<fim_prefix>",
                "<fim_middle>",
                "<fim_suffix>",
                "<file_sep>",
                "<repo_name>",
            ]
        ),
        "qwen": _tokenizer(
            [
                "<|endoftext|>",
                "<|fim_prefix|>",
                "<|fim_suffix|>",
                "<|fim_middle|>",
                "<|file_sep|>",
                "<|repo_name|>",
            ]
        ),
        "deepshiva": _tokenizer(
            ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<file_sep>"]
        ),
        "plain": _tokenizer(["<|endoftext|>"]),
    }


def _layout(tokenizer):
    return ContextLayout(PromptEncoder(tokenizer).encode, tokenizer.get_vocab())


def _ids(tokenizer, *parts):
    """Ids of ``parts``: a special token by its name, any other text encoded."""
    vocab = tokenizer.get_vocab()
    out = []
    for part in parts:
        out += (
            [vocab[part]]
            if part in vocab and part.startswith("<")
            else tokenizer.encode(part, add_special_tokens=False)
        )
    return out


def test_starcoder2_layout_has_repo_name_then_file_sep_and_path(tokenizers):
    tok = tokenizers["starcoder2"]
    ids = _layout(tok).encode((MODELS, VIEWS), "python", 1000)
    assert ids == _ids(
        tok,
        "<repo_name>",
        "app",
        "<file_sep>",
        "app/models.py\n" + MODELS.text,
        "<file_sep>",
        "app/views.py\n" + VIEWS.text,
        "<file_sep>",
    )


def test_qwen_layout_puts_newlines_after_repo_name_and_each_file(tokenizers):
    tok = tokenizers["qwen"]
    ids = _layout(tok).encode((MODELS, VIEWS), "python", 1000)
    assert ids == _ids(
        tok,
        "<|repo_name|>",
        "app\n",
        "<|file_sep|>",
        "app/models.py\n" + MODELS.text + "\n",
        "<|file_sep|>",
        "app/views.py\n" + VIEWS.text + "\n",
        "<|file_sep|>",
    )


def test_shipped_model_format_is_file_sep_without_repo_name(tokenizers):
    tok = tokenizers["deepshiva"]
    ids = _layout(tok).encode((MODELS,), "python", 1000)
    assert ids == _ids(tok, "<file_sep>", "app/models.py\n" + MODELS.text, "<file_sep>")


def test_without_repository_tokens_each_file_gets_a_comment_header_in_the_files_language(
    tokenizers,
):
    tok = tokenizers["plain"]
    layout = _layout(tok)
    assert layout.encode((MODELS,), "python", 1000) == tok.encode(
        "# path: app/models.py\n" + MODELS.text + "\n", add_special_tokens=False
    )
    ts = ContextItem("src/user.ts", "export interface User { name: string }")
    assert tok.decode(layout.encode((ts,), "typescript", 1000)) == (
        "// path: src/user.ts\nexport interface User { name: string }\n\n"
    )
    assert comment_prefix(None, (ts,)) == "//" and comment_prefix("lua") == "--"


def test_no_items_lay_out_nothing(tokenizers):
    assert _layout(tokenizers["deepshiva"]).encode((), "python", 1000) == []


def test_context_keeps_to_its_share_dropping_the_first_items(tokenizers):
    tok = tokenizers["deepshiva"]
    layout = _layout(tok)
    items = tuple(
        ContextItem(f"app/m{i}.py", f"def function_{i}(value):\n    return value * {i}\n" * 3)
        for i in range(12)
    )
    full = layout.encode(items, "python", 100_000)
    budget = 200
    ids = layout.encode(items, "python", budget)
    assert len(ids) <= int(budget * CONTEXT_SHARE) < len(full)
    text = tok.decode(ids)
    assert "app/m11.py" in text and "app/m0.py\n" not in text  # the last items are kept
    assert ids[-len(_ids(tok, "app/m11.py\n" + items[11].text, "<file_sep>")) :] == _ids(
        tok, "app/m11.py\n" + items[11].text, "<file_sep>"
    )
    assert layout.encode(items, "python", budget) == ids  # same items, same ids: the cache holds


def test_validation_names_the_problem():
    assert check_context(None) == ()
    assert check_context([{"path": "a.py", "text": "x = 1"}]) == (ContextItem("a.py", "x = 1"),)
    cases = [
        ("not a list", "must be a list"),
        (
            [{"path": "a.py", "text": ""}] * (MAX_CONTEXT_ITEMS + 1),
            f"at most {MAX_CONTEXT_ITEMS} items",
        ),
        ([{"path": "", "text": "x"}], "context[0].path"),
        ([{"path": "a.py", "text": "x"}, {"path": "b\nc", "text": "x"}], "context[1].path"),
        ([{"path": "a.py", "text": 3}], "context[0].text"),
        (
            [{"path": "a.py", "text": "x" * 70_000}],
            "at most 65536 characters (got 70000 characters)",
        ),
        ([{"path": f"{i}.py", "text": "x" * 60_000} for i in range(5)], "in all"),
        (["a.py"], "context[0] must be an object"),
    ]
    for value, message in cases:
        with pytest.raises(InvalidParameter, match=re.escape(message)) as info:
            check_context(value)
        assert info.value.param == "context"


def test_engine_reuses_the_cached_context_across_keystrokes(tiny_model_dir):
    from core import OptimizedLLM

    llm = OptimizedLLM(str(tiny_model_dir))
    context = [
        {
            "path": "pkg/models.py",
            "text": "class User:\n    def __init__(self, name):\n        self.name = name\n" * 20,
        }
    ]
    prompt = "from .models import User\n\nuser = U"
    first = llm.complete(prompt, suffix="\n", context=context, temperature=0, max_length=4)
    assert first.reused_prompt_tokens == 0 and first.computed_prompt_tokens > 150
    for typed in ("s", "se", "ser"):
        step = llm.complete(
            prompt + typed, suffix="\n", context=context, temperature=0, max_length=4
        )
        assert step.computed_prompt_tokens <= 4, "a keystroke recomputed the context"
        assert step.reused_prompt_tokens >= first.prompt_tokens - 4
    # The same text without context is a different, shorter prompt.
    bare = llm.complete(prompt, suffix="\n", temperature=0, max_length=4)
    assert bare.prompt_tokens < first.prompt_tokens - 150


def test_generate_accepts_context_and_refuses_bad_context(tiny_model_dir):
    from core import OptimizedLLM

    llm = OptimizedLLM(str(tiny_model_dir))
    text = llm.generate(
        "x = ", context=[{"path": "a.py", "text": "y = 1\n"}], max_length=3, temperature=0
    )
    assert isinstance(text, str)
    with pytest.raises(InvalidParameter, match=r"context\[0\]\.path"):
        llm.generate("x = ", context=[{"path": 5, "text": ""}], max_length=3)
