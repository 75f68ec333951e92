"""The Shopkeeper conformance suite, run against this adapter (fixtures come from shopkeeper.testing)."""

from __future__ import annotations

from shopkeeper_vendorcrm import VendorCrmAdapter

from shopkeeper.testing import AdapterConformance

CSV = "crm_id,email,first_name,last_name,email_opt_in\nC-1,ann@example.com,Ann,Lee,yes\nC-2,bob@example.com,Bob,,no\n"


def drop(path, text):
    """Write a file the way an exporter must: atomically (the adapter never sees half a file)."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    tmp.rename(path)


class TestVendorCrmConformance(AdapterConformance):
    adapter_class = VendorCrmAdapter

    def adapter_config(self, tmp_path):
        return {"inbox": str(tmp_path / "inbox"), "poll_seconds": 0.05}

    def exercise(self, harness, adapter, tmp_path):
        inbox = tmp_path / "inbox"
        inbox.mkdir(exist_ok=True)
        drop(inbox / "export.csv", CSV)
        harness.wait_for(lambda: (inbox / "export.csv.done").exists(), what="the file to be synced")
        (inbox / "export.csv.done").unlink()
        return [("crm_id", "C-1"), ("crm_id", "C-2")]


def test_contacts_become_customers_with_consent(shopkeeper_hub, adapter_mode, tmp_path):
    with shopkeeper_hub.run_adapter(VendorCrmAdapter, {"inbox": str(tmp_path), "poll_seconds": 0.05}, adapter_mode):
        drop(tmp_path / "a.csv", CSV)
        shopkeeper_hub.wait_for(lambda: (tmp_path / "a.csv.done").exists())
    ann = shopkeeper_hub.customer(("email", "ann@example.com"))
    assert ann["traits"] == {"first_name": "Ann", "last_name": "Lee"}
    ids = {(i["namespace"], i["value"]) for i in ann["identities"]}
    assert ids == {("crm_id", "C-1"), ("email", "ann@example.com")}
    assert [(c["channel"], c["granted"]) for c in ann["consents"]] == [("email", True)]
    bob = shopkeeper_hub.customer(("crm_id", "C-2"))
    assert [(c["channel"], c["granted"]) for c in bob["consents"]] == [("email", False)]
