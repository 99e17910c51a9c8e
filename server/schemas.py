"""Request and response shapes of the API, as pydantic models.

They validate requests (strict types: ``"5"`` is not an int, ``true`` is not a number) and are the
single source of the OpenAPI document's schemas. Validation failures become one 400 message that
names the field and its allowed range.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.repo_context import (
    MAX_CONTEXT_ITEMS,
    MAX_CONTEXT_PATH_CHARS,
    MAX_CONTEXT_TEXT_CHARS,
    MAX_CONTEXT_TOTAL_CHARS,
)

from .errors import ApiError

MAX_STOP_SEQUENCES = 16


LONE_SURROGATE = "contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text"


class _Request(BaseModel):
    # Unknown fields are ignored so clients written for later versions keep working.
    model_config = ConfigDict(strict=True, extra="ignore")

    @field_validator("*")
    @classmethod
    def _text_only(cls, value):
        """JSON can escape half a surrogate pair; such a string cannot be encoded or tokenized."""
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(LONE_SURROGATE) from None
        return value


class ContextItem(_Request):
    """Another file of the project (or a snippet of it), given as context for the completion."""

    path: str = Field(
        min_length=1,
        max_length=MAX_CONTEXT_PATH_CHARS,
        pattern=r"^[^\n]*$",
        description="The file's path as the user sees it (relative to the workspace).",
    )
    text: str = Field(
        max_length=MAX_CONTEXT_TEXT_CHARS, description="The file's text, or a snippet of it."
    )


# The stop strings' limits, in the types so the OpenAPI document states them too.
NonEmptyStr = Annotated[str, Field(min_length=1)]
StopList = Annotated[list[NonEmptyStr], Field(max_length=MAX_STOP_SEQUENCES)]

# An empty prompt is fill-in-the-middle only: it needs a non-empty suffix (core/request.py).
PROMPT_OR_SUFFIX = [
    {"properties": {"prompt": {"minLength": 1}}},
    {"properties": {"suffix": {"type": "string", "minLength": 1}}, "required": ["suffix"]},
]


class GenerateRequest(_Request):
    """Body of POST /generate and POST /stream."""

    model_config = ConfigDict(json_schema_extra={"anyOf": PROMPT_OR_SUFFIX})

    prompt: str = Field(description="The input prompt (code before the cursor).")
    max_length: int = Field(512, ge=1, description="Maximum number of tokens to generate.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature; 0 = greedy.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(50, ge=0, description="Top-k sampling; 0 disables it.")
    repetition_penalty: float = Field(
        1.1, gt=0.0, le=10.0, description="Penalty for repeated tokens."
    )
    stop: Optional[Union[StopList, NonEmptyStr]] = Field(
        None,
        description=f"Up to {MAX_STOP_SEQUENCES} non-empty strings; generation ends before the first match.",
    )
    suffix: Optional[str] = Field(
        None, description="Code after the cursor: enables fill-in-the-middle."
    )
    seed: Optional[int] = Field(
        None, ge=0, le=2**63 - 1, description="Seed for reproducible sampling."
    )
    language: Optional[str] = Field(
        None,
        min_length=1,
        max_length=64,
        description='Language id of the document (an LSP languageId such as "python"). With "python" and a '
        "cursor at a statement's start, the completion's first line keeps the file's indentation and block "
        "layout (see core/python_rules.py).",
    )
    echo: bool = Field(
        False, description="Prepend the prompt to `response` (the completion alone by default)."
    )
    context: Optional[list[ContextItem]] = Field(
        None,
        max_length=MAX_CONTEXT_ITEMS,
        description=f"Other files of the project, at most {MAX_CONTEXT_ITEMS} items of at most "
        f"{MAX_CONTEXT_TEXT_CHARS} characters each ({MAX_CONTEXT_TOTAL_CHARS} in all). They are laid out before "
        "the current file in the model's repository format (`<file_sep>` + path for StarCoder2, Qwen2.5-Coder "
        "and DeepShiva's model; otherwise a comment header per file) within half the prompt's token budget; "
        "when they do not fit, the first items are dropped. Send them in the same order on every keystroke "
        "so the server's cache of them is reused (see core/repo_context.py).",
    )

    @field_validator("max_length", "top_k", "seed", mode="before")
    @classmethod
    def _integral_floats(cls, value):
        """JSON Schema counts 43.0 as an integer, so does the server (1.5, "5" and true are refused)."""
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            return int(value)
        return value

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if len(value) > MAX_STOP_SEQUENCES or any(not item for item in value):
            raise ValueError("bad stop")
        return value


class LoadModelRequest(_Request):
    """Body of POST /load_model."""

    model_name: Optional[str] = Field(
        None, min_length=1, description="Model name or local directory; default: the shipped model."
    )


# Allowed values, in words, for each field: used to build the 400 message.
ALLOWED = {
    "prompt": "a string (non-empty unless a suffix is given)",
    "max_length": "an integer from 1 to {max_length_limit}",
    "temperature": "a number from 0 to 2",
    "top_p": "a number greater than 0 and at most 1",
    "top_k": "an integer >= 0",
    "repetition_penalty": "a number greater than 0 and at most 10",
    "stop": f"a string or a list of at most {MAX_STOP_SEQUENCES} non-empty strings",
    "suffix": "a string or null",
    "seed": "an integer from 0 to 2^63-1, or null",
    "language": 'a language id of 1 to 64 characters (such as "python"), or null',
    "echo": "a boolean",
    "model_name": "a non-empty string (model name or local directory) or null",
    "context": f'a list of at most {MAX_CONTEXT_ITEMS} objects with string fields "path" and "text", or null',
    "path": f"a one-line string of 1 to {MAX_CONTEXT_PATH_CHARS} characters",
    "text": f"a string of at most {MAX_CONTEXT_TEXT_CHARS} characters",
}


def parse(model: type[_Request], body: Any, **limits: Any) -> _Request:
    """Validate a JSON body against ``model``; raise ApiError(400) naming the first bad field."""
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid request: the body must be a JSON object.")
    try:
        request = model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
        # A lone surrogate is the reason whichever member of a union pydantic reports first.
        error = next(
            (e for e in errors if e["type"] == "string_unicode" or LONE_SURROGATE in e["msg"]),
            errors[0],
        )
        field = str(error["loc"][0]) if error["loc"] else "body"
        if field == "context" and len(error["loc"]) > 1:  # an item: name it, never echo its text
            raise ApiError(400, _context_item_error(error)) from None
        allowed = ALLOWED.get(field, "a valid value").format(**limits)
        if error["type"] == "missing":
            raise ApiError(400, f"Missing required field '{field}': must be {allowed}.") from None
        if LONE_SURROGATE in error["msg"] or error["type"] == "string_unicode":
            raise ApiError(400, f"Invalid '{field}': it {LONE_SURROGATE}.") from None
        got = body.get(field)
        if field == "context" and isinstance(got, list):
            raise ApiError(
                400, f"Invalid 'context': must be {allowed} (got {len(got)} items)."
            ) from None
        raise ApiError(400, f"Invalid '{field}': must be {allowed} (got {got!r}).") from None
    total = sum(len(item.text) for item in getattr(request, "context", None) or ())
    if total > MAX_CONTEXT_TOTAL_CHARS:
        raise ApiError(
            400,
            f"Invalid 'context': its texts may hold at most {MAX_CONTEXT_TOTAL_CHARS} "
            f"characters in all (got {total}).",
        )
    if isinstance(request, GenerateRequest) and not request.prompt and not request.suffix:
        raise ApiError(
            400,
            "Invalid 'prompt': must not be empty, unless a non-empty 'suffix' asks for "
            "fill-in-the-middle.",
        )
    limit = limits.get("max_length_limit")
    if (
        limit is not None
        and "max_length" in type(request).model_fields
        and "max_length" not in request.model_fields_set
    ):
        request.max_length = min(
            request.max_length, limit
        )  # the default never exceeds the server's limit
    if limit is not None and getattr(request, "max_length", 0) > limit:
        got = request.max_length
        raise ApiError(
            400, f"Invalid 'max_length': must be an integer from 1 to {limit} (got {got!r})."
        )
    return request


def _context_item_error(error: dict) -> str:
    """The 400 message for a bad context item: its index, its field and what it must be."""
    loc = error["loc"]
    index = loc[1] if isinstance(loc[1], int) else None
    name = str(loc[2]) if len(loc) > 2 else ""
    where = f"context[{index}]" + (f".{name}" if name else "")
    if error["type"] == "missing":
        return f"Missing required field '{where}': must be {ALLOWED.get(name, 'given')}."
    if name in ("path", "text"):
        got = error.get("input")
        shown = f"{len(got)} characters" if isinstance(got, str) and len(got) > 60 else repr(got)
        return f"Invalid '{where}': must be {ALLOWED[name]} (got {shown})."
    return f'Invalid \'{where}\': must be an object {{"path": string, "text": string}}.'


# ---- responses (documentation and tests; the views build plain dicts with these fields) ----


class Usage(BaseModel):
    prompt_tokens: int = Field(
        description="Tokens of the prompt actually fed to the model (after truncation)."
    )
    completion_tokens: int = Field(description="Tokens generated.")
    time_to_first_token_ms: Optional[float] = Field(
        description="From start of generation to the first token."
    )
    total_ms: float = Field(description="Generation time, from start to the last token.")
    queue_ms: float = Field(
        description="Time spent waiting for the model before generation started."
    )


FinishReason = Literal["stop", "length", "cancelled"]


class GenerateResponse(BaseModel):
    status: Literal["success"]
    response: str = Field(description="The generated completion (prompt prepended when echo=true).")
    usage: Usage
    finish_reason: FinishReason = Field(
        description="stop: end token, stop string or a repeating completion ended; length: max_length; cancelled."
    )
    truncated: bool = Field(
        description="Whether the prompt was cut (from the left) to fit the context."
    )
    model_name: str


class StreamChunk(BaseModel):
    """data of each unnamed SSE event of /stream."""

    text: str


class ErrorResponse(BaseModel):
    status: Literal["error"]
    message: str


class LoadModelResponse(BaseModel):
    status: Literal["success"]
    message: str
    model_name: str
    load_ms: float


class ModelStatus(BaseModel):
    status: Literal["success"]
    model_loaded: bool
    model_name: Optional[str]
    device: Optional[str]
    dtype: Optional[str]
    quantization: Optional[str] = Field(description="null or 'int8'.")
    quantization_note: Optional[str] = Field(
        None,
        description="With int8: what 8-bit buys on this device (memory on the CPU and on CUDA; not speed).",
    )
    context_length: Optional[int]
    fim_dialect: Optional[str] = Field(
        description="null, starcoder, codellama, deepseek, qwen or codestral."
    )
    parameters: Optional[int]
    decode_weights: Optional[str] = Field(
        None,
        description="The weights a decode step reads: fp32, fp16, bf16, int8 or int4 (compact copies on the CPU "
        "for fp32 models; otherwise the model's own dtype). Null while no model is loaded.",
    )
    backend: Optional[str] = Field(
        None, description="lean-llama (the engine's own forward) or transformers."
    )
    decode_path: Optional[str] = Field(
        None, description="numpy (NumPy and the C kernels) or torch."
    )
    path: Optional["ModelPath"] = Field(
        None, description="What runs prefill and decode steps, and why."
    )
    cpu: Optional[str] = Field(
        None, description="The CPU kind the path was chosen for (null off the CPU)."
    )
    state: Literal["not_loaded", "loading", "ready"] = Field(
        description="loading while a /load_model runs (the previous model, if any, still serves)."
    )
    loading_model_name: Optional[str] = Field(
        description="The model being loaded, while state is loading."
    )
    last_load_error: Optional[str] = Field(
        description="Why the most recent load failed, if it did."
    )
    upstream: Optional["UpstreamStatus"] = Field(
        None,
        description="Only with --backend openai: the serving engine behind DeepShiva and what it can do.",
    )
    queue: "QueueStatus"


class ModelPath(BaseModel):
    summary: str = Field(
        description="e.g. 'prefill: torch bf16 GEMMs, fp32 activations; decode: fused C step, bf16 weights'."
    )
    backend: str
    prefill: str
    decode: str
    reasons: list[str] = Field(
        description="Why each choice was made, and why a faster path was not taken."
    )


class UpstreamStatus(BaseModel):
    url: str = Field(description="The OpenAI-compatible API the completions come from.")
    kind: str = Field(description="Who serves it, as it says (vllm, llamacpp...).")
    prompt: Literal["token ids", "text"] = Field(
        description="How DeepShiva's prompts are sent to it."
    )
    token_healing: str = Field(
        description="'on (field)' where the upstream constrains output, else 'off: why'."
    )
    python_rules: str = Field(
        description="Whether the Python layout rules apply ('off: why' with an upstream)."
    )


class QueueStatus(BaseModel):
    running: int
    waiting: int
    capacity: int = Field(
        description="Requests that may wait behind the running ones; beyond: 429."
    )
    concurrency: int = Field(
        1, description="Requests that may generate at once (1: the local engine)."
    )


class Health(BaseModel):
    status: Literal["ok"]
    model_loaded: bool
    state: Literal["not_loaded", "loading", "ready"]


ModelStatus.model_rebuild()
