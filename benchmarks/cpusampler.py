"""A sampling CPU profiler by thread, for the probes: where each thread's *CPU* goes, not its wall.

cProfile's cost is per call, so it overstates code made of many small calls (Jinja2, asyncio,
protobuf: docs/benchmarks.md §74), and py-spy is not installed here. This samples every thread's
stack every ``interval`` seconds and charges the CPU that thread used since the previous sample
(its own CPU clock, ``pthread_getcpuclockid``) to the functions on that stack: a thread blocked
in ``recv`` or waiting for the GIL uses no CPU and is charged nothing. Statistical (the CPU of a
slice goes to the stack seen at its end), cheap (one ``sys._current_frames`` per sample).

    sampler = CpuSampler(0.002); sampler.start(); ...; sampler.stop(); print(sampler.report(n))
"""

from __future__ import annotations

import collections
import re
import sys
import threading
import time


def _fold(name: str) -> str:
    return re.sub(r"[_-]?\d+$", "", name)


class CpuSampler:
    def __init__(self, interval: float = 0.002, depth: int = 40) -> None:
        self.interval = interval
        self.depth = depth
        self.own: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.incl: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.total: collections.Counter = collections.Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cpusampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        last: dict[int, float] = {}
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            threads = {t.ident: t for t in threading.enumerate() if t.ident != me}
            frames = sys._current_frames()
            for ident, frame in frames.items():
                t = threads.get(ident)
                if t is None:
                    continue
                try:
                    cpu = time.clock_gettime(time.pthread_getcpuclockid(ident))
                except (OSError, ProcessLookupError):
                    continue
                used = cpu - last.get(ident, cpu)
                last[ident] = cpu
                if used <= 0:
                    continue
                name = _fold(t.name)
                self.total[name] += used
                seen = set()
                f, d = frame, 0
                leaf = True
                while f is not None and d < self.depth:
                    co = f.f_code
                    key = f"{co.co_filename.rsplit('/', 2)[-1]}:{co.co_firstlineno} {co.co_name}"
                    if leaf:
                        self.own[name][key] += used
                        leaf = False
                    if key not in seen:
                        self.incl[name][key] += used
                        seen.add(key)
                    f = f.f_back
                    d += 1

    def report(self, n: int, top: int = 25, min_ms: float = 0.03) -> str:
        """Each thread using at least ``min_ms`` per message: its CPU per message (µs) by function,
        own and inclusive."""
        out = []
        for name, total in self.total.most_common():
            if total / max(n, 1) * 1000 < min_ms:
                continue
            out.append(f"== {name}: {total / max(n, 1) * 1e6:.0f} µs/message sampled")
            out.append("  own:")
            out += [f"  {v / n * 1e6:8.1f} µs  {k}" for k, v in self.own[name].most_common(top)]
            out.append("  inclusive:")
            out += [f"  {v / n * 1e6:8.1f} µs  {k}" for k, v in self.incl[name].most_common(top)]
        return "\n".join(out)


__all__ = ["CpuSampler"]
