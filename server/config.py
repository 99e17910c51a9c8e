"""Server settings: one pydantic model read from arguments and ``DEEPSHIVA_*`` environment variables.

Defaults are the safe ones: loopback only, no remote code, the shipped model. Listening on any
other address needs ``allow_remote`` so a server is never exposed by accident.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.shipped import DEFAULT_MODEL  # noqa: F401 - also the CLI's and /load_model's default


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServerConfig(BaseSettings):
    """Everything the HTTP server can be told; environment variables use the ``DEEPSHIVA_`` prefix."""

    model_config = SettingsConfigDict(
        env_prefix="DEEPSHIVA_", extra="ignore", validate_default=True
    )

    host: str = "127.0.0.1"
    port: int = Field(5005, ge=0, le=65535)
    model: Optional[str] = Field(
        DEFAULT_MODEL, description="model preloaded at start; empty or 'none' = none"
    )
    api_key: Optional[SecretStr] = None
    queue_size: int = Field(
        8, ge=0, le=1024, description="requests allowed to wait behind the running one"
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest accepted request body")
    max_length_limit: int = Field(
        4096, ge=1, description="largest max_length a request may ask for"
    )
    receive_timeout: float = Field(
        30.0, gt=0, le=3600, description="seconds a client may take to send a whole request"
    )
    allowed_models: Annotated[Optional[list[str]], NoDecode] = Field(
        None, description="names or directories /load_model may load; unset = any (loopback only)"
    )
    allow_remote: bool = False
    allowed_hosts: Annotated[Optional[list[str]], NoDecode] = Field(
        None,
        description="extra names the Host header may carry (a proxy's, a LAN name); the listen "
        "address and loopback names are always accepted",
    )
    trust_remote_code: bool = False
    device: str = "auto"
    torch_dtype: Optional[str] = None
    load_in_8bit: bool = False
    int8_decode: bool = (
        False  # CPU: decode through int8 weight copies (the older name of decode_weights=int8)
    )
    # CPU: the bytes a decode step reads (core.compact_weights); auto = the checkpoint's own 16-bit
    # format where that is exact, else fp32.
    decode_weights: Literal["auto", "fp32", "fp16", "bf16", "int8", "int4"] = "auto"
    fim_order: Literal["auto", "psm", "spm"] = "auto"  # FIM prompt order; auto = the model's own
    threads: int = Field(0, ge=0, description="WSGI worker threads; 0 = queue_size + running + 3")
    # Where completions come from: this process's own engine (one generation at a time), or an
    # OpenAI-compatible server that batches many (vLLM, llama.cpp's server...; core/upstream.py).
    backend: Literal["local", "openai"] = "local"
    upstream: Optional[str] = Field(
        None, description="the OpenAI-compatible server's URL (backend openai)"
    )
    upstream_model: Optional[str] = Field(
        None, description="which of the upstream's models; unset = its first"
    )
    upstream_key: Optional[SecretStr] = None
    upstream_tokenizer: Optional[str] = Field(
        None, description="tokenizer directory or id; unset = the model's"
    )
    upstream_wait_s: float = Field(
        300.0, ge=0, description="how long the first load waits for the upstream"
    )
    concurrency: int = Field(
        16, ge=1, le=4096, description="backend openai: requests generating at once"
    )
    log_level: str = "INFO"

    @field_validator("model", mode="before")
    @classmethod
    def _no_model(cls, value):
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value):
        if isinstance(value, str) and not value:
            return None
        return value

    @field_validator("allowed_models", "allowed_hosts", mode="before")
    @classmethod
    def _split_lists(cls, value):
        """Accept a list or a comma-separated string (the form an environment variable takes)."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if value is None:
            return None
        return [item for item in value if item]

    @model_validator(mode="after")
    def _upstream_settings(self):
        if self.backend == "openai":
            if not self.upstream:
                raise ValueError(
                    "backend openai needs --upstream URL (DEEPSHIVA_UPSTREAM), e.g. http://127.0.0.1:8000"
                )
            if (
                "model" not in self.model_fields_set
            ):  # the shipped model's name means nothing upstream
                self.model = self.upstream_model or ""
        return self

    @property
    def running_limit(self) -> int:
        """Requests admitted to generate at once: the local engine runs one at a time."""
        return self.concurrency if self.backend == "openai" else 1

    @property
    def default_model(self) -> str:
        """What POST /load_model loads without a model_name ("" = the upstream's first model)."""
        return DEFAULT_MODEL if self.backend == "local" else (self.upstream_model or "")

    @model_validator(mode="after")
    def _remote_needs_flag(self):
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is reachable from other machines; pass --allow-remote "
                "(DEEPSHIVA_ALLOW_REMOTE=1) to listen beyond loopback"
            )
        return self

    @property
    def worker_threads(self) -> int:
        """Threads for the WSGI server: enough that a full queue never blocks /health or a 429."""
        return self.threads or self.queue_size + self.running_limit + 3

    def model_allowed(self, name: str) -> bool:
        """Whether /load_model may load ``name``: on the allow-list, or inside an allowed directory."""
        if self.allowed_models is None:
            return True
        if name in self.allowed_models or name == self.model:
            return True
        candidate = _resolved(name)
        if candidate is None:
            return False
        for entry in self.allowed_models:
            root = _resolved(entry)
            if root is not None and (candidate == root or root in candidate.parents):
                return True
        return False


def _resolved(name: str) -> Optional[Path]:
    """The real path for a name that is a filesystem path, else None."""
    if not (os.sep in name or name.startswith(".")) or not os.path.exists(name):
        return None
    return Path(name).resolve()
