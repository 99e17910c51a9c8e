"""Training corpus: the CPython standard library sources of the running interpreter.

Why the stdlib: it is on every machine, it is permissively licensed (PSF License), and no
data can be downloaded here. Its own test suite is about two thirds of its bytes and is very
repetitive (``self.assertEqual`` walls), so test files are left out of the training mix;
idlelib, lib2to3 (deprecated, fixture-heavy), site-packages and generated tables are left out too.

The held-out files for validation and evaluation are fixed and listed in ``heldout.txt``
(paths relative to the stdlib directory), so anyone can reproduce the split.

The stdlib without its tests is only about 2.4M tokens, so training also reads the sources of
a fixed list of permissively licensed packages that the project's own install puts in the
virtual environment (``EXTRA_PACKAGES``; their tests and vendored code left out).
``package_manifest`` records each one's distribution, version and license for the model card.
Evaluation stays on the held-out stdlib files.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import sysconfig
from dataclasses import dataclass
from pathlib import Path

HELDOUT_LIST = Path(__file__).with_name("heldout.txt")

# Directory names (any path component) that are never used.
_EXCLUDED_DIRS = {
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "turtledemo",
    "encodings",
    "pydoc_data",
    "idle_test",
}
# Generated or data-like modules: huge literal tables, not code anyone writes.
_EXCLUDED_FILES = {
    "unicodedata.py",
    "_pydecimal.py",
    "pydoc_topics.py",
    "_sysconfigdata.py",
    "keyword.py",
    "token.py",
    "_aix_support.py",
    "sre_constants.py",
    "stringprep.py",
    "_opcode_metadata.py",
    "_pydatetime.py",
}
MAX_FILE_BYTES = 400_000

# Import names of permissively licensed packages (BSD, MIT, Apache-2.0) that DeepShiva's own
# install (runtime and dev extras) brings into the venv: real-world library code.
EXTRA_PACKAGES = (
    "flask",
    "werkzeug",
    "jinja2",
    "click",
    "markupsafe",
    "httpx",
    "httpcore",
    "anyio",
    "pydantic",
    "pygls",
    "lsprotocol",
    "attr",
    "cattrs",
    "accelerate",
    "huggingface_hub",
    "packaging",
    "numpy",
    "networkx",
    "fsspec",
    "filelock",
    "_pytest",
    "rich",
)
_PACKAGE_EXCLUDED_DIRS = _EXCLUDED_DIRS | {"testing", "_vendor", "vendored", "vendor"}


@dataclass(frozen=True)
class SourceFile:
    """One Python source file: its path relative to the stdlib root and its text."""

    rel: str
    text: str


def stdlib_dir() -> Path:
    """The standard library directory of the running interpreter."""
    return Path(sysconfig.get_paths()["stdlib"])


def _is_test(rel: Path) -> bool:
    name = rel.name
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


def _keep(rel: Path) -> bool:
    if any(part in _EXCLUDED_DIRS for part in rel.parts[:-1]):
        return False
    if _is_test(rel) or rel.name in _EXCLUDED_FILES:
        return False
    return not rel.name.startswith("_sysconfigdata")


def collect(root: Path | None = None) -> list[SourceFile]:
    """All usable .py files under the stdlib, sorted by path (deterministic)."""
    root = root or stdlib_dir()
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if not _keep(rel):
            continue
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        if len(raw) > MAX_FILE_BYTES or not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(SourceFile(rel.as_posix(), text))
    return files


def _package_root(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def collect_package(name: str) -> list[SourceFile]:
    """The usable .py files of one installed package, sorted; rel is ``<name>/<path>``."""
    root = _package_root(name)
    if root is None:
        return []
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in _PACKAGE_EXCLUDED_DIRS for part in rel.parts[:-1]) or _is_test(rel):
            continue
        raw = path.read_bytes()
        if len(raw) > MAX_FILE_BYTES or not raw.strip():
            continue
        try:
            files.append(SourceFile(f"{name}/{rel.as_posix()}", raw.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return files


def package_manifest(names=EXTRA_PACKAGES) -> list[dict]:
    """Distribution, version, license, file count and bytes of each extra package used."""
    dists = importlib.metadata.packages_distributions()
    rows = []
    for name in names:
        files = collect_package(name)
        if not files:
            continue
        dist = dists.get(name, [name])[0]
        meta = importlib.metadata.metadata(dist)
        license_ = meta.get("License-Expression") or ""
        if not license_:
            classifiers = [
                c.split(" :: ")[-1]
                for c in meta.get_all("Classifier") or []
                if c.startswith("License ::")
            ]
            license_ = ", ".join(classifiers) or (meta.get("License") or "").split("\n")[0]
        rows.append(
            {
                "package": name,
                "distribution": dist,
                "version": importlib.metadata.version(dist),
                "license": license_,
                "files": len(files),
                "bytes": sum(len(f.text.encode()) for f in files),
            }
        )
    return rows


def _bucket(rel: str) -> int:
    """A stable 0-99 hash bucket of a path, independent of Python's hash seed."""
    return int(hashlib.sha256(rel.encode()).hexdigest(), 16) % 100


def choose_heldout(files: list[SourceFile], percent: int = 5) -> list[str]:
    """Pick the held-out paths: a deterministic ~percent% of files by path hash."""
    return sorted(f.rel for f in files if _bucket(f.rel) < percent)


def read_heldout_list(path: Path = HELDOUT_LIST) -> list[str]:
    """The committed held-out list (one relative path a line, '#' comments allowed)."""
    lines = path.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def write_heldout_list(rels: list[str], path: Path = HELDOUT_LIST) -> None:
    """Write the held-out list (used once, to create heldout.txt)."""
    header = "# Held-out stdlib files (relative to the stdlib dir): never trained on.\n"
    path.write_text(header + "".join(r + "\n" for r in rels))


def split(files: list[SourceFile] | None = None) -> tuple[list[SourceFile], list[SourceFile]]:
    """(train, heldout) by the committed held-out list; files missing locally are skipped."""
    files = files if files is not None else collect()
    held = set(read_heldout_list())
    train = [f for f in files if f.rel not in held]
    val = [f for f in files if f.rel in held]
    return train, val


if __name__ == "__main__":
    import sys

    all_files = collect()
    if "--write-heldout" in sys.argv:
        write_heldout_list(choose_heldout(all_files))
    tr, va = split(all_files)
    size = lambda fs: sum(len(f.text.encode()) for f in fs)  # noqa: E731
    print(f"stdlib: {stdlib_dir()}")
    print(
        f"train: {len(tr)} files, {size(tr) / 1e6:.2f} MB; heldout: {len(va)} files, "
        f"{size(va) / 1e6:.2f} MB"
    )
    for row in package_manifest():
        print(
            f"{row['package']:<16}{row['distribution']:<18}{row['version']:<11}"
            f"{row['files']:>5} files {row['bytes'] / 1e6:>6.2f} MB  {row['license']}"
        )
