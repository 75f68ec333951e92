"""Kannel's ``sendsms`` requests: keep-alive HTTP/1.1 connections to smsbox, used from worker threads.

Why its own module: the transport is a job apart from the SMS text, the delivery reports and the
cycle (issue 19). Why the standard library's ``http.client`` and not httpx/httpcore: a sendsms
request is one GET with a query string and a short answer; through httpcore on the adapter's
event loop it was ~46% of the loop's CPU per message (docs/benchmarks.md §37), most of it the
async machinery around a few bytes. Here a request costs one hand-over to a worker thread and
back; ``http.client`` parses the answer in the worker.

A connection is reused only when the previous answer left it open and it is not readable while
idle (smsbox closed it, or sent something unasked): then it is dropped and a fresh one opened,
*before* the request is written — the check httpcore makes — so a request is never sent twice
on a connection that turned out dead (Kannel has no idempotency key).
"""

from __future__ import annotations

import asyncio
import http.client
import select
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit


class SendsmsPool:
    """Up to ``connections`` keep-alive connections to the sendsms URL's host (and as many
    requests in flight), opened lazily."""

    def __init__(self, url: str, connections: int, timeout: float) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._base = (parts.path or "/") + (f"?{parts.query}&" if parts.query else "?")
        self.timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(connections, thread_name_prefix="shopkeeper-sendsms")

    def _connection(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                return cls(self._host, self._port, timeout=self.timeout)
            sock = conn.sock
            if sock is not None and not select.select([sock], [], [], 0)[0]:
                return conn
            conn.close()  # closed by smsbox while idle (readable = EOF or unasked bytes)

    def _get(self, query: str, after: Callable[[], None] | None = None) -> tuple[int, bytes]:
        conn = self._connection()
        try:
            conn.request("GET", self._base + query)
            r = conn.getresponse()
            body = r.read()
        except BaseException:
            conn.close()
            raise
        if r.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        if after is not None and 200 <= r.status < 300:
            after()
        return r.status, body

    async def get(self, query: str, after: Callable[[], None] | None = None) -> tuple[int, bytes]:
        """GET the sendsms URL with ``query`` (url-encoded parameters): (status, body). ``after`` runs
        on the same worker thread once smsbox accepted (2xx) — the adapter's journal: one hand-over
        per message instead of a second one to a thread of its own (docs/benchmarks.md §70); what
        it raises is raised here."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._get, query, after)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        self._executor.shutdown(wait=False)


__all__ = ["SendsmsPool"]
