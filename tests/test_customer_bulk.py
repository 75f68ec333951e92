"""``Customer.add_interactions`` (a run of interactions in one call, what an import gives a customer's
rows) against the per-interaction algorithm it replaced, and the cheap ``Customer.__init__``
against attribute-by-attribute construction: the same record either way."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shopkeeper.customer import HISTORY_CHUNK, Customer, Interaction
from shopkeeper.identitymap import IdentityMap
from shopkeeper.kept import KEPT_MARKS

S = 1_000_000
DAY = 86_400 * S
T0 = 1_750_000_000 * S


class _Jar:
    """Enough of a connection for the record's change tracking and the kept marks."""

    def __init__(self) -> None:
        setattr(self, KEPT_MARKS, {})
        self.registered = 0

    def register(self, obj: Any) -> None:
        self.registered += 1

    def root(self) -> dict:
        return {}  # no offer logs (``shopkeeper.offerlog``)


def _one_by_one(c: Customer, its: list[Interaction]) -> list[Interaction]:
    """The per-interaction ``add_interaction`` as it was before the grouped call (verbatim)."""
    out = []
    for it in its:
        key = it.ts
        recent = c._recent
        tree = c._tree
        while key in recent or (tree is not None and key in tree):
            key += 1
        if key != it.key:
            it = it._replace(key=key)
        recent[key] = it
        if len(recent) >= HISTORY_CHUNK:
            c._spill_history()
        c._apply_hard_facts(it)
        out.append(it)
    return out


def _state(c: Customer) -> dict[str, Any]:
    return {
        "history": list(c.history.items()),
        "recent": sorted(c._recent.keys()) if c._recent is not None else None,
        "tree": list(c._tree.keys()) if c._tree is not None else None,
        "hard": dict(c.hard), "type_counts": dict(c.type_counts), "last_at": dict(c.last_at or {}),
        "daily": {d: dict(b) for d, b in (c.daily or {}).items()},
    }


_its = st.lists(
    st.tuples(st.integers(0, 900), st.integers(0, 3), st.sampled_from(["order", "page_view", "email_open"]),
              st.integers(0, 500)),
    min_size=0, max_size=60)


@settings(max_examples=60, deadline=None)
@given(before=_its, runs=st.lists(_its, min_size=1, max_size=4))
def test_a_run_added_at_once_gives_the_record_one_by_one_gives(before: list, runs: list) -> None:
    """Random runs (timestamps that collide, days far apart so the per-day totals drop old days, orders
    and other types) on a customer with and without earlier history: the same keys, history, spill
    layout, hard facts, counts, last-at and per-day totals, and the same kept marks."""
    def make(spec: list) -> list[Interaction]:
        out = []
        for n, (sec, days, typ, amount) in enumerate(spec):
            ts = T0 + days * 300 * DAY + sec * S
            data = {"amount": amount / 7} if typ == "order" else {"n": n}
            out.append(Interaction(ts, ts, typ, "web", "", data, f"k{n}", (("email", "a@b.c"),), "c"))
        return out

    a, b = Customer("c", created_at=1), Customer("c", created_at=1)
    for c in (a, b):
        _one_by_one(c, make(before))
        c._p_jar = _Jar()
    got_a = [_one_by_one(a, make(run)) for run in runs]
    got_b = [b.add_interactions(make(run)) for run in runs]
    assert got_a == got_b
    assert [[it.key for it in r] for r in got_a] == [[it.key for it in r] for r in got_b]
    assert _state(a) == _state(b)
    marks_a, marks_b = getattr(a._p_jar, KEPT_MARKS), getattr(b._p_jar, KEPT_MARKS)
    assert list(marks_a.values()) == list(marks_b.values())  # an order, a first spill: the order indexes
    assert b._p_changed or not any(runs)


def _old_init(c: Customer, id: str, created_at: int) -> None:
    """``Customer.__init__`` as it was: one assignment per attribute (verbatim, but ``now_us``)."""

    from shopkeeper.customer import CUSTOMER_SCHEMA, HARD_FACT_DEFAULTS, STATUS_ACTIVE, Daily
    from shopkeeper.recent import RecentWindow

    c.id = id
    c.schema = CUSTOMER_SCHEMA
    c.status = STATUS_ACTIVE
    c.merged_into = None
    c.created_at = created_at
    c.identities = IdentityMap()  # inline since generation 10 (``shopkeeper.identitymap``)
    c._tree = None
    c._recent = RecentWindow()
    c.hard = dict(HARD_FACT_DEFAULTS)
    c.type_counts = {}
    c.soft = {}
    c.traits = {}
    c.consents = {}
    c._scores = {}
    # (no segments: a row of their own since generation 16, ``shopkeeper.memberships``)
    c.rules = {}
    c.rule_state = {}
    c.merged_from = ()
    c.daily = Daily()
    c.last_at = {}
    c.recent_keys = {}


def test_a_new_customer_is_what_assigning_each_attribute_gives() -> None:
    """The one ``__dict__`` update of ``Customer.__init__`` sets what 22 assignments set: the same
    attributes in the same order, equal values of the same types, nothing shared between two
    customers, and the same pickled state."""
    c = Customer("c1", created_at=5)
    ref = Customer.__new__(Customer)
    _old_init(ref, "c1", 5)
    ref.outbox = None  # a class default then; an instance attribute since kept attributes are descriptors
    assert list(c.__dict__) == list(ref.__dict__)
    for k, v in ref.__dict__.items():
        assert type(c.__dict__[k]) is type(v), k
        if k not in ("identities", "_recent"):
            assert c.__dict__[k] == v, k
    assert len(c.identities) == 0 and len(c._recent) == 0
    state, ref_state = c.__getstate__(), ref.__getstate__()
    assert len(state) == len(ref_state) and state[0] == ref_state[0]  # (the packed value; then references)
    other = Customer("c2", created_at=5)
    for k, v in c.__dict__.items():
        if not isinstance(v, int | str | tuple | type(None)):
            assert other.__dict__[k] is not v, k
