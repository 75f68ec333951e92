"""The change feed of a hub that shares its store with other hubs (ZEO, RelStorage).

Every hub's writer stages its transactions' feed entries (:func:`.feed.stage_in`); one thread
per hub then does two things:

* on the hub holding the ``feed`` lease (:mod:`.leases`), it **sequences**: a writer operation
  moves everything staged by every hub into the store's one ``changes`` tree in commit order
  (:func:`.feed.sequence`), so cursors are store-wide, strictly increasing and resumable on
  any hub;
* on every hub **that someone watches**, it **follows** ``changes`` and publishes new entries to
  the hub's in-memory :class:`~.feed.Broker`, which wakes its ``Watch`` streams exactly as on a
  single hub. A hub nobody watches (no ``Watch`` stream, no in-process watcher: the broker's
  ``followers``) skips this part — reading every sequenced entry cost ~7 µs per event on a second
  hub (docs/benchmarks.md §101) for nobody; the first watcher to arrive brings the broker up to the
  store's last cursor (:meth:`SharedFeed.catch_up`) before it positions itself, so it misses
  nothing committed after it arrived, and older cursors are read from the store as ever;
* it keeps this hub's ``hub:<id>`` lease, which tells the sequencer the hub is alive: with its
  periodic trim the sequencer removes the staging of hubs whose lease lapsed once everything they
  staged is sequenced (:func:`.feed.reclaim_staging`), so restarted and dead hubs leave nothing.

Why not publish directly after the commit, as a single hub does: a hub knows only its own
commits, and a cursor given before the commit cannot be in commit order across hubs. The price
is latency: an entry reaches watchers one sequencing round (``interval``) after its commit.

**Idle hubs back off.** Each round is a few reads of the store (on PostgreSQL, a poll for
invalidations and the loads): at a fixed 20 ms every hub sent ~50 of them a second to the
database whatever the load. A round that finds nothing to sequence or publish doubles the wait,
up to ``idle_interval`` (1 s: one round a second per idle hub, well inside a lease's renewal
margin); a round that finds work, or a commit of this hub's own writer (:meth:`poke`), brings it
back to ``interval``. So a busy feed keeps its 20 ms latency; the first change after an idle
spell reaches watchers at once on the hub that wrote it when it sequences, otherwise within
``idle_interval`` of the sequencing hub's next round and as much again of the following hub's.
Why not LISTEN/NOTIFY: it would tie the feed to PostgreSQL (ZEO hubs share this code), need a
connection of its own beside RelStorage's, and still need this poll for the leases and trims.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from . import feed
from .leases import Leases

log = logging.getLogger(__name__)

LEASE = "feed"


class SharedFeed:
    def __init__(self, store: Any, broker: feed.Broker, submit_op: Callable[..., Any], leases: Leases, *,
                 interval: float = 0.02, idle_interval: float = 1.0, trim: Callable[[Any], int] | None = None,
                 trim_every_seconds: float = 60.0) -> None:
        self.store = store
        self.broker = broker
        self.submit_op = submit_op
        self.leases = leases
        self.interval = interval
        self.idle_interval = max(interval, idle_interval)
        #: the wait before the next round: ``interval`` while there is work, doubling to ``idle_interval``
        self.delay = interval
        #: rounds run so far (what an idle hub costs the database: docs/scaleout.md)
        self.rounds = 0
        self._trim = trim
        self._trim_every = trim_every_seconds
        self._last_trim = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shopkeeper-feed", daemon=True)
        self.sequenced = 0
        #: hubs whose staging this hub reclaimed
        self.reclaimed: list[str] = []

    def catch_up(self) -> None:
        """The broker's first follower arrives (:meth:`.feed.Broker.following`): bring its ``latest``
        to the store's last sequenced cursor, then follow from there at full pace. What was
        sequenced while nobody followed is not held: a follower asking for it reads the store."""
        with self.store.read() as f:
            self.broker.skip_to(feed.latest_cursor(f))
        self.poke()

    def start(self) -> SharedFeed:
        self.broker.on_first_follower = self.catch_up
        self.leases.held(feed.hub_lease(self.leases.holder))  # alive before anything is staged
        feed.stage_in(self.store.db, self.leases.holder)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following (the writer still runs: a last round sequences what this hub staged)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(10)

    def poke(self) -> None:
        """This hub's writer committed feed entries: run a round now (and at full pace again)."""
        self.delay = self.interval
        self._wake.set()

    def next_delay(self, worked: bool) -> float:
        """The wait after a round: back to ``interval`` if it found work, else twice the last, capped."""
        self.delay = self.interval if worked else min(self.idle_interval, self.delay * 2)
        return self.delay

    def trim_own(self, folders: Any) -> int:
        """The writer's periodic trim in a shared store: this hub's sequenced staging records."""
        return feed.trim_staging(folders, self.leases.holder)

    def run_once(self) -> int:
        """One round: sequence if this hub holds the lease and something is staged, then publish
        what ``changes`` holds past the broker's latest cursor. Returns entries sequenced and
        published (0: an idle round)."""
        self.rounds += 1
        worked = 0
        self.leases.held(feed.hub_lease(self.leases.holder))  # this hub is alive (renewed when half is left)
        if self.leases.held(LEASE):
            with self.store.read() as f:
                todo = feed.pending(f)
            if todo:
                done = len(self.submit_op(lambda f, ch: feed.sequence(f)).result())
                self.sequenced += done
                worked += done
            if time.monotonic() - self._last_trim > self._trim_every:
                self._last_trim = time.monotonic()
                if self._trim is not None:
                    self.submit_op(lambda f, ch: self._trim(f)).result()
                self.reclaim()
        if not self.broker.followers:  # nobody watches on this hub: nothing to publish (Broker.following)
            return worked
        published = 0
        while True:
            with self.store.read() as f:
                batch = feed.read(f, self.broker.latest, 1000)
            self.broker.publish(batch)
            published += len(batch)
            if len(batch) < 1000:
                return worked + published

    def reclaim(self) -> list[str]:
        """Remove the staging of hubs that stopped or died once all they staged is sequenced
        (:func:`.feed.reclaim_staging`); run by the ``feed`` lease holder with its trim."""
        gone = self.submit_op(lambda f, ch: feed.reclaim_staging(f)).result()
        self.reclaimed.extend(gone)
        if gone:
            log.info("reclaimed the change-feed staging of %d stopped hub(s)", len(gone), extra={"hubs": gone})
        return gone

    def _run(self) -> None:
        while not self._stop.is_set():
            worked = True
            try:
                worked = self.run_once() > 0
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("shared change feed round failed; will retry")
            self._wake.wait(self.next_delay(worked))
            self._wake.clear()
        try:  # what this hub staged last is sequenced by whoever holds the lease (this hub, now)
            self.run_once()
        except Exception:
            log.debug("last shared feed round skipped", exc_info=True)
        feed.stage_in(self.store.db, None)
