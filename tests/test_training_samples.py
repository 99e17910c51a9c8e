"""Training-sample construction (training/fim.py, training/data.py): what the model learns from.

These guard the two data bugs that made the first shipped model weak in an editor: plain text
that ended (EOS) at every chunk, and FIM samples whose middles were almost never short."""

from __future__ import annotations

import random
from collections import Counter

from training import data, fim
from training.tokenizer import EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

SPECIAL = {FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, EOS}

FILE = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(200))


def _unfim(pieces):
    """(whole chunk, middle, suffix, order) of a PSM or SPM sample."""
    assert pieces[0] == FIM_PREFIX and pieces[-1] == EOS
    if pieces[1] == FIM_SUFFIX:  # SPM: <pre><suf>suffix<mid>prefix middle
        assert pieces[3] == FIM_MIDDLE
        suffix, prefix, middle, order = pieces[2], pieces[4], pieces[5], "spm"
    else:
        assert pieces[2] == FIM_SUFFIX and pieces[4] == FIM_MIDDLE
        prefix, suffix, middle, order = pieces[1], pieces[3], pieces[5], "psm"
    return prefix + middle + suffix, middle, suffix, order


def test_plain_text_of_a_file_ends_once_and_reads_in_order():
    samples = fim.make_samples([FILE, "x = 1\n"], random.Random(0), 0.0, 500)
    eos_count = sum(p.count(EOS) for pieces, _ in samples for p in pieces)
    assert eos_count == 2  # one per file, not one per chunk
    text = "".join(p for pieces, _ in samples for p in pieces)
    assert text == FILE + EOS + "x = 1\n" + EOS


def test_fim_samples_rebuild_their_chunk_and_include_short_middles():
    rng = random.Random(1)
    samples = fim.make_samples([FILE] * 10, rng, 1.0, 500)
    chunks = fim.chunk_text(FILE, 500)
    middles = []
    for pieces, is_fim in samples:
        assert is_fim
        whole, middle, _, _ = _unfim(pieces)
        assert whole in chunks
        middles.append(len(middle))
    short = sum(n <= fim.SHORT_MIDDLE_MAX for n in middles) / len(middles)
    assert short > 0.5  # half are short by construction, and some uniform ones are short too
    assert max(middles) > fim.SHORT_MIDDLE_MAX  # uniform splits still give long middles


def test_fim_rate_is_about_half_and_each_file_keeps_its_plain_end():
    samples = fim.make_samples([FILE] * 20, random.Random(2), 0.5, 300)
    share = sum(is_fim for _, is_fim in samples) / len(samples)
    assert 0.4 < share < 0.6
    plain_ends = sum(pieces[-1] == EOS for pieces, is_fim in samples if not is_fim)
    assert plain_ends == 20


def test_extra_packages_are_permissive_and_leave_tests_out():
    rows = data.package_manifest(("flask", "_pytest"))
    assert {r["package"] for r in rows} == {"flask", "_pytest"}
    for row in rows:
        assert any(k in row["license"] for k in ("BSD", "MIT", "Apache")), row
        assert row["files"] > 0 and row["bytes"] > 0
    rels = [f.rel for f in data.collect_package("flask")]
    assert rels and all(r.startswith("flask/") for r in rels)
    assert not any("/tests/" in r or r.split("/")[-1].startswith("test_") for r in rels)


def test_heldout_files_are_never_training_files():
    train, held = data.split()
    assert held and train
    assert not {f.rel for f in train} & {f.rel for f in held}


def test_line_ended_middles_stop_exactly_at_a_line_end():
    rng = random.Random(3)
    chunk = fim.chunk_text(FILE, 500)[0]
    for _ in range(200):
        prefix, middle, suffix = fim.line_fim_split(chunk, rng)
        assert prefix + middle + suffix == chunk
        assert middle.strip() and "\n" not in middle[-1:]
        assert suffix == "" or suffix.startswith("\n")  # the fill stops where the line ends


def test_training_mix_ends_a_share_of_middles_at_line_ends_and_validation_does_not():
    def line_ended_share(line_share):
        samples = fim.make_samples([FILE] * 40, random.Random(4), 1.0, 500, line_share)
        ends = 0
        for pieces, _ in samples:
            _, middle, suffix, _ = _unfim(pieces)
            ends += suffix.startswith("\n") and not middle.endswith("\n")
        return ends / len(samples)

    assert line_ended_share(0.4) > 0.35
    assert line_ended_share(0.0) < 0.15  # random ends land just before a newline rarely


def test_half_the_training_fim_samples_are_spm_and_validation_is_psm_only():
    def orders(spm_share):
        samples = fim.make_samples([FILE] * 40, random.Random(5), 1.0, 500, spm_share=spm_share)
        return [_unfim(pieces)[3] for pieces, _ in samples]

    train = orders(fim.SPM_SHARE)
    assert 0.4 < train.count("spm") / len(train) < 0.6
    assert set(orders(0.0)) == {"psm"}


def test_repository_samples_put_imported_definitions_before_the_file_in_the_engines_layout():
    """A file that imports names from its package is trained after their definitions, laid out
    as the engine lays out a request's context for the shipped model (<file_sep> + path)."""
    from training import repo_samples
    from training.tokenizer import FILE_SEP

    models = data.SourceFile(
        "shop/models.py",
        "import os\n\n\nclass Basket:\n    def __init__(self):\n"
        "        self.items = []\n\n    def add(self, item):\n        self.items.append(item)\n"
        "        return len(self.items)\n\n\nLIMIT = 10\n",
    )
    views = data.SourceFile(
        "shop/views.py",
        "from .models import Basket, LIMIT\n\n\ndef buy(item):\n"
        "    basket = Basket()\n    return basket.add(item)\n",
    )
    loose = data.SourceFile("single.py", "x = 1\n")
    samples = repo_samples.make_repo_samples([models, views, loose], random.Random(3), 20.0, 0.5)
    assert len(samples) == 40  # 20 per file of the two-file package; a lone module gives none

    def current_file(pieces):
        last_sep = len(pieces) - 1 - pieces[::-1].index(FILE_SEP)
        return last_sep, "".join(p for p in pieces[last_sep + 1 :] if not p.startswith("<"))

    from_views = [pieces for pieces, _ in samples if "def buy" in current_file(pieces)[1]]
    assert (
        from_views
        and any(not is_fim for _, is_fim in samples)
        and any(is_fim for _, is_fim in samples)
    )
    for pieces in from_views:
        last_sep, current = current_file(pieces)
        items = pieces[:last_sep]
        assert items[0::2] == [FILE_SEP] * (len(items) // 2)
        paths = [text.split("\n", 1)[0] for text in items[1::2]]
        assert "shop/models.py" in paths and "shop/views.py" not in paths
        context = "".join(items)
        # The class as an outline (method bodies left out, the attribute it sets kept), and the constant.
        assert (
            "class Basket:\n    def __init__(self):\n        self.items = []\n    def add(self, item):\n"
            in context
        )
        assert "append" not in context and "LIMIT = 10\n" in context
        assert sorted(current) == sorted(views.text)  # the whole file (one chunk), FIM or plain


def test_cross_file_line_samples_complete_a_line_from_an_imported_name_after_its_definition():
    """A share of repository samples asks for what the cross-file benchmark asks for: the rest of
    a line from a name the file imports from its package, with that name's definition in the
    context before the file (so copying it across files is what lowers the loss)."""
    from training import repo_samples
    from training.tokenizer import FILE_SEP

    helpers = data.SourceFile(
        "pkg/helpers.py",
        "def normalize_header(name):\n    return name.lower()\n\n\n"
        + "".join(f"def helper_{i}(x):\n    return x\n\n\n" for i in range(30)),
    )
    client = data.SourceFile(
        "pkg/client.py",
        "from .helpers import normalize_header, helper_1, helper_2, helper_3\n\n\n"
        "def send(headers):\n    # build the request\n"
        "    fixed = normalize_header(headers)\n    return fixed\n",
    )
    package = {f.rel: f for f in (helpers, client)}
    assert repo_samples.package_names(client, package) == {
        "normalize_header",
        "helper_1",
        "helper_2",
        "helper_3",
    }
    prefix, middle, suffix, name = repo_samples.cross_line_split(
        client.text, {"normalize_header"}, random.Random(0)
    )
    assert (middle, name) == ("normalize_header(headers)", "normalize_header")
    assert prefix.endswith("    fixed = ") and suffix == "\n    return fixed\n"
    # Names in imports, definitions and comments are not uses.
    assert (
        repo_samples.cross_line_split("from .h import a_name\n# a_name\n", {"a_name"}, None) is None
    )

    samples = repo_samples.make_repo_samples([helpers, client], random.Random(1), 60.0, 0.5)
    cross = [pieces for pieces, is_fim in samples if is_fim and pieces[-2] == middle]
    assert len(cross) >= 10  # about CROSS_LINE_SHARE of the 60 samples of client.py
    for pieces in cross:
        last_sep = len(pieces) - 1 - pieces[::-1].index(FILE_SEP)
        context = "".join(pieces[:last_sep])
        assert "pkg/helpers.py\ndef normalize_header(name):\n" in context


def test_a_repository_sample_starts_its_window_whole_and_the_stream_fills_the_rest():
    from training.train import pack_aligned

    stream = [list(range(100, 130)), list(range(200, 230))]  # 60 plain tokens
    repo = [[1, 2, 3], list(range(300, 312))]  # a short sample and one longer than the window
    windows = pack_aligned(repo, stream, seq_len=8, sep=0).tolist()
    assert windows[0] == [1, 2, 3, 0, 100, 101, 102, 103]  # whole, then a separator and plain
    assert windows[1] == list(range(304, 312))  # too long: its front (the context's start) goes
    rest = [t for w in windows[2:] for t in w]
    assert rest == [*range(104, 130), *range(200, 230)][: len(rest)]  # plain text continues
    assert len(rest) == 56 // 8 * 8


def test_long_windows_give_repository_samples_a_whole_file_beside_the_context():
    from training import repo_samples
    from training.train import repo_sizes

    assert repo_sizes(1024) == (repo_samples.CONTEXT_CHARS, repo_samples.TARGET_CHARS)
    context, target = repo_sizes(2048)
    assert context >= 1800 and target >= 4000  # the language server's default context + file


def test_needs_context_samples_ask_for_a_name_only_the_last_context_item_shows():
    """A share of repository samples completes a line from a name X defined in another file of
    the package that the chunk shows nowhere else (the benchmark's needs-context lines), after
    context items ending with the outline X belongs to: only copying from the context helps."""
    from training import repo_samples
    from training.tokenizer import FILE_SEP

    units = data.SourceFile(
        "pkg/units.py",
        "METRES_PER_FOOT = 0.3048\n\n\ndef to_metres(value):\n    return value\n",
    )
    shapes = data.SourceFile(
        "pkg/shapes.py",
        "class Polygon:\n    sides = 3\n\n    def perimeter_length(self):\n        return 0\n",
    )
    draw = data.SourceFile(
        "pkg/draw.py",
        "from . import units\nfrom .shapes import Polygon\n\n\n"
        "def scale(feet):\n    return feet * units.METRES_PER_FOOT\n\n\n"
        "def measure():\n    return Polygon.perimeter_length(Polygon())\n",
    )
    files = [units, shapes, draw]
    texts = {f.rel: f.text for f in files}
    lines = repo_samples.needs_context_lines(texts, "pkg/draw.py")
    assert {(name, kind) for _, _, name, kind, _ in lines} == {
        ("METRES_PER_FOOT", "module"),
        ("perimeter_length", "class"),
    }

    kinds = Counter()
    samples = repo_samples.make_repo_samples(
        files, random.Random(3), 40.0, 0.5, sizes=(1800, 4000), kinds=kinds
    )
    assert kinds["needs_context"] >= 5  # about NEEDS_CONTEXT_SHARE of draw.py's 40 samples
    answers = {
        "METRES_PER_FOOT": "METRES_PER_FOOT",
        "perimeter_length(Polygon())": "perimeter_length",
    }
    found = set()
    for pieces, is_fim in samples:
        name = answers.get(pieces[-2])
        if not is_fim or name is None:
            continue
        found.add(name)
        last_sep = len(pieces) - 1 - pieces[::-1].index(FILE_SEP)
        file_part = "".join(p for p in pieces[last_sep + 1 : -2] if p not in SPECIAL)
        assert name not in file_part  # the file alone does not show X
        last_item = pieces[last_sep - 1]
        assert last_item.startswith(("pkg/units.py\n", "pkg/shapes.py\n"))
        assert name in last_item  # the last context item does
    assert found == set(answers.values())
