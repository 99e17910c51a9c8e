"""Sample construction: chunk source files and apply StarCoder-style PSM fill-in-the-middle.

A file is cut at line boundaries into chunks that fit the context, and about half of the
chunks are rearranged as ``<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>{middle}``
with the two split points drawn uniformly at character level. Doing FIM per chunk rather than
per file keeps the prefix, suffix and middle inside one training window, as at inference.
"""
from __future__ import annotations

import random

from training.tokenizer import EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Cut text into pieces of at most ~max_chars, at line boundaries where possible."""
    chunks, cur, size = [], [], 0
    for line in text.splitlines(keepends=True):
        if size + len(line) > max_chars and cur:
            chunks.append("".join(cur))
            cur, size = [], 0
        while len(line) > max_chars:  # a pathological single long line
            chunks.append(line[:max_chars])
            line = line[max_chars:]
        cur.append(line)
        size += len(line)
    if cur:
        chunks.append("".join(cur))
    return chunks


def fim_split(text: str, rng: random.Random) -> tuple[str, str, str]:
    """(prefix, middle, suffix) at two uniformly drawn character positions."""
    a, b = sorted(rng.randint(0, len(text)) for _ in range(2))
    return text[:a], text[a:b], text[b:]


def psm(prefix: str, middle: str, suffix: str) -> list[str]:
    """The PSM-ordered pieces; special tokens are separate pieces so they stay atomic."""
    return [FIM_PREFIX, prefix, FIM_SUFFIX, suffix, FIM_MIDDLE, middle, EOS]


def make_samples(texts: list[str], rng: random.Random, fim_rate: float,
                 max_chars: int) -> list[tuple[list[str], bool]]:
    """Chunk texts and turn each chunk into (pieces, is_fim); plain chunks end with EOS."""
    out = []
    for text in texts:
        for chunk in chunk_text(text, max_chars):
            if rng.random() < fim_rate:
                out.append((psm(*fim_split(chunk, rng)), True))
            else:
                out.append(([chunk, EOS], False))
    return out
