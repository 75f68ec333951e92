"""A delimited file's rows are shaped by a plan worked out once per header
(``RowMapper._plan``): it must give exactly what the general path gives, for every header and
option the plan accepts, and hand the others to the general path."""

from __future__ import annotations

import itertools
import random

import pytest

from shopkeeper.importer.mapping import MapOptions, RowMapper

COLUMNS = ["customer_id", "date", "email", "phone", "cookie", "crm_id", "data.amount", "data.items", "type",
           "ts", "traits.city", "identities.email", "data", "channel", "amount"]
MAPS = [[], [("customer_id", "crm_id"), ("date", "ts"), ("amount", "data.amount")], [("email", "")],
        [("date", "ts"), ("ts", "data.when")], [("phone", "identities.phone")]]
DEFAULTS = [[], [("type", "order")], [("type", "order"), ("channel", "store"), ("data.currency", "EUR")],
            [("email", "x@example.com")]]


@pytest.mark.parametrize("maps,defaults", list(itertools.product(MAPS, DEFAULTS)))
def test_the_plan_shapes_a_row_as_the_general_path_does(maps, defaults) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    mapper = RowMapper(MapOptions(mapping=maps, defaults=defaults))
    planned = 0
    for _ in range(300):
        header = tuple(rng.sample(COLUMNS, rng.randint(1, 7)))
        row = {h: rng.choice([None, "", "v1", "2", "a@example.com"]) for h in header}
        try:
            want: object = mapper._shape_general(dict(row), from_csv=True)
        except Exception as exc:  # noqa: BLE001 - the plan must refuse the same rows with the same error
            want = repr(exc)
        plan = mapper._plan(header)
        if plan is None:
            continue
        planned += 1
        got = mapper._shape_by(plan, dict(row))
        assert got == want, (header, row)
        assert list(got) == list(want) and list(got.get("identities", {})) == list(want.get("identities", {}))  # type: ignore[union-attr]
    assert planned > 50 or defaults == DEFAULTS[3]  # a default on an identity: never planned


def test_headers_the_plan_cannot_shape_take_the_general_path() -> None:
    mapper = RowMapper(MapOptions())
    assert mapper._plan(("data", "data.amount", "type")) is None  # a value and an object
    assert mapper._plan(("email", "identities.email", "type")) is None  # one identity twice
    assert mapper._plan(("consent.email.marketing", "email")) is None  # three levels
    assert mapper._plan(("identities", "email")) is None
    assert RowMapper(MapOptions(defaults=[("email", "x")]))._plan(("type",)) is None
    assert mapper._plan(("type", "email", "data.url")) is not None
