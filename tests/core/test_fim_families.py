"""FIM prompts token by token, against each family's published reference recipe.

Each recipe below transcribes how the family's own code or model card builds a FIM prompt:

- StarCoder/StarCoder2/stable-code (BigCode model cards; SPM as in BigCode's Megatron-LM
  ``permute``): ``<fim_prefix>{p}<fim_suffix>{s}<fim_middle>``, SPM
  ``<fim_prefix><fim_suffix>{s}<fim_middle>{p}``, the string tokenized whole, no BOS;
- Qwen2.5-Coder (its README) and CodeGemma (its model card, whose tokenizer adds ``<bos>``):
  ``<|fim_prefix|>{p}<|fim_suffix|>{s}<|fim_middle|>``;
- DeepSeek-Coder (its README): ``<｜fim▁begin｜>{p}<｜fim▁hole｜>{s}<｜fim▁end｜>``, BOS first;
- Code Llama (Meta's ``infilling_prompt_tokens`` in facebookresearch/codellama): ids
  ``[BOS, PRE] + encode(p) + [SUF] + encode_infilling(s) + [MID]``, SPM
  ``[BOS, PRE, SUF] + encode_infilling(s) + [MID] + encode(p)``, where ``encode_infilling`` drops
  the dummy-prefix space (``encode("☺" + s)[2:]``);
- Codestral (mistral-common's ``InstructTokenizerV2.encode_fim``):
  ``[BOS, SUFFIX] + encode_infilling(s) + [PREFIX] + encode(p)``.

The tokenizers have each family's special tokens and shape (tests/family_tokenizers.py), so a
SentencePiece dummy prefix shows up exactly where a real Code Llama or Codestral tokenizer puts one.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from family_tokenizers import build_family_model  # noqa: E402

from core import OptimizedLLM  # noqa: E402
from core.request import GenerationRequest  # noqa: E402


def _whole(tok, text: str) -> list[int]:
    """The model card's way: the prompt string through the tokenizer, special tokens and all."""
    return tok.encode(text)


def _infilling(tok, text: str) -> list[int]:
    """Code Llama's and mistral-common's ``encode_infilling``: no dummy-prefix space."""
    return tok.encode("☺" + text, add_special_tokens=False)[2:]


def _plain(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def _ids(tok, *names) -> list[int]:
    return tok.convert_tokens_to_ids(list(names))


def reference(family: str, order: str, tok, p: str, s: str) -> list[int]:
    """The family's published FIM prompt for prefix ``p`` and suffix ``s``, as token ids."""
    if family == "starcoder":
        return _whole(
            tok,
            f"<fim_prefix>{p}<fim_suffix>{s}<fim_middle>"
            if order == "psm"
            else f"<fim_prefix><fim_suffix>{s}<fim_middle>{p}",
        )
    if family in ("qwen", "codegemma"):
        return _whole(tok, f"<|fim_prefix|>{p}<|fim_suffix|>{s}<|fim_middle|>")
    if family == "deepseek":
        return _whole(tok, f"<｜fim▁begin｜>{p}<｜fim▁hole｜>{s}<｜fim▁end｜>")
    bos = [tok.bos_token_id]
    if family == "codellama":
        pre, suf, mid = _ids(tok, "▁<PRE>", "▁<SUF>", "▁<MID>")
        if order == "psm":
            return bos + [pre] + _plain(tok, p) + [suf] + _infilling(tok, s) + [mid]
        return bos + [pre, suf] + _infilling(tok, s) + [mid] + _plain(tok, p)
    if family == "codestral":
        prefix, suffix = _ids(tok, "[PREFIX]", "[SUFFIX]")
        return bos + [suffix] + _infilling(tok, s) + [prefix] + _plain(tok, p)
    raise AssertionError(family)


# family -> (the dialect DeepShiva detects, the orders the family's recipes define)
FAMILIES = {
    "starcoder": ("starcoder", ("psm", "spm")),
    "qwen": ("qwen", ("psm",)),
    "codegemma": ("qwen", ("psm",)),
    "deepseek": ("deepseek", ("psm",)),
    "codellama": ("codellama", ("psm", "spm")),
    "codestral": ("codestral", ("spm",)),
}
PREFIX = 'def remove_non_ascii(s: str) -> str:\n    """ '
SUFFIXES = [
    "\n    return result\n",  # the case: a suffix that starts at a line end
    "result = 1\n",  # starts with a word: with a dummy prefix it would read " result"
    " x = 1",  # a real leading space must stay
    "\n    print('héllo ☃')\n",  # characters outside the vocabulary (byte fallback)
    "",
]


@pytest.fixture(scope="module")
def family_models(tmp_path_factory):
    built = {}

    def get(family):
        if family not in built:
            built[family] = build_family_model(tmp_path_factory.mktemp(family), family)
        return built[family]

    return get


def _encoded(llm, prefix, suffix, heal):
    request = GenerationRequest.checked(
        prefix, suffix=suffix, max_length=8, context_length=llm.context_length
    )
    ids, heal_text, truncated, _ = llm.encode_prompt(request, heal=heal)
    assert not truncated
    return ids, heal_text


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fim_prompts_match_the_familys_reference_token_by_token(family, family_models):
    dialect, orders = FAMILIES[family]
    for order in orders:
        llm = OptimizedLLM(str(family_models(family)), fim_order=order)
        assert (llm.info()["fim_dialect"], llm.info()["fim_order"]) == (dialect, order)
        tok = llm.tokenizer
        for suffix in SUFFIXES:
            expected = reference(family, order, tok, PREFIX, suffix)
            ids, _ = _encoded(llm, PREFIX, suffix, heal=False)
            assert tok.convert_ids_to_tokens(ids) == tok.convert_ids_to_tokens(expected), (
                order,
                suffix,
            )
            # With healing, the prefix's last token leaves the prompt and the model regrows its text.
            healed, heal_text = _encoded(llm, PREFIX, suffix, heal=True)
            prefix_end = len(_plain(tok, PREFIX)) - 1
            if order == "psm" and family != "codestral":
                cut = (
                    ids.index(
                        _ids(
                            tok,
                            {
                                "starcoder": "<fim_suffix>",
                                "deepseek": "<｜fim▁hole｜>",
                                "codellama": "▁<SUF>",
                            }.get(family, "<|fim_suffix|>"),
                        )[0]
                    )
                    - 1
                )
            else:
                cut = len(ids) - 1
            assert ids[cut] == _plain(tok, PREFIX)[prefix_end]
            assert healed == ids[:cut] + ids[cut + 1 :]
            assert heal_text and PREFIX.endswith(heal_text)
        llm.clear_memory()


@pytest.mark.parametrize(
    "family, suffix_marker", [("codellama", "▁<SUF>"), ("codestral", "[SUFFIX]")]
)
def test_sentencepiece_suffix_has_no_dummy_prefix_space(family, suffix_marker, family_models):
    """The issue's case: ``▁<SUF> ▁ \\n ▁ ▁ ▁ ▁return`` was built; the recipes give ``▁<SUF> \\n ▁ ▁ ▁ ▁return``."""
    llm = OptimizedLLM(str(family_models(family)))
    ids, _ = _encoded(llm, "def f(x):\n    y = x", "\n    return y\n", heal=False)
    tokens = llm.tokenizer.convert_ids_to_tokens(ids)
    after = tokens[tokens.index(suffix_marker) + 1 :]
    assert after[:5] == ["\n", "▁", "▁", "▁", "▁return"]
    # The prefix keeps its dummy prefix: the recipes encode it as a text of its own.
    prefix_start = tokens.index("▁<PRE>" if family == "codellama" else "[PREFIX]") + 1
    assert tokens[prefix_start] == "▁def"
    # And a completion never shows a marker or the end-of-text token.
    text = llm.generate(
        "def f(x):\n    y = x", suffix="\n    return y\n", max_length=16, temperature=1.5, seed=2
    )
    assert not any(
        m in text for m in ("<PRE>", "<SUF>", "<MID>", "<EOT>", "[PREFIX]", "[SUFFIX]", "</s>")
    )


def test_the_shipped_models_fim_prompt_is_starcoders_in_its_own_order(shipped_model_dir):
    llm = OptimizedLLM(str(shipped_model_dir))
    assert (llm.info()["fim_dialect"], llm.info()["fim_order"]) == ("starcoder", "spm")
    for suffix in SUFFIXES:
        ids, _ = _encoded(llm, PREFIX, suffix, heal=False)
        assert ids == reference("starcoder", "spm", llm.tokenizer, PREFIX, suffix), suffix


@pytest.mark.parametrize("family, marker", [("codellama", "▁<MID>"), ("codestral", "[PREFIX]")])
def test_a_middle_that_starts_with_a_space_keeps_it(family, marker):
    """The decoder drops the dummy-prefix space at the start of a text; the middle's first token
    follows the prompt, so its space is real (``decode_infilling`` in Meta's recipe)."""
    from family_tokenizers import build_family_tokenizer

    from core.text_stream import IncrementalDecoder

    tok = build_family_tokenizer(family)
    before = (
        _plain(tok, "\n    y = x")[-2:] + _ids(tok, marker)
        if family == "codellama"
        else _ids(tok, marker) + _plain(tok, "def f(x):\n   ")
    )
    decoder = IncrementalDecoder(tok, context_ids=before[-4:])
    middle = _infilling(tok, " return y")  # what the model generates: ▁return ▁y
    assert tok.convert_ids_to_tokens(middle) == ["▁return", "▁y"]
    assert "".join(decoder.push(i) for i in middle) == " return y"
