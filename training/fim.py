"""Sample construction: chunk source files and apply StarCoder-style PSM fill-in-the-middle.

A file is cut at line boundaries into chunks that fit the context, and about half of the
chunks are rearranged as ``<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>{middle}``
with both split points at character positions. Doing FIM per chunk rather than per file keeps
the prefix, suffix and middle inside one training window, as at inference.

Two details matter for an editor model:
- Plain chunks carry ``<|endoftext|>`` only where the *file* ends, and a file's plain chunks
  stay together in order. Ending every chunk with it (and shuffling chunks) taught the first
  shipped model that a line break is often the end of the text, so plain prompts ending in a
  newline stopped at once.
- Half of the FIM samples draw both split points uniformly (middles average a third of the
  chunk); the other half start the middle at a uniform character and give it a log-uniform
  length of 1 to ``SHORT_MIDDLE_MAX`` characters, because an editor mostly asks for the rest
  of a line or a few lines, and uniform splits almost never practise short middles that must
  stop where the suffix begins.
- A share of FIM samples (``LINE_MIDDLE_SHARE``, off for the validation set so its loss stays
  comparable across models) end the middle exactly at a line end, one to a few lines after it
  starts: at the line's start, after its indentation, or at a character inside it. Editors ask
  for "the rest of this line" and "this line" far more than for a middle that stops mid-word,
  and with purely random ends a model filling a blanked line starts mid-word and over-runs it
  (v3 models: 27% of single-line fills parsed).
- Half of the FIM samples (``SPM_SHARE``, training only) use StarCoder's SPM order,
  ``<fim_prefix><fim_suffix>{suffix}<fim_middle>{prefix}{middle}``: the suffix comes first, so
  as the user types at the cursor everything before the new characters is unchanged and the
  engine can reuse its cached keys and values (in PSM order the suffix follows the prefix and
  is recomputed at every keystroke).
"""

from __future__ import annotations

import itertools
import math
import random

from training.tokenizer import EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

SHORT_MIDDLE_MAX = 256  # characters: up to a few lines
SHORT_MIDDLE_SHARE = 0.5  # of the character-ended FIM samples
LINE_MIDDLE_SHARE = 0.4  # of FIM samples, in training
SPM_SHARE = 0.5  # of FIM samples, in training


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


def short_fim_split(
    text: str, rng: random.Random, max_middle: int = SHORT_MIDDLE_MAX
) -> tuple[str, str, str]:
    """(prefix, middle, suffix): the middle starts at a uniform character and its length is
    log-uniform in [1, max_middle] characters (clipped at the end of the text)."""
    a = rng.randint(0, len(text))
    length = int(math.exp(rng.uniform(0.0, math.log(max_middle))))
    b = min(len(text), a + length)
    return text[:a], text[a:b], text[b:]


def line_fim_split(text: str, rng: random.Random) -> tuple[str, str, str]:
    """(prefix, middle, suffix) with the middle ending where a line ends (before its newline).

    It starts on a random non-blank line: at the line's start (half the time), after its
    indentation (a quarter), or at a character inside the code (a quarter); it spans that
    line and, 40% of the time, one to three more non-blank lines."""
    lines = text.splitlines(keepends=True)
    starts = [0, *itertools.accumulate(len(ln) for ln in lines)]
    candidates = [i for i, ln in enumerate(lines) if ln.strip()]
    if not candidates:
        return fim_split(text, rng)
    k = rng.randrange(len(candidates))
    i = candidates[k]
    line = lines[i]
    indent = len(line) - len(line.lstrip())
    code_end = len(line.rstrip("\r\n"))
    r = rng.random()
    offset = 0 if r < 0.5 else indent if r < 0.75 else rng.randint(indent, code_end - 1)
    last = candidates[
        min(len(candidates) - 1, k + (rng.randint(1, 3) if rng.random() < 0.4 else 0))
    ]
    a = starts[i] + offset
    b = starts[last] + len(lines[last].rstrip("\r\n"))
    return text[:a], text[a:b], text[b:]


def pick_split(rng: random.Random, line_share: float):
    """The split function for one FIM sample (one draw, so line_share=0 reproduces the
    character-only draws of earlier models)."""
    r = rng.random()
    if r < line_share:
        return line_fim_split
    return short_fim_split if r < line_share + (1 - line_share) * SHORT_MIDDLE_SHARE else fim_split


def psm(prefix: str, middle: str, suffix: str) -> list[str]:
    """The PSM-ordered pieces; special tokens are separate pieces so they stay atomic."""
    return [FIM_PREFIX, prefix, FIM_SUFFIX, suffix, FIM_MIDDLE, middle, EOS]


def spm(prefix: str, middle: str, suffix: str) -> list[str]:
    """The SPM-ordered pieces (StarCoder's variant: both markers lead, the prefix runs straight
    into the middle)."""
    return [FIM_PREFIX, FIM_SUFFIX, suffix, FIM_MIDDLE, prefix, middle, EOS]


def make_samples(
    texts: list[str],
    rng: random.Random,
    fim_rate: float,
    max_chars: int,
    line_share: float = LINE_MIDDLE_SHARE,
    spm_share: float = SPM_SHARE,
) -> list[tuple[list[str], bool]]:
    """Chunk texts and turn each chunk into (pieces, is_fim), file by file, in order.

    For each file its FIM samples come first (each ends with EOS, the end of its middle), then
    its plain chunks in file order, with EOS after the last one only: the plain text of a file
    reads as one continuous document. Shuffle ``texts``, not the result."""
    out = []
    for text in texts:
        plain = []
        for chunk in chunk_text(text, max_chars):
            if rng.random() < fim_rate:
                split = pick_split(rng, line_share)
                order = spm if spm_share and rng.random() < spm_share else psm
                out.append((order(*split(chunk, rng)), True))
            else:
                plain.append(chunk)
        out += [([chunk], False) for chunk in plain[:-1]]
        if plain:
            out.append(([plain[-1], EOS], False))
    return out
