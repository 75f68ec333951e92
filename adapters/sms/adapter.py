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

This module is the delivery loop's part (prepare, send, the sent event); the settings are in
:mod:`.config`, the delivery reports in :mod:`.reports`, the inbound messages in :mod:`.inbound`,
the HTTP transports in :mod:`.sendsms` and :mod:`.endpoint`, the text's encoding in :mod:`.text`.

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
import secrets
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

from shopkeeper.outbox import Message

from ..delivery import PermanentFailure
from ..templating import names_variable
from .config import HELP_WORDS, STOP_WORDS, TEMPLATES, SmsConfig, builtin_template, template_names
from .inbound import Inbound
from .reports import ATTRIBUTION, _attribution, _Hold
from .text import KANNEL_CODING, Encoded, Undeliverable, encode_info, normalise, pick_sender


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A message ready for Kannel."""

    to: str
    sender: str
    text: str
    encoded: Encoded


class SmsAdapter(Inbound):
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
        self._templates: dict[str, Any] = {}  # name -> compiled template (see _template)
        self._prepared: dict[str, Prepared] = {}  # intent -> what was sent, for the sent event
        #: (base URL, the sendsms query's encoded constant parts) for sendsms_query, made once per base URL
        self._query_parts: tuple[str, str, str, str, str] | None = None
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
            text = self._template(name).render(ctx).strip()
        elif isinstance(message.payload.get("text"), str):
            text = message.payload["text"].strip()
        else:
            raise ValueError(f"sms: no template named {name!r} under adapters.sms.templates and no payload.text")
        if not text:
            raise ValueError(f"sms: template {name!r} rendered an empty text")
        return text

    def _template(self, name: str) -> Any:
        """The compiled template ``name``, its globals a plain dict: Jinja2 keeps them as a ChainMap over
        the environment's and copies them into every render's context by iterating it in Python (as
        email's renderer found, docs/benchmarks.md §74); nothing changes the globals after start."""
        t = self._templates.get(name)
        if t is None:
            t = self._templates[name] = self._env.get_template(name)
            t.globals = dict(t.globals)
        return t

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

    def sendsms_query(self, message: Message, message_id: str, p: Prepared) -> str:
        """The sendsms request's query string: exactly ``urlencode`` of its parameters (``username``,
        ``password``, ``from``, ``to``, ``text``, ``charset``, ``coding`` and, with reports, ``dlr-mask``
        and the :meth:`dlr_url`), built from parts encoded once where urlencode encoded everything per
        message, the DLR URL twice, a character at a time (~25 µs of the loop per SMS, half of it the
        DLR URL). A value that went through ``quote(v, safe="")`` holds only unreserved characters and
        ``%XX``, so quoting it again only turns ``%`` into ``%25``."""
        const = self._query_parts
        if const is None or const[0] != self.base_url():
            base = self.base_url()
            const = self._query_parts = (
                base, urlencode({"username": self.cfg.username, "password": self.cfg.password}),
                quote_plus(f"{base}/dlr?i="), quote_plus("&type=%d&reply=%A"), f"&dlr-mask={self.cfg.dlr_mask}")
        q = (f"{const[1]}&from={quote_plus(p.sender)}&to={quote_plus(p.to)}&text={quote_plus(p.text)}"
             f"&charset=UTF-8&coding={KANNEL_CODING[p.encoded.encoding]}")
        if not (self.cfg.dlr_mask and self.cfg.http_listen):
            return q
        url = [const[2], _twice(message.id), "%26m%3D", _twice(message_id), "%26to%3D", _twice(p.to)]
        for key, value in _attribution(message).items():
            url += ["%26", ATTRIBUTION[key], "%3D", _twice(value)]
        return "".join((q, const[4], "&dlr-url=", *url, const[3]))

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
        query = self.sendsms_query(message, message_id, p)
        assert self._sendsms is not None
        # held before the request: smsbox's report can reach on_dlr before its answer reaches us
        if message.id not in self._unmarked:
            self._unmarked[message.id] = _Hold(asyncio.get_running_loop().create_future())
        try:
            status, content = await self._sendsms.get(query, after=lambda: self.journal_sent(message_id))
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

    # -- templates --------------------------------------------------------------------------

    def _make_env(self) -> Any:
        import jinja2

        loader = jinja2.ChoiceLoader([jinja2.DictLoader(dict(self.cfg.templates)),
                                      jinja2.FunctionLoader(builtin_template)])
        return jinja2.Environment(loader=loader, autoescape=False,
                                  undefined=jinja2.ChainableUndefined, auto_reload=False, cache_size=400)


def _twice(value: str) -> str:
    """``quote(quote(value, safe=""), safe="")``: a DLR URL's value as it stands in the sendsms query."""
    return quote(value, safe="").replace("%", "%25")


def _names_receiver(body: str) -> bool:
    low = body.lower()
    return any(w in low for w in ("receiver", "number(s) has been denied", "to-number", "phone number"))


# TEMPLATES, builtin_template, template_names, STOP_WORDS, HELP_WORDS, SmsConfig and ATTRIBUTION lived here
# before the split by job (config, reports, inbound): still importable from this module
__all__ = ["SmsAdapter", "SmsConfig", "Prepared", "STOP_WORDS", "HELP_WORDS", "TEMPLATES", "ATTRIBUTION",
           "builtin_template", "template_names"]
