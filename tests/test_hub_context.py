"""HubContext: what hooks receive as ``hub``, and plugin state kept per hub (shopkeeper.context)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopkeeper import hookimpl
from shopkeeper.context import HubContext, PluginState, plugin_state
from shopkeeper.engine import Engine
from shopkeeper.plugins import get_plugin_manager
from shopkeeper.store import Store


class CountsStarts:
    """A plugin that keeps what it starts per hub, as docs/plugins.md tells plugins to."""

    @hookimpl
    def shopkeeper_startup(self, hub: HubContext) -> None:
        assert hub.writer is not None  # start-up runs with the writer running
        hub.plugin_state.setdefault("test.starts", list).append(hub)

    @hookimpl
    def shopkeeper_shutdown(self, hub: HubContext) -> None:
        hub.plugin_state.set("test.stopped", True)


def test_an_engine_is_a_hub_context_with_its_own_state() -> None:
    with Store.open("memory://") as store:
        a = Engine(store, get_plugin_manager(load_entrypoints=False))
        b = Engine(store, get_plugin_manager(load_entrypoints=False))
        assert isinstance(a, HubContext) and isinstance(b, HubContext)
        assert plugin_state(a) is a.plugin_state and plugin_state(a) is not plugin_state(b)
        with a.read() as folders:
            assert folders.counter("customers") == 0


def test_state_for_an_object_that_is_not_a_hub_is_kept_beside_it() -> None:
    class Tool:
        pass

    t = Tool()
    assert plugin_state(t) is plugin_state(t) and isinstance(plugin_state(t), PluginState)
    with pytest.raises(TypeError, match="needs a hub"):
        plugin_state(None)


def test_two_hubs_in_one_process_keep_their_plugins_state_apart(shopkeeper_hub_factory: Any) -> None:
    from shopkeeper.campaigns.plugin import runner_for
    from shopkeeper.rules.plugin import service_for

    plugin = CountsStarts()
    h1 = shopkeeper_hub_factory(plugins=(plugin,))
    h2 = shopkeeper_hub_factory(plugins=(plugin,))
    assert isinstance(h1.hub, HubContext)
    assert h1.hub.plugin_state.get("test.starts") == [h1.hub] and h2.hub.plugin_state.get("test.starts") == [h2.hub]
    assert service_for(h1.hub) is not service_for(h2.hub)
    assert runner_for(h1.hub) is not None and runner_for(h1.hub) is not runner_for(h2.hub)
    h1.hub.stop(grace=0.1)
    assert h1.hub.plugin_state.get("test.stopped") and runner_for(h1.hub) is None
    assert "test.stopped" not in h2.hub.plugin_state and runner_for(h2.hub) is not None


OFFERS = """
policy: {control_percent: 0}
offers:
  - {id: %s, title: An offer, channels: [web], value: 10}
"""


def test_two_engines_in_one_process_keep_their_own_analysis_state(tmp_path: Path) -> None:
    """Segments, offers, the scheduler and the reload watcher of the analysis plugin are per hub:
    each engine decides from its own rules directory's catalogue, and stopping one leaves the
    other's scheduler running (they were one module global, ``analysis.plugin.STATE``)."""
    from types import SimpleNamespace

    from shopkeeper.analysis.plugin import SCHEDULER_KEY, state_for
    from shopkeeper.customer import Customer
    from shopkeeper.plugins import dispatch

    engines = []
    for name in ("spring_ten", "winback_20"):
        (tmp_path / name / "offers").mkdir(parents=True)
        (tmp_path / name / "offers" / "catalogue.yaml").write_text(OFFERS % name)
        store = Store.open("memory://")
        e = Engine(store, get_plugin_manager(load_entrypoints=False))
        e.config = SimpleNamespace(rules_dir=str(tmp_path / name))
        engines.append(e.start())
    a, b = engines
    try:
        assert state_for(a) is not state_for(b)

        def offered(e: Engine) -> list[str]:
            got = dispatch(e.pm, "shopkeeper_decide", hub=e, customer=Customer("x"), touchpoint="web",
                           placement="home_hero", context={"channel": "web"})
            return [x["id"] for name, actions in got if name == "shopkeeper.analysis.plugin" for x in actions or ()]

        assert offered(a) == ["spring_ten"] and offered(b) == ["winback_20"]
        running = b.plugin_state.get(SCHEDULER_KEY)["thread"]
        a.stop()
        assert a.plugin_state.get(SCHEDULER_KEY) is None and running.is_alive()
    finally:
        b.stop()
        a.store.close()
        b.store.close()
