"""Tests of the stream reader: it says "final" as soon as the suggestion cannot change, and
what is kept of a suggestion that was cut short."""

import pytest

from lsp.completer import SuggestionReader, usable_text
from lsp.text import CursorContext


def reader_for(
    before: str, after: str, single: bool, chunks: list[str]
) -> tuple[SuggestionReader, int]:
    """Feed ``chunks`` until the reader says final; return it and how many chunks it took."""
    reader = SuggestionReader(CursorContext(before, after, "python"), single, max_lines=12)
    for count, chunk in enumerate(chunks, 1):
        if reader.feed(chunk):
            return reader, count
    return reader, len(chunks)


def test_single_line_is_final_at_the_first_line_break():
    reader, used = reader_for("x = ", " + 1\n", True, ["fo", "o(a)", "\nbar", "(b)"])
    assert reader.final and used == 3 and reader.text == "foo(a)"  # the 4th chunk is never read


def test_block_is_final_at_the_dedent():
    chunks = ["\n    ret", "urn x\n", "\nde", "f g():\n", "    pass\n"]
    reader, used = reader_for("def f(x):", "\n", False, chunks)
    assert reader.final and used == 3 and reader.text == "\n    return x\n"  # "de" is enough


def test_not_final_while_the_block_goes_on():
    reader, used = reader_for("def f(x):", "\n", False, ["\n    a = 1\n", "    b = 2\n"])
    assert not reader.final and reader.text == "\n    a = 1\n    b = 2\n"


@pytest.mark.parametrize(
    "text, final, finish, single, timed_out, expected",
    [
        (
            "\n    a = 1\n    b =",
            False,
            "stop",
            False,
            False,
            "\n    a = 1\n    b =",
        ),  # model ended
        ("\n    a = 1\n    b =", False, "length", False, False, "\n    a = 1\n"),  # out of tokens
        ("\n    a = 1\n    b =", False, None, False, True, "\n    a = 1\n"),  # time cap
        ("foo(a", False, None, True, True, ""),  # a single line cut by the time cap: nothing
        ("foo(a", False, "length", True, False, "foo(a"),  # cut by max_length: the user's limit
        ("foo(a)", True, None, True, True, "foo(a)"),  # already final when the cap hit
        ("foo(a", False, "length", False, False, "foo(a"),  # multi-line mode, still line one
        ("foo(a", False, None, False, True, ""),
    ],
)
def test_usable_text(text, final, finish, single, timed_out, expected):
    reader = SuggestionReader(CursorContext("", ""), single, max_lines=12)
    reader.text, reader.final, reader.finish_reason = text, final, finish
    assert usable_text(reader, single=single, timed_out=timed_out) == expected
