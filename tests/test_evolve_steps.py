"""Named evolve steps: feature packages add root folders without store.py importing them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shopkeeper.store import Store
from shopkeeper.store import generations as store_mod


@pytest.mark.e2e  # a fresh interpreter
def test_opening_a_store_imports_no_feature_package(tmp_path: Path) -> None:
    """store.py sits below every feature: opening (and evolving) a new store must not pull in
    analysis, rules, the engine, the hub or adapters."""
    code = (
        "import sys\n"
        "from shopkeeper.store import Store\n"
        f"Store.open('file://{tmp_path}/Data.fs').close()\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('shopkeeper.analysis', 'shopkeeper.rules',"
        " 'shopkeeper.engine', 'shopkeeper.hub', 'shopkeeper.adapters')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.fixture
def named_steps(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    steps = dict(store_mod.NAMED_STEPS)
    monkeypatch.setattr(store_mod, "NAMED_STEPS", steps)
    return steps


def test_a_named_step_runs_once_per_store_and_is_recorded_by_name(tmp_path: Path, named_steps: dict) -> None:
    runs: list[str] = []

    def loyalty_folders(root: Any) -> None:
        from BTrees.OOBTree import OOBTree

        runs.append("loyalty")
        root["loyalty"] = OOBTree()

    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri) as s:  # opened before the feature is imported: nothing to run yet
        assert s.evolve_named() == []
        store_mod.register_evolve_step("loyalty", loyalty_folders)
        assert s.evolve_named() == ["loyalty"]  # the engine does this once plugins are loaded
        assert s.evolve_named() == []
        with s.read() as f:
            assert "loyalty" in f.root
            assert "loyalty" in f.meta["steps"]
    with Store.open(uri) as s, s.read() as f:  # reopened: recorded, not run again
        assert "loyalty" in f.meta["steps"]
    assert runs == ["loyalty"]


def test_the_analysis_folders_are_the_analysis_packages_named_step(tmp_path: Path) -> None:
    from shopkeeper.analysis.state import FOLDERS

    with Store.open(f"file://{tmp_path}/Data.fs") as s, s.read() as f:
        assert "analysis" in f.meta["steps"]
        assert sorted(f.root["analysis"].keys()) == sorted(FOLDERS)
