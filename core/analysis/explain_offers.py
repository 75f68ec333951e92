"""Why ``Decide`` would choose or exclude each offer for one customer: ``shopkeeper offers decide
--explain``, locally on a store file and through the hub (``Rules.ExplainDecide``).

One function builds the answer and one renders it for people, so the text a rule author reads
is the same whether the CLI opened the store or asked a running hub. A dry run: nothing is
recorded (the offers are not counted as shown).
"""

from __future__ import annotations

from typing import Any

from ..customer import Customer
from .offers import Catalogue, decide


def explain_decision(catalogue: Catalogue, customer: Customer, touchpoint: str, placement: str,
                     context: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"customer_id", "touchpoint", "placement", "actions", "offers", "rule_proposals"}``:
    ``offers`` holds one ``{"offer", "outcome", "why", "code"}`` per catalogue offer (chosen,
    excluded with the reason, ranked lower); ``rule_proposals`` what the customer's rules proposed."""
    from ..rules.customer_rules import proposals

    why: list[dict[str, Any]] = []
    actions = decide(catalogue, customer, touchpoint, placement, dict(context or {}), explain=why)
    return {"customer_id": customer.id, "touchpoint": touchpoint, "placement": placement, "actions": actions,
            "offers": why, "rule_proposals": proposals(customer, placement=placement)}


def render_text(x: dict[str, Any]) -> str:
    """The answer of :func:`explain_decision` for people, one offer per line."""
    lines = [f"customer {x['customer_id']}  touchpoint {x['touchpoint']}  placement {x['placement']}"]
    for a in x["actions"] or ():
        lines.append(f"  -> {a['kind']} {a['id']}: {a.get('reason', '')}")
    why, proposed = x["offers"], x["rule_proposals"]
    width = max((len(w["offer"]) for w in why), default=8)
    for w in why:
        lines.append(f"  {w['outcome'].upper().replace('_', ' '):<13} {w['offer']:<{width}}  {w['why']}")
    for p in proposed:
        lines.append(f"  {'PROPOSED':<13} {p['id']:<{width}}  by a rule: {p['reason']}")
    if not why and not proposed:
        lines.append("  the offer catalogue is empty and no rule proposed anything")
    return "\n".join(lines)
