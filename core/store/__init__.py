"""Opening a Shopkeeper store by URI, its root layout and its schema generations.

The store is a ZODB database. Everything the product knows hangs off a handful of root
folders, all BTrees so that they grow without re-pickling one big object:

=================  =====================================================================
root key           holds
=================  =====================================================================
``customers``      ``OOBTree`` customer id -> :class:`~shopkeeper.customer.Customer`
``identities``     ``OOBTree`` (namespace, normalised value) -> customer id
``idempotency``    legacy (generations 1-5: caller idempotency key -> customer id); emptied by
                   generation 6, which keeps keys in the customers' records (``Customer.has_key``)
``merges``         ``OOBTree`` merge id -> :class:`~shopkeeper.records.MergeRecord`
``proposals``      ``OOBTree`` proposal id -> proposed merge (when merging is not automatic)
``tombstones``     ``OOBTree`` keyed hash of an erased identity -> erased at (µs)
``counters``       one :class:`~shopkeeper.records.Counters` record, name -> int, concurrent changes
                   merged (generation 9; an ``OOBTree`` name -> ``BTrees.Length`` before)
``meta``           ``OOBTree`` generation, store secret, created at
``changes``        ``LOBTree`` cursor -> compact change-feed entry (generation 3; see ``shopkeeper.engine.feed``)
``analysis``       ``OOBTree`` of analysis folders: models, propensities, segment sizes (generation 4)
``rule_timers``    ``OOBTree`` (due µs, customer id, timer id) -> rule: pending rule timers (generation 5)
``audience``       campaign planning's index: each customer's card and each segment's members, kept
                   by a before-commit hook (named step ``audience-index`` of the campaigns plugin)
``outbox``,        named steps of their owners (``outbox-index``, ``campaign-runs``,
``campaign_runs``, ``rule-reloads``, ``score-tables``, the engine's ``leases`` and feed steps):
``rule_reloads``,  see docs/data-model.md, "Named steps"
``scores``,
``orders``, ...
=================  =====================================================================

Generations: ``meta['generation']`` says which layout a store has; ``Store.open`` runs the
missing numbered evolve steps (:data:`EVOLVE_STEPS`), each in its own transaction, and
refuses a store newer than the code. Plugins do not add numbered steps here (this package
imports none of them): they contribute **named steps** (:class:`EvolveStep`) through the
``shopkeeper_evolve_steps`` hook; each runs once per store, after the numbered ones, in its
own transaction, and is recorded by name in ``meta['steps']`` (name -> µs applied). The
engine passes its plugins' steps when it starts (:meth:`Store.add_steps`); offline tools pass
them to :meth:`Store.open` (``steps=shopkeeper.plugins.evolve_steps(pm)``). Every root key
beyond generation 1's is made by a numbered or a named step, never lazily by the code using it.

The package, split by job: :mod:`.database` (:class:`Store`), :mod:`.folders`
(:class:`Folders`), :mod:`.generations` (evolve steps), :mod:`.storages` (storages by URI,
:class:`ErasureSafeFileStorage`). Import from ``shopkeeper.store``: every name stays here.
"""

from __future__ import annotations

from . import unpickling
from .database import Store
from .errors import StoreError
from .folders import Folders
from .generations import (
    CURRENT_GENERATION,
    EVOLVE_STEPS,
    EvolveStep,
    evolve,
    evolve_named,
)
from .storages import (
    RELSTORAGE_QUERY,
    ErasureSafeFileStorage,
    StoreOptions,
    _clear_commit_buffer,
    _make_storage,
)

unpickling.install()  # every record this process loads: a peekable buffer for the unpickler (see the module)

__all__ = ["CURRENT_GENERATION", "EVOLVE_STEPS", "RELSTORAGE_QUERY", "ErasureSafeFileStorage",
           "EvolveStep", "Folders", "Store", "StoreError", "StoreOptions", "_clear_commit_buffer", "_make_storage",
           "evolve", "evolve_named"]
