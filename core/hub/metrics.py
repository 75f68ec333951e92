"""Prometheus metrics of one hub (own registry, so several hubs can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.conflicts = Counter("shopkeeper_conflicts", "ZODB write conflicts retried", registry=r)
        self.queue_depth = Gauge("shopkeeper_writer_queue_depth", "Requests waiting for the writer", registry=r)
        self.open_streams = Gauge("shopkeeper_open_streams", "Open Watch and StreamInteractions calls",
                                  registry=r)
        self.watchers = Gauge("shopkeeper_watchers", "Open Watch streams", registry=r)

    def serve(self, listen: str) -> object:
        from prometheus_client import start_http_server

        host, _, port = listen.rpartition(":")
        return start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)
