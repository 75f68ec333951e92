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
