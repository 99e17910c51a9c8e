"""Table-driven tests of lsp.text: position encodings, offsets, the context windows."""

import pytest

from lsp.text import (
    UTF8,
    UTF16,
    UTF32,
    char_to_index,
    cursor_context,
    end_position,
    index_to_char,
    indent_width,
    lines_of,
    offset_at,
    position_at,
    width,
)

LINE = "\tx = 'héllo 😀 wörld'  # ☃"


@pytest.mark.parametrize(
    "text, encoding, expected",
    [
        ("abc", UTF16, 3),
        ("é", UTF8, 2),
        ("é", UTF16, 1),
        ("😀", UTF8, 4),
        ("😀", UTF16, 2),
        ("😀", UTF32, 1),
        ("☃", UTF8, 3),
        ("\t", UTF16, 1),
        ("", UTF16, 0),
    ],
)
def test_width(text, encoding, expected):
    assert width(text, encoding) == expected


@pytest.mark.parametrize("encoding", [UTF8, UTF16, UTF32])
def test_index_round_trip_on_every_code_point(encoding):
    for index in range(len(LINE) + 1):
        character = index_to_char(LINE, index, encoding)
        assert char_to_index(LINE, character, encoding) == index


@pytest.mark.parametrize(
    "line, character, encoding, expected",
    [
        ("a😀b", 3, UTF16, 2),  # after the surrogate pair
        ("a😀b", 2, UTF16, 1),  # inside the pair: start of the code point
        ("a😀b", 5, UTF8, 2),
        ("a😀b", 3, UTF8, 1),  # inside the UTF-8 sequence
        ("a😀b", 2, UTF32, 2),
        ("abc", 99, UTF16, 3),  # beyond the end: clamped
        ("abc", -1, UTF16, 0),
    ],
)
def test_char_to_index(line, character, encoding, expected):
    assert char_to_index(line, character, encoding) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a\nb", ["a", "b"]),
        ("a\r\nb\rc", ["a", "b", "c"]),
        ("a\n", ["a", ""]),
        ("", [""]),
    ],
)
def test_lines_of(text, expected):
    assert lines_of(text) == expected


DOC = "def f():\r\n\treturn '😀'\n# ☃ é\n"


@pytest.mark.parametrize(
    "line, character, encoding, expected_offset",
    [
        (0, 0, UTF16, 0),
        (0, 8, UTF16, 8),
        (0, 50, UTF16, 8),  # clamped before the \r\n
        (1, 1, UTF16, 11),
        (1, 9, UTF16, 19),  # before the emoji
        (1, 10, UTF16, 19),  # inside its surrogate pair: start of the emoji
        (1, 11, UTF16, 20),  # after the emoji (2 UTF-16 units)
        (1, 13, UTF8, 20),  # 4 UTF-8 bytes
        (1, 10, UTF32, 20),
        (2, 3, UTF16, 25),
        (2, 5, UTF8, 25),
        (3, 0, UTF16, len(DOC)),
        (9, 0, UTF16, len(DOC)),
    ],
)
def test_offset_at_and_back(line, character, encoding, expected_offset):
    assert offset_at(DOC, line, character, encoding) == expected_offset
    back = position_at(DOC, expected_offset, encoding)
    assert offset_at(DOC, *back, encoding) == expected_offset


def test_end_position():
    assert end_position((3, 4), "ab😀", UTF16) == (3, 8)
    assert end_position((3, 4), "ab\n\tc😀", UTF16) == (4, 4)
    assert end_position((3, 4), "x\n", UTF8) == (4, 0)


@pytest.mark.parametrize(
    "line, expected", [("    x", 4), ("\tx", 4), ("  \tx", 4), ("\t  x", 6), ("", 0), ("x", 0)]
)
def test_indent_width(line, expected):
    assert indent_width(line) == expected


def test_cursor_context_cuts_windows_at_line_boundaries():
    text = "line1\nline2\nab|cd\nline4\nline5\n"
    offset = text.index("|")
    text = text.replace("|", "")
    ctx = cursor_context(text, offset, before=8, after=8)
    assert ctx.prefix == "ab"  # "line2\n" does not fit whole: dropped, not half-sent
    assert ctx.suffix == "cd\n"
    ctx = cursor_context(text, offset, before=100, after=100)
    assert ctx.prefix == "line1\nline2\nab" and ctx.suffix == "cd\nline4\nline5\n"
    assert ctx.line_prefix == "ab" and ctx.line_suffix == "cd"
    assert ctx.lines_below == ["line4", "line5", ""]
    assert ctx.lines_above == ["line1", "line2"]
    ctx = cursor_context(text, offset, before=1, after=1)
    assert ctx.prefix == "b" and ctx.suffix == "c"  # the cursor's own line may be cut


def test_cursor_context_window_start_stays_put_while_typing():
    body = "".join(f"value_{i} = {i}\n" for i in range(400))
    starts = set()
    for typed in range(1, 40):
        text = body + "x" * typed
        ctx = cursor_context(text, len(text), before=3000, after=100)
        starts.add(len(text) - len(ctx.prefix))
    assert len(starts) == 1  # the same first tokens for every keystroke: the KV cache is reused
