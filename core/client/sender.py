"""Batching events onto one stream with back-pressure: :class:`EventSender` (``Client.sender()``)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import grpc

from .._proto.v1 import (
    common_pb2,
    interactions_pb2,
)
from .calls import RETRYABLE, make_event

if TYPE_CHECKING:
    from .sync import Client


class EventSender:
    """Batches events onto one ``StreamInteractions`` stream; each ``send`` returns a future.

    **Back-pressure**: at most ``max_pending_batches`` batches wait unacknowledged; ``send``
    blocks beyond that, so a fast producer is slowed to what the hub commits. If the stream
    breaks with ``UNAVAILABLE``, it is reopened and every unacknowledged batch is resent —
    safe, because the hub acknowledges replays of an idempotency key as ``DUPLICATE``.
    """

    def __init__(self, client: Client, *, batch_size: int = 500, linger: float = 0.02,
                 max_pending_batches: int = 8) -> None:
        self.client = client
        self.batch_size = batch_size
        self.linger = linger
        self._slots = threading.BoundedSemaphore(max_pending_batches)
        self._buf: list[tuple[common_pb2.Event, Future]] = []
        self._buf_since = 0.0
        self._lock = threading.Lock()
        self._outbox: queue.Queue = queue.Queue()
        self._unacked: dict[str, tuple[interactions_pb2.EventBatch, list[Future]]] = {}
        self._seq = 0
        self._closed = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="shopkeeper-sender", daemon=True)
        self._thread.start()
        self._ticker = threading.Thread(target=self._tick, name="shopkeeper-sender-linger", daemon=True)
        self._ticker.start()

    def __call__(self, event: Mapping[str, Any] | common_pb2.Event) -> Future:
        return self.send(event)

    def send(self, event: Mapping[str, Any] | common_pb2.Event) -> Future:
        if self._closed:
            raise RuntimeError("sender is closed")
        if self.error is not None:
            raise self.error
        fut: Future = Future()
        with self._lock:
            if not self._buf:
                self._buf_since = time.monotonic()
            self._buf.append((make_event(event), fut))
            full = len(self._buf) >= self.batch_size
        if full:
            self._flush_buffer()
        return fut

    def _flush_buffer(self) -> None:
        with self._lock:
            items, self._buf = self._buf, []
        if not items:
            return
        self._slots.acquire()  # back-pressure: wait for an acknowledgement
        self._seq += 1
        batch = interactions_pb2.EventBatch(batch_id=str(self._seq), events=[e for e, _ in items])
        self._unacked[batch.batch_id] = (batch, [f for _, f in items])
        self._outbox.put(batch)

    def _tick(self) -> None:
        while not self._closed:
            time.sleep(self.linger)
            if self._buf and time.monotonic() - self._buf_since >= self.linger:
                self._flush_buffer()

    def flush(self, timeout: float | None = None) -> None:
        """Send what is buffered and wait until every event sent so far is acknowledged."""
        self._flush_buffer()
        futs = [f for _, fs in list(self._unacked.values()) for f in fs]
        for f in futs:
            f.result(timeout)

    def close(self, timeout: float | None = 60) -> None:
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._outbox.put(None)
        self._thread.join(timeout)

    def __enter__(self) -> EventSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _requests(self, resend: list[interactions_pb2.EventBatch]) -> Iterator[interactions_pb2.EventBatch]:
        yield from resend
        while True:
            batch = self._outbox.get()
            if batch is None:
                return
            yield batch

    def _run(self) -> None:
        attempt = 0
        resend: list[interactions_pb2.EventBatch] = []
        while True:
            try:
                for ack in self.client.interactions.StreamInteractions(self._requests(resend),
                                                                       metadata=self.client.metadata):
                    attempt = 0
                    batch, futs = self._unacked.pop(ack.batch_id, (None, []))
                    for st, f in zip(ack.statuses, futs, strict=False):
                        f.set_result(st)
                    if batch is not None:
                        self._slots.release()
                return
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE or attempt >= self.client.retries:
                    self.error = exc
                    for _b, futs in self._unacked.values():
                        for f in futs:
                            if not f.done():
                                f.set_exception(exc)
                    return
                time.sleep(self.client._delay(attempt))
                attempt += 1
                resend = [b for b, _ in self._unacked.values()]
