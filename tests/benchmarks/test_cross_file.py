"""benchmarks.cross_file's sets, built from a small package written here: the needs-context set
keeps a line only when the name after the cursor is defined in another file of the package and
the prompt without context does not show it; the imports set is unchanged beside it."""

from __future__ import annotations

import pytest

from benchmarks import cross_file
from lsp import python_reach

PACKAGE = "deepshiva_xfile_fixture"

GEOMETRY = '''"""Shapes."""


class Polygon:
    sides = 0

    def __init__(self, points, closed=False):
        self.points = points
        self.closed_path = closed

    def perimeter_length(self):
        return 0.0

    def scaled_copy(self, factor):
        return self
'''

UNITS = """SCALE = 2


def to_metres(value):
    return value / 100
"""

REPORT = """from . import units
from .geometry import Polygon


def describe(points):
    shape = Polygon(points, closed=True)
    total = shape.perimeter_length()
    return units.to_metres(total)


def grow(shape):
    bigger = shape.scaled_copy(2)
    again = shape.scaled_copy(3)
    return bigger, again


def listed(items):
    items.append(Polygon.sides)
    return items
"""


@pytest.fixture
def package(tmp_path, monkeypatch):
    root = tmp_path / PACKAGE
    root.mkdir()
    for name, text in {
        "__init__.py": "",
        "geometry.py": GEOMETRY,
        "units.py": UNITS,
        "report.py": REPORT,
    }.items():
        (root / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return PACKAGE


def _line(sample) -> str:
    return REPORT.splitlines()[sample.line]


def test_needs_context_picks_names_from_other_files_that_the_prompt_does_not_show(package):
    samples = cross_file.build_needs_context_samples([package], per_package=100)
    picked = {_line(s).strip(): s for s in samples}
    assert {s.path for s in samples} == {f"{package}/report.py"}

    # An imported class's method, called on an instance, named nowhere else in the file.
    method = picked["total = shape.perimeter_length()"]
    assert (method.name, method.answer, method.kind) == (
        "perimeter_length",
        "perimeter_length()",
        "attribute",
    )
    assert method.defined_in == f"{package}/geometry.py"
    assert method.prefix.endswith("total = shape.") and "perimeter_length" not in method.suffix
    # A function of an imported module of the package, and a keyword of an imported class.
    assert picked["return units.to_metres(total)"].answer == "to_metres(total)"
    assert picked["return units.to_metres(total)"].kind == "module"
    keyword = picked["shape = Polygon(points, closed=True)"]
    assert (keyword.name, keyword.answer, keyword.kind) == ("closed", "closed=True)", "keyword")
    # A class attribute read from the imported class itself.
    assert picked["items.append(Polygon.sides)"].answer == "sides)"

    # scaled_copy is used twice: each use shows the name in the other's prompt (the suffix for
    # the first, the prefix for the second), so neither needs context.
    assert not any("scaled_copy" in line for line in picked)
    for sample in samples:
        assert not cross_file.name_in(sample.prefix + "\n" + sample.suffix, sample.name)


def test_the_imports_set_still_cuts_before_the_imported_name(package):
    samples = cross_file.build_samples([package], per_package=100)
    assert {(s.name, s.answer) for s in samples} == {
        ("Polygon", "Polygon(points, closed=True)"),
        ("Polygon", "Polygon.sides)"),
    }
    # Its names are in the file's own prompt (the import line): what the new set leaves out.
    assert all(cross_file.name_in(s.prefix, s.name) for s in samples)


def test_members_and_parameters_of_a_class_in_another_file():
    assert python_reach.class_members(GEOMETRY, "Polygon") == {
        "sides",
        "points",
        "closed_path",
        "perimeter_length",
        "scaled_copy",
    }
    assert python_reach.callable_parameters(GEOMETRY, "Polygon") == ["points", "closed"]
    assert python_reach.callable_parameters(UNITS, "to_metres") == ["value"]
    fields = "@dataclass\nclass Point:\n    x: int\n    y: int = 0\n    label: str\n"
    assert python_reach.callable_parameters(fields, "Point") == ["x", "y", "label"]
