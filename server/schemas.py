"""Request and response shapes of the API, as pydantic models.

The generation body is core's ``GenerationRequest`` (core/request.py: every parameter's default,
type, range and meaning, written there once) plus ``echo``, so the engine, the 400 messages and
the OpenAPI document agree by construction. Validation is strict (``"5"`` is not an int, ``true``
is not a number) and complete before a request joins the queue; a failure becomes one 400
message that names the field and its allowed range.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.repo_context import (
    MAX_CONTEXT_ITEMS,
    MAX_CONTEXT_PATH_CHARS,
    MAX_CONTEXT_TEXT_CHARS,
    MAX_CONTEXT_TOTAL_CHARS,
)
from core.request import (
    EMPTY_PROMPT,
    LONE_SURROGATE,
    GenerationRequest,
    allowed,
    first_error,
    item_shown,
    reject_lone_surrogates,
    shown,
)

from .errors import ApiError


class _Request(BaseModel):
    # Unknown fields are ignored so clients written for later versions keep working.
    model_config = ConfigDict(strict=True, extra="ignore")

    @field_validator("*")
    @classmethod
    def _text_only(cls, value):
        return reject_lone_surrogates(value)


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


# An empty prompt is fill-in-the-middle only: it needs a non-empty suffix (core/request.py).
PROMPT_OR_SUFFIX = [
    {"properties": {"prompt": {"minLength": 1}}},
    {"properties": {"suffix": {"type": "string", "minLength": 1}}, "required": ["suffix"]},
]


class GenerationRequestBody(GenerationRequest):
    """Body of POST /generate and POST /stream: a GenerationRequest (JSON names: ``stop`` for
    ``stop_sequences``, ``context`` items as objects) plus ``echo``."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"anyOf": PROMPT_OR_SUFFIX})

    echo: bool = Field(
        False, description="Prepend the prompt to `response` (the completion alone by default)."
    )
    context: Optional[Annotated[list[ContextItem], Field(max_length=MAX_CONTEXT_ITEMS)]] = Field(
        None,
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

    def engine_kwargs(self) -> dict:
        """The keyword arguments of ``OptimizedLLM.complete``/``stream`` for this body."""
        return {
            name: getattr(self, name)
            for name in GenerationRequest.model_fields
            if name not in ("prompt", "context")
        } | {"context": [item.model_dump() for item in self.context] if self.context else None}


class LoadModelRequest(_Request):
    """Body of POST /load_model."""

    model_name: Optional[str] = Field(
        None, min_length=1, description="Model name or local directory; default: the shipped model."
    )


# Allowed values, in words, for each JSON field: used to build the 400 message. The generation
# parameters' words come from core's GenerationRequest (``{max_length_limit}``: the server's).
ALLOWED = {
    **{
        field.alias or name: allowed(name, "{max_length_limit}")
        for name, field in GenerationRequest.model_fields.items()
    },
    "echo": "a boolean",
    "model_name": "a non-empty string (model name or local directory) or null",
    "context": allowed("context") + ", or null",
    "path": f"a one-line string of 1 to {MAX_CONTEXT_PATH_CHARS} characters",
    "text": f"a string of at most {MAX_CONTEXT_TEXT_CHARS} characters",
}


def parse(model: type[BaseModel], body: Any, **limits: Any) -> BaseModel:
    """Validate a JSON body against ``model``; raise ApiError(400) naming the first bad field.
    ``max_length_limit`` bounds a generation's max_length (an omitted one is capped at it)."""
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid request: the body must be a JSON object.")
    try:
        request = model.model_validate(body, context=limits)
    except ValidationError as exc:
        raise ApiError(400, _message(exc, body, limits)) from None
    total = sum(len(item.text) for item in getattr(request, "context", None) or ())
    if total > MAX_CONTEXT_TOTAL_CHARS:
        raise ApiError(
            400,
            f"Invalid 'context': its texts may hold at most {MAX_CONTEXT_TOTAL_CHARS} "
            f"characters in all (got {total}).",
        )
    return request


def _message(exc: ValidationError, body: dict, limits: dict) -> str:
    """The 400 message for a failed validation: the field, what it must be, what it got."""
    error = first_error(exc)
    if not error["loc"] and EMPTY_PROMPT in error["msg"]:
        return f"Invalid 'prompt': {EMPTY_PROMPT}."
    field = str(error["loc"][0]) if error["loc"] else "body"
    if field == "context" and len(error["loc"]) > 1:  # an item: name it, never echo its text
        return _context_item_error(error)
    words = ALLOWED.get(field, "a valid value").format(**limits)
    if error["type"] == "missing":
        return f"Missing required field '{field}': must be {words}."
    if LONE_SURROGATE in error["msg"] or error["type"] == "string_unicode":
        return f"Invalid '{field}': it {LONE_SURROGATE}."
    got = body.get(field)
    if field == "context" and isinstance(got, list):
        return f"Invalid 'context': must be {words} (got {len(got)} items)."
    shown_got = shown(got)
    if len(error["loc"]) > 1 and isinstance(error["loc"][1], int):  # one item of a list
        shown_got = f"{item_shown(error['input'])} at index {error['loc'][1]}"
    return f"Invalid '{field}': must be {words} (got {shown_got})."


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
        description="'on (how)': DeepShiva's logits processor in vLLM, else vLLM's structured "
        "outputs; 'off: why' where the upstream constrains nothing."
    )
    python_rules: str = Field(
        description="'on (how)' where vLLM runs DeepShiva's logits processor, else 'off: why'."
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
