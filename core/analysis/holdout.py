"""Calibration / holdout validation of the BG/NBD model, as in Fader, Hardie & Lee (2005).

The model is fitted on the orders up to the calibration end; the orders of the holdout period
after it were never seen by the fit. Two comparisons, the ones the paper makes:

* **conditional expectations** — customers grouped by their calibration-period repeat purchases
  (0, 1, … 7+): the mean number of repeat purchases each group actually made in the holdout
  against the mean the model predicted for them (eq. 10);
* **tracking** — week by week over calibration and holdout, the cohort's repeat purchases,
  cumulative and incremental, against the model's (eq. 7 summed over the customers from
  each one's first purchase): the standard BG/NBD validation chart (:func:`chart`).

Purchases are counted as in the fit: one per customer and day.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .clv import US_PER_DAY, US_PER_WEEK, CLVModel, Summary, describe_weeks

MAX_GROUP = 7  # "7+"


def validate(model: CLVModel, summary: Summary, calibration: list[tuple[str, int, float]],
             later: list[tuple[str, int, float]], as_of: int, holdout_end: int) -> dict[str, Any]:
    """Actual vs predicted over the holdout ``(as_of, holdout_end]`` for the calibration cohort
    (the customers of ``summary``, built from the ``calibration`` rows)."""
    weeks = (holdout_end - as_of) / US_PER_WEEK
    index = {cid: i for i, cid in enumerate(summary.ids)}
    days: dict[str, set[int]] = defaultdict(set)
    for cid, ts, _amount in calibration:
        days[cid].add(ts // US_PER_DAY)
    cal_days = {cid: len(d) for cid, d in days.items()}
    for cid, ts, _amount in later:
        if cid in index and ts <= holdout_end:
            days[cid].add(ts // US_PER_DAY)
    actual = np.zeros(len(summary))
    for cid, i in index.items():
        actual[i] = len(days[cid]) - cal_days[cid]
    predicted = model.bgnbd.expected_purchases(weeks, summary.frequency, summary.recency, summary.T)
    groups = np.minimum(summary.frequency, MAX_GROUP).astype(int)
    table = []
    for g in range(MAX_GROUP + 1):
        sel = groups == g
        if not sel.any():
            continue
        table.append({"calibration_repeats": f"{g}+" if g == MAX_GROUP else str(g), "customers": int(sel.sum()),
                      "actual": round(float(actual[sel].mean()), 4),
                      "predicted": round(float(predicted[sel].mean()), 4)})
    return {"weeks": round(weeks, 4), "horizon": describe_weeks(weeks), "customers": len(summary),
            "actual_total": int(actual.sum()), "predicted_total": round(float(predicted.sum()), 1),
            "by_calibration_repeats": table,
            "tracking": tracking(model, {cid: days[cid] for cid in index}, as_of, holdout_end)}


def tracking(model: CLVModel, days: dict[str, set[int]], as_of: int, holdout_end: int) -> dict[str, Any]:
    """Weekly repeat purchases of the cohort (``days``: each customer's purchase days), actual and
    model, from the cohort's first purchase to the holdout end (incremental counts per week)."""
    firsts_of = {cid: min(d) for cid, d in days.items() if d}
    start_day = min(firsts_of.values())
    end_day = holdout_end // US_PER_DAY
    n_weeks = int(np.ceil((end_day - start_day + 1) / 7))
    actual = np.zeros(n_weeks)
    for cid, d in days.items():
        first = firsts_of[cid]
        for day in d:
            if first < day <= end_day:
                actual[(day - start_day) // 7] += 1
    # model: Σ_i E[X(t - first_i)] at the end of each week, customers grouped by first-purchase day
    firsts, counts = np.unique(np.fromiter(firsts_of.values(), int), return_counts=True)
    cum = np.zeros(n_weeks)
    new = model.bgnbd.expected_purchases_new
    for w in range(n_weeks):
        ages = (start_day + 7 * (w + 1) - firsts) / 7.0  # as T is measured: from the first purchase day
        live = ages > 0
        cum[w] = sum(c * new(a) for a, c in zip(ages[live].tolist(), counts[live].tolist(), strict=True))
    inc = np.diff(np.concatenate([[0.0], cum]))
    return {"start_day": int(start_day), "calibration_weeks": round((as_of // US_PER_DAY - start_day) / 7, 4),
            "week": list(range(1, n_weeks + 1)), "actual": actual.tolist(), "model": inc.tolist()}


def render_table(h: dict[str, Any]) -> str:
    """The conditional-expectations table as text."""
    lines = [f"holdout: {h['horizon']} after the calibration end, {h['customers']} customers",
             f"{'repeats in calibration':>24}  {'customers':>9}  {'actual':>8}  {'predicted':>9}"]
    for row in h["by_calibration_repeats"]:
        lines.append(f"{row['calibration_repeats']:>24}  {row['customers']:>9}  {row['actual']:>8.3f}  "
                     f"{row['predicted']:>9.3f}")
    lines.append(f"{'total repeat purchases':>24}  {'':>9}  {h['actual_total']:>8}  {h['predicted_total']:>9.1f}")
    return "\n".join(lines)


def chart(h: dict[str, Any], path: str | Path, title: str = "") -> None:
    """The standard BG/NBD validation chart: cumulative and weekly repeat purchases, actual vs model,
    with the calibration end marked."""
    from matplotlib.figure import Figure  # not pyplot: its backend machinery costs a CLI ~0.5 s more

    tr = h["tracking"]
    weeks = np.asarray(tr["week"])
    actual, model = np.asarray(tr["actual"]), np.asarray(tr["model"])
    fig = Figure(figsize=(9, 8), dpi=110)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(weeks, np.cumsum(actual), color="black", label="actual")
    top.plot(weeks, np.cumsum(model), color="#3b7dd8", linestyle="--", label="BG/NBD")
    top.set_ylabel("cumulative repeat purchases")
    bottom.plot(weeks, actual, color="black", label="actual")
    bottom.plot(weeks, model, color="#3b7dd8", linestyle="--", label="BG/NBD")
    bottom.set_ylabel("repeat purchases per week")
    bottom.set_xlabel("week since the cohort's first purchase")
    for ax in (top, bottom):
        ax.axvline(tr["calibration_weeks"], color="grey", linestyle=":", label="end of calibration")
    top.legend(loc="upper left", fontsize=8)  # one legend: the same three lines below, where it hid the peak
    top.set_title(title or f"BG/NBD validation: {h['customers']:,} customers, {h['horizon']} holdout "
                           f"(actual {h['actual_total']:,} vs predicted {h['predicted_total']:,.0f} repeat purchases)",
                  fontsize=10)
    # fixed margins for this fixed layout: tight_layout measured every label by drawing the
    # figure once more, a third of the chart's CPU (issue 15's walk-through draws it)
    fig.subplots_adjust(left=0.085, right=0.98, bottom=0.065, top=0.955, hspace=0.06)
    fig.savefig(path)
