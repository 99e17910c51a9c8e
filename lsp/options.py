"""The language server's settings: one typed, fully defaulted model.

Editors send settings as camelCase JSON (``initializationOptions``, ``workspace/configuration``
section ``deepshiva``, ``workspace/didChangeConfiguration``). Every field has a default, so an
editor that sends nothing gets a working server, and a bad value is reported and ignored instead
of taking the server down.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

DEFAULT_API_URL = "http://127.0.0.1:5005"
SECTION = "deepshiva"


class Multiline(str, Enum):
    """When a suggestion may span several lines."""

    AUTO = "auto"  # single line mid-line or in a comment, else up to the end of the block
    ALWAYS = "always"  # multi-line wherever the cursor is (still stops at the end of the block)
    NEVER = "never"  # always a single line


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class ContextChars(_Model):
    """How much text around the cursor is sent; the API trims to exact tokens."""

    before: int = Field(3000, ge=0, le=200_000)
    after: int = Field(1000, ge=0, le=200_000)


class ContextSource(_Model):
    """One source of context from other files: on or off, and its share in characters and items."""

    enabled: bool = True
    max_chars: int = Field(800, ge=0, le=200_000)
    max_items: int = Field(3, ge=0, le=32)


class ProjectContext(_Model):
    """Context from the rest of the project, sent with each request (lsp/context.py).

    ``openFiles``: snippets of the other open documents most like the code around the cursor;
    ``recentEdits``: the lines last edited in other documents; ``imports``: the definitions of
    the names the current file imports from files under the workspace folders. ``maxChars``
    caps them together (the defaults fit the shipped model's 1024-token context; the API keeps
    context within half the prompt either way)."""

    enabled: bool = True
    max_chars: int = Field(1800, ge=0, le=262_144)
    open_files: ContextSource = Field(
        default_factory=lambda: ContextSource(max_chars=800, max_items=3)
    )
    recent_edits: ContextSource = Field(
        default_factory=lambda: ContextSource(max_chars=400, max_items=2)
    )
    imports: ContextSource = Field(
        default_factory=lambda: ContextSource(max_chars=1200, max_items=6)
    )


class Options(_Model):
    """All settings of deepshiva-lsp, with their defaults."""

    enabled: bool = True  # master switch for suggestions (commands keep working)
    api_url: str = DEFAULT_API_URL
    api_key: str | None = None
    model: str | None = None  # model loaded by `deepshiva.loadModel` when no name is given
    max_tokens: int = Field(64, ge=1, le=4096)
    temperature: float = Field(
        0.0, ge=0.0, le=2.0
    )  # greedy: stable ghost text, cache hits, prompt lookup
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    stream: bool = True  # POST /stream (stops the model early) rather than /generate
    debounce_ms: int = Field(120, ge=0, le=10_000)  # the most; none for explicitly invoked requests
    adaptive_debounce: bool = (
        True  # no wait while answers beat typing, else at most the answer time
    )
    enabled_languages: list[str] = Field(default_factory=lambda: ["*"])
    disabled_languages: list[str] = Field(default_factory=list)
    context_chars: ContextChars = Field(default_factory=ContextChars)
    project_context: ProjectContext = Field(default_factory=ProjectContext)
    multiline: Multiline = Multiline.AUTO
    max_lines: int = Field(12, ge=1, le=500)
    inline_completion_enabled: bool = True
    # textDocument/completion fallback; None: on only for clients without inline completion
    completion_enabled: bool | None = None
    request_timeout_ms: int = Field(4000, ge=50, le=600_000)  # time cap of one suggestion
    connect_timeout_ms: int = Field(1000, ge=10, le=60_000)
    slow_threshold_ms: int = Field(2500, ge=1, le=600_000)  # slower than this: status "slow"
    health_poll_ms: int = Field(3000, ge=100, le=600_000)  # retry interval while the API is down
    load_timeout_ms: int = Field(600_000, ge=1000)  # deepshiva.loadModel may take minutes
    cache_size: int = Field(100, ge=0, le=10_000)
    prefetch_on_accept: bool = True  # compute the next suggestion as soon as one is accepted
    show_messages: bool = True  # one window/showMessage per change of status

    def language_enabled(self, language_id: str | None) -> bool:
        """True when suggestions are wanted for this languageId."""
        lang = (language_id or "").lower()
        if lang in {x.lower() for x in self.disabled_languages}:
            return False
        enabled = {x.lower() for x in self.enabled_languages}
        return "*" in enabled or lang in enabled


def _unwrap(data: Any) -> dict[str, Any]:
    """Accept either the settings themselves or a ``{"deepshiva": {...}}`` wrapper."""
    if not isinstance(data, dict):
        return {}
    inner = data.get(SECTION)
    if isinstance(inner, dict):
        return inner
    return data


def merge(base: Options, data: Any) -> tuple[Options, list[str]]:
    """Return ``base`` updated with the settings in ``data``, and one message per rejected value.

    Invalid values are dropped one by one so that a single typo does not discard the rest.
    """
    # null means "not set" (editors send unset settings as null), except for the key
    incoming = {
        to_camel(str(k)): v
        for k, v in _unwrap(data).items()
        if v is not None or to_camel(str(k)) == "apiKey"
    }
    if not incoming:
        return base, []
    current = base.model_dump(by_alias=True)
    problems: list[str] = []
    for _ in range(len(incoming) + 1):
        candidate = {**current, **incoming}
        if isinstance(current.get("contextChars"), dict) and isinstance(
            incoming.get("contextChars"), dict
        ):
            candidate["contextChars"] = {**current["contextChars"], **incoming["contextChars"]}
        if isinstance(
            incoming.get("projectContext"), dict
        ):  # nested: a partial setting keeps the rest
            candidate["projectContext"] = _deep_merge(
                current["projectContext"], incoming["projectContext"]
            )
        try:
            return Options.model_validate(candidate), problems
        except ValidationError as exc:
            bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
            for err in exc.errors():
                where = ".".join(str(x) for x in err["loc"])
                problems.append(f"setting {where!r} ignored: {err['msg']}")
            removed = {key for key in incoming if key in bad}
            if not removed:
                break
            incoming = {k: v for k, v in incoming.items() if k not in removed}
    return base, problems


def _deep_merge(base: dict, update: dict) -> dict:
    """``base`` with ``update``'s keys (camelCase or snake_case) laid over it, nested dicts merged."""
    merged = dict(base)
    for key, value in update.items():
        key = to_camel(str(key))
        merged[key] = (
            _deep_merge(merged[key], value)
            if isinstance(value, dict) and isinstance(merged.get(key), dict)
            else value
        )
    return merged
