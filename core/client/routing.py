"""Several hubs over one store, each customer's events sent to one of them: :class:`Hubs`.

Any hub of a shared store (RelStorage, ZEO) takes any customer's events — the storage arbitrates
— but what several hubs cost depends on how events reach them (docs/benchmarks.md §35, §47).
Spread round-robin, the hot customers are written by every hub: their writer groups conflict, a
conflict re-applies the whole group, and each hub's cached customers are invalidated by the
others' commits (two hubs applied 1.7 events per event sent). Sent so that a customer's events
meet one hub: no conflicts between hubs, one cache per customer.

Why here and not only in a proxy: a proxy routes a *call*, and one ``StreamInteractions`` stream
carries the events of many customers; splitting them by customer has to happen where they are
batched, which is the sender. A proxy hashing on a header can still route unary calls; this
client needs none.

**Rendezvous hashing** (highest random weight): each customer key goes to the hub whose
``hash(address, key)`` is largest. Every producer configured with the same set of addresses
routes a customer to the same hub whatever the order it lists them in, and when a hub is added
or removed only the customers of that hub move (``crc32(key) % n`` would move almost all of
them). A customer whose events reach another hub (a re-route after a hub left, events naming it
by a different identity) is still stored exactly once; it only costs the conflicts above.

The key is the event's e-mail (lower-cased), else its first identity in namespace order: the
identity most events of a customer carry. Reads (``GetCustomer``, ``Decide``) of a customer go to
the same hub with :meth:`Hubs.for_customer`, whose cache holds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from .._proto.v1 import common_pb2
from .calls import make_event
from .sender import EventSender
from .sync import Client


def route_key(event: Mapping[str, Any] | common_pb2.Event) -> str:
    """The customer key an event is routed by: ``email:<address>`` if it names an e-mail,
    else ``<namespace>:<value>`` of its first identity by namespace ("" if it names none)."""
    ev = make_event(event)
    ids = sorted((i.namespace, i.value) for i in ev.identities)
    for ns, value in ids:
        if ns == "email":
            return key_of("email", value)
    return key_of(*ids[0]) if ids else ""


def key_of(namespace: str, value: str) -> str:
    """The routing key of one identity (what :func:`route_key` returns for an event naming it)."""
    return f"email:{value.strip().lower()}" if namespace == "email" else f"{namespace}:{value}"


def pick(key: str, targets: Sequence[str]) -> int:
    """The index in ``targets`` of the hub for ``key``: rendezvous hashing (see the module)."""
    if not targets:
        raise ValueError("no hub addresses to route to")
    weights = [hashlib.blake2b(f"{t}\x00{key}".encode(), digest_size=8).digest() for t in targets]
    return max(range(len(targets)), key=weights.__getitem__)


class Hubs:
    """One :class:`~.sync.Client` per hub address, each customer's writes and reads to one hub.

    ``Hubs(["hub-a:50051", "hub-b:50051"], api_key=...)`` takes the :class:`Client` options too.
    :meth:`sender` is the batching sender over all of them; :meth:`for_customer` and
    :meth:`for_event` give the client of a customer's hub for any other call; :attr:`clients`
    holds them all (admin calls may go to any)."""

    def __init__(self, targets: Sequence[str], api_key: str | None = None, **options: Any) -> None:
        if not targets:
            raise ValueError("Hubs needs at least one hub address")
        if len(set(targets)) != len(targets):
            raise ValueError(f"hub addresses repeat: {list(targets)}")
        self.targets = list(targets)
        self.clients = [Client(t, api_key, **options) for t in self.targets]

    def for_key(self, key: str) -> Client:
        return self.clients[pick(key, self.targets)]

    def for_event(self, event: Mapping[str, Any] | common_pb2.Event) -> Client:
        return self.for_key(route_key(event))

    def for_customer(self, *, email: str | None = None, identity: tuple[str, str] | None = None) -> Client:
        """The client of the hub that writes the customer named by ``email`` or ``identity``."""
        if email is None and identity is None:
            raise ValueError("name the customer by email= or identity=(namespace, value)")
        return self.for_key(key_of("email", email) if email is not None else key_of(*identity))  # type: ignore[misc]

    def record(self, event: Mapping[str, Any] | common_pb2.Event, **kw: Any) -> common_pb2.EventStatus:
        ev = make_event(event)
        return self.for_event(ev).record(ev, **kw)

    def sender(self, **options: Any) -> RoutedSender:
        """A batching sender per hub (``Client.sender`` options), each event to its customer's hub."""
        return RoutedSender(self, **options)

    def close(self) -> None:
        for c in self.clients:
            c.close()

    def __enter__(self) -> Hubs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RoutedSender:
    """:class:`~.sender.EventSender` per hub; :meth:`send` picks the event's hub. Back-pressure,
    resends and acknowledgements are each hub's sender's; ``flush``/``close`` cover them all."""

    def __init__(self, hubs: Hubs, **options: Any) -> None:
        self.hubs = hubs
        self.senders = [EventSender(c, **options) for c in hubs.clients]

    def __call__(self, event: Mapping[str, Any] | common_pb2.Event) -> Future:
        return self.send(event)

    def send(self, event: Mapping[str, Any] | common_pb2.Event) -> Future:
        ev = make_event(event)
        return self.senders[pick(route_key(ev), self.hubs.targets)].send(ev)

    def flush(self, timeout: float | None = None) -> None:
        for s in self.senders:
            s.flush(timeout)

    def close(self, timeout: float | None = 60) -> None:
        for s in self.senders:
            s.close(timeout)

    def __enter__(self) -> RoutedSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
