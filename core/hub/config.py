"""The hub's configuration file (YAML) and its defaults; see ``docs/hub.md``.

API keys are stored **hashed** (SHA-256 of the key, hex): the file never holds a usable key.
Keys are long random tokens (``python -m shopkeeper.hub.config new-key NAME``), so a fast
hash is enough — there is nothing to brute-force the way there is with a password.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..identity import IdentityConfig

#: ``console``: may log in to the web console (read-only; its unmerge button needs ``admin`` too)
SCOPES = ("profiles:read", "interactions:write", "decide", "admin", "rules:write", "console")


class ConfigError(ValueError):
    """The configuration file is wrong; the message names the setting."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "sk_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    """One touch point's credentials: who it is, what it may do, which event types it may send."""

    name: str
    key_sha256: str
    scopes: frozenset[str]
    event_types: frozenset[str] | None = None  # None = any
    #: the channel ``Decide`` assumes for this touch point when the request names none ("" = none)
    channel: str = ""

    def matches(self, digest: str) -> bool:
        return hmac.compare_digest(self.key_sha256, digest)


@dataclass
class Limits:
    max_message_bytes: int = 4 * 1024 * 1024  # per gRPC message, both directions
    max_batch_events: int = 1000  # events per EventBatch message
    max_workers: int = 128  # threads serving RPCs (streams hold one each)
    max_streams: int = 96  # concurrent Watch + StreamInteractions calls; the rest stay free for unary calls
    max_inflight_batches: int = 8  # per stream: batches submitted but not yet acknowledged (back-pressure)
    group_commit_max_events: int = 5000  # most events the writer puts in one transaction
    default_deadline_seconds: float = 30.0  # for writes when the caller sets no deadline
    max_concurrent_reads: int = 8  # read transactions at once; more wait: a warm pooled connection beats a cold one
    #: loaded objects each read connection keeps between reads; the read caches hold at most
    #: max_concurrent_reads x this (a cold read loads ~4 objects, 4-8 KB of RSS each at 1M: §59)
    read_cache_objects: int = 10_000
    #: a read about one customer goes to that customer's own read connection when it is idle, so the
    #: connections' caches hold different customers instead of 8 copies of the hot ones (§91)
    read_affinity: bool = True
    #: on a storage other processes write too (PostgreSQL, ZEO): seconds a read connection may reuse its
    #: snapshot while this process committed nothing, instead of polling (a BEGIN, a poll query and a
    #: ROLLBACK per read); bounds how late another hub's writes are seen. 0: poll at every read (readpool.py)
    read_poll_interval: float = 0.0
    #: at start, each read connection loads the interior nodes of its share of the identity index and the
    #: customers tree in bulk, in the background: a new 10M hub otherwise loads them one cold read at a time
    read_warm_index: bool = True
    #: loaded objects each of the hub's other connections (the writer's, above all) keeps: ZODB's cache_size
    cache_objects: int = 50_000


@dataclass
class TLS:
    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None  # set = mutual TLS: clients must present a certificate signed by it

    @property
    def enabled(self) -> bool:
        return bool(self.cert and self.key)


@dataclass
class PackSchedule:
    """``pack: {every: 1d, keep: 0}``: pack the store through the writer every ``every``, keeping
    ``keep`` days of history (0 = none: erased personal data leaves the storage at the next pack)."""

    every_seconds: float
    keep_days: float = 0.0
    #: on PostgreSQL, after each scheduled pack: rewrite ``object_state`` online with pg_repack and
    #: retire WAL holding erased rows (``shopkeeper.ops.pg.erase_rewrite``; docs/operations.md)
    rewrite: bool = False


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any, where: str, bare_unit: str = "s") -> float:
    """``90``, ``"90s"``, ``"30m"``, ``"6h"``, ``"1d"``, ``"2w"`` → seconds (a bare number is in ``bare_unit``)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not a duration (e.g. 30m, 6h, 1d)")
    if isinstance(value, int | float):
        return float(value) * _UNITS[bare_unit]
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(value))
    if not m:
        raise ConfigError(f"{where}: {value!r} is not a duration (e.g. 30m, 6h, 1d)")
    return float(m.group(1)) * _UNITS[m.group(2) or bare_unit]


def _pack_schedule(spec: Any) -> PackSchedule:
    if not isinstance(spec, dict):
        raise ConfigError("pack: a mapping such as {every: 1d, keep: 0}")
    unknown = set(spec) - {"every", "keep", "rewrite"}
    if unknown:
        raise ConfigError(f"pack: unknown key(s) {sorted(unknown)}; known: ['every', 'keep', 'rewrite']")
    rewrite = spec.get("rewrite", False)
    if not isinstance(rewrite, bool):
        raise ConfigError(f"pack.rewrite: true or false, not {rewrite!r}")
    if spec.get("every") is None:
        raise ConfigError("pack.every: required (e.g. 1d)")
    every = parse_duration(spec["every"], "pack.every")
    if every <= 0:
        raise ConfigError("pack.every: must be more than 0")
    keep = parse_duration(spec.get("keep", 0), "pack.keep", bare_unit="d") / 86400
    if keep < 0:
        raise ConfigError("pack.keep: must be 0 or more days")
    return PackSchedule(every, keep, rewrite)


@dataclass
class HubConfig:
    listen: str = "127.0.0.1:50051"
    store: str = "file://./var/Data.fs"
    api_keys: list[ApiKey] = field(default_factory=list)
    allow_anonymous: bool | None = None  # None = only when no key is configured and listening on loopback
    tls: TLS = field(default_factory=TLS)
    limits: Limits = field(default_factory=Limits)
    metrics_listen: str | None = None  # host:port for the Prometheus endpoint
    watch_retention_hours: float = 24.0
    watch_max_entries: int = 5_000_000
    watch_memory_entries: int = 100_000
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    log_format: str = "json"
    #: ``adapters:`` section: adapter name -> its settings, validated against the adapter's
    #: ``Config`` schema when the hub starts it (``shopkeeper.adapters.base``)
    adapters: dict[str, Any] = field(default_factory=dict)
    #: the central rule files (and ``segments/``, ``offers/`` beside them); None = ``$SHOPKEEPER_RULES_DIR``
    #: or ``./rules``. Read by the rules and analysis plugins.
    rules_dir: str | None = None
    #: start even when some central rule files have errors: the valid files are in force and
    #: health reports the ``rules`` component NOT_SERVING (default: refuse to start)
    allow_invalid_rules: bool = False
    #: ``contact:`` section: contact-policy keys that override the offer catalogue's ``policy:``
    #: (``default_timezone`` — the hub's default zone for quiet hours —, ``quiet_hours``, caps…;
    #: ``shopkeeper.contact``)
    contact: dict[str, Any] = field(default_factory=dict)
    #: ``pack:`` section: pack on a schedule through the writer (None = only when asked)
    pack: PackSchedule | None = None
    #: ``reuse_port: true``: several hub processes on one machine listen on the same ``listen``
    #: address (SO_REUSEPORT; the kernel spreads new connections over them; docs/scaleout.md).
    #: Off by default, so that a second hub started by mistake fails with "address in use".
    reuse_port: bool = False

    @classmethod
    def load(cls, path: str | Path) -> HubConfig:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must be a mapping of settings")
        try:
            return cls.from_mapping(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> HubConfig:
        cfg = cls()
        known = {"listen", "store", "api_keys", "allow_anonymous", "tls", "limits", "metrics", "watch",
                 "identity", "log_format", "adapters", "rules_dir", "allow_invalid_rules",
                 "contact", "pack", "reuse_port"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
        cfg.listen = str(data.get("listen", cfg.listen))
        cfg.store = str(data.get("store", cfg.store))
        if data.get("rules_dir") is not None:
            cfg.rules_dir = str(data["rules_dir"])
        if "reuse_port" in data:
            if not isinstance(data["reuse_port"], bool):
                raise ConfigError("reuse_port: must be true or false")
            cfg.reuse_port = data["reuse_port"]
        if "allow_invalid_rules" in data:
            if not isinstance(data["allow_invalid_rules"], bool):
                raise ConfigError("allow_invalid_rules: must be true or false")
            cfg.allow_invalid_rules = data["allow_invalid_rules"]
        if data.get("contact") is not None:
            from ..contact import ContactPolicy

            pol = data["contact"]
            if not isinstance(pol, dict) or set(pol) - set(ContactPolicy.KEYS):
                raise ConfigError(f"contact: a mapping of {list(ContactPolicy.KEYS)}")
            try:
                ContactPolicy.from_mapping(pol, "contact")
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            cfg.contact = dict(pol)
        if "allow_anonymous" in data:
            cfg.allow_anonymous = bool(data["allow_anonymous"])
        for i, spec in enumerate(data.get("api_keys") or []):
            cfg.api_keys.append(_api_key(spec, f"api_keys[{i}]"))
        names = [k.name for k in cfg.api_keys]
        if len(set(names)) != len(names):
            raise ConfigError("api_keys: names must be unique")
        tls = data.get("tls") or {}
        cfg.tls = TLS(tls.get("cert"), tls.get("key"), tls.get("client_ca"))
        if bool(cfg.tls.cert) != bool(cfg.tls.key):
            raise ConfigError("tls: give both cert and key")
        for k, v in (data.get("limits") or {}).items():
            if not hasattr(cfg.limits, k):
                raise ConfigError(f"limits.{k}: unknown limit; known: {sorted(vars(cfg.limits))}")
            setattr(cfg.limits, k, type(getattr(cfg.limits, k))(v))
        cfg.metrics_listen = data.get("metrics")
        if data.get("pack") is not None:
            cfg.pack = _pack_schedule(data["pack"])
        watch = data.get("watch") or {}
        cfg.watch_retention_hours = float(watch.get("retention_hours", cfg.watch_retention_hours))
        cfg.watch_max_entries = int(watch.get("max_entries", cfg.watch_max_entries))
        cfg.watch_memory_entries = int(watch.get("memory_entries", cfg.watch_memory_entries))
        try:
            cfg.identity = IdentityConfig.from_mapping(data.get("identity") or {})
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        cfg.log_format = str(data.get("log_format", cfg.log_format))
        adapters = data.get("adapters") or {}
        if not isinstance(adapters, dict) or not all(isinstance(v, dict | None) for v in adapters.values()):
            raise ConfigError("adapters: must map each adapter name to its settings")
        cfg.adapters = {str(k): dict(v or {}) for k, v in adapters.items()}
        return cfg


def _api_key(spec: Any, where: str) -> ApiKey:
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"{where}: needs name, key_sha256 and scopes")
    digest = spec.get("key_sha256")
    if digest is None and "key" in spec:
        raise ConfigError(f"{where}: store the key hashed (key_sha256), not in clear; "
                          "`python -m shopkeeper.hub.config hash KEY` prints it")
    if not isinstance(digest, str) or len(digest) != 64:
        raise ConfigError(f"{where}.key_sha256: must be the 64-hex-digit SHA-256 of the key")
    scopes = frozenset(spec.get("scopes") or ())
    bad = scopes - set(SCOPES)
    if bad:
        raise ConfigError(f"{where}.scopes: unknown {sorted(bad)}; known: {list(SCOPES)}")
    types = spec.get("event_types")
    channel = spec.get("channel") or ""
    if channel and (not isinstance(channel, str) or not re.fullmatch(r"[a-z][a-z0-9_.-]{0,63}", channel)):
        raise ConfigError(f"{where}.channel: must be a lower-case token such as web, email, phone")
    return ApiKey(str(spec["name"]), digest.lower(), scopes, frozenset(types) if types is not None else None,
                  channel)


def main(argv: list[str] | None = None) -> None:
    """``python -m shopkeeper.hub.config new-key NAME [SCOPE...]`` or ``hash KEY``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) >= 2 and args[0] == "new-key":
        key = new_key()
        scopes = args[2:] or list(SCOPES[:3])
        print(f"# give this key to the touch point (shown once): {key}")
        print(f"- name: {args[1]}\n  key_sha256: {hash_key(key)}\n  scopes: [{', '.join(scopes)}]")
    elif len(args) == 2 and args[0] == "hash":
        print(hash_key(args[1]))
    else:
        print(main.__doc__)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
