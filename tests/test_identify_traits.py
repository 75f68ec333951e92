"""An ``identify`` event whose traits sit in ``data`` (``{"data": {"traits": {...}}}``) is refused with
an error naming ``data.traits`` and saying where they go: it was accepted before and the traits
silently kept as event data, never reaching the customer's profile. Top-level traits still set it.
Both validation paths (raw JSON-like events, and the hub's decoded protobufs) and the hub itself
(an integrator's view: a rejection with the field, never an applied event that lost the traits)."""

from __future__ import annotations

import pytest

from shopkeeper.events import EventError, validate_decoded, validate_event
from shopkeeper.testing import HubHarness

RAW = {"type": "identify", "identities": {"email": "ann@example.org"}, "idempotency_key": "id-1",
       "data": {"traits": {"name": "Ann"}}}


def test_validate_event_names_data_traits_and_where_they_go() -> None:
    with pytest.raises(EventError) as err:
        validate_event(RAW)
    assert err.value.field == "data.traits"
    assert "top level" in str(err.value) and '"traits"' in str(err.value)


def test_validate_decoded_refuses_them_the_same_way() -> None:
    from shopkeeper.events import DEFAULT_EVENT_TYPES

    with pytest.raises(EventError) as err:
        validate_decoded(DEFAULT_EVENT_TYPES, "identify", "", None, [("email", "ann@example.org")], "id-1",
                         {"traits": {"name": "Ann"}}, "", None)
    assert err.value.field == "data.traits"


def test_other_types_and_top_level_traits_are_unchanged() -> None:
    ok = validate_event({**RAW, "data": {}, "traits": {"name": "Ann"}})
    assert ok.traits == {"name": "Ann"} and ok.data == {}
    custom = validate_event({**RAW, "type": "custom", "data": {"name": "n", "traits": {"a": 1}}})
    assert custom.data["traits"] == {"a": 1}  # a custom event's own field of that name is its business


def test_the_hub_rejects_it_and_sets_top_level_traits(shopkeeper_hub: HubHarness) -> None:
    got = shopkeeper_hub.send(RAW)[0]
    assert got["status"] == "rejected" and "data.traits" in got["error"], got
    assert shopkeeper_hub.customer(("email", "ann@example.org")) is None  # nothing applied
    got = shopkeeper_hub.send({**RAW, "data": {}, "traits": {"name": "Ann"}})[0]
    assert got["status"] == "applied", got
    assert shopkeeper_hub.customer(("email", "ann@example.org"))["traits"] == {"name": "Ann"}
