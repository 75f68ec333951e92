"""What a campaign run achieved: the funnel per channel and the uplift against the holdout.

Responses come back as interactions like any other — the email adapter records ``email_sent``,
``email_open``, ``email_click``, ``unsubscribe`` and bounces with the ``campaign`` (from the
intent's payload) and the intent; the SMS adapter records ``sms_delivered``/``sms_undelivered``
naming the intent and a ``STOP`` reply as ``unsubscribe`` on channel ``sms``; orders are
orders. A response is **attributed** to the run when it names the run's intent or campaign, or
(STOP, orders) when it is the recipient's, on the message's channel (STOP) or any (orders), within
``window_days`` after the intent was written. A STOP naming nothing answers the *latest* message
sent to the customer on that channel before it: it counts for this run only when that message was
this run's (a later campaign's or rule's text takes it). Each recipient counts once per stage.
A delivery report saying a text did not arrive ends the intent ``failed`` (``shopkeeper.outbox``):
it counts under ``failed`` and ``bounced``.

The **uplift** compares conversion (an order within the window after the run's snapshot)
of the customers who were sent the message (intention to treat: every intent written, whether
or not it was delivered) with the holdout, drawn from the same reachable customers
(:mod:`.plan`). The difference and its 95% interval come from
:func:`shopkeeper.analysis.uplift.difference` — the same computation as the next-best-action
uplift — and the rows have that report's columns, so its chart draws them.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .. import outbox
from ..analysis import uplift
from .runs import get_run, intent_id

US_PER_DAY = 86_400 * 1_000_000
STAGES = ("intents", "sent", "delivered", "opened", "clicked", "converted", "unsubscribed", "stop", "bounced",
          "suppressed", "failed")


def _stages(item: Any, its: list[Any], campaign: str, iid: str, window_end: int) -> set[str]:
    got = {"intents"}
    st = item.status if item is not None else ""
    if st == outbox.SENT:
        got.add("sent")
    elif st == outbox.SUPPRESSED:
        got.add("suppressed")
    elif st == outbox.FAILED:
        got.add("failed")
    channel = item.channel if item is not None else ""
    bounced = False
    last: str | None = None  # the intent of the latest message sent to the customer on the channel
    for it in its:
        if it.ts > window_end:
            break
        d = it.data
        mine = d.get("intent") == iid or d.get("campaign") == campaign
        t = it.type
        if t in ("email_sent", "message_sent") and it.channel == channel:
            last = d.get("intent") or last
        if t in ("email_sent", "message_sent") and mine:
            got.add("sent")
        elif t == "sms_delivered" and mine:
            got.add("delivered")
        elif t in ("email_bounce", "sms_undelivered") and mine:
            bounced = True
        elif t == "email_open" and mine:
            got.add("opened")
        elif t == "email_click" and mine:
            got.update(("opened", "clicked"))
        elif t == "unsubscribe" and (mine or (it.channel == channel
                                              and (last == iid or (last is None and st == outbox.SENT)))):
            got.add("stop" if it.channel == "sms" else "unsubscribed")
        elif t == "order":
            got.add("converted")
    if bounced or (st == outbox.FAILED and "bounce" in (item.error or "")):
        got.add("bounced")
        got.discard("delivered")
    elif "sent" in got and channel != "sms":
        got.add("delivered")  # accepted by the server and not bounced (SMS: its delivery report says)
    return got


def run_report(folders: Any, run_id: str, *, window_days: float = 14.0) -> dict[str, Any]:
    """The funnel per channel and the uplift against the holdout for one run (read-only)."""
    r = get_run(folders, run_id)
    window = int(window_days * US_PER_DAY)
    funnel: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STAGES, 0))
    treated: list[float] = []
    control: list[float] = []
    for cid, (channel, code, _detail, _deferred) in r.plan.items(max=r.cursor) if r.cursor is not None else ():
        c = folders.customer(cid)
        if c is None:
            continue
        if code == "holdout":
            converted = any(True for _ in c.interactions(since=r.snapshot_at + 1, until=r.snapshot_at + window,
                                                          type="order"))
            control.append(1.0 if converted else 0.0)
            continue
        if code:
            continue
        iid = intent_id(run_id, cid)
        item = outbox.get(c, iid)
        if item is None:
            continue
        since = item.created_at
        its = list(c.interactions(since=since, until=since + window))
        got = _stages(item, its, r.campaign, iid, since + window)
        row = funnel[channel]
        for s in got:
            row[s] += 1
        treated.append(1.0 if "converted" in got else 0.0)
    t, k = np.array(treated), np.array(control)
    diff, lo, hi = uplift.difference(t, k)

    def rate(a: np.ndarray) -> float | None:
        return round(float(a.mean()), 4) if len(a) else None

    def rnd(v: float) -> float | None:
        return None if v != v else round(v, 4)

    row = (f"run {run_id}", len(t), len(k), rate(t), rate(k), rnd(diff), rnd(lo), rnd(hi),
           None, None, None, None, None)
    return {"run": r.as_dict(), "window_days": window_days, "funnel": {ch: dict(v) for ch, v in funnel.items()},
            "uplift": dict(zip(uplift.COLUMNS, row, strict=True))}


def render(rep: dict[str, Any]) -> str:
    run = rep["run"]
    lines = [f"campaign {run['campaign']} run {run['id']} ({run['status']}): {run['delivered']:,} planned customers "
             f"handled; responses within {rep['window_days']:g} days", ""]
    stages = [s for s in STAGES if any(v.get(s) for v in rep["funnel"].values())] or ["intents"]
    lines.append(f"{'channel':<10}" + "".join(f"{s:>13}" for s in stages))
    for ch, v in sorted(rep["funnel"].items()):
        n = v["intents"] or 1
        lines.append(f"{ch:<10}" + "".join(f"{v[s]:>8,} {v[s] / n:>4.0%}" if s != "intents" else f"{v[s]:>13,}"
                                           for s in stages))
    u = rep["uplift"]
    lines.append("")
    if u["difference"] is None:
        lines.append(f"uplift: not measurable (sent {u['treated']:,}, holdout {u['control']:,}: "
                     "each side needs customers)")
    else:
        lines.append(f"uplift (conversion, sent vs holdout): {u['conversion_t']:.2%} of {u['treated']:,} vs "
                     f"{u['conversion_c']:.2%} of {u['control']:,} = {u['difference']:+.2%} "
                     f"(95% interval {u['ci_low']:+.2%} to {u['ci_high']:+.2%})")
    return "\n".join(lines)


def chart(rep: dict[str, Any], path: str | Path) -> None:
    """The uplift with its interval and both sample sizes: the uplift report's own chart."""
    u = rep["uplift"]
    uplift.chart([tuple(u[c] for c in uplift.COLUMNS)], path, rep["window_days"])


__all__ = ["run_report", "render", "chart", "STAGES"]
