"""End a completion once it repeats itself, before the repeat reaches the user.

Greedy decoding of a small code model falls into loops it never leaves: the same line over
and over (``self.name = name``), or one phrase repeated along a line
(``self.__class__, self.__class__, ...``). Every further token is wasted compute and ghost
text nobody wants. ``LoopGuard`` sits after the stop-sequence matcher and ends the
completion when

- a line (at least ``MIN_LINE_CHARS`` characters, stripped, not a bare block keyword such as
  ``pass`` or ``return None``) would appear for the third time:
  text that could still become such a line is held back until it is known, so the third
  copy is never released;
- a phrase of ``MIN_UNIT_CHARS`` to ``MAX_UNIT_CHARS`` characters with a letter in it has just
  appeared three times in a row (released, then the completion ends).

- a run of prose (``PROSE_CHARS`` characters of words, spaces and punctuation, as in a docstring
  or comment that keeps circling: "the filesystem is a directory, and the filesystem is a
  ...") would appear for the ``PROSE_LIMIT``-th time anywhere in the completion: released up
  to just before that copy ends. Code repeats its own phrases legitimately (``self.assert``,
  ``parser.add_argument(``), and those contain symbols, so this rule ignores them.

Short or symbol-only repeats (``0, 0, 0``, ``-----``, ``else:``, ``pass``) are left alone
unless they come three times in a row (``#`` on line after line): code has them legitimately.
"""

from __future__ import annotations

import re

MIN_LINE_CHARS = 4
LINE_LIMIT = 2  # copies of a line allowed in one completion
MIN_UNIT_CHARS = 8
MAX_UNIT_CHARS = 40
PROSE_CHARS = 20
PROSE_LIMIT = 4  # the copy of a prose run that ends the completion
_ATTRIBUTE = re.compile(r"\.\w")
_PROSE = re.compile(r"[A-Za-z ,.;:'-]*[A-Za-z][A-Za-z ,.;:'-]*")  # words, at least one letter


# Lines that code repeats legitimately: block keywords and symbol-only lines.
_COMMON_LINE = re.compile(
    r"(pass|break;?|continue;?|return( None| True| False| null| nil)?;?|else:?|else \{|\} else \{"
    r"|end|try:|finally:|[\W_]+)"
)


def counts(line: str) -> bool:
    """Whether a repeat of this (stripped) line is a sign of a loop."""
    return len(line) >= MIN_LINE_CHARS and not _COMMON_LINE.fullmatch(line)


def ends_in_repeated_phrase(text: str) -> bool:
    """True when ``text`` ends with three copies in a row of a phrase of MIN_UNIT_CHARS to
    MAX_UNIT_CHARS characters, on one line, with a letter in it."""
    for size in range(MIN_UNIT_CHARS, min(MAX_UNIT_CHARS, len(text) // 3) + 1):
        unit = text[-size:]
        if (
            text[-2 * size : -size] == unit
            and text[-3 * size : -2 * size] == unit
            and "\n" not in unit
            and any(c.isalpha() for c in unit)
        ):
            return True
    return False


def is_prose(text: str) -> bool:
    """Words, spaces and punctuation, as in a sentence: not indentation (two spaces) and not an
    attribute access (``self.assertEqual`` is code)."""
    return bool(_PROSE.fullmatch(text)) and "  " not in text and not _ATTRIBUTE.search(text)


class LoopGuard:
    """Filter streamed text; ``looping`` turns true when the completion should end."""

    def __init__(self) -> None:
        self.looping = False
        self._seen: dict[str, int] = {}
        self._at_limit: set[str] = set()  # lines whose next copy would be one too many
        self._line = ""  # the current, unfinished line (released or not)
        self._held = ""  # the part of it not yet released
        self._text_tail = ""  # recent released text, for the phrase rule
        self._last, self._run = "", 0  # the last non-blank line and how often it came in a row
        self._window = ""  # the last PROSE_CHARS released characters
        self._prose_seen: dict[str, int] = {}

    def feed(self, text: str) -> str:
        """Add text; return what may be shown now."""
        out = []
        for piece in re.split(r"(?<=\n)", text):
            if self.looping or not piece:
                continue
            out.append(self._feed_piece(piece))
        return "".join(out)

    @property
    def stopped(self) -> bool:
        """``looping``, under the name every stage of core/text_pipeline.py answers to."""
        return self.looping

    def flush(self) -> str:
        """At the end of generation: release a held line unless it was a repeat."""
        if self.looping:
            return ""
        out, self._held = self._held, ""
        return out

    def _feed_piece(self, piece: str) -> str:
        """Text without a newline inside (possibly ending with one)."""
        self._line += piece
        self._held += piece
        content = self._line.strip()
        if piece.endswith("\n"):
            if self._would_loop(content):
                self.looping = True
                return ""
            if counts(content):
                self._seen[content] = self._seen.get(content, 0) + 1
                if self._seen[content] >= LINE_LIMIT:
                    self._at_limit.add(content)
            if content:
                self._run = self._run + 1 if content == self._last else 1
                self._last = content
            self._line = ""
            return self._release()
        if self._could_become_loop(content):
            return ""  # might become a third copy (its indentation included): wait for the line
        return self._release()

    def _could_become_loop(self, partial: str) -> bool:
        """Whether an unfinished line could still turn out to be a copy one too many."""
        if self._run >= LINE_LIMIT and self._last.startswith(partial):
            return True
        return any(line.startswith(partial) for line in self._at_limit)

    def _would_loop(self, content: str) -> bool:
        """Whether finishing a line with this content makes the completion a loop: a third
        copy of a line that counts, or of any non-blank line in a row (``#``, ``pass``)."""
        if counts(content):
            return content in self._at_limit
        return bool(content) and content == self._last and self._run >= LINE_LIMIT

    def _release(self) -> str:
        out, self._held = self._held, ""
        out = self._cut_prose_loop(out)
        self._text_tail = (self._text_tail + out)[-(MAX_UNIT_CHARS * 3 + 1) :]
        if out and ends_in_repeated_phrase(self._text_tail):
            self.looping = True
        return out

    def _cut_prose_loop(self, out: str) -> str:
        """``out`` up to the character that would complete a run of prose seen too often."""
        for i, ch in enumerate(out):
            self._window = (self._window + ch)[-PROSE_CHARS:]
            if len(self._window) == PROSE_CHARS and is_prose(self._window):
                count = self._prose_seen.get(self._window, 0) + 1
                self._prose_seen[self._window] = count
                if count >= PROSE_LIMIT:
                    self.looping = True
                    return out[:i]
        return out
