"""Scores that live with the customer: CLV (BG/NBD + Gamma-Gamma) and RFM.

Two ways to compute them, the same numbers either way:

* **batch** — :func:`fit_models` reads every customer's orders from the store, fits the CLV
  models and the RFM quintile breakpoints, records them (with a version) in
  ``analysis['models']`` and writes every customer's scores in batched transactions;
* **per event** — :func:`score_customer` re-scores one customer from their hard facts with the
  models in force; the analysis processor calls it when an order arrives (a few µs of
  arithmetic, no history scan beyond the first order).

Scores written (``Customer.scores``, each a ``Fact`` whose ``source`` is the model version):
``clv.expected_purchases`` (over the model horizon, 52 weeks by default), ``clv.p_alive``,
``clv.value``, ``churn.risk`` (= 1 − P(alive)), ``rfm.r``, ``rfm.f``, ``rfm.m`` (1–5, 5 best)
and ``rfm.score`` (r·100 + f·10 + m).

The per-event path counts orders rather than distinct purchase days (the batch fit merges
purchases made on the same day), so the two can differ slightly for customers who order
twice a day; the nightly batch run puts them back in line.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import ordertable
from ..customer import STATUS_ACTIVE, Customer, now_us
from ..scoretable import CLV_SCORES, NAN, RFM_SCORES, TABLE_NAMES, table, write_rows
from ..store import Folders, Store
from . import phases
from ._scipy import optimize, special
from .clv import US_PER_DAY, US_PER_WEEK, WEEKS, CLVModel, FitError, Summary, fit_clv, summarise
from .phases import mark
from .state import create_analysis_folder, folder

log = logging.getLogger(__name__)



def _rfm_keys(recency_days: float, frequency: float, monetary: float) -> tuple[tuple[float, ...], ...]:
    """Each measure's sort key, ties broken by the other two (higher is better in all three):
    ranking on these puts a true fifth of the buyers in each quintile even when most of them
    share a value (most customers order once, so plain frequency cut points give f = 2 to nobody)."""
    return ((-recency_days, frequency, monetary), (frequency, -recency_days, monetary),
            (monetary, frequency, -recency_days))


@dataclass(frozen=True)
class RFMModel:
    """RFM quintiles over the buyers of the customer base, 5 best.

    ``ranked``: for R, F and M, the four cut points in the ranking of :func:`_rfm_keys`, so that a
    score is a customer's quintile by rank; ``recency_days``/``frequency``/``monetary`` show the
    plain values at those cuts (models recorded before ranking was introduced score on them).
    """

    recency_days: tuple[float, ...]  # lower is better
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]
    fitted_at: int = 0
    customers: int = 0
    ranked: tuple[tuple[tuple[float, ...], ...], ...] | None = None

    @property
    def version(self) -> str:
        import hashlib
        import json

        parts: list[Any] = [self.recency_days, self.frequency, self.monetary]
        if self.ranked is not None:
            parts.append(self.ranked)
        blob = json.dumps(parts)
        return "rfm-" + hashlib.sha256(blob.encode()).hexdigest()[:10]

    def as_dict(self) -> dict[str, Any]:
        d = {"recency_days": list(self.recency_days), "frequency": list(self.frequency),
             "monetary": list(self.monetary), "fitted_at": self.fitted_at, "customers": self.customers,
             "version": self.version}
        if self.ranked is not None:
            d["ranked"] = [[list(k) for k in cuts] for cuts in self.ranked]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RFMModel:
        ranked = d.get("ranked")
        return cls(tuple(d["recency_days"]), tuple(d["frequency"]), tuple(d["monetary"]),
                   d.get("fitted_at", 0), d.get("customers", 0),
                   tuple(tuple(tuple(k) for k in cuts) for cuts in ranked) if ranked else None)

    @classmethod
    def fit(cls, recency_days: np.ndarray, frequency: np.ndarray, monetary: np.ndarray, at: int = 0) -> RFMModel:
        n = len(frequency)
        if not n:
            zero = (0.0, 0.0, 0.0, 0.0)
            return cls(zero, zero, zero, at, 0, None)
        rec, freq, mon = (np.asarray(a, float) for a in (recency_days, frequency, monetary))
        at_cut = [min(n - 1, math.ceil(j * n / 5)) for j in (1, 2, 3, 4)]
        columns = [(-rec, freq, mon), (freq, -rec, mon), (mon, freq, -rec)]
        ranked = []
        for primary, second, third in columns:
            order = np.lexsort((third, second, primary))  # last key sorts first
            ranked.append(tuple((float(primary[i]), float(second[i]), float(third[i]))
                                for i in order[at_cut]))
        r_cuts, f_cuts, m_cuts = ranked
        return cls(tuple(-k[0] for k in r_cuts)[::-1], tuple(k[0] for k in f_cuts), tuple(k[0] for k in m_cuts),
                   at, n, (r_cuts, f_cuts, m_cuts))

    def score_arrays(self, recency_days: np.ndarray, frequency: np.ndarray,
                     monetary: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`score` of many customers at once (int arrays r, f, m), with the same comparisons:
        a customer's score is 1 + the number of cut keys at or below their key, keys compared
        lexicographically (the batch fit scores every buyer: ~15 µs each one by one, issue 15)."""
        rec, freq, mon = (np.asarray(a, float) for a in (recency_days, frequency, monetary))
        if self.ranked is None:
            scored = [self.score(*row) for row in zip(rec.tolist(), freq.tolist(), mon.tolist(), strict=True)]
            out = np.asarray(scored, dtype=np.int64).reshape(-1, 3)
            return out[:, 0], out[:, 1], out[:, 2]
        keys = [(-rec, freq, mon), (freq, -rec, mon), (mon, freq, -rec)]
        scores = []
        for cuts, (k0, k1, k2) in zip(self.ranked, keys, strict=True):
            n = np.ones(len(rec), dtype=np.int64)
            for c0, c1, c2 in cuts:  # cut <= key, as tuples compare
                n += (c0 < k0) | ((c0 == k0) & ((c1 < k1) | ((c1 == k1) & (c2 <= k2))))
            scores.append(n)
        return scores[0], scores[1], scores[2]

    def score(self, recency_days: float, frequency: float, monetary: float) -> tuple[int, int, int]:
        if self.ranked is not None:
            keys = _rfm_keys(recency_days, frequency, monetary)
            r, f, m = (1 + bisect.bisect_right(cuts, key) for cuts, key in zip(self.ranked, keys, strict=True))
            return r, f, m
        r = 5 - bisect.bisect_left(self.recency_days, recency_days)  # recent = 5
        f = 1 + bisect.bisect_left(self.frequency, frequency)
        m = 1 + bisect.bisect_left(self.monetary, monetary)
        return max(1, min(5, r)), max(1, min(5, f)), max(1, min(5, m))


# -- reading the store -------------------------------------------------------------------


def commit_op(store: Store, submit: Any, op: Any, note: str) -> Any:
    """Run writer operation ``op(folders, changes)``: in a hub through ``submit`` (the engine
    writer's ``submit_op``, which commits and publishes it), else — an offline tool on a store no
    hub holds — through the engine's offline writer, in a transaction of its own, after which the
    connection's cache is emptied so memory stays bounded over millions of customers."""
    from ..engine.offline import apply

    return apply(store, op, note=note, submit=submit, minimize=True)


def iter_active(store: Store, batch: int = 2000) -> Iterator[list[str]]:
    """Ids of active customers in key order, a batch at a time (each read in a fresh view)."""
    last: str | None = None
    while True:
        with store.read() as f:
            keys = f.customers.keys(min=last, excludemin=last is not None)
            ids: list[str] = []
            for k in keys:
                ids.append(k)
                if len(ids) >= batch:
                    break
        if not ids:
            return
        yield ids
        last = ids[-1]


def order_rows(customer: Customer) -> Iterator[tuple[str, int, float]]:
    if not customer.hard.get("orders"):
        return
    for it in customer.interactions(type="order"):
        yield customer.id, it.ts, float(it.data.get("amount", 0.0))


def store_summary(store: Store, end: int | None = None, unit_us: int = US_PER_WEEK) -> Summary:
    """The (frequency, recency, T, monetary) summary of every active buyer in the store."""
    end = end if end is not None else now_us()
    rows: list[tuple[str, int, float]] = []
    with store.read() as f:
        for c in f.customers.values():
            if c.status == STATUS_ACTIVE and c.hard.get("orders"):
                rows.extend(order_rows(c))
            if len(rows) > 5_000_000:
                break
    return summarise(rows, end, unit_us)


# -- per-customer scoring ----------------------------------------------------------------

_model_cache: dict[str, Any] = {}


def current_models(root: Any) -> tuple[CLVModel | None, RFMModel | None]:
    """The CLV and RFM models in force in this store (parsed once per version)."""
    models = folder(root, "models")
    if models is None:
        return None, None
    out: list[Any] = []
    for name, cls in (("clv", CLVModel), ("rfm", RFMModel)):
        d = models.get(name)
        if d is None:
            out.append(None)
            continue
        key = f"{name}:{d.get('version')}"
        m = _model_cache.get(key)
        if m is None:
            m = _model_cache[key] = cls.from_dict(d)
        out.append(m)
    return out[0], out[1]


def first_order(customer: Customer) -> tuple[int, float] | None:
    for it in customer.interactions(type="order"):
        return it.ts, float(it.data.get("amount", 0.0))
    return None


def customer_rfm_inputs(customer: Customer, now: int) -> tuple[float, float, float]:
    h = customer.hard
    last = h.get("last_order_at") or now
    return (now - last) / US_PER_DAY, float(h.get("orders", 0)), float(h.get("total_spend", 0.0))


def clv_scalar(model: CLVModel, x: float, t_x: float, T: float, m: float) -> tuple[float, float, float]:
    """(expected purchases over the horizon, P(alive), CLV over the CLV horizon, discounted as set)
    for one customer, with plain floats (the numpy path costs ~50 µs per call in overhead; this
    one a few µs per horizon step)."""
    bg = model.bgnbd
    r, alpha, a, b = bg.r, bg.alpha, bg.a, bg.b
    if x > 0:
        log_odds = math.log(a) - math.log(b + x - 1) + (r + x) * (math.log(alpha + T) - math.log(alpha + t_x))
        p_alive = 1.0 / (1.0 + math.exp(log_odds)) if log_odds < 700 else 0.0
    else:
        p_alive = 1.0
    lead = (a + b + x - 1) / (a - 1) * p_alive
    log_aT = math.log(alpha + T)

    def expected(t: float) -> float:
        if t <= 0:
            return 0.0
        ratio = math.exp((r + x) * (log_aT - math.log(alpha + T + t)))
        return lead * (1 - ratio * float(special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))))

    ep = expected(model.horizon)
    if model.gg is not None:
        g = model.gg
        spend = g.p * (g.v + x * m) / (g.p * x + g.q - 1)
    else:
        spend = m if x > 0 else 0.0
    horizon = model.value_horizon
    if model.discount <= 0:
        return ep, p_alive, (ep if horizon == model.horizon else expected(horizon)) * spend
    step = WEEKS[model.discount_step]
    per_step = (1 + model.discount) ** (step / WEEKS[model.discount_per])
    value = prev = 0.0
    for k in range(1, max(1, math.ceil(horizon / step - 1e-9)) + 1):
        cum = expected(min(k * step, horizon))
        value += (cum - prev) / per_step ** k
        prev = cum
    return ep, p_alive, value * spend


def score_customer(customer: Customer, clv: CLVModel | None, rfm: RFMModel | None, now: int | None = None) -> None:
    """Re-score one customer from their hard facts with the models in force."""
    now = now if now is not None else now_us()
    h = customer.hard
    orders = int(h.get("orders", 0) or 0)
    if clv is not None and orders:
        fo = first_order(customer)
        if fo is not None:
            first_ts, first_amount = fo
            unit = US_PER_WEEK if clv.bgnbd.unit == "week" else US_PER_DAY
            x = orders - 1
            t_x = max(0.0, ((h.get("last_order_at") or first_ts) - first_ts) / unit)
            T = max(t_x, (now - first_ts) / unit)
            m = (float(h.get("total_spend", 0.0)) - first_amount) / x if x else 0.0
            ep, alive, value = clv_scalar(clv, x, t_x, T, m)
            src = f"model:{clv.version}"
            customer.set_score("clv.expected_purchases", ep, src, now)
            customer.set_score("clv.p_alive", alive, src, now)
            customer.set_score("clv.value", value, src, now)
            customer.set_score("churn.risk", 1.0 - alive, src, now)
    if rfm is not None and orders:
        rr, ff, mm = rfm.score(*customer_rfm_inputs(customer, now))
        src = f"model:{rfm.version}"
        customer.set_score("rfm.r", rr, src, now)
        customer.set_score("rfm.f", ff, src, now)
        customer.set_score("rfm.m", mm, src, now)
        customer.set_score("rfm.score", rr * 100 + ff * 10 + mm, src, now)


# -- batch -------------------------------------------------------------------------------


@dataclass
class OrderHistory:
    """Every active buyer's orders, split at the calibration end (``as_of``)."""

    calibration: list[tuple[str, int, float]]  # (customer id, ts µs, amount) up to as_of
    later: list[tuple[str, int, float]]  # after as_of (the holdout, if one is asked for)
    rfm_inputs: dict[str, tuple[float, float, float]]  # id -> (recency days, orders, spend) as of as_of


def read_orders(store: Store, as_of: int) -> OrderHistory:
    """One pass over the store: orders up to ``as_of`` and after it, and RFM inputs as of ``as_of``."""
    cal: list[tuple[str, int, float]] = []
    later: list[tuple[str, int, float]] = []
    rfm: dict[str, tuple[float, float, float]] = {}
    for cid, times, amounts in _buyers(store):
        n, spend, last = 0, 0.0, None
        for ts, amount in zip(times, amounts, strict=True):
            if ts > as_of:
                later.append((cid, ts, amount))
                continue
            cal.append((cid, ts, amount))
            n += 1
            spend += amount
            last = ts if last is None or ts > last else last
        if n and last is not None:
            rfm[cid] = ((as_of - last) / US_PER_DAY, float(n), spend)
    return OrderHistory(cal, later, rfm)


def _buyers(store: Store) -> Iterator[tuple[str, Sequence[int], Sequence[float]]]:
    """(id, order times, amounts) of every active buyer, in id order: from the order table
    (``shopkeeper.ordertable``: no customer record loaded) or, on a store without it, from the
    records (the same rows: the table holds exactly what this reads)."""
    with store.read() as f:
        if ordertable.rows_of(f.root) is not None:
            yield from ordertable.iter_rows(f.root)
            return
    for ids in iter_active(store, 5000):
        with store.read() as f:
            for cid in ids:
                times, amounts = ordertable.orders_of(f.customers[cid])
                if times:
                    yield cid, times, amounts
            f.conn.cacheMinimize()


ScoreRow = tuple[str, tuple[float, ...]]


def write_scores(folders: Folders, rows: list[ScoreRow], names: tuple[str, ...], sources: tuple[str, ...],
                 at: int) -> int:
    """Set ``names`` (with ``sources``, index for index) to each row's values; returns how many
    rows were given. NaN means "not scored" (e.g. no CLV model).

    The rows go to the model score tables (:mod:`shopkeeper.scoretable`: ``clv`` for
    :data:`CLV_SCORES`, ``rfm`` for :data:`RFM_SCORES`), not into the customer records: no
    customer is loaded or re-pickled, so a batch costs a few µs per customer. A customer merged
    since the fit reads no table rows (only active customers do); one erased since is left out.

    A function over :class:`Folders` so that it runs unchanged as one writer operation in a hub
    (``writer.submit_op(lambda f, _changes: write_scores(f, rows, …))``) or in an offline
    tool's own transaction; the caller decides how many customers share a commit.
    """
    col = {name: i for i, name in enumerate(names)}
    for kind, kind_names in (("clv", CLV_SCORES), ("rfm", RFM_SCORES)):
        idx = [col.get(n) for n in kind_names]
        given = [i for i in idx if i is not None]
        if not given:
            continue
        src = sources[given[0]]
        if given == list(range(given[0], given[0] + len(kind_names))):  # the whole model, in order
            lo, hi = given[0], given[0] + len(kind_names)
            part = [(cid, vals) for cid, values in rows
                    if (v := (vals := values[lo:hi])[0]) == v or _scored(vals)]
        elif len(given) == len(kind_names):
            part = [(cid, vals) for cid, values in rows if _scored(vals := tuple(values[i] for i in given))]
        else:  # some of the model's names: keep the others' current values
            old = table(folders.root, kind, kind_names)
            part = []
            for cid, values in rows:
                row = old.read(cid) or {}
                pairs = zip(kind_names, idx, strict=True)
                part.append((cid, tuple(values[i] if i is not None else (row[n].value if n in row else NAN)
                                        for n, i in pairs)))
        write_rows(folders.root, kind, kind_names, part, src, at)
    other = [(n, src, i) for i, (n, src) in enumerate(zip(names, sources, strict=True)) if n not in TABLE_NAMES]
    if other:  # scores no table holds live in the customer record
        customers = folders.customers
        for cid, values in rows:
            c = customers.get(cid)
            if c is not None and c.status == STATUS_ACTIVE:
                for name, src, i in other:
                    if values[i] == values[i]:
                        c.set_score(name, values[i], src, at)
    return len(rows)


def _scored(values: tuple[float, ...]) -> bool:
    """Whether any value is a number (NaN: not scored, e.g. no CLV model)."""
    return any(v == v for v in values)


def fit_models(store: Store, now: int | None = None, horizon: float = 52.0, discount: float = 0.0,
               batch: int = 20_000, write: bool = True, *, clv_horizon: float | None = None,
               discount_per: str = "year", discount_step: str = "month",
               holdout_end: int | None = None, submit: Any = None) -> dict[str, Any]:
    """Fit CLV and RFM on the store's order history up to ``now`` (the calibration end, default
    the wall clock), record them, and score every buyer as of ``now``.

    Orders after ``now`` are ignored by the fit; with ``holdout_end`` they are the holdout
    period, and the report's ``holdout`` compares each customer's actual repeat purchases in
    it with the model's prediction (:mod:`.holdout`). Scores are written ``batch`` customers
    per transaction (:func:`write_scores`). Returns a report: the models (with versions), how
    many customers were scored, timings.

    With a hub running on the store, pass its writer's ``submit_op`` as ``submit``: the models
    and every batch of scores are then operations the one writer commits. Without it (the
    ``shopkeeper models fit`` command on a store no hub holds) each batch commits in its own
    transaction.
    """
    now = now if now is not None else now_us()
    if holdout_end is not None and holdout_end <= now:
        raise ValueError("the holdout must end after the calibration end (--as-of)")
    t0 = time.perf_counter()
    hist = read_orders(store, now)
    mark("read orders")
    summary = summarise(hist.calibration, now)
    mark("summarise")
    t_read = time.perf_counter() - t0
    report: dict[str, Any] = {"buyers": len(summary), "as_of": now, "read_seconds": round(t_read, 3)}
    if phases.enabled():  # scipy's import apart from the fit, for bench_cdnow's phases
        _ = special.gammaln, optimize.minimize
        mark("import scipy")
    try:
        clv: CLVModel | None = fit_clv(summary, horizon=horizon, discount=discount, fitted_at=now,
                                       clv_horizon=clv_horizon, discount_per=discount_per,
                                       discount_step=discount_step)
    except FitError as exc:
        clv = None
        report["clv_error"] = str(exc)
    ids = list(hist.rfm_inputs)
    inputs = np.asarray([hist.rfm_inputs[i] for i in ids], float).reshape(-1, 3)
    rfm = RFMModel.fit(inputs[:, 0], inputs[:, 1], inputs[:, 2], now)
    report["fit_seconds"] = round(time.perf_counter() - t0 - t_read, 3)
    mark("fit (with scipy's import)")
    report["clv"] = clv.as_dict() if clv else None
    report["rfm"] = rfm.as_dict()
    if holdout_end is not None and clv is not None:
        from .holdout import validate

        report["holdout"] = validate(clv, summary, hist.calibration, hist.later, now, holdout_end)
        mark("holdout")
    if not write:
        return report

    def commit(op: Any, note: str) -> Any:
        return commit_op(store, submit, op, note)

    def record_models(f: Any, _changes: Any) -> None:
        models = create_analysis_folder(f.root)["models"]  # normally made by generation 4
        if clv is not None:
            models["clv"] = clv.as_dict()
            models[f"clv@{clv.version}"] = clv.as_dict()
        models["rfm"] = rfm.as_dict()
        models[f"rfm@{rfm.version}"] = rfm.as_dict()
        # the last fit's holdout comparison, for the console's chart (none if the fit had no holdout)
        if report.get("holdout") is not None:
            models["holdout"] = {"fitted_at": now, **report["holdout"]}
        elif "holdout" in models:
            del models["holdout"]

    commit(record_models, "shopkeeper: models fit")
    mark("record models")
    t1 = time.perf_counter()
    rows = _score_rows(clv, summary, rfm, ids, inputs)
    mark("score rows")
    names = CLV_SCORES + RFM_SCORES
    sources = (f"model:{clv.version}" if clv else "",) * len(CLV_SCORES) + (f"model:{rfm.version}",) * len(RFM_SCORES)
    n = 0
    t2, c2 = time.perf_counter(), time.process_time()
    for i in range(0, len(rows), batch):
        part = rows[i:i + batch]
        n += commit(lambda f, _changes, part=part: write_scores(f, part, names, sources, now),
                    "shopkeeper: models score")
    mark("write scores")
    report["scored"] = n
    report["score_seconds"] = round(time.perf_counter() - t1, 3)
    # writing alone (the rows computed): wall, and this process's CPU (all of it offline; in a hub
    # the writer thread's share of the process CPU)
    report["write_seconds"] = round(time.perf_counter() - t2, 4)
    report["write_cpu_seconds"] = round(time.process_time() - c2, 4)
    return report


def _score_rows(clv: CLVModel | None, summary: Summary, rfm: RFMModel, ids: list[str],
                inputs: np.ndarray) -> list[ScoreRow]:
    """(customer id, (expected purchases, P(alive), CLV, churn risk, r, f, m, rfm score)) per buyer,
    computed for all of them at once (the CLV scores from the exact batch summary: distinct
    purchase days); NaN where there is no CLV model."""
    nan = float("nan")
    clv_of: dict[str, tuple[float, float, float, float]] = {}
    if clv is not None and len(summary):
        s = clv.score(summary.frequency, summary.recency, summary.T, summary.monetary)
        clv_of = {cid: (ep, alive, value, 1.0 - alive) for cid, ep, alive, value in
                  zip(summary.ids, s["expected_purchases"].tolist(), s["p_alive"].tolist(), s["clv"].tolist(),
                      strict=True)}
    none = (nan, nan, nan, nan)
    r, f, m = rfm.score_arrays(inputs[:, 0], inputs[:, 1], inputs[:, 2])
    rfm_rows = np.column_stack([r, f, m, r * 100 + f * 10 + m]).astype(float).tolist()
    return [(cid, clv_of.get(cid, none) + tuple(rfm_row)) for cid, rfm_row in zip(ids, rfm_rows, strict=True)]
