"""Layout rules for the line a completion writes, so the file around it still parses.

For a language whose indentation is syntax (an entry of the languages table with a ``layout``:
Python), a small model often writes a line that reads well alone and breaks the file: a block opener
(``if x:``) where the next line is not indented deeper, a plain statement where the next line
is, an indentation that matches no enclosing block, a bracket closed that was never opened, or
one opened and left open at the end of a one-line suggestion. The document around the cursor
says which of these a line may do: the lines above give the indentation levels, the first code
line below says whether this line must open a block.

:class:`LayoutRules` reads that from the prompt and the suffix once per request; the engine
then asks :meth:`~LayoutRules.allows` about the model's candidate tokens, best first, and
keeps the best one that breaks no rule (decoding stays greedy among the lines that can parse).
Only the completion's first line is checked, only where the cursor stands at a line's end: at
the start of a statement, or (for a one-line completion) on a continuation line inside brackets
opened above, which must leave open just the brackets the document below closes. Inside a
string or mid-line no rule applies. Which words open and continue a block, what a comment, a
string and a bracket look like, and how wide a tab is, come from the table (``languages/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import languages
from languages import Language, Layout
from languages.lexer import LexState, lexer_for

RULE_TRIES = 8  # candidates tried, best first, for a token that keeps the rules
SUFFIX_SCAN_CHARS = 4000  # how far below the cursor to look for the brackets' closers
_WORD = re.compile(r"[A-Za-z_]\w*")


@dataclass
class _Layout:
    """The logical lines above the cursor: the enclosing indentation levels and the last line."""

    levels: list[int] = field(default_factory=lambda: [0])
    headers: dict[int, str] = field(
        default_factory=dict
    )  # the last line's first word at each width
    last_indent: int | None = None
    last_opens: bool = False


def layout_start(prefix: str, layout: Layout) -> tuple[int, int]:
    """Where the last definition (a line starting with one of ``definition_starts``: ``def``,
    ``class``, a decorator) at the top level or one level in (a method) begins in ``prefix``, and
    its indentation: the layout above it cannot matter, so a long file is read from there. (Such a
    line inside a multi-line string would mislead this; rare.)"""
    best, width = 0, 0
    for indent in ("", "    "):
        for marker in layout.definition_starts:
            at = prefix.rfind("\n" + indent + marker) + 1
            if at > best:
                best, width = at, len(indent)
    return best, width


def read_layout(prefix: str, language: Language) -> tuple[_Layout, LexState]:
    """Indentation levels and the last logical line of ``prefix``, and the lexer state at its end."""
    start, width = layout_start(prefix, language.layout)
    prefix = prefix[start:]
    layout = _Layout(levels=[0, width] if width else [0])
    state = LexState()
    lexer = lexer_for(language)
    line_start = [0]  # where the current logical line began

    def on_line_end(at: int) -> None:
        logical = prefix[line_start[0] : at]
        line_start[0] = at + 1
        first = logical.split("\n", 1)[0]
        if not logical.strip() or language.starts_comment(first.lstrip()):
            return
        width = languages.indent_width(first, language.tab_width)
        if layout.last_opens:
            if width > layout.levels[-1]:
                layout.levels.append(width)
        else:
            while len(layout.levels) > 1 and layout.levels[-1] > width:
                layout.levels.pop()
        layout.last_indent = width
        for deeper in [w for w in layout.headers if w > width]:
            del layout.headers[deeper]
        word = _WORD.match(first.lstrip())
        layout.headers[width] = word.group() if word else ""
        last_code = lexer.code_of(logical.rsplit("\n", 1)[-1])
        layout.last_opens = opens_block(first, last_code, language.layout)

    lexer.scan(prefix, state, on_line_end)
    return layout, state


def opens_block(first_line: str, last_code: str, layout: Layout) -> bool:
    """A logical line that opens an indented block: it starts with a block keyword and ends with
    ``block_start`` (Python: a compound statement ending in a colon). The language server's
    ``Language.indents_next_line`` asks a looser question (does the next line sit deeper?) of any
    language; this one decides what parses."""
    word = _WORD.match(first_line.lstrip())
    return (
        bool(word)
        and word.group() in layout.block_keywords
        and last_code.endswith(layout.block_start)
    )


def next_code_indent(suffix: str, language: Language) -> int | None:
    """Indentation of the first code line after the cursor's line (None at the end of the file)."""
    for line in suffix.split("\n")[1:]:
        stripped = line.strip()
        if stripped and not language.starts_comment(stripped):
            return languages.indent_width(line, language.tab_width)
    return None


class LayoutRules:
    """Which texts the completion's first line may be, given the document around the cursor.

    ``language``: an entry of the languages table with a ``layout``. ``single_line``: the
    completion ends at the line's end (a newline or an end token ends it), so that line must also
    end in a state the next line can follow."""

    def __init__(self, language: Language, prefix: str, suffix: str | None, single_line: bool):
        if language.layout is None:
            raise ValueError(f"{language.name} has no layout rules (its indentation is not syntax)")
        self.language, self.keywords = language, language.layout
        self.lexer = lexer_for(language)
        self.single_line = single_line
        self.line_prefix = prefix[prefix.rfind("\n") + 1 :]
        layout, state = read_layout(prefix, language)
        rest_of_line = (suffix or "").split("\n", 1)[0]
        at_line_end = (
            not self.line_prefix.strip() and not rest_of_line.strip() and not state.comment
        )
        self.active = at_line_end and state.at_code
        # Inside brackets opened above (a call or a literal over several lines), a one-line fill
        # must leave open exactly the brackets the document below closes.
        self.keep_open = 0
        if (
            at_line_end
            and single_line
            and state.brackets
            and not state.quote
            and suffix is not None
        ):
            below = self.lexer.scan(suffix[:SUFFIX_SCAN_CHARS], LexState(state.brackets))
            if not below.broken:
                self.active, self.keep_open = True, len(state.brackets) - below.low
        self.in_brackets = bool(state.brackets)
        self.opened_above = len(state.brackets)
        self.state = state.copy()  # from here on, ``low`` counts within the completion
        self.text = ""  # the completion's accepted text on its first line
        self.done = False
        self.next_indent = next_code_indent(suffix, language) if suffix is not None else None
        self.knows_next = suffix is not None
        self.prev_indent = layout.last_indent if layout.last_indent is not None else 0
        self.prev_opens = layout.last_opens
        self.headers = layout.headers
        steps = [b - a for a, b in zip(layout.levels, layout.levels[1:])]
        self.unit = min(steps) if steps else 4  # the file's indentation step
        # An odd count of a multi-line quote below means the document expects this line to open it.
        self.suffix_quotes = {q: (suffix or "").count(q) for q in language.multiline_quotes}
        typed = self._width(self.line_prefix)
        if layout.last_opens:
            self.widths = None  # any width deeper than the block's line
            self.min_width = layout.levels[-1] + 1
        else:
            self.widths = set(layout.levels)
            self.min_width = 0
        if not any(w >= typed for w in (self.widths or {self.min_width, typed})):
            self.widths, self.min_width = None, 0  # the typed indentation already broke the layout

    @classmethod
    def for_request(
        cls, language: str | None, prompt: str, suffix: str | None, stop_sequences: tuple[str, ...]
    ) -> LayoutRules | None:
        """Rules for a request in a language with layout rules (the table's entries with a
        ``layout``: Python) whose cursor stands where they apply, else None."""
        entry = languages.find(language)
        if entry is None or entry.layout is None:
            return None
        rules = cls(entry, prompt, suffix, single_line="\n" in stop_sequences)
        return rules if rules.active else None

    def _width(self, line: str) -> int:
        return languages.indent_width(line, self.language.tab_width)

    def _width_ok(self, width: int) -> bool:
        if self.widths is None:
            return width >= self.min_width
        return width in self.widths

    def allows(self, piece: str, ends: bool = False) -> bool:
        """Whether the accepted text plus ``piece`` keeps the rules; ``ends``: the completion
        stops right after it (an end token), as it does at a newline in a single-line one."""
        if self.done:
            return True
        nl = piece.find("\n")
        if nl >= 0:
            piece, ends = piece[:nl], self.single_line or ends
        keywords = self.keywords
        state = self.lexer.scan(piece, self.state.copy())
        if state.broken:
            return False
        if self.in_brackets:
            return self._allows_in_brackets(state, ends)
        line = self.line_prefix + self.text + piece
        code = line.lstrip(" \t")
        width = self._width(line)
        is_comment = self.language.starts_comment(code)
        blank_or_comment = not code or is_comment
        if code and not is_comment:
            if not self._width_ok(width):
                return False
            word = _WORD.match(code)
            # A keyword counts as soon as it is written (an identifier that merely starts with
            # one, like ``default``, is then refused too: rare, and cheaper than deciding late).
            # The opener rules relate this line to the document's next line, so they hold only
            # for a one-line completion (a multi-line one may write the block's body itself).
            if (
                word
                and word.group() in keywords.block_keywords
                and self.knows_next
                and self.single_line
            ):
                if not self._deeper_next(width):
                    return False  # a block opener with no indented block after it
            if word and word.group() in keywords.clauses:
                before = self.headers.get(width)
                if word.end() < len(code) and before not in keywords.clauses[word.group()]:
                    return False  # an else/elif/except/finally with no block of its kind above
            elif (
                word
                and word.group() not in keywords.block_keywords
                and self._body_next(width)
                and self.single_line
            ):
                name = word.group()
                if word.end() < len(code) or not any(
                    k.startswith(name) for k in keywords.block_keywords
                ):
                    return False  # the next line is one step deeper: this line must open its block
        elif (
            code and self._body_next(self.prev_indent) and not self.prev_opens and self.single_line
        ):
            return False  # a comment cannot open the block the next line is indented for
        if not ends:
            return True
        # The completion ends with this line: the document's next line must be able to follow.
        if self._string_left_open(state):
            return False
        if state.brackets:  # (the line began outside brackets: it opened these itself)
            return self._deeper_next(width)  # left open: only a deeper continuation line can follow
        if state.continued:
            return True
        if not self.knows_next:
            return True
        if blank_or_comment:
            if self.prev_opens:  # the next line must be the block's body, one step deeper
                return (
                    self._deeper_next(self.prev_indent)
                    and self.next_indent <= self.prev_indent + self.unit
                )
            return not self._deeper_next(self.prev_indent)
        return self._deeper_next(width) == opens_block(line, self.lexer.code_of(line), keywords)

    def _allows_in_brackets(self, state: LexState, ends: bool) -> bool:
        """A line inside brackets opened above: it may not close those the document below
        closes, and at its end it must have closed the others and its own."""
        accepted_low = self.state.low if self.state.low is not None else self.opened_above
        if self.opened_above - min(state.low, accepted_low) > self.opened_above - self.keep_open:
            return False  # closed a bracket the document below closes itself
        if not ends:
            return True
        if self._string_left_open(state):
            return False
        return len(state.brackets) == self.keep_open

    def closer(self) -> str:
        """What would close the line's open one-quote string or innermost bracket ("" if none):
        the repair when the model wants to end the line and may not yet."""
        if self.done:
            return ""
        if self._string_left_open(self.state):
            return self.state.quote
        if len(self.state.brackets) > self.keep_open:
            return self.language.closer_of[self.state.brackets[-1]]
        return ""

    def _body_next(self, width: int) -> bool:
        """The next code line is exactly one indentation step deeper than ``width``: a block's
        body (a continuation line of a bracket usually sits deeper, under the bracket)."""
        return self.next_indent is not None and 0 < self.next_indent - width <= self.unit

    def _string_left_open(self, state: LexState) -> bool:
        """A string the line would leave open: one that ends at the line's end, or a multi-line
        one the document below does not close."""
        return bool(state.quote) and (
            state.quote not in self.suffix_quotes or self.suffix_quotes[state.quote] % 2 == 0
        )

    def _deeper_next(self, width: int) -> bool:
        return self.next_indent is not None and self.next_indent > width

    def accept(self, piece: str) -> None:
        """Take the text the completion really produced (after the candidate was chosen)."""
        if self.done:
            return
        nl = piece.find("\n")
        if nl >= 0:
            piece, self.done = piece[:nl], True
        self.lexer.scan(piece, self.state)
        self.text += piece
