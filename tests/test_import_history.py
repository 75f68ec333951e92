"""Importing history as analysts get it: whitespace-separated transaction files, dates in any
strftime format, numeric times in any unit, history before 2000, rows with no key and no
order id; and an import that keeps going past bad rows of any kind, on the right line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shopkeeper.cli import main
from shopkeeper.importer import Importer, ImportOptions, ImportSummary, RowError
from shopkeeper.store import Store

# CDNOW's own layout: a header with a leading blank, columns separated by runs of blanks, CRLF
CDNOW_LIKE = (" customer_id  date number_of_cds  dollar_value\r\n"
              " 00001 19970101  1   11.77\r\n"
              " 00002 19970112  1   12.00\r\n"
              " 00002 19970112  5   77.00\r\n"
              " 00002 19970112  5   77.00\r\n"   # the same purchase line twice: two purchases
              " 00003 19970102  2   20.76\r\n")
CDNOW_OPTS: dict[str, Any] = dict(
    delimiter="whitespace", date_format="%Y%m%d", historical=True,
    mapping=[("customer_id", "crm_id"), ("date", "ts"), ("dollar_value", "data.amount"),
             ("number_of_cds", "data.items")],
    defaults=[("type", "order"), ("channel", "store")])


def run(store: Store, path: str, **opts: Any) -> tuple[ImportSummary, list[str]]:
    errors: list[RowError] = []
    summary = Importer(store, ImportOptions(**opts), on_error=errors.append).run([path])
    return summary, [str(e) for e in errors]


def orders_of(store: Store, crm_id: str) -> list[tuple[int, dict[str, Any]]]:
    with store.read() as f:
        c = f.customer_by_identity("crm_id", crm_id)
        assert c is not None
        return [(it.ts, dict(it.data)) for it in c.interactions(type="order")]


def test_whitespace_file_with_yyyymmdd_dates_before_2000(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "cdnow.txt"
    path.write_bytes(CDNOW_LIKE.encode())
    summary, errors = run(store, str(path), **CDNOW_OPTS)
    assert errors == []
    assert (summary.applied, summary.duplicates, summary.customers_created) == (5, 0, 3)
    two = orders_of(store, "00002")
    assert len(two) == 3 and sorted(d["amount"] for _, d in two) == [12.0, 77.0, 77.0]
    assert {ts for ts, _ in two} == {int(datetime(1997, 1, 12, tzinfo=UTC).timestamp()) * 1_000_000}
    ids = [d["order_id"] for _, d in two]
    assert len(set(ids)) == 3 and all(i.startswith("import-") for i in ids)
    text = summary.render()
    assert "an order_id for 5 orders" in text and "idempotency key from the row's content for 5 rows" in text
    assert "1 orders repeat an earlier identical row" in text
    assert "historical: times before 2000 accepted; no rules ran" in text
    # the same file again: every row, the repeated purchase included, is a duplicate
    again, _ = run(store, str(path), **CDNOW_OPTS)
    assert (again.applied, again.duplicates) == (0, 5)
    assert [d["order_id"] for _, d in orders_of(store, "00002")] == ids  # stable


def test_the_cli_reads_cdnow_with_one_command(tmp_path: Path) -> None:
    path = tmp_path / "cdnow.txt"
    path.write_bytes(CDNOW_LIKE.encode())
    uri = f"file://{tmp_path}/d.fs"
    r = CliRunner().invoke(main, ["import", "--store", uri, str(path), "--delimiter", " ", "--date-format", "%Y%m%d",
                                  "--historical", "--map", "customer_id=crm_id", "--map", "date=ts",
                                  "--map", "dollar_value=data.amount", "--map", "number_of_cds=data.items",
                                  "--default", "type=order"])
    assert r.exit_code == 0, r.output
    assert "5 applied" in r.stderr


def test_the_delimiter_is_guessed_and_said(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "cdnow.txt"
    path.write_bytes(CDNOW_LIKE.encode())
    summary, errors = run(store, str(path), **{**CDNOW_OPTS, "delimiter": None})
    assert errors == [] and summary.applied == 5
    assert "cdnow.txt is split on runs of blanks" in summary.render()


def test_dates_that_need_a_format_or_history_say_so(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "cdnow.txt"
    path.write_bytes(CDNOW_LIKE.encode())
    opts = {**CDNOW_OPTS, "date_format": None, "historical": False}
    _, errors = run(store, str(path), **opts)
    assert errors[0] == (f"{path}:2: ts: '19970101' looks like a date written YYYYMMDD, not seconds since 1970; "
                         "read it with --date-format %Y%m%d (and --historical if it is before 2000)")
    _, errors = run(store, str(path), **{**CDNOW_OPTS, "historical": False})
    assert errors[0].startswith(f"{path}:2: ts: ") and errors[0].endswith("to load history that old, use --historical")


def test_numeric_times_in_a_declared_unit(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "ms.csv"
    path.write_text("type,ts,email,data.url\npage_view,1717000000123,a@example.org,/\n", encoding="utf-8")
    summary, errors = run(store, str(path), time_unit="ms")
    assert errors == [] and summary.applied == 1
    with store.read() as f:
        c = f.customer_by_identity("email", "a@example.org")
        assert [it.ts for it in c.interactions()] == [1_717_000_000_123_000]


# -- bad rows of any kind: the rest of the file still comes in (issue 12, item 9) ---------------


def _page_views(n: int) -> list[str]:
    return [f"page_view,2024-03-01T10:00:00Z,u{i}@example.org,/p{i}" for i in range(n)]


def test_an_over_long_field_costs_its_row_only(store: Store, tmp_path: Path) -> None:
    rows = _page_views(50)
    rows[20] = "page_view,2024-03-01T10:00:00Z,long@example.org,\"/" + "x" * 200_000 + "\""
    path = tmp_path / "long.csv"
    path.write_text("type,ts,email,data.url\n" + "\n".join(rows) + "\n", encoding="utf-8")
    summary, errors = run(store, str(path))
    assert errors == [f"{path}:22: csv: a field is longer than 128 KiB (the limit per field)"]
    assert summary.applied == 49 and summary.rejected == 1
    assert "kept going after 1 refused row(s)" in summary.render() and "long.csv:22" in summary.render()


@pytest.mark.slow
def test_an_undecodable_byte_is_reported_on_its_line_and_the_rest_imported(store: Store, tmp_path: Path) -> None:
    rows = [r.encode() for r in _page_views(3000)]  # far more than one read-ahead chunk
    rows[1500] = b"page_view,2024-03-01T10:00:00Z,bad@example.org,/caf\xe9"
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"type,ts,email,data.url\n" + b"\n".join(rows) + b"\n")
    summary, errors = run(store, str(path))
    assert errors == [f"{path}:1502: encoding: byte 0xe9 in column 4 is not valid utf-8-sig; "
                      "use --encoding (e.g. cp1252)"]
    assert summary.applied == 2999
    jl = tmp_path / "x.jsonl"
    jl.write_bytes(b'{"type": "page_view", "email": "j1@example.org", "data": {"url": "/\xff"}}\n'
                   b'{"type": "page_view", "email": "j2@example.org", "data": {"url": "/"}}\n')
    summary, errors = run(store, str(jl))
    assert errors == [f"{jl}:1: encoding: byte 0xff in the line is not valid utf-8-sig; use --encoding (e.g. cp1252)"]
    assert summary.applied == 1


@pytest.mark.e2e
def test_kill_9_during_an_import_then_running_it_again_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """An import killed with SIGKILL after its first commits: running the same command again
    applies exactly what is missing (rows of one customer coalesced in the apply loop included),
    and a third run applies nothing."""
    import os
    import signal
    import subprocess
    import sys

    from shopkeeper.testing import wait_for

    customers, per = 600, 3
    lines = [" customer_id  date number_of_cds  dollar_value"]
    for c in range(customers):  # adjacent rows per customer, as in CDNOW; one identical pair each
        same = f" {c:05d} 19970101  1   10.00"
        lines += [same, same, f" {c:05d} 19970301  2   {c % 97}.50"]
    path = tmp_path / "cdnow.txt"
    path.write_text("\r\n".join(lines) + "\r\n")
    fs = tmp_path / "d.fs"
    exe = [sys.executable, "-c", "from shopkeeper.cli import main; main()", "import", "--store", f"file://{fs}",
           str(path), "--delimiter", "whitespace", "--date-format", "%Y%m%d", "--historical",
           "--map", "customer_id=crm_id", "--map", "date=ts", "--map", "dollar_value=data.amount",
           "--map", "number_of_cds=data.items", "--default", "type=order", "--batch", "100", "--quiet"]
    note = b"shopkeeper import --historical: cdnow.txt"
    # each run in a process with another hash seed: the derived keys must not depend on it
    proc = subprocess.Popen(exe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONHASHSEED": "1"})
    try:
        wait_for(lambda: fs.exists() and fs.read_bytes().count(note) >= 2, timeout=120, what="two committed batches")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the import finished before it was killed: make the file larger"
    for expected_applied, seed in ((None, "2"), (0, "3")):
        done = subprocess.run(exe, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        assert done.returncode == 0, done.stderr
        if expected_applied is not None:
            assert f" 0 applied, {customers * per} duplicates" in done.stderr, done.stderr
    with Store.open(f"file://{fs}") as store, store.read() as f:
        assert f.counter("interactions") == customers * per
        orders = [c.hard["orders"] for c in f.customers.values()]
        assert len(orders) == customers and set(orders) == {per}


@pytest.mark.e2e
def test_an_offline_import_does_not_need_grpc(tmp_path: Path) -> None:
    """The walk-through's import runs offline: the hub's transport is start-up it need not pay
    (issue 15's ≤ 5 s). Proven by making grpc unimportable in the command's interpreter, as a
    user without third-party plugins runs it (CI installs example adapters that import grpc
    themselves: their entry points are not loaded here)."""
    import subprocess
    import sys

    src = tmp_path / "cdnow.txt"
    src.write_text(CDNOW_LIKE, encoding="utf-8")
    probe = ("import sys\n"
             "sys.modules['grpc'] = None  # import grpc raises ImportError\n"
             "import pluggy\n"
             "pluggy.PluginManager.load_setuptools_entrypoints = lambda self, group, name=None: 0\n"
             "from shopkeeper.cli import main\n"
             f"main(['import', {str(src)!r}, '--store', 'file://{tmp_path}/Data.fs', '--historical',\n"
             "      '--delimiter', 'whitespace', '--date-format', '%Y%m%d', '--map', 'customer_id=crm_id',\n"
             "      '--map', 'date=ts', '--map', 'dollar_value=data.amount', '--map', 'number_of_cds=data.items',\n"
             "      '--default', 'type=order', '--quiet'], standalone_mode=False)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "5 applied" in done.stderr, done.stderr[-2000:]
    assert "warning" not in done.stderr, done.stderr[-2000:]  # the built-ins' vocabulary loaded without it
