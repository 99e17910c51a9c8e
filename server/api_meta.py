"""GET / (what this server is and where to look next), GET /health (liveness, no auth),
GET /openapi.json and GET /metrics (Prometheus)."""

from __future__ import annotations

from importlib import metadata

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .errors import NO_MODEL_STATUS, error_response
from .openapi import IndexLinks, ServiceIndex, openapi_document
from .state import state

bp = Blueprint("meta", __name__)

# Where the API is described in words: shipped with the source, not served (a wheel has no docs/).
DOCS = "docs/API.md in the DeepShiva source tree"


def package_version() -> str:
    """The installed deepshiva version, or "unknown" when running from an uninstalled checkout."""
    try:
        return metadata.version("deepshiva")
    except metadata.PackageNotFoundError:
        return "unknown"


@bp.get("/")
def index():
    """A person who opens the server's address in a browser learns what answers there."""
    status = state().manager.status()
    links = IndexLinks(health="/health", openapi="/openapi.json", metrics="/metrics", docs=DOCS)
    index = ServiceIndex(
        name="DeepShiva",
        description="Self-hosted code-completion API",
        version=package_version(),
        model_name=status["model_name"],
        state=status["state"],
        links=links,
    )
    return jsonify(index.model_dump())


@bp.get("/health")
def health():
    """200 while the server can answer (with or without a model: POST /load_model works); 503 while
    the first model loads, so a readiness probe waits for it (as llama.cpp's and TGI's do)."""
    manager = state().manager
    status = manager.status()
    if status["state"] == "loading" and not status["model_loaded"]:
        return error_response(
            NO_MODEL_STATUS,
            f"The model {status['loading_model_name']} is still loading; retry in a few seconds.",
            {"Retry-After": "2"},
        )
    return jsonify(
        {"status": "ok", "model_loaded": status["model_loaded"], "state": status["state"]}
    )


@bp.get("/openapi.json")
def openapi():
    # The address this client reached (the real port, or a proxy's), not a fixed 5005; the
    # largest max_length this server accepts now (its --max-length-limit, or the model's context).
    app_state = state()
    limits = [app_state.config.max_length_limit, app_state.manager.status().get("context_length")]
    max_length = min(limit for limit in limits if isinstance(limit, int) and limit > 0)
    return jsonify(
        openapi_document(
            request.host_url.rstrip("/"), app_state.config.api_key is not None, max_length
        )
    )


@bp.get("/metrics")
def metrics():
    return Response(generate_latest(state().metrics.registry), mimetype=CONTENT_TYPE_LATEST)
