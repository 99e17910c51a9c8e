"""Token healing and the Python rules as a change to the logits (core/output_constraint.py), the
step DeepShiva's logits processor runs inside vLLM: driven by the shipped model's own logits it
must pick what the local engine picks, and leave other requests' logits alone."""

from __future__ import annotations

import pytest
import torch

from core.output_constraint import (
    HEAL,
    PYTHON_PREFIX,
    PYTHON_SINGLE_LINE,
    PYTHON_SUFFIX,
    OutputConstraint,
    check_request_args,
    from_request_args,
    request_args,
)
from core.layout_rules import LayoutRules
from core.request import GenerationRequest

# Cursor at a line end, one-line completions: the shipped model breaks the layout rules on these
# without them (an "else:" with no block after it, a docstring left open), so the rules decide.
RULE_CASES = [
    ("def f(x):\n    if x:\n        return 1\n", "\n    return 2\n"),
    ("for i in range(3):\n", "\nprint(i)\n"),
    ("def g(a, b):\n", "\n        return a + b\n"),
    ("x = 1\n", "\ny = 2\n"),
]


@pytest.fixture(scope="module")
def llm(shipped_model_dir):
    from core import OptimizedLLM

    return OptimizedLLM(str(shipped_model_dir))


@pytest.fixture(scope="module")
def hf_model(shipped_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(shipped_model_dir, dtype=torch.float32).eval()


def greedy_through(llm, hf_model, prompt: str, suffix: str, language: str | None) -> str:
    """A greedy one-line completion where every step's logits go through the constraint built
    from the request's vllm_xargs, as vLLM's sampler would do with DeepShiva's processor."""
    request = GenerationRequest.checked(
        prompt,
        suffix=suffix,
        max_length=24,
        temperature=0,
        stop_sequences=["\n"],
        language=language,
        context_length=llm.context_length,
    )
    ids, heal, _, _ = llm.encode_prompt(request)
    rules = LayoutRules.for_request(language, prompt, suffix, ("\n",))
    args = request_args(heal, (prompt, suffix, rules.single_line) if rules else None)
    stop_ids = llm._eos_ids | llm._fim_stop_ids
    constraint = from_request_args(args, llm.healer, llm.tokenizer, stop_ids=stop_ids, greedy=True)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(25):
            logits = hf_model(torch.tensor([ids + out])).logits[0, -1]
            if constraint is not None:
                logits = constraint(ids, out, logits)
            token = int(torch.argmax(logits))
            if token in stop_ids:
                break
            out.append(token)
    text = llm.tokenizer.decode(out, skip_special_tokens=True)
    text = text[len(heal) :] if text.startswith(heal) else text
    return text.split("\n", 1)[0]


@pytest.mark.parametrize("prompt, suffix", RULE_CASES)
def test_greedy_picks_are_the_local_engines_with_the_rules(llm, hf_model, prompt, suffix):
    local = llm.complete(
        prompt,
        suffix=suffix,
        max_length=24,
        temperature=0,
        stop_sequences=["\n"],
        language="python",
        repetition_penalty=1.0,
    ).text
    assert greedy_through(llm, hf_model, prompt, suffix, "python") == local


def test_the_rules_change_what_the_model_alone_writes(llm, hf_model):
    """The cases above are not vacuous: without the rules the first two end differently."""
    changed = [
        greedy_through(llm, hf_model, p, s, None) != greedy_through(llm, hf_model, p, s, "python")
        for p, s in RULE_CASES[:2]
    ]
    assert all(changed), changed


def test_healing_keeps_only_tokens_that_regrow_the_prompt_text(llm):
    constraint = OutputConstraint(
        llm.healer, llm.tokenizer, heal="    ret", rules=None, stop_ids=set(), greedy=True
    )
    logits = torch.zeros(len(llm.tokenizer))
    kept = constraint([1, 2], [], logits)
    texts = llm.healer.token_texts()
    survivors = torch.nonzero(torch.isfinite(kept)).flatten().tolist()
    assert survivors and all(
        texts[i].startswith("    ret") or "    ret".startswith(texts[i]) for i in survivors
    )
    # Once the text is regrown the row passes as it came (the same tensor: no copy, no cost).
    regrow = llm.tokenizer.encode("    return", add_special_tokens=False)
    assert constraint([1, 2], regrow, logits) is logits and constraint.done


def test_requests_that_ask_nothing_get_no_constraint_and_bad_args_are_named(llm):
    assert from_request_args({}, llm.healer, llm.tokenizer, stop_ids=set(), greedy=True) is None
    # Rules asked where they do not apply (mid-line) and nothing to heal: nothing to run either.
    args = {PYTHON_PREFIX: "x = fo", PYTHON_SINGLE_LINE: 1}
    assert from_request_args(args, llm.healer, llm.tokenizer, stop_ids=set(), greedy=True) is None
    check_request_args({HEAL: "ab", PYTHON_PREFIX: "x", PYTHON_SUFFIX: "y", PYTHON_SINGLE_LINE: 1})
    with pytest.raises(ValueError, match=PYTHON_SUFFIX):
        check_request_args({PYTHON_SUFFIX: 3})
    with pytest.raises(ValueError, match=PYTHON_SINGLE_LINE):
        check_request_args({PYTHON_SINGLE_LINE: "yes"})
