"""Parquet export, DuckDB reports and PNG charts from the CLI."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from shopkeeper.cli import main


@pytest.mark.slow
def test_demo_store_to_parquet_reports_and_charts(tmp_path: Path, monkeypatch) -> None:
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("SHOPKEEPER_RULES_DIR", str(repo / "rules"))
    uri = f"file://{tmp_path}/d.fs"
    run = CliRunner().invoke
    assert run(main, ["demo", "--store", uri, "--customers", "300"]).exit_code == 0
    r = run(main, ["models", "fit", "--store", uri])
    assert r.exit_code == 0 and "BG/NBD" in r.output, r.output
    r = run(main, ["segments", "apply", "--store", uri, "--all"])
    assert r.exit_code == 0 and '"customers": 300' in r.output, r.output
    r = run(main, ["offers", "decide", "--store", uri, "email:ann.0@example.org", "--record"])
    assert r.exit_code == 0 and '"kind"' in r.output, r.output
    out = tmp_path / "out"
    r = run(main, ["report", "export", "--store", uri, "--out", str(out), "--batch", "64"])
    assert r.exit_code == 0 and "exported 300 customers" in r.output, r.output
    customers = pq.read_table(out / "customers.parquet")
    assert customers.num_rows == 300 and "clv_value" in customers.column_names
    assert pq.read_table(out / "interactions.parquet").num_rows > 300
    for name in ("segments", "offers", "uplift", "clv", "channels"):
        png = tmp_path / f"{name}.png"
        r = run(main, ["report", name, "--data", str(out), "--chart", str(png)])
        assert r.exit_code == 0, (name, r.output)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    r = run(main, ["report", "channels", "--data", str(out), "--json"])
    assert '"channel": "web"' in r.output
    r = run(main, ["report", "clv", "--data", str(tmp_path / "nowhere")])
    assert r.exit_code != 0 and "report export" in r.output


def test_report_scores_one_row_per_customer(tmp_path: Path, monkeypatch) -> None:
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("SHOPKEEPER_RULES_DIR", str(repo / "rules"))
    uri = f"file://{tmp_path}/d.fs"
    run = CliRunner().invoke
    assert run(main, ["demo", "--store", uri, "--customers", "120"]).exit_code == 0
    assert run(main, ["models", "fit", "--store", uri, "--clv-horizon", "6m"]).exit_code == 0
    assert run(main, ["segments", "apply", "--store", uri, "--all"]).exit_code == 0
    r = run(main, ["report", "scores", "--store", uri, "--parquet", str(tmp_path / "s.parquet"),
                   "--csv", str(tmp_path / "s.csv"), "--id", "email"])
    assert r.exit_code == 0 and "120 customers written to" in r.output, r.output
    t = pq.read_table(tmp_path / "s.parquet").to_pylist()
    assert len(t) == 120 and len({row["id"] for row in t}) == 120
    buyers = [row for row in t if row["orders"]]
    assert buyers and all(row["clv"] is not None and 1 <= row["rfm_r"] <= 5 for row in buyers)
    assert all("@" in row["email"] for row in t)
    assert any(row["segments"] for row in t) and isinstance(t[0]["segments"], list)
    header = (tmp_path / "s.csv").read_text().splitlines()[0]
    assert header.startswith('"id","email","orders","total_spend","expected_purchases","p_alive","clv"')
    r = run(main, ["report", "scores", "--store", uri])
    assert r.exit_code != 0 and "--csv PATH" in r.output
    # the CLV chart says what the scores are
    out = tmp_path / "out"
    assert run(main, ["report", "export", "--store", uri, "--out", str(out)]).exit_code == 0
    from shopkeeper.analysis.export import _clv_label

    assert _clv_label(str(out)) == "over 6 months"


def test_offers_chart_shows_each_bars_sample_sizes(tmp_path: Path, monkeypatch) -> None:
    """Issue 15: the offers chart shows the sample sizes each learned P(accept) comes from (shown,
    accepted) beside its bar, not the rate alone."""
    from matplotlib.axes import Axes

    from shopkeeper.analysis.export import _chart

    drawn: list[list[str]] = []
    real = Axes.barh
    monkeypatch.setattr(Axes, "barh", lambda ax, labels, *a, **k: (drawn.append(list(labels)),
                                                                     real(ax, labels, *a, **k))[1])
    rows = [("spring10", "vip", 1234, 56, 0.045, 0.046), ("freeship", "all", 20, 1, 0.05, 0.07)]
    png = tmp_path / "offers.png"
    _chart(None, str(tmp_path), "offers", ["offer", "segment", "shown", "accepted", "rate", "p"], rows, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn == [["spring10 / vip  (shown 1,234, accepted 56)", "freeship / all  (shown 20, accepted 1)"]]
