"""Turn raw model text into a suggestion worth showing.

Each rule is a pure function of the completion and the :class:`~lsp.text.CursorContext`, with
its own table of tests. :func:`final_cut` is shared by the stream reader (to stop the model as
soon as the suggestion cannot change any more) and by :func:`postprocess` (for ``/generate``).
What a language's comments, strings, brackets and blocks look like comes from the languages
table (``languages/``), the same one the server's layout rules read; these rules decide only what
is displayed (the server's decide which tokens to generate; see the README).
"""

from __future__ import annotations

import re
from functools import lru_cache

import languages
from languages import Language, indent_width, leading_ws
from languages.lexer import lexer_for

from .text import CursorContext

INDENT_UNIT = 4  # spaces of the model's output that stand for one tab in a tab-indented document


def comment_markers(language_id: str) -> tuple[str, ...]:
    """What opens a comment in a language (line markers, then a block comment's opener); for a
    language the table lacks, the common ones (``#``, ``//``, ``/*``)."""
    return languages.lookup(language_id).comment_starts


def in_comment(ctx: CursorContext) -> bool:
    """True when the cursor is inside a comment or a multi-line string (a docstring): where the
    language's lexer (the one the server's layout rules use) stands after the text above it."""
    lang = languages.lookup(ctx.language_id)
    state = lexer_for(lang).scan_quoted(ctx.prefix)
    return bool(state.comment) or state.quote in lang.multiline_quotes


def _only_closers(text: str, lang: Language) -> bool:
    """Closing brackets and ``;:,`` alone (what an editor's auto-closed pair leaves)."""
    return all(ch in lang.closers + ";:, \t" for ch in text)


def is_mid_line(ctx: CursorContext) -> bool:
    """True when real text follows the cursor on its line (closing brackets and ``;:,`` alone
    do not count: a multi-line suggestion can still end before them)."""
    return not _only_closers(ctx.line_suffix.strip(), languages.lookup(ctx.language_id))


def single_line(ctx: CursorContext, policy: str = "auto") -> bool:
    """Whether the suggestion must stay on the cursor's line under the multiline ``policy``."""
    if policy == "never":
        return True
    if policy == "always":
        return False
    return is_mid_line(ctx) or in_comment(ctx)


def _first_meaningful_below(ctx: CursorContext) -> str | None:
    for line in ctx.lines_below:
        if line.strip():
            return line.strip()
    return None


def _as_displayed(line: str, uses_tabs: bool) -> str:
    """``line`` with its indentation in the document's style, as :func:`fix_indentation` will
    show it (``INDENT_UNIT`` spaces to a tab in a tab-indented document, a tab to as many spaces
    in a space-indented one): widths are measured on what the user will see."""
    ws = leading_ws(line)
    if uses_tabs and " " * INDENT_UNIT in ws:
        return ws.replace(" " * INDENT_UNIT, "\t") + line[len(ws) :]
    if not uses_tabs and "\t" in ws:
        return ws.replace("\t", " " * INDENT_UNIT) + line[len(ws) :]
    return line


def final_cut(
    text: str,
    ctx: CursorContext,
    *,
    single: bool,
    max_lines: int,
    eof: bool = False,
    paragraph: bool = True,
) -> int | None:
    """Index at which ``text`` should end if the suggestion is already final, else None.

    ``eof`` says the model has stopped, so the last line is complete. Rules: a single line stops
    at the first line break; a multi-line suggestion stops before a line that leaves the block
    (by indentation), before a line that repeats the next line of the document, after the first
    of three identical lines (a looping model), after ``max_lines`` lines, and, unless the
    cursor's line opens a block, at the first blank line after some text (one paragraph; off
    with ``paragraph=False``, for the "always" multiline policy).
    """
    if single:
        for i, ch in enumerate(text):
            if ch in "\r\n":
                return i
        return len(text) if eof else None

    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    lang = languages.lookup(ctx.language_id)
    below = _first_meaningful_below(ctx)
    head = ctx.line_prefix + lines[0]
    head_complete = len(lines) > 1 or eof
    if head_complete and not ctx.line_prefix.strip() and below and head.strip() == below:
        return 0  # the cursor line itself would repeat the next line
    if not head.strip() and len(lines) > 1:  # the cursor's line stays blank
        base, opens = indent_width(ctx.line_prefix, lang.tab_width), False
    else:
        base = indent_width(head, lang.tab_width)
        opens = lang.indents_next_line(head)
    uses_tabs = _document_uses_tabs(ctx) if len(lines) > 1 else False

    previous, repeats, run_start = None, 0, 0
    seen_content = bool(lines[0].strip())
    for i in range(1, len(lines)):
        line = lines[i]
        complete = i < len(lines) - 1 or eof
        stripped = line.strip()
        if i >= max_lines:
            return starts[i] - 1
        if not stripped:
            if paragraph and complete and seen_content and not opens and i < len(lines) - 1:
                return starts[i] - 1  # outside a new block, a suggestion ends with its paragraph
            continue
        seen_content = True
        width = indent_width(_as_displayed(line, uses_tabs), lang.tab_width)
        if complete and below is not None and stripped == below:
            return starts[i] - 1
        closes = lang.closes_block(stripped)
        if width < base or (opens and width == base and not closes):
            return starts[i] - 1
        if opens and width == base and closes and complete:
            return starts[i] + len(line)  # the block's closing line ends it
        if complete:
            if stripped == previous:
                repeats += 1
            else:
                previous, repeats, run_start = stripped, 0, i
            if repeats >= 2:  # a third copy: the model is looping; keep the first copy
                return starts[run_start] + len(lines[run_start])
    return len(text) if eof else None


def fix_indentation(text: str, ctx: CursorContext) -> str:
    """Keep the document's indentation: tabs or spaces as the document uses, and no extra
    indentation on the first line when the cursor already stands at the indentation."""
    lines = text.split("\n")
    uses_tabs = _document_uses_tabs(ctx)
    lines[1:] = [_as_displayed(line, uses_tabs) for line in lines[1:]]

    cursor_ws = ctx.line_prefix
    if cursor_ws and not cursor_ws.strip() and leading_ws(lines[0]) and lines[0].strip():
        lang = languages.lookup(ctx.language_id)
        level = lang.tab_width if uses_tabs else INDENT_UNIT  # one indentation step, in columns
        expected = _expected_indent(ctx, lang, level)
        current = indent_width(cursor_ws + lines[0], lang.tab_width)
        have = indent_width(cursor_ws, lang.tab_width)
        if current > expected:
            extra = max(0, expected - have)
            pad = "\t" * (extra // lang.tab_width) if uses_tabs else " " * extra
            lines[0] = pad + lines[0].lstrip(" \t")
    return "\n".join(lines)


_TAB_LINE = re.compile(r"^\t", re.MULTILINE)
_SPACE_LINE = re.compile(r"^ [^\S\n]*\S", re.MULTILINE)  # space-indented, not blank


@lru_cache(maxsize=8)
def _document_uses_tabs(ctx: CursorContext) -> bool:
    """More lines of the window start with a tab than with spaces. Cached: the stream reader
    asks at every chunk of one suggestion, with the same context."""
    below = ctx.suffix.split("\n", 1)[1] if "\n" in ctx.suffix else ""
    tabs = len(_TAB_LINE.findall(ctx.prefix)) + len(_TAB_LINE.findall(below))
    spaces = len(_SPACE_LINE.findall(ctx.prefix)) + len(_SPACE_LINE.findall(below))
    return tabs > spaces


def _expected_indent(ctx: CursorContext, lang: Language, level: int) -> int:
    """Columns the cursor's line should be indented: the last line above's, one ``level`` more
    when that line opens a block."""
    for line in reversed(ctx.lines_above):
        if line.strip():
            width = indent_width(line, lang.tab_width)
            return width + level if lang.indents_next_line(line) else width
    return 0


def drop_lines_below(text: str, ctx: CursorContext) -> str:
    """Remove trailing lines of the suggestion that the document already has below the cursor."""
    lines = text.split("\n")
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    below = [line.strip() for line in ctx.lines_below if line.strip()]
    first = 0 if not ctx.line_prefix.strip() and not ctx.line_suffix.strip() else 1
    body = lines[first:]
    for k in range(len(body), 0, -1):
        tail = [line.strip() for line in body[-k:] if line.strip()]
        if tail and tail == below[: len(tail)]:
            return "\n".join(lines[: len(lines) - k])
    return "\n".join(lines)


def trim_line_suffix(text: str, ctx: CursorContext) -> str:
    """Cut the end of the suggestion when it repeats the text after the cursor on its line."""
    rest = ctx.line_suffix.strip()
    if _only_closers(rest, languages.lookup(ctx.language_id)):
        return text  # nothing, or closers only: balance_brackets decides
    body = text.rstrip()
    spaced = ctx.line_suffix[:1] in (" ", "\t")
    for k in range(len(rest), 3, -1):
        if k < len(rest) and rest[k].isalnum():
            continue  # only cut at a token boundary of the text that follows
        if body.endswith(rest[:k]):
            kept = body[: len(body) - k]
            return kept.rstrip() if spaced else kept
    if body.endswith(rest):  # short rests must match whole
        kept = body[: len(body) - len(rest)]
        return kept.rstrip() if spaced else kept
    return text


def balance_brackets(text: str, ctx: CursorContext) -> str:
    """Stop the suggestion at a closing bracket that it did not open when the same bracket
    already follows the cursor (the editor's auto-closed pair)."""
    lang = languages.lookup(ctx.language_id)
    rest = ctx.line_suffix.lstrip()
    following = ""
    for ch in rest:
        if ch in lang.closers:
            following += ch
        elif ch not in " \t":
            break
    if not following:
        return text
    stack: list[str] = []
    quote = ""
    quote_starts = {q[0] for q in lang.quotes}
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote or ch == "\n":
                quote = ""
        elif ch in quote_starts:
            quote = ch
        elif ch in lang.closer_of:
            stack.append(ch)
        elif ch in lang.opener_of:
            if stack and stack[-1] == lang.opener_of[ch]:
                stack.pop()
            elif following[0] == ch:
                return text[:i]
        i += 1
    return text


def cut_garbage(text: str) -> str:
    """End the suggestion before a control character or U+FFFD (a broken UTF-8 sequence): code
    never contains them, and a model that emits them is off the rails from there on."""
    for i, ch in enumerate(text):
        if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\n\r") or ord(ch) == 127:
            return text[:i]
    return text


def is_repetitive(text: str) -> bool:
    """True for degenerate output: one short unit repeated, or one line repeated."""
    s = text.strip()
    if len(s) >= 6:
        for period in range(1, int(len(s) / 2.5) + 1):  # at least two and a half copies
            unit = s[:period]
            if (unit * (len(s) // period + 1))[: len(s)] == s:
                return True
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    return len(lines) >= 3 and len(set(lines)) == 1


def postprocess(
    text: str,
    ctx: CursorContext,
    *,
    single: bool,
    max_lines: int = 12,
    paragraph: bool = True,
) -> str:
    """The suggestion to show for the model's ``text`` ("" when there is none)."""
    text = cut_garbage(text.replace("\r\n", "\n").replace("\r", "\n"))
    cut = final_cut(text, ctx, single=single, max_lines=max_lines, eof=True, paragraph=paragraph)
    if cut is not None:
        text = text[:cut]
    text = fix_indentation(text, ctx)
    text = drop_lines_below(text, ctx)
    text = trim_line_suffix(text, ctx)
    text = balance_brackets(text, ctx)
    text = text.rstrip()
    if not text.strip() or is_repetitive(text):
        return ""
    return closers_on_own_line(text, ctx)


def closers_on_own_line(text: str, ctx: CursorContext) -> str:
    """When a multi-line suggestion is inserted before closing brackets (``{|}``), end it with a
    line break at the cursor line's indentation so the closers land on their own line."""
    rest = ctx.line_suffix.strip()
    if "\n" in text and rest and _only_closers(rest, languages.lookup(ctx.language_id)):
        return text + "\n" + leading_ws(ctx.line_prefix)
    return text
