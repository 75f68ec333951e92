"""Outbound email from the outbox, with exactly-one delivery per intent.

The email adapter is a :class:`~shopkeeper.adapters.delivery.ChannelAdapter`: the claim ->
send -> mark cycle, the fsync'd delivery journal and crash recovery by Message-ID are the
ones every channel gets (see :mod:`shopkeeper.adapters.delivery`). What is email's own:
rendering the Jinja2 templates, a token bucket per recipient domain, SMTP (temporary
failures, 4xx and connection errors, are retried with backoff; permanent ones, 5xx, mark the
address undeliverable and the intent failed), and ``email_sent`` marking the intent sent.

The asyncio loop runs in one thread of its own: SMTP client pool, tracking HTTP endpoint
(Starlette on uvicorn) and the inbound SMTP receiver for bounces and replies (aiosmtpd).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from email.utils import formataddr
from pathlib import Path
from typing import Any

from shopkeeper.outbox import Message

from ..batching import ReadBatcher
from ..delivery import ChannelAdapter, DeliveryJournal, PermanentFailure
from ..delivery import idem_key as _idem_key

TEMPLATES = Path(__file__).parent / "templates"


@dataclasses.dataclass
class EmailConfig:
    """Settings of the ``adapters.email`` section (see ``docs/adapters/email.md``)."""

    from_addr: str
    from_name: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_tls: str = "none"  # none | starttls | tls
    smtp_timeout: float = 30.0
    connections: int = 4  # SMTP connections kept open
    max_in_flight: int = 256  # intents being worked on at once
    templates_dir: str | None = None  # NAME.subject.txt, NAME.txt, NAME.html; built-in "default" otherwise
    templates: dict[str, Any] = dataclasses.field(default_factory=dict)  # inline: NAME -> {subject, text, html}
    secret: str = ""  # signs tracking links; set it, or links die with the process
    public_url: str = ""  # base URL of the tracking endpoint as customers reach it
    http_listen: str | None = "127.0.0.1:0"  # tracking endpoint; null = not served
    inbound_listen: str | None = None  # host:port of the SMTP receiver for bounces and replies
    bounce_addr: str | None = None  # envelope sender (Return-Path); bounces come back here
    message_id_domain: str = ""  # right-hand side of Message-IDs; default: from_addr's domain
    per_domain_rate: float = 50.0  # messages per second to one recipient domain
    per_domain_burst: int = 100
    retry_delays: list[float] = dataclasses.field(default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0])
    journal: str | None = None  # delivery journal file (Message-IDs accepted by the server)

    def __post_init__(self) -> None:
        if "@" not in self.from_addr:
            raise ValueError(f"from_addr: {self.from_addr!r} is not an email address")
        if self.smtp_tls not in ("none", "starttls", "tls"):
            raise ValueError(f"smtp_tls: must be none, starttls or tls, not {self.smtp_tls!r}")
        if not 1 <= self.smtp_port <= 65535:
            raise ValueError(f"smtp_port: {self.smtp_port} is not a port number")
        if self.connections < 1:
            raise ValueError("connections: at least 1")
        if self.per_domain_rate <= 0:
            raise ValueError("per_domain_rate: must be positive")


#: the delivery journal (the name older versions exported)
Journal = DeliveryJournal


def template_names(section: dict[str, Any] | None = None) -> set[str]:
    """The templates this adapter can render with the settings ``section`` (raw, unvalidated):
    inline ``templates`` with a text or html part, ``NAME.txt``/``NAME.html`` in ``templates_dir``
    and the built-in ones shipped in ``templates/``. What ``shopkeeper_message_templates``
    declares for the ``email`` channel, so rules naming a template that exists nowhere are
    caught by ``rules check`` and at hub start."""
    section = section or {}

    def in_dir(d: Path) -> set[str]:
        if not d.is_dir():
            return set()
        return {p.name.rsplit(".", 1)[0] for p in d.iterdir()
                if p.is_file() and p.suffix in (".txt", ".html") and not p.name.endswith(".subject.txt")}

    inline = section.get("templates") or {}
    names = {str(k) for k, parts in (inline.items() if isinstance(inline, dict) else ())
             if isinstance(parts, dict) and ("text" in parts or "html" in parts)}
    tdir = section.get("templates_dir")
    return names | (in_dir(Path(str(tdir))) if tdir else set()) | in_dir(TEMPLATES)


class DomainRateLimiter:
    """A token bucket per recipient domain."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def delay(self, domain: str) -> float:
        """Take one token; seconds to wait before sending (0 = now)."""
        now = time.monotonic()
        tokens, last = self._buckets.get(domain, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate) - 1.0
        self._buckets[domain] = (tokens, now)
        return 0.0 if tokens >= 0 else -tokens / self.rate


class Signer:
    """Signed, tamper-proof tokens for tracking and unsubscribe links."""

    def __init__(self, secret: str) -> None:
        self.key = (secret or secrets.token_hex(32)).encode()

    def sign(self, data: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=")
        mac = base64.urlsafe_b64encode(hmac.new(self.key, body, hashlib.sha256).digest()[:16]).rstrip(b"=")
        return (body + b"." + mac).decode()

    def verify(self, token: str) -> dict[str, Any] | None:
        body, _, mac = token.encode().partition(b".")
        want = base64.urlsafe_b64encode(hmac.new(self.key, body, hashlib.sha256).digest()[:16]).rstrip(b"=")
        if not hmac.compare_digest(mac, want):
            return None
        try:
            return json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
        except ValueError:
            return None


def parse_message_id(message_id: str) -> tuple[str, str] | None:
    """(intent id, customer id) from a Message-ID this adapter made, else None."""
    local = message_id.strip().strip("<>").partition("@")[0]
    parts = local.rsplit(".", 3)
    if len(parts) != 4 or parts[0] != "sk":
        return None
    return parts[1], parts[2]


class EmailAdapter(ChannelAdapter):
    """Email: outbox delivery over SMTP, tracking endpoint, unsubscribe, bounces and replies."""

    name = "email"
    version = "0.1.0"
    Config = EmailConfig
    channels = ("email",)
    sent_type = "email_sent"
    event_types = ("email_sent", "email_open", "email_click", "unsubscribe")

    def __init__(self, config: EmailConfig, hub: Any) -> None:
        super().__init__(config, hub)
        self.cfg = config
        self.signer = Signer(config.secret)
        if not config.secret:
            self.log.warning("email: no secret configured; tracking links stop working when the adapter restarts")
        self.limiter = DomainRateLimiter(config.per_domain_rate, config.per_domain_burst)
        self.mid_domain = config.message_id_domain or config.from_addr.rpartition("@")[2]
        self._pool: asyncio.Queue | None = None
        self.http_port = 0
        self.inbound_port = 0
        self._http_server: Any = None
        self._inbound: Any = None
        self._templates: dict[str, tuple[Any, Any, Any]] = {}
        self._from_header: str | None = None
        self._sender: bytes | None = None  # MAIL FROM's quoted address, built once
        self._env = self._make_env()

    def required_event_types(self) -> tuple[str, ...]:
        inbound = ("email_bounce", "email_reply") if self.cfg.inbound_listen else ()
        return (*super().required_event_types(), *inbound)

    # -- lifecycle ------------------------------------------------------------------------

    async def astart(self) -> None:
        self._pool = asyncio.Queue()
        for _ in range(self.cfg.connections):
            self._pool.put_nowait(None)  # connected lazily
        if self.cfg.http_listen:
            await self._start_http()
        if self.cfg.inbound_listen:
            from .inbound import start_receiver

            self._inbound = start_receiver(self, self.cfg.inbound_listen)
            self.inbound_port = self._inbound.port

    async def astop(self) -> None:
        if self._http_server is not None:
            self._http_server.should_exit = True
            await asyncio.sleep(0.05)
            if self._http_task is not None:
                try:
                    await asyncio.wait_for(self._http_task, 5)
                except (TimeoutError, asyncio.CancelledError):
                    pass
        while self._pool is not None and not self._pool.empty():
            client = self._pool.get_nowait()
            if client is not None:
                try:
                    await client.quit()
                except Exception:  # noqa: BLE001 - closing anyway
                    client.close()

    def stop(self) -> None:
        self._stop.set()
        if self._inbound is not None:
            self._inbound.stop()
        super().stop()

    # -- delivery (the cycle is ChannelAdapter's) -------------------------------------------

    def new_message_id(self, message: Message) -> str:
        return f"<sk.{message.id}.{message.customer_id}.{secrets.token_hex(6)}@{self.mid_domain}>"

    def sent_data(self, message: Message, message_id: str) -> dict[str, Any]:
        data = {"intent": message.id, "message_id": message_id}
        if message.payload.get("campaign"):
            data["campaign"] = str(message.payload["campaign"])
        return data

    def prepare(self, message: Message, customer: dict[str, Any], address: str, message_id: str) -> bytes:
        return self.render(message, customer, address, message_id)

    async def asend(self, message: Message, customer: dict[str, Any], address: str, message_id: str,
                    prepared: Any = None) -> None:
        mail = prepared if prepared is not None else self.render(message, customer, address, message_id)
        wait = self.limiter.delay(address.rpartition("@")[2].lower())
        if wait:
            await asyncio.sleep(wait)
        await self._smtp_send(mail, address)

    def pick_address(self, view: dict[str, Any]) -> str | None:
        return self.address(Message("", "", "email", ""), view)

    async def _record(self, type_: str, address: str, data: dict[str, Any], key: str) -> dict[str, Any]:
        """Record an engagement event (open, click, unsubscribe) for the customer with ``address``."""
        assert self.batcher is not None
        data = {k: v for k, v in data.items() if v is not None}
        return await self.batcher.record({"type": type_, "channel": "email", "identities": {"email": address},
                                          "data": data, "idempotency_key": idem_key(key), "touchpoint": self.name})

    # -- SMTP -----------------------------------------------------------------------------

    async def _connect(self) -> Any:
        import aiosmtplib

        cfg = self.cfg
        client = aiosmtplib.SMTP(hostname=cfg.smtp_host, port=cfg.smtp_port, timeout=cfg.smtp_timeout,
                                 use_tls=cfg.smtp_tls == "tls", start_tls=cfg.smtp_tls == "starttls")
        await client.connect()
        if cfg.smtp_user:
            await client.login(cfg.smtp_user, cfg.smtp_password or "")
        if client.is_ehlo_or_helo_needed:  # once per connection: _envelope's commands assume it
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()
        return client

    async def _envelope(self, client: Any, mail: bytes, address: str) -> None:
        """One message on an open connection: MAIL, RCPT, DATA. aiosmtplib's ``sendmail`` parses
        both addresses with ``email.utils.parseaddr`` for every message (~10% of the adapter's
        event loop); the sender is quoted once here and a plain recipient address is used as it
        is (anything unusual still goes through the library's quoting). The same errors as
        ``sendmail``'s: a refused sender or recipient raises its ``SMTPResponseException``."""
        import aiosmtplib
        from aiosmtplib.email import quote_address

        if self._sender is None:
            self._sender = quote_address(self.cfg.bounce_addr or self.cfg.from_addr).encode("ascii")
        resp = await client.execute_command(b"MAIL", b"FROM:" + self._sender)
        if resp.code != 250:
            raise aiosmtplib.SMTPSenderRefused(resp.code, resp.message, self.cfg.bounce_addr or self.cfg.from_addr)
        rcpt = f"<{address}>" if _PLAIN_ADDRESS.match(address) else quote_address(address)
        resp = await client.execute_command(b"RCPT", b"TO:" + rcpt.encode("ascii"))
        if resp.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(resp.code, resp.message, address)
        await client.data(mail)

    async def _smtp_send(self, mail: bytes, address: str) -> None:
        import aiosmtplib

        assert self._pool is not None
        client = await self._pool.get()
        try:
            if client is None or not client.is_connected:
                client = await self._connect()
            await self._envelope(client, mail, address)
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as exc:
            code = _smtp_code(exc)
            if code is not None and 500 <= code < 600:
                raise PermanentFailure(str(exc)) from exc
            client = await _reset(client)
            raise
        except PermanentFailure:
            client = await _reset(client)
            raise
        except Exception:
            if client is not None:
                client.close()
            client = None
            raise
        finally:
            self._pool.put_nowait(client)

    # -- rendering ------------------------------------------------------------------------

    def _make_env(self) -> Any:
        import jinja2

        loaders: list[Any] = []
        if self.cfg.templates:
            flat = {}
            for name, parts in self.cfg.templates.items():
                for part, ext in (("subject", "subject.txt"), ("text", "txt"), ("html", "html")):
                    if part in (parts or {}):
                        flat[f"{name}.{ext}"] = parts[part]
            loaders.append(jinja2.DictLoader(flat))
        if self.cfg.templates_dir:
            loaders.append(jinja2.FileSystemLoader(self.cfg.templates_dir))
        loaders.append(jinja2.FileSystemLoader(str(TEMPLATES)))
        return jinja2.Environment(loader=jinja2.ChoiceLoader(loaders),
                                  autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                                                      default_for_string=False),
                                  undefined=jinja2.ChainableUndefined, auto_reload=False, cache_size=400)

    def _template(self, name: str, ext: str) -> Any:
        import jinja2

        try:
            return self._env.get_template(f"{name}.{ext}")
        except jinja2.TemplateNotFound:
            return None

    def base_url(self) -> str:
        return (self.cfg.public_url or f"http://127.0.0.1:{self.http_port}").rstrip("/")

    def templates_for(self, name: str) -> tuple[Any, Any, Any]:
        """(subject, text, html) compiled templates of ``name``, compiled once."""
        got = self._templates.get(name)
        if got is None:
            got = self._templates[name] = tuple(self._template(name, e) for e in ("subject.txt", "txt", "html"))
        return got

    def render(self, message: Message, view: dict[str, Any], address: str, message_id: str) -> bytes:
        """The personalised message for ``view`` (the customer) and ``message.payload`` (the offer),
        as the RFC 5322 bytes handed to the SMTP server."""
        name = message.template or "default"
        subject_t, text_t, html_t = self.templates_for(name)
        if text_t is None and html_t is None:
            raise ValueError(f"email: no template named {name!r} (NAME.txt or NAME.html)")
        base = self.base_url()
        ident = {"c": message.customer_id, "i": message.id, "m": message_id, "a": address, "p": message.purpose,
                 "g": str(message.payload.get("campaign") or "")}
        tok = self.signer.sign(ident)
        unsubscribe_url = f"{base}/u/{tok}"

        def track(url: str) -> str:
            return f"{base}/c/{self.signer.sign({**ident, 'u': url})}"

        traits = view.get("traits") or {}
        ctx = {"customer": view, "traits": traits, "first_name": traits.get("first_name") or traits.get("name"),
               "email": address, "payload": message.payload, "offer": message.payload.get("offer"),
               "track": track, "unsubscribe_url": unsubscribe_url, "open_pixel_url": f"{base}/o/{tok}.gif",
               "message_id": message_id}
        if self._from_header is None:
            cfg = self.cfg
            self._from_header = _header_value(formataddr((cfg.from_name, cfg.from_addr)) if cfg.from_name
                                              else cfg.from_addr)
        headers = [("From", self._from_header), ("To", _header_value(address)),
                   ("Subject", _header_value((subject_t.render(ctx).strip() if subject_t is not None else "")
                                             or "(no subject)")),
                   ("Message-ID", _header_value(message_id)), ("Date", _date()),
                   ("List-Unsubscribe", f"<{unsubscribe_url}>"),
                   ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
        if message.payload.get("campaign"):
            headers.append(("X-Campaign", _header_value(str(message.payload["campaign"]))))
        text = text_t.render(ctx) if text_t is not None else None
        html = html_t.render(ctx) if html_t is not None else None
        return build_mime(headers, text, html)

    # -- tracking endpoint ----------------------------------------------------------------

    _http_task: asyncio.Task | None = None

    async def _start_http(self) -> None:
        import uvicorn

        from .tracking import make_app

        host, _, port = self.cfg.http_listen.rpartition(":")  # type: ignore[union-attr]
        config = uvicorn.Config(make_app(self), host=host or "127.0.0.1", port=int(port or 0), log_level="warning",
                                lifespan="off", access_log=False)
        server = self._http_server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._http_task = asyncio.ensure_future(server.serve())
        for _ in range(500):
            if server.started:
                break
            if self._http_task.done():
                self._http_task.result()
            await asyncio.sleep(0.01)
        self.http_port = server.servers[0].sockets[0].getsockname()[1]

    async def on_open(self, tok: dict[str, Any]) -> None:
        await self._record("email_open", tok["a"], {"message_id": tok["m"], "campaign": tok.get("g") or None,
                                                    "intent": tok["i"]}, f"open:{tok['m']}")

    async def on_click(self, tok: dict[str, Any]) -> None:
        url = tok["u"]
        await self._record("email_click", tok["a"], {"message_id": tok["m"], "campaign": tok.get("g") or None,
                                                     "link": url, "intent": tok["i"]},
                           f"click:{tok['m']}:{hashlib.sha256(url.encode()).hexdigest()[:16]}")

    async def on_unsubscribe(self, tok: dict[str, Any]) -> None:
        await asyncio.to_thread(self.hub.set_consent, tok["c"], "email", tok.get("p") or "marketing", False,
                                "email:unsubscribe")
        await self._record("unsubscribe", tok["a"], {"campaign": tok.get("g") or None, "message_id": tok["m"],
                                                     "purpose": tok.get("p") or "marketing"}, f"unsub:{tok['m']}")


def idem_key(text: str) -> str:
    """An idempotency key for ``text`` (Message-IDs hold ``<>@``, which keys may not)."""
    return _idem_key("email", text)


def _smtp_code(exc: Exception) -> int | None:
    code = getattr(exc, "code", None)
    if code is None:
        for r in getattr(exc, "recipients", []) or []:
            code = getattr(r, "code", None)
            if code is not None:
                break
    return code


async def _reset(client: Any) -> Any:
    try:
        await client.rset()
        return client
    except Exception:  # noqa: BLE001 - a broken connection is replaced
        client.close()
        return None


#: an address the SMTP envelope can carry as it is (no quoting, comments or display name)
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\Z")

_date_cache: list[Any] = [0, ""]


def _date() -> str:
    """The Date header (RFC 5322), formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        from email.utils import formatdate

        _date_cache[:] = [now, formatdate(now, localtime=False)]
    return _date_cache[1]


def _header_value(value: str) -> str:
    """One header line's value: no line breaks (no header injection), RFC 2047 when not ASCII."""
    value = " ".join(value.split()) if ("\r" in value or "\n" in value) else value
    if value.isascii():
        return value
    if "@" in value and "<" in value:  # "Näme <addr>": encode the name only
        from email.utils import parseaddr

        name, addr = parseaddr(value)
        return formataddr((name, addr), charset="utf-8")
    from email.header import Header

    return Header(value, "utf-8").encode()


def _part(text: str, subtype: str) -> bytes:
    """A text/* body part: 7bit when it is short-lined ASCII, base64 otherwise."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if text.isascii() and all(len(line) <= 900 for line in lines):
        return (f'Content-Type: text/{subtype}; charset="us-ascii"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
                + "\r\n".join(lines) + ("" if text.endswith("\n") else "\r\n")).encode("ascii")
    body = base64.encodebytes(text.encode("utf-8")).replace(b"\n", b"\r\n")
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            ).encode("ascii") + body


def build_mime(headers: list[tuple[str, str]], text: str | None, html: str | None) -> bytes:
    """RFC 5322 bytes for ``headers`` (values already safe) and a text and/or HTML body.

    Written out directly instead of through ``email.message.EmailMessage``, whose policy
    machinery (header parsing and folding, MIME generation) cost most of the CPU per message.
    """
    head = "".join(f"{k}: {v}\r\n" for k, v in headers) + "MIME-Version: 1.0\r\n"
    if text is not None and html is not None:
        boundary = "=_sk" + secrets.token_hex(12)
        return (head + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n--{boundary}\r\n'
                ).encode("ascii") + _part(text, "plain") + f"\r\n--{boundary}\r\n".encode() + _part(html, "html") \
            + f"\r\n--{boundary}--\r\n".encode()
    return head.encode("ascii") + (_part(text, "plain") if text is not None else _part(html or "", "html"))


def default_journal_path(name: str = "email") -> str:
    return os.path.join(os.environ.get("SHOPKEEPER_STATE", "./var"), f"{name}-journal.log")


__all__ = ["EmailAdapter", "EmailConfig", "PermanentFailure", "ReadBatcher", "Journal", "idem_key",
           "parse_message_id", "build_mime"]
