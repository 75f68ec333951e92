"""Delivery reports: smsbox's ``dlr-url`` requests recorded as ``sms_delivered`` / ``sms_undelivered``,
and the order they must keep with their own send's sent mark.

Its own module because this is the SMS adapter's one piece of state shared between the send and
the endpoint: a report often reaches :meth:`DeliveryReports.on_dlr` before the sendsms answer
reaches the delivery loop (smsbox is that quick). Such a report *rides* with the sent mark (one
writer job, the mark first: the report then finds the intent ``sent``, the reports' fast path,
and the customer's outbox tree and history bucket are stored once), or waits for the mark's commit
when the mark was already handed over (docs/benchmarks.md §76).

Any report also proves Kannel took the message: its Message-ID is journaled, so a send that a crash
left unconfirmed is not sent again (:meth:`DeliveryReports.confirm_unjournaled`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from shopkeeper.outbox import Message

from ..delivery import ChannelAdapter, idem_key

#: what a campaign's intent carries in its payload to attribute responses (-> short DLR URL parameter)
ATTRIBUTION = {"campaign": "c", "run": "r", "message": "k"}


class _Hold:
    """A send Kannel may have accepted, until its sent mark is committed: reports for it wait."""

    __slots__ = ("marked", "riders", "open", "handover")

    def __init__(self, marked: asyncio.Future) -> None:
        self.marked = marked  # set once the mark is committed, or the send failed
        #: final reports that came before the mark was handed over: (event, its result's future)
        self.riders: list[tuple[dict[str, Any], asyncio.Future]] = []
        self.open = True  # reports may still join the mark's hand-over
        self.handover = -1  # the batcher's ``handovers`` once the mark is in its buffer (see on_dlr)


class DeliveryReports(ChannelAdapter):
    """The delivery-report half of :class:`~shopkeeper.adapters.sms.SmsAdapter` (a mixin over
    :class:`~shopkeeper.adapters.delivery.ChannelAdapter`): the holds, the riders, ``on_dlr``.
    Expects ``cfg`` (an ``SmsConfig``) and ``_unmarked`` (intent -> :class:`_Hold`)."""

    cfg: Any
    _unmarked: dict[str, _Hold]

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
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        rider = (event, fut)
        hold.riders.append(rider)
        # one timer, not asyncio.wait (a waiter future, a callback per future and a set per report)
        timer = loop.call_later(self.cfg.dlr_hold, _withdraw, hold, rider)
        try:
            return await fut  # handed over with the mark (or told to go alone, or withdrawn: None)
        finally:
            timer.cancel()


def _withdraw(hold: _Hold, rider: tuple[dict[str, Any], asyncio.Future]) -> None:
    """No mark came within ``dlr_hold``: the report leaves the hold and is recorded alone (None)."""
    if rider in hold.riders:
        hold.riders.remove(rider)
        if not rider[1].done():
            rider[1].set_result(None)


def _attribution(message: Message) -> dict[str, str]:
    return {k: str(message.payload[k]) for k in ATTRIBUTION if message.payload.get(k)}


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


__all__ = ["ATTRIBUTION", "DeliveryReports"]
