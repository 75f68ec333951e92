"""Inbound SMS (smsbox's ``sms-service`` ``get-url`` to the adapter): ``STOP`` and its variants withdraw
the customer's SMS consent and record ``unsubscribe``; ``HELP`` is answered with the help text;
anything else is recorded as ``sms_received``.

Its own module: what a customer's reply means is a job apart from sending and from delivery reports.
"""

from __future__ import annotations

import asyncio

from .reports import DeliveryReports
from .text import normalise


class Inbound(DeliveryReports):
    """The inbound half of :class:`~shopkeeper.adapters.sms.SmsAdapter` (a mixin): expects
    ``stop_words`` and ``help_words`` (normalised, upper case)."""

    stop_words: set[str]
    help_words: set[str]

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


__all__ = ["Inbound"]
