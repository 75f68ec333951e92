"""What keeps a benchmark's processes from outliving it (bench_scaleout, docs/benchmarks.md §47):
progress lines, the list of live hubs and clients, signal handling, and a reaper that stops a
private PostgreSQL cluster and our hubs even when the benchmark is killed with SIGKILL.

Why a module of its own: bench_scaleout's job is the workload and its figures; this is process
lifecycle, which any benchmark starting servers can reuse (``install_signal_handlers()``,
``LIVE``/``remember`` for what it starts, ``pg_reaper`` after ``PrivatePostgres.start``).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

T0 = time.monotonic()
#: every hub and client process alive, so that a signal or an exception stops them all
LIVE: list[Any] = []
#: the file listing every hub and client pid, for the reaper
PIDS: dict[str, Path | None] = {"file": None}


def say(msg: str) -> None:
    """Progress, on stderr (stdout keeps the JSON rows): a run that stops moving says where."""
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def remember(pid: int) -> None:
    """Note a hub or client pid for the reaper (:func:`pg_reaper`), which stops them if this
    process dies without its clean-up (SIGKILL)."""
    if PIDS["file"] is not None:
        with open(PIDS["file"], "a") as f:
            f.write(f"{pid}\n")


def die_with_parent() -> None:
    """In a client process: SIGTERM when the benchmark dies, even by SIGKILL (Linux prctl).
    Not for the hubs: a ``preexec_fn`` makes Popen fork() instead of vfork(), and fork() runs
    gRPC's at-fork handlers, which can hang (docs/benchmarks.md §47)."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _on_signal(signum: int, frame: Any) -> None:
    """SIGTERM/SIGHUP (``timeout``, a closed terminal) unwind like Ctrl-C: every ``finally`` runs,
    so the hubs stop and the private PostgreSQL cluster is stopped and removed."""
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)  # once: the clean-up itself is not interrupted
    say(f"signal {signal.Signals(signum).name}: stopping the hubs and PostgreSQL")
    raise SystemExit(128 + signum)


def stop_all() -> None:
    """Stop every hub (SIGTERM, then SIGKILL after 60 s) and client process still alive."""
    for p in LIVE:
        with contextlib.suppress(Exception):
            (p.send_signal(signal.SIGTERM) if isinstance(p, subprocess.Popen) else p.terminate())
    for p in LIVE:
        with contextlib.suppress(Exception):
            if isinstance(p, subprocess.Popen):
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
            else:
                p.join(10)
                if p.is_alive():
                    p.kill()
    LIVE.clear()


REAPER = """
import os, shutil, signal, subprocess, sys
sys.stdin.read()  # EOF: the benchmark is gone, however it ended (its end of the pipe closed)
cmd, pids, dirs = sys.argv[1].split("\\x1f"), sys.argv[2], sys.argv[3:]
for pid in (open(pids).read().split() if os.path.exists(pids) else []):
    try:  # only our hubs (the clients die with us: PR_SET_PDEATHSIG); a pid may have been reused
        if b"serve\\0--store" in open(f"/proc/{pid}/cmdline", "rb").read():
            os.kill(int(pid), signal.SIGTERM)
    except OSError:
        pass
subprocess.run(cmd, capture_output=True)
for d in dirs:
    shutil.rmtree(d, ignore_errors=True)
"""


def pg_reaper(pg: Any, tmp: Path) -> subprocess.Popen:
    """A process of its own session that stops the private cluster and removes the scratch
    directories once this process is gone, even by SIGKILL (which no handler sees): it waits for
    EOF on a pipe only this process holds. After a clean stop its ``pg_ctl stop`` finds nothing."""
    cmd = [str(pg.bindir / "pg_ctl"), "-D", str(pg.data), "-m", "immediate", "-w", "stop"]
    if pg._as:
        cmd = ["runuser", "-u", pg._as, "--", *cmd]
    dirs = [str(tmp)] + ([str(pg.dir)] if pg.dir != tmp / "pg" else [])
    PIDS["file"] = tmp / "pids"
    return subprocess.Popen([sys.executable, "-c", REAPER, "\x1f".join(cmd), str(PIDS["file"]), *dirs],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def install_signal_handlers() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
