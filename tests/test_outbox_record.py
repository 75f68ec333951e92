"""How an outbox intent is stored: one plain ``bytes`` value per item, and older records still load.

Every claim and delivery report rewrites the customer's outbox tree; ZODB's pickler calls its
Python ``persistent_id`` hook for every object it visits, so an item pickled field by field (14
fields and the payload dict) cost ~30 calls each time. ``OutboxItem.__reduce__`` packs it like
``Interaction`` does."""

from __future__ import annotations

import io
import pickle

import pytest
import transaction
from BTrees.OOBTree import OOBTree

from shopkeeper import outbox
from shopkeeper.outbox import OutboxItem

ITEM = OutboxItem("ix1", "email", "welcome", "marketing", {"offer": "O1", "n": 3, "tags": ["a", "b"]}, 5, "rule:x",
                  outbox.SENDING, "<m@x>", 7, 2, "timeout", 11, 13)


class Counting(pickle.Pickler):
    def __init__(self) -> None:
        super().__init__(io.BytesIO(), 3)
        self.visits = 0

    def persistent_id(self, obj: object) -> None:
        self.visits += 1
        return None


def test_an_item_is_pickled_as_one_bytes_value_with_few_visits() -> None:
    p = Counting()
    p.dump(ITEM)
    assert p.visits <= 4  # the function, its argument tuple, the bytes (field by field: ~30)
    assert pickle.loads(pickle.dumps(ITEM, 3)) == ITEM
    assert type(pickle.loads(pickle.dumps(ITEM, 3))) is OutboxItem


def test_items_round_trip_through_the_store_and_old_records_still_load(store, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:  # an item as written before: class reference plus fields
        m.delattr(OutboxItem, "__reduce__")
        old = pickle.dumps(ITEM._replace(id="ix0"), 3)
    assert b"OutboxItem" in old
    conn, tm = store.connect()
    try:
        with tm:
            box = conn.root()["box"] = OOBTree()
            box["ix1"] = ITEM
            box["ix0"] = pickle.loads(old)
        conn.cacheMinimize()  # ghosts: read back from the storage
        with tm:
            box = conn.root()["box"]
            assert box["ix1"] == ITEM and type(box["ix1"]) is OutboxItem
            assert box["ix0"] == ITEM._replace(id="ix0")
            assert box["ix1"].payload == {"offer": "O1", "n": 3, "tags": ["a", "b"]}
    finally:
        transaction.abort()
        conn.close()


def test_an_item_written_before_fields_were_appended_takes_their_defaults() -> None:
    from shopkeeper.customer import _pack_fields

    short = _pack_fields(tuple(ITEM)[:12])  # before not_before and expires_at existed
    got = outbox._unpack_item(short)
    assert got.not_before == 0 and got.expires_at == 0 and got.error == "timeout"
