"""Fill-in-the-middle dialects: detect a model's from its tokenizer, and lay out FIM prompts.

Each code-model family spells FIM with its own special tokens and order (see FIELD_NOTES 3).
A prompt is laid out as a list of parts (marker tokens, prefix ids, suffix ids) and assembled
from token ids, so a marker is never at the mercy of how the tokenizer splits text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FIMDialect:
    """One family's FIM spelling: its three markers, their order, and its extra stop tokens."""

    name: str
    prefix_token: str
    suffix_token: str
    middle_token: str | None
    suffix_first: bool
    stop_tokens: tuple[str, ...]

    def layout(self) -> list[tuple[str, str]]:
        """Parts of the prompt in order: ("token", marker), ("prefix", ""), ("suffix", "")."""
        before = [("token", self.prefix_token), ("prefix", "")]
        after = [("token", self.suffix_token), ("suffix", "")]
        parts = after + before if self.suffix_first else before + after
        if self.middle_token:
            parts.append(("token", self.middle_token))
        return parts

    @property
    def markers(self) -> tuple[str, ...]:
        return tuple(t for t in (self.prefix_token, self.suffix_token, self.middle_token) if t)


DIALECTS: tuple[FIMDialect, ...] = (
    FIMDialect(
        "starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", False,
        ("<|endoftext|>", "<file_sep>", "<fim_pad>", "<filename>", "<gh_stars>"),
    ),
    FIMDialect(
        "qwen", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", False,
        ("<|endoftext|>", "<|file_sep|>", "<|fim_pad|>", "<|file_separator|>", "<|repo_name|>", "<|im_end|>"),
    ),
    FIMDialect(
        "deepseek", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", False,
        ("<｜end▁of▁sentence｜>", "<|EOT|>"),
    ),
    FIMDialect("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", False, ("▁<EOT>", "<EOT>")),
    FIMDialect("codellama", "<PRE>", "<SUF>", "<MID>", False, ("<EOT>",)),
    FIMDialect("codestral", "[PREFIX]", "[SUFFIX]", None, True, ("</s>",)),
)


def detect_dialect(vocab: dict[str, int]) -> FIMDialect | None:
    """The first dialect whose markers are all in ``vocab`` (token string -> id), else None."""
    for dialect in DIALECTS:
        if all(marker in vocab for marker in dialect.markers):
            return dialect
    return None


def stop_token_ids(dialect: FIMDialect, vocab: dict[str, int]) -> set[int]:
    """Ids that end a FIM completion: the dialect's stop tokens and its own markers."""
    names = dialect.stop_tokens + dialect.markers
    return {vocab[name] for name in names if name in vocab}


def split_budget(prefix_len: int, suffix_len: int, budget: int, prefix_share: float = 0.75) -> tuple[int, int]:
    """How many prefix and suffix tokens to keep within ``budget``.

    The prefix (nearest the cursor on the left) gets ``prefix_share`` of the budget and the suffix
    the rest; whatever one side does not need goes to the other.
    """
    if prefix_len + suffix_len <= budget:
        return prefix_len, suffix_len
    prefix_keep = min(prefix_len, int(budget * prefix_share))
    suffix_keep = min(suffix_len, budget - prefix_keep)
    prefix_keep = min(prefix_len, budget - suffix_keep)
    return prefix_keep, suffix_keep
