"""Prometheus metrics per hub and the Grafana dashboard that reads them (issue 17)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from hub.conftest import event, record, start_hub
from hub.test_hub_observability import metric

from shopkeeper._proto.v1 import admin_pb2
from shopkeeper.store import Store
from shopkeeper.testing import free_port

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "ops" / "grafana-dashboard.json"
#: the suffixes Prometheus adds to a counter's or histogram's samples
_SUFFIX = re.compile(r"_(total|bucket|sum|count|created)$")


def dashboard_metrics() -> dict[str, set[str]]:
    """Every ``shopkeeper_*`` metric named in a panel's query -> the panels naming it."""
    got: dict[str, set[str]] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for t in panel["targets"]:
            for name in re.findall(r"\bshopkeeper_[a-z_]+", t["expr"]):
                got.setdefault(name, set()).add(panel["title"])
    return got


def sample_names(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})? \S+$", text, re.M)}


def missing(wanted: dict[str, set[str]], exported: set[str]) -> dict[str, list[str]]:
    """Names queried but not exported (a histogram's or counter's base name counts as exported
    when its ``_bucket``/``_total``… samples are) -> the panels that query them."""
    def found(name: str) -> bool:
        return name in exported or (_SUFFIX.search(name) is None and
                                    any(n.startswith(name + "_") and _SUFFIX.search(n) for n in exported))

    return {name: sorted(panels) for name, panels in wanted.items() if not found(name)}


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


@pytest.mark.e2e
def test_every_dashboard_panel_queries_a_metric_a_real_hub_exports(tmp_path: Path) -> None:
    port = free_port()
    store = Store.open(f"file://{tmp_path}/Data.fs")
    r = start_hub(store=store, metrics_listen=f"127.0.0.1:{port}")
    try:
        c = r.client("admin")
        for i in range(3):
            record(c, event(key=f"m{i}"))
        record(c, event("message_request", email="bea@example.com", key="rq-b", template="offer", intent="i-b"))
        c.admin.Pack(admin_pb2.PackRequest(days=0), metadata=c.md)
        text = scrape(port)
    finally:
        r.hub.stop(grace=0.5)
        store.close()
    exported = sample_names(text)
    wanted = dashboard_metrics()
    assert len(wanted) >= 12
    assert missing(wanted, exported) == {}
    # and the figures behind the panels are what happened
    assert metric(text, "shopkeeper_outbox_depth", channel="email") == 1
    assert metric(text, "shopkeeper_commit_seconds_count") >= 4
    assert metric(text, "shopkeeper_writer_wait_seconds_count") >= 4
    assert metric(text, "shopkeeper_packs_total") == 1
    assert metric(text, "shopkeeper_last_pack_timestamp_seconds") > 1.7e9
    assert metric(text, "shopkeeper_rpc_latency_seconds_count", method="Pack") == 1


def test_the_dashboard_check_fails_for_a_metric_no_hub_exports() -> None:
    """The check above must be able to fail: a panel naming an unknown metric is reported."""
    exported = {"shopkeeper_events_total", "shopkeeper_commit_seconds_bucket"}
    wanted = {"shopkeeper_events_total": {"a"}, "shopkeeper_commit_seconds": {"b"},
              "shopkeeper_events_per_second": {"c"}, "shopkeeper_commit_seconds_sum": {"d"}}
    assert missing(wanted, exported) == {"shopkeeper_events_per_second": ["c"], "shopkeeper_commit_seconds_sum": ["d"]}
