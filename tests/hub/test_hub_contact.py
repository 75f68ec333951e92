"""Contact safety through a real hub and the SDK: Decide obeys the one contact policy on every
path (first offer and follow-up) and says why it offers nothing; outbox claims and delivery
reports must name the customer's own intent; the remote pending list holds only pending intents."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from shopkeeper import contact
from shopkeeper.analysis import plugin as analysis
from shopkeeper.analysis.state import create_analysis_folder
from shopkeeper.client import Client
from shopkeeper.hub.server import Hub
from shopkeeper.store import Store
from shopkeeper.view import customer_view

from .conftest import KEYS, Running, event, free_port, make_config, record

pytestmark = pytest.mark.e2e

OFFERS = """
policy:
  control_percent: 0
  follow_up_days: 7
  max_offers_per_week: 3
  quiet_hours: [21, 8]
offers:
  - id: winback_20
    title: We miss you - 20% off
    channels: [email, web]
    value: 15
"""


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Running]:
    (tmp_path / "offers").mkdir()
    (tmp_path / "offers" / "catalogue.yaml").write_text(OFFERS)
    (tmp_path / "segments").mkdir()
    store = Store.open("memory://")
    with store.transaction() as f:
        create_analysis_folder(f.root)
    h = Hub(make_config(free_port(), rules_dir=str(tmp_path)), store=store, load_entrypoints=False)
    h.start()
    r = Running(h, f"127.0.0.1:{h.port}", [])
    yield r
    for ch in r.channels:
        ch.close()
    h.stop(grace=0.5)
    store.close()
    contact.configure(overrides={})


def flush(r: Running) -> None:
    """Wait until everything queued to the writer before now is committed (the queue is FIFO)."""
    r.hub.writer.submit_op(lambda f, changes: None).result(10)


def shown(r: Running) -> int:
    with r.hub.store.read() as f:
        # as the 360° view counts them: Decide's records not folded into the record yet included
        return customer_view(f.customer_by_identity("email", "ann@example.com"))["interaction_counts"].get(
            "offer_shown", 0)


def test_decide_follow_up_obeys_consent_quiet_hours_and_the_cap(hub: Running) -> None:
    """Reproduction 1 of issue 11: the follow-up path skipped the contact policy."""
    record(hub.client("admin"), event("page_view", key="p1"))
    sdk = Client(hub.target, KEYS["admin"][0])
    try:
        day = {"channel": "email", "local_hour": 12}
        sdk.set_consent("email", True, email="ann@example.com")
        first = sdk.decide(email="ann@example.com", touchpoint="email", placement="newsletter", context=day)
        assert [a.id for a in first.actions] == ["winback_20"] and not first.no_offer_reason
        flush(hub)
        assert shown(hub) == 1
        # consent withdrawn: no offer, not even as a follow-up, and the caller is told why
        sdk.set_consent("email", False, email="ann@example.com")
        got = sdk.decide(email="ann@example.com", touchpoint="email", placement="newsletter", context=day)
        assert [a.id for a in got.actions if a.kind == "offer"] == []
        assert got.no_offer_reason == "no_consent" and "withdrawn" in got.no_offer_detail
        # consent again, but 23:00 for the customer: quiet hours
        sdk.set_consent("email", True, email="ann@example.com")
        got = sdk.decide(email="ann@example.com", touchpoint="email", placement="newsletter",
                         context={"channel": "email", "local_hour": 23})
        assert [a.id for a in got.actions if a.kind == "offer"] == []
        assert got.no_offer_reason == "quiet_hours"
        # six calls in a row: every offer made on email is a contact, recorded and capped (3 a week)
        offered = 0
        for _ in range(6):
            got = sdk.decide(email="ann@example.com", touchpoint="email", placement="newsletter", context=day)
            offered += sum(1 for a in got.actions if a.kind == "offer")
            flush(hub)
        assert got.no_offer_reason == "capped"
        assert 1 + offered == shown(hub) == 3
        # the web page is a conversation the customer started: the follow-up is shown, not counted
        web = sdk.decide(email="ann@example.com", touchpoint="web", placement="home", context={"channel": "web"})
        assert [a.id for a in web.actions if a.kind == "offer"] == ["winback_20"]
    finally:
        sdk.close()


def test_decides_before_the_last_ones_record_commits_see_it_one_first_offer_and_the_cap_holds(hub: Running) -> None:
    """Decide records its offers without waiting for the commit. A second Decide for the same
    customer before the first one's record committed must decide against it all the same: it
    used to record a second "first" offer, and on an outbound channel every Decide offered past
    the weekly cap. The writer is held, so every Decide here comes before any record commits."""
    record(hub.client("admin"), event("page_view", key="p1"))
    with Client(hub.target, KEYS["admin"][0]) as sdk:
        sdk.set_consent("email", True, email="ann@example.com")
        flush(hub)
        gate = threading.Event()
        held = hub.hub.writer.submit_op(lambda f, changes: gate.wait(30))
        try:
            def decide(channel: str) -> object:
                return sdk.decide(email="ann@example.com", touchpoint=channel, placement="home",
                                  context={"channel": channel, "local_hour": 12})

            start = threading.Barrier(2)

            def at_once(channel: str) -> object:
                start.wait(10)
                return decide(channel)

            with ThreadPoolExecutor(2) as pool:
                both = list(pool.map(at_once, ["web", "web"]))
            assert [[a.id for a in got.actions] for got in both] == [["winback_20"]] * 2
            # one first offer (recorded), one follow-up of it (on the web: shown, not recorded)
            assert sorted(bool(got.actions[0].payload["follow_up"]) if "follow_up" in got.actions[0].payload
                          else False for got in both) == [False, True]
            # on e-mail a follow-up is a new contact, recorded and counted: 3 a week, the first included
            mails = [decide("email") for _ in range(4)]
            assert [[a.id for a in got.actions if a.kind == "offer"] for got in mails] == \
                [["winback_20"], ["winback_20"], [], []]
            assert mails[-1].no_offer_reason == "capped"
        finally:
            gate.set()
        held.result(10)
        flush(hub)
        assert shown(hub) == 3


def test_decide_on_a_channel_without_consent_names_the_reason_for_any_plugin(hub: Running) -> None:
    """The hub holds back every plugin's outbound offer without consent, not only the analysis plugin's."""
    record(hub.client("admin"), event("page_view", key="p1"))
    with Client(hub.target, KEYS["admin"][0]) as sdk:
        got = sdk.decide(email="ann@example.com", touchpoint="email", placement="newsletter",
                         context={"channel": "email", "local_hour": 12})
        assert list(got.actions) == [] and got.no_offer_reason == "no_consent"
        with pytest.raises(grpc.RpcError):
            sdk.decide(email="nobody@example.com", touchpoint="email", placement="newsletter")


def _outbox(r: Running, email: str) -> list:
    from shopkeeper import outbox

    with r.hub.store.read() as f:
        return [(i.id, i.status) for i in outbox.items(f.customer_by_identity("email", email))]


def test_a_claim_or_report_for_another_customers_intent_is_refused_and_changes_nothing(hub: Running) -> None:
    """Reproduction 3 of issue 11: a key that may write interactions completed B's message
    with an event whose identities resolve to M."""
    from shopkeeper._proto.v1 import common_pb2, interactions_pb2

    admin = hub.client("admin")
    contact.configure(overrides={"quiet_hours": None})  # the claim below, at any hour the test runs
    record(admin, event("message_request", email="bea@example.com", key="rq-b", template="offer", intent="i-b"))
    record(admin, event("page_view", email="mal@example.com", key="p-m"))
    with Client(hub.target, KEYS["admin"][0]) as sdk:
        sdk.set_consent("email", True, email="bea@example.com")
        sdk.set_consent("email", True, email="mal@example.com")
    before = _outbox(hub, "bea@example.com")
    assert before == [("i-b", "pending")]
    for etype, data in (("message_dispatch", {"message_id": "<evil@x>"}), ("email_sent", {"message_id": "<evil@x>"}),
                        ("message_failed", {"status": "failed"})):
        with pytest.raises(grpc.RpcError) as err:
            record(admin, event(etype, email="mal@example.com", key=f"evil-{etype}", intent="i-b", **data))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, etype
        assert "does not belong to customer" in err.value.details()
    # in a stream: the same refusal, per event, with its code
    ev = event("email_sent", email="mal@example.com", key="evil-stream", intent="i-b", message_id="<evil@x>")
    ack = next(admin.interactions.StreamInteractions(iter([interactions_pb2.EventBatch(batch_id="b", events=[ev])]),
                                                      metadata=admin.md))
    st = ack.statuses[0]
    assert st.outcome == common_pb2.EventStatus.REJECTED and st.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert _outbox(hub, "bea@example.com") == before
    with hub.hub.store.read() as f:
        mal = f.customer_by_identity("email", "mal@example.com")
        assert not [it for it in mal.interactions() if it.type.startswith(("message_", "email_"))]
    # the customer's own claim goes through
    assert record(admin, event("message_dispatch", email="bea@example.com", key="ok-d", intent="i-b",
                               message_id="<ok@x>")).outcome == common_pb2.EventStatus.APPLIED
    assert _outbox(hub, "bea@example.com") == [("i-b", "sending")]


def test_offer_files_are_hot_reloaded(hub: Running, tmp_path: Path) -> None:
    """New or changed offer (and segment) files are put in force like rule files: no restart."""
    from shopkeeper.testing import HubHarness

    record(hub.client("admin"), event("page_view", key="p1"))
    with Client(hub.target, KEYS["admin"][0]) as sdk:
        def offered() -> list[str]:
            got = sdk.decide(email="ann@example.com", touchpoint="web", placement="home", context={"channel": "web"})
            return [a.id for a in got.actions if a.kind == "offer"]

        assert offered() == ["winback_20"]
        (tmp_path / "offers" / "catalogue.yaml").write_text(
            OFFERS.replace("winback_20", "spring_ten").replace("We miss you - 20% off", "Spring - 10% off all"))
        HubHarness(hub.hub, "").wait_for(lambda: offered() == ["spring_ten"], what="the reloaded catalogue")
        # a broken file keeps the catalogue in force
        (tmp_path / "offers" / "catalogue.yaml").write_text("offers:\n  - id: [broken\n")
        (tmp_path / "offers" / "later.yaml").write_text("offers: []\n")  # a second change, seen after the first
        HubHarness(hub.hub, "").wait_for(lambda: analysis.state_for(hub.hub)._fingerprint
                                         == analysis.state_for(hub.hub).fingerprint(),
                                         what="the broken files seen")
        assert offered() == ["spring_ten"]


def test_the_remote_pending_list_holds_only_pending_intents(hub: Running) -> None:
    """Reproduction 2 of issue 11: a remote adapter was handed sent and suppressed intents as pending;
    the hub's answer must be the in-process one."""
    from shopkeeper.adapters.base import InProcessHub, RemoteHub

    admin = hub.client("admin")
    contact.configure(overrides={"quiet_hours": None})  # claims below, at any hour the test runs
    for who in ("sent", "supp", "wait"):
        record(admin, event("message_request", email=f"{who}@example.com", key=f"rq-{who}", template="offer",
                            intent=f"i-{who}"))
    with Client(hub.target, KEYS["admin"][0]) as sdk:
        sdk.set_consent("email", True, email="sent@example.com")
        record(admin, event("message_dispatch", email="sent@example.com", key="d", intent="i-sent", message_id="<m@x>"))
        record(admin, event("email_sent", email="sent@example.com", key="s", intent="i-sent", message_id="<m@x>"))
        with pytest.raises(grpc.RpcError):  # no consent: the claim ends the intent suppressed
            record(admin, event("message_dispatch", email="supp@example.com", key="d2", intent="i-supp",
                                message_id="<n@x>"))
        assert [i.id for i in sdk.pending_intents(["email"])] == ["i-wait"]
    remote = RemoteHub(hub.target, KEYS["admin"][0])
    try:
        assert [m.id for m in remote.pending_outbox(("email",))] == ["i-wait"]
    finally:
        remote.close()
    assert [m.id for m in InProcessHub(hub.hub).pending_outbox(("email",))] == ["i-wait"]


def test_a_remote_adapter_reads_intents_and_customers_in_one_call_as_in_process(hub: Running) -> None:
    """Issue 16: a remote adapter read each customer with a GetCustomer per message and never saw
    the intent's state. ``Outbox.GetIntents`` answers many (customer id, intent id) refs in one
    call — each intent as it stands (final ones too) and its customer — and ``RemoteHub.outbox_batch``
    gives what ``InProcessHub.outbox_batch`` gives, unknown refs included; no refs is a clear error."""
    from shopkeeper.adapters.base import InProcessHub, RemoteHub

    admin = hub.client("admin")
    contact.configure(overrides={"quiet_hours": None})
    for who in ("sent", "wait"):
        record(admin, event("message_request", email=f"{who}@example.com", key=f"rq-{who}", template="offer",
                            intent=f"i-{who}"))
    with Client(hub.target, KEYS["admin"][0]) as sdk:
        sdk.set_consent("email", True, email="sent@example.com")
        record(admin, event("message_dispatch", email="sent@example.com", key="d", intent="i-sent", message_id="<m@x>"))
        record(admin, event("email_sent", email="sent@example.com", key="s", intent="i-sent", message_id="<m@x>"))
        ids = {m.id: m.customer_id for m in InProcessHub(hub.hub).pending_outbox(("email",))}
        with hub.hub.store.read() as f:
            sent_cid = f.customer_by_identity("email", "sent@example.com").id
        refs = [(sent_cid, "i-sent"), (ids["i-wait"], "i-wait"), (sent_cid, "i-nope"), ("c-nobody", "i-wait")]
        got = sdk.get_intents(refs)
        assert [(s.intent.id, s.intent.status, s.intent.message_id, s.intent.customer_id) for s in got[:2]] == [
            ("i-sent", "sent", "<m@x>", sent_cid), ("i-wait", "pending", "", ids["i-wait"])]
        assert [(s.HasField("intent"), s.HasField("customer")) for s in got] == [
            (True, True), (True, True), (False, True), (False, False)]
        assert [i.value for i in got[1].customer.identities] == ["wait@example.com"]
        with pytest.raises(grpc.RpcError) as err:
            sdk.get_intents([])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "refs" in err.value.details()
    remote = RemoteHub(hub.target, KEYS["admin"][0])
    try:
        far, far_contact = remote.outbox_batch(refs), remote.outbox_batch(refs, contact_only=True)
    finally:
        remote.close()
    near = InProcessHub(hub.hub).outbox_batch(refs)
    # the contact part alone (docs/benchmarks.md §74): the same over gRPC as in the hub's process
    near_contact = InProcessHub(hub.hub).outbox_batch(refs, contact_only=True)
    assert [v for _i, v in far_contact] == [v for _i, v in near_contact]
    assert near_contact[0][1] == {"view": "contact", "id": sent_cid, "status": "active", "traits": {},
                                  "identities": [{"namespace": "email", "value": "sent@example.com"}],
                                  "soft_facts": {}}
    assert "hard_facts" in near[0][1] and "hard_facts" in far[0][1]

    def seen(batch: list) -> list:
        return [(i and (i["id"], i["status"], i["message_id"]), v and [x["value"] for x in v["identities"]])
                for i, v in batch]

    assert seen(far) == seen(near) == [
        (("i-sent", "sent", "<m@x>"), ["sent@example.com"]), (("i-wait", "pending", ""), ["wait@example.com"]),
        (None, ["sent@example.com"]), (None, None)]


def test_quiet_hours_defer_a_message_over_grpc_and_the_remote_pending_list(hub: Running,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Defer, don't drop: a message asked for at 22:00 (the customer's time: UTC here) is not
    listed to adapters — in process, remote or over the SDK — and a claim is refused without
    suppressing it, until 08:00; then it is listed and claimed. The hub's outbox clock is moved,
    nothing sleeps."""
    from datetime import UTC, datetime

    from shopkeeper import outbox
    from shopkeeper.adapters.base import InProcessHub, RemoteHub

    night = int(datetime(2026, 6, 1, 22, tzinfo=UTC).timestamp()) * 1_000_000
    morning = int(datetime(2026, 6, 2, 8, tzinfo=UTC).timestamp()) * 1_000_000
    now = [night]
    monkeypatch.setattr(outbox, "clock", lambda: now[0])
    admin = hub.client("admin")
    record(admin, event("page_view", key="p-q"))
    with Client(hub.target, KEYS["admin"][0]) as sdk:
        sdk.set_consent("email", True, email="ann@example.com")
        record(admin, event("message_request", email="ann@example.com", key="rq-q", template="cart_reminder",
                            intent="i-q"))
        remote = RemoteHub(hub.target, KEYS["admin"][0])
        try:
            assert sdk.pending_intents(["email"]) == []
            assert remote.pending_outbox(("email",)) == []
            assert InProcessHub(hub.hub).pending_outbox(("email",)) == []
            listed = sdk.pending_intents(["email"], include_deferred=True)
            assert [(i.id, i.not_before.ToMicroseconds()) for i in listed] == [("i-q", morning)]
            with pytest.raises(grpc.RpcError) as err:  # an adapter that claims anyway: refused, nothing lost
                record(admin, event("message_dispatch", email="ann@example.com", key="d-q1", intent="i-q",
                                    message_id="<q1@x>"))
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "deferred until 2026-06-02T08:00:00+00:00" in err.value.details()
            assert _outbox(hub, "ann@example.com") == [("i-q", "pending")]
            now[0] = morning
            assert [(m.id, m.not_before) for m in remote.pending_outbox(("email",))] == [("i-q", morning)]
            assert [m.id for m in InProcessHub(hub.hub).pending_outbox(("email",))] == ["i-q"]
            record(admin, event("message_dispatch", email="ann@example.com", key="d-q2", intent="i-q",
                                message_id="<q2@x>"))
            assert _outbox(hub, "ann@example.com") == [("i-q", "sending")]
        finally:
            remote.close()
