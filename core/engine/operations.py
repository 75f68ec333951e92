"""What the hub's RPCs do, in domain terms: plain arguments in, domain objects out.

The servicers translate protobuf to these calls and the results back; these functions
know nothing of gRPC. Write operations take ``(folders, changes)`` and run on the writer
thread inside one transaction (see :class:`shopkeeper.engine.writer.Writer`).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import paths
from ..customer import STATUS_ACTIVE, STATUS_FORGOTTEN, STATUS_MERGED, Customer, Interaction
from ..identity import IdentityConfig, IdentityError, MergeError, Resolver, merge, normalize, normalize_pairs, unmerge
from ..privacy import forget
from ..store import Folders
from .writer import Changes

#: the interaction ``SetConsent`` records on the customer's timeline (not an event type clients send)
CONSENT_INTERACTION = "consent"


class NotFound(LookupError):
    """The customer, merge or thing asked for does not exist (or was forgotten)."""


class AlreadyExists(Exception):
    """What the caller asked to create is already there."""


class Precondition(Exception):
    """The request is valid but the current state does not allow it."""


class BadArgument(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# -- finding a customer ----------------------------------------------------------------


def resolve_ref(folders: Folders, customer_id: str | None, identity: tuple[str, str] | None,
                config: IdentityConfig) -> Customer:
    if customer_id:
        c = folders.customer(customer_id)
        if c is None:
            raise NotFound(f"no customer with id {customer_id!r}")
    elif identity is not None:
        ns, value = identity
        try:
            norm = normalize(ns, value, config)
        except IdentityError as exc:
            raise BadArgument(f"customer.{exc.field}", exc.reason) from exc
        c = folders.customer_by_identity(ns, norm)
        if c is None:
            raise NotFound(f"no customer with {ns} {norm!r}")
    else:
        raise BadArgument("customer", "give the customer's id or one of their identities")
    if c.status == STATUS_FORGOTTEN:
        raise NotFound(f"customer {c.id} was forgotten (erasure request)")
    return c


# -- writes ----------------------------------------------------------------------------


@dataclass
class IdentifyOutcome:
    customer_id: str
    created: bool
    merges: list[str] = field(default_factory=list)
    proposals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def identify(folders: Folders, changes: Changes, resolver: Resolver, pairs: Sequence[tuple[str, str]],
             traits: dict[str, Any], source: str, create_only: bool = False) -> IdentifyOutcome:
    norm, warnings = normalize_pairs(pairs, resolver.config)
    if not norm:
        raise IdentityError("identities", "no usable identity (every value was missing or blocked)")
    if create_only:
        for pair in norm:
            owner = folders.identities.get(pair)
            if owner is not None:
                raise AlreadyExists(f"identity {pair[0]} {pair[1]!r} already belongs to customer {owner}")
    res = resolver.resolve(folders, norm, source=source, normalized=True)
    c = res.customer
    assert c is not None
    if traits:
        c.set_traits(traits)
    changes.add("identify", c.id, detail="created" if res.created else "")
    for m in res.merges:
        changes.add("merge", c.id, detail=m.id)
    return IdentifyOutcome(c.id, res.created, [m.id for m in res.merges], [p.id for p in res.proposals],
                           warnings + res.warnings)


def set_consent(folders: Folders, changes: Changes, c: Customer, channel: str, purpose: str, granted: bool,
                source: str) -> tuple[str, Any]:
    if not channel:
        raise BadArgument("channel", "required (email, sms, phone, web_push...)")
    before = c.consents.get((channel, purpose))
    c.set_consent(channel, purpose, granted, source)
    cs = c.consents[(channel, purpose)]
    key = 0
    if before is None or before.granted != cs.granted:
        # a change of consent is also an interaction, so that the customer's timeline (the console's
        # 360° view, ListInteractions) shows when consent was given or withdrawn, by whom, and the
        # history of it; type ``consent`` is no event type a client may send: only this records it.
        # Setting the value it already has (an adapter replaying its work) records none: a replay
        # must change nothing (the conformance kit's exactly-once check)
        key = c.add_interaction(Interaction(cs.at, cs.at, CONSENT_INTERACTION, channel, source,
                                            {"channel": channel, "purpose": purpose, "granted": bool(granted),
                                             "source": source}, "", (), c.id)).key
    changes.add("consent", c.id, channel=channel, event_type=CONSENT_INTERACTION, interaction_key=key,
                detail=f"{channel}/{purpose}={'granted' if granted else 'refused'}")
    return c.id, cs


def merge_customers(folders: Folders, changes: Changes, survivor_id: str, absorbed_id: str, reason: str,
                    source: str) -> Any:
    if not survivor_id or not absorbed_id:
        raise BadArgument("survivor_id" if not survivor_id else "absorbed_id", "required")
    survivor = folders.customers.get(survivor_id)
    absorbed = folders.customers.get(absorbed_id)
    for cid, c in ((survivor_id, survivor), (absorbed_id, absorbed)):
        if c is None or c.status == STATUS_FORGOTTEN:
            raise NotFound(f"no customer with id {cid!r}")
    assert survivor is not None and absorbed is not None
    if absorbed.status == STATUS_MERGED and folders.customer(absorbed_id) is folders.customer(survivor_id):
        raise AlreadyExists(f"customer {absorbed_id} is already merged into {survivor.id}")
    try:
        rec = merge(folders, survivor, absorbed, reason=reason or "merged by request", source=source)
    except MergeError as exc:
        raise Precondition(str(exc)) from exc
    changes.add("merge", survivor.id, detail=rec.id)
    return rec


def unmerge_customers(folders: Folders, changes: Changes, merge_id: str, config: IdentityConfig) -> Any:
    if merge_id not in folders.merges:
        raise NotFound(f"no merge with id {merge_id!r}")
    try:
        rec = unmerge(folders, merge_id, config=config)
    except MergeError as exc:
        raise Precondition(str(exc)) from exc
    changes.add("unmerge", rec.survivor_id, detail=rec.id)
    changes.add("unmerge", rec.absorbed_id, detail=rec.id)
    return rec


def forget_customer(folders: Folders, changes: Changes, c: Customer, reason: str) -> tuple[str, int]:
    n = forget(folders, c, reason=reason or "erasure request")
    changes.add("forget", c.id)
    return c.id, n


# -- reads -----------------------------------------------------------------------------


def _token(query: Any, after: Any) -> str:
    qh = hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return base64.urlsafe_b64encode(json.dumps({"q": qh, "a": after}).encode()).decode().rstrip("=")


def _untoken(token: str, query: Any) -> Any:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        qh = hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:16]
    except (ValueError, TypeError) as exc:
        raise BadArgument("page_token", "not a token this server issued") from exc
    if not isinstance(data, dict) or data.get("q") != qh:
        raise BadArgument("page_token", "belongs to a different query (filters must stay the same between pages)")
    return data.get("a")


def check_fact_path(path: str, where: str) -> str:
    """The field key of a FindCustomers fact path, read by the one accessor (:mod:`shopkeeper.paths`):
    ``customer.orders``, ``fact.NAME``, ``score.NAME``, ``trait.NAME``, ``customer.count.TYPE``... The
    old spellings (bare ``orders``, ``soft.NAME``, ``scores.NAME``, ``traits.NAME``, ``counts.TYPE``)
    are aliases and still work."""
    try:
        return paths.parse(path, bare_hard=True).key
    except paths.PathError as exc:
        raise BadArgument(where, str(exc)) from None


def fact_value(c: Customer, path: str) -> Any:
    """The value ``path`` names on ``c`` (None: it has none)."""
    return paths.read(c, check_fact_path(path, "fact"))


_OPS = {
    "EQ": lambda a, b: a == b, "NE": lambda a, b: a != b, "GT": lambda a, b: a > b,
    "GE": lambda a, b: a >= b, "LT": lambda a, b: a < b, "LE": lambda a, b: a <= b,
}


def fact_matches(c: Customer, key: str, op: str, value: Any) -> bool:
    """``key`` (a field key from :func:`check_fact_path`) ``op`` ``value`` on ``c``; a missing value
    only satisfies ``NE``."""
    v = paths.read(c, key)
    if op == "EXISTS":
        return v is not None
    if v is None:
        return op == "NE"
    try:
        return bool(_OPS[op](v, value))
    except TypeError:
        return False


def find_customers(folders: Folders, *, identity_prefix: tuple[str, str] | None, segment: str,
                   facts: Sequence[tuple[str, str, Any]], page_size: int, page_token: str,
                   config: IdentityConfig, scan_limit: int = 20_000) -> tuple[list[Customer], str]:
    query = {"i": identity_prefix, "s": segment, "f": [list(f) for f in facts]}
    after = _untoken(page_token, query)
    tests = [(check_fact_path(path, f"facts[{i}].fact"), op, v) for i, (path, op, v) in enumerate(facts)]

    def keep(c: Customer | None) -> bool:
        if c is None or c.status != STATUS_ACTIVE:
            return False
        if segment and segment not in c.segments:
            return False
        return all(fact_matches(c, k, op, v) for k, op, v in tests)

    out: list[Customer] = []
    seen: set[str] = set()
    scanned = 0
    last: Any = None
    if identity_prefix is not None:
        ns, prefix = identity_prefix
        if ns not in config.namespaces:
            raise BadArgument("identity_prefix.namespace", f"unknown namespace {ns!r}")
        prefix = prefix.strip()
        if config.namespaces[ns].normalizer in ("email", "lower"):
            prefix = prefix.lower()
        lo = (ns, after) if after is not None else (ns, prefix)
        items = folders.identities.items(min=lo, max=(ns, prefix + "\U0010ffff"), excludemin=after is not None)
        for (_ns, kval), cid in items:
            scanned += 1
            last = kval
            c = folders.customer(cid)
            if c is not None and c.id not in seen and keep(c):
                seen.add(c.id)
                out.append(c)
            if len(out) >= page_size or scanned >= scan_limit:
                break
        else:
            last = None
    else:
        items = folders.customers.items(min=after, excludemin=after is not None) if after is not None \
            else folders.customers.items()
        for cid, c in items:
            scanned += 1
            last = cid
            if keep(c):
                out.append(c)
            if len(out) >= page_size or scanned >= scan_limit:
                break
        else:
            last = None
    return out, (_token(query, last) if last is not None else "")


def list_interactions(c: Customer, *, channel: str, type: str, since: int | None, until: int | None,
                      oldest_first: bool, page_size: int, page_token: str) -> tuple[list[Interaction], str]:
    query = {"c": c.id, "ch": channel, "t": type, "s": since, "u": until, "o": oldest_first}
    after = _untoken(page_token, query)
    if after is not None:
        if oldest_first:
            since = int(after) + 1
        else:
            until = int(after)
    it: Iterator[Interaction] = c.interactions(since=since, until=until, channel=channel or None,
                                               type=type or None, newest_first=not oldest_first)
    page = list(itertools.islice(it, page_size + 1))
    more = len(page) > page_size
    page = page[:page_size]
    return page, (_token(query, page[-1].key) if more and page else "")
