"""The engine's default path against every explicit setting and transformers' ``generate``.

Each setting runs in its own process (so its peak RSS is its own), in interleaved rounds (a
drift of the shared machine's speed touches every setting alike); the median over rounds is
reported. A setting names the CPU description the path decision sees (``DEEPSHIVA_CPU``: the
probe, or a preset such as avx2 to get that CPU's default here), the master dtype and the
decode weights. Ours is timed at the runner (prefill, then greedy one-token steps, no prompt
lookup); transformers' ``generate`` greedy with ``min_new_tokens``: first-token time is one
new token's call, ms/token the rest divided by the extra tokens. ``--clock cpu`` times each
process's CPU time instead of the wall: on a saturated shared machine the wall mostly measures
the wait for a core; run it with ``DEEPSHIVA_THREADS=1`` (no idle threads spinning) for the
work itself.

    .venv/bin/python -m benchmarks.paths --model shipped --rounds 3
    .venv/bin/python -m benchmarks.paths --model llama-30m --rounds 3
    .venv/bin/python -m benchmarks.paths --model llama-400m --rounds 3 --settings default \
        "fp32 masters + bf16 C decode" "transformers generate (bf16)"

The last column is what the engine holds: its weights (each storage once) and its KV cache; the
peak RSS beside it adds the interpreter, PyTorch and transformers, and loading's transients.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SETTINGS = {
    "default": {},
    "bf16 masters + bf16 C decode": {"torch_dtype": "bfloat16", "decode_weights": "bf16"},
    "bf16 masters, torch decode": {"torch_dtype": "bfloat16", "decode_weights": "fp32"},
    "fp32 masters + bf16 C decode": {"torch_dtype": "float32", "decode_weights": "bf16"},
    "fp32 masters + fp32 NumPy decode": {"torch_dtype": "float32", "decode_weights": "fp32"},
    "bf16 masters + int8 C decode": {"torch_dtype": "bfloat16", "decode_weights": "int8"},
    "bf16 masters + int4 C decode": {"torch_dtype": "bfloat16", "decode_weights": "int4"},
    "transformers generate (bf16)": {"hf": "bfloat16"},
}


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM where Linux reports it (a child's ru_maxrss starts at its
    parent's peak), else ru_maxrss."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(model: str, setting: dict, prompt_tokens: int, new: int, clock: str = "wall") -> dict:
    import torch

    from core import OptimizedLLM

    from .baseline import PlainGenerate
    from .engine import prompt_ids
    from .shapes import model_dir

    directory = str(model_dir(model))
    held_mb = kv_mb = None  # the weights and KV cache the engine holds (not known for generate)
    started = time.perf_counter()
    if "hf" in setting:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from core.devices import choose_cpu_threads, use_cpu_threads, weight_bytes

        tokenizer = AutoTokenizer.from_pretrained(directory)
        hf = AutoModelForCausalLM.from_pretrained(
            directory, dtype=getattr(torch, setting["hf"])
        ).eval()
        use_cpu_threads(choose_cpu_threads(weight_bytes(hf)))  # the threads the engine would use
        load_s = time.perf_counter() - started
        ids = prompt_ids(tokenizer, prompt_tokens)
        base = PlainGenerate(hf, tokenizer)
        base.run(ids[:16], max_new_tokens=2)  # warm up
        timer = time.process_time if clock == "cpu" else time.perf_counter
        t0 = timer()
        base.run(ids, max_new_tokens=1)
        t1 = timer()
        whole = base.run(ids, max_new_tokens=new, min_new_tokens=new)
        t2 = timer()
        first_ms, whole_ms = (t1 - t0) * 1000, (t2 - t1) * 1000
        ttft, per_token = first_ms, (whole_ms - first_ms) / (whole["tokens"] - 1)
        described = f"transformers {setting['hf']}"
    else:
        kwargs = {k: v for k, v in setting.items() if k in ("torch_dtype", "decode_weights")}
        llm = OptimizedLLM(directory, **kwargs)
        load_s = time.perf_counter() - started
        ids = prompt_ids(llm.tokenizer, prompt_tokens)
        runner = llm.runner
        llm.warmup()
        runner.reset()
        timer = time.process_time if clock == "cpu" else time.perf_counter
        t0 = timer()
        with torch.inference_mode():
            token = int(runner.prefill(ids).argmax())
            t1 = timer()
            for _ in range(new - 1):
                token = int(runner.decode_one_token(token).argmax())
        t2 = timer()
        ttft, per_token = (t1 - t0) * 1000, (t2 - t1) * 1000 / (new - 1)
        info = llm.info()
        described = (
            info["path"]["summary"] if info.get("path") else f"{info['dtype']} / {info['backend']}"
        )
        backend = runner.backend
        if hasattr(backend, "weight_bytes"):
            held_mb = backend.weight_bytes() / 2**20
            kv_mb = 2 * backend.k_cache.nbytes / 2**20
    return {
        "ttft_ms": ttft,
        "ms_per_token": per_token,
        "load_s": load_s,
        "described": described,
        "peak_rss_mb": _peak_rss_mb(),
        "held_mb": held_mb,
        "kv_mb": kv_mb,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shipped")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    parser.add_argument(
        "--cpu", default=None, help="DEEPSHIVA_CPU for every setting (default: the probe)"
    )
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument(
        "--baseline-tree",
        default=None,
        help="another checkout of DeepShiva (e.g. /work/main): its default runs as one more "
        "setting, from its own code, in the same interleaved rounds",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        setting = SETTINGS[args.worker]
        print(json.dumps(_worker(args.model, setting, args.prompt_tokens, args.new, args.clock)))
        return
    env = dict(os.environ)
    if args.cpu:
        env["DEEPSHIVA_CPU"] = args.cpu
    settings = list(args.settings)
    model = args.model
    trees = {name: None for name in settings}
    if args.baseline_tree:
        from .shapes import model_dir

        model = str(model_dir(args.model).resolve())  # the other tree may not know the shape
        commit = subprocess.run(
            ["git", "-C", args.baseline_tree, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        label = f"default at {args.baseline_tree} ({commit})"
        settings.append(label)
        trees[label] = args.baseline_tree
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    for r in range(args.rounds):
        order = settings if r % 2 == 0 else list(reversed(settings))
        for name in order:
            tree = trees[name]
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.paths",
                    "--model",
                    model,
                    "--worker",
                    "default" if tree else name,
                    "--prompt-tokens",
                    str(args.prompt_tokens),
                    "--new",
                    str(args.new),
                    "--clock",
                    args.clock,
                ],
                capture_output=True,
                text=True,
                env=dict(env, PYTHONPATH=tree) if tree else env,
                cwd=tree,
                timeout=900,
            )
            if out.returncode != 0:
                print(f"{name}: failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"model {args.model}, prompt {args.prompt_tokens} tokens, {args.new} new, median of "
        f"{args.rounds} rounds, {args.clock} time"
    )
    print(
        "| setting | path | load s | first token ms | ms/token | peak RSS MB "
        "| weights held + KV cache MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, results in runs.items():
        if not results:
            continue
        med = {
            k: statistics.median(r[k] for r in results)
            for k in ("ttft_ms", "ms_per_token", "peak_rss_mb", "load_s")
        }
        held = results[0].get("held_mb")
        held = f"{held:.0f} + {results[0]['kv_mb']:.0f}" if held is not None else "-"
        print(
            f"| {name} | {results[0]['described']} | {med['load_s']:.1f} | {med['ttft_ms']:.1f} "
            f"| {med['ms_per_token']:.2f} | {med['peak_rss_mb']:.0f} | {held} |"
        )
    per_round = {name: [round(r["ms_per_token"], 2) for r in rs] for name, rs in runs.items()}
    print("ms/token per round:", json.dumps(per_round))


if __name__ == "__main__":
    main()
