"""Optional bearer-token check: with an API key configured, every path but /health needs it."""

from __future__ import annotations

import hmac

from flask import Flask, request

from .errors import error_response

OPEN_PATHS = {"/health"}


def install_auth(app: Flask, api_key: str | None) -> None:
    if not api_key:
        return
    expected = api_key.encode("utf-8")

    @app.before_request
    def _require_key():
        if request.path in OPEN_PATHS:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        # WSGI hands header values over decoded as latin-1: encoding back gives the bytes the
        # client sent, so a UTF-8 key matches. compare_digest takes the same time wherever the
        # strings differ: no timing oracle.
        sent = token.strip().encode("latin-1", "replace")
        if scheme.lower() == "bearer" and hmac.compare_digest(sent, expected):
            return None
        return error_response(
            401,
            "Missing or invalid API key: send 'Authorization: Bearer <key>'.",
            {"WWW-Authenticate": 'Bearer realm="deepshiva"'},
        )
