"""benchmarks.cross_file --long-context at users' sizes: the K/V bytes per position it reports
are what the engine's cache really holds, and each users'-size shape it offers is one that
benchmarks.shapes can build."""

from __future__ import annotations

import shutil

import pytest
import transformers

import core  # noqa: F401  (before torch: core sets libgomp's spin count)
from benchmarks import cross_file
from benchmarks.shapes import SHAPES, SHIPPED, write_random_checkpoint


@pytest.mark.parametrize(
    ("family", "extra"),
    [
        ("Qwen2", dict(num_key_value_heads=2, tie_word_embeddings=True)),  # grouped-query
        ("StableLm", dict(num_key_value_heads=4, partial_rotary_factor=0.25)),  # multi-head
        ("Gemma", dict(num_key_value_heads=1, head_dim=32)),  # head_dim not hidden / heads
    ],
)
def test_kv_bytes_per_position_is_what_the_engines_cache_holds_per_position(
    tmp_path, family, extra
):
    from core import OptimizedLLM

    config = getattr(transformers, f"{family}Config")(
        vocab_size=4096,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=1024,
        bos_token_id=0,
        eos_token_id=0,
        **extra,
    )
    write_random_checkpoint(getattr(transformers, f"{family}ForCausalLM"), config, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    backend = OptimizedLLM(str(tmp_path)).runner.backend
    backend._reserve(300)
    held = backend.k_cache.nbytes + backend.v_cache.nbytes
    per_position = cross_file.kv_bytes_per_position(config, backend.k_cache.element_size())
    assert per_position * backend.capacity == held


def test_every_users_size_long_context_shape_is_a_shape_benchmarks_shapes_builds():
    named = [v for v in cross_file.LONG_CONTEXT_SHAPES.values() if isinstance(v, str)]
    assert {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "stablelm-3b"} <= set(named)
    assert set(named) <= set(SHAPES)
