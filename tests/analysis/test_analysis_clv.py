"""CLV: the BG/NBD and Gamma-Gamma fits reproduce the published CDNOW figures, from the raw
transactions, from the papers' own summary, and from the store's own order history."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from shopkeeper.analysis.clv import (
    BGNBD,
    US_PER_DAY,
    GammaGamma,
    cdnow_calibration_end,
    fit_clv,
    read_cdnow,
    summarise,
)
from shopkeeper.analysis.models import clv_scalar, current_models, fit_models
from shopkeeper.engine.ingest import Ingestor
from shopkeeper.events import validate_event

DATA = Path(__file__).resolve().parent.parent / "data"
PUBLISHED_BG = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


def sig3(x: float) -> float:
    return float(f"{x:.3g}")


def assert_published(bg: BGNBD, gg: GammaGamma | None) -> None:
    for k, v in PUBLISHED_BG.items():
        assert sig3(getattr(bg, k)) == sig3(v), (k, getattr(bg, k))
    assert gg is not None
    for k, v in PUBLISHED_GG.items():
        assert sig3(getattr(gg, k)) == sig3(v), (k, getattr(gg, k))


@pytest.fixture(scope="module")
def sample_rows() -> list[tuple[str, int, float]]:
    return read_cdnow(str(DATA / "CDNOW_sample.txt.gz"))


def test_summary_from_raw_transactions_matches_the_papers_summary(sample_rows) -> None:
    s = summarise(sample_rows, cdnow_calibration_end())
    assert len(s) == 2357
    ref = {int(r["ID"]): r for r in csv.DictReader(open(DATA / "cdnow_customers_summary_with_transactions.csv"))}
    # the sample file's second column is the summary's ID; our ids are the master ids
    import gzip

    with gzip.open(DATA / "CDNOW_sample.txt.gz", "rt") as fh:
        sample_id = {p[0]: int(p[1]) for p in (line.split() for line in fh) if p}
    got = np.column_stack([s.frequency, s.recency, s.T, s.monetary])
    want = np.array([[float(ref[sample_id[cid]][k]) for k in ("x", "t_x", "T", "zbar")] for cid in s.ids])
    assert np.allclose(got, want, atol=0.006)


def test_fit_reproduces_published_parameters(sample_rows) -> None:
    m = fit_clv(summarise(sample_rows, cdnow_calibration_end()))
    assert_published(m.bgnbd, m.gg)
    assert m.bgnbd.loglik == pytest.approx(-9582.4, abs=0.1)


def test_fit_on_the_papers_own_summary() -> None:
    rows = list(csv.DictReader(open(DATA / "cdnow_customers_summary_with_transactions.csv")))
    x = np.array([float(r["x"]) for r in rows])
    bg = BGNBD.fit(x, np.array([float(r["t_x"]) for r in rows]), np.array([float(r["T"]) for r in rows]))
    gg = GammaGamma.fit(x, np.array([float(r["zbar"]) for r in rows]))
    assert_published(bg, gg)


def test_predictions_match_the_paper_and_the_scalar_path() -> None:
    bg = BGNBD(0.243, 4.414, 0.793, 2.426)
    # Hardie's BG/NBD spreadsheet: CDNOW customer 1 (x=2, t_x=30.43, T=38.86) -> 1.226 purchases in 39 weeks
    assert float(bg.expected_purchases(39, 2, 30.43, 38.86)[0]) == pytest.approx(1.226, abs=0.001)
    # a customer seen just now with no repeat purchase is the average new customer (eq. 10 -> eq. 7)
    assert float(bg.expected_purchases(39, 0, 0, 1e-9)[0]) == pytest.approx(bg.expected_purchases_new(39), rel=1e-6)
    # no repeat purchase: alive with certainty under BG/NBD; a long silence lowers P(alive)
    assert float(bg.p_alive(0, 0, 30)[0]) == 1.0
    assert float(bg.p_alive(5, 2, 38)[0]) < float(bg.p_alive(5, 37, 38)[0])
    from shopkeeper.analysis.clv import CLVModel

    model = CLVModel(bg, GammaGamma(6.25, 3.74, 15.44), horizon=52)
    vec = model.score([3.0], [20.0], [38.0], [40.0])
    ep, alive, value = clv_scalar(model, 3.0, 20.0, 38.0, 40.0)
    assert ep == pytest.approx(float(vec["expected_purchases"][0]), rel=1e-9)
    assert alive == pytest.approx(float(vec["p_alive"][0]), rel=1e-9)
    assert value == pytest.approx(float(vec["clv"][0]), rel=1e-9)


SHIFT_US = 10_000 * US_PER_DAY  # 1997 + 10,000 days = 2024: whole days, so the summary is unchanged


def _cdnow_events(rows) -> list[dict]:
    return [{"type": "order", "identities": {"crm_id": f"cdnow-{cid}"}, "ts": (ts + SHIFT_US) / 1e6,
             "data": {"order_id": f"{cid}-{i}", "amount": amount}, "idempotency_key": f"cdnow-{i}"}
            for i, (cid, ts, amount) in enumerate(rows) if ts <= cdnow_calibration_end()]


@pytest.mark.slow
def test_models_fit_from_the_store_history_reproduces_published_parameters(file_store, sample_rows) -> None:
    events = [validate_event(e) for e in _cdnow_events(sample_rows)]
    with Ingestor(file_store) as ing:
        for i in range(0, len(events), 2000):
            assert all(r.status == "applied" for r in ing.apply(events[i:i + 2000]))
    uri = file_store.uri
    file_store.close()
    end = cdnow_calibration_end() + SHIFT_US
    # through the CLI's code path, with the calibration end as "now"
    from shopkeeper.store import Store

    store = Store.open(uri)
    try:
        report = fit_models(store, now=end)
        assert report["buyers"] == 2357 and report["scored"] == 2357
        with store.read() as f:
            clv, rfm = current_models(f)
            assert clv is not None and rfm is not None
            assert_published(clv.bgnbd, clv.gg)
            c = f.customer_by_identity("crm_id", "cdnow-00004")
            assert c is not None
            for name in ("clv.expected_purchases", "clv.p_alive", "clv.value", "churn.risk", "rfm.score"):
                assert name in c.scores, name
            assert c.scores["clv.value"].source == f"model:{clv.version}"
            assert 0 < c.scores["clv.p_alive"].value <= 1
            assert f"clv@{clv.version}" in f.root["analysis"]["models"]
    finally:
        store.close()
    out = CliRunner().invoke(__import__("shopkeeper.cli", fromlist=["main"]).main,
                             ["models", "show", "--store", uri])
    assert out.exit_code == 0, out.output
    assert '"version": "bgnbd-gg-' in out.output


# -- discounting, horizons and RFM ranks (issue 15) ----------------------------------------


def _lifetimes_clv(bg: BGNBD, spend: np.ndarray, x, t_x, T, time: int = 12, discount_rate: float = 0.01,
                   freq: str = "W") -> np.ndarray:
    """``lifetimes``' ``_customer_lifetime_value`` (0.11.3, utils.py), written out as it is there:
    ``time`` months, a monthly ``discount_rate``, steps of one month expressed in the model's unit."""
    factor = {"W": 4.345, "M": 1.0, "D": 30, "H": 30 * 24}[freq]
    clv = np.zeros(len(x))
    for i in np.arange(1, time + 1) * factor:
        expected = bg.expected_purchases(i, x, t_x, T) - bg.expected_purchases(i - factor, x, t_x, T)
        clv += (spend * expected) / (1 + discount_rate) ** (i / factor)
    return clv


def test_clv_reproduces_lifetimes_monthly_discounting_exactly() -> None:
    from shopkeeper.analysis.clv import CLVModel, parse_duration

    rows = list(csv.DictReader(open(DATA / "cdnow_customers_summary_with_transactions.csv")))
    x, t_x, T, m = (np.array([float(r[k]) for r in rows]) for k in ("x", "t_x", "T", "zbar"))
    bg = BGNBD.fit(x, t_x, T)
    gg = GammaGamma.fit(x, m)
    model = CLVModel(bg, gg, horizon=52, clv_horizon=parse_duration("12m"), discount=0.01, discount_per="month",
                     discount_step="month")
    ours = model.score(x, t_x, T, m)
    want = _lifetimes_clv(bg, gg.expected_spend(x, m), x, t_x, T)
    assert np.allclose(ours["clv"], want, rtol=1e-12, atol=0)
    # expected purchases keep their own horizon
    assert np.allclose(ours["expected_purchases"], bg.expected_purchases(52, x, t_x, T), rtol=1e-12)
    # an annual rate in monthly steps is the equivalent monthly rate
    annual = CLVModel(bg, gg, clv_horizon=parse_duration("1y"), discount=1.01 ** 12 - 1, discount_per="year",
                      discount_step="month")
    assert np.allclose(annual.score(x, t_x, T, m)["clv"], want, rtol=1e-9)
    # the scalar path (per-order re-scoring) agrees, discounted or not, whatever the two horizons
    for mdl in (model, CLVModel(bg, gg, horizon=52, clv_horizon=parse_duration("2y"))):
        for row in ((2.0, 30.43, 38.86, 22.35), (0.0, 0.0, 20.0, 0.0), (7.0, 35.0, 38.0, 41.2)):
            ep, alive, value = clv_scalar(mdl, *row)
            vec = mdl.score(*([v] for v in row))
            assert ep == pytest.approx(float(vec["expected_purchases"][0]), rel=1e-12)
            assert value == pytest.approx(float(vec["clv"][0]), rel=1e-12)


def test_rfm_scores_are_true_quintiles_under_ties() -> None:
    from shopkeeper.analysis.models import RFMModel

    rng = np.random.default_rng(7)
    n = 1000
    freq = np.where(rng.random(n) < 0.6, 1.0, rng.integers(2, 9, n).astype(float))  # 60% ordered once
    rec = rng.integers(0, 400, n).astype(float)
    mon = np.round(rng.gamma(2, 30, n), 2)
    model = RFMModel.from_dict(RFMModel.fit(rec, freq, mon).as_dict())  # as recorded in the store
    scores = np.array([model.score(r, f, m) for r, f, m in zip(rec, freq, mon, strict=True)])
    for col in range(3):
        counts = np.bincount(scores[:, col], minlength=6)[1:]
        assert counts.tolist() == [200] * 5, (col, counts)
    # a better value never scores lower
    order = np.argsort(freq, kind="stable")
    assert all(np.diff(scores[order, 1])[np.diff(freq[order]) > 0] >= 0)


def test_rfm_scores_of_many_customers_at_once_are_each_ones_score() -> None:
    """The batch fit scores every buyer with ``score_arrays``; the per-event re-score and old
    models with ``score``: both must give every customer the same (r, f, m), ties included
    (customers sitting exactly on a cut key, equal first measures told apart by the others)."""
    from shopkeeper.analysis.models import RFMModel

    rng = np.random.default_rng(11)
    n = 3000
    freq = np.where(rng.random(n) < 0.6, 1.0, rng.integers(2, 6, n).astype(float))
    rec = rng.integers(0, 40, n).astype(float)  # few distinct values: many exact ties
    mon = np.round(rng.choice([10.0, 20.0, 35.5, 50.0], n), 2)
    for model in (RFMModel.fit(rec, freq, mon), RFMModel.fit(rec[:500], freq[:500], mon[:500]),
                  RFMModel((5.0, 10.0, 20.0, 30.0), (1.0, 2.0, 3.0, 4.0), (10.0, 20.0, 30.0, 40.0))):  # unranked
        one_by_one = np.array([model.score(r, f, m) for r, f, m in zip(rec, freq, mon, strict=True)])
        r, f, m = model.score_arrays(rec, freq, mon)
        assert np.array_equal(np.column_stack([r, f, m]), one_by_one)
