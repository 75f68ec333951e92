"""Prometheus metrics of one hub (own registry, so several hubs can live in one process).

Why ``prometheus_client``: it is the Prometheus project's own Python client, maintained with the
server and the text format, thread-safe, and serves ``/metrics`` on its own small HTTP server;
nothing hand-written here formats samples. Every name below is queried by the Grafana dashboard
in ``docs/ops/grafana-dashboard.json`` (a test scrapes a real hub and checks each panel's metric
exists); rename one and change the dashboard with it.

===========================================  ==================================================
metric                                       meaning
===========================================  ==================================================
``shopkeeper_events_total{outcome}``         events by outcome (applied, duplicate, rejected);
                                             events/s is ``rate()`` of it
``shopkeeper_commits_total``                 group commits of event batches
``shopkeeper_commit_batch_events``           events per group commit (histogram)
``shopkeeper_commit_seconds``                one writer transaction, apply + commit + retries
``shopkeeper_writer_wait_seconds``           a request's time in the writer's queue
``shopkeeper_writer_queue_depth``            requests waiting for the writer
``shopkeeper_conflicts_total``               write conflicts retried (ConflictError)
``shopkeeper_outbox_depth{channel}``         intents not yet final, per channel (cached ~10 s)
``shopkeeper_rpc_requests_total``            RPCs by method and status code
``shopkeeper_rpc_latency_seconds{method}``   RPC latency (whole call for streams)
``shopkeeper_packs_total``, ``…_pack_seconds``, ``…_last_pack_timestamp_seconds``   packs
``shopkeeper_open_streams``, ``…_watchers``  long-lived calls
===========================================  ==================================================
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("shopkeeper_rpc_requests", "RPCs handled, by method and status code",
                                ["method", "code"], registry=r)
        self.latency = Histogram("shopkeeper_rpc_latency_seconds", "RPC latency (whole call for streams)",
                                 ["method"], registry=r,
                                 buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5, 1, 2.5, 10))
        self.events = Counter("shopkeeper_events", "Events processed by the writer, by outcome",
                              ["outcome"], registry=r)
        self.commits = Counter("shopkeeper_commits", "Transactions committed by the writer", registry=r)
        self.commit_events = Histogram("shopkeeper_commit_batch_events", "Events per group commit", registry=r,
                                       buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000))
        self.commit_seconds = Histogram("shopkeeper_commit_seconds",
                                        "One writer transaction: apply, commit (fsync) and conflict retries",
                                        registry=r, buckets=_SECONDS)
        self.wait_seconds = Histogram("shopkeeper_writer_wait_seconds",
                                      "Time a request waited in the writer's queue", registry=r, buckets=_SECONDS)
        self.conflicts = Counter("shopkeeper_conflicts", "ZODB write conflicts retried", registry=r)
        #: each outcome's child bound once: ``labels()`` per commit (a tuple, a lock, a dict lookup) was about a
        #: quarter of the writer's stats per lone commit (docs/benchmarks.md §104)
        self._outcomes = {o: self.events.labels(o) for o in ("applied", "duplicate", "rejected")}
        self.queue_depth = Gauge("shopkeeper_writer_queue_depth", "Requests waiting for the writer", registry=r)
        self.open_streams = Gauge("shopkeeper_open_streams", "Open Watch and StreamInteractions calls",
                                  registry=r)
        self.watchers = Gauge("shopkeeper_watchers", "Open Watch streams", registry=r)
        self.packs = Counter("shopkeeper_packs", "Packs of the store finished by this hub", registry=r)
        self.pack_seconds = Histogram("shopkeeper_pack_seconds", "Duration of a pack", registry=r,
                                      buckets=(0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600))
        self.last_pack = Gauge("shopkeeper_last_pack_timestamp_seconds",
                               "When this hub's last pack finished (seconds since 1970)", registry=r)

    def writer_stat(self, name: str, n: int) -> None:
        """The writer's ``on_stats`` callback (:class:`~shopkeeper.engine.writer.Writer`): one figure of
        a commit, by name (the engine's ``pack`` too). Called on the writer's thread after every commit,
        so the commonest names come first."""
        if name == "wait_us":
            self.wait_seconds.observe(n / 1e6)
        elif name == "commit_us":
            self.commit_seconds.observe(n / 1e6)
        elif name == "commit":
            self.commits.inc()
            self.commit_events.observe(n)
        elif name == "conflicts":
            self.conflicts.inc(n)
        elif name == "pack":
            self.packs.inc()
            self.pack_seconds.observe(n / 1e6)
            self.last_pack.set_to_current_time()
        elif name == "queue":  # (a writer that still pushes its depth; this one does not: see watch_writer)
            self.queue_depth.set(n)
        elif n:
            child = self._outcomes.get(name)
            (child if child is not None else self.events.labels(name)).inc(n)

    def watch_writer(self, depth: Callable[[], int]) -> None:
        """Report ``shopkeeper_writer_queue_depth`` from ``depth()`` (the writer's ``queue_depth``) when
        scraped, instead of a gauge set on every submit and every job (docs/benchmarks.md §104)."""
        self.queue_depth.set_function(depth)

    def watch_outbox(self, count: Callable[[], dict[str, int]], max_age: float = 10.0) -> None:
        """Report ``shopkeeper_outbox_depth{channel}`` from ``count()`` (channel -> open intents),
        called at most every ``max_age`` seconds: counting reads the store's outbox index."""
        self.registry.register(_OutboxDepth(count, max_age))

    def serve(self, listen: str) -> object:
        from prometheus_client import start_http_server

        host, _, port = listen.rpartition(":")
        return start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)


class _OutboxDepth(Collector):
    def __init__(self, count: Callable[[], dict[str, int]], max_age: float) -> None:
        self._count = count
        self._max_age = max_age
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, int]] | None = None

    def describe(self) -> Iterator[Any]:
        yield GaugeMetricFamily("shopkeeper_outbox_depth", "Outbox intents not yet final, per channel",
                                labels=["channel"])

    def collect(self) -> Iterator[Any]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self._max_age:
                try:
                    self._cached = (time.monotonic(), self._count())
                except Exception:  # the store is closing: report nothing rather than fail the scrape
                    self._cached = (time.monotonic(), {})
            depths = self._cached[1]
        g = GaugeMetricFamily("shopkeeper_outbox_depth", "Outbox intents not yet final, per channel",
                              labels=["channel"])
        for channel, n in sorted(depths.items()):
            g.add_metric([channel], n)
        yield g
