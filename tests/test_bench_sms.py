"""bench_sms fails fast when a run stops progressing, says what stalled, and leaves nothing behind
(Kannel's daemons, the hub, its temporary directory) on that failure or on SIGTERM."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shopkeeper.testing import wait_for

ROOT = Path(__file__).resolve().parent.parent
_PATH = ROOT / "benchmarks" / "bench_sms.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("shopkeeper_bench_sms", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_run_is_done_when_every_intent_is_sent_and_reported(bench) -> None:
    clock = Clock()
    watch = bench.Progress("in-process", 10, 30, clock)
    assert not watch.done(10, 9)
    clock.t += 29
    assert not watch.done(10, 9)
    assert watch.done(10, 10)
    clock.t += 1000  # done is done, however late
    assert watch.done(10, 10)


def test_no_sent_marks_for_the_stall_time_fails_naming_them(bench) -> None:
    clock = Clock()
    watch = bench.Progress("in-process", 10, 30, clock)
    assert not watch.done(3, 3)
    clock.t += 20
    assert not watch.done(3, 3)
    clock.t += 9.9
    assert not watch.done(3, 3)
    clock.t += 0.1
    with pytest.raises(bench.Stalled, match=r"\[in-process\] stalled: no sent marks for 30 s — 3/10 intents marked "
                                             r"sent, 3/10 delivery reports recorded; stats x"):
        watch.done(3, 3, lambda: "stats x")


def test_progress_of_one_count_does_not_hide_the_other_stalling(bench) -> None:
    clock = Clock()
    watch = bench.Progress("remote", 10, 30, clock)
    for sent in range(1, 10):  # sends go on, reports never come back
        clock.t += 5
        if clock.t - 100 < 30:
            assert not watch.done(sent, 0)
        else:
            with pytest.raises(bench.Stalled, match=r"no delivery reports for 30 s — 6/10"):
                watch.done(sent, 0)
            break
    else:
        pytest.fail("never stalled")
    # every intent sent: the reports alone are waited for, and fail the run when they stop
    watch = bench.Progress("remote", 10, 30, clock)
    clock.t += 100
    watch.done(10, 4)
    clock.t += 30
    with pytest.raises(bench.Stalled, match="no delivery reports"):
        watch.done(10, 4)


def _leftovers(tmp: Path) -> list[str]:
    """Processes whose command line names ``tmp`` (Kannel's daemons run on configs under it)."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(tmp) in cmd:
                found.append(f"{p.name}: {cmd[:120]}")
    return found


def _run_bench(tmp: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(_PATH), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("bearerbox"), reason="Kannel is not installed (scripts/install-test-deps.sh)")
def test_a_run_whose_sends_all_fail_stops_in_seconds_and_cleans_up(tmp_path: Path) -> None:
    # smsbox refuses every request (a wrong password: temporary for the adapter, retried): no sent marks
    proc = _run_bench(tmp_path, "--modes", "in-process", "--messages", "40", "--stall", "3",
                      "--adapter-option", "password=wrong", "--adapter-option", "retry_delays=[60]")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, (out, err)
    assert "[in-process] stalled: no sent marks for 3 s — 0/40 intents marked sent" in err, err
    assert "the adapter's stats" in err and "'retried': " in err, err
    assert not list(tmp_path.glob("bench-sms-*")), "the temporary directory was left behind"
    assert not _leftovers(tmp_path)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("bearerbox"), reason="Kannel is not installed (scripts/install-test-deps.sh)")
def test_sigterm_during_a_run_cleans_up(tmp_path: Path) -> None:
    proc = _run_bench(tmp_path, "--modes", "remote", "--messages", "40", "--stall", "600",
                      "--adapter-option", "password=wrong", "--adapter-option", "retry_delays=[60]")
    assert proc.stdout is not None
    for line in proc.stdout:  # the remote mode's run has started: hub, Kannel, an adapter process
        if line.startswith("[remote] setup:"):
            break
    else:
        pytest.fail(f"the bench ended before its remote run: {proc.wait()} {proc.stderr.read()}")  # type: ignore[union-attr]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_leftovers(tmp_path)) < 3:  # Kannel's three daemons at least
        time.sleep(0.1)
    kids = _descendants(proc.pid)  # Kannel's daemons, the remote adapter process
    assert len(kids) >= 4, kids
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "stopped by signal 15" in err, err
    assert not list(tmp_path.glob("bench-sms-*")), "the temporary directory was left behind"
    assert not _leftovers(tmp_path)
    # multiprocessing's resource tracker (the spawn context's) ends on its own when it reads the end of
    # the bench's pipe, just after the bench: wait for the state, bounded; a process left running fails
    # and is named
    def survivors() -> list[tuple[int, str]]:
        return [(k, _cmdline(k)) for k in kids if _alive(k)]

    try:
        wait_for(lambda: not survivors(), timeout=15, interval=0.05, what="every process of the bench to end")
    except pytest.fail.Exception:
        pytest.fail(f"a process of the bench outlived it: {survivors()}", pytrace=False)


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += [int(child), *_descendants(int(child))]
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"
