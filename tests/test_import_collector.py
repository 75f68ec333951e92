"""An import collects the collector's middle generation rarely while it runs and puts the process's
thresholds back afterwards, also when it fails (``importer.relaxed_collector``)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from shopkeeper.importer import Importer, ImportOptions
from shopkeeper.importer.importer import IMPORT_GC_OLDER
from shopkeeper.store import Store


def _file(tmp_path: Path, n: int) -> str:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps({"type": "page_view", "channel": "web", "ts": 1_700_000_000 + i,
                                        "identities": {"email": f"c{i % 7}@example.org"},
                                        "data": {"url": "/"}, "idempotency_key": f"k{i}"}) + "\n"
                            for i in range(n)))
    return str(path)


def test_an_import_relaxes_the_middle_generation_and_restores_the_thresholds(tmp_path: Path) -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    store = Store.open(f"file://{tmp_path}/Data.fs")
    try:
        importer = Importer(store, ImportOptions(batch_size=5),
                            on_progress=lambda *_: seen.append(gc.get_threshold()))
        summary = importer.run([_file(tmp_path, 20)])
    finally:
        store.close()
    assert summary.applied == 20
    assert seen and all(t[0] == before[0] and t[1] >= IMPORT_GC_OLDER and t[2] == before[2] for t in seen)
    assert gc.get_threshold() == before


def test_the_thresholds_come_back_when_an_import_fails(tmp_path: Path) -> None:
    before = gc.get_threshold()
    store = Store.open(f"file://{tmp_path}/Data.fs")

    def boom(*_: object) -> None:
        assert gc.get_threshold()[1] >= IMPORT_GC_OLDER
        raise RuntimeError("stop")

    try:
        with pytest.raises(RuntimeError, match="stop"):
            Importer(store, ImportOptions(batch_size=5), on_progress=boom).run([_file(tmp_path, 10)])
    finally:
        store.close()
    assert gc.get_threshold() == before


@pytest.fixture
def program_collector():  # type: ignore[no-untyped-def]
    """As the ``shopkeeper`` program runs it (``startup_gc._program``), restored after the test."""
    from shopkeeper import startup_gc

    was, program, settled = gc.isenabled(), startup_gc._program, startup_gc._settled
    gc.unfreeze()
    gc.enable()
    yield startup_gc
    startup_gc._program, startup_gc._settled = program, settled
    gc.unfreeze()
    gc.enable() if was else gc.disable()


def test_the_program_freezes_each_committed_batch(tmp_path: Path, program_collector, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """In the program, every committed batch is frozen out of the collector's sight; in-process
    (a test, a hub) nothing is frozen."""
    frozen: list[int] = []
    store = Store.open(f"file://{tmp_path}/Data.fs")
    try:
        program_collector._program = False
        Importer(store, ImportOptions(batch_size=5)).run([_file(tmp_path, 20)])
        assert gc.get_freeze_count() == 0
        program_collector._program = True
        original = program_collector.settle_batch

        def settle() -> None:
            original()
            frozen.append(gc.get_freeze_count())

        monkeypatch.setattr(program_collector, "settle_batch", settle)
        summary = Importer(store, ImportOptions(batch_size=5)).run([_file(tmp_path, 20)])
    finally:
        store.close()
    assert summary.duplicates == 20
    assert len(frozen) == 4 and frozen[0] > 0 and frozen == sorted(frozen)


def test_frozen_batches_go_back_to_the_collector_past_the_bound(program_collector, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Cyclic garbage frozen with a batch is not collected while frozen: past ``SETTLED_MAX`` frozen
    objects everything is handed back (and the garbage collected), then freezing starts afresh."""
    import weakref

    class Node:
        pass

    program_collector._program, program_collector._settled = True, None
    monkeypatch.setattr(program_collector, "SETTLED_MAX", 5_000)  # this process holds far more
    node = Node()
    node.me = node  # type: ignore[attr-defined]
    ref = weakref.ref(node)
    del node
    program_collector.settle_batch()
    base = gc.get_freeze_count()
    assert base > 5_000  # the first freeze: the base, however large (this process holds far more)
    gc.collect()
    assert ref() is not None  # frozen garbage stays while frozen
    kept = [[i] for i in range(3_000)]  # what a batch leaves alive
    program_collector.settle_batch()
    assert gc.get_freeze_count() >= base + 3_000  # under the bound: frozen too
    kept += [[i] for i in range(3_000)]
    program_collector.settle_batch()
    assert gc.get_freeze_count() >= base + 6_000  # the check counts what was frozen before this batch
    program_collector.settle_batch()  # 6,000 frozen beyond the base: past the bound, handed back
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert ref() is None and len(kept) == 6_000
    program_collector.settle_batch()
    assert gc.get_freeze_count() > 5_000  # afresh: a new base
