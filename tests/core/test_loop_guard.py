"""The loop guard: a completion that repeats itself ends before the repeat is shown."""

from core.loop_guard import LoopGuard


def guarded(chunks: list[str]) -> tuple[str, bool]:
    guard = LoopGuard()
    out = "".join(guard.feed(c) for c in chunks)
    if not guard.looping:
        out += guard.flush()
    return out, guard.looping


def tokens(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_a_line_is_shown_twice_at_most_and_the_third_copy_ends_the_completion():
    text = "        self.name = name\n" * 6
    out, looping = guarded(tokens(text))
    assert looping
    assert out == "        self.name = name\n" * 2


def test_repeats_with_other_lines_between_them_count_too():
    text = "    The path is a list.\n\n" * 5
    out, looping = guarded(tokens(text))
    assert looping and out.count("The path is a list.") == 2


def test_a_phrase_repeated_along_a_line_ends_after_three_copies():
    text = "return self.__class__(" + "self.__class__, " * 8
    out, looping = guarded(tokens(text, 4))
    assert looping
    assert out.count("self.__class__") <= 4  # the call's own name and three copies at most


def test_prose_that_keeps_circling_ends_before_its_fourth_copy():
    text = (
        '    """Return the files.\n\n    The filesystem is a directory, and the filesystem is a\n'
        "    directory, and the filesystem is a directory.  If not, the filesystem is a directory,\n"
        "    and the filesystem is a directory.\n"
    )
    out, looping = guarded(tokens(text))
    assert looping and text.startswith(out) and out.count("filesystem is a") == 4
    spans = [out[i : i + 20] for i in range(len(out) - 19)]
    assert max(spans.count(span) for span in spans) == 3  # no run of 20 characters a 4th time


def test_code_that_repeats_its_own_calls_is_not_prose():
    code = "".join(
        f"        self.assertEqual(result.value_{i}, expected_value)\n" for i in range(6)
    )
    assert guarded(tokens(code)) == (code, False)
    text = "    # The value of the option.\n    # The value of the other one.\n"
    assert guarded(tokens(text)) == (text, False)


def test_ordinary_code_and_short_or_symbol_repeats_pass_untouched():
    code = (
        "def f(a, b):\n"
        "    if a:\n"
        "        return None\n"
        "    else:\n"
        "        return None\n"
        "    # ------------------------------------------\n"
        "    x = [0, 0, 0, 0, 0, 0, 0, 0]\n"
        "    else:\n"
        "    pass\n    pass\n    x = 1\n    pass\n"
    )
    out, looping = guarded(tokens(code, 2))
    assert not looping and out == code


def test_a_keyword_or_symbol_line_may_recur_but_not_three_times_in_a_row():
    out, looping = guarded(tokens("    pass\n\n#\n#\n#\n#\n#\n", 1))
    assert looping and out == "    pass\n\n#\n#\n"


def test_a_line_that_only_starts_like_a_repeated_one_is_released_whole():
    text = "x = f(1)\n" * 2 + "x = f(12)\n" + "y = 2"
    out, looping = guarded(tokens(text, 1))
    assert not looping and out == text


def test_the_engine_ends_a_looping_completion_early(shipped_model_dir):
    from collections import Counter

    from core import OptimizedLLM

    llm = OptimizedLLM(str(shipped_model_dir))
    prompt = "__all__ = [\n" + "    'ArgumentParser',\n" * 6
    params = dict(max_length=80, temperature=0, repetition_penalty=1.0)
    llm.loop_guard = False
    unguarded = llm.complete(prompt, **params)
    llm.loop_guard = True
    guarded_result = llm.complete(prompt, **params)
    lines = lambda text: Counter(ln.strip() for ln in text.splitlines() if ln.strip())  # noqa: E731
    assert max(lines(unguarded.text).values()) >= 3  # the model alone repeats the line on and on
    assert max(lines(guarded_result.text).values()) <= 2
    assert guarded_result.finish_reason == "stop"
    assert guarded_result.generated_tokens < unguarded.generated_tokens
    assert unguarded.text.startswith(guarded_result.text)  # same greedy text, only cut short
