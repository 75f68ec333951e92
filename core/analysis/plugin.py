"""The built-in analysis plugin: registered through the ``shopkeeper`` entry point like any other.

* ``shopkeeper_processors`` — :class:`AnalysisProcessor`, run inside the transaction of every
  applied event: learns from outcomes, re-scores a customer on each order, updates segment
  membership incrementally (entries/exits are reported in the event's ``outputs``);
* ``shopkeeper_decide`` — next best action from the offer catalogue (:mod:`.offers`);
* ``shopkeeper_startup``/``shopkeeper_shutdown`` — the segment scheduler thread (changed
  definitions and time-based segments, every ``SHOPKEEPER_SEGMENT_TICK_SECONDS``, default 3600),
  whose batches the hub's writer commits and publishes; and the hot reload of segment and offer
  files (polled every ``SHOPKEEPER_ANALYSIS_POLL_SECONDS``, default 1);
* ``shopkeeper_register_commands`` — ``models``, ``segments``, ``offers``, ``report``.

Definitions are read from ``<rules dir>/segments`` and ``<rules dir>/offers``; the rules dir is the
hub config's ``rules_dir`` if it has one, else ``$SHOPKEEPER_RULES_DIR``, else ``./rules``. They,
the scheduler and the reload watcher are per hub (:func:`state_for`, in the hub's
``plugin_state``): two hubs in one process keep their own.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from .. import contact, offerlog
from ..context import plugin_state
from ..customer import Interaction, now_us
from ..outbox import BOOKKEEPING_TYPES
from ..plugins import hookimpl
from .offers import (
    Catalogue,
    decide_explained,
    first_report,
    learn_segment,
    load_catalogue,
    remember_outcome,
)
from .propensity import ALL, OUTCOME_OF_EVENT, PRIOR_STRENGTH, counts, record
from .segments import SegmentSet, feed_changes, load_segments, tick
from .state import bump, folder

log = logging.getLogger(__name__)


class AnalysisState:
    """Segments and offers in force in one hub (loaded on first use); each hub keeps its own
    (:func:`state_for`), an offline tool makes one. With ``installs_policy`` the catalogue's
    contact policy is put in force when loaded (a hub's or a tool's own state, not a test's copy)."""

    def __init__(self, rules_dir: str | Path | None = None, *, installs_policy: bool = False) -> None:
        self.rules_dir = Path(rules_dir or os.environ.get("SHOPKEEPER_RULES_DIR", "rules"))
        self.installs_policy = installs_policy
        self._segments: SegmentSet | None = None
        self._catalogue: Catalogue | None = None
        self.clock = now_us  # tests replace it

    @property
    def segments(self) -> SegmentSet:
        if self._segments is None:
            self._segments = load_segments(self.rules_dir / "segments")
        return self._segments

    @segments.setter
    def segments(self, value: SegmentSet) -> None:
        self._segments = value

    @property
    def catalogue(self) -> Catalogue:
        if self._catalogue is None:
            self.catalogue = load_catalogue(self.rules_dir / "offers")
        return self._catalogue  # type: ignore[return-value]

    @catalogue.setter
    def catalogue(self, value: Catalogue) -> None:
        self._catalogue = value
        if self.installs_policy:
            contact.configure(value.policy)

    def reload(self) -> None:
        """Re-read the files; the old definitions stay in force if the new ones are invalid."""
        fp = self.fingerprint()
        segs = load_segments(self.rules_dir / "segments")
        cat = load_catalogue(self.rules_dir / "offers")
        self._segments = segs
        self.catalogue = cat  # installs its contact policy too
        self._fingerprint = fp
        for note in [*segs.warnings, *cat.warnings]:
            log.warning("%s", note)  # old spellings: the hub's log says where, as `segments check` does

    _fingerprint: Any = None

    def fingerprint(self) -> Any:
        """Names, sizes and times of the segment and offer files (a change means: reload)."""
        out = []
        for sub in ("segments", "offers"):
            d = self.rules_dir / sub
            try:
                out += [(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(d.glob("*.y*ml"))]
            except OSError:
                continue
        return tuple(out)

    def reload_if_changed(self) -> bool:
        """Hot reload, like the rule files: True if new segment/offer files were put in force. A
        broken file is logged and the definitions in force stay (fixed files are picked up later)."""
        fp = self.fingerprint()
        if fp == self._fingerprint:
            return False
        try:
            self.reload()
        except Exception as exc:  # noqa: BLE001 - ConditionError, YAML errors: keep what works
            self._fingerprint = fp  # do not re-report the same broken files every poll
            log.error("segment/offer files not reloaded, the previous definitions stay in force: %s", exc)
            return False
        log.info("segment and offer files reloaded from %s", self.rules_dir)
        return True


#: key of this plugin's state in a hub's ``plugin_state`` (shopkeeper.context)
STATE_KEY = "shopkeeper.analysis.state"
SCHEDULER_KEY = "shopkeeper.analysis.scheduler"


def state_for(hub: Any) -> AnalysisState:
    """This hub's segments and offers, made on first use from its config's ``rules_dir``. Kept in
    the hub's plugin state, so two hubs in one process never share definitions or reloads."""
    def make() -> AnalysisState:
        rules_dir = getattr(getattr(hub, "config", None), "rules_dir", None)
        return AnalysisState(rules_dir, installs_policy=True)

    return plugin_state(hub).setdefault(STATE_KEY, make)


class AnalysisProcessor:
    """``processor(folders, applied)``: closed-loop learning, cheap re-scoring, segment updates.

    ``event_types`` (see ``shopkeeper.engine.ingest.Processor``): every customer interaction, and of
    the outbox bookkeeping (claims, delivery reports) only the types a segment names itself
    (``count('email_sent', days=30)``). Bookkeeping is not the customer's activity: a segment over
    "any event" (``hard.interactions``, ``consent()``…) sees it at the customer's next event."""

    def __init__(self, state: AnalysisState) -> None:
        self.state = state
        #: Decide's offer records go to the customer's offer log (see :meth:`shown_fast`)
        self.fast_paths = {"offer_shown": self.shown_fast}

    def shown_fast(self, folders: Any, resolver: Any, ev: Any) -> tuple[str, str, list[Any]] | None:
        """The writer's fast path for ``Decide``'s offer records (``ShownEvent``: they carry the
        customer Decide resolved): appended to the customer's :class:`~shopkeeper.offerlog.OfferLog`
        — one small record written, not the customer's (benchmarks §69) — and counted in the
        outcomes as the ordinary loop would, with its change-feed entry. The customer's record takes
        it at its next ordinary write (``shopkeeper.offerlog.fold``). Returns None, having changed
        nothing, for anything else — a touch point's own ``offer_shown``, a segment that names
        ``offer_shown`` (it must see the record now), a customer with rules of their own or a
        waiting timer (the rules stand aside only when no central rule reacts to it), a customer
        the check does not confirm (erased, merged: the ordinary loop resolves it in full), a full
        log (the ordinary loop folds it)."""
        rid = getattr(ev, "resolved_id", None)
        state = self.state
        if not rid or _reads_itself(state.segments, ev.type):
            return None
        known = resolver.resolve_known(folders, rid, ev.identities)
        if known is None:
            return None
        c = known.customer
        if c.rules or c.rule_state.get("timers"):  # their own rules or a waiting timer may react to it
            return None
        key, key_ts = ev.idempotency_key, 0 if ev.stamped else ev.ts
        if key and c.has_key(key, key_ts):
            return "duplicate", c.id, []
        if len(offerlog.unfolded(c)) >= offerlog.FOLD_AT:
            return None
        data = ev.data
        offer, decision = str(data.get("offer")), data.get("decision_id")
        counted = not decision or f"{decision}:{offer}".replace(" ", "_") not in offerlog.decision_keys(c)
        if counted:
            outcomes = folder(folders, "outcomes")
            if outcomes is not None:
                record(outcomes, offer, learn_segment(c, state.catalogue.policy), "shown")
        if offerlog.ROOT not in folders.root:  # a store without the logs (offer-logs not run)
            return None
        it = offerlog.append(folders, c, Interaction(ev.ts, ev.ts, ev.type, ev.channel, ev.touchpoint, data, key,
                                                     tuple(known.pairs), c.id), counted, state.clock(), key_ts)
        assert it is not None
        folders.count("interactions", 1)
        if "changes" not in folders.root:  # a store without the hub's feed
            return "applied", c.id, []
        from ..engine import feed  # (as the segment entries: the feed's one writer of entries)

        return "applied", c.id, [feed.append(folders, "interaction", c.id, event_type=ev.type, channel=ev.channel,
                                             at=it.ts, interaction_key=it.key,
                                             segments=c.segments.keys() if c.segments else ())]

    @property
    def event_types(self) -> AnalysisProcessor:
        return self

    def __contains__(self, event_type: str) -> bool:
        return event_type not in BOOKKEEPING_TYPES or bool(self.state.segments.naming(event_type))

    def __call__(self, folders: Any, applied: Any) -> None:
        state = self.state
        ev = applied.event
        c = applied.customer
        etype = ev.type
        now = state.clock()
        outcome = OUTCOME_OF_EVENT.get(etype)
        if outcome is not None:
            outcomes = folder(folders, "outcomes")
            data = ev.data
            if etype.startswith("offer_"):
                # Decide's records waiting in the customer's log join the record first: this answer
                # (or report) comes after them (shopkeeper.offerlog)
                offerlog.fold(c)
                offer = str(data.get("offer"))
                decision = data.get("decision_id")
                if etype == "offer_shown" and decision and not first_report(c, f"{decision}:{offer}", now):
                    pass  # the hub recorded this decision and the touch point reported it too: count once
                else:
                    seg = learn_segment(c, state.catalogue.policy)
                    if outcomes is not None:
                        record(outcomes, offer, seg, outcome)
                    remember_outcome(c, offer, outcome, applied.interaction.ts, ev.channel,
                                     str(data.get("placement", "")), f"event:{etype}")
            else:
                campaign = f"email:{data.get('campaign') or '-'}"
                if outcomes is not None:
                    record(outcomes, campaign, ALL, outcome)
                    record(outcomes, "email:*", ALL, outcome)
                    n, k, _ = counts(outcomes, "email:*", ALL)
                    mu = (1.0 + k) / (2.0 + n)
                else:
                    mu = 0.5
                tc = c.type_counts
                opens, clicks = tc.get("email_open", 0), tc.get("email_click", 0)
                p = (clicks + PRIOR_STRENGTH * mu) / (max(opens, clicks) + PRIOR_STRENGTH)
                c.set_score("propensity.email_click", p, "beta-bernoulli:email", now)
        elif etype == "order":
            from .models import current_models, score_customer  # numpy: not for every command's start-up

            clv, rfm = current_models(folders)
            if clv is not None or rfm is not None:
                score_customer(c, clv, rfm, now)
        segs = state.segments
        if segs.defs:
            # the sizes are counted here, once there are changes: looking their folder up for every
            # event cost ~9 µs per event while most events change no segment (docs/benchmarks.md §36)
            changes = segs.update(c, etype, now, bookkeeping=etype in BOOKKEEPING_TYPES)
            if changes:
                sizes = folder(folders, "segment_sizes")
                if sizes is not None:
                    for name, change in changes:
                        bump(sizes, name, 1 if change == "enter" else -1)
                outputs = applied.result.outputs
                for name, change in changes:
                    outputs.append({"kind": "segment", "segment": name, "change": change, "customer_id": c.id})
                # on the change feed too (published after the commit): Watch and rules can react
                outputs.extend(feed_changes(folders, c.id, changes, event_type=etype, channel=ev.channel,
                                            at=applied.interaction.ts))


def _reads_itself(segments: SegmentSet, event_type: str) -> bool:
    """Whether a segment reads what an event of ``event_type`` changes itself — its counts or
    windows (``count('offer_shown', days=7)``, a history spec) — not only through a score (score
    conditions list the offer outcomes among their event types because a processor may refit a
    score on them; the fast path runs no processor) nor through the facts any event changes
    (``hard.interactions``: seen at the customer's next event, as for outbox bookkeeping). Kept
    with the segment set's own cache, so a reload asks again."""
    from ..conditions.analysis import Call, Field, call_deps, field_deps, walk

    key = "reads:" + event_type
    got = segments._cache.get(key)
    if got is None:
        got = False
        for d in segments.naming(event_type):
            tree = getattr(d.condition, "tree", None)
            if tree is None:
                got = True
                break
            for n in walk(tree):
                if isinstance(n, Field) and (n.key.startswith("h__") or (
                        not n.key.startswith("s__") and event_type in field_deps(n.key).events)):
                    got = True
                elif isinstance(n, Call) and event_type in call_deps(n).events:
                    got = True
        segments._cache[key] = got
    return got


@hookimpl
def shopkeeper_evolve_steps() -> list[Any]:
    """The analysis folders and score tables (``shopkeeper.analysis.state.EVOLVE_STEPS``)."""
    from .state import EVOLVE_STEPS

    return list(EVOLVE_STEPS)


@hookimpl
def shopkeeper_processors(hub: Any) -> list[Any]:
    state = state_for(hub)
    state.reload()
    return [AnalysisProcessor(state)]


@hookimpl
def shopkeeper_decide(hub: Any, customer: Any, touchpoint: str, placement: str,
                      context: dict[str, Any]) -> list[dict] | None:
    cat = state_for(hub).catalogue
    if not cat.offers:
        return None
    actions, why = decide_explained(cat, customer, touchpoint, placement, context)
    if not actions and why.code:  # nothing to offer: tell the hub why (a marker, never returned)
        return [{"kind": "none", "id": "", "score": 0.0, "reason_code": why.code, "reason": why.detail}]
    return actions


@hookimpl
def shopkeeper_startup(hub: Any) -> None:
    interval = float(os.environ.get("SHOPKEEPER_SEGMENT_TICK_SECONDS", "3600"))
    store = getattr(hub, "store", None)
    writer = getattr(hub, "writer", None)
    if store is None or writer is None or interval <= 0:
        return  # not a hub (a tool calling the hook), or switched off
    stop = threading.Event()
    state = state_for(hub)
    scheduler = plugin_state(hub).setdefault(SCHEDULER_KEY, dict)
    from ..engine.leases import holds

    may_run = holds(hub, "segment-scheduler")  # several hubs over one store: one runs it (docs/scaleout.md)

    def run() -> None:
        # the first run waits a little: a hub that starts and stops at once (tests, restarts) does no batch work
        if stop.wait(min(interval, 60.0)):
            return
        while True:
            try:
                if state.segments.defs and may_run():
                    # this thread decides when; the hub's one writer commits and publishes each batch
                    report = tick(store, state.segments, submit=writer.submit_op, stop=stop)
                    log.info("segment scheduler: %s", report)
            except Exception:
                log.exception("segment scheduler run failed; will retry")
            if stop.wait(interval):
                return

    t = threading.Thread(target=run, name="shopkeeper-segments", daemon=True)
    scheduler.update(stop=stop, thread=t)
    t.start()

    poll = float(os.environ.get("SHOPKEEPER_ANALYSIS_POLL_SECONDS", "1.0"))

    def watch() -> None:
        """Hot reload of segment and offer files; a changed segment definition is re-evaluated for
        everyone at once (through the writer), not at the scheduler's next hourly run."""
        while not stop.wait(poll):
            try:
                if state.reload_if_changed() and state.segments.defs and may_run():
                    report = tick(store, state.segments, submit=writer.submit_op, stop=stop)
                    log.info("segments after reload: %s", report)
            except Exception:
                log.exception("segment/offer reload failed; will retry")

    if poll > 0:
        w = threading.Thread(target=watch, name="shopkeeper-analysis-watch", daemon=True)
        scheduler["watcher"] = w
        w.start()


@hookimpl
def shopkeeper_shutdown(hub: Any) -> None:
    scheduler = plugin_state(hub).pop(SCHEDULER_KEY) or {}
    stop = scheduler.pop("stop", None)
    if stop is not None:
        stop.set()
        scheduler.pop("thread").join(5)
        w = scheduler.pop("watcher", None)
        if w is not None:
            w.join(5)


@hookimpl
def shopkeeper_register_commands(cli: Any) -> None:
    from .cli import register

    register(cli)
