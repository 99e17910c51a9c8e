"""What an editor holds: a document and the LSP rules for applying a change to it.

Independent of lsp/ on purpose (it is the oracle the language server's copy is compared with):
lines end at ``\\n``, ``\\r\\n`` or ``\\r`` only (LSP 3.17 "Text Documents"); a character past the
end of a line means the end of that line; a line past the end of the document means the end of
the document; columns count code units of the negotiated encoding.
"""

from __future__ import annotations

import re

from hypothesis import strategies as st

BREAK = re.compile(r"\r\n|\r|\n")
# Multi-byte text, astral characters (2 UTF-16 units, 4 UTF-8 bytes), every line-break style, and
# characters that Python's str.splitlines() treats as line breaks but LSP and editors do not.
ALPHABET = [
    "a",
    "b",
    "x",
    " ",
    "\t",
    "(",
    ")",
    "é",
    "ß",
    "☃",
    "中",
    "😀",
    "𝔘",
    "\n",
    "\r\n",
    "\r",
    "\x0c",
    "\x0b",
    "\x1c",
    "\x85",
    "\u2028",
    "\u2029",
]


def unit_len(ch: str, encoding: str) -> int:
    if encoding == "utf-32":
        return 1
    if encoding == "utf-8":
        return len(ch.encode("utf-8"))
    return 2 if ord(ch) > 0xFFFF else 1


def lines(text: str) -> list[tuple[int, int]]:
    """(start, end) Python indices of each line's content, without its break."""
    out, start = [], 0
    for m in BREAK.finditer(text):
        out.append((start, m.start()))
        start = m.end()
    out.append((start, len(text)))
    return out


def offset(text: str, line: int, character: int, encoding: str) -> int:
    spans = lines(text)
    if line >= len(spans):
        return len(text)
    start, end = spans[line]
    seen = 0
    for i in range(start, end):
        if seen >= character:
            return i
        seen += unit_len(text[i], encoding)
    return end


def apply(text: str, start: tuple[int, int], end: tuple[int, int], new: str, encoding: str) -> str:
    a, b = offset(text, *start, encoding), offset(text, *end, encoding)
    return text[:a] + new + text[b:]


def end_position(text: str, encoding: str) -> tuple[int, int]:
    spans = lines(text)
    start, end = spans[-1]
    return len(spans) - 1, sum(unit_len(c, encoding) for c in text[start:end])


texts = st.lists(st.sampled_from(ALPHABET), max_size=40).map("".join)


@st.composite
def position(draw, text: str, encoding: str) -> tuple[int, int]:
    """A position on a code-point boundary, or past the end of its line, or past the document."""
    spans = lines(text)
    line = draw(st.integers(0, len(spans) + 1))
    if line >= len(spans):
        return line, draw(st.integers(0, 5))
    start, end = spans[line]
    widths = [0]
    for ch in text[start:end]:
        widths.append(widths[-1] + unit_len(ch, encoding))
    if draw(st.booleans()) or len(widths) == 1:
        return line, widths[-1] + draw(st.integers(0, 4))  # at or past the end of the line
    return line, draw(st.sampled_from(widths))


@st.composite
def edit(draw, text: str, encoding: str):
    """(start, end, new_text) with start <= end, as editors send them."""
    a, b = draw(position(text, encoding)), draw(position(text, encoding))
    return (*sorted([a, b]), draw(texts))
