"""What DeepShiva knows about programming languages, read from one table (``languages.toml``).

The server (``core/``) and the language server (``lsp/``) both scan code: for strings, comments
and brackets, for where a line's indentation puts it, for a line that opens a block. They read
the facts for it here, so a language is an entry in the table, not a branch in either side's
code. This package imports neither torch nor anything of ``core`` or ``lsp`` (the language server
must stay light), only the standard library.

Fields of an entry (``[[language]]`` in the table; all but ``ids`` optional):

- ``ids``: LSP languageIds (lower case); ``extensions``: file suffixes that mean the language.
- ``line_comments``: markers that comment out the rest of a line, the one to write first.
- ``block_comment``: a comment's opening and closing marker, if the language has one.
- ``quotes``: what opens a string, longest first (a triple quote before a single one); a string ends at
  the same text. ``multiline_quotes``: those of them whose strings may span lines (the others end
  at the line's end); inside one, as inside a comment, a suggestion is prose.
- ``brackets``: opening and closing pairs, ``"()"``.
- ``line_continuation``: what, at a line's very end, continues the line (Python's backslash).
- ``block_openers``: line endings after which the next line is indented deeper (``:``, ``{``,
  `` do``): the language server ends a multi-line suggestion when a line leaves that block.
- ``block_closers``: words that end a block on a line of their own (``end``, ``fi``).
- ``tab_width``: the columns between tab stops when indentation is measured (8 unless set).
- ``layout`` (``[language.layout]``): for languages whose indentation is syntax, the server keeps
  a completion's first line within it (``core/layout_rules.py``): ``block_start`` (what ends a
  line that opens a block, ``:``), ``block_keywords`` (the words that start such a line),
  ``clauses`` (a block keyword that continues another, and the ones it may follow:
  ``else = ["if", ...]``), ``definition_starts`` (line starts from which the layout above cannot
  matter, ``def ``).

**Tab width.** Both sides measure indentation with :func:`indent_width` and the language's
``tab_width``, 8 by default: Python's tokenizer puts tab stops every 8 columns, and so do
``expand``, terminals and git. For code Python accepts, any tab width from 1 to 8 gives the same
answers (a file whose lines compare differently at tab stops of 1 and 8 is a ``TabError``), so
it matters only where tabs and spaces mix, and there 8 decides whether the file parses. Neither
side knows the editor's tab size (LSP's inline completion request does not carry it). The
language server's ``INDENT_UNIT`` (4 spaces) is another fact: how many spaces of the model's
output stand for one tab when it rewrites them in a tab-indented document's style.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TABLE = Path(__file__).with_name("languages.toml")
TAB_WIDTH = 8


@dataclass(frozen=True, eq=False)
class Layout:
    """A language whose indentation is syntax: what opens a block and what continues one."""

    block_start: str = ":"
    block_keywords: frozenset[str] = frozenset()
    clauses: dict[str, frozenset[str]] = field(default_factory=dict)
    definition_starts: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Language:
    """The facts of one entry of the table (see the module's docstring for each field)."""

    ids: tuple[str, ...]
    extensions: tuple[str, ...] = ()
    line_comments: tuple[str, ...] = ()
    block_comment: tuple[str, str] | None = None
    quotes: tuple[str, ...] = ('"', "'")
    multiline_quotes: tuple[str, ...] = ()
    brackets: tuple[str, ...] = ("()", "[]", "{}")
    line_continuation: str = ""
    block_openers: tuple[str, ...] = ()
    block_closers: tuple[str, ...] = ()
    tab_width: int = TAB_WIDTH
    layout: Layout | None = None

    @property
    def name(self) -> str:
        return self.ids[0]

    @cached_property
    def closer_of(self) -> dict[str, str]:
        """Each opening bracket's closing one."""
        return {pair[0]: pair[1] for pair in self.brackets}

    @cached_property
    def opener_of(self) -> dict[str, str]:
        """Each closing bracket's opening one."""
        return {pair[1]: pair[0] for pair in self.brackets}

    @cached_property
    def closers(self) -> str:
        """The closing brackets, as one string."""
        return "".join(pair[1] for pair in self.brackets)

    @cached_property
    def comment_starts(self) -> tuple[str, ...]:
        """Everything that opens a comment: line markers, then the block comment's opener."""
        block = (self.block_comment[0],) if self.block_comment else ()
        return self.line_comments + block

    def starts_comment(self, code: str) -> bool:
        """Whether ``code`` (a line's text after its indentation) is a comment from its start."""
        return code.startswith(self.comment_starts) if self.comment_starts else False

    def indents_next_line(self, line: str) -> bool:
        """Whether ``line`` ends so that the next line is indented deeper (``block_openers``)."""
        return bool(self.block_openers) and line.rstrip().endswith(self.block_openers)

    def closes_block(self, stripped: str) -> bool:
        """Whether a (stripped) line closes a block: a closing bracket or a closing word."""
        if stripped and stripped[0] in self.closers:
            return True
        word = _WORD.match(stripped)
        return bool(word) and word.group() in self.block_closers


_WORD = re.compile(r"[A-Za-z_]\w*")


def parse(text: str) -> tuple[Language, list[Language]]:
    """The fallback entry and the entries of a table in the TOML format of ``languages.toml``."""
    data = tomllib.loads(text)
    return _entry(data["unknown"]), [_entry(item) for item in data.get("language", [])]


def _entry(item: dict) -> Language:
    values = {
        key: tuple(value) if isinstance(value, list) else value for key, value in item.items()
    }
    values["ids"] = tuple(name.lower() for name in item["ids"])
    layout = item.get("layout")
    if layout is not None:
        values["layout"] = Layout(
            block_start=layout.get("block_start", ":"),
            block_keywords=frozenset(layout.get("block_keywords", ())),
            clauses={k: frozenset(v) for k, v in layout.get("clauses", {}).items()},
            definition_starts=tuple(layout.get("definition_starts", ())),
        )
    return Language(**values)


UNKNOWN, LANGUAGES = parse(TABLE.read_text(encoding="utf-8"))
BY_ID: dict[str, Language] = {name: lang for lang in LANGUAGES for name in lang.ids}
BY_EXTENSION: dict[str, Language] = {ext: lang for lang in LANGUAGES for ext in lang.extensions}
PYTHON = BY_ID["python"]


def find(language_id: str | None) -> Language | None:
    """The entry of an LSP languageId (any case), or None for one the table lacks."""
    return BY_ID.get((language_id or "").lower())


def lookup(language_id: str | None) -> Language:
    """The entry of a languageId, or :data:`UNKNOWN` (the union of the common cases)."""
    return find(language_id) or UNKNOWN


def for_path(path: str) -> Language | None:
    """The entry whose extensions include ``path``'s suffix, or None."""
    return BY_EXTENSION.get(PurePosixPath(path).suffix.lower())


def leading_ws(line: str) -> str:
    """The run of spaces and tabs that starts ``line``."""
    return line[: len(line) - len(line.lstrip(" \t"))]


def indent_width(line: str, tab_width: int = TAB_WIDTH) -> int:
    """Columns of ``line``'s indentation, each tab advancing to the next multiple of
    ``tab_width`` (see the module's docstring for why 8)."""
    col = 0
    for ch in leading_ws(line):
        col = (col // tab_width + 1) * tab_width if ch == "\t" else col + 1
    return col
