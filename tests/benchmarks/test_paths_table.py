"""benchmarks.paths' table for users' sizes: which baseline each setting's decode is compared
with, per-round ratios, the bytes a decode step reads; and the random checkpoints llama.cpp's
converter must be able to read."""

from __future__ import annotations

import json

import pytest
import transformers

from benchmarks import paths
from benchmarks.shapes import write_random_checkpoint
from core.backends.footprint import shape_of


def _round(ms: float, fmt: str, read: float = 20.0) -> dict:
    return {
        "ms_per_token": ms,
        "decode_format": fmt,
        "described": fmt,
        "load_s": 1.0,
        "ttft_ms": 100.0,
        "keystroke_ms": 10.0,
        "peak_rss_mb": 500.0,
        "decode_gb_s": 16.0,
        "read_gb_s": read,
    }


def test_each_precision_is_compared_with_llamacpp_at_the_same_precision_round_by_round():
    runs = {
        "default": [_round(100, "bf16"), _round(200, "bf16")],
        "bf16 masters + int4 C decode": [_round(40, "int4"), _round(50, "int4")],
        "transformers generate (bf16)": [_round(300, "bf16"), _round(300, "bf16")],
        "llama.cpp BF16": [_round(150, "bf16"), _round(150, "bf16")],
        "llama.cpp Q4_0": [_round(80, "q4_0"), _round(60, "q4_0")],
    }
    rows = {row["setting"]: row for row in paths.summarize(runs)}
    default = rows["default"]["ratios"]
    assert default["llama.cpp"]["range"] == [0.75, 1.5]  # 150/200 and 150/100, per round
    assert default["llama.cpp"]["median"] == pytest.approx(1.125)
    assert default["transformers"]["median"] == pytest.approx(2.25)
    int4 = rows["bf16 masters + int4 C decode"]["ratios"]
    assert int4["llama.cpp"]["range"] == [1.2, 2.0]  # against Q4_0, not BF16
    assert rows["llama.cpp BF16"]["ratios"] == {}  # baselines are not compared with anything
    assert rows["transformers generate (bf16)"]["ratios"] == {}
    assert rows["default"]["read_share"] == pytest.approx(0.8)


def test_a_setting_without_its_llamacpp_baseline_in_the_run_gets_no_llamacpp_ratio():
    runs = {"bf16 masters + int8 C decode": [_round(50, "int8")], "llama.cpp Q8_0": []}
    (row,) = paths.summarize(runs)
    assert "llama.cpp" not in row["ratios"]


def test_decode_bytes_count_the_format_the_step_reads_and_the_kv_cache_over_the_context():
    config = transformers.LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    shape = shape_of(config)
    matrices = shape.compact_weights  # layer matrices and the output head
    assert paths.decode_bytes_per_token(shape, "bf16", 2, 0) == 2 * matrices
    int8 = paths.decode_bytes_per_token(shape, "int8", 2, 0)
    int4 = paths.decode_bytes_per_token(shape, "int4", 2, 0)
    assert int4 < int8 < 2 * matrices
    kv_fp32 = paths.decode_bytes_per_token(shape, "bf16", 4, 100) - 2 * matrices
    kv_fp16 = paths.decode_bytes_per_token(shape, "bf16", 2, 100) - 2 * matrices
    assert kv_fp32 == 2 * kv_fp16 == 100 * 2 * 2 * 2 * 16 * 4  # K and V, 2 layers, 2 heads of 16
    assert paths.decode_bytes_per_token(shape, "q4_0", 2, 0, read=1234) == 1234


def test_random_checkpoints_name_their_architecture_for_llamacpps_converter(tmp_path):
    config = transformers.Qwen2Config(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    write_random_checkpoint(transformers.Qwen2ForCausalLM, config, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == ["Qwen2ForCausalLM"]


def test_ratios_pair_the_same_round_when_a_setting_failed_in_one():
    ours = [dict(_round(100, "bf16"), round=0), dict(_round(50, "bf16"), round=1)]
    theirs = [dict(_round(100, "bf16"), round=1)]  # its round 0 failed
    assert paths.per_round_ratios({"a": ours, "b": theirs}, "a", "b") == [2.0]


def test_combining_invocations_leaves_out_processes_a_busy_machine_slowed(tmp_path, capsys):
    def report(first_round, default_read):
        runs = {
            "default": [dict(_round(100, "bf16", read=default_read), round=first_round)],
            "llama.cpp BF16": [dict(_round(150, "bf16"), round=first_round)],
        }
        file = tmp_path / f"r{first_round}.json"
        args = {"model": "m", "first_round": first_round}
        file.write_text(json.dumps({"args": args, "load_averages": [], "runs": runs}))
        return str(file)

    paths.combine([report(0, 22.0), report(1, 10.0)], read_floor=15.0)
    out = capsys.readouterr().out
    assert "left out: default, round 1: plain read 10.0 GB/s" in out
    assert "| 1.50x (1.50-1.50) |" in out  # the ratio of round 0 alone
