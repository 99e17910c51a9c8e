"""The engine holds a model's weights once: a 16-bit checkpoint stays 16-bit, prompts and decode
steps read the same bytes, and nothing of transformers' copy stays resident.

Measured on a ~300M-parameter random-weight Llama saved in bf16 (0.6 GB), big enough that a
second copy of the weights (0.6 GB more in bf16, 1.2 GB in fp32) stands far above the noise of
a process's own few hundred MB; the engine runs in a fresh process so its peak RSS is its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from core import compact_weights

pytestmark = pytest.mark.skipif(
    not compact_weights.available(), reason=str(compact_weights.unavailable_reason())
)

PROBE = textwrap.dedent(
    """
    import json, sys
    import torch, transformers  # noqa: F401
    from core import OptimizedLLM

    def status_mb(field):  # not ru_maxrss: a child's starts at its parent's peak
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024

    before = status_mb("VmRSS")
    llm = OptimizedLLM(sys.argv[1], decode_weights=sys.argv[2])
    llm.complete("def fibonacci(n):\\n" * 20, max_length=8, temperature=0)
    backend = llm.runner.backend
    print(json.dumps({
        "imports_mb": before,
        "peak_mb": status_mb("VmHWM"),
        "held_mb": backend.weight_bytes() / 2**20,
        "kv_mb": 2 * backend.k_cache.nbytes / 2**20,
        "dtype": llm.info()["dtype"],
        "summary": llm.info()["path"]["summary"],
    }))
    """
)


@pytest.fixture(scope="module")
def model_300m(tiny_model_dir, tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    from benchmarks.shapes import write_random_checkpoint

    out = tmp_path_factory.mktemp("llama-300m")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model_dir / name).exists():
            shutil.copy(tiny_model_dir / name, out / name)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=16,
        num_attention_heads=16,
        num_key_value_heads=4,
        max_position_embeddings=1024,
    )
    written = write_random_checkpoint(LlamaForCausalLM, config, out)
    yield out, written / 2**20
    shutil.rmtree(out, ignore_errors=True)


def _probe(directory, decode_weights: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(directory), decode_weights],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_bf16_checkpoint_is_held_once(model_300m):
    directory, checkpoint_mb = model_300m
    m = _probe(directory, "auto")
    assert m["dtype"] == "bfloat16" and "bf16" in m["summary"], m
    # What the backend holds, each storage counted once: the checkpoint's bytes (norm weights
    # widened to fp32 add a few KB), not a second set of matrices beside it.
    assert m["held_mb"] < 1.02 * checkpoint_mb, m
    # And the process: after its imports, the weights once plus the KV cache, loading's and the
    # first request's transients; a second bf16 copy would add the checkpoint again (2x).
    grown = m["peak_mb"] - m["imports_mb"]
    assert grown < 1.5 * checkpoint_mb + m["kv_mb"], m


@pytest.mark.parametrize("decode_weights, share", [("int8", 0.55), ("int4", 0.3)])
def test_quantized_decode_weights_replace_the_checkpoint(model_300m, decode_weights, share):
    """int8/int4 weights are built from the bf16 checkpoint a slice at a time; neither the bf16
    source nor the temporaries of quantizing it stay resident beside them."""
    directory, checkpoint_mb = model_300m
    m = _probe(directory, decode_weights)
    assert decode_weights in m["summary"], m
    # The quantized matrices (int8 about half the bf16 bytes, int4 about 0.28) and the bf16
    # embedding rows the lookup reads.
    embedding_mb = 32000 * 1024 * 2 / 2**20
    assert m["held_mb"] < share * (checkpoint_mb - embedding_mb) + embedding_mb, m
    # Issue 21's budget: the weights held, the KV cache and 0.5 GB (the interpreter, PyTorch,
    # transformers and every transient included).
    assert m["peak_mb"] < m["held_mb"] + m["kv_mb"] + 512, m
    # And what the load adds to the process beside those weights: under half the checkpoint.
    # The bf16 source kept resident while quantizing would add all of it. Measured on this
    # model: this change int8 470 MB grown (bound 629), int4 380 (bound 513); before it, with
    # freed quantizing temporaries kept in the C heap, int8 846 and int4 1020.
    grown = m["peak_mb"] - m["imports_mb"]
    assert grown < m["held_mb"] + m["kv_mb"] + checkpoint_mb / 2, m


def test_the_weights_read_by_prompts_are_the_ones_decode_reads(tiny_model_dir, load_transformers):
    """Even without the engine, a bf16 model's compact decode weights share the model's memory:
    the output matrix is not copied at all."""
    from core.generation import ModelRunner

    model = load_transformers(tiny_model_dir, torch.bfloat16)
    runner = ModelRunner(model, decode_weights="bf16")
    head = runner.backend.lm_head
    assert head.weight.data_ptr() == model.lm_head.weight.data_ptr()


def _in_a_file_mapping(tensor: torch.Tensor) -> bool:
    from core import page_memory

    address = tensor.data_ptr()
    return any(start <= address < end for start, end in page_memory.file_mappings())


@pytest.mark.parametrize("tied", [False, True])
def test_the_engine_moves_the_matrices_out_of_the_checkpoint_file(
    tiny_model_dir, tmp_path, load_transformers, tied
):
    """The engine's one copy lies in its own memory, not in the memory-mapped checkpoint's pages
    (4 KiB pages, rows unaligned: decode steps streamed them slower); a tied output matrix is
    moved once and the embedding lookup reads the moved one. Without the engine (the model kept)
    the output matrix stays shared, as above."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from core.generation import ModelRunner

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.tie_word_embeddings = tied
    AutoModelForCausalLM.from_config(config).to(torch.bfloat16).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model_dir / name).exists():
            shutil.copy(tiny_model_dir / name, tmp_path / name)
    checkpoint = load_transformers(tmp_path, torch.bfloat16)
    params = {p.data_ptr(): p.numel() * 2 for p in checkpoint.parameters() if p.dim() == 2}
    assert _in_a_file_mapping(checkpoint.lm_head.weight)  # transformers maps the file
    backend = ModelRunner(checkpoint, decode_weights="bf16", release_model=True).backend
    stored = [p.storage() for p in backend.projections]
    assert all(t is not None and t.dtype == torch.bfloat16 for t in stored)
    assert not any(_in_a_file_mapping(t) for t in stored), "a matrix still reads the file"
    assert (backend.embed.data_ptr() == backend.lm_head.storage().data_ptr()) is tied
    # Still one copy: the checkpoint's matrices once (norm weights in fp32 add a few KB).
    assert backend.weight_bytes() < 1.02 * sum(params.values()) + 65536


LOAD_PROBE = textwrap.dedent(
    """
    import json, sys
    import torch, transformers  # noqa: F401
    from core import OptimizedLLM

    def status_mb(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024

    llm = OptimizedLLM(sys.argv[1])
    print(json.dumps({
        "peak_mb": status_mb("VmHWM"),
        "loaded_mb": status_mb("VmRSS"),
        "summary": llm.info()["path"]["summary"],
    }))
    """
)


def test_a_large_tied_head_is_not_held_twice_while_it_moves(tiny_model_dir, tmp_path):
    """The engine moves each matrix out of the memory-mapped checkpoint a slice at a time,
    dropping the slices' file pages as it goes: a model whose tied embedding is most of it (as
    Qwen2.5-Coder-1.5B's 445 MB one) peaks at about what it holds after loading. Moved whole and
    dropped at the end, the head's file pages and its copy were both resident for a moment:
    that moment set Qwen2.5-Coder-1.5B's peak, 3889 MB against 3454 after the load."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from benchmarks.shapes import write_random_checkpoint

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model_dir / name).exists():
            shutil.copy(tiny_model_dir / name, tmp_path / name)
    config = LlamaConfig(
        vocab_size=65536,
        hidden_size=2048,
        intermediate_size=256,
        num_hidden_layers=1,
        num_attention_heads=16,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    write_random_checkpoint(LlamaForCausalLM, config, tmp_path)
    head_mb = 65536 * 2048 * 2 / 2**20  # 256 MB in bf16
    done = subprocess.run(
        [sys.executable, "-c", LOAD_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    m = json.loads(done.stdout.strip().splitlines()[-1])
    assert "bf16" in m["summary"], m
    assert m["peak_mb"] - m["loaded_mb"] < head_mb / 4, m
