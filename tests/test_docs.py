"""The documentation a new user reads first: the README's Python example prints what it shows,
the offline way to bring a model over works as written, and nothing points outside the repo."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent

README = ROOT / "README.md"


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.M)
    chosen = [p for p in parts if p.startswith(title)]
    assert chosen, f"README.md has no section {title!r}"
    return chosen[0]


def indented_block(section: str) -> str:
    """The first 4-space indented code block of a README section, dedented."""
    lines, started = [], False
    for line in section.splitlines():
        if line.startswith("    ") or (started and not line.strip()):
            started = True
            lines.append(line[4:])
        elif started:
            break
    return "\n".join(lines).strip() + "\n"


def test_python_example_prints_each_of_its_results():
    """Every print of the README's example shows text, the fill-in-the-middle line included."""
    code = indented_block(readme_section("Python API"))
    assert "suffix=" in code and code.count("print(") >= 3
    printed: list[str] = []

    def record(*args, **kwargs):
        printed.append(kwargs.get("sep", " ").join(str(a) for a in args))

    exec(compile(code, "README.md", "exec"), {"print": record, "__name__": "readme"})  # noqa: S102
    whole, *chunks, newline, fim = printed
    assert whole.strip(), "the first generate printed nothing"
    assert "".join(chunks).strip(), "the streamed chunks printed nothing"
    assert newline == "" and fim.strip(), "the fill-in-the-middle line printed nothing"


def test_model_copied_into_the_hf_cache_loads_by_name_offline(
    tmp_path, monkeypatch, shipped_model_dir
):
    """The README's second offline route: a copied Hugging Face cache entry serves by its hub id."""
    from core import OptimizedLLM

    section = readme_section("Use a real code model")
    assert "models--Qwen--Qwen2.5-Coder-1.5B" in section and "HF_HOME" in section
    snapshot = tmp_path / "hub" / "models--someone--tiny-python" / "snapshots" / "0123abcd"
    shutil.copytree(shipped_model_dir, snapshot)
    (tmp_path / "hub" / "models--someone--tiny-python" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny-python" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    llm = OptimizedLLM("someone/tiny-python")
    assert llm.generate("def add(a, b):\n", max_length=8, temperature=0).strip()


def test_serve_lines_name_the_recommended_models():
    section = readme_section("Use a real code model")
    served = re.findall(r"`scripts/serve --model ([^`]+)`", section)
    for name in (
        "Qwen/Qwen2.5-Coder-0.5B",
        "Qwen/Qwen2.5-Coder-1.5B",
        "Qwen/Qwen2.5-Coder-3B",
        "deepseek-ai/deepseek-coder-1.3b-base",
        "stabilityai/stable-code-3b",
        "bigcode/starcoder2-3b",
    ):
        assert name in served, name


def test_memory_figures_match_the_script():
    """The README's parameter counts are what docs/model_memory.py computes from the configs."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "model_memory.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    section = readme_section("Use a real code model")
    for row in out.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        name, params, bf16, fp32 = cells[0], cells[1], cells[2], cells[3]
        readme_row = next(line for line in section.splitlines() if f"--model {name}`" in line)
        assert f"| {params} | {bf16} | {fp32} |" in readme_row, (name, readme_row)


FORBIDDEN = re.compile(
    r"/work/shared|\.\./shared|shared/spec|shared/notes|API_REFERENCE|FIELD_NOTES"
)


def test_nothing_in_the_repo_points_outside_it():
    """A clone has no ../shared: no file may send a reader there."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for name in files:
        path = ROOT / name
        if (
            path.suffix not in {".py", ".md", ".lua", ".ts", ".js", ".json", ".toml", ".txt", ""}
            or not path.is_file()
        ):
            continue
        if name == "tests/test_docs.py":
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        offenders += [f"{name}: {m.group(0)}" for m in FORBIDDEN.finditer(text)]
    assert not offenders, offenders
