"""Tests of lsp.cache: exact hits, typed-ahead reuse, and the cases that must miss."""

import pytest

from lsp.cache import SuggestionCache


@pytest.fixture
def cache():
    c = SuggestionCache(size=3)
    c.put("def add(a, b):\n    ", "\n", "return a + b")
    return c


@pytest.mark.parametrize(
    "prefix, suffix, expected",
    [
        ("def add(a, b):\n    ", "\n", "return a + b"),  # exact
        ("def add(a, b):\n    r", "\n", "eturn a + b"),  # typed one character
        ("def add(a, b):\n    return a", "\n", " + b"),  # typed a few words
        ("def add(a, b):\n    return a + b", "\n", None),  # typed it all: nothing left
        ("def add(a, b):\n    x", "\n", None),  # typed something else
        ("def add(a, b):\n    r", "\n\nmore", None),  # the text after the cursor changed
        ("def sub(a, b):\n    r", "\n", None),  # a different line above
    ],
)
def test_lookup(cache, prefix, suffix, expected):
    assert cache.get(prefix, suffix) == expected


def test_typed_ahead_with_a_sliding_window():
    c = SuggestionCache()
    old = "a" * 300 + "\nline\n    "
    c.put(old, "", "value = compute()")
    slid = ("a" * 300 + "\nline\n    val")[5:]  # the window start moved as the user typed
    assert c.get(slid, "") == "ue = compute()"


def test_empty_suggestions_are_remembered_exactly():
    c = SuggestionCache()
    c.put("x = ", "", "")
    assert c.get("x = ", "") == ""


def test_lru_eviction_and_clear(cache):
    cache.put("p1", "", "one")
    cache.put("p2", "", "two")
    cache.get("p1", "")  # p1 is now the most recent
    cache.put("p3", "", "three")  # evicts the oldest: the add() entry
    assert cache.get("def add(a, b):\n    ", "\n") is None
    assert cache.get("p1", "") == "one"
    cache.clear()
    assert len(cache) == 0 and cache.get("p1", "") is None


def test_size_zero_disables_the_cache():
    c = SuggestionCache(size=0)
    c.put("a", "", "b")
    assert c.get("a", "") is None
