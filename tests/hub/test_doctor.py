"""``shopkeeper doctor``: read-only integrity checks and proof of erasure (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from shopkeeper._proto.v1 import admin_pb2, customers_pb2
from shopkeeper.cli import main
from shopkeeper.store import Store

from .conftest import event, ident, record, start_hub

pytestmark = pytest.mark.e2e


def doctor(uri: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["doctor", "--store", uri, *args])
    return result.exit_code, result.output


def filled_store(tmp_path: Path) -> str:
    """A FileStorage with a few customers, one of them erased; the hub is stopped after."""
    uri = f"file://{tmp_path}/Data.fs"
    store = Store.open(uri)
    r = start_hub(store=store)
    try:
        c = r.client("admin")
        ev = event(email="gone@example.com", key="g1", url="/", pad="x" * 4000)
        ev.identities.add(namespace="cookie", value="cookie-0123456789")
        record(c, ev)
        for i in range(5):
            record(c, event(email=f"stays{i}@example.com", key=f"s{i}"))
        c.customers.ForgetCustomer(customers_pb2.ForgetCustomerRequest(customer=ident("email", "gone@example.com")),
                                   metadata=c.md)
        code, out = doctor(uri, "--erased")  # read-only, next to the running hub
        assert code == 1, out  # the old revisions still hold the erased identities: doctor must see them
        assert "erased       2 problem(s)" in out or "still holds an erased email identity" in out, out
        c.admin.Pack(admin_pb2.PackRequest(days=0), metadata=c.md)
    finally:
        r.hub.stop(grace=0.5)
        store.close()
    return uri


def test_erase_and_pack_then_doctor_erased_reports_zero(tmp_path: Path) -> None:
    uri = filled_store(tmp_path)
    code, out = doctor(uri, "--erased")
    assert code == 0, out
    lines = out.splitlines()
    assert [ln.split()[0] for ln in lines[:5]] == ["customers", "identities", "merges", "outbox", "erased"]
    assert all(" ok " in ln for ln in lines[:5]), out
    assert lines[-1] == "0 problem(s)"
    code, out = doctor(uri, "--value", "stays0@example.com")  # a literal search finds what is still there
    assert code == 1 and "contains the value 'stays0@example.com'" in out


def test_doctor_finds_an_identity_pointing_to_no_customer_and_a_wrong_counter(tmp_path: Path) -> None:
    uri = filled_store(tmp_path)
    with Store.open(uri) as store, store.transaction() as f:  # damage it as a bug would
        cid = f.identities[("email", "stays1@example.com")]
        del f.customers[cid]
    code, out = doctor(uri)
    assert code == 1, out
    assert f"identity email:… points to customer {cid}, which does not exist" in out
    assert "the customers counter says 5, but 4 customers are active" in out
    assert out.splitlines()[-1] == "2 problem(s)"
