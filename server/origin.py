"""Refuse requests a web page could have made: a foreign Host (DNS rebinding) or Origin.

A page on any site can make the browser send requests to 127.0.0.1; with DNS rebinding it can
also read the answers, but then the Host header carries the page's own name. Unless remote access
was allowed, the server answers only to the address it listens on, loopback names and the names
the operator listed (``allowed_hosts``); a request with an ``Origin`` (browsers add it to
cross-site requests) must name one of those too. The other half, refusing POST bodies that are
not ``application/json`` (a page can send those without a CORS preflight), is in ``state.json_body``.
"""

from __future__ import annotations

import ipaddress
from typing import Optional
from urllib.parse import urlsplit

from flask import Flask, request

from .config import ServerConfig
from .errors import error_response

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_names(config: ServerConfig) -> Optional[set[str]]:
    """The host names requests may carry; None = any (remote access allowed, no list given)."""
    if config.allow_remote and not config.allowed_hosts:
        return None
    names = {config.host.lower().strip("[]"), *LOOPBACK_NAMES}
    names.update(name.lower().strip("[]") for name in config.allowed_hosts or ())
    return names


def host_name(value: str) -> Optional[str]:
    """The lower-case name of ``host[:port]`` or a URL (brackets of IPv6 removed); None if unparsable."""
    if "://" not in value:
        value = "//" + value
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        return None
    return parts.hostname


def name_allowed(name: Optional[str], names: set[str]) -> bool:
    if not name:
        return False
    if name in names:
        return True
    try:  # any loopback address literal (127.0.0.2 ...) is this machine: no name to rebind
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def install_origin_guard(app: Flask, config: ServerConfig) -> None:
    names = allowed_names(config)
    if names is None:
        return

    @app.before_request
    def _same_origin_only():
        host = request.headers.get("Host", "")
        if not name_allowed(host_name(host), names):
            return error_response(
                403,
                f"Host {host[:100]!r} is not a name this server answers to (it answers to its listen "
                "address and loopback names); add it with --allowed-hosts (DEEPSHIVA_ALLOWED_HOSTS).",
            )
        origin = request.headers.get("Origin")
        if origin is not None and not name_allowed(
            host_name(origin) if origin != "null" else None, names
        ):
            return error_response(
                403,
                f"Origin {origin[:100]!r} is not allowed: web pages may not use this API "
                "(add its host with --allowed-hosts if it must).",
            )
        return None
