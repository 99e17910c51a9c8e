"""What differs between the decoder families the lean forward computes, as data.

Llama (CodeLlama, DeepSeek-Coder), Mistral (Codestral), Qwen2 (Qwen2.5-Coder), StableLM
(stable-code), Starcoder2 and Gemma (CodeGemma) share one layer: norm, attention with RoPE over a
KV cache, residual, norm, MLP, residual. They differ in a few named ops, read here from the
transformers model once: the norm (RMSNorm, Gemma's with weight 1 + w, LayerNorm with bias),
biases on projections, a gated (SiLU or GELU) or plain GELU MLP, RoPE over all or part of a
head, a sliding attention window, and a scale on the embeddings. ``core.lean_llama`` computes
every family from a ``FamilySpec`` and ``layer_tensors``; a family that is not here, or a
variant these ops cannot express, runs through transformers and ``unsupported_reason`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FAMILIES = ("llama", "mistral", "qwen2", "stablelm", "starcoder2", "gemma")
ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu": "gelu",
}


@dataclass(frozen=True)
class FamilySpec:
    """The ops one family's layers name."""

    family: str
    norm: str  # "rms" or "layer" (LayerNorm with bias)
    eps: float
    activation: str  # "silu", "gelu_tanh" or "gelu"
    gated: bool  # act(gate) * up (Llama's MLP) or act(fc) (Starcoder2's)
    rotary_dims: int  # how many of each head's dims RoPE rotates (StableLM: a quarter)
    window: int | None  # keys a query sees (sliding window), None for all
    embed_scale: float  # Gemma multiplies embeddings by sqrt(hidden)


def _config_activation(config) -> str | None:
    name = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", "silu")
    return ACTIVATIONS.get(name)


def unsupported_reason(model) -> str | None:
    """Why the lean forward cannot compute ``model`` exactly (None when it can)."""
    config = model.config
    family = config.model_type
    if family not in FAMILIES:
        return f"model_type {family!r} has no lean forward (it computes {', '.join(FAMILIES)})"
    if _config_activation(config) is None:
        return f"activation {getattr(config, 'hidden_act', None)!r} is not one the lean forward computes"
    if family == "llama" and getattr(config, "mlp_bias", False):
        return "MLP biases are not in the lean Llama layer"
    if family == "stablelm" and (
        getattr(config, "use_parallel_residual", False) or getattr(config, "qk_layernorm", False)
    ):
        return "StableLM's parallel residual and q/k LayerNorm are not in the lean layer"
    if family == "qwen2" and "sliding_attention" in (getattr(config, "layer_types", None) or []):
        return "Qwen2 with per-layer sliding windows (use_sliding_window) is not in the lean layer"
    return None


def spec_of(model) -> FamilySpec:
    config = model.config
    family = config.model_type
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    partial = (
        rope.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0)) or 1.0
    )
    layer_norm = family in ("stablelm", "starcoder2")
    eps = (
        (getattr(config, "layer_norm_eps", None) or getattr(config, "norm_epsilon", None))
        if layer_norm
        else config.rms_norm_eps
    )
    window = (
        getattr(config, "sliding_window", None) if family in ("mistral", "starcoder2") else None
    )
    if window is not None and window >= config.max_position_embeddings:
        window = None  # never reached: the cache holds at most max_position_embeddings
    return FamilySpec(
        family=family,
        norm="layer" if layer_norm else "rms",
        eps=float(eps),
        activation=_config_activation(config),
        gated=family != "starcoder2",
        rotary_dims=int(head_dim * partial),
        window=window,
        embed_scale=math.sqrt(config.hidden_size) if family == "gemma" else 1.0,
    )


def _bias(linear) -> torch.Tensor | None:
    bias = getattr(linear, "bias", None)
    return None if bias is None else bias.detach()


def layer_tensors(layer, spec: FamilySpec) -> dict:
    """One transformers decoder layer's tensors under the names ``core.lean_llama`` reads."""
    attn, mlp = layer.self_attn, layer.mlp
    ln1, ln2 = layer.input_layernorm, layer.post_attention_layernorm
    out = {
        "q": attn.q_proj.weight,
        "k": attn.k_proj.weight,
        "v": attn.v_proj.weight,
        "o": attn.o_proj.weight,
        "q_bias": _bias(attn.q_proj),
        "k_bias": _bias(attn.k_proj),
        "v_bias": _bias(attn.v_proj),
        "o_bias": _bias(attn.o_proj),
        "input_norm": norm_weight(ln1, spec),
        "input_norm_bias": _bias(ln1),
        "post_norm": norm_weight(ln2, spec),
        "post_norm_bias": _bias(ln2),
    }
    if spec.gated:
        out.update(
            gate=mlp.gate_proj.weight,
            up=mlp.up_proj.weight,
            down=mlp.down_proj.weight,
            gate_up_bias=None
            if _bias(mlp.gate_proj) is None
            else torch.cat([_bias(mlp.gate_proj), _bias(mlp.up_proj)]),
            down_bias=_bias(mlp.down_proj),
        )
    else:
        out.update(
            fc=mlp.c_fc.weight,
            fc_bias=_bias(mlp.c_fc),
            down=mlp.c_proj.weight,
            down_bias=_bias(mlp.c_proj),
        )
    return out


def norm_weight(norm, spec: FamilySpec) -> torch.Tensor:
    """A norm's effective weight: Gemma's RMSNorm multiplies by 1 + w, folded in here once."""
    weight = norm.weight.detach()
    if spec.family == "gemma":
        return 1.0 + weight.to(torch.float32)
    return weight


def final_norm(model, spec: FamilySpec) -> tuple[torch.Tensor, torch.Tensor | None]:
    norm = model.model.norm
    return norm_weight(norm, spec), _bias(norm)
