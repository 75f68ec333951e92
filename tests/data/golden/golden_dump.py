"""A JSON dump of every customer in a store, through ``Customer``'s reading API only.

Shared by ``make_wave1.py`` (run with the wave-1 code, it writes ``wave1.json``) and
``tests/test_golden_store.py`` (run with the current code on an evolved copy): both sides
must agree on what a customer *is*, whatever the record format underneath.
"""

from __future__ import annotations

from typing import Any


def jsonable(value: Any) -> Any:
    """Plain JSON for facts, consents, rule state: named tuples as dicts, tuple keys joined, BTrees as items."""
    if hasattr(value, "_asdict"):
        return {k: jsonable(v) for k, v in value._asdict().items()}
    if hasattr(value, "items") and callable(value.items):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = [jsonable(v) for v in value]
        return sorted(seq, key=repr) if isinstance(value, (set, frozenset)) else seq
    if isinstance(value, float):
        return round(value, 6)
    return value


def _key(k: Any) -> str:
    return "|".join(map(str, k)) if isinstance(k, tuple) else str(k)


def dump_customer(c: Any) -> dict[str, Any]:
    out = {
        "id": c.id,
        "status": c.status,
        "merged_into": c.merged_into,
        "merged_from": sorted(c.merged_from),
        "created_at": c.created_at,
        "forgotten": jsonable(c.forgotten),
        "identities": {_key(p): jsonable(c.identities[p]) for p in c.identity_pairs()},
        "history": [it.as_dict() for it in c.interactions()],
        "hard": jsonable(c.hard),
        "type_counts": jsonable(c.type_counts),
        "daily": jsonable(c.daily) if c.daily is not None else None,
        "last_at": jsonable(c.last_at),
        "soft": jsonable(c.soft),
        "traits": jsonable(c.traits),
        "consents": jsonable(c.consents),
        "scores": jsonable(c.scores),
        "segments": jsonable(c.segments),
        "rules": jsonable(c.rules),
        "rule_state": jsonable(c.rule_state),
        "outbox": _wave1_outbox(jsonable(c.outbox)) if c.outbox is not None else None,
    }
    return out


#: Outbox fields added after wave 1, with the value an intent written before them reads as.
ADDED_OUTBOX_FIELDS = {"not_before": 0, "expires_at": 0, "claimed_at": 0, "claim_key": "", "report_key": "",
                       "dlr_key": ""}


def _wave1_outbox(items: dict[str, Any]) -> dict[str, Any]:
    """A wave-1 intent reads back with the later fields at their defaults: leave those out, so
    the comparison is with what wave 1 wrote (a non-default value still shows, and fails)."""
    return {k: {f: v for f, v in item.items() if ADDED_OUTBOX_FIELDS.get(f, object()) != v}
            for k, item in items.items()}


def dump_store(folders: Any) -> dict[str, Any]:
    root = folders.root
    return {
        "customers": {cid: dump_customer(c) for cid, c in folders.customers.items()},
        "identity_index": {_key(p): cid for p, cid in folders.identities.items()},
        "merges": {mid: m.as_dict() for mid, m in folders.merges.items()},
        "tombstones": len(list(folders.tombstones.keys())),
        "rule_timers": [[_key(k), jsonable(v)] for k, v in root["rule_timers"].items()],
        "outbox_index": {_key(k): v for k, v in root["outbox"].items()} if "outbox" in root else {},
        "counters": {name: folders.counter(name) for name in ("customers", "interactions", "duplicates",
                                                              "forgotten")},
    }


def _hex(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else jsonable(value)


def dump_records(folders: Any) -> dict[str, Any]:
    """The records beside the customers (stores from e133eda on, ``make_gen6_e133eda.py``): merge
    proposals, leases, one hub's staged feed entries, campaign runs, the audience index, the order
    and score tables and the analysis counters — every persistent class but ``Customer`` and
    ``MergeRecord`` (in :func:`dump_store`). Packed values are compared as hex bytes."""
    root = folders.root
    audience = root["audience"]
    return {
        "proposals": {pid: {"survivor": p.survivor_id, "other": p.other_id, "reason": p.reason, "at": p.at,
                            "decided": p.decided} for pid, p in folders.proposals.items()},
        "leases": {name: [lease.holder, lease.expires] for name, lease in root["leases"].items()},
        "staging": {hub: {str(seq): jsonable(s.entries) for seq, s in tree.items()}
                    for hub, tree in root["feed_staging"].items()},
        "staging_heads": {hub: head.last for hub, head in root["feed_heads"].items()},
        "runs": {rid: {**r.as_dict(), "plan": {cid: jsonable(v) for cid, v in r.plan.items()}}
                 for rid, r in root["campaign_runs"].items()},
        "cards": {cid: _hex(card) for cid, card in audience["cards"].items()},
        "order_facts": {cid: _hex(v) for cid, v in audience["order_facts"].items()},
        "segment_members": {name: sorted(members) for name, members in audience["segments"].items()},
        "orders": {cid: _hex(v) for cid, v in root["orders"].items()},
        "scores": {kind: {"names": list(t.names), "sources": list(t.sources),
                          "rows": {cid: _hex(v) for cid, v in t.rows.items()}}
                   for kind, t in root["scores"].items() if hasattr(t, "rows")},
        "counters": {kind: {_key(k): n for k, n in c.items()} for kind, c in root["analysis"].items()
                     if type(c).__name__ == "Counters"},
    }
