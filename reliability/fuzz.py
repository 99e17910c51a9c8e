"""Property-based fuzzing of the HTTP API from its own /openapi.json (schemathesis + hypothesis).

    python -m reliability.fuzz                      # default budget, its own server
    python -m reliability.fuzz --examples 300       # more inputs per operation and mode
    python -m reliability.fuzz --url http://127.0.0.1:5005 --api-key KEY

Every operation of the document is fed inputs generated from its schema, both valid ones
("positive") and ones that break it ("negative"), with the API key sent. Each answer must: not be
a 5xx; have a status the document lists; match the documented content type and schema; for a
4xx carry the error shape ``{"status": "error", "message": ...}``; arrive within the time limit.
After the run the server must still serve. Failures are collected (not raised) so one run reports
all of them. The server started here has an allow-list holding only its own model and
HF_HUB_OFFLINE set, so fuzzed model names can never read paths or reach the network.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from typing import Optional

from .common import environment, model_or_tiny, start_server, write_results

if sys.version_info < (3, 11):  # schemathesis raises exception groups; 3.10 has the backport
    from exceptiongroup import BaseExceptionGroup

API_KEY = "fuzz-key"
TIME_LIMIT_S = 30.0
MAX_LENGTH_LIMIT = 48  # keeps each valid generation short; larger values are a 400 (still checked)


def _checks():
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]


def _error_shape(response) -> Optional[str]:
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return "4xx body is not JSON"
    if not (
        isinstance(body, dict)
        and set(body) == {"status", "message"}
        and body["status"] == "error"
        and isinstance(body["message"], str)
    ):
        return f"4xx body is not the error shape: {str(body)[:200]}"
    return None


def _within_limit(case):
    """The document cannot know the server's --max-length-limit: fold max_length into it."""
    body = case.body
    if (
        isinstance(body, dict)
        and isinstance(body.get("max_length"), int)
        and not isinstance(body["max_length"], bool)
    ):
        body["max_length"] = 1 + (body["max_length"] - 1) % MAX_LENGTH_LIMIT
    return case


def run(
    url: str,
    api_key: Optional[str],
    examples: int,
    seed: int = 0,
    modes: tuple[str, ...] = ("positive", "negative"),
    budget_s: float = 1800.0,
) -> dict:
    """Fuzz every operation of ``url``'s /openapi.json; return the figures (see module doc)."""
    import httpx
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, seed as hseed, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    schema = schemathesis.openapi.from_url(url + "/openapi.json", headers=headers, timeout=10)
    checks = _checks()
    statuses: collections.Counter = collections.Counter()
    per_operation: dict = {}
    failures: list[dict] = []
    kinds: collections.Counter = collections.Counter()
    latencies: list[float] = []
    deadline = time.monotonic() + budget_s
    session = requests.Session()

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in modes:
            label = f"{operation.label} [{mode}]"
            tried = collections.Counter()

            def attempt(case):
                if time.monotonic() > deadline:
                    return
                tried["inputs"] += 1
                started = time.monotonic()
                try:
                    response = case.call(
                        base_url=url, session=session, headers=headers, timeout=TIME_LIMIT_S
                    )
                except requests.exceptions.Timeout:
                    kinds["timeout"] += 1
                    failures.append(
                        {"operation": label, "kind": "timeout", "curl": case.as_curl_command()}
                    )
                    return
                except requests.exceptions.RequestException as exc:
                    kinds["transport"] += 1
                    failures.append(
                        {
                            "operation": label,
                            "kind": f"transport: {type(exc).__name__}",
                            "curl": case.as_curl_command(),
                        }
                    )
                    return
                except (
                    Exception,
                    BaseExceptionGroup,
                ) as exc:  # schemathesis may check inside call()
                    for failure in getattr(exc, "exceptions", [exc]):
                        kind = getattr(failure, "title", type(failure).__name__)
                        kinds[kind] += 1
                        if sum(1 for f in failures if f["kind"] == kind) < 5:
                            failures.append(
                                {
                                    "operation": label,
                                    "kind": kind,
                                    "message": str(getattr(failure, "message", failure))[:300],
                                    "curl": case.as_curl_command(headers=headers),
                                }
                            )
                    return
                latencies.append((time.monotonic() - started) * 1000)
                statuses[response.status_code] += 1
                tried[response.status_code] += 1
                problems = []
                shape = _error_shape(response)
                if shape:
                    problems.append(("error_shape", shape))
                try:
                    case.validate_response(response, checks=checks, headers=headers)
                except (Exception, BaseExceptionGroup) as exc:  # FailureGroup: checks failed
                    for failure in getattr(exc, "exceptions", [exc]):
                        problems.append(
                            (
                                getattr(failure, "title", type(failure).__name__),
                                str(getattr(failure, "message", failure))[:300],
                            )
                        )
                for kind, message in problems:
                    kinds[kind] += 1
                    if sum(1 for f in failures if f["kind"] == kind) < 5:  # keep a few of each kind
                        failures.append(
                            {
                                "operation": label,
                                "kind": kind,
                                "status": response.status_code,
                                "message": message,
                                "curl": case.as_curl_command(headers=headers),
                            }
                        )

            strategy = operation.as_strategy(generation_mode=GenerationMode(mode))
            if mode == "positive":  # keep valid inputs valid for this server's --max-length-limit
                strategy = strategy.map(_within_limit)
            test = settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=False,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(case=strategy)(attempt))
            try:
                hseed(seed)(test)()
            except Unsatisfiable:  # e.g. no invalid input exists for a GET without parameters
                pass
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis re-raises what it saw
                if not any(f["operation"] == label for f in failures):
                    kinds[type(exc).__name__] += 1
                    failures.append(
                        {"operation": label, "kind": type(exc).__name__, "message": str(exc)[:500]}
                    )
            per_operation[label] = {
                "inputs": tried.pop("inputs", 0),
                "statuses": {str(k): v for k, v in sorted(tried.items())},
            }

    health = httpx.get(url + "/health", timeout=10).json()
    served = httpx.post(
        url + "/generate", headers=headers, json={"prompt": "x = ", "max_length": 2}, timeout=30
    )
    from .common import percentile

    return {
        "inputs_tried": sum(op["inputs"] for op in per_operation.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "failures_by_kind": dict(kinds),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "max": round(max(latencies), 1) if latencies else None,
        },
        "still_serving_after": health.get("status") == "ok" and served.status_code == 200,
        "operations": per_operation,
        "failures": failures,
    }


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m reliability.fuzz", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--examples", type=int, default=150, help="inputs per operation and mode (default 150)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--budget-minutes", type=float, default=30.0, help="stop generating after this long"
    )
    p.add_argument("--url", help="fuzz a running server instead of starting one (loopback only)")
    p.add_argument("--api-key", help="the running server's key (with --url)")
    p.add_argument(
        "--model", help="model for the server started here (default: shipped, else tiny test model)"
    )
    p.add_argument("--out", help="results file (default reliability/results/fuzz.json)")
    args = p.parse_args(argv)

    server = None
    url, key = args.url, args.api_key
    if url is None:
        model = model_or_tiny(args.model)
        server = start_server(
            model,
            api_key=API_KEY,
            args=[
                "--allowed-models",
                model,
                "--queue-size",
                "4",
                "--max-length-limit",
                str(MAX_LENGTH_LIMIT),
            ],
        )
        url, key = server.url, API_KEY
    else:
        from server.config import is_loopback
        from urllib.parse import urlparse

        if not is_loopback(urlparse(url).hostname or ""):
            p.error("--url must be a loopback address (127.0.0.1, ::1, localhost)")
    started = time.monotonic()
    try:
        figures = run(url, key, args.examples, args.seed, budget_s=args.budget_minutes * 60)
    finally:
        exit_code = server.stop() if server else None
    figures = {
        "command": "python -m reliability.fuzz "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "examples_per_operation_and_mode": args.examples,
        "seed": args.seed,
        "duration_s": round(time.monotonic() - started, 1),
        "server_exit_code": exit_code,
        **figures,
        "environment": environment(),
    }
    path = write_results("fuzz", figures, args.out)
    print(
        f"inputs tried {figures['inputs_tried']}, statuses {figures['statuses']}, 5xx {figures['server_errors_5xx']}, "
        f"failures {figures['failures_by_kind'] or 'none'}, still serving {figures['still_serving_after']} -> {path}"
    )
    ok = not figures["failures_by_kind"] and figures["still_serving_after"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
