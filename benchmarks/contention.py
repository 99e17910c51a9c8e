"""Decode speed on a quiet CPU and beside busy processes, for settings of the kernels' threads.

A developer's machine is often busy (builds, browsers, other language servers). This measures the
one-token decode step (fp32 masters + compact weights through the C kernels, ``ModelRunner``,
threads as the engine picks them) quiet and beside ``--busy`` processes that spin for a bounded
time and are always killed, in interleaved rounds: round r runs every setting quiet then busy, each
in a fresh process (so an OpenMP environment variable takes effect). Reports the median ms per
token and the busy/quiet ratio per setting. Settings:

- ``default``: what the package does by default (short OpenMP spins, ``core/openmp_waits.py``);
- ``spin``: libgomp's own default spin (``GOMP_SPINCOUNT=300000``, what the package did before);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once);
- ``one-thread``: ``DEEPSHIVA_CPU_THREADS=1``.

    .venv/bin/python -m benchmarks.contention [--models shipped,llama-30m] [--rounds 5] [--tokens 48]
        [--busy 2] [--weights bf16] [--settings default,spin,passive,one-thread]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {
    "default": {},
    "spin": {"GOMP_SPINCOUNT": "300000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one-thread": {"DEEPSHIVA_CPU_THREADS": "1"},
}
BUSY_SECONDS = 300  # a busy process never outlives this, even if the parent dies


def _model(name: str):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if name == "shipped":
        return AutoModelForCausalLM.from_pretrained(
            "models/tiny-python", dtype=torch.float32
        ).eval()
    if name == "llama-30m":  # 30M parameters: 2 x 8.4M embeddings + 4 layers of 3.4M
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=16384,
            hidden_size=512,
            intermediate_size=1536,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=8,
            max_position_embeddings=1024,
            tie_word_embeddings=False,
        )
        return LlamaForCausalLM(config).eval()
    raise SystemExit(f"unknown model {name!r}: shipped or llama-30m")


def measure(model_name: str, weights: str, tokens: int, prompt_tokens: int = 200) -> dict:
    """ms per decode step of ``tokens`` greedy steps after a prompt, in this process."""
    from core.devices import choose_cpu_threads, use_cpu_threads, weight_bytes
    from core.generation import ModelRunner

    model = _model(model_name)
    threads = choose_cpu_threads(weight_bytes(model))
    use_cpu_threads(threads)
    runner = ModelRunner(model, decode_weights=weights)
    ids = list(range(5, 5 + prompt_tokens))
    runner.prefill(ids)
    for token in range(3):  # warm the caches and the thread pools
        runner.decode_one_token(7 + token)
    runner.prefill(ids)
    started = time.perf_counter()
    for step in range(tokens):
        runner.decode_one_token(11 + step % 97)
    ms = (time.perf_counter() - started) / tokens * 1e3
    return {"ms": round(ms, 3), "threads": threads, "path": runner.decode_path}


def _busy(count: int) -> list[subprocess.Popen]:
    code = (
        f"import time\nend = time.monotonic() + {BUSY_SECONDS}\nwhile time.monotonic() < end: pass"
    )
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()
    for process in processes:
        process.wait()


def _run_child(model: str, setting: str, weights: str, tokens: int) -> dict:
    env = dict(os.environ, **SETTINGS[setting])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.contention",
            "--child",
            model,
            "--weights",
            weights,
            "--tokens",
            str(tokens),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"{model} {setting}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="shipped,llama-30m")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument(
        "--weights", default="bf16", help="decode weights (fp32 masters + this compact copy)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument(
        "--busy", type=int, default=2, help="spinning processes beside the busy runs"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.weights, args.tokens)))
        return 0
    models, settings = args.models.split(","), args.settings.split(",")
    results: dict[tuple, list[float]] = {}
    details: dict[tuple, dict] = {}
    for _ in range(args.rounds):
        for model in models:
            for setting in settings:
                for load in ("quiet", "busy"):
                    busy = _busy(args.busy) if load == "busy" else []
                    try:
                        time.sleep(0.2 if busy else 0)
                        row = _run_child(model, setting, args.weights, args.tokens)
                    finally:
                        _stop(busy)
                    results.setdefault((model, setting, load), []).append(row["ms"])
                    details[(model, setting)] = row
                    print(
                        f"  {model} {setting} {load}: {row['ms']:.2f} ms/token",
                        file=sys.stderr,
                        flush=True,
                    )
    with open("/proc/loadavg") as f:
        load_now = f.read().split()[:3]
    print(
        f"decode ms/token, {args.weights} decode weights on fp32 masters, {args.tokens} tokens, median of "
        f"{args.rounds} interleaved rounds, {args.busy} busy processes; {os.cpu_count()} CPUs, load average "
        f"at the end {' '.join(load_now)}"
    )
    print(
        f"{'model':10} {'setting':11} {'threads':>7} {'quiet ms':>9} {'busy ms':>9} {'busy/quiet':>10}"
    )
    for model in models:
        for setting in settings:
            quiet = statistics.median(results[(model, setting, "quiet")])
            busy = statistics.median(results[(model, setting, "busy")])
            print(
                f"{model:10} {setting:11} {details[(model, setting)]['threads']:>7} {quiet:9.2f} {busy:9.2f} "
                f"{busy / quiet:10.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
