"""The web adapter's section of the hub config file (``adapters: {web: {...}}``), validated.

Example::

    adapters:
      web:
        listen: 0.0.0.0:8700
        public_url: https://collect.shop.example       # where browsers reach the collector
        sites:
          shop:
            origins: [https://shop.example, https://www.shop.example]
            identify_secret_sha256: null               # or set identify_secret (see docs/adapters/web.md)
            event_types: [page_view, click, custom, cart_add, checkout_started, offer_shown]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from ..base import ListenAddress

#: Event types a browser may send by default. ``order`` is not among them: a purchase is
#: a fact the shop's back end reports, a browser could forge it.
DEFAULT_BROWSER_TYPES = ("page_view", "click", "custom", "cart_add", "checkout_started",
                         "offer_shown", "offer_accepted", "offer_declined")
DEFAULT_IDENTIFY_NAMESPACES = ("email", "customer_id", "phone", "loyalty")

_SITE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class SiteConfig:
    """One web site: which origins may send events for it and what they may send."""

    name: str
    origins: frozenset[str]
    event_types: frozenset[str] = frozenset(DEFAULT_BROWSER_TYPES)
    identify_namespaces: frozenset[str] = frozenset(DEFAULT_IDENTIFY_NAMESPACES)
    #: HMAC key shared with the site's own back end; when set, ``identify`` must carry a
    #: signature made with it, so a visitor cannot claim somebody else's e-mail address.
    identify_secret: str | None = None
    #: accept requests without an ``Origin`` header (server-to-server, very old browsers)
    allow_missing_origin: bool = False

    def origin_allowed(self, origin: str | None) -> bool:
        if not origin:
            return self.allow_missing_origin
        return origin in self.origins or "*" in self.origins


def _origin(value: Any, where: str) -> str:
    if value == "*":
        return value
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be an origin such as https://shop.example")
    p = urlparse(value)
    if p.scheme not in ("http", "https") or not p.netloc or p.path not in ("", "/") or p.query:
        raise ValueError(f"{where}: {value!r} is not an origin (scheme://host[:port], no path)")
    return f"{p.scheme}://{p.netloc}".lower()


def parse_sites(raw: Any) -> dict[str, SiteConfig]:
    if not isinstance(raw, dict) or not raw:
        raise ValueError("sites: give at least one site, e.g. {shop: {origins: [https://shop.example]}}")
    out: dict[str, SiteConfig] = {}
    known = {"origins", "event_types", "identify_namespaces", "identify_secret", "allow_missing_origin"}
    for name, spec in raw.items():
        where = f"sites.{name}"
        if not isinstance(name, str) or not _SITE.match(name):
            raise ValueError(f"{where}: site name must be a lower-case token")
        if isinstance(spec, SiteConfig):
            out[name] = spec
            continue
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: must be a mapping with origins")
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        origins = spec.get("origins")
        if not isinstance(origins, list) or not origins:
            raise ValueError(f"{where}.origins: required, a list of allowed origins (CORS allow-list)")
        types = spec.get("event_types", list(DEFAULT_BROWSER_TYPES))
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise ValueError(f"{where}.event_types: must be a list of event type names")
        if "identify" in types:
            raise ValueError(f"{where}.event_types: identify goes through /identify, do not list it")
        nss = spec.get("identify_namespaces", list(DEFAULT_IDENTIFY_NAMESPACES))
        if not isinstance(nss, list) or not all(isinstance(t, str) for t in nss):
            raise ValueError(f"{where}.identify_namespaces: must be a list of identity namespaces")
        if "cookie" in nss:
            raise ValueError(f"{where}.identify_namespaces: cookie is the visitor id itself, do not list it")
        secret = spec.get("identify_secret")
        if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
            raise ValueError(f"{where}.identify_secret: must be text of at least 16 characters")
        out[name] = SiteConfig(
            name=name,
            origins=frozenset(_origin(o, f"{where}.origins[{i}]") for i, o in enumerate(origins)),
            event_types=frozenset(types),
            identify_namespaces=frozenset(nss),
            identify_secret=secret,
            allow_missing_origin=bool(spec.get("allow_missing_origin", False)),
        )
    return out


@dataclass
class WebConfig(ListenAddress):
    """Schema of ``adapters.web`` (unknown keys are refused by the adapter base)."""

    sites: dict
    listen: str = "127.0.0.1:8700"
    #: the collector's URL as browsers see it (behind a proxy); default http://<listen>
    public_url: str = ""
    max_body_bytes: int = 64 * 1024
    max_events_per_request: int = 100
    #: token buckets: sustained events per second and burst, per visitor id and per client IP
    visitor_rate: float = 20.0
    visitor_burst: int = 200
    ip_rate: float = 500.0
    ip_burst: int = 5000
    #: trust X-Forwarded-For from these proxy addresses (the client IP for rate limiting)
    trusted_proxies: list = field(default_factory=list)
    #: extra user-agent substrings (case-insensitive) treated as crawlers, besides the built-ins
    bot_user_agents: list = field(default_factory=list)
    #: how many Decide actions a placement gets
    decide_limit: int = 3
    #: seconds to wait for the hub's commit before answering 503 (the browser retries)
    commit_timeout: float = 10.0
    #: name of the first-party cookie the snippet keeps the visitor id in
    cookie_name: str = "_sk_vid"
    cookie_days: int = 395

    def __post_init__(self) -> None:
        try:
            self.site_map: dict[str, SiteConfig] = parse_sites(self.sites)
        except ValueError as exc:  # "sites.shop.origins: why" -> reported as adapter.web.sites: …
            raise ValueError(f"sites: {str(exc).removeprefix('sites: ').removeprefix('sites.')}") from None
        self.check_listen()
        for name in ("max_body_bytes", "max_events_per_request", "visitor_burst", "ip_burst", "decide_limit",
                     "cookie_days"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")
        if self.visitor_rate <= 0 or self.ip_rate <= 0:
            raise ValueError("visitor_rate/ip_rate: must be positive")
        if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", self.cookie_name):
            raise ValueError("cookie_name: letters, digits and _ only")
