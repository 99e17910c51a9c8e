"""Which served models can fill in the middle, so suggestions for the others use the prefix only.

A model without FIM tokens (Phi-3, plain Mistral-7B) answers a request with a ``suffix`` with
HTTP 400. Instead of showing that, the language server sends such a model the text before the
cursor only. What it learns is kept per model name: from ``/model_status`` (its ``fim_dialect``
is null for such a model, so usually no request is ever refused), from a refusal, and from the
model name each answer carries. A change of model, by this editor or any other client, is
re-checked: a model not seen before is asked about, and while the current one is prefix-only
``/model_status`` is read again every ``RECHECK_S`` seconds.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

RECHECK_S = 30.0


def refuses_fim(status_code: int | None, message: str) -> bool:
    """Whether an API error is the refusal of a ``suffix`` by a model that cannot use one."""
    text = message.lower()
    return status_code == 400 and "suffix" in text and "fill-in-the-middle" in text


class FimSupport:
    """What this language server knows about the served model's fill-in-the-middle ability."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self.model: str | None = None  # the model the API serves, as last heard
        self._can_fill: dict[str | None, bool] = {}  # model name -> it can fill in the middle
        self._checked_at: float | None = None  # when /model_status was last read

    @property
    def sends_suffix(self) -> bool:
        """Send the text after the cursor unless the served model is known not to use it."""
        return self._can_fill.get(self.model, True)

    def known(self) -> dict[str, bool]:
        return {name: fill for name, fill in self._can_fill.items() if name is not None}

    def learn_status(self, status: dict) -> None:
        """Take the served model and its FIM ability from a ``/model_status`` answer."""
        self._checked_at = self._clock()
        if not status.get("model_loaded"):
            return
        self.model = status.get("model_name")
        self._can_fill.pop(None, None)  # a refusal's guess, now replaced by the facts
        if "fim_dialect" in status:
            self._note(self.model, status["fim_dialect"] is not None)

    def heard(self, model_name: str | None) -> bool:
        """An answer named the model that made it; True when /model_status should be read now
        (the model changed to one not seen before)."""
        if not model_name or model_name == self.model:
            return False
        refused = self._can_fill.pop(None, None) if self.model is None else None
        self.model = model_name
        if refused is not None:  # the answer to the retry of a refused request: same model
            self._note(model_name, refused)
        return model_name not in self._can_fill

    def refused(self) -> None:
        """The API refused a suffix: whichever model it serves now cannot fill in the middle (its
        name comes with the next /model_status read, which should follow at once)."""
        log.info(
            "%s cannot fill in the middle: suggestions use the text before the cursor only",
            self.model or "the served model",
        )
        self.model = None
        self._can_fill[None] = False
        self._checked_at = None

    def recheck_due(self) -> bool:
        """While suggestions are prefix-only, whether it is time to ask again which model is served."""
        if self.sends_suffix:
            return False
        return self._checked_at is None or self._clock() - self._checked_at >= RECHECK_S

    def forget_model(self) -> None:
        """Another model was (or may have been) loaded: ask about the served one again."""
        self.model = None
        self._checked_at = None

    def _note(self, name: str | None, can_fill: bool) -> None:
        if self._can_fill.get(name) != can_fill and not can_fill:
            log.info(
                "%s cannot fill in the middle: suggestions use the text before the cursor only",
                name,
            )
        self._can_fill[name] = can_fill
