"""The plugin API: every hook works as its docstring says, and the hub survives broken plugins."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from shopkeeper import hookimpl, hookspecs
from shopkeeper.adapters.base import Adapter, NoConfig, adapter_classes
from shopkeeper.events import EventType, FieldSpec
from shopkeeper.identity import NamespacePolicy
from shopkeeper.outbox import Message, Receipt
from shopkeeper.plugins import call_each, get_plugin_manager


class Vocabulary:
    @hookimpl
    def shopkeeper_event_types(self) -> list[EventType]:
        return [EventType("store_visit", "store", {"store_id": FieldSpec(str, True)})]

    @hookimpl
    def shopkeeper_identity_namespaces(self) -> list[NamespacePolicy]:
        return [NamespacePolicy("loyalty_card", 95, 1, True)]

    @hookimpl
    def shopkeeper_rule_actions(self) -> list[Any]:
        return [{"name": "ring_bell"}]


class Recorder:
    def __init__(self) -> None:
        self.committed: list[dict[str, Any]] = []
        self.shutdown = False

    @hookimpl
    def shopkeeper_committed(self, changes: list[dict[str, Any]]) -> None:
        self.committed.extend(changes)

    @hookimpl
    def shopkeeper_shutdown(self, hub: Any) -> None:
        self.shutdown = True


class BrokenAtStartup:
    @hookimpl
    def shopkeeper_startup(self, hub: Any) -> None:
        raise RuntimeError("cannot reach the vendor")

    @hookimpl
    def shopkeeper_decide(self, customer: Any, touchpoint: str, placement: str, context: dict) -> list[dict]:
        return [{"kind": "offer", "id": "never", "score": 1.0, "reason": "disabled plugins do not answer"}]


# One test per hook, named test_hook_<hook> (tests/test_plugin_docs.py requires it, as datasette does).


def test_hook_shopkeeper_event_types(shopkeeper_hub_factory: Any) -> None:
    h = shopkeeper_hub_factory(plugins=(Vocabulary(),))
    assert "store_visit" in {t.name for ts in h.hub.pm.hook.shopkeeper_event_types() for t in ts or ()}
    res = h.send({"type": "store_visit", "identities": {"email": "sv@example.com"}, "data": {"store_id": "oslo-1"}})
    assert res[0]["status"] == "applied"
    bad = h.send({"type": "store_visit", "identities": {"email": "sv@example.com"}, "data": {}})
    assert bad[0]["status"] == "rejected" and bad[0]["field"] == "data.store_id"


def test_hook_shopkeeper_identity_namespaces(shopkeeper_hub_factory: Any) -> None:
    h = shopkeeper_hub_factory(plugins=(Vocabulary(),))
    hook = h.hub.pm.hook.shopkeeper_identity_namespaces
    [policy] = [p for ps in hook() for p in ps or () if p.name == "loyalty_card"]
    assert policy.priority == 95
    res = h.send({"type": "store_visit", "identities": {"loyalty_card": "LC-1"}, "data": {"store_id": "oslo-1"}})
    assert res[0]["status"] == "applied"


def test_hook_shopkeeper_rule_actions(shopkeeper_hub_factory: Any) -> None:
    h = shopkeeper_hub_factory(plugins=(Vocabulary(),))
    assert [{"name": "ring_bell"}] in h.hub.pm.hook.shopkeeper_rule_actions()


def test_hook_shopkeeper_committed(shopkeeper_hub_factory: Any) -> None:
    rec = Recorder()
    h = shopkeeper_hub_factory(plugins=(rec,))
    h.event("page_view", "eve@example.com", url="/")
    h.wait_for(lambda: any(c["kind"] == "interaction" for c in rec.committed), what="shopkeeper_committed")
    assert rec.committed[0]["event_type"] == "page_view" and rec.committed[0]["cursor"] > 0


def test_hook_shopkeeper_shutdown(shopkeeper_hub_factory: Any) -> None:
    rec = Recorder()
    h = shopkeeper_hub_factory(plugins=(rec,))
    assert rec in [i.plugin for i in h.hub.pm.hook.shopkeeper_shutdown.get_hookimpls()] and not rec.shutdown
    h.hub.stop(grace=0.1)
    assert rec.shutdown


def test_hook_shopkeeper_decide(shopkeeper_hub_factory: Any) -> None:
    class Offer:
        @hookimpl
        def shopkeeper_decide(self, customer: Any, touchpoint: str, placement: str, context: dict) -> list[dict]:
            return [{"kind": "offer", "id": f"plugin-{placement}", "score": 0.5, "reason": "from a plugin"}]

    h = shopkeeper_hub_factory(plugins=(Offer(),))
    h.event("page_view", "dee@example.com", url="/")
    got = h.in_process().decide(("email", "dee@example.com"), "home")
    assert "plugin-home" in [a["id"] for a in got], got


def test_hook_shopkeeper_processors(shopkeeper_hub_factory: Any) -> None:
    class Stamp:
        @hookimpl
        def shopkeeper_processors(self, hub: Any) -> list[Any]:
            def stamp(folders: Any, applied: Any) -> None:  # inside the event's own transaction
                applied.customer.set_traits({"stamped": True})

            return [stamp]

    h = shopkeeper_hub_factory(plugins=(Stamp(),))
    res = h.event("page_view", "sam@example.com", url="/")
    with h.hub.read() as f:
        assert f.customer(res["customer_id"]).traits.get("stamped") is True


def test_hook_shopkeeper_configure(shopkeeper_hub_factory: Any) -> None:
    """Runs before the writer and before the processors are collected, so a processor can use
    what configure built; a plugin failing in configure is disabled and adds no processor."""
    seen: list[Any] = []

    class Configured:
        @hookimpl
        def shopkeeper_configure(self, hub: Any) -> None:
            seen.append(hub.writer)
            hub.plugin_state.set("test.trait", "configured")

        @hookimpl
        def shopkeeper_processors(self, hub: Any) -> list[Any]:
            value = hub.plugin_state.get("test.trait")

            def stamp(folders: Any, applied: Any) -> None:
                applied.customer.set_traits({"stamp": value})

            return [stamp]

    class BrokenConfig:
        @hookimpl
        def shopkeeper_configure(self, hub: Any) -> None:
            raise ValueError("no vendor url")

        @hookimpl
        def shopkeeper_processors(self, hub: Any) -> list[Any]:
            def never(folders: Any, applied: Any) -> None:
                applied.customer.set_traits({"broken": True})

            return [never]

    h = shopkeeper_hub_factory(plugins=(Configured(), BrokenConfig()))
    assert seen == [None]  # no writer yet
    assert any(w == "shopkeeper_configure: ValueError: no vendor url" for w in h.hub.disabled.values()), h.hub.disabled
    res = h.event("page_view", "cora@example.com", url="/")
    with h.hub.read() as f:
        traits = f.customer(res["customer_id"]).traits
    assert traits.get("stamp") == "configured" and "broken" not in traits


def test_hook_shopkeeper_startup(shopkeeper_hub_factory: Any, caplog: Any) -> None:
    """A plugin that raises in shopkeeper_startup is disabled by name and the hub keeps running."""
    caplog.set_level(logging.ERROR)
    h = shopkeeper_hub_factory(plugins=(BrokenAtStartup(),))
    [(name, why)] = [(n, w) for n, w in h.hub.disabled.items() if "vendor" in w]
    assert why == "shopkeeper_startup: RuntimeError: cannot reach the vendor"
    assert name in caplog.text
    h.event("page_view", "fay@example.com", url="/")
    assert all(a["id"] != "never" for a in h.in_process().decide(("email", "fay@example.com"), "home"))


def test_call_each_isolates_failures() -> None:
    import pluggy

    pm = pluggy.PluginManager("shopkeeper")
    pm.add_hookspecs(hookspecs)
    broken, fine = BrokenAtStartup(), Recorder()
    pm.register(broken, name="broken")
    pm.register(fine, name="fine")
    disabled = call_each(pm, "shopkeeper_startup", hub=None)
    assert disabled == {"broken": "shopkeeper_startup: RuntimeError: cannot reach the vendor"}
    assert pm.get_plugins() == {fine}
    call_each(pm, "shopkeeper_shutdown", disable_on_error=False, hub=None)
    assert fine.shutdown


def test_misspelled_hookimpl_is_caught_at_start() -> None:
    class Typo:
        @hookimpl
        def shopkeeper_comitted(self, changes: list) -> None:  # one t
            pass

    from shopkeeper.plugins import PluginError

    with pytest.raises(PluginError, match="shopkeeper_comitted"):
        get_plugin_manager(load_entrypoints=False, extra=(Typo(),))


def test_hook_shopkeeper_register_commands() -> None:
    class Cmd:
        @hookimpl
        def shopkeeper_register_commands(self, cli: click.Group) -> None:
            @cli.command("hello-plugin")
            def hello() -> None:
                click.echo("hi from a plugin")

    group = click.Group("shopkeeper")
    get_plugin_manager(load_entrypoints=False, extra=(Cmd(),)).hook.shopkeeper_register_commands(cli=group)
    assert CliRunner().invoke(group, ["hello-plugin"]).output == "hi from a plugin\n"
    from shopkeeper.cli import main

    assert main.get_command(None, "adapter") is not None  # the built-in adapter manager registers `shopkeeper adapter`


def test_hook_shopkeeper_reload_rules() -> None:
    """The first answer wins (firstresult)."""
    class A:
        @hookimpl
        def shopkeeper_reload_rules(self, hub: Any) -> dict[str, Any]:
            return {"ok": True, "version": "a", "rules": 1, "errors": []}

    pm = get_plugin_manager(load_entrypoints=False, extra=(A(),))
    assert pm.hook.shopkeeper_reload_rules(hub=None, requested_by=None)["version"] == "a"


class Pager(Adapter):
    name = "pager"
    Config = NoConfig
    channels = ("pager",)

    def deliver(self, message: Message) -> Receipt:
        return Receipt("sent", "pg-1")


class PagerPlugin:
    @hookimpl
    def shopkeeper_adapters(self) -> list[type]:
        return [Pager]


def test_hook_shopkeeper_adapters(shopkeeper_hub_factory: Any) -> None:
    pm = get_plugin_manager(extra=(PagerPlugin(),))
    assert [Pager] in pm.hook.shopkeeper_adapters()
    assert set(adapter_classes(pm)) >= {"pager", "email"}
    h = shopkeeper_hub_factory({"adapters": {"pager": {}}}, plugins=(PagerPlugin(),))
    assert "pager" in h.hub.adapters


def test_hook_shopkeeper_deliver(shopkeeper_hub_factory: Any) -> None:
    """One adapter per channel answers; a channel no adapter serves gets None."""
    h = shopkeeper_hub_factory({"adapters": {"pager": {}}}, plugins=(PagerPlugin(),))
    hook = h.hub.pm.hook.shopkeeper_deliver
    assert hook(message=Message("i1", "c1", "pager", "t")) == Receipt("sent", "pg-1")
    assert hook(message=Message("i2", "c1", "carrier_pigeon", "t")) is None


def test_unknown_adapter_in_config_is_reported(shopkeeper_hub_factory: Any) -> None:
    h = shopkeeper_hub_factory({"adapters": {"telex": {}}})
    assert "no installed adapter has this name" in h.hub.disabled["adapter:telex"]


def test_adapter_cli_check(tmp_path: Any) -> None:
    from shopkeeper.cli import main

    cfg = tmp_path / "hub.yaml"
    cfg.write_text("adapters:\n  email:\n    smtp_port: nope\n")
    r = CliRunner().invoke(main, ["adapter", "check", "email", "--config", str(cfg)])
    assert r.exit_code == 1
    assert "adapter.email.from_addr: required" in r.output and "adapter.email.smtp_port: must be an integer" in r.output
    assert "email" in CliRunner().invoke(main, ["adapter", "list"]).output


def test_a_channel_adapter_without_a_journal_file_is_warned_at_check_and_at_start(
        tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Without a journal file a crash between the server's acceptance and the sent mark sends the
    message again: valid settings, so ``adapter check`` passes, but it says so, and so does the
    adapter when it is made; with a file, neither says a word."""
    from shopkeeper.adapters.base import validate_config
    from shopkeeper.adapters.email import EmailAdapter, EmailConfig
    from shopkeeper.cli import main

    cfg = tmp_path / "hub.yaml"
    cfg.write_text("adapters:\n  email:\n    from_addr: shop@example.com\n")
    r = CliRunner().invoke(main, ["adapter", "check", "email", "--config", str(cfg)])
    assert r.exit_code == 0 and "adapter.email: ok" in r.output
    assert "warning: adapter.email.journal: not set" in r.output and "sends that message again" in r.output
    with caplog.at_level(logging.WARNING, logger="shopkeeper.adapters.email"):
        EmailAdapter(validate_config("email", EmailConfig, {"from_addr": "shop@example.com"}), None)
    assert [m for m in caplog.messages if "adapter.email.journal: not set" in m]

    journal = tmp_path / "journal.log"
    cfg.write_text(f"adapters:\n  email:\n    from_addr: shop@example.com\n    journal: {journal}\n")
    r = CliRunner().invoke(main, ["adapter", "check", "email", "--config", str(cfg)])
    assert r.exit_code == 0 and "warning" not in r.output
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="shopkeeper.adapters.email"):
        EmailAdapter(validate_config("email", EmailConfig, {"from_addr": "shop@example.com",
                                                              "journal": str(journal)}), None)
    assert not [m for m in caplog.messages if "journal" in m]


def test_every_hookspec_has_typed_parameters() -> None:
    import inspect

    for name, fn in vars(hookspecs).items():
        if name.startswith("shopkeeper_") and callable(fn):
            sig = inspect.signature(fn)
            assert sig.return_annotation is not inspect.Signature.empty, name
            assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()), name


def test_misspelled_hook_gets_a_did_you_mean() -> None:
    class Typo:
        @hookimpl
        def shopkeeper_comitted(self, changes: list) -> None:  # one t
            pass

    from shopkeeper.plugins import PluginError

    with pytest.raises(PluginError, match="did you mean 'shopkeeper_committed'"):
        get_plugin_manager(load_entrypoints=False, extra=(Typo(),))


def test_plugins_command_lists_everything_and_marks_the_broken_plugin(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """It crashed with a 35-line traceback (and listed nothing) when one plugin misspelled a hook."""
    from shopkeeper import plugins as plugins_module
    from shopkeeper.cli import main

    (tmp_path / "typo_plugin.py").write_text(
        "from shopkeeper import hookimpl\n\n"
        "@hookimpl\ndef shopkeeper_comitted(changes):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins_module, "BUILTIN_PLUGINS", (*plugins_module.BUILTIN_PLUGINS, "typo_plugin"))
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.splitlines()
    assert any(line.startswith("shopkeeper.rules.plugin") for line in lines)  # the others are listed
    broken = lines.index(next(line for line in lines if line.startswith("typo_plugin")))
    assert "BROKEN" in lines[broken + 1] and "did you mean 'shopkeeper_committed'" in lines[broken + 1]


def _module_level_hookimpls() -> dict[str, list[str]]:
    """Module -> names of its module-level functions decorated ``@hookimpl`` (read from the source)."""
    import ast

    root = Path(__file__).resolve().parents[1]
    out: dict[str, list[str]] = {}
    for base, pkg in ((root / "core", "shopkeeper"), (root / "adapters", "shopkeeper.adapters")):
        for p in sorted(base.rglob("*.py")):
            rel = p.relative_to(base).with_suffix("").parts
            if rel[0] in ("_proto", "adapters") or rel == ("hookspecs",):
                continue
            names = [n.name for n in ast.parse(p.read_text(encoding="utf-8")).body
                     if isinstance(n, ast.FunctionDef) and any(
                         (isinstance(d, ast.Name) and d.id == "hookimpl")
                         or (isinstance(d, ast.Call) and getattr(d.func, "id", "") == "hookimpl")
                         for d in n.decorator_list)]
            if names:
                out[".".join([pkg, *(x for x in rel if x != "__init__")])] = names
    return out


def test_one_builtin_list_registers_every_builtin_hook_implementation() -> None:
    """Built-ins come from BUILTIN_PLUGINS alone (no entry points of our own), and every module-level
    hook implementation in the package is registered through it: a new plugin module left off the list
    (as campaigns once was, so a source checkout ran without campaigns) fails here."""
    import importlib
    import tomllib

    import pluggy

    from shopkeeper.plugins import BUILTIN_PLUGINS

    conf = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert "shopkeeper" not in conf["project"].get("entry-points", {}), "built-ins are listed in BUILTIN_PLUGINS only"
    pm = get_plugin_manager(load_entrypoints=False)
    assert [n for n in BUILTIN_PLUGINS if pm.get_plugin(n) is None] == []
    registered = {impl.function for caller in pm.hook.__dict__.values() if isinstance(caller, pluggy.HookCaller)
                  for impl in caller.get_hookimpls()}
    found = _module_level_hookimpls()
    assert {"shopkeeper.campaigns.plugin", "shopkeeper.adapters.manager"} <= found.keys()  # the scan sees them
    missing = [f"{mod}.{name}" for mod, names in found.items() for name in names
               if getattr(importlib.import_module(mod), name) not in registered]
    assert missing == [], f"hook implementations no built-in plugin registers (add to BUILTIN_PLUGINS): {missing}"
