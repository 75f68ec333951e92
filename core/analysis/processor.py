"""The analysis plugin's state and processor: the segments and offers in force in a hub, and
:class:`AnalysisProcessor`, run inside the transaction of every applied event.

Why apart from ``shopkeeper.analysis.plugin``: every ``shopkeeper`` command imports the plugin module
to find its commands and evolve steps, and none of them needs what this module imports (the contact
policy and its time zones, the outbox, the offer and segment code) (issue 15). The plugin's hooks
import it when a hub asks for its processors, decisions or start-up; ``shopkeeper.analysis.plugin``
still answers the old names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .. import contact, offerlog
from ..context import plugin_state
from ..customer import Interaction, now_us
from ..outbox import BOOKKEEPING_TYPES
from .offers import (
    Catalogue,
    first_report,
    learn_segment,
    load_catalogue,
    remember_outcome,
)
from .propensity import ALL, OUTCOME_OF_EVENT, PRIOR_STRENGTH, counts, record
from .segments import SegmentSet, feed_changes, load_segments, rules_root
from .state import bump, folder

log = logging.getLogger("shopkeeper.analysis.plugin")


class AnalysisState:
    """Segments and offers in force in one hub (loaded on first use); each hub keeps its own
    (:func:`state_for`), an offline tool makes one. With ``installs_policy`` the catalogue's
    contact policy is put in force when loaded (a hub's or a tool's own state, not a test's copy)."""

    def __init__(self, rules_dir: str | Path | None = None, *, installs_policy: bool = False) -> None:
        self.rules_dir = rules_root(rules_dir)
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
