"""What one file of a package reaches of the package's other files, and the lines that use a name
defined in another file: the selection the cross-file benchmark's needs-context set uses
(benchmarks/cross_file.py) and the training's needs-context samples (training/repo_samples.py).
Pure text functions, no language server."""

from __future__ import annotations

import io
import keyword
import logging
import re
import socket
from dataclasses import dataclass

from lsp.python_symbols import (
    IDENTIFIER,
    definition,
    imports,
    module_paths,
    signature,
    top_level_names,
)


def code_lines(text: str):
    """(line number, offset of its start, line) of each line of ``text`` that may use a name: not
    blank, a comment, an import (parenthesized ones whole), a ``def``/``class``/decorator line,
    triple-quoted text (docstrings) or a bare list entry (``__all__``)."""
    offset, in_import, in_string = 0, False, False
    for number, line in enumerate(text.splitlines(keepends=True)):
        start = offset
        offset += len(line)
        code = line.strip()
        quotes = code.count('"""') + code.count("'''")
        if in_string or quotes:  # docstrings and other triple-quoted text: prose, not code
            in_string = in_string != (quotes % 2 == 1)
            continue
        if code.startswith("from ") and code.endswith("("):
            in_import = True
        if in_import:  # the lines of a parenthesized import name the names, not use them
            in_import = ")" not in code
            continue
        if not code or code.startswith(("#", "import ", "from ", "def ", "class ", "@", '"', "'")):
            continue
        if IDENTIFIER.fullmatch(code.rstrip(",)").strip("\"'")):
            continue  # a list entry (``__all__``), no use of the name
        yield number, start, line


_MEMBER = re.compile(
    r"^\s*(?:async\s+def|def|class)\s+([A-Za-z_]\w*)"  # a method or nested class
    r"|^\s*([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)"  # a class attribute
    r"|^\s*([A-Za-z_]\w*)\s*:\s*[^\s=]"  # a field declared by its annotation (dataclasses)
)
_SELF_SET = re.compile(r"\bself\.([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)")
_ATTRIBUTE = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\.([A-Za-z_]\w*)")
_ANY_ATTRIBUTE = re.compile(r"\.([A-Za-z_]\w*)")
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)\(")
_KEYWORD = re.compile(r"([A-Za-z_]\w*)\s*=(?!=)")
# Attributes of the built-in types, file objects, loggers and sockets: ``x.get``/``f.close``/
# ``log.info`` is more likely theirs than an imported class's method of the same name.
_BUILTIN_ATTRIBUTES = frozenset(
    name
    for kind in (object, type, str, bytes, int, float, list, dict, set, tuple, BaseException)
    + (io.TextIOWrapper, io.BufferedRandom, io.BytesIO, logging.Logger, socket.socket)
    for name in dir(kind)
)
_NOT_MEMBERS = frozenset(keyword.kwlist) | {"self", "cls"}


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def class_members(source: str, name: str) -> set[str]:
    """The attributes the top-level class ``name`` of ``source`` defines: the names its body
    binds (methods, class attributes, annotated fields, nested classes) and the ones its methods
    set on ``self``. Dunder names are left out (every class has them)."""
    block = definition(source, name, max_lines=1_000_000)
    if block is None:
        return set()
    lines = block.splitlines()
    head = next((i for i, text in enumerate(lines) if text.startswith("class ")), None)
    if head is None:
        return set()
    found = set()
    for text in lines[head + 1 :]:
        found.update(_SELF_SET.findall(text))
        match = _MEMBER.match(text)
        if match:
            found.add(next(g for g in match.groups() if g))
    return {n for n in found if not _is_dunder(n) and n not in _NOT_MEMBERS}


def callable_parameters(source: str, name: str) -> list[str]:
    """The names a call of the top-level function or class ``name`` of ``source`` accepts as
    keywords: a function's parameters; a class's ``__init__`` parameters, or, without an
    ``__init__`` of its own, its annotated fields (a dataclass's). ``self``, ``*args`` and
    ``**kwargs`` left out."""
    lines = [text.split("#", 1)[0] for text in source.splitlines()]
    number = top_level_names(source).get(name)
    if number is None:
        return []
    if lines[number].startswith(("def ", "async def ")):
        return _parameters("".join(signature(lines[number:])))
    if not lines[number].startswith("class "):
        return []
    end = next(
        (
            i
            for i in range(number + 1, len(lines))
            if lines[i].strip() and not lines[i][0].isspace() and lines[i][0] not in ")]}"
        ),
        len(lines),
    )
    init = next(
        (
            i
            for i in range(number + 1, end)
            if re.match(r"\s+(?:async\s+)?def __init__\(", lines[i])
        ),
        None,
    )
    if init is not None:
        return _parameters("".join(signature(lines[init:end])))
    fields = []
    for text in (definition(source, name, max_lines=1_000_000) or "").splitlines()[1:]:
        match = re.match(r"^\s+([A-Za-z_]\w*)\s*:\s*[^\s=]", text)
        if match and match.group(1) not in fields and not _is_dunder(match.group(1)):
            fields.append(match.group(1))
    return fields


def _parameters(header: str) -> list[str]:
    """The parameter names in the first parenthesized list of a ``def`` header."""
    parts, part, depth = [], "", 0
    for char in header[header.find("(") :]:
        if char in "([{":
            depth += 1
            if depth == 1:
                continue
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                parts.append(part)
                break
        if depth == 1 and char == ",":
            parts.append(part)
            part = ""
        else:
            part += char
    names = []
    for part in parts:
        part = part.strip()
        match = IDENTIFIER.match(part)
        if match and not part.startswith("*") and match.group() not in _NOT_MEMBERS:
            names.append(match.group())
    return names


@dataclass
class Reachable:
    """What one file of a package reaches of the package's other files through its imports."""

    modules: dict[str, str]  # alias -> module file (``from . import m``, then ``m.X``)
    callables: dict[str, tuple[str, str]]  # alias -> (file, name) of an imported def or class
    foreign: set[str]  # aliases of imports from outside the package


def _module_file(files: dict[str, str], importer: str, level: int, dotted: str) -> str | None:
    return next((c for c in module_paths(importer, level, dotted) if c in files), None)


def _defined(files: dict[str, str], module: str, name: str, hops: int = 3):
    """(file, name) where ``name`` of the module file ``module`` is defined by a ``def`` or
    ``class``, following up to ``hops`` re-exports (``from ._impl import C`` in an __init__)."""
    text = files[module]
    line = top_level_names(text).get(name)
    if line is not None:
        kind = text.splitlines()[line]
        return (module, name) if kind.startswith(("def ", "async def ", "class ")) else None
    if hops:
        for imp in imports(text):
            if imp.alias == name and imp.name is not None:
                found = _module_file(files, module, imp.level, imp.module)
                if found:
                    return _defined(files, found, imp.name, hops - 1)
    return None


def reachable(files: dict[str, str], rel: str) -> Reachable:
    """The modules, functions and classes of its package that the file ``rel`` imports (those
    defined in ``rel`` itself left out), and the aliases it imports from elsewhere."""
    reach = Reachable({}, {}, set())
    package = rel.split("/")[0]
    for imp in imports(files[rel]):
        if imp.name is None:  # ``import a.b`` binds ``a``; ``import a.b as m`` binds a.b
            first = imp.module.split(".")[0]
            dotted = first if imp.alias == first else imp.module
            found = _module_file(files, rel, 0, dotted)
            if found and found != rel:
                reach.modules[imp.alias] = found
            elif first != package:
                reach.foreign.add(imp.alias)
            continue
        found = _module_file(
            files, rel, imp.level, ".".join(p for p in (imp.module, imp.name) if p)
        )
        if found:  # a module of the package: ``from . import m``
            if found != rel:
                reach.modules[imp.alias] = found
            continue
        module = _module_file(files, rel, imp.level, imp.module)
        if module is None:
            if imp.level == 0 and imp.module.split(".")[0] != package:
                reach.foreign.add(imp.alias)
            continue
        defined = _defined(files, module, imp.name)
        if defined and defined[0] != rel:
            reach.callables[imp.alias] = defined
    return reach


def local_names(text: str) -> set[str]:
    """The names a file defines itself: its top-level names, the members of its classes and
    whatever its methods set on ``self``."""
    names = set(top_level_names(text)) | set(_SELF_SET.findall(text))
    for name, line in top_level_names(text).items():
        if text.splitlines()[line].startswith("class "):
            names |= class_members(text, name)
    return names


def _is_class(files: dict[str, str], where: tuple[str, str]) -> bool:
    text = files[where[0]]
    return text.splitlines()[top_level_names(text)[where[1]]].startswith("class ")


def reachable_members(files: dict[str, str], reach: Reachable) -> dict[str, str]:
    """member name -> the file defining it, for every class the file reaches: the classes it
    imports, and those of the modules it imports (first definition kept)."""
    classes = [where for where in reach.callables.values() if _is_class(files, where)]
    for module in reach.modules.values():
        text = files[module]
        lines = text.splitlines()
        classes += [
            (module, n) for n, i in top_level_names(text).items() if lines[i][:6] == "class "
        ]
    members: dict[str, str] = {}
    for file, name in sorted(set(classes)):
        for member in sorted(class_members(files[file], name)):
            members.setdefault(member, file)
    return members


def line_candidates(
    line: str,
    files: dict[str, str],
    reach: Reachable,
    members: dict[str, str],
    local: set[str],
) -> list[tuple[int, str, str, str]]:
    """(column, name, kind, defining file) of each use on ``line`` of a name defined in another
    file of the package, by kind:

    - ``module``: ``m.X``, ``m`` an imported module of the package, X one of its top-level names;
    - ``class``: ``C.X``, ``C`` an imported class, X one of its members;
    - ``keyword``: ``f(..., X=`` on one line, X a parameter of the imported function or class f
      (or ``m.f``);
    - ``attribute``: ``obj.X``, X a member of a class the file reaches (``class_members``) that
      the file does not define itself, is no attribute of a built-in type, and ``obj``'s first
      name is not imported from outside the package. The object's type is not inferred: this
      kind is the one that can be wrong (a same-named attribute of something else)."""
    found: dict[int, tuple[int, str, str, str]] = {}
    for match in _ATTRIBUTE.finditer(line):
        root, name = match.groups()
        if root in reach.modules:
            module = reach.modules[root]
            if name in top_level_names(files[module]) and not _is_dunder(name):
                found[match.start(2)] = (match.start(2), name, "module", module)
        elif root in reach.callables and _is_class(files, reach.callables[root]):
            file, cls = reach.callables[root]
            if name in class_members(files[file], cls):
                found[match.start(2)] = (match.start(2), name, "class", file)
    for match in _ANY_ATTRIBUTE.finditer(line):
        column, name = match.start(1), match.group(1)
        if column in found or name not in members or name in local:
            continue
        if name in _BUILTIN_ATTRIBUTES or _is_dunder(name):
            continue
        begin = match.start()
        while begin > 0 and (line[begin - 1].isalnum() or line[begin - 1] in "_."):
            begin -= 1
        root = IDENTIFIER.match(line, begin)
        if (
            root
            and root.end() <= match.start()
            and root.group() in (reach.foreign | set(reach.modules) | set(reach.callables))
        ):
            continue
        found[column] = (column, name, "attribute", members[name])
    for match in _CALL.finditer(line):
        callee = match.group(1)
        if callee in reach.callables:
            where = reach.callables[callee]
        elif "." in callee and callee.split(".")[0] in reach.modules:
            module = reach.modules[callee.split(".")[0]]
            where = _defined(files, module, callee.split(".")[1], hops=0)
        else:
            continue
        if where is None:
            continue
        parameters = callable_parameters(files[where[0]], where[1])
        depth = 1
        for i in range(match.end() - 1, len(line)):  # from the call's "("
            char = line[i]
            if char in "([{" and i >= match.end():
                depth += 1
            elif char in ")]}":
                depth -= 1
                if depth == 0:
                    break
            if depth == 1 and char in ",(":
                j = i + 1
                while j < len(line) and line[j] == " ":
                    j += 1
                word = _KEYWORD.match(line, j)
                if word and word.group(1) in parameters and j not in found:
                    found[j] = (j, word.group(1), "keyword", where[0])
    return sorted(found.values())


def name_in(text: str, name: str) -> bool:
    """True when ``name`` occurs in ``text`` as a whole identifier."""
    return name in IDENTIFIER.findall(text)
