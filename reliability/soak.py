"""A bounded soak: many concurrent clients mixing /generate, /stream, abandoned streams and
/model_status against one deepshiva-server for a fixed time.

    python -m reliability.soak --minutes 5            # its own server on the tiny model
    python -m reliability.soak --minutes 1 --clients 4

Besides short code prompts, 3% of requests send a distinct 100 k-character prompt: RSS must stay
bounded under those too (the server trims malloc's arenas after large requests).

Reports requests served, errors by kind, p50/p95 latency per kind of request, and the server
process's memory (RSS) at the start (after a warm-up) and the end, sampled along the way. It
fails (exit 1) if any request was lost without an answer (a transport error, a timeout, a stream
that ended without its done/error event), if any answer was a 5xx, if the server is not idle
afterwards (an abandoned stream still holding the model), or if RSS grew beyond the bound:
``max(64 MiB, 25% of the start)``.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import threading
import time
from typing import Optional

import httpx

from .common import environment, model_or_tiny, percentile, start_server, write_results

KINDS = ("generate", "stream", "abandoned_stream", "model_status", "large_prompt")
WEIGHTS = (0.33, 0.29, 0.15, 0.2, 0.03)
LARGE_PROMPT_CHARS = 100_000  # a whole large file as the prompt, different every time
PROMPTS = [
    "def fibonacci(n):\n",
    "import os\n\nclass Config:\n    ",
    "for i in range(10):\n    ",
    "x = [1, 2, 3]\nprint(",
    "# sort a list\ndef sort(items):\n",
    "async def fetch(url):\n    ",
]
REQUEST_TIMEOUT_S = 60.0


def rss_bound(start: int) -> int:
    return max(64 << 20, start // 4)


class Soak:
    def __init__(
        self, url: str, headers: dict, clients: int, seconds: float, max_length: int, seed: int
    ):
        self.url, self.headers, self.clients, self.seconds = url, headers, clients, seconds
        self.max_length, self.seed = max_length, seed
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.answered: collections.Counter = (
            collections.Counter()
        )  # kind -> requests with an answer
        self.statuses: collections.Counter = collections.Counter()
        self.errors: collections.Counter = collections.Counter()  # error kind -> count
        self.examples: list[str] = []

    def _error(self, kind: str, detail: str) -> None:
        with self.lock:
            self.errors[kind] += 1
            if len(self.examples) < 20:
                self.examples.append(f"{kind}: {detail[:200]}")

    def _record(self, kind: str, status: int, ms: float) -> None:
        with self.lock:
            self.answered[kind] += 1
            self.statuses[str(status)] += 1
            self.latency[kind].append(ms)
            if status >= 500:
                self.errors[f"http_{status}"] += 1
            elif status == 429:
                self.errors["busy_429 (answered, retry later)"] += 1

    def _body(self, rng: random.Random) -> dict:
        return {
            "prompt": rng.choice(PROMPTS),
            "max_length": rng.randint(4, self.max_length),
            "temperature": rng.choice([0, 0.2, 0.7, 1.0]),
            "seed": rng.randint(0, 1000),
        }

    def _large_body(self, rng: random.Random) -> dict:
        """A distinct ~100 k-character prompt of code-like lines (new identifiers every time, so
        no cache is reused: what grew RSS before the server trimmed malloc's arenas)."""
        lines, size = [], 0
        while size < LARGE_PROMPT_CHARS:
            name = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz_", k=rng.randint(4, 12)))
            line = f"def {name}_{rng.randint(0, 10**6)}(x):\n    return x * {rng.randint(0, 999)}\n"
            lines.append(line)
            size += len(line)
        return {"prompt": "".join(lines)[:LARGE_PROMPT_CHARS], "max_length": 4, "temperature": 0}

    def one(self, session: httpx.Client, kind: str, rng: random.Random) -> None:
        started = time.monotonic()
        ms = lambda: (time.monotonic() - started) * 1000  # noqa: E731
        try:
            if kind == "model_status":
                r = session.get("/model_status")
                if r.status_code == 200 and r.json().get("model_loaded") is not True:
                    self._error("status_not_loaded", r.text)
                self._record(kind, r.status_code, ms())
            elif kind in ("generate", "large_prompt"):
                body = self._large_body(rng) if kind == "large_prompt" else self._body(rng)
                r = session.post("/generate", json=body)
                if r.status_code == 200 and r.json().get("status") != "success":
                    self._error("bad_body", r.text)
                self._record(kind, r.status_code, ms())
            else:
                with session.stream("POST", "/stream", json=self._body(rng)) as r:
                    if r.status_code != 200:
                        r.read()
                        self._record(kind, r.status_code, ms())
                        return
                    if kind == "abandoned_stream":  # read one event, then hang up
                        for line in r.iter_lines():
                            if line.startswith("data: "):
                                break
                        self._record(kind, 200, ms())
                        return
                    last_event = None
                    for line in r.iter_lines():
                        if line.startswith("event: "):
                            last_event = line[7:]
                    if last_event == "error":
                        self._error("stream_error_event", "")
                    elif last_event != "done":
                        self._error("stream_ended_without_done", str(last_event))
                    self._record(kind, 200, ms())
        except httpx.TimeoutException as exc:
            self._error("timeout", f"{kind}: {exc!r}")
        except httpx.TransportError as exc:
            self._error("transport", f"{kind}: {exc!r}")

    def client(self, n: int, stop_at: float) -> None:
        rng = random.Random(self.seed * 1000 + n)
        with httpx.Client(
            base_url=self.url, headers=self.headers, timeout=REQUEST_TIMEOUT_S
        ) as session:
            first = list(KINDS)  # every kind at least once per client, then at random
            rng.shuffle(first)
            while time.monotonic() < stop_at:
                self.one(session, first.pop() if first else rng.choices(KINDS, WEIGHTS)[0], rng)

    def run(self) -> None:
        stop_at = time.monotonic() + self.seconds
        threads = [
            threading.Thread(target=self.client, args=(n, stop_at), name=f"soak-{n}", daemon=True)
            for n in range(self.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.seconds + REQUEST_TIMEOUT_S + 30)


def _rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m reliability.soak", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument(
        "--max-length", type=int, default=48, help="largest max_length a client asks for"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="model to serve (default: shipped, else the tiny test model)")
    p.add_argument("--out", help="results file (default reliability/results/soak.json)")
    args = p.parse_args(argv)

    model = model_or_tiny(args.model)
    key = "soak-key"
    # queue of clients + 2: every request is admitted; a 429 would still count as an answer
    server = start_server(
        model,
        api_key=key,
        args=["--queue-size", str(args.clients + 2), "--max-length-limit", str(args.max_length)],
    )
    headers = {"Authorization": f"Bearer {key}"}
    samples: list[tuple[float, int]] = []
    try:
        warm = Soak(server.url, headers, 1, 0, args.max_length, args.seed)
        rng = random.Random(args.seed)
        with httpx.Client(
            base_url=server.url, headers=headers, timeout=REQUEST_TIMEOUT_S
        ) as session:
            for kind in KINDS * 3:  # warm-up: lazy initialisation is not a leak
                warm.one(session, kind, rng)
        rss_start = _rss(server.process.pid)
        soak = Soak(
            server.url, headers, args.clients, args.minutes * 60, args.max_length, args.seed
        )
        stop = threading.Event()

        def sample():
            t0 = time.monotonic()
            while not stop.wait(5):
                samples.append((round(time.monotonic() - t0, 1), _rss(server.process.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        soak.run()
        duration = time.monotonic() - started
        stop.set()
        time.sleep(1.0)  # let the last abandoned streams be noticed
        status = httpx.get(server.url + "/model_status", headers=headers, timeout=10).json()
        idle = status["queue"]["running"] == 0 and status["queue"]["waiting"] == 0
        rss_end = _rss(server.process.pid)
        health = httpx.get(server.url + "/health", timeout=10).json()
    finally:
        exit_code = server.stop()

    lost = sum(
        v
        for k, v in soak.errors.items()
        if k in ("timeout", "transport", "stream_ended_without_done")
    )
    server_errors = sum(v for k, v in soak.errors.items() if k.startswith("http_5"))
    growth = rss_end - rss_start
    all_latencies = [v for values in soak.latency.values() for v in values]
    figures = {
        "command": "python -m reliability.soak "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "clients": args.clients,
        "duration_s": round(duration, 1),
        "requests_sent": sum(soak.answered.values()) + lost,
        "requests_answered": sum(soak.answered.values()),
        "requests_lost_without_answer": lost,
        "answered_by_kind": dict(soak.answered),
        "statuses": dict(soak.statuses),
        "errors_by_kind": dict(soak.errors),
        "error_examples": soak.examples,
        "latency_ms": {
            "all": {"p50": percentile(all_latencies, 50), "p95": percentile(all_latencies, 95)},
            **{
                kind: {"p50": percentile(v, 50), "p95": percentile(v, 95), "n": len(v)}
                for kind, v in sorted(soak.latency.items())
            },
        },
        "rss_bytes": {
            "start": rss_start,
            "end": rss_end,
            "growth": growth,
            "bound": rss_bound(rss_start),
            "max_sampled": max([s[1] for s in samples] + [rss_end]),
        },
        "rss_mib": {
            "start": round(rss_start / 2**20, 1),
            "end": round(rss_end / 2**20, 1),
            "growth": round(growth / 2**20, 1),
            "bound": round(rss_bound(rss_start) / 2**20, 1),
            "max_sampled": round(max([s[1] for s in samples] + [rss_end]) / 2**20, 1),
        },
        "large_prompts_sent": soak.answered.get("large_prompt", 0),
        "rss_samples": samples,
        "idle_after": idle,
        "healthy_after": health.get("status") == "ok",
        "server_exit_code": exit_code,
        "model": model,
        "environment": environment(),
    }
    ok = (
        lost == 0
        and server_errors == 0
        and idle
        and figures["healthy_after"]
        and growth <= rss_bound(rss_start)
    )
    figures["passed"] = ok
    path = write_results("soak", figures, args.out)
    print(
        f"served {figures['requests_answered']} (lost {lost}), errors {figures['errors_by_kind'] or 'none'}, "
        f"p50/p95 {figures['latency_ms']['all']['p50']}/{figures['latency_ms']['all']['p95']} ms, "
        f"RSS {figures['rss_mib']['start']} -> {figures['rss_mib']['end']} MiB "
        f"(bound +{figures['rss_mib']['bound']}), idle {idle} -> {path}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
