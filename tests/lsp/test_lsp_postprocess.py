"""Table-driven tests of the post-processing rules (lsp.postprocess), one table per rule.

The cursor is written as █ in each document.
"""

import pytest

from lsp.postprocess import (
    balance_brackets,
    cut_garbage,
    drop_lines_below,
    final_cut,
    fix_indentation,
    in_comment,
    is_mid_line,
    is_repetitive,
    postprocess,
    single_line,
    trim_line_suffix,
)
from lsp.text import CursorContext

CURSOR = "█"


def at(doc: str, language: str = "python") -> CursorContext:
    before, after = doc.split(CURSOR)
    return CursorContext(before, after, language)


@pytest.mark.parametrize(
    "doc, language, expected",
    [
        ("x = 1  # note█", "python", True),
        ("x = '#'█", "python", False),  # inside a string, not a comment
        ('s = "a\\"#"█', "python", False),  # escaped quote
        ("int x; // note█", "c", True),
        ("int x; /* a█", "c", True),
        ("int x; /* a */ y█", "c", False),
        ("x = 1 # no█", "javascript", False),  # '#' is no comment in JS
        ('def f():\n    """Doc█', "python", True),  # inside a docstring
        ('def f():\n    """Doc."""\n    █', "python", False),
        ("-- sql█", "sql", True),
        ("plain█", "unknownlang", False),
        ("x # y█", "unknownlang", True),
        # a block comment opened on a line above (the line alone shows no marker)
        ("/**\n * Returns█", "c", True),
        ("/* a */\nint x = █", "c", False),
        ("--[[ a note\nmore█", "lua", True),
        ("--[[ a ]] x = █", "lua", False),
        ('let x = 1 "█', "vim", True),
    ],
)
def test_in_comment(doc, language, expected):
    assert in_comment(at(doc, language)) is expected


@pytest.mark.parametrize(
    "doc, expected",
    [
        ("foo(█)", False),  # only closers follow
        ("foo(█):", False),
        ("x = █", False),
        ("x = █ + y", True),
        ('print("█")', True),  # a quote is real text
        ("█  \t", False),
        ("a█b", True),
    ],
)
def test_is_mid_line(doc, expected):
    assert is_mid_line(at(doc)) is expected


@pytest.mark.parametrize(
    "doc, policy, expected",
    [
        ("x = █ + y", "auto", True),
        ("def f():█", "auto", False),
        ("# comment █", "auto", True),
        ("def f():█", "never", True),
        ("x = █ + y", "always", False),
    ],
)
def test_single_line(doc, policy, expected):
    assert single_line(at(doc), policy) is expected


# final_cut: (document, model text so far, single, eof, expected kept text or None = not final)
FINAL = [
    ("x = █", "1", True, False, None),
    ("x = █", "1\ny = 2", True, False, "1"),
    ("x = █", "\n", True, False, ""),
    ("x = █", "1", True, True, "1"),
    # a block opened on the cursor line ends at the first line back at its indentation
    ("def f(x):█", "\n    return x\n\ndef g():\n", False, False, "\n    return x\n"),
    ("def f(x):█", "\n    return x\n\nde", False, False, "\n    return x\n"),
    ("def f(x):█", "\n    return x\n", False, False, None),
    # inside a body: stop at the dedent
    ("def f(x):\n    █", "y = x\n    return y\nprint(1)\n", False, False, "y = x\n    return y"),
    # brace block: the closing line at the block's indentation belongs to it
    ("if (x) {█", "\n  a();\n}\nb();\n", False, False, "\n  a();\n}"),
    # a line equal to the next line of the document ends the suggestion
    ("def f():\n    █\n    return 1\n", "x = 1\n    return 1\n", False, False, "x = 1"),
    # the suggested cursor line repeats the line below
    ("def f():\n    █\n    return 1\n", "return 1\n", False, False, ""),
    # a looping model: keep the first of three identical lines
    ("█", "a = 1\nb()\nb()\nb()\n", False, False, "a = 1\nb()"),
    # outside a new block: one paragraph
    ("x = compute()█", "\ny = x + 1\nz = y\n\nprint(z)\n", False, False, "\ny = x + 1\nz = y"),
    ("x = compute()█", "\ny = x + 1\n\n", False, False, "\ny = x + 1"),
    ("x = compute()█", "\ny = x + 1\n", False, False, None),  # a blank line may still come
    ("█", "\n\ndef g():\n    pass\n", False, False, None),  # blank lines before any text
    # a new block may contain blank lines
    ("def f():█", "\n    a = 1\n\n    return a\n", False, False, None),
    # max_lines
    ("█", "a\nb\nc\nd\ne\n", False, False, "a\nb\nc"),
    # a partial last line is judged by its indentation once it has text
    ("def f(x):\n    █", "y = x\nz", False, False, "y = x"),
    ("def f(x):\n    █", "y = x\n   ", False, False, None),
]


def test_the_paragraph_rule_can_be_switched_off():
    ctx = at("x = compute()█")
    text = "\ny = x + 1\n\nprint(y)\n"
    assert final_cut(text, ctx, single=False, max_lines=12) == len("\ny = x + 1")
    assert final_cut(text, ctx, single=False, max_lines=12, paragraph=False) is None


@pytest.mark.parametrize("doc, text, single, eof, expected", FINAL)
def test_final_cut(doc, text, single, eof, expected):
    cut = final_cut(text, at(doc), single=single, max_lines=3 if "e\n" in text else 12, eof=eof)
    assert (None if cut is None else text[:cut]) == expected


def test_a_model_writing_spaces_in_a_tab_indented_file_is_cut_as_displayed():
    """Tabs count 8 columns, the model's 4 spaces one tab: its lines are measured after that
    rewrite, so its body (8 spaces, two tabs) stays and a line back at the ``if`` ends it."""
    ctx = at("def f():\n\tx = 1\n\t█")
    text = "if x:\n        y()\n    z()\nprint(1)\n"
    assert postprocess(text, ctx, single=False) == "if x:\n\t\ty()"


@pytest.mark.parametrize(
    "language, doc, text, expected",
    [
        # keyword-closed blocks: the closing word at the block's indentation belongs to it
        ("lua", "if x then█", "\n  y()\nend\nprint(1)\n", "\n  y()\nend"),
        ("lua", "if x then█", "\n  y()\nendpoint = 1\n", "\n  y()"),  # "endpoint" is no closer
        ("ruby", "5.times do█", "\n  puts 1\nend\nputs 2\n", "\n  puts 1\nend"),
        ("shellscript", "if [ -f x ]; then█", "\n  cat x\nfi\necho\n", "\n  cat x\nfi"),
        # Python has no closing words: "end" back at the block's indentation leaves the block
        ("python", "if x:█", "\n    y()\nend = 1\n", "\n    y()"),
    ],
)
def test_final_cut_ends_a_block_at_the_languages_closing_word(language, doc, text, expected):
    cut = final_cut(text, at(doc, language), single=False, max_lines=12)
    assert (None if cut is None else text[:cut]) == expected


@pytest.mark.parametrize(
    "doc, text, expected",
    [
        # the cursor already stands at the body's indentation: no extra indentation
        ("def f():\n    █", "    return 1", "return 1"),
        ("def f():\n    █", "return 1", "return 1"),
        # after a block opener one more level is right
        ("if x:\n█", "    y = 1", "    y = 1"),
        ("    if x:\n    █", "    y = 1", "    y = 1"),
        ("    if x:\n    █", "        y = 1", "    y = 1"),
        # a tab-indented document gets tabs
        ("def f():\n\tx = 1\n\t█", "if x:\n        y()", "if x:\n\t\ty()"),
        # a space-indented document gets spaces
        ("def f():\n    x = 1\n    █", "if x:\n\t\ty()", "if x:\n        y()"),
        # mid-line text is left alone
        ("x = █", "  1", "  1"),
    ],
)
def test_fix_indentation(doc, text, expected):
    assert fix_indentation(text, at(doc)) == expected


@pytest.mark.parametrize(
    "doc, text, expected",
    [
        ("def f():█\n    return 1\n", "\n    x = 1\n    return 1", "\n    x = 1"),
        ("def f():█\n\n    return 1\n", "\n    return 1\n", ""),
        ("def f():\n    █\n    a()\n    b()\n", "x()\n    a()\n    b()", "x()"),
        ("def f():\n    █\n    a()\n", "a()", ""),  # the whole line is a copy
        ("def f():\n    █\n    a()\n", "x()\n    y()", "x()\n    y()"),
    ],
)
def test_drop_lines_below(doc, text, expected):
    assert drop_lines_below(text, at(doc)) == expected


@pytest.mark.parametrize(
    "doc, text, expected",
    [
        ("x = █ + y", "a + y", "a"),
        ("foo(█, b=2)", "a, b=2)", "a"),
        ("print(█name)", "self.name", "self."),
        ("f(█)", "a)", "a)"),  # closers only: left to balance_brackets
        ("x = █ + y", "a", "a"),
        ("x = █ + 1", "y + 10", "y + 10"),  # "+ 1" is no token-boundary prefix of "+ 10"'s end
    ],
)
def test_trim_line_suffix(doc, text, expected):
    assert trim_line_suffix(text, at(doc)) == expected


@pytest.mark.parametrize(
    "doc, text, expected",
    [
        ("print(█)", "x)", "x"),
        ("print(█)", "foo(a))", "foo(a)"),
        ("print(█)", "foo(a)", "foo(a)"),  # balanced: kept
        ("print(█)", "')'", "')'"),  # in a string: not a bracket
        ("f([█])", "1, 2])", "1, 2"),
        ("foo(a, █", "b)", "b)"),  # nothing follows: the suggestion closes it
        ("x = [█]", "\n    1,\n]", "\n    1,\n"),
        ("print(█)", "x]", "x]"),  # a different bracket: not the one that follows
    ],
)
def test_balance_brackets(doc, text, expected):
    assert balance_brackets(text, at(doc)) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("x = 1", "x = 1"),
        ("x = 'é😀'\tok\n", "x = 'é😀'\tok\n"),  # non-ASCII, tabs and newlines are fine
        ("abc\ufffd\ufffddef", "abc"),  # a broken UTF-8 sequence
        ("ab\x1fcd", "ab"),
        ("ab\x7f", "ab"),
    ],
)
def test_cut_garbage(text, expected):
    assert cut_garbage(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("))))))", True),
        ("foo foo foo ", True),
        ("x = 1\nx = 1\nx = 1", True),
        ("return x", False),
        ("====", False),  # too short to judge
        ("a = 1\nb = 2\nc = 3", False),
    ],
)
def test_is_repetitive(text, expected):
    assert is_repetitive(text) is expected


@pytest.mark.parametrize(
    "doc, text, single, expected",
    [
        ("x = █", "   \n  ", True, ""),  # whitespace only
        ("x = █", "", True, ""),
        ("x = █", "))))))))", True, ""),  # repetitive
        ("print(█)", "'hi')\nmore", True, "'hi'"),
        ("def f(x):█", "\n    return x\n\n\ndef g():\n", False, "\n    return x"),
        ("def f():\n    █", "    return 1  \n", False, "return 1"),
        ("def f():\n    █\n    return 1\n", "return 1", False, ""),
        ("x = 1█", "\r\ny = 2\r\n", False, "\ny = 2"),
        # realistic cases
        (
            "def fib(n):█",
            "\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n\nprint(fib(10))",
            False,
            "\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)",
        ),
        ("foo(█)", "a, b)\nbar()", False, "a, b"),
        ("x = [█]", "1, 2, 3]", False, "1, 2, 3"),
        ("function f() {█}", "\n  return 1;\n}\n", False, "\n  return 1;\n"),
        ("  call(█)", "\n    a,\n    b)", False, "\n    a,\n    b\n  "),
        ("if x:█", "\n    return 1\nelse:\n    return 2", False, "\n    return 1"),
        ("for i in range(10):\n    █\n", "print(i)\nprint('done')", False, "print(i)"),
        ("name = '█'", "world'", True, "world"),
    ],
)
def test_postprocess_pipeline(doc, text, single, expected):
    assert postprocess(text, at(doc), single=single) == expected
