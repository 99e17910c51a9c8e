"""Python's layout rules for the line a completion writes, so the file around it still parses.

A small model often writes a line that reads well alone and breaks the file: a block opener
(``if x:``) where the next line is not indented deeper, a plain statement where the next line
is, an indentation that matches no enclosing block, a bracket closed that was never opened, or
one opened and left open at the end of a one-line suggestion. The document around the cursor
says which of these a line may do: the lines above give the indentation levels, the first code
line below says whether this line must open a block.

:class:`PythonLineRules` reads that from the prompt and the suffix once per request; the engine
then asks :meth:`~PythonLineRules.allows` about the model's candidate tokens, best first, and
keeps the best one that breaks no rule (decoding stays greedy among the lines that can parse).
Only the completion's first line is checked, only where the cursor stands at a line's end: at
the start of a statement, or (for a one-line completion) on a continuation line inside brackets
opened above, which must leave open just the brackets the document below closes. Inside a
string or mid-line no rule applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

COMPOUND_KEYWORDS = frozenset(
    {
        "if",
        "elif",
        "else",
        "for",
        "while",
        "with",
        "def",
        "class",
        "try",
        "except",
        "finally",
        "async",
    }
)
# The clauses that continue a compound statement, and the clause that may come just before each.
CONTINUATIONS = {
    "elif": {"if", "elif"},
    "else": {"if", "elif", "for", "while", "try", "except"},
    "except": {"try", "except"},
    "finally": {"try", "except", "else"},
}
RULE_TRIES = 8  # candidates tried, best first, for a token that keeps the rules
SUFFIX_SCAN_CHARS = 4000  # how far below the cursor to look for the brackets' closers
OPENERS = {")": "(", "]": "[", "}": "{"}
CLOSERS = {opener: closer for closer, opener in OPENERS.items()}
_SIGNIFICANT = re.compile(r"[\"'#()\[\]{}\\\n]")
_WORD = re.compile(r"[A-Za-z_]\w*")


def indent_width(line: str) -> int:
    """Columns of leading whitespace, tabs to the next multiple of 8 (as Python's tokenizer)."""
    head = line[: len(line) - len(line.lstrip(" \t"))]
    return len(head.expandtabs(8))


@dataclass
class LexState:
    """Where a scan of Python text stands: open brackets (innermost last), an open string's
    quote, inside a comment, after a line-continuing backslash, or broken (a closer that
    matches nothing)."""

    brackets: str = ""
    quote: str = ""
    comment: bool = False
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


def scan(text: str, state: LexState, on_line_end=None) -> LexState:
    """Advance ``state`` over ``text`` (in place, and returned).

    ``on_line_end(pos)`` is called at each newline that ends a logical line (outside strings
    and brackets, not after a backslash)."""
    pos, n = 0, len(text)
    if state.low is None:
        state.low = len(state.brackets)
    while pos < n:
        if state.quote:
            q = state.quote
            end = _string_end(text, pos, q)
            if end < 0:
                if len(q) == 1 and "\n" in text[pos:]:  # a one-quote string cannot span lines
                    state.quote = ""
                    pos = text.index("\n", pos)
                    continue
                return state
            state.quote, pos = "", end
            continue
        if state.comment:
            nl = text.find("\n", pos)
            if nl < 0:
                return state
            state.comment, pos = False, nl
            continue
        match = _SIGNIFICANT.search(text, pos)
        if match is None:
            if text[pos:].strip():
                state.continued = False
            return state
        ch, at = match.group(), match.start()
        if text[pos:at].strip():
            state.continued = False
        pos = at + 1
        if ch in "\"'":
            triple = text.startswith(ch * 3, at)
            state.quote = ch * 3 if triple else ch
            pos = at + (3 if triple else 1)
            state.continued = False
        elif ch == "#":
            state.comment = True
        elif ch in "([{":
            state.brackets += ch
            state.continued = False
        elif ch in ")]}":
            if state.brackets and state.brackets[-1] == OPENERS[ch]:
                state.brackets = state.brackets[:-1]
                state.low = min(state.low, len(state.brackets))
            else:
                state.broken = True
                state.low = -1
            state.continued = False
        elif ch == "\\":
            if text.startswith("\n", at + 1) or at + 1 == n:
                state.continued = True
                pos = at + 2 if at + 1 < n else n
            # a backslash elsewhere outside a string is a syntax error; the parser reports it
        elif ch == "\n":
            if not state.brackets and not state.continued and on_line_end is not None:
                on_line_end(at)
            state.continued = False
    return state


def _string_end(text: str, pos: int, quote: str) -> int:
    """Index just after the closing ``quote`` from ``pos``, or -1 when the text ends first."""
    i, n = pos, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if text.startswith(quote, i):
            return i + len(quote)
        if ch == "\n" and len(quote) == 1:
            return -1
        i += 1
    return -1


def _code_of(line: str) -> str:
    """A physical line without its comment, stripped (strings and brackets not tracked across
    lines: used only on a logical line's last physical line, to see how it ends)."""
    state, out = LexState(), []
    for i, ch in enumerate(line):
        if state.quote:
            out.append(ch)
            if ch == state.quote[0] and line.startswith(state.quote, i - len(state.quote) + 1):
                state.quote = ""
            continue
        if ch == "#":
            break
        if ch in "\"'":
            state.quote = ch
        out.append(ch)
    return "".join(out).strip()


@dataclass
class _Layout:
    """The logical lines above the cursor: the enclosing indentation levels and the last line."""

    levels: list[int] = field(default_factory=lambda: [0])
    headers: dict[int, str] = field(
        default_factory=dict
    )  # the last line's first word at each width
    last_indent: int | None = None
    last_opens: bool = False


DEF_STARTS = ("def ", "class ", "async def ", "@")


def layout_start(prefix: str) -> tuple[int, int]:
    """Where the last ``def``, ``class`` or decorator at the top level or one level in (a method)
    begins in ``prefix``, and its indentation: the layout above it cannot matter, so a long file
    is read from there. (Such a line inside a multi-line string would mislead this; rare.)"""
    best, width = 0, 0
    for indent in ("", "    "):
        for marker in DEF_STARTS:
            at = prefix.rfind("\n" + indent + marker) + 1
            if at > best:
                best, width = at, len(indent)
    return best, width


def read_layout(prefix: str) -> tuple[_Layout, LexState]:
    """Indentation levels and the last logical line of ``prefix``, and the lexer state at its end."""
    start, width = layout_start(prefix)
    prefix = prefix[start:]
    layout = _Layout(levels=[0, width] if width else [0])
    state = LexState()
    line_start = [0]  # where the current logical line began

    def on_line_end(at: int) -> None:
        logical = prefix[line_start[0] : at]
        line_start[0] = at + 1
        first = logical.split("\n", 1)[0]
        if not logical.strip() or first.lstrip().startswith("#"):
            return
        width = indent_width(first)
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
        layout.last_opens = _opens_block(first, _code_of(logical.rsplit("\n", 1)[-1]))

    scan(prefix, state, on_line_end)
    return layout, state


def _opens_block(first_line: str, last_code: str) -> bool:
    """A logical line that opens an indented block: a compound statement ending in a colon."""
    word = _WORD.match(first_line.lstrip())
    return bool(word) and word.group() in COMPOUND_KEYWORDS and last_code.endswith(":")


def next_code_indent(suffix: str) -> int | None:
    """Indentation of the first code line after the cursor's line (None at the end of the file)."""
    for line in suffix.split("\n")[1:]:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return indent_width(line)
    return None


class PythonLineRules:
    """Which texts the completion's first line may be, given the document around the cursor.

    ``single_line``: the completion ends at the line's end (a newline or an end token ends it),
    so that line must also end in a state the next line can follow."""

    def __init__(self, prefix: str, suffix: str | None, single_line: bool):
        self.single_line = single_line
        self.line_prefix = prefix[prefix.rfind("\n") + 1 :]
        layout, state = read_layout(prefix)
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
            below = scan(suffix[:SUFFIX_SCAN_CHARS], LexState(state.brackets))
            if not below.broken:
                self.active, self.keep_open = True, len(state.brackets) - below.low
        self.in_brackets = bool(state.brackets)
        self.opened_above = len(state.brackets)
        self.state = state.copy()  # from here on, ``low`` counts within the completion
        self.text = ""  # the completion's accepted text on its first line
        self.done = False
        self.next_indent = next_code_indent(suffix) if suffix is not None else None
        self.knows_next = suffix is not None
        self.prev_indent = layout.last_indent if layout.last_indent is not None else 0
        self.prev_opens = layout.last_opens
        self.headers = layout.headers
        steps = [b - a for a, b in zip(layout.levels, layout.levels[1:])]
        self.unit = min(steps) if steps else 4  # the file's indentation step
        # An odd count of a triple quote below means the document expects this line to open it.
        self.suffix_triples = {q: (suffix or "").count(q) for q in ('"""', "'''")}
        typed = indent_width(self.line_prefix)
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
    ) -> PythonLineRules | None:
        """Rules for a request in Python whose cursor stands where they apply, else None."""
        if (language or "").lower() != "python":
            return None
        rules = cls(prompt, suffix, single_line="\n" in stop_sequences)
        return rules if rules.active else None

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
        state = scan(piece, self.state.copy())
        if state.broken:
            return False
        if self.in_brackets:
            return self._allows_in_brackets(state, ends)
        line = self.line_prefix + self.text + piece
        code = line.lstrip(" \t")
        width = indent_width(line)
        blank_or_comment = not code or code.startswith("#")
        if code and not code.startswith("#"):
            if not self._width_ok(width):
                return False
            word = _WORD.match(code)
            # A keyword counts as soon as it is written (an identifier that merely starts with
            # one, like ``default``, is then refused too: rare, and cheaper than deciding late).
            # The opener rules relate this line to the document's next line, so they hold only
            # for a one-line completion (a multi-line one may write the block's body itself).
            if word and word.group() in COMPOUND_KEYWORDS and self.knows_next and self.single_line:
                if not self._deeper_next(width):
                    return False  # a block opener with no indented block after it
            if word and word.group() in CONTINUATIONS:
                before = self.headers.get(width)
                if word.end() < len(code) and before not in CONTINUATIONS[word.group()]:
                    return False  # an else/elif/except/finally with no block of its kind above
            elif (
                word
                and word.group() not in COMPOUND_KEYWORDS
                and self._body_next(width)
                and self.single_line
            ):
                name = word.group()
                if word.end() < len(code) or not any(k.startswith(name) for k in COMPOUND_KEYWORDS):
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
        return self._deeper_next(width) == _opens_block(line, _code_of(line))

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
            return CLOSERS[self.state.brackets[-1]]
        return ""

    def _body_next(self, width: int) -> bool:
        """The next code line is exactly one indentation step deeper than ``width``: a block's
        body (a continuation line of a bracket usually sits deeper, under the bracket)."""
        return self.next_indent is not None and 0 < self.next_indent - width <= self.unit

    def _string_left_open(self, state: LexState) -> bool:
        """A string the line would leave open: a one-quote string, or a triple-quoted one the
        document below does not close."""
        return bool(state.quote) and (
            len(state.quote) == 1 or self.suffix_triples[state.quote] % 2 == 0
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
        scan(piece, self.state)
        self.text += piece
