"""Schema generations: numbered evolve steps, and the named steps features contribute.

``meta['generation']`` says which layout a store has; :func:`evolve` runs the missing
numbered steps (:data:`EVOLVE_STEPS`), each in its own transaction, and refuses a store
newer than the code. Feature packages add no numbered steps here: they contribute **named
steps**, each run once per store, after the numbered ones, in its own transaction, and
recorded by name in ``meta['steps']`` (name -> µs applied).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import transaction
from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from ZODB.Connection import Connection

from .. import audience, ordertable
from ..customer import STATUS_ACTIVE, STATUS_FORGOTTEN, STATUS_MERGED, now_us
from .errors import StoreError


def _gen1(root: Any) -> None:
    """The first layout: customers, identity index, idempotency keys, merges, counters."""
    for name in ("customers", "identities", "idempotency", "merges", "counters", "meta"):
        if name not in root:
            root[name] = OOBTree()
    counters = root["counters"]
    for name in ("customers", "interactions", "duplicates"):
        if name not in counters:
            counters[name] = Length()
    meta = root["meta"]
    if "secret" not in meta:
        meta["secret"] = secrets.token_hex(32)
        meta["created_at"] = now_us()


def _gen2(root: Any) -> None:
    """Erasure and proposed merges: tombstones and a proposals folder."""
    for name in ("tombstones", "proposals"):
        if name not in root:
            root[name] = OOBTree()
    if "forgotten" not in root["counters"]:
        root["counters"]["forgotten"] = Length()


def _gen3(root: Any) -> None:
    """The hub's change feed: committed changes by cursor, for ``Watch`` and resuming."""
    from BTrees.LOBTree import LOBTree

    if "changes" not in root:
        root["changes"] = LOBTree()
    if "changes" not in root["counters"]:
        root["counters"]["changes"] = Length()


def _gen4(root: Any) -> None:
    """Analysis and personalisation: models, learned propensities, segment sizes, offer counts.

    Kept as a number so that every store's generation still means what it meant; the folders
    themselves are the named step ``analysis`` that ``shopkeeper.analysis.state`` contributes
    (it runs on stores of any generation that have not recorded it; it is idempotent)."""


def _gen5(root: Any) -> None:
    """Rules: pending rule timers by due time, (due µs, customer id, timer id) -> rule
    (see ``shopkeeper.rules.runtime``), and a counter of failed rule actions."""
    if "rule_timers" not in root:
        root["rule_timers"] = OOBTree()
    if "rule_failures" not in root["counters"]:
        root["counters"]["rule_failures"] = Length()


def _gen6(root: Any, checkpoint: Callable[[], None]) -> None:
    """Exactly-once moves into the customers' own records (issue 10): every idempotency key of the
    wave-1 global index, and every key in a customer's history, goes into that customer's
    ``key_log`` (``Customer.log_key``); then the global index is replaced by an empty one, which
    nothing writes any more. In place, committing every 2,000 customers (``checkpoint``): the
    generation is recorded only at the end, and re-running the step after a crash is harmless."""
    customers = root["customers"]
    for n, c in enumerate(customers.values(), 1):
        if c.status != STATUS_FORGOTTEN:
            for it in c.history.values():
                if it.idempotency_key:
                    c.log_key(it.idempotency_key, it.ts)
        if c.recent_keys is None:
            c.recent_keys = {}
        if n % 2000 == 0:
            checkpoint()
    legacy = root["idempotency"]
    for n, (key, cid) in enumerate(legacy.items(), 1):
        c = customers.get(cid)
        hops = 0
        while c is not None and c.status == STATUS_MERGED and c.merged_into and hops < 64:
            c, hops = customers.get(c.merged_into), hops + 1
        if c is not None and c.status == STATUS_ACTIVE:  # an erased person's keys: the tombstones refuse
            c.log_key(key, 0)
        if n % 20_000 == 0:
            checkpoint()
    root["idempotency"] = OOBTree()


#: Evolve steps in order; generation N is reached by running steps 1..N. A step that takes two
#: arguments gets a ``checkpoint()`` that commits its work so far (large stores, one step).
EVOLVE_STEPS: list[Callable[..., None]] = [_gen1, _gen2, _gen3, _gen4, _gen5, _gen6]
CURRENT_GENERATION = len(EVOLVE_STEPS)

#: Named evolve steps contributed by feature packages: name -> step(root). Registration order is run order.
NAMED_STEPS: dict[str, Callable[[Any], None]] = {}


def register_evolve_step(name: str, step: Callable[[Any], None]) -> None:
    """Contribute a named, idempotent evolve step ``step(root)`` (call it at import time).

    Why named, not numbered: a feature package (analysis, a third-party plugin) can add the
    root folders it needs without this module importing it and without packages competing
    for the next generation number. Each step runs once per store, in its own transaction,
    and is recorded in ``meta['steps']``; renaming a step runs it again.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"an evolve step needs a name, not {name!r}")
    NAMED_STEPS[name] = step


register_evolve_step("audience-index", audience.build)
register_evolve_step("order-table", ordertable.build)


def evolve_named(conn: Connection, tm: transaction.TransactionManager) -> list[str]:
    """Run every registered named step the store behind ``conn`` has not recorded; return their names."""
    root = conn.root()
    ran = []
    for name, step in list(NAMED_STEPS.items()):
        tm.begin()
        meta = root["meta"]
        if name in (meta.get("steps") or ()):
            tm.abort()
            continue
        step(root)
        if "steps" not in meta:
            meta["steps"] = OOBTree()
        meta["steps"][name] = now_us()
        tm.get().note(f"shopkeeper: evolve step {name}")
        tm.commit()
        ran.append(name)
    return ran


def evolve(conn: Connection, tm: transaction.TransactionManager, target: int = CURRENT_GENERATION) -> int:
    """Bring the store behind ``conn`` to generation ``target``; return the generation before."""
    root = conn.root()
    meta = root.get("meta")
    found = int(meta.get("generation", 0)) if meta is not None else 0
    if found > CURRENT_GENERATION:
        raise StoreError(
            f"store is at generation {found} but this Shopkeeper only knows up to "
            f"{CURRENT_GENERATION}; upgrade Shopkeeper before opening it"
        )
    def checkpoint() -> None:
        tm.commit()
        tm.begin()

    for gen in range(found + 1, target + 1):
        tm.begin()
        step = EVOLVE_STEPS[gen - 1]
        if step.__code__.co_argcount == 2:
            step(root, checkpoint)
        else:
            step(root)
        root["meta"]["generation"] = gen
        tm.get().note(f"shopkeeper: evolve to generation {gen}")
        tm.commit()
    return found
