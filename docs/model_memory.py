"""Print the parameters and weight memory of the models README.md recommends.

The numbers are those of each model's published config.json (Hugging Face model pages), counted
by the engine's own estimate (``core.backends.footprint``, which also refuses a model that would
not fit before loading it): the model is built on PyTorch's ``meta`` device, which allocates
nothing, so this runs in a second on any machine with DeepShiva installed and needs no download:

    .venv/bin/python docs/model_memory.py
"""

from __future__ import annotations

import transformers as tf

from core.backends.footprint import parameters

GiB = 2**30
CONTEXT = 4096  # tokens of KV cache in the table's last column

CONFIGS = {
    "Qwen/Qwen2.5-Coder-0.5B": tf.Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "Qwen/Qwen2.5-Coder-1.5B": tf.Qwen2Config(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "Qwen/Qwen2.5-Coder-3B": tf.Qwen2Config(
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "deepseek-ai/deepseek-coder-1.3b-base": tf.LlamaConfig(
        vocab_size=32256,
        hidden_size=2048,
        intermediate_size=5504,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=16,
        tie_word_embeddings=False,
    ),
    "stabilityai/stable-code-3b": tf.StableLmConfig(
        vocab_size=50304,
        hidden_size=2560,
        intermediate_size=6912,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        use_qkv_bias=False,
        tie_word_embeddings=False,
    ),
    "bigcode/starcoder2-3b": tf.Starcoder2Config(
        vocab_size=49152,
        hidden_size=3072,
        intermediate_size=12288,
        num_hidden_layers=30,
        num_attention_heads=24,
        num_key_value_heads=2,
        use_bias=True,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
    ),
}


def kv_bytes_per_token(config, bytes_per_value: int = 2) -> int:
    """Keys and values of one token over every layer."""
    head_dim = config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * bytes_per_value


def main() -> None:
    print(
        f"| model | parameters | bf16 weights | fp32 weights | int8 weights (at least: embeddings stay 16-bit) | bf16 KV cache at {CONTEXT} tokens |"
    )
    print("|---|---|---|---|---|---|")
    for name, config in CONFIGS.items():
        n = parameters(config)
        kv = kv_bytes_per_token(config) * CONTEXT
        print(
            f"| {name} | {n / 1e9:.2f} B | {2 * n / GiB:.1f} GiB | {4 * n / GiB:.1f} GiB "
            f"| ~{n / GiB:.1f} GiB | {kv / GiB:.2f} GiB |"
        )


if __name__ == "__main__":
    main()
