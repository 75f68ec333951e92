"""Finding a customer from what a person types: an id, or ``namespace:value``."""

from __future__ import annotations

from .customer import Customer
from .identity import IdentityConfig, IdentityError, normalize
from .store import Folders


class LookupError_(LookupError):
    """No such customer; the message says what was tried."""


def find_customer(folders: Folders, who: str, config: IdentityConfig | None = None) -> Customer:
    config = config or IdentityConfig()
    ns, sep, value = who.partition(":")
    if sep and ns in config.namespaces:
        try:
            norm = normalize(ns, value, config)
        except IdentityError as exc:
            raise LookupError_(str(exc)) from exc
        c = folders.customer_by_identity(ns, norm)
        if c is None:
            raise LookupError_(f"no customer with {ns} {norm!r}")
        return c
    c = folders.customer(who)
    if c is None:
        raise LookupError_(f"no customer with id {who!r} (use NAMESPACE:VALUE to look up by identity)")
    return c
