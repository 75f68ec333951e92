"""Opening stores by URI, generations, pack, erasure."""

from __future__ import annotations

import pytest

from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.privacy import export_customer, forget
from shopkeeper.store import CURRENT_GENERATION, Store, StoreError

T0 = 1_750_000_000


def test_store_written_by_the_previous_generation_is_evolved(tmp_path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri, target_generation=1) as old:  # generation 2 added tombstones
        assert old.generation == 1
        with old.read() as f:
            assert "tombstones" not in f.root
    with Store.open(uri) as s:
        assert s.generation == CURRENT_GENERATION
        with s.read() as f:
            assert "tombstones" in f.root and "proposals" in f.root
            assert f.counter("forgotten") == 0


def test_store_from_a_newer_shopkeeper_is_refused(tmp_path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri) as s, s.transaction() as f:
        f.meta["generation"] = CURRENT_GENERATION + 1
    with pytest.raises(StoreError, match="upgrade Shopkeeper"):
        Store.open(uri)


@pytest.mark.parametrize(
    ("uri", "msg"),
    [("ftp://x/y", "unknown storage scheme"), ("file:///", "must name the storage file"),
     ("postgresql://u@127.0.0.1:1/db", "cannot open the PostgreSQL store"),
     ("postgresql://u@127.0.0.1:1/db?cache-local-megs=9", "unknown PostgreSQL store option 'cache-local-megs'"),
     ("postgresql://u@127.0.0.1:1/db?cache-local-mb=lots", "'cache-local-mb' must be int"),
     ("postgresql://u@127.0.0.1:1/db?cache-local-dir=/tmp", "cache-local-dir needs cache-prefix")],
)
def test_bad_uris_get_a_clear_error(uri: str, msg: str) -> None:
    with pytest.raises(StoreError, match=msg):
        Store.open(uri)


def test_second_process_cannot_open_a_locked_filestorage(tmp_path) -> None:
    uri = f"file://{tmp_path}/Data.fs"
    with Store.open(uri), pytest.raises(StoreError, match="cannot open FileStorage"):
        Store.open(uri)


def test_plain_path_means_filestorage(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Store.open("var/Data.fs") as s:
        assert "FileStorage" in s.description
    assert (tmp_path / "var" / "Data.fs").exists()


@pytest.mark.zeo
def test_zeo_uri_opens_a_client(zeo_server: str) -> None:
    with Store.open(zeo_server) as s:
        assert s.description.startswith("ZEO")
        assert s.generation == CURRENT_GENERATION


def _fill(store: Store) -> str:
    with Ingestor(store) as ing:
        ing.apply([validate_event({"type": "order", "identities": {"email": "erin.secret@example.org",
                                                                     "phone": "+14155550177"},
                                   "ts": T0, "idempotency_key": "e1", "traits": {"city": "Zwolle-Unique-Town"},
                                   "data": {"order_id": "o-1", "amount": 12.0}})])
    with store.read() as f:
        return f.customer_by_identity("email", "erin.secret@example.org").id


def test_export_holds_everything(store: Store) -> None:
    cid = _fill(store)
    with store.read() as f:
        data = export_customer(f, f.customer(cid))
    assert {i["value"] for i in data["identities"]} == {"erin.secret@example.org", "+14155550177"}
    assert data["interactions"][0]["data"]["order_id"] == "o-1"
    assert data["traits"]["city"] == "Zwolle-Unique-Town"


def test_forget_erases_blocks_resurrection_and_pack_removes_the_bytes(tmp_path) -> None:
    path = tmp_path / "Data.fs"
    with Store.open(f"file://{path}") as s:
        cid = _fill(s)
        assert b"erin.secret@example.org" in path.read_bytes()
        with s.transaction() as f:
            assert forget(f, f.customer(cid)) == 2
        with s.read() as f:
            c = f.customers[cid]
            assert c.status == "forgotten" and len(c.history) == 0 and not c.traits
            assert len(c.identities) == 0 and not hasattr(c.identities, "_p_oid")  # inline: no record of its own
            assert f.customer_by_identity("email", "erin.secret@example.org") is None
            assert f.counter("customers") == 0 and f.counter("forgotten") == 1
        with Ingestor(s) as ing:
            [r] = ing.apply([validate_event({"type": "page_view", "identities": {"email": "Erin.Secret@example.org"},
                                             "ts": T0 + 5, "idempotency_key": "e2", "data": {"url": "/"}})])
        assert r.status == "rejected" and "forgotten" in r.error
        s.pack()
    data = path.read_bytes()
    for secret in (b"erin.secret@example.org", b"+14155550177", b"Zwolle-Unique-Town", b"o-1"):
        assert secret not in data
    assert not (tmp_path / "Data.fs.old").exists()
