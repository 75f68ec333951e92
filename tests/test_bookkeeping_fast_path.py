"""The documented fast path for outbox bookkeeping: processors declare the event types they
care about (``event_types``), so a claim or a delivery report runs the outbox and the change
feed but not the rules and segments it cannot affect — still through the one apply loop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from shopkeeper import contact
from shopkeeper.adapters.sms import shopkeeper_event_types as sms_types
from shopkeeper.analysis.plugin import AnalysisProcessor, AnalysisState
from shopkeeper.analysis.segments import SegmentSet
from shopkeeper.analysis.state import create_analysis_folder
from shopkeeper.engine import feed
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.outbox import BOOKKEEPING_TYPES
from shopkeeper.outbox import processor as outbox_processor
from shopkeeper.outbox.plugin import shopkeeper_event_types as outbox_types
from shopkeeper.rules import RulesConfig, RulesService
from shopkeeper.rules.customer_rules import CustomerRuleError, add_customer_rule
from shopkeeper.rules.runtime import _event_types_with_rules
from shopkeeper.store import Store

TYPES = _event_types_with_rules()
for _t in outbox_types() + sms_types():
    TYPES.register(_t)
NOW = time.time() - 3600


def ev(type_: str, key: str, who: str = "ann@example.org", **data: Any) -> Any:
    return validate_event({"type": type_, "channel": "email" if type_ != "page_view" else "web",
                           "identities": {"email": who}, "data": data, "idempotency_key": key, "ts": NOW}, TYPES)


class Counting:
    def __init__(self, event_types: Any = None) -> None:
        if event_types is not None:
            self.event_types = event_types
        self.seen: list[str] = []

    def __call__(self, folders: Any, applied: Any) -> None:
        self.seen.append(applied.event.type)


def test_a_processor_runs_only_for_the_event_types_it_declares(store: Store) -> None:
    orders_only, every = Counting(frozenset({"order"})), Counting()
    with Ingestor(store, processors=[orders_only, every]) as ing:
        res = ing.apply([ev("page_view", "k1", url="/"), ev("order", "k2", order_id="o1", amount=5.0)])
    assert [r.status for r in res] == ["applied", "applied"]
    assert orders_only.seen == ["order"]
    assert every.seen == ["page_view", "order"]


def test_bookkeeping_types_are_the_outbox_transitions() -> None:
    assert {"message_dispatch", "email_sent", "message_sent", "message_failed", "message_cancelled",
            "sms_delivered", "sms_undelivered"} == set(BOOKKEEPING_TYPES)
    assert set(outbox_processor.event_types) >= BOOKKEEPING_TYPES | {"message_request", "complaint"}
    assert "page_view" not in outbox_processor.event_types


def _rules(tmp_path: Path, text: str) -> RulesService:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "r.yaml").write_text(text)
    return RulesService(RulesConfig(directory=d, watch=False), event_types=TYPES)


def test_rules_see_bookkeeping_only_when_a_central_rule_names_it(tmp_path: Path, store: Store) -> None:
    svc = _rules(tmp_path, "rules:\n  - name: any\n    when: {event: '*'}\n    then: [{tag: seen}]\n")
    types = svc.processor.event_types
    assert "page_view" in types and "order" in types
    assert not any(t in types for t in BOOKKEEPING_TYPES)  # "any event" means any customer interaction
    svc = _rules(tmp_path, "rules:\n  - name: after_send\n    when: {event: email_sent}\n    then: [{tag: mailed}]\n")
    assert "email_sent" in svc.processor.event_types
    assert "message_dispatch" not in svc.processor.event_types
    with Ingestor(store, processors=[svc.processor]) as ing:
        res = ing.apply([ev("email_sent", "s1")])
    assert [t["matched"] for r in res for t in r.outputs if isinstance(t, dict) and t.get("kind") == "rules"] \
        == [[{"rule": "after_send", "version": svc.current.version}]]


def test_a_customer_rule_cannot_listen_to_bookkeeping(store: Store) -> None:
    with store.transaction() as f:
        from shopkeeper.customer import Customer

        f.customers["c1"] = Customer("c1")
        with pytest.raises(CustomerRuleError, match="bookkeeping"):
            add_customer_rule(f, "c1", "name: r\nwhen: {event: message_dispatch}\nthen: [{tag: x}]\n",
                              event_types=TYPES)
        assert add_customer_rule(f, "c1", "name: r\nwhen: {event: order}\nthen: [{tag: x}]\n",
                                 event_types=TYPES) == ["r"]


@pytest.fixture
def analysis(tmp_path: Path) -> AnalysisState:
    st = AnalysisState(tmp_path)
    st.segments = SegmentSet()
    st.segments.define("busy", "hard.interactions >= 3")  # depends on any event
    st.segments.define("mailed", "count('email_sent', days=30) >= 1")  # names a bookkeeping type
    return st


def test_bookkeeping_updates_only_the_segments_that_name_it(store: Store, analysis: AnalysisState) -> None:
    contact.configure({"quiet_hours": None})
    proc = AnalysisProcessor(analysis)
    assert "page_view" in proc.event_types and "email_sent" in proc.event_types
    assert "message_dispatch" not in proc.event_types
    with store.transaction() as f:
        create_analysis_folder(f.root)
    plain = Counting()
    procs = [feed.interaction_processor, outbox_processor, proc, plain]
    with Ingestor(store, processors=procs) as ing:
        ing.apply([ev("page_view", "p1", url="/"), ev("message_request", "r1", template="t", intent="i1")])
        with store.transaction() as f:
            f.customer_by_identity("email", "ann@example.org").set_consent("email", "marketing", True, "test")
        res = ing.apply([ev("message_dispatch", "d1", intent="i1", message_id="<m1@x>"),
                         ev("email_sent", "s1", intent="i1", message_id="<m1@x>")])
    assert [r.status for r in res] == ["applied", "applied"], res
    with store.read() as f:
        c = f.customer_by_identity("email", "ann@example.org")
        assert c.hard["interactions"] == 4  # in the contact history and the facts like any event
        # "mailed" names email_sent: entered at once; "busy" (any event) waits for the next activity
        assert set(c.segments) == {"mailed"}
    # both bookkeeping events are on the change feed, published like any event
    assert [o.event_type for r in res for o in r.outputs if isinstance(o, feed.Change) and o.kind == "interaction"] \
        == ["message_dispatch", "email_sent"]
    with Ingestor(store, processors=procs) as ing:
        ing.apply([ev("page_view", "p2", url="/")])
    with store.read() as f:
        assert set(f.customer_by_identity("email", "ann@example.org").segments) == {"mailed", "busy"}


# -- the claim's fast path (shopkeeper.outbox.fastpath) ------------------------------------


def _queued(store: Store, procs: list[Any], n: int = 2) -> None:
    """ann with consent and ``n`` queued email intents i0.. (through the outbox processor)."""
    with Ingestor(store, processors=procs) as ing:
        ing.apply([ev("message_request", f"r{i}", template="t", intent=f"i{i}") for i in range(n)])
    with store.transaction() as f:
        f.customer_by_identity("email", "ann@example.org").set_consent("email", "marketing", True, "test")


def test_an_accepted_claim_rewrites_the_outbox_tree_not_the_customer_record(store: Store) -> None:
    """The fast path: one claim changes the intent (sending, Message-ID, attempt, claim time, key)
    and writes the customer's outbox tree, not the ``Customer`` record (its serial stays); it is
    on the change feed; a replay of its key is a duplicate (seen failing: before, every claim
    rewrote the customer record)."""
    contact.configure({"quiet_hours": None})
    procs = [feed.interaction_processor, outbox_processor]
    _queued(store, procs)
    with store.read() as f:
        c = f.customer_by_identity("email", "ann@example.org")
        serial, box_serial, hard = c._p_serial, c.outbox._p_serial, dict(c.hard)
    with Ingestor(store, processors=procs) as ing:
        res = ing.apply([ev("message_dispatch", "d0", intent="i0", message_id="<m0@x>")])
        again = ing.apply([ev("message_dispatch", "d0", intent="i0", message_id="<m0@x>")])
    assert [r.status for r in res] == ["applied"] and [r.status for r in again] == ["duplicate"]
    assert [(o.kind, o.event_type) for o in res[0].outputs] == [("interaction", "message_dispatch")]
    with store.read() as f:
        c = f.customer_by_identity("email", "ann@example.org")
        item = c.outbox["i0"]
        assert (item.status, item.message_id, item.attempts, item.claim_key) == ("sending", "<m0@x>", 1, "d0")
        assert item.claimed_at > 0
        assert c._p_serial == serial and dict(c.hard) == hard, "the customer record was rewritten"
        assert c.outbox._p_serial != box_serial
        assert sorted(it.type for it in c.recent(10)) == ["message_request", "message_request"]


def test_a_fast_path_claim_counts_against_the_caps(store: Store) -> None:
    """The contact the caps count is the item's claim time: with at most one message a day, the
    second intent's claim is refused ``capped`` and ends suppressed (through the ordinary loop)."""
    saved = contact._keys, contact._overrides
    contact.configure({"quiet_hours": None, "max_messages_per_day": 1}, overrides={})
    try:
        procs = [feed.interaction_processor, outbox_processor]
        _queued(store, procs)
        with Ingestor(store, processors=procs) as ing:
            first = ing.apply([ev("message_dispatch", "d0", intent="i0", message_id="<m0@x>")])
            second = ing.apply([ev("message_dispatch", "d1", intent="i1", message_id="<m1@x>")])
        assert first[0].status == "applied"
        assert second[0].status == "rejected" and second[0].error_field == "contact_policy"
        assert "capped" in second[0].error
        with store.read() as f:
            c = f.customer_by_identity("email", "ann@example.org")
            assert [c.outbox[i].status for i in ("i0", "i1")] == ["sending", "suppressed"]
            assert len(contact.contact_log(c)) == 1
    finally:
        contact.configure(keys=saved[0], overrides=saved[1])


def test_a_claim_a_processor_names_takes_the_ordinary_loop(store: Store) -> None:
    """A processor that declares ``message_dispatch`` (a rule or segment naming the claim) gets it:
    then the claim is applied as any event, into the contact history."""
    contact.configure({"quiet_hours": None})
    named = Counting(frozenset({"message_dispatch"}))
    procs = [feed.interaction_processor, outbox_processor, named]
    _queued(store, procs)
    with Ingestor(store, processors=procs) as ing:
        res = ing.apply([ev("message_dispatch", "d0", intent="i0", message_id="<m0@x>")])
    assert res[0].status == "applied" and named.seen == ["message_dispatch"]
    with store.read() as f:
        c = f.customer_by_identity("email", "ann@example.org")
        assert c.hard["interactions"] == 3 and c.outbox["i0"].status == "sending"


# -- the delivery report's fast path (shopkeeper.outbox.fastpath.fast_sent) --------------------


def test_a_sent_report_files_into_the_history_not_the_customer_record(store: Store) -> None:
    """``email_sent`` for a claimed intent: the intent ends ``sent`` (its report key kept), the
    interaction is in the contact history (``recent``, the campaign report's reading) with its
    data, it is on the change feed with its history key — and the ``Customer`` record is not
    rewritten (its serial and hard facts stay). A replay is a duplicate. Seen failing before the
    fast path: every sent report rewrote the customer record."""
    contact.configure({"quiet_hours": None})
    procs = [feed.interaction_processor, outbox_processor]
    _queued(store, procs)
    with Ingestor(store, processors=procs) as ing:
        ing.apply([ev("message_dispatch", "d0", intent="i0", message_id="<m0@x>")])
    with store.read() as f:
        c = f.customer_by_identity("email", "ann@example.org")
        serial, hard, recent = c._p_serial, dict(c.hard), dict(c._recent)
    with Ingestor(store, processors=procs) as ing:
        res = ing.apply([ev("email_sent", "s0", intent="i0", message_id="<m0@x>", campaign="spring")])
        again = ing.apply([ev("email_sent", "s0", intent="i0", message_id="<m0@x>", campaign="spring")])
    assert [r.status for r in res] == ["applied"] and [r.status for r in again] == ["duplicate"]
    with store.read() as f:
        c = f.customer_by_identity("email", "ann@example.org")
        item = c.outbox["i0"]
        assert (item.status, item.message_id, item.report_key) == ("sent", "<m0@x>", "s0")
        assert c._p_serial == serial and dict(c.hard) == hard and dict(c._recent) == recent, \
            "the customer record was rewritten"
        sent = [it for it in c.recent(10) if it.type == "email_sent"]
        assert len(sent) == 1 and sent[0].data == {"intent": "i0", "message_id": "<m0@x>", "campaign": "spring"}
        assert sent[0].identities == (("email", "ann@example.org"),) and sent[0].idempotency_key == "s0"
        assert [it.type for it in c.interactions(type="email_sent")] == ["email_sent"]
    assert [(o.kind, o.event_type, o.interaction_key) for o in res[0].outputs] \
        == [("interaction", "email_sent", sent[0].key)]


def test_a_sent_report_for_an_ended_intent_takes_the_ordinary_loop(store: Store) -> None:
    """A report the fast path must not judge goes through the ordinary loop, as before: a sent
    for a cancelled intent is refused (FAILED_PRECONDITION) and changes nothing; one naming no
    intent is an ordinary interaction in the customer record."""
    contact.configure({"quiet_hours": None})
    procs = [feed.interaction_processor, outbox_processor]
    _queued(store, procs)
    with Ingestor(store, processors=procs) as ing:
        ing.apply([ev("message_cancelled", "c0", intent="i0")])
        res = ing.apply([ev("email_sent", "s0", intent="i0", message_id="<m0@x>"),
                         ev("email_sent", "s9", message_id="<outside@x>")])
    assert [r.status for r in res] == ["rejected", "applied"]
    assert res[0].error_code == "failed_precondition" and "cancelled" in res[0].error
    with store.read() as f:
        c = f.customer_by_identity("email", "ann@example.org")
        assert c.outbox["i0"].status == "cancelled"
        assert c.type_counts.get("email_sent") == 1  # the one without an intent, in the facts


def test_a_texts_delivery_reports_file_into_the_history_not_the_customer_record(store: Store) -> None:
    """A text's final delivery report for its ``sent`` intent: the report is in the contact history
    (with its data, on the change feed) and the ``Customer`` record is not rewritten; an
    undelivered one ends its intent ``failed``; a replay is a duplicate; a report for another
    send (another Message-ID) takes the ordinary loop and moves nothing. Seen failing before:
    every report rewrote the customer record."""
    contact.configure({"quiet_hours": None})
    procs = [feed.interaction_processor, outbox_processor]
    with Ingestor(store, processors=procs) as ing:
        ing.apply([ev("message_request", f"r{i}", template="t", intent=f"i{i}") for i in range(2)])
    with store.transaction() as f:
        f.customer_by_identity("email", "ann@example.org").set_consent("email", "marketing", True, "test")
    with Ingestor(store, processors=procs) as ing:
        for i in range(2):
            ing.apply([ev("message_dispatch", f"d{i}", intent=f"i{i}", message_id=f"<m{i}@x>"),
                       ev("message_sent", f"s{i}", intent=f"i{i}", message_id=f"<m{i}@x>")])
    with store.read() as f:
        c = f.customer_by_identity("email", "ann@example.org")
        serial, hard = c._p_serial, dict(c.hard)
    with Ingestor(store, processors=procs) as ing:
        res = ing.apply([ev("sms_delivered", "k0", intent="i0", message_id="<m0@x>", status="delivered"),
                         ev("sms_undelivered", "k1", intent="i1", message_id="<m1@x>", status="undelivered",
                            reason="absent")])
        again = ing.apply([ev("sms_delivered", "k0", intent="i0", message_id="<m0@x>", status="delivered")])
    assert [r.status for r in res] == ["applied", "applied"] and [r.status for r in again] == ["duplicate"]
    assert [(o.kind, o.event_type) for r in res for o in r.outputs] \
        == [("interaction", "sms_delivered"), ("interaction", "sms_undelivered")]
    with store.read() as f:
        c = f.customer_by_identity("email", "ann@example.org")
        assert c._p_serial == serial and dict(c.hard) == hard, "the customer record was rewritten"
        assert (c.outbox["i0"].status, c.outbox["i0"].dlr_key) == ("sent", "k0")
        assert (c.outbox["i1"].status, c.outbox["i1"].error) == ("failed", "undelivered: absent")
        reports = sorted((it.type, it.data["intent"]) for it in c.recent(20) if it.type.startswith("sms_"))
        assert reports == [("sms_delivered", "i0"), ("sms_undelivered", "i1")]
    with Ingestor(store, processors=procs) as ing:
        other = ing.apply([ev("sms_undelivered", "k2", intent="i0", message_id="<old@x>", status="undelivered")])
    assert [r.status for r in other] == ["applied"]
    with store.read() as f:
        c = f.customer_by_identity("email", "ann@example.org")
        assert c.outbox["i0"].status == "sent"  # another send's report moves nothing
        assert c.type_counts.get("sms_undelivered") == 1  # recorded by the ordinary loop
