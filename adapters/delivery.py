"""Delivery on any channel: the claim -> send -> mark sent/failed cycle, once per intent.

Subclass :class:`ChannelAdapter`, name your ``channels`` and implement :meth:`~ChannelAdapter.send`
(or ``asend`` for asyncio code); the base class does the rest, the same way in the hub's
process and out of it::

    class HelpdeskAdapter(ChannelAdapter):
        name = "helpdesk"
        channels = ("helpdesk",)
        Config = HelpdeskConfig            # give it `journal: str | None` and `retry_delays`

        def send(self, message, customer, address, message_id, prepared=None):
            r = httpx.post(self.config.url, json={...}, headers={"Idempotency-Key": message_id})
            if r.status_code in (400, 404, 410, 422):
                raise PermanentFailure(f"{r.status_code} {r.text[:200]}")
            r.raise_for_status()           # anything else raised: temporary, retried

For each committed intent on its channels (from the change feed, and from a scan of the
pending ones at start, after every reconnect and every ``sweep_seconds`` — a busy adapter skips
the periodic scan unless it set an intent aside since the last one, see ``busy_sweep_every``):

1. the intent and the customer are read; a final intent is skipped. One left ``sending`` by
   a crash carries the Message-ID of its claim: if the **delivery journal** holds it, the far
   end has it already and the intent is only marked sent;
2. :meth:`~ChannelAdapter.address` picks where to send (``None`` -> ``suppressed``) and
   :meth:`~ChannelAdapter.prepare` builds the message (an error -> ``failed``, never claimed;
   a :class:`PermanentFailure` also marks the address undeliverable);
3. the intent is **claimed** (``message_dispatch`` with the Message-ID) — the hub refuses a
   final intent, one held under another Message-ID, one that is not this customer's, and
   one whose consent is gone (-> ``suppressed``). Nothing reaches ``send`` before the claim
   is committed, so a customer without consent is never handed to ``send``. A claim in the
   customer's quiet hours is refused with field ``not_before``: the intent stays pending and
   the scan of pending intents hands it over again once that time has come (defer, don't drop);
4. ``send``; :class:`PermanentFailure` -> ``failed`` (address marked undeliverable), any other
   exception is temporary and retried after each of ``retry_delays``, then ``failed``;
5. the Message-ID is appended to the journal and **fsync'd**, then the intent is marked sent.

A crash anywhere leaves the intent either pending (claimed again, sent once) or ``sending``
with its Message-ID: resolved by the journal (or :meth:`~ChannelAdapter.confirm_unjournaled`),
or sent again *with the same Message-ID* if the crash fell between the far end's acceptance
and the journal's fsync — so a receiver that keys on the Message-ID (or an HTTP
``Idempotency-Key``) never sees two messages.

Split by job (every name stays importable from here): this module is the adapter's machinery —
what a channel implements, the event loop's thread, the hand-over of intents to it, the sweep of
pending ones, ``partition``; :mod:`shopkeeper.adapters.cycle` is one intent's cycle (steps 1–5
above: read, claim, send, journal, mark) with its two exceptions; :mod:`shopkeeper.adapters.journal`
the delivery journal.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import threading
import time
import zlib
from typing import Any, ClassVar

from shopkeeper.outbox import Message, Receipt

from .adapter import Adapter
from .batching import EventBatcher, ReadBatcher
from .cycle import DeliveryCycle, JournalFailed, PermanentFailure, idem_key
from .journal import DeliveryJournal


def parse_partition(text: str | None) -> tuple[int, int]:
    """A ``partition`` setting ``"K/N"`` as ``(K, N)``; ``(0, 1)`` (every intent) when unset."""
    k, _, n = (text or "0/1").partition("/")
    if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
        raise ValueError(f"partition: {text!r} must be K/N with 0 <= K < N (\"0/2\", \"1/2\")")
    return int(k), int(n)


class ChannelAdapter(DeliveryCycle, Adapter):
    """An adapter that delivers outbox intents on its ``channels``; implement :meth:`send`.

    Settings it reads from ``Config`` when present: ``journal`` (the delivery journal file;
    set it in production), ``retry_delays`` (seconds between attempts after a temporary
    failure) and ``max_in_flight``.
    """

    #: the event that marks an intent sent on this channel
    sent_type: ClassVar[str] = "message_sent"
    #: how often pending intents are scanned again (a hub restart, a claim refused for now)
    sweep_seconds: ClassVar[float] = 5.0
    #: while deliveries are in flight and nothing was set aside since the last scan, a sweep is
    #: skipped: a scan lists every intent not yet final, those in flight too, and the hub loads each
    #: one's customer to list it (most of the hub's CPU per message in remote mode was these scans).
    #: A busy adapter still scans at least every ``busy_sweep_every`` sweep intervals (intents set
    #: aside in ways it cannot see: another adapter process gone, a store restored under it).
    busy_sweep_every: ClassVar[int] = 12
    #: a scan that listed this many intents may have been cut at the hub's limit: scan again
    scan_limit: ClassVar[int] = 10_000
    default_retry_delays: ClassVar[tuple[float, ...]] = (5.0, 30.0, 120.0, 600.0)
    #: seconds a claim or delivery report waits for company before it goes to the hub (one call,
    #: one writer group): 15 ms rather than 3 gave the writer ~half the groups per message
    #: (docs/benchmarks.md §43); 50 rather than 15 again ~0.6 of the groups, ~0.3 fewer records and
    #: ~0.3 ms less writer CPU per email (§70), for ~70 ms more per message — which the messages in
    #: flight (``max_in_flight``) cover: it costs latency, not throughput
    bookkeeping_delay: ClassVar[float] = 0.05
    #: ``asend`` journals the Message-ID itself (:meth:`journal_sent`, on the thread that sent it,
    #: after the far end accepted) instead of the cycle handing it to a thread of its own: one
    #: hand-over per message instead of two (docs/benchmarks.md §70)
    journals_on_send: ClassVar[bool] = False
    #: the batched read before a delivery gives the customer's contact part alone
    #: (:func:`shopkeeper.outbox.contact_view`: identities, traits, soft facts) when the hub can, and
    #: :meth:`needs_full_view` says for which messages the whole 360° view is read after all:
    #: building the view per message was ~1/4 of the read's CPU (docs/benchmarks.md §74)
    contact_reads: ClassVar[bool] = False

    def __init__(self, config: Any, hub: Any) -> None:
        super().__init__(config, hub)
        self.journal = DeliveryJournal(getattr(config, "journal", None))
        if self.journal.path is None:
            self.log.warning("%s", no_journal_warning(self.name))
        #: ``partition: K/N`` in the config: this process delivers the intents whose crc32(intent id)
        #: mod N is K — N remote adapter processes, each with its own journal, split a channel's
        #: intents (by intent, not customer: a merge never moves an in-flight intent to another
        #: process, and a crashed process's intents come back to the process that journaled them)
        self.partition = parse_partition(getattr(config, "partition", None))
        delays = getattr(config, "retry_delays", None)
        self.retry_delays = list(self.default_retry_delays if delays is None else delays)
        self.stats = {"sent": 0, "suppressed": 0, "failed": 0, "retried": 0, "recovered": 0, "refused": 0,
                      "deferred": 0}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._slots = threading.BoundedSemaphore(int(getattr(config, "max_in_flight", 64) or 64))
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()
        self._handoff: list[Message] = []  # handed over by deliver(), not yet a task on the loop
        self._handoff_lock = threading.Lock()
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks
        self.batcher: EventBatcher | None = None
        self.reader: ReadBatcher | None = None
        #: scans of pending intents made and skipped by the sweep (see ``busy_sweep_every``)
        self.sweeps = {"scanned": 0, "skipped": 0}

    # -- what a channel implements ---------------------------------------------------------

    def address(self, message: Message, customer: dict[str, Any]) -> str | None:
        """Where to send ``message`` for ``customer`` (a 360° view), or None (-> suppressed).
        Default: the customer's first identity in the namespace named like the channel that
        is not marked undeliverable."""
        bad = set((customer.get("soft_facts", {}).get("undeliverable") or {}).get("value") or ())
        for ident in customer.get("identities", ()):
            if ident["namespace"] == message.channel and f"{message.channel}:{ident['value'].lower()}" not in bad:
                return ident["value"]
        return None

    def new_message_id(self, message: Message) -> str:
        """A unique id for this delivery, fixed at the claim and reused if it must be resent."""
        return f"<sk.{message.id}.{message.customer_id}.{secrets.token_hex(6)}@{self.name}.shopkeeper>"

    def prepare(self, message: Message, customer: dict[str, Any], address: str, message_id: str) -> Any:
        """Build what will be sent (render templates...), *before* the claim: raising here ends
        the intent ``failed`` with the reason instead of leaving it claimed. The result is
        handed to :meth:`send` as ``prepared``."""
        return None

    def send(self, message: Message, customer: dict[str, Any], address: str, message_id: str,
             prepared: Any = None) -> None:
        """Hand the message to the far end (runs in a worker thread). Raise
        :class:`PermanentFailure` for a refusal for good, anything else for a temporary one."""
        raise NotImplementedError(f"{type(self).__name__} must implement send() or asend()")

    async def asend(self, message: Message, customer: dict[str, Any], address: str, message_id: str,
                    prepared: Any = None) -> None:
        """The asyncio form of :meth:`send` (override one of them)."""
        await asyncio.to_thread(self.send, message, customer, address, message_id, prepared)

    def journal_sent(self, message_id: str) -> None:
        """Journal ``message_id`` (fsync'd) after the far end accepted it — for an ``asend`` that
        does it on its own worker thread (``journals_on_send``); an error is :class:`JournalFailed`."""
        try:
            self.journal.add(message_id)
        except Exception as exc:
            raise JournalFailed(f"{message_id} accepted but not journaled: {exc}") from exc

    def journal_write(self, message_id: str) -> None:
        """The first half of :meth:`journal_sent`, for a worker that sends several messages in a row:
        write ``message_id`` once the far end accepted it (a ``write``: from then on a kill of the
        process does not lose it; a power cut may, until :meth:`journal_sync`). An error is
        :class:`JournalFailed`."""
        try:
            self.journal.write(message_id)
        except Exception as exc:
            raise JournalFailed(f"{message_id} accepted but not journaled: {exc}") from exc

    def journal_sync(self) -> None:
        """The second half: ``fsync`` what :meth:`journal_write` wrote, once for the batch and before
        any of its messages is reported sent. An error is :class:`JournalFailed`."""
        try:
            self.journal.sync()
        except Exception as exc:
            raise JournalFailed(f"a batch accepted but not journaled: {exc}") from exc

    async def confirm_unjournaled(self, message: Message, message_id: str) -> bool:
        """An intent was found ``sending`` under ``message_id`` (a crash after the claim) and the
        journal does not have it: did the far end get it anyway? True = yes (it is only marked
        sent); False (the default) = send it again with the same Message-ID, for a far end
        that drops repeats of a Message-ID. A channel without such a far end (SMS) waits here
        for other proof, such as a delivery report."""
        return False

    def needs_full_view(self, message: Message) -> bool:
        """With ``contact_reads``: does preparing ``message`` need more of the customer than the contact
        part (:func:`shopkeeper.outbox.contact_view`)? True (the default) reads the whole view."""
        return True

    def sent_data(self, message: Message, message_id: str) -> dict[str, Any]:
        """``data`` of the sent event (add e.g. the campaign)."""
        return {"intent": message.id, "message_id": message_id}

    async def astart(self) -> None:
        """Start asyncio services of the adapter (servers, pools) on its event loop."""

    async def astop(self) -> None:
        """Stop them again."""

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.check_hub()
        self._loop_thread = threading.Thread(target=self._run_loop, name=f"shopkeeper-{self.name}-loop",
                                             daemon=True)
        self._loop_thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"{self.name}: the adapter's event loop did not start")
        if self._startup_error is not None:
            raise self._startup_error
        super().start()  # follow the outbox (pending intents first)
        self._spawn(self._sweep, name=f"{self.name}-sweep")

    def _run_loop(self) -> None:
        loop = self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._astart())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self.astop())
        loop.close()

    async def _astart(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        # hub calls and sync sends run in threads: enough of them for the sends in flight to overlap
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(64, thread_name_prefix=f"shopkeeper-{self.name}"))
        self.batcher = EventBatcher(self.hub, max_events=500, max_delay=self.bookkeeping_delay)
        if getattr(self.hub, "outbox_batch", None) is not None:
            read = self.hub.outbox_batch
            if self.contact_reads and getattr(self.hub, "reads_contact_views", False):
                read = functools.partial(read, contact_only=True)
            self.reader = ReadBatcher(read)
        await self.astart()

    def stop(self) -> None:
        self._stop.set()
        super().stop()
        if self.loop is not None and self.loop.is_running():
            deadline = time.monotonic() + 10
            while self._inflight and time.monotonic() < deadline:  # let deliveries in progress finish
                time.sleep(0.02)
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(15)
        self.journal.close()

    def _sweep(self) -> None:
        """Scan pending intents every ``sweep_seconds`` for those due that nobody hands over: one
        deferred by quiet hours and due now, a claim refused for now, a delivery that died. While
        deliveries are in flight and none of that happened since the last scan, skip it (see
        ``busy_sweep_every``): the feed hands over every new intent, and a scan would only list
        the ones in flight again."""
        last = time.monotonic()
        while not self._stop.wait(self.sweep_seconds):
            if self._inflight and not self.rescan_due \
                    and time.monotonic() - last < self.sweep_seconds * self.busy_sweep_every:
                self.sweeps["skipped"] += 1
                continue
            self.rescan_due = False  # before the scan: what is set aside during it is scanned next time
            last = time.monotonic()
            self.sweeps["scanned"] += 1
            try:
                found = self.pending_scan()
                if len(found) >= self.scan_limit:
                    self.rescan_due = True  # cut at the hub's limit: the rest next time
                for msg in found:
                    if self._stop.is_set():
                        return
                    if msg.id not in self._inflight:
                        self._deliver_safely(msg)
            except Exception as exc:  # the hub is away: the next sweep tries again
                self.rescan_due = True
                self.log.info("%s: scanning pending intents failed: %s", self.name, exc)

    def pending_scan(self) -> list[Message]:
        """The hub's pending list — or, when this adapter reads each intent with its customer
        before it delivers (``outbox_batch``) and the hub can list bare refs (``pending_refs``),
        the intents' ids alone: the hub then loads no customer for the scan, only once for the
        read (a scan of pending intents loaded every customer twice: docs/benchmarks.md §61).
        A ref's intent is filled in, and a deferred one left for a later scan, by :meth:`_process`."""
        refs = getattr(self.hub, "pending_refs", None)
        if self.reader is not None and refs is not None:
            found = refs(self.channels)
            if len(found) < self.scan_limit:
                return found
            # cut at the hub's limit: bare refs list deferred intents too, and a backlog of them
            # (a campaign held by quiet hours) could hide due ones behind the cut; the full list
            # leaves deferred ones out
        return self.hub.pending_outbox(self.channels)

    # -- delivery -------------------------------------------------------------------------

    def deliver(self, message: Message) -> Receipt | None:
        if message.channel not in self.channels:
            return None
        k, n = self.partition
        if n > 1 and zlib.crc32(message.id.encode()) % n != k:
            return None  # another process's (see ``partition``)
        with self._inflight_lock:
            if message.id in self._inflight:
                return Receipt("accepted", message.message_id, "already in progress")
            self._inflight.add(message.id)
        while not self._slots.acquire(timeout=0.5):
            if self._stop.is_set():
                with self._inflight_lock:
                    self._inflight.discard(message.id)
                self.rescan_due = True
                return Receipt("failed", "", "adapter stopping")
        assert self.loop is not None
        with self._handoff_lock:
            self._handoff.append(message)
            wake = len(self._handoff) == 1
        if wake:  # else a wake-up is on its way and takes this one too
            self.loop.call_soon_threadsafe(self._start_handed)
        return Receipt("accepted", "", "queued")

    def _start_handed(self) -> None:
        """On the loop: a task for every intent :meth:`deliver` handed over since the last wake-up.
        One wake-up per burst, where ``run_coroutine_threadsafe`` per intent cost a wake-up of the
        loop, a concurrent future and its chaining per message (docs/benchmarks.md §74)."""
        with self._handoff_lock:
            batch, self._handoff = self._handoff, []
        loop = self.loop
        assert loop is not None
        for message in batch:
            task = loop.create_task(self._process(message))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._processed, message.id))

    def _processed(self, intent_id: str, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        self._slots.release()
        with self._inflight_lock:
            self._inflight.discard(intent_id)
        if not task.cancelled() and task.exception() is not None:
            self.rescan_due = True
            self.log.warning("%s: intent %s left for the next sweep: %s", self.name, intent_id, task.exception())


__all__ = ["ChannelAdapter", "DeliveryJournal", "PermanentFailure", "JournalFailed", "idem_key", "parse_partition"]


def no_journal_warning(name: str) -> str:
    """What an adapter without a delivery journal file is told, at start and by ``adapter check``:
    its journal is in memory, so a crash between the far end's acceptance and the sent mark sends
    that message again (the one case the journal exists for)."""
    return (f"adapter.{name}.journal: not set — the delivery journal is kept in memory, so a crash between "
            f"the far end accepting a message and its sent mark sends that message again after restart; "
            f"set a file on local disk in production")
