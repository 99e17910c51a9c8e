"""FIM prompts for every dialect, and memory really released by clear_memory()."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core import OptimizedLLM
from core.errors import InvalidParameter
from core.fim import split_budget
from core.request import GenerationRequest

EXPECTED_ORDER = {
    "starcoder": ["<fim_prefix>", "P", "<fim_suffix>", "S", "<fim_middle>"],
    "qwen": ["<|fim_prefix|>", "P", "<|fim_suffix|>", "S", "<|fim_middle|>"],
    "deepseek": ["<｜fim▁begin｜>", "P", "<｜fim▁hole｜>", "S", "<｜fim▁end｜>"],
    "codellama": ["▁<PRE>", "P", "▁<SUF>", "S", "▁<MID>"],
    "codestral": ["[SUFFIX]", "S", "[PREFIX]", "P"],
}


@pytest.mark.parametrize("family", sorted(EXPECTED_ORDER))
def test_fim_prompt_is_laid_out_in_the_models_own_dialect(family, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tiny_model import build_tiny_model

    llm = OptimizedLLM(str(build_tiny_model(tmp_path, family=family, vocab_size=400)))
    assert llm.info()["fim_dialect"] == family
    prefix, suffix = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
    request = GenerationRequest.checked(
        prefix, suffix=suffix, max_length=8, context_length=llm.context_length
    )
    ids, heal, truncated, _ = llm.encode_prompt(request)
    assert not truncated
    assert prefix.endswith(heal)  # the prefix's last token is healed: regrown by the model
    tok = llm.tokenizer
    pieces = []
    for token in tok.convert_ids_to_tokens(ids):
        if token in EXPECTED_ORDER[family]:
            pieces.append(token)
        elif not pieces or pieces[-1] in EXPECTED_ORDER[family]:
            pieces.append("text")
    text_slots = iter([p for p in EXPECTED_ORDER[family] if p in ("P", "S")])
    expected = [p if p not in ("P", "S") else "text" for p in EXPECTED_ORDER[family]]
    assert [p for p in pieces if p != tok.eos_token] == expected
    decoded = tok.decode(ids)
    for slot in text_slots:
        assert (prefix[: len(prefix) - len(heal)] if slot == "P" else suffix) in decoded
    # The markers end a FIM completion, so none of them can show up in its text.
    text = llm.generate(prefix, suffix=suffix, max_length=20, temperature=1.5, seed=3)
    assert not any(marker in text for marker in EXPECTED_ORDER[family] if marker not in ("P", "S"))


def _marker_order(llm, ids, markers):
    """The prompt's layout as markers and "text" runs, e.g. [<fim_prefix>, text, ...]."""
    out = []
    for token in llm.tokenizer.convert_ids_to_tokens(ids):
        if token in markers:
            out.append(token)
        elif not out or out[-1] in markers:
            out.append("text")
    return out


def _with_config(src: Path, dst: Path, **keys) -> Path:
    """A copy of a saved model whose config.json carries extra keys."""
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**config, **keys}))
    return dst


def test_spm_order_puts_the_suffix_first_so_typing_reuses_the_whole_prompt(tiny_model_dir):
    markers = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"]
    suffix = "\n\nprint(add(1, 2))\n" * 20
    prefix = "import os\n\n\ndef add(a, b):\n    "
    costs = {}
    for order in ("psm", "spm"):
        llm = OptimizedLLM(str(tiny_model_dir), fim_order=order)
        assert llm.info()["fim_order"] == order
        request = GenerationRequest.checked(
            prefix, suffix=suffix, max_length=4, context_length=llm.context_length
        )
        ids = llm.encode_prompt(request)[0]
        expected = (
            ["<fim_prefix>", "text", "<fim_suffix>", "text", "<fim_middle>"]
            if order == "psm"
            else ["<fim_prefix>", "<fim_suffix>", "text", "<fim_middle>", "text"]
        )
        assert _marker_order(llm, ids, markers) == expected
        llm.complete(prefix, suffix=suffix, max_length=2, temperature=0)
        typed = llm.complete(prefix + "retu", suffix=suffix, max_length=2, temperature=0)
        costs[order] = typed.prompt_tokens - typed.reused_prompt_tokens
        llm.clear_memory()
    # A keystroke recomputes the whole suffix in PSM, only the typed text in SPM.
    assert costs["spm"] <= 4 < costs["psm"]


def test_spm_keeps_a_cut_suffix_still_while_a_short_prefix_grows(tiny_model_dir):
    llm = OptimizedLLM(str(tiny_model_dir), fim_order="spm")
    suffix = "".join(
        f"\nvalue_{i} = compute({i}, {i * 7})" for i in range(400)
    )  # far past the context
    prefix = "import os\n\n\ndef add(a, b):\n    "
    first = llm.complete(prefix, suffix=suffix, max_length=2, temperature=0)
    assert first.truncated
    for typed in ("r", "re", "ret", "retu", "retur", "return a"):
        result = llm.complete(prefix + typed, suffix=suffix, max_length=2, temperature=0)
        # The suffix takes what the short prefix leaves, cut in steps: as the prefix grows
        # the suffix stays the same, so only the typed tokens are computed.
        assert result.prompt_tokens - result.reused_prompt_tokens <= 4, typed


def test_fim_order_auto_follows_the_models_config_and_bad_values_are_refused(
    tiny_model_dir, tmp_path
):
    assert OptimizedLLM(str(tiny_model_dir)).info()["fim_order"] == "psm"
    spm_model = _with_config(tiny_model_dir, tmp_path / "spm", fim_order="spm")
    assert OptimizedLLM(str(spm_model)).info()["fim_order"] == "spm"
    assert OptimizedLLM(str(spm_model), fim_order="psm").info()["fim_order"] == "psm"
    with pytest.raises(InvalidParameter, match="fim_order"):
        OptimizedLLM(str(tiny_model_dir), fim_order="middle-first")


def test_a_dialect_with_one_order_keeps_it(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tiny_model import build_tiny_model

    llm = OptimizedLLM(
        str(build_tiny_model(tmp_path, family="codestral", vocab_size=400)), fim_order="psm"
    )
    assert llm.info()["fim_order"] == "spm"  # Codestral's only order is suffix-first
    request = GenerationRequest.checked(
        "P = 1\n", suffix="S = 2\n", max_length=4, context_length=llm.context_length
    )
    ids = llm.encode_prompt(request)[0]
    assert _marker_order(llm, ids, ["[SUFFIX]", "[PREFIX]"]) == [
        "[SUFFIX]",
        "text",
        "[PREFIX]",
        "text",
    ]


@pytest.mark.parametrize(
    "prefix, suffix, budget, expected",
    [
        (10, 10, 100, (10, 10)),
        (1000, 1000, 100, (75, 25)),
        (1000, 5, 100, (95, 5)),
        (5, 1000, 100, (5, 95)),
    ],
)
def test_fim_budget_split(prefix, suffix, budget, expected):
    assert split_budget(prefix, suffix, budget) == expected


RSS_PROBE = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[2])
    from core import OptimizedLLM

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    # A first load/clear cycle pays for the code transformers imports lazily; the second measures weights.
    OptimizedLLM(sys.argv[1]).clear_memory()
    base = rss_mb()
    llm = OptimizedLLM(sys.argv[1])
    llm.generate("def f(x):\\n", max_length=4, temperature=0)
    loaded = rss_mb()
    llm.clear_memory()
    print(json.dumps({"base": base, "loaded": loaded, "cleared": rss_mb()}))
    """
)


def test_clear_memory_lowers_the_process_rss(tmp_path):
    """Measured on a model whose weights (about 320 MB in fp32, 400-500 MB as any CPU path
    holds them) dwarf the allocator's noise of a few tens of MB, so the figures are stable."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tiny_model import build_tiny_model

    model_dir = build_tiny_model(tmp_path, hidden_size=1024, layers=8, vocab_size=600)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(model_dir), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    grown = rss["loaded"] - rss["base"]
    assert grown > 250, rss
    assert rss["loaded"] - rss["cleared"] > 0.85 * grown, rss
    assert rss["cleared"] - rss["base"] < 0.15 * grown, rss


def test_clear_memory_lets_every_weight_copy_and_the_cache_go(tiny_model_dir):
    """Whatever path runs (fp32 or 16-bit masters, compact copies, the C step), nothing the
    engine allocated outlives clear_memory: the model, its compact copies and the KV cache are
    all collected (checked object by object, so allocator noise cannot hide a leak)."""
    import gc
    import weakref

    llm = OptimizedLLM(str(tiny_model_dir))
    llm.generate("def f(x):\n", max_length=4, temperature=0)
    backend = llm.runner.backend
    held = [weakref.ref(llm.model), weakref.ref(backend)]
    if getattr(backend, "k_cache", None) is not None:
        held.append(weakref.ref(backend.k_cache))
    blas = getattr(backend, "blas", None)
    if blas is not None:
        held.append(weakref.ref(blas))
    del backend, blas
    llm.clear_memory()
    gc.collect()
    assert [ref() for ref in held] == [None] * len(held)
