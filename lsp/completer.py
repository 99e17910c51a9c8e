"""Getting one suggestion: cache, debounce, latest-wins, streaming with early stop, time cap.

No LSP types here: the server hands in a :class:`~lsp.text.CursorContext` and gets a string.
Per document (and per kind of request) only the newest request lives: starting one cancels the
older one, and cancelling closes its HTTP stream so the API stops generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import postprocess
from .api import ApiClient, ApiError
from .cache import SuggestionCache
from .fim_support import FimSupport, refuses_fim
from .options import Multiline, Options
from .stats import Stats
from .status import State, StatusTracker, Transition
from .text import CursorContext

log = logging.getLogger(__name__)


@dataclass
class _Ticket:
    """One generation in flight, and the requests waiting for it."""

    task: asyncio.Task
    ident: tuple[str, str]  # (prefix, suffix) it was started for
    superseded: bool = False
    waiters: int = 0


class SuggestionReader:
    """Accumulates streamed text and says when the suggestion is final."""

    def __init__(self, ctx: CursorContext, single: bool, max_lines: int, paragraph: bool = True):
        self.ctx, self.single, self.max_lines, self.paragraph = ctx, single, max_lines, paragraph
        self.text = ""
        self.final = False  # the suggestion ended by our rules (the stream was closed)
        self.finish_reason: str | None = None  # the API's, when the model ran to its end

    def feed(self, chunk: str) -> bool:
        self.text += chunk
        cut = postprocess.final_cut(
            self.text,
            self.ctx,
            single=self.single,
            max_lines=self.max_lines,
            paragraph=self.paragraph,
        )
        if cut is not None:
            self.text, self.final = self.text[:cut], True
        return self.final


def usable_text(reader: SuggestionReader, *, single: bool, timed_out: bool) -> str:
    """The part of the model's text worth post-processing. A suggestion our rules ended, or
    that the model ended by itself, is whole. One cut short (time cap, or out of tokens) keeps
    its complete lines only, a half line being worse than none; a first line that is still
    unfinished is dropped at the time cap, but kept when max_length cut it (the user's limit)."""
    text = reader.text
    if reader.final or (not timed_out and reader.finish_reason != "length"):
        return text
    if "\n" not in text:
        return "" if timed_out else text
    return text[: text.rfind("\n") + 1]


class Completer:
    """Owns the API client, the cache, the statistics and the status of the API."""

    def __init__(self, options: Options, announce: Callable[[Transition], None] | None = None):
        self.options = options
        self.api = ApiClient(options)
        self.cache = SuggestionCache(options.cache_size)
        self.stats = Stats()
        self.status = StatusTracker()
        self._announce = announce or (lambda transition: None)
        self._inflight: dict[tuple[str, str], _Ticket] = {}
        self._poller: asyncio.Task | None = None
        self.fim = FimSupport()  # which models get the text after the cursor (FIM) too
        self._model_check: asyncio.Task | None = None
        self._loads = 0  # deepshiva.loadModel requests in flight

    # -- configuration -------------------------------------------------------------------------

    async def reconfigure(self, options: Options) -> None:
        """Apply new settings: a new connection pool if the endpoint changed, an empty cache."""
        old, self.options = self.options, options
        self.cache = SuggestionCache(options.cache_size)
        endpoint = (
            "api_url",
            "api_key",
            "connect_timeout_ms",
            "request_timeout_ms",
            "load_timeout_ms",
        )
        if any(getattr(old, name) != getattr(options, name) for name in endpoint):
            self._drop(list(self._inflight))  # they use the old client, and old settings
            previous, self.api = self.api, ApiClient(options)
            self.fim = FimSupport()  # perhaps another server, with other models
            await previous.aclose()
            if self.status.state is not None:
                await self.probe()

    async def aclose(self) -> None:
        for task in (self._poller, self._model_check):
            if task:
                task.cancel()
        for ticket in list(self._inflight.values()):
            ticket.task.cancel()
        await self.api.aclose()

    # -- status --------------------------------------------------------------------------------

    def report(self, state: State, message: str = "") -> None:
        transition = self.status.update(state, message)
        if transition is not None:
            log.info("status %s: %s", transition.state.value, transition.message)
            self._announce(transition)
        if state.is_down:
            self._ensure_poller()

    async def probe(self) -> State:
        """Ask the API how it is (GET /health, then /model_status to check the key) and report."""
        try:
            health = await self.api.health()
            server_state = health.get("state")
            if server_state == "loading" and not health.get("model_loaded"):
                self.report(State.LOADING, "DeepShiva is loading a model")
            elif not health.get("model_loaded"):
                if not self._loads:  # our own load in flight knows better than a poll
                    self.report(State.NO_MODEL, "The DeepShiva API has no model loaded")
            else:
                status = await self.api.model_status()  # needs the key when the API has one
                self.fim.learn_status(status)
                name = status.get("model_name") or "a model"
                if self.status.state in (None, State.SLOW) or self.status.state.is_down:
                    self.report(State.READY, f"DeepShiva is ready ({name})")
        except ApiError as exc:
            self.report(exc.state or State.UNREACHABLE, exc.message)
        return self.status.state or State.UNREACHABLE

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        """While the API is down, probe it regularly so the editor hears when it is back."""
        while self.status.state is not None and self.status.state.is_down:
            await asyncio.sleep(self.options.health_poll_ms / 1000)
            await self.probe()

    # -- suggestions ---------------------------------------------------------------------------

    def forget(self, uri: str) -> None:
        """The document was closed: stop whatever is still generating for it."""
        self._drop([key for key in self._inflight if key[0] == uri])

    def _drop(self, keys: list[tuple[str, str]]) -> None:
        """Cancel these generations; their waiters answer "nothing to show"."""
        for key in keys:
            ticket = self._inflight.pop(key)
            ticket.superseded = True
            ticket.task.cancel()

    def debounce_ms(self) -> float:
        """How long an automatic request waits for quiet typing before calling the API.

        ``debounceMs`` at most. With ``adaptiveDebounce``: no wait while the API answers faster
        than the user types (median of the last answers under the median gap between the last
        automatic requests), since the answer then lands before the next key and waiting would
        only delay it; otherwise no longer than the API's recent answers took. Superseded calls
        are closed and stop the model within a decode step, so a wasted start costs little.
        """
        configured = self.options.debounce_ms
        if not self.options.adaptive_debounce:
            return configured
        recent = self.stats.recent_latency_ms()
        if recent is None:
            return configured
        gap = self.stats.typing_gap_ms()
        if gap is not None and recent < gap:
            return 0.0
        return min(configured, recent)

    async def suggest(
        self, key: tuple[str, str], ctx: CursorContext, *, invoked: bool, prefetch: bool = False
    ) -> str | None:
        """The suggestion for ``ctx`` ("" or None: nothing to show). ``key`` names the document
        and kind of request: a newer call with the same key and another context makes this one
        return None; one with the same context (a repeated request, or the editor asking where
        a prefetch is already running) waits for the same generation instead."""
        if prefetch:
            self.stats.prefetches += 1
        else:
            self.stats.requests += 1
            if not invoked:
                self.stats.note_typing()
        ident = (ctx.prefix, ctx.suffix)
        ticket = self._inflight.get(key)
        if ticket is not None and (ticket.task.done() or ticket.ident != ident):
            if not ticket.task.done():
                ticket.superseded = True
                ticket.task.cancel()
            del self._inflight[key]
            ticket = None
        if ticket is None:
            cached = self.cache.get(*ident)
            if cached is not None:
                self.stats.cache_hits += 1
                return cached
            task = asyncio.get_running_loop().create_task(self._fetch(ctx, invoked=invoked))
            ticket = self._inflight[key] = _Ticket(task, ident)
        else:
            self.stats.joined += 1
        ticket.waiters += 1
        try:
            # shield: one waiter's $/cancelRequest must not cancel the others' generation
            return await asyncio.shield(ticket.task)
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            if ticket.task.cancelled() and ticket.superseded and not _being_cancelled():
                return None  # a newer request for this document took over
            if ticket.waiters == 1:
                ticket.task.cancel()  # nobody else wants it: close the stream
            raise  # $/cancelRequest: pygls answers RequestCancelled
        finally:
            ticket.waiters -= 1
            if not ticket.waiters and self._inflight.get(key) is ticket:
                del self._inflight[key]  # finished, or cancelled with its last waiter

    async def _fetch(self, ctx: CursorContext, *, invoked: bool) -> str:
        options = self.options
        debounce_ms = self.debounce_ms()
        if not invoked and debounce_ms:
            await asyncio.sleep(debounce_ms / 1000)
        if self.fim.recheck_due():  # prefix-only for a while: has another model been loaded?
            self._check_model()
        single = postprocess.single_line(ctx, options.multiline.value)
        paragraph = options.multiline is Multiline.AUTO  # "always": whole blocks
        reader = SuggestionReader(ctx, single, options.max_lines, paragraph)
        body = self._body(ctx, single)
        self.stats.api_calls += 1
        started = time.monotonic()
        timed_out = False
        try:
            try:
                await asyncio.wait_for(self._read(body, reader), options.request_timeout_ms / 1000)
            except ApiError as exc:
                if self.fim.sends_suffix and refuses_fim(exc.status_code, exc.message):
                    self.fim.refused()  # the model cannot fill in the middle: prefix only
                    body = self._body(ctx, single)
                    await asyncio.wait_for(
                        self._read(body, reader), options.request_timeout_ms / 1000
                    )
                else:
                    raise
        except asyncio.TimeoutError:
            timed_out = True
        except (ValueError, KeyError, TypeError) as exc:  # a malformed answer: no suggestion
            self.stats.errors += 1
            log.exception("unexpected answer from the API: %s", exc)
            return ""
        except ApiError as exc:
            self.stats.errors += 1
            log.warning("API error: %s", exc.message)
            if exc.state in (State.NO_MODEL, State.LOADING):
                await self.probe()  # /health tells "no model" from "still loading"
            elif exc.state is not None:
                self.report(exc.state, exc.message)
            return ""
        elapsed_ms = (time.monotonic() - started) * 1000
        self.stats.latencies_ms.append(elapsed_ms)

        text = usable_text(reader, single=single, timed_out=timed_out)
        suggestion = postprocess.postprocess(
            text, ctx, single=single, max_lines=options.max_lines, paragraph=paragraph
        )
        if timed_out:
            self.report(State.SLOW, f"DeepShiva took over {options.request_timeout_ms} ms")
            return suggestion  # not cached: a later request may get the whole of it
        if elapsed_ms > options.slow_threshold_ms:
            self.report(State.SLOW, f"DeepShiva answered in {elapsed_ms:.0f} ms")
        else:
            self.report(State.READY)
        log.debug("model %r -> suggestion %r (%.0f ms)", reader.text, suggestion, elapsed_ms)
        self.cache.put(ctx.prefix, ctx.suffix, suggestion)
        return suggestion

    def _body(self, ctx: CursorContext, single: bool) -> dict:
        options = self.options
        stop = list(options.stop)
        if single and "\n" not in stop:
            stop.append("\n")
        body: dict = {
            "prompt": ctx.prefix,
            "max_length": options.max_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
        }
        if stop:
            body["stop"] = stop
        if self.fim.sends_suffix:
            body["suffix"] = ctx.suffix
        if options.seed is not None:
            body["seed"] = options.seed
        if ctx.language_id:
            body["language"] = ctx.language_id  # the server keeps Python's layout rules with it
        if ctx.project_context:  # other files, laid out before this one by the server
            body["context"] = [{"path": path, "text": text} for path, text in ctx.project_context]
        return body

    async def _read(self, body: dict, reader: SuggestionReader) -> None:
        if not self.options.stream:
            text, reader.finish_reason, model_name = await self.api.generate(body)
            self._heard_model(model_name)
            reader.feed(text)
            return
        async with self.api.stream(body) as stream:
            chunks = stream.chunks()
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    if reader.feed(chunk):
                        return  # leaving the blocks closes the stream: the model stops
            reader.finish_reason = stream.finish_reason
            self._heard_model(stream.model_name)

    def _heard_model(self, model_name: str | None) -> None:
        """An answer named its model: one not seen before is asked about (can it fill in the middle?)."""
        if self.fim.heard(model_name):
            self._check_model()

    def _check_model(self) -> None:
        """Read /model_status in the background to learn the served model and its FIM ability."""
        if self._model_check is None or self._model_check.done():
            self._model_check = asyncio.get_running_loop().create_task(self._read_model_status())

    async def _read_model_status(self) -> None:
        try:
            self.fim.learn_status(await self.api.model_status())
        except ApiError as exc:
            log.debug("/model_status: %s", exc.message)

    # -- commands ------------------------------------------------------------------------------

    async def load_model(self, name: str | None) -> dict:
        """POST /load_model; the status goes to loading, then to whatever the API says."""
        name = name or self.options.model
        request = asyncio.get_running_loop().create_task(self.api.load_model(name))
        self._loads += 1
        try:
            done, _ = await asyncio.wait({request}, timeout=0.3)
            if not done:  # a refusal comes at once; only a real load is announced as loading
                self.report(State.LOADING, f"Loading {name or 'the default model'}")
            result = await request
        except ApiError as exc:
            if exc.state is not None:
                self.report(exc.state, exc.message)
            else:  # e.g. an unknown model: the API is as it was
                await self.probe()
            raise
        finally:
            self._loads -= 1
            request.cancel()
        self.cache.clear()
        self.fim.forget_model()  # the new model may fill in the middle, or not
        await self._read_model_status()
        self.report(State.READY, result.get("message") or "Model loaded")
        return result


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling and cancelling())
