"""One scanner of code for both sides: strings, comments, brackets and line continuations, as the
languages table describes them (``languages.toml``).

The server's layout rules (``core/layout_rules.py``) scan the text above the cursor and each
candidate token with it; the language server (``lsp/postprocess.py``) asks it whether the cursor
stands in a comment or a multi-line string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from . import Language


@dataclass
class LexState:
    """Where a scan of code stands: open brackets (innermost last), an open string's
    quote, inside a comment (``comment`` is what ends it: a newline, or a block comment's closer),
    after a line continuation, or broken (a closer that matches nothing)."""

    brackets: str = ""
    quote: str = ""
    comment: str = ""
    continued: bool = False
    broken: bool = False
    low: int | None = None  # the fewest brackets open at any point of the scan

    def copy(self) -> LexState:
        """The same place, with ``low`` starting afresh from here."""
        return LexState(self.brackets, self.quote, self.comment, self.continued, self.broken)

    @property
    def at_code(self) -> bool:
        """Outside strings and brackets: where a new logical line could start."""
        return not self.brackets and not self.quote and not self.continued


class Lexer:
    """Scans one language's code for strings, comments, brackets and line continuations."""

    def __init__(self, language: Language):
        self.language = language
        marks = {q[0] for q in language.quotes} | {m[0] for m in language.comment_starts}
        marks |= set("".join(language.brackets)) | {"\n"}
        if language.line_continuation:
            marks.add(language.line_continuation[0])
        self._significant = re.compile("[" + "".join(re.escape(c) for c in sorted(marks)) + "]")
        self._quote_starts = {q[0] for q in language.quotes}
        opens = {q[0] for q in language.quotes} | {m[0] for m in language.comment_starts}
        self._quoted = re.compile("[" + "".join(re.escape(c) for c in sorted(opens)) + "]")

    def scan(self, text: str, state: LexState, on_line_end=None) -> LexState:
        """Advance ``state`` over ``text`` (in place, and returned).

        ``on_line_end(pos)`` is called at each newline that ends a logical line (outside strings
        and brackets, not after a line continuation)."""
        lang = self.language
        pos, n = 0, len(text)
        if state.low is None:
            state.low = len(state.brackets)
        while pos < n:
            if state.quote:
                q = state.quote
                spans_lines = q in lang.multiline_quotes
                end = _string_end(text, pos, q, spans_lines)
                if end < 0:
                    if not spans_lines and "\n" in text[pos:]:  # it ends with its line
                        state.quote = ""
                        pos = text.index("\n", pos)
                        continue
                    return state
                state.quote, pos = "", end
                continue
            if state.comment:
                end = text.find(state.comment, pos)
                if end < 0:
                    return state
                if state.comment != "\n":  # a block comment: on after its closer
                    end += len(state.comment)
                state.comment, pos = "", end  # a line comment: its newline ends the line
                continue
            match = self._significant.search(text, pos)
            if match is None:
                if text[pos:].strip():
                    state.continued = False
                return state
            ch, at = match.group(), match.start()
            if text[pos:at].strip():
                state.continued = False
            pos = at + 1
            quote = next((q for q in lang.quotes if text.startswith(q, at)), "")
            if quote:
                state.quote, pos = quote, at + len(quote)
                state.continued = False
            elif lang.block_comment and text.startswith(lang.block_comment[0], at):
                state.comment, pos = lang.block_comment[1], at + len(lang.block_comment[0])
            elif lang.line_comments and text.startswith(lang.line_comments, at):
                state.comment = "\n"
            elif ch in lang.closer_of:
                state.brackets += ch
                state.continued = False
            elif ch in lang.opener_of:
                if state.brackets and state.brackets[-1] == lang.opener_of[ch]:
                    state.brackets = state.brackets[:-1]
                    state.low = min(state.low, len(state.brackets))
                else:
                    state.broken = True
                    state.low = -1
                state.continued = False
            elif ch == "\n":
                if not state.brackets and not state.continued and on_line_end is not None:
                    on_line_end(at)
                state.continued = False
            elif lang.line_continuation and text.startswith(lang.line_continuation, at):
                after = at + len(lang.line_continuation)
                if text.startswith("\n", after) or after == n:
                    state.continued = True
                    pos = after + 1 if after < n else n
                # a continuation mark elsewhere outside a string is a syntax error; the parser says so
            elif ch.strip():
                state.continued = False  # the first character of a longer mark that did not follow
        return state

    def scan_quoted(self, text: str) -> LexState:
        """Where ``text`` ends as to strings and comments only (``quote`` and ``comment`` set;
        brackets and continuations not followed): what the language server asks of the text
        above the cursor, in a jump from one string or comment to the next."""
        lang, state, pos = self.language, LexState(), 0
        while True:
            match = self._quoted.search(text, pos)
            if match is None:
                return state
            at = match.start()
            quote = next((q for q in lang.quotes if text.startswith(q, at)), "")
            if quote:
                spans_lines = quote in lang.multiline_quotes
                end = _string_end(text, at + len(quote), quote, spans_lines)
                if end >= 0:
                    pos = end
                    continue
                nl = -1 if spans_lines else text.find("\n", at)
                if nl < 0:
                    state.quote = quote
                    return state
                pos = nl
                continue
            block = lang.block_comment
            if block and text.startswith(block[0], at):
                end = text.find(block[1], at + len(block[0]))
                if end < 0:
                    state.comment = block[1]
                    return state
                pos = end + len(block[1])
            elif lang.line_comments and text.startswith(lang.line_comments, at):
                nl = text.find("\n", at)
                if nl < 0:
                    state.comment = "\n"
                    return state
                pos = nl
            else:
                pos = at + 1  # the first character of a longer mark that did not follow

    def code_of(self, line: str) -> str:
        """A physical line without its comment, stripped (strings and brackets not tracked across
        lines: used only on a logical line's last physical line, to see how it ends)."""
        quote = ""
        for i, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = ""
                continue
            if self.language.line_comments and line.startswith(self.language.line_comments, i):
                return line[:i].strip()
            if ch in self._quote_starts:
                quote = ch
        return line.strip()


@cache
def lexer_for(language: Language) -> Lexer:
    """The lexer of a language (built once)."""
    return Lexer(language)


@cache
def _string_closer(quote: str, spans_lines: bool) -> re.Pattern:
    """What ends a string or matters inside it: an escape (a backslash and the character after
    it), the closing quote, and for a string that cannot span lines, a newline."""
    alternatives = [r"\\.", re.escape(quote)] + ([] if spans_lines else ["\n"])
    return re.compile("|".join(alternatives), re.DOTALL)


def _string_end(text: str, pos: int, quote: str, spans_lines: bool) -> int:
    """Index just after the closing ``quote`` from ``pos``, or -1 when the text (or, for a string
    that cannot span lines, the line) ends first."""
    for match in _string_closer(quote, spans_lines).finditer(text, pos):
        token = match.group()
        if token == quote:
            return match.end()
        if token == "\n":
            return -1
    return -1
