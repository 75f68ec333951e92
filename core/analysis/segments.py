"""Declarative segments: definitions in ``rules/segments/*.yaml`` (or through :class:`SegmentSet`),
membership kept in ``Customer.segments`` (a row of its own since generation 16: ``shopkeeper.memberships``).

A file holds one definition or a list under ``segments:``::

    segments:
      - name: big_spenders_90d
        description: spent more than 100 in the last 90 days
        when: spend(days=90) > 100
      - name: lapsed_visitors
        when: days_since('page_view') >= 30

``when`` is a condition (see :mod:`shopkeeper.analysis.conditions`) or a list of them (all hold).
Membership changes three ways:

* **incrementally**, as each event commits (the analysis processor calls :meth:`SegmentSet.update`,
  which only re-evaluates segments whose conditions can change on that event type);
* by the **scheduler** (:func:`tick`), which re-evaluates the time-based segments for everyone
  so that "no visit for 30 days" is entered and "spent > 100 in 90 days" is left as time passes
  (in a hub its batches are operations of the one writer, published like any event);
* by a **full re-evaluation** (:func:`reevaluate`) of the segments whose definition changed
  (their content hash differs from the one recorded in ``analysis['segment_defs']``).

Sizes are kept in ``analysis['segment_sizes']`` (one conflict-free ``Counters`` record, exact
after every full run) and a daily history in ``analysis['segment_history']``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import scoretable
from ..customer import STATUS_ACTIVE, Customer, now_us
from ..store import Store
from .conditions import (
    Condition,
    ConditionError,
    DeprecationNotes,
    Env,
    compile_all,
    compile_membership,
    yaml_documents,
)
from .state import all_counts, bump, create_analysis_folder, folder, set_count


@dataclass(frozen=True)
class SegmentDef:
    name: str
    condition: Condition
    description: str = ""
    source: str = ""  # file it came from

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.condition.source.encode()).hexdigest()[:12]


class SegmentSet:
    """The segment definitions in force, indexed by the event types that can change them."""

    def __init__(self, defs: list[SegmentDef] = ()) -> None:  # type: ignore[assignment]
        self.defs: dict[str, SegmentDef] = {}
        self._by_type: dict[str, list[SegmentDef]] = {}
        self._any: list[SegmentDef] = []
        self.warnings: list[str] = []  # old spellings in the files, with file:line (segments check)
        for d in defs:
            self.defs[d.name] = d
        self._index()

    def _index(self) -> None:
        self._by_type = {}
        self._any = []
        for d in self.defs.values():
            if "*" in d.condition.deps or not d.condition.deps:
                self._any.append(d)
            else:
                for t in d.condition.deps:
                    self._by_type.setdefault(t, []).append(d)
        self._cache: dict[str, list[SegmentDef]] = {}
        self._compiled: dict[tuple[str, ...], Any] = {}
        #: event type ("=type" for bookkeeping) -> (its defs, their membership function)
        self._per_type: dict[str, tuple[list[SegmentDef], Any]] = {}

    def membership(self, defs: list[SegmentDef]) -> Any:
        """The compiled membership function of ``defs`` (see ``compile_membership``), cached."""
        key = tuple(d.name for d in defs)
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compiled[key] = compile_membership([(d.name, d.condition) for d in defs])
        return fn

    def define(self, name: str, when: Any, description: str = "", source: str = "api") -> SegmentDef:
        """Add or replace a definition (the domain API); run :func:`reevaluate` for it afterwards."""
        _check_name(name, source)
        d = SegmentDef(name, compile_all(when, f"{source}: segment {name}"), description, source)
        self.defs[name] = d
        self._index()
        return d

    def remove(self, name: str) -> None:
        self.defs.pop(name, None)
        self._index()

    def affected_by(self, event_type: str) -> list[SegmentDef]:
        got = self._cache.get(event_type)
        if got is None:
            seen = {d.name for d in self._any}
            got = list(self._any) + [d for d in self._by_type.get(event_type, ()) if d.name not in seen]
            self._cache[event_type] = got
        return got

    def naming(self, event_type: str) -> list[SegmentDef]:
        """The segments whose condition names ``event_type`` itself (``count('email_sent', days=30)``):
        what an outbox bookkeeping event updates (see ``shopkeeper.outbox.BOOKKEEPING_TYPES``)."""
        key = "=" + event_type
        got = self._cache.get(key)
        if got is None:
            got = self._cache[key] = [d for d in self.defs.values() if event_type in d.condition.deps]
        return got

    @property
    def time_based(self) -> list[SegmentDef]:
        return [d for d in self.defs.values() if d.condition.time_based]

    def evaluate(self, customer: Customer, defs: list[SegmentDef], now: int, env: Env | None = None,
                 sizes: Any = None, *, fn: Any = None) -> list[tuple[str, str]]:
        """Re-evaluate ``defs`` for one customer; join/leave; return ``[(segment, 'enter'|'exit')]``."""
        env = env or Env(customer, now)
        changes: list[tuple[str, str]] = []
        segs = customer.segments
        before: tuple[str, ...] | None = None  # the segments before the first change (then ``segs`` is live)

        def enter(name: str) -> None:
            nonlocal before
            if before is None:  # made the live mapping: a later in_segment sees the change
                before = tuple(segs)
                customer.edit_segments(segs)
            segs[name] = now
            changes.append((name, "enter"))
            if sizes is not None:
                bump(sizes, name, 1)

        def leave(name: str) -> None:
            nonlocal before
            if before is None:
                before = tuple(segs)
                customer.edit_segments(segs)
            del segs[name]
            changes.append((name, "exit"))
            if sizes is not None:
                bump(sizes, name, -1)

        (fn or self.membership(defs))(env, segs, enter, leave)
        if changes:  # stored once (the memberships row, or the record: ``Customer.segments_changed``)
            customer.segments_changed(any(ch == "enter" for _, ch in changes),
                                      any(ch == "exit" for _, ch in changes), before)
        return changes

    def update(self, customer: Customer, event_type: str, now: int, env: Env | None = None,
               sizes: Any = None, bookkeeping: bool = False) -> list[tuple[str, str]]:
        """The incremental path: only the segments ``event_type`` can change (for a ``bookkeeping``
        event, only those that name its type). The defs and their compiled membership are looked up
        once per event type, not rebuilt into a key per event."""
        key = ("=" if bookkeeping else "") + event_type
        got = self._per_type.get(key)
        if got is None:
            defs = self.naming(event_type) if bookkeeping else self.affected_by(event_type)
            got = self._per_type[key] = (defs, self.membership(defs) if defs else None)
        defs, fn = got
        if not defs:
            return []
        return self.evaluate(customer, defs, now, env, sizes, fn=fn)


#: change-feed kinds of segment membership changes (``shopkeeper.engine.feed.KINDS``)
FEED_KIND = {"enter": "segment_entered", "exit": "segment_left"}


def feed_changes(folders: Any, customer_id: str, changes: list[tuple[str, str]], *, event_type: str = "",
                 channel: str = "", at: int | None = None) -> list[Any]:
    """Append the change-feed entries of one customer's entries/exits, as ``(name, "enter" | "exit")``
    pairs, in the current transaction and return them (:func:`feed_entries`)."""
    if not changes:
        return []
    return feed_entries(folders, customer_id, tuple(n for n, ch in changes if ch == "enter"),
                        tuple(n for n, ch in changes if ch == "exit"), event_type=event_type, channel=channel, at=at)


def feed_entries(folders: Any, customer_id: str, entered: Sequence[str], left: Sequence[str], *,
                 event_type: str = "", channel: str = "", at: int | None = None) -> list[Any]:
    """Append the change-feed entries of one customer's segments ``entered`` and ``left`` in the
    current transaction and return them: one ``segment_entered`` entry naming every segment entered
    (``segments``; ``detail`` has them comma-separated) and one ``segment_left`` for the exits.
    Nothing on a store without a feed."""
    root = getattr(folders, "root", None)
    if root is None or "changes" not in root:
        return []
    from ..engine import feed

    return [feed.append(folders, kind, customer_id, event_type=event_type, channel=channel, at=at,
                        segments=tuple(names), detail=",".join(names))
            for kind, names in ((FEED_KIND["enter"], entered), (FEED_KIND["exit"], left)) if names]


def _check_name(name: Any, where: str) -> None:
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_.-]{0,63}", name):
        raise ConditionError(f"{where}: segment name {name!r} must be a lower-case token")


def rules_root(rules_dir: str | Path | None = None) -> Path:
    """The rules directory the analysis files live under (``segments/``, ``offers/``): ``rules_dir``,
    else ``$SHOPKEEPER_RULES_DIR``, else ``./rules`` — for the hub's state and the offline commands alike."""
    return Path(rules_dir or os.environ.get("SHOPKEEPER_RULES_DIR", "rules"))


def load_segments(directory: str | Path) -> SegmentSet:
    """Every ``*.yaml``/``*.yml`` under ``directory`` (missing directory: no segments)."""
    defs: list[SegmentDef] = []
    seen: dict[str, str] = {}
    notes = DeprecationNotes()
    for path, doc in yaml_documents(directory):
        items = doc.get("segments", [doc] if "name" in doc else []) if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise ConditionError(f"{path}: expected a mapping with 'segments:' (a list) or one segment")
        for i, item in enumerate(items):
            where = f"{path}: segments[{i}]"
            if not isinstance(item, dict) or "name" not in item or "when" not in item:
                raise ConditionError(f"{where}: each segment needs 'name' and 'when'")
            name = item["name"]
            _check_name(name, where)
            if name in seen:
                raise ConditionError(f"{where}: segment {name!r} is already defined in {seen[name]}")
            seen[name] = str(path)
            defs.append(SegmentDef(name, compile_all(item["when"], f"{where} ({name})"),
                                   str(item.get("description", "")), str(path)))
            notes.add(path, defs[-1].condition)
    out = SegmentSet(defs)
    out.warnings = notes.notes
    return out


# -- batch -------------------------------------------------------------------------------


def _day(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=UTC).strftime("%Y-%m-%d")


def rejudge(f: Any, published: Any, c: Customer, membership: Any, now: int, feed: bool,
            tables: Any = None) -> tuple[int, int]:
    """Judge ``c`` against ``membership`` from its record, join and leave what changed, and put
    the entries and exits on the change feed (``published``: the writer's, or None offline).
    (entered, exited). The one per-customer step of a full re-evaluation, on the record path and
    for the customers the card path found changing (:mod:`shopkeeper.analysis.fullscan`).
    ``tables``: the score tables, read once by the caller for the batch (``c`` is active).

    Joins and leaves are made on the live memberships (``Customer.edit_segments``) as the membership
    function goes (a later ``in_segment`` sees an earlier change) and stored once at the end
    (``Customer.segments_changed``: the memberships row, or the record marked for the kept indexes as
    ``join_segment``/``leave_segment`` mark it): a first full run enters ~9 segments per customer, and a
    method call and a mark per entry were ~6% of it (docs/benchmarks.md §81)."""
    segs = c.edit_segments()
    before = tuple(segs)
    return judge(f, published, c, segs, membership, now, feed, tables,
                 lambda entered, left: c.segments_changed(bool(entered), bool(left), before))


def judge(f: Any, published: Any, c: Any, segs: dict[str, int], membership: Any, now: int, feed: bool,
          tables: Any, store: Any) -> tuple[int, int]:
    """:func:`rejudge`'s step for ``c`` (a ``Customer`` or a peeked record) whose live memberships are
    ``segs``: judged, then ``store(entered, left)`` when any moved, and the feed entries put. A
    :class:`~shopkeeper.analysis.peek.NeedRecord` from a condition propagates (nothing stored)."""
    entered: list[str] = []
    left: list[str] = []

    def enter(name: str) -> None:
        segs[name] = now
        entered.append(name)

    def leave(name: str) -> None:
        del segs[name]
        left.append(name)

    membership(Env(c, now, tables=tables), segs, enter, leave)
    if not entered and not left:
        return 0, 0
    store(entered, left)
    if feed:
        entries = feed_entries(f, c.id, entered, left, at=now)
        if entries and published is not None:
            published.publish(entries)
    return len(entered), len(left)


def reevaluate(store: Store, segments: SegmentSet, names: list[str] | None = None, now: int | None = None,
               batch: int = 5000, progress: Any = None, feed: bool = True, submit: Any = None,
               stop: threading.Event | None = None, cards: bool = True, peek: bool = True) -> dict[str, Any]:
    """Re-evaluate ``names`` (default: every segment) for every active customer, in batched
    transactions; then set exact sizes, record today's sizes and the definitions' hashes.

    In a hub, ``submit`` is the engine writer's ``submit_op``: each batch is an operation the
    one writer commits (between event groups, so ingest keeps flowing) and whose entries and
    exits it publishes to ``Watch`` and ``shopkeeper_committed``. Without ``submit`` — an
    offline tool (``shopkeeper segments apply``) on a store no hub holds — each batch commits
    in its own transaction and the entries are only written to the stored feed.

    Customers are read in key order, one transaction per ``batch``; only customers whose
    membership changes are written. Conditions read the customer's facts and per-day
    aggregates, not its history (except for windows longer than the aggregates keep).
    Entries and exits go on the change feed (``feed=False`` leaves them out, e.g. for a first
    load). ``progress(done, seconds)`` is called after every batch.

    ``stop`` (the hub's shut-down signal) is checked between batches: a set ``stop`` ends the
    run before its next batch, without recording sizes or definition hashes (they would count a
    part of the customers), so the next run re-evaluates the changed definitions again; the
    report then says ``"stopped": True``. Without it a long run outlived the hub's store.

    When every condition is answered by the audience cards (``cards``, the default), the cards
    are read instead of the records and only the customers whose membership changes are loaded
    (:mod:`shopkeeper.analysis.fullscan`); same memberships, entries and sizes.

    Otherwise each customer not loaded yet is first judged from a peek at its record
    (:mod:`shopkeeper.analysis.peek`: its bytes read for the conditions, no ``Customer`` built) and
    loaded and judged again only when its membership changes or a condition needs what a peek does
    not give (``peek``, the default; the report's ``loaded`` counts those). A batch after one in which
    most customers changed (a first run) loads every customer without peeking, and so does the rest of
    a batch once most of its first 64 or more peeked customers changed. Same memberships,
    entries, exits and sizes (``tests/analysis/test_peek.py``)."""
    from .. import memberships
    from .fullscan import card_answerable, reevaluate_cards
    from .models import commit_op, iter_active
    from .peek import NeedRecord, unchanged
    from .peek import peek as peek_record

    now = now if now is not None else now_us()
    defs = [segments.defs[n] for n in (names if names is not None else list(segments.defs))]
    membership = segments.membership(defs)
    t0 = time.perf_counter()
    members = {d.name: 0 for d in defs}
    entered = exited = customers = 0
    loaded = 0  # customers judged from their loaded record (the others from a peek at it)
    moved = [0, 0]  # the last batch's customers whose membership changed, and its customers

    def commit(op: Any, note: str) -> Any:
        return commit_op(store, submit, op, note)

    def one_batch(ids: list[str]) -> Any:
        def op(f: Any, published: Any) -> tuple[int, int, int, int, dict[str, int]]:
            # counts are returned, not accumulated: the writer may run an op again after a conflict
            n = inn = out = loaded = 0
            seen = dict.fromkeys(members, 0)
            custs = f.customers
            tables = scoretable.tables_in(f.root)  # once per batch, not from the root per customer
            conn = f.conn
            tree = memberships.tree_of(conn)
            rowed = tree is not None  # generation 16: a change is written to the row
            # the batch's rows in one walk (ids come in key order); a row written below is one not read again
            rows = dict(tree.items(ids[0], ids[-1])) if rowed and ids and peek else None
            written = memberships.Batch(conn) if rowed else None  # member sets patched once, at the end
            peeking = peek and (rowed or moved[0] * 2 <= moved[1])  # most of the last batch stayed as they were
            rejudged = tried = missed = 0
            for cid in ids:
                c = custs[cid]
                if peeking and c._p_changed is None:  # a ghost: its record as stored is what it holds
                    x = peek_record(conn, c._p_oid, Customer, rows)
                    if x is not None:
                        if x.status != STATUS_ACTIVE:
                            continue
                        if x._row:  # judged and written without the record (``shopkeeper.memberships``)
                            segs = x.segments
                            try:
                                i, o = judge(f, published, x, segs, membership, now, feed, tables,
                                             lambda ent, lft, cid=cid, segs=segs: written.put(cid, segs, ent, lft))
                            except NeedRecord:
                                i = -1
                            if i >= 0:
                                n += 1
                                inn += i
                                out += o
                                rejudged += 1 if i or o else 0
                                for name in segs:
                                    if name in seen:
                                        seen[name] += 1
                                continue
                        else:
                            tried += 1
                            if unchanged(x, membership, Env(x, now, tables=tables)):
                                n += 1
                                for name in x.segments:
                                    if name in seen:
                                        seen[name] += 1
                                continue
                            missed += 1
                            if missed * 2 > tried >= 64:  # most of them move (a first run): load the rest
                                peeking = rowed
                if c.status != STATUS_ACTIVE:
                    continue
                n += 1
                loaded += 1
                i, o = rejudge(f, published, c, membership, now, feed, tables)
                inn += i
                out += o
                rejudged += 1 if i or o else 0
                for name in c.segments:
                    if name in seen:
                        seen[name] += 1
            if written is not None:
                written.flush()
            moved[:] = rejudged, n  # (a heuristic only: an op run again after a conflict just sets it again)
            return n, inn, out, loaded, seen

        return op

    fast = (reevaluate_cards(store, segments, defs, now, batch, progress, feed, submit, stop, t0, commit)
            if cards and defs and card_answerable(defs) else None)
    if fast is not None and fast.get("stopped"):
        return fast
    if fast is not None:
        customers, entered, exited, members = fast["customers"], fast["entered"], fast["exited"], fast["sizes"]
    for ids in (iter_active(store, batch) if fast is None else ()):
        if stop is not None and stop.is_set():
            return {"customers": customers, "segments": len(defs), "entered": entered, "exited": exited,
                    "stopped": True, "seconds": round(time.perf_counter() - t0, 3)}
        n, inn, out, k, seen = commit(one_batch(ids), "shopkeeper: segments re-evaluated")
        customers += n
        loaded += k
        entered += inn
        exited += out
        for name, k in seen.items():
            members[name] += k
        if progress is not None:
            progress(customers, time.perf_counter() - t0)

    def record_sizes(f: Any, published: Any) -> None:
        a = create_analysis_folder(f.root)
        sizes, history, hashes = a["segment_sizes"], a["segment_history"], a["segment_defs"]
        day = _day(now)
        for d in defs:
            set_count(sizes, d.name, members[d.name])
            history[(day, d.name)] = members[d.name]
            hashes[d.name] = d.hash

    commit(record_sizes, "shopkeeper: segment sizes")
    return {"customers": customers, "segments": len(defs), "entered": entered, "exited": exited,
            "sizes": members, "seconds": round(time.perf_counter() - t0, 3),
            **({"path": "cards"} if fast else {"loaded": loaded})}


def changed_definitions(store: Store, segments: SegmentSet) -> list[str]:
    """Segments whose definition differs from the one last fully evaluated (or never evaluated)."""
    with store.read() as f:
        hashes = folder(f, "segment_defs")
        return [n for n, d in segments.defs.items() if hashes is None or hashes.get(n) != d.hash]


def score_segments(segments: SegmentSet) -> list[str]:
    """The segments whose condition reads a score (``score('clv.value') >= 500``)."""
    return [n for n, d in segments.defs.items() if "score(" in d.condition.source]


def refresh_score_segments(store: Store, segments: SegmentSet, now: int | None = None,
                           submit: Any = None) -> dict[str, Any]:
    """Re-evaluate the segments that read scores, for everyone: run after ``models fit`` wrote new
    scores, which no event announces (without it ``high_value`` keeps yesterday's members until
    each customer's next order). ``submit`` as in :func:`reevaluate`."""
    names = score_segments(segments)
    if not names:
        return {"segments": []}
    report = reevaluate(store, segments, names, now=now, submit=submit)
    return {"segments": names, **{k: v for k, v in report.items() if k in ("entered", "exited", "sizes")}}


def tick(store: Store, segments: SegmentSet, now: int | None = None, submit: Any = None,
         stop: threading.Event | None = None) -> dict[str, Any]:
    """The scheduler's run: changed definitions and time-based segments, for everyone
    (``submit``: the hub writer's ``submit_op``; ``stop``: see :func:`reevaluate`)."""
    changed = changed_definitions(store, segments)
    names = sorted(set(changed) | {d.name for d in segments.time_based})
    report = reevaluate(store, segments, names, now, submit=submit, stop=stop) if names else {"segments": 0}
    report["changed_definitions"] = changed
    return report


def sizes(store: Store) -> dict[str, int]:
    with store.read() as f:
        s = folder(f, "segment_sizes")
        return all_counts(s)


def size_history(store: Store) -> list[tuple[str, str, int]]:
    with store.read() as f:
        h = folder(f, "segment_history")
        return [(day, seg, n) for (day, seg), n in h.items()] if h is not None else []
