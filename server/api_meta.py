"""GET /health (liveness, no auth), GET /openapi.json and GET /metrics (Prometheus)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .openapi import openapi_document
from .state import state

bp = Blueprint("meta", __name__)


@bp.get("/health")
def health():
    manager = state().manager
    return jsonify({"status": "ok", "model_loaded": manager.loaded, "state": manager.state})


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


@bp.get("/metrics")
def metrics():
    return Response(generate_latest(state().metrics.registry), mimetype=CONTENT_TYPE_LATEST)
