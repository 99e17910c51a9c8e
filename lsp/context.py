"""Context from the rest of the project, gathered for each suggestion (the API's ``context``).

Three sources, each switchable and budgeted in the ``projectContext`` setting (lsp/options.py):

- **open files**: windows of ``SNIPPET_LINES`` lines of the other open documents, ranked by the
  Jaccard overlap of their identifiers with those of the lines around the cursor;
- **recent edits**: the lines last edited in other documents (a ring of ``MAX_EDITS`` ranges),
  ranked the same way;
- **imports**: the definitions (a class as its outline) of the names the current file imports,
  found by resolving its imports (``from .models import User``, ``import pkg.util``) to files
  under the workspace folders: first the outline of what the attribute being typed belongs to
  (``m.``: the module's; ``C.``/``obj.``: the class's, ``obj``'s class read from the current
  file's lines by lsp/python_symbols.receiver_classes), then names used near the cursor, then
  the others in import order.

Cheap enough for every keystroke: a document's windows and their identifiers are computed once
per version, files are read off the event loop (``asyncio.to_thread``) and kept in an index that
didOpen/didChange (open documents are read from the editor's text) and didSave (the file is read
again) keep up to date, with caps on file size, files indexed and items. Nothing outside the
workspace folders is ever read: a candidate path is resolved (symbolic links followed) and must
lie under a resolved workspace folder.

Items are sent oldest first, as a ring buffer: an item keeps the place it got when first sent,
new ones go at the end, so from one keystroke to the next the context the API has cached is
unchanged and only the current file's change is computed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlparse

from .options import ProjectContext
from . import python_symbols
from .python_symbols import (
    Import,
    attributes_used,
    identifiers,
    imports,
    module_paths,
    receiver_at,
    receiver_classes,
)

log = logging.getLogger(__name__)

# What is read from another file's text, computed once per text (the index keeps each file's
# text object until the file changes, so a keystroke finds these by identity): without it a
# keystroke re-reads every imported module's lines, a few milliseconds on a large package.
top_level_names = functools.lru_cache(maxsize=1024)(python_symbols.top_level_names)
definition = functools.lru_cache(maxsize=4096)(python_symbols.definition)
module_outline = functools.lru_cache(maxsize=256)(python_symbols.module_outline)
module_imports = functools.lru_cache(maxsize=256)(python_symbols.imports)
_TRAILING_COMMENT = re.compile(r"[ \t]{2,}#[^'\"\n]*$", re.MULTILINE)

SNIPPET_LINES = 12
SNIPPET_STRIDE = 6
NEAR_LINES_BEFORE = 15  # lines around the cursor whose identifiers rank snippets and pick imports
NEAR_LINES_AFTER = 5
MIN_SIMILARITY = 0.05  # a snippet sharing less than this with the cursor's lines is not sent
MAX_EDITS = 16
MAX_FILE_BYTES = 256_000
MAX_INDEXED_FILES = 512
MAX_RESOLVED_IMPORTS = 24  # modules looked up for one request
MAX_ORDER_KEYS = 1024
RECHECK_SECONDS = 5.0  # a file not open in the editor is stat'ed again after this long
REEXPORT_HOPS = 2  # ``from ._impl import C`` in a package's __init__ followed this many times
# Import items go in this order of priority (then import order): the outline of what the
# attribute being typed belongs to; the definitions of names used near the cursor; the outlines
# of the modules used there; the definitions of the other imported names.
TIER_RECEIVER, TIER_NEAR, TIER_NEAR_MODULE, TIER_OTHER = range(4)


def uri_to_path(uri: str) -> Path | None:
    """The local path of a ``file:`` URI, else None."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


@dataclass
class _Snippet:
    start: int  # first line
    text: str
    words: frozenset[str]


@dataclass
class _Document:
    uri: str
    text: str
    version: int
    snippets: list[_Snippet] | None = None  # computed on first use for this version


@dataclass
class _IndexedFile:
    stamp: tuple[int, int]  # (mtime_ns, size) when read
    checked: float  # monotonic time of the last stat
    text: str | None


@dataclass(frozen=True)
class Candidate:
    """One item that may be sent: its ring key, source, path as sent, text, and priority."""

    key: tuple
    source: str
    path: str
    text: str
    score: float
    fit: bool = False  # may be cut at a line boundary to fit the budget left


class ContextGatherer:
    """Keeps the open documents, the recent edits and the file index; ``gather`` picks the items."""

    def __init__(self) -> None:
        self.folders: list[Path] = []
        self._docs: dict[str, _Document] = {}
        self._edits: deque[tuple[str, int, int]] = deque(maxlen=MAX_EDITS)
        self._files: OrderedDict[Path, _IndexedFile] = OrderedDict()
        self._order: OrderedDict[tuple, int] = OrderedDict()
        self._next = 0
        self.last: dict[str, list[dict]] = {}  # uri -> the items last gathered (deepshiva.context)
        self._display: dict[str, str] = {}  # uri -> the path sent for it

    # -- events --------------------------------------------------------------------------------

    def set_folders(self, paths: list[Path]) -> None:
        """The workspace folders: the only places files are read from."""
        resolved = []
        for path in paths:
            try:
                resolved.append(path.resolve(strict=True))
            except OSError:
                continue
        self.folders = [p for p in resolved if p.is_dir()]
        self._display.clear()

    def opened(self, uri: str, text: str, version: int = 0) -> None:
        self._docs[uri] = _Document(uri, text, version)

    def changed(self, uri: str, text: str, version: int, lines: list[tuple[int, int]]) -> None:
        """A document's new text, and the line ranges the change touched (new numbering)."""
        self._docs[uri] = _Document(uri, text, version)
        for first, last in lines:
            if (
                self._edits
                and self._edits[-1][0] == uri
                and first <= self._edits[-1][2] + 1
                and last >= self._edits[-1][1] - 1
            ):
                _, a, b = self._edits.pop()  # typing on in the same place: one range grows
                first, last = min(first, a), max(last, b)
            self._edits.append((uri, first, last))

    def saved(self, uri: str) -> None:
        path = uri_to_path(uri)
        if path is not None:  # read it again next time (a link to it: within RECHECK_SECONDS)
            self._files.pop(path, None)
            try:
                self._files.pop(path.resolve(), None)
            except (OSError, ValueError):
                pass

    def closed(self, uri: str) -> None:
        self._docs.pop(uri, None)
        self.last.pop(uri, None)

    # -- gathering -----------------------------------------------------------------------------

    async def gather(
        self, uri: str, text: str, offset: int, language: str, settings: ProjectContext
    ) -> list[dict]:
        """The ``context`` items for a suggestion at ``offset`` of ``text`` (the document ``uri``)."""
        if not settings.enabled or settings.max_chars <= 0:
            return []
        near = _near_text(text, offset)
        words = frozenset(identifiers(near))
        picked: list[Candidate] = []
        room = settings.max_chars
        sources = []
        if settings.imports.enabled and language in ("python", ""):
            found = await self._import_candidates(uri, text, near, offset)
            sources.append((settings.imports, found))
        if settings.open_files.enabled:
            sources.append((settings.open_files, self._open_file_candidates(uri, words)))
        if settings.recent_edits.enabled:
            sources.append((settings.recent_edits, self._edit_candidates(uri, words)))
        seen_texts: set[str] = set()
        for source, candidates in sources:
            budget, count = min(source.max_chars, room), 0
            for cand in candidates:
                if count >= source.max_items:
                    break
                if cand.fit:
                    cand = _fitted(cand, budget)
                size = len(cand.text) + len(cand.path) + 2
                if size > budget or not cand.text or cand.text in seen_texts:
                    continue
                picked.append(cand)
                seen_texts.add(cand.text)
                budget -= size
                room -= size
                count += 1
        ordered = sorted(picked, key=lambda c: self._place(c.key))
        self.last[uri] = [{"path": c.path, "text": c.text, "source": c.source} for c in ordered]
        return [{"path": c.path, "text": c.text} for c in ordered]

    def _place(self, key: tuple) -> int:
        """The ring-buffer position of an item: given when it is first sent, kept afterwards."""
        if key not in self._order:
            self._order[key] = self._next
            self._next += 1
            while len(self._order) > MAX_ORDER_KEYS:
                self._order.popitem(last=False)
        return self._order[key]

    # -- open files and recent edits -----------------------------------------------------------

    def _snippets(self, doc: _Document) -> list[_Snippet]:
        if doc.snippets is None:
            lines = doc.text.splitlines(keepends=True)
            doc.snippets = []
            for start in range(
                0, max(1, len(lines) - SNIPPET_LINES + SNIPPET_STRIDE), SNIPPET_STRIDE
            ):
                chunk = "".join(lines[start : start + SNIPPET_LINES])
                if chunk.strip():
                    doc.snippets.append(_Snippet(start, chunk, frozenset(identifiers(chunk))))
        return doc.snippets

    def _open_file_candidates(self, uri: str, words: frozenset[str]) -> list[Candidate]:
        scored = []
        for doc in self._docs.values():
            if doc.uri == uri:
                continue
            for snip in self._snippets(doc):
                score = _jaccard(words, snip.words)
                if score >= MIN_SIMILARITY:
                    scored.append((score, doc, snip))
        scored.sort(key=lambda item: -item[0])
        out, taken = [], []
        for score, doc, snip in scored:
            if any(d is doc and abs(s - snip.start) < SNIPPET_LINES for d, s in taken):
                continue  # overlaps a better window of the same document
            taken.append((doc, snip.start))
            out.append(
                Candidate(
                    ("open", doc.uri, snip.start),
                    "openFiles",
                    self.display_path(doc.uri),
                    snip.text,
                    score,
                )
            )
        return out

    def _edit_candidates(self, uri: str, words: frozenset[str]) -> list[Candidate]:
        out = []
        for edit_uri, first, last in reversed(self._edits):
            doc = self._docs.get(edit_uri)
            if doc is None or edit_uri == uri:
                continue
            lines = doc.text.splitlines(keepends=True)
            lo = max(0, first - 2)
            hi = min(len(lines), max(last + 3, lo + 1), lo + SNIPPET_LINES)
            text = "".join(lines[lo:hi])
            if text.strip():
                score = _jaccard(words, frozenset(identifiers(text)))
                out.append(
                    Candidate(
                        ("edit", edit_uri, lo),
                        "recentEdits",
                        self.display_path(edit_uri),
                        text,
                        score,
                    )
                )
        out.sort(key=lambda c: -c.score)
        return out

    # -- imports ---------------------------------------------------------------------------------

    async def _import_candidates(
        self, uri: str, text: str, near: str, offset: int
    ) -> list[Candidate]:
        """The import items, best first: what the attribute being typed at ``offset`` belongs to
        (the outline of a module ``m.``, of a class ``C.``, of the class of ``obj.``), then the
        definitions of the imported names used near the cursor, the outlines of the modules
        used there, and the other imported names in import order."""
        path = uri_to_path(uri)
        folder = self._folder_of(path) if path else None
        if folder is None:
            return []
        importer = path.resolve().relative_to(folder).as_posix()
        near = "\n".join(
            ln for ln in near.splitlines() if not ln.lstrip().startswith(("import ", "from "))
        )
        wanted = identifiers(near)
        found: list[tuple[int, int, Candidate]] = []
        lookup = _Lookup(self, folder, importer)
        file_imports = imports(text)

        receiver = receiver_at(text, offset)
        if receiver is not None:
            by_alias = {imp.alias: imp for imp in file_imports}
            targets = [receiver] if receiver.split(".")[0] in by_alias else []
            targets += receiver_classes(text, offset, receiver)
            for rank, dotted in enumerate(targets):
                target = await lookup.target(by_alias, dotted)
                if target is not None:
                    found.append((TIER_RECEIVER, rank, self._outline_candidate(*target)))

        for number, imp in enumerate(file_imports):
            near_tier = TIER_NEAR if imp.alias in wanted else TIER_OTHER
            blocks: list[tuple[Path, str, str]] = []
            if imp.name is not None:
                where = await lookup.defined(await lookup.module(imp.level, imp.module), imp.name)
                block = where and definition(where[1], where[2])
                if block:
                    blocks = [(where[0], where[2], block)]
            if not blocks:  # a module: the definitions of what is read from it near the cursor
                attrs = attributes_used(near, imp.alias)
                module = await lookup.module(*_module_of(imp)) if attrs else None
                if module:
                    blocks = [
                        (module[0], a, b)
                        for a, b in ((a, definition(module[1], a)) for a in attrs)
                        if b
                    ]
                    found.append((TIER_NEAR_MODULE, number, self._outline_candidate(*module)))
            for file, name, block in blocks:
                cand = Candidate(
                    ("import", str(file), name),
                    "imports",
                    self.display_path(file.as_uri()),
                    block,
                    1.0,
                )
                found.append((near_tier, number, cand))
        found.sort(key=lambda item: item[:2])
        unique: dict[tuple, Candidate] = {}
        for _, _, cand in found:
            unique.setdefault(cand.key, cand)
        return list(unique.values())

    def _outline_candidate(self, file: Path, text: str, name: str | None = None) -> Candidate:
        """A module's outline (``name`` None) or a class's: the same item (key and text) as
        the class's definition sent for its import, so the ring keeps its place; it may be cut
        at a line boundary to fit the budget."""
        if name is None:
            key, block = ("outline", str(file)), module_outline(text)
        else:
            key, block = ("import", str(file), name), definition(text, name) or ""
        return Candidate(key, "imports", self.display_path(file.as_uri()), block, 1.0, fit=True)

    async def _module(
        self, folder: Path, importer: str, level: int, module: str
    ) -> tuple[Path, str] | None:
        """(path, text) of the module an import names, under the workspace folders, or None."""
        roots = [folder] if level else [folder, folder / "src"]
        for root in roots:
            for rel in module_paths(importer if root == folder else "", level, module):
                found = await self._read(root / rel)
                if found is not None:
                    return found
        return None

    async def _read(self, path: Path) -> tuple[Path, str] | None:
        """The text of a file under a workspace folder (the editor's, if it is open), or None."""
        doc = self._docs.get(path.as_uri())
        if doc is not None:
            return path, doc.text
        entry = self._files.get(path)
        now = time.monotonic()
        if entry is not None and now - entry.checked < RECHECK_SECONDS:
            self._files.move_to_end(path)
            return (path, entry.text) if entry.text is not None else None
        result = await asyncio.to_thread(self._load, path, entry)
        self._files[path] = result
        self._files.move_to_end(path)
        while len(self._files) > MAX_INDEXED_FILES:
            self._files.popitem(last=False)
        return (path, result.text) if result.text is not None else None

    def _load(self, path: Path, entry: _IndexedFile | None) -> _IndexedFile:
        """Stat (and read, if changed) one file, in a worker thread. A missing file, one outside
        the workspace folders, or one too large is remembered as None."""
        now = time.monotonic()
        try:
            real = path.resolve(strict=True)
            if not self.inside(real):
                return _IndexedFile((0, 0), now, None)
            stat = real.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if entry is not None and entry.stamp == stamp:
                return _IndexedFile(stamp, now, entry.text)
            if stat.st_size > MAX_FILE_BYTES or not real.is_file():
                return _IndexedFile(stamp, now, None)
            return _IndexedFile(stamp, now, real.read_text(encoding="utf-8", errors="replace"))
        except (OSError, ValueError):
            return _IndexedFile((0, 0), now, None)

    # -- paths ---------------------------------------------------------------------------------

    def inside(self, real: Path) -> bool:
        """True when the resolved path ``real`` lies under a workspace folder."""
        return any(real == folder or real.is_relative_to(folder) for folder in self.folders)

    def _folder_of(self, path: Path) -> Path | None:
        try:
            real = path.resolve()
        except (OSError, ValueError):
            return None
        for folder in sorted(self.folders, key=lambda f: -len(f.parts)):
            if real.is_relative_to(folder):
                return folder
        return None

    def display_path(self, uri: str) -> str:
        """The path sent to the API: relative to its workspace folder (which names it), else the
        URI's name. Remembered per URI, so a keystroke does not resolve paths again."""
        if uri not in self._display:
            if len(self._display) > MAX_ORDER_KEYS:
                self._display.clear()
            self._display[uri] = self._display_path(uri)
        return self._display[uri]

    def _display_path(self, uri: str) -> str:
        path = uri_to_path(uri)
        if path is None:
            return uri.rsplit("/", 1)[-1] or uri
        folder = self._folder_of(path)
        if folder is None:
            return path.name
        return (Path(folder.name) / path.resolve().relative_to(folder)).as_posix()


class _Lookup:
    """Resolves the modules and names of one request's imports, each module once, at most
    ``MAX_RESOLVED_IMPORTS`` of them."""

    def __init__(self, gatherer: ContextGatherer, folder: Path, importer: str):
        self.gatherer, self.folder, self.importer = gatherer, folder, importer
        self.modules: dict[tuple[str, int, str], tuple[Path, str] | None] = {}

    async def module(
        self, level: int, dotted: str, importer: str | None = None
    ) -> tuple[Path, str] | None:
        """(path, text) of a module an import names, relative to ``importer`` (the current
        file's path by default), or None."""
        key = (importer or self.importer, level, dotted)
        if key not in self.modules:
            if len(self.modules) >= MAX_RESOLVED_IMPORTS:
                return None
            self.modules[key] = await self.gatherer._module(self.folder, key[0], level, dotted)
        return self.modules[key]

    async def defined(
        self, module: tuple[Path, str] | None, name: str, hops: int = REEXPORT_HOPS
    ) -> tuple[Path, str, str] | None:
        """(path, text, name) where the top-level ``name`` of ``module`` is defined, following
        re-exports (``from ._impl import C as D`` in an ``__init__``)."""
        if module is None:
            return None
        if name in top_level_names(module[1]):
            return module[0], module[1], name
        if hops:
            for imp in module_imports(module[1]):
                if imp.alias == name and imp.name is not None:
                    try:
                        where = module[0].relative_to(self.folder).as_posix()
                    except ValueError:
                        return None
                    found = await self.module(imp.level, imp.module, where)
                    return await self.defined(found, imp.name, hops - 1)
        return None

    async def target(
        self, by_alias: dict[str, Import], dotted: str
    ) -> tuple[Path, str, str | None] | None:
        """What the dotted name ``dotted`` of the current file is, through its imports: a module
        (path, text, None) or a class (path, text, class name); None for anything else."""
        parts = dotted.split(".")
        imp = by_alias.get(parts[0])
        if imp is None:
            return None
        rest = parts[1:]
        if imp.name is not None:
            where = await self.defined(await self.module(imp.level, imp.module), imp.name)
            if where is not None:
                return where if _is_class(where[1], where[2]) else None
            module = await self.module(*_module_of(imp))
        else:
            names = imp.module.split(".")
            taken = 1 if imp.alias == names[0] else len(names)  # ``import a.b`` binds ``a``
            while taken < len(names) and rest and rest[0] == names[taken]:
                rest, taken = rest[1:], taken + 1
            module = await self.module(0, ".".join(names[:taken]))
        if module is None:
            return None
        if not rest:
            return module[0], module[1], None
        where = await self.defined(module, rest[0])
        return where if where is not None and _is_class(where[1], where[2]) else None


def _module_of(imp: Import) -> tuple[int, str]:
    """(level, dotted name) of the module an import binds: ``from . import m`` -> (1, "m")."""
    if imp.name is None:
        return 0, imp.module
    return imp.level, ".".join(p for p in (imp.module, imp.name) if p)


def _is_class(source: str, name: str) -> bool:
    line = top_level_names(source).get(name)
    return line is not None and source.splitlines()[line].startswith("class ")


def _fitted(cand: Candidate, budget: int) -> Candidate:
    """``cand`` cut to fit in ``budget`` characters: trailing comments dropped first (an outline
    keeps more members without them), then whole lines from the end."""
    room = budget - len(cand.path) - 2
    text = cand.text
    if len(text) > room:
        text = _TRAILING_COMMENT.sub("", text)
    if len(text) > room:
        text = text[: text.rfind("\n", 0, max(room, 0)) + 1]
    return cand if text == cand.text else replace(cand, text=text)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def _near_text(text: str, offset: int) -> str:
    """The lines around the cursor: ``NEAR_LINES_BEFORE`` above it, ``NEAR_LINES_AFTER`` below."""
    start = offset
    for _ in range(NEAR_LINES_BEFORE + 1):
        start = text.rfind("\n", 0, start)
        if start < 0:
            start = 0
            break
    end = offset
    for _ in range(NEAR_LINES_AFTER + 1):
        end = text.find("\n", end + 1)
        if end < 0:
            end = len(text)
            break
    return text[start:end]


def changed_lines(changes) -> list[tuple[int, int]]:
    """The line ranges (new numbering) that LSP content changes touched; a whole-text change
    (no range) is not an edit anyone made at one place, and gives none."""
    ranges = []
    for change in changes:
        rng = getattr(change, "range", None)
        if rng is not None:
            ranges.append((rng.start.line, rng.start.line + change.text.count("\n")))
    return ranges


def folders_from(params_folders, root_uri: str | None, root_path: str | None) -> list[Path]:
    """The workspace folders of an initialize request (workspaceFolders, else rootUri/rootPath)."""
    paths = [uri_to_path(f.uri) for f in params_folders or []]
    if not paths and root_uri:
        paths = [uri_to_path(root_uri)]
    if not paths and root_path:
        paths = [Path(os.path.expanduser(root_path))]
    return [p for p in paths if p is not None]
