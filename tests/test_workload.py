"""The reference workload (benchmarks/workload.py) is deterministic and has the WORKLOAD.md shape."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from shopkeeper.events import validate_event

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "workload.py"


@pytest.fixture(scope="module")
def workload():
    spec = importlib.util.spec_from_file_location("shopkeeper_bench_workload", _PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_same_seed_same_events_other_seed_other_events(workload):
    a = list(workload.iter_events(2_000, seed=7))
    b = list(workload.iter_events(2_000, seed=7))
    c = list(workload.iter_events(2_000, seed=8))
    assert a == b
    assert a != c
    assert len(a) == 2_000


def test_reads_do_not_change_the_writes(workload):
    with_reads = [e for e in workload.iter_events(3_000, with_decide=True) if "kind" not in e]
    writes = list(workload.iter_events(len(with_reads)))
    assert writes == with_reads


def test_every_write_validates(workload):
    for i, raw in enumerate(workload.iter_events(3_000)):
        ev = validate_event(raw, index=i)
        assert ev.idempotency_key == raw["idempotency_key"]
        assert len(raw["idempotency_key"]) == 32
        int(raw["idempotency_key"], 16)
        if ev.type == "order":
            assert 5.0 <= ev.data["amount"] <= 499.99
            assert 1 <= ev.data["items"] <= 5


@pytest.mark.slow
def test_mix_proportions(workload):
    n = 60_000
    kinds = Counter(e.get("type", "decide") for e in workload.iter_events(n, redeliver=0.0, with_decide=True))
    want = {"page_view": 0.70, "email_open": 0.10, "email_click": 0.05, "order": 0.05, "call": 0.02, "decide": 0.08}
    assert set(kinds) == set(want)
    for kind, share in want.items():
        assert kinds[kind] / n == pytest.approx(share, abs=0.01), kind


@pytest.mark.slow
def test_hottest_customer_gets_about_13_percent(workload):
    n = 60_000
    people = Counter(e["identities"]["email"] for e in workload.iter_events(n, n_customers=100_000))
    email, hits = people.most_common(1)[0]
    assert email == workload.customer_email(workload.hottest_customer(100_000))
    assert 0.11 <= hits / n <= 0.155
    assert len(people) > 5_000  # a long tail, not a handful of customers


def test_redeliveries_repeat_recent_events_with_the_same_key(workload):
    evs = list(workload.iter_events(20_000, redeliver=0.01))
    keys = Counter(e["idempotency_key"] for e in evs)
    repeats = sum(v - 1 for v in keys.values())
    assert 100 <= repeats <= 320
    first = {}
    for e in evs:
        k = e["idempotency_key"]
        if k in first:
            assert e == first[k]  # redelivered unchanged
        else:
            first[k] = e
    once = Counter(e["idempotency_key"] for e in workload.iter_events(5_000, redeliver=0))
    assert max(once.values()) == 1


def test_the_clock_is_live_by_default_and_the_2023_start_stays_selectable(workload, monkeypatch):
    """The default start is "now" (§67: at the 2023 start every first page view of a run joins
    ``lapsed_visitors``, which a live hub never does); ``legacy`` still gives the old figures' start."""
    import time

    monkeypatch.delenv("SHOPKEEPER_BENCH_T0", raising=False)
    assert 0 < time.time() - workload._t0() <= 2 * 86400
    for v in ("legacy", "2023", " Legacy "):
        monkeypatch.setenv("SHOPKEEPER_BENCH_T0", v)
        assert workload._t0() == workload.LEGACY_T0
    monkeypatch.setenv("SHOPKEEPER_BENCH_T0", "1750000000")
    assert workload._t0() == 1_750_000_000.0
