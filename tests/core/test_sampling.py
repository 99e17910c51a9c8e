"""Sampling rules on hand-made logits: greedy, top-k, top-p, repetition penalty, masks."""

import torch

from core.sampling import SamplingParams, apply_repetition_penalty, sample_next


def logits_of(*values):
    return torch.tensor(values, dtype=torch.float32)


def draws(logits, params, n=300, **kw):
    gen = torch.Generator().manual_seed(0)
    return {sample_next(logits, params, [], gen, **kw) for _ in range(n)}


def test_temperature_zero_is_argmax():
    assert sample_next(logits_of(0.1, 3.0, 2.9), SamplingParams(temperature=0), []) == 1


def test_top_k_limits_the_candidates():
    logits = logits_of(5.0, 4.9, 4.8, 4.7, 0.0)
    assert draws(logits, SamplingParams(temperature=1.0, top_k=2, top_p=1.0)) == {0, 1}


def test_top_p_keeps_the_smallest_set_over_p():
    # probabilities ~ 0.5, 0.3, 0.2 (after softmax of logs)
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    assert draws(logits, SamplingParams(temperature=1.0, top_k=0, top_p=0.5)) == {0}
    assert draws(logits, SamplingParams(temperature=1.0, top_k=0, top_p=0.7)) == {0, 1}
    assert draws(logits, SamplingParams(temperature=1.0, top_k=0, top_p=1.0)) == {0, 1, 2}


def test_repetition_penalty_lowers_recent_tokens_only():
    out = apply_repetition_penalty(logits_of(2.0, -2.0, 2.0), [0, 1], 2.0)
    assert out.tolist() == [1.0, -4.0, 2.0]


def penalized_by_torch(logits, recent, penalty):
    """The rule in plain torch ops (what the NumPy version must reproduce bit for bit)."""
    out = logits.clone()
    ids = torch.tensor(sorted(set(recent[-64:])), dtype=torch.long)
    scores = out[ids]
    penalty = max(penalty, torch.finfo(torch.float32).tiny)
    penalized = torch.where(scores > 0, scores / penalty, scores * penalty)
    out[ids] = penalized.clamp(max=torch.finfo(torch.float32).max)
    return out


def test_repetition_penalty_matches_the_torch_rule_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    for trial in range(200):
        logits = torch.randn(512, generator=gen) * 30
        logits[torch.randint(0, 512, (5,), generator=gen)] = float("-inf")  # banned tokens
        logits[0] = 3e38
        recent = torch.randint(0, 512, (100,), generator=gen).tolist() + [0]
        penalty = [1.1, 1.3, 0.5, 1e-43, 9.9][trial % 5]
        expected = penalized_by_torch(logits, recent, penalty)
        got = apply_repetition_penalty(logits.clone(), recent, penalty)
        assert torch.equal(got, expected)
        assert not torch.isnan(got).any()


def test_banned_and_allowed_masks():
    logits = logits_of(9.0, 1.0, 0.5)
    assert sample_next(logits, SamplingParams(temperature=0), [], banned=torch.tensor([0])) == 1
    assert sample_next(logits, SamplingParams(temperature=0), [], allowed=torch.tensor([2])) == 2
