"""The memory a model will take in this process, from its config.json and the load settings, and
the refusal when that is more than the machine has: before anything is allocated.

One estimate serves every caller: the engine checks it before the slow load (``check``), and
``docs/model_memory.py`` prints the parameter counts README.md quotes (``parameters``). The
parameter count comes from the model built on PyTorch's ``meta`` device, which allocates
nothing, so any architecture transformers knows is counted exactly.

What the engine holds on the CPU (``footprint``), per setting: each weight once.
- with fp32 decode weights: every parameter in the master dtype (fp32, or bf16/fp16 when asked
  for), read by prefill and decode alike;
- with compact decode weights (``core.compact_weights``): each layer matrix the kernels' layout
  holds, and the output head, only in the decode format (2 bytes a weight for fp16/bf16, 1 plus
  an fp32 scale a row for int8, half a byte plus an fp16 scale a block of 32 for int4), which
  prompts read too; the rest (embeddings, norms, biases) in the master dtype. An output head
  tied to the embedding is held twice (the embedding in the master dtype, the head in the decode
  format) unless both are the same 16-bit tensor;
- the KV cache: keys and values of every layer for ``KV_TOKENS`` tokens (it grows with the
  prompts, up to the context length), in the elements ``select.kv_cache_format`` picks for the
  setting (bf16 with compact decode weights and the SIMD kernels: half of fp32's bytes; int8:
  a quarter, plus an fp32 scale per layer, position and head);
- ``WORKING_BYTES`` for prefill activations, the tokenizer and load buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import options
from ..devices import SHORT_NAMES
from ..errors import ModelTooLarge

GiB = 2**30
BLOCK = 32  # the kernels' column block (core.compact_weights.BLOCK)
KV_TOKENS = 4096  # tokens of KV cache counted (or the model's context, when shorter)
WORKING_BYTES = 256 * 2**20
MEMORY_ENV = "DEEPSHIVA_MEMORY_AVAILABLE"  # core/options.py's memory_available
MASTER_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class Shape:
    """What sizes a model's memory, read from its config (``shape_of``)."""

    parameters: int
    compact_weights: int  # weights a decode step reads from a compact copy
    compact_rows: int  # their output rows (int8 keeps one scale a row)
    tied_head_weights: int  # an output head that is the input embedding (0 when untied)
    kv_bytes_per_token: int  # fp32 keys and values over every layer (``kv_bytes`` scales it)
    context: int
    kv_rows_per_token: int = 0  # head rows of keys and values over every layer (int8: a scale each)


@dataclass(frozen=True)
class Settings:
    """The load settings that size the memory: master dtype and decode weights."""

    master: str  # fp32, bf16 or fp16
    decode_weights: str  # fp32, fp16, bf16, int8 or int4

    def describe(self) -> str:
        dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[self.master]
        return (
            f"torch_dtype={dtype!r} with decode_weights={self.decode_weights!r} "
            f"(--dtype {dtype} --decode-weights {self.decode_weights})"
        )


@dataclass(frozen=True)
class Footprint:
    """Bytes a model takes with one setting, by part."""

    masters: int
    decode_copy: int
    kv_cache: int
    working: int = WORKING_BYTES

    @property
    def total(self) -> int:
        return self.masters + self.decode_copy + self.kv_cache + self.working

    def describe(self, settings: Settings) -> str:
        copy = (
            "no decode copy"
            if settings.decode_weights == "fp32"
            else f"{settings.decode_weights} layer matrices"
        )
        return (
            f"{settings.master} weights {gib(self.masters)}, {copy} {gib(self.decode_copy)}, "
            f"KV cache {gib(self.kv_cache)}, working memory {gib(self.working)}"
        )


def gib(count: int) -> str:
    """``count`` bytes in GiB, or MiB below one GiB."""
    return f"{count / GiB:.2f} GiB" if count >= GiB else f"{count / 2**20:.1f} MiB"


def meta_model(config, trust_remote_code: bool = False):
    """The model ``config`` describes, on the meta device (no memory)."""
    import transformers as tf

    with torch.device("meta"):
        return tf.AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def parameters(config, trust_remote_code: bool = False) -> int:
    """Parameters of the model ``config`` describes (tied embeddings counted once)."""
    return sum(p.numel() for p in meta_model(config, trust_remote_code).parameters())


def shape_of(config, trust_remote_code: bool = False) -> Shape:
    """The ``Shape`` of the model ``config`` describes, counted on the meta device."""
    model = meta_model(config, trust_remote_code)
    compact = rows = tied = 0
    matrices = [(n, m.weight) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    head = model.get_output_embeddings()
    for name, weight in matrices:
        out, cols = weight.shape
        decoded = ".layers." in name or (head is not None and weight is head.weight)
        if decoded and out % 4 == 0 and cols % BLOCK == 0:
            compact, rows = compact + out * cols, rows + out
            embedding = model.get_input_embeddings()
            if head is not None and weight is head.weight and weight is embedding.weight:
                tied = out * cols
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    context = getattr(text, "max_position_embeddings", None) or KV_TOKENS
    return Shape(
        parameters=sum(p.numel() for p in model.parameters()),
        compact_weights=compact,
        compact_rows=rows,
        tied_head_weights=tied,
        kv_bytes_per_token=2 * text.num_hidden_layers * kv_heads * head_dim * 4,
        context=int(context),
        kv_rows_per_token=2 * text.num_hidden_layers * kv_heads,
    )


def kv_bytes(shape: Shape, settings: Settings, kernels: bool | None = None) -> int:
    """Bytes of the KV cache over ``KV_TOKENS`` tokens (or the context) with ``settings``: 16-bit
    or int8 elements where ``select.kv_cache_format`` picks them, which needs the NumPy/C decode path
    (the C kernels, ``kernels``: default probed), else fp32."""
    from .. import compact_weights
    from . import select

    if kernels is None:
        kernels = compact_weights.available()
    fmt = select.kv_cache_format(settings.decode_weights)[0] if kernels else "fp32"
    per_token = shape.kv_bytes_per_token * select.KV_BYTES[fmt] // 4
    if fmt == "int8":  # a byte a value and an fp32 scale a head's row (core.kv_int8)
        per_token += 4 * shape.kv_rows_per_token
    return per_token * min(shape.context, KV_TOKENS)


def footprint(shape: Shape, settings: Settings, kernels: bool | None = None) -> Footprint:
    """The bytes the engine holds for ``shape`` with ``settings`` (the module docstring's parts);
    ``kernels``: whether the C kernels run (default probed), which sizes the KV cache."""
    master = MASTER_BYTES[settings.master]
    fmt = settings.decode_weights
    kv = kv_bytes(shape, settings, kernels)
    if fmt == "fp32":
        return Footprint(masters=shape.parameters * master, decode_copy=0, kv_cache=kv)
    rest = shape.parameters - shape.compact_weights  # embeddings, norms, biases
    if fmt != settings.master:  # a tied head is held in both formats
        rest += shape.tied_head_weights
    if fmt in ("fp16", "bf16"):
        copy = shape.compact_weights * 2
    elif fmt == "int8":
        copy = shape.compact_weights + 4 * shape.compact_rows
    else:  # int4: 16 bytes and an fp16 scale a block of 32
        copy = shape.compact_weights // 2 + 2 * (shape.compact_weights // BLOCK)
    return Footprint(masters=rest * master, decode_copy=copy, kv_cache=kv)


def available_bytes() -> int | None:
    """Memory this process may still allocate: ``DEEPSHIVA_MEMORY_AVAILABLE`` (bytes) where set,
    a pretend limit for tests and trials, else the system's (``core.devices``)."""
    from ..devices import available_memory_bytes

    limit = options.read("memory_available")
    if limit is not None:
        return limit
    return available_memory_bytes()


def alternatives(shape: Shape, kernels: bool) -> list[Settings]:
    """The settings a CPU can run, largest first (compact copies but int8 need the kernels)."""
    compact = ["bf16", "int8", "int4"] if kernels else ["int8"]
    options = [Settings("fp32", f) for f in ["fp32"] + compact]
    options += [Settings("bf16", f) for f in compact]  # bf16 masters decode from a compact copy
    return sorted(options, key=lambda s: -footprint(shape, s, kernels).total)


def refusal(shape: Shape, settings: Settings, available: float, kernels: bool) -> str | None:
    """Why ``settings`` do not fit in ``available`` bytes, naming the settings that would (the
    largest first: the closest to full precision), or None when they fit."""
    needed = footprint(shape, settings, kernels)
    if needed.total <= available:
        return None
    fitting = [
        s for s in alternatives(shape, kernels) if footprint(shape, s, kernels).total <= available
    ]
    message = (
        f"the model needs about {gib(needed.total)} ({needed.total} bytes: "
        f"{needed.describe(settings)}) but {gib(available)} ({int(available)} bytes) are available"
    )
    if fitting:
        options = "; ".join(
            f"{s.describe()}: {gib(footprint(shape, s, kernels).total)}" for s in fitting[:3]
        )
        return f"{message}. Settings that would fit: {options}"
    return f"{message}, and no setting of this engine fits it: choose a smaller model"


def check(
    source: str,
    master: torch.dtype,
    decode_weights: str,
    stored: torch.dtype | None,
    trust_remote_code: bool = False,
    available: int | None = None,
) -> None:
    """Raise ModelTooLarge (an OutOfMemory), naming the bytes needed and available and the settings that would fit,
    when the model at ``source`` would not fit with these settings on the CPU. A config that
    cannot be read or built here is not refused (the load says what is wrong with it)."""
    from transformers import AutoConfig

    from .. import compact_weights
    from . import select

    available = available_bytes() if available is None else available
    if available is None:
        return
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        shape = shape_of(config, trust_remote_code)
    except Exception:  # not ours to judge here: the load reports it
        return
    kernels = compact_weights.available()
    master_bytes = MASTER_BYTES.get(SHORT_NAMES.get(master, "fp32"), 4)
    chosen, _ = select.decode_weights(
        decode_weights, "cpu", stored, shape.parameters * master_bytes, available, kernels, master
    )
    settings = Settings(SHORT_NAMES.get(master, "fp32"), chosen)
    why = refusal(shape, settings, available, kernels)
    if why is not None:
        raise ModelTooLarge(f"Not enough memory to load {source}: {why}")
