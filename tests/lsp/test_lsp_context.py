"""lsp/context.py: which other files' text goes with a suggestion, in what order, and that
nothing outside the workspace folders is ever read."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from lsp.context import ContextGatherer, changed_lines
from lsp.options import Options, merge

MODELS = '''"""Models."""
import dataclasses


@dataclasses.dataclass
class User:
    name: str
    email: str

    def greeting(self) -> str:
        return f"Hello {self.name}"


def make_admin(name):
    user = User(name, "admin@example.com")
    return user


LIMIT = 10
'''
VIEWS = """from .models import User, LIMIT
from . import models
import os


def show(name):
    user = """


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "models.py").write_text(MODELS)
    (root / "pkg" / "views.py").write_text(VIEWS)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("KEY = 'do not read me'\n")
    return root


def gatherer(root: Path) -> ContextGatherer:
    g = ContextGatherer()
    g.set_folders([root])
    return g


def settings(**changes):
    options, problems = merge(Options(), {"projectContext": changes})
    assert not problems
    return options.project_context


def gather(g, uri, text, offset=None, **changes):
    return asyncio.run(
        g.gather(uri, text, len(text) if offset is None else offset, "python", settings(**changes))
    )


def test_definitions_of_imported_names_come_from_the_workspace(workspace):
    g = gatherer(workspace)
    views = (workspace / "pkg" / "views.py").as_uri()
    items = gather(g, views, VIEWS + "User(name, ")
    assert [i["path"] for i in items] == ["ws/pkg/models.py", "ws/pkg/models.py"]
    user, limit = items[0]["text"], items[1]["text"]
    # The class as an outline: decorator, fields, method signature; no method body.
    assert user == (
        "@dataclasses.dataclass\nclass User:\n    name: str\n    email: str\n"
        "    def greeting(self) -> str:\n"
    )
    assert limit == "LIMIT = 10\n"
    # An imported module: what is read from it near the cursor.
    items = gather(g, views, VIEWS + "models.make_admin(", imports={"maxItems": 1})
    assert items == [
        {"path": "ws/pkg/models.py", "text": "def make_admin(name):\n"}
    ]  # a function: its signature


def test_nothing_is_read_outside_the_workspace_folders(workspace, monkeypatch):
    (workspace / "pkg" / "secret.py").symlink_to(workspace.parent / "outside" / "secret.py")
    read: list[Path] = []
    original = Path.read_text

    def spy(self, *args, **kwargs):
        read.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", spy)
    g = gatherer(workspace)
    uri = (workspace / "pkg" / "views.py").as_uri()
    text = "from .secret import KEY\nfrom ...outside.secret import KEY as K2\nimport outside.secret\n\nx = KEY + K2 + outside.secret.KEY"
    assert gather(g, uri, text) == []
    assert all(p.resolve().is_relative_to(workspace) for p in read), read
    # A document outside every folder gets no import context at all.
    assert (
        gather(g, (workspace.parent / "outside" / "a.py").as_uri(), "from .secret import KEY\nKEY")
        == []
    )


def test_files_are_read_off_the_event_loop_and_reread_after_a_save(workspace, monkeypatch):
    g = gatherer(workspace)
    threads = []
    original = g._load
    monkeypatch.setattr(
        g, "_load", lambda *a: threads.append(threading.get_ident()) or original(*a)
    )
    uri = (workspace / "pkg" / "views.py").as_uri()

    async def run(text):
        loop_thread = threading.get_ident()
        items = await g.gather(uri, text, len(text), "python", settings())
        return loop_thread, items

    loop_thread, items = asyncio.run(run("from .models import LIMIT\nLIMIT"))
    assert items[0]["text"] == "LIMIT = 10\n" and threads and loop_thread not in threads
    (workspace / "pkg" / "models.py").write_text(MODELS.replace("LIMIT = 10", "LIMIT = 99"))
    g.saved((workspace / "pkg" / "models.py").as_uri())
    assert asyncio.run(run("from .models import LIMIT\nLIMIT"))[1][0]["text"] == "LIMIT = 99\n"
    # An open document is read from the editor's text, not the disk.
    g.opened((workspace / "pkg" / "models.py").as_uri(), "LIMIT = 7\n", 1)
    assert asyncio.run(run("from .models import LIMIT\nLIMIT"))[1][0]["text"] == "LIMIT = 7\n"


def test_open_files_ranked_by_identifier_overlap(workspace):
    g = gatherer(workspace)
    here = (workspace / "pkg" / "here.py").as_uri()
    g.opened(
        (workspace / "pkg" / "billing.py").as_uri(),
        "def charge(invoice, amount, currency):\n    invoice.total += amount\n    return invoice\n",
        1,
    )
    g.opened(
        (workspace / "pkg" / "weather.py").as_uri(), "def forecast(city):\n    return sunny\n", 1
    )
    items = gather(
        g, here, "def refund(invoice, amount):\n    invoice.total -= ", imports={"enabled": False}
    )
    assert [i["path"] for i in items] == ["ws/pkg/billing.py"]
    assert (
        gather(
            g,
            here,
            "def refund(invoice, amount):\n    ",
            openFiles={"enabled": False},
            imports={"enabled": False},
        )
        == []
    )


def test_recent_edits_of_other_documents_are_sent(workspace):
    g = gatherer(workspace)
    other = (workspace / "pkg" / "other.py").as_uri()
    lines = [f"line_{i} = {i}\n" for i in range(40)]
    g.opened(other, "".join(lines), 1)
    lines[30] = "retry_budget = compute_retry_budget(config)\n"
    g.changed(other, "".join(lines), 2, [(30, 30)])
    items = gather(
        g,
        (workspace / "pkg" / "here.py").as_uri(),
        "budget = retry_budget",
        openFiles={"enabled": False},
        imports={"enabled": False},
    )
    assert len(items) == 1 and "retry_budget = compute_retry_budget(config)\n" in items[0]["text"]
    assert "line_0 " not in items[0]["text"]


def test_order_is_stable_oldest_first_and_budgets_hold(workspace):
    g = gatherer(workspace)
    views = (workspace / "pkg" / "views.py").as_uri()
    first = gather(g, views, VIEWS + "LIMIT")
    assert [i["text"].split("\n")[0] for i in first] == ["LIMIT = 10", "@dataclasses.dataclass"]
    # A new item (an open file that now matches) goes after those already sent.
    g.opened(
        (workspace / "pkg" / "limits.py").as_uri(),
        "def check(user, LIMIT):\n    return user.count < LIMIT\n",
        1,
    )
    second = gather(g, views, VIEWS + "LIMIT")
    assert second[: len(first)] == first and len(second) == len(first) + 1
    # Caps: items per source and characters in all.
    assert (
        len(gather(g, views, VIEWS + "LIMIT", imports={"maxItems": 1}, openFiles={"maxItems": 0}))
        == 1
    )
    small = gather(g, views, VIEWS + "LIMIT", maxChars=40)
    assert sum(len(i["text"]) + len(i["path"]) + 2 for i in small) <= 40
    assert gather(g, views, VIEWS + "LIMIT", enabled=False) == []


def test_changed_lines_of_incremental_and_full_changes():
    from lsprotocol import types

    pos = types.Position(line=4, character=0)
    partial = types.TextDocumentContentChangePartial(
        range=types.Range(start=pos, end=pos), text="a\nb\n"
    )
    full = types.TextDocumentContentChangeWholeDocument(text="x")
    assert changed_lines([partial, full]) == [(4, 6)]


# -- what the attribute being typed belongs to goes first ---------------------------------------

STORE = '''"""Storage."""
import os

DEFAULT_PATH = "/tmp/store"  # where it lives


class Store:
    capacity: int = 10

    def __init__(self, path):
        self.path = path
        self.entries = {}

    def put(self, key, value):
        self.entries[key] = value

    def remove(self, key):
        del self.entries[key]


def open_store(path=DEFAULT_PATH):
    return Store(path)
'''
STORE_OUTLINE = (
    "class Store:\n    capacity: int = 10\n    def __init__(self, path):\n"
    "        self.path = path\n        self.entries = {}\n"
    "    def put(self, key, value):\n    def remove(self, key):\n"
)
# The file being edited imports other names first, and uses them near the cursor: without the
# receiver's class going first, a one-item budget would send LIMIT's definition.
HEAD = (
    "from .models import LIMIT, make_admin\nfrom .store import Store\nfrom . import store as st\n"
)


@pytest.fixture
def store_workspace(workspace):
    (workspace / "pkg" / "store.py").write_text(STORE)
    return workspace


def first_import(g, root, text, **changes):
    """The single import item sent for a cursor at the end of ``text``."""
    uri = (root / "pkg" / "here.py").as_uri()
    items = gather(g, uri, text, imports={"maxItems": 1}, openFiles={"enabled": False}, **changes)
    assert len(items) == 1, items
    return items[0]


@pytest.mark.parametrize(
    "body",
    [
        "def f():\n    n = LIMIT\n    s = Store(n)\n    s.",  # assignment
        "def f():\n    n = LIMIT\n    s = st.Store(n)\n    s.",  # through the module
        "def f(n=LIMIT, s: Store = None):\n    n = LIMIT\n    s.",  # annotated parameter
        "def f(\n    n,\n    s: Optional['Store'],\n):\n    n = LIMIT\n    s.re",  # over lines
        "def f():\n    s: Store\n    n = LIMIT\n    s.",  # annotated name
        "def f():\n    with open(LIMIT) as fh, Store(fh) as s:\n        s.",  # with ... as
        "class C:\n    def __init__(self, n):\n        self.s = Store(LIMIT)\n\n"
        "    def g(self):\n        self.s.",  # an attribute set in __init__
        "class C:\n    def __init__(self, s: Store):\n        self.s = s\n\n"
        "    def g(self):\n        n = LIMIT\n        self.s.",  # set from an annotated parameter
        "class Mine(Store):\n    def g(self):\n        n = LIMIT\n        self.",  # a base class
        "n = LIMIT\nStore.",  # the class itself
    ],
)
def test_the_class_of_the_attribute_being_typed_goes_first(store_workspace, body):
    g = gatherer(store_workspace)
    item = first_import(g, store_workspace, HEAD + body)
    assert item == {"path": "ws/pkg/store.py", "text": STORE_OUTLINE}


def test_a_module_being_typed_sends_its_outline_first(store_workspace):
    g = gatherer(store_workspace)
    item = first_import(g, store_workspace, HEAD + "\nn = LIMIT\nx = st.op")
    # Top-level signatures only, in file order; no function body, no import.
    assert item == {
        "path": "ws/pkg/store.py",
        "text": 'DEFAULT_PATH = "/tmp/store"  # where it lives\nclass Store:\n'
        "def open_store(path=DEFAULT_PATH):\n",
    }
    # A module only used near the cursor: the definitions of what is read from it, then (room
    # allowing) its outline.
    uri = (store_workspace / "pkg" / "here.py").as_uri()
    items = gather(
        gatherer(store_workspace),
        uri,
        "from . import store as st\n\nst.open_store()\nx = ",
        openFiles={"enabled": False},
    )
    assert [i["text"].split("\n")[0] for i in items] == [
        "def open_store(path=DEFAULT_PATH):",
        'DEFAULT_PATH = "/tmp/store"  # where it lives',
    ]


def test_the_receiver_is_found_in_a_file_that_does_not_parse(store_workspace):
    g = gatherer(store_workspace)
    broken = HEAD + "def f(:\n    n = LIMIT [\n    s = Store(n\n    )\n    if s.put(1,\n    s."
    item = first_import(g, store_workspace, broken)
    assert item["text"] == STORE_OUTLINE
    # An unknown receiver (a parameter without annotation) changes nothing: names near the
    # cursor first, in import order.
    item = first_import(g, store_workspace, HEAD + "def f(s):\n    n = LIMIT\n    s.")
    assert item["text"] == "LIMIT = 10\n"


def test_a_class_reexported_by_a_package_init_is_followed(store_workspace):
    (store_workspace / "pkg" / "__init__.py").write_text("from .store import Store as Box\n")
    (store_workspace / "app.py").write_text("")
    g = gatherer(store_workspace)
    uri = (store_workspace / "app.py").as_uri()
    items = gather(g, uri, "from pkg import Box\n\nb = Box('x')\nb.", openFiles={"enabled": False})
    assert items == [{"path": "ws/pkg/store.py", "text": STORE_OUTLINE}]


def test_an_outline_larger_than_the_budget_is_cut_not_dropped(store_workspace):
    g = gatherer(store_workspace)
    item = first_import(g, store_workspace, HEAD + "s = Store(1)\ns.", maxChars=80)
    # Whole lines from the top, within the 80 characters with the path.
    assert item["text"] == "class Store:\n    capacity: int = 10\n"
    assert len(item["text"] + "    def __init__(self, path):\n") + len(item["path"]) + 2 > 80
    # Only the cursor's outline is cut: another definition that does not fit is left out.
    uri = (store_workspace / "pkg" / "here.py").as_uri()
    items = gather(g, uri, HEAD + "x = Store", maxChars=40, openFiles={"enabled": False})
    assert items == [{"path": "ws/pkg/models.py", "text": "LIMIT = 10\n"}]


def test_order_stays_stable_while_the_attribute_is_typed(store_workspace):
    g = gatherer(store_workspace)
    uri = (store_workspace / "pkg" / "here.py").as_uri()
    text = HEAD + "def f():\n    n = make_admin(LIMIT)\n    "
    first = gather(g, uri, text, openFiles={"enabled": False})
    assert [i["text"].split("\n")[0] for i in first] == [
        "LIMIT = 10",
        "def make_admin(name):",
        "class Store:",
    ]
    # Typing ``s.`` makes Store's outline the first choice; it was already sent (the same item,
    # an imported name's definition), so it keeps its place, and so do the others on the next
    # keystrokes: the API's cache holds.
    text += "s = Store(n)\n    s."
    for typed in ("", "p", "pu"):
        assert gather(g, uri, text + typed, openFiles={"enabled": False}) == first
    # A module's outline, new, goes after everything already sent.
    text += "put(1)\n    st."
    for typed in ("", "o"):
        items = gather(g, uri, text + typed, openFiles={"enabled": False})
        assert items[:3] == first
        assert items[3]["text"].endswith("def open_store(path=DEFAULT_PATH):\n")
