"""A lean forward pass for the decoder families of code models, for the decode loop's hot path.

``generate()`` and even a bare call of the transformers model pay per token for dozens of module
calls, a KV cache that grows by concatenation (copying the whole cache every step) and
bookkeeping a single-sequence decoder does not need. This runs the same arithmetic over the
model's own weights: q/k/v and gate/up projections fused into one matrix each, a KV cache
written in place (sized to what the prompts need, growing in steps), and PyTorch's fused
attention. One forward serves every family of ``core.backends.families`` (Llama, Mistral, Qwen2,
StableLM, Starcoder2, Gemma: their differences are data in ``LayerWeights`` and a few named ops:
norm kind, biases, gated or plain MLP, partial RoPE, sliding window, embedding scale) and the RoPE
variants transformers computes at load (linear, dynamic, llama3, yarn). It is used only where it
is exact, which the tests check against transformers' logits for each family; every other model
runs through transformers (``HFBackend``), and ``core.backends.select`` says why.

On the CPU the activations, norms, RoPE and attention are fp32 whatever the weights' dtype:
16-bit masters (``torch_dtype=bfloat16``) run only their GEMMs in 16 bits. The KV cache is fp32
too, or bf16 where the NumPy/C decode path reads compact weights (``kv_dtype``, decided by
``core.backends.select.kv_cache_format``): keys and values are rounded once as they are written
(by PyTorch in prompts, by the C step in decode steps) and widened to fp32 as attention reads
them, so a long context streams half the bytes (or int8 rows with a scale each, asked for with
DEEPSHIVA_KV_CACHE=int8: ``core.kv_int8``).

``decode_weights`` (CPU only) chooses the bytes a decode step reads: ``fp32`` (the masters
themselves), or compact weights (``fp16``, ``bf16``, ``int8``, ``int4``;
``core.compact_weights``) that the
NumPy decode path (``core.blas_decode``) and the fused C step multiply. Compact weights are the
model's only copy (``CompactProjection``): prompts multiply the same bytes in PyTorch, 16-bit ones
as they lie, quantized ones widened a matrix at a time into one shared buffer
(``WideningBuffer``), in ``prefill_dtype``; with
``release_model`` the model's own tensors are emptied as each layer is built (int8/int4: each
slice's checkpoint pages as soon as it is quantized, the C heap's freed temporaries after each
layer, so a load holds one layer's transients beside the weights). Where the C kernels
are not built, ``int8`` falls back to PyTorch's int8 weight kernel (one scale per output row,
bf16 activations inside the product; very slow for many rows, so only passes of at most
``INT8_MAX_ROWS`` tokens use it); the other compact formats are refused with the reason.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import blas_decode, compact_weights, kv_int8
from .devices import SHORT_NAMES
from .backends import families, select
from .backends.layers import (
    CompactProjection,
    Int8Weight,
    LayerWeights,
    Projection,
    WideningBuffer,
    held_tensors,
)
from .devices import DTYPE_NAMES
from . import page_memory

DECODE_WEIGHTS = ("fp32",) + compact_weights.PRECISIONS
# RoPE variants whose frequencies transformers computes once at load (its rotary module's
# inv_freq and attention_scaling, which this module reads): exact here. "dynamic" changes them
# only past max_position_embeddings, which the cache never grows beyond.
ROPE_TYPES = ("default", "linear", "llama3", "yarn", "dynamic")
CACHE_STEP = 256  # the KV cache grows in multiples of this many positions
MLP_ROWS = 128  # a longer pass computes its MLP's inner rows this many at a time


def unsupported_reason(model) -> str | None:
    """Why ``model`` cannot run on this module exactly, or None when it can."""
    config = model.config
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    family_reason = families.unsupported_reason(model)
    if family_reason is not None:
        return family_reason
    if rope_type not in ROPE_TYPES:
        return f"RoPE {rope_type!r} is not one the lean path computes ({', '.join(ROPE_TYPES)})"
    if getattr(model, "hf_device_map", None) is not None:
        return "the weights are spread over devices or offloaded (max_memory): accelerate's hooks run them"
    if getattr(model, "quantization_method", None) is not None or getattr(
        model, "is_quantized", False
    ):
        return "the weights are quantized by bitsandbytes (load_in_8bit): its kernels run them"
    return None


def _release_unused(module: torch.nn.Module, held: list[torch.Tensor]) -> None:
    """Empty every parameter of ``module`` whose memory none of ``held`` shares: what the backend
    no longer reads is freed as soon as it is built, not when the model object goes."""
    kept = {t.untyped_storage().data_ptr() for t in held}
    released = []
    for parameter in module.parameters():
        if parameter.untyped_storage().data_ptr() not in kept and parameter.numel():
            released.append(parameter.data)
            parameter.data = torch.empty(0, dtype=parameter.dtype, device=parameter.device)
    # transformers maps a safetensors checkpoint into memory and its tensors are views of the
    # file: emptying them does not unmap it, so the pages already read would stay resident.
    page_memory.drop_file_pages(released)
    # Quantizing a layer frees its temporaries into the C heap, which keeps them: over a model's
    # layers that retained ~400 MB beside 330 MB of int8 weights (llama-400m). Handed back now,
    # the load holds at most one layer's temporaries beside the weights built so far.
    page_memory.return_freed_heap()


def supports(model) -> bool:
    """True when ``model`` is a Llama this module computes exactly."""
    return unsupported_reason(model) is None


class LeanLlamaBackend:
    """Forward passes over a decoder's weights with its own KV cache; same logits as transformers.
    (The name is historical: it serves every family of ``core.backends.families``.)"""

    def __init__(
        self,
        model,
        decode_weights: str = "fp32",
        blas: bool | None = None,
        prefill_dtype: torch.dtype | None = None,
        release_model: bool = False,
        kv_cache: str | None = None,
    ):
        """``prefill_dtype``: the dtype of prompts' GEMMs over compact weights (default: the
        model's); ``release_model``: empty every tensor of ``model`` this backend does not read,
        layer by layer as it is built, so the weights are held once (the engine's choice; the
        model cannot run by itself afterwards); ``kv_cache``: the KV cache's elements on the
        NumPy/C decode path (fp32, bf16, fp16, int8; default: ``select.kv_cache_format`` decides)."""
        config = model.config
        inner = model.model
        self.spec = families.spec_of(model)
        self.family = self.spec.family
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.rotary_dims = self.spec.rotary_dims
        self.eps = self.spec.eps
        self.window = self.spec.window
        self.max_positions = config.max_position_embeddings
        self.capacity = 0  # positions the KV cache holds now; grows as prompts need (``_reserve``)
        weight = inner.embed_tokens.weight
        self.dtype, self.device = weight.dtype, weight.device
        # Activations, norms, RoPE, attention and the KV cache: fp32 on the CPU whatever the
        # weights' dtype (16-bit masters then run only their GEMMs in 16 bits, and the NumPy/C
        # decode path can read the same cache); the weights' dtype elsewhere.
        self.act_dtype = torch.float32 if self.device.type == "cpu" else self.dtype
        self.embed = weight.detach()
        self.embed_scale = self.spec.embed_scale
        if decode_weights not in DECODE_WEIGHTS:
            raise ValueError(
                f"decode weights must be one of {', '.join(DECODE_WEIGHTS)}, not {decode_weights!r}"
            )
        if decode_weights != "fp32" and self.device.type != "cpu":
            raise ValueError(
                f"{decode_weights} decode weights are for the CPU only (use load_in_8bit on CUDA)"
            )
        self.decode_weights = decode_weights
        self._release_sources = release_model  # read by _compact while the layers are built
        self.widening = WideningBuffer()  # prompts widen quantized layer matrices here
        self.prefill_dtype = prefill_dtype or self.dtype
        self.release_model = release_model
        # In fp32, q and k rotate as complex numbers: one multiply instead of five ops. That
        # needs each rotating pair (i, i + rotary_dims/2) side by side, so their rows are
        # interleaved; q.k is the same sum in another order, and v keeps its rows. (Not on MPS,
        # whose complex support is partial; 16-bit models keep the real-valued rotation.)
        self.complex_rope = self.act_dtype == torch.float32 and self.device.type in ("cpu", "cuda")
        # Compact weights run in the NumPy decode path; without it only int8 has a fallback.
        # core.backends.select decides (blas=None); True or False forces it where it can run.
        why_not = select.numpy_decode_reason(self, switch=blas is None)
        use_blas = blas is not False and why_not is None
        self.numpy_decode_why_not = why_not if blas is not False else "turned off by the caller"
        if decode_weights in ("fp16", "bf16", "int4") and not use_blas:
            raise ValueError(
                f"{decode_weights} decode weights cannot run here: {self.numpy_decode_why_not}"
            )
        int8 = decode_weights == "int8" and not use_blas  # PyTorch's int8 kernel
        # Where one-row products read compact weights, each product is kept once, at the decode
        # precision, and prompts multiply the same storage (``CompactProjection``).
        compact = self.compact = use_blas and decode_weights != "fp32"
        self.layers = []
        with torch.no_grad():
            for layer in inner.layers:
                t = families.layer_tensors(layer, self.spec)
                qb, kb = t["q_bias"], t["k_bias"]
                if self.complex_rope:
                    qb = None if qb is None else self._pair_rows(qb, self.heads)
                    kb = None if kb is None else self._pair_rows(kb, self.kv_heads)
                biases = (qb, kb, t["v_bias"])
                qkv_bias = (
                    None
                    if all(b is None for b in biases)
                    else torch.cat(
                        [
                            b
                            if b is not None
                            else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
                            for b, w in zip(biases, (t["q"], t["k"], t["v"]))
                        ]
                    )
                )
                mlp_in = [t["gate"], t["up"]] if self.spec.gated else [t["fc"]]
                mlp_in_bias = t["gate_up_bias"] if self.spec.gated else t["fc_bias"]
                if compact:
                    q, k = t["q"], t["k"]
                    if self.complex_rope:
                        q, k = self._pair_rows(q, self.heads), self._pair_rows(k, self.kv_heads)
                    self.layers.append(
                        LayerWeights(
                            input_norm=self._act(t["input_norm"]),
                            input_norm_bias=self._act(t["input_norm_bias"]),
                            qkv=self._compact([q, k, t["v"]], qkv_bias),
                            o=self._compact([t["o"]], t["o_bias"]),
                            post_norm=self._act(t["post_norm"]),
                            post_norm_bias=self._act(t["post_norm_bias"]),
                            gate_up=self._compact(mlp_in, mlp_in_bias),
                            down=self._compact([t["down"]], t["down_bias"]),
                        )
                    )
                    del q, k, t
                    if release_model:
                        _release_unused(layer, self.layers[-1].tensors())
                    continue
                q, k = t["q"], t["k"]
                if self.complex_rope:
                    q, k = self._pair_rows(q, self.heads), self._pair_rows(k, self.kv_heads)
                qkv = Projection(
                    torch.cat([q, k, t["v"]]).detach(),
                    transposed=True,
                    int8=int8,
                    bias=self._act(qkv_bias),
                )
                gate_up = Projection(
                    torch.cat(mlp_in).detach(),
                    transposed=True,
                    int8=int8,
                    bias=self._act(mlp_in_bias),
                )
                self.layers.append(
                    LayerWeights(
                        input_norm=self._act(t["input_norm"]),
                        input_norm_bias=self._act(t["input_norm_bias"]),
                        qkv=qkv,
                        o=Projection(t["o"].detach(), int8=int8, bias=self._act(t["o_bias"])),
                        post_norm=self._act(t["post_norm"]),
                        post_norm_bias=self._act(t["post_norm_bias"]),
                        gate_up=gate_up,
                        down=Projection(
                            t["down"].detach(), int8=int8, bias=self._act(t["down_bias"])
                        ),
                    )
                )
                if release_model:  # the stacked q/k/v and gate/up are copies: free the originals
                    del q, k, t
                    _release_unused(layer, self.layers[-1].tensors())
            head = model.get_output_embeddings()
            head_bias = getattr(head, "bias", None)
            if compact:
                # widened (all logits of a long pass) into a temporary: a vocabulary-sized
                # buffer would stay allocated for the rare pass that needs it
                self.lm_head = self._compact([head.weight], head_bias, shared_buffer=False)
                tied = head.weight.data_ptr() == weight.data_ptr()
                moved = getattr(self.lm_head, "storage", lambda: None)()  # None: a plain matrix
                # moved at the embedding's own precision: the lookup reads the moved copy too
                # (fp32 masters keep their fp32 table: the lookup stays at their precision)
                if tied and moved is not None and moved.dtype == weight.dtype:
                    self.embed = moved
            else:
                self.lm_head = Projection(
                    head.weight.detach(), int8=int8, bias=self._act(head_bias)
                )
        self.projections = [p for layer in self.layers for p in layer.projections()]
        self.projections.append(self.lm_head)
        norm, norm_bias = families.final_norm(model, self.spec)
        self.norm, self.norm_bias = self._act(norm), self._act(norm_bias)
        rotary = inner.rotary_emb
        self.inv_freq = rotary.inv_freq.detach().to(self.device, torch.float32)
        self.rope_scale = float(getattr(rotary, "attention_scaling", 1.0))
        self.scale = getattr(model.model.layers[0].self_attn, "scaling", self.head_dim**-0.5)
        self.k_cache = self.v_cache = None
        self.cos = self.sin = self.rope = None
        self.length = 0
        if release_model:
            held = [self.embed, self.norm, self.norm_bias, self.inv_freq]
            held += [t for layer in self.layers for t in layer.tensors()]
            held += held_tensors(self.lm_head)
            _release_unused(model, [t for t in held if t is not None])
        # The KV cache's elements: 16-bit only where the NumPy/C path reads it (PyTorch's decode
        # attends over the cache as it lies, in the activations' dtype).
        if use_blas:
            kv_format, self.kv_cache_reason = select.kv_cache_format(decode_weights, kv_cache)
            self.kv_dtype = select.KV_FORMATS[kv_format]
        else:
            self.kv_dtype = self.act_dtype
            self.kv_cache_reason = (
                f"{SHORT_NAMES.get(self.act_dtype)} KV cache: decode steps run in PyTorch, which "
                "attends over the cache in the activations' dtype"
            )
        # Decode steps through NumPy's OpenBLAS (and the C kernels) where that computes the same thing.
        self.blas = blas_decode.BlasDecoder(self) if use_blas else None

    def weight_bytes(self) -> int:
        """Bytes of weights this backend holds, each storage once (PyTorch tensors, and the NumPy
        arrays of quantized compact weights), for memory reports and the one-copy test."""
        tensors = [self.embed, self.norm, self.norm_bias]
        tensors += [t for layer in self.layers for t in layer.tensors()]
        tensors += held_tensors(self.lm_head)
        storages = {
            t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
            for t in tensors
            if t is not None
        }
        quantized = [p.compact for p in self.projections if isinstance(p, CompactProjection)]
        arrays = sum(c.nbytes for c in quantized if getattr(c, "tensor", None) is None)
        return sum(storages.values()) + arrays

    def describe(self) -> dict:
        """The path this backend runs, in words (``core.backends.select`` adds the reasons)."""
        masters = SHORT_NAMES.get(self.dtype, str(self.dtype))
        if self.act_dtype == self.dtype:
            prefill = f"torch {masters}"
        else:
            prefill = f"torch {masters} GEMMs, {SHORT_NAMES.get(self.act_dtype)} activations"
        if self.compact:
            gemm = SHORT_NAMES.get(self.prefill_dtype, str(self.prefill_dtype))
            stored = self.decode_weights
            over = (
                "over the decode weights"
                if stored == gemm
                else f"from the {stored} decode weights, widened a matrix at a time"
            )
            prefill = f"torch {gemm} GEMMs {over}, {SHORT_NAMES.get(self.act_dtype)} activations"
        if self.blas is None:
            decode = "torch int8 kernel" if self.decode_weights == "int8" else prefill
        elif self.blas.fused is not None:
            decode = f"fused C step, {self.decode_weights} weights"
        elif self.blas.compact:
            decode = f"NumPy + C kernels, {self.decode_weights} weights"
        else:
            decode = "NumPy/OpenBLAS, fp32 weights"
        return {"backend": self.name, "prefill": prefill, "decode": decode}

    def _compact(
        self, parts: list[torch.Tensor], bias: torch.Tensor | None, shared_buffer: bool = True
    ):
        """One product kept once at the decode precision (``parts`` stacked by rows: q/k/v,
        gate/up), read by decode steps and prompts alike; a shape the kernels' layout cannot hold
        stays a plain matrix (decode reads it in fp32 NumPy)."""
        parts = [p.detach() for p in parts]
        shape = (sum(p.shape[0] for p in parts), parts[0].shape[1])
        bias = self._act(bias)
        if not compact_weights.fits(torch.empty(shape, device="meta")):
            return Projection(parts[0] if len(parts) == 1 else torch.cat(parts), bias=bias)
        precision = self.decode_weights
        dtype = DTYPE_NAMES.get(precision)
        if len(parts) == 1 and not (self.release_model and parts[0].dtype == dtype):
            weight = parts[0]  # shared where it is already in the decode format
        elif len(parts) == 1:
            # Moved, not shared, where the model's own is released: transformers' tensor is a
            # view of the memory-mapped checkpoint (4 KiB file pages, rows not 64-byte aligned),
            # and the decode step streams it faster from the backend's own aligned memory, on
            # huge pages where offered (llama-30m: see benchmarks/RESULTS.md, "families
            # branch"). The file's pages are dropped as the layer is released: still one copy.
            weight = torch.from_numpy(page_memory.empty(shape, "int16")).view(dtype)
            self._move_rows(parts, weight)
        elif dtype is not None and parts[0].dtype == dtype:  # stacked straight into its place
            weight = torch.from_numpy(page_memory.empty(shape, "int16")).view(dtype)
            self._move_rows(parts, weight)
        elif precision in ("int8", "int4"):
            weight = parts  # quantized part by part: the stacked 16-bit matrix never exists
        else:
            weight = torch.cat(parts)
        stored = compact_weights.CompactWeight(
            weight, precision, share=True, release_source=self._release_sources
        )
        buffer = self.widening if shared_buffer else None
        return CompactProjection(stored, self.prefill_dtype, bias=bias, buffer=buffer)

    def _move_rows(self, parts: list[torch.Tensor], weight: torch.Tensor) -> None:
        """Copy ``parts`` stacked by rows into ``weight``, a slice of rows at a time; where the
        model is released, each slice's pages of the memory-mapped checkpoint leave the process
        as soon as it is copied. Copied whole and dropped after the layer, a matrix was held
        twice for a moment: Qwen2.5-Coder-1.5B's 445 MB tied output head set the load's peak
        (benchmarks/RESULTS.md, "memory branch ... users' sizes")."""
        spans = page_memory.file_mappings() if self._release_sources else None
        for first, rows in compact_weights.row_slices(parts):
            weight[first : first + rows.shape[0]].copy_(rows)
            if self._release_sources:
                page_memory.drop_file_pages([rows], whole_storage=False, spans=spans)

    @property
    def name(self) -> str:
        """lean-llama, lean-qwen2, ...: the lean forward over this family's layers."""
        return f"lean-{self.family}"

    def _act(self, tensor: torch.Tensor | None) -> torch.Tensor | None:
        """A norm weight or bias in the activations' dtype (a small copy only for 16-bit masters on the CPU)."""
        return None if tensor is None else tensor.detach().to(self.act_dtype)

    def _pair_rows(self, weight: torch.Tensor, heads: int) -> torch.Tensor:
        """Rows of a q or k matrix (or bias) reordered per head as (0, r/2, 1, r/2 + 1, ...) over
        the ``r = rotary_dims`` rotated dims; the rest keep their place."""
        half = self.rotary_dims // 2
        order = torch.cat(
            [
                torch.stack((torch.arange(half), torch.arange(half, 2 * half)), dim=1).flatten(),
                torch.arange(2 * half, self.head_dim),
            ]
        )
        return weight.reshape(heads, self.head_dim, -1)[:, order].reshape(weight.shape)

    def reserve(self, end: int) -> None:
        """Make the KV cache hold ``end`` positions before a prompt runs (at most the context;
        a longer prompt is refused by its forward): one growth for the whole prompt."""
        self._reserve(min(end, self.max_positions))

    def _reserve(self, end: int) -> None:
        """Make the KV cache hold ``end`` positions: it starts at what the first prompt needs
        and grows (doubling, in steps of ``CACHE_STEP``, at most ``max_positions``), keeping
        the cached positions, so a short request never pays for the whole context. While it
        grows the old cache and the new one are both held (the new one at least twice the
        positions the old one holds)."""
        if end <= self.capacity and self.k_cache is not None:
            return
        if end > self.max_positions:
            raise ValueError(
                f"sequence of {end} tokens exceeds the context of {self.max_positions}"
            )
        wanted = max(end, 2 * self.capacity)
        capacity = min(self.max_positions, -(-wanted // CACHE_STEP) * CACHE_STEP)
        row = kv_int8.row_bytes(self.head_dim) if self.kv_dtype == torch.int8 else self.head_dim
        shape = (len(self.layers), 1, self.kv_heads, capacity, row)
        if not self.length:  # nothing to keep: the old cache goes before the new one comes
            self.k_cache = self.v_cache = None
        # Not zeroed: nothing reads a position before it is written (every read stops at the
        # current length), and the pages of positions never written stay out of the process's
        # memory (a 1,040-token request in a 2,048-position cache holds about half of it).
        k_cache = torch.empty(shape, dtype=self.kv_dtype, device=self.device)
        v_cache = torch.empty(shape, dtype=self.kv_dtype, device=self.device)
        if self.k_cache is not None and self.length:
            k_cache[..., : self.length, :] = self.k_cache[..., : self.length, :]
            v_cache[..., : self.length, :] = self.v_cache[..., : self.length, :]
        self.k_cache, self.v_cache, self.capacity = k_cache, v_cache, capacity
        self.cos, self.sin = self._rope_table()
        if self.complex_rope:
            half = self.rotary_dims // 2
            self.rope = torch.complex(self.cos[..., :half].float(), self.sin[..., :half].float())

    def reset(self) -> None:
        self.length = 0

    def crop(self, keep: int) -> None:
        """Keep the first ``keep`` positions (the rest is overwritten by later writes)."""
        self.length = min(self.length, keep)

    def release(self) -> None:
        self.k_cache = self.v_cache = self.cos = self.sin = self.rope = None
        self.length = self.capacity = 0

    def _norm(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The family's norm: LayerNorm with bias, or RMSNorm (one fused op in fp32; in 16-bit,
        normalized in fp32 and rounded before the weight, as transformers does)."""
        if self.spec.norm == "layer":
            return F.layer_norm(x, weight.shape, weight, bias, self.eps)
        if x.dtype == torch.float32:
            return torch.rms_norm(
                x, weight.shape, weight, self.eps
            )  # not F.: its wrapper costs 15 us
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * x32.to(x.dtype)

    def _activation(self, x: torch.Tensor) -> torch.Tensor:
        name = self.spec.activation
        if name == "silu":
            return F.silu(x)
        return F.gelu(x, approximate="tanh" if name == "gelu_tanh" else "none")

    def _mlp_inner(self, layer: LayerWeights, h: torch.Tensor) -> torch.Tensor:
        """The MLP's activated inner rows, ``act(gate) * up`` (or ``act(fc)``), for ``h``'s rows.
        A long pass computes them ``MLP_ROWS`` rows at a time into one buffer in the dtype the
        down product reads: whole, a 512-token chunk of Qwen2.5-Coder-1.5B held its gate/up
        output in 16 bits and fp32 and three more inner-sized fp32 tensors at once (about 80
        MB; issue 21's memory bound). Each row's arithmetic is the same."""
        count = h.shape[0]
        if count <= MLP_ROWS:
            if self.spec.gated:
                gate, up = layer.gate_up(h).chunk(2, dim=-1)
                return self._activation(gate) * up
            return self._activation(layer.gate_up(h))
        blocks = -(-count // MLP_ROWS)
        rows = -(-count // blocks)  # even blocks: no short last one
        inner = None
        for start, y in layer.gate_up.row_blocks(h, rows):
            if self.spec.gated:
                gate, up = y.chunk(2, dim=-1)
                y = self._activation(gate) * up
            else:
                y = self._activation(y)
            if inner is None:
                inner = torch.empty((count, y.shape[1]), dtype=layer.down.compute_dtype)
            inner[start : start + y.shape[0]] = y
        return inner

    def _mask(self, start: int, count: int) -> torch.Tensor | None:
        """Which cached keys each of the pass's rows sees (None: all of them, or plainly causal):
        its own position and earlier, within the sliding window where the family has one."""
        end = start + count
        windowed = self.window is not None and end > self.window
        if count == 1 and not windowed:
            return None
        if count > 1 and start == 0 and not windowed:
            return None  # is_causal
        keys = torch.arange(end, device=self.device)[None, :]
        rows = (start + torch.arange(count, device=self.device))[:, None]
        mask = keys <= rows
        if windowed:
            mask &= keys > rows - self.window
        return mask

    def _rope_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of every position up to the context, (capacity, 1, head_dim): computed
        once, so a decode step only slices them."""
        positions = torch.arange(self.capacity, device=self.device, dtype=torch.float32)
        freqs = positions[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]  # (capacity, 1, rotary_dims)
        return (
            (emb.cos() * self.rope_scale).to(self.act_dtype),
            (emb.sin() * self.rope_scale).to(self.act_dtype),
        )

    def int8_weights(self) -> list[Int8Weight]:
        """The int8 copies used for decode (empty unless int8 decode runs through PyTorch)."""
        return [p.int8 for p in self.projections if p.int8 is not None]

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    @torch.inference_mode()
    def forward(self, ids: list[int], all_logits: bool = False) -> torch.Tensor:
        """Run ``ids`` after the cached positions; return the last position's logits (or every one's)."""
        count, start = len(ids), self.length
        end = start + count
        self._reserve(end)
        if self.blas is not None and (
            count == 1 or (self.blas.compact and count <= blas_decode.MAX_ROWS)
        ):
            # Draft checks from fp32 weights run below: PyTorch's few-row GEMMs beat OpenBLAS's
            # there (llama-30m, 8 rows: 33 against 39 CPU ms; benchmarks.forward_variants),
            # while one-row steps (12 against 15) and compact copies' drafts stay in NumPy/C.
            logits = self.blas.forward(ids, all_logits)
            self.length = end
            return logits
        x = F.embedding(torch.tensor(ids, device=self.device), self.embed).to(
            self.act_dtype
        )  # (T, hidden)
        if self.embed_scale != 1.0:
            x = x * self.embed_scale
        if self.complex_rope:
            rope = self.rope[start:end]  # (T, 1, rotary_dims / 2) complex: broadcast over heads
        else:
            cos, sin = self.cos[start:end], self.sin[start:end]  # (T, 1, rotary_dims)
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        qk_heads = self.heads + self.kv_heads
        rot = self.rotary_dims
        mask = self._mask(start, count)
        for i, layer in enumerate(self.layers):
            h = self._norm(x, layer.input_norm, layer.input_norm_bias)
            qkv = layer.qkv(h)
            # q and k rotate together: one set of RoPE ops per layer, not two.
            qk = qkv[:, : q_size + kv_size].view(count, qk_heads, self.head_dim)
            if self.complex_rope:
                pairs = torch.view_as_complex(qk[..., :rot].reshape(count, qk_heads, -1, 2))
                turned = torch.view_as_real(pairs * rope).view(count, qk_heads, rot)
            else:
                turned = self._rotate(qk[..., :rot], cos, sin)
            qk = turned if rot == self.head_dim else torch.cat([turned, qk[..., rot:]], dim=-1)
            qk = qk.transpose(0, 1)  # (heads + kv_heads, T, head_dim)
            q, k = qk[: self.heads], qk[self.heads :]
            v = qkv[:, q_size + kv_size :].view(count, self.kv_heads, self.head_dim).transpose(0, 1)
            if self.kv_dtype == torch.int8:  # rows of int8 values and their scale
                self.k_cache[i, 0, :, start:end] = kv_int8.quantize_torch(k)
                self.v_cache[i, 0, :, start:end] = kv_int8.quantize_torch(v)
            else:
                self.k_cache[i, 0, :, start:end] = k  # rounded here where the cache is 16-bit
                self.v_cache[i, 0, :, start:end] = v
            if self.kv_dtype == self.act_dtype:
                keys, values = self.k_cache[i, :, :, :end], self.v_cache[i, :, :, :end]
            elif start == 0:  # nothing cached before: the pass's own keys, at full precision
                keys, values = k[None], v[None]
            elif self.kv_dtype == torch.int8:  # the cached positions dequantized (a temporary)
                keys = kv_int8.dequantize_torch(self.k_cache[i, :, :, :end]).to(self.act_dtype)
                values = kv_int8.dequantize_torch(self.v_cache[i, :, :, :end]).to(self.act_dtype)
            else:  # the cached positions widened (a temporary of one layer's keys and values)
                keys = self.k_cache[i, :, :, :end].to(self.act_dtype)
                values = self.v_cache[i, :, :, :end].to(self.act_dtype)
            attn = F.scaled_dot_product_attention(
                q[None],
                keys,
                values,
                attn_mask=mask,
                is_causal=count > 1 and mask is None,
                scale=self.scale,
                enable_gqa=self.kv_heads != self.heads,
            )
            x = x + layer.o(attn[0].transpose(0, 1).reshape(count, q_size))
            h = self._norm(x, layer.post_norm, layer.post_norm_bias)
            x = x + layer.down(self._mlp_inner(layer, h))
        self.length = end
        if all_logits:
            return self.lm_head(self._norm(x, self.norm, self.norm_bias))
        return self.lm_head(self._norm(x[-1:], self.norm, self.norm_bias))[0]
