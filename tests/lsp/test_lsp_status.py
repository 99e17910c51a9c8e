"""Tests of the status state machine and the statistics."""

import pytest

from lsp.stats import Stats, percentile
from lsp.status import State, StatusTracker


def test_only_changes_are_announced():
    t = StatusTracker()
    first = t.update(State.READY)
    assert first.state is State.READY and not first.show  # the first "ready" needs no popup
    assert t.update(State.READY) is None
    down = t.update(State.UNREACHABLE, "not reachable at http://x")
    assert down.show and down.severity == 1 and "deepshiva-server" in down.message
    assert t.update(State.UNREACHABLE, "again") is None  # no second message per keystroke
    back = t.update(State.READY)
    assert back.show and back.notification() == {"state": "ready", "message": "DeepShiva is ready"}


def test_slow_pops_up_once_and_its_recovery_not_at_all():
    t = StatusTracker()
    t.update(State.READY)
    assert t.update(State.SLOW).show
    assert not t.update(State.READY).show
    second = t.update(State.SLOW)
    assert second is not None and not second.show  # still notified, no second popup


@pytest.mark.parametrize(
    "state, down",
    [
        (State.READY, False),
        (State.SLOW, False),
        (State.LOADING, True),
        (State.UNREACHABLE, True),
        (State.NO_MODEL, True),
        (State.UNAUTHORIZED, True),
    ],
)
def test_which_states_are_down(state, down):
    assert state.is_down is down


@pytest.mark.parametrize(
    "values, q, expected",
    [
        ([], 50, None),
        ([5], 95, 5),
        ([1, 2, 3, 4], 50, 2),
        ([1, 2, 3, 4], 95, 4),
        (list(range(1, 101)), 95, 95),
        ([3, 1, 2], 50, 2),
    ],
)
def test_percentile(values, q, expected):
    assert percentile(values, q) == expected


def test_stats_accept_rate():
    s = Stats()
    assert s.as_dict()["acceptRate"] is None
    s.shown, s.accepted = 4, 1
    s.latencies_ms.extend([10.0, 20.0, 30.0])
    d = s.as_dict()
    assert d["acceptRate"] == 0.25 and d["latencyP50Ms"] == 20.0 and d["latencyP95Ms"] == 30.0
