"""``deepshiva-lsp``: run the language server on stdio (default) or on TCP."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 127.0.0.1:2087")
    return host or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deepshiva-lsp",
        description="DeepShiva language server: inline code completions from the DeepShiva API. "
        "Settings come from the editor (initializationOptions / workspace configuration, "
        "section 'deepshiva'); see lsp/README.md.",
    )
    p.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (default)")
    p.add_argument(
        "--tcp", type=_host_port, metavar="HOST:PORT", help="listen for one client on TCP"
    )
    p.add_argument("--log-file", help="write logs to this file (stderr by default)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    p.add_argument("--version", action="version", version=f"deepshiva-lsp {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        filename=args.log_file,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )  # never stdout: stdout carries the protocol
    from .server import server  # after logging is set up

    if args.tcp:
        server.start_tcp(*args.tcp)
    else:
        server.start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())
