"""benchmarks.team_load's own logic, without vLLM: the cores --local-cpus names, the tail over
every line end (suggestions that never came included), peak RSS of a server's processes, the
untimed warm-up, and the options' errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from benchmarks import team_load


def test_cpu_list_reads_taskset_lists():
    assert team_load.cpu_list("0") == [0]
    assert team_load.cpu_list("0-2,5") == [0, 1, 2, 5]
    assert team_load.cpu_list("1,1-2") == [1, 2]


@pytest.mark.parametrize("spec", ["", "a", "3-1", "0,", "0-"])
def test_cpu_list_refuses_what_taskset_would(spec):
    with pytest.raises(ValueError, match="not a list of cores"):
        team_load.cpu_list(spec)


def test_tail_counts_suggestions_that_never_came():
    # every line end answered: the same as the answered ones' tail
    assert team_load.tail_with_lost([300.0, 100.0, 200.0], 3) == {
        "p50_all_ms": 200.0,
        "p95_all_ms": 300.0,
        "p95_over_cap": False,
    }
    # 12 of 37 answered (the local engine at 8 developers on llama-400m): the answered ones'
    # p95 looks like 15 s, but most never came, so even the median is past the cap
    tail = team_load.tail_with_lost([14_000.0] * 12, 37)
    assert tail == {"p50_all_ms": None, "p95_all_ms": None, "p95_over_cap": True}
    # one in 40 lost: p95 is still an answered one's
    assert team_load.tail_with_lost([float(i) for i in range(39)], 40)["p95_all_ms"] == 38.0


def test_session_peaks_sees_every_process_of_the_server_and_no_other():
    # a "server" in a session of its own whose child holds ~64 MB (as vLLM's worker would)
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import time; x = bytearray(64 << 20); time.sleep(30)'])\n"
        "print('up', flush=True); time.sleep(30)\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert server.stdout.readline().strip() == "up"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            peaks = team_load.session_peaks(server.pid)
            if len(peaks) == 2 and max(p["peak_rss_mb"] for p in peaks.values()) >= 64:
                break
            time.sleep(0.1)
        assert str(server.pid) in peaks and len(peaks) == 2
        child = next(p for pid, p in peaks.items() if pid != str(server.pid))
        assert child["peak_rss_mb"] >= 64 and child["rss_mb"] >= 64
        assert str(os.getpid()) not in peaks
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


def test_warm_asks_once_per_developer_before_the_timed_run_and_counts_nowhere():
    timed_started: list[float] = []
    warmed: list[tuple[float, str]] = []
    lock = threading.Lock()

    def complete(prefix, suffix, cancel):
        with lock:
            timed_started.append(time.perf_counter())
        return 0, 0, "x"

    def warm(prefix, suffix, cancel):
        with lock:
            warmed.append((time.perf_counter(), prefix))
        return 0, 0, "x"

    team = team_load.run_team(complete, 2, 1, warm=warm)
    assert len(warmed) == 2
    assert max(t for t, _ in warmed) < min(timed_started)
    # the file as it stands before each developer's first keystroke
    first_keys = [
        team_load.build_schedule(*team_load.REGIONS[i], 1, seed=i)[0].prefix for i in range(2)
    ]
    assert sorted(p for _, p in warmed) == sorted(k[:-1] for k in first_keys)
    assert team["requests"] == len(timed_started) > 0  # the warm-up is not among them


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--local-cpus", "0-"], "--local-cpus: not a list of cores"),
        (["--model", "/nonexistent-model-dir"], "neither a model directory nor a shape"),
        (["--model", "tests"], "--model: no config.json in tests"),
    ],
)
def test_bad_options_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        team_load.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
