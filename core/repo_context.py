"""Context from other files of the project, laid out before the current file.

A request may carry ``context``: other files (or snippets of them) as ``{"path", "text"}`` items.
They go before the current file, in the model family's repository format where its tokenizer
has one, so a model trained on whole repositories reads them as it was taught:

- StarCoder2 (``<repo_name>``, ``<file_sep>``):
  ``<repo_name>{repo}<file_sep>{path}\\n{text}<file_sep>{path}\\n{text}<file_sep>`` then the
  current file (its prompt or its FIM layout);
- Qwen2.5-Coder (``<|repo_name|>``, ``<|file_sep|>``): the same with a newline after the
  repository name and after each file's text;
- DeepShiva's own model (``<file_sep>`` only): as StarCoder2 without the repository name;
- any other tokenizer: a comment header per item in the current file's language
  (``# path: a/b.py`` for Python, ``// path: a/b.ts`` for TypeScript, ...), each item followed
  by a blank line.

The current file is introduced by the bare separator (no path: the API does not ask for it), the
same way ``training/repo_samples.py`` packs a repository for training.

Token budget (``ContextLayout.encode``): of the prompt budget the engine has (the context length
less what is reserved for generation), the context gets at most ``CONTEXT_SHARE`` (half), the
current file's prefix and suffix share the rest exactly as without context (core/fim.py's
``split_budget``). The context's share depends only on the items and that budget, never on the
current file, so a keystroke does not change it. Items that do not fit are dropped from the front
of the list (the client puts the items it cares most about last, nearest the cursor); the first
item kept may be cut to its first lines. The order of the items is the client's and is kept:
a client that sends the same items in the same order on each keystroke gets the context's tokens
from the KV cache, and only the current file's change is computed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import PurePosixPath

import languages

from .errors import InvalidParameter

MAX_CONTEXT_ITEMS = 32
MAX_CONTEXT_PATH_CHARS = 1024
MAX_CONTEXT_TEXT_CHARS = 65_536  # one item (a large file is cut by the client or here, by tokens)
MAX_CONTEXT_TOTAL_CHARS = 262_144  # all items together
CONTEXT_SHARE = 0.5  # at most this share of the prompt budget goes to context
MIN_CUT_TOKENS = 16  # a cut item shorter than this is left out instead


@dataclass(frozen=True)
class ContextItem:
    """Another file of the project, or a snippet of one: its path (as the user sees it) and text."""

    path: str
    text: str


def check_context(value: object) -> tuple[ContextItem, ...]:
    """The items of a ``context`` parameter, or InvalidParameter("context", ...) naming the problem."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise InvalidParameter(
            "context",
            f'context must be a list of {{"path", "text"}} objects (got {type(value).__name__})',
        )
    if len(value) > MAX_CONTEXT_ITEMS:
        raise InvalidParameter(
            "context", f"context may hold at most {MAX_CONTEXT_ITEMS} items (got {len(value)})"
        )
    items, total = [], 0
    for i, raw in enumerate(value):
        if isinstance(raw, ContextItem):
            path, text = raw.path, raw.text
        elif isinstance(raw, dict):
            path, text = raw.get("path"), raw.get("text")
        else:
            raise InvalidParameter(
                "context",
                f"context[{i}] must be an object with 'path' and 'text' (got {type(raw).__name__})",
            )
        if not isinstance(path, str) or not 0 < len(path) <= MAX_CONTEXT_PATH_CHARS or "\n" in path:
            raise InvalidParameter(
                "context",
                f"context[{i}].path must be a one-line string of 1 to "
                f"{MAX_CONTEXT_PATH_CHARS} characters (got {_short(path)})",
            )
        if not isinstance(text, str) or len(text) > MAX_CONTEXT_TEXT_CHARS:
            got = f"{len(text)} characters" if isinstance(text, str) else type(text).__name__
            raise InvalidParameter(
                "context",
                f"context[{i}].text must be a string of at most "
                f"{MAX_CONTEXT_TEXT_CHARS} characters (got {got})",
            )
        total += len(text)
        items.append(ContextItem(path, text))
    if total > MAX_CONTEXT_TOTAL_CHARS:
        raise InvalidParameter(
            "context",
            f"context's texts may hold at most {MAX_CONTEXT_TOTAL_CHARS} "
            f"characters in all (got {total})",
        )
    return tuple(items)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class RepoFormat:
    """How one family marks files: its repository and file-separator tokens (None: comments)."""

    name: str
    repo_token: str | None = None
    file_token: str | None = None
    newline_after_repo: bool = False
    newline_after_file: bool = False


REPO_FORMATS = (
    RepoFormat(
        "qwen", "<|repo_name|>", "<|file_sep|>", newline_after_repo=True, newline_after_file=True
    ),
    RepoFormat("starcoder", "<repo_name>", "<file_sep>"),
    RepoFormat(
        "file_sep", None, "<file_sep>"
    ),  # DeepShiva's own model: StarCoder2's, no repository name
    RepoFormat("file_sep", None, "<|file_sep|>", newline_after_file=True),
)
COMMENT_FORMAT = RepoFormat("comment")


def detect_repo_format(vocab: dict[str, int]) -> RepoFormat:
    """The first repository format whose tokens are all in ``vocab``, else the comment format."""
    for fmt in REPO_FORMATS:
        if all(tok in vocab for tok in (fmt.repo_token, fmt.file_token) if tok):
            return fmt
    return COMMENT_FORMAT


def comment_prefix(language: str | None, items: tuple[ContextItem, ...] = ()) -> str:
    """The line-comment marker of ``language`` (from the languages table); without one, of the
    first item whose file extension the table knows; else ``#``."""
    entry = languages.find(language)
    if entry is None or not entry.line_comments:
        entry = next(
            (found for item in items if (found := languages.for_path(item.path)) is not None),
            None,
        )
    return entry.line_comments[0] if entry is not None and entry.line_comments else "#"


def repo_name(items: tuple[ContextItem, ...]) -> str:
    """The top folder all relative item paths share (the repository's name), else ""."""
    tops = {
        PurePosixPath(item.path).parts[0]
        for item in items
        if not item.path.startswith("/") and len(PurePosixPath(item.path).parts) > 1
    }
    absolute = any(item.path.startswith("/") for item in items)
    return tops.pop() if len(tops) == 1 and not absolute else ""


class ContextLayout:
    """Turns a request's context items into the token ids that go before the current file.

    ``encode`` (a text -> ids function; the engine passes its line-memoized PromptEncoder) and the
    vocabulary are the model's. The last layout is remembered, so a keystroke with the same items
    costs no tokenizing."""

    def __init__(self, encode, vocab: dict[str, int]):
        self._encode = encode
        self.format = detect_repo_format(vocab)
        self._ids = {
            tok: vocab[tok] for tok in (self.format.repo_token, self.format.file_token) if tok
        }
        # Tokens that end or hold a line break (byte-level BPE spells "\n" as "Ċ", SentencePiece as
        # <0x0A>): where an item too long for the budget is cut.
        self._newline_ids = {
            i for tok, i in vocab.items() if "Ċ" in tok or "\n" in tok or tok == "<0x0A>"
        }
        self._last: tuple[object, list[int]] | None = None
        self._lock = threading.Lock()

    @staticmethod
    def budget(prompt_budget: int) -> int:
        """The most tokens context may take of a prompt budget (see the module's docstring)."""
        return int(prompt_budget * CONTEXT_SHARE)

    def encode(
        self, items: tuple[ContextItem, ...], language: str | None, prompt_budget: int
    ) -> list[int]:
        """Ids of ``items`` laid out in this model's format, ending with the current file's header.

        Empty when there are no items (a request without context is laid out as before)."""
        if not items:
            return []
        key = (items, language, prompt_budget)
        with self._lock:
            if self._last is not None and self._last[0] == key:
                return list(self._last[1])
        ids = self._lay_out(items, language, self.budget(prompt_budget))
        with self._lock:
            self._last = (key, ids)
        return list(ids)

    # -- layout ---------------------------------------------------------------------------
    def _lay_out(
        self, items: tuple[ContextItem, ...], language: str | None, budget: int
    ) -> list[int]:
        fmt = self.format
        if fmt.file_token is None:
            prefix = comment_prefix(language, items)
            blocks = [
                self._encode(f"{prefix} path: {item.path}\n{_with_newline(item.text)}\n")
                for item in items
            ]
            head, tail = [], []
        else:
            sep = self._ids[fmt.file_token]
            after = "\n" if fmt.newline_after_file else ""
            blocks = [[sep, *self._encode(f"{item.path}\n{item.text}{after}")] for item in items]
            head, tail = [], [sep]
            name = repo_name(items) if fmt.repo_token else ""
            if name:
                head = [
                    self._ids[fmt.repo_token],
                    *self._encode(name + ("\n" if fmt.newline_after_repo else "")),
                ]
        room = budget - len(head) - len(tail)
        kept: list[list[int]] = []
        for block in reversed(blocks):  # the last items are nearest the cursor: they stay
            if len(block) <= room:
                kept.append(block)
                room -= len(block)
                continue
            if room >= MIN_CUT_TOKENS:
                kept.append(_cut_at_line(block, room, self._newline_ids))
            break
        if not kept:
            return []
        ids = list(head)
        for block in reversed(kept):
            ids.extend(block)
        return ids + tail


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") or not text else text + "\n"


def _cut_at_line(block: list[int], room: int, newline_ids: set[int]) -> list[int]:
    """The first ``room`` tokens of ``block``, ended after its last whole-newline token if any."""
    head = block[:room]
    for i in range(len(head) - 1, 0, -1):
        if head[i] in newline_ids:
            return head[: i + 1]
    return head
