"""The SMS adapter against a real Kannel (bearerbox + smsbox + fakesmsc, see ``kannel.py``):
sending, delivery reports, STOP/HELP/inbound, encodings and segments, sender rules, numbers
that cannot be sent to — and the channel conformance kit in both adapter modes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from urllib.parse import urlencode

import pytest

from shopkeeper import outbox
from shopkeeper.adapters.sms import SmsAdapter
from shopkeeper.testing import ChannelConformance, HubHarness

pytestmark = pytest.mark.e2e

SHORTCODE = "12345"
TEMPLATES = {"code": "Your code {{ message_id }}", "hello": "Hi {{ first_name or 'there' }}, {{ payload.deal }}"}


def _config(kannel: Any, tmp_path: Any, **extra: Any) -> dict[str, Any]:
    return kannel.adapter_config(journal=str(tmp_path / "sms-journal.log"), retry_delays=[0.2, 0.5],
                                 templates=TEMPLATES, **extra)


class TestSmsConformance(ChannelConformance):
    adapter_class = SmsAdapter
    channel = "sms"
    template = "code"  # the text carries the Message-ID, so the far end's copy names its intent
    numbers = {"ann": "+447400100001", "bob": "+447400100002", "cat": "+447400100003", "mal": "+447400100004",
               "bea": "+447400100005"}

    @pytest.fixture(autouse=True)
    def _kannel(self, kannel: Any) -> None:
        self.kannel = kannel
        self.since = len(kannel.received())  # the Kannel is shared: count only this test's messages

    def identities(self, who: str) -> dict[str, str]:
        # the kit may name any customer: give each new name the next number in the same valid UK mobile range
        return {"phone": self.numbers.setdefault(who, f"+4474001{len(self.numbers) + 1:05d}")}

    def adapter_config(self, tmp_path: Any) -> dict[str, Any]:
        return _config(self.kannel, tmp_path)

    def delivered(self, harness: HubHarness, adapter: Any) -> list[str]:
        return [m["text"] for m in self.kannel.settle()[self.since:]]


# -- helpers ---------------------------------------------------------------------------------


def _customer(h: HubHarness, phone: str, consent: bool = True, **traits: Any) -> dict[str, Any]:
    res = h.send({"type": "identify", "identities": {"phone": phone}, "traits": traits})
    assert res[0]["status"] == "applied", res
    if consent:
        h.grant(("phone", phone), "sms")
    return h.customer(("phone", phone))  # type: ignore[return-value]


def _request(h: HubHarness, phone: str, intent: str, template: str = "code", **payload: Any) -> None:
    res = h.send({"type": "message_request", "channel": "sms", "identities": {"phone": phone},
                  "idempotency_key": f"rq-{intent}", "data": {"template": template, "intent": intent, **payload}})
    assert res[0]["status"] == "applied", res


def _item(h: HubHarness, cid: str, intent: str) -> Any:
    with h.hub.store.read() as f:
        return outbox.get(f.customer(cid), intent)


def _final(h: HubHarness, cid: str, intent: str) -> Any:
    h.wait_for(lambda: (it := _item(h, cid, intent)) is not None and it.status in outbox.FINAL,
               what=f"intent {intent} to end")
    return _item(h, cid, intent)


# -- sending and delivery reports -----------------------------------------------------------------


def test_send_records_encoding_segments_and_the_delivery_report(shopkeeper_hub: HubHarness, adapter_mode: str,
                                                                kannel: Any, tmp_path: Any) -> None:
    h = shopkeeper_hub
    phone = "+447400200001" if adapter_mode == "in-process" else "+447400200002"
    c = _customer(h, phone)
    with h.run_adapter(SmsAdapter, _config(kannel, tmp_path), adapter_mode):
        _request(h, phone, f"hello-{adapter_mode}", template="hello", deal="2 for 1 today", campaign="xmas",
                 run="r1", message="sms")
        assert _final(h, c["id"], f"hello-{adapter_mode}").status == outbox.SENT
        got = h.wait_for(lambda: kannel.to(phone), what="the SMS at the fake SMSC")
        dlr = h.wait_for(lambda: h.interactions(("phone", phone), "sms_delivered"), what="the delivery report")
    assert [(m["sender"], m["text"]) for m in got] == [("ShopCo", "Hi there, 2 for 1 today")]
    sent = h.interactions(("phone", phone), "message_sent")
    assert len(sent) == 1
    assert {k: sent[0]["data"].get(k) for k in ("encoding", "segments", "sender", "to", "campaign")} == \
        {"encoding": "gsm7", "segments": 1, "sender": "ShopCo", "to": phone, "campaign": "xmas"}
    assert len(dlr) == 1
    assert dlr[0]["data"]["intent"] == f"hello-{adapter_mode}"
    assert {k: dlr[0]["data"].get(k) for k in ("campaign", "run", "message")} == \
        {"campaign": "xmas", "run": "r1", "message": "sms"}
    assert dlr[0]["data"]["message_id"] == sent[0]["data"]["message_id"]


@pytest.mark.parametrize(("kind", "status", "recorded"), [("2", outbox.FAILED, "sms_undelivered"),
                                                       ("1", outbox.SENT, "sms_delivered")])
def test_a_report_that_comes_before_the_sent_mark_is_recorded_after_it(shopkeeper_hub: HubHarness, kannel: Any,
                                                                      tmp_path: Any, kind: str, status: str,
                                                                      recorded: str) -> None:
    """Smsbox can report a text before the adapter has marked it sent (journal, then the mark's
    group): recorded then, an undelivered report found the intent "sending" and changed nothing,
    and the mark made it "sent"; a delivered one missed the reports' fast path (``dlr_key``)."""
    import httpx

    h = shopkeeper_hub
    phone = f"+44740020001{kind}"
    c = _customer(h, phone)
    marking, release, reporting = threading.Event(), threading.Event(), threading.Event()
    # dlr_mask 16 (rejected by the SMSC): the fake SMSC accepts everything, so Kannel reports nothing itself
    with h.run_adapter(SmsAdapter, _config(kannel, tmp_path, dlr_mask=16), "in-process") as adapter:
        mark, on_dlr = adapter._mark_sent, adapter.on_dlr

        async def held_mark(*args: Any) -> None:
            marking.set()
            await asyncio.to_thread(release.wait, 30)
            await mark(*args)

        async def seen_dlr(q: dict[str, str]) -> Any:
            reporting.set()
            return await on_dlr(q)

        adapter._mark_sent, adapter.on_dlr = held_mark, seen_dlr
        _request(h, phone, f"early-{kind}")
        assert marking.wait(30), "the send was not marked"
        mid = _item(h, c["id"], f"early-{kind}").message_id
        url = f"{adapter.base_url()}/dlr?" + urlencode({"i": f"early-{kind}", "m": mid, "to": phone, "type": kind,
                                                        "reply": "NACK/" if kind == "2" else "ACK/"})
        answer: dict[str, Any] = {}
        report = threading.Thread(target=lambda: answer.update(r=httpx.get(url, timeout=30)))
        report.start()
        assert reporting.wait(30), "the report did not reach the adapter"
        release.set()
        report.join(30)
        h.wait_for(lambda: h.interactions(("phone", phone), recorded), what="the report")
        item = _final(h, c["id"], f"early-{kind}")
        if kind == "2":  # the mark commits first, the report after it
            item = h.wait_for(lambda: (it := _item(h, c["id"], "early-2")).status == outbox.FAILED and it,
                              what="the undelivered report to end the intent failed")
    assert answer["r"].status_code == 200, answer["r"].text
    assert item.status == status, item
    assert item.dlr_key, "the report missed the reports' fast path (it came before the sent mark)"
    assert len(h.interactions(("phone", phone), recorded)) == 1


@pytest.mark.parametrize("when", ["before the mark is handed over", "while the mark waits in the batcher"])
def test_a_report_before_the_sent_mark_commits_goes_to_the_writer_with_it(shopkeeper_hub: HubHarness, kannel: Any,
                                                                          tmp_path: Any, when: str) -> None:
    """One writer job — the mark, then the report — instead of a group each: the outbox tree and the
    history bucket both change are stored once (docs/sms.md, *Throughput*); the order keeps the
    report on its fast path and an undelivered one ending the intent failed."""
    import httpx

    h = shopkeeper_hub
    phone = "+447400200021" if when.startswith("before") else "+447400200022"
    intent = f"ride-{phone[-2:]}"
    c = _customer(h, phone)
    writer = h.hub.engine.writer
    jobs: list[list[tuple[str, str]]] = []
    submit = writer.submit_events

    def seen(events: Any, *args: Any, **kw: Any) -> Any:
        jobs.append([(e.type, e.data.get("intent", "")) for e in events])
        return submit(events, *args, **kw)

    handed, release = threading.Event(), threading.Event()
    writer.submit_events = seen
    try:
        with h.run_adapter(SmsAdapter, _config(kannel, tmp_path, dlr_mask=16), "in-process") as adapter:
            mark, put_many = adapter._mark_sent, adapter.batcher.put_many

            async def held_mark(*args: Any) -> None:
                handed.set()
                await asyncio.to_thread(release.wait, 30)
                await mark(*args)

            def slow_put_many(events: list[Any]) -> Any:
                adapter.batcher.max_delay = 30.0  # the mark waits in the batcher until the report joins it
                fut = put_many(events)
                handed.set()
                return fut

            if when.startswith("before"):
                adapter._mark_sent = held_mark
            else:
                adapter.batcher.put_many = slow_put_many
            _request(h, phone, intent)
            assert handed.wait(30), "the send was not marked"
            mid = _item(h, c["id"], intent).message_id
            url = f"{adapter.base_url()}/dlr?" + urlencode({"i": intent, "m": mid, "to": phone, "type": "2",
                                                            "reply": "NACK/"})
            answer: dict[str, Any] = {}
            report = threading.Thread(target=lambda: answer.update(r=httpx.get(url, timeout=60)))
            report.start()
            if when.startswith("before"):
                h.wait_for(lambda: adapter._unmarked[intent].riders, what="the report to wait for the mark")
                release.set()
            else:
                h.wait_for(lambda: len(adapter.batcher._buf) == 2, what="the report to join the mark's hand-over")
                adapter.loop.call_soon_threadsafe(adapter.batcher._flush)
            report.join(60)
            item = _final(h, c["id"], intent)
    finally:
        writer.submit_events = submit
    assert answer["r"].status_code == 200, answer["r"].text
    mine = [job for job in jobs if any(i == intent and t in ("message_sent", "sms_undelivered") for t, i in job)]
    assert mine == [[("message_sent", intent), ("sms_undelivered", intent)]], jobs
    assert item.status == outbox.FAILED and item.dlr_key, item


def test_the_endpoint_answers_smsbox_as_documented(shopkeeper_hub: HubHarness, kannel: Any, tmp_path: Any) -> None:
    """404 for a wrong token, 400 for a malformed report or message (nothing recorded), 503 with
    Retry-After when the hub cannot take a report now (smsbox retries), a reply body for HELP."""
    import httpx

    h = shopkeeper_hub
    phone = "+447400200020"
    _customer(h, phone)
    with h.run_adapter(SmsAdapter, _config(kannel, tmp_path, help_text="Call us."), "in-process") as adapter:
        base = adapter.base_url()
        wrong = base.replace(adapter.token, "not-the-token")
        q = {"i": "x-1", "m": "<m@x>", "to": phone, "type": "1"}
        assert httpx.get(f"{wrong}/dlr", params=q).status_code == 404
        assert httpx.get(f"{wrong}/mo", params={"from": phone, "text": "STOP"}).status_code == 404
        bad = httpx.get(f"{base}/dlr", params={**q, "type": "delivered"})
        assert (bad.status_code, bad.text) == (400, "a delivery report needs i, m, to and a numeric type")
        assert httpx.get(f"{base}/mo", params={"text": "HELP"}).status_code == 400
        helped = httpx.post(f"{base}/mo", params={"from": phone, "to": SHORTCODE, "text": "help", "id": "k-1"})
        assert (helped.status_code, helped.text) == (200, "Call us.")

        async def away(q: dict[str, str]) -> Any:
            raise RuntimeError("the hub is restarting")

        adapter.on_dlr = away
        busy = httpx.get(f"{base}/dlr", params=q)
        assert (busy.status_code, busy.headers.get("retry-after")) == (503, "5")
    assert _granted(h, phone), "nothing a refused request carried was recorded"
    assert not h.interactions(("phone", phone), "sms_delivered")


def test_unicode_goes_as_ucs2_in_the_counted_segments(shopkeeper_hub: HubHarness, kannel: Any,
                                                      tmp_path: Any) -> None:
    h = shopkeeper_hub
    # a campaign's text, rendered when it planned: sent as it is ({{ }} is not template code here)
    phone, text = "+447400200003", "Привет! Скидка 20% на всё {{ сегодня }}. " * 3  # 123 UCS-2 units: 2 parts
    c = _customer(h, phone)
    with h.run_adapter(SmsAdapter, _config(kannel, tmp_path), "in-process"):
        _request(h, phone, "ru-1", template="inline", text=text)
        assert _final(h, c["id"], "ru-1").status == outbox.SENT
        parts = h.wait_for(lambda: len(kannel.to(phone)) >= 2 and kannel.to(phone), what="both parts")
    sent = h.interactions(("phone", phone), "message_sent")[0]["data"]
    assert (sent["encoding"], sent["segments"]) == ("ucs2", 2)
    assert len(parts) == 2, parts  # what Kannel actually sent: two concatenated parts
    assert all(p["type"] == "udh" for p in parts)
    assert "{{ сегодня }}".encode("utf-16-be") in b"".join(p["text"].encode("latin-1") for p in parts)


def test_sender_rules_per_country(shopkeeper_hub: HubHarness, kannel: Any, tmp_path: Any) -> None:
    h = shopkeeper_hub
    de, fr = "+491701234561", "+33612345671"
    cd, cf = _customer(h, de), _customer(h, fr)
    cfg = _config(kannel, tmp_path, senders={"DE": "ShopDE", "+33": None})  # nothing is sent to France
    with h.run_adapter(SmsAdapter, cfg, "in-process"):
        _request(h, de, "de-1")
        _request(h, fr, "fr-1")
        assert _final(h, cd["id"], "de-1").status == outbox.SENT
        failed = _final(h, cf["id"], "fr-1")
        got = h.wait_for(lambda: kannel.to(de), what="the German SMS")
    assert got[0]["sender"] == "ShopDE"
    assert failed.status == outbox.FAILED and "no sender is configured for +33612345671 (FR)" in failed.error
    assert not kannel.to(fr)


@pytest.mark.parametrize(("phone", "why"), [("+447700900123", "not a valid number"),
                                            ("+442071234567", "fixed-line")])
def test_undeliverable_number_fails_once_with_the_reason(shopkeeper_hub: HubHarness, kannel: Any, tmp_path: Any,
                                                         phone: str, why: str) -> None:
    h = shopkeeper_hub
    c = _customer(h, phone)
    with h.run_adapter(SmsAdapter, _config(kannel, tmp_path), "in-process") as adapter:
        _request(h, phone, "bad-1")
        item = _final(h, c["id"], "bad-1")
        _request(h, phone, "bad-2")  # the number is now known undeliverable: not even tried
        second = _final(h, c["id"], "bad-2")
    assert item.status == outbox.FAILED and why in item.error, item
    assert item.attempts == 0, "an undeliverable number must not be claimed (nor retried)"
    assert adapter.stats["retried"] == 0
    assert second.status == outbox.SUPPRESSED and "no deliverable sms address" in second.error
    assert not kannel.to(phone)


def test_kannel_down_is_retried_then_delivered(shopkeeper_hub: HubHarness, kannel: Any, tmp_path: Any) -> None:
    """A refused connection is temporary: retried, then sent once Kannel answers."""
    from shopkeeper.testing import free_port

    h = shopkeeper_hub
    phone = "+447400200004"
    c = _customer(h, phone)
    cfg = _config(kannel, tmp_path)
    with h.run_adapter(SmsAdapter, {**cfg, "sendsms_url": f"http://127.0.0.1:{free_port()}/cgi-bin/sendsms",
                                    "retry_delays": [0.1]}, "in-process") as adapter:
        _request(h, phone, "down-1")
        item = _final(h, c["id"], "down-1")
    assert item.status == outbox.FAILED and "retries exhausted" in item.error
    assert adapter.stats["retried"] == 1
    assert item.attempts == 1


# -- inbound: STOP, HELP and the rest ---------------------------------------------------------------


def test_stop_withdraws_consent_and_later_sends_are_refused(shopkeeper_hub: HubHarness, kannel: Any,
                                                           tmp_path: Any) -> None:
    h = shopkeeper_hub
    phone = "+447400300001"
    c = _customer(h, phone)
    with h.run_adapter(SmsAdapter, _config(kannel, tmp_path, stop_reply="Unsubscribed."), "in-process"):
        kannel.mo(phone, SHORTCODE, "Stop")
        h.wait_for(lambda: not _granted(h, phone), timeout=15, what="the SMS consent to be withdrawn")
        reply = h.wait_for(lambda: kannel.to(phone), timeout=15, what="the STOP confirmation")
        _request(h, phone, "after-stop")
        item = _final(h, c["id"], "after-stop")
    assert [(m["sender"], m["text"]) for m in reply] == [(SHORTCODE, "Unsubscribed.")]
    assert item.status == outbox.SUPPRESSED, item
    unsub = h.interactions(("phone", phone), "unsubscribe")
    assert len(unsub) == 1 and unsub[0]["channel"] == "sms"
    assert len(kannel.to(phone)) == 1, "nothing but the confirmation may reach a number that said STOP"


def test_help_is_answered_and_other_text_recorded(shopkeeper_hub: HubHarness, kannel: Any, tmp_path: Any) -> None:
    h = shopkeeper_hub
    phone = "+447400300002"
    _customer(h, phone)
    with h.run_adapter(SmsAdapter, _config(kannel, tmp_path, help_text="Shop: call 0800 123."), "in-process"):
        kannel.mo(phone, SHORTCODE, "HELP")
        reply = h.wait_for(lambda: kannel.to(phone), timeout=15, what="the HELP answer")
        kannel.mo(phone, SHORTCODE, "What time do you open?")
        got = h.wait_for(lambda: len(h.interactions(("phone", phone), "sms_received")) >= 2
                         and h.interactions(("phone", phone), "sms_received"), timeout=15, what="both inbound")
    assert [m["text"] for m in reply] == ["Shop: call 0800 123."]
    assert sorted((i["data"]["text"], i["data"].get("keyword")) for i in got) == \
        [("HELP", "help"), ("What time do you open?", None)]
    assert _granted(h, phone), "HELP and questions leave consent alone"
    assert len(kannel.to(phone)) == 1, "only HELP is answered"


def _granted(h: HubHarness, phone: str) -> bool:
    view = h.customer(("phone", phone))
    return any(x["channel"] == "sms" and x["purpose"] == "marketing" and x["granted"]
               for x in (view or {}).get("consents", ()))


def test_the_sendsms_worker_journals_the_message_id_once_smsbox_accepted(shopkeeper_hub: HubHarness, kannel: Any,
                                                                         tmp_path: Any, monkeypatch: Any) -> None:
    """The Message-ID is journaled (fsync'd) on the sendsms worker thread that sent the text, after
    smsbox's 2xx and before the intent is marked sent — one hand-over per SMS instead of a second one
    to a pool thread for the journal (as email's SMTP worker, docs/benchmarks.md §70). A journal that
    cannot write leaves the intent ``sending`` for the sweep, never retried as a failed send (a
    second SMS: Kannel has no idempotency key)."""
    from shopkeeper.adapters.delivery import DeliveryJournal

    seen: list[str] = []
    orig = DeliveryJournal.add
    broken = {"on": False}

    def add(self: Any, message_id: str) -> None:
        seen.append(threading.current_thread().name)
        if broken["on"]:
            raise OSError("disk full")
        orig(self, message_id)

    monkeypatch.setattr(DeliveryJournal, "add", add)
    h = shopkeeper_hub
    ann, bob = _customer(h, "+447400200031"), _customer(h, "+447400200032")
    with h.run_adapter(SmsAdapter, _config(kannel, tmp_path, dlr_mask=0), "in-process") as adapter:
        _request(h, "+447400200031", "journal-1")
        assert _final(h, ann["id"], "journal-1").status == outbox.SENT
        assert len(seen) == 1 and seen[0].startswith("shopkeeper-sendsms"), seen
        broken["on"] = True
        _request(h, "+447400200032", "journal-2")
        h.wait_for(lambda: len(seen) == 2, what="the journal asked")
        h.wait_for(lambda: adapter.rescan_due, what="the intent left for the next sweep")
        assert _item(h, bob["id"], "journal-2").status == outbox.SENDING
        assert adapter.stats["retried"] == 0 and adapter.stats["failed"] == 0
        h.wait_for(lambda: kannel.to("+447400200032"), what="the second SMS at the fake SMSC")
    assert [len(kannel.to(p)) for p in ("+447400200031", "+447400200032")] == [1, 1]


def test_two_remote_adapters_split_the_intents_between_them(shopkeeper_hub: HubHarness, kannel: Any,
                                                           tmp_path: Any) -> None:
    """``partition: K/N``: each adapter process delivers the intents whose crc32(intent id) mod N is
    K, with its own journal and endpoint (one interpreter each for the remote mode); every text
    goes out once and its report comes back to the process that sent it."""
    import zlib

    h = shopkeeper_hub
    phones = [f"+4474005{i:05d}" for i in range(12)]  # numbers no other test of the module uses
    cids = {p: _customer(h, p)["id"] for p in phones}
    configs = [_config(kannel, tmp_path / "0", partition="0/2"),
               {**_config(kannel, tmp_path / "1", partition="1/2"), "http_listen": "127.0.0.1:0"}]
    with h.run_adapter(SmsAdapter, configs[0], "remote") as a0, h.run_adapter(SmsAdapter, configs[1], "remote") as a1:
        for i, p in enumerate(phones):
            _request(h, p, f"part-{i}")
        items = {i: _final(h, cids[p], f"part-{i}") for i, p in enumerate(phones)}
        h.wait_for(lambda: a0.stats.get("reports", 0) + a1.stats.get("reports", 0) == len(phones),
                   what="every report")
        h.wait_for(lambda: all(kannel.to(p) for p in phones), what="every SMS at the fake SMSC")
    assert all(it.status == outbox.SENT for it in items.values()), items
    assert [len(kannel.to(p)) for p in phones] == [1] * len(phones), \
        ([m for p in phones if len(kannel.to(p)) > 1 for m in kannel.to(p)], a0.stats, a1.stats)
    mine = [sum(1 for i in range(len(phones)) if zlib.crc32(f"part-{i}".encode()) % 2 == k) for k in (0, 1)]
    assert [a0.stats["sent"], a1.stats["sent"]] == mine and 0 not in mine
    assert [a0.stats.get("reports", 0), a1.stats.get("reports", 0)] == mine
    assert [len(a.journal.ids) for a in (a0, a1)] == mine


def test_a_text_reads_the_contact_part_unless_its_template_names_customer(shopkeeper_hub: HubHarness, kannel: Any,
                                                                          tmp_path: Any) -> None:
    """The batched read gives the customer's contact part (identities, traits, soft facts: what the
    number, the sender and most texts need), not the whole 360° view; a template naming ``customer``
    gets the whole view and renders from it."""
    h = shopkeeper_hub
    c = _customer(h, "+447400600001")
    views: list[tuple[str, str]] = []
    cfg = _config(kannel, tmp_path)
    cfg["templates"] = {**TEMPLATES, "whole": "Hi, id {{ customer.id }}, {{ customer.status }}"}
    with h.run_adapter(SmsAdapter, cfg, "in-process") as adapter:
        prepare = adapter.prepare

        def seen(message: Any, view: dict[str, Any], *args: Any) -> Any:
            views.append((message.template, view.get("view", "whole")))
            return prepare(message, view, *args)

        adapter.prepare = seen
        _request(h, "+447400600001", "contact-1", template="hello", deal="today")
        _request(h, "+447400600001", "contact-2", template="whole")
        for intent in ("contact-1", "contact-2"):
            assert _final(h, c["id"], intent).status == outbox.SENT
        got = h.wait_for(lambda: len(kannel.to("+447400600001")) == 2 and kannel.to("+447400600001"),
                         what="both texts at the fake SMSC")
    assert sorted(views) == [("hello", "contact"), ("whole", "whole")]
    assert sorted(m["text"] for m in got) == sorted([f"Hi, id {c['id']}, active", "Hi there, today"])
