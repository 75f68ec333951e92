"""Customer rows: a shaped row with no ``type`` becomes a validated
:class:`~.records.CustomerRecord` — identities (with per-identity provenance when an export
carried it), traits, soft facts, consents, scores, segments and optionally the ``id`` to keep
from an old CRM. Every value is checked here, before anything touches the store.

Split from :mod:`.mapping` (which shapes rows and builds interaction records): the two kinds
of record share only the shaping, and the customer side alone is ~200 lines of checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..customer import Consent, Fact, now_us
from ..events import _FIELD_NAME, _TOKEN, EventError, _check_json_value, parse_ts
from ..identity import IdentityConfig, IdentityError, normalize
from .keys import derived_key
from .parsing import Row
from .records import CustomerRecord

CONSENT = "consent"
CUSTOMER_KEYS = frozenset({"id", "created_at", "identities", "traits", "soft", CONSENT, "consents", "scores",
                           "segments", "idempotency_key"})
_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_TRUE = frozenset({"true", "yes", "y", "1", "granted", "opt-in", "optin", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "denied", "refused", "revoked", "opt-out", "optout", "off"})


class CustomerRows:
    """Builds customer records for one import (``source`` is the provenance it records;
    ``earliest`` the oldest time it accepts, earlier with ``--historical``)."""

    def __init__(self, config: IdentityConfig, source: str, earliest: int) -> None:
        self.config = config
        self.namespaces = frozenset(config.namespaces)
        self.source = source
        self._earliest = earliest

    def record(self, row: Row) -> CustomerRecord:
        """One validated customer record from one shaped row; raises ``EventError``/``IdentityError``."""
        source = self.source
        key = row.get("idempotency_key") or ""
        if key and (not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.:/+=-]{1,128}", key)):
            raise EventError("idempotency_key", "must be 1-128 characters of [A-Za-z0-9_.:/+=-]")
        cid = row.get("id")
        if cid is not None:
            if isinstance(cid, int) and not isinstance(cid, bool):
                cid = str(cid)
            if not isinstance(cid, str) or not _ID.match(cid):
                raise EventError("id", "must be text of 1-128 printable characters")
        created_at = (parse_ts(row["created_at"], "created_at", earliest_us=self._earliest)
                      if row.get("created_at") else None)
        pairs, links, skipped = self._customer_identities(row.get("identities"))
        if not pairs and cid is None:
            known = ", ".join(sorted(self.namespaces))
            raise EventError("identities", f"required: at least one identity column ({known}) or an id")
        traits: dict[str, Any] = {}
        for k, v in row.items():
            if k not in CUSTOMER_KEYS:
                traits[k] = v
        explicit = row.get("traits") or {}
        if not isinstance(explicit, dict):
            raise EventError("traits", f"must be a mapping, not {type(explicit).__name__}")
        traits.update(explicit)
        for k, v in traits.items():
            if not _FIELD_NAME.match(k):
                raise EventError(f"traits.{k}", f"trait name must match {_FIELD_NAME.pattern}")
            _check_json_value(v, f"traits.{k}")
        now = now_us()
        rec = CustomerRecord("customer", "import", now, pairs, key, traits=traits, customer_id=cid,
                             created_at=created_at, links=links, warnings=skipped)
        rec.soft = self._facts(row.get("soft"), "soft", source, now, number=False)
        rec.scores = self._facts(row.get("scores"), "scores", source, now, number=True)
        rec.consents = self._consents(row, source, now)
        rec.segments = self._segments(row.get("segments"), now)
        if not key:
            rec.idempotency_key = derived_key(row)
        return rec

    def _customer_identities(
        self, raw: Any
    ) -> tuple[list[tuple[str, str]], dict[tuple[str, str], tuple[str, int]], list[str]]:
        if raw is None:
            return [], {}
        items: list[tuple[str, Any, Any, Any]] = []
        if isinstance(raw, Mapping):
            for ns, v in raw.items():
                for x in v if isinstance(v, list) else [v]:
                    items.append((ns, x, None, None))
        elif isinstance(raw, list):
            for i, item in enumerate(raw):
                if isinstance(item, Mapping) and "namespace" in item:
                    items.append((item["namespace"], item.get("value"), item.get("source"), item.get("at")))
                elif isinstance(item, (list, tuple)) and len(item) == 2:
                    items.append((item[0], item[1], None, None))
                else:
                    raise EventError(f"identities[{i}]", "must be {namespace, value} or [namespace, value]")
        else:
            raise EventError("identities", f"must be a mapping or a list, not {type(raw).__name__}")
        pairs: list[tuple[str, str]] = []
        skipped: list[str] = []
        links: dict[tuple[str, str], tuple[str, int]] = {}
        for ns, value, src, at in items:
            if not isinstance(ns, str) or not _TOKEN.match(ns):
                raise EventError("identities", f"namespace {ns!r} must be a lower-case token")
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            try:
                pair = (ns, normalize(ns, value, self.config))
            except IdentityError as exc:
                if "blocked" in exc.reason:
                    skipped.append(str(exc))  # a placeholder such as "unknown": not an identity, not an error
                    continue
                raise
            if pair not in pairs:
                pairs.append(pair)
            if src is not None or at is not None:
                if src is not None and not isinstance(src, str):
                    raise EventError(f"identities.{ns}", "source must be text")
                links[pair] = (src or self.source, parse_ts(at, f"identities.{ns}.at", earliest_us=self._earliest))
        return pairs, links, skipped

    def _facts(self, raw: Any, where: str, source: str, now: int, *, number: bool) -> dict[str, Fact]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise EventError(where, f"must be a mapping, not {type(raw).__name__}")
        out: dict[str, Fact] = {}
        for name, v in raw.items():
            fld = f"{where}.{name}"
            if not isinstance(name, str) or not _FIELD_NAME.match(name):
                raise EventError(where, f"name {name!r} must match {_FIELD_NAME.pattern}")
            src, at = source, now
            if isinstance(v, Mapping) and "value" in v:
                src = v.get("source") or source
                if not isinstance(src, str):
                    raise EventError(fld, "source must be text")
                at = parse_ts(v["at"], f"{fld}.at", earliest_us=self._earliest) if v.get("at") else now
                v = v["value"]
            if number:
                try:
                    if isinstance(v, bool):
                        raise ValueError
                    v = float(v)
                except (TypeError, ValueError):
                    raise EventError(fld, f"must be a number, not {v!r}") from None
                if v != v or v in (float("inf"), float("-inf")):
                    raise EventError(fld, "must be a finite number")
            else:
                _check_json_value(v, fld)
            out[name] = Fact(v, src, at)
        return out

    def _consents(self, row: Row, source: str, now: int) -> dict[tuple[str, str], Consent]:
        out: dict[tuple[str, str], Consent] = {}
        nested = row.get(CONSENT)
        entries: list[tuple[str, Any, Any, str]] = []  # (channel, purpose, value, field)
        if nested is not None:
            if not isinstance(nested, Mapping):
                raise EventError(CONSENT, "must be a mapping channel -> purpose -> yes/no")
            for channel, purposes in nested.items():
                if not isinstance(purposes, Mapping):
                    raise EventError(f"consent.{channel}", "needs a purpose: consent.<channel>.<purpose>, "
                                                          "e.g. consent.email.marketing")
                for purpose, v in purposes.items():
                    entries.append((channel, purpose, v, f"consent.{channel}.{purpose}"))
        listed = row.get("consents")
        if listed is not None:
            if not isinstance(listed, list):
                raise EventError("consents", "must be a list of {channel, purpose, granted}")
            for i, item in enumerate(listed):
                if not isinstance(item, Mapping):
                    raise EventError(f"consents[{i}]", "must be {channel, purpose, granted}")
                entries.append((item.get("channel"), item.get("purpose", "marketing"), dict(item), f"consents[{i}]"))
        for channel, purpose, v, fld in entries:
            if not isinstance(channel, str) or not _TOKEN.match(channel):
                raise EventError(fld, f"channel {channel!r} must be a lower-case token such as email, sms, phone")
            if not isinstance(purpose, str) or not _TOKEN.match(purpose):
                raise EventError(fld, f"purpose {purpose!r} must be a lower-case token such as marketing")
            src, at = source, now
            if isinstance(v, Mapping):
                src = v.get("source") or source
                if not isinstance(src, str):
                    raise EventError(fld, "source must be text")
                at = parse_ts(v["at"], f"{fld}.at", earliest_us=self._earliest) if v.get("at") else now
                v = v.get("granted")
            out[(channel, purpose)] = Consent(_yes_no(v, fld), src, at)
        return out

    def _segments(self, raw: Any, now: int) -> dict[str, int]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise EventError("segments", f"must be a mapping, not {type(raw).__name__}")
        out: dict[str, int] = {}
        for name, v in raw.items():
            fld = f"segments.{name}"
            if not isinstance(name, str) or not _FIELD_NAME.match(name):
                raise EventError("segments", f"name {name!r} must match {_FIELD_NAME.pattern}")
            if isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE):
                if _yes_no(v, fld):
                    out[name] = now
            else:
                out[name] = parse_ts(v, fld, earliest_us=self._earliest)  # joined at
        return out


def _yes_no(value: Any, fld: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return True
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False
    raise EventError(fld, f"{value!r} is not yes/no (true/false, yes/no, 1/0, granted/denied)")
