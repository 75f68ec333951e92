"""The 360° view: everything a touch point needs to know about one customer, as plain data.

One function builds it for every consumer (CLI ``show``, the hub's ``GetCustomer``, the
agent screen, ``export``) so that every channel sees the same customer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from . import offerlog
from .customer import Customer, Interaction


def iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).isoformat().replace("+00:00", "Z")


def interaction_view(it: Interaction) -> dict[str, Any]:
    return {
        "key": it.key,
        "at": iso(it.ts),
        "type": it.type,
        "channel": it.channel,
        "touchpoint": it.touchpoint,
        "data": dict(it.data),
        "idempotency_key": it.idempotency_key,
    }


def customer_view(c: Customer, recent: int = 10) -> dict[str, Any]:
    """The view of ``c`` as its record stands, with ``Decide``'s offer records not folded into it
    yet counted as the fold will (``shopkeeper.offerlog``): nothing in ``c`` changes, so a read
    connection keeps its copy of the record."""
    hard, counts = offerlog.hard_facts(c)
    for k in ("first_seen", "last_seen", "last_order_at"):
        hard[k] = iso(hard.get(k))
    return {
        "id": c.id,
        "status": c.status,
        "merged_into": c.merged_into,
        "created_at": iso(c.created_at),
        "identities": [{"namespace": ns, "value": v, "source": link.source, "added_at": iso(link.at)}
                       for (ns, v), link in c.identities.items()],
        "traits": dict(c.traits),
        "hard_facts": hard,
        "interaction_counts": dict(sorted(counts.items())),
        "soft_facts": {k: {"value": f.value, "source": f.source, "at": iso(f.at)}
                       for k, f in sorted(offerlog.soft_facts(c).items())},
        "consents": [{"channel": ch, "purpose": pu, "granted": cs.granted, "source": cs.source, "at": iso(cs.at)}
                     for (ch, pu), cs in sorted(c.consents.items())],
        "scores": {k: {"value": f.value, "source": f.source, "at": iso(f.at)} for k, f in sorted(c.scores.items())},
        "segments": {k: iso(v) for k, v in sorted(c.segments.items())},
        "rules": sorted(c.rules),
        "recent_interactions": [interaction_view(it) for it in c.recent(recent)] if recent else [],
    }


def render_text(view: dict[str, Any]) -> str:
    """A terminal rendering of :func:`customer_view` for ``shopkeeper show``."""
    lines = [f"Customer {view['id']}  ({view['status']}, since {view['created_at']})"]
    if view.get("merged_into"):
        lines.append(f"  merged into {view['merged_into']}")
    lines.append("  identities:")
    lines += [f"    {i['namespace']:<10} {i['value']}   (from {i['source']})" for i in view["identities"]] or ["    -"]
    if view["traits"]:
        lines.append("  traits:      " + ", ".join(f"{k}={v}" for k, v in view["traits"].items()))
    h = view["hard_facts"]
    lines.append(f"  hard facts:  {h['orders']} orders, spend {h['total_spend']:.2f}, "
                 f"{h['interactions']} interactions, last seen {h['last_seen']} on {h['last_channel']}")
    if view["soft_facts"]:
        soft = view["soft_facts"].items()
        lines.append("  soft facts:  " + ", ".join(f"{k}={v['value']} ({v['source']})" for k, v in soft))
    if view["consents"]:
        lines.append("  consents:    " + ", ".join(
            f"{c['channel']}/{c['purpose']}={'yes' if c['granted'] else 'NO'}" for c in view["consents"]))
    if view["scores"]:
        lines.append("  scores:      " + ", ".join(f"{k}={v['value']:.3g}" for k, v in view["scores"].items()))
    if view["segments"]:
        lines.append("  segments:    " + ", ".join(view["segments"]))
    lines.append("  recent interactions:")
    for it in view["recent_interactions"]:
        detail = ", ".join(f"{k}={v}" for k, v in it["data"].items())
        lines.append(f"    {it['at']}  {it['channel']:<6} {it['type']:<14} {detail}")
    if not view["recent_interactions"]:
        lines.append("    -")
    return "\n".join(lines)
