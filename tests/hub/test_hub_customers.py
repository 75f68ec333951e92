"""Every Customers RPC over a real server, with its error cases."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from shopkeeper._proto.v1 import common_pb2
from shopkeeper._proto.v1 import customers_pb2 as cp

from .conftest import bad_request, event, ident, record

pytestmark = pytest.mark.e2e


def get(client, ref, **kw):
    return client.customers.GetCustomer(cp.GetCustomerRequest(customer=ref, **kw), metadata=client.md)


def identify(client, *pairs, traits=None, create_only=False):
    req = cp.IdentifyRequest(identities=[common_pb2.Identity(namespace=n, value=v) for n, v in pairs],
                             create_only=create_only)
    if traits:
        req.traits.update(traits)
    return client.customers.Identify(req, metadata=client.md)


def code(fn) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code()


def test_get_customer_by_id_and_identity_and_not_found(admin) -> None:
    st = record(admin, event(key="g1"))
    by_id = get(admin, common_pb2.CustomerRef(id=st.customer_id))
    by_email = get(admin, ident("email", " ANN@example.com "))  # normalised like the index
    assert by_id == by_email and by_id.identities[0].value == "ann@example.com"
    assert get(admin, common_pb2.CustomerRef(id=st.customer_id), recent=-1).recent_interactions == []
    assert code(lambda: get(admin, common_pb2.CustomerRef(id="nope"))) == grpc.StatusCode.NOT_FOUND
    assert code(lambda: get(admin, ident("email", "zed@example.com"))) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        get(admin, common_pb2.CustomerRef())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and bad_request(e.value)[0][0] == "customer"
    with pytest.raises(grpc.RpcError) as e:
        get(admin, ident("shoe_size", "42"))
    assert bad_request(e.value)[0][0] == "customer.identities.shoe_size"


def test_identify_creates_resolves_merges_and_create_only(admin) -> None:
    a = identify(admin, ("cookie", "ck-1"), traits={"first_name": "Ann"})
    assert a.created and a.customer.traits["first_name"] == "Ann"
    b = identify(admin, ("cookie", "ck-1"), ("email", "ann@example.com"))
    assert not b.created and b.customer.id == a.customer.id
    assert {i.namespace for i in b.customer.identities} == {"cookie", "email"}
    assert code(lambda: identify(admin, ("email", "ann@example.com"), create_only=True)) == \
        grpc.StatusCode.ALREADY_EXISTS
    assert code(lambda: identify(admin)) == grpc.StatusCode.INVALID_ARGUMENT


def test_find_customers_by_prefix_segment_and_facts_with_pages(running, admin) -> None:
    for i in range(25):
        record(admin, event(email=f"f{i:02d}@example.com", key=f"f-{i}"))
        if i % 5 == 0:
            record(admin, event("order", email=f"f{i:02d}@example.com", key=f"fo-{i}", order_id=f"o{i}", amount=10 + i))
    # put some in a segment (as a rules plugin would)
    def seg(f, ch):
        for i in range(0, 25, 2):
            f.customer_by_identity("email", f"f{i:02d}@example.com").join_segment("even")
    running.hub.writer.submit_op(seg).result(5)

    def all_pages(**kw):
        out, token, pages = [], "", 0
        while True:
            r = admin.customers.FindCustomers(cp.FindCustomersRequest(page_size=4, page_token=token, **kw),
                                              metadata=admin.md)
            out += r.customers
            pages += 1
            token = r.next_page_token
            if not token:
                return out, pages

    found, pages = all_pages(identity_prefix=common_pb2.Identity(namespace="email", value="F1"))
    assert sorted(c.identities[0].value for c in found) == [f"f{i}@example.com" for i in range(10, 20)]
    assert pages == 3
    found, _ = all_pages(segment="even")
    assert len(found) == 13 and all("even" in c.segments for c in found)
    ge = cp.FactFilter(fact="total_spend", op=cp.FactFilter.GE, value=struct_pb2.Value(number_value=20))
    found, _ = all_pages(facts=[ge])
    assert sorted(c.identities[0].value for c in found) == ["f10@example.com", "f15@example.com", "f20@example.com"]
    found, _ = all_pages(segment="even", facts=[ge])
    assert sorted(c.identities[0].value for c in found) == ["f10@example.com", "f20@example.com"]
    r = admin.customers.FindCustomers(cp.FindCustomersRequest(page_size=2, segment="even"), metadata=admin.md)
    assert code(lambda: admin.customers.FindCustomers(
        cp.FindCustomersRequest(page_size=2, segment="odd", page_token=r.next_page_token), metadata=admin.md)) == \
        grpc.StatusCode.INVALID_ARGUMENT
    bad = cp.FactFilter(fact="nonsense.x.y", op=cp.FactFilter.EXISTS)
    assert code(lambda: admin.customers.FindCustomers(cp.FindCustomersRequest(facts=[bad]), metadata=admin.md)) \
        == grpc.StatusCode.INVALID_ARGUMENT


def test_merge_and_unmerge_with_preconditions(admin) -> None:
    a = record(admin, event(email="a@example.com", key="m1")).customer_id
    b = record(admin, event(email="b@example.com", key="m2")).customer_id
    c = record(admin, event(email="c@example.com", key="m3")).customer_id
    m1 = admin.customers.MergeCustomers(cp.MergeCustomersRequest(survivor_id=a, absorbed_id=b, reason="same person"),
                                        metadata=admin.md)
    assert m1.survivor_id == a and m1.absorbed_id == b and m1.id
    assert get(admin, ident("email", "b@example.com")).id == a
    assert get(admin, common_pb2.CustomerRef(id=b)).id == a  # absorbed id leads to the survivor
    assert code(lambda: admin.customers.MergeCustomers(cp.MergeCustomersRequest(survivor_id=a, absorbed_id=b),
                                                       metadata=admin.md)) == grpc.StatusCode.ALREADY_EXISTS
    assert code(lambda: admin.customers.MergeCustomers(cp.MergeCustomersRequest(survivor_id=a, absorbed_id="zz"),
                                                       metadata=admin.md)) == grpc.StatusCode.NOT_FOUND
    m2 = admin.customers.MergeCustomers(cp.MergeCustomersRequest(survivor_id=c, absorbed_id=a), metadata=admin.md)
    # undoing the first merge while its survivor is itself merged away: wrong order
    assert code(lambda: admin.customers.UnmergeCustomers(cp.UnmergeCustomersRequest(merge_id=m1.id),
                                                         metadata=admin.md)) == grpc.StatusCode.FAILED_PRECONDITION
    admin.customers.UnmergeCustomers(cp.UnmergeCustomersRequest(merge_id=m2.id), metadata=admin.md)
    undone = admin.customers.UnmergeCustomers(cp.UnmergeCustomersRequest(merge_id=m1.id), metadata=admin.md)
    assert undone.HasField("undone_at")
    assert get(admin, ident("email", "b@example.com")).id == b
    assert code(lambda: admin.customers.UnmergeCustomers(cp.UnmergeCustomersRequest(merge_id=m1.id),
                                                         metadata=admin.md)) == grpc.StatusCode.FAILED_PRECONDITION
    assert code(lambda: admin.customers.UnmergeCustomers(cp.UnmergeCustomersRequest(merge_id="m_nope"),
                                                         metadata=admin.md)) == grpc.StatusCode.NOT_FOUND


def _ts(dt: datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(dt)
    return t


def test_list_interactions_paginated_and_filtered(admin) -> None:
    for i in range(12):
        ev = event(key=f"li-{i}", url=f"/p{i}") if i % 3 else event("order", key=f"li-{i}", order_id=f"o{i}", amount=5)
        ev.ts.CopyFrom(_ts(datetime(2024, 1, 1 + i, tzinfo=UTC)))
        record(admin, ev)
    ref = ident("email", "ann@example.com")

    def pages(**kw):
        out, token = [], ""
        while True:
            r = admin.customers.ListInteractions(cp.ListInteractionsRequest(customer=ref, page_size=5,
                                                                            page_token=token, **kw), metadata=admin.md)
            out += r.interactions
            token = r.next_page_token
            if not token:
                return out

    newest = pages()
    assert len(newest) == 12 and newest[0].data["url"] == "/p11"
    assert [i.key for i in pages(oldest_first=True)] == [i.key for i in reversed(newest)]
    orders = pages(type="order")
    assert len(orders) == 4 and all(i.type == "order" for i in orders)
    assert pages(channel="email") == []
    ranged = pages(since=_ts(datetime(2024, 1, 3, tzinfo=UTC)), until=_ts(datetime(2024, 1, 6, tzinfo=UTC)))
    assert len(ranged) == 3


def test_set_consent_export_and_forget(admin) -> None:
    cid = record(admin, event(key="p1", url="/secret-page")).customer_id
    cs = admin.customers.SetConsent(cp.SetConsentRequest(customer=ident("email", "ann@example.com"), channel="email",
                                                         granted=True), metadata=admin.md)
    assert cs.granted and cs.purpose == "marketing" and cs.source == "admin"
    assert get(admin, common_pb2.CustomerRef(id=cid)).consents[0].granted
    doc = json.loads(admin.customers.ExportCustomer(cp.ExportCustomerRequest(customer=common_pb2.CustomerRef(id=cid)),
                                                    metadata=admin.md).json)
    assert doc["id"] == cid and doc["interactions"][0]["data"]["url"] == "/secret-page"
    # the consent change is on the customer's timeline too: what, by whom, when
    consents = [i for i in doc["interactions"] if i["type"] == "consent"]
    assert [(i["channel"], i["data"]) for i in consents] == [
        ("email", {"channel": "email", "purpose": "marketing", "granted": True, "source": "admin"})]
    admin.customers.SetConsent(cp.SetConsentRequest(customer=ident("email", "ann@example.com"), channel="email",
                                                    granted=False, source="unsubscribe-link"), metadata=admin.md)
    # setting the value consent already has (an adapter replaying its work) is no change: no entry
    admin.customers.SetConsent(cp.SetConsentRequest(customer=ident("email", "ann@example.com"), channel="email",
                                                    granted=False, source="crm-sync"), metadata=admin.md)
    listed = admin.customers.ListInteractions(cp.ListInteractionsRequest(customer=common_pb2.CustomerRef(id=cid),
                                                                         type="consent"), metadata=admin.md)
    assert [json_format.MessageToDict(i.data)["granted"] for i in listed.interactions] == [False, True]
    assert doc["identities"][0]["value"] == "ann@example.com"
    out = admin.customers.ForgetCustomer(cp.ForgetCustomerRequest(customer=ident("email", "ann@example.com")),
                                         metadata=admin.md)
    assert out.customer_id == cid and out.identities_tombstoned == 1
    assert code(lambda: get(admin, common_pb2.CustomerRef(id=cid))) == grpc.StatusCode.NOT_FOUND
    # the tombstone refuses the person coming back through a late event
    with pytest.raises(grpc.RpcError) as e:
        record(admin, event(key="p2"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "forgotten" in e.value.details()


def test_reads_about_a_customer_name_it_to_the_read_pool(running) -> None:
    """GetCustomer, ListInteractions, ExportCustomer and Decide key their read by the reference they
    were given, so the read pool serves each customer on its own connection (limits.read_affinity)."""
    from shopkeeper._proto.v1 import interactions_pb2

    client = running.client("admin")
    out = identify(client, ("email", "aff@example.com"))
    pool = running.hub._reads
    keys: list[object] = []
    read = pool.read

    def keyed(key=None):
        keys.append(key)
        return read(key)

    pool.read = keyed
    by_email = ident("email", "aff@example.com")
    by_id = common_pb2.CustomerRef(id=out.customer.id)
    get(client, by_email)
    get(client, by_id)
    client.customers.ListInteractions(cp.ListInteractionsRequest(customer=by_email), metadata=client.md)
    client.customers.ExportCustomer(cp.ExportCustomerRequest(customer=by_id), metadata=client.md)
    client.interactions.Decide(interactions_pb2.DecideRequest(customer=by_email, touchpoint="web",
                                                              placement="home"), metadata=client.md)
    email_key = ("email", "aff@example.com")
    assert keys == [email_key, out.customer.id, email_key, out.customer.id, email_key]
