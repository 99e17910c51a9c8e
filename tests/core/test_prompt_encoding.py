"""Tokenizing a keystroke's prompt line by line must give exactly the whole text's tokens."""

import random
import sysconfig
from pathlib import Path

import pytest
from tokenizers import AddedToken
from transformers import AutoTokenizer

from core.prompt_encoding import PromptEncoder, splits_at_line_ends

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def edited_texts(seed: int, count: int):
    """Slices of real files, some with trailing spaces, blank lines or a half-typed line added."""
    rng = random.Random(seed)
    sources = [
        (STDLIB / name).read_text() for name in ("tokenize.py", "argparse.py", "json/decoder.py")
    ]
    for _ in range(count):
        src = rng.choice(sources)
        start = rng.randrange(len(src))
        text = src[start : start + rng.randrange(1, 4000)]
        roll = rng.random()
        if roll < 0.2:
            text = text.replace("\n", " \n", 5)
        elif roll < 0.4:
            text += "\n\n    se"
        elif roll < 0.5:
            text = "é—\t\n" + text + "\x1c\n"
        yield text


@pytest.mark.parametrize("model_dir", ["shipped", "tiny"])
def test_line_by_line_gives_the_whole_texts_tokens(model_dir, shipped_model_dir, tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(
        shipped_model_dir if model_dir == "shipped" else tiny_model_dir
    )
    encoder = PromptEncoder(tok)
    assert encoder.incremental  # both are byte-level BPE with GPT-2's pre-tokenizer
    for text in edited_texts(seed=1, count=300):
        assert encoder.encode(text) == tok.encode(text, add_special_tokens=False), text[:80]


def test_typing_a_file_key_by_key_matches_and_reuses_lines(shipped_model_dir):
    tok = AutoTokenizer.from_pretrained(shipped_model_dir)
    encoder = PromptEncoder(tok)
    source = (STDLIB / "tokenize.py").read_text()[9000:10500]
    for end in range(1, len(source), 7):
        assert encoder.encode(source[:end]) == tok.encode(source[:end], add_special_tokens=False)
    # Every finished line was tokenized once and is remembered, not the growing prompt.
    assert len(encoder._pieces) < 2 * source.count("\n") + 230


def test_a_tokenizer_that_could_merge_across_lines_is_tokenized_whole(shipped_model_dir):
    tok = AutoTokenizer.from_pretrained(shipped_model_dir)
    tok.add_tokens(
        [AddedToken(")\n    return", normalized=False)]
    )  # an added token across a newline
    assert not splits_at_line_ends(tok)
    encoder = PromptEncoder(tok)
    assert not encoder.incremental
    text = "def f(x):\n    g(x)\n    return x\n"
    assert encoder.encode(text) == tok.encode(text, add_special_tokens=False)
    assert tok.convert_tokens_to_ids(")\n    return") in encoder.encode(text)


def test_remembered_pieces_stay_bounded_by_characters(shipped_model_dir, monkeypatch):
    import core.prompt_encoding as prompt_encoding

    monkeypatch.setattr(prompt_encoding, "MAX_PIECE_CHARS", 5000)
    tok = AutoTokenizer.from_pretrained(shipped_model_dir)
    encoder = PromptEncoder(tok)
    for i in range(40):  # distinct long single lines: each is one piece of 1000+ characters
        text = f"x{i} = '" + "abc " * 250 + "'\nprint(x)\n"
        assert encoder.encode(text) == tok.encode(text, add_special_tokens=False)
    assert encoder._chars <= 5000 + 1100 and encoder._chars == sum(map(len, encoder._pieces))
