"""A remote adapter against a hub that requires TLS (here mutual TLS) and an API key: the email
adapter delivers through it, as a Python object and as ``shopkeeper adapter run`` with --tls-*
options; without the client certificate, or with a wrong key, it refuses to start, saying why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shopkeeper.adapters.base import AdapterStartError, HubError
from shopkeeper.adapters.email import EmailAdapter
from shopkeeper.testing import make_certs

from .test_email import email_config, item_status

pytestmark = pytest.mark.e2e

SHOPKEEPER = str(Path(sys.executable).parent / "shopkeeper")


@pytest.fixture
def tls_hub(shopkeeper_hub_factory: Any, tmp_path: Any) -> Any:
    make_certs(tmp_path)
    return shopkeeper_hub_factory({"tls": {"cert": str(tmp_path / "server.pem"), "key": str(tmp_path / "server.key"),
                                           "client_ca": str(tmp_path / "ca.pem")}})


def _creds(tmp_path: Any) -> dict[str, bytes]:
    return {"root_certificates": (tmp_path / "ca.pem").read_bytes(),
            "private_key": (tmp_path / "client.key").read_bytes(),
            "certificate_chain": (tmp_path / "client.pem").read_bytes()}


def _queue(h: Any, who: str) -> None:
    h.send({"type": "identify", "identities": {"email": f"{who}@example.com"}})
    h.grant(("email", f"{who}@example.com"))
    h.send({"type": "message_request", "identities": {"email": f"{who}@example.com"}, "idempotency_key": f"rq-{who}",
            "data": {"template": "offer", "intent": f"tls-{who}"}})


def test_remote_adapter_over_mutual_tls_with_an_api_key(tls_hub: Any, smtp: Any, tmp_path: Any) -> None:
    h = tls_hub
    _queue(h, "ann")
    api = h.remote("email", **_creds(tmp_path))
    adapter = EmailAdapter.from_config(email_config(smtp, tmp_path), api)
    adapter.start()
    try:
        h.wait_for(lambda: item_status(h, "ann@example.com") == ["sent"], what="sent through the TLS hub")
    finally:
        adapter.stop()
    assert [m["To"] for m in smtp.messages] == ["ann@example.com"]


def test_refused_clearly_without_client_certificate_or_with_a_wrong_key(tls_hub: Any, smtp: Any,
                                                                      tmp_path: Any) -> None:
    h = tls_hub
    no_cert = h.remote("email", root_certificates=(tmp_path / "ca.pem").read_bytes(), retries=0)
    with pytest.raises((AdapterStartError, HubError), match="UNAVAILABLE"):
        EmailAdapter.from_config(email_config(smtp, tmp_path), no_cert).start()
    from shopkeeper.adapters.remote import RemoteHub

    wrong = RemoteHub(h.address, "sk_wrong", touchpoint="email", **_creds(tmp_path))
    try:
        with pytest.raises(HubError, match="UNAUTHENTICATED"):
            EmailAdapter.from_config(email_config(smtp, tmp_path), wrong).start()
    finally:
        wrong.close()


def test_adapter_run_with_tls_options(tls_hub: Any, smtp: Any, tmp_path: Any) -> None:
    import yaml

    h = tls_hub
    cfg = tmp_path / "email.yaml"
    cfg.write_text(yaml.safe_dump(email_config(smtp, tmp_path)))
    proc = subprocess.Popen([SHOPKEEPER, "adapter", "run", "email", "--hub", h.address, "--config", str(cfg),
                             "--tls-ca", str(tmp_path / "ca.pem"), "--tls-cert", str(tmp_path / "client.pem"),
                             "--tls-key", str(tmp_path / "client.key")],
                            env={**os.environ, "SHOPKEEPER_API_KEY": h.api_key},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _queue(h, "bob")
        h.wait_for(lambda: item_status(h, "bob@example.com") == ["sent"] or proc.poll() is not None, timeout=30,
                   what="sent by `shopkeeper adapter run` over TLS")
        assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode == 0, proc.stderr.read().decode()
    assert [m["To"] for m in smtp.messages] == ["bob@example.com"]
