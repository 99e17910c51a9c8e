"""Tokenizing a prompt that changes by a keystroke without tokenizing all of it again.

An editor sends 3-4 kB of context with every keystroke, and tokenizing it costs about a
millisecond per 3 kB here: more than the model spends on the one or two new tokens. For
byte-level BPE tokenizers with GPT-2's pre-tokenizer (the shipped model's, GPT-NeoX's, CodeGen's),
a newline that follows a printable ASCII character always starts a new pre-token, and BPE never
merges across pre-tokens, so the text can be cut there and its pieces tokenized apart. Pieces are
remembered, so a keystroke tokenizes only the line it changed. Any other tokenizer is called on
the whole text, as before.

SentencePiece tokenizers (Llama's, Code Llama's, Mistral's) put a "dummy prefix" space before the
start of every text they encode: ``encode("return")`` gives ``▁return``, as if the text were
" return". Text that continues a prompt after a special token (the suffix of a FIM prompt) must
not get that space: ``encode_continuation`` drops it the way Code Llama's and Mistral's reference
code do (encode ``"☺" + text`` and cut the sentinel's pieces off).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict

# A newline right after a printable, non-space ASCII character: the pre-token before it
# (letters, digits or punctuation) cannot take in whitespace, and matching restarts there.
SAFE_CUT = re.compile(r"(?<=[!-~])\n")
MAX_PIECES = 8192
MAX_PIECE_CHARS = 2_000_000  # what the remembered pieces may hold in all (a few MB)
DUMMY_PREFIX = "\u2581"  # SentencePiece's "▁", the space it writes before a text's first word
SENTINEL = "\u263a"  # "☺": the reference recipes' stand-in for "earlier text", cut off again


def adds_dummy_prefix(tokenizer) -> bool:
    """True when the tokenizer writes a space before the start of any text (SentencePiece's
    ``add_dummy_prefix``, a Metaspace pre-tokenizer or a ``Prepend("▁")`` normalizer)."""
    ids = tokenizer.encode("a", add_special_tokens=False)
    tokens = tokenizer.convert_ids_to_tokens(ids[:1])
    return bool(tokens) and isinstance(tokens[0], str) and tokens[0].startswith(DUMMY_PREFIX)


def splits_at_line_ends(tokenizer) -> bool:
    """True when cutting at ``SAFE_CUT`` gives exactly the whole text's tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    spec = json.loads(backend.to_str())
    pre = spec.get("pre_tokenizer") or {}
    if spec.get("normalizer") is not None or (spec.get("model") or {}).get("type") != "BPE":
        return False
    if (
        pre.get("type") != "ByteLevel"
        or not pre.get("use_regex", True)
        or pre.get("add_prefix_space")
    ):
        return False
    # Added tokens are matched before pre-tokenizing: one that holds a newline, or strips the
    # whitespace around it, could reach across a cut.
    return not any(
        t.get("lstrip") or t.get("rstrip") or "\n" in t.get("content", "")
        for t in spec.get("added_tokens", [])
    )


class PromptEncoder:
    """``encode(text)``: the tokenizer's ids for ``text`` (no special tokens added), memoized by line."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self._backend = tokenizer.backend_tokenizer if splits_at_line_ends(tokenizer) else None
        self._dummy_prefix = adds_dummy_prefix(tokenizer)
        self._sentinel_ids = (
            tokenizer.encode(SENTINEL, add_special_tokens=False) if self._dummy_prefix else []
        )
        self._pieces: OrderedDict[str, list[int]] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    @property
    def incremental(self) -> bool:
        return self._backend is not None

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        if self._backend is None:
            return self._tokenizer.encode(text, add_special_tokens=False)
        cuts = [0, *(m.start() for m in SAFE_CUT.finditer(text)), len(text)]
        pieces = [text[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]
        with self._lock:
            return self._join(pieces)

    def encode_continuation(self, text: str) -> list[int]:
        """The ids of ``text`` where it follows earlier text: without a dummy-prefix space.

        The same as ``encode`` for tokenizers that add no such space (byte-level BPE, Gemma's).
        """
        if not text or not self._dummy_prefix:
            return self.encode(text)
        lead = self._sentinel_ids
        ids = self._tokenizer.encode(SENTINEL + text, add_special_tokens=False)
        if ids[: len(lead)] == lead:
            return ids[len(lead) :]
        # The sentinel merged with the text (no known vocabulary does this): drop a lone "▁".
        ids = self.encode(text)
        first = self._tokenizer.convert_ids_to_tokens(ids[:1])
        return ids[1:] if first == [DUMMY_PREFIX] and not text.startswith(" ") else ids

    def _join(self, pieces: list[str]) -> list[int]:
        missing = list(dict.fromkeys(p for p in pieces if p not in self._pieces))
        if missing:
            for piece, encoding in zip(
                missing, self._backend.encode_batch(missing, add_special_tokens=False)
            ):
                self._pieces[piece] = encoding.ids
                self._chars += len(piece)
        ids: list[int] = []
        for piece in pieces:
            ids.extend(self._pieces[piece])
            self._pieces.move_to_end(piece)
        # Forget the least recently used pieces, but never one this text needs right now.
        while (len(self._pieces) > MAX_PIECES or self._chars > MAX_PIECE_CHARS) and len(
            self._pieces
        ) > len(pieces):
            old, _ = self._pieces.popitem(last=False)
            self._chars -= len(old)
        return ids
