"""HTTP client for the DeepShiva API (httpx + httpx-sse).

Every failure is turned into an :class:`ApiError` carrying the editor-facing status it implies
(unreachable, no model, unauthorized, ...), so callers never inspect httpx exceptions. Streams
are async context managers: leaving the ``async with`` (normally, by cancellation or on a time
cap) closes the HTTP response, and the server stops generating.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from .options import Options
from .status import State

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A request to the API failed; ``state`` is the status the editor should see (None when the
    failure is about this one request, e.g. a 400, and says nothing about the API's health)."""

    def __init__(self, message: str, state: State | None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.state = state
        self.status_code = status_code


def _state_for(status_code: int, message: str) -> State | None:
    text = message.lower()
    if status_code in (401, 403):
        return State.UNAUTHORIZED
    if status_code == 503:
        if "loading" in text:
            return State.LOADING
        return State.NO_MODEL
    if status_code == 429:
        return State.SLOW
    if status_code >= 500:
        return State.UNREACHABLE
    return None


def _error_message(body: bytes, status_code: int) -> str:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
    except (ValueError, UnicodeDecodeError):
        pass
    return f"HTTP {status_code}"


def _raise_for_response(status_code: int, body: bytes) -> None:
    message = _error_message(body, status_code)
    raise ApiError(message, _state_for(status_code, message), status_code)


class ApiClient:
    """One connection pool to the API, rebuilt when the URL, key or timeouts change."""

    def __init__(self, options: Options):
        self.options = options
        headers = {"User-Agent": "deepshiva-lsp"}
        if options.api_key:
            headers["Authorization"] = f"Bearer {options.api_key}"
        timeout = httpx.Timeout(
            connect=options.connect_timeout_ms / 1000,
            read=options.request_timeout_ms / 1000 + 5,
            write=10.0,
            pool=options.connect_timeout_ms / 1000 + 5,
        )
        self._http = httpx.AsyncClient(
            base_url=options.api_url.rstrip("/"), headers=headers, timeout=timeout, trust_env=False
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _json(self, method: str, path: str, *, timeout: float | None = None, **kw) -> dict:
        try:
            extra = {} if timeout is None else {"timeout": timeout}
            response = await self._http.request(method, path, **kw, **extra)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.options.api_url) from exc
        if response.status_code >= 400:
            _raise_for_response(response.status_code, response.content)
        try:
            data = response.json()
        except ValueError as exc:
            raise ApiError(f"{path}: the answer is not JSON", State.UNREACHABLE) from exc
        return data if isinstance(data, dict) else {"value": data}

    async def health(self) -> dict:
        """GET /health (raises ApiError when not healthy)."""
        return await self._json(
            "GET", "/health", timeout=self.options.connect_timeout_ms / 1000 + 2
        )

    async def model_status(self) -> dict:
        """GET /model_status."""
        return await self._json("GET", "/model_status")

    async def load_model(self, model_name: str | None) -> dict:
        """POST /load_model (slow: the configured load timeout applies)."""
        body = {} if not model_name else {"model_name": model_name}
        return await self._json(
            "POST", "/load_model", json=body, timeout=self.options.load_timeout_ms / 1000
        )

    async def generate(self, body: dict[str, Any]) -> tuple[str, str | None, str | None]:
        """POST /generate: the whole completion at once, its finish_reason and the model's name."""
        data = await self._json("POST", "/generate", json=body)
        return str(data.get("response") or ""), data.get("finish_reason"), data.get("model_name")

    @asynccontextmanager
    async def stream(self, body: dict[str, Any]) -> AsyncIterator["Stream"]:
        """POST /stream; yields a :class:`Stream`. Leaving the block closes the connection,
        which is how an unfinished generation is stopped."""
        try:
            async with aconnect_sse(self._http, "POST", "/stream", json=body) as source:
                response = source.response
                if response.status_code >= 400:
                    _raise_for_response(response.status_code, await response.aread())
                yield Stream(source)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.options.api_url) from exc


class Stream:
    """The text chunks of one /stream answer; ``finish_reason`` is known after the last one
    ("stop": the model ended, "length": max_length was reached), as is ``model_name``."""

    def __init__(self, source) -> None:
        self._source = source
        self.finish_reason: str | None = None
        self.model_name: str | None = None

    async def chunks(self) -> AsyncIterator[str]:
        try:
            async for event in self._source.aiter_sse():
                data = _json_or_none(event.data)
                if event.event == "error":
                    message = _event_message(event.data)
                    code = data.get("code") if isinstance(data, dict) else None
                    state = _state_for(code, message) if isinstance(code, int) else None
                    raise ApiError(message, state, code if isinstance(code, int) else None)
                if event.event == "done":
                    if isinstance(data, dict):
                        self.finish_reason = data.get("finish_reason")
                        self.model_name = data.get("model_name")
                    return
                text = data.get("text") if isinstance(data, dict) else None
                if text:
                    yield str(text)
        except SSEError as exc:
            raise ApiError(f"/stream is not an event stream: {exc}", State.UNREACHABLE) from exc


def _json_or_none(data: str) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


def _event_message(data: str) -> str:
    try:
        parsed = json.loads(data)
        if isinstance(parsed, dict) and parsed.get("message"):
            return str(parsed["message"])
    except ValueError:
        pass
    return data or "generation failed"


def _transport_error(exc: httpx.TransportError, url: str) -> ApiError:
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return ApiError(f"DeepShiva API not reachable at {url}", State.UNREACHABLE)
    if isinstance(exc, httpx.TimeoutException):
        return ApiError(f"DeepShiva API at {url} timed out", State.SLOW)
    return ApiError(
        f"DeepShiva API at {url}: connection lost ({type(exc).__name__})", State.UNREACHABLE
    )
