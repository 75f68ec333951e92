"""Where a ``shopkeeper`` command's time goes, phase by phase, when ``SHOPKEEPER_PHASES`` is set.

Why: issue 15 asks for raw file -> scores CSV in 5 s over three commands, and a command's wall
time alone does not say whether it went to the interpreter's start, our imports, the plugins,
opening the store or the work. ``benchmarks/bench_cdnow.py`` sets the variable and reads the
lines this prints to stderr at exit: ``phase NAME MONOTONIC CPU`` — the system-wide monotonic
clock (``time.monotonic``: comparable with the parent's clock, so the parent can tell the
interpreter's start-up before our first line) and this process's CPU time since it started
(``time.process_time``). Unset, :func:`mark` is one global read: nothing is kept or printed.

Standard library only, so that ``shopkeeper.cli`` can mark its first line before importing
anything else.
"""

from __future__ import annotations

import os
import sys
import time

_ON = bool(os.environ.get("SHOPKEEPER_PHASES"))
_marks: list[tuple[str, float, float]] = []


def enabled() -> bool:
    """Whether phases are being noted (a caller may then separate a phase it would not otherwise)."""
    return _ON


def mark(name: str) -> None:
    """Note that phase ``name`` ends now (the next phase starts here)."""
    if _ON:
        if not _marks:
            import atexit

            atexit.register(dump)
        _marks.append((name, time.monotonic(), time.process_time()))


def dump() -> None:
    """Print the phases (at exit; or before a process ends without Python's shutdown)."""
    if not _marks or _marks[-1][0] == "exit":
        return
    _marks.append(("exit", time.monotonic(), time.process_time()))
    sys.stderr.write("".join(f"phase {n} {t:.6f} {c:.6f}\n" for n, t, c in _marks))
    sys.stderr.flush()
