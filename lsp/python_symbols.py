"""Python imports and top-level definitions read line by line, without a parser.

The file being edited is usually not valid Python at the moment a suggestion is asked for, so
``ast`` cannot be relied on; these helpers read what they need from the lines themselves:
the names a file imports (and from which module), and the block of source that defines a name
at the top level of another file (a class is shortened to its outline: its signature, fields and
method signatures, and the attributes ``__init__`` sets). No I/O here: the language server's
context gatherer (lsp/context.py) and the trainer's repository samples (training/repo_samples.py)
both use them.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FROM = re.compile(r"^\s*from\s+(\.*)([\w.]*)\s+import\s+(.*)$")
_IMPORT = re.compile(r"^\s*import\s+(.*)$")
_DEFINITION = re.compile(
    r"^(?:async\s+def|def|class)\s+([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)"
)
_SELF_ATTRIBUTE = re.compile(r"^\s*self\.\w+\s*(?::[^=]*)?=(?!=)")
MAX_BLOCK_LINES = 40


@dataclass(frozen=True)
class Import:
    """``from {'.' * level}{module} import {name} as {alias}``; ``name`` None for ``import module``."""

    level: int
    module: str
    name: str | None
    alias: str


def imports(source: str) -> list[Import]:
    """The imports of ``source`` in order, including parenthesized multi-line ``from`` imports."""
    found: list[Import] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line = _strip_comment(lines[i])
        i += 1
        match = _FROM.match(line)
        if match:
            dots, module, names = match.groups()
            if names.lstrip().startswith("(") and ")" not in names:
                while i < len(lines) and ")" not in names:
                    names += " " + _strip_comment(lines[i])
                    i += 1
            names = names.replace("(", " ").replace(")", " ").replace("\\", " ")
            for part in names.split(","):
                pieces = part.split()
                if not pieces or pieces[0] == "*" or not IDENTIFIER.fullmatch(pieces[0]):
                    continue
                alias = pieces[2] if len(pieces) == 3 and pieces[1] == "as" else pieces[0]
                found.append(Import(len(dots), module, pieces[0], alias))
            continue
        match = _IMPORT.match(line)
        if match:
            for part in match.group(1).split(","):
                pieces = part.split()
                if not pieces or not re.fullmatch(r"[\w.]+", pieces[0]):
                    continue
                alias = (
                    pieces[2] if len(pieces) == 3 and pieces[1] == "as" else pieces[0].split(".")[0]
                )
                found.append(Import(0, pieces[0], None, alias))
    return found


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0].rstrip()


def top_level_names(source: str) -> dict[str, int]:
    """Each name defined at the top level of ``source`` (def, class, assignment) -> its line."""
    names: dict[str, int] = {}
    for number, line in enumerate(source.splitlines()):
        match = _DEFINITION.match(line)
        if match:
            names.setdefault(match.group(1) or match.group(2), number)
    return names


def definition(source: str, name: str, max_lines: int = MAX_BLOCK_LINES) -> str | None:
    """The top-level block of ``source`` that defines ``name`` (its decorators included), or None.

    A class is given as its outline (see ``outline``); any block is cut to ``max_lines`` lines."""
    lines = source.splitlines()
    line = top_level_names(source).get(name)
    if line is None:
        return None
    start = line
    while start > 0 and lines[start - 1].startswith("@"):
        start -= 1
    end = line + 1
    while end < len(lines):
        text = lines[end]
        if (
            text.strip()
            and not text[0].isspace()
            and not text.lstrip().startswith(("#", ")", "]", "}"))
        ):
            break
        end += 1
    while end > line + 1 and not lines[end - 1].strip():
        end -= 1
    block = lines[start:end]
    if lines[line].startswith("class "):
        block = outline(block)
    elif lines[line].startswith(("def ", "async def ")):
        block = signature(block, line - start)
    return "\n".join(block[:max_lines]) + "\n"


def signature(block: list[str], head: int = 0) -> list[str]:
    """A function block cut to its decorators and signature (to the line that ends it with a colon)."""
    depth = 0
    for i in range(head, len(block)):
        code = _strip_comment(block[i])
        depth += sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")
        if depth <= 0 and code.endswith(":"):
            return block[: i + 1]
    return block


def outline(block: list[str]) -> list[str]:
    """A class block without its method bodies: the lines of its own body level (signatures,
    fields, decorators, docstring start) and the ``self.x = ...`` lines anywhere below."""
    head = next((i for i, text in enumerate(block) if text.startswith("class ")), 0)
    if len(block) < head + 2:
        return block
    body_indent = None
    for text in block[head + 1 :]:
        if text.strip():
            body_indent = len(text) - len(text.lstrip())
            break
    if body_indent is None:
        return block
    kept = block[: head + 1]
    in_string = False
    for text in block[head + 1 :]:
        indent = len(text) - len(text.lstrip())
        quotes = text.count('"""') + text.count("'''")
        if in_string or quotes:  # docstrings: prose the budget is better spent without
            in_string = in_string != (quotes % 2 == 1)
            continue
        if not text.strip():
            continue
        if indent <= body_indent or _SELF_ATTRIBUTE.match(text):
            kept.append(text)
    return kept


_NOT_NAMES = frozenset(keyword.kwlist) | {"self", "cls"}


def identifiers(text: str) -> set[str]:
    """The names in ``text``, keywords and ``self``/``cls`` left out (every Python snippet has
    them: they would make unrelated code look alike)."""
    return set(IDENTIFIER.findall(text)) - _NOT_NAMES


def module_paths(importer: str, level: int, module: str) -> list[str]:
    """Where the module of an import may live, as '/'-separated paths relative to the root the
    importer's path ``importer`` is relative to: ``pkg/mod.py`` and ``pkg/mod/__init__.py``.

    A relative import (``level`` dots) starts at the importer's package; an absolute one at the
    root. Empty when the dots climb above the root."""
    parts = importer.split("/")[:-1]
    if level:
        if level - 1 > len(parts):
            return []
        parts = parts[: len(parts) - (level - 1)]
    else:
        parts = []
    parts = parts + [p for p in module.split(".") if p]
    if not parts:
        return []
    base = "/".join(parts)
    return [base + ".py", base + "/__init__.py"]


def module_outline(source: str, max_lines: int = MAX_BLOCK_LINES) -> str:
    """The top-level signature lines of a module (``def``, ``class``, assignments), for an
    ``import module`` whose attributes are used."""
    lines = source.splitlines()
    kept = [lines[n] for n in sorted(top_level_names(source).values())]
    return "\n".join(kept[:max_lines]) + ("\n" if kept else "")


def attributes_used(text: str, alias: str) -> list[str]:
    """The attributes read from ``alias`` in ``text`` (``alias.name``), in first-use order."""
    seen = dict.fromkeys(re.findall(rf"(?<![\w.]){re.escape(alias)}\.([A-Za-z_]\w*)", text))
    return list(seen)
