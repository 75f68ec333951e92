"""Identity resolution: from the (namespace, value) pairs an event carries to one customer.

Policy, in the order it is applied:

1. **Normalise** each value by its namespace (emails lower-cased and trimmed, phones to
   E.164, everything else trimmed) and drop **blocked** placeholder values such as
   ``unknown`` or ``test@example.com``; an event left with no usable identity is refused.
2. **Tombstones**: an identity of an erased customer refuses the event, so that a re-import
   or a late event cannot resurrect a forgotten person.
3. **Look up** every pair in the identity index. No match creates a customer; one match is
   that customer; several matches are resolved around the *survivor* — the customer found
   through the highest-priority namespace (``crm_id`` over ``email`` over ``cookie``…),
   ties going to the oldest customer.
4. For every other matched customer:

   * an **anonymous** one (weak identities only, e.g. a web cookie) is merged into the
     survivor — this is how a log-in stitches the visitor's earlier browsing to them;
   * one matched **only through weak identities** keeps its profile and the weak
     identities move to the survivor (a shared or handed-on device is not a merge);
   * one matched through a **strong** identity is merged when ``merge_mode`` is ``auto``
     and the result respects every namespace's ``max_per_customer`` (two different CRM
     ids are two people); otherwise a merge *proposal* is recorded for a person to decide.

5. New pairs are attached to the survivor within ``max_per_customer`` (weak namespaces
   evict their oldest identity; strong ones refuse the extra identity with a warning).

Merging and its exact inverse live here as well, because both must agree on what a
customer's identities and history are. Fact policy on merge:

==============  =============================================================================
part            merged as
==============  =============================================================================
history         interleaved by time; each interaction keeps the id of the customer that
                recorded it (``origin``), which is what unmerge sends back
idempotency     the survivor takes a copy of the absorbed customer's keys; unmerge gives the
keys            absorbed one a copy of the survivor's (a key too many is harmless, one missing
                would apply a redelivery twice)
hard facts      recomputed from the merged history (orders, spend, first/last seen…)
soft facts      per fact, the most recent ``at`` wins
traits          the survivor's value wins, the absorbed customer fills gaps
scores          per score, the most recent wins (models recompute them anyway)
segments        union
consents        **most restrictive wins**: a refusal on either side is kept (the later
                refusal if both); two grants keep the later; a record on one side only is kept
own rules       union, the survivor's rule wins on a name clash
==============  =============================================================================
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .customer import STATUS_ACTIVE, Customer, IdentityLink, now_us

# pickle aliases too: merges written before shopkeeper.records name these classes by this module
from .records import MergeProposal as MergeProposal
from .records import MergeRecord as MergeRecord
from .store import Folders


class IdentityError(ValueError):
    """An identity that cannot be used; ``field`` names it as ``identities.<namespace>``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class MergeError(Exception):
    """A merge or unmerge that cannot be done as asked; the message says why."""


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class NamespacePolicy:
    name: str
    priority: int
    max_per_customer: int
    strong: bool
    normalizer: Literal["email", "phone", "lower", "exact"] = "exact"


DEFAULT_NAMESPACES: dict[str, NamespacePolicy] = {
    p.name: p
    for p in (
        NamespacePolicy("crm_id", 100, 1, True),
        NamespacePolicy("loyalty", 90, 1, True),
        NamespacePolicy("email", 80, 10, True, "email"),
        NamespacePolicy("phone", 70, 5, True, "phone"),
        NamespacePolicy("customer_id", 60, 5, True),
        NamespacePolicy("device", 20, 50, False),
        NamespacePolicy("cookie", 10, 200, False),
    )
}

DEFAULT_BLOCKED = frozenset(
    {"", "unknown", "none", "null", "nil", "n/a", "na", "-", "0", "undefined", "anonymous",
     "test@example.com", "test@test.com", "noemail@example.com", "no@email.com", "+10000000000"}
)

MAX_IDENTITY_LENGTH = 320


@dataclass
class IdentityConfig:
    """How identities are normalised, trusted and merged; loaded from the hub config."""

    namespaces: dict[str, NamespacePolicy] = field(default_factory=lambda: dict(DEFAULT_NAMESPACES))
    blocked_values: frozenset[str] = DEFAULT_BLOCKED
    merge_mode: Literal["auto", "propose"] = "auto"
    default_region: str = "US"  # for phone numbers written without a country code

    def policy(self, namespace: str) -> NamespacePolicy:
        try:
            return self.namespaces[namespace]
        except KeyError:
            known = ", ".join(sorted(self.namespaces))
            raise IdentityError(f"identities.{namespace}", f"unknown identity namespace (known: {known})") from None

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> IdentityConfig:
        """Build from the ``identity:`` section of the hub config file."""
        cfg = cls()
        for name, spec in (data.get("namespaces") or {}).items():
            base = cfg.namespaces.get(name, NamespacePolicy(name, 50, 10, True))
            cfg.namespaces[name] = NamespacePolicy(
                name,
                int(spec.get("priority", base.priority)),
                int(spec.get("max_per_customer", base.max_per_customer)),
                bool(spec.get("strong", base.strong)),
                spec.get("normalizer", base.normalizer),
            )
        if "blocked_values" in data:
            cfg.blocked_values = frozenset(str(v).strip().lower() for v in data["blocked_values"])
        if "merge_mode" in data:
            if data["merge_mode"] not in ("auto", "propose"):
                raise ValueError(f"identity.merge_mode: must be 'auto' or 'propose', not {data['merge_mode']!r}")
            cfg.merge_mode = data["merge_mode"]
        cfg.default_region = data.get("default_region", cfg.default_region)
        return cfg


def normalize(namespace: str, value: Any, config: IdentityConfig) -> str:
    """The canonical form of ``value`` in ``namespace``; raises :class:`IdentityError`."""
    policy = config.policy(namespace)
    fld = f"identities.{namespace}"
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise IdentityError(fld, f"must be a string, not {type(value).__name__}")
    text = str(value).strip()
    if len(text) > MAX_IDENTITY_LENGTH:
        raise IdentityError(fld, f"longer than {MAX_IDENTITY_LENGTH} characters")
    if text.lower() in config.blocked_values:
        raise IdentityError(fld, f"value {text!r} is blocked as a placeholder")
    if policy.normalizer == "email":
        text = text.lower()
        local, at, domain = text.partition("@")
        if not at or not local or "." not in domain or " " in text:
            raise IdentityError(fld, f"{text!r} is not an email address")
    elif policy.normalizer == "phone":
        import phonenumbers  # on the first phone number: ~14 ms of every command's start-up otherwise

        try:
            num = phonenumbers.parse(text, config.default_region)
        except phonenumbers.NumberParseException as exc:
            raise IdentityError(fld, f"{text!r} is not a phone number ({exc})") from None
        if not phonenumbers.is_possible_number(num):
            raise IdentityError(fld, f"{text!r} is not a possible phone number")
        text = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    elif policy.normalizer == "lower":
        text = text.lower()
    if text.lower() in config.blocked_values:
        raise IdentityError(fld, f"value {text!r} is blocked as a placeholder")
    return text


def normalize_pairs(
    pairs: Iterable[tuple[str, Any]], config: IdentityConfig
) -> tuple[list[tuple[str, str]], list[str]]:
    """Normalise pairs; blocked values become warnings, anything else malformed raises."""
    out: list[tuple[str, str]] = []
    warnings: list[str] = []
    for ns, value in pairs:
        try:
            pair = (ns, normalize(ns, value, config))
        except IdentityError as exc:
            if "blocked" in exc.reason:
                warnings.append(str(exc))
                continue
            raise
        if pair not in out:
            out.append(pair)
    return out, warnings


def tombstone_key(folders: Folders, pair: tuple[str, str]) -> str:
    """A keyed hash of an identity: lets us recognise an erased person without keeping them."""
    secret = folders.meta["secret"].encode()
    return hmac.new(secret, f"{pair[0]}\x00{pair[1]}".encode(), hashlib.sha256).hexdigest()


def _tombstoned(folders: Folders, norm: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """The first pair of ``norm`` that belongs to an erased customer, or None."""
    tombstones = folders.tombstones
    if tombstones:  # truth test, not len(): a BTree's len() walks every bucket
        for pair in norm:
            if tombstone_key(folders, pair) in tombstones:
                return pair
    return None


def indexed_customer(folders: Folders, norm: Sequence[tuple[str, str]],
                     cids: Sequence[str | None] | None = None) -> Customer | None:
    """The resolver's fast path: the customer of a single known identity (merges followed), or the one
    live customer every identity of ``norm`` is indexed to (a known visitor's email + cookie), or None.
    ``cids``: the index's entries for ``norm``, when the caller has read them.
    :meth:`Resolver.resolve_indexed` is the same from index entries already read."""
    index = folders.identities
    cid = index.get(norm[0]) if cids is None else cids[0]
    if cid is None:
        return None
    for k in range(1, len(norm)):
        if (index.get(norm[k]) if cids is None else cids[k]) != cid:
            return None
    if len(norm) == 1:
        return folders.customer(cid)
    c = folders.customer(cid)
    return c if c is not None and c.id == cid else None


# -- resolution ------------------------------------------------------------------------


@dataclass
class Resolution:
    customer: Customer | None
    pairs: list[tuple[str, str]] = field(default_factory=list)  # the normalised pairs the caller carried
    created: bool = False
    merges: list[MergeRecord] = field(default_factory=list)
    proposals: list[MergeProposal] = field(default_factory=list)
    attached: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Resolver:
    """Applies :class:`IdentityConfig` to a store; stateless apart from the config."""

    #: normalised values remembered per resolver (cleared when full): the same customers come back
    NORMALIZE_CACHE_SIZE = 65_536

    def __init__(self, config: IdentityConfig | None = None) -> None:
        self.config = config or IdentityConfig()
        # (namespace, raw value) -> (policy, blocked set, region, normalised); an entry counts only
        # while the config still holds those very objects, so a changed config is never served stale
        self._normalized: dict[tuple[str, str], tuple[NamespacePolicy, frozenset[str], str, str]] = {}

    def normalize_pairs(self, pairs: Iterable[tuple[str, Any]]) -> tuple[list[tuple[str, str]], list[str]]:
        """:func:`normalize_pairs` with a cache of values seen before (same result, same errors)."""
        cfg = self.config
        cache = self._normalized
        namespaces = cfg.namespaces
        out: list[tuple[str, str]] = []
        warnings: list[str] = []
        for ns, value in pairs:
            hit = cache.get((ns, value)) if type(value) is str else None
            if (hit is not None and hit[0] is namespaces.get(ns) and hit[1] is cfg.blocked_values
                    and hit[2] == cfg.default_region):
                pair = (ns, hit[3])
            else:
                try:
                    text = normalize(ns, value, cfg)
                except IdentityError as exc:
                    if "blocked" in exc.reason:
                        warnings.append(str(exc))
                        continue
                    raise
                if type(value) is str:
                    if len(cache) >= self.NORMALIZE_CACHE_SIZE:
                        cache.clear()
                    cache[(ns, value)] = (namespaces[ns], cfg.blocked_values, cfg.default_region, text)
                pair = (ns, text)
            if pair not in out:
                out.append(pair)
        return out, warnings

    def is_anonymous(self, customer: Customer) -> bool:
        return not any(self.config.policy(ns).strong for ns, _ in customer.identities.keys()
                       if ns in self.config.namespaces)

    def resolve(
        self,
        folders: Folders,
        pairs: Sequence[tuple[str, str]],
        *,
        source: str,
        at: int | None = None,
        create: bool = True,
        normalized: bool = False,
    ) -> Resolution:
        at = at if at is not None else now_us()
        if normalized:
            norm, warnings = list(pairs), []
        else:
            norm, warnings = self.normalize_pairs(pairs)
        if not norm:
            raise IdentityError("identities", "no usable identity (every value was missing or blocked)")
        policies = self.config.namespaces
        tombstoned = _tombstoned(folders, norm)
        if tombstoned is not None:
            raise IdentityError(f"identities.{tombstoned[0]}", "belongs to a customer who asked to be forgotten")
        index = folders.identities
        cids = [index.get(pair) for pair in norm]  # each identity looked up once (issue 15: it was 3-4 times)
        c = indexed_customer(folders, norm, cids)
        if c is not None:
            return Resolution(c, norm, warnings=warnings)

        matched: dict[str, tuple[Customer, list[tuple[str, str]]]] = {}
        for pair, cid in zip(norm, cids, strict=True):
            c = folders.customer(cid) if cid is not None else None  # (``customer_by_identity``)
            if c is not None:
                matched.setdefault(c.id, (c, []))[1].append(pair)

        res = Resolution(None, norm, warnings=warnings)
        if not matched:
            if not create:
                return res
            c = folders.add_customer(Customer(folders.new_customer_id(), created_at=at))
            res.customer, res.created = c, True
            if len(norm) == 1:  # a new person by one identity, free a moment ago: the loop below's owner
                if self._attach(folders, c, norm[0], source, at, res.warnings):  # check would read None again
                    res.attached.append(norm[0])
                return res
        else:
            def rank(item: tuple[Customer, list[tuple[str, str]]]) -> tuple[int, int]:
                c, via = item
                return (max(policies[ns].priority for ns, _ in via), -c.created_at)

            ordered = sorted(matched.values(), key=rank, reverse=True)
            survivor = ordered[0][0]
            res.customer = survivor
            for other, via in ordered[1:]:
                if self.is_anonymous(other):
                    res.merges.append(_merge(folders, survivor, other, reason="anonymous profile identified",
                                            source=source, at=at))
                elif not any(policies[ns].strong for ns, _ in via):
                    for pair in via:
                        _detach(folders, other, pair)
                    survivor.remember_keys_of(other)  # their events may come back under these identities
                    res.warnings.append(
                        f"weak identities {sorted(ns for ns, _ in via)} moved from customer {other.id} to {survivor.id}"
                    )
                else:
                    clash = self.merge_clash(survivor, other)
                    if self.config.merge_mode == "auto" and clash is None:
                        res.merges.append(_merge(folders, survivor, other, reason="shared strong identity",
                                                source=source, at=at))
                    else:
                        why = clash or "merge_mode is 'propose'"
                        res.proposals.append(propose_merge(folders, survivor, other, why, at))
                        res.warnings.append(f"customer {other.id} not merged into {survivor.id}: {why}")
        survivor = res.customer
        assert survivor is not None
        for pair in norm:
            owner = folders.identities.get(pair)
            if owner == survivor.id:
                continue
            if owner is not None and folders.customer(owner) is not survivor:
                continue  # belongs to an unmerged other customer (proposal pending)
            if self._attach(folders, survivor, pair, source, at, res.warnings):
                res.attached.append(pair)
        return res

    def resolve_indexed(self, folders: Folders, norm: list[tuple[str, str]], warnings: list[str],
                        cids: Sequence[str | None], customer: Customer | None = None) -> Resolution | None:
        """What :meth:`resolve` would give for the normalised ``norm`` (with ``warnings``) when it takes
        its fast path — every pair already indexed to one customer, nothing to merge, move or attach —
        given ``cids``, the index's entries for ``norm`` that the caller has just read (the ingestor's
        exactly-once probe reads them anyway: reading them again was two index lookups per event);
        ``customer``: ``folders.customer(cids[0])``, when the caller has it. None when resolve would do
        more (or refuse a tombstoned identity)."""
        cid = cids[0] if cids else None
        if cid is None:
            return None
        for other in cids:  # (a loop, not all(): this runs for nearly every event)
            if other != cid:
                return None
        if folders.tombstones and _tombstoned(folders, norm) is not None:
            return None
        c = customer if customer is not None else folders.customer(cid)
        if c is None or (len(norm) > 1 and c.id != cid):  # one identity: merges followed, as resolve does
            return None
        return Resolution(c, norm, warnings=list(warnings))

    def resolve_known(self, folders: Folders, customer_id: str, pairs: Sequence[tuple[str, Any]]) -> Resolution | None:
        """The resolution of an event whose sender already resolved it to ``customer_id`` (an offer
        record ``Decide`` submits: ``resolved_id``), checked against what happened since, or None
        to resolve it in full. It skips the identities index (cold buckets on the writer's connection
        in a big store, benchmarks §55, §62): a merge since is followed to the survivor; a customer
        erased since, identities that do not normalise cleanly or a tombstoned identity resolve in
        full (which refuses an erased person). The ingestor probes exactly-once on the customer this
        gives, the one ``_key_holder`` would probe: a merge carries the absorbed customer's keys."""
        c = folders.customer(customer_id)
        if c is None or c.status != STATUS_ACTIVE:
            return None
        try:
            norm, warnings = self.normalize_pairs(pairs)
        except IdentityError:
            return None
        if warnings or not norm:
            return None
        tombstones = folders.tombstones
        if tombstones and any(tombstone_key(folders, pair) in tombstones for pair in norm):
            return None
        return Resolution(c, norm)

    def merge_clash(self, a: Customer, b: Customer) -> str | None:
        """Why ``a`` and ``b`` must not be merged automatically, or None."""
        for ns, policy in self.config.namespaces.items():
            if not policy.strong:
                continue
            combined = set(a.identities_in(ns)) | set(b.identities_in(ns))
            if len(combined) > policy.max_per_customer:
                return (f"they would hold {len(combined)} {ns} identities, "
                        f"more than the {policy.max_per_customer} allowed")
        return None

    def _attach(self, folders: Folders, customer: Customer, pair: tuple[str, str], source: str, at: int,
                warnings: list[str]) -> bool:
        policy = self.config.policy(pair[0])
        existing = customer.identities_in(pair[0])
        if len(existing) >= policy.max_per_customer:
            if policy.strong:
                warnings.append(
                    f"identities.{pair[0]}: customer {customer.id} already has {len(existing)} "
                    f"(max {policy.max_per_customer}); {pair[1]!r} not attached"
                )
                return False
            oldest = min(existing, key=lambda v: customer.identities[(pair[0], v)].at)
            _detach(folders, customer, (pair[0], oldest))
        attach(folders, customer, pair, source, at)
        return True


def attach(folders: Folders, customer: Customer, pair: tuple[str, str], source: str, at: int) -> None:
    customer.link_identity(pair, IdentityLink(source, at))
    folders.identities[pair] = customer.id


def _detach(folders: Folders, customer: Customer, pair: tuple[str, str]) -> None:
    customer.unlink_identity(pair)
    if folders.identities.get(pair) == customer.id:
        del folders.identities[pair]


def propose_merge(folders: Folders, survivor: Customer, other: Customer, reason: str, at: int) -> MergeProposal:
    for p in folders.proposals.values():
        if p.decided is None and {p.survivor_id, p.other_id} == {survivor.id, other.id}:
            return p
    p = MergeProposal("p_" + secrets.token_hex(8), survivor.id, other.id, reason, at)
    folders.proposals[p.id] = p
    return p


_UNKNOWN = NamespacePolicy("?", 0, 1, False)


def _merge(folders: Folders, survivor: Customer, absorbed: Customer, *, reason: str, source: str,
           at: int | None = None) -> MergeRecord:
    from .identity_merge import merge  # that module imports this one

    return merge(folders, survivor, absorbed, reason=reason, source=source, at=at)


def __getattr__(name: str) -> Any:
    """``merge``, ``unmerge`` and ``merge_consents`` moved to :mod:`shopkeeper.identity_merge`;
    importing them from here keeps working (loaded on first use: that module imports this one)."""
    if name in ("merge", "unmerge", "merge_consents"):
        from . import identity_merge

        return getattr(identity_merge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
