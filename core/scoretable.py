"""Model scores kept beside the customers, not inside them: one ``ScoreTable`` per model.

Why: a batch fit scores every buyer (CDNOW: 23,570 customers, 8 scores each). When the scores
lived in ``Customer.scores`` each one re-pickled the whole packed customer record (~300–480 µs
per customer here, load included). A ``ScoreTable`` keeps one row per customer in an
``OOBTree`` (customer id -> one packed ``bytes`` value), so a batch write touches a bucket per
~30 customers and never loads a customer: a few µs per customer.

Where: ``root['scores']`` (``OOBTree`` model kind -> ``ScoreTable``), created by the named evolve
step ``score-tables`` (the analysis plugin's ``shopkeeper_evolve_steps``).
The record classes (``ScoreTable``, ``ScoreRows``) live in :mod:`shopkeeper.records`; this module
keeps their old pickled path.

Reading: ``Customer.scores`` is a :class:`ScoreView` over the customer's own scores (set by
rules, the per-event re-score, imports) and its rows in the tables; where both hold a name, the
newer ``at`` wins (a per-event re-score after a fit beats the fit's row; a later fit beats an
older re-score). Every reader (360° view, segments, Decide, rules, export, ``report scores``)
goes through it unchanged.

Who has own scores of table names: ``root['scores'][OWNERS]`` (an ``OOTreeSet`` of customer ids,
named step ``score-owners``), kept by a before-commit hook (:func:`install_owners`) that adds every
customer a transaction leaves holding an own score of a :data:`TABLE_NAMES` name (however it got
there: a per-event re-score, a rule, an imported customer row, a merge). So a whole-store reader
(``report scores``) takes everyone else's scores from the tables alone and loads only those
records (:func:`merged_rows`). The set is a superset (an id stays after its own scores are gone:
the record is then read for nothing); it is made by the step only on a store without customers
(a new one), since filling it on an existing store would read every record once — on those,
``report scores`` reads every record as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from BTrees.OOBTree import OOBTree, OOTreeSet

# pickle aliases: tables written before shopkeeper.records name these classes by this module
from .records import ScoreRows as ScoreRows
from .records import ScoreTable as ScoreTable

if TYPE_CHECKING:
    from .customer import Customer, Fact

ROOT_KEY = "scores"
#: key in ``root['scores']`` of the ids whose records may hold own scores of table names (``OOTreeSet``)
OWNERS = " own"
#: key in ``root['scores']`` of the ids erased so far (``OOTreeSet``): a batch fit that read a
#: customer before their erasure and writes after it must not bring their scores back
FORGOTTEN = " forgotten"
#: the built-in models' tables and their score names (``shopkeeper.analysis.models`` writes them)
CLV_SCORES = ("clv.expected_purchases", "clv.p_alive", "clv.value", "churn.risk")
RFM_SCORES = ("rfm.r", "rfm.f", "rfm.m", "rfm.score")
#: score names some table may hold: a name outside it is read from the customer alone (no lookup);
#: a plugin with a table of its own adds its names with :func:`register_names`
TABLE_NAMES: set[str] = {*CLV_SCORES, *RFM_SCORES}
NAN = float("nan")


def register_names(names: Iterable[str]) -> None:
    """Declare names a table holds, so readers look them up there (call at import time)."""
    TABLE_NAMES.update(names)


def create_score_tables(root: Any) -> OOBTree:
    """``root['scores']``, made if missing; idempotent: the named evolve step ``score-tables``."""
    tables = root.get(ROOT_KEY)
    if tables is None:
        tables = root[ROOT_KEY] = OOBTree()
    return tables


def write_rows(root: Any, kind: str, names: Iterable[str], rows: Iterable[tuple[str, tuple[float, ...]]],
               source: str, at: int) -> int:
    """Write ``rows`` to the table of model ``kind`` (made on first use), leaving out erased ids."""
    return table(root, kind, names).write(rows, source, at, skip=root[ROOT_KEY].get(FORGOTTEN))


def table(root: Any, kind: str, names: Iterable[str]) -> ScoreTable:
    """The table of model ``kind``, made on first use (a writer operation or an offline write);
    ``root['scores']`` itself is the analysis plugin's named step ``score-tables``."""
    tables = root[ROOT_KEY]
    t = tables.get(kind)
    names = tuple(names)
    if t is None or t.names != names:  # a model whose score names changed starts a new table
        t = tables[kind] = ScoreTable(names)
    return t


def tables_of(customer: Customer) -> Iterable[ScoreTable]:
    jar = getattr(customer, "_p_jar", None)
    if jar is None or customer.status != "active":  # merged and erased customers: own scores only
        return ()
    return tables_in(jar.root())


def tables_in(root: Any) -> list[ScoreTable]:
    """Every model's score table of the store at ``root`` (what an active customer's scores merge)."""
    tables = root.get(ROOT_KEY)
    return [] if tables is None else [t for t in tables.values() if isinstance(t, ScoreTable)]


def forget(root: Any, cid: str) -> None:
    """Remove a customer's rows from every table and remember the id, so that a fit in flight
    does not write them back (erasure). A store without score tables (opened without the
    analysis plugin's steps) has no rows and no fit in flight: nothing to do."""
    tables = root.get(ROOT_KEY)
    if tables is None:
        return
    for t in tables.values():
        if isinstance(t, ScoreTable):
            t.rows.pop(cid, None)
    gone = tables.get(FORGOTTEN)
    if gone is None:
        gone = tables[FORGOTTEN] = OOTreeSet()
    gone.add(cid)


def create_owners(root: Any) -> None:
    """Named step ``score-owners``: the owners set, on a store without customers only (see the module
    docstring: on an existing store it would have to read every record; readers then fall back)."""
    tables = create_score_tables(root)
    if OWNERS not in tables and not root["customers"]:  # truth test: no len() walk of a big BTree
        tables[OWNERS] = OOTreeSet()


def owners_of(root: Any) -> OOTreeSet | None:
    """The ids whose records may hold own table-named scores, or None (not kept on this store)."""
    tables = root.get(ROOT_KEY)
    return tables.get(OWNERS) if tables is not None else None


def _refresh_owners(conn: Any) -> None:
    """Before commit: add each changed or added customer now holding an own table-named score."""
    from .customer import Customer

    changed = [o for o in conn._registered_objects if type(o) is Customer]
    added = getattr(conn, "_added", None)
    if added:
        changed += [o for o in added.values() if type(o) is Customer]
    if not changed:
        return
    owners = None
    for c in changed:
        own = getattr(c, "_scores", None)  # changed or added: loaded, never a ghost
        if own and any(n in TABLE_NAMES for n in own):
            if owners is None:
                owners = owners_of(conn.root())
                if owners is None:
                    return
            if c.id not in owners:
                owners.add(c.id)


def install_owners(conn: Any, tm: Any) -> None:
    """Keep the owners set current on every transaction of ``tm`` (the ``keep`` of ``score-owners``)."""
    from .store.keepers import install_before_commit

    install_before_commit(conn, tm, _refresh_owners, "_shopkeeper_scoreowners")


def merged_rows(root: Any, cids: Iterable[str], load: Any) -> Iterator[tuple[str, dict[str, Fact]]]:
    """``(id, scores)`` for ``cids`` as ``Customer.scores.as_dict()`` gives them, reading a record
    (``load(cid)``) only for an id in the owners set; requires the set (:func:`owners_of`)."""
    owners = owners_of(root)
    assert owners is not None, "merged_rows needs the score-owners set"
    tabs = tables_in(root)
    names = [n for t in tabs for n in t.names]
    disjoint = len(names) == len(set(names))  # the built-in tables: no name in two, so no newest-wins to do
    for cid in cids:
        if cid in owners:
            yield cid, load(cid).scores.as_dict()
            continue
        out: dict[str, Fact] = {}
        for t in tabs:
            packed = t.rows.get(cid)
            if packed is None:
                continue
            row = t._facts(packed)
            if disjoint:
                out.update(row)
                continue
            for name, fact in row.items():
                mine = out.get(name)
                if mine is None or fact.at >= mine.at:
                    out[name] = fact
        yield cid, out


def merged_values(root: Any, cids: Iterable[str], load: Any, names: tuple[str, ...],
                  source_of: tuple[str, ...]) -> Iterator[tuple[str, list[Any], str | None]]:
    """``(id, values, source)`` for ``cids``: the values of ``names`` (None where absent) and the
    source of the first name of ``source_of`` present, exactly as :func:`merged_rows` merges them,
    but unpacked straight from the table rows into lists. ``report scores`` reads every buyer's
    eight scores: a :class:`Fact` and a dict per customer were most of its CPU after the start-up
    (issue 15). Owners' records, and tables sharing a name (newest ``at`` wins), go through
    :func:`merged_rows`."""
    owners = owners_of(root)
    assert owners is not None, "merged_values needs the score-owners set"
    tabs = tables_in(root)
    all_names = [n for t in tabs for n in t.names]
    want = {n: i for i, n in enumerate(names)}
    src_slots = [want[n] for n in source_of if n in want]

    def from_facts(cid: str, row: Mapping[str, Fact]) -> tuple[str, list[Any], str | None]:
        facts = [row.get(n) for n in names]
        src = next((facts[i].source for i in src_slots if facts[i] is not None), None)
        return cid, [None if f is None else f.value for f in facts], src

    if len(all_names) != len(set(all_names)):
        for cid, row in merged_rows(root, cids, load):
            yield from_facts(cid, row)
        return
    plan = [(t.rows.get, t._struct.unpack, t.sources, [want.get(n, -1) for n in t.names]) for t in tabs]
    width = len(names)
    for cid in cids:
        if cid in owners:
            yield from_facts(cid, load(cid).scores.as_dict())
            continue
        values: list[Any] = [None] * width
        sources: list[str | None] = [None] * width
        for get, unpack, table_sources, slots in plan:
            packed = get(cid)
            if packed is None:
                continue
            _at, i, *row = unpack(packed)
            src = table_sources[i]
            for slot, v in zip(slots, row, strict=True):
                if slot >= 0 and v == v:  # NaN: no score (as Fact rows leave it out)
                    values[slot] = v
                    sources[slot] = src
        yield cid, values, next((sources[i] for i in src_slots if sources[i] is not None), None)


class ScoreView(Mapping):
    """``Customer.scores``: the customer's own scores and their table rows, newest ``at`` first."""

    __slots__ = ("_own", "_customer")

    def __init__(self, customer: Customer) -> None:
        self._customer = customer
        self._own: dict[str, Fact] = customer._scores

    def as_dict(self, tables: Iterable[ScoreTable] | None = None) -> dict[str, Fact]:
        """Every score at once (each table row read and unpacked once): for readers that take
        many names of one customer (exports, ``report scores``), cheaper than a ``get`` each.
        ``tables``: :func:`tables_of` an active customer, read once by a reader of many customers
        in one view (the Parquet export) instead of from the root per customer."""
        return self._merged(tables)

    def _merged(self, tables: Iterable[ScoreTable] | None = None) -> dict[str, Fact]:
        out = dict(self._own)
        cid = self._customer.id
        for t in tables_of(self._customer) if tables is None else tables:
            row = t.read(cid)
            if row:
                for name, fact in row.items():
                    mine = out.get(name)
                    if mine is None or fact.at >= mine.at:
                        out[name] = fact
        return out

    def get(self, name: str, default: Any = None) -> Any:
        mine = self._own.get(name)
        if name in TABLE_NAMES:
            cid = self._customer.id
            for t in tables_of(self._customer):
                if name in t.names:
                    fact = t.get(cid, name)
                    if fact is not None and (mine is None or fact.at >= mine.at):
                        mine = fact
        return default if mine is None else mine

    def __getitem__(self, name: str) -> Fact:
        fact = self.get(name)
        if fact is None:
            raise KeyError(name)
        return fact

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._merged())

    def __len__(self) -> int:
        return len(self._merged())

    def __bool__(self) -> bool:
        return bool(self._own) or bool(self._merged())

    def items(self) -> Any:
        return self._merged().items()

    def __repr__(self) -> str:
        return f"ScoreView({self._merged()!r})"
