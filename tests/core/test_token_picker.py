"""The token picker with the shipped model's tokenizer and logits that rank chosen texts first."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from core.healing import TokenHealer
from core.layout_rules import LayoutRules
from core.sampling import SamplingParams
from core.token_picker import TokenPicker

GREEDY = SamplingParams(temperature=0, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def tokenizer(shipped_model_dir):
    return AutoTokenizer.from_pretrained(shipped_model_dir)


@pytest.fixture(scope="module")
def healer(tokenizer):
    return TokenHealer(tokenizer, set(tokenizer.all_special_ids))


def token(healer: TokenHealer, text: str) -> int:
    return healer.token_texts().index(text)


def ranked(healer: TokenHealer, *texts: str) -> torch.Tensor:
    """Logits whose best tokens spell ``texts``, in that order."""
    logits = torch.zeros(len(healer.token_texts()))
    for rank, text in enumerate(texts):
        logits[token(healer, text)] = 10.0 - rank
    return logits


def make_picker(tokenizer, healer, **kw) -> TokenPicker:
    kw.setdefault("banned", torch.tensor([], dtype=torch.long))
    return TokenPicker(
        tokenizer, healer, GREEDY, stop_ids={tokenizer.eos_token_id}, recent=[], **kw
    )


def test_the_models_first_choice_unless_banned(tokenizer, healer):
    picker = make_picker(tokenizer, healer)
    assert picker.pick(ranked(healer, "x", "pass")) == token(healer, "x")
    banned = torch.tensor([token(healer, "x")])
    assert make_picker(tokenizer, healer, banned=banned).pick(ranked(healer, "x", "pass")) == token(
        healer, "pass"
    )
    assert picker.ends(tokenizer.eos_token_id) and not picker.ends(token(healer, "x"))


def test_a_healed_prompt_token_is_regrown_first_then_anything_goes(tokenizer, healer):
    picker = make_picker(tokenizer, healer, heal_text="ret")
    logits = ranked(healer, " x", "return", "ret")
    assert picker.pick(logits) == token(healer, "return")  # " x" does not spell "ret..."
    picker.accept(token(healer, "return"))
    assert picker.heal == ""
    assert picker.pick(logits) == token(healer, " x")
    assert picker.recent == [token(healer, "return")]


def test_python_rules_pass_over_a_token_that_breaks_the_layout(tokenizer, healer):
    rules = LayoutRules.for_request("python", "def f():\n", None, ())
    picker = make_picker(tokenizer, healer, rules=rules)
    logits = ranked(healer, "x", "    ")  # "x" would leave the function's body empty
    assert picker.pick(logits) == token(healer, "    ")
    unruled = make_picker(tokenizer, healer)
    assert unruled.pick(logits) == token(healer, "x")
    # The rules follow the text the completion produced: once the first line ends, they let go.
    picker.watch("    pass\n")
    assert rules.done and picker.pick(logits) == token(healer, "x")
