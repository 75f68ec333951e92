"""One intent's delivery cycle: read -> address -> prepare -> claim -> send -> journal -> mark.

:class:`DeliveryCycle` is the half of :class:`~shopkeeper.adapters.delivery.ChannelAdapter` that
runs on the adapter's event loop for each intent it was handed (the module docstring of
:mod:`shopkeeper.adapters.delivery` states the cycle and what a crash at each step leaves); the
other half (the loop's thread, the hand-over, the sweep) stays there. Split out of ``delivery.py``
by job when it reached the 520-line cap; ``PermanentFailure``, ``JournalFailed`` and ``idem_key``
are re-exported there under their old names.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from shopkeeper import outbox
from shopkeeper.customer import now_us
from shopkeeper.events import Event
from shopkeeper.outbox import FINAL, SENDING, Message


class PermanentFailure(Exception):
    """The far end refused for good (an SMTP 5xx, an HTTP 4xx): not retried; the intent fails
    and the address is marked undeliverable."""


class JournalFailed(Exception):
    """The far end accepted the message but its Message-ID could not be journaled (a disk error):
    not a failed send, so never retried as one. The intent stays ``sending`` under its Message-ID
    for the next sweep, as when the journal's own hand-over failed."""


def idem_key(prefix: str, text: str) -> str:
    """An idempotency key for ``text`` (Message-IDs hold ``<>@``, which keys may not)."""
    kind, _, rest = text.partition(":")
    return f"{prefix}:{kind}:{hashlib.sha256(rest.encode()).hexdigest()[:32]}"


class DeliveryCycle:
    """The per-intent cycle of a channel adapter (a mixin of ``ChannelAdapter``, whose state and
    hooks — ``address``, ``prepare``, ``asend``, the journal, the batchers — it uses)."""

    async def _read(self, message: Message) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(what the hub knows of the intent, the customer's view); the intent part is None
        when the hub API cannot say (remote: ``message`` came from the hub's pending list)."""
        if self.reader is not None:
            return await self.reader.get((message.customer_id, message.id))
        view = await asyncio.to_thread(self.hub.customer, message.customer_id, 0)
        return None, view

    def identity(self, message: Message, customer: dict[str, Any]) -> tuple[str, str] | None:
        """The identity the bookkeeping events carry: it must resolve to the intent's customer
        (the hub refuses a claim for someone else's intent). Default: the address when it is an
        identity in the channel's namespace, else the customer's first identity."""
        ids = [(i["namespace"], i["value"]) for i in customer.get("identities", ())]
        for pair in ids:
            if pair[0] == message.channel:
                return pair
        return ids[0] if ids else None

    async def _book(self, type_: str, message: Message, who: tuple[str, str] | None, data: dict[str, Any],
                    key: str) -> dict[str, Any]:
        """Record a claim or delivery report: an ordinary event, through the one apply loop."""
        assert self.batcher is not None
        if who is None:
            return {"status": "rejected", "field": "identities", "error": "the customer has no identity left"}
        return await self.batcher.record(self.event(type_, message.channel, who, data, key))

    def event(self, type_: str, channel: str, who: tuple[str, str], data: dict[str, Any], key: str) -> Any:
        """An event this adapter records (``data`` without None values; ``key`` made an idempotency
        key): in the hub's process the ``Event`` the hub's validation would make of the dict
        (the identity comes from the hub or the adapter's own normalisation, the data from this
        class), which the hub takes as it is (``InProcessHub.record_async``); remote, the dict."""
        data = {k: v for k, v in data.items() if v is not None}
        if self.hub.mode == "in-process":
            return Event(type_, channel, now_us(), [who], idem_key(self.name, key), data, self.name, stamped=True)
        return {"type": type_, "channel": channel, "identities": [who], "data": data,
                "idempotency_key": idem_key(self.name, key), "touchpoint": self.name}

    async def _suppress(self, message: Message, who: tuple[str, str] | None, reason: str) -> None:
        self.stats["suppressed"] += 1
        await self._book("message_failed", message, who,
                         {"intent": message.id, "status": "suppressed", "reason": reason}, f"failed:{message.id}")

    async def _fail(self, message: Message, who: tuple[str, str] | None, address: str, reason: str,
                    permanent: bool) -> None:
        self.stats["failed"] += 1
        await self._book("message_failed", message, who,
                         {"intent": message.id, "status": "failed", "reason": reason[:500],
                          "permanent": True if permanent else None, "address": address if permanent else None},
                         f"failed:{message.id}")

    async def _mark_sent(self, message: Message, who: tuple[str, str] | None, message_id: str) -> None:
        res = await self._book(self.sent_type, message, who, self.sent_data(message, message_id),
                               f"sent:{message.id}")
        if res["status"] != "rejected":
            self.stats["sent"] += 1

    async def _process(self, message: Message) -> None:
        """One intent through claim -> send -> mark (see the module docstring)."""
        if self._stop.is_set():
            return
        item, view = await self._read(message)
        if view is None:
            return  # the customer is gone (erased): nothing to send to
        if item is None and not message.status:
            return  # a bare ref (pending_scan) whose intent is no longer there
        status, message_id = message.status, message.message_id if message.status == SENDING else ""
        if item is not None:
            # the intent as it stands now (a bare ref from a scan carries nothing else)
            message = Message.from_item(view.get("id") or message.customer_id, item, message.cursor)
            status = item.get("status")
            message_id = item.get("message_id") if status == SENDING else ""
        if status in FINAL:
            return
        if message.not_before > outbox.clock():  # the hub's clock where it runs here (tests move it)
            # deferred (quiet hours), listed by a bare scan: a later scan hands it over when due
            # (the claim would be refused with not_before; this spares the hub that round trip)
            self.stats["deferred"] += 1
            return
        if view.get("view") == "contact" and self.needs_full_view(message):
            view = await asyncio.to_thread(self.hub.customer, view.get("id") or message.customer_id, 0)
            if view is None:
                return
        who = self.identity(message, view)
        if message_id and (message_id in self.journal or await self.confirm_unjournaled(message, message_id)):
            self.stats["recovered"] += 1  # crash after delivery, before "sent"
            await self._mark_sent(message, who, message_id)
            return
        address = self.address(message, view)
        if address is None:
            await self._suppress(message, who, f"no deliverable {message.channel} address")
            return
        message_id = message_id or self.new_message_id(message)
        try:
            prepared = self.prepare(message, view, address, message_id)
        except Exception as exc:  # noqa: BLE001 - a missing template, a template error: it will never work
            # PermanentFailure here: the address itself is wrong (an invalid number): mark it undeliverable
            await self._fail(message, who, address, f"cannot prepare the message: {exc}",
                             permanent=isinstance(exc, PermanentFailure))
            return
        claim = await self._book("message_dispatch", message, who, {"intent": message.id, "message_id": message_id},
                                 f"dispatch:{message.id}:{message_id}")
        if claim["status"] == "rejected":
            if claim.get("field") in ("consent", "contact_policy"):
                await self._suppress(message, who, claim.get("error") or "no consent")
            elif claim.get("field") == "not_before":  # quiet hours: the sweep brings it back when due
                self.stats["deferred"] += 1
                self.rescan_due = True
            else:
                self.stats["refused"] += 1
                self.rescan_due = True
                self.log.info("%s: claim of %s refused: %s", self.name, message.id, claim.get("error"))
            return
        delays = list(self.retry_delays)
        while True:
            try:
                await self.asend(message, view, address, message_id, prepared)
                break
            except PermanentFailure as exc:
                await self._fail(message, who, address, str(exc), permanent=True)
                return
            except JournalFailed:
                raise  # sent: left "sending" for the next sweep, never sent again as a retry
            except Exception as exc:  # temporary: connection refused, timeout, 4xx/5xx the channel retries
                if self._stop.is_set():
                    # left "sending" with its Message-ID: the next start sends it again with the same one
                    self.log.warning("%s: stopping; %s left for the next start: %s", self.name, message.id, exc)
                    return
                if not delays:
                    await self._fail(message, who, address, f"temporary failures, retries exhausted: {exc}", False)
                    return
                self.stats["retried"] += 1
                delay = delays.pop(0)
                self.log.info("%s: temporary failure for %s (%s); retry in %.1f s", self.name, message.id, exc, delay)
                await asyncio.sleep(delay)
        if not self.journals_on_send:
            await asyncio.to_thread(self.journal.add, message_id)
        await self._mark_sent(message, who, message_id)
