"""Generation 11 (``key-log-pruning``): a customer's spilled idempotency keys are kept for the replay
window (``keylog.WINDOW_US``, 7 days after they were logged, up to 14), no longer forever. The ingest
loop prunes, in the writer's transaction, and publishes a ``keys_pruned`` change-feed entry; a key
inside the window still deduplicates, one outside is gone (a replay of it applies again, as
docs/data-model.md says); a log written before pruning reads as it is and starts its clock at its
next spill; merges and erasure carry or clear both logs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from shopkeeper import keylog
from shopkeeper.customer import KEY_WINDOW, Customer
from shopkeeper.engine import feed
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import Store

GOLDEN = Path(__file__).parent / "data" / "golden"
sys.path.insert(0, str(Path(__file__).parent))
from test_golden_store import _redeliveries  # noqa: E402

T0 = 1_750_000_000
DAY_US = 86_400_000_000
NOW = 1_800_000_000_000_000


class _Clock:
    def __init__(self) -> None:
        self.us = NOW

    def __call__(self) -> int:
        return self.us


@pytest.fixture(name="clock")
def _clock_fixture(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    c = _Clock()
    monkeypatch.setattr(keylog, "now_us", c)
    return c


def _ev(key: str, i: int = 0) -> Any:
    return validate_event({"type": "page_view", "identities": {"email": "ann@example.org"}, "ts": T0 + i,
                           "idempotency_key": key, "data": {"url": "/"}})


def _send(ing: Ingestor, prefix: str, n: int, start: int = 0) -> list[Any]:
    out = []
    for i in range(start, start + n):
        out.extend(ing.apply([_ev(f"{prefix}{i}", i)]))
    return out


def test_a_key_inside_the_window_deduplicates_and_one_outside_is_pruned_and_published(
        store: Store, clock: _Clock) -> None:
    with Ingestor(store, processors=[feed.interaction_processor]) as ing:
        _send(ing, "old", 2 * KEY_WINDOW)  # day 0: the first 24 keys spill into the log
        with store.read() as f:
            c = f.customers[next(iter(f.customers))]
            assert c.key_log_at == NOW and c.key_log_old is None and c.has_key("old0", T0 * 10**6)
        clock.us += 8 * DAY_US  # the log is a window old: the next spill starts a new one
        _send(ing, "mid", KEY_WINDOW)
        with store.read() as f:
            c = f.customers[c.id]
            assert c.key_log_old is not None and c.key_log_at == clock.us
            assert c.has_key("old0", T0 * 10**6)  # 8 days after it was logged: still kept (in the old log)
        assert [r.status for r in ing.apply([_ev("old0", 0)])] == ["duplicate"]
        with store.read() as f:  # a rotation that drops nothing publishes nothing
            assert not [e for e in feed.read(f, 0, 10_000) if e.kind == "keys_pruned"]
        clock.us += 8 * DAY_US  # 16 days after "old0" was logged, 8 after "mid*": the old log goes
        results = _send(ing, "new", KEY_WINDOW)
        pruned = [o for r in results for o in r.outputs if getattr(o, "kind", "") == "keys_pruned"]
        assert len(pruned) == 1 and pruned[0].customer_id == c.id
        assert int(pruned[0].detail) == NOW + 8 * DAY_US  # every key dropped was logged before then
        with store.read() as f:
            stored = [e for e in feed.read(f, 0, 10_000) if e.kind == "keys_pruned"]
            assert [e.cursor for e in stored] == [pruned[0].cursor]
            c = f.customers[c.id]
            assert not c.has_key("old0", T0 * 10**6)  # outside the window: pruned
            assert c.has_key("mid0", T0 * 10**6)  # logged 8 days ago: kept
        # a replay of a pruned key is a new event (docs/data-model.md, *Exactly once*)
        assert [r.status for r in ing.apply([_ev("old0", 0)])] == ["applied"]
        assert [r.status for r in ing.apply([_ev("mid0", 0)])] == ["duplicate"]


def test_a_log_written_before_pruning_starts_its_clock_at_its_next_spill(store: Store, clock: _Clock) -> None:
    with store.transaction() as f:
        c = f.add_customer(Customer("c", created_at=0))
        for i in range(3 * KEY_WINDOW):  # no ``prune``: a log as the code before generation 11 left it
            c.remember_key(f"k{i}", T0 + i)
        assert c.key_log_at == 0 and c.key_log is not None
    with store.transaction() as f:
        c = f.customers["c"]
        assert "key_log_at" not in c.__dict__ and c.key_log_at == 0  # the class default: an old record
        for i in range(KEY_WINDOW // 2):
            assert not c.remember_key(f"n{i}", T0 + 100 + i, True)
        assert c.key_log_at == NOW and c.key_log_old is None  # clock started, nothing dropped
    clock.us += 8 * DAY_US
    with store.transaction() as f:
        c = f.customers["c"]
        for i in range(KEY_WINDOW // 2):
            assert not c.remember_key(f"m{i}", T0 + 200 + i, True)  # rotated, nothing dropped yet
        assert c.has_key("k0", T0) and c.key_log_old is not None
    with store.read() as f:
        c = f.customers["c"]
        assert c.has_key("k0", T0) and c.has_key("n0", T0 + 100)  # read back from both logs


def test_merges_copy_both_logs_and_erasure_clears_both(clock: _Clock) -> None:
    a, b = Customer("a", created_at=0), Customer("b", created_at=0)
    for i in range(2 * KEY_WINDOW):
        a.remember_key(f"a{i}", T0 + i, True)
    clock.us += 8 * DAY_US
    for i in range(KEY_WINDOW):
        a.remember_key(f"x{i}", T0 + 100 + i, True)
    assert a.key_log_old is not None and "a0" not in a.recent_keys
    b.remember_keys_of(a)
    assert b.has_key("a0", T0) and b.has_key("x0", T0 + 100)
    assert set(keylog.entries(b)) >= set(keylog.entries(a))
    a.forget_keys()
    assert a.key_log is None and a.key_log_old is None and not a.has_key("a0", T0)


def test_a_dated_key_looks_in_the_old_log_only_when_the_new_one_lacks_it(clock: _Clock) -> None:
    c = Customer("c", created_at=0)
    for i in range(2 * KEY_WINDOW):
        c.remember_key(f"a{i}", T0 + i, True)
    clock.us += 8 * DAY_US
    for i in range(2 * KEY_WINDOW):
        c.remember_key(f"b{i}", T0 + 100 + i, True)
    assert c.key_log_v == keylog.DATED and "b0" not in c.recent_keys
    c.key_fp = None  # (a log not yet fingerprinted: looked up as before generation 13)
    probes: list[str] = []

    class Probe:
        def __init__(self, name: str, log: Any) -> None:
            self.name, self.log = name, log

        def __contains__(self, e: str) -> bool:
            probes.append(self.name)
            return e in self.log

    c.key_log, c.key_log_old = Probe("new", c.key_log), Probe("old", c.key_log_old)
    assert c.has_key("b0", T0 + 100) and probes == ["new"]
    probes.clear()
    assert c.has_key("a0", T0) and probes == ["new", "old"]
    probes.clear()
    assert not c.has_key("zz", T0) and probes == ["new", "old"]


def test_a_golden_stores_old_key_logs_read_upgrade_and_prune(tmp_path: Path, clock: _Clock) -> None:
    """gen6-7277197 holds key logs in tuples, written before generation 8 and 10: evolved, they read as
    they are; the next spill converts them and starts their clock; the golden keys stay duplicates a
    week on, and are pruned (only the spilled ones: the newest 16 stay in the record) two weeks on."""
    shutil.copy(GOLDEN / "gen6-7277197.fs", tmp_path / "g.fs")
    expected = json.loads((GOLDEN / "gen6-7277197.json").read_text())
    store = Store.open(str(tmp_path / "g.fs"), steps=builtin_evolve_steps())
    try:
        with store.read() as f:
            logged = {c.id: list(keylog.entries(c)) for c in f.customers.values() if c.key_log}
            assert logged and all(f.customers[cid].key_log_v == keylog.TUPLES for cid in logged)

        def more(tag: str) -> None:
            with store.transaction() as f:
                for cid in logged:
                    for i in range(KEY_WINDOW):
                        f.customers[cid].remember_key(f"{tag}-{cid}-{i}", T0 + i, True)

        more("now")
        with store.read() as f:
            assert all(f.customers[cid].key_log_at == NOW and f.customers[cid].key_log_v != keylog.TUPLES
                       for cid in logged)
        clock.us += 8 * DAY_US
        more("week")
        with Ingestor(store) as ing:
            assert {r.status for r in ing.apply(_redeliveries(expected))} == {"duplicate"}
        clock.us += 8 * DAY_US
        more("fortnight")
        with store.read() as f:
            for cid, pairs in logged.items():
                c = f.customers[cid]
                assert not set(keylog.entries(c)) & set(pairs)
                assert not any(c.has_key(k, ts) for ts, k in pairs)
    finally:
        store.close()


def test_a_backups_digest_covers_the_old_log(clock: _Clock) -> None:
    from shopkeeper.ops.verify import customer_digest

    def customer(extra: str) -> Customer:
        c = Customer("c", created_at=0)
        for i in range(2 * KEY_WINDOW):
            c.remember_key(f"{extra}{i}" if i < 8 else f"k{i}", T0 + i, True)
        return c

    a, b = customer("a"), customer("b")  # the same but for the spilled keys
    clock.us += 8 * DAY_US
    for c in (a, b):
        for i in range(2 * KEY_WINDOW):
            c.remember_key(f"n{i}", T0 + 100 + i, True)
        assert not {k for _, k in keylog.entries(c) if k.startswith(("a", "b"))} & set(c.key_log.keys())
    assert customer_digest(a) != customer_digest(b)
