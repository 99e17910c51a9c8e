"""DeepShiva's HTTP API (the Flask app of API_REFERENCE.md plus additions), served by waitress."""

from .app import create_app
from .config import ServerConfig

__all__ = ["create_app", "ServerConfig"]
