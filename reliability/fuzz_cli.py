"""schemathesis's own command line with every check (``--checks all``) against a fresh server.

    python -m reliability.fuzz_cli --max-examples 50 --max-time 480

``reliability.fuzz`` drives schemathesis from Python with the checks the document can promise
and collects every failure; this runs the CLI as an outside tester would, with all its checks
(negative data rejected, positive data accepted, ignored auth, unsupported methods, Allow
headers, missing required headers, ...), and keeps its summary in ``results/fuzz_cli.txt``.
The server is the same as the fuzz's: allow-list of its own model only, offline, small limits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from .common import RESULTS, model_or_tiny, start_server
from .fuzz import API_KEY, MAX_LENGTH_LIMIT


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m reliability.fuzz_cli", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--max-examples", type=int, default=50)
    p.add_argument("--max-time", type=int, default=600, help="seconds for the whole run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model")
    p.add_argument("--out", help="summary file (default reliability/results/fuzz_cli.txt)")
    args = p.parse_args(argv)
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    model = model_or_tiny(args.model)
    server = start_server(
        model,
        api_key=API_KEY,
        args=[
            "--allowed-models",
            model,
            "--queue-size",
            "4",
            "--max-length-limit",
            str(MAX_LENGTH_LIMIT),
        ],
    )
    command = [
        cli,
        "run",
        server.url + "/openapi.json",
        "--checks",
        "all",
        "-H",
        f"Authorization: Bearer {API_KEY}",
        "--max-examples",
        str(args.max_examples),
        "--max-time",
        str(args.max_time),
        "--seed",
        str(args.seed),
        "--request-timeout",
        "30",
        "--workers",
        "1",
    ]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=args.max_time + 300,
            env={**os.environ, "NO_COLOR": "1"},
        )
    finally:
        exit_code = server.stop()
    shown = " ".join(
        "Authorization: Bearer ***" if part.startswith("Authorization") else part
        for part in command
    )
    summary = (
        f"$ python -m reliability.fuzz_cli {' '.join(argv if argv is not None else sys.argv[1:])}\n"
        f"$ {shown}\nexit {done.returncode} after {time.monotonic() - started:.0f} s; "
        f"server exit {exit_code}\n\n{done.stdout[-20000:]}\n{done.stderr[-4000:]}"
    )
    out = Path(args.out) if args.out else RESULTS / "fuzz_cli.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(summary)
    print(done.stdout[-3000:])
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
