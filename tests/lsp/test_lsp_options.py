"""Tests of lsp.options: defaults, camelCase and snake_case, wrappers, bad values."""

from lsp.options import DEFAULT_API_URL, Multiline, Options, merge


def test_defaults_need_nothing():
    o = Options()
    assert o.api_url == DEFAULT_API_URL == "http://127.0.0.1:5005"
    assert o.multiline is Multiline.AUTO and o.completion_enabled is None
    assert o.language_enabled("python") and o.language_enabled(None)


def test_camel_case_snake_case_and_section_wrapper():
    o, problems = merge(Options(), {"deepshiva": {"apiUrl": "http://h:1", "max_tokens": 9}})
    assert (o.api_url, o.max_tokens, problems) == ("http://h:1", 9, [])
    o, _ = merge(o, {"contextChars": {"after": 5}})
    assert (o.context_chars.before, o.context_chars.after) == (3000, 5)  # merged, not replaced


def test_a_bad_value_is_reported_and_the_rest_applied():
    o, problems = merge(Options(), {"maxTokens": -3, "temperature": 0.5, "multiline": "sometimes"})
    assert o.temperature == 0.5 and o.max_tokens == 64 and o.multiline is Multiline.AUTO
    assert any("maxTokens" in p for p in problems) and any("multiline" in p for p in problems)


def test_null_means_unset_except_for_the_key():
    base, _ = merge(Options(), {"apiKey": "k", "maxTokens": 7})
    o, problems = merge(base, {"maxTokens": None, "apiKey": None, "unknownThing": 1})
    assert (o.max_tokens, o.api_key, problems) == (7, None, [])


def test_language_filters():
    o, _ = merge(Options(), {"enabledLanguages": ["Python", "rust"], "disabledLanguages": ["rust"]})
    assert o.language_enabled("python") and not o.language_enabled("rust")
    assert not o.language_enabled("go")
