"""Fixtures shared by every test folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_model import build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama with a real BPE tokenizer and StarCoder FIM tokens, saved to disk."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_model_dir_no_fim(tmp_path_factory) -> Path:
    """The same tiny model without FIM tokens: FIM requests must be refused clearly."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model-nofim"), fim=False)


@pytest.fixture(scope="session")
def endless_model_dir(tmp_path_factory) -> Path:
    """The tiny model with end-of-text out of reach: its sampled completions always run to the
    token limit (for tests that catch a generation while it runs)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model-endless"), endless=True)


@pytest.fixture(scope="session")
def shipped_model_dir() -> Path:
    """The model DeepShiva ships (models/tiny-python)."""
    path = ROOT / "models" / "tiny-python"
    if not (path / "config.json").exists():
        pytest.fail("the shipped model is missing from models/tiny-python")
    return path


@pytest.fixture(scope="session")
def vllm_upstream(shipped_model_dir):
    """The real vLLM serving the shipped model (one per test session: it takes a minute and
    about 3 GiB). Not installed or not starting is a failure, never a skip (tests marked vllm)."""
    import os

    from vllm_server import attach_vllm, start_vllm

    if os.environ.get(
        "DEEPSHIVA_TEST_VLLM_URL"
    ):  # one already serving the shipped model (development)
        yield attach_vllm(os.environ["DEEPSHIVA_TEST_VLLM_URL"])
        return
    server = start_vllm(shipped_model_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def vllm_endless(tmp_path_factory):
    """The real vLLM serving an endless tiny model (its sampled completions run to the token
    limit): for tests that must catch a generation in vLLM while it runs (a hang-up, a superseded
    or cancelled suggestion), which the shipped model can end before they look. As wide as the
    shipped model (heads of 64 dimensions: vLLM's CPU attention takes none under 32) and served
    in its own float32 (vLLM 0.32's CPU worker died of SIGILL on its first step with this random
    model cast to bfloat16, on a Zen 4 CPU)."""
    import os

    from vllm_server import attach_vllm, start_vllm

    if os.environ.get("DEEPSHIVA_TEST_VLLM_ENDLESS_URL"):  # one already serving it (development)
        yield attach_vllm(os.environ["DEEPSHIVA_TEST_VLLM_ENDLESS_URL"])
        return
    model = build_tiny_model(
        tmp_path_factory.mktemp("tiny-model-endless-vllm"), endless=True, hidden_size=256
    )
    server = start_vllm(model, extra_args=("--dtype", "float32"))
    yield server
    server.stop()
