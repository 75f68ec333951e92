"""Marks for the kept indexes: which customers a transaction changed in what an index carries.

Why: the audience index and the order table (``shopkeeper.audience``, ``shopkeeper.ordertable``) are
brought up to date by before-commit hooks. Looking at every changed customer, each hook read a cold
bucket per customer (docs/benchmarks.md §36, §45), though most events (page views, Decide's offer
records) change nothing either index carries. So a change to what they carry marks the customer in
its connection's :data:`KEPT_MARKS` (a dict the keepers' synchroniser puts on the connection and
clears when each transaction ends, ``shopkeeper.store.keepers``): ``Customer``'s methods that change
a carried part in place mark it where they mark the record changed (``self._p_changed =
mark(self)``), and ``Customer.__setattr__`` marks an attribute of :data:`KEPT_ATTRS` set whole (merge,
unmerge, erasure). The hooks walk the marks, not the registered objects: a savepoint rolled back
unregisters the records it reloads, and the marks outlive it. A change made in place behind the
class's back (``c.hard["orders"] = 9``) is not seen: use the methods, or assign the attribute.
"""

from __future__ import annotations

from typing import Any

#: the audience card's parts (segments, consents, addresses, soft facts, country, outbox)
KEPT_AUDIENCE = 1
#: the orders (order facts, status, history): both indexes
KEPT_ORDERS = 3
#: with :data:`KEPT_ORDERS`: the part was *set whole* (a merge, an unmerge, an erasure, a rule's rollback
#: restoring the order facts), so orders may have gone or moved — not only been added by
#: ``Customer.add_interaction``. Without it the order table appends a buyer's new orders to the row
#: instead of re-reading the whole history (``shopkeeper.ordertable.update``, benchmarks §72)
KEPT_REREAD = 4
#: a segment joined (``Customer.join_segment``) / left (``leave_segment``) and nothing else of the card
#: changed: the audience hook then patches the card's segments slot and the member sets instead of
#: recomputing the card, and — for a record that does not remember its card yet — after joins only it
#: asks only the member sets of the customer's segments whether they hold it (not every segment's: a
#: customer can only have joined since the last commit). Apart from the card's other parts because a
#: full re-evaluation enters ~9 segments per customer (docs/benchmarks.md §93)
KEPT_JOINED = 8
KEPT_LEFT = 16
KEPT_SEGMENTS = KEPT_JOINED | KEPT_LEFT
#: the connection attribute holding ``{customer: bits}`` for the current transaction
KEPT_MARKS = "_shopkeeper_kept_marks"
#: attributes whose assignment marks the customer, and for which index
KEPT_ATTRS = {"status": KEPT_ORDERS | KEPT_REREAD, "hard": KEPT_ORDERS | KEPT_REREAD,
              "_tree": KEPT_ORDERS | KEPT_REREAD, "segments": KEPT_AUDIENCE,
              "consents": KEPT_AUDIENCE, "soft": KEPT_AUDIENCE, "traits": KEPT_AUDIENCE,
              "identities": KEPT_AUDIENCE, "outbox": KEPT_AUDIENCE}
#: the soft facts the audience card carries (``shopkeeper.audience.SOFT`` and the contact log, whose
#: presence the card records): setting any other (Decide's ``offer.*``, a rule's) marks nothing
KEPT_SOFT = frozenset({"preferred_channel", "contact.suppressed", "undeliverable", "timezone", "contact.log"})


def mark(c: Any, bits: int = KEPT_AUDIENCE) -> bool:
    """Mark ``c`` changed in ``bits`` for its connection's keepers (none installed: nothing). True, so
    that a ``Customer`` method marks its record changed and for the keepers in one line:
    ``self._p_changed = mark(self)``."""
    marks = getattr(c._p_jar, KEPT_MARKS, None)
    if marks is not None:
        marks[c] = marks.get(c, 0) | bits
    return True


def mark_soft(c: Any, name: str) -> bool:
    """:func:`mark` for soft fact ``name`` set or cleared: only if the audience card carries it."""
    return mark(c) if name in KEPT_SOFT else True
