"""Outbound SMS from the outbox through Kannel, with delivery reports and STOP/HELP.

The SMS adapter is a :class:`~shopkeeper.adapters.delivery.ChannelAdapter`: the claim ->
send -> mark cycle, the fsync'd delivery journal and crash recovery by Message-ID are the
ones every channel gets. What is SMS's own:

* **before the claim** (:meth:`SmsAdapter.prepare`): the number is validated (E.164, valid
  and mobile-capable), the sender for its country is chosen, the text is rendered and its
  encoding and segment count computed (:mod:`.text`). Anything that can never be sent
  (invalid number, no sender for the country, too many segments, a missing template) ends
  the intent ``failed`` with the reason, never claimed, never retried;
* **send**: one HTTP GET to Kannel's smsbox ``sendsms`` interface (``coding`` set from the
  encoding, ``dlr-mask`` and a ``dlr-url`` back to this adapter). 2xx = accepted; a 4xx
  naming the receiver = permanent (number marked undeliverable); anything else
  (503 queue full, connection refused, timeouts, authentication) is temporary, retried;
* **delivery reports**: Kannel fetches the ``dlr-url``; the adapter records
  ``sms_delivered`` / ``sms_undelivered`` naming the intent, its Message-ID and the
  campaign (see :mod:`.endpoint`), and journals the Message-ID (any report proves that
  Kannel took the message);
* **inbound** (an ``sms-service`` ``get-url`` to the adapter): ``STOP`` and its variants
  withdraw the customer's SMS consent through the hub API and record ``unsubscribe``;
  ``HELP`` is answered with the help text; anything else is recorded as ``sms_received``.

Kannel's sendsms has no idempotency key, so a crash between Kannel's "Accepted" and the
journal's fsync cannot be resolved by resending under the same Message-ID, as email does:
the phone would get it twice. After such a crash the adapter waits (``dlr_grace``) for a
delivery report of that Message-ID — smsbox retries the reports that failed while the
adapter was down — and resends only if none comes (:meth:`SmsAdapter.confirm_unjournaled`).
A message Kannel holds longer than ``dlr_grace`` before its SMSC takes it can still go twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from shopkeeper.outbox import Message, Receipt

from ..delivery import ChannelAdapter, PermanentFailure, idem_key
from ..templating import names_variable
from .text import KANNEL_CODING, Encoded, Undeliverable, encode_info, normalise, pick_sender

#: built-in templates, ``NAME.txt`` (Jinja2 text); ``adapters.sms.templates`` entries of the same name win
TEMPLATES = Path(__file__).parent / "templates"


def builtin_template(name: str) -> str | None:
    """The text of the built-in template ``name`` (``templates/NAME.txt``), or None."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name or ""):
        return None
    p = TEMPLATES / f"{name}.txt"
    return p.read_text(encoding="utf-8") if p.is_file() else None


def template_names(section: dict[str, Any] | None = None) -> set[str]:
    """The templates this adapter can render with the settings ``section`` (raw): the inline
    ``templates`` and the built-in ones; what it declares through ``shopkeeper_message_templates``."""
    inline = (section or {}).get("templates") or {}
    return ({str(k) for k in inline} if isinstance(inline, dict) else set()) | {p.stem for p in TEMPLATES.glob("*.txt")}


STOP_WORDS = ["STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "OPT OUT",
              "ARRET", "STOPP", "ALTO"]
HELP_WORDS = ["HELP", "INFO", "AIDE", "HILFE"]


@dataclasses.dataclass
class SmsConfig:
    """Settings of the ``adapters.sms`` section (see ``docs/sms.md``)."""

    sendsms_url: str = "http://127.0.0.1:13013/cgi-bin/sendsms"  # Kannel smsbox's sendsms interface
    username: str = ""  # a sendsms-user of kannel.conf
    password: str = ""
    default_sender: str | None = None  # sender id or number where no rule of `senders` matches; null = none
    senders: dict[str, Any] = dataclasses.field(default_factory=dict)  # "+44": "ShopUK", "DE": "Shop", "+1": null
    default_region: str = "US"  # for numbers stored without a country code
    templates: dict[str, str] = dataclasses.field(default_factory=dict)  # NAME -> Jinja2 text
    max_segments: int = 6  # longer texts fail before sending (Kannel's sendsms-user max-messages must allow it)
    dlr_mask: int = 27  # 1 delivered, 2 undelivered (to the phone), 8 accepted, 16 rejected by the SMSC
    dlr_grace: float = 15.0  # seconds a send left unconfirmed by a crash waits for a delivery report before resending
    dlr_hold: float = 10.0  # seconds at most a report waits for its own send's sent mark (a report comes before it)
    http_listen: str | None = "127.0.0.1:0"  # delivery reports and inbound messages; null = not served
    public_url: str = ""  # how Kannel's smsbox reaches that endpoint; default http://<http_listen>
    token: str = ""  # secret path part of the endpoint's URLs (set it: DLR URLs must outlive a restart)
    help_text: str = "Reply STOP to stop messages."
    stop_reply: str = "You will get no more messages from us."
    stop_words: list[str] = dataclasses.field(default_factory=lambda: list(STOP_WORDS))
    help_words: list[str] = dataclasses.field(default_factory=lambda: list(HELP_WORDS))
    stop_purposes: list[str] = dataclasses.field(default_factory=lambda: ["marketing"])
    timeout: float = 10.0  # seconds per sendsms request
    # HTTP connections to smsbox kept open (and requests in flight to it). Smsbox answers a sendsms
    # that asks for a report after bearerbox queued it (p90 ~46 ms here): its rate scales with
    # connections, ~365/s on 8 and ~820/s on 32 (docs/benchmarks.md §61); each is a worker thread
    # blocked on its socket, not CPU
    connections: int = 32
    max_in_flight: int = 256
    retry_delays: list[float] = dataclasses.field(default_factory=lambda: [5.0, 30.0, 120.0, 600.0])
    journal: str | None = None  # delivery journal file (Message-IDs Kannel accepted)
    #: "K/N": deliver only the intents whose crc32(intent id) mod N is K (N remote adapter processes, each its
    #: own journal and endpoint); by intent, not customer: a merge never moves an intent to another process
    partition: str | None = None

    def __post_init__(self) -> None:
        if not self.sendsms_url.startswith(("http://", "https://")):
            raise ValueError(f"sendsms_url: {self.sendsms_url!r} is not an http(s) URL")
        if not 1 <= self.max_segments <= 255:
            raise ValueError("max_segments: between 1 and 255")
        if not 0 <= self.dlr_mask <= 31:
            raise ValueError("dlr_mask: a Kannel dlr-mask between 0 and 31")
        if self.dlr_grace < 0 or self.dlr_hold < 0:
            raise ValueError("dlr_grace, dlr_hold: seconds, not negative")
        if self.connections < 1:
            raise ValueError("connections: at least 1")
        for key in self.senders:
            if not (key.startswith("+") and key[1:].isdigit()) and not (len(key) == 2 and key.isalpha()):
                raise ValueError(f"senders: {key!r} must be a +prefix (\"+44\") or an ISO country code (\"GB\")")
        self.part()  # raises on a malformed "K/N"
        if self.http_listen is not None and not self.http_listen.rpartition(":")[2].isdigit():
            raise ValueError(f"http_listen: {self.http_listen!r} must be host:port")

    def part(self) -> tuple[int, int]:
        """``partition`` as ``(K, N)``; ``(0, 1)`` when unset (every intent)."""
        k, _, n = (self.partition or "0/1").partition("/")
        if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
            raise ValueError(f"partition: {self.partition!r} must be K/N with 0 <= K < N (\"0/2\", \"1/2\")")
        return int(k), int(n)


class _Hold:
    """A send Kannel may have accepted, until its sent mark is committed: reports for it wait."""

    __slots__ = ("marked", "riders", "open", "handover")

    def __init__(self, marked: asyncio.Future) -> None:
        self.marked = marked  # set once the mark is committed, or the send failed
        #: final reports that came before the mark was handed over: (event, its result's future)
        self.riders: list[tuple[dict[str, Any], asyncio.Future]] = []
        self.open = True  # reports may still join the mark's hand-over
        self.handover = -1  # the batcher's ``handovers`` once the mark is in its buffer (see on_dlr)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A message ready for Kannel."""

    to: str
    sender: str
    text: str
    encoded: Encoded


class SmsAdapter(ChannelAdapter):
    """SMS through Kannel: outbox delivery, delivery reports, STOP/HELP and inbound messages."""

    name = "sms"
    version = "0.1.0"
    Config = SmsConfig
    channels = ("sms",)
    sent_type = "message_sent"
    event_types = ("message_sent", "sms_delivered", "sms_undelivered", "sms_received", "unsubscribe")
    journals_on_send = True  # the sendsms worker journals the Message-ID once smsbox accepted (asend)
    contact_reads = True  # the customer's contact part is read; the whole view for templates naming `customer`

    def __init__(self, config: SmsConfig, hub: Any) -> None:
        super().__init__(config, hub)
        self.cfg = config
        self.token = config.token or secrets.token_urlsafe(16)
        if not config.token and config.http_listen:
            self.log.warning("sms: no token configured; delivery reports for messages sent before a restart "
                             "will be refused")
        self.stop_words = {" ".join(w.upper().split()) for w in config.stop_words}
        self.help_words = {" ".join(w.upper().split()) for w in config.help_words}
        self.http_port = 0
        self._sendsms: Any = None  # the keep-alive connections to smsbox (see astart)
        self._http_runner: Any = None  # the endpoint's aiohttp runner (see astart)
        self._env = self._make_env()
        self._names_customer: dict[str, bool] = {}  # template -> does it name `customer` (needs_full_view)
        self._part = config.part()
        self._prepared: dict[str, Prepared] = {}  # intent -> what was sent, for the sent event
        #: intent -> its send's hold until the sent mark is committed: reports wait there (see on_dlr)
        self._unmarked: dict[str, _Hold] = {}

    # -- lifecycle ------------------------------------------------------------------------

    async def astart(self) -> None:
        from .sendsms import SendsmsPool

        # ``connections`` keep-alive connections to smsbox through http.client on worker threads
        # (:mod:`.sendsms`; httpcore on this loop was ~46% of the loop's CPU per message)
        self._sendsms = SendsmsPool(self.cfg.sendsms_url, self.cfg.connections, self.cfg.timeout)
        if self.cfg.http_listen:
            await self._start_http()

    async def astop(self) -> None:
        if self._http_runner is not None:
            await self._http_runner.cleanup()
            self._http_runner = None
        if self._sendsms is not None:
            self._sendsms.close()
            self._sendsms = None

    async def _start_http(self) -> None:
        from .endpoint import serve

        host, _, port = self.cfg.http_listen.rpartition(":")  # type: ignore[union-attr]
        self._http_runner, self.http_port = await serve(self, host or "127.0.0.1", int(port))

    def base_url(self) -> str:
        host = (self.cfg.http_listen or "127.0.0.1:0").rpartition(":")[0] or "127.0.0.1"
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]") else host
        return (self.cfg.public_url or f"http://{host}:{self.http_port}").rstrip("/") + f"/kannel/{self.token}"

    # -- delivery (the cycle is ChannelAdapter's) -------------------------------------------

    def deliver(self, message: Message) -> Receipt | None:
        """Only the intents of this process's ``partition`` (the others are another process's)."""
        k, n = self._part
        if n > 1 and zlib.crc32(message.id.encode()) % n != k:
            return None
        return super().deliver(message)

    def address(self, message: Message, customer: dict[str, Any]) -> str | None:
        """The customer's first phone identity not marked undeliverable on SMS."""
        bad = set((customer.get("soft_facts", {}).get("undeliverable") or {}).get("value") or ())
        for ident in customer.get("identities", ()):
            if ident["namespace"] == "phone" and f"sms:{ident['value'].lower()}" not in bad:
                return ident["value"]
        return None

    def identity(self, message: Message, customer: dict[str, Any]) -> tuple[str, str] | None:
        for ident in customer.get("identities", ()):
            if ident["namespace"] == "phone":
                return ("phone", ident["value"])
        return super().identity(message, customer)

    def new_message_id(self, message: Message) -> str:
        return f"<sk.{message.id}.{message.customer_id}.{secrets.token_hex(6)}@sms.shopkeeper>"

    def needs_full_view(self, message: Message) -> bool:
        """Only a template that names ``customer`` (itself or a template it includes) reads more than the
        contact part of the view (identities, traits, soft facts: all the rest of a text needs)."""
        name = message.template or "default"
        if name not in self._names_customer:  # payload.text alone (no template) needs no view
            self._names_customer[name] = names_variable(self._env, name)
        return self._names_customer[name]

    def render(self, message: Message, customer: dict[str, Any], address: str, message_id: str) -> str:
        """The text for ``customer``: the Jinja2 template of ``adapters.sms.templates`` named by
        the intent, else ``payload.text`` as it is (a campaign renders its text per customer
        when it plans; it is never rendered again here, so customer data cannot inject template code)."""
        name = message.template or "default"
        if name in self.cfg.templates or builtin_template(name) is not None:
            traits = customer.get("traits") or {}
            ctx = {"customer": customer, "traits": traits, "first_name": traits.get("first_name") or traits.get("name"),
                   "phone": address, "payload": message.payload, "offer": message.payload.get("offer"),
                   "message_id": message_id, "intent": message.id}
            text = self._env.get_template(name).render(ctx).strip()
        elif isinstance(message.payload.get("text"), str):
            text = message.payload["text"].strip()
        else:
            raise ValueError(f"sms: no template named {name!r} under adapters.sms.templates and no payload.text")
        if not text:
            raise ValueError(f"sms: template {name!r} rendered an empty text")
        return text

    def prepare(self, message: Message, customer: dict[str, Any], address: str, message_id: str) -> Prepared:
        to, region = normalise(address, self.cfg.default_region)
        sender = pick_sender(to, region, self.cfg.senders, self.cfg.default_sender)
        text = self.render(message, customer, to, message_id)
        enc = encode_info(text)
        if enc.segments > self.cfg.max_segments:
            raise Undeliverable(f"the text needs {enc.segments} {enc.encoding} segments "
                                f"({enc.units} units); at most {self.cfg.max_segments} are allowed")
        return Prepared(to, sender, text, enc)

    def sent_data(self, message: Message, message_id: str) -> dict[str, Any]:
        data: dict[str, Any] = {"intent": message.id, "message_id": message_id, **_attribution(message)}
        prepared = self._prepared.pop(message.id, None)
        if prepared is not None:
            data.update(encoding=prepared.encoded.encoding, segments=prepared.encoded.segments,
                        sender=prepared.sender, to=prepared.to)
        return data

    def dlr_url(self, message: Message, message_id: str, to: str) -> str:
        """Where smsbox reports delivery: this adapter, naming the intent and Message-ID (Kannel
        fills ``%d`` with the report type and ``%A`` with the SMSC's answer)."""
        q = f"i={quote(message.id, safe='')}&m={quote(message_id, safe='')}&to={quote(to, safe='')}"
        for key, value in _attribution(message).items():
            q += f"&{ATTRIBUTION[key]}={quote(value, safe='')}"
        return f"{self.base_url()}/dlr?{q}&type=%d&reply=%A"

    async def asend(self, message: Message, customer: dict[str, Any], address: str, message_id: str,
                    prepared: Any = None) -> None:
        p: Prepared = prepared if prepared is not None else self.prepare(message, customer, address, message_id)
        params = {"username": self.cfg.username, "password": self.cfg.password, "from": p.sender, "to": p.to,
                  "text": p.text, "charset": "UTF-8", "coding": str(KANNEL_CODING[p.encoded.encoding])}
        if self.cfg.dlr_mask and self.cfg.http_listen:
            params["dlr-mask"] = str(self.cfg.dlr_mask)
            params["dlr-url"] = self.dlr_url(message, message_id, p.to)
        assert self._sendsms is not None
        # held before the request: smsbox's report can reach on_dlr before its answer reaches us
        if message.id not in self._unmarked:
            self._unmarked[message.id] = _Hold(asyncio.get_running_loop().create_future())
        try:
            status, content = await self._sendsms.get(urlencode(params), after=lambda: self.journal_sent(message_id))
        except BaseException:
            self._release(message.id)
            raise
        if 200 <= status < 300:
            self._prepared[message.id] = p
            return
        self._release(message.id)
        body = content.decode("utf-8", "replace").strip()[:200]
        if status in (400, 404) and _names_receiver(body):
            raise PermanentFailure(f"Kannel refused {p.to}: {status} {body}")
        raise RuntimeError(f"Kannel sendsms answered {status} {body}")  # temporary: retried

    async def _mark_sent(self, message: Message, who: tuple[str, str] | None, message_id: str) -> None:
        """Mark the intent sent — and record in the same hand-over, right after the mark, the final
        delivery reports that came before it (smsbox is often that quick): the writer applies them
        in that order in one group, so the report finds the intent ``sent`` as the reports' fast
        path needs, and the outbox tree and history bucket the two change are stored once, not
        once per group (5.1 records per SMS before, docs/sms.md *Throughput*)."""
        hold = self._unmarked.get(message.id)
        riders: list[tuple[dict[str, Any], asyncio.Future]] = []
        if hold is not None:
            hold.open = False  # a report from now on waits for the commit (hold.marked)
            riders, hold.riders = hold.riders, []
        try:
            if who is None:
                await super()._mark_sent(message, who, message_id)
            else:
                assert self.batcher is not None
                sent = self.event(self.sent_type, message.channel, who, self.sent_data(message, message_id),
                                  f"sent:{message.id}")
                # one request: the batcher keeps its items together and in order (one writer job)
                group = self.batcher.put_many([sent, *(ev for ev, _f in riders)])
                if hold is not None:  # a report coming before this hand-over joins it (on_dlr)
                    hold.handover = self.batcher.handovers
                results = await group
                if results[0]["status"] != "rejected":
                    self.stats["sent"] += 1
                for (_ev, fut), res in zip(riders, results[1:], strict=True):
                    if not fut.done():
                        fut.set_result(res)
        except BaseException as exc:
            for _ev, fut in riders:
                if not fut.done():
                    fut.set_exception(exc)
            raise
        finally:
            self._release(message.id)

    def _release(self, intent: str) -> None:
        """Reports held by :meth:`on_dlr` for ``intent`` go to the hub now (after its sent mark, or
        the send failed); reports still waiting to ride with a mark that will not come (the send
        failed) are told to go alone (None)."""
        hold = self._unmarked.pop(intent, None)
        if hold is None:
            return
        if not hold.marked.done():
            hold.marked.set_result(None)
        for _ev, fut in hold.riders:
            if not fut.done():
                fut.set_result(None)
        hold.riders = []

    async def confirm_unjournaled(self, message: Message, message_id: str) -> bool:
        """Kannel has no idempotency key, so a send the journal does not confirm is not simply
        repeated: any delivery report for its Message-ID proves Kannel took it (:meth:`on_dlr`
        journals it). Reports that failed while the adapter was down come again (smsbox's
        ``http-request-retry``), so wait up to ``dlr_grace`` seconds for one before resending."""
        if not (self.cfg.dlr_mask and self.cfg.http_listen and self.cfg.dlr_grace):
            return False
        deadline = asyncio.get_running_loop().time() + self.cfg.dlr_grace
        while asyncio.get_running_loop().time() < deadline and not self._stop.is_set():
            if message_id in self.journal:
                return True
            await asyncio.sleep(0.1)
        return message_id in self.journal

    # -- responses (called by the endpoint) -------------------------------------------------

    async def record(self, type_: str, phone: str, data: dict[str, Any], key: str) -> dict[str, Any]:
        assert self.batcher is not None
        return await self.batcher.record(self._response(type_, phone, data, key))

    def _response(self, type_: str, phone: str, data: dict[str, Any], key: str) -> dict[str, Any]:
        """The event a report or an inbound message records (validated by the hub like any other)."""
        return {"type": type_, "channel": "sms", "identities": [("phone", phone)],
                "data": {k: v for k, v in data.items() if v not in (None, "")},
                "idempotency_key": idem_key(self.name, key), "touchpoint": self.name}

    async def on_dlr(self, q: dict[str, str]) -> dict[str, Any] | None:
        """A delivery report from smsbox; None when it is not one of ours to record."""
        kind = _int(q.get("type"))
        mid, intent, to = q.get("m", ""), q.get("i", ""), q.get("to", "")
        if not (mid and intent and to) or kind is None:
            return None
        if kind & 1:
            type_, status = "sms_delivered", "delivered"
        elif kind & (2 | 16):
            type_, status = "sms_undelivered", "undelivered" if kind & 2 else "rejected"
        else:
            type_ = status = ""  # 4 buffered / 8 SMSC ack: not a final report, nothing to record
        attribution = {key: q.get(short) for key, short in ATTRIBUTION.items()}
        event = self._response(type_, to, {"intent": intent, "message_id": mid, **attribution, "dlr": kind,
                                           "status": status, "reason": q.get("reply")},
                               f"dlr:{mid}:{kind}") if type_ else None
        res: dict[str, Any] | None = None
        hold = self._unmarked.get(intent)
        if hold is not None:
            # Kannel took the send and this adapter is journaling it and marking it sent. A report
            # recorded before that mark found the intent still "sending": an undelivered one changed
            # nothing and the mark then made the intent "sent"; a delivered one missed the reports'
            # fast path and rewrote the customer record (half of them in bench_sms, §65). So a final
            # report rides with the mark (:meth:`_mark_sent`: the same hand-over, after it) while
            # the mark is not yet handed over, and waits for the mark's commit after that.
            # Smsbox's request waits meanwhile; the journal has the Message-ID once the mark is made.
            if event is not None and hold.open:
                res = await self._ride(hold, event)
            elif event is not None and hold.handover == self.batcher.handovers:  # type: ignore[union-attr]
                # the mark waits in the batcher for company: this report goes in that hand-over, after it
                res = await self.batcher.record(event)  # type: ignore[union-attr]
            if res is None:
                await asyncio.wait([hold.marked], timeout=self.cfg.dlr_hold)
        if mid not in self.journal:  # any report proves Kannel took the message: never send it again
            await asyncio.to_thread(self.journal.add, mid)
        if event is None:
            return {"status": "ignored"}
        if res is None:
            assert self.batcher is not None
            res = await self.batcher.record(event)
        if res["status"] != "rejected":
            self.stats["reports"] = self.stats.get("reports", 0) + 1
        return res

    async def _ride(self, hold: _Hold, event: dict[str, Any]) -> dict[str, Any] | None:
        """Hand ``event`` to the sent mark ``hold`` waits for and return its result; None when it
        must go alone (the send failed, or no mark came within ``dlr_hold``)."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        rider = (event, fut)
        hold.riders.append(rider)
        done, _ = await asyncio.wait([fut], timeout=self.cfg.dlr_hold)
        if not done and rider in hold.riders:  # no mark in time: withdrawn, recorded alone
            hold.riders.remove(rider)
            return None
        return await fut  # handed over with the mark (or told to go alone): its result

    def keyword(self, text: str) -> str:
        """``stop`` / ``help`` / ``""`` for an inbound text."""
        words = " ".join(text.upper().replace(".", " ").replace("!", " ").split())
        if words in self.stop_words or words.split(" ")[0] in self.stop_words:
            return "stop"
        if words in self.help_words or words.split(" ")[0] in self.help_words:
            return "help"
        return ""

    async def on_inbound(self, sender: str, receiver: str, text: str, kannel_id: str) -> str:
        """An inbound SMS; returns the reply text ("" = none)."""
        phone, _region = normalise(sender, self.cfg.default_region)
        key = kannel_id or f"{phone}:{receiver}:{text}"
        kw = self.keyword(text)
        if kw == "stop":
            res = await self.record("unsubscribe", phone, {"keyword": text.strip()[:40], "to": receiver,
                                                           "purpose": ",".join(self.cfg.stop_purposes)},
                                    f"mo:{key}")
            if res["status"] == "rejected":
                raise RuntimeError(f"recording the STOP failed: {res.get('error')}")
            for purpose in self.cfg.stop_purposes:
                await asyncio.to_thread(self.hub.set_consent, ("phone", phone), "sms", purpose, False, "sms:STOP")
            return self.cfg.stop_reply
        res = await self.record("sms_received", phone, {"text": text[:1600], "to": receiver, "keyword": kw or None},
                                f"mo:{key}")
        if res["status"] == "rejected":
            raise RuntimeError(f"recording the inbound message failed: {res.get('error')}")
        return self.cfg.help_text if kw == "help" else ""

    # -- templates --------------------------------------------------------------------------

    def _make_env(self) -> Any:
        import jinja2

        loader = jinja2.ChoiceLoader([jinja2.DictLoader(dict(self.cfg.templates)),
                                      jinja2.FunctionLoader(builtin_template)])
        return jinja2.Environment(loader=loader, autoescape=False,
                                  undefined=jinja2.ChainableUndefined, auto_reload=False, cache_size=400)


#: what a campaign's intent carries in its payload to attribute responses (-> short DLR URL parameter)
ATTRIBUTION = {"campaign": "c", "run": "r", "message": "k"}


def _attribution(message: Message) -> dict[str, str]:
    return {k: str(message.payload[k]) for k in ATTRIBUTION if message.payload.get(k)}


def _names_receiver(body: str) -> bool:
    low = body.lower()
    return any(w in low for w in ("receiver", "number(s) has been denied", "to-number", "phone number"))


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


__all__ = ["SmsAdapter", "SmsConfig", "Prepared", "STOP_WORDS", "HELP_WORDS"]
