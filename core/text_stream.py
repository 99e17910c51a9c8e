"""Turn a stream of token ids into clean text: whole characters only, stop sequences cut.

``IncrementalDecoder`` releases text only once its characters are complete (a byte-level BPE
token can end inside a UTF-8 sequence). ``StopMatcher`` finds stop sequences across token
boundaries and holds back any tail that could still become one, so a stop never leaks out.
"""

from __future__ import annotations

REPLACEMENT_CHAR = "\ufffd"


class IncrementalDecoder:
    """Decode token ids one at a time into complete characters."""

    def __init__(self, tokenizer, context_ids: list[int] | None = None):
        # A few prompt tokens as context, so a first token's leading space (SentencePiece) survives.
        self._tokenizer = tokenizer
        self._ids: list[int] = list(context_ids or [])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (possibly empty)."""
        self._ids.append(token_id)
        decode = self._tokenizer.decode
        before = decode(
            self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True
        )
        after = decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith(REPLACEMENT_CHAR):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return after[len(before) :]
        return ""


class StopMatcher:
    """Cut generated text at the first stop sequence, holding back possible starts of one."""

    def __init__(self, stop_sequences: list[str] | None):
        self._stops = [s for s in (stop_sequences or []) if s]
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add text; return what is safe to release. Sets ``stopped`` when a stop is found."""
        if self.stopped:
            return ""
        self._pending += text
        if not self._stops:
            out, self._pending = self._pending, ""
            return out
        cut = min((i for i in (self._pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self._pending = self._pending[:cut], ""
            self.stopped = True
            return out
        hold = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(self._pending)), hold, -1):
                if self._pending.endswith(stop[:k]):
                    hold = k
                    break
        cut = len(self._pending) - hold
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out

    def flush(self) -> str:
        """At the end of generation: what was held back never became a stop, so release it."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out
