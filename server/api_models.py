"""POST /load_model and GET /model_status."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from .errors import ApiError, from_engine
from .schemas import LoadModelRequest, parse
from .state import json_body, state

bp = Blueprint("models", __name__)
log = logging.getLogger("deepshiva.server")


@bp.post("/load_model")
def load_model():
    app_state = state()
    req = parse(LoadModelRequest, json_body())
    name = app_state.config.default_model if req.model_name is None else req.model_name
    if name and not app_state.config.model_allowed(name):
        raise ApiError(
            403, f"Model {name!r} is not in this server's allow-list (--allowed-models)."
        )
    try:
        engine, load_ms = app_state.manager.load(name)
    except Exception as exc:
        mapped = from_engine(exc, loading=True)
        log.warning("loading %r failed: %s: %s", name, type(exc).__name__, exc)
        raise mapped from exc
    return jsonify(
        {
            "status": "success",
            "message": f"Model {name} loaded successfully",
            "model_name": engine.model_name,
            "load_ms": round(load_ms, 1),
        }
    )


@bp.get("/model_status")
def model_status():
    app_state = state()
    return jsonify(
        {"status": "success", **app_state.manager.status(), "queue": app_state.queue.snapshot()}
    )
