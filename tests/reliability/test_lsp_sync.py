"""The language server's copy of a document always equals the editor's, under random edits.

Random sequences of incremental changes (multi-byte and astral text, every line-break style, the
characters Python splits lines on but LSP does not, positions past the end of a line or of the
document) are sent to the real deepshiva-lsp. After each sequence an inline completion is asked
for; the scriptable API (fake_api.py) records the prompt and suffix it was sent, and with context
windows larger than the document ``prompt + suffix`` is the server's whole copy of the document.
"""

from __future__ import annotations

import pytest
from editor_model import apply, edit, end_position, position, texts
from fake_api import FakeApi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsp_harness import LspThread

pytestmark = pytest.mark.timeout(300)

SETTINGS = {
    "debounceMs": 0,
    "cacheSize": 0,
    "maxTokens": 8,
    "requestTimeoutMs": 5000,
    "contextChars": {"before": 200_000, "after": 200_000},
}


@pytest.fixture(scope="module")
def fake_api():
    with FakeApi() as api:
        yield api


@pytest.fixture(scope="module", params=["utf-16", "utf-8"])
def lsp(request, fake_api):
    thread = LspThread({**SETTINGS, "apiUrl": fake_api.url}, encoding=request.param)
    thread.encoding = thread.session.initialize_result.capabilities.position_encoding
    assert thread.encoding == request.param
    yield thread
    thread.close()


_counter = iter(range(10**9))


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), initial=texts)
def test_random_edits_keep_the_document_in_sync(lsp, fake_api, data, initial):
    encoding = lsp.encoding
    uri = f"file:///tmp/reliability/sync{next(_counter)}.py"
    session = lsp.session
    lsp.run(session.open, uri, initial)
    text = initial
    for _ in range(data.draw(st.integers(1, 8), label="edits")):
        start, end, new = data.draw(edit(text, encoding), label="edit")
        lsp.run(session.change, uri, start, end, new)
        text = apply(text, start, end, new, encoding)
    cursor = data.draw(st.one_of(position(text, encoding), st.just(end_position(text, encoding))))
    before = len(fake_api.bodies)
    lsp.call(session.inline(uri, *cursor))
    assert len(fake_api.bodies) == before + 1, "no request reached the API"
    body = fake_api.bodies[-1]
    assert body["prompt"] + (body.get("suffix") or "") == text
    lsp.run(session.close, uri)
    assert session.alive()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data(), initial=texts, encoding=st.sampled_from(["utf-16", "utf-8", "utf-32"]))
def test_text_sync_helper_matches_the_editor(data, initial, encoding):
    """The helper the server applies changes with (lsp.text.apply_change, through the server's
    EditorDocument), checked directly on many more sequences than the end-to-end test can afford."""
    from lsprotocol import types
    from pygls.workspace.position_codec import PositionCodec

    from lsp.server import EditorDocument

    doc = EditorDocument(
        "file:///tmp/x.py",
        source=initial,
        version=1,
        sync_kind=types.TextDocumentSyncKind.Incremental,
        position_codec=PositionCodec(encoding=encoding),
    )
    text = initial
    for _ in range(data.draw(st.integers(1, 10), label="edits")):
        start, end, new = data.draw(edit(text, encoding), label="edit")
        rng = types.Range(start=types.Position(*start), end=types.Position(*end))
        doc.apply_change(types.TextDocumentContentChangePartial(range=rng, text=new))
        text = apply(text, start, end, new, encoding)
        assert doc.source == text
