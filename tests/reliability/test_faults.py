"""Faults on the real processes: the API killed mid-stream under the language server, and model
loads that fail on broken files while the previous model keeps serving."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest
from conftest import OFFLINE
from live_server import start_live_server
from lsp_harness import lsp_session

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _running(url: str) -> int:
    try:
        return httpx.get(url + "/model_status", timeout=2).json()["queue"]["running"]
    except httpx.HTTPError:
        return 0


async def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_api_killed_mid_stream_then_back(endless_model_dir):
    """SIGKILL the API while the language server streams a long suggestion: the editor gets a clean
    (empty) answer at once, a deepshiva/status 'unreachable'; a request while it is down is answered
    empty at once too; when the API is back on the same port the health poll reports 'ready' by
    itself and suggestions come again."""
    port = _free_port()
    args = ["--port", str(port), "--queue-size", "2"]
    server = start_live_server(endless_model_dir, env=OFFLINE, args=args)
    settings = {
        "apiUrl": server.url,
        "debounceMs": 0,
        "healthPollMs": 200,
        "seed": 2,
        "temperature": 1.0,
        "maxTokens": 400,
        "multiline": "always",
        "maxLines": 500,
        "requestTimeoutMs": 60000,
        "slowThresholdMs": 60000,
    }
    try:
        async with lsp_session(settings) as s:
            await s.wait_status("ready")
            uri = "file:///tmp/rel/killed.py"
            s.open(uri, "import os\n\n\n")  # the endless model writes all 400 tokens
            pending = asyncio.ensure_future(s.inline(uri, 1, 0))
            await _wait(lambda: _running(server.url) == 1, 20, "the stream to start")
            server.process.kill()  # mid-stream, no goodbye
            started = time.monotonic()
            result = await asyncio.wait_for(pending, 10)  # no JSON-RPC error
            assert time.monotonic() - started < 5
            assert not result.items, "a half-received suggestion from a dead API was shown"
            down = await s.wait_status("unreachable", timeout=10)
            assert "not reachable" in down["message"] or "connection lost" in down["message"]
            t0 = time.monotonic()
            assert not (await asyncio.wait_for(s.inline(uri, 1, 0), 5)).items
            assert time.monotonic() - t0 < 3, "a request while the API is down was held up"
            seen = len(s.statuses)

            server.stop()
            server = start_live_server(endless_model_dir, env=OFFLINE, args=args)
            await s.wait_status("ready", timeout=30, after=seen)  # nobody typed: the poll found it
            s.client.workspace_did_change_configuration(  # shorter suggestions from here on
                __import__("lsprotocol").types.DidChangeConfigurationParams(
                    settings={
                        "deepshiva": {"maxTokens": 16, "multiline": "auto", "temperature": 0.8}
                    }
                )
            )
            for n, line in enumerate(
                ("total = + 1\n", "count = + 1\n", "name = + 1\n", "value = + 1\n")
            ):
                s.open(f"file:///tmp/rel/back{n}.py", line)
                back = await asyncio.wait_for(
                    s.inline(f"file:///tmp/rel/back{n}.py", 0, line.index("+")), 30
                )
                if back.items:
                    break
            assert back.items, "no suggestion after the API came back"
    finally:
        server.stop()


def _broken_models(tiny_model_dir: Path, root: Path) -> dict[str, Path]:
    """Copies of the tiny model, each broken in one way."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(tiny_model_dir, root / name))

    cases = {}
    cases["no_config"] = copy("no-config")
    (cases["no_config"] / "config.json").unlink()
    cases["config_not_json"] = copy("config-not-json")
    (cases["config_not_json"] / "config.json").write_text("{ this is not json")
    cases["unknown_architecture"] = copy("unknown-architecture")
    config = json.loads((cases["unknown_architecture"] / "config.json").read_text())
    config.update(model_type="no-such-architecture", architectures=["NoSuchForCausalLM"])
    (cases["unknown_architecture"] / "config.json").write_text(json.dumps(config))
    cases["no_weights"] = copy("no-weights")
    (cases["no_weights"] / "model.safetensors").unlink()
    cases["truncated_weights"] = copy("truncated-weights")
    weights = cases["truncated_weights"] / "model.safetensors"
    weights.write_bytes(
        weights.read_bytes()[: weights.stat().st_size // 2]
    )  # header intact, data cut
    cases["no_tokenizer"] = copy("no-tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (cases["no_tokenizer"] / name).unlink()
    cases["tokenizer_garbage"] = copy("tokenizer-garbage")
    (cases["tokenizer_garbage"] / "tokenizer.json").write_bytes(b"\x00\xff garbage")
    cases["missing_dir"] = root / "never-created"
    cases["empty_dir"] = root / "empty"
    cases["empty_dir"].mkdir()
    return cases


def test_failed_loads_keep_the_previous_model_serving(tiny_model_dir, tmp_path):
    """Each broken model (missing files, corrupt weights or config, unknown architecture) is a
    4xx in the error shape from the real server process; the previous model keeps serving and
    /model_status stays truthful (loaded, its name, ready, and the failure in last_load_error).
    Out of memory while loading cannot be provoked safely here: tests/server/test_load_model.py
    simulates it with a factory raising the engine's OutOfMemory."""
    root = tmp_path / "models"
    root.mkdir()
    cases = _broken_models(tiny_model_dir, root)
    server = start_live_server(
        tiny_model_dir,
        env=OFFLINE,
        args=["--allowed-models", f"{root},{tiny_model_dir}", "--max-length-limit", "8"],
    )
    try:
        url = server.url
        for case, path in cases.items():
            response = httpx.post(url + "/load_model", json={"model_name": str(path)}, timeout=120)
            # a missing path cannot be inside an allowed directory: 403 before anything is read
            assert response.status_code in ((403,) if case == "missing_dir" else (400, 404, 422)), (
                case,
                response.status_code,
                response.text,
            )
            body = response.json()
            assert set(body) == {"status", "message"} and body["status"] == "error", (case, body)
            status = httpx.get(url + "/model_status", timeout=5).json()
            assert status["model_loaded"] is True and status["state"] == "ready", (case, status)
            assert status["model_name"] == str(tiny_model_dir), (case, status)
            if path.exists():  # a missing path is refused before any load starts
                assert status["last_load_error"] and path.name in status["last_load_error"], (
                    case,
                    status,
                )
            answer = httpx.post(
                url + "/generate", json={"prompt": "x", "max_length": 2}, timeout=30
            )
            assert answer.status_code == 200 and answer.json()["model_name"] == str(
                tiny_model_dir
            ), case
        assert (
            httpx.post(
                url + "/load_model", json={"model_name": str(tiny_model_dir)}, timeout=120
            ).status_code
            == 200
        )
        assert httpx.get(url + "/model_status", timeout=5).json()["last_load_error"] is None
    finally:
        assert server.stop() == 0, server.output
