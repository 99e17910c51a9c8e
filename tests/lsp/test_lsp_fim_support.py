"""What the language server remembers about each model's fill-in-the-middle ability (unit table)."""

from lsp.fim_support import RECHECK_S, FimSupport, refuses_fim


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def status(name, fim_dialect):
    return {"model_loaded": True, "model_name": name, "fim_dialect": fim_dialect}


def test_refusal_is_recognised_only_for_the_fim_message():
    assert refuses_fim(
        400, "model 'phi' has no fill-in-the-middle tokens, so 'suffix' cannot be used"
    )
    assert not refuses_fim(400, "suffix must be a string (got int)")
    assert not refuses_fim(
        500, "model 'phi' has no fill-in-the-middle tokens, so 'suffix' cannot be used"
    )


def test_learned_per_model_and_rechecked_while_prefix_only():
    clock = Clock()
    fim = FimSupport(clock)
    assert fim.sends_suffix and not fim.recheck_due()  # nothing known: try FIM
    fim.learn_status(status("phi", None))
    assert not fim.sends_suffix and not fim.recheck_due()
    clock.now += RECHECK_S
    assert fim.recheck_due()  # prefix-only for a while: ask again which model is served
    fim.learn_status(status("coder", "starcoder"))
    assert fim.sends_suffix and not fim.recheck_due()
    # an answer names a model seen before: its ability is remembered, no need to ask
    assert fim.heard("phi") is False and not fim.sends_suffix
    assert fim.heard("coder") is False and fim.sends_suffix
    assert fim.heard("new-model") is True and fim.sends_suffix  # unknown: ask, and try FIM
    assert fim.known() == {"phi": False, "coder": True}


def test_a_refusal_applies_to_the_model_that_answers_the_retry():
    fim = FimSupport(Clock())
    fim.learn_status(status("coder", "starcoder"))
    fim.refused()  # someone else loaded a model without FIM tokens
    assert not fim.sends_suffix and fim.recheck_due()
    assert fim.heard("phi") is False  # the retry's answer names it: now known
    assert fim.known() == {"coder": True, "phi": False} and not fim.sends_suffix
    fim.forget_model()  # our own load: the next status tells
    fim.learn_status(status("coder", "starcoder"))
    assert fim.sends_suffix
