"""The ``adapters.sms`` settings and what they name: the built-in templates, the STOP and HELP words.

Its own module because reading and checking the configuration is a job apart from the delivery
loop (:mod:`.adapter`) and the delivery reports (:mod:`.reports`); ``shopkeeper adapter check sms``
and the hub's template check need it without the adapter's machinery.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

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
        from ..delivery import parse_partition

        parse_partition(self.partition)  # raises on a malformed "K/N" (``ChannelAdapter`` filters by it)
        if self.http_listen is not None and not self.http_listen.rpartition(":")[2].isdigit():
            raise ValueError(f"http_listen: {self.http_listen!r} must be host:port")


__all__ = ["SmsConfig", "STOP_WORDS", "HELP_WORDS", "TEMPLATES", "builtin_template", "template_names"]
