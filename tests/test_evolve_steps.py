"""Named evolve steps: plugins own their root folders through ``shopkeeper_evolve_steps``; the
store imports none of them, and no root key is made lazily by the code that uses it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from BTrees.OOBTree import OOBTree

from shopkeeper import audience, hookimpl
from shopkeeper.customer import Customer
from shopkeeper.engine import Engine
from shopkeeper.identity import attach
from shopkeeper.plugins import PluginError, builtin_evolve_steps, evolve_steps, get_plugin_manager
from shopkeeper.store import EVOLVE_STEPS, EvolveStep, Store, StoreError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e  # a fresh interpreter
def test_opening_a_store_imports_no_feature_package(tmp_path: Path) -> None:
    """The store sits below every feature: opening (and evolving) a new store must not pull in
    analysis, rules, campaigns, the audience index, the engine, the hub or adapters."""
    code = (
        "import sys\n"
        "from shopkeeper.store import Store\n"
        f"Store.open('file://{tmp_path}/Data.fs').close()\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('shopkeeper.analysis', 'shopkeeper.rules',"
        " 'shopkeeper.engine', 'shopkeeper.hub', 'shopkeeper.adapters', 'shopkeeper.campaigns',"
        " 'shopkeeper.audience', 'shopkeeper.outbox')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


class Loyalty:
    """A third-party plugin that owns one root folder, as docs/plugins.md shows."""

    def __init__(self) -> None:
        self.runs = 0

    def make_folder(self, root: Any) -> None:
        self.runs += 1
        if "loyalty" not in root:
            root["loyalty"] = OOBTree()

    @hookimpl
    def shopkeeper_evolve_steps(self) -> list[EvolveStep]:
        return [EvolveStep("loyalty", self.make_folder)]


def test_hook_shopkeeper_evolve_steps(tmp_path: Path) -> None:
    """The engine runs a plugin's step once per store, records it by name, and not again on reopen."""
    plugin = Loyalty()
    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri) as s:
        with s.read() as f:
            assert "loyalty" not in f.root  # the store knows no plugin by itself
        engine = Engine(s, get_plugin_manager(load_entrypoints=False, extra=(plugin,))).start()
        engine.stop()
        with s.read() as f:
            assert isinstance(f.root["loyalty"], OOBTree) and "loyalty" in f.meta["steps"]
            assert "analysis" in f.root and "outbox" in f.root  # the built-ins' steps, by the same hook
    with Store.open(uri, steps=evolve_steps(get_plugin_manager(load_entrypoints=False, extra=(plugin,)))) as s:
        assert s.add_steps() == []
    assert plugin.runs == 1


def test_a_step_added_to_a_running_store_runs_on_its_writer_and_is_published(shopkeeper_commit_guard: Any) -> None:
    """Once a writer holds the store, ``Store.add_steps`` (a plugin's steps on a running store) runs
    the missing steps as writer operations — no other thread commits — and each is published on the
    change feed as an ``admin`` entry (``event_type`` ``evolve_step``, ``detail`` its name)."""
    from shopkeeper.engine import feed
    from shopkeeper.engine.writer import Writer
    from shopkeeper.identity import IdentityConfig, Resolver

    store = Store.open("memory://")
    published: list[Any] = []
    w = Writer(store, Resolver(IdentityConfig()), on_committed=published.extend)
    w.start()
    try:
        w.submit_op(lambda f, ch: None).result(10)  # the writer holds the store
        plugin = Loyalty()
        assert store.add_steps(plugin.shopkeeper_evolve_steps()) == ["loyalty"]
        assert shopkeeper_commit_guard.violations == []
        assert [(e.kind, e.customer_id, e.event_type, e.detail) for e in published] == \
            [("admin", "", "evolve_step", "loyalty")]
        with store.read() as f:
            assert isinstance(f.root["loyalty"], OOBTree) and "loyalty" in f.meta["steps"]
            assert [(e.kind, e.detail) for e in feed.read(f, 0)] == [("admin", "loyalty")]
        assert store.add_steps() == [] and len(published) == 1 and plugin.runs == 1  # recorded: not again
        inside = w.submit_op(lambda f, ch: store.add_steps([EvolveStep("inside", lambda root: None)]))
        with pytest.raises(StoreError, match="inside a writer operation"):
            inside.result(10)  # not a writer waiting for itself for ever
        kept = EvolveStep("kept-index", lambda root: None, keep=lambda conn, tm: None)
        with pytest.raises(StoreError, match="kept-index.*restart"):
            store.add_steps([kept])  # the writer's open connections would not keep it current
    finally:
        w.stop()
        store.close()


def test_two_plugins_claiming_one_step_name_is_an_error_naming_both() -> None:
    class Other:
        @hookimpl
        def shopkeeper_evolve_steps(self) -> list[EvolveStep]:
            return [EvolveStep("outbox-index", lambda root: None)]

    with pytest.raises(PluginError, match="'outbox-index' is contributed by both"):
        evolve_steps(get_plugin_manager(load_entrypoints=False, extra=(Other(),)))
    with pytest.raises(ValueError, match="needs a name"):
        EvolveStep("", lambda root: None)


def test_the_analysis_folders_are_the_analysis_plugins_named_step(tmp_path: Path) -> None:
    from shopkeeper.analysis.state import FOLDERS

    with Store.open(f"file://{tmp_path}/Data.fs", steps=builtin_evolve_steps()) as s, s.read() as f:
        assert "analysis" in f.meta["steps"]
        assert sorted(f.root["analysis"].keys()) == sorted(FOLDERS)


def _member_cards(store: Store) -> dict[str, tuple]:
    with store.read() as f:
        return dict(audience.iter_cards(f.root))


def test_a_kept_index_stays_current_when_the_store_is_reopened_without_steps(tmp_path: Path) -> None:
    """The audience index is kept by the campaigns plugin's step: the store records its keeper by
    name, so a process that opens the store with no steps at all still keeps it current."""
    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri, steps=builtin_evolve_steps()) as s, s.transaction() as f:
        assert f.meta["kept"]["audience-index"] == "shopkeeper.audience:install"
    with Store.open(uri) as s:
        with s.transaction() as f:
            c = f.add_customer(Customer("a"))
            attach(f, c, ("email", "a@example.com"), "test", 1)
        assert _member_cards(s)["a"][3] == ("a@example.com",)


def test_a_kept_index_whose_keeper_cannot_be_imported_refuses_writes_not_reads(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri, steps=builtin_evolve_steps()) as s, s.transaction() as f:
        f.meta["kept"]["audience-index"] = "shopkeeper_uninstalled_plugin:keep"
    with Store.open(uri) as s:
        with s.read() as f:
            assert "audience" in f.root
        with pytest.raises(StoreError, match="keeps audience-index current on every write.*shopkeeper_uninstalled"):
            with s.transaction():
                pass


def _step_functions() -> set[tuple[str, str]]:
    """(module, function) of every numbered and named step, core and built-in plugins'."""
    fns = [*EVOLVE_STEPS, *(s.run for s in builtin_evolve_steps())]
    return {(f.__module__, f.__name__) for f in fns}


def test_every_root_key_is_made_by_an_evolve_step() -> None:
    """No ``root[...] = `` outside an evolve step: a folder made lazily by whoever writes first has
    no owner, no record in ``meta['steps']`` and can race between hubs."""
    steps = _step_functions()
    offenders = []
    for base, pkg in ((ROOT / "core", "shopkeeper"), (ROOT / "adapters", "shopkeeper.adapters")):
        for path in base.rglob("*.py"):
            if "_proto" in path.parts:
                continue
            rel = path.relative_to(base).with_suffix("")
            module = ".".join([pkg, *(p for p in rel.parts if p != "__init__")])
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    targets = node.targets if isinstance(node, ast.Assign) else []
                    for t in targets:
                        if isinstance(t, ast.Subscript) and _is_root(t.value) and (module, fn.name) not in steps:
                            offenders.append(f"{module}.{fn.name}:{node.lineno}")
    assert not offenders, f"root keys made outside an evolve step: {sorted(set(offenders))}"


def _is_root(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "root") or (
        isinstance(node, ast.Attribute) and node.attr == "root")


ENGINE_STEPS = ["feed_staging", "feed_heads", "leases"]


def test_the_engines_steps_come_through_the_hook_like_a_plugins() -> None:
    """The engine contributes its folders' steps through ``shopkeeper_evolve_steps`` from the one
    built-in list (``shopkeeper.engine.steps``), under the names stores have recorded since they
    were registered at import time; nothing registers a step at import any more."""
    import shopkeeper.store

    pm = get_plugin_manager(load_entrypoints=False, check=False)
    steps = {s.name: s for s in evolve_steps(pm)}
    assert [n for n in steps if n in ENGINE_STEPS] == ENGINE_STEPS
    assert [i.plugin_name for i in pm.hook.shopkeeper_evolve_steps.get_hookimpls()
            if any(s.name == "leases" for s in i.function())] == ["shopkeeper.engine.steps"]
    assert not hasattr(shopkeeper.store, "register_evolve_step") and not hasattr(shopkeeper.store, "NAMED_STEPS")
    with Store.open("memory://") as bare, bare.read() as f:  # no steps given: no engine folder either
        assert not {"leases", "feed_staging", "feed_heads", "feed_positions"} & set(f.root.keys())
    with Store.open("memory://", steps=builtin_evolve_steps()) as s, s.read() as f:
        assert {"leases", "feed_staging", "feed_heads", "feed_positions"} <= set(f.root.keys())
        assert set(ENGINE_STEPS) <= set(f.meta["steps"].keys())


def test_a_store_that_ran_the_engines_steps_at_import_does_not_run_them_again(tmp_path: Path) -> None:
    """The golden generation-6 store recorded ``feed_staging``, ``feed_heads`` and ``leases`` when
    the engine registered them at import (326c13c); opened with the steps from the hook, it keeps
    those records (same names: not run again)."""
    import shutil

    shutil.copy(ROOT / "tests" / "data" / "golden" / "gen6.fs", tmp_path / "golden.fs")
    with Store.open(str(tmp_path / "golden.fs"), target_generation=6) as s, s.read() as f:
        before = {n: f.meta["steps"][n] for n in ENGINE_STEPS}
    with Store.open(str(tmp_path / "golden.fs"), steps=builtin_evolve_steps()) as s, s.read() as f:
        assert {n: f.meta["steps"][n] for n in ENGINE_STEPS} == before
