"""The customer's packed record: how a ``Customer`` is pickled into, and rebuilt from, its ZODB record.

ZODB pickles a record with a Python ``persistent_id`` hook that it calls for *every* object the
pickler visits: a Customer's plain dicts (facts, counts, consents, scores, segments, rule state,
keys) were ~100 calls and most of the pickling time of each write. :meth:`PackedRecord.__getstate__`
therefore packs every plain attribute into one ``bytes`` value with the C pickler alone (no hook),
so the record's state is a handful of entries: that value plus the references to the customer's
own persistent objects (identities, history, outbox, key logs). ``__setstate__`` unpacks it;
records written before (plain state) still load and are packed on their next write.

Split out of ``shopkeeper.customer`` (a module at the layout cap) by job: this is the record's
stored form, the customer module its behaviour. ``Customer`` takes these methods by inheritance,
so stored records still name ``shopkeeper.customer.Customer``.
"""

from __future__ import annotations

import pickle
from typing import Any

from persistent import Persistent

from .identitymap import IdentityMap
from .packing import pack_plain
from .recent import RecentWindow

#: Bumped when the pickled shape of ``Customer`` changes; ``__setstate__`` upgrades old
#: records lazily, the moment they are loaded (the ZODB idiom for per-object evolution).
CUSTOMER_SCHEMA = 1

#: attributes that hold (or may hold) persistent objects: they stay references in the record's state
_REFERENCES = frozenset({"identities", "_tree", "outbox", "key_log", "key_log_old"})
_HOT = "_hot"


class PackedRecord(Persistent):
    """``Customer``'s ``__getstate__``/``__setstate__`` (see the module notes)."""

    __slots__ = ()

    def __getstate__(self) -> dict[str, Any]:
        """The record's state: references to the persistent parts plus every plain attribute packed
        into one ``bytes`` value (see the module notes on ``persistent_id``); an attribute that holds a
        persistent object stays a plain entry (a reference inside it must stay a reference)."""
        plain = super().__getstate__()  # a fresh dict: the references are taken out of it
        refs = {}
        for k in _REFERENCES:
            v = plain.pop(k, None)
            if type(v) is IdentityMap:  # identities kept inline (``shopkeeper.identitymap``)
                plain[k] = v
            elif v is not None:  # None is each one's class default: left out, it loads as None all the same
                refs[k] = v
        recent = plain.get("_recent")
        if recent is not None:  # each interaction as its packed bytes: as loaded, or packed once
            plain["_recent"] = recent.packed()
        packed = pack_plain(plain)
        if packed is None:  # some attribute holds a persistent object: pack the others
            for k in list(plain):
                if pack_plain({k: plain[k]}) is None:
                    refs[k] = plain.pop(k)
            packed = pack_plain(plain)
        refs[_HOT] = packed
        return refs

    def __setstate__(self, state: dict[str, Any]) -> None:
        hot = state.pop(_HOT, None)
        if hot is not None:
            state.update(pickle.loads(hot))
        if "scores" in state:  # written before model scores moved to ``shopkeeper.scoretable``
            state["_scores"] = state.pop("scores")
        state.setdefault("_scores", {})
        if "history" in state:  # written before the recent history moved into the record
            state["_tree"] = state.pop("history")
        # left out of the state when None (``__getstate__``); kept attributes must be in the instance dict
        state.setdefault("_tree", None)
        state.setdefault("outbox", None)
        recent = state.get("_recent")
        if recent is not None:  # left packed: each interaction is unpacked when first read
            state["_recent"] = RecentWindow.stored(recent)
        # Lazy per-object schema upgrade: add attributes that newer code expects.
        state.setdefault("schema", CUSTOMER_SCHEMA)
        state.setdefault("traits", {})
        state.setdefault("merged_from", ())
        super().__setstate__(state)
