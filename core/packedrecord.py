"""The customer's packed record: how a ``Customer`` is pickled into, and rebuilt from, its ZODB record.

ZODB pickles a record with a Python ``persistent_id`` hook that it calls for *every* object the
pickler visits: a Customer's plain dicts (facts, counts, consents, scores, segments, rule state,
keys) were ~100 calls and most of the pickling time of each write. :meth:`PackedRecord.__getstate__`
therefore packs every plain attribute into one ``bytes`` value with the C pickler alone (no hook),
so the record's state is that value plus the references to the customer's own persistent objects
(identities, history, outbox, key logs). ``__setstate__`` unpacks it; records written before (plain
state) still load and are packed on their next write.

**The state is a tuple** (generation 12, ``customer-tuple-state``): ``(hot, identities, _tree,
key_log, outbox, key_log_old)``, trailing Nones left out — not a dict, whose key strings the hook
visited too (a customer with history and a key log, identities inline: 12 ``persistent_id`` calls →
10, most customers 4 → 3; docs/benchmarks.md §94). Records in the dict form (``{"_hot": …, "_tree":
…}``, generations before 12, and the rare record with a persistent object inside a plain attribute) load as before and
are written as a tuple on the customer's next write: lazy, nothing walked at open.

Split out of ``shopkeeper.customer`` (a module at the layout cap) by job: this is the record's
stored form, the customer module its behaviour. ``Customer`` takes these methods by inheritance,
so stored records still name ``shopkeeper.customer.Customer``.
"""

from __future__ import annotations

import pickle
from typing import Any

from .identitymap import IdentityMap
from .packing import pack_plain
from .recent import RecentWindow

#: Bumped when the pickled shape of ``Customer`` changes; ``__setstate__`` upgrades old
#: records lazily, the moment they are loaded (the ZODB idiom for per-object evolution).
CUSTOMER_SCHEMA = 1

#: attributes that hold (or may hold) persistent objects: they stay references in the record's state,
#: in this order after the packed value in the tuple form
_SLOTS = ("identities", "_tree", "key_log", "outbox", "key_log_old")  # (``__getstate__`` spells them out)
_REFERENCES = frozenset(_SLOTS)
#: the packed value's key in the dict form
_HOT = "_hot"


class PackedRecord:
    """``Customer``'s ``__getstate__``/``__setstate__`` (see the module notes): a mixin before
    ``Persistent`` in its bases, whose methods ``super()`` reaches; no persistent class of its own."""

    __slots__ = ()

    def __getstate__(self) -> tuple[Any, ...] | dict[str, Any]:
        """The record's state: every plain attribute packed into one ``bytes`` value (see the module
        notes on ``persistent_id``), then the references to the persistent parts, in :data:`_SLOTS`'
        order, trailing Nones left out. The dict form when a plain attribute holds a persistent object
        (a reference inside it must stay a reference, so it stays a plain entry)."""
        plain = super().__getstate__()  # a fresh dict: the references are taken out of it
        pop = plain.pop
        ids = pop("identities", None)
        if type(ids) is IdentityMap:  # identities kept inline (``shopkeeper.identitymap``): packed with the rest
            plain["identities"] = ids
            ids = None
        refs = (ids, pop("_tree", None), pop("key_log", None), pop("outbox", None),
                pop("key_log_old", None))  # _SLOTS, spelled out: no comprehension's frame per write
        recent = plain.get("_recent")
        if recent is not None:  # each interaction as its packed bytes: as loaded, or packed once
            plain["_recent"] = recent.packed()
        packed = pack_plain(plain)
        if packed is not None:
            n = 5
            while n and refs[n - 1] is None:  # (each one's class default is None: loads as None all the same)
                n -= 1
            return (packed, *refs[:n])
        state = {k: v for k, v in zip(_SLOTS, refs, strict=True) if v is not None}
        for k in list(plain):
            if pack_plain({k: plain[k]}) is None:
                state[k] = plain.pop(k)
        state[_HOT] = pack_plain(plain)
        return state

    def __setstate__(self, state: tuple[Any, ...] | dict[str, Any]) -> None:
        if type(state) is tuple:  # generation 12
            d = pickle.loads(state[0])
            for k, v in zip(_SLOTS, state[1:], strict=False):  # (trailing Nones left out)
                if v is not None:
                    d[k] = v
            state = d
        else:
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


def named(state: tuple[Any, ...] | dict[str, Any]) -> dict[str, Any]:
    """A record state of either form as the dict form names its parts (``_hot`` and the references
    present): for readers that look inside a record (tests, probes)."""
    if type(state) is not tuple:
        return dict(state)
    return {_HOT: state[0], **{k: v for k, v in zip(_SLOTS, state[1:], strict=False) if v is not None}}
