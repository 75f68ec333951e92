"""On-segment-entry campaigns: one standing run per campaign that follows the change feed.

The standing run (created once, then kept ``running``) reads the feed's ``segment_entered``
entries after its ``feed_cursor``; each customer who entered the campaign's segment is judged
once per run (:func:`shopkeeper.campaigns.plan.decide`) and, when they receive the message, gets
an outbox intent ``cp.<run>.<customer>`` — the cursor, the plan entry and the intent commit in
one writer operation, so a crash re-reads the entries and writes no second intent. The pace
(``rate``, ``backlog``) is :mod:`.pacing`'s, as for a planned run (:mod:`.runs`).
"""

from __future__ import annotations

import time
from typing import Any

from .. import outbox
from ..analysis.models import commit_op
from ..customer import now_us
from ..rules.actions import TemplateValueMissing
from . import pacing
from .model import Campaign
from .plan import decide, in_audience, intent_of
from .runs import RUNNING, WRITTEN, Run, get_run, intent_id, runs


def standing_run(campaign: Campaign, now: int | None = None) -> Any:
    """Writer operation: the standing run of an on-segment-entry campaign (created once, then
    kept ``running``): it reads the change feed from the moment it was created on."""

    def op(folders: Any, changes: Any) -> str:
        from ..engine import feed

        at = now if now is not None else now_us()
        t = runs(folders, create=True)
        rid = f"{campaign.name}-entry"
        r = t.get(rid)
        if r is None:
            r = t[rid] = Run(rid, campaign, at, "schedule", "segment_entry")
            r.snapshot_done, r.status, r.snapshot_at = True, RUNNING, at
            r.feed_cursor = feed.latest_cursor(folders) if "changes" in folders.root else 0
        return rid

    return op


def _entries(run_id: str, limit: int = 5000, budget: dict[str, int] | None = None,
             used: dict[str, int] | None = None, room: int | None = None) -> Any:
    """Writer operation: customers who entered the campaign's segment since the run last looked
    (the change feed's ``segment_entered`` entries after the run's ``feed_cursor``) get their
    decision and, when they receive it, their intent — once per customer and run, whatever the
    number of entries; returns how many were new. Like a batch of a planned run it stops before
    the first recipient whose channel ``budget`` (:mod:`.pacing`) is spent or who would pass the
    ``room`` the run's ``backlog`` leaves: the feed cursor stays before that customer's entry, so
    they are judged again at the next step. ``used`` receives the intents written per channel."""
    spent: dict[str, int] = used if used is not None else {}

    def op(folders: Any, changes: Any) -> int:
        from ..engine import feed

        spent.clear()
        r = get_run(folders, run_id)
        if r.status != RUNNING or "changes" not in folders.root:
            return 0
        campaign = r.campaign_def()
        got = feed.read(folders, getattr(r, "feed_cursor", 0), limit)
        if not got:
            return 0
        at = now_us()
        add: dict[str, int] = {}
        n = 0
        cursor = r.feed_cursor
        for e in got:
            if e.kind != "segment_entered" or campaign.segment not in e.segments or e.customer_id in r.plan:
                cursor = e.cursor
                continue
            c = folders.customer(e.customer_id)
            if c is None or c.id in r.plan or not campaign.active_at(at) or not in_audience(campaign, c, at):
                cursor = e.cursor
                continue
            d = decide(campaign, c, at)
            if not d.code and ((room is not None and sum(spent.values()) >= room)
                               or not pacing.allowed(budget, spent, d.channel)):
                break  # paced: this customer's entry is read again at the next step
            cursor = e.cursor
            n += 1
            r.plan[c.id] = (d.channel, d.code, d.detail[:200], d.deferred)
            if d.code:
                add[d.code] = add.get(d.code, 0) + 1
                continue
            msg = campaign.message(d.channel)
            try:
                template, payload = intent_of(campaign, msg, c, run_id)  # type: ignore[arg-type]
            except TemplateValueMissing:
                add["render_failed"] = add.get("render_failed", 0) + 1
                continue
            outbox.enqueue(folders, c, channel=d.channel, template=template, purpose=campaign.purpose,
                           payload=payload, source=f"campaign:{campaign.name}", intent_id=intent_id(run_id, c.id),
                           at=at, changes=changes)
            add[f"{WRITTEN}:{d.channel}"] = add.get(f"{WRITTEN}:{d.channel}", 0) + 1
            spent[d.channel] = spent.get(d.channel, 0) + 1
        r.feed_cursor = cursor
        r.delivered += n
        if add:
            r.bump(add, at)
        return n

    return op


def follow_entries(store: Any, submit: Any, run_id: str, *, pacers: dict | None = None,
                   clock: Any = time.monotonic, limit: int = 5000) -> int:
    """One step of an on-segment-entry campaign's standing run: the customers who entered its
    segment since the last step get their intents, within the campaign's ``rate`` and ``backlog``
    (:mod:`.pacing`) like a planned run — those over the limit wait for a later step (the runner
    takes one every tick). ``pacers`` keeps the run's token buckets between steps; returns how
    many entries were handled."""
    with store.read() as f:
        campaign = get_run(f, run_id).campaign_def()
        space = pacing.room(f, campaign, run_id) if campaign.backlog else None
    if space is not None and space <= 0:
        return 0  # back-pressure: the adapters are behind
    pacers = pacers if pacers is not None else {}
    pacer = pacers.setdefault(run_id, pacing.Pacer(campaign.rate, clock))
    budget = pacer.budget()
    if budget is not None and max(budget.values()) < 1:
        return 0
    used: dict[str, int] = {}
    n = commit_op(store, submit, _entries(run_id, limit, budget, used, space), "shopkeeper: campaign on entry")
    pacer.spend(used)
    return n


__all__ = ["standing_run", "follow_entries"]
