"""Repository samples: a file of a package after other files of the same package, so the model
learns to copy names across files.

The layout is the one the engine gives a request with ``context`` for DeepShiva's own model
(core/repo_context.py, StarCoder2's repository format without the repository name):

    <file_sep>{path}\\n{text}<file_sep>{path}\\n{text}...<file_sep>{the current file}

where the current file is a chunk of the target file, plain or as a FIM sample (PSM or SPM, the
same draws as training/fim.py). The context items are what the language server sends
(lsp/context.py): the definitions of the names the target file imports from its own package
(a class as its outline), and a snippet of another file of the package that shares the most
identifiers with the chunk, snippets first, definitions last, within ``CONTEXT_CHARS``.

Packages are the first path component of the training files (``email/`` of the stdlib,
``flask/`` of the extra packages); held-out files are never used, as target or as context.
"""

from __future__ import annotations

import functools
import random
from collections import Counter, defaultdict

from lsp import python_reach, python_symbols
from lsp.python_symbols import IDENTIFIER, attributes_used, identifiers, module_paths
from training import fim
from training.data import SourceFile
from training.tokenizer import EOS, FILE_SEP

CONTEXT_CHARS = 1600  # ~420 tokens: the context's share of a 1024-token window, as in the engine
TARGET_CHARS = 1800  # the current file's chunk
# A 2,048-token window holds what the language server sends by default (1,800 characters of
# context) beside a file as long as the one it sends (3,000 characters before the cursor and
# 1,000 after), so context is learned as an addition to the file, not a replacement for it.
LONG_WINDOW_CHARS = (1800, 4000)  # (context, target) for --seq-len 2048
SNIPPET_LINES = 16
SNIPPET_TRIES = 6  # random snippets compared with the chunk; the most similar is kept
CROSS_LINE_SHARE = 0.5  # of repository samples: the middle is the rest of a line that uses an
# imported name, from the name on (what an editor asks for where the name lives in another file)
CROSS_LINE_SPM = 0.8  # of those, in SPM order (the engine's order for this model)
# Of the repository samples of a file with a needs-context line (a name X defined in another file
# of the package that the chunk shows nowhere else, as in the benchmark's needs-context set):
# the middle is that line from X on, and the last context item is the outline X belongs to (what
# the language server sends first), so the only way to the answer is copying from the context.
NEEDS_CONTEXT_SHARE = 0.4
_SKIP_LINES = ("#", "import ", "from ", "def ", "class ", "@", '"', "'")


# A package's files are read again for every sample drawn from them: parse each text once.
definition = functools.lru_cache(maxsize=65536)(python_symbols.definition)
imports = functools.lru_cache(maxsize=8192)(python_symbols.imports)
top_level_names = functools.lru_cache(maxsize=8192)(python_symbols.top_level_names)


def group_by_package(files: list[SourceFile]) -> dict[str, dict[str, SourceFile]]:
    """Files of packages with at least two files, by package, then by path."""
    groups: dict[str, dict[str, SourceFile]] = defaultdict(dict)
    for f in files:
        if "/" in f.rel:
            groups[f.rel.split("/", 1)[0]][f.rel] = f
    return {name: members for name, members in groups.items() if len(members) >= 2}


def imported_definitions(
    target: SourceFile, package: dict[str, SourceFile], wanted_text: str, first: str = ""
) -> list[tuple[str, str]]:
    """(path, block) of each name ``target`` imports from its package (for an imported module:
    of the attributes ``wanted_text`` reads from it), ``first`` before all, then those used in
    ``wanted_text``, then in import order."""
    wanted = identifiers(wanted_text)
    found = []
    for imp in imports(target.text):
        blocks = []
        if imp.name is not None:
            source = _module(package, target, imp.level, imp.module)
            block = source and definition(source.text, imp.name)
            if block:
                blocks = [(source.rel, block)]
        if not blocks:  # ``import pkg.mod`` or ``from . import mod``: what is read from the module
            module = (
                imp.module if imp.name is None else ".".join(p for p in (imp.module, imp.name) if p)
            )
            source = _module(package, target, imp.level, module)
            attrs = attributes_used(wanted_text, imp.alias) if source else []
            blocks = [(source.rel, b) for b in (definition(source.text, a) for a in attrs) if b]
        rank = 0 if first and imp.alias == first else 1 if imp.alias in wanted else 2
        found += [(rank, path, block) for path, block in blocks]
    found.sort(key=lambda item: item[0])  # stable: first, wanted, then import order within
    return [(path, block) for _, path, block in found]


def _module(
    package: dict[str, SourceFile], target: SourceFile, level: int, module: str
) -> SourceFile | None:
    for candidate in module_paths(target.rel, level, module):
        if candidate in package and candidate != target.rel:
            return package[candidate]
    return None


def best_snippet(
    chunk: str, target: SourceFile, package: dict[str, SourceFile], rng: random.Random
) -> tuple[str, str] | None:
    """A window of ``SNIPPET_LINES`` lines of another file of the package: of a few random
    ones, the one whose identifiers overlap the chunk's most (Jaccard), as the server ranks."""
    others = [f for rel, f in package.items() if rel != target.rel]
    words = identifiers(chunk)
    best, best_score = None, -1.0
    for _ in range(SNIPPET_TRIES):
        other = rng.choice(others)
        lines = other.text.splitlines(keepends=True)
        start = rng.randrange(max(1, len(lines) - SNIPPET_LINES + 1))
        text = "".join(lines[start : start + SNIPPET_LINES])
        theirs = identifiers(text)
        score = len(words & theirs) / max(1, len(words | theirs))
        if score > best_score and text.strip():
            best, best_score = (other.rel, text), score
    return best


def context_items(
    chunk: str,
    target: SourceFile,
    package: dict[str, SourceFile],
    rng: random.Random,
    budget: int = CONTEXT_CHARS,
    first: str = "",
) -> list[tuple[str, str]]:
    """The (path, text) items before the chunk: a snippet, then definitions (``first``'s
    definition given room before the others), within ``budget``."""
    definitions = imported_definitions(target, package, chunk, first)
    snippet = best_snippet(chunk, target, package, rng)
    chosen, room = [], budget
    for path, text in definitions:
        if len(text) + len(path) + 2 <= room:
            chosen.append((path, text))
            room -= len(text) + len(path) + 2
    if (
        snippet
        and snippet[0] not in {path for path, _ in chosen}
        and len(snippet[1]) + len(snippet[0]) + 2 <= room
    ):
        chosen.insert(0, snippet)
    return chosen


def _pick_chunk(
    target: SourceFile,
    rng: random.Random,
    prefer: set[str] | None = None,
    target_chars: int = TARGET_CHARS,
) -> tuple[str, bool]:
    """A chunk of the target, preferring one whose code uses a name in ``prefer`` (default: the
    file's imported names), and whether it is the last."""
    chunks = fim.chunk_text(target.text, target_chars)
    names = prefer or {imp.alias for imp in imports(target.text)}
    using = [i for i, chunk in enumerate(chunks) if identifiers(_code_lines(chunk)) & names]
    index = rng.choice(using) if using else rng.randrange(len(chunks))
    return chunks[index], index == len(chunks) - 1


def _code_lines(chunk: str) -> str:
    return "\n".join(
        ln for ln in chunk.splitlines() if not ln.lstrip().startswith(("import ", "from "))
    )


def package_names(target: SourceFile, package: dict[str, SourceFile]) -> set[str]:
    """The names ``target`` imports from other files of its package (``from .m import name``)."""
    found = set()
    for imp in imports(target.text):
        if imp.name is not None and imp.alias == imp.name:
            source = _module(package, target, imp.level, imp.module)
            if source is not None and imp.name in top_level_names(source.text):
                found.add(imp.name)
    return found


def cross_line_split(
    chunk: str, names: set[str], rng: random.Random
) -> tuple[str, str, str, str] | None:
    """(prefix, middle, suffix, name): the middle runs from a use of one of ``names`` (not an
    attribute, not in an import, definition, comment or string line) to its line's end; None
    when the chunk has no such use. The answer the cross-file benchmark asks for, on training
    code."""
    uses, offset, in_string = [], 0, False
    for line in chunk.splitlines(keepends=True):
        start, offset = offset, offset + len(line)
        code = line.strip()
        quotes = code.count('"""') + code.count("'''")
        if in_string or quotes:
            in_string = in_string != (quotes % 2 == 1)
            continue
        if not code or code.startswith(_SKIP_LINES):
            continue
        end = start + len(line.rstrip("\r\n"))
        for match in IDENTIFIER.finditer(line):
            if match.group() in names and (match.start() == 0 or line[match.start() - 1] != "."):
                if end - (start + match.start()) >= 3:
                    uses.append((start + match.start(), end, match.group()))
                break
    if not uses:
        return None
    a, b, name = rng.choice(uses)
    return chunk[:a], chunk[a:b], chunk[b:], name


def make_repo_samples(
    files: list[SourceFile],
    rng: random.Random,
    rate: float,
    fim_rate: float,
    line_share: float = fim.LINE_MIDDLE_SHARE,
    spm_share: float = fim.SPM_SHARE,
    sizes: tuple[int, int] = (CONTEXT_CHARS, TARGET_CHARS),
    kinds: Counter | None = None,
) -> list[tuple[list[str], bool]]:
    """Repository samples, (pieces, is_fim): ``rate`` per file of a multi-file package on
    average (0.5: every other file; 2.5: two or three each, with different chunks and draws).
    ``sizes``: the characters of context and of the target's chunk in each sample. ``kinds``,
    if given, counts the samples drawn by kind (needs_context, fim, plain)."""
    out = []
    kinds = Counter() if kinds is None else kinds
    for package in group_by_package(files).values():
        texts = {rel: f.text for rel, f in package.items()}
        for target in package.values():
            count = int(rate) + (rng.random() < rate - int(rate))
            if not count or not target.text.strip():
                continue
            names = package_names(target, package)
            lines = needs_context_lines(texts, target.rel)
            for _ in range(count):
                sample = None
                if lines and rng.random() < NEEDS_CONTEXT_SHARE:
                    sample = needs_context_sample(target, package, texts, lines, rng, sizes)
                if sample is not None:
                    kinds["needs_context"] += 1
                else:
                    sample = _sample(
                        target, package, names, rng, fim_rate, line_share, spm_share, sizes
                    )
                    kinds["fim" if sample[1] else "plain"] += 1
                out.append(sample)
    return out


def needs_context_lines(files: dict[str, str], rel: str) -> list[tuple[int, int, str, str, str]]:
    """(cursor, line end, name, kind, defining file) of each line of ``rel`` the benchmark's
    needs-context selection takes (benchmarks/cross_file.py): its first use of a name defined
    in another file of the package, with at least 3 characters from the name to the line end."""
    reach = python_reach.reachable(files, rel)
    if not (reach.modules or reach.callables):
        return []
    text = files[rel]
    members = python_reach.reachable_members(files, reach)
    local = python_reach.local_names(text)
    found = []
    for _, start, line in python_reach.code_lines(text):
        for column, name, kind, where in python_reach.line_candidates(
            line, files, reach, members, local
        ):
            cut, end = start + column, start + len(line.rstrip("\r\n"))
            if end - cut >= 3:
                found.append((cut, end, name, kind, where))
            break
    return found


def owner_outline(files: dict[str, str], name: str, kind: str, where: str) -> str | None:
    """What the language server sends first for ``name`` (lsp/context.py): the outline of the
    module for ``m.X``; for a member, the outline of a class of ``where`` defining it; for a
    keyword, the definition of a callable of ``where`` taking it."""
    text = files[where]
    if kind == "module":
        return python_symbols.module_outline(text)
    for owner, number in top_level_names(text).items():
        line = text.splitlines()[number]
        if kind == "keyword":
            if name in python_reach.callable_parameters(text, owner):
                return definition(text, owner)
        elif line.startswith("class ") and name in python_reach.class_members(text, owner):
            return definition(text, owner)
    return None


def _fit(outline: str, name: str, budget: int) -> str | None:
    """``outline`` within ``budget`` characters, keeping its first line and the first line that
    names ``name``; None when that cannot fit or no line names it."""
    lines = outline.splitlines(keepends=True)
    at = next((i for i, ln in enumerate(lines) if python_reach.name_in(ln, name)), None)
    if at is None:
        return None
    if len(outline) <= budget:
        return outline
    kept = lines[:1] if at else []
    for ln in lines[at:]:
        if sum(map(len, kept)) + len(ln) > budget:
            break
        kept.append(ln)
    text = "".join(kept)
    return text if python_reach.name_in(text, name) else None


def needs_context_sample(
    target: SourceFile,
    package: dict[str, SourceFile],
    files: dict[str, str],
    lines: list[tuple[int, int, str, str, str]],
    rng: random.Random,
    sizes: tuple[int, int] = (CONTEXT_CHARS, TARGET_CHARS),
) -> tuple[list[str], bool] | None:
    """A FIM sample whose middle is a needs-context line from its name X on, X nowhere else in
    the chunk, after context items ending with the outline X belongs to; None when no line of
    ``lines`` fits a chunk that way or X's outline line does not fit the context budget."""
    context_chars, target_chars = sizes
    chunks, offset, spans = fim.chunk_text(target.text, target_chars), 0, []
    for chunk in chunks:
        spans.append((offset, chunk))
        offset += len(chunk)
    choices = []
    for cut, end, name, kind, where in lines:
        for begin, chunk in spans:
            if begin <= cut and end <= begin + len(chunk):
                prefix, suffix = chunk[: cut - begin], chunk[end - begin :]
                if not python_reach.name_in(prefix + "\n" + suffix, name):
                    choices.append(
                        (prefix, chunk[cut - begin : end - begin], suffix, name, kind, where)
                    )
                break
    rng.shuffle(choices)
    for prefix, middle, suffix, name, kind, where in choices:
        outline = owner_outline(files, name, kind, where)
        outline = outline and _fit(outline, name, context_chars - len(where) - 2)
        if not outline:
            continue
        room = context_chars - len(outline) - len(where) - 2
        others = [
            (path, text)
            for path, text in context_items(prefix + suffix, target, package, rng, room)
            if (path, text) != (where, outline)
        ]
        pieces: list[str] = []
        for path, text in others + [(where, outline)]:
            pieces += [FILE_SEP, f"{path}\n{text}"]
        pieces.append(FILE_SEP)
        order = fim.spm if rng.random() < CROSS_LINE_SPM else fim.psm
        return pieces + order(prefix, middle, suffix), True
    return None


def _sample(
    target: SourceFile,
    package: dict[str, SourceFile],
    package_names: set[str],
    rng: random.Random,
    fim_rate: float,
    line_share: float,
    spm_share: float,
    sizes: tuple[int, int] = (CONTEXT_CHARS, TARGET_CHARS),
) -> tuple[list[str], bool]:
    """One sample: a chunk of ``target`` after its context items; ``package_names`` are the
    names it imports from its package (a share of samples completes a line from one of them)."""
    names = package_names if rng.random() < CROSS_LINE_SHARE else set()
    context_chars, target_chars = sizes
    chunk, last = _pick_chunk(target, rng, names, target_chars)
    cross = cross_line_split(chunk, names, rng) if names else None
    pieces: list[str] = []
    # The language server ranks definitions by the names near the cursor, the answer's line
    # left out (it is not typed yet): the chunk without the middle.
    near = cross[0] + cross[2] if cross else chunk
    first = cross[3] if cross else ""
    for path, text in context_items(near, target, package, rng, context_chars, first):
        pieces += [FILE_SEP, f"{path}\n{text}"]
    pieces.append(FILE_SEP)
    if cross:
        order = fim.spm if rng.random() < CROSS_LINE_SPM else fim.psm
        return pieces + order(cross[0], cross[1], cross[2]), True
    if rng.random() < fim_rate:
        split = fim.pick_split(rng, line_share)
        order = fim.spm if spm_share and rng.random() < spm_share else fim.psm
        return pieces + order(*split(chunk, rng)), True
    return pieces + [chunk] + ([EOS] if last else []), False
