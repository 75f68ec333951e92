"""A real hub on a free loopback port, with API keys of different scopes, and its stubs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from shopkeeper import hookimpl
from shopkeeper._proto.v1 import (
    admin_pb2_grpc,
    common_pb2,
    customers_pb2_grpc,
    interactions_pb2,
    interactions_pb2_grpc,
    watch_pb2_grpc,
)
from shopkeeper.hub.config import ApiKey, HubConfig, hash_key
from shopkeeper.hub.convert import dict_to_struct
from shopkeeper.hub.server import Hub
from shopkeeper.store import Store
from shopkeeper.testing import free_port, make_certs  # noqa: F401 - the hub tests import them from here

KEYS = {
    "admin": ("sk_admin_test", {"profiles:read", "interactions:write", "decide", "admin"}, None),
    "web": ("sk_web_test", {"profiles:read", "interactions:write", "decide"}, {"page_view", "order", "identify"}),
    "reader": ("sk_reader_test", {"profiles:read"}, None),
}


class DecidePlugin:
    """Answers Decide: an offer for customers with orders, a welcome message for everyone."""

    @hookimpl
    def shopkeeper_decide(self, customer, touchpoint, placement, context):
        out = [{"kind": "message", "id": "welcome", "score": 0.2, "reason": f"hello from {touchpoint}"}]
        if customer.hard.get("orders"):
            out.append({"kind": "offer", "id": "loyal-10", "score": 0.9, "reason": "has ordered before",
                        "payload": {"discount": 10, "placement": placement}})
        return out


class BrokenPlugin:
    @hookimpl
    def shopkeeper_startup(self, hub):
        raise RuntimeError("boom at startup")


def make_config(port: int, **kw: Any) -> HubConfig:
    cfg = HubConfig(listen=f"127.0.0.1:{port}", store="memory://")
    cfg.api_keys = [ApiKey(name, hash_key(key), frozenset(scopes), frozenset(types) if types else None)
                    for name, (key, scopes, types) in KEYS.items()]
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@dataclass
class Client:
    channel: grpc.Channel
    key: str | None

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.key),) if self.key else ()

    @property
    def customers(self) -> Any:
        return customers_pb2_grpc.CustomersStub(self.channel)

    @property
    def interactions(self) -> Any:
        return interactions_pb2_grpc.InteractionsStub(self.channel)

    @property
    def watch(self) -> Any:
        return watch_pb2_grpc.WatchStub(self.channel)

    @property
    def admin(self) -> Any:
        return admin_pb2_grpc.AdminStub(self.channel)


@dataclass
class Running:
    hub: Hub
    target: str
    channels: list[grpc.Channel]

    def client(self, who: str | None = "admin") -> Client:
        ch = grpc.insecure_channel(self.target)
        self.channels.append(ch)
        return Client(ch, KEYS[who][0] if who else None)


def start_hub(store: Store | None = None, **kw: Any) -> Running:
    port = free_port()
    cfg = make_config(port, **kw)
    hub = Hub(cfg, store=store or Store.open("memory://"), plugins=(DecidePlugin(), BrokenPlugin()),
              load_entrypoints=False)
    hub._own_store = store is None
    hub.start()
    return Running(hub, f"127.0.0.1:{hub.port}", [])


@pytest.fixture
def running() -> Iterator[Running]:
    r = start_hub()
    yield r
    for ch in r.channels:
        ch.close()
    r.hub.stop(grace=0.5)


@pytest.fixture
def admin(running: Running) -> Client:
    return running.client("admin")


@pytest.fixture
def stored_admin(storage_uri: str) -> Iterator[Client]:
    """An admin client of a hub over a fresh store on each storage (FileStorage, ZEO, PostgreSQL)."""
    r = start_hub(Store.open(storage_uri))
    r.hub._own_store = True
    yield r.client("admin")
    for ch in r.channels:
        ch.close()
    r.hub.stop(grace=0.5)


def event(etype: str = "page_view", email: str = "ann@example.com", key: str = "k1", **data: Any) -> Any:
    if etype == "page_view" and not data:
        data = {"url": "/home"}
    ev = common_pb2.Event(type=etype, identities=[common_pb2.Identity(namespace="email", value=email)],
                          idempotency_key=key)
    if data:
        ev.data.CopyFrom(dict_to_struct(data))
    return ev


def record(client: Client, ev: Any, **kw: Any) -> Any:
    return client.interactions.RecordInteraction(interactions_pb2.RecordInteractionRequest(event=ev),
                                                 metadata=client.md, **kw)


def ident(ns: str, value: str) -> Any:
    return common_pb2.CustomerRef(identity=common_pb2.Identity(namespace=ns, value=value))


def bad_request(err: grpc.RpcError) -> list[tuple[str, str]]:
    """The google.rpc.BadRequest field violations of a rich error."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    st = rpc_status.from_call(err)
    out = []
    for d in st.details if st else ():
        br = error_details_pb2.BadRequest()
        if d.Unpack(br):
            out += [(v.field, v.description) for v in br.field_violations]
    return out
