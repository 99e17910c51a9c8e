"""Prompt-lookup drafts are checked only at the length that pays, from measured costs and acceptance."""

from core.generation import DraftPolicy


def trained(seconds_per_rows, acceptance: float, rounds: int = 200) -> DraftPolicy:
    policy = DraftPolicy()
    for rows, seconds in seconds_per_rows.items():
        policy.record_pass(rows, seconds)
    for i in range(rounds):  # one guess at a time; the model keeps this share of them
        policy.record_draft(1, 1 if (i * acceptance) % 1 + acceptance >= 1 else 0)
    return policy


def test_no_step_timed_yet_means_no_draft():
    assert DraftPolicy().length(6) == 0


def test_untimed_lengths_are_tried_once():
    policy = DraftPolicy()
    policy.record_pass(1, 0.001)
    assert policy.length(6) == 6  # every length assumed to cost a step: the longest pays most
    policy.record_pass(7, 0.004)
    assert 0 < policy.length(6) < 6


def test_compute_bound_passes_need_high_acceptance():
    costs = {
        rows: 0.001 * (1 + 0.45 * (rows - 1)) for rows in range(1, 8)
    }  # the shipped model here
    assert trained(costs, acceptance=0.12).length(6) == 0
    assert trained(costs, acceptance=0.95).length(6) >= 3


def test_bandwidth_bound_passes_draft_at_an_acceptance_compute_bound_ones_cannot_use():
    costs = {rows: 0.280 * (1 + 0.02 * (rows - 1)) for rows in range(1, 8)}  # a 1B model
    assert trained(costs, acceptance=0.8).length(6) == 6
    assert trained(costs, acceptance=0.3).length(6) >= 1
    shipped = {rows: 0.001 * (1 + 0.45 * (rows - 1)) for rows in range(1, 8)}
    assert trained(shipped, acceptance=0.3).length(6) == 0


def test_after_drafts_stop_paying_guessing_is_tried_again_later():
    costs = {rows: 0.001 * (1 + 0.45 * (rows - 1)) for rows in range(1, 8)}
    policy = trained(costs, acceptance=0.0)
    assert policy.acceptance() < 0.1 and policy.length(6) == 0
    tries = next(i for i in range(10_000) if policy.length(6))
    assert 10 < tries < 1000  # single steps in between, then one more look
