"""The parameters of one generation request, checked before any work is done."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InvalidParameter
from .repo_context import ContextItem, check_context

MAX_STOP_SEQUENCES = 16
MAX_STOP_LENGTH = 256
MAX_LANGUAGE_LENGTH = 64


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(
        value
    )


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    max_length: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.1
    stop_sequences: tuple[str, ...] = ()
    suffix: str | None = None
    seed: int | None = None
    language: str | None = (
        None  # the document's language id (e.g. "python"): enables its layout rules
    )
    context: tuple[ContextItem, ...] = ()  # other files of the project, laid out before the prompt

    @classmethod
    def checked(
        cls,
        prompt: object,
        max_length: object = 512,
        temperature: object = 0.7,
        top_p: object = 0.9,
        top_k: object = 50,
        repetition_penalty: object = 1.1,
        stop_sequences: object = None,
        suffix: object = None,
        seed: object = None,
        language: object = None,
        context: object = None,
        context_length: int | None = None,
    ) -> GenerationRequest:
        """Build a request, raising InvalidParameter (naming the field and its range) on bad input."""
        if not isinstance(prompt, str):
            raise InvalidParameter(
                "prompt", f"prompt must be a string (got {type(prompt).__name__})"
            )
        if suffix is not None and not isinstance(suffix, str):
            raise InvalidParameter(
                "suffix", f"suffix must be a string (got {type(suffix).__name__})"
            )
        if not prompt and not suffix:
            raise InvalidParameter(
                "prompt", "prompt must not be empty (or give a suffix for fill-in-the-middle)"
            )
        upper = context_length if context_length else None
        if not _is_int(max_length) or max_length < 1 or (upper and max_length > upper):
            bound = (
                f"1 and {upper} (this model's context length)"
                if upper
                else "1 and the context length"
            )
            raise InvalidParameter(
                "max_length", f"max_length must be an integer between {bound} (got {max_length!r})"
            )
        if not _is_number(temperature) or not 0 <= temperature <= 2:
            raise InvalidParameter(
                "temperature", f"temperature must be a number in [0, 2] (got {temperature!r})"
            )
        if not _is_number(top_p) or not 0 < top_p <= 1:
            raise InvalidParameter("top_p", f"top_p must be a number in (0, 1] (got {top_p!r})")
        if not _is_int(top_k) or top_k < 0:
            raise InvalidParameter(
                "top_k", f"top_k must be an integer >= 0, 0 meaning no limit (got {top_k!r})"
            )
        if not _is_number(repetition_penalty) or not 0 < repetition_penalty <= 10:
            raise InvalidParameter(
                "repetition_penalty",
                f"repetition_penalty must be a number in (0, 10] (got {repetition_penalty!r})",
            )
        stops = _checked_stops(stop_sequences)
        if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**63):
            raise InvalidParameter("seed", f"seed must be an integer in [0, 2^63) (got {seed!r})")
        if language is not None and (
            not isinstance(language, str) or not 0 < len(language) <= MAX_LANGUAGE_LENGTH
        ):
            raise InvalidParameter(
                "language",
                f"language must be a language id of 1 to {MAX_LANGUAGE_LENGTH} characters, or null (got {language!r})",
            )
        return cls(
            prompt=prompt,
            max_length=max_length,
            temperature=float(temperature),
            top_p=float(top_p),
            top_k=top_k,
            repetition_penalty=float(repetition_penalty),
            stop_sequences=stops,
            suffix=suffix,
            seed=seed,
            language=language,
            context=check_context(context),
        )


def _checked_stops(stop_sequences: object) -> tuple[str, ...]:
    if stop_sequences is None:
        return ()
    if isinstance(stop_sequences, str):
        stop_sequences = [stop_sequences]
    if not isinstance(stop_sequences, (list, tuple)):
        raise InvalidParameter("stop_sequences", "stop_sequences must be a list of strings")
    if len(stop_sequences) > MAX_STOP_SEQUENCES:
        raise InvalidParameter(
            "stop_sequences",
            f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed (got {len(stop_sequences)})",
        )
    for stop in stop_sequences:
        if not isinstance(stop, str) or not stop or len(stop) > MAX_STOP_LENGTH:
            raise InvalidParameter(
                "stop_sequences",
                f"each stop sequence must be a non-empty string of at most {MAX_STOP_LENGTH} characters (got {stop!r})",
            )
    return tuple(stop_sequences)
