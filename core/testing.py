"""The conformance kit: a pytest plugin for people who write Shopkeeper adapters.

Installed with Shopkeeper and registered through the ``pytest11`` entry point, so in any
project that has ``shopkeeper`` installed these fixtures simply exist:

``shopkeeper_hub``
    a real hub (gRPC on a free loopback port, a throw-away in-memory store, one API key
    with every scope) as a :class:`HubHarness`: ``.address``, ``.api_key``, ``.send()``,
    ``.customer()``, ``.wait_for()``, ``.in_process()``/``.remote()`` :class:`HubAPI`\\ s and
    ``.run_adapter(cls, config, mode)``.
``shopkeeper_hub_factory``
    the same, as a factory taking a hub config mapping (e.g. an ``adapters:`` section).
``adapter_mode``
    parametrises a test over ``"in-process"`` and ``"remote"``.

And a **conformance suite**: subclass :class:`AdapterConformance` in your own test module,
set ``adapter_class``, and implement ``adapter_config`` and ``exercise``; pytest then runs
every check against your adapter in both modes (see ``docs/plugins.md``)::

    from shopkeeper.testing import AdapterConformance

    class TestMyAdapter(AdapterConformance):
        adapter_class = MyAdapter

        def adapter_config(self, tmp_path):
            return {"inbox": str(tmp_path / "in")}

        def exercise(self, harness, adapter, tmp_path):
            ...  # make the touch point do something
            return [("email", "ann@example.com")]  # customers that must now exist
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

MODES = ("in-process", "remote")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubHarness:
    """A running hub plus helpers to drive it from a test."""

    def __init__(self, hub: Any, api_key: str) -> None:
        self.hub = hub
        self.api_key = api_key
        self.address = f"127.0.0.1:{hub.port}"
        self._apis: list[Any] = []

    # -- talking to the hub -------------------------------------------------------------

    def in_process(self, touchpoint: str = "test") -> Any:
        from shopkeeper.adapters.base import InProcessHub

        return InProcessHub(self.hub, touchpoint=touchpoint)

    def remote(self, touchpoint: str = "test") -> Any:
        from shopkeeper.adapters.base import RemoteHub

        api = RemoteHub(self.address, self.api_key, touchpoint=touchpoint)
        self._apis.append(api)
        return api

    def api(self, mode: str, touchpoint: str = "test") -> Any:
        return self.in_process(touchpoint) if mode == "in-process" else self.remote(touchpoint)

    def send(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        """Record events (raw dicts); an ``idempotency_key`` is made up when missing."""
        import secrets

        out = [e if e.get("idempotency_key") else {**e, "idempotency_key": "t-" + secrets.token_hex(8)}
               for e in events]
        return self.in_process().record(out)

    def event(self, type_: str, email: str, **data: Any) -> dict[str, Any]:
        """Record one event for the customer with this email and return its result."""
        res = self.send({"type": type_, "identities": {"email": email}, "data": data})[0]
        assert res["status"] in ("applied", "duplicate"), res
        return res

    def customer(self, ref: Any, recent: int = 50) -> dict[str, Any] | None:
        """The 360° view of a customer id or ``(namespace, value)``, or None."""
        return self.in_process().customer(ref, recent=recent)

    def interactions(self, ref: Any, type_: str | None = None) -> list[dict[str, Any]]:
        view = self.customer(ref, recent=10_000)
        its = view["recent_interactions"] if view else []
        return [i for i in its if type_ is None or i["type"] == type_]

    def grant(self, ref: Any, channel: str = "email", purpose: str = "marketing") -> None:
        self.in_process().set_consent(ref, channel, purpose, True, "test")

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
                 what: str = "condition") -> Any:
        """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            got = predicate()
            if got:
                return got
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}")
            time.sleep(interval)

    @contextlib.contextmanager
    def run_adapter(self, cls: type, config: dict[str, Any] | None = None, mode: str = "in-process") -> Iterator[Any]:
        """Start an adapter against this hub, in the hub's process or as a remote client; stop it after."""
        api = self.api(mode, touchpoint=cls.name)
        adapter = cls.from_config(dict(config or {}), api)
        if mode == "in-process":
            self.hub.pm.register(adapter, name=f"adapter:{cls.name}")
        adapter.start()
        try:
            yield adapter
        finally:
            adapter.stop()
            if mode == "in-process" and self.hub.pm.is_registered(adapter):
                self.hub.pm.unregister(adapter)

    def close(self) -> None:
        for api in self._apis:
            with contextlib.suppress(Exception):
                api.close()


def start_hub(config: dict[str, Any] | None = None, *, plugins: tuple[object, ...] = (),
              store_uri: str = "memory://") -> HubHarness:
    """Start a hub on a free loopback port with a throw-away store and one all-scopes API key."""
    from shopkeeper.hub.config import SCOPES, ApiKey, HubConfig, hash_key, new_key
    from shopkeeper.hub.server import Hub

    key = new_key()
    data = {k: v for k, v in (config or {}).items() if k not in ("api_keys",)}
    data.setdefault("store", store_uri)
    data.setdefault("listen", "127.0.0.1:0")
    data.setdefault("log_format", "text")
    cfg = HubConfig.from_mapping(data)
    cfg.api_keys.append(ApiKey("conformance", hash_key(key), frozenset(SCOPES)))
    hub = Hub(cfg, plugins=plugins).start()
    return HubHarness(hub, key)


@pytest.fixture
def shopkeeper_hub_factory() -> Iterator[Callable[..., HubHarness]]:
    """Start hubs with a given config mapping; every one is stopped after the test."""
    started: list[HubHarness] = []

    def factory(config: dict[str, Any] | None = None, **kw: Any) -> HubHarness:
        h = start_hub(config, **kw)
        started.append(h)
        return h

    yield factory
    for h in reversed(started):
        h.close()
        h.hub.stop(grace=0.5)


@pytest.fixture
def shopkeeper_hub(shopkeeper_hub_factory: Callable[..., HubHarness]) -> HubHarness:
    """A running hub with a throw-away store: see :class:`HubHarness`."""
    return shopkeeper_hub_factory()


@pytest.fixture(params=MODES)
def adapter_mode(request: pytest.FixtureRequest) -> str:
    """``"in-process"`` and ``"remote"``: run the test once with each."""
    return request.param


# -- the conformance suite --------------------------------------------------------------


class AdapterConformance:
    """Checks every Shopkeeper adapter must pass. Subclass it in a ``Test…`` class.

    Set ``adapter_class``; override ``adapter_config(tmp_path)`` (a valid config mapping)
    and ``exercise(harness, adapter, tmp_path)`` (make the touch point do something real;
    return the ``(namespace, value)`` of customers the adapter must have recorded).
    """

    adapter_class: type | None = None
    #: seconds ``start()`` + ``stop()`` may take
    lifecycle_seconds: float = 10.0

    def adapter_config(self, tmp_path: Any) -> dict[str, Any]:
        return {}

    def exercise(self, harness: HubHarness, adapter: Any, tmp_path: Any) -> list[tuple[str, str]]:
        return []

    def _cls(self) -> type:
        if self.adapter_class is None:
            pytest.skip("set adapter_class on your AdapterConformance subclass")
        return self.adapter_class

    def test_registered_through_entry_point(self) -> None:
        """Installed adapters are found by name through the ``shopkeeper`` entry-point group."""
        from shopkeeper.adapters.base import adapter_classes
        from shopkeeper.plugins import get_plugin_manager

        cls = self._cls()
        found = adapter_classes(get_plugin_manager())
        assert cls.name in found, f"{cls.name!r} is not contributed by any installed plugin's shopkeeper_adapters"
        assert found[cls.name].__qualname__ == cls.__qualname__

    def test_declares_name_and_schema(self) -> None:
        cls = self._cls()
        assert re.fullmatch(r"[a-z][a-z0-9_]{0,31}", cls.name), f"adapter name {cls.name!r} must be a short token"
        assert dataclasses.is_dataclass(cls.Config), "Config must be a dataclass (the validated schema)"
        for ch in cls.channels:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", ch), f"channel {ch!r} must be a lower-case token"

    def test_config_errors_name_the_field(self, tmp_path: Any) -> None:
        from shopkeeper.adapters.base import AdapterConfigError, validate_config

        cls = self._cls()
        good = self.adapter_config(tmp_path)
        validate_config(cls.name, cls.Config, good)
        with pytest.raises(AdapterConfigError) as err:
            validate_config(cls.name, cls.Config, {**good, "no_such_setting_xyz": 1})
        assert f"adapter.{cls.name}.no_such_setting_xyz:" in str(err.value)

    def test_start_and_stop(self, shopkeeper_hub: HubHarness, adapter_mode: str, tmp_path: Any) -> None:
        cls = self._cls()
        t0 = time.monotonic()
        with shopkeeper_hub.run_adapter(cls, self.adapter_config(tmp_path), adapter_mode):
            pass
        assert time.monotonic() - t0 < self.lifecycle_seconds

    def test_exercise_records_customers_exactly_once(self, shopkeeper_hub: HubHarness, adapter_mode: str,
                                                     tmp_path: Any) -> None:
        """The adapter's work reaches the hub, in both modes, and replaying it changes nothing."""
        cls = self._cls()
        cfg = self.adapter_config(tmp_path)
        with shopkeeper_hub.run_adapter(cls, cfg, adapter_mode) as adapter:
            refs = self.exercise(shopkeeper_hub, adapter, tmp_path)
        if not refs:
            pytest.skip("exercise() returned no customers to check")
        counts = {}
        for ref in refs:
            view = shopkeeper_hub.customer(ref)
            assert view is not None, f"no customer {ref} after exercise()"
            counts[ref] = view["hard_facts"]["interactions"]
        with shopkeeper_hub.run_adapter(cls, cfg, adapter_mode) as adapter:  # the same work again
            self.exercise(shopkeeper_hub, adapter, tmp_path)
        for ref in refs:
            again = shopkeeper_hub.customer(ref)["hard_facts"]["interactions"]  # type: ignore[index]
            assert again == counts[ref], f"{ref}: replaying the same work added interactions (idempotency keys?)"

    def test_delivers_only_its_channels(self, shopkeeper_hub: HubHarness, tmp_path: Any) -> None:
        from shopkeeper.outbox import Message

        cls = self._cls()
        with shopkeeper_hub.run_adapter(cls, self.adapter_config(tmp_path), "in-process") as adapter:
            assert adapter.shopkeeper_deliver(Message("x", "c", "no_such_channel", "t")) is None

    def test_broken_config_disables_only_this_adapter(self, shopkeeper_hub_factory: Callable[..., HubHarness],
                                                      tmp_path: Any) -> None:
        """A hub configured with a bad section for this adapter keeps running and names it."""
        cls = self._cls()
        harness = shopkeeper_hub_factory({"adapters": {cls.name: {"no_such_setting_xyz": 1}}})
        assert f"adapter:{cls.name}" in harness.hub.disabled
        assert "no_such_setting_xyz" in harness.hub.disabled[f"adapter:{cls.name}"]
        assert harness.send({"type": "page_view", "identities": {"email": "alive@example.com"},
                             "data": {"url": "/"}})[0]["status"] == "applied"


__all__ = ["HubHarness", "AdapterConformance", "start_hub", "free_port", "MODES"]
