"""Pack is a writer-coordinated operation (issue 17): ordered after every change submitted before it,
run beside the writer's later commits, never from an RPC thread on its own; and on a schedule."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest
from hub.conftest import event, ident, record, start_hub

from shopkeeper._proto.v1 import admin_pb2, customers_pb2
from shopkeeper.hub.config import ConfigError, HubConfig
from shopkeeper.store import Store
from shopkeeper.testing import wait_for

pytestmark = pytest.mark.e2e


def test_admin_pack_waits_for_the_changes_submitted_before_it(tmp_path: Path) -> None:
    """An erasure queued in the writer before Pack must be committed before the pack time is fixed:
    otherwise the pack keeps the erased person's old revisions. The old Admin.Pack packed at once."""
    store = Store.open(f"file://{tmp_path}/Data.fs")
    r = start_hub(store=store)
    try:
        c = r.client("admin")
        record(c, event(email="first@example.com", key="a1"))
        gate, entered = threading.Event(), threading.Event()

        def slow_op(folders, changes):  # an operation the writer is busy with when Pack arrives
            entered.set()
            gate.wait(30)
            folders.meta["slow_op_done"] = True

        fut = r.hub.writer.submit_op(slow_op)
        assert entered.wait(10)
        seen: dict[str, object] = {}
        real_pack = store.pack

        def watching_pack(*a, **kw):
            seen["op_done"] = fut.done()
            seen["thread"] = threading.current_thread().name
            return real_pack(*a, **kw)

        store.pack = watching_pack  # type: ignore[method-assign]
        packed = threading.Thread(target=lambda: c.admin.Pack(admin_pb2.PackRequest(days=0), metadata=c.md))
        packed.start()
        packed.join(0.5)  # Pack may not finish while the writer is still busy with the earlier op
        assert packed.is_alive() and "op_done" not in seen
        gate.set()
        packed.join(30)
        assert seen["op_done"] is True
        assert not seen["thread"].startswith("shopkeeper-rpc")
    finally:
        gate.set()
        r.hub.stop(grace=0.5)
        store.close()


def test_a_second_pack_while_one_runs_is_refused_with_a_reason(tmp_path: Path) -> None:
    store = Store.open(f"file://{tmp_path}/Data.fs")
    r = start_hub(store=store)
    gate = threading.Event()
    real_pack = store.pack

    def blocking_pack(*a, **kw):
        gate.wait(30)
        return real_pack(*a, **kw)

    store.pack = blocking_pack  # type: ignore[method-assign]
    try:
        c = r.client("admin")
        first = r.hub.engine.pack(days=0)
        with pytest.raises(grpc.RpcError) as err:
            c.admin.Pack(admin_pb2.PackRequest(days=0), metadata=c.md)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "a pack is already running" in err.value.details()
        record(c, event(email="during@example.com", key="d1"))  # the writer commits while the pack runs
        gate.set()
        first.result(30)
    finally:
        gate.set()
        r.hub.stop(grace=0.5)
        store.close()


@pytest.mark.parametrize(("spec", "every", "keep"), [
    ({"every": "1d", "keep": 0}, 86400.0, 0.0),
    ({"every": "6h", "keep": "7d"}, 21600.0, 7.0),
    ({"every": 90}, 90.0, 0.0),
    ({"every": "30m", "keep": 1.5}, 1800.0, 1.5),
])
def test_pack_schedule_in_the_hub_config(spec: dict, every: float, keep: float) -> None:
    cfg = HubConfig.from_mapping({"pack": spec})
    assert cfg.pack is not None
    assert (cfg.pack.every_seconds, cfg.pack.keep_days) == (every, keep)
    assert HubConfig.from_mapping({}).pack is None


@pytest.mark.parametrize(("spec", "message"), [
    ({"every": "soon"}, "pack.every: 'soon' is not a duration"),
    ({"every": "0s"}, "pack.every: must be more than 0"),
    ({"keep": 0}, "pack.every: required"),
    ({"every": "1d", "keep": -1}, "pack.keep: must be 0 or more days"),
    ({"every": "1d", "when": 3}, "pack: unknown key(s) ['when']"),
    ({"every": "1d", "rewrite": "yes"}, "pack.rewrite: true or false, not 'yes'"),
    ("daily", "pack: a mapping such as {every: 1d, keep: 0}"),
])
def test_bad_pack_schedule_is_refused_naming_the_setting(spec: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        HubConfig.from_mapping({"pack": spec})
    assert message in str(err.value)


def _erase_then_wait_for_scheduled_pack(r, c) -> None:
    ev = event(email="erase-me@example.com", key="e1", url="/", pad="x" * 6000)
    ev.identities.add(namespace="cookie", value="cookie-4f7b2c9e1d")
    record(c, ev)
    for i in range(5):
        record(c, event(email=f"other{i}@example.com", key=f"o{i}"))
    c.customers.ForgetCustomer(customers_pb2.ForgetCustomerRequest(
        customer=ident("email", "erase-me@example.com"), reason="test"), metadata=c.md)
    erased_at = r.hub.engine.pack_runs  # packs finished before the erasure was acknowledged
    wait_for(lambda: r.hub.engine.pack_runs >= erased_at + 2, timeout=30, what="two scheduled packs after the erasure")


@pytest.mark.e2e
def test_erase_then_scheduled_pack_leaves_no_erased_identity_on_filestorage(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from shopkeeper.cli import main
    from shopkeeper.hub.config import PackSchedule

    uri = f"file://{tmp_path}/Data.fs"
    store = Store.open(uri)
    r = start_hub(store=store, pack=PackSchedule(every_seconds=0.2, keep_days=0.0))
    try:
        c = r.client("admin")
        _erase_then_wait_for_scheduled_pack(r, c)
        out = CliRunner().invoke(main, ["doctor", "--store", uri, "--erased"])  # read-only, beside the hub
    finally:
        r.hub.stop(grace=0.5)
        store.close()
    assert out.exit_code == 0, out.output
    assert "erased       ok" in out.output


@pytest.mark.e2e
@pytest.mark.zeo
def test_erase_then_scheduled_pack_leaves_no_erased_identity_on_a_zeo_server(tmp_path: Path) -> None:
    """The ZEO server's own FileStorage must not keep ``Data.fs.old`` or its commit buffer either:
    ``doctor --erased --files DIR`` scans the server's directory."""
    from click.testing import CliRunner

    from shopkeeper.cli import main
    from shopkeeper.hub.config import PackSchedule

    from .conftest import erasure_safe_zeo

    with erasure_safe_zeo(tmp_path / "zeo") as uri:
        store = Store.open(uri)
        r = start_hub(store=store, pack=PackSchedule(every_seconds=0.2, keep_days=0.0))
        try:
            c = r.client("admin")
            _erase_then_wait_for_scheduled_pack(r, c)
        finally:
            r.hub.stop(grace=0.5)
            store.close()
        out = CliRunner().invoke(main, ["doctor", "--store", uri, "--erased", "--files", str(tmp_path / "zeo")])
    assert out.exit_code == 0, out.output
    assert "erased       ok" in out.output


def test_pack_cli_asks_a_running_hub_through_its_writer(tmp_path: Path) -> None:
    """`shopkeeper pack` on a FileStorage a hub holds failed with the lock error; --hub packs through the hub."""
    from click.testing import CliRunner

    from shopkeeper.cli import main

    uri = f"file://{tmp_path}/Data.fs"
    store = Store.open(uri)
    r = start_hub(store=store)
    try:
        record(r.client("admin"), event(email="p@example.com", key="p1"))
        locked = CliRunner().invoke(main, ["pack", "--store", uri])
        assert locked.exit_code == 1 and "--hub" in locked.output
        got = CliRunner().invoke(main, ["pack", "--hub", r.target, "--api-key", "sk_admin_test"])
        assert got.exit_code == 0, got.output
        assert f"packed through {r.target}" in got.output and r.hub.engine.pack_runs == 1
    finally:
        r.hub.stop(grace=0.5)
        store.close()


def test_a_pack_the_storage_refuses_is_failed_precondition_not_unknown(tmp_path: Path) -> None:
    """Another hub packing the shared storage makes ours fail with FileStorage's "Already packing"."""
    from ZODB.FileStorage.FileStorage import FileStorageError

    store = Store.open(f"file://{tmp_path}/Data.fs")
    r = start_hub(store=store)

    def refused(*a, **kw):
        raise FileStorageError("Already packing")

    store.pack = refused  # type: ignore[method-assign]
    try:
        c = r.client("admin")
        with pytest.raises(grpc.RpcError) as err:
            c.admin.Pack(admin_pb2.PackRequest(days=0), metadata=c.md)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "the storage refused the pack: Already packing" in err.value.details()
    finally:
        r.hub.stop(grace=0.5)
        store.close()


def test_a_scheduled_pack_is_claimed_once_per_period_across_hubs() -> None:
    """Several hubs over one store each run a scheduler; the claim written through the writer lets
    one of them pack per period (a second claim within the period is refused, nothing written)."""
    from shopkeeper.engine.maintenance import CLAIM_KEY, claim_scheduled_pack

    with Store.open("memory://") as store:
        with store.transaction() as f:
            assert claim_scheduled_pack(f, every_seconds=3600) is True
        with store.transaction() as f:  # another hub, the same hour
            assert claim_scheduled_pack(f, every_seconds=3600) is False
        with store.transaction() as f:
            f.meta[CLAIM_KEY] -= 3600 * 1_000_000  # an hour later
        with store.transaction() as f:
            assert claim_scheduled_pack(f, every_seconds=3600) is True


def test_with_two_hubs_only_the_pack_lease_holder_packs_and_another_takes_over_when_it_stops(
        pg_store_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two hubs over one PostgreSQL, both configured to pack: the holder of the ``pack`` lease packs
    every period and the other never does; when the holder stops (releasing its leases), the other
    takes the lease and packs. (With only the period claim, the hubs took turns.)

    The leases' clock stands still here, so no lease can lapse on time: this test is about who
    holds the lease, and it failed once at load ~16 when a stall of the holder's writer let the
    10 s term pass (tests/test_leases.py covers renewal under stalls, with a clock of its own).
    Everything below waits on state: packs counted, the lease released."""
    from shopkeeper.engine import leases as leases_mod
    from shopkeeper.hub.config import PackSchedule

    frozen = leases_mod.now_us()
    monkeypatch.setattr(leases_mod, "now_us", lambda: frozen)
    schedule = PackSchedule(every_seconds=0.3, keep_days=0.0)
    hubs = [start_hub(store=Store.open(pg_store_uri), pack=schedule) for _ in range(2)]
    for r in hubs:
        r.hub._own_store = True
    try:
        engines = [r.hub.engine for r in hubs]
        wait_for(lambda: sum(e.pack_runs for e in engines) >= 3, timeout=120, what="three scheduled packs")
        holder = 0 if engines[0].pack_runs else 1
        other = 1 - holder
        assert engines[other].pack_runs == 0, [e.pack_runs for e in engines]
        assert engines[holder].leases.held("pack") and not engines[other].leases.held("pack")
        hubs[holder].hub.stop(grace=0.5)
        wait_for(lambda: engines[other].pack_runs >= 1, timeout=120, what="the other hub's scheduled packs")
        assert engines[other].leases.held("pack")
    finally:
        for r in hubs:
            r.hub.stop(grace=0.5)


def _files_holding(root: Path, needles: list[bytes]) -> set[bytes]:
    """Which of ``needles`` any file under ``root`` holds, read as raw bytes."""
    found: set[bytes] = set()
    for p in root.rglob("*"):
        if p.is_file():
            try:
                data = p.read_bytes()
            except OSError:  # a WAL segment unlinked while we walked
                continue
            found.update(n for n in needles if n in data)
    return found


def test_erase_then_scheduled_pack_with_rewrite_leaves_no_erased_bytes_in_postgresqls_files(pg_server) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL a pack alone leaves the erased rows' old versions readable in object_state's file
    and in (recycled) WAL segments; with ``pack.rewrite`` the hub's scheduled pack rewrites the table
    online with pg_repack and retires the old WAL, so no file of the cluster holds them — while a
    kept customer's identity is still found (the scan reads the files)."""
    from shopkeeper.hub.config import PackSchedule

    _set_wal_recycle(pg_server, "off")  # what docs/operations.md asks of the server
    uri = pg_server.create_database()
    pg_server.psql("CREATE EXTENSION IF NOT EXISTS pg_repack", uri.rsplit("/", 1)[1])
    store = Store.open(uri)
    r = start_hub(store=store, pack=PackSchedule(every_seconds=0.5, keep_days=0.0, rewrite=True))
    try:
        c = r.client("admin")
        ev = event(email="forgotten-7q2x@example.com", key="f1", url="/", pad="x" * 3000)
        ev.identities.add(namespace="cookie", value="cookie-91ce55aa")
        record(c, ev)
        record(c, event(email="kept-7q2x@example.com", key="k1"))
        c.customers.ForgetCustomer(customers_pb2.ForgetCustomerRequest(
            customer=ident("email", "forgotten-7q2x@example.com"), reason="test"), metadata=c.md)
        erased_at = r.hub.engine.pack_runs
        wait_for(lambda: r.hub.engine.pack_runs >= erased_at + 2, timeout=120,
                 what="two scheduled packs with rewrite after the erasure")
        assert "rewrite_error" not in r.hub.engine.last_pack, r.hub.engine.last_pack
        assert r.hub.engine.last_pack["rewrite_seconds"] > 0
        found = _files_holding(pg_server.data, [b"forgotten-7q2x@example.com", b"cookie-91ce55aa",
                                                b"kept-7q2x@example.com"])
    finally:
        r.hub.stop(grace=0.5)
        store.close()
    assert found == {b"kept-7q2x@example.com"}


def test_pack_rewrite_is_refused_on_a_storage_that_does_not_need_it(tmp_path: Path) -> None:
    from shopkeeper.hub.config import PackSchedule

    with pytest.raises(ConfigError, match="pack.rewrite: only for a postgresql:// store"):
        start_hub(store=Store.open(f"file://{tmp_path}/Data.fs"),
                  pack=PackSchedule(every_seconds=60, keep_days=0.0, rewrite=True))


def test_pack_rewrite_refuses_a_server_that_recycles_wal_naming_the_setting(pg_server) -> None:  # type: ignore[no-untyped-def]
    """With wal_recycle on, old segments are renamed with the erased rows in them: the rewrite
    would promise what it cannot keep, so it refuses and says which setting to change."""
    from shopkeeper.ops.pg import erase_rewrite
    from shopkeeper.store import StoreError

    uri = pg_server.create_database()
    _set_wal_recycle(pg_server, "on")
    try:
        with pytest.raises(StoreError, match=r"wal_recycle = on.*set wal_recycle = off"):
            erase_rewrite(uri)
    finally:
        _set_wal_recycle(pg_server, "off")


def _set_wal_recycle(pg_server, value: str) -> None:  # type: ignore[no-untyped-def]
    """Set the session cluster's wal_recycle and wait until new connections see it (the reload
    is a signal: a connection opened at once may still get the old value)."""
    pg_server.psql(f"ALTER SYSTEM SET wal_recycle = {value}")
    pg_server.psql("SELECT pg_reload_conf()")
    wait_for(lambda: pg_server.psql("SHOW wal_recycle").strip() == value, timeout=30,
             what=f"wal_recycle = {value} for new connections")
