"""How much of a store file is in the page cache, reading it in, and a process's disk reads.

At 1M customers on FileStorage a cold ``GetCustomer`` reads ~1 record from ``Data.fs`` (4.3 GB): with
the file only partly in the page cache those reads go to the disk (~0.8 disk reads per request at
500/s, queued behind whatever else the machine reads), and the p99 measured the disk — 15.6 / 137 /
1,021 ms on the same code (docs/benchmarks.md §95, §99). ``bench_hub`` reads the file in before its
latency phases (``--warm-file``, on by default for a FileStorage store; ``--cold-file`` drops it from
the cache instead, for the A/B) and reports what was resident before, and the hub's own disk reads
per request (``/proc/PID/io``'s ``read_bytes``).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_fraction(path: str) -> float | None:
    """The fraction of ``path``'s pages in the page cache now (``mincore``), None where unsupported."""
    size = os.path.getsize(path)
    if size == 0:
        return 1.0
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            pages = (size + PAGE - 1) // PAGE
            vec = ctypes.create_string_buffer(pages)
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return None
            return sum(b & 1 for b in vec.raw) / pages
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


def read_in(path: str, chunk: int = 16 * 2 ** 20) -> float:
    """Read ``path`` once, end to end, so that its pages are cached; returns the seconds it took."""
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk)
        while f.readinto(buf):
            pass
    return time.perf_counter() - t0


def evict(path: str) -> None:
    """Drop ``path``'s clean pages from the page cache (``POSIX_FADV_DONTNEED``: this file only, not
    the machine's other files) — the cold-file run of ``bench_hub --cold-file``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def disk_read_bytes(pid: int) -> int | None:
    """Bytes process ``pid`` made the storage layer read so far (``/proc/PID/io``; not page-cache hits)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
