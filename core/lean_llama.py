"""A lean forward pass for Llama-architecture models, for the decode loop's hot path.

``generate()`` and even a bare call of the transformers model pay per token for dozens of module
calls, a KV cache that grows by concatenation (copying the whole cache every step) and
bookkeeping a single-sequence decoder does not need. This runs the same arithmetic over the
model's own weights: q/k/v and gate/up projections fused into one matrix each, a preallocated
KV cache written in place, and PyTorch's fused attention. It is used only where it is exact
(plain Llama: default RoPE, no biases, SiLU, unquantized, on one device), which the tests check
against transformers' logits; every other model runs through transformers (``HFBackend``).

On the CPU the activations, norms, RoPE, attention and KV cache are fp32 whatever the weights'
dtype: 16-bit masters (bf16 on CPUs with native bf16) run only their GEMMs in 16 bits.

``decode_weights`` (CPU only) chooses the bytes a decode step reads: ``fp32`` (the masters
themselves), or compact copies (``fp16``, ``bf16``, ``int8``; ``core.compact_weights``) that the
NumPy decode path (``core.blas_decode``) multiplies with the C kernels, from fp32 or bf16
masters alike. Prefill keeps the masters, so it is unchanged. Where the C kernels are not built, ``int8`` falls back to PyTorch's int8
weight kernel (one scale per output row, bf16 activations inside the product; very slow for many
rows, so only passes of at most ``INT8_MAX_ROWS`` tokens use it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import blas_decode, compact_weights
from .devices import SHORT_NAMES
from .backends import select
from .backends.layers import INT8_MAX_ROWS, Int8Weight, LayerWeights, Projection  # noqa: F401 - re-exported

DECODE_WEIGHTS = ("fp32",) + compact_weights.PRECISIONS
# RoPE variants whose frequencies transformers computes once at load (its rotary module's
# inv_freq and attention_scaling, which this module reads): exact here. "dynamic" changes them
# only past max_position_embeddings, which the cache never grows beyond.
ROPE_TYPES = ("default", "linear", "llama3", "yarn", "dynamic")
CACHE_STEP = 256  # the KV cache grows in multiples of this many positions


def unsupported_reason(model) -> str | None:
    """Why ``model`` cannot run on this module exactly, or None when it can."""
    config = model.config
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if config.model_type != "llama":
        return f"model_type {config.model_type!r} has no lean forward (the lean path computes Llama layers)"
    if rope_type not in ROPE_TYPES:
        return f"RoPE {rope_type!r} is not one the lean path computes ({', '.join(ROPE_TYPES)})"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "attention or MLP biases are not in the lean Llama layer"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r} is not SiLU"
    if getattr(model, "hf_device_map", None) is not None:
        return "the weights are spread over devices or offloaded (max_memory): accelerate's hooks run them"
    if getattr(model, "quantization_method", None) is not None or getattr(model, "is_quantized", False):
        return "the weights are quantized by bitsandbytes (load_in_8bit): its kernels run them"
    return None


def supports(model) -> bool:
    """True when ``model`` is a Llama this module computes exactly."""
    return unsupported_reason(model) is None


class LeanLlamaBackend:
    """Forward passes over a Llama's weights with a static KV cache; same logits as transformers."""

    def __init__(self, model, decode_weights: str = "fp32", blas: bool | None = None):
        config = model.config
        inner = model.model
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.max_positions = config.max_position_embeddings
        self.capacity = 0  # positions the KV cache holds now; grows as prompts need (``_reserve``)
        weight = inner.embed_tokens.weight
        self.dtype, self.device = weight.dtype, weight.device
        # Activations, norms, RoPE, attention and the KV cache: fp32 on the CPU whatever the
        # weights' dtype (16-bit masters then run only their GEMMs in 16 bits, and the NumPy/C
        # decode path can read the same cache); the weights' dtype elsewhere.
        self.act_dtype = torch.float32 if self.device.type == "cpu" else self.dtype
        self.embed = weight.detach()
        if decode_weights not in DECODE_WEIGHTS:
            raise ValueError(f"decode weights must be one of {', '.join(DECODE_WEIGHTS)}, not {decode_weights!r}")
        if decode_weights != "fp32" and self.device.type != "cpu":
            raise ValueError(f"{decode_weights} decode weights are for the CPU only (use load_in_8bit on CUDA)")
        self.decode_weights = decode_weights
        # In fp32, q and k rotate as complex numbers: one multiply instead of five ops. That
        # needs each rotating pair (i, i + head_dim/2) side by side, so their rows are
        # interleaved; q.k is the same sum in another order, and v keeps its rows. (Not on MPS,
        # whose complex support is partial; 16-bit models keep the real-valued rotation.)
        self.complex_rope = self.act_dtype == torch.float32 and self.device.type in ("cpu", "cuda")
        # Compact weights run in the NumPy decode path; without it only int8 has a fallback.
        # core.backends.select decides (blas=None); True or False forces it where it can run.
        why_not = select.numpy_decode_reason(self, switch=blas is None)
        use_blas = blas is not False and why_not is None
        self.numpy_decode_why_not = why_not if blas is not False else "turned off by the caller"
        if decode_weights in ("fp16", "bf16") and not use_blas:
            raise ValueError(f"{decode_weights} decode weights cannot run here: {self.numpy_decode_why_not}")
        int8 = decode_weights == "int8" and not use_blas  # PyTorch's int8 kernel
        self.layers = []
        with torch.no_grad():
            for layer in inner.layers:
                attn, mlp = layer.self_attn, layer.mlp
                q, k = attn.q_proj.weight, attn.k_proj.weight
                if self.complex_rope:
                    q, k = self._pair_rows(q, self.heads), self._pair_rows(k, self.kv_heads)
                qkv = torch.cat([q, k, attn.v_proj.weight])
                gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
                self.layers.append(LayerWeights(
                    input_norm=self._norm_weight(layer.input_layernorm.weight),
                    qkv=Projection(qkv.detach(), transposed=True, int8=int8),
                    o=Projection(attn.o_proj.weight.detach(), int8=int8),
                    post_norm=self._norm_weight(layer.post_attention_layernorm.weight),
                    gate_up=Projection(gate_up.detach(), transposed=True, int8=int8),
                    down=Projection(mlp.down_proj.weight.detach(), int8=int8),
                ))
            self.lm_head = Projection(model.get_output_embeddings().weight.detach(), int8=int8)
        self.projections = [p for layer in self.layers for p in layer.projections()]
        self.projections.append(self.lm_head)
        self.norm = self._norm_weight(inner.norm.weight)
        rotary = inner.rotary_emb
        self.inv_freq = rotary.inv_freq.detach().to(self.device, torch.float32)
        self.rope_scale = float(getattr(rotary, "attention_scaling", 1.0))
        self.scale = getattr(model.model.layers[0].self_attn, "scaling", self.head_dim ** -0.5)
        self.k_cache = self.v_cache = None
        self.cos = self.sin = self.rope = None
        self.length = 0
        # Decode steps through NumPy's OpenBLAS (and the C kernels) where that computes the same thing.
        self.blas = blas_decode.BlasDecoder(self) if use_blas else None

    def describe(self) -> dict:
        """The path this backend runs, in words (``core.backends.select`` adds the reasons)."""
        masters = SHORT_NAMES.get(self.dtype, str(self.dtype))
        if self.act_dtype == self.dtype:
            prefill = f"torch {masters}"
        else:
            prefill = f"torch {masters} GEMMs, {SHORT_NAMES.get(self.act_dtype)} activations"
        if self.blas is None:
            decode = "torch int8 kernel" if self.decode_weights == "int8" else prefill
        elif self.blas.fused is not None:
            decode = f"fused C step, {self.decode_weights} weights"
        elif self.blas.compact:
            decode = f"NumPy + C kernels, {self.decode_weights} weights"
        else:
            decode = "NumPy/OpenBLAS, fp32 weights"
        return {"backend": "lean-llama", "prefill": prefill, "decode": decode}

    def _norm_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """A norm's weight in the activations' dtype (a small copy only for 16-bit masters on the CPU)."""
        return weight.detach().to(self.act_dtype)

    def _pair_rows(self, weight: torch.Tensor, heads: int) -> torch.Tensor:
        """Rows of a q or k matrix reordered per head as (0, d/2, 1, d/2 + 1, ...)."""
        half = self.head_dim // 2
        order = torch.stack((torch.arange(half), torch.arange(half, self.head_dim)), dim=1).flatten()
        return weight.view(heads, self.head_dim, -1)[:, order].reshape(weight.shape)

    def _reserve(self, end: int) -> None:
        """Make the KV cache hold ``end`` positions: it starts at what the first prompt needs
        and grows (doubling, in steps of ``CACHE_STEP``, at most ``max_positions``), keeping
        the cached positions, so a short request never pays for the whole context."""
        if end <= self.capacity and self.k_cache is not None:
            return
        if end > self.max_positions:
            raise ValueError(f"sequence of {end} tokens exceeds the context of {self.max_positions}")
        wanted = max(end, 2 * self.capacity)
        capacity = min(self.max_positions, -(-wanted // CACHE_STEP) * CACHE_STEP)
        shape = (len(self.layers), 1, self.kv_heads, capacity, self.head_dim)
        k_cache = torch.zeros(shape, dtype=self.act_dtype, device=self.device)
        v_cache = torch.zeros(shape, dtype=self.act_dtype, device=self.device)
        if self.k_cache is not None and self.length:
            k_cache[..., :self.length, :] = self.k_cache[..., :self.length, :]
            v_cache[..., :self.length, :] = self.v_cache[..., :self.length, :]
        self.k_cache, self.v_cache, self.capacity = k_cache, v_cache, capacity
        self.cos, self.sin = self._rope_table()
        if self.complex_rope:
            half = self.head_dim // 2
            self.rope = torch.complex(self.cos[..., :half].float(), self.sin[..., :half].float())

    def reset(self) -> None:
        self.length = 0

    def crop(self, keep: int) -> None:
        """Keep the first ``keep`` positions (the rest is overwritten by later writes)."""
        self.length = min(self.length, keep)

    def release(self) -> None:
        self.k_cache = self.v_cache = self.cos = self.sin = self.rope = None
        self.length = self.capacity = 0

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Llama's RMSNorm: one fused op in fp32; in 16-bit, normalized in fp32 and rounded
        before the weight, as transformers does."""
        if x.dtype == torch.float32:
            return torch.rms_norm(x, weight.shape, weight, self.eps)  # not F.: its wrapper costs 15 us
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * x32.to(x.dtype)

    def _rope_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of every position up to the context, (capacity, 1, head_dim): computed
        once, so a decode step only slices them."""
        positions = torch.arange(self.capacity, device=self.device, dtype=torch.float32)
        freqs = positions[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]
        return ((emb.cos() * self.rope_scale).to(self.act_dtype),
                (emb.sin() * self.rope_scale).to(self.act_dtype))

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
        if self.blas is not None and count <= blas_decode.MAX_ROWS:
            logits = self.blas.forward(ids, all_logits)
            self.length = end
            return logits
        x = F.embedding(torch.tensor(ids, device=self.device), self.embed).to(self.act_dtype)  # (T, hidden)
        if self.complex_rope:
            rope = self.rope[start:end]  # (T, 1, head_dim / 2) complex: broadcast over heads
        else:
            cos, sin = self.cos[start:end], self.sin[start:end]  # (T, 1, head_dim)
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        qk_heads = self.heads + self.kv_heads
        mask = None
        if count > 1 and start > 0:
            positions = torch.arange(end, device=self.device)
            mask = positions[None, :] <= (start + torch.arange(count, device=self.device))[:, None]
        for i, layer in enumerate(self.layers):
            h = self._rms_norm(x, layer.input_norm)
            qkv = layer.qkv(h)
            # q and k rotate together: one set of RoPE ops per layer, not two.
            if self.complex_rope:
                pairs = torch.view_as_complex(qkv[:, :q_size + kv_size].view(count, qk_heads, -1, 2))
                qk = torch.view_as_real(pairs * rope).view(count, qk_heads, self.head_dim)
            else:
                qk = self._rotate(qkv[:, :q_size + kv_size].view(count, qk_heads, self.head_dim), cos, sin)
            qk = qk.transpose(0, 1)  # (heads + kv_heads, T, head_dim)
            q, k = qk[:self.heads], qk[self.heads:]
            v = qkv[:, q_size + kv_size:].view(count, self.kv_heads, self.head_dim).transpose(0, 1)
            self.k_cache[i, 0, :, start:end] = k
            self.v_cache[i, 0, :, start:end] = v
            keys, values = self.k_cache[i, :, :, :end], self.v_cache[i, :, :, :end]
            attn = F.scaled_dot_product_attention(
                q[None], keys, values, attn_mask=mask, is_causal=count > 1 and start == 0,
                scale=self.scale, enable_gqa=self.kv_heads != self.heads,
            )
            x = x + layer.o(attn[0].transpose(0, 1).reshape(count, q_size))
            h = self._rms_norm(x, layer.post_norm)
            gate, up = layer.gate_up(h).chunk(2, dim=-1)
            x = x + layer.down(F.silu(gate) * up)
        self.length = end
        if all_logits:
            return self.lm_head(self._rms_norm(x, self.norm))
        return self.lm_head(self._rms_norm(x[-1:], self.norm))[0]
