"""The one error shape of the API and the mapping from engine errors to HTTP status codes.

Every failure answers ``{"status": "error", "message": ...}``. Expected failures get a specific
code; 500 is kept for bugs (and still uses the shape, without leaking a traceback).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Optional

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from core.errors import (
    DeepShivaError,
    InvalidParameter,
    ModelNotFound,
    ModelTooLarge,
    ModelNotLoaded,
    UpstreamError,
    is_out_of_memory,
)

from .model_manager import ModelStillLoading

# Status codes chosen for the API's error cases (documented in docs/API.md, server/README.md and /openapi.json).
NO_MODEL_STATUS = 503  # generate before any model is loaded: the service is not ready yet
OOM_STATUS = 507  # out of memory: the request was too large for this machine right now
LOAD_FAILED_STATUS = 422  # the model exists but its files could not be loaded


class ApiError(Exception):
    """An expected failure with its HTTP status; raised anywhere in a request, answered as JSON."""

    def __init__(self, status: int, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def from_engine(exc: BaseException, *, loading: bool = False) -> Optional[ApiError]:
    """Translate an engine exception to an ApiError, or None when it is a bug (-> 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidParameter):
        return ApiError(400, str(exc))
    if isinstance(exc, ModelNotFound):
        return ApiError(404, str(exc))
    if isinstance(exc, UpstreamError):  # the serving engine behind us (backend openai) failed
        return ApiError(
            exc.status,
            f"Upstream error: {exc}",
            {"Retry-After": "2"} if exc.status == 503 else None,
        )
    if isinstance(exc, ModelStillLoading):  # the server started moments ago: no action needed
        return ApiError(
            NO_MODEL_STATUS,
            f"The model is not ready yet: {exc}; retry in a few seconds.",
            {"Retry-After": "2"},
        )
    if isinstance(exc, ModelNotLoaded):
        return ApiError(
            NO_MODEL_STATUS,
            f"No model is loaded: {exc}. POST /load_model first.",
            {"Retry-After": "5"},
        )
    if isinstance(exc, ModelTooLarge):  # refused before anything was allocated
        return ApiError(
            OOM_STATUS,
            f"{exc}. Nothing was loaded: the server is still up, serving the model it served.",
        )
    if is_out_of_memory(exc):
        action = "loading the model" if loading else "generating"
        return ApiError(
            OOM_STATUS,
            f"Out of memory while {action}: {exc}. The server is still up; "
            "try a smaller max_length, a shorter prompt or a smaller model.",
        )
    if isinstance(exc, DeepShivaError) or loading:
        # A load that fails for any reason (broken files, bad config) is the model's fault, not ours.
        return ApiError(LOAD_FAILED_STATUS if loading else 500, f"{type(exc).__name__}: {exc}")
    return None


def not_found_message(name: str) -> str:
    """The one answer for every model that cannot be found: the same whether a path exists, is a
    file or a directory without config.json, so /load_model cannot map the server's disk."""
    return (
        f"model {name!r} not found: it is not a shipped model, a readable model directory "
        "(with config.json) or a hub model this server can get (cached, or downloadable when online)"
    )


def generic_not_found(factory: Callable[[str], Any]) -> Callable[[str], Any]:
    """Wrap an engine factory so a ModelNotFound says only :func:`not_found_message` (the answer
    and /model_status's last_load_error); the detail goes to the server log."""

    @functools.wraps(factory)
    def build(name: str):
        try:
            return factory(name)
        except ModelNotFound as exc:
            logging.getLogger("deepshiva.server").info("model %r not found: %s", name, exc)
            raise ModelNotFound(not_found_message(name)) from None

    return build


def error_body(message: str) -> dict:
    return {"status": "error", "message": message}


def error_response(status: int, message: str, headers: Optional[dict] = None):
    response = jsonify(error_body(message))
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register_error_handlers(app: Flask) -> None:
    """Make every error, including Flask's own 404/405/413 and unexpected bugs, use the shape."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        message = exc.description or exc.name
        if exc.code == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"Request body too large: the limit is {limit} bytes."
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return error_response(exc.code or 500, message, headers)

    @app.errorhandler(Exception)
    def _bug(exc: Exception):
        mapped = from_engine(exc)
        if mapped is not None:
            return error_response(mapped.status, mapped.message, mapped.headers)
        app.logger.exception("unhandled error")
        return error_response(
            500, f"Internal server error ({type(exc).__name__}); see the server log."
        )
