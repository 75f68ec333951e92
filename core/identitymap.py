"""A customer's identities kept inside their own record while they are few (generation 10,
``identities-inline``; docs/benchmarks.md §90).

Before it, every customer's identities were an ``OOBTree`` of their own: a record of its own per
customer, written when the customer is created (an import of 23,570 new customers committed 23,570
of them beside the customers themselves) and loaded by every cold read of the customer (one of the
~4 loads of a cold ``GetCustomer``). Nearly every customer has one to a few identities, so
:class:`IdentityMap` holds them as a plain mapping that is pickled inside the customer's packed
record (``Customer.__getstate__``); past :data:`INLINE_MAX` entries (a visitor's many cookies) they
move into an ``OOBTree`` again, since what grows belongs in a BTree.

Lazy on an existing store: a customer whose identities are still an ``OOBTree`` is read through the
same API (``keys(min, max)``, ``items()``, ``get``, ``in``, ``len``…), and the next write of their
identities (:func:`linked`, :func:`unlinked`) stores them inline when they fit. Nothing is rewritten
when a store is opened; the generation is recorded so that older code, which cannot unpickle this
class, refuses the store instead of failing on a customer.

The class lives here for good: stored records name it ``shopkeeper.identitymap.IdentityMap``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from BTrees.OOBTree import OOBTree

#: the most identities kept in the customer's record; one more and they move into an ``OOBTree``
INLINE_MAX = 8

_Pair = tuple[str, str]


class IdentityMap:
    """(namespace, value) -> ``IdentityLink``, sorted by key like the ``OOBTree`` it stands in for.

    Not persistent: it is part of the customer's record, so whoever changes it marks the customer
    (``Customer.link_identity`` / ``unlink_identity`` do)."""

    __slots__ = ("_d",)

    #: what a loaded persistent object answers: code that skips a ghost's re-read (the audience
    #: card's addresses) reads this as "loaded, may have changed"
    _p_changed = False

    def __init__(self, items: Any = ()) -> None:
        self._d: dict[_Pair, Any] = dict(sorted(dict(items).items()))

    def __reduce__(self) -> tuple[Any, tuple[list[tuple[_Pair, Any]]]]:
        return (IdentityMap, (list(self._d.items()),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdentityMap) and self._d == other._d

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"IdentityMap({list(self._d.items())!r})"

    # -- the BTree API that readers use ------------------------------------------------------

    def __len__(self) -> int:
        return len(self._d)

    def __bool__(self) -> bool:
        return bool(self._d)

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __iter__(self) -> Iterator[_Pair]:
        return iter(list(self._d))

    def __getitem__(self, key: _Pair) -> Any:
        return self._d[key]

    def __setitem__(self, key: _Pair, value: Any) -> None:
        d = self._d
        if key in d or not d or key > next(reversed(d)):
            d[key] = value
        else:  # keep the keys sorted (a handful of them)
            d[key] = value
            self._d = dict(sorted(d.items()))

    def __delitem__(self, key: _Pair) -> None:
        del self._d[key]

    def get(self, key: _Pair, default: Any = None) -> Any:
        return self._d.get(key, default)

    def pop(self, key: _Pair, *default: Any) -> Any:
        return self._d.pop(key, *default)

    def has_key(self, key: _Pair) -> bool:
        return key in self._d

    def _range(self, min: Any, max: Any) -> list[_Pair]:
        return [k for k in self._d if (min is None or k >= min) and (max is None or k <= max)]

    def keys(self, min: Any = None, max: Any = None) -> list[_Pair]:
        return self._range(min, max)

    def values(self, min: Any = None, max: Any = None) -> list[Any]:
        d = self._d
        return [d[k] for k in self._range(min, max)]

    def items(self, min: Any = None, max: Any = None) -> list[tuple[_Pair, Any]]:
        d = self._d
        return [(k, d[k]) for k in self._range(min, max)]

    def update(self, items: Any) -> None:
        for k, v in dict(items).items():
            self[k] = v


def linked(identities: Any, pair: _Pair, link: Any) -> Any:
    """``identities`` with ``pair`` -> ``link`` set, in the form to store: inline while at most
    :data:`INLINE_MAX` identities (an old customer's ``OOBTree`` moves inline here, on this write of
    their identities), an ``OOBTree`` beyond. May return the object it was given, changed."""
    if type(identities) is IdentityMap:
        if len(identities) < INLINE_MAX or pair in identities:
            identities[pair] = link
            return identities
        tree = OOBTree(identities.items())
        tree[pair] = link
        return tree
    size = len(identities) + (pair not in identities)
    if size <= INLINE_MAX:
        out = IdentityMap(identities.items())
        out[pair] = link
        return out
    identities[pair] = link
    return identities


def unlinked(identities: Any, pair: _Pair) -> tuple[Any, Any]:
    """(``identities`` without ``pair`` in the form to store, the link removed or None)."""
    link = identities.pop(pair, None)
    if link is not None and type(identities) is not IdentityMap and len(identities) <= INLINE_MAX:
        identities = IdentityMap(identities.items())
    return identities, link
