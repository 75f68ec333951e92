"""A full segment re-evaluation from the audience cards, for segments whose conditions a card answers.

Why: :func:`shopkeeper.analysis.segments.reevaluate` loads and unpacks every customer record
(~100+ µs each: the packed hot state, every recent interaction) even when the conditions read
only what the audience index (:mod:`shopkeeper.audience`) already keeps per customer — order
facts, consents, segment membership. The campaign dry run reads those cards and the order facts
by a merge walk in key order, loading no customer record (docs/benchmarks.md §40); this does the
same for a re-evaluation: evaluate every card, and load (and rewrite) through the writer only
the records of customers whose membership changes. Those are re-evaluated from their record in
the writer's operation, so what is written is exactly what the record path writes, even if an
event changed the customer after its card was read.

A segment set qualifies when every condition reads only card fields and no aggregate but the two
the card's order facts answer (``days_since('order')``, ``spend()`` of all time:
:func:`shopkeeper.audience.answers_condition`); windows, type counts and other last-seen times
are on the record only. Otherwise the caller keeps the record
path; :func:`card_answerable` says which.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .. import audience, scoretable
from ..conditions import fields
from ..customer import STATUS_ACTIVE
from ..store import Store
from .conditions import Env


def _fields(defs: list[Any]) -> set[str] | None:
    """Every field the conditions of ``defs`` read, or None if a card cannot answer one of them
    (a field or an aggregate only the record has: :func:`shopkeeper.audience.answers_condition`)."""
    out: set[str] = set()
    for d in defs:
        tree = d.condition.tree
        if not audience.answers_condition(tree):
            return None
        out |= fields(tree)
    return out


def card_answerable(defs: list[Any]) -> bool:
    """Whether a card answers every condition of ``defs`` (then no record needs reading to judge)."""
    return _fields(defs) is not None


def reevaluate_cards(store: Store, segments: Any, defs: list[Any], now: int, batch: int, progress: Any,
                     feed: bool, submit: Any, stop: threading.Event | None, t0: float,
                     commit: Any) -> dict[str, Any] | None:
    """The card path of ``reevaluate`` (same arguments, same report); None when the store has no
    audience index (the caller reads the records). ``commit(op, note)`` runs a writer operation."""
    from .segments import rejudge

    with store.read() as f:
        if audience.cards_of(f.root) is None:
            return None
    if stop is not None and stop.is_set():  # as the record path: checked before every batch, the first too
        return {"customers": 0, "segments": len(defs), "entered": 0, "exited": 0, "stopped": True,
                "seconds": round(time.perf_counter() - t0, 3)}
    names = [d.name for d in defs]
    wanted = set(names)
    flds = _fields(defs) or set()
    read = wanted | {k[3:] for k in flds if k.startswith("g__")}
    orders = any(audience.needs_orders(d.condition.tree) for d in defs)
    membership = segments.membership(defs)
    members = dict.fromkeys(names, 0)
    entered = exited = customers = 0

    def rewrite(ids: list[str]) -> Any:
        """The writer op for the customers whose card says their membership changes: each judged
        again from its record (the record path's own steps), changed and put on the feed."""

        def op(f: Any, published: Any) -> tuple[int, int, dict[str, int]]:
            inn = out = 0
            seen = dict.fromkeys(names, 0)
            custs = f.customers
            tables = scoretable.tables_in(f.root)
            for cid in ids:
                c = custs.get(cid)
                if c is None or c.status != STATUS_ACTIVE:
                    continue
                i, o = rejudge(f, published, c, membership, now, feed, tables)
                inn += i
                out += o
                for name in c.segments:
                    if name in seen:
                        seen[name] += 1
            return inn, out, seen

        return op

    def flush(changed: list[str]) -> None:
        nonlocal entered, exited
        if changed:
            inn, out, seen = commit(rewrite(changed), "shopkeeper: segments re-evaluated")
            entered += inn
            exited += out
            for name, k in seen.items():
                members[name] += k
        if progress is not None:
            progress(customers, time.perf_counter() - t0)

    changed: list[str] = []
    n = 0
    # one read view (a snapshot: what the writer commits meanwhile is not seen, and the customers
    # whose membership moves are judged again from their records in the writer's op); the cache
    # is emptied after every batch so memory stays bounded
    with store.read() as f:
        for cid, card in audience.iter_cards(f.root, orders=orders, segments=read):
            if len(card) == 1 or card[0] != STATUS_ACTIVE:
                continue
            customers += 1
            view = audience.CardView(cid, card)
            now_in = view.segments = set(card[1] or ())  # live: a later in_segment sees an earlier change
            before = frozenset(now_in)
            membership(Env(view, now), now_in, now_in.add, now_in.discard)
            if now_in != before:
                changed.append(cid)
            else:
                for name in now_in:
                    if name in members:
                        members[name] += 1
            n += 1
            if n >= batch:
                f.conn.cacheMinimize()
                flush(changed)
                if stop is not None and stop.is_set():
                    return {"customers": customers, "segments": len(defs), "entered": entered, "exited": exited,
                            "stopped": True, "seconds": round(time.perf_counter() - t0, 3)}
                changed, n = [], 0
    flush(changed)
    return {"customers": customers, "segments": len(defs), "entered": entered, "exited": exited,
            "sizes": members, "path": "cards"}
