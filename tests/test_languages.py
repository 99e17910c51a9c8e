"""The languages table (languages/), which the server's layout rules (core/layout_rules.py) and the
language server's display rules (lsp/postprocess.py) both read: its entries are consistent, and a
new entry is all a language needs on both sides."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

import languages
from core.layout_rules import LayoutRules
from core.repo_context import comment_prefix
from languages.lexer import LexState, lexer_for
from lsp.postprocess import balance_brackets, final_cut, in_comment
from lsp.text import CursorContext

CURSOR = "█"


def at(doc: str, language: str) -> CursorContext:
    before, after = doc.split(CURSOR)
    return CursorContext(before, after, language)


def test_every_id_and_extension_names_one_entry():
    ids = [name for lang in languages.LANGUAGES for name in lang.ids]
    extensions = [ext for lang in languages.LANGUAGES for ext in lang.extensions]
    assert len(ids) == len(set(ids)) and all(name == name.lower() for name in ids)
    assert len(extensions) == len(set(extensions)) and all(e.startswith(".") for e in extensions)


@pytest.mark.parametrize("lang", [languages.UNKNOWN, *languages.LANGUAGES], ids=lambda x: x.name)
def test_each_entry_is_consistent(lang):
    assert all(len(pair) == 2 for pair in lang.brackets)
    assert set(lang.multiline_quotes) <= set(lang.quotes)
    for i, quote in enumerate(lang.quotes):  # a quote never hides a longer one after it
        assert not any(later.startswith(quote) for later in lang.quotes[i + 1 :]), lang.quotes
    assert not set(lang.line_comments) & set(lang.quotes)  # Vim's '"' is a comment, not a string
    if lang.layout is not None:
        assert set(lang.layout.clauses) <= lang.layout.block_keywords
        assert all(
            set(before) <= lang.layout.block_keywords for before in lang.layout.clauses.values()
        )


def test_lookup_by_id_any_case_by_path_and_the_fallback():
    assert languages.find("Python") is languages.PYTHON
    assert languages.lookup("typescriptreact").line_comments == ("//",)
    assert languages.find("cobol") is None and languages.lookup("cobol") is languages.UNKNOWN
    assert languages.lookup(None) is languages.UNKNOWN
    assert languages.for_path("src/App.TSX").name == "c" and languages.for_path("x.txt") is None


@pytest.mark.parametrize(
    "line, width8, width4",
    [("    x", 4, 4), ("\tx", 8, 4), ("  \tx", 8, 4), ("\t  x", 10, 6), ("", 0, 0), ("x", 0, 0)],
)
def test_indent_width_puts_tab_stops_every_8_columns_unless_told(line, width8, width4):
    assert languages.indent_width(line) == width8 and languages.TAB_WIDTH == 8
    assert languages.indent_width(line, 4) == width4


def test_python_and_the_tab_width_agree_where_tabs_and_spaces_mix():
    """Python's tokenizer puts tab stops every 8 columns: a tab-indented block continued with 4
    spaces does not parse, so the server's layout rules refuse that indentation (at 4 they would
    take it for the block's level)."""
    with pytest.raises(SyntaxError):
        compile("def f():\n\tx = 1\n    y = 2\n", "<test>", "exec")
    rules = LayoutRules.for_request("python", "def f():\n\tx = 1\n", "\n\treturn x\n", ("\n",))
    assert rules.allows("\ty = 2\n") and not rules.allows("    y = 2\n")


# A language no code names: '%' comments, '<' and '>' as brackets, blocks opened by "when",
# "loop", "otherwise" and "fn" lines ending in ':', indentation as syntax.
TOY = """
[unknown]
ids = ["unknown"]

[[language]]
ids = ["toy"]
extensions = [".toy"]
line_comments = ["%"]
quotes = ['"']
brackets = ["()", "<>"]
block_openers = [":"]

[language.layout]
block_start = ":"
block_keywords = ["fn", "when", "loop", "otherwise"]
definition_starts = ["fn "]

[language.layout.clauses]
otherwise = ["when"]
"""


@pytest.fixture
def toy(monkeypatch):
    _, (entry,) = languages.parse(TOY)
    monkeypatch.setitem(languages.BY_ID, "toy", entry)
    monkeypatch.setitem(languages.BY_EXTENSION, ".toy", entry)
    return entry


def test_a_new_entry_gets_the_servers_layout_rules(toy):
    prefix = "fn f:\n    when x:\n        go()\n"
    rules = LayoutRules.for_request("Toy", prefix, "\n    stop()\n", ("\n",))
    assert rules is not None and rules.language is toy
    assert rules.allows("    go()\n") and rules.allows("        go()\n")
    assert not rules.allows("  go()\n")  # an indentation no block has
    assert not rules.allows("    loop y:\n")  # a block opener, and the next line is not deeper
    assert rules.allows("    f<a>\n")
    assert not rules.allows("    f<a\n")  # its bracket left open at the line's end
    assert not rules.allows("    f>a\n")  # a bracket closed that was never opened
    assert rules.allows("    % a note (\n")  # '%' comments: the bracket inside does not count
    assert not rules.allows("    # a note (\n")  # '#' is no comment in this language
    deeper = "\n        stop()\n"
    assert LayoutRules.for_request("toy", prefix, deeper, ("\n",)).allows("    otherwise:\n")
    after_loop = "fn f:\n    loop x:\n        go()\n"
    assert not LayoutRules.for_request("toy", after_loop, deeper, ("\n",)).allows(
        "    otherwise:\n"
    )  # "otherwise" continues a "when" only
    # without the entry, "toy" is a language the server has no layout rules for
    assert LayoutRules.for_request("toy2", prefix, "\n    stop()\n", ("\n",)) is None


def test_a_new_entry_gets_the_language_servers_display_rules(toy):
    assert in_comment(at("x = 1 % note█", "toy"))
    assert not in_comment(at("x = 1 # note█", "toy"))
    assert not in_comment(at('x = "% not a comment█', "toy"))
    text = "\n    go()\nstop()\n"
    assert (
        text[: final_cut(text, at("when x:█", "toy"), single=False, max_lines=12)] == "\n    go()"
    )
    # the editor auto-closed '>' after the cursor: the suggestion stops before its own copy
    assert balance_brackets("a, b> + 1", at("f<█>", "toy")) == "a, b"
    assert balance_brackets("a, b> + 1", at("f<█>", "python")) == "a, b> + 1"
    # the repository context's file headers are written in its comments
    assert comment_prefix("toy") == "%"
    assert comment_prefix(None, ()) == "#"


@pytest.mark.parametrize("name", ["python", "c", "lua", "unknown"])
def test_the_quick_string_and_comment_scan_agrees_with_the_full_one(name):
    """The language server's ``scan_quoted`` (strings and comments only) ends where the full scan
    of the server's layout rules does, at every cut of real code."""
    lang = languages.UNKNOWN if name == "unknown" else languages.find(name)
    lexer = lexer_for(lang)
    source = Path(sysconfig.get_paths()["stdlib"], "argparse.py").read_text(encoding="utf-8")[
        :12000
    ]
    source += '\n/* a "block\n comment */ x = "s\\"t" // c\n--[[ lua\n]] y = 1 -- z\n"""doc\n'
    for cut in [*range(0, len(source), 31), *range(len(source) - 90, len(source))]:
        full, quick = lexer.scan(source[:cut], LexState()), lexer.scan_quoted(source[:cut])
        assert (quick.quote, quick.comment) == (full.quote, full.comment), (name, cut)
