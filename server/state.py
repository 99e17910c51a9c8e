"""The per-app objects the views share, stored in ``app.extensions['deepshiva']``."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, request

from .admission import AdmissionQueue
from .config import ServerConfig
from .disconnect import NEVER_GONE
from .errors import ApiError
from .model_manager import ModelManager


@dataclass
class AppState:
    config: ServerConfig
    manager: ModelManager
    queue: AdmissionQueue
    metrics: Any = None
    # The last finished generations (path, finish_reason, tokens, when a disconnect was noticed):
    # what tests and operators use to see that a vanished client really stopped the model.
    recent: deque = field(default_factory=lambda: deque(maxlen=200))


def state() -> AppState:
    return current_app.extensions["deepshiva"]


def client_gone():
    """The request's 'has the client hung up?' callable (never true outside waitress)."""
    return request.environ.get("waitress.client_disconnected") or NEVER_GONE


def json_body() -> dict:
    """The request body as a JSON object; an empty body is ``{}``; a body that is not
    ``application/json`` is a 415; anything else is a 400."""
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    if not raw.strip():
        return {}
    if request.mimetype != "application/json":
        # A web page can POST text/plain or a form to 127.0.0.1 without a CORS preflight;
        # JSON needs one, and the server never grants it.
        sent = request.mimetype or "none"
        raise ApiError(
            415, f"Unsupported Content-Type {sent[:100]!r}: send the body as application/json."
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Invalid JSON in the request body: {exc}.") from None
    except RecursionError:  # nesting deeper than the parser's stack: not a request we serve
        raise ApiError(400, "Invalid JSON in the request body: nested too deeply.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid request: the body must be a JSON object.")
    return body
