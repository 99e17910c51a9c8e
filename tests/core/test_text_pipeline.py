"""The text pipeline both engines stream through: what a user sees of the generated pieces."""

from core.text_pipeline import TextPipeline


def shown(pipeline: TextPipeline, pieces: list[str]) -> list[str]:
    """What a stream shows: a chunk per piece that releases text, then the tail at the end."""
    out = []
    for piece in pieces:
        text = pipeline.feed(piece)
        if text:
            out.append(text)
        if pipeline.stopped:
            break
    tail = pipeline.flush()
    return out + ([tail] if tail else [])


def test_a_stop_split_across_pieces_is_held_back_and_never_shown():
    pipeline = TextPipeline.for_completion("", ["\n\n"], loop_guard=True)
    assert pipeline.feed("return x\n") == "return x"  # the newline might begin the stop
    assert pipeline.feed("\nprint(x)") == ""
    assert pipeline.stopped
    assert pipeline.flush() == ""


def test_a_held_back_start_that_never_became_a_stop_is_shown_after_all():
    assert shown(TextPipeline.for_completion("", ["<|end|>"], True), ["x = 1 <|", "en"]) == [
        "x = 1 ",
        "<|en",
    ]
    assert shown(TextPipeline.for_completion("", ["<|end|>"], True), ["x <|", "e", "nd", "|>"]) == [
        "x "
    ]


def test_the_text_a_healed_token_regrows_is_not_shown_and_cannot_meet_a_stop():
    # The prompt ended in "\n" (backed off for healing): the completion starts by regrowing it,
    # and a one-line request's "\n" stop must match only the newline after the new line.
    pipeline = TextPipeline.for_completion("\n", ["\n"], loop_guard=True)
    assert shown(pipeline, ["\n    ", "return", " x", "\n", "y"]) == ["    ", "return", " x"]


def test_healed_text_regrown_over_several_pieces_is_dropped_once():
    pipeline = TextPipeline.for_completion("ret", [], loop_guard=False)
    assert shown(pipeline, ["r", "et", "urn x", "ret"]) == ["urn x", "ret"]


def test_a_completion_that_does_not_regrow_the_healed_text_shows_whole():
    pipeline = TextPipeline.for_completion("ret", [], loop_guard=False)
    assert shown(pipeline, ["pass", "ret"]) == ["pass", "ret"]


def test_the_watcher_reads_new_text_before_any_is_held_back():
    seen = []
    pipeline = TextPipeline.for_completion("    ", ["\n"], True, watch=seen.append)
    assert shown(pipeline, ["    re", "turn x", "\n", "more"]) == ["re", "turn x"]
    assert seen == ["re", "turn x", "\n"]  # the newline reached the rules, not the user


def test_the_loop_guard_ends_a_completion_and_its_held_line_is_dropped():
    line = "        self.name = name\n"
    pipeline = TextPipeline.for_completion("", [], loop_guard=True)
    out = shown(pipeline, [line, line, line[:10], line[10:], line])
    assert "".join(out) == line * 2
    assert pipeline.stopped


def test_the_tail_the_stop_matcher_releases_at_the_end_still_passes_the_loop_guard():
    line = "        self.name = name\n"
    # The third copy's newline is held as a possible start of "\n\n" until the end; released
    # then, it completes the third copy, which the loop guard drops.
    pipeline = TextPipeline.for_completion("", ["\n\n"], loop_guard=True)
    assert "".join(shown(pipeline, [line, line, line])) == line * 2
    assert pipeline.stopped
    # A third copy left unfinished never became a loop: the guard shows it at the end.
    pipeline = TextPipeline.for_completion("", ["\n\n"], loop_guard=True)
    assert "".join(shown(pipeline, [line, line, line[:-1]])) == line * 2 + line[:-1]
    assert not pipeline.stopped


def test_without_stops_or_guard_every_piece_shows_at_once():
    pipeline = TextPipeline.for_completion("", [], loop_guard=False)
    pieces = ["a\n"] * 5 + ["b"]
    assert shown(pipeline, pieces) == pieces
