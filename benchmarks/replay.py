"""Editing replay: a real file retyped at human speed, a completion asked for at each pause.

A region of a standard-library file (code nobody here wrote) is removed and typed back in, key
by key, with a seeded human rhythm: ~110 ms between keys, short pauses between some words and
a longer one at each line end, where the typist waits for the suggestion. After a debounce the
editor asks for a single-line fill-in-the-middle completion at the cursor; a keystroke that comes
while a request runs supersedes it. The debounce is the client's choice (150 ms by default, as an
editor would wait); with 0 the client asks at every keystroke and leans on cancellation alone.

Reported per engine: p50/p95 time from pause (last keystroke) to suggestion at line ends, how
many requests were superseded and the tokens computed for them, and the process CPU time.
"""

from __future__ import annotations

import json
import random
import statistics
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

DEBOUNCE_S = 0.15
WAIT_CAP_S = 15.0


@dataclass
class Keystroke:
    prefix: str
    suffix: str
    gap_s: float  # time until the next keystroke
    line_end: bool  # the typist waits here for a suggestion


def build_schedule(
    file_name: str, first_line: int, lines: int, seed: int = 0, context_chars: int = 3000
) -> list[Keystroke]:
    """Keystrokes that retype ``lines`` lines of a stdlib file, from ``first_line``."""
    source = (
        (Path(sysconfig.get_paths()["stdlib"]) / file_name).read_text().splitlines(keepends=True)
    )
    before = "".join(source[:first_line])
    region = "".join(source[first_line : first_line + lines])
    after = "".join(source[first_line + lines :])
    rng = random.Random(seed)
    keys = []
    typed = ""
    for i, char in enumerate(region):
        typed += char
        line_end = char == "\n" and typed.strip() != "" and region[i + 1 : i + 2] != ""
        if line_end:
            gap = rng.uniform(0.7, 1.5)
        elif char == " " and rng.random() < 0.25:
            gap = rng.uniform(0.3, 0.8)
        else:
            gap = max(0.04, rng.gauss(0.11, 0.04))
        keys.append(
            Keystroke(
                stable_window(before + typed, context_chars),
                after[: context_chars // 3],
                gap,
                line_end,
            )
        )
    return keys


def stable_window(text: str, max_chars: int, chunk: int = 512) -> str:
    """The end of ``text``, at most ``max_chars``, whose start moves only in ``chunk`` steps.

    A window that slid by one character per keystroke would change the prompt's first tokens
    every time and defeat KV-cache reuse; this one keeps its start still while the user types.
    """
    if len(text) <= max_chars:
        return text
    start = -(-(len(text) - max_chars) // chunk) * chunk
    newline = text.find("\n", start)
    return text[newline + 1 :] if 0 <= newline < len(text) - 1 else text[start:]


@dataclass
class Outcome:
    latencies_ms: list[float] = field(default_factory=list)
    shown: int = 0  # line-end suggestions that were not empty
    requests: int = 0
    superseded: int = 0
    superseded_prefill: int = 0  # prompt tokens computed for requests that were superseded
    superseded_decode: int = 0  # decode steps spent on requests that were superseded
    # For superseded requests that were running: ms from the superseding keystroke until the
    # engine let go of them (what cancellation costs; a step in flight has to finish).
    stop_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0


class Request(threading.Thread):
    """One completion request running in its own thread (as one HTTP request would)."""

    def __init__(self, complete, key: Keystroke):
        super().__init__(daemon=True)
        self.complete, self.key = complete, key
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.cost = (0, 0)
        self.text = ""
        self.finished_at = 0.0
        self.superseded = False
        self.superseded_at: float | None = None

    def run(self) -> None:
        try:
            *self.cost, self.text = self.complete(self.key.prefix, self.key.suffix, self.cancel)
        finally:
            self.finished_at = time.perf_counter()
            self.done.set()


def replay(complete, schedule: list[Keystroke], debounce_s: float = DEBOUNCE_S) -> Outcome:
    """Drive ``complete(prefix, suffix, cancel) -> (prompt tokens computed, decode steps, text)``."""
    outcome = Outcome()
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    inflight: list[Request] = []
    for key in schedule:
        pressed = time.perf_counter()
        for request in inflight:
            if not request.done.is_set() and not request.superseded:
                request.superseded_at = time.perf_counter()
                request.cancel.set()
                request.superseded = True
        if key.gap_s <= debounce_s and not key.line_end:
            time.sleep(key.gap_s)
            continue
        time.sleep(debounce_s)
        request = Request(complete, key)
        request.start()
        inflight.append(request)
        outcome.requests += 1
        if key.line_end:
            request.done.wait(WAIT_CAP_S)
            if request.done.is_set():
                outcome.latencies_ms.append((request.finished_at - pressed) * 1000)
                outcome.shown += bool(request.text.strip())
            remaining = key.gap_s - (time.perf_counter() - pressed)
            time.sleep(max(remaining, 0.05))
        else:
            time.sleep(max(key.gap_s - debounce_s, 0))
    for request in inflight:
        request.cancel.set()
        request.join(60)
        if request.superseded:
            outcome.superseded += 1
            outcome.superseded_prefill += request.cost[0]
            outcome.superseded_decode += request.cost[1]
            if (
                any(request.cost) and request.superseded_at is not None
            ):  # it ran (not dropped in a queue)
                outcome.stop_ms.append(max(request.finished_at - request.superseded_at, 0.0) * 1000)
    outcome.cpu_s = time.process_time() - started_cpu
    outcome.wall_s = time.perf_counter() - started_wall
    return outcome


def summary(outcome: Outcome) -> dict:
    lat = sorted(outcome.latencies_ms)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None
    return {
        "suggestions_timed": len(lat),
        "suggestions_shown": outcome.shown,
        "p50_ms": round(statistics.median(lat), 1) if lat else None,
        "p95_ms": round(p95, 1) if p95 else None,
        "requests": outcome.requests,
        "superseded": outcome.superseded,
        "prefill_per_superseded": round(outcome.superseded_prefill / outcome.superseded, 1)
        if outcome.superseded
        else 0,
        "decode_per_superseded": round(outcome.superseded_decode / outcome.superseded, 2)
        if outcome.superseded
        else 0,
        "stop_ms_mean": round(statistics.fmean(outcome.stop_ms), 2) if outcome.stop_ms else None,
        "stop_ms_p50": round(statistics.median(outcome.stop_ms), 2) if outcome.stop_ms else None,
        "cpu_s": round(outcome.cpu_s, 1),
        "wall_s": round(outcome.wall_s, 1),
    }


# -- the engines under test -----------------------------------------------------------------


def deepshiva_engine(llm, max_tokens: int = 48):
    """DeepShiva in-process: prefix KV reuse, cancellation, stop at the line end."""

    def complete(prefix: str, suffix: str, cancel: threading.Event) -> tuple[int, int, str]:
        result = llm.complete(
            prefix,
            suffix=suffix,
            max_length=max_tokens,
            temperature=0,
            stop_sequences=["\n"],
            cancel_event=cancel,
        )
        return result.computed_prompt_tokens, result.decode_steps, result.text

    return complete


def plain_generate_engine(llm, max_tokens: int = 48, drop_queued: bool = False):
    """The baseline: plain model.generate per request, serialized on one model, no cancellation.

    Like the original server, it runs every request it got, on the whole prompt as tokenized:
    no token healing. (Given the healed prompt, whose last newline token is backed off, without
    the constraint that regrows it, the model mostly answered with an empty line.)
    ``drop_queued`` skips a request
    superseded while it waited for the model: a kinder baseline, needed when the client asks at
    every keystroke (running them all would take ten times the replay's length).
    """
    from .baseline import PlainGenerate, transformers_model
    from core.request import GenerationRequest

    base = PlainGenerate(transformers_model(llm.model.name_or_path, llm.dtype), llm.tokenizer)
    lock = threading.Lock()

    def complete(prefix: str, suffix: str, cancel: threading.Event) -> tuple[int, int, str]:
        request = GenerationRequest.checked(
            prefix, suffix=suffix, max_length=max_tokens, context_length=llm.context_length
        )
        ids = llm.encode_prompt(request, heal=False)[0]
        with lock:
            if drop_queued and cancel.is_set():
                return 0, 0, ""
            out = base.run(ids, max_new_tokens=max_tokens)
        return len(ids), max(out["tokens"] - 1, 0), out["text"].split("\n", 1)[0]

    return complete


def http_engine(base_url: str, max_tokens: int = 48):
    """DeepShiva through its HTTP API: /stream, closed as soon as the request is superseded."""
    import httpx

    client = httpx.Client(base_url=base_url, timeout=60)

    def complete(prefix: str, suffix: str, cancel: threading.Event) -> tuple[int, int, str]:
        body = {
            "prompt": prefix,
            "suffix": suffix,
            "max_length": max_tokens,
            "temperature": 0,
            "stop": ["\n"],
        }
        tokens, text = (0, 0), ""
        with client.stream("POST", "/stream", json=body) as response:
            for line in response.iter_lines():
                if cancel.is_set():
                    break  # closing the response stops the generation on the server
                if line.startswith("data:"):
                    data = json.loads(line[5:])
                    if "usage" in data:
                        usage = data["usage"]
                        tokens = (usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
                    else:
                        text += data.get("text", "")
        return *tokens, text

    return complete
