"""OptimizedLLM: DeepShiva's Python interface to a loaded code model.

One instance holds one model. Calls from many threads are serialized by a lock (one generation
at a time); the KV cache is kept between calls so consecutive prompts that share a prefix (an
editor's keystrokes) only compute what changed.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch

from . import compact_weights, cpu_capabilities, options, page_memory
from .backends import footprint, select
from .devices import (
    available_memory_bytes,
    SHORT_NAMES,
    check_decode_weights,
    choose_cpu_threads,
    mps_available,
    select_device,
    select_dtype,
    use_cpu_threads,
    weight_bytes,
)
from .errors import FIMNotSupported, InvalidParameter, ModelNotLoaded, OutOfMemory
from .fim import (
    PREFIX_SHARE,
    check_order,
    choose_order,
    detect_dialect,
    split_budget,
    stop_token_ids,
)
from .generation import ModelRunner, PromptLookup, decode_n_tokens
from .healing import TokenHealer
from .loading import DEFAULT_MODEL, is_out_of_memory, load_model, resolve_model_source, stored_dtype
from .prompt_encoding import PromptEncoder
from .layout_rules import LayoutRules
from .repo_context import ContextLayout
from .request import DEFAULTS, GenerationRequest
from .sampling import REPETITION_WINDOW, SamplingParams
from .text_pipeline import TextPipeline
from .text_stream import IncrementalDecoder
from .token_picker import TokenPicker

log = logging.getLogger("deepshiva.core")


@dataclass
class Completion:
    """A finished (or stopped) generation and what it cost."""

    text: str = ""
    prompt_tokens: int = 0
    generated_tokens: int = 0
    finish_reason: str = "length"  # "stop" | "length" | "cancelled"
    truncated: bool = False
    time_to_first_token_ms: float | None = None
    total_ms: float = 0.0
    reused_prompt_tokens: int = 0
    computed_prompt_tokens: int = 0  # prompt tokens run through the model (cancelled: fewer)
    decode_steps: int = 0

    def show(self, text: str, started: float) -> None:
        """Add text released while generating; the first, ``started`` (perf_counter) ago, is the
        time to first token. (Text held back to the very end is added to ``text`` only.)"""
        if self.time_to_first_token_ms is None:
            self.time_to_first_token_ms = (time.perf_counter() - started) * 1000
        self.text += text


class EncodedPrompt(NamedTuple):
    """A request's prompt as the model reads it."""

    ids: list[int]
    heal_text: str  # the text of the prompt's last token, backed off for the model to regrow
    truncated: bool  # cut from the left (or its suffix from the right) to fit the context
    prompt_tokens: int  # its size as usage reports it (a healed token counts)


class CompletionStream:
    """Iterator of text chunks from one generation; ``close()`` stops it within one decode step."""

    def __init__(self, chunks: Iterator[str], result: Completion, cancel_event: threading.Event):
        self._chunks = chunks
        self.result = result
        self._cancel = cancel_event
        self._finished = False

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> str:
        try:
            return next(self._chunks)
        except BaseException:
            self._finished = True
            raise

    def cancel(self) -> None:
        """Ask the generation to stop at its next decode step (safe from any thread)."""
        self._cancel.set()

    def close(self) -> None:
        """Stop generating now and release the model."""
        if self._finished:
            return  # already ended: its finish reason stands
        self._cancel.set()
        self._chunks.close()
        self._finished = True
        if self.result.finish_reason not in ("stop", "cancelled", "error"):
            self.result.finish_reason = "cancelled"

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._chunks.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


# Left truncation drops whole multiples of this many tokens, so the prompt's first tokens stay
# the same while the user types at its end and the KV cache can be reused (see ModelRunner).
TRUNCATION_STEP = 64


def stable_cut(length: int, keep: int) -> int:
    """Index to cut a ``length``-token prompt from the left to at most ``keep`` tokens, in steps."""
    excess = length - keep
    if excess <= 0:
        return 0
    return min(length, -(-excess // TRUNCATION_STEP) * TRUNCATION_STEP)


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS, so clearing a model really lowers the RSS."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if mps_available():
        torch.mps.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class OptimizedLLM:
    """Load a Hugging Face causal LM and generate completions, whole or streamed."""

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        device: str = "auto",
        max_memory: dict | None = None,
        load_in_8bit: bool = False,
        torch_dtype: object = None,
        trust_remote_code: bool = False,
        fim_order: str | None = None,
        decode_weights: str | None = None,
        cpu_threads: int | None = None,
    ):
        if max_memory is not None and not isinstance(max_memory, dict):
            raise InvalidParameter(
                "max_memory", "max_memory must be a dict such as {0: '10GiB', 'cpu': '30GiB'}"
            )
        self._lock = threading.Lock()
        self.device = select_device(device)
        self.dtype = select_dtype(
            self.device, torch_dtype
        )  # a bad value is named before the slow load
        self.model_name = model_name
        # Prompt-lookup decoding for greedy requests (DEEPSHIVA_PROMPT_LOOKUP=0 turns it off).
        self.prompt_lookup = options.read("prompt_lookup")
        # End completions that repeat themselves (core/loop_guard.py; DEEPSHIVA_LOOP_GUARD=0 turns it off).
        self.loop_guard = options.read("loop_guard")
        self.trust_remote_code = bool(trust_remote_code)
        # The bytes a CPU decode step reads (core.compact_weights): auto, fp32, fp16, bf16, int8 or
        # int4 (DEEPSHIVA_DECODE_WEIGHTS).
        if decode_weights is None:
            decode_weights = options.read("decode_weights")
        self.decode_weights_requested = check_decode_weights(decode_weights)  # before the slow load
        why_not = select.decode_weights_refusal(self.decode_weights_requested, self.device)
        if why_not is not None:
            raise InvalidParameter("decode_weights", why_not)
        self.decode_weights = "fp32"
        # FIM prompt order: auto (the model's own), psm or spm (DEEPSHIVA_FIM_ORDER).
        try:
            self.fim_order_requested = check_order(fim_order or options.read("fim_order"))
        except ValueError as exc:
            raise InvalidParameter("fim_order", str(exc)) from None
        self.model = None
        self.tokenizer = None
        self._runner: ModelRunner | None = None
        source = resolve_model_source(model_name)
        self._master_reason = f"{SHORT_NAMES.get(self.dtype, self.dtype)} masters: " + (
            "asked for"
            if torch_dtype not in (None, "auto")
            else f"the {self.device.split(':')[0]} default"
        )
        stored = stored_dtype(source, self.trust_remote_code) if self.device == "cpu" else None
        if self.device == "cpu" and torch_dtype in (None, "auto"):
            self.dtype, self._master_reason = select.master_dtype(
                stored, self.decode_weights_requested
            )
        if self.device == "cpu" and not load_in_8bit and max_memory is None:
            # refused before anything is allocated, naming the settings that would fit
            footprint.check(
                source, self.dtype, self.decode_weights_requested, stored, self.trust_remote_code
            )
        loaded = load_model(
            source, self.device, self.dtype, max_memory, bool(load_in_8bit), self.trust_remote_code
        )
        self._stored_dtype = loaded.stored_dtype
        self._install(loaded.model, loaded.tokenizer)
        self.quantization = loaded.quantization
        if self.device == "cpu":
            self.cpu_threads = choose_cpu_threads(self._weight_bytes, cpu_threads)
            use_cpu_threads(self.cpu_threads)

    # -- set-up ---------------------------------------------------------------------------
    def _install(self, model, tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer
        # Read before the runner empties the model's tensors its backend does not read.
        self._weight_bytes = weight_bytes(model)
        self._parameter_count = sum(p.numel() for p in model.parameters())
        model_vocab = (
            model.get_output_embeddings().weight.shape[0]
            if model.get_output_embeddings() is not None
            else 0
        )
        self._runner = self._make_runner(model)
        vocab = tokenizer.get_vocab()
        self.fim_dialect = detect_dialect(vocab)
        self.fim_order = choose_order(
            self.fim_order_requested, self.fim_dialect, getattr(model, "config", None)
        )
        # Marker ids looked up once: get_vocab() builds a fresh dict of the whole vocabulary.
        self._fim_marker_ids = (
            {m: vocab[m] for m in self.fim_dialect.markers} if self.fim_dialect else {}
        )
        self._eos_ids = self._collect_eos_ids(model, tokenizer)
        self._special_ids = set(tokenizer.all_special_ids) | {
            i
            for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items()
            if getattr(tok, "special", False)
        }
        # Models often pad their vocabulary past the tokenizer's (stable-code: 50304 rows); ids the
        # tokenizer cannot decode are never generated.
        undecodable = set(range(len(tokenizer), model_vocab))
        self._banned_always = torch.tensor(sorted(undecodable), dtype=torch.long)
        self._banned_in_plain = torch.tensor(
            sorted((self._special_ids - self._eos_ids) | undecodable), dtype=torch.long
        )
        self._fim_stop_ids = stop_token_ids(self.fim_dialect, vocab) if self.fim_dialect else set()
        self._healer = TokenHealer(tokenizer, self._special_ids)
        self._prompt_encoder = PromptEncoder(tokenizer)
        self._context_layout = ContextLayout(self._prompt_encoder.encode, vocab)
        self._adds_bos = self._tokenizer_adds_bos(tokenizer)
        self.context_length = self._context_length(model, tokenizer)

    def _make_runner(self, model) -> ModelRunner:
        """The runner with the decode weights asked for; auto falls back to fp32 where its pick
        cannot run (a model served through transformers, a 16-bit model on the CPU)."""
        requested = self.decode_weights_requested
        choice, why = select.decode_weights(
            requested,
            self.device,
            getattr(self, "_stored_dtype", None),
            self._weight_bytes,
            available_memory_bytes(),
            compact_weights.available(),
            master=self.dtype if self.device == "cpu" else torch.float32,
        )
        try:
            # The runner keeps each weight once: it empties the model's tensors it does not read.
            runner = ModelRunner(model, decode_weights=choice, release_model=True)
        except ValueError as exc:
            if requested != "auto":
                raise InvalidParameter("decode_weights", str(exc)) from None
            why = f"decode reads the model's own weights: {choice} copies need the lean path on the CPU"
            if (
                self.device == "cpu"
                and self.dtype in (torch.bfloat16, torch.float16)
                and not cpu_capabilities.current().native_bf16
                and getattr(model, "hf_device_map", None) is None
            ):  # 16-bit masters were for the lean path; transformers would emulate bf16 here
                model = model.to(torch.float32)
                self.dtype = torch.float32
                self._master_reason = (
                    "fp32 masters: the model runs through transformers, and this CPU emulates "
                    "16-bit GEMMs"
                )
            runner = ModelRunner(model, release_model=True)
        self._cpu_described = (
            cpu_capabilities.current().describe() if self.device == "cpu" else None
        )
        runner.path.reasons[:0] = [getattr(self, "_master_reason", "masters: as loaded"), why]
        self.decode_weights = runner.decode_weights
        return runner

    @staticmethod
    def _collect_eos_ids(model, tokenizer) -> set[int]:
        ids: set[int] = set()
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        for value in (configured, tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(v for v in value if isinstance(v, int))
        return ids

    @staticmethod
    def _tokenizer_adds_bos(tokenizer) -> bool:
        bos = tokenizer.bos_token_id
        return bos is not None and tokenizer.encode("a")[:1] == [bos]

    @staticmethod
    def _context_length(model, tokenizer) -> int:
        length = getattr(model.config, "max_position_embeddings", None) or 2048
        tok_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < length:
            length = tok_max
        return int(length)

    # -- public API -----------------------------------------------------------------------
    @property
    def is_loaded(self) -> bool:
        return self._runner is not None

    @property
    def decode_steps(self) -> int:
        """Forward passes of one generated token so far (to measure what cancellation saves)."""
        return self._runner.decode_steps if self._runner else 0

    @property
    def runner(self) -> ModelRunner | None:
        """The model's forward passes and KV cache (core/generation.py): benchmarks and training
        time prefill and decode through it, and ``runner.reset()`` makes the next prompt cold."""
        return self._runner

    @runner.setter
    def runner(self, runner: ModelRunner | None) -> None:
        """Generate through another runner (benchmarks: the same model with other decode
        weights). None leaves the engine without one: generation raises ModelNotLoaded."""
        self._runner = runner

    @property
    def healer(self) -> TokenHealer | None:
        """The tokenizer's token-healing tables (core/healing.py), for a pipeline that heals the
        prompts ``encode_prompt`` returns itself (benchmarks/llamacpp.py)."""
        return self._healer

    def info(self) -> dict:
        """What is loaded, for status displays."""
        loaded = self.is_loaded
        return {
            "model_name": self.model_name,
            "model_loaded": loaded,
            "device": self.device,
            "dtype": str(self.dtype).replace("torch.", ""),
            "quantization": getattr(self, "quantization", None),
            "context_length": self.context_length if loaded else None,
            "fim_dialect": self.fim_dialect.name if loaded and self.fim_dialect else None,
            "fim_order": self.fim_order if loaded and self.fim_dialect else None,
            "parameters": self._parameter_count if loaded else None,
            "cpu_threads": getattr(self, "cpu_threads", None),
            "backend": self._runner.backend_name if loaded else None,
            "decode_path": self._runner.decode_path if loaded else None,
            # What runs prefill and decode, and why (core.backends.select), on this CPU.
            "path": self._runner.path.as_dict() if loaded else None,
            "cpu": getattr(self, "_cpu_described", None),
            "decode_weights": self.decode_weights,
            "loop_guard": self.loop_guard,
        }

    def generate(
        self,
        prompt: str,
        max_length: int = DEFAULTS.max_length,
        temperature: float = DEFAULTS.temperature,
        top_p: float = DEFAULTS.top_p,
        top_k: int = DEFAULTS.top_k,
        repetition_penalty: float = DEFAULTS.repetition_penalty,
        stop_sequences: list[str] | None = None,
        stream: bool = False,
        suffix: str | None = None,
        seed: int | None = None,
        language: str | None = None,
        context: list[dict] | None = None,
    ):
        """The completion text (prompt excluded), or with ``stream=True`` a CompletionStream.

        ``language="python"`` keeps the first line within Python's layout rules (see
        ``core/layout_rules.py``). ``context``: other files as ``{"path", "text"}`` items, laid
        out before the prompt in the model's repository format (``core/repo_context.py``)."""
        kwargs = dict(
            max_length=max_length,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            repetition_penalty=repetition_penalty,
            stop_sequences=stop_sequences,
            suffix=suffix,
            seed=seed,
            language=language,
            context=context,
        )
        if stream:
            return self.stream(prompt, **kwargs)
        return self.complete(prompt, **kwargs).text

    def complete(
        self, prompt: str, cancel_event: threading.Event | None = None, **params
    ) -> Completion:
        """Generate to the end and return the text with usage and timing."""
        stream = self.stream(prompt, cancel_event=cancel_event, **params)
        for _ in stream:
            pass
        return stream.result

    def stream(
        self, prompt: str, cancel_event: threading.Event | None = None, **params
    ) -> CompletionStream:
        """Start a generation whose text arrives chunk by chunk (validation errors raise here)."""
        if not self.is_loaded:
            raise ModelNotLoaded("no model is loaded: load one first")
        request = self.check_request(prompt, **params)
        cancel = cancel_event or threading.Event()
        result = Completion()
        return CompletionStream(self._run(request, cancel, result), result, cancel)

    def check_request(self, prompt: str, **params) -> GenerationRequest:
        """The request, checked against this model (its context length, FIM support), without
        waiting for the model: the server calls it before a request joins the queue."""
        request = GenerationRequest.checked(prompt, context_length=self.context_length, **params)
        if request.suffix is not None and self.fim_dialect is None:
            raise FIMNotSupported(
                f"model {self.model_name!r} has no fill-in-the-middle tokens, so 'suffix' cannot be used"
            )
        return request

    def warmup(self) -> None:
        """A short generation and a longer prompt, so the first user request does not pay for
        lazy initialization: oneDNN builds its bf16 (AMX) GEMM kernels on the first prompt of
        more than a few rows (a 256-token prompt of the shipped model took 27 ms first, 19 ms
        at the next new length; benchmarks/RESULTS.md, "families branch")."""
        self.complete("def main():\n", max_length=4, temperature=0)
        self.complete("def main():\n" + "    total = total + 1\n" * 24, max_length=1, temperature=0)
        if self.fim_dialect:
            self.complete("def main():\n    ", suffix="\n", max_length=2, temperature=0)
        page_memory.return_freed_heap()  # the warmup's temporaries: not kept beside the first prompt's

    def clear_memory(self) -> None:
        """Release the model, tokenizer and caches; generation then raises ModelNotLoaded."""
        with self._lock:
            if self._runner is not None:
                self._runner.release()
            self._runner = None
            self.model = None
            self.tokenizer = None
            self._healer = None
        _release_freed_memory()

    # -- generation -----------------------------------------------------------------------
    def _heal(self, ids: list[int]) -> tuple[list[int], str]:
        """``ids`` without its last token and the text the model must regrow, when healing applies."""
        healed, heal_text = self._healer.back_off(ids)
        if heal_text and self._healer.allowed(heal_text) is not None:
            return healed, heal_text
        return ids, ""

    def encode_prompt(self, request: GenerationRequest, heal: bool = True) -> EncodedPrompt:
        """The request's prompt as the model reads it: context files, the prompt (FIM: with its
        suffix) cut to fit, the last token backed off for healing.

        ``heal=False`` keeps the prompt's last token (benchmarks: what a plain pipeline sees).
        """
        reserve = min(request.max_length, self.context_length // 2)
        budget = self.context_length - reserve
        tok = self.tokenizer
        bos = [tok.bos_token_id] if self._adds_bos else []
        # Other files go first, within their own share of the budget (core/repo_context.py).
        bos = bos + self._context_layout.encode(
            request.context, request.language, budget - len(bos)
        )
        if request.suffix is None:
            ids = self._prompt_encoder.encode(request.prompt)
            truncated = len(ids) + len(bos) > budget
            if truncated:
                ids = ids[stable_cut(len(ids), budget - len(bos)) :]
            ids = bos + ids
            size = len(ids)
            ids, heal_text = self._heal(ids) if heal else (ids, "")
            return EncodedPrompt(ids, heal_text, truncated, size)
        dialect = self.fim_dialect
        prefix_ids = self._prompt_encoder.encode(request.prompt)
        suffix_ids = self._prompt_encoder.encode_continuation(
            request.suffix or ""
        )  # no SentencePiece dummy space
        layout = dialect.layout(self.fim_order)
        overhead = len(bos) + sum(1 for kind, _ in layout if kind == "token")
        fim_budget = max(budget - overhead, 2)
        keep_prefix, keep_suffix = split_budget(len(prefix_ids), len(suffix_ids), fim_budget)
        own_share = fim_budget - int(fim_budget * PREFIX_SHARE)
        if self.fim_order == "spm" and own_share < keep_suffix < len(suffix_ids):
            # The suffix leads an SPM prompt and is borrowing what a short prefix leaves: that
            # shrinks by a token per keystroke, so cut it in steps, or every keystroke would
            # change the suffix and with it the whole cached prompt.
            keep_suffix = max(own_share, keep_suffix - keep_suffix % TRUNCATION_STEP)
        truncated = keep_prefix < len(prefix_ids) or keep_suffix < len(suffix_ids)
        if keep_prefix < len(prefix_ids):
            prefix_ids = prefix_ids[stable_cut(len(prefix_ids), keep_prefix) :]
        suffix_ids = suffix_ids[:keep_suffix]
        # Heal the prefix's last token too: an editor's cursor sits mid-word or at a line start
        # (a bare newline, which in code almost always merges with the next indentation).
        prefix_ids, heal_text = self._heal(prefix_ids) if heal else (prefix_ids, "")
        ids = list(bos)
        for kind, value in layout:
            if kind == "token":
                ids.append(self._fim_marker_ids[value])
            else:
                ids.extend(prefix_ids if kind == "prefix" else suffix_ids)
        return EncodedPrompt(ids, heal_text, truncated, len(ids) + (1 if heal_text else 0))

    def _token_picker(
        self, request: GenerationRequest, prompt: EncodedPrompt, rules: LayoutRules | None
    ) -> TokenPicker:
        """What chooses each token of ``request``: its sampling settings, the ids never generated
        (FIM allows the special tokens plain prompts ban), its end tokens, healing and rules."""
        fim = request.suffix is not None
        return TokenPicker(
            self.tokenizer,
            self._healer,
            SamplingParams(
                request.temperature, request.top_p, request.top_k, request.repetition_penalty
            ),
            stop_ids=self._eos_ids | (self._fim_stop_ids if fim else set()),
            banned=self._banned_always if fim else self._banned_in_plain,
            recent=prompt.ids[-REPETITION_WINDOW:],
            heal_text=prompt.heal_text,
            rules=rules,
            generator=(
                torch.Generator().manual_seed(request.seed) if request.seed is not None else None
            ),
        )

    @staticmethod
    def _prefill(
        runner: ModelRunner, ids: list[int], cancel: threading.Event, result: Completion
    ) -> torch.Tensor | None:
        """Run the prompt (what the cache holds is reused) and record in ``result`` how much was
        reused and computed; the logits of its last position, None when cancelled meanwhile."""
        reused_before, prefilled_before = runner.reused_tokens, runner.prefill_tokens
        logits = runner.prefill(ids, cancel)
        result.reused_prompt_tokens = runner.reused_tokens - reused_before
        result.computed_prompt_tokens = runner.prefill_tokens - prefilled_before
        return logits

    def _run(
        self, request: GenerationRequest, cancel: threading.Event, result: Completion
    ) -> Iterator[str]:
        """Prefill, then per token: pick it, feed its text through the pipeline, yield what shows."""
        started = time.perf_counter()
        # Reading the document's layout needs no model: done before waiting for it.
        rules = LayoutRules.for_request(
            request.language, request.prompt, request.suffix, request.stop_sequences
        )
        with self._lock:
            runner = self._runner
            if runner is None:
                raise ModelNotLoaded("no model is loaded: load one first")
            prompt = self.encode_prompt(request)
            ids = prompt.ids
            result.truncated, result.prompt_tokens = prompt.truncated, prompt.prompt_tokens
            if result.truncated:
                log.info(
                    "prompt truncated to %d tokens to fit the context (%d)",
                    len(ids),
                    self.context_length,
                )
            picker = self._token_picker(request, prompt, rules)
            decoder = IncrementalDecoder(self.tokenizer, context_ids=ids[-4:])
            pipeline = TextPipeline.for_completion(
                prompt.heal_text, request.stop_sequences, self.loop_guard, watch=picker.watch
            )
            budget = min(
                request.max_length + (1 if prompt.heal_text else 0), self.context_length - len(ids)
            )
            finish = "length"
            if cancel.is_set():  # cancelled while it waited for the model: never run it
                result.finish_reason = "cancelled"
                return
            try:
                steps_before = runner.decode_steps
                logits = self._prefill(runner, ids, cancel, result)
                if logits is None:  # superseded while its prompt ran: the chunks done stay cached
                    finish = "cancelled"
                    return
                # Guessing ahead from the context is exact only when decoding is greedy.
                lookup = (
                    PromptLookup(ids, cache=runner.lookup_index)
                    if self.prompt_lookup and request.temperature == 0
                    else None
                )
                for token in decode_n_tokens(runner, logits, max(budget, 0), picker.pick, lookup):
                    if picker.ends(token):
                        finish = "stop"
                        break
                    result.generated_tokens += 1
                    picker.accept(token)
                    out = pipeline.feed(decoder.push(token))
                    if out:
                        result.show(out, started)
                        yield out
                    if pipeline.stopped:
                        finish = "stop"
                        break
                    if cancel.is_set():
                        finish = "cancelled"
                        break
                # The token that regrows a healed prompt token is counted in prompt_tokens already.
                if prompt.heal_text and result.generated_tokens:
                    result.generated_tokens -= 1
                tail = pipeline.flush()
                if tail:
                    result.text += tail
                    yield tail
            except GeneratorExit:
                finish = "cancelled"
                raise
            except Exception as exc:
                runner.reset()
                if is_out_of_memory(exc):
                    finish = "error"
                    raise OutOfMemory(f"out of memory while generating: {exc}") from exc
                finish = "error"
                raise
            finally:
                result.decode_steps = runner.decode_steps - steps_before
                result.finish_reason = finish
                result.total_ms = (time.perf_counter() - started) * 1000
