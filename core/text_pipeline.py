"""What the user sees of a completion: its generated text passed through a row of stages.

Both engines (``OptimizedLLM`` and ``UpstreamEngine``) send each new piece of generated text
through the same stages, in this order:

1. ``RegrownText`` drops the prompt text a healed token regrows (core/healing.py);
2. a ``Tap`` (the local engine, for the Python layout rules) reads what the model wrote;
3. ``StopMatcher`` cuts at a stop sequence, holding back a tail that could still become one
   (core/text_stream.py);
4. ``LoopGuard`` ends a completion that repeats itself (core/loop_guard.py), when it is on.

A stage has ``feed(text)``: take new text, return what may pass on now; ``flush()``: at the end,
return what it held back; and ``stopped``: the completion should end now.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from .healing import strip_regrown
from .loop_guard import LoopGuard
from .text_stream import StopMatcher


class Stage(Protocol):
    stopped: bool

    def feed(self, text: str) -> str: ...

    def flush(self) -> str: ...


class RegrownText:
    """Drops the start of the completion that only regrows a healed prompt token's text."""

    stopped = False

    def __init__(self, heal_text: str):
        self.pending = heal_text  # what is still to drop

    def feed(self, text: str) -> str:
        text, self.pending = strip_regrown(text, self.pending)
        return text

    def flush(self) -> str:
        return ""


class Tap:
    """Shows every piece of text to ``see`` and passes it on unchanged."""

    stopped = False

    def __init__(self, see: Callable[[str], None]):
        self._see = see

    def feed(self, text: str) -> str:
        self._see(text)
        return text

    def flush(self) -> str:
        return ""


class TextPipeline:
    """Stages in a row: what one releases, the next is fed."""

    def __init__(self, stages: Sequence[Stage]):
        self.stages = list(stages)

    @classmethod
    def for_completion(
        cls,
        heal_text: str,
        stop_sequences: Sequence[str],
        loop_guard: bool,
        watch: Callable[[str], None] | None = None,
    ) -> TextPipeline:
        """The stages of one completion (see the module docstring); ``watch`` reads the text
        after the regrown healing text, before any of it is held back."""
        stages: list[Stage] = [RegrownText(heal_text)]
        if watch is not None:
            stages.append(Tap(watch))
        stages.append(StopMatcher(list(stop_sequences)))
        if loop_guard:
            stages.append(LoopGuard())
        return cls(stages)

    def feed(self, text: str) -> str:
        """New generated text in; the text the user may see now out."""
        for stage in self.stages:
            text = stage.feed(text)
        return text

    def flush(self) -> str:
        """At the end of the completion: what the stages held back and may still be shown."""
        out = ""
        for stage in self.stages:
            if out:
                out = stage.feed(out)
            out += stage.flush()
        return out

    @property
    def stopped(self) -> bool:
        """Whether a stage ended the completion (a stop sequence, a loop)."""
        for stage in self.stages:  # a plain loop: this runs once per token
            if stage.stopped:
                return True
        return False
