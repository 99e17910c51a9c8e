"""The Flask application factory."""

from __future__ import annotations

from typing import Any, Callable, Optional

from flask import Flask

from .admission import AdmissionQueue
from .auth import install_auth
from .config import ServerConfig
from .errors import generic_not_found, register_error_handlers
from .memory import TrimAfterLargeRequests
from .model_manager import ModelManager
from .observability import AccessLog, Metrics
from .origin import install_origin_guard
from . import api_generation, api_meta, api_models
from .state import AppState


def default_factory(config: ServerConfig) -> Callable[[str], Any]:
    """Build engines with the real core.OptimizedLLM and the server's load options (or, with
    backend openai, core.upstream.UpstreamEngine for one of the upstream server's models)."""
    if config.backend == "openai":
        return upstream_factory(config)

    def build(name: str):
        from core import OptimizedLLM  # imported on first load: torch is slow to import

        engine = OptimizedLLM(
            name,
            device=config.device,
            torch_dtype=config.torch_dtype,
            load_in_8bit=config.load_in_8bit,
            trust_remote_code=config.trust_remote_code,
            fim_order=config.fim_order,
            decode_weights=config.decode_weights,
            cpu_threads=config.cpu_threads,
        )
        # Pay for lazy set-up (token tables, first allocations) now, not in the first user's request.
        engine.warmup()
        return engine

    return build


def upstream_factory(config: ServerConfig) -> Callable[[str], Any]:
    """Engines for the upstream's models. The first load waits for the upstream to come up (it is
    often started beside this server and takes a minute); later loads answer at once."""
    first = {"wait_s": config.upstream_wait_s}

    def build(name: str):
        from core.upstream import UpstreamEngine

        wait_s, first["wait_s"] = first["wait_s"], 0.0
        key = config.upstream_key.get_secret_value() if config.upstream_key else None
        return UpstreamEngine(
            config.upstream,
            name or None,
            api_key=key,
            tokenizer=config.upstream_tokenizer,
            fim_order=config.fim_order,
            concurrency=config.concurrency,
            wait_s=wait_s,
            trust_remote_code=config.trust_remote_code,
        )

    return build


def create_app(
    config: Optional[ServerConfig] = None,
    engine: Any = None,
    *,
    engine_factory: Optional[Callable[[str], Any]] = None,
) -> Flask:
    """A ready WSGI app. ``engine`` is served from the start (else POST /load_model first);
    ``engine_factory(name)`` builds engines for /load_model (default: core.OptimizedLLM).
    The app never loads a model by itself: the CLI preloads ``config.model``."""
    config = config or ServerConfig()
    app = Flask("deepshiva")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False
    factory = engine_factory or default_factory(config)
    # A local name's not-found reads the same for every path (no map of the disk); an upstream's
    # names its served models instead, which its own /v1/models lists to anyone anyway.
    if config.backend != "openai":
        factory = generic_not_found(factory)
    manager = ModelManager(factory, engine)
    app_state = AppState(
        config=config,
        manager=manager,
        queue=AdmissionQueue(config.queue_size, running_limit=config.running_limit),
    )
    app_state.metrics = Metrics(app_state.queue, manager)
    app.extensions["deepshiva"] = app_state
    key = config.api_key.get_secret_value() if config.api_key else None
    install_origin_guard(app, config)  # before the key check: a foreign page learns nothing
    install_auth(app, key)
    register_error_handlers(app)
    for blueprint in (api_generation.bp, api_models.bp, api_meta.bp):
        app.register_blueprint(blueprint)
    app.wsgi_app = TrimAfterLargeRequests(AccessLog(app.wsgi_app, app_state.metrics))
    return app
