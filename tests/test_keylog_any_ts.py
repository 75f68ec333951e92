"""Generation 13 (``key-fingerprints``): a redelivery with the same idempotency key for the same
customer is a duplicate whatever its ``ts``, for any run length, for the replay window (issue 10).

Before, a key spilled from the record's 16 newest was found only by ``(ts, key)``: a client that
stamps its events at send time (the Node example's ``ts: new Date()``) resent a run of more than
16 events for one customer as new events — the resend's oldest were applied anew and each of them
spilled an original's newer key before its own resend arrived (the lead's ``/tmp/dupe16.py``:
17, 20 or 40 events, 0 duplicates). Each test here failed on that code."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import pytest

from shopkeeper import identity_merge, keylog
from shopkeeper.customer import KEY_WINDOW, Customer
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import CURRENT_GENERATION, Store

sys.path.insert(0, str(Path(__file__).parent))
# the pruning tests' frozen writer clock (keylog.now_us) and their time constants
from test_keylog_pruning import DAY_US, NOW, T0, _Clock, _clock_fixture  # noqa: E402, F401 - the `clock` fixture


def _run(prefix: str, n: int, shift: int = 0, who: str = "ann@example.org") -> list[Any]:
    """``n`` events of one customer; ``shift`` seconds later: the same events resent by a client that
    stamps them again."""
    return [validate_event({"type": "page_view", "channel": "web", "identities": {"email": who},
                            "ts": T0 + i + shift, "idempotency_key": f"{prefix}{i}", "data": {"url": "/"}})
            for i in range(n)]


def _apply(ing: Ingestor, events: list[Any], one_per_txn: bool) -> list[str]:
    if one_per_txn:
        return [r.status for ev in events for r in ing.apply([ev])]
    return [r.status for r in ing.apply(events)]


def _interactions(store: Store, who: str = "ann@example.org") -> int:
    with store.read() as f:
        return len(f.customer(f.identities[("email", who)]).history)


@pytest.mark.parametrize("one_per_txn", [False, True], ids=["one group", "one event per transaction"])
@pytest.mark.parametrize("n", [17, 20, 40, 100])
def test_a_run_resent_with_new_timestamps_is_all_duplicates(store: Store, n: int, one_per_txn: bool) -> None:
    with Ingestor(store) as ing:
        assert _apply(ing, _run("k", n), one_per_txn) == ["applied"] * n
        assert _apply(ing, _run("k", n, shift=5), one_per_txn) == ["duplicate"] * n
        assert _apply(ing, _run("k", n, shift=3600), not one_per_txn) == ["duplicate"] * n
    assert _interactions(store) == n


def test_a_resend_across_the_pruning_boundary_is_what_the_docs_say(store: Store, clock: _Clock) -> None:
    """docs/data-model.md, *Exactly once*: found whatever the ts for at least 7 days after the key
    spilled (up to 14); once its log is dropped, a replay is a new event."""
    with Ingestor(store) as ing:
        assert set(_apply(ing, _run("a", 40), False)) == {"applied"}  # day 0: a0..a39 all spill below
        clock.us += 7 * DAY_US  # a window on: the next spill starts a new log, "a" kept in the old one
        assert set(_apply(ing, _run("b", 40, shift=100), True)) == {"applied"}
        with store.read() as f:
            c = f.customer(f.identities[("email", "ann@example.org")])
            assert c.key_log_old is not None and not any(k.startswith("a") for k in c.recent_keys)
        assert _apply(ing, _run("a", 40, shift=7 * 86_400), False) == ["duplicate"] * 40
        clock.us += 7 * DAY_US  # day 14: the next spill drops the log "a" was in
        assert set(_apply(ing, _run("c", 40, shift=200), True)) == {"applied"}
        assert _apply(ing, _run("b", 40, shift=300), True) == ["duplicate"] * 40  # 7 days old: kept
        # a0..a23 spilled on day 0: their log is dropped, a replay is new; a24..a39 were the newest 16
        # then and spilled on day 7, with b's first keys: kept
        assert _apply(ing, _run("a", 40, shift=14 * 86_400), False) == ["applied"] * 24 + ["duplicate"] * 16
    assert _interactions(store) == 3 * 40 + 24


def test_a_merge_and_an_unmerge_keep_both_customers_keys(store: Store) -> None:
    ann, bob = "ann@example.org", "bob@example.org"
    with Ingestor(store) as ing:
        _apply(ing, _run("a", 40, who=ann), False)
        _apply(ing, _run("b", 40, who=bob), True)
        with store.transaction() as f:
            survivor, absorbed = (f.customer(f.identities[("email", w)]) for w in (ann, bob))
            rec = identity_merge.merge(f, survivor, absorbed, reason="test", source="test")
        for who, prefix in ((ann, "a"), (bob, "b")):  # both now lead to the survivor
            assert _apply(ing, _run(prefix, 40, shift=60, who=who), False) == ["duplicate"] * 40
        with store.transaction() as f:
            identity_merge.unmerge(f, rec.id)
        for who, prefix in ((ann, "a"), (bob, "b")):  # each leads to its own customer again
            assert _apply(ing, _run(prefix, 40, shift=120, who=who), True) == ["duplicate"] * 40
    assert _interactions(store, ann) == _interactions(store, bob) == 40


def test_a_fingerprint_miss_probes_no_log_and_a_hit_is_confirmed_exactly() -> None:
    c = Customer("c", created_at=0)
    for i in range(3 * KEY_WINDOW):
        c.remember_key(f"k{i}", T0 + i)
    assert len(c.key_fp) == 4 * len(list(keylog.entries(c)))
    probes = [0]

    class Counting:
        def __init__(self, log: Any) -> None:
            self.log = log

        def __contains__(self, e: object) -> bool:
            probes[0] += 1
            return e in self.log

        def __len__(self) -> int:
            return len(self.log)

        def maxKey(self) -> str:  # noqa: N802 - the BTree's name
            return self.log.maxKey()

        def keys(self, *a: Any, **k: Any) -> Any:
            probes[0] += 1000
            return self.log.keys(*a, **k)

    log = c.key_log
    c.key_log = Counting(log)
    assert not c.has_key("new", T0) and probes[0] == 0  # a new event: the fingerprints alone
    assert c.has_key("k0", T0) and probes[0] == 1  # the first delivery's ts: one probe
    assert c.has_key("k0", T0 + 99) and probes[0] == 1002  # another ts: a probe, then a scan
    # a key whose fingerprint collides with a logged one's is still new: the scan finds no entry
    c.key_fp = keylog.with_fingerprints(c.key_fp, ["not-logged"])
    assert not c.has_key("not-logged", T0)
    assert keylog.fingerprint("\ud800") != keylog.fingerprint("\ud801")  # (JSON allows lone surrogates)


def test_the_fingerprints_stay_sorted_as_spills_merge_theirs_in() -> None:
    import random
    import struct

    rnd = random.Random(7)
    fps, keys = b"", []
    for _ in range(60):
        batch = [f"{rnd.getrandbits(64):x}" for _ in range(rnd.choice((1, 8, 8, 30)))]
        batch.append(rnd.choice(keys) if keys else "dup")  # a key logged twice (a merge's copy)
        keys += batch
        fps = keylog.with_fingerprints(fps, batch)
        held = list(struct.unpack(f"<{len(fps) // 4}I", fps))
        assert held == sorted(keylog.fingerprint(k) for k in keys)
    c = Customer("c", created_at=0)
    c.key_fp, c.key_log = fps, object()  # (a log that is never reached: a miss decides alone)
    assert all(keylog._holds(fps, keylog.fingerprint(k)) for k in keys)
    assert not any(c.has_key(f"new{i}", T0) for i in range(1000))


def test_a_log_from_before_is_looked_up_as_before_until_its_next_spill(tmp_path: Path, storage_loads: Any) -> None:
    """Lazy and O(1) at open: a store at generation 12 opens without walking its customers; a log
    it holds (no fingerprints) finds a key with the same ts only, until a spill fingerprints it."""

    uri = str(tmp_path / "s.fs")
    with Store.open(uri, steps=builtin_evolve_steps()) as s, s.transaction() as f:
        for i in range(200):
            c = f.add_customer(Customer(f"c{i}", created_at=0))
            for j in range(3 * KEY_WINDOW):
                c.remember_key(f"k{j}", T0 + j)
            del c.key_fp  # what generation 12 wrote: no fingerprints
        f.meta["generation"] = 12
    with contextlib.ExitStack() as stack:
        with storage_loads.counting():
            s = stack.enter_context(Store.open(uri, steps=builtin_evolve_steps()))
        assert s.generation == CURRENT_GENERATION >= 13
        assert storage_loads.count < 60  # the root, meta and a few folders; 200 customers walked: > 200
        with s.read() as f:
            c = f.customers["c0"]
            assert c.key_fp is None and c.has_key("k0", T0) and not c.has_key("k0", T0 + 5)
        with s.transaction() as f:
            c = f.customers["c0"]
            for j in range(KEY_WINDOW // 2):
                c.remember_key(f"n{j}", T0 + 500 + j)
        with s.read() as f:
            c = f.customers["c0"]
            assert c.key_fp is not None and c.has_key("k0", T0 + 5) and c.has_key("n0", T0)
            assert not c.has_key("k999", T0)
            assert f.customers["c1"].key_fp is None  # untouched: as it was


def test_a_backups_digest_covers_the_fingerprints() -> None:
    from shopkeeper.ops.verify import _stored_state, customer_digest

    a, b = Customer("c", created_at=0), Customer("c", created_at=0)
    for c in (a, b):
        for i in range(3 * KEY_WINDOW):
            c.remember_key(f"k{i}", T0 + i)
    assert customer_digest(a) == customer_digest(b)
    b.key_fp = b.key_fp[:-4]  # a backup that lost a fingerprint would apply that key's resend twice
    assert customer_digest(a) != customer_digest(b)
    # a customer without fingerprints digests as older manifests did
    assert "key_fp" not in _stored_state(Customer("d", created_at=0))


def test_the_confirming_scan_reads_every_entry_whatever_its_ts() -> None:
    """The scan reads each log newest first in growing windows of event time; an entry whose ts sorts
    apart (a historical import's negative ts, a stamped 0, a very wide one) is still reached."""
    c = Customer("c", created_at=0)
    odd = [(-2_208_988_800_000_000, "neg"), (0, "zero"), (16**16 + 5, "wide"), (T0 * 10**6, "now")]
    for ts, key in odd:
        c.remember_key(key, ts)
    for i in range(4 * KEY_WINDOW):
        c.remember_key(f"k{i}", T0 * 10**6 + i * 86_400_000_000)  # a day apart: many windows
    logged = [k for _, k in keylog.entries(c)]
    assert {"neg", "zero", "wide", "now", "k0"} <= set(logged)
    assert all(c.has_key(k, 1) for k in logged) and not c.has_key("k999", 1)
