"""A team typing at once: N simulated developers replay the editing replay (benchmarks/replay.py)
in parallel against one server, for N = 1, 8, 32.

Targets, each measured in the same run on the same machine:
- ``local``: deepshiva-server with its own engine (one generation at a time, the rest queue);
- ``deepshiva+vllm``: deepshiva-server ``--backend openai`` in front of vLLM (batches them);
- ``vllm direct``: the same requests sent straight to vLLM's /v1/completions, with the very
  prompt DeepShiva would send (token ids, healing constraint, stops: core/upstream.py builds the
  body in this process), so the difference to the previous line is DeepShiva's own overhead.
The local target runs first, before vLLM starts, so vLLM's processes take no CPU from it.

Each developer retypes its own region of a standard-library file (its own seed); a keystroke
during a request supersedes it (the connection closes, the server stops it). Reported per target
and N: p50/p95 time from the pause to the suggestion at line ends, completion tokens per second
in total (of the requests that ran to their end: superseded ones count nothing, over the run's
wall time), and what was lost:
errors (429s, failures) and line-end suggestions that never came within the replay's cap.
``p50_all_ms``/``p95_all_ms`` rank every line end, one that never came as slower than any (None:
past the cap). Each row also has the peak RSS (VmHWM) of every process of the servers it went
through, read when the row is written, and the completion tokens per finished request (greedy on
both sides: the same work, up to where the engines' numerics part).

    scripts/install-vllm
    .venv/bin/python -m benchmarks.team_load --developers 1 8 32 --lines 3 --out benchmarks/results/team_load.json

At the sizes teams run (``--model DIR``: the local engine loads it and vLLM serves it), e.g. a
random-weight llama-400m with suggestions of at most 16 tokens, suffix-first prompts and a team
already at work (``--warm``):

    .venv/bin/python -m benchmarks.team_load --model llama-400m --max-tokens 16 --fim-order spm --warm --developers 1 8 --lines 6

``--rounds R`` interleaves the two vLLM targets R times per N, flipping which goes first: both
send the same prompts, so whichever goes second would find them in vLLM's prefix cache; vLLM's
prefix cache is also emptied before each run where vLLM serves /reset_prefix_cache (a vLLM this
benchmark starts does: VLLM_SERVER_DEV_MODE=1).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .replay import Outcome, build_schedule, replay, summary

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "tiny-python"
MAX_TOKENS = 48
# Regions of code to retype: (stdlib file, first line); developer i takes region i % len, offset.
REGIONS = [
    ("textwrap.py", 60),
    ("shlex.py", 30),
    ("difflib.py", 120),
    ("csv.py", 90),
    ("fractions.py", 200),
    ("calendar.py", 100),
    ("heapq.py", 140),
    ("bisect.py", 20),
]


@dataclass
class Tally:
    """What every request of one run came to (shared by the developers' threads)."""

    requests: int = 0
    completed: int = 0
    superseded: int = 0
    errors: dict = field(default_factory=dict)
    tokens: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1

    def add(self, completed: bool, tokens: int) -> None:
        with self.lock:
            self.requests += 1
            self.completed += completed
            self.superseded += not completed
            self.tokens += tokens


class Cancellable:
    """One streamed POST whose connection closes the moment ``cancel`` is set: also while it
    still waits for its answer to start (queued behind other requests), as an editor's does.
    Yields the body's lines; ``status`` is the HTTP status (0 when it never got one)."""

    def __init__(self, url: str, path: str, body: dict, cancel: threading.Event):
        parts = urlsplit(url)
        self.path = parts.path.rstrip("/") + path
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        self.body, self.cancel = json.dumps(body), cancel
        self.status = 0
        self._finished = threading.Event()

    def _watch(self) -> None:
        while not self._finished.is_set():
            if self.cancel.wait(0.02):
                with contextlib.suppress(OSError, AttributeError):
                    self.conn.sock.shutdown(socket.SHUT_RDWR)
                return

    def lines(self):
        threading.Thread(target=self._watch, daemon=True).start()
        try:
            self.conn.request("POST", self.path, self.body, {"Content-Type": "application/json"})
            response = self.conn.getresponse()
            self.status = response.status
            if response.status != 200:
                return
            for raw in response:
                if self.cancel.is_set():
                    return
                yield raw.decode("utf-8").rstrip("\r\n")
        except (OSError, http.client.HTTPException, ValueError):
            if not self.cancel.is_set():
                raise
        finally:
            self._finished.set()
            self.conn.close()


def deepshiva_target(base_url: str, tally: Tally, max_tokens: int = MAX_TOKENS):
    """Completions through DeepShiva's /stream."""

    def complete(prefix: str, suffix: str, cancel: threading.Event):
        body = {
            "prompt": prefix,
            "suffix": suffix,
            "max_length": max_tokens,
            "temperature": 0,
            "stop": ["\n"],
        }
        text, tokens, done = "", 0, False
        call = Cancellable(base_url, "/stream", body, cancel)
        try:
            event = None
            for line in call.lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[5:])
                    if event == "done":
                        tokens, done = data["usage"]["completion_tokens"], True
                    elif event == "error":
                        tally.error(f"stream error {data.get('code')}")
                    else:
                        text += data.get("text", "")
                    event = None
            if call.status not in (0, 200):
                tally.error(str(call.status))
        except (OSError, http.client.HTTPException) as exc:
            tally.error(type(exc).__name__)
        tally.add(done, tokens if done else 0)
        return 0, 0, text

    return complete


def vllm_direct_target(engine, tally: Tally, max_tokens: int = MAX_TOKENS):
    """The same requests straight to vLLM, with the body DeepShiva would send (``engine`` is a
    core.upstream.UpstreamEngine: it lays out the prompt, nothing else)."""
    from core.request import GenerationRequest

    def complete(prefix: str, suffix: str, cancel: threading.Event):
        request = GenerationRequest.checked(
            prefix,
            suffix=suffix,
            max_length=max_tokens,
            temperature=0,
            stop_sequences=["\n"],
            context_length=engine.context_length,
        )
        body, heal, _, _ = engine.request_body(request)
        text, tokens, done = "", 0, False
        call = Cancellable(engine.url, "/completions", body, cancel)
        try:
            for line in call.lines():
                if not line.startswith("data:"):
                    continue
                if line[5:].strip() == "[DONE]":
                    done = True
                    break
                for choice in json.loads(line[5:])["choices"]:
                    text += choice.get("text") or ""
                    tokens += len(choice.get("token_ids") or [])
                # The stop DeepShiva keeps to itself while healing (core/upstream.py): the client
                # ends at the first line end after the regrown text, as DeepShiva does.
                if "\n" in (text[len(heal) :] if text.startswith(heal) else text):
                    done = True
                    break
            if call.status not in (0, 200):
                tally.error(str(call.status))
        except (OSError, http.client.HTTPException) as exc:
            tally.error(type(exc).__name__)
        tally.add(
            done, max(tokens - bool(heal), 0) if done else 0
        )  # the regrown token is the prompt's
        text = text[len(heal) :] if text.startswith(heal) else text
        return 0, 0, text.split("\n", 1)[0]

    return complete


def one_at_a_time(
    front_url: str, engine, rounds: int, pause_s: float = 0.3, alternate: bool = True
) -> dict:
    """Median and p90 ms of the same single-line FIM request, one at a time, alternating
    DeepShiva in front of vLLM and vLLM direct (each target's own prompt cache is warm).

    The target that goes first changes every round: both send the same prompt, and the first
    of a pair both warms vLLM's prefix cache for the second and meets the tail of the previous
    pair's request (a stream cut at its line end keeps vLLM generating until it notices the
    hang-up). A fixed order (``alternate=False``, DeepShiva first: how the first figures were
    taken) charged that to DeepShiva. ``pause_s``
    between requests (an editor's requests are spaced by typing) lets that tail finish."""
    name, first = REGIONS[0]
    keys = [k for k in build_schedule(name, first, 6, seed=0) if k.line_end]
    never = threading.Event()
    targets = {
        "deepshiva+vllm": deepshiva_target(front_url, Tally()),
        "vllm direct": vllm_direct_target(engine, Tally()),
    }
    times: dict[str, list[float]] = {t: [] for t in targets}
    for i in range(rounds):
        key = keys[i % len(keys)]
        order = list(targets.items())
        for target, complete in order if i % 2 == 0 or not alternate else order[::-1]:
            time.sleep(pause_s)
            started = time.perf_counter()
            complete(key.prefix, key.suffix, never)
            times[target].append((time.perf_counter() - started) * 1000)
    out = {
        "rounds": rounds,
        "pause_s": pause_s,
        "order": "alternating" if alternate else "deepshiva first",
    }
    for target, values in times.items():
        values.sort()
        out[target] = {
            "p50_ms": round(values[len(values) // 2], 1),
            "p90_ms": round(values[int(0.9 * len(values))], 1),
        }
    return out


def run_team(complete, developers: int, lines: int, round_: int = 0, warm=None) -> dict:
    """N developers typing at once; their line-end latencies merged (the merged Outcome is kept
    under ``outcome`` for pooling rounds). Round r moves every developer's region r*lines lines on,
    so each round types code the server has not seen yet.

    ``warm`` (a ``complete`` whose requests count nowhere): first every developer asks once, all
    at once and untimed, at the file as it stands before the first keystroke, as a team already
    at work has done: the timed run then starts from the server's steady state (whatever prompts
    it can keep cached) rather than from every developer opening a file in the same two seconds."""
    schedules = []
    for i in range(developers):
        name, first = REGIONS[i % len(REGIONS)]
        start = first + 12 * (i // len(REGIONS)) + round_ * lines
        schedules.append(build_schedule(name, start, lines, seed=i))
    outcomes: list[Outcome] = [Outcome() for _ in range(developers)]
    if warm is not None:
        never = threading.Event()
        askers = [
            threading.Thread(target=warm, args=(s[0].prefix[:-1], s[0].suffix, never))
            for s in schedules
        ]
        for t in askers:
            t.start()
        for t in askers:
            t.join()

    def developer(i: int) -> None:
        time.sleep(0.37 * i % 2.0)  # they do not all start on the same keystroke
        outcomes[i] = replay(complete, schedules[i])

    started = time.perf_counter()
    threads = [threading.Thread(target=developer, args=(i,)) for i in range(developers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    merged = Outcome()
    for o in outcomes:
        merged.latencies_ms += o.latencies_ms
        merged.shown += o.shown
        merged.requests += o.requests
        merged.superseded += o.superseded
    line_ends = sum(1 for s in schedules for k in s if k.line_end)
    result = summary(merged)
    result["line_ends"] = line_ends
    result["wall_s"] = round(wall, 1)
    result["outcome"] = merged
    result |= tail_with_lost(merged.latencies_ms, line_ends)
    return result


def tail_with_lost(latencies_ms: list[float], line_ends: int) -> dict:
    """p50/p95 over every line end, a suggestion that never came (the replay's cap) counting as
    slower than any that did: where more than 5% never came the p95 is only known to be over the
    cap (None, and ``p95_over_cap`` says so). Summary's p50/p95 count only those that came, which
    flatters an engine that drops many."""
    ranked = sorted(latencies_ms) + [float("inf")] * max(line_ends - len(latencies_ms), 0)
    if not ranked:
        return {"p50_all_ms": None, "p95_all_ms": None, "p95_over_cap": False}

    def at(q: float) -> float | None:
        value = ranked[min(len(ranked) - 1, int(q * len(ranked)))]
        return None if value == float("inf") else round(value, 1)

    p95 = at(0.95)
    return {"p50_all_ms": at(0.5), "p95_all_ms": p95, "p95_over_cap": p95 is None}


def pooled(runs: list[tuple[Tally, dict]]) -> tuple[Tally, dict]:
    """One target's rounds as one row: latencies, requests and tokens together, walls summed."""
    tally, merged = Tally(), Outcome()
    line_ends, wall = 0, 0.0
    for t, team in runs:
        tally.requests += t.requests
        tally.completed += t.completed
        tally.superseded += t.superseded
        tally.tokens += t.tokens
        for what, count in t.errors.items():
            tally.errors[what] = tally.errors.get(what, 0) + count
        o = team["outcome"]
        merged.latencies_ms += o.latencies_ms
        merged.shown += o.shown
        merged.requests += o.requests
        merged.superseded += o.superseded
        line_ends += team["line_ends"]
        wall += team["wall_s"]
    result = summary(merged)
    result["line_ends"] = line_ends
    result["wall_s"] = round(wall, 1)
    result["rounds"] = len(runs)
    result |= tail_with_lost(merged.latencies_ms, line_ends)
    return tally, result


def reset_prefix_cache(vllm_url: str) -> bool:
    """Empty vLLM's prefix cache (its /reset_prefix_cache, served with VLLM_SERVER_DEV_MODE=1), so
    each target's run starts as cold as the other's; False where the endpoint is not served."""
    try:
        return httpx.post(vllm_url + "/reset_prefix_cache", timeout=30).status_code == 200
    except httpx.TransportError:
        return False


def model_directory(name: str) -> Path:
    """The directory ``--model`` names: a model directory as it is, or a shape of
    benchmarks/shapes.py, whose random-weight checkpoint is built the first time it is asked for;
    a ValueError naming what is missing otherwise."""
    if Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise ValueError(f"no config.json in {name}")
        return Path(name)
    from .shapes import SHAPES, model_dir  # imports torch: only where a shape is asked for

    if name not in SHAPES:
        raise ValueError(
            f"{name} is neither a model directory nor a shape (shapes: {', '.join(SHAPES)})"
        )
    return model_dir(name)


def cpu_list(spec: str) -> list[int]:
    """The cores a taskset list names ("0", "0-3,6"), in order; a ValueError for anything else."""
    cores: list[int] = []
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"not a list of cores: {spec!r} (e.g. 0 or 0-3,6)")
        low, high = int(first), int(last or first)
        if high < low:
            raise ValueError(f"not a list of cores: {spec!r} ({part} runs backwards)")
        cores += [c for c in range(low, high + 1) if c not in cores]
    return cores


def session_peaks(leader: int, proc_root: Path = Path("/proc")) -> dict[str, dict]:
    """Peak resident memory (VmHWM, MB) of every live process in ``leader``'s session, by pid:
    a server started in a session of its own (``Process``) with all the processes it spawned
    (vLLM's API server, engine core and worker). VmHWM is each process's peak since it started,
    so read just before the server stops it covers the whole run."""
    peaks: dict[str, dict] = {}
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        # stat: pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) != leader:
            continue
        values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if "VmHWM" not in values:  # a kernel thread or a zombie: no memory of its own
            continue
        peaks[entry.name] = {
            "name": values["Name"].strip(),
            "peak_rss_mb": round(int(values["VmHWM"].split()[0]) / 1024, 1),
            "rss_mb": round(int(values["VmRSS"].split()[0]) / 1024, 1),
        }
    return peaks


class Process:
    """A server subprocess (its own process group) and its output."""

    def __init__(self, command: list[str], env: dict, ready: re.Pattern, timeout: float):
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
        self.lines: list[str] = []
        self.match = None
        got = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                del self.lines[:-200]
                if self.match is None and (m := ready.search(line)):
                    self.match = m
                    got.set()
            got.set()

        threading.Thread(target=read, daemon=True).start()
        try:
            if not got.wait(timeout) or self.match is None:
                raise RuntimeError(f"{command[:3]} did not start:\n" + "\n".join(self.lines[-30:]))
        except BaseException:
            self.stop()
            raise

    def peaks(self) -> dict[str, dict]:
        """Peak RSS of this server's processes (``session_peaks``)."""
        return session_peaks(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def start_deepshiva(*args: str, cpus: str | None = None) -> tuple[Process, str]:
    """deepshiva-server with ``args``; on the cores ``cpus`` names (taskset) where given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSHIVA_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    pin = ["taskset", "-c", cpus] if cpus else []
    proc = Process(
        [
            *pin,
            sys.executable,
            "-m",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--queue-size",
            "64",
            *args,
        ],
        env,
        re.compile(r"DeepShiva API on (http://\S+?:\d+)"),
        120,
    )
    url = proc.match.group(1)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # wait for the model (or the upstream) to be ready
        try:
            status = httpx.get(url + "/model_status", timeout=5).json()
            if status.get("state") == "ready":
                return proc, url
            if status.get("last_load_error") and status.get("state") != "loading":
                raise RuntimeError(status["last_load_error"])
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.stop()
    raise RuntimeError("deepshiva-server never became ready")


def start_vllm(port: int, model: Path = MODEL) -> Process:
    # Dev mode for /reset_prefix_cache between the targets' runs (a benchmark's loopback vLLM).
    env = dict(
        os.environ,
        DEEPSHIVA_VLLM_SKIP_INSTALL="1",
        PYTHONUNBUFFERED="1",
        VLLM_SERVER_DEV_MODE="1",
    )
    env.pop("PYTHONPATH", None)
    proc = Process(
        [str(ROOT / "scripts" / "serve-vllm"), str(model), "--port", str(port)],
        env,
        re.compile(r"Application startup complete"),
        600,
    )
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--developers", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument(
        "--model",
        default=str(MODEL),
        help="model directory every target serves: the local engine loads it, vLLM serves it "
        "(config, safetensors and tokenizer files), or a random-weight shape of "
        "benchmarks/shapes.py (llama-400m, llama-1b...: built into benchmarks/.cache the first "
        "time); default the shipped models/tiny-python",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=MAX_TOKENS,
        help="most tokens a suggestion may take (each also ends at its first line end)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="before each timed run every developer asks once, untimed, all at once (a team "
        "already at work: the run starts from what the server keeps cached, not from N cold "
        "prompts at once)",
    )
    parser.add_argument(
        "--fim-order",
        choices=["auto", "psm", "spm"],
        default="auto",
        help="FIM order of every target's prompts (auto: the model's own; spm lets a keystroke "
        "reuse the cached prompt, the local engine's and vLLM's prefix cache alike)",
    )
    parser.add_argument(
        "--local-cpus",
        help="run the local engine's server on these cores only (a taskset list, e.g. 0: the "
        "core scripts/serve-vllm gives vLLM on a 2-core machine), with as many engine threads; "
        "default every core",
    )
    parser.add_argument(
        "--overhead-rounds",
        type=int,
        default=0,
        help="then this many single requests, one at a time, alternating through DeepShiva "
        "and straight to vLLM (DeepShiva's own cost without the team's load)",
    )
    parser.add_argument("--lines", type=int, default=3, help="lines each developer retypes")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds per N of deepshiva+vllm and vllm direct, interleaved, the order flipping "
        "each round (each round's code is new to vLLM's prefix cache for whichever goes first, "
        "cached for the other: alternating shares that out); rows pool the rounds",
    )
    parser.add_argument("--targets", nargs="+", default=["local", "deepshiva+vllm", "vllm direct"])
    parser.add_argument(
        "--concurrency", type=int, default=32, help="DeepShiva's --concurrency in front of vLLM"
    )
    parser.add_argument("--vllm-port", type=int, default=8871)
    parser.add_argument(
        "--vllm-url", help="use this vLLM (serving --model's directory) instead of starting one"
    )
    parser.add_argument(
        "--overhead-pause",
        type=float,
        default=0.3,
        help="seconds between the one-at-a-time requests",
    )
    parser.add_argument(
        "--overhead-order",
        choices=["alternating", "fixed", "both"],
        default="alternating",
        help="which target goes first in each one-at-a-time round (fixed: DeepShiva)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.local_cpus:
        try:
            local_threads = len(cpu_list(args.local_cpus))
        except ValueError as exc:
            parser.error(f"--local-cpus: {exc}")
    try:
        model = model_directory(args.model).resolve()
    except ValueError as exc:
        parser.error(f"--model: {exc}")
    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "model": str(args.model),
        "lines_per_developer": args.lines,
        "max_tokens": args.max_tokens,
        "local_cpus": args.local_cpus or "all",
        "fim_order": args.fim_order,
        "warm": args.warm,
        "runs": [],
    }

    def record(target: str, n: int, tally: Tally, team: dict, servers: dict) -> None:
        """One row; ``servers``: the Process of each server this target goes through."""
        team = {k: v for k, v in team.items() if k != "outcome"}
        row = {
            "target": target,
            "developers": n,
            **team,
            "completed": tally.completed,
            "superseded_requests": tally.superseded,
            "errors": tally.errors,
            "tokens": tally.tokens,
            "tokens_per_s": round(tally.tokens / team["wall_s"], 1),
            # the same work on every target: greedy, so the same prompt gives the same tokens
            "tokens_per_completed": round(tally.tokens / tally.completed, 2)
            if tally.completed
            else None,
            "lost": sum(tally.errors.values()) + (team["line_ends"] - team["suggestions_timed"]),
            "peak_rss_mb": {},
        }
        for server, proc in servers.items():
            peaks = proc.peaks()
            row["peak_rss_mb"][server] = {
                "processes": {f"{p['name']} {pid}": p["peak_rss_mb"] for pid, p in peaks.items()},
                "sum": round(sum(p["peak_rss_mb"] for p in peaks.values()), 1),
            }
        results["runs"].append(row)
        print(json.dumps(row), flush=True)

    if "local" in args.targets:
        threads = ("--cpu-threads", str(local_threads)) if args.local_cpus else ()
        proc, url = start_deepshiva(
            "--model", str(model), "--fim-order", args.fim_order, *threads, cpus=args.local_cpus
        )
        try:
            for n in args.developers:
                tally = Tally()
                warm = deepshiva_target(url, Tally(), args.max_tokens) if args.warm else None
                team = run_team(
                    deepshiva_target(url, tally, args.max_tokens), n, args.lines, warm=warm
                )
                record("local", n, tally, team, {"deepshiva": proc})
        finally:
            proc.stop()
    if {"deepshiva+vllm", "vllm direct"} & set(args.targets):
        vllm = None if args.vllm_url else start_vllm(args.vllm_port, model)
        vllm_url = (
            args.vllm_url.rstrip("/") if args.vllm_url else f"http://127.0.0.1:{args.vllm_port}"
        )
        try:
            from core.upstream import UpstreamEngine

            engine = UpstreamEngine(vllm_url, concurrency=512, fim_order=args.fim_order)
            front, front_url = start_deepshiva(
                "--backend",
                "openai",
                "--upstream",
                vllm_url,
                "--concurrency",
                str(args.concurrency),
                "--fim-order",
                args.fim_order,
            )
            targets = {
                "deepshiva+vllm": lambda tally: deepshiva_target(front_url, tally, args.max_tokens),
                "vllm direct": lambda tally: vllm_direct_target(engine, tally, args.max_tokens),
            }
            servers = {"deepshiva": front} | ({"vllm": vllm} if vllm else {})
            through = {
                "deepshiva+vllm": servers,
                "vllm direct": {k: v for k, v in servers.items() if k == "vllm"},
            }
            chosen = [t for t in targets if t in args.targets]
            try:
                for n in args.developers:
                    runs: dict[str, list] = {t: [] for t in chosen}
                    for r in range(args.rounds):
                        for target in chosen if r % 2 == 0 else chosen[::-1]:
                            tally = Tally()
                            cold = reset_prefix_cache(vllm_url)
                            warm = targets[target](Tally()) if args.warm else None
                            team = run_team(targets[target](tally), n, args.lines, r, warm)
                            runs[target].append((tally, team))
                            print(
                                json.dumps(
                                    {"round": r, "target": target, "developers": n}
                                    | {k: team[k] for k in ("p50_ms", "p95_ms", "wall_s")}
                                    | {"prefix_cache_reset": cold}
                                ),
                                flush=True,
                            )
                    for target in chosen:
                        record(target, n, *pooled(runs[target]), through[target])
                if args.overhead_rounds:
                    orders = (
                        ["fixed", "alternating"]
                        if args.overhead_order == "both"
                        else [args.overhead_order]
                    )
                    results["one_at_a_time"] = []
                    for order in orders:
                        row = one_at_a_time(
                            front_url,
                            engine,
                            args.overhead_rounds,
                            args.overhead_pause,
                            alternate=order == "alternating",
                        )
                        results["one_at_a_time"].append(row)
                        print(json.dumps(row), flush=True)
            finally:
                front.stop()
        finally:
            if vllm is not None:
                vllm.stop()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
