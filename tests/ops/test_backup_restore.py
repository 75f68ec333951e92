"""Online backup and restore, and storage copy, verified customer by customer (issue 17).

Each backup is taken while a hub serves the store and keeps committing; the restore is compared
with the backup's manifest (counts and a digest per customer) and with the source as seen
through the hub."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub.conftest import event, record, start_hub

from shopkeeper.cli import main
from shopkeeper.ops.verify import customer_digest
from shopkeeper.store import Store, StoreOptions

pytestmark = pytest.mark.e2e


def cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def digests(uri: str) -> dict[str, str]:
    with Store.open(uri, StoreOptions(read_only=True)) as s, s.read() as f:
        return {cid: customer_digest(c) for cid, c in f.customers.items()}


class Busy:
    """Keeps the hub committing events from another thread while a backup runs."""

    def __init__(self, client, prefix: str) -> None:  # type: ignore[no-untyped-def]
        self.client, self.prefix, self.sent = client, prefix, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            who = f"{self.prefix}{self.sent % 7}@example.com"
            record(self.client, event(email=who, key=f"{self.prefix}{self.sent}"))
            self.sent += 1

    def __enter__(self) -> Busy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def file_hub(tmp_path: Path) -> Iterator[tuple[str, object]]:
    uri = f"file://{tmp_path}/live/Data.fs"
    store = Store.open(uri)
    r = start_hub(store=store)
    yield uri, r
    r.hub.stop(grace=0.5)
    store.close()


def test_filestorage_full_and_incremental_backup_while_the_hub_writes_restores_customer_by_customer(
        tmp_path: Path, file_hub) -> None:  # type: ignore[no-untyped-def]
    uri, r = file_hub
    c = r.client("admin")
    for i in range(12):
        record(c, event(email=f"c{i % 5}@example.com", key=f"a{i}", url=f"/p{i}"))
    with Busy(c, "busy-a"):
        code, out = cli("backup", "--store", uri, "--to", str(tmp_path / "bk"))
    assert code == 0, out
    assert "full" in out
    for i in range(6):
        record(c, event(email=f"n{i}@example.com", key=f"b{i}"))
    with Busy(c, "busy-b") as busy:
        code, out = cli("backup", "--store", uri, "--to", str(tmp_path / "bk"))
    assert code == 0, out
    assert "incremental" in out and busy.sent > 0
    assert list((tmp_path / "bk").glob("*.deltafs")), "the second backup is an increment"

    restored = f"file://{tmp_path}/restored/Data.fs"
    code, out = cli("restore", "--from", str(tmp_path / "bk"), "--to", restored, "--verify")
    assert code == 0, out
    assert "verified: counts and" in out
    # customer by customer against the live store: every customer the backup knew is identical
    # unless the busy writer touched it after the backup (only its own busy-* customers)
    live, back = digests(uri), digests(restored)
    assert {f"c{i}" for i in range(5)} | {f"n{i}" for i in range(6)} <= {_email(restored, cid) for cid in back}
    changed = {_email(uri, cid) for cid in back if live.get(cid) != back[cid]}
    assert all(e.startswith("busy-b") for e in changed), changed

    code, out = cli("restore", "--from", str(tmp_path / "bk"), "--to", restored)
    assert code == 1 and "exists; restore into a new file" in out


def test_back_to_back_filestorage_backups_all_restore(tmp_path: Path, file_hub) -> None:  # type: ignore[no-untyped-def]
    """repozo names backup files by the second; an increment taken in the second of the file
    before it used to be left out of the restore (and of the manifest, so --verify agreed)."""
    uri, r = file_hub
    c = r.client("admin")
    for i in range(4):
        record(c, event(email=f"q{i}@example.com", key=f"q{i}"))
        code, out = cli("backup", "--store", uri, "--to", str(tmp_path / "bk"))
        assert code == 0, out
    restored = f"file://{tmp_path}/restored/Data.fs"
    code, out = cli("restore", "--from", str(tmp_path / "bk"), "--to", restored, "--verify")
    assert code == 0, out
    assert {f"q{i}" for i in range(4)} <= {_email(restored, cid) for cid in digests(restored)}


def _email(uri: str, cid: str) -> str:
    with Store.open(uri, StoreOptions(read_only=True)) as s, s.read() as f:
        return next(v for (ns, v) in f.customers[cid].identities.keys() if ns == "email").split("@")[0]


def test_restore_verify_names_the_customer_that_differs(tmp_path: Path, file_hub) -> None:  # type: ignore[no-untyped-def]
    uri, r = file_hub
    c = r.client("admin")
    for i in range(4):
        record(c, event(email=f"v{i}@example.com", key=f"v{i}"))
    assert cli("backup", "--store", uri, "--to", str(tmp_path / "bk"))[0] == 0
    restored = f"file://{tmp_path}/restored/Data.fs"
    assert cli("restore", "--from", str(tmp_path / "bk"), "--to", restored)[0] == 0
    with Store.open(restored) as s, s.transaction() as f:  # offline damage, as a bad disk or bug would do
        cid = f.identities[("email", "v2@example.com")]
        f.customers[cid].traits = {"name": "Mallory"}
    code, out = cli("restore", "--from", str(tmp_path / "bk"), "--to", f"file://{tmp_path}/x/Data.fs", "--verify")
    assert code == 0, out  # a fresh restore is fine
    from shopkeeper.ops.backup import verify_restore

    cmp = verify_restore(tmp_path / "bk", restored)
    assert not cmp.ok and cmp.different == [cid] and cmp.missing == [] and cmp.counts == []
    assert f"1 customer(s) different: {cid}" in cmp.lines()


@pytest.mark.zeo
def test_zeo_backup_through_the_storage_is_incremental_and_restores_into_zeo_and_file(
        tmp_path: Path, zeo_server: str) -> None:
    from .conftest import erasure_safe_zeo

    store = Store.open(zeo_server)
    r = start_hub(store=store)
    try:
        c = r.client("admin")
        for i in range(8):
            record(c, event(email=f"z{i % 3}@example.com", key=f"z{i}"))
        with Busy(c, "busy-z"):
            code, out = cli("backup", "--store", zeo_server, "--to", str(tmp_path / "bk"))
        assert code == 0 and "full" in out, out
        record(c, event(email="late@example.com", key="late"))
        code, out = cli("backup", "--store", zeo_server, "--to", str(tmp_path / "bk"))
        assert code == 0 and "incremental" in out, out
        live = digests(zeo_server)
    finally:
        r.hub.stop(grace=0.5)
        store.close()
    code, out = cli("restore", "--from", str(tmp_path / "bk"), "--to", f"file://{tmp_path}/r/Data.fs", "--verify")
    assert code == 0, out
    assert digests(f"file://{tmp_path}/r/Data.fs") == live  # nothing written after the last backup
    with erasure_safe_zeo(tmp_path / "zeo2") as fresh:
        code, out = cli("restore", "--from", str(tmp_path / "bk"), "--to", fresh, "--verify")
        assert code == 0, out
        assert digests(fresh) == live


@pytest.mark.zeo
def test_storage_copy_from_a_served_filestorage_into_zeo_and_back(tmp_path: Path, file_hub) -> None:  # type: ignore[no-untyped-def]
    from .conftest import erasure_safe_zeo

    uri, r = file_hub
    c = r.client("admin")
    for i in range(10):
        record(c, event(email=f"s{i % 4}@example.com", key=f"s{i}"))
    with erasure_safe_zeo(tmp_path / "zeo") as zeo:
        code, out = cli("storage", "copy", uri, zeo, "--quiet")
        assert code == 0, out
        assert "copied" in out and "transactions" in out
        assert digests(zeo) == digests(uri)
        code, out = cli("storage", "copy", uri, zeo, "--quiet")
        assert code == 1 and "is not empty" in out
        back = f"file://{tmp_path}/back/Data.fs"
        code, out = cli("storage", "copy", zeo, back, "--quiet", "--verify")
        assert code == 0 and "verified" in out, out


def test_the_manifest_works_in_a_process_that_never_imported_the_cli() -> None:
    """shopkeeper.exporter and shopkeeper.cli import each other; a library user (a backup script)
    importing shopkeeper.ops first got an ImportError from the digest."""
    import subprocess
    import sys

    code = ("from shopkeeper.ops.backup import store_manifest\n"
            "from shopkeeper.store import Store\n"
            "import sys\n"
            "with Store.open(sys.argv[1]) as s, s.transaction() as f:\n"
            "    from shopkeeper.customer import Customer\n"
            "    f.add_customer(Customer('c1'))\n"
            "print(len(store_manifest(sys.argv[1])['customers']))\n")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run([sys.executable, "-c", code, f"file://{tmp}/Data.fs"], capture_output=True, text=True,
                             timeout=120)
    assert got.returncode == 0 and got.stdout.strip() == "1", got.stderr[-2000:]
