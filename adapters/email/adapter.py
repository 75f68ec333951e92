"""Outbound email from the outbox, with exactly-one delivery per intent.

The email adapter is a :class:`~shopkeeper.adapters.delivery.ChannelAdapter`: the claim ->
send -> mark cycle, the fsync'd delivery journal and crash recovery by Message-ID are the
ones every channel gets (see :mod:`shopkeeper.adapters.delivery`). What is email's own:
rendering the Jinja2 templates, a token bucket per recipient domain, SMTP (temporary
failures, 4xx and connection errors, are retried with backoff; permanent ones, 5xx, mark the
address undeliverable and the intent failed), and ``email_sent`` marking the intent sent.

The asyncio loop runs in one thread of its own: SMTP client pool, tracking HTTP endpoint
(Starlette on uvicorn) and the inbound SMTP receiver for bounces and replies (aiosmtpd).
This module wires them together; each job has its own: :mod:`.smtp` (connections, envelope,
pace per domain), :mod:`.render` (templates and links), :mod:`.mime` (the message bytes),
:mod:`.tracking` (signed links and their endpoint), :mod:`.inbound` (bounces and replies) and
the delivery journal in :mod:`shopkeeper.adapters.delivery`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
from typing import Any

from shopkeeper.outbox import Message

from ..batching import ReadBatcher
from ..delivery import ChannelAdapter, DeliveryJournal, PermanentFailure, parse_partition
from ..delivery import idem_key as _idem_key
from .mime import build_mime
from .render import TEMPLATES, Renderer, template_names
from .smtp import DomainRateLimiter, SmtpPool
from .tracking import Signer


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
    #: "K/N": deliver only the intents whose crc32(intent id) mod N is K — N remote adapter processes,
    #: each with its own journal (and tracking endpoint), split the email intents: each has its own
    #: interpreter lock for its SMTP connections (docs/benchmarks.md §86)
    partition: str | None = None

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
        parse_partition(self.partition)  # raises on a malformed "K/N"


#: the delivery journal (the name older versions exported)
Journal = DeliveryJournal


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
    journals_on_send = True  # the SMTP worker journals the Message-ID after the server's 250, synced per batch
    contact_reads = True  # the customer's contact part is read; the whole view for templates naming `customer`
    event_types = ("email_sent", "email_open", "email_click", "unsubscribe")

    def __init__(self, config: EmailConfig, hub: Any) -> None:
        super().__init__(config, hub)
        self.cfg = config
        self.signer = Signer(config.secret)
        if not config.secret:
            self.log.warning("email: no secret configured; tracking links stop working when the adapter restarts")
        self.limiter = DomainRateLimiter(config.per_domain_rate, config.per_domain_burst)
        self.mid_domain = config.message_id_domain or config.from_addr.rpartition("@")[2]
        self.smtp = SmtpPool(config)
        # the journal's fsync once per SMTP worker batch, after each message's journal_write
        self.smtp.sync = self.journal_sync
        self.renderer = Renderer(config, self.signer)
        self.http_port = 0
        self.inbound_port = 0
        self._http_server: Any = None
        self._inbound: Any = None

    def required_event_types(self) -> tuple[str, ...]:
        inbound = ("email_bounce", "email_reply") if self.cfg.inbound_listen else ()
        return (*super().required_event_types(), *inbound)

    # -- lifecycle ------------------------------------------------------------------------

    async def astart(self) -> None:
        self.smtp.start()
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
        await self.smtp.close()

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
        await self.smtp.send(mail, address, after=self.journal_write, message_id=message_id)

    def needs_full_view(self, message: Message) -> bool:
        """Only a template that names ``customer`` reads more than the contact part of the view."""
        return self.renderer.names_customer(message.template or "default")

    def pick_address(self, view: dict[str, Any]) -> str | None:
        return self.address(Message("", "", "email", ""), view)

    async def _record(self, type_: str, address: str, data: dict[str, Any], key: str) -> dict[str, Any]:
        """Record an engagement event (open, click, unsubscribe) for the customer with ``address``."""
        assert self.batcher is not None
        data = {k: v for k, v in data.items() if v is not None}
        return await self.batcher.record({"type": type_, "channel": "email", "identities": {"email": address},
                                          "data": data, "idempotency_key": idem_key(key), "touchpoint": self.name})

    # -- rendering (the templates are :class:`~.render.Renderer`'s) ---------------------------

    def base_url(self) -> str:
        return (self.cfg.public_url or f"http://127.0.0.1:{self.http_port}").rstrip("/")

    def render(self, message: Message, view: dict[str, Any], address: str, message_id: str) -> bytes:
        """The personalised message for ``view`` (the customer) and ``message.payload`` (the offer),
        as the RFC 5322 bytes handed to the SMTP server (:class:`~.render.Renderer`)."""
        return self.renderer.render(message, view, address, message_id, self.base_url())

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


#: names this module exported before the split (issue 19), kept for importers
__all__ = ["EmailAdapter", "EmailConfig", "PermanentFailure", "ReadBatcher", "Journal", "idem_key",
           "parse_message_id", "build_mime", "template_names", "TEMPLATES", "DomainRateLimiter", "Signer"]
