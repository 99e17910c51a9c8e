"""Fixtures for the HTTP server tests: the real engine on the tiny model, apps, in-process waitress.

Every test drives the real ``core.OptimizedLLM`` on the tiny random Llama from tests/conftest.py.
Where a test injects a fault (out of memory, a broken decode step) it says so in its docstring.
"""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest
from server_helpers import make_config, running

from server import create_app


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    """One real engine shared by the tests that do not swap models."""
    from core import OptimizedLLM

    llm = OptimizedLLM(str(tiny_model_dir))
    llm.complete("def warm():\n", max_length=2, temperature=0)  # first call pays lazy init
    return llm


@pytest.fixture
def app(engine):
    return create_app(make_config(), engine=engine)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def live(app) -> Iterator[str]:
    with running(app) as url:
        yield url


@pytest.fixture
def http(live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live, timeout=30) as session:
        yield session
