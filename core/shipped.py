"""The models DeepShiva ships, by name (torch-free, so the server's configuration can name them)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "deepshiva/tiny-python"
SHIPPED_MODELS = {DEFAULT_MODEL: ROOT / "models" / "tiny-python"}
