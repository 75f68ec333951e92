"""What operators watch: the Prometheus endpoint and the JSON log lines."""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.request

import pytest

from shopkeeper.hub.cli import JsonFormatter
from shopkeeper.testing import wait_for

from .conftest import event, free_port, record, start_hub

pytestmark = pytest.mark.e2e


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(2) or "").split(","))) if m.group(2) else ""
        if got == want:
            return float(m.group(3))
    return 0.0


def test_metrics_endpoint_counts_requests_events_and_commits() -> None:
    port = free_port()
    r = start_hub(metrics_listen=f"127.0.0.1:{port}")
    try:
        c = r.client("admin")
        for i in range(3):
            record(c, event(key=f"m{i}"))
        record(c, event(key="m0"))  # a replay
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        r.hub.stop(grace=0.5)
    assert metric(text, "shopkeeper_events_total", outcome="applied") == 3
    assert metric(text, "shopkeeper_events_total", outcome="duplicate") == 1
    assert metric(text, "shopkeeper_commits_total") >= 1
    assert metric(text, "shopkeeper_rpc_requests_total", method="RecordInteraction", code="OK") == 4
    assert metric(text, "shopkeeper_rpc_latency_seconds_count", method="RecordInteraction") == 4
    assert "shopkeeper_writer_queue_depth" in text and "shopkeeper_conflicts_total" in text


def test_queue_depth_gauge_reads_the_writers_queue_when_scraped() -> None:
    """The writer no longer pushes its depth on every submit and job (docs/benchmarks.md §104): the
    gauge asks the writer when scraped, so it shows jobs waiting behind a busy one, and 0 once done."""
    r = start_hub()
    gate = threading.Event()
    try:
        writer = r.hub.engine.writer
        busy = writer.submit_op(lambda f, ch: gate.wait(10))
        wait_for(lambda: writer.queue_depth == 0, what="the writer busy with the first job")
        waiting = [writer.submit_op(lambda f, ch: None) for _ in range(3)]
        depth = r.hub.metrics.registry.get_sample_value("shopkeeper_writer_queue_depth")
        gate.set()
        busy.result(10)
        for f in waiting:
            f.result(10)
        after = r.hub.metrics.registry.get_sample_value("shopkeeper_writer_queue_depth")
    finally:
        gate.set()
        r.hub.stop(grace=0.5)
    assert depth == 3
    assert after == 0


def test_log_lines_are_json_with_the_extra_fields() -> None:
    rec = logging.LogRecord("shopkeeper.hub", logging.INFO, __file__, 1, "hub serving", (), None)
    rec.listen = "127.0.0.1:1"  # what `extra={...}` puts on a record
    line = json.loads(JsonFormatter().format(rec))
    assert line["level"] == "info" and line["logger"] == "shopkeeper.hub"
    assert line["msg"] == "hub serving" and line["listen"] == "127.0.0.1:1"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", line["ts"])
