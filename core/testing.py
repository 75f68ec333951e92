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
``shopkeeper_commit_guard``
    a :class:`CommitGuard`: the test fails if any thread other than a hub's one writer
    commits to that hub's store while it runs (``shopkeeper_hub_factory`` uses it, so an
    adapter that writes around the hub fails its own tests).

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
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shopkeeper.servers import free_port  # re-exported: the suite's one free_port

MODES = ("in-process", "remote")


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition",
             retry_on: tuple[type[BaseException], ...] = ()) -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; fail the test after ``timeout``.

    The one polling loop of the suite and the conformance kit: a test waits on the state it
    expects, never for a fixed time. Exceptions in ``retry_on`` (e.g. ``OSError`` while a server
    starts, ``grpc.RpcError`` while a hub restarts) count as "not yet"; the last one is named in
    the failure so a timeout says what was going wrong.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            got = predicate()
            if got:
                return got
        except retry_on as exc:
            last = exc
        if time.monotonic() > deadline:
            why = f" (last error: {last!r})" if last else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}{why}", pytrace=False)
        time.sleep(interval)


class CommitGuard:
    """Catches commits that bypass the one writer: while a hub's writer runs, every commit
    to its database must come from the writer's thread (anything else would change the
    store without reaching the change feed, ``Watch`` or ``shopkeeper_committed``).

    It wraps ``ZODB.Connection.Connection.tpc_begin`` (the first step of every commit that
    changed something, on any storage) and records the offending thread and stack; the
    commit itself goes ahead, and :meth:`check` fails the test afterwards. Stores no writer
    holds (set-up before a hub starts, offline tools) are not watched.
    """

    def __init__(self) -> None:
        self.violations: list[str] = []
        self._original: Any = None

    def install(self) -> CommitGuard:
        import threading
        import traceback

        from ZODB.Connection import Connection

        from shopkeeper.engine.writer import running_writer

        original = self._original = Connection.tpc_begin
        violations = self.violations

        def tpc_begin(conn: Any, txn: Any) -> Any:
            writer = running_writer(conn.db())
            me = threading.current_thread()
            if writer is not None and me is not writer.thread:
                stack = "".join(traceback.format_stack(limit=12)[:-1])
                violations.append(f"thread {me.name!r} committed to a store whose writer runs "
                                  f"({txn.description or 'no note'!r}):\n{stack}")
            return original(conn, txn)

        Connection.tpc_begin = tpc_begin  # type: ignore[method-assign]
        return self

    def uninstall(self) -> None:
        from ZODB.Connection import Connection

        if self._original is not None:
            Connection.tpc_begin = self._original  # type: ignore[method-assign]
            self._original = None

    def check(self) -> None:
        if self.violations:
            pytest.fail(f"{len(self.violations)} commit(s) outside the hub's writer:\n" + "\n".join(self.violations),
                        pytrace=False)


@pytest.fixture
def shopkeeper_commit_guard() -> Iterator[CommitGuard]:
    """Fail the test if any thread but a running hub's writer commits to its store (:class:`CommitGuard`)."""
    guard = CommitGuard().install()
    try:
        yield guard
    finally:
        guard.uninstall()
    guard.check()
def make_certs(tmp_path: Any) -> None:
    """A test CA (``ca.pem``) and server (``server.pem``/``.key``, for localhost and 127.0.0.1) and
    client (``client.pem``/``.key``) certificates signed by it, in ``tmp_path``, made by openssl."""
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=test-ca")
    for name, cn in (("server", "localhost"), ("client", "touchpoint")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={cn}")
        (tmp_path / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", "ext.cnf")


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

    def remote(self, touchpoint: str = "test", **client_options: Any) -> Any:
        """A :class:`RemoteHub` (``shopkeeper.client`` underneath: pass ``tls=``, ``root_certificates=``…)."""
        from shopkeeper.adapters.base import RemoteHub

        api = RemoteHub(self.address, self.api_key, touchpoint=touchpoint, **client_options)
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
        """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` (:func:`wait_for`)."""
        return wait_for(predicate, timeout, interval, what)

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
    # a test must not pass by day and fail by night: no quiet hours unless the test asks for them
    data.setdefault("contact", {"quiet_hours": None})
    cfg = HubConfig.from_mapping(data)
    cfg.api_keys.append(ApiKey("conformance", hash_key(key), frozenset(SCOPES)))
    hub = Hub(cfg, plugins=plugins).start()
    return HubHarness(hub, key)


@pytest.fixture
def shopkeeper_hub_factory(shopkeeper_commit_guard: CommitGuard) -> Iterator[Callable[..., HubHarness]]:
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


# The conformance suite lives in shopkeeper.conformance; it is imported here, where the docs and
# adapter authors import it from (at the end: it needs HubHarness above).
from shopkeeper.conformance import AdapterConformance, ChannelConformance  # noqa: E402

__all__ = ["HubHarness", "AdapterConformance", "ChannelConformance", "start_hub", "free_port", "make_certs", "MODES",
           "CommitGuard", "wait_for"]
