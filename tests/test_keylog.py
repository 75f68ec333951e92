"""Generation 8 (``key-log-strings``): a customer's spilled idempotency keys are one string each
(``shopkeeper.keylog``). Logs written before (``(ts, key)`` tuples) are read as they are and
converted in place on their next spill; either way a key is found exactly when the guarantee says
(logged with the asked ts, or with 0), merges and unmerges carry both formats, a dated event's key
is looked up once when no key was logged with ts 0, and a spill's bucket costs ZODB's
``persistent_id`` hook one call per entry instead of three (docs/benchmarks.md §77)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from BTrees.OOBTree import OOTreeSet

from shopkeeper import keylog
from shopkeeper.customer import KEY_WINDOW, Customer
from shopkeeper.store import Store

T = 1_790_000_000_000_000


def _old_log(c: Customer, pairs: list[tuple[int, str]]) -> None:
    """What the code before generation 8 wrote: a log of ``(ts, key)`` tuples."""
    c.key_log = OOTreeSet(pairs)


def test_an_old_log_is_read_as_it_is_and_converted_on_its_next_spill(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "s.fs"))
    old = [(T + i, f"k{i}") for i in range(40)] + [(0, "legacy-1")]
    with store.transaction() as f:
        c = f.add_customer(Customer("c", created_at=0))
        _old_log(c, old)
    with store.read() as f:
        c = f.customers["c"]
        assert c.key_log_v == keylog.TUPLES
        assert c.has_key("k3", T + 3) and c.has_key("legacy-1", T + 99) and c.has_key("legacy-1", 0)
        assert not c.has_key("k3", T + 4) and not c.has_key("nope", T)
    with store.transaction() as f:
        c = f.customers["c"]
        for i in range(KEY_WINDOW + 1):  # the window overflows: keys spill into the old log
            c.remember_key(f"new{i}", T + 1000 + i)
    with store.read() as f:
        c = f.customers["c"]
        assert c.key_log_v == keylog.STRINGS  # it holds a key logged with ts 0
        assert {type(e) for e in c.key_log} == {str}
        assert list(keylog.entries(c))[:len(old)] == sorted(old)  # the same keys, time-ordered (0 first)
        assert (0, "legacy-1") in set(keylog.entries(c))
        assert c.has_key("k3", T + 3) and c.has_key("legacy-1", T + 99) and c.has_key("new0", T + 1000)
        assert not c.has_key("k40", T + 3)
        # the spill fingerprinted the log (generation 13): its keys are found whatever the ts now
        assert c.key_fp is not None and c.has_key("k3", T + 4) and c.has_key("k3", 0)
        assert all(c.has_key(k, ts) for ts, k in old)
    store.close()


class _Counting:
    """A log that counts its lookups (``keylog.has`` looks up with ``in``)."""

    def __init__(self, log: Any) -> None:
        self.log, self.probes = log, 0

    def __contains__(self, e: object) -> bool:
        self.probes += 1
        return e in self.log


def test_a_dated_key_is_looked_up_once_unless_keys_were_logged_with_ts_0() -> None:
    """(A log from before generation 13, not fingerprinted: ``key_fp`` None.)"""
    c = Customer("c", created_at=0)
    for i in range(KEY_WINDOW + 1):
        c.remember_key(f"k{i}", T + i)
    assert c.key_log_v == keylog.DATED
    c.key_fp = None
    counting = c.key_log = _Counting(c.key_log)
    assert not c.has_key("other", T + 5) and counting.probes == 1
    assert c.has_key("k0", T) and counting.probes == 2
    assert not c.has_key("other", 0) and counting.probes == 3  # stamped: the one lookup is (0, key)
    c = Customer("d", created_at=0)
    c.log_key("legacy", 0)  # the generation-6 step's wave-1 keys, ts unknown
    assert c.key_log_v == keylog.STRINGS
    c.key_fp = None
    counting = c.key_log = _Counting(c.key_log)
    assert c.has_key("legacy", T + 7) and counting.probes == 2
    assert not c.has_key("other", T + 5) and counting.probes == 4


def test_merges_carry_keys_of_either_format() -> None:
    a, b, d = Customer("a", created_at=0), Customer("b", created_at=0), Customer("d", created_at=0)
    _old_log(a, [(T, "a-old"), (0, "a-legacy")])
    for i in range(KEY_WINDOW + 3):
        b.remember_key(f"b{i}", T + i)
    b.remember_keys_of(a)
    assert b.key_log_v == keylog.STRINGS
    assert b.has_key("a-old", T) and b.has_key("a-legacy", T + 1) and b.has_key("b0", T)
    d.remember_keys_of(b)  # a customer without a log takes a copy of a new one
    assert set(keylog.entries(d)) == set(keylog.entries(b)) and d.has_key("a-legacy", T + 2)
    assert all(d.has_key(k, ts) for k, ts in b.recent_keys.items())
    d.forget_keys()
    assert not d.has_key("b0", T) and list(keylog.entries(d)) == []


def test_entries_name_one_pair_whatever_the_timestamp() -> None:
    for ts, key in ((0, "k"), (T, "with space"), (-2_208_988_800_000_000, "1900"), (10**21, "far"), (T, "")):
        assert keylog.split(keylog.entry(ts, key)) == (ts, key)
    stamps = [0, 1, 946_684_800_000_000, T, T + 1, 16**15]
    assert sorted(keylog.entry(ts, "k") for ts in stamps) == [keylog.entry(ts, "k") for ts in stamps]


def test_a_spill_rewrites_the_log_with_one_persistent_id_call_per_entry(tmp_path: Path,
                                                                        persistent_id_calls: list[int]) -> None:
    store = Store.open(str(tmp_path / "s.fs"))
    with store.transaction() as f:
        c = f.add_customer(Customer("c", created_at=0))
        for i in range(KEY_WINDOW + 1 + 2 * (KEY_WINDOW // 2)):  # three spills: 24 keys in the log
            c.remember_key(f"key-{i:04d}-{'x' * 24}", T + i)
    calls = persistent_id_calls
    before = len(calls)
    with store.transaction() as f:
        c = f.customers["c"]
        for i in range(KEY_WINDOW // 2):  # the fourth spill: 32 entries, the log rewritten
            c.remember_key(f"more-{i}", T + 500 + i)
        c.key_log._p_changed = True  # (written whether or not the spill split it)
    entries = len(list(keylog.entries(c)))
    assert entries == 4 * (KEY_WINDOW // 2)
    # the log's entries once each, plus the customer record and the log's tree and buckets (~34):
    # 66; before generation 8 three per entry: 132
    assert entries <= len(calls) - before < entries + 40, len(calls) - before  # (the counter counts)
    store.close()
