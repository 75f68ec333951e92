"""Outbound email from the outbox, with exactly-one delivery per intent.

For every intent on channel ``email`` (see :mod:`shopkeeper.outbox`):

1. read the intent; a final one is skipped, one left ``sending`` by a crash is resolved by
   its Message-ID against the delivery journal (delivered -> only mark it sent);
2. read the customer; no ``email``/purpose consent or no deliverable address -> ``suppressed``;
3. **claim** it with a ``message_dispatch`` event carrying the Message-ID (the hub refuses the
   claim if the intent is final, held by another Message-ID, or consent is gone);
4. render the Jinja2 templates, wait for the recipient domain's rate limit, send over SMTP:
   temporary failures (4xx, connection) are retried with backoff, permanent ones (5xx) mark
   the address undeliverable and the intent failed;
5. write the Message-ID to the journal, then record ``email_sent`` (marks the intent sent).

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
import secrets
import threading
import time
from email.utils import formataddr
from pathlib import Path
from typing import Any

from shopkeeper.outbox import FINAL, SENDING, TRANSITION_TYPES, Message, Receipt

from ..base import Adapter, EventBatcher, MicroBatcher, may_contact

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


class PermanentFailure(Exception):
    """The server refused for good (5xx): do not retry, the address is undeliverable."""


class Journal:
    """Message-IDs the SMTP server accepted, written before the intent is marked sent.

    After a crash between "accepted" and "marked sent" the intent is found ``sending``; its
    Message-ID in the journal proves delivery, so it is only marked sent, not sent again.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.ids: set[str] = set()
        self._fh = None
        if path:
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.exists():
                self.ids.update(line.strip() for line in p.read_text().splitlines() if line.strip())
            self._fh = open(p, "a", buffering=1)  # noqa: SIM115 - held open for the adapter's life

    def add(self, message_id: str) -> None:
        self.ids.add(message_id)
        if self._fh is not None:
            self._fh.write(message_id + "\n")
            self._fh.flush()

    def __contains__(self, message_id: str) -> bool:
        return message_id in self.ids

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


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


class EmailAdapter(Adapter):
    """Email: outbox delivery over SMTP, tracking endpoint, unsubscribe, bounces and replies."""

    name = "email"
    version = "0.1.0"
    Config = EmailConfig
    channels = ("email",)

    def __init__(self, config: EmailConfig, hub: Any) -> None:
        super().__init__(config, hub)
        self.cfg = config
        self.signer = Signer(config.secret)
        if not config.secret:
            self.log.warning("email: no secret configured; tracking links stop working when the adapter restarts")
        self.journal = Journal(config.journal)
        self.limiter = DomainRateLimiter(config.per_domain_rate, config.per_domain_burst)
        self.mid_domain = config.message_id_domain or config.from_addr.rpartition("@")[2]
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._slots = threading.BoundedSemaphore(config.max_in_flight)
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()
        self._pool: asyncio.Queue | None = None
        self._smtp_clients: list[Any] = []
        self.http_port = 0
        self.inbound_port = 0
        self._http_server: Any = None
        self._inbound: Any = None
        self.batcher: EventBatcher | None = None
        self.bookkeeper: EventBatcher | None = None  # claim / sent / failed, batched
        self.reader: ReadBatcher | None = None
        self._templates: dict[str, tuple[Any, Any, Any]] = {}
        self._from_header: str | None = None
        self.stats = {"sent": 0, "suppressed": 0, "failed": 0, "retried": 0, "recovered": 0}
        self._env = self._make_env()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._loop_thread = threading.Thread(target=self._run_loop, name="shopkeeper-email-loop", daemon=True)
        self._loop_thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("email: the adapter's event loop did not start")
        if self._startup_error is not None:
            raise self._startup_error
        super().start()  # follow the outbox (pending intents first)

    _startup_error: BaseException | None = None

    def _run_loop(self) -> None:
        loop = self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._astart())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._astop())
        loop.close()

    async def _astart(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        # hub reads run in threads: enough of them for max_in_flight sends to overlap
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(64, thread_name_prefix="shopkeeper-email"))
        self.batcher = EventBatcher(self.hub, max_events=500, max_delay=0.003)
        # outbox bookkeeping for customers we already know: one writer operation per batch in the hub
        self.bookkeeper = EventBatcher(self.hub, max_events=1000, max_delay=0.003, outbox=True)
        if getattr(self.hub, "outbox_batch", None) is not None:
            self.reader = ReadBatcher(self.hub.outbox_batch)
        self._pool = asyncio.Queue()
        for _ in range(self.cfg.connections):
            self._pool.put_nowait(None)  # connected lazily
        if self.cfg.http_listen:
            await self._start_http()
        if self.cfg.inbound_listen:
            from .inbound import start_receiver

            self._inbound = start_receiver(self, self.cfg.inbound_listen)
            self.inbound_port = self._inbound.port

    async def _astop(self) -> None:
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
        super().stop()
        if self._inbound is not None:
            self._inbound.stop()
        if self.loop is not None and self.loop.is_running():
            deadline = time.monotonic() + 10
            while self._inflight and time.monotonic() < deadline:  # let sends in progress finish
                time.sleep(0.02)
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(15)
        self.journal.close()

    # -- delivery -------------------------------------------------------------------------

    def deliver(self, message: Message) -> Receipt | None:
        if message.channel != "email":
            return None
        with self._inflight_lock:
            if message.id in self._inflight:
                return Receipt("accepted", message.message_id, "already in progress")
            self._inflight.add(message.id)
        while not self._slots.acquire(timeout=0.5):
            if self._stop.is_set():
                with self._inflight_lock:
                    self._inflight.discard(message.id)
                return Receipt("failed", "", "adapter stopping")
        assert self.loop is not None
        fut = asyncio.run_coroutine_threadsafe(self._process(message), self.loop)

        def done(_f: Any) -> None:
            self._slots.release()
            with self._inflight_lock:
                self._inflight.discard(message.id)

        fut.add_done_callback(done)
        return Receipt("accepted", "", "queued")

    def new_message_id(self, message: Message) -> str:
        return f"<sk.{message.id}.{message.customer_id}.{secrets.token_hex(6)}@{self.mid_domain}>"

    async def _record(self, type_: str, address: str, data: dict[str, Any], key: str,
                      customer_id: str | None = None) -> dict[str, Any]:
        assert self.batcher is not None and self.bookkeeper is not None
        data = {k: v for k, v in data.items() if v is not None}
        ev = {"type": type_, "channel": "email", "identities": {"email": address}, "data": data,
              "idempotency_key": idem_key(key), "touchpoint": self.name}
        if customer_id and type_ in TRANSITION_TYPES:
            ev["customer_id"] = customer_id
            ev["identities"] = [("email", address)]
            return await self.bookkeeper.record(ev)
        return await self.batcher.record(ev)

    async def _suppress(self, message: Message, address: str | None, reason: str) -> None:
        self.stats["suppressed"] += 1
        if address:
            await self._record("message_failed", address, {"intent": message.id, "status": "suppressed",
                                                           "reason": reason}, f"failed:{message.id}",
                               message.customer_id)
        else:  # no address to resolve the customer by: the intent stays pending, visibly
            self.log.warning("email: intent %s for %s not sent: %s", message.id, message.customer_id, reason)

    async def _process(self, message: Message) -> None:
        try:
            await self._process_inner(message)
        except Exception:
            self.log.exception("email: intent %s failed unexpectedly; it stays in the outbox", message.id)

    async def _process_inner(self, message: Message) -> None:
        hub = self.hub
        if self.reader is not None:
            item, view = await self.reader.get((message.customer_id, message.id))
        else:
            item, view = await asyncio.gather(asyncio.to_thread(hub.outbox_item, message.customer_id, message.id),
                                              asyncio.to_thread(hub.customer, message.customer_id, 0))
        if item is None or view is None or item.get("status") in FINAL:
            return
        purpose = message.purpose or "marketing"
        address = self.pick_address(view)
        if not may_contact(view, "email", purpose):
            await self._suppress(message, address, f"no email/{purpose} consent")
            return
        if address is None:
            await self._suppress(message, None, "no deliverable email address")
            return
        message_id = item.get("message_id") if item.get("status") == SENDING else ""
        if message_id and message_id in self.journal:  # crash after delivery, before "sent"
            self.stats["recovered"] += 1
            await self._mark_sent(message, address, message_id)
            return
        message_id = message_id or self.new_message_id(message)
        claim = await self._record("message_dispatch", address, {"intent": message.id, "message_id": message_id},
                                   f"dispatch:{message.id}:{message_id}", message.customer_id)
        if claim["status"] == "rejected":
            if claim.get("field") == "consent":
                await self._suppress(message, address, claim.get("error") or "no consent")
            else:
                self.log.info("email: claim of %s refused: %s", message.id, claim.get("error"))
            return
        mail = self.render(message, view, address, message_id)
        domain = address.rpartition("@")[2].lower()
        wait = self.limiter.delay(domain)
        if wait:
            await asyncio.sleep(wait)
        delays = list(self.cfg.retry_delays)
        while True:
            try:
                await self._smtp_send(mail, address)
                break
            except PermanentFailure as exc:
                self.stats["failed"] += 1
                await self._record("message_failed", address, {"intent": message.id, "status": "failed",
                                                               "reason": str(exc)[:500], "permanent": True,
                                                               "address": address}, f"failed:{message.id}",
                                   message.customer_id)
                return
            except Exception as exc:  # temporary: 4xx, connection refused, timeout
                if not delays or self._stop.is_set():
                    # leave it "sending": the next start resends it with the same Message-ID
                    self.log.warning("email: giving up on %s for now: %s", message.id, exc)
                    if not delays:
                        self.stats["failed"] += 1
                        await self._record("message_failed", address, {
                            "intent": message.id, "status": "failed",
                            "reason": f"temporary failures, retries exhausted: {exc}"[:500]}, f"failed:{message.id}",
                            message.customer_id)
                    return
                self.stats["retried"] += 1
                delay = delays.pop(0)
                self.log.info("email: temporary failure for %s (%s); retry in %.1f s", message.id, exc, delay)
                await asyncio.sleep(delay)
        self.journal.add(message_id)
        await self._mark_sent(message, address, message_id)

    async def _mark_sent(self, message: Message, address: str, message_id: str) -> None:
        data = {"intent": message.id, "message_id": message_id}
        if message.payload.get("campaign"):
            data["campaign"] = str(message.payload["campaign"])
        res = await self._record("email_sent", address, data, f"sent:{message.id}", message.customer_id)
        if res["status"] != "rejected":
            self.stats["sent"] += 1

    def pick_address(self, view: dict[str, Any]) -> str | None:
        bad = set((view.get("soft_facts", {}).get("undeliverable") or {}).get("value") or ())
        for ident in view.get("identities", ()):
            if ident["namespace"] == "email" and f"email:{ident['value'].lower()}" not in bad:
                return ident["value"]
        return None

    # -- SMTP -----------------------------------------------------------------------------

    async def _connect(self) -> Any:
        import aiosmtplib

        cfg = self.cfg
        client = aiosmtplib.SMTP(hostname=cfg.smtp_host, port=cfg.smtp_port, timeout=cfg.smtp_timeout,
                                 use_tls=cfg.smtp_tls == "tls", start_tls=cfg.smtp_tls == "starttls")
        await client.connect()
        if cfg.smtp_user:
            await client.login(cfg.smtp_user, cfg.smtp_password or "")
        return client

    async def _smtp_send(self, mail: bytes, address: str) -> None:
        import aiosmtplib

        assert self._pool is not None
        client = await self._pool.get()
        try:
            if client is None or not client.is_connected:
                client = await self._connect()
            errors, _resp = await client.sendmail(self.cfg.bounce_addr or self.cfg.from_addr, [address], mail)
            if errors:
                code, text = next(iter(errors.values()))
                raise (PermanentFailure if 500 <= code < 600 else RuntimeError)(f"{code} {text}")
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
    kind, _, rest = text.partition(":")
    return f"email:{kind}:{hashlib.sha256(rest.encode()).hexdigest()[:32]}"


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


class ReadBatcher(MicroBatcher):
    """Gather ``(customer id, intent id)`` reads from many coroutines into one ``fn(refs)`` call
    (one read transaction in the hub instead of two per message)."""

    def __init__(self, fn: Any, max_items: int = 500, max_delay: float = 0.002) -> None:
        super().__init__(max_items, max_delay)
        self.fn = fn

    async def get(self, ref: Any) -> Any:
        return await self._submit(ref)

    def _dispatch(self, buf: list[tuple[Any, asyncio.Future]]) -> None:
        asyncio.ensure_future(self._run(buf))

    async def _run(self, buf: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            got = await asyncio.get_running_loop().run_in_executor(None, self.fn, [r for r, _ in buf])
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter
            for _r, f in buf:
                if not f.done():
                    f.set_exception(exc)
            return
        for (_r, f), value in zip(buf, got, strict=True):
            if not f.done():
                f.set_result(value)


def default_journal_path(name: str = "email") -> str:
    return os.path.join(os.environ.get("SHOPKEEPER_STATE", "./var"), f"{name}-journal.log")
