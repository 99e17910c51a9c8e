"""Token healing: never ask the model to continue from a token boundary it did not choose.

A prompt that ends mid-word, or in a newline or indentation, ends on a token the model would
rarely have seen followed by what the user wants next. Backing off the prompt's last token and
constraining the first generated tokens to spell out the removed text lets the model pick the
natural tokenization itself (``"    ret"`` can become ``"    return"``).
"""

from __future__ import annotations

import torch

REPLACEMENT_CHAR = "\ufffd"


def special_token_ids(tokenizer) -> set[int]:
    """The tokenizer's special tokens (never regrown, never read as text)."""
    return set(tokenizer.all_special_ids) | {
        i
        for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items()
        if getattr(tok, "special", False)
    }


class TokenHealer:
    """Per-tokenizer tables for healing; built lazily since most of it is one pass over the vocab."""

    def __init__(self, tokenizer, special_ids: set[int]):
        self._tokenizer = tokenizer
        self._special_ids = special_ids
        self._texts: list[str | None] | None = None
        self._allowed_cache: dict[str, torch.Tensor | None] = {}

    def token_texts(self) -> list[str | None]:
        """Each token's text as it reads after other text (None for specials and partial bytes)."""
        if self._texts is None:
            anchor = self._tokenizer.encode("a", add_special_tokens=False)
            anchor_text = self._tokenizer.decode(anchor)
            size = len(self._tokenizer)
            decoded = self._tokenizer.batch_decode([anchor + [i] for i in range(size)])
            texts: list[str | None] = []
            for i, text in enumerate(decoded):
                piece = text[len(anchor_text) :] if text.startswith(anchor_text) else None
                if i in self._special_ids or not piece or REPLACEMENT_CHAR in piece:
                    piece = None
                texts.append(piece)
            self._texts = texts
        return self._texts

    def back_off(self, ids: list[int]) -> tuple[list[int], str]:
        """Drop the prompt's last token; return the shorter prompt and the text to regrow."""
        if len(ids) < 2 or ids[-1] in self._special_ids:
            return ids, ""
        text = self.token_texts()[ids[-1]] if ids[-1] < len(self.token_texts()) else None
        if not text:
            return ids, ""
        return ids[:-1], text

    def allowed(self, remaining: str) -> torch.Tensor | None:
        """Ids of tokens that agree with ``remaining``: they start with it, or it starts with them."""
        if remaining not in self._allowed_cache:
            ids = [
                i
                for i, text in enumerate(self.token_texts())
                if text and (text.startswith(remaining) or remaining.startswith(text))
            ]
            self._allowed_cache[remaining] = torch.tensor(ids, dtype=torch.long) if ids else None
            if len(self._allowed_cache) > 4096:
                self._allowed_cache.pop(next(iter(self._allowed_cache)))
        return self._allowed_cache[remaining]

    def advance(self, remaining: str, token_id: int) -> str:
        """What is left to regrow after ``token_id`` was generated."""
        text = self.token_texts()[token_id] or ""
        return "" if text.startswith(remaining) else remaining[len(text) :]


def strip_regrown(text: str, pending: str) -> tuple[str, str]:
    """Drop from streamed ``text`` the prompt text a healed token regrows (``pending``, what is
    still to drop); returns the text to show and what remains pending. A completion that does not
    start with the regrown text shows whole, and nothing more is dropped."""
    if not pending or not text:
        return text, pending
    common = min(len(pending), len(text))
    if text[:common] == pending[:common]:
        return text[common:], pending[common:]
    return text, ""
