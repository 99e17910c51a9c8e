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
    ``import module`` whose attributes are typed or used. Dunder names (``__all__``) are left
    out: nobody types them after ``module.``."""
    lines = source.splitlines()
    kept = [
        lines[n]
        for name, n in sorted(top_level_names(source).items(), key=lambda item: item[1])
        if not (name.startswith("__") and name.endswith("__"))
    ]
    return "\n".join(kept[:max_lines]) + ("\n" if kept else "")


def attributes_used(text: str, alias: str) -> list[str]:
    """The attributes read from ``alias`` in ``text`` (``alias.name``), in first-use order."""
    seen = dict.fromkeys(re.findall(rf"(?<![\w.]){re.escape(alias)}\.([A-Za-z_]\w*)", text))
    return list(seen)


# -- what the cursor's receiver is: ``obj.`` being typed -------------------------------------------

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_RECEIVER = re.compile(rf"(?<![\w.)\]])(super\(\)|{_DOTTED})\.[A-Za-z_]?\w*$")
_CALLED = re.compile(rf"({_DOTTED})\s*\(")
# Annotation words that wrap the class (``Optional[C]``, ``Final[C]``) or say nothing of it.
_WRAPPERS = frozenset(
    "Optional Union Final ClassVar Annotated Type type None typing t typing_extensions".split()
)
# Containers: ``x: list[C]`` makes ``x.`` a list's attribute, not C's.
_CONTAINERS = frozenset(
    "list dict set tuple frozenset deque defaultdict OrderedDict List Dict Set Tuple FrozenSet "
    "Sequence MutableSequence Iterable Iterator Mapping MutableMapping Collection Callable "
    "Generator AsyncIterator AsyncIterable AsyncGenerator Awaitable Coroutine".split()
)
MAX_RECEIVER_CHARS = 200  # how far before the cursor a receiver (``a.b.c.``) is looked for
_DEF_OR_CLASS = re.compile(r"^(\s*)(?:async\s+def|def|class)\s")
_CLASS_HEAD = re.compile(r"^(\s*)class\s+[A-Za-z_]\w*\s*(?:\((.*)\))?\s*:")


def receiver_at(text: str, offset: int) -> str | None:
    """The expression whose attribute is being typed at ``offset``: ``obj`` for ``obj.`` or
    ``obj.pa``, ``self.attr`` for ``self.attr.``, ``super()``; None elsewhere (and for a call's
    or subscript's result, ``f().``, ``x[0].``, whose type is not read here)."""
    start = max(text.rfind("\n", 0, offset) + 1, offset - MAX_RECEIVER_CHARS)
    match = _RECEIVER.search(text, start, offset)
    return match.group(1) if match else None


def annotation_classes(annotation: str) -> list[str]:
    """The dotted names an annotation may mean the class of, in order: ``Optional["m.C"]`` ->
    ``["m.C"]``; none for a container (``list[C]``: its items are C, not it)."""
    names = []
    for name in re.findall(_DOTTED, annotation.replace('"', " ").replace("'", " ")):
        last = name.rsplit(".", 1)[-1]
        if last in _CONTAINERS:
            break
        if last not in _WRAPPERS and name.split(".")[0] not in ("typing", "typing_extensions"):
            names.append(name)
    return names


def _annotation_after(line: str, start: int) -> str:
    """The annotation that starts at ``start`` of a parameter list's ``line``: up to the first
    ``,``, ``)`` or ``=`` outside brackets."""
    depth, end = 0, start
    while end < len(line):
        char = line[end]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif char in ",=" and depth == 0:
            break
        end += 1
    return line[start:end]


def _bound_in_line(line: str, name: str) -> list[str] | None:
    """What binding ``name`` on ``line`` says of its class: its dotted names, ``[]`` when the line
    binds it to something unknown, None when the line does not bind it. Reads ``name = C(...)``,
    ``name: C``, ``name: C = ...``, a parameter ``name: C``, ``with C(...) as name`` and
    ``except C as name``."""
    n = re.escape(name)
    match = re.match(rf"\s*{n}\s*(?::(?P<ann>[^=]*))?=(?!=)\s*(?P<value>.*)$", line)
    if match:
        if match.group("ann"):
            return annotation_classes(match.group("ann"))
        called = _CALLED.match(match.group("value"))
        return [called.group(1)] if called else []
    match = re.match(rf"\s*{n}\s*:(?!=)", line)
    if match:
        return annotation_classes(_annotation_after(line, match.end()))
    match = re.search(rf"[(,]\s*\*{{0,2}}{n}\s*:(?!=)", line)
    if match:
        return annotation_classes(_annotation_after(line, match.end()))
    if re.match(r"\s*(?:async\s+)?with\b", line):
        match = re.search(rf"({_DOTTED})\((?:[^()]|\([^()]*\))*\)\s+as\s+{n}\b", line)
        if match:
            return [match.group(1)]
    match = re.match(rf"\s*except\s+\(?({_DOTTED})\)?\s+as\s+{n}\s*:", line)
    if match:
        return [match.group(1)]
    if re.match(rf"\s*(?:async\s+)?for\s+(?:.*,\s*)?{n}\b.*\bin\b", line):
        return []
    return None


def _rebinds_itself(line: str, name: str) -> bool:
    """``name = name.method(...)``: taken to keep the class (``retries = retries.increment()``),
    so the binding above is looked for."""
    n = re.escape(name)
    return re.match(rf"\s*{n}\s*=(?!=)\s*{n}\.[A-Za-z_]\w*\s*\(", line) is not None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _name_classes(lines: list[str], name: str, indent: int, depth: int = 1) -> list[str]:
    """The classes ``name`` is bound to as seen from below ``lines``, a line of indentation
    ``indent``: the nearest binding above in the enclosing function (its parameters included),
    then the module's top level. A ``name = other`` follows ``other`` ``depth`` times."""
    top_only = False
    for number in range(len(lines) - 1, -1, -1):
        line = lines[number]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        level = _indent(line)
        if top_only and level:
            continue
        if name in line:
            found = _bound_in_line(line, name)
            if found is None and depth:
                alias = re.match(rf"\s*{re.escape(name)}\s*=(?!=)\s*([A-Za-z_]\w*)\s*$", line)
                if alias and alias.group(1) not in ("None", "True", "False"):
                    return _name_classes(lines[:number], alias.group(1), level, depth - 1)
            if found is not None and not _rebinds_itself(line, name):
                return found
        if level < indent and _DEF_OR_CLASS.match(line):
            top_only = True  # out of the enclosing function: only the module's names remain
    return []


def _attribute_classes(lines: list[str], attr: str) -> list[str]:
    """The classes ``self.attr`` is bound to: ``self.attr = C(...)`` or ``self.attr: C``
    anywhere in the file, a class-level ``attr: C``, or ``self.attr = param`` with the
    parameter annotated."""
    a = re.escape(attr)
    for number, line in enumerate(lines):
        if attr not in line:
            continue
        match = re.search(rf"\bself\.{a}\s*(?::(?P<ann>[^=]*))?(?:=(?!=)\s*(?P<value>.*))?$", line)
        if match and (match.group("ann") or match.group("value") is not None):
            if match.group("ann"):
                return annotation_classes(match.group("ann"))
            value = match.group("value")
            called = _CALLED.match(value)
            if called:
                return [called.group(1)]
            if IDENTIFIER.fullmatch(value.strip()):
                found = _name_classes(lines[:number], value.strip(), _indent(line), 0)
                if found:
                    return found
            continue
        match = re.match(rf"(\s+){a}\s*:(?!=)", line)
        if match:
            return annotation_classes(_annotation_after(line, match.end()))
    return []


def _enclosing_bases(lines: list[str], indent: int) -> list[str]:
    """The base classes of the class the line below ``lines`` (at ``indent``) is in."""
    for line in reversed(lines):
        match = _CLASS_HEAD.match(line)
        if match and len(match.group(1)) < indent:
            bases = [b.strip() for b in (match.group(2) or "").split(",")]
            return [b for b in bases if re.fullmatch(_DOTTED, b)]
    return []


def receiver_classes(text: str, offset: int, receiver: str) -> list[str]:
    """The dotted names of the classes ``receiver`` (``receiver_at``) may be an instance of,
    read from the lines of ``text`` above ``offset`` without parsing them (the file being typed
    seldom parses): ``obj = C(...)``, ``obj: C``, a parameter ``obj: C``, ``with C(...) as obj``,
    ``except C as obj``; ``self.attr = C(...)`` or ``self.attr: C`` anywhere in the file;
    ``self``/``cls``/``super()``: the enclosing class's bases. Best first; empty when unknown."""
    lines = text[:offset].split("\n")
    indent = _indent(lines[-1])
    parts = receiver.split(".")
    if receiver in ("self", "cls", "super()"):
        return _enclosing_bases(lines[:-1], indent)
    if len(parts) == 2 and parts[0] in ("self", "cls"):
        return _attribute_classes(text.split("\n"), parts[1])
    if len(parts) == 1:
        return _name_classes(lines[:-1], receiver, indent)
    return []
