"""End to end: the language server gathers context from the workspace and the API lays it out
for the shipped model (deepshiva-lsp and deepshiva-server in subprocesses, models/tiny-python)."""

from __future__ import annotations

import httpx
import pytest
from conftest import lsp_session
from live_server import start_live_server

pytestmark = pytest.mark.slow

BILLING = (
    "class Invoice:\n    def __init__(self, customer, amount_due):\n"
    "        self.customer = customer\n        self.amount_due = amount_due\n\n"
    "    def pay(self, amount):\n        self.amount_due -= amount\n        return self.amount_due\n"
)
VIEWS = "from .billing import Invoice\nfrom .secret import KEY\n\n\ndef overdue(invoice):\n    return invoice."


@pytest.fixture(scope="module")
def shipped_api(shipped_model_dir):
    server = start_live_server(shipped_model_dir, timeout=180)
    yield server
    server.stop()


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "ws"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "billing.py").write_text(BILLING)
    (root / "shop" / "views.py").write_text(VIEWS + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.py").write_text("KEY = 'outside the workspace'\n")
    (root / "shop" / "secret.py").symlink_to(outside / "secret.py")
    return root


async def test_the_api_gets_the_definitions_the_file_imports_and_uses_them(shipped_api, workspace):
    settings = {
        "apiUrl": shipped_api.url,
        "temperature": 0.0,
        "maxTokens": 12,
        "multiline": "never",
        "debounceMs": 0,
        "requestTimeoutMs": 60000,
        "slowThresholdMs": 60000,
    }
    uri = (workspace / "shop" / "views.py").as_uri()
    async with lsp_session(settings, root=workspace) as session:
        session.open(uri, VIEWS + "\n")
        line, character = 5, len("    return invoice.")
        result = await session.inline(uri, line, character)
        items = await session.command("deepshiva.context", uri)
        # The class the file imports, as an outline, under its workspace-relative path; nothing
        # from the symbolic link that leads outside the workspace.
        assert [(i["path"], i["source"]) for i in items] == [("ws/shop/billing.py", "imports")]
        assert items[0]["text"] == (
            "class Invoice:\n    def __init__(self, customer, amount_due):\n"
            "        self.customer = customer\n        self.amount_due = amount_due\n"
            "    def pay(self, amount):\n"
        )
        suggestion = result.items[0].insert_text if result and result.items else ""

        # The language server's suggestion is what the API gives for this prompt with these
        # items (greedy), and not what it gives without them: the context reached the model.
        body = {
            "prompt": VIEWS,
            "suffix": "\n",
            "max_length": 12,
            "temperature": 0.0,
            "top_p": 0.95,
            "stop": ["\n"],
            "language": "python",
        }
        context = [{"path": i["path"], "text": i["text"]} for i in items]
        with httpx.Client(base_url=shipped_api.url, timeout=60) as http:
            with_context = http.post("/generate", json={**body, "context": context}).json()[
                "response"
            ]
            without = http.post("/generate", json=body).json()["response"]
        assert suggestion and with_context.startswith(suggestion.rstrip())
        assert with_context != without

        # A keystroke later the same items go in the same order (the API's cache keeps them).
        session.insert(uri, line, character, "a")
        await session.inline(uri, line, character + 1)
        assert await session.command("deepshiva.context", uri) == items
