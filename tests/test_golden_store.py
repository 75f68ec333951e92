"""The golden stores, one per past generation: the wave-1 store (generation 5, written by the wave-1
code, ``tests/data/golden/make_wave1.py``), the generation-6 store (written by the code of
326c13c with that time's named steps, ``make_gen6.py``) and the generation-6 store of e133eda (the
last code that defined its persistent classes beside their logic, ``make_gen6_e133eda.py``: every
record class pickled under its old path, since moved to the ``records`` modules). Each must
open with the current code, evolve, and read back the very customers it held — identities, history,
facts, consents, scores, segments, rules and rule state, outbox — and still recognise every event it
applied as a duplicate (including the merged, unmerged and erased customers' events). The
generation-6 store of 7277197 (``make_gen6_7277197.py``) holds long histories spilled into buckets
of pickled interactions, the format before generation 7 (``history-bytes``)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import Event
from shopkeeper.plugins import builtin_evolve_steps
from shopkeeper.store import CURRENT_GENERATION, Store

GOLDEN = Path(__file__).parent / "data" / "golden"
sys.path.insert(0, str(GOLDEN))
from golden_dump import dump_records, dump_store  # noqa: E402

#: every past generation's golden store (add one when a generation, a record format or a persistent
#: class's path changes); ``gen6-7277197``: spilled histories in the buckets' format before generation 7
GENERATIONS = ("wave1", "gen6", "gen6-e133eda", "gen6-7277197")


def _dump(f: Any, expected: dict[str, Any]) -> dict[str, Any]:
    """What the store holds, in the golden JSON's terms (the records beside the customers too, for
    the stores whose maker dumped them)."""
    got = dump_store(f)
    if "records" in expected:
        got["records"] = dump_records(f)
    return json.loads(json.dumps(got, sort_keys=True))


@pytest.fixture(params=GENERATIONS)
def golden(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, dict[str, Any]]:
    shutil.copy(GOLDEN / f"{request.param}.fs", tmp_path / "golden.fs")
    expected = json.loads((GOLDEN / f"{request.param}.json").read_text())
    store = Store.open(str(tmp_path / "golden.fs"), steps=builtin_evolve_steps())
    yield store, expected
    store.close()


def test_golden_store_evolves_and_reads_back_identical_customers(golden: Any) -> None:
    store, expected = golden
    assert store.generation == CURRENT_GENERATION
    with store.read() as f:
        got = _dump(f, expected)
    assert got["customers"].keys() == expected["customers"].keys()
    for cid, want in expected["customers"].items():
        assert got["customers"][cid] == want, cid
    assert got == expected


def _redeliveries(expected: dict[str, Any]) -> list[Event]:
    """Every event the golden store applied, sent again with its key, identities and timestamp."""
    out = []
    for c in expected["customers"].values():
        for it in c["history"]:
            if it["idempotency_key"]:
                out.append(Event(type=it["type"], channel=it["channel"], ts=it["ts"],
                                 identities=[tuple(p) for p in it["identities"]], data=it["data"],
                                 idempotency_key=it["idempotency_key"], touchpoint=it["touchpoint"]))
    return out


def test_golden_keys_stay_duplicates_after_evolve(golden: Any) -> None:
    """Merged (golden-5/6), unmerged (golden-16) and live customers' keys are duplicates; the erased
    customer's (golden-17/18) do not bring her back."""
    store, expected = golden
    events = _redeliveries(expected)
    keys = {e.idempotency_key for e in events}
    if "g7-ann-0" in keys:  # gen6-7277197 (spilled histories): cat merged into bob and back, dan erased
        assert {"g7-cat-0", "g7-bob-69", "g7-ann-149"} <= keys and len(events) >= 260
        erased = ("dan@example.com", "c-dan", "g7-dan-1", 1_790_000_420_000_000)
    else:
        assert {"golden-5", "golden-6", "golden-16"} <= keys and len(events) >= 16
        erased = ("eve@example.com", "c-eve", "golden-17", 1_790_061_200_000_000)
    eve = [Event(type="page_view", channel="web", ts=erased[3], identities=[("email", erased[0]),
                                                                           ("cookie", erased[1])],
                 data={"url": "/"}, idempotency_key=erased[2])]
    with Ingestor(store) as ing:
        results = ing.apply(events + eve)
    assert [r.status for r in results[:-1]] == ["duplicate"] * len(events)
    assert results[-1].status == "rejected" and results[-1].error_field == "identities.email"
    assert "asked to be forgotten" in results[-1].error
    with store.read() as f:
        assert f.counter("interactions") == expected["counters"]["interactions"]
        assert f.customer_by_identity("email", "eve@example.com") is None
        assert len(f.customers) == len(expected["customers"])


def test_golden_customers_survive_being_rewritten_in_the_new_format(golden: Any, tmp_path: Path) -> None:
    """Old records are packed lazily, on their next write: rewrite every customer, reopen, same dump."""
    store, expected = golden
    with store.transaction() as f:
        for c in f.customers.values():
            c._p_changed = True  # written again in the current format, nothing else changed
    store.close()
    reopened = Store.open(str(tmp_path / "golden.fs"))
    try:
        with reopened.read() as f:
            for c in f.customers.values():
                assert type(c.__getstate__()) is tuple  # generation 12's form
            got = _dump(f, expected)
        assert got == expected
    finally:
        reopened.close()


def test_a_generation_6_store_records_its_index_keepers_so_any_writer_keeps_them(tmp_path: Path) -> None:
    """326c13c's code ran the audience index's step but recorded no keeper (the store itself kept
    the index then). Opened once with the plugins' steps, the store names its keepers, so a later
    process that opens it with no steps still keeps the cards current on every write."""
    from shopkeeper import audience

    shutil.copy(GOLDEN / "gen6.fs", tmp_path / "golden.fs")
    Store.open(str(tmp_path / "golden.fs"), steps=builtin_evolve_steps()).close()
    with Store.open(str(tmp_path / "golden.fs")) as store:
        with store.read() as f:
            assert f.meta["kept"]["audience-index"] == "shopkeeper.audience:install"
            ann = f.customer_by_identity("email", "ann@example.com").id
            before = dict(audience.iter_cards(f.root))[ann]
        with store.transaction() as f:
            f.customers[ann].set_consent("sms", "marketing", True, "test", at=1)  # a contact fact: on the card
        with store.read() as f:
            assert dict(audience.iter_cards(f.root))[ann] != before


def _old_paths() -> dict[str, type]:
    """Every pickle alias the ``records`` modules declare: old ``module.Name`` -> the class now."""
    import importlib

    from shopkeeper.records import STABLE_MODULES

    out = {}
    for name in STABLE_MODULES:
        mod = importlib.import_module(name)
        out.update({old: getattr(mod, cls) for old, cls in getattr(mod, "OLD_PATHS", {}).items()})
    return out


def _pickled_classes(path: Path) -> dict[str, set[bytes]]:
    """``module.Name`` of every record in a FileStorage -> the oids of records written with it."""
    from ZODB.FileStorage import FileStorage
    from ZODB.utils import get_pickle_metadata

    out: dict[str, set[bytes]] = {}
    storage = FileStorage(str(path), read_only=True)
    try:
        for txn in storage.iterator():
            for rec in txn:
                if rec.data:
                    module, name = get_pickle_metadata(rec.data)
                    out.setdefault(f"{module}.{name}", set()).add(rec.oid)
    finally:
        storage.close()
    return out


def test_golden_stores_hold_every_moved_class_under_its_old_path_and_load_it() -> None:
    """Every persistent class moved into a ``records`` module (``OLD_PATHS``) has records pickled
    under its old path in some golden store, and each such record loads as the class now (not a
    ``ZODB.broken`` stand-in): the old module paths keep loading old pickles."""
    import ZODB
    from ZODB.broken import Broken
    from ZODB.FileStorage import FileStorage

    aliases = _old_paths()
    seen: set[str] = set()
    for gen in GENERATIONS:
        pickled = _pickled_classes(GOLDEN / f"{gen}.fs")
        db = ZODB.DB(FileStorage(str(GOLDEN / f"{gen}.fs"), read_only=True))
        try:
            conn = db.open()
            for path, oids in pickled.items():
                for oid in oids:
                    obj = conn.get(oid)
                    obj._p_activate()
                    assert not isinstance(obj, Broken), f"{gen}: {path} does not load"
                    if path in aliases:
                        assert type(obj) is aliases[path], (gen, path, type(obj))
                        seen.add(path)
            conn.close()
        finally:
            db.close()
    assert seen == set(aliases), f"no golden store holds a record pickled as {sorted(set(aliases) - seen)}"


def test_golden_records_rewritten_name_the_records_modules_and_read_back_identical(tmp_path: Path) -> None:
    """Every record of the e133eda store written again by the current code names its class's new
    module (no old path left but in the history), and the store reads back the same."""
    shutil.copy(GOLDEN / "gen6-e133eda.fs", tmp_path / "golden.fs")
    expected = json.loads((GOLDEN / "gen6-e133eda.json").read_text())
    aliases = _old_paths()
    with Store.open(str(tmp_path / "golden.fs"), steps=builtin_evolve_steps()) as store:
        with store.transaction() as f:
            for oid in _pickled_classes(tmp_path / "golden.fs").values():
                for o in oid:
                    obj = f.conn.get(o)
                    obj._p_activate()
                    obj._p_changed = True  # pickled again, by the current classes' paths
        store.db.pack()
    latest = _pickled_classes(tmp_path / "golden.fs")
    assert not set(latest) & set(aliases), sorted(set(latest) & set(aliases))
    assert {f"{c.__module__}.{c.__name__}" for c in aliases.values()} <= set(latest)
    with Store.open(str(tmp_path / "golden.fs")) as store, store.read() as f:
        assert _dump(f, expected) == expected
