"""What the console shows, as plain data: one function per page or JSON endpoint.

Every read goes through the hub's bounded reads (``hub.read()``), like a gRPC call; the only
write (unmerge) is an operation of the hub's one writer. The functions call the same domain
functions the gRPC servicers call (``engine.operations``, ``rules.customer_rules``,
``rules.explain``, ``analysis``), so the console shows what every other channel sees.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from shopkeeper import offerlog, outbox
from shopkeeper.engine import feed
from shopkeeper.engine import operations as domain
from shopkeeper.view import customer_view, interaction_view, iso

#: intents shown on the 360° page (newest first); the outbox page counts all of them
MAX_INTENTS_SHOWN = 100


class NotFound(LookupError):
    pass


class BadQuery(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


# -- search -------------------------------------------------------------------------------


def _summary(c: Any) -> dict[str, Any]:
    pairs = c.identity_pairs()
    t = c.traits or {}
    name = t.get("name") or " ".join(str(t[k]) for k in ("first_name", "last_name") if t.get(k))
    return {"id": c.id, "name": str(name) if name else "", "identities": [{"namespace": ns, "value": v}
                                                                         for ns, v in pairs[:6]],
            "orders": int(c.hard.get("orders", 0) or 0), "segments": sorted(c.segments)[:8]}


def _fact_query(q: str) -> tuple[str, str, Any] | None:
    """``trait.city=Paris``, ``customer.orders>=3``, ``score.clv.value>100`` (or an old spelling)
    -> (path, op, value)."""
    for sym, op in ((">=", "GE"), ("<=", "LE"), ("!=", "NE"), ("=", "EQ"), (">", "GT"), ("<", "LT")):
        if sym in q:
            path, _, raw = q.partition(sym)
            path, raw = path.strip(), raw.strip()
            if not path:
                return None
            value: Any = raw
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    continue
            return path, op, value
    return None


def search(hub: Any, q: str, limit: int = 25) -> dict[str, Any]:
    """Customers matching ``q``: a customer id, any identity (exact: ``email``, ``phone``… or
    ``namespace:value``), an identity prefix, ``segment:NAME``, or a fact test (``traits.city=Paris``)."""
    q = q.strip()
    if not q:
        return {"query": q, "how": "", "customers": []}
    if len(q) > 256:
        raise BadQuery("q", "at most 256 characters")
    cfg = hub.identity_config
    with hub.read() as f:
        c = f.customers.get(q)
        if c is not None:
            c = f.customer(q)
            if c is not None and c.status == "active":
                return {"query": q, "how": "customer id", "customers": [_summary(c)]}
        ns_given, sep, rest = q.partition(":")
        if sep and ns_given == "segment":
            found, _ = domain.find_customers(f, identity_prefix=None, segment=rest.strip(), facts=[],
                                             page_size=limit, page_token="", config=cfg)
            return {"query": q, "how": f"segment {rest.strip()}", "customers": [_summary(x) for x in found]}
        fact = _fact_query(q)
        if fact is not None:
            try:
                found, _ = domain.find_customers(f, identity_prefix=None, segment="", facts=[fact],
                                                 page_size=limit, page_token="", config=cfg)
            except domain.BadArgument as exc:
                raise BadQuery("q", exc.reason) from None
            return {"query": q, "how": f"fact {fact[0]} {fact[1]} {fact[2]!r}",
                    "customers": [_summary(x) for x in found]}
        namespaces = [ns_given] if sep and ns_given in cfg.namespaces else list(cfg.namespaces)
        value = rest if sep and ns_given in cfg.namespaces else q
        hits: dict[str, Any] = {}
        for ns in namespaces:  # exact match in each namespace: one BTree look-up each
            try:
                c = domain.resolve_ref(f, None, (ns, value), cfg)
            except (domain.NotFound, domain.BadArgument):
                continue
            hits.setdefault(c.id, c)
        if hits:
            return {"query": q, "how": "identity", "customers": [_summary(c) for c in hits.values()][:limit]}
        for ns in namespaces:  # then a prefix of the value, in every namespace
            try:
                found, _ = domain.find_customers(f, identity_prefix=(ns, value), segment="", facts=[],
                                                 page_size=limit, page_token="", config=cfg, scan_limit=2000)
            except domain.BadArgument:
                continue
            for c in found:
                hits.setdefault(c.id, c)
            if len(hits) >= limit:
                break
        return {"query": q, "how": "identity prefix", "customers": [_summary(c) for c in hits.values()][:limit]}


# -- one customer -------------------------------------------------------------------------


def _customer(f: Any, hub: Any, cid: str) -> Any:
    try:
        return domain.resolve_ref(f, cid, None, hub.identity_config)
    except domain.NotFound as exc:
        raise NotFound(str(exc)) from None


def _timeline(c: Any, page_size: int, page_token: str, type_: str = "") -> tuple[list[dict[str, Any]], str]:
    try:
        page, token = domain.list_interactions(c, channel="", type=type_, since=None, until=None,
                                               oldest_first=False, page_size=page_size, page_token=page_token)
    except domain.BadArgument as exc:
        raise BadQuery("page", exc.reason) from None
    return [interaction_view(it) for it in page], token


CONSENT_TYPES = ("consent", "unsubscribe", "complaint", "email_bounce")


def customer_page(hub: Any, cid: str, *, page_size: int = 50, page_token: str = "") -> dict[str, Any]:
    """The 360° view with everything the console adds: merges, consent history, offers, intents,
    timers, the customer's rules, and the first page of the timeline."""
    from shopkeeper.analysis.offers import offer_log
    from shopkeeper.rules.customer_rules import list_customer_rules, pending_timers, tags

    with hub.read() as f:
        c = _customer(f, hub, cid)
        view = customer_view(c, recent=0)
        prov = c.rule_state.get("provenance") or {}
        merges = []
        for mid in list(getattr(c, "merged_from", ()) or ()):
            rec = f.merges.get(mid)
            if rec is not None:
                d = rec.as_dict()
                d["at"], d["undone_at"] = iso(d["at"]), iso(d["undone_at"])
                merges.append(d)
        consent_history = []
        for ctype in CONSENT_TYPES:
            if c.type_counts.get(ctype):
                for it in c.interactions(type=ctype, newest_first=True):
                    consent_history.append(interaction_view(it))
                    if len(consent_history) >= 50:
                        break
        consent_history.sort(key=lambda i: i["at"] or "", reverse=True)
        offers = [{"at": iso(ts), "offer": o, "outcome": k} for ts, o, k in reversed(offer_log(c))]
        items = sorted((i.as_dict() for i in outbox.items(c)), key=lambda i: -(i.get("created_at") or 0))
        for i in items:
            i["created_at"], i["updated_at"] = iso(i.get("created_at") or None), iso(i.get("updated_at") or None)
        timers = [{**t, "due": iso(t["due"])} for t in pending_timers(c)]
        rules = [{"name": r["name"], "version": r.get("version", ""), "added_by": r.get("added_by", ""),
                  "added_at": iso(r.get("added_at")), "rule": r.get("rule")} for r in list_customer_rules(c)]
        timeline, token = _timeline(c, page_size, page_token)
        failures = [{**x, "at": iso(x.get("at"))} for x in reversed(c.rule_state.get("failures") or [])]
    view.update(merges=merges, consent_history=consent_history, offers=offers, intents=items[:MAX_INTENTS_SHOWN],
                intents_total=len(items), timers=timers, own_rules=rules, tags=tags(c), provenance=dict(prov),
                rule_failures=failures, timeline=timeline, next_page=token, display_name=_summary(c)["name"])
    return view


def timeline(hub: Any, cid: str, *, page_size: int = 50, page_token: str = "", after: int = 0) -> dict[str, Any]:
    """One page of the customer's interactions, newest first; with ``after`` only those newer
    than that history key (what a live page asks for when the feed says something arrived)."""
    with hub.read() as f:
        c = _customer(f, hub, cid)
        if after:
            items = [interaction_view(it) for it in c.interactions(since=after + 1, newest_first=True)][:page_size]
            return {"customer_id": c.id, "interactions": items, "next_page": ""}
        items, token = _timeline(c, page_size, page_token)
        return {"customer_id": c.id, "interactions": items, "next_page": token,
                "total": int(offerlog.hard_facts(c)[0].get("interactions", 0) or 0)}  # unfolded offers too


def intents(hub: Any, cid: str) -> dict[str, Any]:
    with hub.read() as f:
        c = _customer(f, hub, cid)
        items = sorted((i.as_dict() for i in outbox.items(c)), key=lambda i: -(i.get("created_at") or 0))
    for i in items:
        i["created_at"], i["updated_at"] = iso(i.get("created_at") or None), iso(i.get("updated_at") or None)
    return {"customer_id": cid, "intents": items[:MAX_INTENTS_SHOWN], "total": len(items)}


def unmerge(hub: Any, cid: str, merge_id: str) -> dict[str, Any]:
    """Undo one of this customer's merges through the hub's one writer (committed and on the feed)."""
    def op(f: Any, changes: Any) -> Any:
        c = _customer(f, hub, cid)
        if merge_id not in (getattr(c, "merged_from", ()) or ()):
            raise domain.BadArgument("merge_id", f"{merge_id!r} is not a merge into customer {c.id}")
        return domain.unmerge_customers(f, changes, merge_id, hub.identity_config).as_dict()

    return hub.writer.submit_op(op).result(timeout=30)


# -- rules --------------------------------------------------------------------------------


def _service(hub: Any) -> Any:
    from shopkeeper.rules.plugin import service_for

    return service_for(hub)


def rules_page(hub: Any, hours: int = 48) -> dict[str, Any]:
    """The rules in force, their matches (totals and per hour), failures, and who reloaded them."""
    from shopkeeper.rules.audit import recent

    svc = _service(hub)
    rs = svc.current
    st = svc.stats
    last = dict(svc.last_reload or {})
    rules = [{"key": r.key, "name": r.name, "description": r.description, "file": r.file, "line": r.line,
              "events": list(r.events), "priority": r.priority, "enabled": r.enabled,
              "fired": st.matched_by_rule.get(r.key, 0), "failures": st.failures_by_rule.get(r.key, 0)}
             for r in rs.rules]
    return {"version": rs.version, "directory": str(svc.config.directory), "rules": rules,
            "last_reload": {k: last.get(k) for k in ("ok", "version", "rules", "errors", "excluded", "seconds")},
            "reloads": st.reloads, "reload_failures": st.reload_failures, "degraded": svc.degraded,
            "stats": {k: getattr(st, k) for k in ("events", "matched", "actions", "failures", "timers_scheduled",
                                                  "timers_cancelled", "timers_fired")},
            "recent_failures": [{**x, "at": iso(x.get("at"))} for x in reversed(st.recent_failures)],
            "fires_by_hour": {**(byh := st.fires_by_hour(hours)), "hours": [iso(h) for h in byh["hours"]]},
            "reload_history": [{**x, "at": iso(x.get("at"))} for x in _reloads(hub, recent)]}


def _reloads(hub: Any, recent: Any) -> list[dict[str, Any]]:
    with hub.read() as f:
        return recent(f, 20)


def explain(hub: Any, cid: str, *, event_key: str = "", event: dict[str, Any] | None = None) -> dict[str, Any]:
    """Why each rule did or did not act for this customer and event (``rules.explain``), in a read
    transaction that is thrown away: the dry run's effects are never kept."""
    from shopkeeper.rules.explain import ExplainError, explain_customer

    svc = _service(hub)
    with hub.read() as f:
        c = _customer(f, hub, cid)
        try:
            return explain_customer(svc, f, c, event=event if not event_key else None,
                                    event_key=event_key or None)
        except ExplainError as exc:
            raise BadQuery("event", str(exc)) from None


# -- segments, models, outbox: store-wide -------------------------------------------------


def _sample(f: Any, limit: int) -> tuple[list[Any], bool]:
    out = []
    for _cid, c in f.customers.items():
        if c.status == "active":
            out.append(c)
        if len(out) >= limit:
            return out, True
    return out, False


def segments_page(hub: Any, sample: int) -> dict[str, Any]:
    from shopkeeper.analysis.state import all_counts, folder

    with hub.read() as f:
        sizes = folder(f, "segment_sizes")
        hist = folder(f, "segment_history")
        models = folder(f, "models")
        size_now = all_counts(sizes)
        history = [{"day": day, "segment": seg, "size": n} for (day, seg), n in hist.items()] \
            if hist is not None else []
        clv = dict(models.get("clv") or {}) if models is not None else {}
        rfm = dict(models.get("rfm") or {}) if models is not None else {}
        holdout = models.get("holdout") if models is not None else None
        customers, sampled = _sample(f, sample)
        values, grid = [], Counter()
        for c in customers:
            s = c.scores
            v = s.get("clv.value")
            if v is not None:
                values.append(float(v.value))
            r, fr = s.get("rfm.r"), s.get("rfm.f")
            if r is not None and fr is not None:
                grid[(int(r.value), int(fr.value))] += 1
        moves, moves_partial = _segment_moves(f, scan=sample * 10)
    return {"sizes": size_now, "history": history, "moves": moves, "moves_partial": moves_partial,
            "clv_values": _histogram(values), "clv_model": _brief(clv),
            "rfm_model": _brief(rfm), "rfm_grid": [{"r": r, "f": fr, "n": n} for (r, fr), n in sorted(grid.items())],
            "holdout": holdout, "customers_read": len(customers), "sampled": sampled}


def _segment_moves(f: Any, scan: int, days: int = 7) -> tuple[list[dict[str, Any]], bool]:
    """Entries and exits per day and segment, from the change feed's ``segment_entered`` /
    ``segment_left`` entries of the last ``days`` days the feed still holds (its retention, 24 h by
    default); at most ``scan`` feed entries are read (True = stopped there)."""
    from shopkeeper.customer import now_us

    counts: Counter = Counter()
    partial = False
    for n, e in enumerate(feed.entries_after(f, now_us() - days * 86_400_000_000)):
        if n >= scan:
            partial = True
            break
        kind = e.kind
        if kind in ("segment_entered", "segment_left"):
            day = (iso(e.cursor) or "")[:10]
            for seg in e.segments:
                counts[(day, seg, "entered" if kind == "segment_entered" else "left")] += 1
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for (day, seg, what), n in counts.items():
        rows.setdefault((day, seg), {"day": day, "segment": seg, "entered": 0, "left": 0})[what] = n
    return [rows[k] for k in sorted(rows, reverse=True)], partial


def _brief(model: dict[str, Any]) -> dict[str, Any]:
    return {k: (iso(v) if k == "fitted_at" and isinstance(v, int) else v) for k, v in model.items()
            if isinstance(v, (str, int, float)) and not isinstance(v, bool)}


def _histogram(values: list[float], bins: int = 12) -> dict[str, Any]:
    if not values:
        return {"edges": [], "counts": [], "n": 0}
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    return {"edges": [round(lo + i * width, 2) for i in range(bins + 1)], "counts": counts, "n": len(values),
            "mean": sum(values) / len(values)}


def outbox_page(hub: Any, sample: int) -> dict[str, Any]:
    """Queue depth per channel (the store-wide index of intents not final), and final states by
    channel and reason over the customers read."""
    with hub.read() as f:
        depth: Counter = Counter()
        idx = outbox.index(f)
        if idx is not None:
            for (channel, _iid) in idx.keys():
                depth[channel] += 1
        states: Counter = Counter()
        reasons: Counter = Counter()
        customers, sampled = _sample(f, sample)
        for c in customers:
            for it in outbox.items(c):
                states[(it.channel, it.status)] += 1
                if it.status in ("failed", "suppressed") and it.error:
                    reasons[(it.channel, it.status, it.error.split(":", 1)[0])] += 1
    by_channel: dict[str, dict[str, int]] = {}
    for (ch, status), n in states.items():
        by_channel.setdefault(ch, {})[status] = n
    for st in by_channel.values():
        done = st.get("sent", 0) + st.get("failed", 0)
        st["delivery_rate"] = round(st.get("sent", 0) / done, 3) if done else None  # type: ignore[assignment]
    return {"depth": dict(depth), "by_channel": by_channel,
            "reasons": [{"channel": ch, "status": s, "reason": r, "n": n}
                        for (ch, s, r), n in reasons.most_common(50)],
            "customers_read": len(customers), "sampled": sampled}


# -- the hub ------------------------------------------------------------------------------


def hub_page(hub: Any) -> dict[str, Any]:
    from shopkeeper import __version__
    from shopkeeper.plugins import plugin_versions

    metrics = hub.metrics
    methods: dict[str, dict[str, Any]] = {}
    for fam in metrics.requests.collect():
        for s in fam.samples:
            if s.name.endswith("_total"):
                m = methods.setdefault(s.labels["method"], {"calls": 0, "errors": 0})
                m["calls"] += int(s.value)
                if s.labels["code"] != "OK":
                    m["errors"] += int(s.value)
    for fam in metrics.latency.collect():
        buckets: dict[str, list[tuple[float, float]]] = {}
        for s in fam.samples:
            if s.name.endswith("_bucket"):
                buckets.setdefault(s.labels["method"], []).append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_sum"):
                methods.setdefault(s.labels["method"], {"calls": 0, "errors": 0})["seconds"] = s.value
        for m, bs in buckets.items():
            methods.setdefault(m, {"calls": 0, "errors": 0})["p95_ms"] = _quantile(bs, 0.95)
    writer = hub.writer
    with hub.read() as f:
        counts = {k: f.counter(k) for k in ("customers", "interactions", "duplicates", "forgotten")}
        cursor = feed.latest_cursor(f)
    return {"version": __version__, "store": hub.store.description, "uptime_seconds": time.monotonic() - hub.started_at,
            "health": {n: (why or "serving") for n, why in hub.components.items()},
            "plugins": [{"name": n, "version": v} for n, v in plugin_versions(hub.pm)],
            "disabled": [{"name": n, "error": e} for n, e in sorted(hub.disabled.items())],
            "adapters": sorted(getattr(hub, "adapters", {}) or {}),
            "events_committed": getattr(writer, "events_committed", 0), "conflicts": getattr(writer, "conflicts", 0),
            "queue_depth": getattr(writer, "queue_depth", 0), "counts": counts, "feed_cursor": cursor,
            "methods": methods, "at": time.time()}


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """An upper bound of the ``q`` quantile from cumulative histogram buckets, in ms."""
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    for le, n in buckets:
        if n >= q * total:
            return le * 1000 if le != float("inf") else None
    return None
