"""What the email adapter reads of a customer before it delivers: the contact part for templates
that do not name ``customer``, the whole 360° view for those that do (docs/benchmarks.md §74)."""

from __future__ import annotations

from typing import Any

import pytest

from shopkeeper import outbox
from shopkeeper.adapters.email import EmailAdapter, EmailConfig
from shopkeeper.adapters.email.render import Renderer
from shopkeeper.adapters.email.tracking import Signer

from .conftest import SmtpSink

TEMPLATES = {
    "plain": {"subject": "Hello {{ first_name }}", "text": "Hi {{ first_name }}, {{ offer }} for {{ email }}"},
    # the whole view: a hard fact the contact part does not carry
    "whole": {"subject": "Counts",
              "text": "identifies={{ customer.interaction_counts.identify }} id={{ customer.id }}"},
    "outer": {"subject": "x", "text": "{% include 'inner.txt' %}"},
    "inner": {"text": "{{ customer.traits.city }}"},
    "dynamic": {"text": "{% include payload.which %}"},
}


def test_a_template_names_customer_through_its_parts_and_includes() -> None:
    r = Renderer(EmailConfig(from_addr="shop@example.com", templates=TEMPLATES), Signer("s"))
    assert not r.names_customer("plain")
    assert not r.names_customer("default")  # the built-in template reads traits and the payload only
    assert r.names_customer("whole")
    assert r.names_customer("outer")  # through the included inner.txt
    assert r.names_customer("dynamic")  # an include by a computed name: cannot tell, so the whole view
    assert not r.names_customer("no_such_template")


@pytest.mark.e2e
def test_contact_reads_and_the_whole_view_where_a_template_names_customer(
        shopkeeper_hub: Any, smtp: SmtpSink, tmp_path: Any, adapter_mode: str, monkeypatch: Any) -> None:
    """Both templates render right, and the batched read built contact views: in the hub's process
    (``outbox.contact_view``) and over gRPC (``GetIntents`` with ``contact_only``) alike."""
    from shopkeeper.hub import convert

    made: list[str] = []
    real, real_proto = outbox.contact_view, convert.customer_contact
    monkeypatch.setattr(outbox, "contact_view", lambda c: made.append(c.id) or real(c))
    monkeypatch.setattr(convert, "customer_contact", lambda c: made.append(c.id) or real_proto(c))
    h = shopkeeper_hub
    for who in ("ann", "bob"):
        h.send({"type": "identify", "identities": {"email": f"{who}@example.com"}, "traits": {"first_name": who}})
        h.grant(("email", f"{who}@example.com"))
    cfg = {"from_addr": "shop@example.com", "smtp_port": smtp.port, "secret": "s", "templates": TEMPLATES,
           "journal": str(tmp_path / "journal.log")}
    with h.run_adapter(EmailAdapter, cfg, adapter_mode):
        for who, template in (("ann", "plain"), ("bob", "whole")):
            h.send({"type": "message_request", "channel": "email", "identities": {"email": f"{who}@example.com"},
                    "data": {"template": template, "offer": "SPRING"}, "idempotency_key": f"req-{who}"})
        h.wait_for(lambda: len(smtp.messages) == 2, what="both emails")
    bodies = {m["To"]: m.get_content() for m in smtp.messages}
    assert bodies["ann@example.com"].startswith("Hi ann, SPRING for ann@example.com")
    bob = h.customer(("email", "bob@example.com"))
    assert f"identifies=1 id={bob['id']}" in bodies["bob@example.com"]
    assert len(made) >= 2  # the read gave contact views; bob's whole view was read after it
