"""What load_in_8bit buys on this machine: weight memory, peak RSS and request time against 16-bit.

    .venv/bin/python -m benchmarks.load_in_8bit [--hidden 512 --layers 8 --rounds 5]

A random-weight Llama (built under a temporary directory, its tokenizer the tests' tiny one) is
loaded once as the engine loads it (``torch_dtype="bfloat16"``) and once with
``load_in_8bit=True`` (bitsandbytes), each in a fresh process so peak RSS is its own. Per variant:
the weights' bytes (``get_memory_footprint``), the process's RSS once loaded and after the requests
(what a running server holds) and its peak RSS (loading 8-bit passes through the 16-bit weights),
the backend serving it and the median time of a 16-token greedy request. Prints JSON with the
8-bit/16-bit ratios. Timings are only comparable within one run on a quiet machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "import os\n\n\ndef read_lines(path):\n    with open(path) as handle:\n"


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(model_dir: str, eight_bit: bool, rounds: int) -> dict:
    from core import OptimizedLLM

    llm = OptimizedLLM(model_dir, load_in_8bit=eight_bit, torch_dtype="bfloat16")
    gc.collect()
    loaded_rss = rss_mib()
    llm.complete(PROMPT, max_length=16, temperature=0, stop_sequences=[])  # warm-up
    times = []
    for i in range(rounds):
        started = time.perf_counter()
        llm.complete(PROMPT + f"# {i}\n", max_length=16, temperature=0, stop_sequences=[])
        times.append((time.perf_counter() - started) * 1000)
    return {
        "load_in_8bit": eight_bit,
        "backend": llm.info()["backend"],
        "weights_mib": round(llm.model.get_memory_footprint() / 2**20, 1),
        "rss_loaded_mib": round(loaded_rss, 1),
        "rss_after_requests_mib": round(rss_mib(), 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "request_16_tokens_ms": round(statistics.median(times), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(measure(args._child[0], args._child[1] == "1", args.rounds)))
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model = str(
            build_tiny_model(tmp, hidden_size=args.hidden, layers=args.layers, vocab_size=1000)
        )
        rows = []
        for flag in ("0", "1"):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.load_in_8bit",
                    "--rounds",
                    str(args.rounds),
                    "--_child",
                    model,
                    flag,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base, eight = rows
    print(
        json.dumps(
            {
                "shape": {"hidden": args.hidden, "layers": args.layers},
                "rows": rows,
                "ratio_8bit_to_16bit": {
                    key: round(eight[key] / base[key], 2)
                    for key in (
                        "weights_mib",
                        "rss_loaded_mib",
                        "rss_after_requests_mib",
                        "peak_rss_mib",
                        "request_16_tokens_ms",
                    )
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
