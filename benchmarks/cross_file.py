"""Cross-file completion: does context from other files help, and what does it cost per keystroke?

Two evaluation sets are built at run time from installed PyPI packages that the shipped model
never saw (not in training/data.py's EXTRA_PACKAGES, not in the standard library), so no
third-party code is committed here. Each sample is one line of a package file, cut at a cursor;
the answer is the rest of the line.

- ``imports`` (``build_samples``; PACKAGES): a line that uses a name the file imports from
  another file of the same package (``from .util import bounded_int``), the cursor just before
  that name. Most of these names are already in the file's own prompt (its import line, earlier
  uses), so context seldom brings what the model lacks.
- ``needs_context`` (``build_needs_context_samples``; NEEDS_CONTEXT_PACKAGES, two more packages):
  the cursor sits just before a name X defined in another file of the package and reached through
  the file's imports (a module's top-level name ``m.X``, an imported class's member ``C.X`` or
  ``obj.X``, a keyword ``f(X=`` of an imported callable; ``line_candidates``), and X occurs
  nowhere in the prompt the model gets without context. This is how CrossCodeEval (Ding et al.,
  2023) selects its samples: completions the current file alone cannot answer. ``obj.X`` does
  not infer ``obj``'s type, so a few of those lines may use a same-named attribute of something
  else; each sample records its kind.

Both sets are capped at ``--per-package`` lines per package (drawn in a fixed order, a hash of
path and line). Prompts are cut as the language server cuts them (3,000 characters before,
1,000 after, lsp/text.py) and completed greedily to the end of the line, in three conditions:

- ``none``: the current file only (what DeepShiva sent before context existed);
- ``open_files``: the language server's open-files source, with four other files of the package
  open (the one that defines the name and three others, drawn per sample);
- ``imports``: the language server's import-definitions source, the package as the workspace.

Both context conditions run lsp/context.py's gatherer with the default budgets. Metrics: exact
match of the line; identifier match (the identifiers of the prediction, in order, equal the
answer's); name match (the prediction starts with the cross-file name); and, per condition, in
how many samples the context items sent contain the name at all (what context could carry).

Timing: ``--keystrokes`` types lines of the imports set's files through deepshiva-lsp against a
live API server, one inline-completion request per keystroke, context on and off (p50 of the time
to the answer); ``--long-context`` times a keystroke with 2,000 tokens of context against one
with none (CPU time; the shipped model, and random-weight models with 4,096 positions) and, for
the 1B shape, a decode step with 2,400 positions cached against one with 400.

    python -m benchmarks.cross_file --model models/tiny-python --out benchmarks/results/cross-file.json
    python -m benchmarks.cross_file --set needs-context --model DIR --out ...
"""

from __future__ import annotations

import argparse
import dataclasses
import asyncio
import hashlib
import importlib.metadata
import io
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lsp import context as context_module
from lsp.context import ContextGatherer
from lsp.options import Options, merge
from lsp.python_reach import (
    code_lines,
    line_candidates,
    local_names,
    name_in,
    reachable,
    reachable_members,
)
from lsp.python_symbols import (
    IDENTIFIER,
    imports,
    module_paths,
    top_level_names,
)
from lsp.text import cursor_context

PACKAGES = ("h11", "itsdangerous", "pluggy", "prometheus_client", "tomlkit", "markdown_it")
# The needs-context set takes two more packages: the six give it too few lines (h11, pluggy and
# itsdangerous import few classes whose members their files use without naming them first).
NEEDS_CONTEXT_PACKAGES = PACKAGES + ("urllib3", "jsonschema")
PER_PACKAGE = 30
OPEN_OTHERS = 3


@dataclass
class Sample:
    package: str
    path: str  # relative to the package's parent directory
    line: int
    name: str  # the imported name the answer starts with
    defined_in: str
    prefix: str
    suffix: str
    answer: str
    document: str  # the file without the answer (what the editor holds)
    offset: int  # the cursor in ``document``
    kind: str = "imported"  # needs-context samples: how the name is reached (line_candidates)

    def named(self, name: str, defined_in: str, kind: str = "imported") -> Sample:
        return dataclasses.replace(self, name=name, defined_in=defined_in, kind=kind)


def package_files(name: str) -> tuple[Path, dict[str, str]]:
    """(the directory holding the package, {relative path: text}) of an installed package."""
    spec = importlib.util.find_spec(name)
    root = Path(list(spec.submodule_search_locations)[0])
    files = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        if any(
            part in ("tests", "test", "testing", "_vendor", "vendor") for part in rel.split("/")
        ):
            continue
        try:
            files[rel] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return root.parent, files


def line_sample(
    package: str, rel: str, number: int, text: str, start: int, line: str, column: int
) -> Sample | None:
    """The file ``text`` cut at ``column`` of its line ``number`` (which begins at ``start``):
    the rest of the line is the answer, the prompt is cut as the language server cuts it. None
    when the answer is under 3 characters. Name and kind are set by the caller (``named``)."""
    cut = start + column
    end = start + len(line.rstrip("\r\n"))
    if end - cut < 3:
        return None
    document = text[:cut] + text[end:]
    ctx = cursor_context(document, cut, 3000, 1000, "python")
    return Sample(
        package, rel, number, "", "", ctx.prefix, ctx.suffix, text[cut:end], document, cut
    )


def build_samples(packages=PACKAGES, per_package: int = PER_PACKAGE) -> list[Sample]:
    """Lines that use a name imported from another file of the same package, cut before the name."""
    samples = []
    for package in packages:
        _, files = package_files(package)
        found = []
        for rel, text in files.items():
            names = {}
            for imp in imports(text):
                if imp.name is None or imp.alias != imp.name:
                    continue
                for candidate in module_paths(rel, imp.level, imp.module):
                    if (
                        candidate in files
                        and candidate != rel
                        and imp.name in top_level_names(files[candidate])
                    ):
                        names[imp.name] = candidate
                        break
            if not names:
                continue
            for number, start, line in code_lines(text):
                for match in IDENTIFIER.finditer(line):
                    if match.group() in names and (
                        match.start() == 0 or line[match.start() - 1] != "."
                    ):
                        sample = line_sample(package, rel, number, text, start, line, match.start())
                        if sample is not None:
                            found.append(sample.named(match.group(), names[match.group()]))
                        break
        found.sort(key=lambda s: hashlib.sha256(f"{s.path}:{s.line}".encode()).hexdigest())
        samples += found[:per_package]
    return samples


# -- the set that needs context: names the current file's prompt does not show -------------------


def build_needs_context_samples(
    packages=NEEDS_CONTEXT_PACKAGES, per_package: int = PER_PACKAGE
) -> list[Sample]:
    """Lines whose cursor sits just before a name defined in another file of the package
    (``line_candidates``) that occurs nowhere in the prompt the model gets without context (the
    prefix and suffix as cut): the first such name of a line, the answer the rest of the line."""
    samples = []
    for package in packages:
        _, files = package_files(package)
        found = []
        for rel, text in files.items():
            reach = reachable(files, rel)
            if not (reach.modules or reach.callables):
                continue
            members = reachable_members(files, reach)
            local = local_names(text)
            for number, start, line in code_lines(text):
                for column, name, kind, where in line_candidates(
                    line, files, reach, members, local
                ):
                    sample = line_sample(package, rel, number, text, start, line, column)
                    if sample is None or name_in(sample.prefix + "\n" + sample.suffix, name):
                        continue  # too short, or the prompt without context shows the name
                    found.append(sample.named(name, where, kind))
                    break
        found.sort(key=lambda s: hashlib.sha256(f"{s.path}:{s.line}".encode()).hexdigest())
        samples += found[:per_package]
    return samples


def identifier_list(text: str) -> list[str]:
    return IDENTIFIER.findall(text)


def score(prediction: str, sample: Sample) -> dict:
    prediction, answer = prediction.rstrip(), sample.answer.rstrip()
    ids = identifier_list(prediction)
    return {
        "exact": prediction == answer,
        "identifiers": ids == identifier_list(answer),
        "name": bool(ids) and ids[0] == sample.name,
    }


class Contexts:
    """The language server's gatherer over a copy of each package (the workspace folder)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.roots: dict[str, Path] = {}

    def root(self, package: str) -> Path:
        if package not in self.roots:
            parent, _ = package_files(package)
            root = self.workdir / f"{package}-src"
            shutil.copytree(
                parent / package,
                root / package,
                ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"),
            )
            self.roots[package] = root
        return self.roots[package]

    def items(self, sample: Sample, condition: str, files: dict[str, str]) -> list[dict]:
        if condition == "none":
            return []
        root = self.root(sample.package)
        gatherer = ContextGatherer()
        gatherer.set_folders([root])
        only = {
            "openFiles": {"enabled": condition == "open_files"},
            "recentEdits": {"enabled": False},
            "imports": {"enabled": condition == "imports"},
        }
        settings = merge(Options(), {"projectContext": only})[0].project_context
        if condition == "open_files":
            rng = random.Random(f"{sample.path}:{sample.line}")
            others = sorted(p for p in files if p not in (sample.path, sample.defined_in))
            for rel in [sample.defined_in, *rng.sample(others, min(OPEN_OTHERS, len(others)))]:
                gatherer.opened((root / rel).as_uri(), files[rel], 1)
        uri = (root / sample.path).as_uri()
        return asyncio.run(gatherer.gather(uri, sample.document, sample.offset, "python", settings))


CONDITIONS = ("none", "open_files", "imports")


def evaluate(model: str, sets: dict[str, list[Sample]], conditions=CONDITIONS) -> dict:
    """Complete every sample of each set in each condition with ``model`` (loaded once).

    Beside the scores, per condition: in how many samples the context items sent contain the
    sample's name at all (``context_has_name``: context could have helped), and in how many of
    those the prompt without context lacks it (``context_has_name_not_in_prompt``)."""
    from core import OptimizedLLM

    llm = OptimizedLLM(model)
    llm.warmup()
    files = {s.package: package_files(s.package)[1] for ss in sets.values() for s in ss}
    out = {"model": model, "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        contexts = Contexts(Path(tmp))
        for set_name, samples in sets.items():
            rows = {c: [] for c in conditions}
            in_prompt = [name_in(s.prefix + "\n" + s.suffix, s.name) for s in samples]
            for sample in samples:
                for condition in conditions:
                    items = contexts.items(sample, condition, files[sample.package])
                    result = llm.complete(
                        sample.prefix,
                        suffix=sample.suffix,
                        context=items or None,
                        max_length=48,
                        temperature=0,
                        stop_sequences=["\n"],
                        language="python",
                    )
                    rows[condition].append(
                        {
                            **score(result.text, sample),
                            "prediction": result.text,
                            "items": len(items),
                            "carried": any(name_in(i["text"], sample.name) for i in items),
                            "prompt_tokens": result.prompt_tokens,
                        }
                    )
            out["sets"][set_name] = {
                "name_in_prompt": sum(in_prompt),
                "summary": {c: _summary(rows[c], in_prompt) for c in conditions},
                # The answers are third-party code: located (path, line), not copied.
                "per_sample": [
                    {
                        "path": s.path,
                        "line": s.line + 1,
                        "name": s.name,
                        "kind": s.kind,
                        "defined_in": s.defined_in,
                        "name_in_prompt": in_prompt[i],
                        "context_has_name": [c for c in conditions if rows[c][i]["carried"]],
                        **{c: rows[c][i]["prediction"] for c in conditions},
                    }
                    for i, s in enumerate(samples)
                ],
            }
    return out


def _summary(scored: list[dict], in_prompt: list[bool]) -> dict:
    n = len(scored)
    carried = sum(r["carried"] for r in scored)
    return {
        "samples": n,
        "exact_match": round(sum(r["exact"] for r in scored) / n, 4),
        "identifier_match": round(sum(r["identifiers"] for r in scored) / n, 4),
        "name_match": round(sum(r["name"] for r in scored) / n, 4),
        "context_has_name": carried,
        "context_has_name_share": round(carried / n, 4),
        "context_has_name_not_in_prompt": sum(
            r["carried"] and not p for r, p in zip(scored, in_prompt, strict=True)
        ),
        "mean_items": round(sum(r["items"] for r in scored) / n, 2),
        "mean_prompt_tokens": round(statistics.mean(r["prompt_tokens"] for r in scored), 1),
    }


# -- timing ----------------------------------------------------------------------------------------


def gatherer_at(ref: str):
    """lsp/context.py's ContextGatherer as it was at the git revision ``ref`` (its ``lsp``
    package extracted to a temporary directory and imported under another name), to time and
    count it beside the current one in the same process."""
    import importlib
    import subprocess
    import tarfile

    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", ref, "lsp"], check=True, capture_output=True
    ).stdout
    tmp = Path(tempfile.mkdtemp(prefix="lsp-baseline-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp, filter="data")
    name = "lsp_at_" + re.sub(r"\W", "_", ref)
    (tmp / "lsp").rename(tmp / name)
    sys.path.insert(0, str(tmp))
    return importlib.import_module(f"{name}.context").ContextGatherer


def gather_timing(sets: dict[str, list[Sample]], baseline_ref: str, keystrokes: int = 5) -> dict:
    """The import-definitions source's ``gather()`` per sample, the current gatherer against
    the one at ``baseline_ref``, alternating per sample: the first call on a fresh gatherer
    (``cold``: it stats and reads the imported files) and ``keystrokes`` calls after it
    (``warm``: the index kept, as on each keystroke), CPU time (time.process_time) and wall
    time; and, per set and kind, in how many samples the items contain the name."""
    gatherers = {"baseline": gatherer_at(baseline_ref), "current": ContextGatherer}
    only = {"openFiles": {"enabled": False}, "recentEdits": {"enabled": False}}
    settings = merge(Options(), {"projectContext": only})[0].project_context
    cpu = {impl: {"cold": [], "warm": []} for impl in gatherers}
    wall = {impl: {"cold": [], "warm": []} for impl in gatherers}
    carried = {impl: {} for impl in gatherers}

    async def one(cls, root: Path, sample: Sample, impl: str) -> bool:
        if cls is ContextGatherer:  # cold means cold: nothing left from earlier samples
            for cached in ("top_level_names", "definition", "module_outline", "module_imports"):
                getattr(context_module, cached).cache_clear()
        gatherer = cls()
        gatherer.set_folders([root])
        uri = (root / sample.path).as_uri()
        for n in range(keystrokes + 1):
            started, started_wall = time.process_time(), time.perf_counter()
            items = await gatherer.gather(uri, sample.document, sample.offset, "python", settings)
            phase = "cold" if n == 0 else "warm"
            cpu[impl][phase].append((time.process_time() - started) * 1000)
            wall[impl][phase].append((time.perf_counter() - started_wall) * 1000)
        return any(name_in(i["text"], sample.name) for i in items)

    with tempfile.TemporaryDirectory() as tmp:
        contexts = Contexts(Path(tmp))
        for set_name, samples in sets.items():
            for i, sample in enumerate(samples):
                root = contexts.root(sample.package)
                order = list(gatherers) if i % 2 == 0 else list(gatherers)[::-1]
                for impl in order:
                    has = asyncio.run(one(gatherers[impl], root, sample, impl))
                    counts = carried[impl].setdefault(set_name, {})
                    got, total = counts.get(sample.kind, (0, 0))
                    counts[sample.kind] = (got + has, total + 1)

    def quantiles(values):
        cuts = statistics.quantiles(values, n=20)
        return {"p50": round(statistics.median(values), 3), "p95": round(cuts[-1], 3)}

    return {
        "baseline_ref": baseline_ref,
        "keystrokes_per_sample": keystrokes,
        "cpu_ms": {i: {p: quantiles(v) for p, v in d.items()} for i, d in cpu.items()},
        "wall_ms": {i: {p: quantiles(v) for p, v in d.items()} for i, d in wall.items()},
        "context_has_name": {
            impl: {
                set_name: {
                    **{kind: f"{got}/{total}" for kind, (got, total) in counts.items()},
                    "all": f"{sum(g for g, _ in counts.values())}/"
                    f"{sum(t for _, t in counts.values())}",
                }
                for set_name, counts in by_set.items()
            }
            for impl, by_set in carried.items()
        },
        "peak_rss_mb": _peak_rss_mb(),
    }


async def _keystrokes(
    api_url: str, samples: list[Sample], context_on: bool, keys: int, workdir: Path
) -> list[float]:
    from lsprotocol import types
    from pytest_lsp.client import make_test_lsp_client

    contexts = Contexts(workdir)
    client = make_test_lsp_client()
    await client.start_io(sys.executable, "-m", "lsp", "--log-level", "WARNING")
    root = contexts.root(samples[0].package)
    settings = {
        "apiUrl": api_url,
        "debounceMs": 0,
        "temperature": 0,
        "maxTokens": 48,
        "multiline": "never",
        "requestTimeoutMs": 30000,
        "slowThresholdMs": 30000,
        "cacheSize": 0,
        "projectContext": {"enabled": context_on},
    }
    caps = types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(dynamic_registration=False),
            inline_completion=types.InlineCompletionClientCapabilities(dynamic_registration=False),
        )
    )
    await client.initialize_session(
        types.InitializeParams(
            capabilities=caps, initialization_options=settings, root_uri=root.as_uri()
        )
    )
    _, files = package_files(samples[0].package)
    times: list[float] = []
    for n, sample in enumerate(s for s in samples if s.package == samples[0].package):
        if len(times) >= keys:
            break
        uri = (root / sample.path).as_uri()
        if n == 0:  # other files open, as in the open-files condition
            for rel in sorted(files)[:OPEN_OTHERS]:
                client.text_document_did_open(
                    types.DidOpenTextDocumentParams(
                        text_document=types.TextDocumentItem(
                            uri=(root / rel).as_uri(),
                            language_id="python",
                            version=1,
                            text=files[rel],
                        )
                    )
                )
        text = sample.document
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=text
                )
            )
        )
        before = sample.document[: sample.offset]
        line = before.count("\n")
        column = len(before) - (before.rfind("\n") + 1)
        for version, char in enumerate(sample.answer[:12], start=2):
            pos = types.Position(line=line, character=column)
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    content_changes=[
                        types.TextDocumentContentChangePartial(
                            range=types.Range(start=pos, end=pos), text=char
                        )
                    ],
                )
            )
            column += 1
            started = time.perf_counter()
            await client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(line=line, character=column),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Automatic
                    ),
                )
            )
            times.append((time.perf_counter() - started) * 1000)
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
    await client.shutdown_session()
    await client.stop()
    return times


def keystroke_timing(model: str, samples: list[Sample], keys: int, rounds: int = 2) -> dict:
    """p50 per-keystroke time through deepshiva-lsp with context on and off, alternating rounds."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from live_server import start_live_server

    server = start_live_server(model, timeout=300)
    times = {"on": [], "off": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(rounds):
                for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                    workdir = Path(tmp) / f"{mode}-{r}"
                    workdir.mkdir()
                    times[mode] += asyncio.run(
                        _keystrokes(server.url, samples, mode == "on", keys // rounds, workdir)
                    )
    finally:
        server.stop()
    p50 = {mode: round(statistics.median(t), 1) for mode, t in times.items()}
    return {
        "keystrokes_each": len(times["on"]),
        "p50_ms": p50,
        "ratio_on_off": round(p50["on"] / p50["off"], 3),
        "p90_ms": {m: round(statistics.quantiles(t, n=10)[-1], 1) for m, t in times.items()},
    }


# name -> (layers, hidden, heads, kv_heads, mlp width, positions, file characters); None: the
# shipped model itself; a string: a users'-size checkpoint of benchmarks/shapes.py (random
# weights of the published config, its own tokenizer, 32,768 positions). Random-weight models
# are stored in bf16, as the shipped one is, so the engine decodes them through the same C
# kernels (bf16 compact weights, the KV cache select.kv_cache_format picks).
LONG_CONTEXT_SHAPES = {
    "shipped": None,  # real weights, 1,024 positions: the budget cuts the context
    "shipped-long-file": None,  # the same with a file that fills the prompt by itself
    "shipped-4k": (4, 256, 4, 4, 704, 4096, 2400),
    "gpt2-small": (12, 768, 12, 12, 2048, 4096, 2400),
    "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b",
    "qwen2.5-coder-1.5b": "qwen2.5-coder-1.5b",
    "stablelm-3b": "stablelm-3b",  # stable-code-3b: 32 K/V heads, the most K/V per weight byte
    "deepseek-coder-1.3b": "deepseek-coder-1.3b",  # 16 K/V heads (no grouped-query attention)
}
STEP_SHAPES = ("llama-1b",)  # decode-step cost only (benchmarks/shapes.py; no 2,400-token prefill)


def _random_bf16_model(out: Path, layers, hidden, heads, kv_heads, mlp, positions) -> Path:
    """A random Llama of this shape with the shipped tokenizer, stored in bf16. Its stop and FIM
    tokens' embedding rows are zero (tied: their logit is 0, below the best of 4,091 random
    ones), so every completion runs to its length."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shipped = Path(__file__).resolve().parent.parent / "models" / "tiny-python"
    config = LlamaConfig(
        vocab_size=4096,
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=positions,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight[:5] = 0
    model.to(torch.bfloat16).save_pretrained(out)
    for name in ("tokenizer.json", "generation_config.json"):
        shutil.copy(shipped / name, out / name)
    tokenizer_config = json.loads((shipped / "tokenizer_config.json").read_text())
    tokenizer_config["model_max_length"] = positions
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return out


def kv_bytes_per_position(config, element_size: int) -> int:
    """Bytes of keys and values one cached position takes across all layers of ``config``."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return config.num_hidden_layers * 2 * kv_heads * head_dim * element_size


def _context_items(tokenizer, tokens: int) -> list[dict]:
    """About ``tokens`` tokens of pluggy's files, as items of at most 6,000 characters."""
    _, files = package_files("pluggy")
    texts = list(files.values())
    items, size, i = [], 0, 0
    while size < tokens:
        ids = tokenizer.encode(texts[i % len(texts)][:6000])[: tokens - size]
        items.append({"path": f"pluggy/file{i}.py", "text": tokenizer.decode(ids)})
        size += len(ids)
        i += 1
    return items


def long_context_timing(shape: str = "shipped", keys: int = 30, context_tokens: int = 2000) -> dict:
    """A keystroke (one character typed at the end of the prefix, the cache warm, 16 tokens
    generated, greedy) with ~2,000 tokens of context against one with none, alternating rounds.

    CPU time of the keystroke is the measure (the engine runs a model this size on one thread,
    so it is the work done; wall time on a shared machine is mostly waiting) and wall time is
    reported beside it. ``shipped``: the shipped model, whose 1,024 positions leave the context
    at most half the prompt budget; ``shipped-long-file``: the same with a file long enough to
    fill the prompt alone, so context replaces file text instead of adding to it; the others:
    random weights of that shape with 4,096 positions, where all 2,000 tokens fit (prompt
    lookup off: random weights repeat themselves, which makes its guesses unlike a real
    model's). Every keystroke's computed prompt tokens are recorded: the cached context is
    reused when that stays a few tokens; K/V bytes beside weight bytes say what attention reads
    beside the matrices on each generated token."""
    from core import OptimizedLLM  # before torch: core sets libgomp's spin count

    import torch

    _, files = package_files("pluggy")
    body_source = list(files.values())[1]
    with tempfile.TemporaryDirectory() as tmp:
        if LONG_CONTEXT_SHAPES[shape] is None:
            path = Path(__file__).resolve().parent.parent / "models" / "tiny-python"
            chars = 12000 if shape == "shipped-long-file" else 2400
        elif isinstance(LONG_CONTEXT_SHAPES[shape], str):
            from .shapes import model_dir

            path, chars = model_dir(LONG_CONTEXT_SHAPES[shape]), 2400
        else:
            *dims, chars = LONG_CONTEXT_SHAPES[shape]
            path = _random_bf16_model(Path(tmp) / "m", *dims)
        llm = OptimizedLLM(str(path))
        if LONG_CONTEXT_SHAPES[shape] is not None:
            llm.loop_guard = llm.prompt_lookup = False
        context = _context_items(llm.tokenizer, context_tokens)
        body = body_source[:chars]
        cpu = {"none": [], "context": []}
        wall = {"none": [], "context": []}
        computed = {"none": [], "context": []}
        laid_out = {}
        texts = {"none": [], "context": []}  # each keystroke's completion (compare KV formats)
        for mode in ("none", "context") * 2:
            items = context if mode == "context" else None
            prompt = body
            llm.complete(prompt, suffix="\n", context=items, max_length=16, temperature=0)  # warm
            for _ in range(keys // 2):
                prompt += "x"
                started = time.process_time()
                result = llm.complete(
                    prompt,
                    suffix="\n",
                    context=items,
                    max_length=16,
                    temperature=0,
                    stop_sequences=None,
                )
                cpu[mode].append((time.process_time() - started) * 1000)
                wall[mode].append(result.total_ms)
                computed[mode].append(result.computed_prompt_tokens)
                texts[mode].append(result.text)
                laid_out[mode] = result.prompt_tokens
        p50 = {m: round(statistics.median(t), 2) for m, t in cpu.items()}
        p50_wall = {m: round(statistics.median(t), 2) for m, t in wall.items()}
        config = llm.model.config
        kv_dtype = getattr(llm.runner.backend, "kv_dtype", torch.float32)
        per_position = kv_bytes_per_position(
            config, torch.tensor([], dtype=kv_dtype).element_size()
        )
        return {
            "shape": shape,
            "model": f"{'shipped weights' if LONG_CONTEXT_SHAPES[shape] is None else 'random weights'}, "
            f"{config.num_hidden_layers} layers x {config.hidden_size}, "
            f"{config.max_position_embeddings} positions",
            "decode": f"{llm.info()['decode_path']} ({llm.info()['decode_weights']} weights)",
            "kv_cache": str(getattr(llm.runner.backend, "kv_dtype", "?")).replace("torch.", ""),
            "kv_bytes_per_position": per_position,
            "kv_mb": {m: round(per_position * n / 1e6, 1) for m, n in laid_out.items()},
            "weights_mb": round(sum(f.stat().st_size for f in path.glob("*.safetensors")) / 1e6, 1),
            "context_tokens_sent": sum(len(llm.tokenizer.encode(i["text"])) for i in context),
            "prompt_tokens": laid_out,
            "keystrokes_each": len(cpu["none"]),
            "max_prompt_tokens_computed_per_keystroke": {m: max(c) for m, c in computed.items()},
            "p50_cpu_ms": p50,
            "ratio_cpu": round(p50["context"] / p50["none"], 3),
            "p50_wall_ms": p50_wall,
            "ratio_wall": round(p50_wall["context"] / p50_wall["none"], 3),
            "peak_rss_mb": _peak_rss_mb(),
            "completions": texts,
        }


def decode_step_timing(
    shape: str = "llama-1b", lengths=(400, 2400), rounds: int = 4, checks: bool = True
) -> dict:
    """CPU time of one decode step and (``checks``) of a 7-row prompt-lookup check with
    ``lengths`` positions cached, on a random-weight model of benchmarks/shapes.py's ``shape``
    (bf16). No prompt is run: the cache is reserved, filled and its length set, since a step's
    cost does not depend on the cached values (a 2,400-token prefill of the 1B shape takes many
    minutes on 2 cores), only on their pages being real. Without ``checks`` only steps follow
    each other, as in a completion without prompt lookup. Core is imported before torch: with
    torch first (benchmarks.shapes imports it) OpenMP kept its long default spin and a step cost
    up to ten times as much on this loaded 2-core machine."""
    from core import OptimizedLLM  # before torch (benchmarks.shapes imports it): OpenMP's spins

    from .shapes import model_dir

    llm = OptimizedLLM(str(model_dir(shape)))
    backend = llm.runner.backend
    backend._reserve(max(lengths) + 8)
    # Every page of the cache written, as a prompt would: the engine reserves it with
    # torch.empty, and reading pages never written reads the kernel's one zero page, which
    # stays in the CPU's cache (deepseek-coder-1.3b at 771 / 2,798 positions: 1.04x unwritten,
    # 1.23x written, as its keystrokes with a real prefill).
    backend.k_cache.fill_(0.01)
    backend.v_cache.fill_(0.01)
    step = {n: [] for n in lengths}
    check = {n: [] for n in lengths}
    for r in range(rounds + 1):  # the first round warms up
        for n in lengths:
            backend.length = n
            started = time.process_time()
            backend.forward([7])
            one = (time.process_time() - started) * 1000
            if r:
                step[n].append(one)
            if checks:
                backend.length = n
                started = time.process_time()
                backend.forward(list(range(10, 17)), all_logits=True)
                if r:
                    check[n].append((time.process_time() - started) * 1000)
    step_ms = {n: round(statistics.median(t), 1) for n, t in step.items()}
    low, high = lengths[0], lengths[-1]
    report = {
        "shape": shape,
        "decode": f"{llm.info()['decode_path']} ({llm.info()['decode_weights']} weights)",
        "threads": llm.cpu_threads,
        "step_cpu_ms": step_ms,
        "step_ratio": round(step_ms[high] / step_ms[low], 3),
    }
    if checks:
        check_ms = {n: round(statistics.median(t), 1) for n, t in check.items()}
        report["seven_row_check_cpu_ms"] = check_ms
        report["check_ratio"] = round(check_ms[high] / check_ms[low], 3)
    return report | {"peak_rss_mb": _peak_rss_mb()}


def _version(package: str) -> str:
    """The installed version of the distribution that provides ``package``."""
    return importlib.metadata.version(
        {"markdown_it": "markdown-it-py"}.get(package, package.replace("_", "-"))
    )


def _peak_rss_mb() -> int:
    """This process's peak resident memory so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main(argv=None) -> int:
    """Cross-file evaluation and timing (see the module's docstring)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument(
        "--model", action="append", default=None, help="model dir (repeatable); default: shipped"
    )
    ap.add_argument("--per-package", type=int, default=PER_PACKAGE)
    ap.add_argument(
        "--set",
        choices=("imports", "needs-context", "both"),
        default="both",
        help="which evaluation set: lines using an imported name, lines needing context, or both",
    )
    ap.add_argument(
        "--keystrokes", type=int, default=0, help="keystrokes per mode through the LSP (0: skip)"
    )
    ap.add_argument(
        "--long-context",
        nargs="*",
        choices=sorted(LONG_CONTEXT_SHAPES) + list(STEP_SHAPES),
        default=None,
        help="time a keystroke with 2,000 tokens of context on these model shapes (none given: shipped)",
    )
    ap.add_argument(
        "--long-context-keys",
        type=int,
        default=30,
        help="keystrokes per side (none / context) of --long-context, in two rounds",
    )
    ap.add_argument(
        "--gather-baseline",
        default=None,
        metavar="REF",
        help="time the import source's gather() per sample against lsp/ at this git revision",
    )
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/cross-file.json"))
    args = ap.parse_args(argv)
    models = args.model or ["models/tiny-python"]
    sets = {}
    if args.set in ("imports", "both"):
        sets["imports"] = build_samples(per_package=args.per_package)
    if args.set in ("needs-context", "both"):
        sets["needs_context"] = build_needs_context_samples(per_package=args.per_package)
    packages = sorted({s.package for samples in sets.values() for s in samples})
    report = {
        "command": "python -m benchmarks.cross_file " + " ".join(argv or sys.argv[1:]),
        "packages": {p: _version(p) for p in packages},
        "sets": {
            name: {
                "samples": len(samples),
                "per_package": dict(Counter(s.package for s in samples)),
                "kinds": dict(Counter(s.kind for s in samples)),
            }
            for name, samples in sets.items()
        },
        "results": [],
    }
    for name, info in report["sets"].items():
        print(f"{name}: {info['samples']} samples, {info['per_package']}, {info['kinds']}")
    if not args.skip_eval:
        for model in models:
            result = evaluate(model, sets)
            for name, scored in result["sets"].items():
                print(model, name, json.dumps(scored["summary"], indent=1), flush=True)
            report["results"].append(result)
    if args.gather_baseline:
        report["gather"] = gather_timing(sets, args.gather_baseline)
        print("gather", json.dumps(report["gather"], indent=1), flush=True)
    if args.keystrokes:
        typed = sets.get("imports") or build_samples(per_package=args.per_package)
        report["keystrokes"] = keystroke_timing(models[0], typed, args.keystrokes)
        print("keystrokes", report["keystrokes"], flush=True)
    if args.long_context is not None:
        report["long_context"] = [
            decode_step_timing(shape)
            if shape in STEP_SHAPES
            else long_context_timing(shape, keys=args.long_context_keys)
            for shape in args.long_context or ["shipped"]
        ]
        print("long context", report["long_context"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
