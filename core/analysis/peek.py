"""A customer's record read for its segment conditions without loading the customer (issue 10's
"full re-evaluation ≤ 60 µs per customer"; docs/benchmarks.md, the twelfth session's re-evaluation
section).

Why: a full re-evaluation loads every customer, and a scheduler's run changes few of them. Loading a
``Customer`` through its connection (``Connection.setstate``) is most of such a run: a ZODB
unpickler built per record with Python hooks, the packed hot state unpickled with every part built
as the customer holds it — the identities' ``IdentityMap`` (a Python ``__init__`` that sorts), the
per-day aggregates' ``Daily`` (a Python reduce), the recent window wrapped, the schema defaults set
— then the object registered in, and later evicted from, the connection's cache.

:func:`peek` reads the same bytes the connection would load (``conn._storage.load``: the
connection's own snapshot) and unpickles them with one plain ``Unpickler`` that builds the parts a
condition reads as plain values: the aggregates as a ``dict``, the identities as a ``list`` (no
condition of a peeked customer reads them: see :class:`Peeked`). The result is a :class:`Peeked`,
which the membership function reads as it reads a ``Customer`` (the same attribute names and the
methods conditions call). The caller judges it; only a customer whose membership changes — or one
a condition cannot judge from the peeked record (:class:`NeedRecord`) — is then loaded and judged
again from its record, so what is written is exactly what the record path writes.

This only reads. Since generation 16 a peeked customer's memberships are its row in
``root['memberships']`` (:mod:`shopkeeper.memberships`), so a re-evaluation writes a peeked customer's
change there without loading it (``Peeked._row``); a record from before, which still holds them, is
loaded for a change as before.
"""

from __future__ import annotations

import pickle
from io import BytesIO
from marshal import loads as _mloads
from typing import Any

from .. import memberships
from ..customer import Customer
from ..packedrecord import _SLOTS
from ..scoretable import ScoreView
from ..values import _N_FIELDS, _PICKLE4, fields_of

loads = pickle.loads
_ALL_FIELDS = {_N_FIELDS}

#: the attributes conditions read, which a generation-12 hot state holds (a record without one of
#: them — an old one that ``Customer.__setstate__`` would fill in — is read as a customer instead)
_READ = frozenset({"id", "status", "hard", "type_counts", "soft", "traits", "consents", "_scores",
                   "rule_state", "daily", "last_at", "identities"})


class NeedRecord(Exception):  # noqa: N818 - a signal, not an error
    """A condition asked for something a peeked record does not answer (the history, the identities):
    the caller judges the customer from its record."""


class _Ref:
    """A persistent reference in a peeked record's state (a spilled history, an identities tree): not
    loaded; reading it is a :class:`NeedRecord`."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        raise NeedRecord(name)

    def __bool__(self) -> bool:
        raise NeedRecord("reference")


_REF = _Ref()


#: what a peeked record's pickles name -> what to build instead of it (everything else as stored)
_INSTEAD: dict[tuple[str, str], Any] = {
    ("shopkeeper.customer", "_unpack_daily"): pickle.loads,  # the aggregates as a plain dict
    ("shopkeeper.identitymap", "IdentityMap"): list,  # the pairs as stored: a peek's identities are not read
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        got = _INSTEAD.get((module, name))
        if got is None:  # found once, then kept beside the stand-ins (a record names 3-5 globals)
            got = _INSTEAD[(module, name)] = super().find_class(module, name)
        return got

    def persistent_load(self, pid: Any) -> Any:
        return _REF


class Peeked:
    """A customer as a peeked record shows it to a condition: its hot state's attributes (``__dict__``
    is the unpickled state itself), the methods and properties the generated code and ``Env`` call.
    Anything about the history or the identities is a :class:`NeedRecord`."""

    forgotten = None
    merged_into = None

    #: the customer's own rule (one contact policy), read from the peeked ``consents``
    may_contact = Customer.may_contact

    @property
    def scores(self) -> ScoreView:
        return ScoreView(self)  # type: ignore[arg-type] - reads ``_scores`` and ``id``

    @property
    def history(self) -> Any:
        raise NeedRecord("history")

    def interactions(self, *args: Any, **kwargs: Any) -> Any:
        raise NeedRecord("history")

    def identities_in(self, namespace: str) -> list[str]:
        raise NeedRecord("identities")

    @property
    def _p_jar(self) -> Any:
        """No connection: a reader that would find the store from the customer (``scoretable.tables_of``,
        which without one reads own scores only) must not judge a peek."""
        raise NeedRecord("_p_jar")


def peek(conn: Any, oid: bytes, customer_class: type, rows: dict[str, bytes] | None = None) -> Peeked | None:
    """The record ``oid`` as its connection ``conn`` would load it, read for conditions; None when it
    is not a ``customer_class`` record in the packed form of generation 12 with every part conditions
    read (then the caller loads the customer). ``rows``: the memberships rows of a run of customers
    read at once by the caller (``dict(tree.items(first, last))``: one walk of the buckets, not a lookup
    per customer), else the customer's row is looked up."""
    p, _serial = conn._storage.load(oid)
    u = _Unpickler(BytesIO(p))
    meta = u.load()
    klass = meta[0] if type(meta) is tuple else meta
    if klass is not customer_class:
        return None
    state = u.load()
    if type(state) is not tuple:  # the dict form (before generation 12, or a persistent object in a plain part)
        return None
    refs = state[1:]
    d = _Unpickler(BytesIO(state[0])).load()
    if not _READ <= d.keys():
        return None
    own = d.get("segments")
    if own:  # a record from before generation 16: changes are written to the record
        d["_row"] = False
    elif rows is not None:  # generation 16: the memberships' own row (``shopkeeper.memberships``)
        packed = rows.get(d["id"])
        d["segments"] = _mloads(packed) if packed is not None else {}
        d["_row"] = True  # a change is written to the row alone
    else:
        tree = memberships.tree_of(conn)
        d["segments"] = memberships.row(tree, d["id"]) if tree is not None else (own if own is not None else {})
        d["_row"] = tree is not None
    if refs and refs[0] is not None:  # identities in a tree of their own (more than fit inline)
        d["identities"] = _REF
    for name, ref in zip(_SLOTS[1:], refs[1:], strict=False):
        if ref is not None:
            d[name] = ref
    x = Peeked.__new__(Peeked)
    x.__dict__ = d
    return x



class _Moved(Exception):  # noqa: N818 - a signal
    """The membership function entered or left a segment: the customer is judged from its record."""


def _moved(name: str) -> None:
    raise _Moved(name)


def unchanged(x: Peeked, membership: Any, env: Any) -> bool:
    """Whether ``membership`` (a compiled membership function) leaves a peeked customer's segments as
    they are. Stops at the first entry or exit (the record is judged again from the start); a
    :class:`NeedRecord` is "no" too. ``env``: the ``Env`` of ``x``."""
    try:
        membership(env, x.segments, _moved, _moved)
    except (_Moved, NeedRecord):
        return False
    return True


def field_rows(x: Peeked) -> list[tuple[Any, ...]]:
    """``History.field_rows`` of a peeked customer with no spilled history (the caller checks: no
    ``_tree``) and its Decide records folded: every interaction's fields as a plain tuple, in key order."""
    recent = x._recent
    keys = sorted(recent)
    try:  # each one's packed bytes unpickled here, not through a call of ``fields_of`` each (10 per customer)
        rows = [loads(_PICKLE4 + recent[k]) for k in keys]
    except TypeError:  # an older record's window of ``Interaction``s
        return [fields_of(recent[k]) for k in keys]
    if rows and set(map(len, rows)) != _ALL_FIELDS:  # written before fields were appended: defaults filled
        return [fields_of(recent[k]) for k in keys]
    return rows
