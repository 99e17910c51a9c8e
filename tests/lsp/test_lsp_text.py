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


# ---- the incremental line index ----

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lsp.text import LineIndex, line_starts  # noqa: E402

_PIECES = st.text(alphabet="aé😀\n\r \x0c", max_size=30)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    text=_PIECES,
    edits=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 10), _PIECES), max_size=8),
)
def test_line_index_after_edits_equals_a_fresh_scan(text, edits):
    """Including edits that split a \\r\\n pair or join a \\r with a following \\n."""
    index = LineIndex(text)
    for at, length, new in edits:
        a = min(at, len(index.text))
        b = min(a + length, len(index.text))
        expected = index.text[:a] + new + index.text[b:]
        index = index.replace(a, b, new)
        assert index.text == expected
        assert index.starts.tolist() == line_starts(expected), (expected,)


def test_a_keystroke_in_a_large_document_does_not_rescan_it(monkeypatch):
    """A 5 MB document: typing one character rescans its own line only (it rescanned everything,
    about 87 ms per keystroke)."""
    import lsp.text as text_module

    document = "def f(x):\n    return x * 2\n" * 200_000
    index = LineIndex(document)
    scanned = []
    real_finditer = text_module._LINE_BREAK.finditer

    class CountingPattern:
        def finditer(self, string, pos=0, endpos=None):
            scanned.append((endpos if endpos is not None else len(string)) - pos)
            return real_finditer(string, pos, len(string) if endpos is None else endpos)

        def __getattr__(self, name):
            return getattr(text_module._LINE_BREAK, name)

    monkeypatch.setattr(text_module, "_LINE_BREAK", CountingPattern())
    typed = index.apply_change((100_000, 8), (100_000, 8), "y")
    typed = typed.apply_change((100_000, 9), (100_000, 9), "\n")
    line = int(typed.starts[100_000])
    assert typed.text == document[: line + 8] + "y\n" + document[line + 8 :]
    assert sum(scanned) < 200, scanned  # a couple of short lines, not 5 MB
    assert typed.offset_at(100_001, 0) == int(typed.starts[100_001])


def test_the_servers_document_keeps_its_index_across_keystrokes(monkeypatch):
    """The language server's copy of a 5 MB document: after the first index, keystrokes (and
    the position look-ups of a completion request) never scan the whole text again."""
    from lsprotocol import types

    import lsp.text as text_module
    from lsp.server import EditorDocument

    full_scans = []
    real = text_module.line_starts
    monkeypatch.setattr(
        text_module, "line_starts", lambda text: full_scans.append(len(text)) or real(text)
    )
    document = "def f(x):\n    return x * 2\n" * 200_000
    doc = EditorDocument("file:///big.py", source=document, version=1)
    _ = doc.line_index  # the one full scan
    for n in range(10):
        at = types.Position(line=100_000, character=8 + n)
        doc.apply_change(
            types.TextDocumentContentChangePartial(range=types.Range(start=at, end=at), text="y")
        )
        doc.line_index.offset_at(100_000, 9 + n)
    assert len(full_scans) == 1, full_scans
    assert doc.source.split("\n")[100_000] == "def f(x)" + "y" * 10 + ":"
