"""The parameters of one generation request, written once: default, type, range and meaning.

``GenerationRequest`` is the one definition. The engine builds it with ``checked`` (bad input
raises ``InvalidParameter`` naming the field and what it must be, before any work); the server's
JSON body (``server/schemas.py``) is this model plus ``echo``, so its 400 messages and
/openapi.json come from these fields too, and the words for a range (``allowed``) are derived
from the bounds below rather than written again. ``DEFAULTS`` gives ``OptimizedLLM.generate``
and ``SamplingParams`` their defaults.
"""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace
from typing import Annotated, Any, Optional, Union

import annotated_types
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import InvalidParameter
from .repo_context import MAX_CONTEXT_ITEMS, ContextItem, check_context

MAX_STOP_SEQUENCES = 16
MAX_STOP_LENGTH = 256
MAX_LANGUAGE_LENGTH = 64
MAX_SEED = 2**63 - 1

LONE_SURROGATE = "contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text"
EMPTY_PROMPT = "must not be empty, unless a non-empty 'suffix' asks for fill-in-the-middle"
CONTEXT_LENGTH = "this model's context length"


def reject_lone_surrogates(value: Any) -> Any:
    """JSON can escape half a surrogate pair; such a string cannot be encoded or tokenized."""
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(LONE_SURROGATE) from None
    return value


def _as_stop_tuple(value: Any) -> Any:
    """One string is a list of one; null is none; a list is kept as a tuple (requests are frozen)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, list) else value


StopString = Annotated[str, Field(min_length=1, max_length=MAX_STOP_LENGTH)]
StopSequences = Annotated[
    tuple[StopString, ...],
    Field(max_length=MAX_STOP_SEQUENCES),
    BeforeValidator(
        _as_stop_tuple,
        json_schema_input_type=Optional[
            Union[Annotated[list[StopString], Field(max_length=MAX_STOP_SEQUENCES)], StopString]
        ],
    ),
]


class GenerationRequest(BaseModel):
    """One generation's parameters, checked. Strict types: ``"5"`` is not an int, ``True`` is
    not a number, NaN and infinity are not numbers. ``max_length`` is bounded by the limit given
    as validation context (``max_length_limit``: the model's context length, the server's limit);
    an omitted one is the default capped at that limit."""

    model_config = ConfigDict(strict=True, frozen=True, populate_by_name=True, allow_inf_nan=False)

    prompt: str = Field(description="The input prompt (code before the cursor).")
    max_length: int = Field(512, ge=1, description="Maximum number of tokens to generate.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature; 0 = greedy.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(50, ge=0, description="Top-k sampling; 0 disables it.")
    repetition_penalty: float = Field(
        1.1, gt=0.0, le=10.0, description="Penalty for repeated tokens."
    )
    stop_sequences: StopSequences = Field(
        (),
        alias="stop",
        description=f"Up to {MAX_STOP_SEQUENCES} non-empty strings of at most {MAX_STOP_LENGTH} "
        "characters (or one such string); generation ends before the first match. Python: "
        "`stop_sequences`.",
    )
    suffix: Optional[str] = Field(
        None, description="Code after the cursor: enables fill-in-the-middle."
    )
    seed: Optional[int] = Field(
        None, ge=0, le=MAX_SEED, description="Seed for reproducible sampling."
    )
    language: Optional[str] = Field(
        None,
        min_length=1,
        max_length=MAX_LANGUAGE_LENGTH,
        examples=["python"],
        description='Language id of the document (an LSP languageId such as "python"). With '
        "\"python\" and a cursor at a statement's start, the completion's first line keeps the "
        "file's indentation and block layout (see core/layout_rules.py).",
    )
    # Other files of the project, laid out before the prompt (core/repo_context.py); checked by
    # check_context, whose rules the server's JSON schema states with the same limits.
    context: tuple[ContextItem, ...] = ()

    @field_validator("prompt", "suffix", "language", "stop_sequences")
    @classmethod
    def _text_only(cls, value):
        return reject_lone_surrogates(value)

    @field_validator("max_length")
    @classmethod
    def _within_limit(cls, value: int, info: ValidationInfo) -> int:
        limit = (info.context or {}).get("max_length_limit")
        if limit and value > limit:
            raise ValueError(f"above {limit}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_within_limit(cls, data: Any, info: ValidationInfo) -> Any:
        """An omitted max_length is the default, capped at the limit (never a 400 of its own)."""
        limit = (info.context or {}).get("max_length_limit")
        default = cls.model_fields["max_length"].default
        if limit and isinstance(data, dict) and "max_length" not in data and default > limit:
            data = {**data, "max_length": limit}
        return data

    @model_validator(mode="after")
    def _prompt_or_suffix(self) -> GenerationRequest:
        if not self.prompt and not self.suffix:
            raise InvalidParameter("prompt", f"prompt {EMPTY_PROMPT}")
        return self

    @classmethod
    def checked(
        cls, prompt: object, *, context_length: int | None = None, **params: object
    ) -> GenerationRequest:
        """Build a request from Python arguments (``stop_sequences``, ``context`` as dicts);
        raise InvalidParameter naming the field and what it must be on bad input."""
        unknown = sorted(set(params) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"unexpected generation parameter(s): {', '.join(unknown)}")
        if "context" in params:
            params["context"] = check_context(params["context"])
        data = {"prompt": prompt, **params}
        limit = {"max_length_limit": context_length, "limit_reason": CONTEXT_LENGTH}
        try:
            return cls.model_validate(data, context=limit)
        except ValidationError as exc:
            raise invalid_parameter(exc, data, context_length) from None


def field_name(key: object) -> str:
    """The Python name of a field given by its Python name or its JSON name (``stop``)."""
    for name, field in GenerationRequest.model_fields.items():
        if key in (name, field.alias):
            return name
    return str(key)


def first_error(exc: ValidationError) -> dict:
    """The error to report: a lone surrogate wherever pydantic lists it (it is the reason,
    whichever member of a union is reported first), else the first."""
    errors = exc.errors()
    return next(
        (e for e in errors if e["type"] == "string_unicode" or LONE_SURROGATE in e["msg"]),
        errors[0],
    )


def invalid_parameter(
    exc: ValidationError, data: dict, max_length_limit: int | None = None
) -> InvalidParameter:
    """The InvalidParameter for a failed validation: ``<name> must be <allowed> (got <value>)``."""
    error = first_error(exc)
    raised = (error.get("ctx") or {}).get("error")
    if isinstance(raised, InvalidParameter):
        return raised
    name = field_name(error["loc"][0]) if error["loc"] else "prompt"
    if LONE_SURROGATE in error["msg"] or error["type"] == "string_unicode":
        return InvalidParameter(name, f"{name} {LONE_SURROGATE}")
    got = shown(data.get(name, data.get(GenerationRequest.model_fields[name].alias or name)))
    if len(error["loc"]) > 1 and isinstance(error["loc"][1], int):  # one item of a list
        got = f"{item_shown(error['input'])} at index {error['loc'][1]}"
    reason = CONTEXT_LENGTH if max_length_limit else None
    words = allowed(name, max_length_limit, reason)
    return InvalidParameter(name, f"{name} must be {words} (got {got})")


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a stop list can hold 20,000 items)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def item_shown(item: object) -> str:
    """A list item as an error message shows it: a long string by its length."""
    return f"{len(item)} characters" if isinstance(item, str) and len(item) > 60 else repr(item)


def allowed(
    name: str, max_length_limit: int | str | None = None, limit_reason: str | None = None
) -> str:
    """What field ``name`` accepts, in words, built from its type and bounds above."""
    if name == "prompt":
        return "a string (non-empty unless a suffix is given)"
    if name == "stop_sequences":
        return (
            f"a list of strings (at most {MAX_STOP_SEQUENCES}, each a non-empty string of at "
            f"most {MAX_STOP_LENGTH} characters) or one such string"
        )
    if name == "context":
        return f'a list of at most {MAX_CONTEXT_ITEMS} objects with string fields "path" and "text"'
    field = GenerationRequest.model_fields[name]
    bounds = {type(m): _number(getattr(m, fields(m)[0].name)) for m in field.metadata}
    if name == "max_length" and max_length_limit:
        bounds[annotated_types.Le] = max_length_limit
    kind = {int: "an integer", float: "a number", str: "a string"}[_base_type(field.annotation)]
    if annotated_types.MinLen in bounds:  # a string's length
        words = f"{kind} of {bounds[annotated_types.MinLen]} to {bounds[annotated_types.MaxLen]} characters"
    elif annotated_types.Gt in bounds:
        words = f"{kind} greater than {bounds[annotated_types.Gt]}"
        if annotated_types.Le in bounds:
            words += f" and at most {bounds[annotated_types.Le]}"
    elif annotated_types.Le in bounds:
        words = f"{kind} from {bounds[annotated_types.Ge]} to {bounds[annotated_types.Le]}"
    elif annotated_types.Ge in bounds:
        words = f"{kind} >= {bounds[annotated_types.Ge]}"
    else:
        words = kind
    if name == "max_length" and max_length_limit and limit_reason:
        words += f" ({limit_reason})"
    if field.examples:
        words += " (such as " + ", ".join(f'"{e}"' for e in field.examples) + ")"
    return words + (", or null" if field.default is None else "")


def _base_type(annotation: Any) -> type:
    """``int`` for ``Optional[int]``, and so on."""
    for candidate in (int, float, str):
        if annotation is candidate or candidate in getattr(annotation, "__args__", ()):
            return candidate
    raise TypeError(f"no words for {annotation!r}")


def _number(value: Any) -> Any:
    """A bound as a person writes it: 2 rather than 2.0, 2^63-1 rather than 19 digits."""
    if value == MAX_SEED:
        return "2^63-1"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


DEFAULTS = SimpleNamespace(
    **{
        name: field.default
        for name, field in GenerationRequest.model_fields.items()
        if not field.is_required()
    }
)
"""Each optional parameter's default, for signatures (``OptimizedLLM.generate``, ``SamplingParams``)."""
