"""Import (CSV / JSON Lines, customers / interactions) and export, through the API and the CLI."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shopkeeper import cli_common, exporter_cli, keylog
from shopkeeper.cli import main
from shopkeeper.customer import Customer
from shopkeeper.demo import sample_events
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event
from shopkeeper.exporter import customer_record, export, interaction_record
from shopkeeper.importer import Importer, ImportOptions, ImportSummary, RowError
from shopkeeper.privacy import forget
from shopkeeper.store import Store

# -- helpers ---------------------------------------------------------------------------


class _Shared:
    """A store the CLI may "open" and "close" many times within one test."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def close(self) -> None:  # the test fixture closes the real store
        pass


@pytest.fixture
def cli_store(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The in-memory ``store`` fixture, as seen by every CLI command of the test."""
    for module in (cli_common, exporter_cli):  # import looks it up in cli_common when it runs; export at import
        monkeypatch.setattr(module, "open_store_or_exit", lambda uri, **kw: _Shared(store))
    return store


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def run_import(store: Store, *paths: str, **opts: Any) -> tuple[ImportSummary, list[str]]:
    errors: list[RowError] = []
    summary = Importer(store, ImportOptions(**opts), on_error=errors.append).run(paths)
    return summary, [str(e) for e in errors]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def by_email(store: Store, email: str) -> Customer | None:
    with store.read() as f:
        return f.customer_by_identity("email", email)


def stored_keys(f: Any) -> list[str]:
    """Every idempotency key the customers hold (their own records keep them: Customer.has_key)."""
    return [k for c in f.customers.values() for k in [*(c.recent_keys or ()), *(k for _, k in keylog.entries(c))]]


def counters(store: Store) -> dict[str, int]:
    with store.read() as f:
        return {n: f.counter(n) for n in ("customers", "interactions")} | {"keys": len(stored_keys(f))}


def snapshot(store: Store) -> list[Any]:
    """Everything a round trip must keep, customer by customer."""
    out: list[Any] = []
    with store.read() as f:
        for c in f.customers.values():
            if c.status != "active":
                continue
            out.append(customer_record(c))
            out.append({"hard": dict(c.hard), "type_counts": dict(c.type_counts)})
            out.extend([interaction_record(c, it), it.key] for it in c.history.values())
    return out


CUSTOMERS_CSV = """\
id,email,phone,first_name,traits.city,soft.price_sensitivity,consent.email.marketing,consent.sms.marketing
crm-1,Ann@Example.org,+49 30 1234567,Ann,Berlin,high,yes,no
crm-2,bob@example.org,,Bob,,,true,
"""


# -- customers -------------------------------------------------------------------------


def test_customers_csv(store: Store, tmp_path: Path) -> None:
    summary, errors = run_import(store, write(tmp_path / "c.csv", CUSTOMERS_CSV))
    assert errors == []
    assert (summary.rows, summary.applied, summary.customers_created) == (2, 2, 2)
    with store.read() as f:
        ann = f.customer("crm-1")
        assert ann is not None and ann is f.customer_by_identity("phone", "+49301234567")
        assert f.customer_by_identity("email", "ann@example.org") is ann
        assert ann.traits == {"first_name": "Ann", "city": "Berlin"}
        assert ann.soft["price_sensitivity"].value == "high"
        assert ann.soft["price_sensitivity"].source == "import"
        assert ann.may_contact("email") and not ann.may_contact("sms")
        assert ann.consent("sms") is not None  # an explicit refusal is recorded
        assert len(ann.history) == 0 and ann.hard["interactions"] == 0  # a profile, not an event
        bob = f.customer("crm-2")
        assert bob is not None and bob.traits == {"first_name": "Bob"} and bob.consent("sms") is None
        assert f.counter("customers") == 2 and f.counter("interactions") == 0


def test_customers_jsonl_updates_existing_customer(store: Store, tmp_path: Path) -> None:
    rows = [
        {"email": "cy@example.org", "traits": {"vip": True, "tags": ["a", "b"]},
         "consent": {"email": {"marketing": {"granted": True, "source": "form", "at": "2024-05-01T00:00:00Z"}}},
         "scores": {"clv": 120.5}, "segments": {"newsletter": True}},
        {"identities": {"email": "cy@example.org", "loyalty": "L-77"}, "soft": {"risk": {"value": 0.3}}},
    ]
    summary, errors = run_import(store, jsonl(tmp_path / "c.jsonl", rows))
    assert errors == [] and summary.applied == 2 and summary.customers_created == 1
    c = by_email(store, "cy@example.org")
    assert c is not None and c.identities_in("loyalty") == ["L-77"]
    assert c.traits == {"vip": True, "tags": ["a", "b"]}
    assert c.consent("email").source == "form" and c.consent("email").at == 1_714_521_600_000_000
    assert c.scores["clv"].value == 120.5 and "newsletter" in c.segments and c.soft["risk"].value == 0.3


# -- interactions ----------------------------------------------------------------------

ORDERS_CSV = """\
type,ts,identities.email,data.order_id,data.amount,data.items,channel
order,2024-03-01T10:00:00Z,ann@example.org,o-1,19.90,2,store
order,2024-03-02T10:00:00Z,ann@example.org,o-2,5.10,1,
page_view,2024-03-03T10:00:00Z,bob@example.org,,,,
"""


def test_interactions_csv(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", ORDERS_CSV)
    summary, errors = run_import(store, path)
    # row 4 is a page_view without data.url: refused, the others land
    assert errors == [f"{path}:4: data.url: required for page_view events"]
    assert (summary.rows, summary.applied, summary.rejected) == (3, 2, 1)
    ann = by_email(store, "ann@example.org")
    assert ann is not None and ann.hard["orders"] == 2 and ann.hard["total_spend"] == 25.0
    first, second = ann.history.values()
    assert first.channel == "store" and second.channel == "web"  # empty cell: the type's default
    assert first.data == {"order_id": "o-1", "amount": 19.9, "items": 2}
    assert first.idempotency_key == ""  # derived keys live in the idempotency index only
    with store.read() as f:
        assert sum(k.startswith("import:") for k in stored_keys(f)) == 2
    assert by_email(store, "bob@example.org") is None  # the bad row created nobody


def test_interactions_jsonl(store: Store, tmp_path: Path) -> None:
    raw = [e for e in sample_events(5) if e["type"] != "identify"]
    summary, errors = run_import(store, jsonl(tmp_path / "events.jsonl", raw))
    assert errors == [] and summary.applied == len(raw)
    with store.read() as f:
        assert f.counter("interactions") == len(raw)
        assert set(stored_keys(f)) == {e["idempotency_key"] for e in raw}


def test_pinned_interaction_falls_back_to_identities(store: Store, tmp_path: Path) -> None:
    row = {"type": "custom", "data": {"name": "x"}, "identities": {"email": "dee@example.org"},
           "customer": "not-here", "origin": "old-crm-9", "ts": "2024-01-01T00:00:00Z"}
    summary, errors = run_import(store, jsonl(tmp_path / "p.jsonl", [row]))
    assert errors == [] and summary.customers_created == 1
    c = by_email(store, "dee@example.org")
    assert c is not None and next(iter(c.history.values())).origin == "old-crm-9"


# -- mapping and defaults ----------------------------------------------------------------


def test_map_and_default_options(cli_store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "kasse.csv", "E-Mail;Betrag;Bon;Filiale\nann@example.org;12,50;B1;Mitte\n"
                                         "ann@example.org;7.5;B2;Mitte\n")
    result = invoke("import", path, "--map", "E-Mail=identities.email", "--map", "Betrag=data.amount",
                    "--map", "Bon=data.order_id", "--map", "Filiale=", "--default", "type=order",
                    "--default", "channel=store", "--default", "ts=2024-06-01T12:00:00Z")
    # semicolon sniffed as the delimiter; "12,50" is not a number: named with its line
    assert result.exit_code == 1
    assert f"{path}:2: data.amount: '12,50' is not a number" in result.stderr
    ann = by_email(cli_store, "ann@example.org")
    assert ann is not None and [it.data for it in ann.history.values()] == [{"amount": 7.5, "order_id": "B2"}]
    assert [it.channel for it in ann.history.values()] == ["store"]


def test_map_nested_jsonl_source(store: Store, tmp_path: Path) -> None:
    rows = [{"user": {"mail": "eve@example.org"}, "name": "Eve"}]
    summary, errors = run_import(store, jsonl(tmp_path / "u.jsonl", rows),
                                 mapping=[("user.mail", "email"), ("name", "traits.first_name")],
                                 defaults=[("consent.email.marketing", "yes")])
    assert errors == []
    eve = by_email(store, "eve@example.org")
    assert eve is not None and eve.traits == {"first_name": "Eve"} and eve.may_contact("email")


# -- errors ------------------------------------------------------------------------------


def test_error_report_names_physical_lines(cli_store: Store, tmp_path: Path) -> None:
    csv_path = write(tmp_path / "c.csv", (
        "email,note,consent.email.marketing\n"          # 1 header
        "ok1@example.org,plain,yes\n"                   # 2
        "ok2@example.org,\"two\nlines\",yes\n"          # 3-4: one record over two lines
        "bad@example.org,x,maybe\n"                     # 5 bad consent
        "\n"                                            # 6 blank
        "not-an-email,x,yes\n"                          # 7 bad email
        "too,many,fields,here\n"                        # 8 wrong width
        "ok3@example.org,x,no\n"                        # 9
    ))
    jl_path = write(tmp_path / "e.jsonl", (
        '{"type": "page_view", "identities": {"email": "ok1@example.org"}, "data": {"url": "/"}}\n'  # 1
        "\n"                                                                                      # 2
        "{broken\n"                                                                               # 3
        '{"type": "page_viewed", "identities": {"email": "ok1@example.org"}}\n'                   # 4
        '["not", "an", "object"]\n'                                                               # 5
        '{"type": "order", "identities": {"email": "ok1@example.org"}, "data": {"order_id": "o", '
        '"amount": -3}, "ts": "2024-01-01T00:00:00Z"}\n'                                          # 6
    ))
    report = tmp_path / "errors.txt"
    result = invoke("import", csv_path, jl_path, "--errors", str(report), "--quiet")
    assert result.exit_code == 1
    expected = [
        f"{csv_path}:5: consent.email.marketing: 'maybe' is not yes/no (true/false, yes/no, 1/0, granted/denied)",
        f"{csv_path}:7: identities.email: 'not-an-email' is not an email address",
        f"{csv_path}:8: row: 4 fields, but the header has 3",
        f"{jl_path}:3: json: not valid JSON (Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1))",
        f"{jl_path}:4: type: unknown event type 'page_viewed'; did you mean 'page_view'?",
        f"{jl_path}:5: row: must be a JSON object, not list",
        f"{jl_path}:6: data.amount: -3 is below the minimum 0",
    ]
    assert report.read_text().splitlines() == expected
    assert [line for line in result.stderr.splitlines() if line.startswith(str(tmp_path))] == expected
    assert "11 rows read from 2 file(s): 4 applied, 0 duplicates, 7 rejected" in result.stderr
    ok2 = by_email(cli_store, "ok2@example.org")
    assert ok2 is not None and ok2.traits == {"note": "two\nlines"}
    for email in ("ok1@example.org", "ok3@example.org"):
        assert by_email(cli_store, email) is not None
    assert by_email(cli_store, "bad@example.org") is None  # refused whole: no customer, no identity


def test_bad_row_never_half_writes(store: Store, tmp_path: Path) -> None:
    run_import(store, jsonl(tmp_path / "a.jsonl", [{"email": "fay@example.org", "traits": {"a": 1}}]))
    rows = [
        {"email": "gil@example.org"},
        # valid identities, new and known, but a bad consent: nothing of it may land
        {"identities": {"email": "fay@example.org", "phone": "+4930999999"}, "traits": {"a": 2},
         "consent": {"email": {"marketing": "perhaps"}}},
        {"email": "hal@example.org", "id": "x" * 200},
        {"email": "ivy@example.org"},
    ]
    summary, errors = run_import(store, jsonl(tmp_path / "b.jsonl", rows), batch_size=2)
    assert summary.applied == 2 and summary.rejected == 2 and len(errors) == 2
    fay = by_email(store, "fay@example.org")
    assert fay is not None and fay.traits == {"a": 1} and fay.identities_in("phone") == []
    with store.read() as f:
        assert f.customer_by_identity("phone", "+4930999999") is None
    assert by_email(store, "hal@example.org") is None
    assert by_email(store, "gil@example.org") is not None and by_email(store, "ivy@example.org") is not None


def test_unknown_interaction_field_is_named(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "o.csv", "type,email,amount,data.order_id\norder,a@example.org,3,o1\n")
    _summary, errors = run_import(store, path)
    assert errors == [f"{path}:2: amount: unknown field for an interaction; did you mean data.amount? "
                      "(--map amount=data.amount)"]


def test_erased_customer_is_refused(store: Store, tmp_path: Path) -> None:
    run_import(store, write(tmp_path / "c.csv", CUSTOMERS_CSV))
    with store.transaction() as f:
        forget(f, f.customer("crm-1"))
    again = write(tmp_path / "again.csv", CUSTOMERS_CSV.replace("yes,no", "yes,yes"))
    events = jsonl(tmp_path / "ev.jsonl", [
        {"type": "page_view", "identities": {"email": "ann@example.org"}, "data": {"url": "/"}},
        {"type": "custom", "customer": "crm-1", "data": {"name": "n"}},
    ])
    summary, errors = run_import(store, again, events)
    assert errors == [
        f"{again}:2: id: customer 'crm-1' was erased on request and cannot be imported again",
        f"{events}:1: identities.email: belongs to a customer who asked to be forgotten",
        f"{events}:2: customer: customer 'crm-1' was erased on request; their interactions cannot be "
        "imported again",
    ]
    # --strict finds both in its first pass, before writing anything
    summary, errors = run_import(store, events, strict=True)
    assert len(errors) == 1 and summary.aborted and summary.applied == 0
    late = jsonl(tmp_path / "late.jsonl", [{"type": "custom", "customer": "crm-1", "data": {"name": "n"},
                                            "identities": {"email": "new@example.org"}}])
    assert run_import(store, late, strict=True)[1] == [
        f"{late}:1: customer: customer 'crm-1' was erased on request; their interactions cannot be imported again"]
    assert by_email(store, "new@example.org") is None
    # without the id column the erased email is still recognised by its tombstone
    no_id = write(tmp_path / "no_id.csv", "email\nann@example.org\n")
    assert run_import(store, no_id)[1] == [
        f"{no_id}:2: identities.email: belongs to a customer who asked to be forgotten"]
    assert by_email(store, "ann@example.org") is None


def test_id_conflict_is_refused(store: Store, tmp_path: Path) -> None:
    run_import(store, write(tmp_path / "c.csv", CUSTOMERS_CSV))
    path = jsonl(tmp_path / "x.jsonl", [{"id": "crm-3", "email": "bob@example.org"},
                                        {"id": "crm-1", "email": "bob@example.org"}])
    _summary, errors = run_import(store, path)
    assert errors == [
        f"{path}:1: identities.email: 'bob@example.org' already belongs to customer crm-2; a new customer "
        "'crm-3' cannot share it (to merge by identity instead, import the id as one: --map id=crm_id)",
        f"{path}:2: identities.email: 'bob@example.org' already belongs to customer crm-2; the row's id "
        "'crm-1' is a different customer (to merge by identity instead, import the id as one: --map id=crm_id)",
    ]
    # the suggested way out: the old CRM's id becomes the crm_id identity, and resolution decides
    warnings: list[RowError] = []
    summary = Importer(store, ImportOptions(mapping=[("id", "crm_id")]), on_warning=warnings.append).run([path])
    assert summary.applied == 2 and summary.rejected == 0 and summary.warnings == 1
    with store.read() as f:
        assert f.customer("crm-2").identities_in("crm_id") == ["crm-3"]  # bob now has his CRM id
        assert f.customer_by_identity("crm_id", "crm-1") is None  # one CRM id per customer: not taken
    assert [str(w) for w in warnings] == [
        f"{path}:2: warning: identities.crm_id: customer crm-2 already has 1 (max 1); 'crm-1' not attached"]


# -- strict, duplicates ------------------------------------------------------------------


def test_strict_writes_nothing(cli_store: Store, tmp_path: Path) -> None:
    good = write(tmp_path / "good.csv", CUSTOMERS_CSV)
    bad = write(tmp_path / "bad.csv", ORDERS_CSV)  # its line 4 is refused
    before = counters(cli_store)
    result = invoke("import", good, bad, "--strict", "--batch", "1")
    assert result.exit_code == 1
    assert f"{bad}:4: data.url: required for page_view events" in result.stderr
    assert "strict:" in result.stderr and "nothing was imported" in result.stderr
    assert counters(cli_store) == before
    assert by_email(cli_store, "ann@example.org") is None
    # the same files without the bad row go in completely
    fixed = write(tmp_path / "fixed.csv", "\n".join(ORDERS_CSV.splitlines()[:3]) + "\n")
    assert invoke("import", good, fixed, "--strict").exit_code == 0
    assert by_email(cli_store, "ann@example.org").hard["orders"] == 2


def test_duplicates_counted_once(cli_store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "orders.csv", ORDERS_CSV.splitlines()[0] + "\n" +
                 "\n".join(ORDERS_CSV.splitlines()[1:3] * 2) + "\n")  # rows 2-3 repeated as 4-5
    first = invoke("import", path)
    assert first.exit_code == 0
    assert "4 rows read from 1 file(s): 2 applied, 2 duplicates, 0 rejected" in first.stderr
    second = invoke("import", path)
    assert "4 rows read from 1 file(s): 0 applied, 4 duplicates, 0 rejected" in second.stderr
    ann = by_email(cli_store, "ann@example.org")
    assert ann.hard["orders"] == 2 and ann.hard["total_spend"] == 25.0
    assert counters(cli_store)["interactions"] == 2
    # a customer file imported twice changes nothing the second time either
    cpath = write(tmp_path / "c.csv", CUSTOMERS_CSV.replace("id,", "", 1).replace("crm-1,", "").replace("crm-2,", ""))
    assert "2 applied" in invoke("import", cpath).stderr
    assert "0 applied, 2 duplicates" in invoke("import", cpath).stderr


# -- export and the round trip -----------------------------------------------------------


def rich_store(store: Store, tmp_path: Path) -> None:
    """Customers with every part a round trip must keep, made the way production makes them."""
    t = 1_717_000_000.0
    raw = sample_events(40)
    raw += [
        # a known customer, then an anonymous visitor, then a log-in that merges them
        {"type": "order", "identities": {"email": "mo@example.org"}, "ts": t, "idempotency_key": "r1",
         "data": {"order_id": "m1", "amount": 10.25}},
        {"type": "page_view", "identities": {"cookie": "anon-1"}, "ts": t + 1, "idempotency_key": "r2",
         "data": {"url": "/x"}},
        {"type": "identify", "identities": {"cookie": "anon-1", "email": "mo@example.org"}, "ts": t + 2,
         "idempotency_key": "r3", "traits": {"first_name": "Mo"}},
        # a shared device: the cookie moves from nia to oz, nia's old event still carries it
        {"type": "email_open", "identities": {"email": "oz@example.org"}, "ts": t - 9, "idempotency_key": "r0"},
        {"type": "page_view", "identities": {"email": "nia@example.org", "cookie": "shared"}, "ts": t,
         "idempotency_key": "r4", "data": {"url": "/n"}},
        {"type": "page_view", "identities": {"email": "oz@example.org", "cookie": "shared"}, "ts": t + 5,
         "idempotency_key": "r5", "data": {"url": "/o"}},
        # two interactions in the same microsecond, and one without an idempotency key
        {"type": "email_open", "identities": {"email": "oz@example.org"}, "ts": t + 9, "idempotency_key": "r6"},
        {"type": "email_open", "identities": {"email": "oz@example.org"}, "ts": t + 9, "idempotency_key": "r7"},
    ]
    events = [validate_event(r) for r in raw]
    events.append(validate_event({"type": "call", "identities": {"phone": "+14155550100", "email": "oz@example.org"},
                                  "ts": t + 20, "data": {"duration": 61, "agent": "a1"}}, require_key=False))
    with Ingestor(store, source="web") as ing:
        assert all(r.status == "applied" for r in ing.apply(events))
    path = write(tmp_path / "profiles.csv",
                 "email,soft.price_sensitivity,consent.email.marketing,consent.phone.service,scores.clv,segments.vip\n"
                 "mo@example.org,high,yes,no,99.5,yes\noz@example.org,,no,,,\n")
    assert run_import(store, path)[1] == []
    with store.transaction() as f:  # and someone erased: not exported, not resurrected
        forget(f, f.customer_by_identity("email", "nia@example.org"))


def test_round_trip(store: Store, tmp_path: Path) -> None:
    rich_store(store, tmp_path)
    with store.read() as f:
        mo = f.customer_by_identity("email", "mo@example.org")
        assert mo.merged_from and any(it.origin != mo.id for it in mo.history.values())
        oz = f.customer_by_identity("email", "oz@example.org")
        assert len(oz.history) == 5 and oz.identities_in("cookie") == ["shared"]
        assert len({it.ts for it in oz.history.values()}) == 4  # two in the same µs, stored under two keys
    exported = tmp_path / "all.jsonl"
    with open(exported, "w", encoding="utf-8") as out:
        s = export(store, out)
    assert s.customers == 42 and s.interactions > 100  # 40 demo + mo + oz (nia was erased)

    fresh = Store.open("memory://fresh")
    try:
        summary, errors = run_import(fresh, str(exported), batch_size=37)
        assert errors == [] and summary.applied == s.customers + s.interactions
        assert snapshot(fresh) == snapshot(store)
        with fresh.read() as f, store.read() as g:
            assert f.counter("customers") == g.counter("customers")
            assert f.counter("interactions") == sum(len(c.history) for c in g.customers.values())
        again = tmp_path / "again.jsonl"
        with open(again, "w", encoding="utf-8") as out:
            export(fresh, out)
        assert again.read_bytes() == exported.read_bytes()
        # importing the export a second time changes nothing
        summary, _ = run_import(fresh, str(exported))
        assert summary.applied == 0 and summary.duplicates == s.customers + s.interactions
    finally:
        fresh.close()


def test_export_kinds_and_gzip_through_cli(cli_store: Store, tmp_path: Path) -> None:
    rich_store(cli_store, tmp_path)
    out = tmp_path / "c.jsonl.gz"
    assert invoke("export", "--kind", "customers", "-o", str(out)).exit_code == 0
    with gzip.open(out, "rt", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == 42 and all("type" not in r and "id" in r for r in lines)
    result = invoke("export", "--kind", "interactions")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows and all("type" in r and "customer" in r for r in rows)
    assert not list(tmp_path.glob("*.partial"))


# -- a real FileStorage ------------------------------------------------------------------


def test_file_storage_import_export_cli(tmp_path: Path) -> None:
    src = f"file://{tmp_path}/src/Data.fs"
    dst = f"file://{tmp_path}/dst/Data.fs"
    raw = [e for e in sample_events(30)]
    events = jsonl(tmp_path / "events.jsonl", raw)
    customers = write(tmp_path / "c.csv", CUSTOMERS_CSV)
    result = invoke("import", "--store", src, customers, events, "--batch", "50")
    assert result.exit_code == 0, result.stderr
    assert f"{len(raw) + 2} rows read from 2 file(s): {len(raw) + 2} applied" in result.stderr
    gz = tmp_path / "gz" / "events.jsonl.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress((tmp_path / "events.jsonl").read_bytes()))
    assert "0 applied" in invoke("import", "--store", src, str(gz)).stderr  # same rows, gzipped: duplicates
    dump = tmp_path / "dump.jsonl"
    assert invoke("export", "--store", src, "-o", str(dump)).exit_code == 0
    assert invoke("import", "--store", dst, str(dump), "--strict").exit_code == 0
    assert invoke("export", "--store", dst, "-o", str(tmp_path / "dump2.jsonl")).exit_code == 0
    assert (tmp_path / "dump2.jsonl").read_bytes() == dump.read_bytes()
    with Store.open(dst) as s:
        assert by_email(s, "ann@example.org").may_contact("email")


def test_empty_and_headerless_inputs(store: Store, tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.csv", "")
    dup = write(tmp_path / "dup.csv", "email,email\na@example.org,b@example.org\n")
    summary, errors = run_import(store, empty, dup)
    assert errors == [f"{empty}:1: header: the file is empty or its first line is blank; CSV needs a header",
                      f"{dup}:1: header: column 'email' appears twice"]


def test_iter_helpers_are_streaming(tmp_path: Path) -> None:
    from shopkeeper.importer import iter_jsonl

    with open(write(tmp_path / "x.jsonl", '{"a": 1}\n\n{"b": 2}\n'), encoding="utf-8") as f:
        it: Iterator[Any] = iter_jsonl(f)
        assert next(it) == (1, {"a": 1})
        assert next(it) == (3, {"b": 2})


def test_stdin_and_blocked_identities(cli_store: Store) -> None:
    rows = [
        {"type": "page_view", "identities": {"email": "unknown"}, "data": {"url": "/"}},
        {"type": "page_view", "identities": {"email": "stdin@example.org"}, "data": {"url": "/"}},
    ]
    result = CliRunner().invoke(main, ["import", "-"], input="".join(json.dumps(r) + "\n" for r in rows))
    assert result.exit_code == 1
    assert "-:1: identities: no usable identity (every value was missing or blocked)" in result.stderr
    assert by_email(cli_store, "stdin@example.org") is not None


def test_placeholder_identity_is_a_warning(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "email,phone\nunknown,+49 30 7654321\n")
    warnings: list[RowError] = []
    summary = Importer(store, on_warning=warnings.append).run([path])
    assert summary.applied == 1 and summary.warnings == 1
    assert [str(w) for w in warnings] == [
        f"{path}:2: warning: identities.email: value 'unknown' is blocked as a placeholder"]


def test_processors_run_for_interactions_only(store: Store, tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    rows = [{"email": "pia@example.org"},
            {"type": "page_view", "email": "pia@example.org", "data": {"url": "/"}}]
    summary = Importer(store, processors=[lambda f, a: seen.append((a.interaction.type, a.customer.id))]
                       ).run([jsonl(tmp_path / "p.jsonl", rows)])
    assert summary.applied == 2 and seen == [("page_view", by_email(store, "pia@example.org").id)]
