"""End to end: a model without fill-in-the-middle tokens gets prefix-only suggestions, no error.

The real deepshiva-server (subprocess) serves a tiny random Llama built here with a plain
Mistral-style SentencePiece tokenizer that has no FIM tokens (tests/family_tokenizers.py), and
the tiny StarCoder-style model of tests/conftest.py, which has them. The API refuses ``suffix``
for the first with a clear 400; the language server must not show that but complete from the
text before the cursor, remember it per model, and re-check when the model changes, whether the
editor or another client loaded it.
"""

from __future__ import annotations

import re

import httpx
import pytest
from conftest import lsp_session
from family_tokenizers import build_family_model
from live_server import start_live_server

pytestmark = pytest.mark.slow

DOCS = [
    f"def {name}(a, b):\n    \n\nprint({name}(1, 2))\n"
    for name in ("add", "sub", "mul", "div", "mod", "pow")
]


def refused(url: str) -> int:
    """How many /generate requests the API answered with 400 so far."""
    text = httpx.get(url + "/metrics", timeout=5).text
    pattern = (
        r'^deepshiva_requests_total\{[^}]*path="/generate"[^}]*status="400"[^}]*\} ([0-9.eE+-]+)$'
    )
    return int(sum(float(v) for v in re.findall(pattern, text, re.M)))


async def suggestions(s, tag: str) -> list:
    """Ask for a suggestion in a few documents with text after the cursor; the answers."""
    answers = []
    for i, text in enumerate(DOCS):
        uri = f"file:///tmp/fim-{tag}-{i}.py"
        s.open(uri, text)
        answers.append(await s.inline(uri, 1, 4))
    return answers


async def test_a_model_without_fim_tokens_gets_prefix_only_suggestions(tmp_path, tiny_model_dir):
    plain = str(build_family_model(tmp_path / "plain-mistral", "mistral"))
    coder = str(tiny_model_dir)
    api = start_live_server(plain, timeout=180)
    try:
        url = api.url
        # The API keeps refusing a suffix for this model, with a message that says why.
        answer = httpx.post(
            url + "/generate", json={"prompt": "x = ", "suffix": "\n", "max_length": 2}, timeout=60
        )
        assert answer.status_code == 400 and "fill-in-the-middle" in answer.json()["message"]
        assert refused(url) == 1

        settings = {
            "apiUrl": url,
            "stream": False,
            "seed": 2,
            "temperature": 0.8,
            "maxTokens": 12,
            "debounceMs": 0,
            "requestTimeoutMs": 30000,
            "slowThresholdMs": 30000,
            "cacheSize": 0,
        }
        async with lsp_session(settings) as s:
            await s.wait_status("ready")  # its /model_status said: no FIM dialect
            answers = await suggestions(s, "plain")
            assert any(a.items for a in answers), "no prefix-only suggestion"
            stats = await s.command("deepshiva.stats")
            assert (stats["model"], stats["fillInTheMiddle"], stats["errors"]) == (plain, False, 0)
            assert refused(url) == 1  # known from /model_status: no request was refused
            assert [x["state"] for x in s.statuses] == ["ready"]  # nothing shown to the user

            # Another client loads a FIM model: the next answer names it, the server asks about it.
            loaded = httpx.post(url + "/load_model", json={"model_name": coder}, timeout=180)
            assert loaded.status_code == 200
            await suggestions(s, "coder")
            stats = await s.command("deepshiva.stats")
            assert (stats["model"], stats["fillInTheMiddle"]) == (coder, True)

            # Back to the plain model behind the language server's back: one refusal, retried at
            # once without the suffix; the user sees a suggestion, not an error.
            loaded = httpx.post(url + "/load_model", json={"model_name": plain}, timeout=180)
            assert loaded.status_code == 200
            answers = await suggestions(s, "plain-again")
            assert refused(url) == 2 and any(a.items for a in answers)
            stats = await s.command("deepshiva.stats")
            assert (stats["model"], stats["fillInTheMiddle"], stats["errors"]) == (plain, False, 0)

            # Loads through the editor: each model's ability is known at once, nothing refused.
            for model, fim in ((coder, True), (plain, False)):
                result = await s.command("deepshiva.loadModel", model)
                assert result["status"] == "success"
                stats = await s.command("deepshiva.stats")
                assert (stats["model"], stats["fillInTheMiddle"]) == (model, fim)
                await suggestions(s, f"editor-{fim}")
            assert refused(url) == 2
            assert "error" not in {m.type.name.lower() for m in s.messages}
    finally:
        api.stop()
