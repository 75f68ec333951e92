"""The timer runner's two reads each tick — whether any timer is due (``fire_due``, in the writer) and
when the next one is (``next_due``, on its own thread) — read the timer index's first bucket, not all
of them: ``len()`` of a BTree walks (and loads) every bucket, and the runner asked it every 0.2 s,
so a store with many pending absence timers paid a walk of the whole index five times a second, in
the writer too (docs/benchmarks.md §88: ~20 bucket loads per tick during an email run)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from ZODB.Connection import Connection

from shopkeeper.store import Store

from .helpers import service_for_dir, write_rules

CART = """\
rules:
  - name: abandoned
    when:
      event: checkout_started
      absent: {event: order, within: 2h}
    then:
      - tag: abandoned
"""


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loads: list[str] = []
    orig = Connection.setstate

    def setstate(self: Any, obj: Any) -> None:
        loads.append(type(obj).__name__)
        return orig(self, obj)

    monkeypatch.setattr(Connection, "setstate", setstate)
    return loads


def test_the_timer_runner_reads_one_bucket_of_a_large_index(tmp_path: Path, rules_dir: Path,
                                                            counted: list[str]) -> None:
    write_rules(rules_dir, "cart.yaml", CART)
    svc = service_for_dir(rules_dir)
    uri = f"file://{tmp_path}/Data.fs"
    store = Store.open(uri)
    later = int((time.time() + 7200) * 1e6)
    with store.transaction() as f:
        idx = f.root["rule_timers"]
        for i in range(5000):  # pending, none due: ~170 buckets
            idx[(later + i, f"c{i:05d}", f"t{i}")] = "abandoned"
    store.close()
    store = Store.open(uri)  # a cold cache, as a read connection after the writer's commits
    try:
        with store.read() as f:
            f.root.get("rule_timers")  # the root and the tree itself: not what this counts
            del counted[:]
            assert svc.next_due(f) == later
            assert counted.count("OOBucket") <= 1, counted[:5]
        with store.transaction() as f:
            f.root.get("rule_timers")
            del counted[:]
            assert svc.fire_due(f, later - 1) == []
            assert counted.count("OOBucket") <= 1, counted[:5]
    finally:
        store.close()
