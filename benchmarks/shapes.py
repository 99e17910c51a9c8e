"""Random-weight models of real deployment shapes, built from config and saved once.

Weights cannot be downloaded here, and speed does not depend on their values: a model with the
shape of TinyLlama-1.1B or stable-code-3b, saved with save_pretrained and loaded back through
OptimizedLLM, runs exactly the kernels the real one would.
"""

from __future__ import annotations

from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
SHIPPED = ROOT / "models" / "tiny-python"

SHAPES = {
    # TinyLlama-1.1B: 22 layers, hidden 2048, 4 KV heads (grouped-query attention).
    "llama-1b": dict(
        family="llama",
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=4096,
    ),
    # A ~400M-parameter Llama (0.8 GB in bf16): big enough that a second copy of the weights
    # stands out of the process's own few hundred MB (benchmarks.paths, the memory column).
    "llama-400m": dict(
        family="llama",
        vocab_size=32000,
        hidden_size=1536,
        intermediate_size=4096,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
        max_position_embeddings=4096,
    ),
    # A ~30M-parameter Llama: small enough for a quick paired run on a shared machine.
    "llama-30m": dict(
        family="llama",
        vocab_size=16384,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=2048,
    ),
    # The other families at the same ~30M size (their own features: biases, LayerNorm, GELU, ...).
    "mistral-30m": dict(
        family="mistral",
        vocab_size=16384,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        sliding_window=1024,
    ),
    "qwen2-30m": dict(
        family="qwen2",
        vocab_size=16384,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    ),
    "stablelm-30m": dict(
        family="stablelm",
        vocab_size=16384,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=2048,
        partial_rotary_factor=0.25,
        use_qkv_bias=True,
    ),
    "starcoder2-30m": dict(
        family="starcoder2",
        vocab_size=16384,
        hidden_size=512,
        intermediate_size=2048,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        sliding_window=1024,
        use_bias=True,
    ),
    "gemma-30m": dict(
        family="gemma",
        vocab_size=16384,
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=2048,
    ),
    # Qwen/Qwen2.5-Coder-1.5B (its published config.json values): 28 layers, GQA 12/2 heads,
    # q/k/v biases (the qwen2 family's), tied embeddings over a 151936-token vocabulary.
    "qwen2.5-coder-1.5b": dict(
        family="qwen2",
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
    # Qwen/Qwen2.5-Coder-0.5B (its published config.json values): 24 layers, GQA 14/2 heads,
    # q/k/v biases, tied embeddings over the same 151936-token vocabulary (a quarter of its
    # 0.49B parameters).
    "qwen2.5-coder-0.5b": dict(
        family="qwen2",
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
    # deepseek-ai/deepseek-coder-1.3b-base (its published config.json values): a Llama of 24
    # layers with full multi-head attention (16 K/V heads), linear RoPE scaling x4 to 16,384
    # positions, untied embeddings; 1.35B parameters, 2.7 GB in bf16.
    "deepseek-coder-1.3b": dict(
        family="llama",
        vocab_size=32256,
        hidden_size=2048,
        intermediate_size=5504,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=16,
        max_position_embeddings=16384,
        rope_theta=100000.0,
        rope_scaling={"rope_type": "linear", "factor": 4.0},
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    ),
    # stabilityai/stable-code-3b (its published config.json values): StableLM architecture, 32
    # layers of full multi-head attention (32 K/V heads), rotary embeddings on a quarter of each
    # head, LayerNorm, no q/k/v biases, untied embeddings; 2.80B parameters, 5.6 GB in bf16.
    "stablelm-3b": dict(
        family="stablelm",
        vocab_size=50304,
        hidden_size=2560,
        intermediate_size=6912,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=16384,
        partial_rotary_factor=0.25,
        rope_theta=1000000.0,
        layer_norm_eps=1e-5,
        use_qkv_bias=False,
        tie_word_embeddings=False,
    ),
}

# Each family at ~400M parameters (Qwen2.5-Coder-0.5B's scale): the 30M shape widened to hidden
# 1024 over 24 layers, 16 heads, MLPs 4x (gated) or 6x (plain) the hidden size.
for _family in ("llama", "mistral", "qwen2", "stablelm", "starcoder2", "gemma"):
    _small = SHAPES[f"{_family}-30m"]
    SHAPES[f"{_family}-400m"] = dict(
        _small,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads={"stablelm": 16, "gemma": 1}.get(_family, 4),
        intermediate_size=6144 if _family == "starcoder2" else 4096,
    )


def write_random_checkpoint(
    model_cls, config, out: Path, dtype=torch.bfloat16, seed: int = 0, shard_bytes: int = 2**30
) -> int:
    """Save a random-weight checkpoint of ``model_cls(config)`` to ``out`` in ``dtype`` without
    building the model: names and shapes come from a model on the meta device, and each tensor is
    drawn (normal, std 0.02; norms 1, biases 0) and written in safetensors shards of about
    ``shard_bytes``, so a 3B model needs one shard of memory, not the model's. Returns the bytes
    of weights written."""
    import json

    from safetensors.torch import save_file

    with torch.device("meta"):
        meta = model_cls(config)
    tied = getattr(config, "tie_word_embeddings", False)
    shapes = {
        name: tuple(t.shape)
        for name, t in meta.state_dict().items()
        if not (tied and name == "lm_head.weight")
    }
    size = torch.tensor([], dtype=dtype).element_size()
    shards: list[list[str]] = [[]]
    filled = 0
    for name, shape in shapes.items():
        nbytes = size * int(torch.Size(shape).numel())
        if shards[-1] and filled + nbytes > shard_bytes:
            shards.append([])
            filled = 0
        shards[-1].append(name)
        filled += nbytes
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    weight_map, total = {}, 0
    for i, names in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name in names:
            shape = shapes[name]
            if name.endswith("bias"):
                tensor = torch.zeros(shape, dtype=dtype)
            elif "norm" in name:
                tensor = torch.ones(shape, dtype=dtype)
            else:
                tensor = (torch.randn(shape, generator=generator) * 0.02).to(dtype)
            tensors[name] = tensor
            weight_map[name] = file
            total += tensor.numel() * size
        save_file(tensors, str(out / file), metadata={"format": "pt"})
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config.dtype = dtype
    # What save_pretrained of the model would record; llama.cpp's GGUF converter needs it.
    config.architectures = [model_cls.__name__]
    config.save_pretrained(out)
    return total


def model_dir(name: str) -> Path:
    """Directory of the model called ``name`` ("shipped" or a key of SHAPES), built if needed."""
    if name == "shipped":
        return SHIPPED
    if Path(name).is_dir():
        return Path(name)
    out = CACHE / name
    if (out / "config.json").exists():
        return out
    import transformers
    from transformers import AutoTokenizer

    spec = dict(SHAPES[name])
    family = spec.pop("family")
    prefix = {
        "llama": "Llama",
        "mistral": "Mistral",
        "qwen2": "Qwen2",
        "stablelm": "StableLm",
        "starcoder2": "Starcoder2",
        "gemma": "Gemma",
    }[family]
    config_cls = getattr(transformers, f"{prefix}Config")
    model_cls = getattr(transformers, f"{prefix}ForCausalLM")
    # The shipped tokenizer stands in: token ids beyond its vocabulary are never produced by it,
    # and the benchmark only needs a real tokenizer for the prompt.
    tokenizer = AutoTokenizer.from_pretrained(SHIPPED)
    config = config_cls(
        **spec, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    write_random_checkpoint(model_cls, config, out)
    # The stand-in tokenizer must not cap the context at the shipped model's 1024 tokens.
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(out)
    return out
