"""UpstreamEngine: the engine interface of ``OptimizedLLM``, served by an OpenAI-compatible server.

A team shares a serving engine (vLLM first; llama.cpp's server, SGLang or TGI where their
``/v1/completions`` fits) that batches many requests at once; DeepShiva's API, language server and
editor plugins stay in front of it unchanged. Only the model's tokenizer is loaded here, never its
weights: the prompt is laid out by DeepShiva itself (its FIM dialect tables, the same truncation
and token healing as the local engine, borrowed from ``OptimizedLLM`` so both engines send the
model exactly the same tokens) and sent as token ids where the server takes them, so the prompt's
start stays stable for the server's prefix cache. Completions always stream from the upstream,
also for a whole ``/generate``: between two events the request's cancel event is checked, and
leaving the ``with`` block closes the connection, which makes vLLM abort the request.

Token healing and the Python layout rules (core/layout_rules.py) decide among the model's
candidates token by token. A vLLM started with DeepShiva's logits processor (``scripts/serve-vllm``
starts it so; ``core/vllm_logits.py``) runs both inside vLLM, asked per request in ``vllm_xargs``.
Another vLLM still heals through its structured outputs (a regular expression the first tokens
must follow; it slows every token of the request a little on a CPU), and other servers heal not
at all; the Python rules need the processor, since no completions API lets a client pick among
the model's next-best tokens. What the upstream does is reported in ``info()['upstream']``, which
/model_status shows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

import httpx
from httpx_sse import EventSource

from .engine import Completion, CompletionStream, OptimizedLLM
from .errors import (
    DeepShivaError,
    FIMNotSupported,
    InvalidParameter,
    ModelLoadFailed,
    ModelNotFound,
    UpstreamError,
)
from .fim import check_order, choose_order, detect_dialect, stop_token_ids
from .healing import TokenHealer, special_token_ids
from .output_constraint import request_args
from .prompt_encoding import PromptEncoder
from .layout_rules import LayoutRules
from .repo_context import ContextLayout
from .request import GenerationRequest
from .text_pipeline import TextPipeline

log = logging.getLogger("deepshiva.upstream")

PROCESSOR = "core.vllm_logits:DeepShivaLogitsProcessor"
PYTHON_RULES_OFF = (
    "off: they choose among the model's next-best tokens at every step, which only DeepShiva's "
    f"logits processor inside vLLM can (start vLLM with scripts/serve-vllm, or with "
    f"--logits-processors {PROCESSOR} and this repository on its PYTHONPATH)"
)
PYTHON_RULES_OFF_OTHER = (
    "off: they choose among the model's next-best tokens at every step, which an "
    "OpenAI-compatible completions API does not expose (they run in front of vLLM started by "
    "scripts/serve-vllm)"
)
HEALING_BY_PROCESSOR = "logits processor"


def api_root(url: str) -> str:
    """The OpenAI API root of ``url``: ``http://host:8000`` and ``http://host:8000/v1`` both give
    ``http://host:8000/v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class UpstreamEngine:
    """One model of an OpenAI-compatible server, behind the same calls as ``OptimizedLLM``."""

    # The local engine's prompt layout, used as is (see the module docstring). They read only
    # tokenizer, _adds_bos, _prompt_encoder, _context_layout, context_length, fim_dialect, fim_order,
    # _fim_marker_ids and _healer, all set in _install_tokenizer.
    encode_prompt = OptimizedLLM.encode_prompt
    _heal = OptimizedLLM._heal

    def __init__(
        self,
        url: str,
        model: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        tokenizer: Optional[str] = None,
        fim_order: str = "auto",
        concurrency: int = 16,
        timeout_s: float = 600.0,
        wait_s: float = 0.0,
        trust_remote_code: bool = False,
        loop_guard: bool = True,
    ):
        try:
            self.fim_order_requested = check_order(fim_order)
        except ValueError as exc:
            raise InvalidParameter("fim_order", str(exc)) from None
        self.url = api_root(url)
        self.loop_guard = loop_guard
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # One pooled client for every request thread; a connection per concurrent generation.
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(
                max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4
            ),
        )
        try:
            entries = self._wait_for_models(wait_s)
            entry = self._choose(entries, model)
            self.model_name = entry["id"]
            self.upstream_kind = entry.get("owned_by") or "openai-compatible"
            self._install_tokenizer(
                tokenizer or entry.get("root") or entry["id"], trust_remote_code
            )
            self.context_length = int(entry.get("max_model_len") or self.context_length)
            self._vllm = self.upstream_kind == "vllm"
            self.token_ids_accepted = self._probe_token_ids()
            # DeepShiva's logits processor in vLLM heals and keeps the Python rules; without it,
            # healing falls back to a regular expression where the upstream follows one.
            self.logits_processor = self._probe_logits_processor()
            self.healing = (
                HEALING_BY_PROCESSOR if self.logits_processor else self._probe_regex_constraint()
            )
        except BaseException:
            self._client.close()
            raise
        self._closed = False

    # -- set-up ---------------------------------------------------------------------------
    def _get(self, path: str) -> httpx.Response:
        try:
            response = self._client.get(self.url + path, timeout=10.0)
        except httpx.TransportError as exc:
            raise UpstreamError(f"the upstream {self.url} cannot be reached: {exc}", 503) from None
        if response.status_code != 200:
            raise UpstreamError(
                f"the upstream {self.url}{path} answered {response.status_code}: "
                f"{response.text[:300]}"
            )
        return response

    def _wait_for_models(self, wait_s: float) -> list[dict]:
        """The upstream's /v1/models entries, waiting up to ``wait_s`` for it to come up."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                data = self._get("/models").json().get("data") or []
                if data:
                    return data
                error = UpstreamError(f"the upstream {self.url} lists no models")
            except (UpstreamError, ValueError) as exc:
                error = (
                    exc
                    if isinstance(exc, UpstreamError)
                    else UpstreamError(f"the upstream {self.url}/models did not answer JSON")
                )
            if time.monotonic() >= deadline:
                raise error
            time.sleep(1.0)

    def _choose(self, entries: list[dict], wanted: Optional[str]) -> dict:
        """The entry named ``wanted`` (its id, or the directory it was loaded from); the first
        one when nothing is named."""
        if not wanted:
            return entries[0]
        for entry in entries:
            if wanted in (entry.get("id"), entry.get("root")):
                return entry
        names = ", ".join(repr(e.get("id")) for e in entries)
        raise ModelNotFound(
            f"the upstream {self.url} does not serve {wanted!r}; it serves {names} "
            "(models are chosen when the upstream starts)"
        )

    def _install_tokenizer(self, source: str, trust_remote_code: bool) -> None:
        """The tokenizer (and FIM dialect) of the upstream's model, from ``source``: a directory
        or a Hugging Face id (--upstream-tokenizer when the upstream's own name is neither)."""
        from transformers import AutoConfig, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        except Exception as exc:  # noqa: BLE001 - any failure means the same thing to the user
            raise ModelLoadFailed(
                f"cannot load the tokenizer of the upstream model from {source!r} "
                f"({type(exc).__name__}: {exc}); pass --upstream-tokenizer DIR_OR_ID"
            ) from None
        try:
            config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        except Exception:  # noqa: BLE001 - a tokenizer-only repository has no model config
            config = None
        vocab = tokenizer.get_vocab()
        self.tokenizer = tokenizer
        self.fim_dialect = detect_dialect(vocab)
        self.fim_order = choose_order(self.fim_order_requested, self.fim_dialect, config)
        self._fim_marker_ids = (
            {m: vocab[m] for m in self.fim_dialect.markers} if self.fim_dialect else {}
        )
        self._fim_stop_ids = stop_token_ids(self.fim_dialect, vocab) if self.fim_dialect else set()
        self._eos_ids = OptimizedLLM._collect_eos_ids(None, tokenizer)
        self._special_ids = special_token_ids(tokenizer)
        self._healer = TokenHealer(tokenizer, self._special_ids)
        self._prompt_encoder = PromptEncoder(tokenizer)
        self._context_layout = ContextLayout(self._prompt_encoder.encode, vocab)
        self._adds_bos = OptimizedLLM._tokenizer_adds_bos(tokenizer)
        length = getattr(config, "max_position_embeddings", None) or 2048
        tok_max = getattr(tokenizer, "model_max_length", None)
        self.context_length = int(
            tok_max if isinstance(tok_max, int) and 0 < tok_max < length else length
        )

    def _probe_token_ids(self) -> bool:
        """Whether the upstream takes a prompt of token ids (vLLM, llama.cpp do; TGI does not)."""
        ids = self.tokenizer.encode("def", add_special_tokens=False)
        try:
            self._post_once({"prompt": ids, "max_tokens": 1, "temperature": 0})
            return True
        except UpstreamError as exc:
            if exc.status == 503:
                raise
            log.info("the upstream refuses token-id prompts (%s): sending text", exc)
            return False

    def _probe_logits_processor(self) -> bool:
        """Whether vLLM runs DeepShiva's logits processor: asked to heal a text the model would
        not write by itself, the completion begins with it only where the processor runs (vLLM
        ignores vllm_xargs that nothing reads)."""
        if not self._vllm:
            return False
        expected = "zq7"
        try:
            text = self._post_once(
                {
                    "prompt": self._prompt_of(
                        self.tokenizer.encode("x = ", add_special_tokens=False)
                    ),
                    "max_tokens": 4,
                    "temperature": 0,
                    "vllm_xargs": request_args(expected, None),
                }
            )
        except UpstreamError as exc:
            if exc.status == 503:
                raise
            return False
        if not text.startswith(expected):
            log.info(
                "the upstream %s does not run DeepShiva's logits processor (%s): the Python rules "
                "are off",
                self.url,
                PROCESSOR,
            )
        return text.startswith(expected)

    def _probe_regex_constraint(self) -> Optional[str]:
        """The request field that makes the upstream follow a regular expression, if it has one
        (vLLM: ``structured_outputs``; before 0.11 ``guided_regex``), found by asking for a text
        the model would not write by itself and checking it came back."""
        if not self._vllm:
            return None
        expected = "zq7"
        for field, value in (
            ("structured_outputs", {"regex": expected}),
            ("guided_regex", expected),
        ):
            try:
                text = self._post_once(
                    {
                        "prompt": self._prompt_of(
                            self.tokenizer.encode("x = ", add_special_tokens=False)
                        ),
                        "max_tokens": 4,
                        "temperature": 0,
                        field: value,
                    }
                )
            except UpstreamError as exc:
                if exc.status == 503:
                    raise
                continue
            if text == expected:
                return field
        log.warning(
            "the upstream %s does not constrain output to a regular expression: token healing is off",
            self.url,
        )
        return None

    def _post_once(self, body: dict) -> str:
        """A small non-streamed completion (the probes); its text."""
        try:
            response = self._client.post(
                self.url + "/completions", json={"model": self.model_name, **body}, timeout=60.0
            )
        except httpx.TransportError as exc:
            raise UpstreamError(f"the upstream {self.url} cannot be reached: {exc}", 503) from None
        if response.status_code != 200:
            raise UpstreamError(
                f"the upstream answered {response.status_code}: {response.text[:300]}",
                response.status_code,
            )
        return response.json()["choices"][0]["text"]

    def _prompt_of(self, ids: list[int]):
        return ids if self.token_ids_accepted else self.tokenizer.decode(ids)

    # -- what the server asks -------------------------------------------------------------
    @property
    def is_loaded(self) -> bool:
        return not self._closed

    @property
    def decode_steps(self) -> int:
        """The upstream's decode steps are not visible here (0, as engines without a counter)."""
        return 0

    def info(self) -> dict:
        return {
            "model_name": self.model_name,
            "model_loaded": self.is_loaded,
            "device": "upstream",
            "dtype": None,
            "quantization": None,
            "context_length": self.context_length,
            "fim_dialect": self.fim_dialect.name if self.fim_dialect else None,
            "fim_order": self.fim_order if self.fim_dialect else None,
            "parameters": None,
            "decode_weights": None,
            "loop_guard": self.loop_guard,
            "upstream": {
                "url": self.url,
                "kind": self.upstream_kind,
                "prompt": "token ids" if self.token_ids_accepted else "text",
                "token_healing": self._healing_said(),
                "python_rules": (
                    f"on (DeepShiva's logits processor in vLLM, {PROCESSOR}; a sampled "
                    "completion leaves out the model's best candidates that break them)"
                    if self.logits_processor
                    else PYTHON_RULES_OFF
                    if self._vllm
                    else PYTHON_RULES_OFF_OTHER
                ),
            },
        }

    def _healing_said(self) -> str:
        if self.healing == HEALING_BY_PROCESSOR:
            return f"on (DeepShiva's logits processor in vLLM, {PROCESSOR})"
        if self.healing:
            return (
                f"on ({self.healing}: a regular expression the first tokens follow, which vLLM "
                "checks at every token of the request)"
            )
        return "off: the upstream cannot constrain its output to a regular expression"

    def warmup(self) -> None:
        """Nothing to warm here: the probes at start already ran a completion upstream."""

    def clear_memory(self) -> None:
        """Close the connections; generation then raises ModelNotLoaded (the upstream keeps running)."""
        self._closed = True
        self._client.close()

    def complete(
        self, prompt: str, cancel_event: threading.Event | None = None, **params
    ) -> Completion:
        stream = self.stream(prompt, cancel_event=cancel_event, **params)
        for _ in stream:
            pass
        return stream.result

    def check_request(self, prompt: str, **params) -> GenerationRequest:
        """The request, checked against this model (context length, FIM), before any waiting."""
        request = GenerationRequest.checked(prompt, context_length=self.context_length, **params)
        if request.suffix is not None and self.fim_dialect is None:
            raise FIMNotSupported(
                f"model {self.model_name!r} has no fill-in-the-middle tokens, so 'suffix' cannot be used"
            )
        return request

    def stream(
        self, prompt: str, cancel_event: threading.Event | None = None, **params
    ) -> CompletionStream:
        """Start a generation whose text arrives chunk by chunk (validation errors raise here)."""
        request = self.check_request(prompt, **params)
        cancel = cancel_event or threading.Event()
        result = Completion()
        return CompletionStream(self._run(request, cancel, result), result, cancel)

    # -- generation -----------------------------------------------------------------------
    def stop_ids(self, fim: bool) -> set[int]:
        """Token ids that end a completion: end of text, and in FIM the dialect's stop tokens."""
        return self._eos_ids | (self._fim_stop_ids if fim else set())

    def request_body(self, request: GenerationRequest) -> tuple[dict, str, bool, int]:
        """The /v1/completions body for ``request``; also the healed text, truncation, prompt size."""
        ids, heal_text, truncated, prompt_size = self.encode_prompt(
            request, heal=bool(self.healing)
        )
        fim = request.suffix is not None
        stop_ids = self.stop_ids(fim)
        body: dict[str, Any] = {
            "model": self.model_name,
            "prompt": self._prompt_of(ids),
            "max_tokens": max(
                1, min(request.max_length + (1 if heal_text else 0), self.context_length - len(ids))
            ),
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": True,
        }
        # The upstream matches stops on its whole output, and a healed completion's output begins
        # with the prompt text it regrows: a stop that could match there ("\n" after a healed
        # line end) would end it at once. Those stay with DeepShiva's own matcher, which reads the
        # output after the regrown text and closes the connection at a match (the upstream stops).
        upstream_stops = [
            stop for stop in request.stop_sequences if not _reaches_into(heal_text, stop)
        ]
        if upstream_stops:
            body["stop"] = upstream_stops
        if request.seed is not None:
            body["seed"] = request.seed
        if self._vllm:  # vLLM's own sampling fields (other servers would refuse or ignore them)
            body["top_k"] = request.top_k  # 0: no limit, as in DeepShiva
            body["repetition_penalty"] = request.repetition_penalty
            body["stop_token_ids"] = sorted(stop_ids)
            body["return_token_ids"] = True  # to count tokens also when the stream is cut short
        else:  # the FIM stop tokens as text (the standard field takes only strings, at most 4)
            names = (
                [self.tokenizer.convert_ids_to_tokens(i) for i in sorted(self._fim_stop_ids)]
                if fim
                else []
            )
            body["stop"] = (body.get("stop", []) + names)[:4] or None
        if self.logits_processor:
            # Healing and the Python rules inside vLLM, decided as the local engine does.
            rules = LayoutRules.for_request(
                request.language, request.prompt, request.suffix, request.stop_sequences
            )
            xargs = request_args(
                heal_text,
                (request.prompt, request.suffix, rules.single_line) if rules else None,
            )
            if xargs:
                body["vllm_xargs"] = xargs
        elif heal_text and self.healing:
            # The completion must begin by regrowing the text of the prompt's last token, then
            # anything: the same tokens the local engine allows while it heals.
            pattern = re.escape(heal_text) + r"[\s\S]*"
            body[self.healing] = (
                {"regex": pattern} if self.healing == "structured_outputs" else pattern
            )
        return body, heal_text, truncated, prompt_size

    def _run(
        self, request: GenerationRequest, cancel: threading.Event, result: Completion
    ) -> Iterator[str]:
        started = time.perf_counter()
        body, heal_text, result.truncated, result.prompt_tokens = self.request_body(request)
        stop_ids = self.stop_ids(request.suffix is not None)
        last_id = None
        pipeline = TextPipeline.for_completion(heal_text, request.stop_sequences, self.loop_guard)
        finish = "length"
        if cancel.is_set():  # cancelled while it waited: never sent
            result.finish_reason = "cancelled"
            return
        try:
            with (
                self._client.stream("POST", self.url + "/completions", json=body) as response,
                HANG_UPS.watching(cancel, response),
            ):
                if response.status_code != 200:
                    response.read()
                    raise _refusal(response)
                for event in EventSource(response).iter_sse():
                    if event.data == "[DONE]":
                        break
                    chunk = json.loads(event.data)
                    if chunk.get("error"):
                        raise UpstreamError(f"the upstream failed mid-stream: {chunk['error']}")
                    for choice in chunk.get("choices") or []:
                        text = choice.get("text") or ""
                        if "token_ids" in choice:  # vLLM with return_token_ids
                            result.generated_tokens += len(choice["token_ids"] or [])
                            last_id = (choice["token_ids"] or [last_id])[-1]
                        elif text:
                            result.generated_tokens += (
                                1  # one event per token, as these servers send
                            )
                        if choice.get("finish_reason"):
                            finish = "length" if choice["finish_reason"] == "length" else "stop"
                            if last_id in stop_ids:  # the end token is no part of the completion
                                result.generated_tokens -= 1
                        out = pipeline.feed(text)
                        if out:
                            result.show(out, started)
                            yield out
                    if pipeline.stopped:
                        finish = "stop"
                        break  # leaving the block closes the connection: the upstream stops too
                    if cancel.is_set():
                        finish = "cancelled"
                        break
            # The token that regrows a healed prompt token is counted in prompt_tokens already.
            if heal_text and result.generated_tokens:
                result.generated_tokens -= 1
            tail = pipeline.flush()
            if tail and finish != "cancelled":
                result.text += tail
                yield tail
        except GeneratorExit:
            finish = "cancelled"
            raise
        except httpx.TransportError as exc:
            if cancel.is_set():  # HANG_UPS shut the connection down: the request was cancelled
                finish = "cancelled"
                return
            finish = "error"
            raise UpstreamError(
                f"the upstream {self.url} failed: {type(exc).__name__}: {exc}", 502
            ) from None
        except BaseException:
            finish = "error"
            raise
        finally:
            result.finish_reason = finish
            result.total_ms = (time.perf_counter() - started) * 1000


class HangUps:
    """Shuts an upstream connection down the moment its request is cancelled (its client hung
    up, a keystroke superseded it), also while the stream waits for the upstream's next event.

    The stream itself looks at its cancel event only between events, and the longest wait for
    one is the prompt's prefill before the first token: a request superseded then kept the
    upstream busy with it for that long, beside the request that replaced it. Called straight,
    the upstream notices the closed connection at once and aborts; this does the same for
    DeepShiva's hop. One thread checks every watched stream each ``period_s``."""

    def __init__(self, period_s: float = 0.02):
        self.period_s = period_s
        self._cond = threading.Condition()
        self._watched: dict[object, tuple[threading.Event, socket.socket]] = {}
        self._thread: Optional[threading.Thread] = None

    @contextlib.contextmanager
    def watching(self, cancel: threading.Event, response: httpx.Response) -> Iterator[None]:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            yield
            return
        key = object()
        with self._cond:
            self._watched[key] = (cancel, sock)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="deepshiva-upstream-hangups", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        if hasattr(cancel, "add_listener"):  # the server's event says when: no wait for a poll
            cancel.add_listener(lambda: self._shut(key))
        try:
            yield
        finally:  # before the connection goes back to the pool, so no other request's is shut
            with self._cond:
                self._watched.pop(key, None)

    def _shut(self, key: object) -> None:
        """Shut the watched stream ``key``'s connection down, if it is still watched."""
        with self._cond:  # still watched: its stream has not let the connection go (the lock
            entry = self._watched.pop(key, None)  # keeps it from going back to the pool meanwhile)
            if entry is not None:
                with contextlib.suppress(OSError):
                    entry[1].shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._watched:
                    self._cond.wait()
                watched = list(self._watched.items())
            for key, (cancel, _sock) in watched:
                if cancel.is_set():
                    self._shut(key)
            time.sleep(self.period_s)


HANG_UPS = HangUps()


def _reaches_into(text: str, stop: str) -> bool:
    """Whether a match of ``stop`` in ``text + more`` could begin inside ``text``."""
    return bool(text) and (
        stop in text or any(text.endswith(stop[:k]) for k in range(1, len(stop)))
    )


def _refusal(response: httpx.Response) -> DeepShivaError:
    """The upstream's 4xx as a 400 naming its reason (a request it cannot serve), else a 502."""
    try:
        message = response.json().get("error", {}).get("message") or response.text
    except ValueError:
        message = response.text
    if 400 <= response.status_code < 500 and response.status_code not in (401, 403, 404, 429):
        return InvalidParameter("prompt", f"the upstream refused the request: {message[:500]}")
    return UpstreamError(
        f"the upstream answered {response.status_code}: {message[:500]}",
        503 if response.status_code == 429 else 502,
    )
