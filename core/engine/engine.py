"""The engine: one process's write path, knowing no transport.

An :class:`Engine` owns everything that changes the store and everything that must see
each committed change: the store, the identity resolver, the event vocabulary, the
in-transaction processors plugins contribute, the one :class:`~.writer.Writer`, the
change-feed :class:`~.feed.Broker` and after-commit publishing (the broker, then the
``shopkeeper_committed`` hook). The gRPC hub (:mod:`shopkeeper.hub.server`) creates one and
its servicers translate proto → engine → proto; an in-process adapter or a CLI command can
drive the same engine directly.

Why one object: every commit of a hub process — events, outbox bookkeeping, rule timers,
scheduled segment runs, admin operations — goes through ``engine.writer`` and is published
by :meth:`Engine.publish`, the only place after-commit work happens, so nothing committed
is ever missing from ``Watch`` or the hook, and no second thread ever commits.

Start-up order (:meth:`start`): vocabulary (identity namespaces, event types) → processors
→ the writer starts → ``shopkeeper_startup``. Plugins therefore find ``hub.writer`` running
in their start-up hook and submit their background work to it
(``hub.writer.submit_op``). A plugin disabled by a failing start-up hook has its processors
removed right after the start-up hooks ran; only events other plugins submitted during
their own start-up can have met them (no transport serves before :meth:`start` returns).
Shut-down (:meth:`stop`): ``shopkeeper_shutdown`` first (background threads stop, adapters
flush their bookkeeping through the still-running writer), then the writer commits the
job in progress, fails what is still queued (``HubStopping``, retryable) and closes.

This module is domain code: it does not import gRPC or :mod:`shopkeeper.hub`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import pluggy

from ..context import PluginState
from ..events import EventTypes
from ..identity import IdentityConfig, Resolver
from ..plugins import call_each, dispatch, evolve_steps
from ..store import Folders, Store
from . import decisions, feed, maintenance
from .ingest import Processor
from .leases import Leases
from .maintenance import PackScheduler, claim_scheduled_pack
from .sharedfeed import SharedFeed
from .writer import Changes, Writer

log = logging.getLogger("shopkeeper.engine")


class Engine:
    """The write path of one process: store, vocabulary, processors, writer, change feed.

    ``context`` is what plugin hooks receive as their ``hub`` argument (the gRPC hub
    passes itself; standalone, the engine is its own context). ``disabled`` collects
    ``plugin name -> reason`` for plugins a failing hook disabled.
    """

    def __init__(self, store: Store, pm: pluggy.PluginManager, *, identity_config: IdentityConfig | None = None,
                 context: Any = None, disabled: dict[str, str] | None = None, max_group_events: int = 5000,
                 watch_memory_entries: int = 100_000, trim: Callable[[Folders], int] | None = None,
                 on_stats: Callable[[str, int], None] | None = None,
                 pack_every_seconds: float | None = None, pack_keep_days: float = 0.0,
                 shared_feed: bool | None = None,
                 after_pack: Callable[[], dict[str, Any]] | None = None) -> None:
        self.store = store
        self.pm = pm
        self.identity_config = identity_config or IdentityConfig()
        self.context = context if context is not None else self
        #: a HubContext when the engine is its own context (shopkeeper.context): no hub config,
        #: components reported to a dict, per-hub plugin state of its own
        self.config: Any = None
        self.components: dict[str, str | None] = {}
        self.plugin_state = PluginState()
        self.disabled = disabled if disabled is not None else {}
        self._max_group_events = max_group_events
        self._watch_memory_entries = watch_memory_entries
        self._trim = trim
        self._on_stats = on_stats
        self._pack_schedule = (pack_every_seconds, pack_keep_days) if pack_every_seconds else None
        self._pack_scheduler: PackScheduler | None = None
        self._after_pack = after_pack
        self.resolver: Resolver | None = None
        self.event_types: EventTypes | None = None
        self.broker: feed.Broker | None = None
        self.writer: Writer | None = None
        #: Decide's recorded offers until their records commit (the next Decide sees them)
        self.pending = decisions.Pending()
        #: how long Decide's offer records may wait in the writer's queue for company (Writer.submit_events)
        self.offer_linger = 0.05
        #: packs finished by this process (scheduled or asked for), and the last one's result
        self.pack_runs = 0
        self.last_pack: dict[str, float] = {}
        self._processors: list[tuple[str, Processor]] = []
        #: several hubs over one store (docs/scaleout.md): staged feed, sequenced by the lease holder;
        #: by default whenever the storage is a server several processes can share
        self.shared_feed = shared_feed if shared_feed is not None else shared_storage(store)
        self.leases = Leases(self.submit_op)
        self._shared: SharedFeed | None = None
        self.started = False

    def read(self) -> Any:
        """A read-only snapshot of the store (``with engine.read() as folders``)."""
        return self.store.read()

    def set_component(self, name: str, reason: str | None) -> None:
        self.components[name] = reason

    # -- life cycle ---------------------------------------------------------------------

    def start(self, *, startup: bool = True) -> Engine:
        """Build the vocabulary, run ``shopkeeper_configure``, collect the processors, start the writer,
        then run ``shopkeeper_startup``."""
        pm = self.pm
        # the plugins' named evolve steps (shopkeeper_evolve_steps) and the engine's own; no writer runs yet
        self.store.add_steps(evolve_steps(pm))
        for policies in pm.hook.shopkeeper_identity_namespaces():
            for p in policies or ():
                self.identity_config.namespaces[p.name] = p
        self.resolver = Resolver(self.identity_config)
        self.event_types = EventTypes()
        for types in pm.hook.shopkeeper_event_types():
            for et in types or ():
                self.event_types.register(et)
        with self.store.read() as f:
            start_cursor = feed.latest_cursor(f)
        self.broker = feed.Broker(start_cursor, capacity=self._watch_memory_entries)
        # before the writer and the processors: plugins read their config and set up per-hub state
        call_each(pm, "shopkeeper_configure", disabled=self.disabled, disable_on_error=True, hub=self.context)
        for name, got in dispatch(pm, "shopkeeper_processors", disabled=self.disabled, hub=self.context):
            self._processors.extend((name, p) for p in got or ())
        writer_trim = self._trim
        if self.shared_feed:
            self._shared = SharedFeed(self.store, self.broker, self.submit_op, self.leases, trim=self._trim)
            writer_trim = self._shared.trim_own
        self.writer = Writer(self.store, self.resolver, [p for _, p in self._processors],
                             max_group_events=self._max_group_events, on_committed=self.publish,
                             on_stats=self._on_stats, trim=writer_trim)
        self.writer.start()
        if self._shared is not None:
            self._shared.start()
        self.started = True
        if self._pack_schedule is not None:
            every = self._pack_schedule[0]
            self._pack_scheduler = PackScheduler(
                self.pack, *self._pack_schedule,
                claim=lambda: self.run(lambda f, ch: claim_scheduled_pack(
                    f, every, lease=(maintenance.LEASE, self.leases.holder))),
                may_run=lambda: self.leases.held(maintenance.LEASE),
                renew_every=self.leases.ttl_s / 4).start()
        if startup:
            call_each(pm, "shopkeeper_startup", disabled=self.disabled, disable_on_error=True, hub=self.context)
            self._drop_disabled_processors()
        return self

    def _drop_disabled_processors(self) -> None:
        keep = [(n, p) for n, p in self._processors if n not in self.disabled]
        if len(keep) == len(self._processors):
            return
        self._processors = keep
        procs = [feed.interaction_processor, *(p for _, p in keep)]

        def swap(folders: Folders, changes: Changes) -> None:  # on the writer's thread, between groups
            assert self.writer is not None
            self.writer.ingestor.processors = procs

        assert self.writer is not None
        self.writer.submit_op(swap).result()

    def stop(self, timeout: float | None = 30.0) -> None:
        """``shopkeeper_shutdown`` (while the writer still takes work), then stop the writer: the job in
        progress commits, queued ones fail with ``HubStopping`` (:meth:`.writer.Writer.stop`)."""
        if not self.started:
            return
        self.started = False
        if self._pack_scheduler is not None:
            self._pack_scheduler.stop(timeout)
        call_each(self.pm, "shopkeeper_shutdown", disabled=self.disabled, disable_on_error=False, hub=self.context)
        if self._shared is not None:
            self._shared.stop()
        self.leases.release_all()
        if self.broker is not None:
            self.broker.close()
        if self.writer is not None:
            self.writer.stop(timeout)

    # -- writing ------------------------------------------------------------------------

    def submit_op(self, op: Callable[[Folders, Changes], Any], deadline: float | None = None,
                  urgent: bool = False) -> Future:
        """Run ``op(folders, changes)`` in a writer transaction; the future resolves after the commit
        (``urgent``: ahead of the queue, for lease renewals — :meth:`.writer.Writer.submit_op`)."""
        assert self.writer is not None, "the engine is not started"
        return self.writer.submit_op(op, deadline, urgent=urgent)

    def run(self, op: Callable[[Folders, Changes], Any], timeout: float | None = None) -> Any:
        """:meth:`submit_op` and wait for the committed result (raises what ``op`` raised)."""
        return self.submit_op(op).result(timeout)

    def submit_events(self, events: Sequence[Any], deadline: float | None = None) -> Future:
        assert self.writer is not None, "the engine is not started"
        return self.writer.submit_events(events, deadline)

    def pack(self, days: float = 0.0) -> Future:
        """Pack the store through the writer, keeping ``days`` of history; the future resolves to
        ``(bytes_before, bytes_after)`` when the pack finished (:meth:`Writer.submit_pack`: the
        pack time is fixed after every change submitted before it has committed)."""
        assert self.writer is not None, "the engine is not started"
        return self.writer.submit_pack(self._pack_at, keep_days=days)

    def _pack_at(self, t: float) -> tuple[int, int]:
        """On the writer's maintenance thread: the storage's pack at ``t``."""
        started = time.monotonic()
        before = self.store.storage_size()
        self.store.pack(t=t)
        done: dict[str, Any] = {}
        if self._after_pack is not None:  # e.g. PostgreSQL's rewrite of erased rows (shopkeeper.ops.pg)
            try:
                done = self._after_pack()
            except Exception as exc:  # the pack stands; the erasure guarantee does not: say so loudly
                log.error("after the pack, the storage's rewrite failed: %s", exc)
                done = {"rewrite_error": str(exc)}
        after = self.store.storage_size()
        self.pack_runs += 1
        self.last_pack = {"seconds": time.monotonic() - started, "finished_at": time.time(),
                          "bytes_before": before, "bytes_after": after, **done}
        if self._on_stats is not None:
            self._on_stats("pack", int(self.last_pack["seconds"] * 1e6))
        log.info("packed the store", extra={"bytes_before": before, "bytes_after": after,
                                            "seconds": round(self.last_pack["seconds"], 3)})
        return before, after

    # -- after the commit ---------------------------------------------------------------

    def publish(self, entries: list[feed.Change]) -> None:
        """Everything after a commit, in one place: wake ``Watch`` streams, then tell plugins.

        Called by the writer on its own thread, once per commit that added feed entries. A
        plugin failing in ``shopkeeper_committed`` is logged by name; the commit stands and
        the other plugins still hear about it.
        """
        if self.broker is not None and self._shared is None:  # shared: the sequenced feed fills it
            self.broker.publish(entries)
        if self._shared is not None:  # sequence and follow now, not after an idle back-off
            self._shared.poke()
        if self.pm.hook.shopkeeper_committed.get_hookimpls():
            dicts = [e.as_dict() for e in entries]
            for _name, _got in dispatch(self.pm, "shopkeeper_committed", what="the commit stands", changes=dicts):
                pass

    # -- deciding -----------------------------------------------------------------------

    def decide(self, customer: Any, touchpoint: str, placement: str, context: dict[str, Any],
               limit: int | None = None, identity: tuple[str, str] | None = None) -> decisions.Decision:
        """Every plugin's actions that the contact policy allows, best first (at most ``limit``),
        with the reason when there is no offer (:func:`.decisions.gather`); the offers among them
        are recorded in the customer through the writer, not waited for (:mod:`.decisions`),
        addressed by ``identity`` when the caller named the customer by one."""
        if self.writer is None or self.event_types is None:
            return self._decide(customer, touchpoint, placement, context, limit)
        # against the offers recorded before, committed or not (decisions.Pending): `customer` is
        # the read transaction's copy, which nothing commits
        with self.pending.lock(customer.id):
            self.pending.apply(customer)
            try:
                out = self._decide(customer, touchpoint, placement, context, limit)
                if out:
                    decisions.record(self.writer, customer, out, touchpoint, placement, context, self.event_types,
                                     pending=self.pending, linger=self.offer_linger, identity=identity)
            finally:
                self.pending.done(customer)
        return out

    def _decide(self, customer: Any, touchpoint: str, placement: str, context: dict[str, Any],
                limit: int | None) -> decisions.Decision:
        proposals: list[dict] = []
        for name, got in dispatch(self.pm, "shopkeeper_decide", what="its answer is left out", hub=self.context,
                                  customer=customer, touchpoint=touchpoint, placement=placement, context=context):
            for a in got or ():
                if isinstance(a, dict):
                    proposals.append({**a, "plugin": name})
        hour = context.get("local_hour")
        return decisions.gather(customer, str(context.get("channel") or touchpoint or "web"), proposals, limit,
                                hour=int(hour) if isinstance(hour, (int, float)) else None)

    # -- housekeeping -------------------------------------------------------------------

    @staticmethod
    def trim_feed(retention_hours: float, max_entries: int | None) -> Callable[[Folders], int]:
        """A ``trim`` for the writer: drop feed entries older than ``retention_hours`` / beyond ``max_entries``."""
        def trim(folders: Folders) -> int:
            cutoff = int((time.time() - retention_hours * 3600) * 1_000_000)
            return feed.trim(folders, older_than_us=cutoff, max_entries=max_entries)

        return trim


def shared_storage(store: Store) -> bool:
    """Whether other processes may write to this store too (ZEO, RelStorage), so that the change
    feed must be sequenced across hubs; FileStorage and in-memory storages are one process's."""
    kind = type(store.db.storage).__name__
    return kind in ("ClientStorage", "RelStorage")


__all__ = ["Engine", "shared_storage"]
