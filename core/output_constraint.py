"""Token healing and Python's layout rules for one generation, as a change to its logits.

The local engine applies both while it picks each token (``OptimizedLLM._run``). A serving engine
picks the tokens itself, so there the same decisions must be made on the logits it is about to
sample from: :class:`OutputConstraint` is that step, one per request, called with the tokens
generated so far and the next token's logits row, returning the row to sample from. vLLM runs it
through DeepShiva's logits processor (``core/vllm_logits.py``); the request carries what it needs
in vLLM's ``vllm_xargs`` (:func:`request_args` builds them, :func:`from_request_args` reads them).

- While healing, only tokens that agree with the prompt text still to regrow keep their logits.
- While the Python rules apply (the completion's first line), the model's best candidates are
  tried in order, as the local engine does: greedy, the first that keeps the rules is the only
  token left, so the pick is the local engine's; sampled, the candidates that break them are
  taken out. A candidate that wants to end the line when the line may not end yet gives way to
  the one token that closes what it left open.
- Once the prompt text is regrown and the first line is written, the row passes unchanged.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from .healing import TokenHealer, strip_regrown
import languages

from .layout_rules import RULE_TRIES, LayoutRules
from .text_stream import IncrementalDecoder

# The request's vllm_xargs keys (values: strings and ints, as vLLM's API takes them).
HEAL = "deepshiva_heal"
PYTHON_PREFIX = "deepshiva_python_prefix"
PYTHON_SUFFIX = "deepshiva_python_suffix"  # absent: the document's text below is unknown
PYTHON_SINGLE_LINE = "deepshiva_python_single_line"


def request_args(heal: str, rules_for: Optional[tuple[str, Optional[str], bool]]) -> dict[str, Any]:
    """The vllm_xargs that ask for healing ``heal`` and, where ``rules_for`` is (prompt, suffix,
    single_line), for Python's layout rules on that document."""
    args: dict[str, Any] = {}
    if heal:
        args[HEAL] = heal
    if rules_for is not None:
        prefix, suffix, single_line = rules_for
        args[PYTHON_PREFIX] = prefix
        args[PYTHON_SINGLE_LINE] = int(single_line)
        if suffix is not None:
            args[PYTHON_SUFFIX] = suffix
    return args


def check_request_args(args: dict[str, Any]) -> None:
    """A ValueError naming the key whose value has the wrong type (vLLM answers it with a 400)."""
    for key in (HEAL, PYTHON_PREFIX, PYTHON_SUFFIX):
        if key in args and not isinstance(args[key], str):
            raise ValueError(f"vllm_xargs[{key!r}] must be a string")
    if PYTHON_SINGLE_LINE in args and args[PYTHON_SINGLE_LINE] not in (0, 1, True, False):
        raise ValueError(f"vllm_xargs[{PYTHON_SINGLE_LINE!r}] must be 0 or 1")


class OutputConstraint:
    """Healing and the Python rules for one generation; ``__call__`` adjusts a logits row."""

    def __init__(
        self,
        healer: TokenHealer,
        tokenizer,
        *,
        heal: str,
        rules: Optional[LayoutRules],
        stop_ids: set[int],
        greedy: bool,
    ):
        self.healer, self.tokenizer = healer, tokenizer
        self.heal = heal  # prompt text still to regrow
        self.rules = rules
        self.stop_ids = stop_ids
        self.greedy = greedy
        self._to_strip = heal  # regrown text the rules must not read as new
        self._decoder: Optional[IncrementalDecoder] = (
            None  # made at the first call, from the prompt
        )
        self._seen = 0

    @property
    def done(self) -> bool:
        return not self.heal and (self.rules is None or self.rules.done)

    def __call__(
        self, prompt_ids: list[int], output_ids: list[int], logits: torch.Tensor
    ) -> torch.Tensor:
        if self._decoder is None:  # a few prompt tokens as context, as the local engine's decoder
            self._decoder = IncrementalDecoder(self.tokenizer, context_ids=list(prompt_ids[-4:]))
        self._catch_up(output_ids)
        if self.done:
            return logits
        if self.heal:
            allowed = self.healer.allowed(self.heal)
            if allowed is not None:
                allowed = allowed.to(logits.device)
                masked = torch.full_like(logits, float("-inf"))
                masked[allowed] = logits[allowed]
                logits = masked
        if self.rules is not None and not self.rules.done:
            logits = self._within_rules(logits)
        return logits

    def _catch_up(self, output_ids: list[int]) -> None:
        """Take the tokens generated since the last call, as the local engine does after each."""
        for token in output_ids[self._seen :]:
            if self.heal:
                self.heal = self.healer.advance(self.heal, token)
            if self.rules is not None:
                text = self._decoder.push(token)
                text, self._to_strip = strip_regrown(text, self._to_strip)
                self.rules.accept(text)
        self._seen = len(output_ids)

    def _within_rules(self, logits: torch.Tensor) -> torch.Tensor:
        """The row with the model's best candidates that break the rules taken out (greedy:
        only the first that keeps them left), or the closing token forced."""
        rules, texts = self.rules, self.healer.token_texts()
        values, ids = torch.topk(logits, min(RULE_TRIES, logits.shape[-1]))
        rejected: list[int] = []
        for value, token in zip(values.tolist(), ids.tolist()):
            if value == float("-inf"):
                break
            if token in self.stop_ids:
                piece, ok = "", rules.allows("", ends=True)
            else:
                piece = (texts[token] if token < len(texts) else None) or ""
                if self.heal:  # the part that regrows the healed prompt text is not new text
                    piece = piece[len(self.heal) :] if piece.startswith(self.heal) else ""
                ok = rules.allows(piece)
            if ok:
                return _only(logits, token) if self.greedy else _without(logits, rejected)
            if not rejected and (token in self.stop_ids or "\n" in piece):
                closer = self._single_token(rules.closer())
                if closer is not None:  # it wants to end the line: close what it left open first
                    return _only(logits, closer)
            rejected.append(token)
        return logits  # none of them keeps the rules: the model's own choice, as locally

    def _single_token(self, text: str) -> Optional[int]:
        if not text:
            return None
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None


def from_request_args(
    args: dict[str, Any],
    healer: TokenHealer,
    tokenizer,
    *,
    stop_ids: set[int],
    greedy: bool,
) -> Optional[OutputConstraint]:
    """The constraint a request's vllm_xargs ask for (None: nothing to constrain)."""
    heal = args.get(HEAL) or ""
    rules = None
    if PYTHON_PREFIX in args:
        rules = LayoutRules(
            languages.find("python"),
            args[PYTHON_PREFIX],
            args.get(PYTHON_SUFFIX),
            single_line=bool(args.get(PYTHON_SINGLE_LINE, 0)),
        )
        if not rules.active:
            rules = None
    if not heal and rules is None:
        return None
    return OutputConstraint(
        healer,
        tokenizer,
        heal=heal,
        rules=rules,
        stop_ids=stop_ids,
        greedy=greedy,
    )


def _only(logits: torch.Tensor, token: int) -> torch.Tensor:
    kept = torch.full_like(logits, float("-inf"))
    value = logits[token]
    kept[token] = value if torch.isfinite(value) else 0.0  # a forced closer the heal mask took out
    return kept


def _without(logits: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    if tokens:
        logits = logits.clone()
        logits[tokens] = float("-inf")
    return logits
