"""Choose each generated token: the model's logits in, one token id out.

``TokenPicker`` holds everything of one request that decides a token, so the engine's loop only
asks it: the sampling settings and the recent tokens the repetition penalty reads, the ids never
generated (padding rows past the tokenizer, special tokens outside FIM), the text a healed prompt
token must regrow (core/healing.py), and Python's layout rules for the first line
(core/layout_rules.py), which pick among the model's next-best tokens when its first choice
would break them.
"""

from __future__ import annotations

import torch

from .healing import TokenHealer
from .layout_rules import RULE_TRIES, LayoutRules
from .sampling import SamplingParams, sample_next


class TokenPicker:
    """The token choices of one generation; ``pick`` is what the decode loop calls per step.

    After each token the loop keeps: ``ends(token)`` says whether it ends the completion,
    ``accept(token)`` records it (repetition window, healing progress), and ``watch(text)``
    shows the rules the text it produced (after the regrown healing text)."""

    def __init__(
        self,
        tokenizer,
        healer: TokenHealer,
        params: SamplingParams,
        *,
        stop_ids: set[int],
        banned: torch.Tensor,
        recent: list[int],
        heal_text: str = "",
        rules: LayoutRules | None = None,
        generator: torch.Generator | None = None,
    ):
        self._tokenizer = tokenizer
        self._healer = healer
        self._params = params
        self._generator = generator
        self.stop_ids = stop_ids
        self._banned = banned
        self.recent = recent  # the repetition penalty's window: prompt tail, then each token
        self.heal = heal_text  # what is still to regrow of the healed prompt token
        self.rules = rules

    def pick(self, logits: torch.Tensor) -> int:
        """The next token for these logits."""
        allowed = self._healer.allowed(self.heal) if self.heal else None
        if self.rules is None or self.rules.done:
            return self._sample(logits, allowed, self._banned)
        return self._pick_within_rules(logits, allowed)

    def ends(self, token: int) -> bool:
        """Whether ``token`` ends the completion (end of text; in FIM the dialect's stops)."""
        return token in self.stop_ids

    def accept(self, token: int) -> None:
        """Record a generated token (not an ending one)."""
        self.recent.append(token)
        if self.heal:
            self.heal = self._healer.advance(self.heal, token)

    def watch(self, text: str) -> None:
        """The text the completion really produced, for the layout rules' next choices."""
        if self.rules is not None:
            self.rules.accept(text)

    def _sample(self, logits, allowed, banned) -> int:
        return sample_next(
            logits, self._params, self.recent, self._generator, allowed=allowed, banned=banned
        )

    def _pick_within_rules(self, logits: torch.Tensor, allowed) -> int:
        """The token ``sample_next`` picks among those that keep Python's layout rules: the
        model's choice, else its next best (up to ``RULE_TRIES``), else its first choice."""
        rules, heal = self.rules, self.heal
        rejected: list[int] = []
        for _ in range(RULE_TRIES):
            excluded = (
                torch.cat([self._banned, torch.tensor(rejected, dtype=torch.long)])
                if rejected
                else self._banned
            )
            token = self._sample(logits, allowed, excluded)
            piece = ""
            if token in self.stop_ids:
                if rules.allows("", ends=True):
                    return token
            else:
                texts = self._healer.token_texts()  # each token's text, as healing reads it too
                piece = (texts[token] if token < len(texts) else None) or ""
                if heal:  # the part that regrows the healed prompt text is not new text
                    piece = piece[len(heal) :] if piece.startswith(heal) else ""
                if rules.allows(piece):
                    return token
            if not rejected and (token in self.stop_ids or "\n" in piece):
                closer = self._single_token(rules.closer())
                if closer is not None:  # it wants to end the line: close what it left open first
                    return closer
            rejected.append(token)
        return rejected[0]

    def _single_token(self, text: str) -> int | None:
        """The id of the one token that spells ``text``, if there is one."""
        if not text:
            return None
        ids = self._tokenizer.encode(text, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None
