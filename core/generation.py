"""Generation as small named phases, in the manner of gpt-fast: prefill, decode one token, decode n.

``ModelRunner`` owns the forward passes and the KV cache of one loaded model. The cache outlives
a request: the next prompt reuses the longest common token prefix (the cache is cropped to it),
so a keystroke in an editor costs only the tokens that changed, not the whole context.

``core.backends.select`` chooses the backend that computes a forward pass: ``LeanLlamaBackend``
(fused weights, a growing KV cache) for Llama models, ``HFBackend`` (the transformers model
itself) for everything else, and says why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import torch

from .backends import select
from .backends.hf import HFBackend, input_device  # noqa: F401 - re-exported (they were defined here)
from .devices import SHORT_NAMES, SMALL_MODEL_BYTES, weight_bytes

# A prompt runs in chunks, with a look at the cancel flag between them: a superseded request
# stops within one chunk, and the chunks it computed stay cached for the next prompt, which
# shares them. 1000 tokens in chunks of 128-512 ran no slower than one pass on the shipped model
# (CPU ms: 128 143-147, 512 137-148, one pass 168-267), but chunks of 128 cost the 1B shape a
# third more (512: 13.6-15.0 s against 14.4-16.2 for one pass); see benchmarks/RESULTS.md.
PREFILL_CHUNK = 512
SMALL_MODEL_PREFILL_CHUNK = 128  # below devices.SMALL_MODEL_BYTES: stops a superseded prompt sooner


def prefill_chunk_for(model) -> int:
    """Tokens per prefill chunk: short for small models (cheap to split), else ``PREFILL_CHUNK``."""
    return SMALL_MODEL_PREFILL_CHUNK if weight_bytes(model) < SMALL_MODEL_BYTES else PREFILL_CHUNK


class ModelRunner:
    """Forward passes over one model with a KV cache kept between requests."""

    def __init__(
        self,
        model,
        lean: bool | None = None,
        decode_weights: str = "fp32",
        release_model: bool = False,
    ):
        """``release_model``: the runner may empty the model's tensors its backend does not read
        (the engine holds each weight once; ``model`` cannot run by itself afterwards)."""
        self.prefill_chunk = prefill_chunk_for(model)  # before any tensor is released
        self.backend, reasons = select.backend(model, lean, decode_weights, release_model)
        self.path = select.explain(self.backend, reasons)
        self._cached_ids: list[int] = []
        # The last prompt's length and its final logits: the same prompt again (a repeated request,
        # a retry) starts from them instead of re-running its last token, so a seeded request gives
        # the same text whatever ran before it. Re-running that token would take the decode path
        # (compact weights, possibly bf16-rounded activations), whose logits differ from prefill's
        # by float rounding, enough to change a sampled token now and then.
        self._prompt_end: tuple[int, torch.Tensor] | None = None
        self.decode_steps = 0
        self.prefill_tokens = 0
        self.reused_tokens = 0
        self.drafted_tokens = 0
        self.accepted_tokens = 0
        self.draft_policy = DraftPolicy()  # learned across requests: this model on this machine
        self.lookup_index = NgramIndexCache()  # prompt lookup's index of the last prompt's front

    @property
    def backend_name(self) -> str:
        return self.path.backend

    @property
    def decode_path(self) -> str:
        """What runs a decode step: NumPy's OpenBLAS (core.blas_decode) or PyTorch."""
        return "numpy" if getattr(self.backend, "blas", None) is not None else "torch"

    @property
    def decode_weights(self) -> str:
        """The format of the weights a decode step reads: a compact copy's (fp16, bf16, int8, int4), else
        the model's own dtype (fp32, fp16 or bf16)."""
        chosen = getattr(self.backend, "decode_weights", "fp32")
        if chosen != "fp32":
            return chosen
        dtype = getattr(self.backend, "dtype", None) or getattr(
            getattr(self.backend, "model", None), "dtype", None
        )
        return SHORT_NAMES.get(dtype, "fp32")

    def reset(self) -> None:
        """Forget the KV cache (after an error it may be inconsistent)."""
        self.backend.reset()
        self._cached_ids = []
        self._prompt_end = None

    def release(self) -> None:
        """Free the KV cache's memory."""
        self.backend.release()
        self._cached_ids = []
        self._prompt_end = None

    def _forward(self, ids: list[int]) -> torch.Tensor:
        logits = self.backend.forward(ids)
        self._cached_ids.extend(ids)
        return logits

    def reusable_prefix(self, ids: list[int]) -> int:
        """How many leading tokens of ``ids`` the cache already holds (always leaving one to run)."""
        limit = min(len(self._cached_ids), len(ids) - 1)
        cached = self._cached_ids
        if limit <= 0 or cached[:limit] == ids[:limit]:  # the usual case: one comparison in C
            return max(limit, 0)
        # Binary search on whole-slice comparisons: ~10 C-speed compares, not a Python loop
        # over every token (0.15 ms for the replay's 900-token prompts).
        low, high = 0, limit - 1  # the first ``low`` tokens match; the first ``high + 1`` do not
        while low < high:
            mid = (low + high + 1) // 2
            if cached[:mid] == ids[:mid]:
                low = mid
            else:
                high = mid - 1
        return low

    def prefill(self, ids: list[int], cancel: threading.Event | None = None) -> torch.Tensor | None:
        """Run the prompt, reusing the cached common prefix; return the last position's logits.

        The new tokens run in chunks of ``prefill_chunk`` tokens; when ``cancel`` is set between
        two chunks the rest is skipped and None is returned (what ran stays cached)."""
        if self._prompt_end is not None:
            length, end_logits = self._prompt_end
            if length == len(ids) <= len(self._cached_ids) and self._cached_ids[:length] == ids:
                self._crop(length)
                self.reused_tokens += length
                return end_logits.clone()
        keep = self.reusable_prefix(ids)
        if keep == 0:
            self.reset()
        elif keep < len(self._cached_ids):
            self._crop(keep)
        self.reused_tokens += keep
        reserve = getattr(self.backend, "reserve", None)
        if reserve is not None and keep < len(ids):
            # The KV cache sized for the whole prompt and the first new token before the first
            # chunk: grown chunk by chunk, each growth held the old cache beside the new one,
            # and a 1024-token prompt grew it three times (issue 21's memory bound).
            reserve(len(ids) + 1)
        logits = None
        for start in range(keep, len(ids), self.prefill_chunk):
            if logits is not None and cancel is not None and cancel.is_set():
                return None
            chunk = ids[start : start + self.prefill_chunk]
            self.prefill_tokens += len(chunk)
            logits = self._forward(chunk)
        if logits is not None:
            self._prompt_end = (len(ids), logits.detach().clone())
        return logits

    def _crop(self, keep: int) -> None:
        """Keep the first ``keep`` cached tokens; forget the prompt's end if it is cut off."""
        if keep < len(self._cached_ids):
            self.backend.crop(keep)
            self._cached_ids = self._cached_ids[:keep]
        if self._prompt_end is not None and keep < self._prompt_end[0]:
            self._prompt_end = None

    def decode_one_token(self, token_id: int) -> torch.Tensor:
        """Feed one generated token; return the logits for the next."""
        self.decode_steps += 1
        started = time.perf_counter()
        logits = self._forward([token_id])
        self.draft_policy.record_pass(1, time.perf_counter() - started)
        return logits

    def verify_draft(self, token_id: int, draft: list[int]) -> torch.Tensor:
        """Feed a token and a guessed continuation in one pass; return logits after each of them."""
        self.decode_steps += 1
        self.drafted_tokens += len(draft)
        started = time.perf_counter()
        logits = self.backend.forward([token_id, *draft], all_logits=True)
        self.draft_policy.record_pass(1 + len(draft), time.perf_counter() - started)
        self._cached_ids.extend([token_id, *draft])
        return logits

    def drop_last(self, count: int) -> None:
        """Forget the last ``count`` cached tokens (a rejected draft)."""
        if count > 0:
            self._crop(len(self._cached_ids) - count)


class DraftPolicy:
    """How many prompt-lookup guesses to check in one pass: only as many as pay for themselves.

    A pass over several rows costs more than one step where the matrix products are
    compute-bound (the shipped model on this CPU: 2 rows about 2x, 8 rows 3-4x) and little more
    where they are bandwidth-bound (a 1B model). With acceptance ``p`` per guess, checking ``d``
    guesses yields 1 + p + ... + p^d tokens for the pass's time. The policy keeps decayed counts
    of guesses kept and the running time of passes per row count, and drafts only the length
    that yields the most tokens per second, if that beats single steps. A row count never timed
    is taken to cost one step, so each is tried once; while no draft pays, the acceptance
    estimate drifts back to its prior, so guessing is tried again later.
    """

    DECAY = 0.97  # weight of older evidence per new observation

    def __init__(self):
        self.kept = 0.0  # guesses the model agreed with (decayed)
        self.checked = 0.0  # guesses checked: those kept and the first one rejected (decayed)
        self.seconds: dict[int, float] = {}  # rows in a pass -> running mean of its time

    def acceptance(self) -> float:
        """Estimated chance that the model agrees with the next guess (prior 1/2)."""
        return (self.kept + 1.0) / (self.checked + 2.0)

    def record_pass(self, rows: int, seconds: float) -> None:
        old = self.seconds.get(rows)
        self.seconds[rows] = seconds if old is None else 0.8 * old + 0.2 * seconds

    def record_draft(self, drafted: int, accepted: int) -> None:
        checked = accepted + (1 if accepted < drafted else 0)
        self.kept = self.kept * self.DECAY + accepted
        self.checked = self.checked * self.DECAY + checked

    def length(self, available: int) -> int:
        """How many of ``available`` guesses to check now (0: decode one token)."""
        step = self.seconds.get(1)
        if step is None or available <= 0:
            return 0  # time a plain step first
        p = self.acceptance()
        best, best_rate, expected = 0, 1.0 / step, 1.0
        for d in range(1, available + 1):
            expected += p**d
            rate = expected / self.seconds.get(d + 1, step)
            if rate > best_rate:
                best, best_rate = d, rate
        if best == 0:
            self.kept *= self.DECAY
            self.checked *= self.DECAY
        return best


class NgramIndexCache:
    """The n-gram index of the front of the last prompt, kept for the next one.

    Consecutive keystrokes change a prompt near its end (SPM order, or the end of a plain
    prompt), while its front (other files' context, the suffix, the file's start) stays: indexing
    all of it again cost each keystroke 0.44 ms of CPU at 2,400 prompt tokens, 0.075 ms with the
    front's index reused (a small share of a keystroke, but one that grew with the context). The
    front, all but the last ``TAIL`` tokens, is indexed once; a prompt that starts with it copies
    that index and adds its own rest. The result is the index a full pass gives."""

    TAIL = 256

    def __init__(self):
        self.ngram = 0
        self.head: list[int] = []
        self.head_index: dict[tuple[int, ...], int] = {}

    def index_for(self, tokens: list[int], n: int) -> dict[tuple[int, ...], int]:
        """A fresh index of ``tokens`` (n-gram -> the position after its latest occurrence)."""
        h = len(self.head)
        if not (n == self.ngram and 0 < h <= len(tokens) and tokens[:h] == self.head):
            h = max(0, len(tokens) - self.TAIL)
            self.ngram, self.head = n, tokens[:h]
            # n-grams whose next token lies inside the front
            self.head_index = {tuple(tokens[i : i + n]): i + n for i in range(h - n)}
        index = dict(self.head_index)
        for i in range(max(0, h - n), len(tokens) - n):  # later occurrences overwrite
            index[tuple(tokens[i : i + n])] = i + n
        return index


class PromptLookup:
    """Guess the next tokens by finding the latest n-gram in the context and copying what followed.

    Code repeats its own context (names, call patterns, whole lines), so a greedy decoder can
    check several guessed tokens in one forward pass and keep those the model agrees with.
    The n-gram index is built at the first ``propose``: a request whose guesses would not pay
    (``DraftPolicy``) never builds it. With ``cache`` (the runner's), the part of the index that
    the previous prompt shares is reused.
    """

    def __init__(
        self,
        context: list[int],
        ngram: int = 3,
        max_draft: int = 6,
        cache: NgramIndexCache | None = None,
    ):
        self.ngram, self.max_draft = ngram, max_draft
        self.tokens: list[int] = list(context)
        self.index: dict[tuple[int, ...], int] | None = None
        self.cache = cache

    def _build(self) -> dict[tuple[int, ...], int]:
        # Each n-gram maps to the position after its latest occurrence (later ones overwrite):
        # what ``add`` would build token by token, in one pass over a 1000-token prompt.
        n = self.ngram
        if self.cache is not None:
            return self.cache.index_for(self.tokens, n)
        return {tuple(self.tokens[i : i + n]): i + n for i in range(len(self.tokens) - n)}

    def add(self, token: int) -> None:
        self.tokens.append(token)
        if self.index is not None and len(self.tokens) > self.ngram:
            # the n-gram ending just before this token is followed by it
            key = tuple(self.tokens[-self.ngram - 1 : -1])
            self.index[key] = len(self.tokens) - 1

    def propose(self) -> list[int]:
        if len(self.tokens) < self.ngram:
            return []
        if self.index is None:
            self.index = self._build()
        start = self.index.get(tuple(self.tokens[-self.ngram :]))
        if start is None:
            return []
        return self.tokens[start : start + self.max_draft]


def decode_n_tokens(
    runner: ModelRunner,
    logits: torch.Tensor,
    n: int,
    pick: Callable[[torch.Tensor], int],
    lookup: PromptLookup | None = None,
) -> Iterator[int]:
    """Yield up to ``n`` tokens. Lazy: a consumer that stops iterating costs no further decode step.

    With ``lookup`` (greedy decoding only: ``pick`` must be deterministic), guessed tokens are
    checked in one forward pass and every one the model would have chosen itself is kept, so the
    output is exactly what one-token-at-a-time decoding gives.
    """
    produced = 0
    while produced < n:
        token = pick(logits)
        yield token
        produced += 1
        if produced >= n:
            return
        draft = []
        if lookup is not None:
            lookup.add(token)
            policy = runner.draft_policy
            room = min(lookup.max_draft, n - produced - 1)
            if policy.length(room):  # some draft could pay: look for one, then size it
                proposal = lookup.propose()[:room]
                draft = proposal[: policy.length(len(proposal))]
        if not draft:
            logits = runner.decode_one_token(token)
            continue
        all_logits = runner.verify_draft(token, draft)
        accepted = 0
        for guess, guess_logits in zip(draft, all_logits):
            if pick(guess_logits) != guess:
                break
            accepted += 1
            runner.accepted_tokens += 1
            lookup.add(guess)
            yield guess
            produced += 1
        runner.drop_last(len(draft) - accepted)
        runner.draft_policy.record_draft(len(draft), accepted)
        logits = all_logits[accepted]
