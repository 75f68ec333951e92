"""The golden stores, one per past generation: the wave-1 store (generation 5, written by the wave-1
code, ``tests/data/golden/make_wave1.py``) and the generation-6 store (written by the code of
326c13c with that time's named steps, ``make_gen6.py``). Each must
open with the current code, evolve, and read back the very customers it held — identities, history,
facts, consents, scores, segments, rules and rule state, outbox — and still recognise every event it
applied as a duplicate (including the merged, unmerged and erased customers' events)."""

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
from golden_dump import dump_store  # noqa: E402

#: every past generation's golden store (add one when a generation or a record format changes)
GENERATIONS = ("wave1", "gen6")


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
        got = json.loads(json.dumps(dump_store(f), sort_keys=True))
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
    assert {"golden-5", "golden-6", "golden-16"} <= keys and len(events) == 16
    eve = [Event(type="page_view", channel="web", ts=1_790_061_200_000_000, identities=[("email", "eve@example.com"),
                                                                                     ("cookie", "c-eve")],
                 data={"url": "/"}, idempotency_key="golden-17")]
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
                assert "_hot" in c.__getstate__()
            got = json.loads(json.dumps(dump_store(f), sort_keys=True))
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
