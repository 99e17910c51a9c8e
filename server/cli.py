"""``deepshiva-server``: parse options, build the app, preload the model, serve on waitress.

The model loads in the background so /health answers at once; /model_status shows
``state: loading`` until it is ready, and a failed preload is logged and reported there.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import threading
from typing import get_args

from pydantic import ValidationError

from core.options import DecodeWeights, EngineOptions, FimOrder, variables

from .config import DEFAULT_MODEL, ServerConfig

log = logging.getLogger("deepshiva.server")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deepshiva-server",
        description="Serve DeepShiva's code-completion HTTP API. Every option can also be set with a "
        "DEEPSHIVA_<OPTION> environment variable (e.g. DEEPSHIVA_API_KEY).",
    )
    add = p.add_argument
    add("--host", help="address to listen on (default 127.0.0.1; others need --allow-remote)")
    add("--port", type=int, help="port (default 5005; 0 = any free port)")
    add(
        "--model",
        help=f"model name or directory to preload (default {DEFAULT_MODEL}; 'none' = none)",
    )
    add("--api-key", help="require 'Authorization: Bearer KEY' on every path but /health")
    add("--allow-remote", action="store_true", default=None, help="allow listening beyond loopback")
    add(
        "--allowed-hosts",
        help="comma-separated extra names the Host header may carry (default: the "
        "listen address and loopback names only; off with --allow-remote)",
    )
    add(
        "--allowed-models",
        help="comma-separated names/directories /load_model may load (default: any)",
    )
    add(
        "--trust-remote-code",
        action="store_true",
        default=None,
        help="let models run their own Python code (off by default: only for models you trust)",
    )
    add(
        "--queue-size", type=int, help="requests that may wait for the model before 429 (default 8)"
    )
    add("--max-body-bytes", type=int, help="largest request body (default 1 MiB)")
    add("--max-length-limit", type=int, help="largest max_length a request may ask (default 4096)")
    add(
        "--receive-timeout",
        type=float,
        help="seconds a client may take to send a whole request, headers and body (default 30)",
    )
    add("--device", help="auto, cpu, cuda or mps (default auto)")
    add("--dtype", dest="torch_dtype", help="bfloat16, float16, float32 or auto")
    add(
        "--load-in-8bit",
        action="store_true",
        default=None,
        help="int8 weights (needs bitsandbytes)",
    )
    add(
        "--decode-weights",
        choices=get_args(DecodeWeights),
        default=None,
        help="CPU, Llama models: weights a decode step reads. auto (default) = the checkpoint's own 16-bit "
        "format when it is stored so; fp16/bf16 halve the bytes (exact for a checkpoint "
        "stored that way), int8 quarters them (approximate), int4 takes 4.5 bits a weight "
        "(blocks of 32 with one fp16 scale, as llama.cpp's Q4_0; approximate)",
    )
    add(
        "--fim-order",
        choices=get_args(FimOrder),
        default=None,
        help="FIM prompt order: auto = the model's own (SPM lets a keystroke reuse the whole cache)",
    )
    add(
        "--backend",
        choices=["local", "openai"],
        default=None,
        help="local (default): this process's engine, one generation at a time; openai: an OpenAI-compatible "
        "server (vLLM, llama.cpp's server...) that batches many, DeepShiva building the prompts",
    )
    add("--upstream", help="backend openai: the server's URL, e.g. http://127.0.0.1:8000")
    add(
        "--upstream-model", help="backend openai: which of its models to serve (default: its first)"
    )
    add("--upstream-key", help="backend openai: its API key, sent as 'Authorization: Bearer KEY'")
    add(
        "--upstream-tokenizer",
        help="backend openai: tokenizer directory or id (default: the model's own)",
    )
    add(
        "--upstream-wait",
        dest="upstream_wait_s",
        type=float,
        help="backend openai: seconds the first load waits for the upstream to come up (default 300)",
    )
    add(
        "--concurrency",
        type=int,
        help="backend openai: requests generating at once, before the queue (default 16); local: always 1",
    )
    add(
        "--http-threads",
        type=int,
        help="WSGI worker threads (default and minimum: queue size + running requests + 3)",
    )
    add(
        "--cpu-threads",
        type=int,
        help="the engine's CPU threads for torch and OpenBLAS (default 1 for models under 64 MiB, "
        "else every core; DEEPSHIVA_CPU_THREADS, or its older name DEEPSHIVA_THREADS)",
    )
    add("--log-level", help="DEBUG, INFO, WARNING... (default INFO)")
    return p


def load_config(argv: list[str] | None = None) -> ServerConfig:
    args = vars(build_parser().parse_args(argv))
    given = {key: value for key, value in args.items() if value is not None}
    return ServerConfig(**given)


def main(argv: list[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ValidationError as exc:
        print(f"deepshiva-server: {setting_error(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from .app import create_app  # the engine and torch load only once the options are valid
    from .serve import make_server

    app = create_app(config)
    try:
        server = make_server(app, config)
    except OSError as exc:  # one line a person can act on, not waitress's traceback
        print(f"deepshiva-server: {bind_failure(exc, config)}", file=sys.stderr)
        return 1
    log.info(
        "DeepShiva API on http://%s:%s (auth %s, queue %d, backend %s)",
        config.host,
        server.effective_port,
        "on" if config.api_key else "off",
        config.queue_size,
        config.backend
        if config.backend == "local"
        else f"{config.upstream}, {config.concurrency} at once",
    )
    if config.model is not None:
        threading.Thread(
            target=_preload, args=(app, config.model), name="deepshiva-preload", daemon=True
        ).start()

    def _stop(signum, frame):  # SIGTERM ends like Ctrl-C: waitress stops its workers cleanly
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.task_dispatcher.shutdown(timeout=2)
        server.close()
    log.info("stopped")
    return 0


def setting_error(exc: ValidationError) -> str:
    """One line naming the bad setting (its flag and variable) and what is wrong with it."""
    error = exc.errors()[0]
    if not error["loc"]:  # a rule across settings: its message names them
        return error["msg"].removeprefix("Value error, ")
    name = str(error["loc"][0])  # a field's name, or the variable of one read by its alias
    for field_name in EngineOptions.model_fields:
        if name in variables(field_name):
            name = field_name
    named = variables(name) if name in EngineOptions.model_fields else [f"DEEPSHIVA_{name.upper()}"]
    return f"{name} ({' or '.join(named)}): {error['msg']} (got {error.get('input')!r})"


def bind_failure(exc: OSError, config: ServerConfig) -> str:
    """Why the server could not listen on its address, and the option that changes it."""
    where = f"{config.host}:{config.port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {config.port} is already in use on {config.host} (another DeepShiva server?); "
            f"choose another with --port N (or DEEPSHIVA_PORT=N), or --port 0 for any free port"
        )
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on {where} (ports below 1024 need root); choose another with --port N"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{config.host} is not an address of this machine; choose another with --host"
    return f"cannot listen on {where}: {exc.strerror or exc}"


def _preload(app, name: str) -> None:
    manager = app.extensions["deepshiva"].manager
    try:
        _, ms = manager.load(name)
        log.info("model %s loaded in %.0f ms", name, ms)
    except Exception as exc:
        log.error(
            "could not load model %r: %s: %s (the server stays up; POST /load_model to retry)",
            name,
            type(exc).__name__,
            exc,
        )


if __name__ == "__main__":
    sys.exit(main())
