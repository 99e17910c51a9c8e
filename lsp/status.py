"""What the editor is told about the API's health, and when.

A small state machine: every request outcome reports a state, and only a *change* of state
produces a ``deepshiva/status`` notification and (for the states worth interrupting the user)
a ``window/showMessage``, so a dead API costs the user one message, not one per keystroke.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class State(str, Enum):
    """Values of ``deepshiva/status``'s ``state`` field."""

    READY = "ready"
    LOADING = "loading"
    UNREACHABLE = "unreachable"
    NO_MODEL = "no_model"
    UNAUTHORIZED = "unauthorized"
    SLOW = "slow"

    @property
    def is_down(self) -> bool:
        """No suggestion can come until something changes (the poll watches for that)."""
        return self in (State.LOADING, State.UNREACHABLE, State.NO_MODEL, State.UNAUTHORIZED)


# window/showMessage type per state (LSP MessageType: 1 error, 2 warning, 3 info)
SEVERITY = {
    State.READY: 3,
    State.LOADING: 3,
    State.UNREACHABLE: 1,
    State.NO_MODEL: 2,
    State.UNAUTHORIZED: 1,
    State.SLOW: 2,
}

HINT = {
    State.UNREACHABLE: "Start it with `deepshiva-server` or set deepshiva.apiUrl.",
    State.NO_MODEL: "Load one with the command deepshiva.loadModel.",
    State.UNAUTHORIZED: "Check deepshiva.apiKey.",
    State.SLOW: "Suggestions are slow; consider a smaller model or fewer maxTokens.",
}


@dataclass(frozen=True)
class Transition:
    """A change of state to announce."""

    state: State
    message: str
    show: bool  # also worth a window/showMessage
    severity: int

    def notification(self) -> dict:
        """The ``deepshiva/status`` params."""
        return {"state": self.state.value, "message": self.message}


class StatusTracker:
    """Remembers the last announced state and decides when to announce again."""

    def __init__(self) -> None:
        self.state: State | None = None
        self.message = ""
        self._slow_shown = False

    def update(self, state: State, message: str = "") -> Transition | None:
        """Record an outcome; return the transition to announce, or None if nothing changed."""
        previous = self.state
        if state == previous:
            self.message = message or self.message
            return None
        self.state = state
        if not message:
            message = "DeepShiva is ready" if state == State.READY else state.value
        hint = HINT.get(state)
        self.message = f"{message}. {hint}" if hint and hint not in message else message
        # "ready" is shown only as a recovery from a real outage; "slow" once per session, since
        # latencies near the threshold would otherwise flip it back and forth with popups.
        if state == State.READY:
            show = previous is not None and previous.is_down
        elif state == State.SLOW:
            show, self._slow_shown = not self._slow_shown, True
        else:
            show = True
        return Transition(state, self.message, show, SEVERITY[state])
