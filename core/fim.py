"""Fill-in-the-middle dialects: detect a model's from its tokenizer, and lay out FIM prompts.

Each code-model family spells FIM with its own special tokens and order (the table in core/README.md).
A prompt is laid out as a list of parts (marker tokens, prefix ids, suffix ids) and assembled
from token ids, so a marker is never at the mercy of how the tokenizer splits text. The suffix
is encoded as text that continues the prompt (``PromptEncoder.encode_continuation``): SentencePiece
families (Code Llama, Codestral) would otherwise start it with a spurious dummy-prefix space, which
their reference recipes drop; the prefix keeps it, as in those recipes.

Families with a middle marker also have an SPM order (StarCoder's and Code Llama's training
used both): ``<prefix-marker><suffix-marker>{suffix}<middle-marker>{prefix}``. With the suffix
first, text typed at the cursor only appends to the prompt, so a cached prompt is reused up
to the new characters. It is used where the model says it was trained on it (``fim_order``
in its config, as DeepShiva's own model does) or where the operator asks for it.
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

    @property
    def has_spm(self) -> bool:
        """Whether an SPM order exists: it needs a middle marker to sit between suffix and prefix."""
        return self.middle_token is not None and not self.suffix_first

    def layout(self, order: str = "psm") -> list[tuple[str, str]]:
        """Parts of the prompt in order: ("token", marker), ("prefix", ""), ("suffix", "")."""
        if order == "spm" and self.has_spm:
            return [
                ("token", self.prefix_token),
                ("token", self.suffix_token),
                ("suffix", ""),
                ("token", self.middle_token),
                ("prefix", ""),
            ]
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
        "starcoder",
        "<fim_prefix>",
        "<fim_suffix>",
        "<fim_middle>",
        False,
        ("<|endoftext|>", "<file_sep>", "<fim_pad>", "<filename>", "<gh_stars>"),
    ),
    FIMDialect(
        "qwen",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        False,
        (
            "<|endoftext|>",
            "<|file_sep|>",
            "<|fim_pad|>",
            "<|file_separator|>",
            "<|repo_name|>",
            "<|im_end|>",
        ),
    ),
    FIMDialect(
        "deepseek",
        "<｜fim▁begin｜>",
        "<｜fim▁hole｜>",
        "<｜fim▁end｜>",
        False,
        ("<｜end▁of▁sentence｜>", "<|EOT|>"),
    ),
    FIMDialect("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", False, ("▁<EOT>", "<EOT>")),
    FIMDialect("codellama", "<PRE>", "<SUF>", "<MID>", False, ("<EOT>",)),
    FIMDialect("codestral", "[PREFIX]", "[SUFFIX]", None, True, ("</s>",)),
)


FIM_ORDERS = ("auto", "psm", "spm")


def check_order(requested: str) -> str:
    """``requested`` if it names a FIM order, else a ValueError that lists the choices."""
    if requested not in FIM_ORDERS:
        raise ValueError(f"fim_order must be one of {', '.join(FIM_ORDERS)}, not {requested!r}")
    return requested


def choose_order(requested: str, dialect: FIMDialect | None, model_config) -> str:
    """The FIM order to lay prompts out in: "psm" or "spm".

    "auto" takes the model's own ``fim_order`` (a config key DeepShiva's trainer writes), else
    PSM, the order every family documents. A dialect with one order only keeps it (Codestral's
    is suffix-first, so it reads "spm")."""
    check_order(requested)
    if dialect is not None and dialect.suffix_first:
        return "spm"
    order = getattr(model_config, "fim_order", "psm") if requested == "auto" else requested
    return "spm" if order == "spm" and dialect is not None and dialect.has_spm else "psm"


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


PREFIX_SHARE = 0.75  # of a FIM prompt's token budget, when both sides are long


def split_budget(
    prefix_len: int, suffix_len: int, budget: int, prefix_share: float = PREFIX_SHARE
) -> tuple[int, int]:
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
