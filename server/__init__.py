"""DeepShiva's HTTP API (the Flask app of docs/API.md), served by waitress.

``create_app`` is imported lazily: it pulls in the engine (torch), which ``deepshiva-server --help``
and a refused configuration should not have to wait for.
"""

from .config import ServerConfig

__all__ = ["create_app", "ServerConfig"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
