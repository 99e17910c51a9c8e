"""The code blocks of editors/README.md, so the tests run the set-up exactly as written."""

from __future__ import annotations

import re

from editor_helpers import ROOT

README = ROOT / "editors" / "README.md"
PLACEHOLDER = "/path/to/DeepShiva"
DEFAULT_API = "http://127.0.0.1:5005"


def blocks(section: str, lang: str) -> list[str]:
    """Code blocks of language `lang` in the README section whose title contains `section`."""
    text = README.read_text()
    parts = re.split(r"^## ", text, flags=re.M)
    chosen = [p for p in parts if p.splitlines()[0:1] and section in p.splitlines()[0]]
    assert chosen, f"no section {section!r} in {README}"
    return re.findall(rf"^```{lang}\n(.*?)^```", chosen[0], flags=re.M | re.S)


def localise(block: str, api_url: str) -> str:
    """The block with the placeholder path and the default API URL replaced for this test run."""
    return block.replace(PLACEHOLDER, str(ROOT)).replace(DEFAULT_API, api_url)
