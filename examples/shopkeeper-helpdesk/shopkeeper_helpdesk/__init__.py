"""Helpdesk channel: outbox messages on channel ``helpdesk`` become tickets, POSTed as JSON.

A channel adapter written only against the public plugin API: it subclasses
``ChannelAdapter`` and implements ``send``; the claim -> send -> mark cycle, consent, the
fsync'd delivery journal and crash recovery come from Shopkeeper. It runs inside the hub
(``adapters: {helpdesk: {url: ...}}``) or as its own process (``shopkeeper adapter run helpdesk``).

Each POST carries the Message-ID as its ``Idempotency-Key`` header, so a helpdesk that keys
on it creates one ticket even when a crash makes the adapter send the same message again.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from typing import Any

from shopkeeper import hookimpl
from shopkeeper.adapters.base import ChannelAdapter, PermanentFailure

__version__ = "0.1.0"


@dataclasses.dataclass
class HelpdeskConfig:
    url: str  # the helpdesk's ticket endpoint (POST, JSON)
    token: str = ""  # sent as "Authorization: Bearer <token>" when set
    timeout: float = 10.0
    journal: str | None = None  # delivery journal file: set it in production
    retry_delays: list[float] = dataclasses.field(default_factory=lambda: [1.0, 5.0, 30.0])

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url: {self.url!r} must be an http(s) URL")


class HelpdeskAdapter(ChannelAdapter):
    name = "helpdesk"
    version = __version__
    Config = HelpdeskConfig
    channels = ("helpdesk",)

    def address(self, message: Any, customer: dict[str, Any]) -> str | None:
        """Tickets are opened for the customer's email address."""
        for ident in customer.get("identities", ()):
            if ident["namespace"] == "email":
                return ident["value"]
        return None

    def send(self, message: Any, customer: dict[str, Any], address: str, message_id: str,
             prepared: Any = None) -> None:
        body = json.dumps({"requester": address, "subject": message.payload.get("subject") or message.template,
                           "template": message.template, "payload": message.payload, "customer_id": customer["id"],
                           "message_id": message_id}).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": message_id}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        req = urllib.request.Request(self.config.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (400, 401, 403, 404, 410, 422):
                raise PermanentFailure(f"helpdesk refused: {exc.code} {exc.reason}") from exc
            raise  # 5xx, 429: temporary, retried


@hookimpl
def shopkeeper_adapters() -> list[type]:
    return [HelpdeskAdapter]
