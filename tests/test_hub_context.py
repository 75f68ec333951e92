"""HubContext: what hooks receive as ``hub``, and plugin state kept per hub (shopkeeper.context)."""

from __future__ import annotations

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
