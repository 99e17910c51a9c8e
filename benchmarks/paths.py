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

Users' sizes, against transformers and llama.cpp at the same precision (its GGUF files converted
beforehand, ``benchmarks.llamacpp.gguf_for``)::

    .venv/bin/python -m benchmarks.paths --model stablelm-3b --rounds 2 --prompt-tokens 1024 \
        --new 16 --llamacpp-plain --settings default "transformers generate (bf16)" \
        "llama.cpp BF16"

Each process also reports the cost of a keystroke (the prompt plus one typed token, after the
prompt ran: ours and llama.cpp reuse the cached prompt, ``generate`` runs it all again) and,
after its peak RSS was read, the GB/s a plain read of memory gets at that moment with the same
threads, beside the GB/s its decode streamed (the layer matrices and output head at the
format decode reads, and the K/V cache at its dtype over the mean context). Loads are timed
from a warm page cache: the parent reads each setting's files just before its process.
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
    # llama.cpp on the same checkpoint in GGUF (benchmarks.llamacpp; converted beforehand)
    "llama.cpp BF16": {"llamacpp": "bf16"},
    "llama.cpp Q8_0": {"llamacpp": "q8_0"},
    "llama.cpp Q4_0": {"llamacpp": "q4_0"},
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


def _typed_prompt(tokenizer, prompt_tokens: int) -> tuple[list[int], list[int]]:
    """The prompt's ids and the same ids with one more token: a keystroke after the prompt ran."""
    from .engine import prompt_ids

    ids = prompt_ids(tokenizer, prompt_tokens + 1)
    return ids[:prompt_tokens], ids


class _TokenClock:
    """A ``generate`` streamer that only notes when each put arrives: first the prompt, then
    each new token (time to first token and decode time from one call, not the difference of
    two calls, which a busy machine can make negative)."""

    def __init__(self, timer):
        self.timer = timer
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(self.timer())

    def end(self) -> None:
        pass


def _run_hf(directory: str, dtype: str, prompt_tokens: int, new: int, timer) -> dict:
    """transformers' ``generate``: every request (a keystroke too) runs its whole prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.devices import choose_cpu_threads, use_cpu_threads, weight_bytes

    from .baseline import PlainGenerate

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    hf = AutoModelForCausalLM.from_pretrained(directory, dtype=getattr(torch, dtype)).eval()
    use_cpu_threads(choose_cpu_threads(weight_bytes(hf)))  # the threads the engine would use
    load_s = time.perf_counter() - started
    ids, typed = _typed_prompt(tokenizer, prompt_tokens)
    base = PlainGenerate(hf, tokenizer)
    base.run(ids[:16], max_new_tokens=2)  # warm up
    clock = _TokenClock(timer)
    t0 = timer()
    with torch.inference_mode():
        hf.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
            streamer=clock,
        )
    t2 = timer()
    base.run(typed, max_new_tokens=1)
    t3 = timer()
    first, last, tokens = clock.times[1], clock.times[-1], len(clock.times) - 1
    return {
        "ttft_ms": (first - t0) * 1000,
        "ms_per_token": (last - first) * 1000 / (tokens - 1),
        "keystroke_ms": (t3 - t2) * 1000,
        "load_s": load_s,
        "tokens": tokens,
        "described": f"transformers {dtype}",
        "decode_format": SHORT_DTYPES.get(dtype, dtype),
        "kv_bytes_per_value": 2 if dtype in SHORT_DTYPES else 4,
    }


def _run_ours(directory: str, setting: dict, prompt_tokens: int, new: int, timer) -> dict:
    """DeepShiva at the runner: prefill, greedy one-token steps (no prompt lookup), then one
    typed token more, whose prompt reuses the cached one."""
    import torch

    from core import OptimizedLLM

    kwargs = {k: v for k, v in setting.items() if k in ("torch_dtype", "decode_weights")}
    started = time.perf_counter()
    llm = OptimizedLLM(directory, **kwargs)
    load_s = time.perf_counter() - started
    ids, typed = _typed_prompt(llm.tokenizer, prompt_tokens)
    runner = llm.runner
    llm.warmup()
    runner.reset()
    t0 = timer()
    with torch.inference_mode():
        token = int(runner.prefill(ids).argmax())
        t1 = timer()
        for _ in range(new - 1):
            token = int(runner.decode_one_token(token).argmax())
        t2 = timer()
        int(runner.prefill(typed).argmax())
        t3 = timer()
    info = llm.info()
    described = (
        info["path"]["summary"] if info.get("path") else f"{info['dtype']} / {info['backend']}"
    )
    result = {
        "ttft_ms": (t1 - t0) * 1000,
        "ms_per_token": (t2 - t1) * 1000 / (new - 1),
        "keystroke_ms": (t3 - t2) * 1000,
        "load_s": load_s,
        "tokens": new,
        "described": described,
        "decode_format": runner.decode_weights,
    }
    backend = runner.backend
    if hasattr(backend, "weight_bytes"):
        result["held_mb"] = backend.weight_bytes() / 2**20
        result["kv_mb"] = 2 * backend.k_cache.nbytes / 2**20
        result["kv_bytes_per_value"] = backend.k_cache.element_size()
    return result


def _run_llamacpp(
    directory: str, out_type: str, prompt_tokens: int, new: int, timer, plain: bool
) -> dict:
    """llama.cpp on the same checkpoint in GGUF (converted beforehand), 16-bit K/V cache; it
    reuses the cached prompt prefix by itself, as the engine does."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from . import llamacpp

    gguf = llamacpp.gguf_for(Path(directory), out_type)
    threads = len(os.sched_getaffinity(0))
    context = prompt_tokens + new + 64  # the KV cache a request needs, not the model's context
    started = time.perf_counter()
    cpp = llamacpp.load(gguf, context, threads, extra_buffers=not plain)
    load_s = time.perf_counter() - started
    ids, typed = _typed_prompt(AutoTokenizer.from_pretrained(directory), prompt_tokens)
    list(cpp.create_completion(prompt=ids[:16], max_tokens=2, temperature=0))  # warm up
    cpp.reset()  # a cold prompt, as the engine's
    t0 = timer()
    first = None
    count = 0
    for _chunk in cpp.create_completion(prompt=ids, max_tokens=new, temperature=0, stream=True):
        count += 1
        if first is None:
            first = timer()
    t2 = timer()
    for _chunk in cpp.create_completion(prompt=typed, max_tokens=1, temperature=0, stream=True):
        break
    t3 = timer()
    # ``new`` tokens stream ``new`` chunks and one closing chunk (no text, no forward pass): the
    # time after the first chunk holds ``new - 1`` forward passes, as the engine's loop does.
    steps = max(min(count, new) - 1, 1)
    return {
        "ttft_ms": (first - t0) * 1000,
        "ms_per_token": (t2 - first) * 1000 / steps,
        "keystroke_ms": (t3 - t2) * 1000,
        "load_s": load_s,
        "tokens": count,  # under ``new``: it stopped at an end token
        "described": f"llama.cpp {out_type.upper()}"
        + (" (no extra buffer types)" if plain else ""),
        "decode_format": out_type,
        "weights_read_bytes": gguf_streamed_bytes(gguf),
        "kv_bytes_per_value": 2,
    }


def gguf_streamed_bytes(gguf) -> int:
    """Bytes of the GGUF's tensors a decode step reads: all but the token embedding table (one
    row of it is read), unless the output head is that table (no ``output.weight``)."""
    import sys as _sys

    from .llamacpp import SDIST

    _sys.path.insert(0, str(SDIST / "gguf-py"))
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(gguf)).tensors}
    if "output.weight" in tensors:
        tensors.pop("token_embd.weight", None)
    return sum(tensors.values())


SHORT_DTYPES = {"bfloat16": "bf16", "float16": "fp16"}


def decode_bytes_per_token(
    shape, fmt: str, kv_bytes_per_value: int, context: float, read: int | None = None
) -> float:
    """Bytes one decode step reads: the layer matrices and the output head in ``fmt`` (or
    ``read``, where the engine's own file says it) and the K/V cache over ``context`` tokens."""
    from core.backends.footprint import Settings, footprint

    if read is None:
        read = footprint(
            shape, Settings("bf16", fmt if fmt in FORMAT_BYTES else "bf16")
        ).decode_copy
    return read + shape.kv_bytes_per_token / 4 * kv_bytes_per_value * context


FORMAT_BYTES = ("bf16", "fp16", "int8", "int4")


def read_bandwidth_gbs(threads: int, size_mb: int = 512, repeats: int = 5) -> float:
    """GB/s a plain read of memory gets now with ``threads`` threads: the median of summing a
    buffer far larger than the CPU's caches (PyTorch's vectorised reduction)."""
    import torch

    torch.set_num_threads(threads)
    buffer = torch.ones(size_mb * 2**20 // 4)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        buffer.sum()
        rates.append(buffer.nbytes / (time.perf_counter() - started) / 1e9)
    return statistics.median(rates)


def _worker(
    model: str,
    setting: dict,
    prompt_tokens: int,
    new: int,
    clock: str = "wall",
    llamacpp_plain: bool = False,
) -> dict:
    import torch
    from transformers import AutoConfig

    from core.backends.footprint import shape_of

    from .shapes import model_dir

    directory = str(model_dir(model))
    timer = time.process_time if clock == "cpu" else time.perf_counter
    if "hf" in setting:
        result = _run_hf(directory, setting["hf"], prompt_tokens, new, timer)
    elif "llamacpp" in setting:
        result = _run_llamacpp(
            directory, setting["llamacpp"], prompt_tokens, new, timer, llamacpp_plain
        )
    else:
        result = _run_ours(directory, setting, prompt_tokens, new, timer)
    result["peak_rss_mb"] = _peak_rss_mb()  # before the bandwidth probe's buffer
    threads = torch.get_num_threads() if "llamacpp" not in setting else len(os.sched_getaffinity(0))
    result["read_gb_s"] = read_bandwidth_gbs(threads)
    shape = shape_of(AutoConfig.from_pretrained(directory))
    per_token = decode_bytes_per_token(
        shape,
        result["decode_format"],
        result.get("kv_bytes_per_value", 4),
        prompt_tokens + new / 2,
        result.get("weights_read_bytes"),
    )
    result["decode_gb_s"] = per_token / result["ms_per_token"] / 1e6
    result["bytes_per_token"] = per_token
    return result


# Which baseline each setting's decode is compared with, by the format its decode reads.
LLAMACPP_OF_FORMAT = {"bf16": "llama.cpp BF16", "int8": "llama.cpp Q8_0", "int4": "llama.cpp Q4_0"}
TRANSFORMERS = "transformers generate (bf16)"


def warm_page_cache(paths) -> None:
    """Read ``paths`` once (into a small buffer, not kept) so a load measures a warm page cache,
    the case of a server restarted on a machine that has read the model before."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def files_read_by(setting: dict, model: str) -> list:
    """The files a setting's load reads: its GGUF for llama.cpp, else the safetensors."""
    from pathlib import Path

    from .shapes import model_dir

    directory = Path(model_dir(model))
    if "llamacpp" in setting:
        from .llamacpp import gguf_for

        return [gguf_for(directory, setting["llamacpp"])]  # converted here if not yet
    return sorted(directory.glob("*.safetensors"))


def per_round_ratios(runs: dict[str, list[dict]], name: str, baseline: str) -> list[float]:
    """Decode speed of ``name`` over ``baseline``, round by round (rounds where both ran)."""
    ours, theirs = runs.get(name, []), runs.get(baseline, [])
    if all("round" in r for r in ours + theirs):  # a round where one of them failed is left out
        by_round = {r["round"]: r for r in theirs}
        pairs = [(a, by_round[a["round"]]) for a in ours if a["round"] in by_round]
    else:
        pairs = list(zip(ours, theirs))
    return [b["ms_per_token"] / a["ms_per_token"] for a, b in pairs]


def baselines_of(name: str, result: dict, runs: dict) -> dict[str, str]:
    """The baselines ``name`` is compared with: transformers' bf16 ``generate``, and llama.cpp at
    the format its decode reads."""
    if name == TRANSFORMERS or name.startswith("llama.cpp"):
        return {}
    found = {"transformers": TRANSFORMERS}
    cpp = LLAMACPP_OF_FORMAT.get(result.get("decode_format", ""))
    if cpp:
        found["llama.cpp"] = cpp
    return {kind: other for kind, other in found.items() if runs.get(other)}


def summarize(runs: dict[str, list[dict]]) -> list[dict]:
    """One row a setting: medians over rounds, and per-round ratios against its baselines."""
    rows = []
    for name, results in runs.items():
        if not results:
            continue

        def med(key, results=results):
            values = [r[key] for r in results if r.get(key) is not None]
            return statistics.median(values) if values else None

        row = {"setting": name, "described": results[0]["described"], "rounds": len(results)}
        for key in (
            "load_s",
            "ttft_ms",
            "keystroke_ms",
            "ms_per_token",
            "peak_rss_mb",
            "decode_gb_s",
            "read_gb_s",
        ):
            row[key] = med(key)
        row["per_round_ms_per_token"] = [round(r["ms_per_token"], 1) for r in results]
        row["per_round_read_gb_s"] = [round(r.get("read_gb_s") or 0, 1) for r in results]
        shares = [r["decode_gb_s"] / r["read_gb_s"] for r in results if r.get("read_gb_s")]
        row["read_share"] = statistics.median(shares) if shares else None
        row["held"] = (
            f"{results[0]['held_mb']:.0f} + {results[0]['kv_mb']:.0f}"
            if results[0].get("held_mb") is not None
            else "-"
        )
        row["ratios"] = {}
        for kind, other in baselines_of(name, results[0], runs).items():
            ratios = per_round_ratios(runs, name, other)
            if ratios:
                row["ratios"][kind] = {
                    "median": statistics.median(ratios),
                    "range": [min(ratios), max(ratios)],
                }
        rows.append(row)
    return rows


def print_rows(rows: list[dict]) -> None:
    """The summary as a Markdown table (decode speed with its GB/s and the plain read's)."""
    print(
        "| setting | path | load s | first token ms | keystroke ms | ms/token (tok/s) "
        "| peak RSS MB | weights held + KV MB | decode GB/s / plain read GB/s (share) "
        "| decode vs transformers | decode vs llama.cpp |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def ratio(row, kind):
        got = row["ratios"].get(kind)
        if not got:
            return "-"
        return f"{got['median']:.2f}x ({got['range'][0]:.2f}-{got['range'][1]:.2f})"

    for row in rows:
        keystroke = f"{row['keystroke_ms']:.0f}" if row["keystroke_ms"] is not None else "-"
        bandwidth = (
            f"{row['decode_gb_s']:.1f} / {row['read_gb_s']:.1f} ({row['read_share']:.0%})"
            if row["read_gb_s"]
            else "-"
        )
        print(
            f"| {row['setting']} | {row['described']} | {row['load_s']:.1f} "
            f"| {row['ttft_ms']:.0f} | {keystroke} "
            f"| {row['ms_per_token']:.1f} ({1000 / row['ms_per_token']:.2f}) "
            f"| {row['peak_rss_mb']:.0f} | {row['held']} | {bandwidth} "
            f"| {ratio(row, 'transformers')} | {ratio(row, 'llama.cpp')} |"
        )


def save_runs(args, load_averages: list, runs: dict) -> None:
    """Write the invocation's arguments, load averages and every process's results to --out."""
    from pathlib import Path

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"args": vars(args), "load_averages": load_averages, "runs": runs}
    out.write_text(json.dumps(report, indent=1))


def combine(files: list[str], read_floor: float = 0.0) -> None:
    """One table from the rounds several invocations wrote (``--out``), in their order; with
    ``read_floor``, a process whose plain read got less than that many GB/s (something else
    was using the memory bus or the cores then) is left out and named."""
    runs: dict[str, list[dict]] = {}
    for file in files:
        report = json.loads(open(file).read())
        print(
            f"{file}: {report['args']['model']}, rounds from {report['args']['first_round']}, "
            f"load average before and after each round {report['load_averages']}"
        )
        for name, results in report["runs"].items():
            for result in results:
                if result.get("invalid"):
                    print(f"left out: {name}, round {result.get('round')}: {result['invalid']}")
                    continue
                if (result.get("read_gb_s") or 0) < read_floor:
                    print(
                        f"left out: {name}, round {result.get('round')}: plain read "
                        f"{result.get('read_gb_s', 0):.1f} GB/s, {result['ms_per_token']:.1f} ms/token"
                    )
                    continue
                runs.setdefault(name, []).append(result)
    order = json.loads(open(files[0]).read())["args"].get("settings") or list(runs)
    order = [name for name in order if name in runs] + [name for name in runs if name not in order]
    runs = {name: runs[name] for name in order}  # the invocation's order
    rows = summarize(runs)
    print_rows(rows)
    print(
        "ms/token per round:", json.dumps({r["setting"]: r["per_round_ms_per_token"] for r in rows})
    )
    print(
        "plain read GB/s per round:",
        json.dumps({r["setting"]: r["per_round_read_gb_s"] for r in rows}),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shipped")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument(
        "--settings",
        nargs="*",
        default=[name for name, setting in SETTINGS.items() if "llamacpp" not in setting],
        help="names of SETTINGS (default: all but llama.cpp's, which need scripts/install-llamacpp)",
    )
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
    parser.add_argument(
        "--llamacpp-plain",
        action="store_true",
        help="load llama.cpp without its extra buffer types (AMX, repacked weights); its "
        "Q8_0/Q4_0 crash in them on some CPUs (benchmarks.llamacpp.load)",
    )
    parser.add_argument(
        "--cold-cache",
        action="store_true",
        help="do not read each setting's files before its process (loads then measure whatever "
        "the page cache holds)",
    )
    parser.add_argument("--out", help="write every round's results and the summary as JSON")
    parser.add_argument(
        "--first-round",
        type=int,
        default=0,
        help="number the rounds from here (odd rounds run the settings in reverse order): one "
        "run split into several invocations, each short enough to hold a shared lock",
    )
    parser.add_argument(
        "--combine",
        nargs="+",
        metavar="JSON",
        help="print one table from the rounds of several --out files (the same settings) and stop",
    )
    parser.add_argument(
        "--read-floor",
        type=float,
        default=0.0,
        help="with --combine: leave out processes whose plain read got fewer GB/s than this",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        setting = SETTINGS[args.worker]
        print(
            json.dumps(
                _worker(
                    args.model,
                    setting,
                    args.prompt_tokens,
                    args.new,
                    args.clock,
                    args.llamacpp_plain,
                )
            )
        )
        return
    if args.combine:
        combine(args.combine, args.read_floor)
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
    load_averages = [os.getloadavg()]
    for r in range(args.first_round, args.first_round + args.rounds):
        order = settings if r % 2 == 0 else list(reversed(settings))
        for name in order:
            tree = trees[name]
            setting = SETTINGS["default" if tree else name]
            if not args.cold_cache:
                warm_page_cache(files_read_by(setting, model))
            command = [
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
            ]
            if args.llamacpp_plain and "llamacpp" in setting:
                command.append("--llamacpp-plain")
            out = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=dict(env, PYTHONPATH=tree) if tree else env,
                cwd=tree,
                timeout=900,
            )
            if out.returncode != 0:
                error = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
                print(f"{name}: failed (exit status {out.returncode}): {error}", file=sys.stderr)
                continue
            runs[name].append(dict(json.loads(out.stdout.strip().splitlines()[-1]), round=r))
            if args.out:  # after every process: a run stopped by a time limit keeps what it had
                save_runs(args, load_averages + [os.getloadavg()], runs)
        load_averages.append(os.getloadavg())
    print(
        f"model {args.model}, prompt {args.prompt_tokens} tokens, {args.new} new, median of "
        f"{args.rounds} rounds, {args.clock} time; load average (1, 5, 15 min) before and after "
        f"each round: {[tuple(round(x, 2) for x in la) for la in load_averages]}"
    )
    rows = summarize(runs)
    print_rows(rows)
    per_round = {name: [round(r["ms_per_token"], 2) for r in rs] for name, rs in runs.items()}
    print("ms/token per round:", json.dumps(per_round))
    tokens = {name: [r.get("tokens") for r in rs] for name, rs in runs.items()}
    print("tokens generated per round (fewer: stopped at an end token):", json.dumps(tokens))
    print(
        "plain read GB/s per round:",
        json.dumps({row["setting"]: row["per_round_read_gb_s"] for row in rows}),
    )
    if args.out:
        save_runs(args, load_averages, runs)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
